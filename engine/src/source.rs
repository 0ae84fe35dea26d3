//! The [`Source`] trait: where rows enter a job.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;

use serde_json::Value;

use crate::message::CheckpointId;
use crate::operator::OperatorContext;

/// What one poll of a source produced.
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows, in the source's schema.
    Batch(RecordBatch),
    /// Rows of one split (e.g. a Kafka partition), in the source's schema.
    /// With a `WATERMARK FOR` clause the runtime keeps a watermark per split
    /// and emits their minimum (see [`Source::watermark_splits`]).
    SplitBatch {
        /// The split, as numbered by the source (stable within a subtask).
        split: u32,
        batch: RecordBatch,
    },
    /// Nothing available right now; poll again. (A source that can wait for
    /// data should rather wait inside [`Source::poll_next`].)
    Idle,
    /// A bounded source has produced everything it ever will.
    Finished,
}

/// A source subtask: one instance per subtask, driven by the runtime.
///
/// # Lifecycle
///
/// 1. [`initialize_state`](Source::initialize_state) once with the positions
///    to resume from (or none: a fresh start), then [`open`](Source::open) once.
/// 2. [`poll_next`](Source::poll_next) repeatedly until it returns
///    [`SourceEvent::Finished`] (bounded sources) or the job stops. Between
///    polls the runtime may inject a checkpoint barrier, after calling
///    [`snapshot_state`](Source::snapshot_state): the position recorded there
///    must be exactly after the last batch returned.
/// 3. [`close`](Source::close) once.
///
/// # Cancel safety
///
/// `poll_next` must be cancel-safe: the runtime drops its future to handle a
/// barrier, a stop request or an idleness timeout, then calls it again. A
/// dropped poll must lose nothing (wait, then read; never read, then wait).
///
/// # Watermarks
///
/// Sources produce rows only; the runtime derives watermarks from the table's
/// `WATERMARK FOR` expression (bounded out-of-orderness) and idleness from
/// `scan.watermark.idle-timeout`, and emits the final `+∞` watermark when a
/// bounded source finishes.
#[async_trait]
pub trait Source: Send {
    /// Called once, before `open`. `state` is `None` on a fresh start; on a
    /// restore it is this subtask's share of the entries every subtask
    /// returned from [`snapshot_state`](Source::snapshot_state) (possibly
    /// none, e.g. after scaling up a source with fewer splits than subtasks:
    /// then the subtask has nothing to read). The default refuses a restore:
    /// a source that cannot resume must not silently start over.
    async fn initialize_state(&mut self, ctx: &OperatorContext, state: Option<Vec<Value>>) -> Result<()> {
        match state {
            None => Ok(()),
            Some(_) => Err(datafusion::common::DataFusionError::NotImplemented(format!(
                "source {} cannot resume from a checkpoint",
                ctx.operator_name
            ))),
        }
    }

    /// Called once before the first poll.
    async fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Produces the next batch. Must be cancel-safe (see the trait docs).
    async fn poll_next(&mut self) -> Result<SourceEvent>;

    /// How restored list state is shared out among the subtasks: `false`
    /// (the default) deals the entries out round-robin (or gives each subtask
    /// its own at the same parallelism); `true` gives every subtask every
    /// entry (Flink's union list state), for sources that pick their own
    /// splits from the full set by a deterministic rule (e.g. Kafka
    /// partitions by Flink's topic-hash rule) and so can tell which splits
    /// are new.
    fn union_list_state(&self) -> bool {
        false
    }

    /// The splits whose watermarks the runtime tracks separately, asked after
    /// [`open`](Source::open) and after every [`SourceEvent::SplitBatch`]
    /// poll that reported a change via [`splits_changed`](Source::splits_changed).
    /// `None` (the default): one watermark for the whole subtask.
    fn watermark_splits(&self) -> Option<Vec<u32>> {
        None
    }

    /// Whether the set of [`watermark_splits`](Source::watermark_splits)
    /// changed since it was last asked (e.g. partitions were discovered).
    fn splits_changed(&mut self) -> bool {
        false
    }

    /// Records the source's position for checkpoint `checkpoint_id`: exactly
    /// after the last batch returned. Returns list-state entries (one per
    /// split, typically), redistributed over the subtasks on restore.
    async fn snapshot_state(&mut self, _checkpoint_id: CheckpointId) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }

    /// Called once checkpoint `checkpoint_id` is complete.
    async fn notify_checkpoint_complete(&mut self, _checkpoint_id: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// Releases resources.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A validated source table: creates the per-subtask [`Source`]s of a job.
///
/// Built by a [`crate::connector::Connector`] from a table's schema and
/// `WITH` options when the table is created, so option errors surface at
/// `CREATE TABLE`, not when a job starts.
pub trait SourceSpec: Send + Sync + std::fmt::Debug {
    /// The schema of the rows the source produces (the table's physical columns).
    fn schema(&self) -> SchemaRef;

    /// Whether the source ends by itself.
    fn is_bounded(&self) -> bool;

    /// The most subtasks this source can use (e.g. one per file), if limited.
    fn max_parallelism(&self) -> Option<usize> {
        None
    }

    /// Creates subtask `subtask` of `parallelism`.
    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>>;

    /// This table for a job that reads only the `read` columns (indices
    /// into [`schema`](Self::schema), ascending), if the source can save
    /// work on the others. The returned spec must have the same schema and
    /// produce the same rows with the same values in the `read` columns,
    /// checkpoint the same state, and may fill every other column with any
    /// value valid for its type (the job never looks at them). `None`, the
    /// default: every column is produced, and this spec is used as it is.
    fn reading_only(&self, read: &[usize]) -> Option<Arc<dyn SourceSpec>> {
        let _ = read;
        None
    }
}

/// Per column of `schema`, whether a job reading only the `read` columns
/// lets a source fill it with NULLs (it is nullable and not read); `None`
/// when no column is such (for [`SourceSpec::reading_only`]).
pub fn unread_nullable_columns(schema: &SchemaRef, read: &[usize]) -> Option<Arc<[bool]>> {
    let unread: Arc<[bool]> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| field.is_nullable() && !read.contains(&i))
        .collect();
    unread.iter().any(|&u| u).then_some(unread)
}

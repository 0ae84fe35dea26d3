//! The [`Operator`] trait: the hooks every stateful or stateless operator
//! (and every sink) implements, and the runtime drives.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;

use crate::key_group::KeyGroupRange;
use crate::message::{Barrier, CheckpointId, EventTime, Message, Watermark};
use crate::metrics::OperatorMetrics;
use crate::state::{OperatorSnapshot, StateInit};

/// Where an operator subtask runs: which job, which operator, which subtask.
#[derive(Debug, Clone)]
pub struct OperatorContext {
    /// The job's name (`pipeline.name`), stable across restarts.
    pub job_name: String,
    /// The operator's stable id, derived from the plan (the key of its state in
    /// checkpoints).
    pub operator_id: String,
    /// A human-readable name, used in errors and metrics.
    pub operator_name: String,
    /// This subtask's index, `0..parallelism`.
    pub subtask: usize,
    /// The operator's parallelism.
    pub parallelism: usize,
    /// `pipeline.max-parallelism`: the number of key groups.
    pub max_parallelism: usize,
    /// The key groups this subtask owns (for keyed operators).
    pub key_groups: KeyGroupRange,
    /// Counters of this subtask, shown by `SHOW JOBS`.
    pub metrics: Arc<OperatorMetrics>,
    /// Whether periodic checkpoints are on. A two-phase sink then commits
    /// only on [`Operator::notify_checkpoint_complete`], never at `finish`:
    /// the job ends with a final checkpoint that commits the rest.
    pub checkpointing: bool,
    /// `table.exec.state.ttl`: non-windowed keyed state idle for longer may be
    /// dropped (`None`: kept forever).
    pub state_ttl: Option<std::time::Duration>,
}

/// The current processing time, in ms since the epoch (what the state TTL
/// is measured in).
pub fn processing_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl OperatorContext {
    /// `table.exec.state.ttl` in ms (at least 1), or `None` when state is
    /// kept forever (unset or zero).
    pub fn state_ttl_ms(&self) -> Option<i64> {
        self.state_ttl
            .filter(|ttl| !ttl.is_zero())
            .map(|ttl| (ttl.as_millis() as i64).max(1))
    }

    /// Adds which operator and subtask failed to an error (`what` is
    /// "operator" or "source").
    pub fn error_context(
        &self,
        what: &str,
        e: datafusion::common::DataFusionError,
    ) -> datafusion::common::DataFusionError {
        e.context(format!(
            "{what} {} (subtask {}/{})",
            self.operator_name,
            self.subtask + 1,
            self.parallelism
        ))
    }
}

/// What an operator emits while handling one hook.
///
/// The runtime drains it after each hook and routes the messages to the next
/// operator of the chain or to the output channels, in order.
#[derive(Debug, Default)]
pub struct Output {
    messages: Vec<Message>,
}

impl Output {
    /// Emits a batch (empty batches are dropped).
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.messages.push(Message::Batch(batch));
        }
    }

    /// Emits an event-time watermark downstream.
    pub fn emit_watermark(&mut self, t: EventTime) {
        self.messages.push(Message::Watermark(Watermark::EventTime(t)));
    }

    /// Appends a control message (watermark, barrier, end) after what was emitted.
    pub fn push_control(&mut self, msg: Message) {
        self.messages.push(msg);
    }

    /// The number of rows emitted so far.
    pub fn pending_rows(&self) -> usize {
        self.messages
            .iter()
            .map(|m| match m {
                Message::Batch(b) => b.num_rows(),
                _ => 0,
            })
            .sum()
    }

    /// The emitted messages, in order.
    pub fn into_messages(self) -> Vec<Message> {
        self.messages
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// A streaming operator (or sink): one instance per subtask, driven by the
/// runtime from a single tokio task.
///
/// # Lifecycle
///
/// 1. [`initialize_state`](Self::initialize_state) once, with the state to
///    start from (empty, or restored from a checkpoint or savepoint), then
///    [`open`](Self::open) once.
/// 2. Any number of [`process_batch`](Self::process_batch) and
///    [`process_watermark`](Self::process_watermark) calls, interleaved with
///    [`snapshot_state`](Self::snapshot_state) at aligned barriers and
///    [`notify_checkpoint_complete`](Self::notify_checkpoint_complete) once a
///    checkpoint is complete.
/// 3. [`finish`](Self::finish) once, when every input has ended (bounded input,
///    or a graceful stop): emit everything still held.
/// 4. [`close`](Self::close) once, also after a failure or cancellation
///    (best-effort: it is not called if the task is aborted).
///
/// # Invariants the runtime guarantees
///
/// - Hooks are never called concurrently; an operator needs no locking.
/// - Watermarks are already min-merged over all inputs, strictly increasing,
///   and never `Idle`: the runtime handles idleness.
/// - Barriers are already aligned (exactly-once mode): `snapshot_state` sees
///   exactly the batches before the barrier on every input, none after.
/// - A batch of an updating stream carries its row kinds in
///   [`crate::changelog::OP_COLUMN`].
///
/// # State and two-phase commit
///
/// An operator keeps keyed state in the [`crate::state::KeyedState`] it gets
/// from `initialize_state`, and list state (entries redistributed on
/// restore) in what `snapshot_state` returns. A two-phase sink pre-commits in
/// `snapshot_state` (recording what to commit as list state), commits in
/// `notify_checkpoint_complete`, and on restore first finishes committing
/// what the restored state lists as pending, then aborts anything written
/// after it. Commits must be idempotent: a crash may repeat them.
///
/// # Errors
///
/// An error from any hook fails the job, reported with the operator's name and
/// subtask. Bad user data must be an error (or counted and skipped, as the
/// operator's documented policy says), never a panic.
#[async_trait]
pub trait Operator: Send {
    /// Called once, before `open`, with the state to start from. The default
    /// ignores it: right for stateless operators only.
    async fn initialize_state(&mut self, _ctx: &OperatorContext, _state: StateInit) -> Result<()> {
        Ok(())
    }

    /// Called once before any data. `ctx` says where the subtask runs.
    async fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Handles a batch that arrived on input `input` (0 for single-input operators).
    async fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// Handles the advance of the (min-merged) input watermark to `watermark`.
    /// The default forwards it; operators that hold rows back until event time
    /// passes (windows) emit them first, then forward.
    async fn process_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        out.emit_watermark(watermark);
        Ok(())
    }

    /// Called when barrier `barrier` has arrived on every input (aligned, in
    /// exactly-once mode): record the operator's state as of this point (and,
    /// for a two-phase sink, pre-commit). Anything emitted into `out` is sent
    /// before the barrier. The synchronous part runs here; the returned
    /// snapshot's keyed future is written while processing goes on.
    async fn snapshot_state(&mut self, _barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot::default())
    }

    /// Called once checkpoint (or savepoint) `checkpoint_id` is complete
    /// (durable): a two-phase sink commits what it pre-committed for it *and
    /// for every earlier one* (a notification may be missed). Idempotent.
    async fn notify_checkpoint_complete(&mut self, _checkpoint_id: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// Called when checkpoint `checkpoint_id` was aborted; what was
    /// pre-committed for it is committed with the next completed one.
    async fn notify_checkpoint_aborted(&mut self, _checkpoint_id: CheckpointId) -> Result<()> {
        Ok(())
    }

    /// Called once when every input has ended: emit everything still held.
    async fn finish(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Releases resources. Called after `finish`, or after a failure.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

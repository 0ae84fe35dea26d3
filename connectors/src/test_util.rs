//! Helpers for the connectors' unit tests: options, contexts, and driving
//! sources to their end.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use weir_engine::connector::ConnectorOptions;
use weir_engine::key_group::{DEFAULT_MAX_PARALLELISM, KeyGroupRange};
use weir_engine::operator::OperatorContext;
use weir_engine::source::{SourceEvent, SourceSpec};

/// Options from key/value pairs.
pub fn options(kv: &[(&str, &str)]) -> ConnectorOptions {
    ConnectorOptions::new(kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// The context of subtask `subtask` of `parallelism`.
pub fn ctx(subtask: usize, parallelism: usize) -> OperatorContext {
    OperatorContext {
        job_name: "test".into(),
        operator_id: "op".into(),
        operator_name: "test operator".into(),
        subtask,
        parallelism,
        max_parallelism: DEFAULT_MAX_PARALLELISM,
        key_groups: KeyGroupRange::for_subtask(subtask, parallelism, DEFAULT_MAX_PARALLELISM),
        metrics: Arc::default(),
        checkpointing: false,
        state_ttl: None,
    }
}

/// Runs subtask `subtask` of `parallelism` of a bounded source to its end.
pub async fn collect(spec: &dyn SourceSpec, subtask: usize, parallelism: usize) -> Result<Vec<RecordBatch>> {
    collect_with(spec, &ctx(subtask, parallelism)).await
}

/// Runs the subtask of `ctx` of a bounded source to its end.
pub async fn collect_with(spec: &dyn SourceSpec, ctx: &OperatorContext) -> Result<Vec<RecordBatch>> {
    let mut source = spec.create(ctx.subtask, ctx.parallelism)?;
    source.open(ctx).await?;
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        match source.poll_next().await? {
            SourceEvent::Batch(b) | SourceEvent::SplitBatch { batch: b, .. } => {
                assert_eq!(b.schema(), spec.schema(), "batches have the source's schema");
                out.push(b);
            }
            SourceEvent::Idle => {}
            SourceEvent::Finished => {
                source.close().await?;
                return Ok(out);
            }
        }
    }
    Err(DataFusionError::Internal("source did not finish".into()))
}

/// Checkpoint and restore helpers for the sources' resume tests.
pub mod resume {
    use super::*;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use serde_json::Value;
    use weir_engine::source::Source;

    /// Subtask `subtask` of `parallelism`, started fresh (`state: None`) or
    /// restored from `state`, opened.
    pub async fn start(
        spec: &dyn SourceSpec,
        subtask: usize,
        parallelism: usize,
        state: Option<Vec<Value>>,
    ) -> Result<Box<dyn Source>> {
        let ctx = ctx(subtask, parallelism);
        let mut source = spec.create(subtask, parallelism)?;
        source.initialize_state(&ctx, state).await?;
        source.open(&ctx).await?;
        Ok(source)
    }

    /// Polls up to `max` batches (all, to the end, if `None`).
    pub async fn poll(source: &mut dyn Source, max: Option<usize>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for _ in 0..1_000_000 {
            if max.is_some_and(|m| out.len() >= m) {
                return Ok(out);
            }
            match source.poll_next().await? {
                SourceEvent::Batch(b) | SourceEvent::SplitBatch { batch: b, .. } => out.push(b),
                SourceEvent::Idle => {}
                SourceEvent::Finished => return Ok(out),
            }
        }
        Err(DataFusionError::Internal("source did not finish".into()))
    }

    /// The rows of `batches` as text, in order.
    pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
        let options = FormatOptions::default().with_null("null");
        let mut out = Vec::new();
        for b in batches {
            let formatters: Vec<ArrayFormatter> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                let row: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
                out.push(row.join("|"));
            }
        }
        out
    }

    /// The rows of `batches` as text, sorted: to compare multisets.
    pub fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
        let mut r = rows(batches);
        r.sort();
        r
    }

    /// The engine's rule for list state at another parallelism: the entries
    /// of all old subtasks, in (subtask, entry) order, dealt round-robin.
    pub fn deal(per_subtask: &[Vec<Value>], parallelism: usize) -> Vec<Vec<Value>> {
        let mut out = vec![Vec::new(); parallelism];
        for (i, e) in per_subtask.iter().flatten().enumerate() {
            out[i % parallelism].push(e.clone());
        }
        out
    }

    /// For each subtask of `parallelism`: runs `before` batches, snapshots,
    /// runs the rest (up to `after` batches, or to the end); then a new
    /// instance restored from the snapshot must produce exactly the same rest
    /// (same rows, same order). Returns the snapshots.
    pub async fn check_exact_resume(
        spec: &dyn SourceSpec,
        parallelism: usize,
        before: usize,
        after: Option<usize>,
    ) -> Vec<Vec<Value>> {
        let mut snapshots = Vec::new();
        for i in 0..parallelism {
            let mut source = start(spec, i, parallelism, None).await.unwrap();
            let first = poll(source.as_mut(), Some(before)).await.unwrap();
            let state = source.snapshot_state(1).await.unwrap();
            let rest = poll(source.as_mut(), after).await.unwrap();
            let mut restored = start(spec, i, parallelism, Some(state.clone())).await.unwrap();
            let resumed = poll(restored.as_mut(), after).await.unwrap();
            assert!(
                !rows(&first).is_empty(),
                "subtask {i}: nothing before the snapshot"
            );
            assert_eq!(
                rows(&resumed),
                rows(&rest),
                "subtask {i}: the rest after {state:?}"
            );
            for b in &resumed {
                assert_eq!(b.schema(), spec.schema());
            }
            snapshots.push(state);
        }
        snapshots
    }

    /// Runs every subtask of `from` for `before` batches, snapshots them all,
    /// restores at parallelism `to` with the entries dealt as the engine
    /// does, and runs the restored subtasks to the end: the rows before plus
    /// the rows after must be the rows of an uninterrupted run at `from`.
    pub async fn check_rescale(spec: &dyn SourceSpec, from: usize, to: usize, before: usize) {
        let mut reference = Vec::new();
        for i in 0..from {
            let mut s = start(spec, i, from, None).await.unwrap();
            reference.extend(poll(s.as_mut(), None).await.unwrap());
        }
        let mut seen = Vec::new();
        let mut states = Vec::new();
        for i in 0..from {
            let mut s = start(spec, i, from, None).await.unwrap();
            seen.extend(poll(s.as_mut(), Some(before)).await.unwrap());
            states.push(s.snapshot_state(1).await.unwrap());
        }
        for (i, share) in deal(&states, to).into_iter().enumerate() {
            let mut s = start(spec, i, to, Some(share)).await.unwrap();
            seen.extend(poll(s.as_mut(), None).await.unwrap());
        }
        assert_eq!(
            sorted_rows(&seen),
            sorted_rows(&reference),
            "{from} -> {to} subtasks after {before} batches"
        );
    }

    /// An unbounded source restored with no split waits forever.
    pub async fn check_idle_without_splits(spec: &dyn SourceSpec) {
        let mut s = start(spec, 0, 1, Some(Vec::new())).await.unwrap();
        let polled = tokio::time::timeout(std::time::Duration::from_millis(50), s.poll_next()).await;
        assert!(polled.is_err(), "an unbounded source without splits must wait");
        assert!(s.snapshot_state(2).await.unwrap().is_empty());
    }
}

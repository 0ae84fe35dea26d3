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
            SourceEvent::Batch(b) => {
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

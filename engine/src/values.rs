//! A bounded source of batches known at planning time (`VALUES`, `SELECT 1`).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use serde_json::{Value, json};

use crate::message::CheckpointId;
use crate::operator::OperatorContext;
use crate::source::{Source, SourceEvent, SourceSpec};

/// The key of the position in a values source's state entry.
const ROWS_EMITTED: &str = "rows_emitted";

/// Emits its batches once, then finishes. Parallelism 1.
#[derive(Debug, Clone)]
pub struct ValuesSpec {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl SourceSpec for ValuesSpec {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn max_parallelism(&self) -> Option<usize> {
        Some(1)
    }

    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Source>> {
        Ok(Box::new(ValuesSource {
            batches: self.batches.clone().into_iter(),
            rows_emitted: 0,
        }))
    }
}

/// State: one entry `{"rows_emitted": n}`, the number of rows returned so
/// far. A restore skips that many rows (splitting a batch if needed), so the
/// source resumes exactly after the last batch of the checkpoint.
struct ValuesSource {
    batches: std::vec::IntoIter<RecordBatch>,
    rows_emitted: u64,
}

#[async_trait]
impl Source for ValuesSource {
    async fn initialize_state(&mut self, ctx: &OperatorContext, state: Option<Vec<Value>>) -> Result<()> {
        let Some(entries) = state else {
            return Ok(());
        };
        let bad = |what: &str| {
            DataFusionError::Execution(format!(
                "source {}: cannot resume from the checkpoint: {what}",
                ctx.operator_name
            ))
        };
        let mut skip = match entries.as_slice() {
            // No entry assigned to this subtask: it has nothing to read.
            [] => {
                self.batches = Vec::new().into_iter();
                return Ok(());
            }
            [entry] => entry
                .get(ROWS_EMITTED)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(&format!("expected {{\"{ROWS_EMITTED}\": n}}, found {entry}")))?,
            _ => return Err(bad(&format!("expected one entry, found {}", entries.len()))),
        };
        let total: u64 = self.batches.as_slice().iter().map(|b| b.num_rows() as u64).sum();
        if skip > total {
            return Err(bad(&format!(
                "it has emitted {skip} rows, but the query's VALUES have only {total}"
            )));
        }
        self.rows_emitted = skip;
        let mut rest = Vec::new();
        for batch in std::mem::take(&mut self.batches) {
            let n = batch.num_rows() as u64;
            if skip >= n {
                skip -= n;
            } else {
                rest.push(batch.slice(skip as usize, (n - skip) as usize));
                skip = 0;
            }
        }
        self.batches = rest.into_iter();
        Ok(())
    }

    async fn poll_next(&mut self) -> Result<SourceEvent> {
        Ok(match self.batches.next() {
            Some(b) => {
                self.rows_emitted += b.num_rows() as u64;
                SourceEvent::Batch(b)
            }
            None => SourceEvent::Finished,
        })
    }

    async fn snapshot_state(&mut self, _checkpoint_id: CheckpointId) -> Result<Vec<Value>> {
        Ok(vec![json!({ ROWS_EMITTED: self.rows_emitted })])
    }
}

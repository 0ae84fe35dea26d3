//! A bounded source of batches known at planning time (`VALUES`, `SELECT 1`).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;

use crate::source::{Source, SourceEvent, SourceSpec};

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
        }))
    }
}

struct ValuesSource {
    batches: std::vec::IntoIter<RecordBatch>,
}

#[async_trait]
impl Source for ValuesSource {
    async fn poll_next(&mut self) -> Result<SourceEvent> {
        Ok(match self.batches.next() {
            Some(b) => SourceEvent::Batch(b),
            None => SourceEvent::Finished,
        })
    }
}

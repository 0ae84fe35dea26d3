//! UNION ALL: every input passed through, watermarks min-merged by the runtime.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;

use crate::operator::{Operator, Output};

/// Forwards the batches of all its inputs, relabelled to one schema.
#[derive(Debug, Clone)]
pub struct Union {
    pub schema: SchemaRef,
}

#[async_trait]
impl Operator for Union {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(RecordBatch::try_new(
            self.schema.clone(),
            batch.columns().to_vec(),
        )?);
        Ok(())
    }
}

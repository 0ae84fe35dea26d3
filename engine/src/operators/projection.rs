//! Projection: DataFusion physical expressions evaluated on each batch.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExpr;

use crate::changelog::ops_of;
use crate::operator::{Operator, Output};

/// Computes `exprs` over each input batch. On an updating stream the row
/// kinds are carried over unchanged.
#[derive(Debug, Clone)]
pub struct Projection {
    pub exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The output schema (with the row-kind column if the input is updating).
    pub schema: SchemaRef,
}

#[async_trait]
impl Operator for Projection {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let mut columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>>>()?;
        if let Some(ops) = ops_of(&batch) {
            columns.push(Arc::new(ops.clone()));
        }
        out.emit(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}

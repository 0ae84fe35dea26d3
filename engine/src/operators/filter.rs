//! Filter: a DataFusion physical predicate evaluated on each batch.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;

use crate::operator::{Operator, Output};

/// Keeps the rows for which `predicate` is true (NULL counts as false). The
/// row-kind column of an updating stream is filtered along with the rows.
#[derive(Debug, Clone)]
pub struct Filter {
    pub predicate: Arc<dyn PhysicalExpr>,
}

#[async_trait]
impl Operator for Filter {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = self.predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| DataFusionError::Plan("a WHERE predicate must be a boolean".into()))?;
        let mask = super::aggregates::nulls_as_false(mask);
        if mask.true_count() == batch.num_rows() {
            out.emit(batch);
        } else {
            out.emit(super::select_rows::filter_rows(&batch, &mask)?);
        }
        Ok(())
    }
}

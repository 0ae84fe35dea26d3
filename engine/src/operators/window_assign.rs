//! A window TVF read directly (no aggregate): each row once per window it
//! belongs to, with `window_start`, `window_end` and `window_time` appended.

use std::sync::Arc;

use arrow::array::{Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{Result, plan_err};
use datafusion::physical_expr::PhysicalExpr;

use super::window::{WindowKind, timestamps_from_ns};
use crate::operator::{Operator, Output};
use crate::watermark::to_event_time;

/// Assigns windows to rows (TUMBLE, HOP, CUMULATE). Rows with a NULL time
/// belong to no window and are not emitted (as in Flink).
#[derive(Debug, Clone)]
pub struct WindowAssign {
    pub window: WindowKind,
    pub time_column: Arc<dyn PhysicalExpr>,
    /// The input columns followed by `window_start`, `window_end`, `window_time`.
    pub schema: SchemaRef,
}

impl WindowAssign {
    pub fn new(window: WindowKind, time_column: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Result<Self> {
        if matches!(window, WindowKind::Session { .. }) {
            return plan_err!(
                "a SESSION window table function must be aggregated: GROUP BY window_start, window_end"
            );
        }
        Ok(WindowAssign {
            window,
            time_column,
            schema,
        })
    }
}

#[async_trait]
impl Operator for WindowAssign {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let times = self.time_column.evaluate(&batch)?.into_array(n)?;
        let times = to_event_time(times.as_ref())?;
        let (mut rows, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..n {
            if times.is_null(r) {
                continue;
            }
            self.window.for_each_window(times.value(r), |s, e| {
                rows.push(r as u32);
                starts.push(s);
                ends.push(e);
            });
        }
        let taken = take_record_batch(&batch, &UInt32Array::from(rows))?;
        let nf = self.schema.fields().len();
        let mut columns = taken.columns().to_vec();
        let ty = |i: usize| self.schema.field(i).data_type().clone();
        columns.push(timestamps_from_ns(&ty(nf - 3), starts.iter().copied())?);
        columns.push(timestamps_from_ns(&ty(nf - 2), ends.iter().copied())?);
        columns.push(timestamps_from_ns(&ty(nf - 1), ends.iter().map(|e| e - 1))?);
        out.emit(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}

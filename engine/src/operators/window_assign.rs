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
        // Each row in one window (TUMBLE, no NULL time): the input's columns as they are.
        let identity = rows.len() == n && rows.iter().enumerate().all(|(i, &r)| i as u32 == r);
        let mut columns = if identity {
            batch.columns().to_vec()
        } else {
            take_record_batch(&batch, &UInt32Array::from(rows))?
                .columns()
                .to_vec()
        };
        let nf = self.schema.fields().len();
        let ty = |i: usize| self.schema.field(i).data_type().clone();
        columns.push(timestamps_from_ns(&ty(nf - 3), starts.iter().copied())?);
        columns.push(timestamps_from_ns(&ty(nf - 2), ends.iter().copied())?);
        columns.push(timestamps_from_ns(&ty(nf - 1), ends.iter().map(|e| e - 1))?);
        out.emit(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::col;

    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn assign(window: WindowKind, times: Vec<Option<i64>>) -> (RecordBatch, RecordBatch) {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let input = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("t", ts.clone(), true),
        ]));
        let mut fields = input.fields().to_vec();
        for name in ["window_start", "window_end", "window_time"] {
            fields.push(Arc::new(Field::new(name, ts.clone(), false)));
        }
        let n = times.len() as i64;
        let batch = RecordBatch::try_new(
            input.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(TimestampMillisecondArray::from(times)),
            ],
        )
        .unwrap();
        let mut op =
            WindowAssign::new(window, col("t", &input).unwrap(), Arc::new(Schema::new(fields))).unwrap();
        let mut out = Output::default();
        futures::executor::block_on(op.process_batch(0, batch.clone(), &mut out)).unwrap();
        let emitted = match out.into_messages().pop() {
            Some(crate::message::Message::Batch(b)) => b,
            _ => panic!("a batch"),
        };
        (batch, emitted)
    }

    fn values(b: &RecordBatch, c: usize) -> Vec<i64> {
        let c = arrow::compute::cast(b.column(c), &DataType::Int64).unwrap();
        c.as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
    }

    #[test]
    fn tumbling_windows_keep_the_input_columns_as_they_are() {
        let tumble = WindowKind::Tumble {
            size: 10 * SEC,
            offset: 0,
        };
        let (input, out) = assign(tumble, vec![Some(1_000), Some(12_000), Some(9_999)]);
        assert!(
            out.column(0).to_data().ptr_eq(&input.column(0).to_data()),
            "not copied"
        );
        assert_eq!(values(&out, 2), [0, 10_000, 0]);
        assert_eq!(values(&out, 3), [10_000, 20_000, 10_000]);

        // A row without a time belongs to no window.
        let (_, out) = assign(tumble, vec![Some(1_000), None, Some(12_000)]);
        assert_eq!(values(&out, 0), [0, 2]);
        assert_eq!(values(&out, 2), [0, 10_000]);
    }

    #[test]
    fn hopping_windows_repeat_each_row_per_window() {
        let hop = WindowKind::Hop {
            slide: 5 * SEC,
            size: 10 * SEC,
            offset: 0,
        };
        let (_, out) = assign(hop, vec![Some(1_000), Some(7_000)]);
        assert_eq!(values(&out, 0), [0, 0, 1, 1]);
        assert_eq!(values(&out, 3), [5_000, 10_000, 10_000, 15_000]);
    }
}

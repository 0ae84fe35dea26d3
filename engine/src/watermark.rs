//! Watermarks: generation at sources, min-merging over inputs.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::compute::kernels::aggregate::max;
use arrow::compute::{cast, kernels::cast::CastOptions};
use arrow::datatypes::{
    DataType, Schema, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

use crate::message::{EventTime, Watermark};

/// Casts a timestamp (or integer millisecond) array to event time in ns.
pub fn to_event_time(array: &dyn Array) -> Result<Int64Array> {
    let as_ns = match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, None) => array.slice(0, array.len()),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => cast(
            &arrow::array::make_array(array.to_data()),
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )?,
        other => {
            return Err(DataFusionError::Plan(format!(
                "event time must be a TIMESTAMP, found {other}"
            )));
        }
    };
    let ints = arrow::compute::cast_with_options(&as_ns, &DataType::Int64, &CastOptions::default())?;
    Ok(ints
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64 yields Int64Array")
        .clone())
}

/// A table's `WATERMARK FOR col AS expr`: the watermark is the largest value
/// of `expr` seen so far (Flink's bounded out-of-orderness when `expr` is
/// `col - INTERVAL ...`).
///
/// Built once per source with [`WatermarkStrategy::new`], which recognizes
/// the usual shapes `col` and `col ± <fixed interval>`: for those the largest
/// value of `expr` is the largest `col` shifted by the interval, so a batch
/// costs one `max` kernel instead of evaluating `expr` on every row (arrow
/// adds intervals to timestamps row by row, through calendar arithmetic).
#[derive(Debug, Clone)]
pub struct WatermarkStrategy {
    /// Evaluated on every source batch; a TIMESTAMP.
    pub expr: Arc<dyn PhysicalExpr>,
    /// The rowtime column the watermark is declared for (for display).
    pub column: String,
    /// `expr` as a column shifted by a fixed delay, when it has that shape.
    shifted: Option<ShiftedColumn>,
}

/// `expr` = the column at `index` minus `delay_ns` (an exact number of the
/// column's time units, so the shortcut and `expr` agree to the unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShiftedColumn {
    index: usize,
    delay_ns: i64,
}

impl WatermarkStrategy {
    /// A strategy evaluating `expr` (of `input`'s rows) for the rowtime `column`.
    pub fn new(expr: Arc<dyn PhysicalExpr>, column: impl Into<String>, input: &Schema) -> Self {
        let shifted = ShiftedColumn::of(&expr, input);
        WatermarkStrategy {
            expr,
            column: column.into(),
            shifted,
        }
    }

    /// The largest watermark value in `batch`, if any row has one.
    pub fn max_in(&self, batch: &RecordBatch) -> Result<Option<EventTime>> {
        if let Some(ShiftedColumn { index, delay_ns }) = self.shifted {
            let column = batch.column(index).as_ref();
            if let Some(max) = max_timestamp_ns(column) {
                return Ok(max.map(|t| t.saturating_sub(delay_ns)));
            }
            let ns = to_event_time(column)?;
            return Ok(max(&ns).map(|t| t.saturating_sub(delay_ns)));
        }
        let values = self.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let ns = to_event_time(values.as_ref())?;
        Ok(max(&ns))
    }
}

impl ShiftedColumn {
    /// `expr` as `column ± fixed interval` (or a bare timestamp column), if it is one.
    fn of(expr: &Arc<dyn PhysicalExpr>, input: &Schema) -> Option<ShiftedColumn> {
        let unit_ns = |index: usize| match input.fields().get(index)?.data_type() {
            DataType::Timestamp(unit, _) => Some(unit_ns(*unit)),
            _ => None,
        };
        if let Some(column) = expr.downcast_ref::<Column>() {
            unit_ns(column.index())?;
            return Some(ShiftedColumn {
                index: column.index(),
                delay_ns: 0,
            });
        }
        let binary = expr.downcast_ref::<BinaryExpr>()?;
        let column = binary.left().downcast_ref::<Column>()?;
        let literal = binary.right().downcast_ref::<Literal>()?;
        let interval_ns = match literal.value() {
            ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
                .checked_mul(NANOS_PER_DAY)?
                .checked_add(v.nanoseconds)?,
            ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
                .checked_mul(NANOS_PER_DAY)?
                .checked_add(i64::from(v.milliseconds).checked_mul(1_000_000)?)?,
            _ => return None,
        };
        let delay_ns = match binary.op() {
            Operator::Minus => interval_ns,
            Operator::Plus => interval_ns.checked_neg()?,
            _ => return None,
        };
        let unit = unit_ns(column.index())?;
        (delay_ns % unit == 0).then_some(ShiftedColumn {
            index: column.index(),
            delay_ns,
        })
    }
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Nanoseconds per `unit`.
fn unit_ns(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// The largest value of a timestamp column, in ns, from its largest value
/// in its own unit (scaling to ns is monotonic, so they agree): one `max`
/// kernel over the column as it is, where [`to_event_time`] would first
/// write a converted copy. `None` if the column is not a timestamp, or its
/// largest value does not fit in ns (then converting each row decides).
pub(crate) fn max_timestamp_ns(column: &dyn Array) -> Option<Option<EventTime>> {
    let DataType::Timestamp(unit, _) = column.data_type() else {
        return None;
    };
    let max = match unit {
        TimeUnit::Second => max(column.as_primitive::<TimestampSecondType>()),
        TimeUnit::Millisecond => max(column.as_primitive::<TimestampMillisecondType>()),
        TimeUnit::Microsecond => max(column.as_primitive::<TimestampMicrosecondType>()),
        TimeUnit::Nanosecond => max(column.as_primitive::<TimestampNanosecondType>()),
    };
    match max {
        None => Some(None),
        Some(max) => max.checked_mul(unit_ns(*unit)).map(Some),
    }
}

/// Per-split watermarks of one source subtask (Flink's per-partition
/// watermarks): each split (e.g. a Kafka partition) has its own largest
/// watermark candidate, and the subtask's watermark is their minimum, so a
/// split read ahead of the others cannot make their rows late.
///
/// A split that has produced nothing for `idle_timeout` stops holding the
/// minimum back until it produces again. A split known but never seen holds
/// it back (as in Flink) unless the idle timeout is set.
#[derive(Debug)]
pub struct SplitWatermarks {
    splits: std::collections::BTreeMap<u32, SplitWatermark>,
    idle_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy)]
struct SplitWatermark {
    value: Option<EventTime>,
    last_active: std::time::Instant,
}

impl SplitWatermarks {
    pub fn new(idle_timeout: Option<std::time::Duration>) -> Self {
        SplitWatermarks {
            splits: Default::default(),
            idle_timeout,
        }
    }

    /// Declares the splits the subtask reads (those already known keep their values).
    pub fn assign(&mut self, splits: &[u32], now: std::time::Instant) {
        self.splits.retain(|s, _| splits.contains(s));
        for &s in splits {
            self.splits.entry(s).or_insert(SplitWatermark {
                value: None,
                last_active: now,
            });
        }
    }

    /// Records rows of `split` whose largest watermark candidate is `candidate`.
    pub fn observe(&mut self, split: u32, candidate: Option<EventTime>, now: std::time::Instant) {
        let entry = self.splits.entry(split).or_insert(SplitWatermark {
            value: None,
            last_active: now,
        });
        entry.last_active = now;
        if let Some(c) = candidate {
            entry.value = Some(entry.value.map_or(c, |v| v.max(c)));
        }
    }

    /// The minimum over the splits that are not idle, if each of them has a
    /// value; `None` when one has none yet or every split is idle.
    pub fn combined(&self, now: std::time::Instant) -> Option<EventTime> {
        let active = self.splits.values().filter(|s| {
            self.idle_timeout
                .is_none_or(|t| now.saturating_duration_since(s.last_active) < t)
        });
        let mut min: Option<EventTime> = None;
        let mut any = false;
        for s in active {
            any = true;
            let v = s.value?;
            min = Some(min.map_or(v, |m| m.min(v)));
        }
        if any { min } else { None }
    }
}

/// Tracks the watermark of each input channel and their minimum.
///
/// Idle and ended channels do not hold the minimum back. If every channel is
/// idle, the combined status is idle.
#[derive(Debug)]
pub struct WatermarkTracker {
    channels: Vec<ChannelWatermark>,
    current: Option<EventTime>,
}

#[derive(Debug, Clone, Copy)]
struct ChannelWatermark {
    value: Option<EventTime>,
    idle: bool,
    ended: bool,
}

/// What changed after an input watermark update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkUpdate {
    /// The combined watermark advanced to this value.
    Advanced(EventTime),
    /// Every live input is idle now.
    Idle,
    /// Nothing to tell downstream.
    Unchanged,
}

impl WatermarkTracker {
    pub fn new(num_channels: usize) -> Self {
        WatermarkTracker {
            channels: vec![
                ChannelWatermark {
                    value: None,
                    idle: false,
                    ended: false
                };
                num_channels
            ],
            current: None,
        }
    }

    /// The combined watermark so far.
    pub fn current(&self) -> Option<EventTime> {
        self.current
    }

    /// Records a watermark from `channel`.
    pub fn update(&mut self, channel: usize, watermark: Watermark) -> WatermarkUpdate {
        let was_all_idle = self.all_idle();
        let ch = &mut self.channels[channel];
        match watermark {
            Watermark::Idle => ch.idle = true,
            Watermark::EventTime(t) => {
                ch.idle = false;
                ch.value = Some(ch.value.map_or(t, |v| v.max(t)));
            }
        }
        self.recompute(was_all_idle)
    }

    /// Records that `channel` has ended: it no longer holds the watermark back.
    pub fn end(&mut self, channel: usize) -> WatermarkUpdate {
        let was_all_idle = self.all_idle();
        self.channels[channel].ended = true;
        self.recompute(was_all_idle)
    }

    fn all_idle(&self) -> bool {
        let mut live = self.channels.iter().filter(|c| !c.ended).peekable();
        live.peek().is_some() && live.all(|c| c.idle)
    }

    fn recompute(&mut self, was_all_idle: bool) -> WatermarkUpdate {
        let live: Vec<&ChannelWatermark> = self.channels.iter().filter(|c| !c.ended && !c.idle).collect();
        if live.is_empty() {
            return if self.all_idle() && !was_all_idle {
                WatermarkUpdate::Idle
            } else {
                WatermarkUpdate::Unchanged
            };
        }
        if live.iter().any(|c| c.value.is_none()) {
            return WatermarkUpdate::Unchanged;
        }
        let min = live.iter().filter_map(|c| c.value).min().expect("non-empty");
        match self.current {
            Some(cur) if min <= cur => {
                if was_all_idle {
                    // Becoming active again: repeat the watermark so downstream
                    // knows this input is live.
                    WatermarkUpdate::Advanced(cur)
                } else {
                    WatermarkUpdate::Unchanged
                }
            }
            _ => {
                self.current = Some(min);
                WatermarkUpdate::Advanced(min)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::{Field, IntervalDayTime, IntervalMonthDayNano};

    /// The shortcut for `col ± fixed interval` gives what evaluating the
    /// expression gives, and other shapes (months) are evaluated.
    #[test]
    fn shifted_column_matches_the_expression() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]);
        let ts =
            TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None, Some(1_700_000_004_000)]);
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(ts)],
        )
        .unwrap();
        let col = || -> Arc<dyn PhysicalExpr> { Arc::new(Column::new("ts", 1)) };
        let shifted = |op: Operator, value: ScalarValue| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(col(), op, Arc::new(Literal::new(value))))
        };
        let cases = [
            (col(), Some(0)),
            (
                shifted(
                    Operator::Minus,
                    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 1, 4_000_000_000))),
                ),
                Some(NANOS_PER_DAY + 4_000_000_000),
            ),
            (
                shifted(
                    Operator::Plus,
                    ScalarValue::IntervalDayTime(Some(IntervalDayTime::new(0, 250))),
                ),
                Some(-250_000_000),
            ),
            (
                shifted(
                    Operator::Minus,
                    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(1, 0, 0))),
                ),
                None,
            ),
        ];
        for (expr, delay) in cases {
            let strategy = WatermarkStrategy::new(expr.clone(), "ts", &schema);
            assert_eq!(strategy.shifted.map(|s| s.delay_ns), delay, "{expr}");
            let general = WatermarkStrategy {
                shifted: None,
                ..strategy.clone()
            };
            assert_eq!(
                strategy.max_in(&batch).unwrap(),
                general.max_in(&batch).unwrap(),
                "{expr}"
            );
        }
    }

    /// The largest timestamp in ns, from the largest raw value, is what
    /// converting every row and taking the largest gives.
    #[test]
    fn largest_timestamp_of_a_column_without_converting_it() {
        use arrow::array::{TimestampNanosecondArray, TimestampSecondArray};
        let seconds = TimestampSecondArray::from(vec![Some(3), None, Some(-7), Some(5)]);
        assert_eq!(max_timestamp_ns(&seconds), Some(Some(5_000_000_000)));
        assert_eq!(max(&to_event_time(&seconds).unwrap()), Some(5_000_000_000));
        let millis = TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), Some(-1)]);
        assert_eq!(max_timestamp_ns(&millis), Some(Some(1_700_000_000_123_000_000)));
        let nanos = TimestampNanosecondArray::from(vec![None, Some(i64::MAX)]).with_timezone("UTC");
        assert_eq!(max_timestamp_ns(&nanos), Some(Some(i64::MAX)));
        assert_eq!(
            max_timestamp_ns(&TimestampSecondArray::from(vec![None, None])),
            Some(None)
        );
        // Out of range in ns, or not a timestamp: the caller converts each row.
        assert_eq!(
            max_timestamp_ns(&TimestampSecondArray::from(vec![i64::MAX / 10])),
            None
        );
        assert_eq!(max_timestamp_ns(&Int64Array::from(vec![1])), None);
    }

    #[test]
    fn minimum_over_live_inputs() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.update(0, Watermark::EventTime(10)), WatermarkUpdate::Unchanged);
        assert_eq!(t.update(1, Watermark::EventTime(5)), WatermarkUpdate::Advanced(5));
        assert_eq!(
            t.update(1, Watermark::EventTime(20)),
            WatermarkUpdate::Advanced(10)
        );
        assert_eq!(t.update(0, Watermark::EventTime(8)), WatermarkUpdate::Unchanged);
    }

    #[test]
    fn split_watermarks_take_the_minimum_of_active_splits() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(Some(Duration::from_secs(5)));
        w.assign(&[0, 1], t0);
        w.observe(0, Some(100), t0);
        assert_eq!(w.combined(t0), None, "split 1 has no value yet");
        w.observe(1, Some(40), t0);
        assert_eq!(w.combined(t0), Some(40));
        w.observe(1, Some(30), t0);
        assert_eq!(w.combined(t0), Some(40), "a split's value never goes back");
        let later = t0 + Duration::from_secs(6);
        w.observe(0, Some(200), later);
        assert_eq!(w.combined(later), Some(200), "split 1 is idle now");
        w.observe(1, None, later);
        assert_eq!(w.combined(later), Some(40), "active again: holds it back");
        w.assign(&[0], later);
        assert_eq!(w.combined(later), Some(200), "split 1 was taken away");
        let mut no_timeout = SplitWatermarks::new(None);
        no_timeout.assign(&[0, 1], t0);
        no_timeout.observe(0, Some(5), t0);
        assert_eq!(no_timeout.combined(t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn idle_and_ended_inputs_do_not_hold_back() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, Watermark::EventTime(10));
        assert_eq!(t.update(1, Watermark::Idle), WatermarkUpdate::Advanced(10));
        assert_eq!(t.update(0, Watermark::Idle), WatermarkUpdate::Idle);
        assert_eq!(
            t.update(0, Watermark::EventTime(30)),
            WatermarkUpdate::Advanced(30)
        );
        assert_eq!(t.update(1, Watermark::EventTime(12)), WatermarkUpdate::Unchanged);
        assert_eq!(t.end(1), WatermarkUpdate::Unchanged);
        assert_eq!(
            t.update(0, Watermark::EventTime(40)),
            WatermarkUpdate::Advanced(40)
        );
    }
}

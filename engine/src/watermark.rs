//! Watermarks: generation at sources, min-merging over inputs.

use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::compute::kernels::aggregate::max;
use arrow::compute::{cast, kernels::cast::CastOptions};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;

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
#[derive(Debug, Clone)]
pub struct WatermarkStrategy {
    /// Evaluated on every source batch; a TIMESTAMP.
    pub expr: Arc<dyn PhysicalExpr>,
    /// The rowtime column the watermark is declared for (for display).
    pub column: String,
}

impl WatermarkStrategy {
    /// The largest watermark value in `batch`, if any row has one.
    pub fn max_in(&self, batch: &RecordBatch) -> Result<Option<EventTime>> {
        let values = self.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let ns = to_event_time(values.as_ref())?;
        Ok(max(&ns))
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

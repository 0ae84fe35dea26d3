//! Event-time windows of Flink's window table-valued functions, and the
//! assignment of a timestamp to them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, plan_err};

use crate::message::EventTime;

/// A window table-valued function, with its durations in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(…, size [, offset])`: fixed, non-overlapping windows.
    Tumble { size: i64, offset: i64 },
    /// `HOP(…, slide, size [, offset])`: fixed windows every `slide`.
    Hop { slide: i64, size: i64, offset: i64 },
    /// `CUMULATE(…, step, max)`: windows `[s, s+step)`, `[s, s+2·step)`, …
    /// `[s, s+max)`, for every `s` that is a multiple of `max`.
    Cumulate { step: i64, max: i64, offset: i64 },
    /// `SESSION(…, gap)`: per key, rows closer than `gap` share a window.
    Session { gap: i64 },
}

impl WindowKind {
    /// Checks the durations (positive, and the multiples Flink requires).
    pub fn validate(&self) -> Result<()> {
        match *self {
            WindowKind::Tumble { size, .. } if size <= 0 => plan_err!("TUMBLE size must be positive"),
            WindowKind::Hop { slide, size, .. } if slide <= 0 || size <= 0 => {
                plan_err!("HOP slide and size must be positive")
            }
            WindowKind::Hop { slide, size, .. } if size % slide != 0 => plan_err!(
                "HOP size must be an integral multiple of the slide (size {} ms, slide {} ms)",
                size / 1_000_000,
                slide / 1_000_000
            ),
            WindowKind::Cumulate { step, max, .. } if step <= 0 || max <= 0 || max % step != 0 => {
                plan_err!("CUMULATE max size must be a positive integral multiple of the step")
            }
            WindowKind::Session { gap } if gap <= 0 => plan_err!("SESSION gap must be positive"),
            _ => Ok(()),
        }
    }

    /// The SQL name of the function.
    pub fn name(&self) -> &'static str {
        match self {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Cumulate { .. } => "CUMULATE",
            WindowKind::Session { .. } => "SESSION",
        }
    }

    /// Calls `f(start, end)` for every window (not session) containing `t`,
    /// in increasing order of end.
    #[inline]
    pub fn for_each_window(&self, t: EventTime, mut f: impl FnMut(EventTime, EventTime)) {
        match *self {
            WindowKind::Tumble { size, offset } => {
                let start = t - (t - offset).rem_euclid(size);
                f(start, start + size);
            }
            WindowKind::Hop { slide, size, offset } => {
                let last_start = t - (t - offset).rem_euclid(slide);
                let mut start = last_start - size + slide;
                while start <= last_start {
                    f(start, start + size);
                    start += slide;
                }
            }
            WindowKind::Cumulate { step, max, offset } => {
                let start = t - (t - offset).rem_euclid(max);
                let first_end = t - (t - offset).rem_euclid(step) + step;
                let mut end = first_end;
                while end <= start + max {
                    f(start, end);
                    end += step;
                }
            }
            WindowKind::Session { gap } => f(t, t + gap),
        }
    }
}

impl std::fmt::Display for WindowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = |ns: i64| humanize(ns);
        match *self {
            WindowKind::Tumble { size, .. } => write!(f, "TUMBLE(size={})", d(size)),
            WindowKind::Hop { slide, size, .. } => write!(f, "HOP(slide={}, size={})", d(slide), d(size)),
            WindowKind::Cumulate { step, max, .. } => write!(f, "CUMULATE(step={}, max={})", d(step), d(max)),
            WindowKind::Session { gap } => write!(f, "SESSION(gap={})", d(gap)),
        }
    }
}

fn humanize(ns: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "min"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
    ];
    for (unit, name) in UNITS {
        if ns % unit == 0 {
            return format!("{}{name}", ns / unit);
        }
    }
    format!("{ns}ns")
}

/// Builds a timestamp column of `data_type` (any unit) from event times in ns,
/// rounding down.
pub fn timestamps_from_ns(data_type: &DataType, values: impl Iterator<Item = EventTime>) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, tz) = data_type else {
        return plan_err!("window columns must be TIMESTAMPs, not {data_type}");
    };
    let div = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    let v: Vec<i64> = values.map(|ns| ns.div_euclid(div)).collect();
    let tz = tz.clone();
    Ok(match unit {
        TimeUnit::Second => Arc::new(TimestampSecondArray::from(v).with_timezone_opt(tz)),
        TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(v).with_timezone_opt(tz)),
        TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(v).with_timezone_opt(tz)),
        TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(v).with_timezone_opt(tz)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(k: WindowKind, t: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        k.for_each_window(t, |s, e| v.push((s, e)));
        v
    }

    #[test]
    fn assignment() {
        assert_eq!(
            windows(WindowKind::Tumble { size: 10, offset: 0 }, 25),
            vec![(20, 30)]
        );
        assert_eq!(
            windows(WindowKind::Tumble { size: 10, offset: 0 }, -5),
            vec![(-10, 0)]
        );
        assert_eq!(
            windows(
                WindowKind::Hop {
                    slide: 5,
                    size: 15,
                    offset: 0
                },
                12
            ),
            vec![(0, 15), (5, 20), (10, 25)]
        );
        assert_eq!(
            windows(
                WindowKind::Cumulate {
                    step: 2,
                    max: 6,
                    offset: 0
                },
                9
            ),
            vec![(6, 10), (6, 12)]
        );
        assert_eq!(
            windows(
                WindowKind::Cumulate {
                    step: 2,
                    max: 6,
                    offset: 0
                },
                6
            ),
            vec![(6, 8), (6, 10), (6, 12)]
        );
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(
            WindowKind::Tumble {
                size: 60_000_000_000,
                offset: 0
            }
            .to_string(),
            "TUMBLE(size=1min)"
        );
    }
}

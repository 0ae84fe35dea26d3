//! Event-time helpers shared by the generators: start-time options and unit
//! conversions.

use arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use arrow::datatypes::TimeUnit;
use datafusion::common::{Result, plan_err};
use weir_engine::connector::ConnectorOptions;

/// 2024-01-01 00:00:00 UTC in nanoseconds since the epoch: the event time at
/// which generators that are not rate-limited start by default, so that their
/// output is reproducible.
pub const DEFAULT_START_NS: i64 = 1_704_067_200_000_000_000;

/// Nanoseconds per millisecond.
pub const NANOS_PER_MILLI: i64 = 1_000_000;

/// The event time at which a generator starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTime {
    /// The wall-clock time when the job's source subtasks are created.
    Now,
    /// A fixed instant, in nanoseconds since the epoch.
    Fixed(i64),
}

impl StartTime {
    /// The start in nanoseconds since the epoch (`Now` reads the clock).
    pub fn resolve(self) -> i64 {
        match self {
            StartTime::Fixed(ns) => ns,
            StartTime::Now => now_ns(),
        }
    }
}

/// The wall-clock time in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Reads a start-time option: `now`, an integer number of milliseconds since
/// the epoch, or a timestamp such as `2024-01-01 00:00:00` or
/// `2024-01-01T00:00:00Z` (UTC unless it names an offset).
pub fn get_start_time(options: &ConnectorOptions, key: &str) -> Result<Option<StartTime>> {
    let Some(raw) = options.get(key) else {
        return Ok(None);
    };
    let v = raw.trim();
    if v.eq_ignore_ascii_case("now") {
        return Ok(Some(StartTime::Now));
    }
    if let Ok(ms) = v.parse::<i64>() {
        return match ms.checked_mul(NANOS_PER_MILLI) {
            Some(ns) => Ok(Some(StartTime::Fixed(ns))),
            None => plan_err!("invalid value '{raw}' for option '{key}': out of range"),
        };
    }
    match string_to_timestamp_nanos(v) {
        Ok(ns) => Ok(Some(StartTime::Fixed(ns))),
        Err(_) => plan_err!(
            "invalid value '{raw}' for option '{key}': expected 'now', milliseconds since the epoch, or a timestamp such as '2024-01-01 00:00:00'"
        ),
    }
}

/// Reads a duration option as nanoseconds.
pub fn get_duration_ns(options: &ConnectorOptions, key: &str) -> Result<Option<i64>> {
    Ok(options
        .get_duration(key)?
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
}

/// Converts nanoseconds since the epoch to `unit` (flooring).
#[inline]
pub fn ns_to_unit(ns: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => ns.div_euclid(1_000_000_000),
        TimeUnit::Millisecond => ns.div_euclid(1_000_000),
        TimeUnit::Microsecond => ns.div_euclid(1_000),
        TimeUnit::Nanosecond => ns,
    }
}

/// Converts milliseconds since the epoch to `unit` (saturating).
#[inline]
pub fn ms_to_unit(ms: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => ms.div_euclid(1_000),
        TimeUnit::Millisecond => ms,
        TimeUnit::Microsecond => ms.saturating_mul(1_000),
        TimeUnit::Nanosecond => ms.saturating_mul(1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(k: &str, v: &str) -> ConnectorOptions {
        ConnectorOptions::new([(k.to_string(), v.to_string())].into_iter().collect())
    }

    #[test]
    fn start_times_in_all_forms() {
        let get = |v| get_start_time(&opts("t", v), "t");
        assert_eq!(get("now").unwrap(), Some(StartTime::Now));
        assert_eq!(
            get("1704067200000").unwrap(),
            Some(StartTime::Fixed(DEFAULT_START_NS))
        );
        assert_eq!(
            get("2024-01-01 00:00:00").unwrap(),
            Some(StartTime::Fixed(DEFAULT_START_NS))
        );
        assert_eq!(
            get("2024-01-01T00:00:00Z").unwrap(),
            Some(StartTime::Fixed(DEFAULT_START_NS))
        );
        let err = get("yesterday").unwrap_err().to_string();
        assert!(err.contains("'t'"), "{err}");
        assert_eq!(get_start_time(&opts("t", "now"), "other").unwrap(), None);
    }

    #[test]
    fn unit_conversions_floor() {
        assert_eq!(ns_to_unit(1_999_999_999, TimeUnit::Second), 1);
        assert_eq!(ns_to_unit(-1, TimeUnit::Millisecond), -1);
        assert_eq!(ms_to_unit(1_500, TimeUnit::Second), 1);
        assert_eq!(ms_to_unit(2, TimeUnit::Microsecond), 2_000);
    }
}

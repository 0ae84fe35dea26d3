//! Typed readers of generator options shared by several connectors, on top
//! of [`ConnectorOptions`]'s: every error names the option.

use datafusion::common::{Result, plan_err};
use weir_engine::connector::ConnectorOptions;

/// The largest `batch-size` accepted.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// Reads a probability option (a number in `[0, 1]`).
pub fn get_rate(options: &ConnectorOptions, key: &str) -> Result<Option<f64>> {
    match options.get_f64(key)? {
        Some(p) if !(0.0..=1.0).contains(&p) => {
            plan_err!("invalid value '{p}' for option '{key}': expected a number between 0 and 1")
        }
        other => Ok(other),
    }
}

/// Reads a rate option (units per second, `>= 0`; 0 means unlimited).
pub fn get_per_second(options: &ConnectorOptions, key: &str) -> Result<Option<f64>> {
    match options.get_f64(key)? {
        Some(r) if !(r.is_finite() && r >= 0.0) => {
            plan_err!("invalid value '{r}' for option '{key}': expected a number >= 0 (0 = unlimited)")
        }
        other => Ok(other),
    }
}

/// Reads a `batch-size` option: rows per batch, in `1..=MAX_BATCH_SIZE`.
pub fn get_batch_size(options: &ConnectorOptions, key: &str, default: usize) -> Result<usize> {
    match options.get_u64(key)? {
        None => Ok(default),
        Some(n) if n >= 1 && n <= MAX_BATCH_SIZE as u64 => Ok(n as usize),
        Some(n) => plan_err!(
            "invalid value '{n}' for option '{key}': expected an integer from 1 to {MAX_BATCH_SIZE}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(k: &str, v: &str) -> ConnectorOptions {
        ConnectorOptions::new([(k.to_string(), v.to_string())].into_iter().collect())
    }

    #[test]
    fn rates_are_validated() {
        assert!(get_rate(&opts("r", "1.5"), "r").is_err());
        assert_eq!(get_rate(&opts("r", "0.25"), "r").unwrap(), Some(0.25));
        assert!(get_per_second(&opts("r", "-1"), "r").is_err());
    }

    #[test]
    fn batch_sizes_are_bounded() {
        assert_eq!(get_batch_size(&opts("b", "10"), "b", 5).unwrap(), 10);
        assert_eq!(get_batch_size(&opts("x", "10"), "b", 5).unwrap(), 5);
        assert!(
            get_batch_size(&opts("b", "0"), "b", 5)
                .unwrap_err()
                .to_string()
                .contains("'b'")
        );
        assert!(get_batch_size(&opts("b", "99999999999"), "b", 5).is_err());
    }
}

//! Restart strategies (`restart-strategy.type`): whether, and after how long,
//! a failed job restarts from its latest completed checkpoint.

use std::collections::VecDeque;
use std::time::Duration;

/// `restart-strategy.type` and its settings, as Flink names them.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// `none`: a failure fails the job.
    None,
    /// `fixed-delay`: up to `attempts` restarts, `delay` apart.
    FixedDelay { attempts: u32, delay: Duration },
    /// `failure-rate`: restart after `delay` unless more than
    /// `max_failures` failures happened within `interval`.
    FailureRate {
        max_failures: u32,
        interval: Duration,
        delay: Duration,
    },
    /// `exponential-delay`: delays grow from `initial` by `multiplier` up to
    /// `max`; reset to `initial` after `reset_threshold` without failure;
    /// at most `attempts` restarts in a row.
    ExponentialDelay {
        initial: Duration,
        max: Duration,
        multiplier: f64,
        reset_threshold: Duration,
        attempts: u32,
    },
}

/// The decisions of one job's restart strategy. Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    restarts: u32,
    failures: VecDeque<u64>,
    current_delay: Option<Duration>,
    last_failure_ms: Option<u64>,
}

impl RestartTracker {
    pub fn new(strategy: RestartStrategy) -> Self {
        RestartTracker {
            strategy,
            restarts: 0,
            failures: VecDeque::new(),
            current_delay: None,
            last_failure_ms: None,
        }
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// A failure at `now_ms`: the delay before restarting, or `None` to fail
    /// the job (with the reason).
    pub fn on_failure(&mut self, now_ms: u64) -> Result<Duration, String> {
        let since_last = self.last_failure_ms.map(|t| now_ms.saturating_sub(t));
        self.last_failure_ms = Some(now_ms);
        let delay = match &self.strategy {
            RestartStrategy::None => return Err("restart-strategy.type is 'none'".into()),
            RestartStrategy::FixedDelay { attempts, delay } => {
                if self.restarts >= *attempts {
                    return Err(format!(
                        "fixed-delay restart strategy: {attempts} attempts used up"
                    ));
                }
                *delay
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                let window = interval.as_millis() as u64;
                self.failures.push_back(now_ms);
                while self
                    .failures
                    .front()
                    .is_some_and(|t| now_ms.saturating_sub(*t) > window)
                {
                    self.failures.pop_front();
                }
                if self.failures.len() as u32 > *max_failures {
                    return Err(format!(
                        "failure-rate restart strategy: more than {max_failures} failures within {interval:?}"
                    ));
                }
                *delay
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                reset_threshold,
                attempts,
            } => {
                if since_last.is_some_and(|d| d >= reset_threshold.as_millis() as u64) {
                    self.current_delay = None;
                    self.restarts = 0;
                }
                if self.restarts >= *attempts {
                    return Err(format!(
                        "exponential-delay restart strategy: {attempts} attempts used up"
                    ));
                }
                let next = match self.current_delay {
                    None => *initial,
                    Some(d) => d.mul_f64(*multiplier).min(*max),
                };
                self.current_delay = Some(next);
                next
            }
        };
        self.restarts += 1;
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn none_never_restarts() {
        assert!(RestartTracker::new(RestartStrategy::None).on_failure(0).is_err());
    }

    #[test]
    fn fixed_delay_counts_attempts() {
        let mut t = RestartTracker::new(RestartStrategy::FixedDelay {
            attempts: 2,
            delay: S,
        });
        assert_eq!(t.on_failure(0), Ok(S));
        assert_eq!(t.on_failure(10), Ok(S));
        assert!(t.on_failure(20).is_err());
        assert_eq!(t.restarts(), 2);
    }

    #[test]
    fn failure_rate_counts_within_the_interval() {
        let mut t = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(60),
            delay: S,
        });
        assert!(t.on_failure(0).is_ok());
        assert!(t.on_failure(1_000).is_ok());
        assert!(t.on_failure(2_000).is_err(), "3 failures in a minute");
        let mut t = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(60),
            delay: S,
        });
        for i in 0..10 {
            assert!(t.on_failure(i * 40_000).is_ok(), "spread out failures are fine");
        }
    }

    #[test]
    fn exponential_delay_grows_caps_and_resets() {
        let mut t = RestartTracker::new(RestartStrategy::ExponentialDelay {
            initial: S,
            max: Duration::from_secs(5),
            multiplier: 2.0,
            reset_threshold: Duration::from_secs(100),
            attempts: 10,
        });
        let delays: Vec<u64> = (0..5).map(|i| t.on_failure(i).unwrap().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
        assert_eq!(t.on_failure(1_000_000).unwrap(), S, "reset after a quiet period");
    }
}

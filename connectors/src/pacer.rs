//! Wall-clock rate limiting for the generators.

use std::time::Duration;

use tokio::time::Instant;

/// How far behind schedule a generator may fall before the schedule is reset
/// (so that a stalled pipeline is not followed by an unbounded burst).
const MAX_LAG: Duration = Duration::from_secs(1);

/// Paces a generator to `per_second` units (rows or events) per second.
///
/// The generator numbers its units globally (`0, 1, 2, ...`, whatever the
/// subtask); unit `u` is due `u / per_second` seconds after the first call to
/// [`wait_until_due`](Pacer::wait_until_due). A generator calls it *before*
/// producing a batch, with the number of units up to the end of that batch,
/// and produces the batch only once it returns: waiting never follows
/// production, so dropping the future (cancel safety) loses nothing.
///
/// A generator that falls more than a second behind (backpressure) does not
/// try to catch up in a burst: its schedule restarts from now.
///
/// A generator resumed from a checkpoint at unit `u` paces from there
/// ([`Pacer::resuming`]): unit `u` is due at the first wait, as if the job had
/// just started, rather than `u / per_second` seconds later.
#[derive(Debug, Clone)]
pub struct Pacer {
    per_second: f64,
    /// The unit due at `origin` (0 on a fresh start).
    base: u64,
    /// When unit `base` was due; set by the first wait.
    origin: Option<Instant>,
}

impl Pacer {
    /// A pacer for `per_second` units per second; 0 (or a non-finite or
    /// negative value) means unlimited.
    pub fn new(per_second: f64) -> Self {
        Self::resuming(per_second, 0)
    }

    /// A pacer whose schedule starts at unit `base` (a generator resumed
    /// there): the units before it are taken as already produced.
    pub fn resuming(per_second: f64, base: u64) -> Self {
        Pacer {
            per_second,
            base,
            origin: None,
        }
    }

    /// Whether this pacer ever waits.
    pub fn is_limited(&self) -> bool {
        self.per_second.is_finite() && self.per_second > 0.0
    }

    /// How many units a batch should hold so that batches are produced about
    /// ten times a second by each of `parallelism` subtasks: at least 1, at
    /// most `max`.
    pub fn batch_len(&self, parallelism: usize, max: usize) -> usize {
        if !self.is_limited() {
            return max.max(1);
        }
        let per_subtask_tick = self.per_second / parallelism.max(1) as f64 / 10.0;
        (per_subtask_tick.ceil() as usize).clamp(1, max.max(1))
    }

    /// Waits until the first `units` units are due. Cancel-safe.
    pub async fn wait_until_due(&mut self, units: u64) {
        if !self.is_limited() {
            return;
        }
        let now = Instant::now();
        let origin = *self.origin.get_or_insert(now);
        let due = Duration::try_from_secs_f64(units.saturating_sub(self.base) as f64 / self.per_second)
            .ok()
            .and_then(|offset| Some((offset, origin.checked_add(offset)?)));
        let Some((offset, due)) = due else {
            // Not due in any foreseeable future (an absurdly low rate).
            return std::future::pending().await;
        };
        if now > due + MAX_LAG {
            // Far behind: restart the schedule so that `units` are due now.
            self.origin = Some(now.checked_sub(offset).unwrap_or(now));
            return;
        }
        if due > now {
            tokio::time::sleep_until(due).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_len_follows_the_rate() {
        assert_eq!(Pacer::new(0.0).batch_len(4, 1024), 1024);
        assert_eq!(Pacer::new(10.0).batch_len(1, 1024), 1);
        assert_eq!(Pacer::new(10_000.0).batch_len(2, 1024), 500);
        assert_eq!(Pacer::new(1e9).batch_len(1, 1024), 1024);
        assert!(!Pacer::new(f64::NAN).is_limited());
    }

    #[tokio::test]
    async fn unlimited_and_first_units_do_not_wait() {
        let mut unlimited = Pacer::new(0.0);
        unlimited.wait_until_due(u64::MAX).await;
        let mut pacer = Pacer::new(1e6);
        pacer.wait_until_due(0).await;
        pacer.wait_until_due(1).await;
        assert!(pacer.origin.is_some());
    }

    #[tokio::test]
    async fn a_resumed_pacer_does_not_wait_for_the_units_before_it() {
        // 10 units per second resumed at unit 1000: unit 1001 is due at once,
        // not 100 s after the first wait.
        let mut pacer = Pacer::resuming(10.0, 1000);
        let start = Instant::now();
        pacer.wait_until_due(1001).await;
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}

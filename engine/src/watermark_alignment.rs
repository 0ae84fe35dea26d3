//! Watermark alignment: the subtasks of a source read in step in event time.
//!
//! Subtasks of one source are scheduled independently; unthrottled, one can
//! run seconds of event time ahead of another. Downstream the watermark is
//! the minimum of them, so every row of the fast subtask waits in window or
//! join state until the slow one catches up, and that state grows for as long
//! as the skew does. Flink's answer is `scan.watermark.alignment.max-drift`:
//! a subtask whose watermark is more than the drift ahead of the slowest
//! subtask's stops reading until it is not. weir takes the same table
//! options: the group is the table's source (all of its subtasks), or, with
//! `scan.watermark.alignment.group`, the subtasks of every table of the
//! group (e.g. the two inputs of a join), each with its table's drift.
//!
//! A subtask that is idle, has finished, or has no watermark yet does not
//! hold the others back. As in Flink, a subtask that stops receiving rows
//! without being marked idle (`scan.watermark.idle-timeout`) holds them
//! back until it gets rows again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::message::EventTime;

/// How long a paused subtask waits before it checks
/// [`may_read`](WatermarkAlignment::may_read) again. A timer, not a wake-up
/// from the subtask that advanced: tokio runs a task woken by another on
/// the waker's worker next, so waking from the hot path would put the
/// subtasks of a source on one worker thread, taking turns (measured: half
/// the throughput of q0).
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(1);

/// What a slot holds for a subtask that holds no one back.
const UNCONSTRAINED: i64 = i64::MAX;

/// The shared watermarks of the subtasks of one source (or of all sources
/// of one alignment group), and the rule of [`may_read`](Self::may_read).
///
/// Lifecycle: created once per source or group when the job is built, with
/// a slot per subtask (all unconstrained); each subtask reports its
/// watermark in its slot as it advances and checks `may_read` before it
/// polls its source. Invariant: a slot whose watermark is the minimum may
/// always read, so the group always makes progress.
#[derive(Debug)]
pub struct WatermarkAlignment {
    /// Per slot (subtask of a source of the group), how far it may lead.
    max_drift_ns: Vec<i64>,
    slots: Vec<AtomicI64>,
}

impl WatermarkAlignment {
    /// Alignment of `subtasks` subtasks to within `max_drift`.
    pub fn new(subtasks: usize, max_drift: Duration) -> Self {
        Self::with_drifts(std::iter::repeat_n(max_drift, subtasks))
    }

    /// Alignment of one slot per drift: slot `i` may lead the slowest slot
    /// by `drifts[i]`.
    pub fn with_drifts(drifts: impl IntoIterator<Item = Duration>) -> Self {
        let max_drift_ns: Vec<i64> = drifts
            .into_iter()
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .collect();
        WatermarkAlignment {
            slots: max_drift_ns
                .iter()
                .map(|_| AtomicI64::new(UNCONSTRAINED))
                .collect(),
            max_drift_ns,
        }
    }

    /// Records the watermark (an [`EventTime`], ns) of the subtask in
    /// `slot`; `None` while it is idle, finished or has none, so that it
    /// holds no one back.
    pub fn report(&self, slot: usize, watermark: Option<EventTime>) {
        self.slots[slot].store(watermark.unwrap_or(UNCONSTRAINED), Ordering::Release);
    }

    /// Whether the subtask in `slot` may read: its watermark is at most its
    /// drift ahead of the least watermark of the group.
    pub fn may_read(&self, slot: usize) -> bool {
        let mine = self.slots[slot].load(Ordering::Acquire);
        if mine == UNCONSTRAINED {
            return true;
        }
        let least = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .min()
            .unwrap_or(UNCONSTRAINED);
        mine <= least.saturating_add(self.max_drift_ns[slot])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subtask_ahead_waits_for_the_slowest() {
        let a = WatermarkAlignment::new(3, Duration::from_nanos(100));
        assert!(a.may_read(0), "nothing reported: everyone reads");
        a.report(0, Some(1_000));
        a.report(1, Some(1_050));
        assert!(a.may_read(0) && a.may_read(1) && a.may_read(2));
        a.report(1, Some(1_101));
        assert!(!a.may_read(1), "101 ms ahead of subtask 0");
        assert!(a.may_read(0), "the slowest always reads");
        a.report(0, Some(1_001));
        assert!(a.may_read(1), "within the drift again");
        a.report(2, Some(5_000));
        assert!(!a.may_read(2));
        a.report(0, None);
        a.report(1, None);
        assert!(a.may_read(2), "idle or finished subtasks hold no one back");
    }
}

//! Per-subtask counters, readable while the job runs (`SHOW JOBS`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of one operator subtask. Written by the subtask only, read by anyone.
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    /// Rows received.
    pub rows_in: AtomicU64,
    /// Rows emitted.
    pub rows_out: AtomicU64,
    /// Rows dropped because they arrived behind the watermark.
    pub late_rows_dropped: AtomicU64,
    /// Malformed input records skipped (by a source configured to skip them).
    pub records_skipped: AtomicU64,
    /// The current input watermark (ns); 0 until the first one.
    pub watermark: AtomicI64,
    /// Entries in the subtask's keyed state (operators that keep their state
    /// in the backend report it; 0 otherwise).
    pub state_entries: AtomicU64,
    /// Approximate bytes of those entries.
    pub state_bytes: AtomicU64,
}

impl OperatorMetrics {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the state-size gauges.
    pub fn set_state_size(&self, entries: u64, bytes: u64) {
        self.state_entries.store(entries, Ordering::Relaxed);
        self.state_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A snapshot of the counters of one operator, summed over its subtasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorMetricsSummary {
    pub operator_name: String,
    pub parallelism: usize,
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows_dropped: u64,
    pub records_skipped: u64,
    /// Keyed state entries and their approximate bytes, as last reported by
    /// the subtasks (see [`OperatorMetrics::state_entries`]).
    pub state_entries: u64,
    pub state_bytes: u64,
}

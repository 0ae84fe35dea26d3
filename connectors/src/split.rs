//! Splits of the generators' index spaces, and their checkpointed positions.
//!
//! A generator (`datagen`, `nexmark`, `orders`) numbers what it produces
//! globally (rows, table events, orders: `0, 1, 2, ...`) and, on a fresh
//! start at parallelism `p`, gives subtask `i` the indexes `≡ i (mod p)`.
//! That share is a [`SeqSplit`]: split `i` of `p`. Its position is the next
//! index to produce; with the values being pure functions of the index (see
//! [`crate::random`]), that position is all a split needs to go on exactly.
//!
//! # Checkpoints and rescaling
//!
//! A source returns one list-state entry per split it owns. The engine deals
//! the entries of all subtasks over the subtasks of the restored job, so after
//! a rescale a subtask owns several splits, or none; splits are never cut or
//! merged (the split count stays the parallelism of the first run, as Kafka
//! partitions do in Flink). A subtask reads its splits round-robin, one batch
//! at a time, each from its own position, so each split produces exactly the
//! rows an uninterrupted run would have, in the same order.

use datafusion::common::{DataFusionError, Result};
use serde_json::{Map, Value};

/// Split `split` of `splits`: the indexes `split + j * splits`, `j = 0, 1,
/// ...`; those below `next` have been produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqSplit {
    /// This split's number, `< splits`.
    pub split: u64,
    /// The number of splits (the parallelism of the first run).
    pub splits: u64,
    /// The next index to produce: `≡ split (mod splits)`.
    pub next: u64,
}

impl SeqSplit {
    /// The split a fresh subtask `subtask` of `parallelism` owns.
    pub fn fresh(subtask: usize, parallelism: usize) -> Self {
        SeqSplit {
            split: subtask as u64,
            splits: parallelism as u64,
            next: subtask as u64,
        }
    }

    /// How many indexes of this split are below `total`.
    pub fn count_below(&self, total: u64) -> u64 {
        if total > self.split {
            (total - self.split).div_ceil(self.splits)
        } else {
            0
        }
    }

    /// How many indexes this split has produced.
    pub fn produced(&self) -> u64 {
        (self.next - self.split) / self.splits
    }

    /// How many indexes are left to produce, out of those below `total` (all
    /// of them if unbounded).
    pub fn remaining(&self, total: Option<u64>) -> u64 {
        total.map_or(u64::MAX, |t| self.count_below(t).saturating_sub(self.produced()))
    }

    /// The index of the `j`-th next one (`j = 0`: `next`).
    #[inline]
    pub fn index(&self, j: u64) -> u64 {
        self.next + j * self.splits
    }

    /// Marks `n` more indexes produced.
    pub fn advance(&mut self, n: u64) {
        self.next += n * self.splits;
    }

    /// The split's fields of a state entry: `split`, `splits`, `next`.
    pub fn to_entry(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("split".into(), self.split.into());
        m.insert("splits".into(), self.splits.into());
        m.insert("next".into(), self.next.into());
        m
    }

    /// Reads and checks the split of a state entry of `source`.
    pub fn from_entry(source: &str, entry: &Value) -> Result<Self> {
        let s = SeqSplit {
            split: entry_u64(source, entry, "split")?,
            splits: entry_u64(source, entry, "splits")?,
            next: entry_u64(source, entry, "next")?,
        };
        if s.splits == 0
            || s.split >= s.splits
            || s.next < s.split
            || !(s.next - s.split).is_multiple_of(s.splits)
        {
            return Err(bad_entry(source, entry, "inconsistent split position"));
        }
        Ok(s)
    }
}

/// A state entry that cannot be restored.
pub fn bad_entry(source: &str, entry: &Value, why: &str) -> DataFusionError {
    DataFusionError::Execution(format!(
        "{source}: cannot resume from checkpoint state entry {entry}: {why}"
    ))
}

/// Field `key` of a state entry, as `u64`.
pub fn entry_u64(source: &str, entry: &Value, key: &str) -> Result<u64> {
    entry
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad_entry(source, entry, &format!("no unsigned integer '{key}'")))
}

/// Field `key` of a state entry, as `i64`.
pub fn entry_i64(source: &str, entry: &Value, key: &str) -> Result<i64> {
    entry
        .get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| bad_entry(source, entry, &format!("no integer '{key}'")))
}

/// The split to read next: among the active ones (`position` returns the
/// next index of an active split, `None` for an inactive one), the one
/// furthest behind, ties broken from `cursor` on. Reading the lagging split
/// first keeps a subtask that owns several splits (after a rescale) emitting
/// in index order, which for the generators is event-time order, so one
/// split's rows do not make another's late.
pub fn next_active(len: usize, cursor: usize, position: impl Fn(usize) -> Option<u64>) -> Option<usize> {
    (0..len)
        .map(|k| (cursor + k) % len)
        .filter_map(|c| position(c).map(|p| (p, c)))
        .min_by_key(|(p, _)| *p)
        .map(|(_, c)| c)
}

/// Waits forever: the poll of an unbounded source that owns no split (after
/// scaling up past the number of splits). Its job must not end because of
/// it, and a dropped wait loses nothing.
pub async fn idle_forever<T>() -> T {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_count_and_advance() {
        let mut s = SeqSplit::fresh(1, 3);
        // Indexes 1, 4, 7 below 9.
        assert_eq!(s.count_below(9), 3);
        assert_eq!(s.count_below(1), 0);
        assert_eq!(s.remaining(Some(9)), 3);
        s.advance(2);
        assert_eq!((s.next, s.produced(), s.remaining(Some(9))), (7, 2, 1));
        assert_eq!(s.index(1), 10);
        let entry = Value::Object(s.to_entry());
        assert_eq!(SeqSplit::from_entry("t", &entry).unwrap(), s);
        let bad = serde_json::json!({"split": 1, "splits": 3, "next": 5});
        assert!(SeqSplit::from_entry("t", &bad).is_err());
        let bad = serde_json::json!({"split": 1, "splits": 3});
        let e = SeqSplit::from_entry("t", &bad).unwrap_err().to_string();
        assert!(e.contains("'next'"), "{e}");
    }

    #[test]
    fn round_robin_skips_inactive_splits() {
        assert_eq!(next_active(3, 1, |c| (c != 1).then_some(5)), Some(2));
        assert_eq!(next_active(3, 2, |c| (c == 0).then_some(5)), Some(0));
        assert_eq!(next_active(3, 0, |_| None), None);
        assert_eq!(next_active(0, 0, |_| Some(1)), None);
        assert_eq!(
            next_active(3, 0, |c| Some([9, 4, 7][c])),
            Some(1),
            "the lagging split first"
        );
    }
}

//! Key groups: the unit of keyed state and of its redistribution on rescale.
//!
//! A key is hashed, the hash picks one of `max_parallelism` key groups, and
//! each subtask owns a contiguous range of key groups. State is snapshotted
//! per key group, so a job can be restored at any parallelism up to
//! `max_parallelism` (Flink's model).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::Result;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;

/// `pipeline.max-parallelism` when not set.
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// The key groups owned by one subtask: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    pub start: usize,
    pub end: usize,
}

impl KeyGroupRange {
    /// The key groups subtask `subtask` of `parallelism` owns.
    pub fn for_subtask(subtask: usize, parallelism: usize, max_parallelism: usize) -> Self {
        let start = (subtask * max_parallelism).div_ceil(parallelism);
        let end = ((subtask + 1) * max_parallelism).div_ceil(parallelism);
        KeyGroupRange { start, end }
    }

    /// Whether `key_group` belongs to this range.
    pub fn contains(&self, key_group: usize) -> bool {
        (self.start..self.end).contains(&key_group)
    }

    /// The range as a `Range`.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// The key group of a key hash.
#[inline]
pub fn key_group_of(hash: u64, max_parallelism: usize) -> usize {
    // Mix the high bits in: DataFusion's hashes are good, but the modulo of a
    // power of two would otherwise only see the low bits.
    let mixed = hash ^ (hash >> 32);
    let max = max_parallelism as u64;
    // The same value as `%`; a 64-bit division is most of the cost of a hash
    // exchange's per-row work, and the maximum is usually a power of two.
    if max.is_power_of_two() {
        (mixed & (max - 1)) as usize
    } else {
        (mixed % max) as usize
    }
}

/// The subtask that owns `key_group` (inverse of [`KeyGroupRange::for_subtask`]).
#[inline]
pub fn subtask_of_key_group(key_group: usize, parallelism: usize, max_parallelism: usize) -> usize {
    key_group * parallelism / max_parallelism
}

/// The hasher state used for keys. Its seeds are fixed, so that the key group
/// of a key is the same in every process: state snapshotted by one run is
/// found by the next.
pub fn key_hasher() -> RandomState {
    RandomState::with_seed(0x5745_4952_4b45_5953)
}

/// Hashes the rows of `keys` into `hashes` (resized to the number of rows).
pub fn hash_keys(keys: &[ArrayRef], num_rows: usize, hashes: &mut Vec<u64>) -> Result<()> {
    hashes.clear();
    hashes.resize(num_rows, 0);
    if keys.is_empty() {
        return Ok(());
    }
    create_hashes(keys, &key_hasher(), hashes)?;
    Ok(())
}

/// The key group of every row of `keys` (all 0 without keys): the same as
/// the hash exchange computes for the same key columns.
pub fn key_groups_of(keys: &[ArrayRef], num_rows: usize, max_parallelism: usize) -> Result<Vec<usize>> {
    let mut hashes = Vec::new();
    hash_keys(keys, num_rows, &mut hashes)?;
    Ok(hashes.iter().map(|h| key_group_of(*h, max_parallelism)).collect())
}

/// The key group of every row of each of `batches`, whose key is `keys`
/// evaluated on it (e.g. rows handed to batch state).
pub fn key_groups_of_batches(
    keys: &[Arc<dyn PhysicalExpr>],
    batches: &[RecordBatch],
    max_parallelism: usize,
) -> Result<Vec<Vec<usize>>> {
    batches
        .iter()
        .map(|batch| {
            let n = batch.num_rows();
            let columns = keys
                .iter()
                .map(|k| k.evaluate(batch)?.into_array(n))
                .collect::<Result<Vec<_>>>()?;
            key_groups_of(&columns, n, max_parallelism)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_and_invert() {
        for max in [1, 7, 128, 1000] {
            for par in 1..=max.min(16) {
                let mut next = 0;
                for s in 0..par {
                    let r = KeyGroupRange::for_subtask(s, par, max);
                    assert_eq!(r.start, next, "ranges are contiguous");
                    for kg in r.range() {
                        assert_eq!(subtask_of_key_group(kg, par, max), s);
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn key_groups_are_the_mixed_hash_modulo_the_maximum() {
        // Key groups are in checkpoints: the power-of-two shortcut must give
        // exactly the modulo.
        let mut hash = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            hash = hash.rotate_left(7).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ 0x94d0_49bb;
            for h in [hash, u64::MAX - hash, hash >> 40] {
                for max in [1usize, 2, 7, 128, 1000, 4096, 32768] {
                    assert_eq!(key_group_of(h, max) as u64, (h ^ (h >> 32)) % max as u64);
                }
            }
        }
    }
}

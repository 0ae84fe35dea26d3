//! Counter-based pseudo-random numbers for the generators.
//!
//! Every random value a generator produces is a pure function of
//! `(seed, stream, index)`: the seed of the table, a stream per column (or per
//! purpose), and the global index of the row or event. Nothing depends on the
//! order of generation, so:
//!
//! - the output for a given seed is the same whatever the parallelism (each
//!   subtask computes the rows of its own indexes);
//! - a column that is not selected costs nothing, and selecting it does not
//!   change the other columns;
//! - two tables generated with the same seed agree (e.g. `orders` and
//!   `payments`).
//!
//! The mixing function is SplitMix64's finalizer; the per-row generator is
//! wyrand. Both are fast (a few multiplications) and statistically fine for
//! test and benchmark data. They are not cryptographic.

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: a bijective, well-mixing hash of a `u64`.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of stream `stream` under `seed`: combine it with an index with
/// [`RowRng::new`].
#[inline]
pub fn stream_key(seed: u64, stream: u64) -> u64 {
    mix64(seed ^ mix64(stream.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// A small generator (wyrand) seeded from a stream key and an index.
///
/// Create one per row (or event) and draw the values of that row from it, in
/// a fixed order.
#[derive(Debug, Clone)]
pub struct RowRng {
    state: u64,
}

impl RowRng {
    /// The generator of row `index` of the stream with key `key`.
    #[inline]
    pub fn new(key: u64, index: u64) -> Self {
        RowRng {
            state: mix64(key ^ index.wrapping_mul(GOLDEN)),
        }
    }

    /// A uniformly distributed `u64`.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xE703_7ED1_A0B4_28DB);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A value in `0..n` (`n > 0`; 0 when `n == 0`), by multiply-high
    /// (Lemire's method without rejection: the bias is below 2^-32 for any
    /// `n` below 2^32, irrelevant here).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value in `0..n` as `usize`.
    #[inline]
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// A value in `min..=max` (requires `min <= max`).
    #[inline]
    pub fn range_i128(&mut self, min: i128, max: i128) -> i128 {
        let span = (max - min) as u128 + 1;
        if span > u128::from(u64::MAX) {
            // The whole 64-bit range (or more): any u64 offset is valid.
            min + i128::from(self.next_u64())
        } else {
            min + ((u128::from(self.next_u64()) * span) >> 64) as i128
        }
    }

    /// A value in `min..=max` (requires `min <= max`).
    #[inline]
    pub fn range_i64(&mut self, min: i64, max: i64) -> i64 {
        self.range_i128(i128::from(min), i128::from(max)) as i64
    }

    /// A float in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (`p <= 0`: never; `p >= 1`: always).
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

/// A seed that differs between calls: for generators whose `seed` option is
/// not set.
pub fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    mix64(nanos ^ mix64(COUNTER.fetch_add(1, Ordering::Relaxed)) ^ u64::from(std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_pure_functions_of_key_and_index() {
        let key = stream_key(42, 3);
        let a: Vec<u64> = (0..100).map(|i| RowRng::new(key, i).next_u64()).collect();
        let b: Vec<u64> = (0..100).rev().map(|i| RowRng::new(key, i).next_u64()).collect();
        assert_eq!(a, b.into_iter().rev().collect::<Vec<_>>());
        assert_ne!(RowRng::new(stream_key(42, 4), 0).next_u64(), a[0]);
        assert_ne!(RowRng::new(stream_key(43, 3), 0).next_u64(), a[0]);
    }

    #[test]
    fn ranges_stay_in_bounds_and_cover_them() {
        let mut rng = RowRng::new(stream_key(1, 1), 7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = rng.range_i64(-2, 2);
            assert!((-2..=2).contains(&v));
            seen[(v + 2) as usize] = true;
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        assert!(seen.iter().all(|s| *s));
        // Full ranges do not overflow.
        let _ = rng.range_i128(i128::from(i64::MIN), i128::from(i64::MAX));
        let _ = rng.range_i128(0, i128::from(u64::MAX));
        assert_eq!(rng.below(0), 0);
    }
}

//! Names and numbers unique to one instance (of a backend, of an operator).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A name part unique to one backend instance (16 hex digits): two instances,
/// e.g. two restores of the same job, never write the same shared file name.
pub fn instance_nonce() -> String {
    format!("{:016x}", instance_seed())
}

/// 64 random bits, different at every call, in every process and across
/// restarts (e.g. where an instance starts numbering what it writes).
pub fn instance_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; the clock, the process id
    // and a counter keep it unique within a process and across restarts.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(now);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonces_differ() {
        assert_ne!(super::instance_nonce(), super::instance_nonce());
    }
}

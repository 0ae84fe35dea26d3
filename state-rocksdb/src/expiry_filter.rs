//! Expired entries dropped in compactions: the operator's
//! [`EntryExpiry`] as a RocksDB compaction filter (as Flink's state TTL
//! compaction filter), so that an entry that dies costs no delete.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use weir_engine::state::EntryExpiry;

use crate::KEY_GROUP_BYTES;

const NAME: &CStr = c"weir-entry-expiry";

/// What a database's compaction filters share with its backend: the
/// operator's [`EntryExpiry`] once registered, and what they dropped.
///
/// # Invariants
///
/// A compaction takes the expiry registered when it starts; before one is
/// registered, nothing is dropped. `entries` and `bytes` (user key + value)
/// only grow; they can count an entry the operator also deleted (its put
/// compacted apart from its tombstone), so sizes derived from them are
/// approximate.
#[derive(Debug, Default)]
pub(crate) struct DroppedByExpiry {
    expiry: RwLock<Option<Arc<dyn EntryExpiry>>>,
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl DroppedByExpiry {
    pub(crate) fn register(&self, expiry: Arc<dyn EntryExpiry>) {
        *self.expiry.write().unwrap_or_else(|e| e.into_inner()) = Some(expiry);
    }

    pub(crate) fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Creates a [`ExpiryFilter`] per compaction (RocksDB runs one filter per
/// thread, so filters need no locking).
pub(crate) struct ExpiryFilterFactory(pub(crate) Arc<DroppedByExpiry>);

impl CompactionFilterFactory for ExpiryFilterFactory {
    type Filter = ExpiryFilter;

    fn create(&mut self, _context: CompactionFilterContext) -> ExpiryFilter {
        let expiry = self.0.expiry.read().unwrap_or_else(|e| e.into_inner()).clone();
        ExpiryFilter {
            expiry,
            shared: self.0.clone(),
        }
    }

    fn name(&self) -> &CStr {
        NAME
    }
}

/// Removes the entries the registered [`EntryExpiry`] calls expired.
pub(crate) struct ExpiryFilter {
    expiry: Option<Arc<dyn EntryExpiry>>,
    shared: Arc<DroppedByExpiry>,
}

impl CompactionFilter for ExpiryFilter {
    fn filter(&mut self, _level: u32, key: &[u8], value: &[u8]) -> Decision {
        let Some(expiry) = &self.expiry else {
            return Decision::Keep;
        };
        match key.get(KEY_GROUP_BYTES..) {
            Some(user_key) if expiry.is_expired(user_key, value) => {
                self.shared.entries.fetch_add(1, Ordering::Relaxed);
                let bytes = (user_key.len() + value.len()) as u64;
                self.shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                Decision::Remove
            }
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &CStr {
        NAME
    }
}

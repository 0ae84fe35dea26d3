//! The [`KeyedStateBackend`] trait and the handles of its snapshots.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::Result;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::checkpoint::storage::CheckpointStorage;
use crate::key_group::KeyGroupRange;
use crate::message::CheckpointId;

/// Where one snapshot of a subtask goes.
///
/// Files are named relative to [`storage`](Self::storage) (the directory that
/// holds the `_metadata`'s parent: the job's checkpoint directory, or the
/// savepoint directory), so a snapshot can be restored from wherever that
/// directory is copied.
#[derive(Debug, Clone)]
pub struct SnapshotTarget {
    pub checkpoint_id: CheckpointId,
    pub storage: CheckpointStorage,
    /// Directory, relative to `storage`, for files owned by this snapshot alone
    /// (`chk-7`, or `` for a savepoint).
    pub exclusive_dir: String,
    /// Directory, relative to `storage`, for files shared between
    /// incremental checkpoints (`shared`); `None` for savepoints, which are
    /// self-contained, and when incremental checkpoints are off.
    pub shared_dir: Option<String>,
    /// Write the canonical format (a [`crate::state::write_kv_entries`] file),
    /// readable by every backend: savepoints use it, so a savepoint taken
    /// with one backend restores into the other.
    pub canonical: bool,
}

/// One file of a keyed-state snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Path relative to the checkpoint's storage directory.
    pub path: String,
    /// Size in bytes: a file of any other size is truncated or corrupt.
    pub size: u64,
    /// The file's own name inside the backend (e.g. an SST file's name).
    pub name: String,
    /// Whether the file lives in the shared directory (reused across checkpoints).
    pub shared: bool,
}

impl StateFile {
    /// The file at `path` (relative to the storage), named by its last
    /// path component.
    pub fn at(path: &str, size: u64, shared: bool) -> StateFile {
        StateFile {
            path: path.to_string(),
            size,
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            shared,
        }
    }
}

/// The durable snapshot of one subtask's keyed state, as listed in `_metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateHandle {
    /// `hashmap` (the canonical format, which every backend reads) or
    /// `rocksdb` (native RocksDB files).
    pub backend: String,
    /// The key groups it holds: `start..end`.
    pub key_groups: (usize, usize),
    pub files: Vec<StateFile>,
    /// Number of entries (keys) it holds.
    pub entries: u64,
    /// The files of its batch state (a manifest and batch files, see
    /// [`crate::state::BatchState`]): written by the engine beside the
    /// backend's snapshot, whatever the backend, and not read by backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<StateFile>,
}

impl KeyedStateHandle {
    /// Total size of its files.
    pub fn size(&self) -> u64 {
        self.all_files().map(|f| f.size).sum()
    }

    /// Its backend's files and its batch state's files.
    pub fn all_files(&self) -> impl Iterator<Item = &StateFile> {
        self.files.iter().chain(&self.batches)
    }

    /// Whether it holds any state.
    pub fn has_state(&self) -> bool {
        self.entries > 0 || !self.batches.is_empty()
    }

    /// Whether it holds any key group of `range`.
    pub fn overlaps(&self, range: KeyGroupRange) -> bool {
        self.key_groups.0 < range.end && range.start < self.key_groups.1
    }
}

/// The asynchronous part of a snapshot: writes the files and returns the
/// handle. Runs while the operator goes on processing.
pub type PendingSnapshot = BoxFuture<'static, Result<KeyedStateHandle>>;

/// Where a keyed state backend runs.
#[derive(Debug, Clone)]
pub struct StateScope {
    pub job_name: String,
    pub operator_id: String,
    pub subtask: usize,
    pub key_groups: KeyGroupRange,
    pub max_parallelism: usize,
    /// A local working directory for this subtask (RocksDB's files).
    pub local_dir: PathBuf,
}

/// A visitor of entries: `(key_group, key, value)`.
pub type EntryVisitor<'a> = dyn FnMut(usize, &[u8], &[u8]) -> Result<()> + 'a;

/// A visitor of the entries of one key group: `(key, value)`.
pub type KeyVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// A visitor of the entries found by several probes: `(probe, key, value)`.
pub type ProbeVisitor<'a> = dyn FnMut(usize, &[u8], &[u8]) -> Result<()> + 'a;

/// A visitor of entries that may cross threads.
pub type SendEntryVisitor<'a> = dyn FnMut(usize, &[u8], &[u8]) -> Result<()> + Send + 'a;

/// Decides from an entry alone (its key within its key group, and its
/// value) whether the entry is dead, for a backend that drops such entries
/// itself ([`KeyedStateBackend::drop_expired_entries`]). Called from the
/// backend's background threads, concurrently with the operator's writes:
/// what it reads of the operator (e.g. a watermark) must be shared
/// atomically, and once it calls an entry expired it must go on calling it
/// so (an entry may be seen again by a later compaction).
pub trait EntryExpiry: Send + Sync + std::fmt::Debug {
    fn is_expired(&self, key: &[u8], value: &[u8]) -> bool;
}

/// A key-value store partitioned by key group, owned by one operator subtask.
///
/// Keys and values are opaque bytes; every key belongs to one key group of the
/// subtask's range (the one its grouping key hashes to), so that on restore
/// at another parallelism each key group moves to its new owner whole.
///
/// # Lifecycle
///
/// Created empty or restored by a [`StateBackendFactory`]; read and written
/// only from its operator's task (no locking needed); at each checkpoint
/// barrier [`snapshot`](Self::snapshot) captures a consistent view
/// synchronously and returns a future that writes it durably while processing
/// continues. Dropped when the subtask ends.
pub trait KeyedStateBackend: Send + Sync {
    /// `hashmap` or `rocksdb`.
    fn name(&self) -> &'static str;

    /// The key groups this subtask owns.
    fn key_groups(&self) -> KeyGroupRange;

    /// Whether every entry lives in memory (`hashmap`), so that an operator
    /// may as well keep its state as in-memory structures of its own (e.g. a
    /// join's hash index over batch state) instead of entries; `false` for
    /// backends that hold state larger than memory (`rocksdb`).
    fn holds_state_in_memory(&self) -> bool;

    fn get(&self, key_group: usize, key: &[u8]) -> Result<Option<Vec<u8>>>;

    fn put(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> Result<()>;

    fn delete(&mut self, key_group: usize, key: &[u8]) -> Result<()>;

    /// [`put`](Self::put) by a caller that knows the key's current value (it
    /// has just read it, or is the key's only writer): `previous` is the
    /// length of that value (`None`: absent). Backends that
    /// read before writing to keep [`len`](Self::len) exact skip that read.
    /// A wrong `previous` only makes `len` and `approximate_size` wrong.
    fn put_known(
        &mut self,
        key_group: usize,
        key: &[u8],
        value: &[u8],
        previous: Option<usize>,
    ) -> Result<()> {
        let _ = previous;
        self.put(key_group, key, value)
    }

    /// Writes `value` under `key` unless the key holds a value already: then
    /// returns that value and writes nothing. Inserting a new key this way
    /// takes one lookup where [`get`](Self::get) then
    /// [`put`](Self::put) take two, in backends that can.
    fn put_if_absent(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.get(key_group, key)? {
            Some(current) => Ok(Some(current)),
            None => self.put_known(key_group, key, value, None).map(|()| None),
        }
    }

    /// [`delete`](Self::delete) of a key known to hold a value of `previous`
    /// bytes (see [`put_known`](Self::put_known)).
    fn delete_known(&mut self, key_group: usize, key: &[u8], previous: usize) -> Result<()> {
        let _ = previous;
        self.delete(key_group, key)
    }

    /// Calls `f(key_group, key, value)` for every entry whose key starts with
    /// `prefix`, in key group order and, within a key group, in key order.
    fn scan_prefix(&self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()>;

    /// Calls `f(key, value)` for every entry of `key_group` whose key starts
    /// with `prefix`, in key order: a point lookup of one grouping key's
    /// entries (e.g. the rows of one join key), touching one key group only.
    fn scan_key_group_prefix(&self, key_group: usize, prefix: &[u8], f: &mut KeyVisitor<'_>) -> Result<()>;

    /// [`scan_key_group_prefix`](Self::scan_key_group_prefix) of each of
    /// `probes` (key group, prefix), in order: calls `f(probe, key, value)`
    /// with the probe's index. The probes of one input batch in one call, so
    /// a backend may share the work between them (RocksDB: one iterator).
    fn scan_key_group_prefixes(&self, probes: &[(usize, &[u8])], f: &mut ProbeVisitor<'_>) -> Result<()> {
        for (i, &(key_group, prefix)) in probes.iter().enumerate() {
            self.scan_key_group_prefix(key_group, prefix, &mut |k, v| f(i, k, v))?;
        }
        Ok(())
    }

    /// Calls `f(key_group, key, value)` for every entry with `start <= key <
    /// end`, in key group order and, within a key group, in key order (e.g.
    /// timers due up to a time, under time-ordered keys).
    fn scan_range(&self, start: &[u8], end: &[u8], f: &mut EntryVisitor<'_>) -> Result<()>;

    /// Lets the backend drop the entries `expiry` calls expired on its own,
    /// as it rewrites its data anyway (RocksDB: in compactions, as Flink's
    /// state TTL compaction filter), instead of the operator deleting each
    /// one: no write per expired entry. Returns whether it will; then an
    /// expired entry lingers until the backend drops it, so the operator
    /// must skip the expired entries it reads. `false` (the default): the
    /// operator deletes them itself. Called once, before the operator
    /// writes; [`len`](Self::len) and
    /// [`approximate_size`](Self::approximate_size) leave dropped entries out.
    fn drop_expired_entries(&mut self, expiry: Arc<dyn EntryExpiry>) -> bool {
        let _ = expiry;
        false
    }

    /// Number of entries.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held (keys + values), for metrics.
    fn approximate_size(&self) -> u64;

    /// Captures the current contents (synchronously, so later writes are not
    /// in it) and returns the future that writes them to `target`.
    fn snapshot(&mut self, target: SnapshotTarget) -> Result<PendingSnapshot>;

    /// Checkpoint `id` is complete: snapshots before it will not be restored
    /// by this process (a backend may release what only they used).
    fn notify_checkpoint_complete(&mut self, _id: CheckpointId) {}
}

/// Creates a subtask's backend, empty or restored from snapshots.
#[async_trait]
pub trait StateBackendFactory: Send + Sync + std::fmt::Debug {
    /// `hashmap` or `rocksdb` (the `state.backend.type` value).
    fn name(&self) -> &'static str;

    /// A backend for `scope`, holding the entries of `restore` whose key group
    /// is in `scope.key_groups` (handles may cover other key groups too: on
    /// rescale, one new subtask reads parts of several old ones). Each handle
    /// comes with the storage its paths are relative to.
    async fn create(
        &self,
        scope: &StateScope,
        restore: &[(KeyedStateHandle, CheckpointStorage)],
    ) -> Result<Box<dyn KeyedStateBackend>>;
}

/// A factory shared by every subtask of a job.
pub type SharedBackendFactory = Arc<dyn StateBackendFactory>;

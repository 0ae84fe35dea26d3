//! [`RocksDbStateBackend`]: the keyed state of one subtask in a local RocksDB.

use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::common::{DataFusionError, Result};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DB, WriteBatch, WriteOptions};
use weir_engine::key_group::KeyGroupRange;
use weir_engine::state::lookup_prefix::is_lookup_prefix;
use weir_engine::state::{
    EntryExpiry, KeyedStateBackend, PendingSnapshot, SnapshotTarget, StateScope, instance_nonce,
};

use crate::expiry_filter::DroppedByExpiry;
use crate::snapshot::{SnapshotJob, UploadedSsts};
use crate::{KEY_GROUP_BYTES, RemoveOnDrop, absent_dir, db_error, decode_key, encode_key, sibling};

/// The keyed state of one operator subtask, in a RocksDB in the subtask's
/// local working directory.
///
/// # Lifecycle
///
/// Created by [`RocksDbBackendFactory`](crate::RocksDbBackendFactory), empty
/// or restored, in a freshly wiped `scope.local_dir`; used only by its
/// operator's task; [`snapshot`](KeyedStateBackend::snapshot) at every
/// checkpoint barrier; dropped when the subtask ends, which closes the
/// database and deletes the working directory (it is a copy: the durable
/// state is in the checkpoints).
///
/// # Invariants
///
/// * every RocksDB key is a key group of `scope.key_groups` (2 bytes,
///   big-endian) followed by the user key;
/// * [`len`](KeyedStateBackend::len) is exact: every `put` and `delete` first
///   reads the key to know whether it exists;
/// * [`approximate_size`](KeyedStateBackend::approximate_size) counts user
///   key and value bytes exactly, except after a direct restore, where it
///   starts from the (compressed) size of the restored SST files;
/// * writes skip the WAL until the first snapshot, which flushes them into
///   SST files; from then on they go to the WAL (never synced: what is not
///   in a checkpoint is lost with the process, which is what checkpointing
///   expects), and a snapshot's RocksDB checkpoint holds the SST files and
///   a copy of the WAL since the last flush, instead of flushing;
/// * writes collect in a write batch, applied as one RocksDB write before
///   anything reads the database (a read, a scan, a snapshot) or once it
///   holds `PENDING_WRITE_BYTES` (4 MiB): an operator's writes for one input batch
///   cost one write call, and every read sees every write before it;
/// * shared SST files are named `<operator>-<subtask>-<nonce>-<sst>` with a
///   nonce unique to the instance, and since RocksDB never rewrites an SST
///   file under the same name, an SST uploaded once is reused by every later
///   snapshot to the same storage.
pub struct RocksDbStateBackend {
    /// Declared first so that it is closed before `_local` removes its files.
    db: DB,
    /// Writes not applied to `db` yet (a mutex only because reads, which
    /// apply them, take `&self`; one task uses the backend).
    pending: Mutex<WriteBatch>,
    /// Whether writes go to RocksDB's WAL: from the first checkpoint on
    /// (see [`Self::snapshot`]).
    wal: bool,
    write_options: WriteOptions,
    scope: StateScope,
    entries: u64,
    /// User key + value bytes; estimated from file sizes after a direct restore.
    bytes: u64,
    /// What compactions dropped as expired (not counted in `entries`, `bytes`).
    dropped: Arc<DroppedByExpiry>,
    nonce: String,
    /// SST files already uploaded, by name (shared with pending snapshots).
    uploaded: Arc<Mutex<UploadedSsts>>,
    _local: RemoveOnDrop,
}

impl std::fmt::Debug for RocksDbStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStateBackend")
            .field("local_dir", &self.scope.local_dir)
            .field("key_groups", &self.scope.key_groups)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// The smallest key above every key starting with `prefix` (`None` if
/// there is none: all bytes 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Options of an iterator that sees every key, whatever its prefix: any
/// seek but that of a whole lookup prefix (see
/// [`crate::lookup_prefix_extractor`]).
fn total_order() -> rocksdb::ReadOptions {
    let mut o = rocksdb::ReadOptions::default();
    o.set_total_order_seek(true);
    o
}

/// Options of an iterator in prefix mode, for seeks of a whole lookup
/// prefix: it reads only the files whose filters hold the prefix, and stops
/// at the prefix's end.
fn prefix_mode() -> rocksdb::ReadOptions {
    let mut o = rocksdb::ReadOptions::default();
    o.set_prefix_same_as_start(true);
    o
}

/// Seeks `it` to the RocksDB key `seek` and calls `f(user key, value)` for
/// every entry whose key starts with it.
fn visit_prefix(
    it: &mut rocksdb::DBRawIterator<'_>,
    seek: &[u8],
    f: &mut weir_engine::state::KeyVisitor<'_>,
) -> Result<()> {
    it.seek(seek);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(seek) {
            break;
        }
        f(&k[KEY_GROUP_BYTES..], v)?;
        it.next();
    }
    it.status().map_err(|e| db_error("scanning", e))
}

/// Bytes of pending writes that are applied without waiting for a read.
const PENDING_WRITE_BYTES: usize = 4 << 20;

/// Writes go to the WAL only if `wal`; never synced (durability comes from
/// checkpoints, which copy the WAL).
fn write_options(wal: bool) -> WriteOptions {
    let mut o = WriteOptions::default();
    o.disable_wal(!wal);
    o
}

impl RocksDbStateBackend {
    /// Wraps `db`, open in `scope.local_dir` and holding `entries` entries of
    /// about `bytes` bytes; `local` removes the directory on drop.
    pub(crate) fn new(
        scope: StateScope,
        (db, dropped): (DB, Arc<DroppedByExpiry>),
        entries: u64,
        bytes: u64,
        local: RemoveOnDrop,
    ) -> Self {
        RocksDbStateBackend {
            db,
            dropped,
            pending: Mutex::new(WriteBatch::default()),
            wal: false,
            write_options: write_options(false),
            scope,
            entries,
            bytes,
            nonce: instance_nonce(),
            uploaded: Arc::new(Mutex::new(UploadedSsts::new())),
            _local: local,
        }
    }

    /// Records SST files of a restored snapshot, opened unchanged, as
    /// already uploaded to `storage` (by its display name).
    pub(crate) fn record_uploaded(&self, storage: &str, files: impl Iterator<Item = (String, String, u64)>) {
        let mut uploaded = self.uploaded.lock().unwrap_or_else(|e| e.into_inner());
        for (name, path, size) in files {
            uploaded.insert(name, storage, path, size);
        }
    }

    fn check(&self, key_group: usize) -> Result<()> {
        let r = self.scope.key_groups;
        if !r.contains(key_group) {
            return Err(DataFusionError::Internal(format!(
                "key group {key_group} is not in this subtask's range {}..{}",
                r.start, r.end
            )));
        }
        Ok(())
    }

    fn raw_key(&self, key_group: usize, key: &[u8]) -> Result<Vec<u8>> {
        self.check(key_group)?;
        let mut raw = Vec::new();
        encode_key(&mut raw, key_group, key);
        Ok(raw)
    }

    /// The database, with every pending write applied: what reads read.
    fn applied(&self) -> Result<&DB> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            let batch = std::mem::take(&mut *pending);
            self.db
                .write_opt(batch, &self.write_options)
                .map_err(|e| db_error("writing", e))?;
        }
        Ok(&self.db)
    }

    /// Adds a write to the pending ones, applying them once they are many.
    fn add_pending(&mut self, write: impl FnOnce(&mut WriteBatch)) -> Result<()> {
        let pending = self.pending.get_mut().unwrap_or_else(|e| e.into_inner());
        write(pending);
        if pending.size_in_bytes() >= PENDING_WRITE_BYTES {
            self.applied()?;
        }
        Ok(())
    }

    /// Length of the current value of `raw`, if any.
    fn existing_len(&self, raw: &[u8]) -> Result<Option<usize>> {
        Ok(self
            .applied()?
            .get_pinned(raw)
            .map_err(|e| db_error("reading", e))?
            .map(|v| v.len()))
    }

    /// Writes `value` under `raw` (the RocksDB key of a user key of
    /// `key_len` bytes) whose current value has `old` bytes (`None`: absent).
    fn write(&mut self, raw: Vec<u8>, key_len: usize, value: &[u8], old: Option<usize>) -> Result<()> {
        self.add_pending(|batch| batch.put(&raw, value))?;
        match old {
            Some(old) => self.bytes = self.bytes.saturating_sub(old as u64) + value.len() as u64,
            None => {
                self.entries += 1;
                self.bytes += (key_len + value.len()) as u64;
            }
        }
        Ok(())
    }

    /// Deletes `raw`, whose current value has `old` bytes.
    fn remove(&mut self, raw: Vec<u8>, key_len: usize, old: usize) -> Result<()> {
        self.add_pending(|batch| batch.delete(&raw))?;
        self.entries = self.entries.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub((key_len + old) as u64);
        Ok(())
    }

    /// Copies the entries of the key groups in `range` from the (read-only)
    /// RocksDB in `dir`, e.g. a downloaded snapshot of another subtask.
    pub(crate) fn import_dir(&mut self, dir: &Path, range: KeyGroupRange) -> Result<()> {
        let range = KeyGroupRange {
            start: range.start.max(self.scope.key_groups.start),
            end: range.end.min(self.scope.key_groups.end),
        };
        if range.start >= range.end {
            return Ok(());
        }
        let mut opts = rocksdb::Options::default();
        opts.set_log_level(rocksdb::LogLevel::Warn);
        let src = DB::open_for_read_only(&opts, dir, false).map_err(|e| {
            db_error(
                format_args!("opening the downloaded snapshot {}", dir.display()),
                e,
            )
        })?;
        let mut it = src.raw_iterator();
        it.seek((range.start as u16).to_be_bytes());
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (kg, key) = decode_key(k)?;
            if kg >= range.end {
                break;
            }
            self.put(kg, key, v)?;
            it.next();
        }
        it.status().map_err(|e| {
            db_error(
                format_args!("reading the downloaded snapshot {}", dir.display()),
                e,
            )
        })
    }
}

impl KeyedStateBackend for RocksDbStateBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn key_groups(&self) -> KeyGroupRange {
        self.scope.key_groups
    }

    fn holds_state_in_memory(&self) -> bool {
        false
    }

    fn get(&self, key_group: usize, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let raw = self.raw_key(key_group, key)?;
        self.applied()?.get(&raw).map_err(|e| db_error("reading", e))
    }

    fn put(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> Result<()> {
        let raw = self.raw_key(key_group, key)?;
        let old = self.existing_len(&raw)?;
        self.write(raw, key.len(), value, old)
    }

    fn put_known(
        &mut self,
        key_group: usize,
        key: &[u8],
        value: &[u8],
        previous: Option<usize>,
    ) -> Result<()> {
        let raw = self.raw_key(key_group, key)?;
        self.write(raw, key.len(), value, previous)
    }

    fn delete_known(&mut self, key_group: usize, key: &[u8], previous: usize) -> Result<()> {
        let raw = self.raw_key(key_group, key)?;
        self.remove(raw, key.len(), previous)
    }

    fn delete(&mut self, key_group: usize, key: &[u8]) -> Result<()> {
        let raw = self.raw_key(key_group, key)?;
        let Some(old) = self.existing_len(&raw)? else {
            return Ok(());
        };
        self.remove(raw, key.len(), old)
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut weir_engine::state::EntryVisitor<'_>) -> Result<()> {
        let mut it = self.applied()?.raw_iterator_opt(total_order());
        let mut seek = Vec::with_capacity(KEY_GROUP_BYTES + prefix.len());
        for kg in self.scope.key_groups.range() {
            encode_key(&mut seek, kg, prefix);
            visit_prefix(&mut it, &seek, &mut |k, v| f(kg, k, v))?;
        }
        Ok(())
    }

    fn scan_key_group_prefix(
        &self,
        key_group: usize,
        prefix: &[u8],
        f: &mut weir_engine::state::KeyVisitor<'_>,
    ) -> Result<()> {
        let seek = self.raw_key(key_group, prefix)?;
        // A whole lookup prefix is in the prefix bloom filters: a seek in
        // prefix mode skips every file that has no key starting with it.
        let mut opts = if is_lookup_prefix(prefix) {
            prefix_mode()
        } else {
            total_order()
        };
        // An upper bound lets RocksDB stop at the prefix's end instead of
        // stepping over whatever (tombstones included) follows it.
        if let Some(end) = prefix_end(&seek) {
            opts.set_iterate_upper_bound(end);
        }
        let mut it = self.applied()?.raw_iterator_opt(opts);
        visit_prefix(&mut it, &seek, f)
    }

    fn scan_key_group_prefixes(
        &self,
        probes: &[(usize, &[u8])],
        f: &mut weir_engine::state::ProbeVisitor<'_>,
    ) -> Result<()> {
        // Probes of whole lookup prefixes share one iterator in prefix mode,
        // which stops each at its prefix's end (creating an iterator costs
        // about as much as a seek); other probes scan alone.
        let mut shared = None;
        let mut seek = Vec::new();
        for (i, &(key_group, prefix)) in probes.iter().enumerate() {
            if !is_lookup_prefix(prefix) {
                self.scan_key_group_prefix(key_group, prefix, &mut |k, v| f(i, k, v))?;
                continue;
            }
            self.check(key_group)?;
            let it = match &mut shared {
                Some(it) => it,
                None => shared.insert(self.applied()?.raw_iterator_opt(prefix_mode())),
            };
            encode_key(&mut seek, key_group, prefix);
            visit_prefix(it, &seek, &mut |k, v| f(i, k, v))?;
        }
        Ok(())
    }

    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut weir_engine::state::EntryVisitor<'_>,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let (mut seek, mut stop) = (Vec::new(), Vec::new());
        for kg in self.scope.key_groups.range() {
            encode_key(&mut seek, kg, start);
            encode_key(&mut stop, kg, end);
            let mut opts = total_order();
            opts.set_iterate_upper_bound(stop.clone());
            let mut it = self.applied()?.raw_iterator_opt(opts);
            it.seek(&seek);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if k >= stop.as_slice() {
                    break;
                }
                f(kg, &k[KEY_GROUP_BYTES..], v)?;
                it.next();
            }
            it.status().map_err(|e| db_error("scanning", e))?;
        }
        Ok(())
    }

    fn drop_expired_entries(&mut self, expiry: Arc<dyn EntryExpiry>) -> bool {
        self.dropped.register(expiry);
        true
    }

    fn len(&self) -> u64 {
        self.entries.saturating_sub(self.dropped.entries())
    }

    fn approximate_size(&self) -> u64 {
        self.bytes.saturating_sub(self.dropped.bytes())
    }

    fn snapshot(&mut self, target: SnapshotTarget) -> Result<PendingSnapshot> {
        // The checkpoint directory is a sibling of the working directory
        // (RocksDB wants it not to exist yet).
        let dir = sibling(&self.scope.local_dir, &format!("chk-{}", target.checkpoint_id));
        absent_dir(&dir)?;
        let db = self.applied()?;
        if !self.wal {
            // Writes so far skipped the WAL: they go into SST files once,
            // and every later write into the WAL, which each checkpoint
            // copies instead of flushing the memtable.
            db.flush().map_err(|e| db_error("flushing the memtable", e))?;
            self.wal = true;
            self.write_options = write_options(true);
        }
        let guard = RemoveOnDrop(dir.clone());
        // Never flush (any size): a flush per checkpoint would make a small
        // level-0 file spanning every key group, and compactions that
        // rewrite level 1 every few checkpoints; the memtable flushes when
        // full, as without checkpoints.
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint_with_log_size(&dir, u64::MAX))
            .map_err(|e| db_error(format_args!("creating checkpoint {}", dir.display()), e))?;
        let job = SnapshotJob {
            dir: guard,
            target,
            operator_id: self.scope.operator_id.clone(),
            subtask: self.scope.subtask,
            key_groups: self.scope.key_groups,
            entries: self.len(),
            nonce: self.nonce.clone(),
            uploaded: self.uploaded.clone(),
        };
        Ok(Box::pin(job.run()))
    }
}

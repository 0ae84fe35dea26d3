//! The `hashmap` state backend: keyed state on the heap, snapshotted as one
//! canonical file per subtask, or incrementally ([`super::segments`]).

use std::collections::HashMap;
use std::ops::Bound;

use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};

use super::backend::{
    EntryVisitor, KeyVisitor, KeyedStateBackend, KeyedStateHandle, PendingSnapshot, SendEntryVisitor,
    SnapshotTarget, StateBackendFactory, StateFile, StateScope,
};
use super::key_group_map::KeyGroupMap;
use super::kv_file::{read_kv_file, write_kv_entries};
use super::segments::{MANIFEST_SUFFIX, SegmentFiles, manifest_of, read_incremental};
use crate::checkpoint::storage::CheckpointStorage;
use crate::key_group::KeyGroupRange;

/// Keyed state on the heap: one ordered map per key group ([`KeyGroupMap`],
/// a B+tree with packed leaves).
///
/// A map clones in O(1) and a later write never changes what a clone sees:
/// a snapshot clones the maps, in O(key groups), and writes them out
/// asynchronously: all of them to one canonical file, or, for a checkpoint
/// with a shared directory (incremental checkpoints), the leaves changed
/// since the last one to a new segment file and a manifest that also refers
/// to the earlier segments of unchanged leaves ([`SegmentFiles`]).
///
/// `len` and `approximate_size` (key and value bytes) are exact: every write
/// finds out what it replaces.
pub struct HashMapStateBackend {
    scope: StateScope,
    groups: Vec<KeyGroupMap>,
    entries: u64,
    bytes: u64,
    segments: SegmentFiles,
}

impl HashMapStateBackend {
    /// An empty backend for `scope`.
    pub fn new(scope: StateScope) -> Self {
        let n = scope.key_groups.end - scope.key_groups.start;
        HashMapStateBackend {
            scope,
            groups: (0..n).map(|_| KeyGroupMap::default()).collect(),
            entries: 0,
            bytes: 0,
            segments: SegmentFiles::default(),
        }
    }

    fn index(&self, key_group: usize) -> Result<usize> {
        let r = self.scope.key_groups;
        if !r.contains(key_group) {
            return Err(DataFusionError::Internal(format!(
                "key group {key_group} is not in this subtask's range {}..{}",
                r.start, r.end
            )));
        }
        Ok(key_group - r.start)
    }

    /// Counts a write of `value` under `key` over a value of `previous`
    /// bytes (`None`: a new key).
    fn count_put(&mut self, key: &[u8], value: &[u8], previous: Option<usize>) {
        match previous {
            Some(old) => self.bytes = self.bytes - old as u64 + value.len() as u64,
            None => {
                self.entries += 1;
                self.bytes += (key.len() + value.len()) as u64;
            }
        }
    }

    /// Counts the deletion of `key`, whose value had `previous` bytes.
    fn count_delete(&mut self, key: &[u8], previous: usize) {
        self.entries -= 1;
        self.bytes -= (key.len() + previous) as u64;
    }

    /// Adds an entry read from a snapshot (fastest in key order).
    fn load(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> Result<()> {
        let i = self.index(key_group)?;
        let previous = self.groups[i].load(key, value);
        self.count_put(key, value, previous);
        Ok(())
    }
}

impl KeyedStateBackend for HashMapStateBackend {
    fn name(&self) -> &'static str {
        "hashmap"
    }

    fn key_groups(&self) -> KeyGroupRange {
        self.scope.key_groups
    }

    fn holds_state_in_memory(&self) -> bool {
        true
    }

    fn get(&self, key_group: usize, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.groups[self.index(key_group)?].get(key).map(<[u8]>::to_vec))
    }

    fn put(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> Result<()> {
        let i = self.index(key_group)?;
        let previous = self.groups[i].put(key, value);
        self.count_put(key, value, previous);
        Ok(())
    }

    fn put_if_absent(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let i = self.index(key_group)?;
        if let Some(present) = self.groups[i].put_if_absent(key, value) {
            return Ok(Some(present));
        }
        self.count_put(key, value, None);
        Ok(None)
    }

    fn delete(&mut self, key_group: usize, key: &[u8]) -> Result<()> {
        let i = self.index(key_group)?;
        if let Some(previous) = self.groups[i].delete(key) {
            self.count_delete(key, previous);
        }
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        for (i, map) in self.groups.iter().enumerate() {
            let kg = self.scope.key_groups.start + i;
            for (k, v) in map.range(Bound::Included(prefix), Bound::Unbounded) {
                if !k.starts_with(prefix) {
                    break;
                }
                f(kg, k, v)?;
            }
        }
        Ok(())
    }

    fn scan_key_group_prefix(&self, key_group: usize, prefix: &[u8], f: &mut KeyVisitor<'_>) -> Result<()> {
        let map = &self.groups[self.index(key_group)?];
        for (k, v) in map.range(Bound::Included(prefix), Bound::Unbounded) {
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v)?;
        }
        Ok(())
    }

    fn scan_range(&self, start: &[u8], end: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        for (i, map) in self.groups.iter().enumerate() {
            let kg = self.scope.key_groups.start + i;
            for (k, v) in map.range(Bound::Included(start), Bound::Excluded(end)) {
                f(kg, k, v)?;
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.entries
    }

    fn approximate_size(&self) -> u64 {
        self.bytes
    }

    fn snapshot(&mut self, target: SnapshotTarget) -> Result<PendingSnapshot> {
        let start = self.scope.key_groups.start;
        let range = (self.scope.key_groups.start, self.scope.key_groups.end);
        let entries = self.entries;
        let base = format!("{}-{}", self.scope.operator_id, self.scope.subtask);
        // What writes the snapshot's files (off the async workers).
        let write: Box<dyn FnOnce() -> Result<Vec<StateFile>> + Send> =
            if let (Some(shared), false) = (&target.shared_dir, target.canonical) {
                let plan = self.segments.plan(&mut self.groups, start, shared, &base);
                let manifest = join_path(&target.exclusive_dir, &format!("{base}{MANIFEST_SUFFIX}"));
                Box::new(move || plan.write(&target.storage, &manifest))
            } else {
                let groups = self.groups.clone();
                let name = format!("{base}.kv");
                Box::new(move || {
                    let path = join_path(&target.exclusive_dir, &name);
                    let size = target.storage.write_with(&path, |out| {
                        let entries = groups
                            .iter()
                            .enumerate()
                            .flat_map(|(i, m)| m.iter().map(move |(k, v)| (start + i, k, v)));
                        write_kv_entries(out, entries)
                    })?;
                    Ok(vec![StateFile::at(&path, size, false)])
                })
            };
        Ok(Box::pin(async move {
            let files = tokio::task::spawn_blocking(write)
                .await
                .map_err(|e| DataFusionError::Execution(format!("writing a state snapshot: {e}")))??;
            Ok(KeyedStateHandle {
                backend: "hashmap".into(),
                key_groups: range,
                files,
                entries,
                batches: Vec::new(),
            })
        }))
    }
}

/// `dir/name`, or `name` when `dir` is empty.
pub(crate) fn join_path(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads the files of a `hashmap` handle (canonical files, or an incremental
/// manifest and its segment files) and calls `f` for each entry of a key
/// group in `range`. Checks every file's size against the handle first.
pub async fn read_canonical_handle(
    handle: &KeyedStateHandle,
    storage: &CheckpointStorage,
    range: KeyGroupRange,
    f: &mut SendEntryVisitor<'_>,
) -> Result<()> {
    if handle.backend != "hashmap" {
        return Err(DataFusionError::Execution(format!(
            "state written by the '{}' backend cannot be read as canonical key-value files",
            handle.backend
        )));
    }
    if let Some(manifest) = manifest_of(handle) {
        let mut files = HashMap::with_capacity(handle.files.len());
        for file in &handle.files {
            files.insert(file.path.clone(), read_file(file, storage).await?);
        }
        return read_incremental(manifest, &files, range, f)
            .map_err(|e| e.context(format!("reading {}", manifest.path)));
    }
    for file in &handle.files {
        let data = read_file(file, storage).await?;
        read_kv_file(&data, &mut |kg, k, v| {
            if range.contains(kg) { f(kg, k, v) } else { Ok(()) }
        })
        .map_err(|e| e.context(format!("reading {}", file.path)))?;
    }
    Ok(())
}

/// All of `file`, checked against its size.
pub(crate) async fn read_file(file: &StateFile, storage: &CheckpointStorage) -> Result<bytes::Bytes> {
    let data = storage.get(&file.path).await?;
    if data.len() as u64 != file.size {
        return Err(DataFusionError::Execution(format!(
            "state file {} has {} bytes, expected {} (truncated or corrupt)",
            file.path,
            data.len(),
            file.size
        )));
    }
    Ok(data)
}

/// Creates [`HashMapStateBackend`]s.
#[derive(Debug, Default)]
pub struct HashMapBackendFactory;

#[async_trait]
impl StateBackendFactory for HashMapBackendFactory {
    fn name(&self) -> &'static str {
        "hashmap"
    }

    async fn create(
        &self,
        scope: &StateScope,
        restore: &[(KeyedStateHandle, CheckpointStorage)],
    ) -> Result<Box<dyn KeyedStateBackend>> {
        let mut backend = HashMapStateBackend::new(scope.clone());
        for (handle, storage) in restore {
            if !handle.overlaps(scope.key_groups) {
                continue;
            }
            read_canonical_handle(handle, storage, scope.key_groups, &mut |kg, k, v| {
                backend.load(kg, k, v)
            })
            .await?;
        }
        Ok(Box::new(backend))
    }
}

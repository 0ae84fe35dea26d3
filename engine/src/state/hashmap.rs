//! The `hashmap` state backend: keyed state on the heap, snapshotted as one
//! canonical file per subtask.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};

use super::backend::{
    EntryVisitor, KeyVisitor, KeyedStateBackend, KeyedStateHandle, PendingSnapshot, SendEntryVisitor,
    SnapshotTarget, StateBackendFactory, StateFile, StateScope,
};
use super::kv_file::{read_kv_file, write_kv_file};
use crate::checkpoint::storage::CheckpointStorage;
use crate::key_group::KeyGroupRange;

type KeyGroupMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keyed state in one ordered map per key group.
///
/// Maps are copy-on-write (`Arc`): a snapshot shares them and a later write
/// copies only the key group it touches, so the snapshot is taken in
/// O(key groups) and written asynchronously.
pub struct HashMapStateBackend {
    scope: StateScope,
    groups: Vec<Arc<KeyGroupMap>>,
    entries: u64,
    bytes: u64,
}

impl HashMapStateBackend {
    /// An empty backend for `scope`.
    pub fn new(scope: StateScope) -> Self {
        let n = scope.key_groups.end - scope.key_groups.start;
        HashMapStateBackend {
            scope,
            groups: (0..n).map(|_| Arc::new(BTreeMap::new())).collect(),
            entries: 0,
            bytes: 0,
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
}

impl KeyedStateBackend for HashMapStateBackend {
    fn name(&self) -> &'static str {
        "hashmap"
    }

    fn key_groups(&self) -> KeyGroupRange {
        self.scope.key_groups
    }

    fn get(&self, key_group: usize, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.groups[self.index(key_group)?].get(key).cloned())
    }

    fn put(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> Result<()> {
        let i = self.index(key_group)?;
        let map = Arc::make_mut(&mut self.groups[i]);
        match map.insert(key.to_vec(), value.to_vec()) {
            Some(old) => self.bytes = self.bytes - old.len() as u64 + value.len() as u64,
            None => {
                self.entries += 1;
                self.bytes += (key.len() + value.len()) as u64;
            }
        }
        Ok(())
    }

    fn delete(&mut self, key_group: usize, key: &[u8]) -> Result<()> {
        let i = self.index(key_group)?;
        if !self.groups[i].contains_key(key) {
            return Ok(());
        }
        if let Some(old) = Arc::make_mut(&mut self.groups[i]).remove(key) {
            self.entries -= 1;
            self.bytes -= (key.len() + old.len()) as u64;
        }
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> Result<()> {
        for (i, map) in self.groups.iter().enumerate() {
            let kg = self.scope.key_groups.start + i;
            for (k, v) in map.range(prefix.to_vec()..) {
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
        for (k, v) in map.range::<[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded)) {
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
            for (k, v) in
                map.range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Excluded(end)))
            {
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
        let groups = self.groups.clone();
        let start = self.scope.key_groups.start;
        let range = (self.scope.key_groups.start, self.scope.key_groups.end);
        let (entries, size_hint) = (self.entries, self.bytes as usize + self.entries as usize * 10);
        let name = format!("{}-{}.kv", self.scope.operator_id, self.scope.subtask);
        Ok(Box::pin(async move {
            let data = tokio::task::spawn_blocking(move || {
                write_kv_file(
                    groups.iter().enumerate().flat_map(|(i, m)| {
                        m.iter()
                            .map(move |(k, v)| (start + i, k.as_slice(), v.as_slice()))
                    }),
                    size_hint,
                )
            })
            .await
            .map_err(|e| DataFusionError::Execution(format!("writing a state snapshot: {e}")))?;
            let path = join_path(&target.exclusive_dir, &name);
            let size = data.len() as u64;
            target.storage.put(&path, data).await?;
            Ok(KeyedStateHandle {
                backend: "hashmap".into(),
                key_groups: range,
                files: vec![StateFile {
                    path,
                    size,
                    name,
                    shared: false,
                }],
                entries,
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

/// Reads the canonical files of `handle` and calls `f` for each entry of a
/// key group in `range`. Checks every file's size against the handle first.
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
    for file in &handle.files {
        let data = storage.get(&file.path).await?;
        if data.len() as u64 != file.size {
            return Err(DataFusionError::Execution(format!(
                "state file {} has {} bytes, expected {} (truncated or corrupt)",
                file.path,
                data.len(),
                file.size
            )));
        }
        read_kv_file(&data, &mut |kg, k, v| {
            if range.contains(kg) { f(kg, k, v) } else { Ok(()) }
        })
        .map_err(|e| e.context(format!("reading {}", file.path)))?;
    }
    Ok(())
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
            let mut entries = Vec::new();
            read_canonical_handle(handle, storage, scope.key_groups, &mut |kg, k, v| {
                entries.push((kg, k.to_vec(), v.to_vec()));
                Ok(())
            })
            .await?;
            for (kg, k, v) in entries {
                backend.put(kg, &k, &v)?;
            }
        }
        Ok(Box::new(backend))
    }
}

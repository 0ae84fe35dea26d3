//! Incremental snapshots of the `hashmap` backend: each leaf of its maps is
//! written once, as a segment of a file in the shared directory, and later
//! snapshots refer to that segment for as long as the leaf does not change.
//! A checkpoint then writes what changed since the last one (plus a small
//! manifest), not the whole state, as RocksDB's incremental checkpoints do.
//!
//! Files (integers little-endian):
//!
//! ```text
//! segment file    "WEIRKVS1", segment*, "WEIRKVSE"        (shared directory)
//!   segment       entry*: key_len varint, value_len varint, key, value (one leaf, key order)
//! manifest        "WEIRKVM1", files, key groups, "WEIRKVME"  (the checkpoint's directory)
//!   files         count: u32, per file: path_len: u32, path, size: u64
//!   key groups    count: u32, per key group: key_group: u32, run count: u32,
//!                 per run: file index: u32, offset: u64, length: u64
//! ```
//!
//! A run is one or more consecutive segments of one file; a key group's runs,
//! concatenated, are its entries in key order. Paths are relative to the
//! storage the handle is relative to.
//!
//! A file is referenced again only once its write has completed; a file
//! whose live segments make up less than half of it is not referenced again
//! (its live leaves are rewritten into the new file), which bounds the bytes
//! a checkpoint references to about twice the state.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::common::{DataFusionError, Result};
use parking_lot::Mutex;

use super::backend::{KeyedStateHandle, SendEntryVisitor, StateFile};
use super::hashmap::join_path;
use super::key_group_map::KeyGroupMap;
use super::leaf::decode_entries;
use crate::checkpoint::storage::CheckpointStorage;
use crate::key_group::KeyGroupRange;

const SEGMENTS_MAGIC: &[u8; 8] = b"WEIRKVS1";
const SEGMENTS_END: &[u8; 8] = b"WEIRKVSE";
const MANIFEST_MAGIC: &[u8; 8] = b"WEIRKVM1";
const MANIFEST_END: &[u8; 8] = b"WEIRKVME";

/// The name ending of a manifest: a handle with one is incremental.
pub const MANIFEST_SUFFIX: &str = ".kvm";

/// Where a leaf's entries were written: bytes `offset..offset + len` of
/// segment file `file` (an id of the backend's [`SegmentFiles`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef {
    pub file: u32,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug)]
struct SegmentFile {
    path: String,
    size: u64,
    /// Bytes of segments in it.
    data: u64,
}

/// The segment files that a `hashmap` backend's leaves refer to.
///
/// Lifecycle: empty when the backend is created (restored leaves have no
/// segment, so the first incremental snapshot writes every leaf); each
/// [`plan`](Self::plan) adds the file of that snapshot and forgets the
/// files no leaf refers to any more. Deleting files is the checkpoint
/// coordinator's job (by reference counting of the retained checkpoints).
#[derive(Debug)]
pub struct SegmentFiles {
    files: HashMap<u32, SegmentFile>,
    next_id: u32,
    /// Files whose write completed (set by the snapshots' futures).
    written: Arc<Mutex<HashSet<u32>>>,
    /// Makes file names unique to this backend instance.
    nonce: String,
}

impl Default for SegmentFiles {
    fn default() -> Self {
        SegmentFiles {
            files: HashMap::new(),
            next_id: 0,
            written: Arc::default(),
            nonce: super::instance_nonce(),
        }
    }
}

/// What an incremental snapshot writes, fixed synchronously at the barrier
/// by [`SegmentFiles::plan`] and written by [`write`](Self::write).
pub struct IncrementalSnapshot {
    groups: Vec<KeyGroupMap>,
    first_key_group: usize,
    /// The new file: id, path, expected size (none if no leaf changed).
    new_file: Option<(u32, String, u64)>,
    /// Every file referenced, new one included: id, path, size.
    files: Vec<(u32, String, u64)>,
    written: Arc<Mutex<HashSet<u32>>>,
}

impl SegmentFiles {
    /// Gives every leaf of `groups` (key groups from `first_key_group`) a
    /// segment: the one it has, if its file is complete and not mostly
    /// garbage, else one in a new file under `shared_dir` named after
    /// `name` (e.g. `operator-subtask`). Returns what the snapshot writes.
    pub fn plan(
        &mut self,
        groups: &mut [KeyGroupMap],
        first_key_group: usize,
        shared_dir: &str,
        name: &str,
    ) -> IncrementalSnapshot {
        let written = self.written.lock().clone();
        let mut live: HashMap<u32, u64> = HashMap::new();
        for leaf in groups.iter().flat_map(|g| g.leaves()) {
            if let Some(s) = leaf.segment() {
                *live.entry(s.file).or_default() += s.len;
            }
        }
        let reused: HashSet<u32> = live
            .iter()
            .filter(|(id, bytes)| {
                written.contains(id) && self.files.get(id).is_some_and(|f| 2 * **bytes >= f.data)
            })
            .map(|(id, _)| *id)
            .collect();
        let id = self.next_id;
        self.next_id += 1;
        let mut offset = SEGMENTS_MAGIC.len() as u64;
        for map in groups.iter_mut() {
            map.assign_segments(
                |leaf| !leaf.is_empty() && !leaf.segment().is_some_and(|s| reused.contains(&s.file)),
                |leaf| {
                    let segment = SegmentRef {
                        file: id,
                        offset,
                        len: leaf.size() as u64,
                    };
                    offset += segment.len;
                    segment
                },
            );
        }
        let new_file = (offset > SEGMENTS_MAGIC.len() as u64).then(|| {
            let path = join_path(shared_dir, &format!("{name}-{}-{id}.kvs", self.nonce));
            let size = offset + SEGMENTS_END.len() as u64;
            self.files.insert(
                id,
                SegmentFile {
                    path: path.clone(),
                    size,
                    data: offset - SEGMENTS_MAGIC.len() as u64,
                },
            );
            (id, path, size)
        });
        self.files
            .retain(|f, _| reused.contains(f) || new_file.as_ref().is_some_and(|n| n.0 == *f));
        self.written.lock().retain(|f| reused.contains(f));
        let mut files: Vec<(u32, String, u64)> = self
            .files
            .iter()
            .map(|(id, f)| (*id, f.path.clone(), f.size))
            .collect();
        files.sort_unstable_by_key(|f| f.0);
        IncrementalSnapshot {
            groups: groups.to_vec(),
            first_key_group,
            new_file,
            files,
            written: self.written.clone(),
        }
    }
}

impl IncrementalSnapshot {
    /// Writes the new segment file and the manifest `manifest_path` to
    /// `storage` (blocking: call it off the async workers); returns the
    /// snapshot's files, the manifest first.
    pub fn write(self, storage: &CheckpointStorage, manifest_path: &str) -> Result<Vec<StateFile>> {
        if let Some((id, path, size)) = &self.new_file {
            let written = storage.write_with(path, |out| self.write_segments(*id, out))?;
            if written != *size {
                return Err(DataFusionError::Internal(format!(
                    "segment file {path} has {written} bytes, expected {size}"
                )));
            }
        }
        let manifest_size = storage.write_with(manifest_path, |out| self.write_manifest(out))?;
        if let Some((id, ..)) = &self.new_file {
            self.written.lock().insert(*id);
        }
        let mut files = vec![StateFile::at(manifest_path, manifest_size, false)];
        files.extend(
            self.files
                .iter()
                .map(|(_, path, size)| StateFile::at(path, *size, true)),
        );
        Ok(files)
    }

    /// The leaves given a segment of file `id`, in the order (and so at the
    /// offsets) [`SegmentFiles::plan`] gave them.
    fn write_segments(&self, id: u32, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(SEGMENTS_MAGIC)?;
        let mut offset = SEGMENTS_MAGIC.len() as u64;
        for leaf in self.groups.iter().flat_map(|g| g.leaves()) {
            let Some(segment) = leaf.segment().filter(|s| s.file == id) else {
                continue;
            };
            if segment.offset != offset || segment.len != leaf.size() as u64 {
                return Err(std::io::Error::other(format!(
                    "a leaf planned at {}+{} comes at {offset}+{}",
                    segment.offset,
                    segment.len,
                    leaf.size()
                )));
            }
            leaf.write_entries(out)?;
            offset += segment.len;
        }
        out.write_all(SEGMENTS_END)
    }

    fn write_manifest(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(MANIFEST_MAGIC)?;
        out.write_all(&(self.files.len() as u32).to_le_bytes())?;
        let mut index = HashMap::with_capacity(self.files.len());
        for (i, (id, path, size)) in self.files.iter().enumerate() {
            index.insert(*id, i as u32);
            out.write_all(&(path.len() as u32).to_le_bytes())?;
            out.write_all(path.as_bytes())?;
            out.write_all(&size.to_le_bytes())?;
        }
        let mut key_groups: Vec<(u32, Vec<Run>)> = Vec::new();
        for (i, map) in self.groups.iter().enumerate() {
            let mut runs: Vec<Run> = Vec::new();
            for leaf in map.leaves().filter(|l| !l.is_empty()) {
                let s = leaf
                    .segment()
                    .ok_or_else(|| std::io::Error::other("a leaf without a segment"))?;
                let file = *index.get(&s.file).ok_or_else(|| {
                    std::io::Error::other("a leaf refers to a file the snapshot does not list")
                })?;
                match runs.last_mut() {
                    Some((f, offset, len)) if *f == file && *offset + *len == s.offset => *len += s.len,
                    _ => runs.push((file, s.offset, s.len)),
                }
            }
            if !runs.is_empty() {
                key_groups.push(((self.first_key_group + i) as u32, runs));
            }
        }
        out.write_all(&(key_groups.len() as u32).to_le_bytes())?;
        for (kg, runs) in key_groups {
            out.write_all(&kg.to_le_bytes())?;
            out.write_all(&(runs.len() as u32).to_le_bytes())?;
            for (file, offset, len) in runs {
                out.write_all(&file.to_le_bytes())?;
                out.write_all(&offset.to_le_bytes())?;
                out.write_all(&len.to_le_bytes())?;
            }
        }
        out.write_all(MANIFEST_END)
    }
}

/// Consecutive segments of one file: file index (in the manifest), offset, length.
type Run = (u32, u64, u64);

fn corrupt(path: &str, what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt keyed state manifest {path}: {what}"))
}

/// The manifest of an incremental `hashmap` handle, if it is one.
pub fn manifest_of(handle: &KeyedStateHandle) -> Option<&StateFile> {
    handle.files.iter().find(|f| f.name.ends_with(MANIFEST_SUFFIX))
}

/// Reads an incremental handle (one with a manifest): calls `f` for each
/// entry of a key group in `range`, in key group and key order. `files` are
/// the handle's files, read and size-checked.
pub(crate) fn read_incremental(
    manifest: &StateFile,
    files: &HashMap<String, Bytes>,
    range: KeyGroupRange,
    f: &mut SendEntryVisitor<'_>,
) -> Result<()> {
    let path = &manifest.path;
    let mut m = Reader {
        bytes: &files[path],
        path,
    };
    if m.take(8)? != MANIFEST_MAGIC {
        return Err(corrupt(path, "not a manifest"));
    }
    let file_count = m.u32()? as usize;
    let mut segment_files: Vec<&Bytes> = Vec::with_capacity(file_count.min(1024));
    for _ in 0..file_count {
        let len = m.u32()? as usize;
        let name = std::str::from_utf8(m.take(len)?).map_err(|_| corrupt(path, "a path is not UTF-8"))?;
        let size = m.u64()?;
        let data = files
            .get(name)
            .ok_or_else(|| corrupt(path, &format!("{name} is not a file of its handle")))?;
        if data.len() as u64 != size || !data.starts_with(SEGMENTS_MAGIC) || !data.ends_with(SEGMENTS_END) {
            return Err(corrupt(
                path,
                &format!("segment file {name} is truncated or corrupt"),
            ));
        }
        segment_files.push(data);
    }
    for _ in 0..m.u32()? {
        let kg = m.u32()? as usize;
        for _ in 0..m.u32()? {
            let file = m.u32()? as usize;
            let (offset, len) = (m.u64()? as usize, m.u64()? as usize);
            if !range.contains(kg) {
                continue;
            }
            let data = segment_files
                .get(file)
                .ok_or_else(|| corrupt(path, "a run names no file"))?;
            let end = offset
                .checked_add(len)
                .filter(|&end| offset >= SEGMENTS_MAGIC.len() && end <= data.len() - SEGMENTS_END.len())
                .ok_or_else(|| corrupt(path, "a run lies outside its file"))?;
            decode_entries(&data[offset..end], &mut |k, v| f(kg, k, v))?;
        }
    }
    if m.take(8)? != MANIFEST_END || !m.bytes.is_empty() {
        return Err(corrupt(path, "bad end"));
    }
    Ok(())
}

/// Reads the manifest's fields from the front.
struct Reader<'a> {
    bytes: &'a [u8],
    path: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(corrupt(self.path, "truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::state::testing::{collect, scope, target};
    use crate::state::{HashMapBackendFactory, HashMapStateBackend, KeyedStateBackend, StateBackendFactory};

    /// The key groups the tests write to (of the 16 of `scope`).
    const KEY_GROUPS: usize = 4;

    async fn checkpoint(
        b: &mut dyn KeyedStateBackend,
        storage: &CheckpointStorage,
        id: u64,
    ) -> KeyedStateHandle {
        b.snapshot(target(storage, id, true, false))
            .unwrap()
            .await
            .unwrap()
    }

    fn entries(b: &dyn KeyedStateBackend) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
        collect(b, &[]).unwrap()
    }

    async fn restored(
        h: &KeyedStateHandle,
        storage: &CheckpointStorage,
        dir: &std::path::Path,
    ) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
        let b = HashMapBackendFactory
            .create(&scope(dir, 0, 1, "restored"), &[(h.clone(), storage.clone())])
            .await
            .unwrap();
        entries(b.as_ref())
    }

    fn segment_files(h: &KeyedStateHandle) -> BTreeSet<(String, u64)> {
        h.files
            .iter()
            .filter(|f| f.shared)
            .map(|f| (f.path.clone(), f.size))
            .collect()
    }

    #[tokio::test]
    async fn checkpoints_write_the_leaves_that_changed_and_restore_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(dir.path().join("checkpoints").to_str().unwrap()).unwrap();
        let mut b = HashMapStateBackend::new(scope(dir.path(), 0, 1, "live"));
        for kg in 0..KEY_GROUPS {
            for i in 0..5000u32 {
                b.put(kg, &i.to_be_bytes(), &[kg as u8; 20]).unwrap();
            }
        }
        let h1 = checkpoint(&mut b, &storage, 1).await;
        let first = segment_files(&h1);
        assert_eq!(first.len(), 1);
        let full = first.iter().next().unwrap().1;
        assert!(
            full > (KEY_GROUPS * 5000 * 26) as u64,
            "every entry: {full} bytes"
        );
        assert_eq!(restored(&h1, &storage, dir.path()).await, entries(&b));

        // Two leaves change: the new file holds them only.
        b.put(2, &7u32.to_be_bytes(), b"changed").unwrap();
        b.delete(3, &4000u32.to_be_bytes()).unwrap();
        let h2 = checkpoint(&mut b, &storage, 2).await;
        let second = segment_files(&h2);
        assert!(second.is_superset(&first), "the first file is still referenced");
        let new: Vec<_> = second.difference(&first).collect();
        assert_eq!(new.len(), 1);
        assert!(
            new[0].1 <= 2 * 8000 + 16,
            "two leaves at most: {} bytes",
            new[0].1
        );
        assert_eq!(restored(&h2, &storage, dir.path()).await, entries(&b));

        // Nothing changed: no new file.
        let h3 = checkpoint(&mut b, &storage, 3).await;
        assert_eq!(segment_files(&h3), second);

        // A snapshot whose write never ran: its file is not referenced later.
        b.put(1, &1u32.to_be_bytes(), b"lost?").unwrap();
        drop(b.snapshot(target(&storage, 4, true, false)).unwrap());
        let h5 = checkpoint(&mut b, &storage, 5).await;
        for (path, size) in segment_files(&h5) {
            assert_eq!(storage.size_of(&path).await.unwrap(), Some(size), "{path} exists");
        }
        assert_eq!(restored(&h5, &storage, dir.path()).await, entries(&b));

        // Most entries deleted: the first file, mostly garbage, is dropped
        // (its live leaves are written again).
        for kg in 0..KEY_GROUPS {
            for i in 1000..5000u32 {
                b.delete(kg, &i.to_be_bytes()).unwrap();
            }
        }
        let h6 = checkpoint(&mut b, &storage, 6).await;
        let sixth = segment_files(&h6);
        assert!(sixth.is_disjoint(&first), "{sixth:?}");
        let referenced: u64 = sixth.iter().map(|f| f.1).sum();
        assert!(referenced < full / 2, "{referenced} of {full} bytes");
        assert_eq!(restored(&h6, &storage, dir.path()).await, entries(&b));
    }

    #[tokio::test]
    async fn a_corrupt_manifest_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(dir.path().join("checkpoints").to_str().unwrap()).unwrap();
        let mut b = HashMapStateBackend::new(scope(dir.path(), 0, 1, "live"));
        b.put(0, b"k", b"v").unwrap();
        let h = checkpoint(&mut b, &storage, 1).await;
        let manifest = manifest_of(&h).unwrap();
        let local = storage.local_path(&manifest.path).unwrap();
        let mut data = std::fs::read(&local).unwrap();
        // The run's length (the last 8 bytes before the end marker).
        let at = data.len() - 16;
        data[at] = 0xff;
        std::fs::write(&local, &data).unwrap();
        let err = HashMapBackendFactory
            .create(&scope(dir.path(), 0, 1, "restored"), &[(h, storage)])
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("outside its file"), "{err}");
    }
}

//! The files of [`BatchState`](super::BatchState) snapshots.
//!
//! ```text
//! batch file   "WEIRWB01", chunk*, "WEIRWBE1"   (shared directory, or the
//!                                               checkpoint's when not incremental)
//!   chunk      one Arrow IPC stream: a namespace's batches, key group column last
//! manifest     JSON (the checkpoint's directory):
//!              { "format": "weir-batches", "version": 1,
//!                "files": [ { "path": "shared/...", "size": 123 } ],
//!                "chunks": [ { "namespace": [0, 1], "file": 0, "offset": 8, "length": 100 } ] }
//! ```
//!
//! Paths are relative to the storage the handle is relative to. With
//! incremental checkpoints, a chunk is written once and referenced by later
//! snapshots for as long as its namespace is not replaced; a file is
//! referenced again only once its write has completed, and a file whose
//! live chunks make up less than half of it is not referenced again (they
//! are written again), which bounds what a checkpoint references to about
//! twice the state. Without a shared directory (savepoints, or incremental
//! checkpoints off) each snapshot writes every chunk into one file of its
//! own, so it stands alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::backend::{KeyedStateHandle, SnapshotTarget, StateFile};
use super::batch_state::{BatchState, Chunk, key_groups_of_stored};
use super::hashmap::{join_path, read_file};
use crate::checkpoint::storage::CheckpointStorage;
use crate::key_group::KeyGroupRange;

const MAGIC: &[u8; 8] = b"WEIRWB01";
const END: &[u8; 8] = b"WEIRWBE1";
const FORMAT: &str = "weir-batches";
const VERSION: u32 = 1;

/// The name ending of a batch manifest.
pub const BATCH_MANIFEST_SUFFIX: &str = ".wbm";

/// Where a chunk was written: bytes `offset..offset + len` of file `file`
/// (an id of its [`BatchFiles`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    file: u32,
    offset: u64,
    len: u64,
}

/// Where a chunk is written, shared between its [`BatchState`] and the
/// snapshots writing it.
#[derive(Debug, Default)]
pub(crate) struct ChunkLocation {
    /// The chunk in a file whose write completed.
    written: Option<ChunkRef>,
    /// The file of the latest snapshot that writes it: only that snapshot
    /// sets `written`, so an older snapshot finishing late cannot point the
    /// chunk at a file a newer checkpoint does not list.
    planned: Option<u32>,
}

#[derive(Debug)]
struct BatchFile {
    path: String,
    size: u64,
    /// Bytes of chunks in it.
    data: u64,
}

/// The batch files the chunks of a [`BatchState`] refer to.
///
/// Lifecycle: empty when the state is created (restored chunks have no
/// location, so the first incremental snapshot writes them all); a file is
/// added when a snapshot's write completes, and forgotten by the first plan
/// that finds no chunk referring to it. Deleting files is the checkpoint
/// coordinator's job (by reference counting of the retained checkpoints).
#[derive(Debug)]
pub(crate) struct BatchFiles {
    files: Arc<Mutex<HashMap<u32, BatchFile>>>,
    next_id: u32,
    /// Makes file names unique to this instance.
    nonce: String,
}

impl Default for BatchFiles {
    fn default() -> Self {
        BatchFiles {
            files: Arc::default(),
            next_id: 0,
            nonce: super::instance_nonce(),
        }
    }
}

/// A namespace a snapshot writes: its name, rows and location.
type NewChunk = (Vec<u8>, Vec<RecordBatch>, Arc<Mutex<ChunkLocation>>);

/// What a snapshot writes, fixed synchronously at the barrier by
/// [`BatchFiles::plan`] and written by [`write`](Self::write).
pub(crate) struct BatchSnapshot {
    /// The new file's id and path, and whether it is shared.
    new_file: Option<(u32, String, bool)>,
    /// The namespaces it writes.
    new_chunks: Vec<NewChunk>,
    /// The chunks referenced where an earlier snapshot wrote them.
    reused: Vec<(Vec<u8>, ChunkRef)>,
    /// Those chunks' files: id → (path, size).
    reused_files: BTreeMap<u32, (String, u64)>,
    files: Arc<Mutex<HashMap<u32, BatchFile>>>,
    manifest_path: String,
}

impl BatchFiles {
    /// Decides, for every chunk of `namespaces`, whether the snapshot to
    /// `target` refers to where it is written or writes it into a new file.
    pub(crate) fn plan(
        &mut self,
        namespaces: &BTreeMap<Vec<u8>, Chunk>,
        target: &SnapshotTarget,
        base: &str,
    ) -> BatchSnapshot {
        let manifest_path = join_path(&target.exclusive_dir, &format!("{base}{BATCH_MANIFEST_SUFFIX}"));
        let id = self.next_id;
        self.next_id += 1;
        let Some(shared) = &target.shared_dir else {
            // Self-contained: every chunk into one file of this snapshot.
            let path = join_path(&target.exclusive_dir, &format!("{base}.wb"));
            return BatchSnapshot {
                new_file: Some((id, path, false)),
                new_chunks: namespaces
                    .iter()
                    .map(|(ns, c)| (ns.clone(), c.batches.clone(), c.location.clone()))
                    .collect(),
                reused: Vec::new(),
                reused_files: BTreeMap::new(),
                files: self.files.clone(),
                manifest_path,
            };
        };
        let mut files = self.files.lock();
        let mut live: HashMap<u32, u64> = HashMap::new();
        for chunk in namespaces.values() {
            if let Some(r) = chunk.location.lock().written {
                *live.entry(r.file).or_default() += r.len;
            }
        }
        files.retain(|id, _| live.contains_key(id));
        let reusable: HashSet<u32> = live
            .iter()
            .filter(|(id, bytes)| files.get(id).is_some_and(|f| 2 * **bytes >= f.data))
            .map(|(id, _)| *id)
            .collect();
        let (mut new_chunks, mut reused, mut reused_files) = (Vec::new(), Vec::new(), BTreeMap::new());
        for (ns, chunk) in namespaces {
            let mut location = chunk.location.lock();
            match location.written {
                Some(r) if reusable.contains(&r.file) => {
                    let f = &files[&r.file];
                    reused_files.insert(r.file, (f.path.clone(), f.size));
                    reused.push((ns.clone(), r));
                }
                _ => {
                    location.written = None;
                    location.planned = Some(id);
                    new_chunks.push((ns.clone(), chunk.batches.clone(), chunk.location.clone()));
                }
            }
        }
        drop(files);
        let new_file = (!new_chunks.is_empty()).then(|| {
            let name = format!("{base}-{}-{id}.wb", self.nonce);
            (id, join_path(shared, &name), true)
        });
        BatchSnapshot {
            new_file,
            new_chunks,
            reused,
            reused_files,
            files: self.files.clone(),
            manifest_path,
        }
    }
}

/// The manifest's content.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    files: Vec<ManifestFile>,
    chunks: Vec<ManifestChunk>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestFile {
    path: String,
    size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestChunk {
    namespace: Vec<u8>,
    /// Index into `files`.
    file: usize,
    offset: u64,
    length: u64,
}

/// A writer that counts what it writes.
struct Counting<'a> {
    out: &'a mut dyn Write,
    written: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn write_chunk(out: &mut Counting<'_>, batches: &[RecordBatch]) -> std::io::Result<()> {
    let mut w = StreamWriter::try_new(&mut *out, &batches[0].schema()).map_err(std::io::Error::other)?;
    for b in batches {
        w.write(b).map_err(std::io::Error::other)?;
    }
    w.finish().map_err(std::io::Error::other)
}

impl BatchSnapshot {
    /// Writes the new batch file and the manifest to `storage` (blocking:
    /// call it off the async workers); returns the snapshot's files, the
    /// manifest first.
    pub(crate) fn write(self, storage: &CheckpointStorage) -> Result<Vec<StateFile>> {
        let mut listed: Vec<ManifestFile> = Vec::new();
        let mut index: HashMap<u32, usize> = HashMap::new();
        let mut state_files = Vec::new();
        let mut chunks = Vec::new();
        for (id, (path, size)) in &self.reused_files {
            index.insert(*id, listed.len());
            listed.push(ManifestFile {
                path: path.clone(),
                size: *size,
            });
            state_files.push(StateFile::at(path, *size, true));
        }
        for (ns, r) in &self.reused {
            chunks.push(ManifestChunk {
                namespace: ns.clone(),
                file: index[&r.file],
                offset: r.offset,
                length: r.len,
            });
        }
        if let Some((id, path, shared)) = &self.new_file {
            let mut refs = Vec::with_capacity(self.new_chunks.len());
            let size = storage.write_with(path, |out| {
                let mut out = Counting { out, written: 0 };
                out.write_all(MAGIC)?;
                for (_, batches, _) in &self.new_chunks {
                    let offset = out.written;
                    write_chunk(&mut out, batches)?;
                    refs.push(ChunkRef {
                        file: *id,
                        offset,
                        len: out.written - offset,
                    });
                }
                out.write_all(END)
            })?;
            let file = listed.len();
            listed.push(ManifestFile {
                path: path.clone(),
                size,
            });
            state_files.push(StateFile::at(path, size, *shared));
            for ((ns, _, location), r) in self.new_chunks.iter().zip(&refs) {
                chunks.push(ManifestChunk {
                    namespace: ns.clone(),
                    file,
                    offset: r.offset,
                    length: r.len,
                });
                if *shared {
                    let mut location = location.lock();
                    if location.planned == Some(*id) {
                        location.written = Some(*r);
                        location.planned = None;
                    }
                }
            }
            if *shared {
                let data = refs.iter().map(|r| r.len).sum();
                self.files.lock().insert(
                    *id,
                    BatchFile {
                        path: path.clone(),
                        size,
                        data,
                    },
                );
            }
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            files: listed,
            chunks,
        };
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| DataFusionError::Internal(format!("serializing a batch manifest: {e}")))?;
        let size = storage.write_with(&self.manifest_path, |out| out.write_all(&json))?;
        state_files.insert(0, StateFile::at(&self.manifest_path, size, false));
        Ok(state_files)
    }
}

fn corrupt(path: &str, what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt batch state {path}: {what}"))
}

/// The batch state of the key groups `range` held by `handles`.
pub(crate) async fn read_batch_state(
    handles: &[(KeyedStateHandle, CheckpointStorage)],
    range: KeyGroupRange,
) -> Result<BatchState> {
    let mut namespaces: BTreeMap<Vec<u8>, Vec<RecordBatch>> = BTreeMap::new();
    for (handle, storage) in handles.iter().filter(|(h, _)| h.overlaps(range)) {
        let Some(manifest) = handle
            .batches
            .iter()
            .find(|f| f.name.ends_with(BATCH_MANIFEST_SUFFIX))
        else {
            continue;
        };
        read_handle(handle, manifest, storage, range, &mut namespaces)
            .await
            .map_err(|e| e.context(format!("reading {}", manifest.path)))?;
    }
    let mut state = BatchState::default();
    for (ns, batches) in namespaces {
        state.insert(ns, batches);
    }
    Ok(state)
}

async fn read_handle(
    handle: &KeyedStateHandle,
    manifest_file: &StateFile,
    storage: &CheckpointStorage,
    range: KeyGroupRange,
    namespaces: &mut BTreeMap<Vec<u8>, Vec<RecordBatch>>,
) -> Result<()> {
    let path = &manifest_file.path;
    let manifest: Manifest =
        serde_json::from_slice(&read_file(manifest_file, storage).await?).map_err(|e| corrupt(path, e))?;
    if manifest.format != FORMAT || manifest.version > VERSION {
        return Err(corrupt(
            path,
            format_args!("format '{}' version {}", manifest.format, manifest.version),
        ));
    }
    let mut data = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let Some(listed) = handle
            .batches
            .iter()
            .find(|h| h.path == f.path && h.size == f.size)
        else {
            return Err(corrupt(
                path,
                format_args!("{} is not a file of its handle", f.path),
            ));
        };
        let bytes = read_file(listed, storage).await?;
        if !bytes.starts_with(MAGIC) || !bytes.ends_with(END) {
            return Err(corrupt(&f.path, "not a batch file"));
        }
        data.push(bytes);
    }
    for c in &manifest.chunks {
        let bytes = data
            .get(c.file)
            .and_then(|d| d.get(c.offset as usize..(c.offset + c.length) as usize))
            .ok_or_else(|| corrupt(path, "a chunk lies outside its file"))?;
        let reader =
            StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(|e| corrupt(path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(path, e))?;
            let kgs = key_groups_of_stored(&batch).map_err(|e| corrupt(path, e))?;
            let keep: BooleanArray = kgs
                .values()
                .iter()
                .map(|&kg| Some(range.contains(kg as usize)))
                .collect();
            let batch = if keep.true_count() == batch.num_rows() {
                batch
            } else {
                filter_record_batch(&batch, &keep)?
            };
            if batch.num_rows() > 0 {
                namespaces.entry(c.namespace.clone()).or_default().push(batch);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;

    use super::*;
    use crate::state::testing::target;

    const KEY_GROUPS: usize = 8;
    const ALL: KeyGroupRange = KeyGroupRange {
        start: 0,
        end: KEY_GROUPS,
    };

    /// Checkpoint storage in a fresh directory (dropped with the directory).
    fn local_storage() -> (tempfile::TempDir, CheckpointStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(dir.path().to_str().unwrap()).unwrap();
        (dir, storage)
    }

    /// `n` rows with values `first..first + n`, row `i` in key group `i % 8`.
    fn rows(first: i64, n: usize) -> (RecordBatch, Vec<usize>) {
        let values: Vec<i64> = (first..first + n as i64).collect();
        let names: Vec<String> = values.iter().map(|v| format!("row {v}")).collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("v", Arc::new(Int64Array::from(values)) as _),
            ("name", Arc::new(StringArray::from(names)) as _),
        ])
        .unwrap();
        (batch, (0..n).map(|i| i % KEY_GROUPS).collect())
    }

    fn write(state: &mut BatchState, ns: &[u8], first: i64, n: usize) {
        let (batch, kgs) = rows(first, n);
        state.write(ns, &[batch], &[kgs]).unwrap();
    }

    fn snapshot(
        state: &mut BatchState,
        storage: &CheckpointStorage,
        id: u64,
        shared: bool,
    ) -> KeyedStateHandle {
        let plan = state
            .snapshot(&target(storage, id, shared, false), "op-0")
            .unwrap();
        KeyedStateHandle {
            backend: "hashmap".into(),
            key_groups: (0, KEY_GROUPS),
            files: Vec::new(),
            entries: 0,
            batches: plan.write(storage).unwrap(),
        }
    }

    /// Per namespace, the values of its rows in the key groups `range`.
    fn values(state: &BatchState) -> Vec<(Vec<u8>, Vec<i64>)> {
        let mut all: Vec<(Vec<u8>, Vec<i64>)> = state
            .read_all()
            .unwrap()
            .into_iter()
            .map(|(ns, b)| {
                let mut v: Vec<i64> = b.column(0).as_primitive::<Int64Type>().values().to_vec();
                v.sort();
                (ns, v)
            })
            .collect();
        all.sort();
        all
    }

    async fn restore(
        handle: &KeyedStateHandle,
        storage: &CheckpointStorage,
        range: KeyGroupRange,
    ) -> BatchState {
        read_batch_state(&[(handle.clone(), storage.clone())], range)
            .await
            .unwrap()
    }

    fn shared_files(h: &KeyedStateHandle) -> Vec<&StateFile> {
        h.batches.iter().filter(|f| f.shared).collect()
    }

    #[tokio::test]
    async fn chunks_are_written_once_and_restore_exactly() {
        let (_dir, storage) = local_storage();
        let mut state = BatchState::default();
        write(&mut state, b"a", 0, 1000);
        write(&mut state, b"b", 1000, 1000);
        write(&mut state, b"e", 3000, 100);

        let h1 = snapshot(&mut state, &storage, 1, true);
        assert!(h1.batches[0].name.ends_with(BATCH_MANIFEST_SUFFIX));
        assert_eq!(shared_files(&h1).len(), 1);
        assert_eq!(values(&restore(&h1, &storage, ALL).await), values(&state));

        // A new namespace: a new file with only its rows; the first file is referenced.
        write(&mut state, b"c", 5000, 10);
        let h2 = snapshot(&mut state, &storage, 2, true);
        let files2 = shared_files(&h2);
        assert_eq!(files2.len(), 2);
        assert_eq!(files2[0], shared_files(&h1)[0]);
        assert!(files2[1].size < files2[0].size / 20, "{files2:?}");
        assert_eq!(values(&restore(&h2, &storage, ALL).await), values(&state));

        // Nothing changed: no file written.
        let h3 = snapshot(&mut state, &storage, 3, true);
        assert_eq!(shared_files(&h3), files2);

        // A restore of part of the key groups gets exactly their rows.
        let part = restore(&h3, &storage, KeyGroupRange { start: 2, end: 5 }).await;
        let expected: Vec<(Vec<u8>, Vec<i64>)> = values(&state)
            .into_iter()
            .map(|(ns, v)| (ns, v.into_iter().filter(|v| (2..5).contains(&(v % 8))).collect()))
            .collect();
        assert_eq!(values(&part), expected);

        // A snapshot whose write never ran is not referenced: its rows are written again.
        write(&mut state, b"d", 6000, 10);
        drop(state.snapshot(&target(&storage, 4, true, false), "op-0"));
        let h5 = snapshot(&mut state, &storage, 5, true);
        assert_eq!(shared_files(&h5).len(), 3);
        assert_eq!(values(&restore(&h5, &storage, ALL).await), values(&state));

        // Deleting most of the first file's rows: its live rows (`e`) are
        // written again and it is no longer referenced.
        state.delete(b"a");
        state.delete(b"b");
        let h6 = snapshot(&mut state, &storage, 6, true);
        let files6 = shared_files(&h6);
        assert!(!files6.contains(&shared_files(&h1)[0]), "{files6:?}");
        assert_eq!(values(&restore(&h6, &storage, ALL).await), values(&state));

        // Everything deleted: nothing to snapshot.
        state.delete_prefix(b"");
        assert!(state.is_empty());
        assert!(
            state
                .snapshot(&target(&storage, 7, true, false), "op-0")
                .is_none()
        );
    }

    #[tokio::test]
    async fn without_a_shared_directory_each_snapshot_stands_alone() {
        let (_dir, storage) = local_storage();
        let mut state = BatchState::default();
        write(&mut state, b"a", 0, 100);
        let h1 = snapshot(&mut state, &storage, 1, false);
        write(&mut state, b"b", 100, 100);
        let h2 = snapshot(&mut state, &storage, 2, false);
        assert!(
            h2.batches
                .iter()
                .all(|f| !f.shared && f.path.starts_with("chk-2/"))
        );
        storage.delete_dir("chk-1").await.unwrap();
        assert_eq!(values(&restore(&h2, &storage, ALL).await), values(&state));
        assert!(read_batch_state(&[(h1, storage)], ALL).await.is_err());
    }

    #[tokio::test]
    async fn damaged_files_are_errors() {
        let (_dir, storage) = local_storage();
        let mut state = BatchState::default();
        write(&mut state, b"a", 0, 100);
        let h = snapshot(&mut state, &storage, 1, true);

        // A file the handle does not list.
        let mut unlisted = h.clone();
        unlisted.batches.truncate(1);
        let err = read_batch_state(&[(unlisted, storage.clone())], ALL)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is not a file of its handle"), "{err}");

        // A truncated batch file.
        let file = shared_files(&h)[0].clone();
        let data = storage.get(&file.path).await.unwrap();
        storage
            .put(&file.path, data.slice(..data.len() - 1))
            .await
            .unwrap();
        let err = read_batch_state(&[(h.clone(), storage.clone())], ALL)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        // A manifest that is not one.
        storage.put(&file.path, data).await.unwrap();
        storage
            .put(
                &h.batches[0].path,
                bytes::Bytes::from(vec![b'x'; h.batches[0].size as usize]),
            )
            .await
            .unwrap();
        let err = read_batch_state(&[(h, storage)], ALL).await.unwrap_err();
        assert!(err.to_string().contains("corrupt batch state"), "{err}");
    }
}

//! The asynchronous part of a snapshot: uploading a RocksDB checkpoint
//! directory (or writing the canonical file from it).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::common::{DataFusionError, Result};
use futures::{StreamExt, TryStreamExt};
use rocksdb::DB;
use weir_engine::checkpoint::storage::CheckpointStorage;
use weir_engine::key_group::KeyGroupRange;
use weir_engine::state::{KeyedStateHandle, KvFileWriter, SnapshotTarget, StateFile};

use crate::{RemoveOnDrop, db_error, decode_key, io_error, join_error, join_path};

/// Files uploaded at once by one snapshot.
const UPLOAD_CONCURRENCY: usize = 4;

/// Whether `name` is an SST file (immutable once written, so shareable).
pub(crate) fn is_sst(name: &str) -> bool {
    name.ends_with(".sst")
}

/// One SST file already in a storage.
#[derive(Debug, Clone)]
struct Uploaded {
    /// The storage it is in ([`CheckpointStorage::display`](weir_engine::checkpoint::storage::CheckpointStorage::display)):
    /// a path is only meaningful relative to its storage.
    storage: String,
    path: String,
    size: u64,
}

/// The SST files a backend instance knows to be uploaded already, by SST
/// file name. Entries are only ever added for files whose upload completed
/// (or that were restored unchanged from a handle), and dropped once the
/// database no longer has the file (RocksDB never reuses an SST file name).
#[derive(Debug, Default)]
pub(crate) struct UploadedSsts {
    files: HashMap<String, Uploaded>,
}

impl UploadedSsts {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn insert(&mut self, name: String, storage: &str, path: String, size: u64) {
        self.files.insert(
            name,
            Uploaded {
                storage: storage.to_string(),
                path,
                size,
            },
        );
    }

    /// The path of SST `name` of `size` bytes in `storage`, if uploaded there.
    fn lookup(&self, name: &str, storage: &str, size: u64) -> Option<String> {
        self.files
            .get(name)
            .filter(|u| u.storage == storage && u.size == size)
            .map(|u| u.path.clone())
    }

    /// Forgets the files not in `live` (deleted by compactions).
    fn retain(&mut self, live: &HashSet<&str>) {
        self.files.retain(|name, _| live.contains(name.as_str()));
    }
}

/// Everything the asynchronous part of one snapshot needs; owns the local
/// checkpoint directory, removed when the job ends, succeeds or not.
pub(crate) struct SnapshotJob {
    pub(crate) dir: RemoveOnDrop,
    pub(crate) target: SnapshotTarget,
    pub(crate) operator_id: String,
    pub(crate) subtask: usize,
    pub(crate) key_groups: KeyGroupRange,
    /// Entries at the synchronous part, i.e. in the checkpoint.
    pub(crate) entries: u64,
    pub(crate) nonce: String,
    pub(crate) uploaded: Arc<Mutex<UploadedSsts>>,
}

impl SnapshotJob {
    /// Uploads the checkpoint and returns its handle.
    pub(crate) async fn run(self) -> Result<KeyedStateHandle> {
        let result = if self.target.canonical {
            self.canonical().await
        } else {
            self.native().await
        };
        let dir = self.dir;
        let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
        result
    }

    fn uploaded(&self) -> std::sync::MutexGuard<'_, UploadedSsts> {
        self.uploaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, backend: &str, files: Vec<StateFile>) -> KeyedStateHandle {
        KeyedStateHandle {
            backend: backend.into(),
            key_groups: (self.key_groups.start, self.key_groups.end),
            files,
            entries: self.entries,
            batches: Vec::new(),
        }
    }

    /// Savepoints: every entry in the canonical key-value file, streamed
    /// from the checkpoint to the file.
    async fn canonical(&self) -> Result<KeyedStateHandle> {
        let dir = self.dir.0.clone();
        let entries = self.entries;
        let name = format!("{}-{}.kv", self.operator_id, self.subtask);
        let path = join_path(&self.target.exclusive_dir, &name);
        let storage = self.target.storage.clone();
        let size = tokio::task::spawn_blocking({
            let path = path.clone();
            move || write_as_kv_file(&dir, entries, &storage, &path)
        })
        .await
        .map_err(|e| join_error("writing a savepoint", e))??;
        Ok(self.handle("hashmap", vec![StateFile::at(&path, size, false)]))
    }

    /// Checkpoints: RocksDB's files, SST files shared when incremental.
    async fn native(&self) -> Result<KeyedStateHandle> {
        let dir = self.dir.0.clone();
        let files = tokio::task::spawn_blocking(move || list_files(&dir))
            .await
            .map_err(|e| join_error("listing a checkpoint", e))??;
        if self.target.shared_dir.is_some() {
            let live: HashSet<&str> = files
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| is_sst(n))
                .collect();
            self.uploaded().retain(&live);
        }
        let storage = self.target.storage.display().to_string();
        let exclusive = join_path(
            &self.target.exclusive_dir,
            &format!("{}-{}", self.operator_id, self.subtask),
        );
        // Collected first: a lazy `map` in the stream trips the `Send` check.
        let uploads: Vec<_> = files
            .iter()
            .map(|(name, size)| self.upload(name, *size, &exclusive, &storage))
            .collect();
        let files: Vec<StateFile> = futures::stream::iter(uploads)
            .buffered(UPLOAD_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(self.handle("rocksdb", files))
    }

    /// Uploads file `name` of the checkpoint (or reuses its earlier upload).
    async fn upload(&self, name: &str, size: u64, exclusive: &str, storage: &str) -> Result<StateFile> {
        let shared_dir = self.target.shared_dir.as_deref().filter(|_| is_sst(name));
        let Some(shared_dir) = shared_dir else {
            let path = join_path(exclusive, name);
            self.put_file(name, size, &path).await?;
            return Ok(StateFile::at(&path, size, false));
        };
        let reused = self.uploaded().lookup(name, storage, size);
        let path = match reused {
            Some(path) => path,
            None => {
                let unique = format!("{}-{}-{}-{name}", self.operator_id, self.subtask, self.nonce);
                let path = join_path(shared_dir, &unique);
                self.put_file(name, size, &path).await?;
                self.uploaded()
                    .insert(name.to_string(), storage, path.clone(), size);
                path
            }
        };
        Ok(StateFile {
            path,
            size,
            name: name.to_string(),
            shared: true,
        })
    }

    async fn put_file(&self, name: &str, size: u64, path: &str) -> Result<()> {
        self.target
            .storage
            .put_file(path, &self.dir.0.join(name), size)
            .await
    }
}

/// The files of checkpoint directory `dir`, with their sizes, by name.
fn list_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))? {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| io_error("reading", &entry.path(), e))?;
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        // Not part of a checkpoint: the lock and RocksDB's own info logs.
        if name == "LOCK" || name.starts_with("LOG") {
            continue;
        }
        files.push((name, meta.len()));
    }
    files.sort();
    Ok(files)
}

/// Writes every entry of the checkpoint in `dir` (which holds `entries`) to
/// `path` of `storage` as a canonical key-value file; returns its size.
fn write_as_kv_file(dir: &PathBuf, entries: u64, storage: &CheckpointStorage, path: &str) -> Result<u64> {
    let mut opts = rocksdb::Options::default();
    opts.set_log_level(rocksdb::LogLevel::Warn);
    let db = DB::open_for_read_only(&opts, dir, false)
        .map_err(|e| db_error(format_args!("opening checkpoint {}", dir.display()), e))?;
    // A failure to read the checkpoint, kept as it is (the file is dropped).
    let mut read_error = None;
    let mut failed = |e: DataFusionError| {
        let message = e.to_string();
        read_error = Some(e);
        std::io::Error::other(message)
    };
    let written = storage.write_with(path, |out| {
        let mut file = KvFileWriter::new(out)?;
        let mut it = db.raw_iterator();
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (kg, _) = decode_key(k).map_err(&mut failed)?;
            file.entry(kg, &k[crate::KEY_GROUP_BYTES..], v)?;
            it.next();
        }
        it.status()
            .map_err(|e| failed(db_error(format_args!("reading checkpoint {}", dir.display()), e)))?;
        let count = file.finish()?;
        if count != entries {
            return Err(failed(DataFusionError::Internal(format!(
                "rocksdb state: checkpoint {} holds {count} entries, the backend counted {entries}",
                dir.display(),
            ))));
        }
        Ok(())
    });
    match read_error {
        Some(e) => Err(e),
        None => written,
    }
}

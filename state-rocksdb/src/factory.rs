//! [`RocksDbBackendFactory`]: creates (and restores) [`RocksDbStateBackend`]s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use futures::{StreamExt, TryStreamExt};
use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, LogLevel, Options};
use weir_engine::checkpoint::storage::CheckpointStorage;
use weir_engine::key_group::KeyGroupRange;
use weir_engine::state::{
    KeyedStateBackend, KeyedStateHandle, StateBackendFactory, StateFile, StateScope, read_canonical_handle,
};

use crate::backend::RocksDbStateBackend;
use crate::expiry_filter::{DroppedByExpiry, ExpiryFilterFactory};
use crate::snapshot::is_sst;
use crate::{MAX_KEY_GROUPS, RemoveOnDrop, db_error, fresh_dir, io_error, join_error, sibling};

/// Files downloaded at once on restore.
const DOWNLOAD_CONCURRENCY: usize = 4;

/// Creates the `rocksdb` keyed state backend of each subtask
/// (`state.backend.type = 'rocksdb'`).
///
/// # Lifecycle
///
/// One factory serves every subtask of a job (it holds only settings).
/// [`create`](StateBackendFactory::create) wipes the subtask's
/// `scope.local_dir`, then opens an empty RocksDB there or restores one:
///
/// * a single `rocksdb` handle covering exactly the subtask's key groups is
///   downloaded and opened as is (the fast path; its shared SST files are
///   then reused by the next incremental checkpoint instead of uploaded);
/// * otherwise (rescale, canonical `hashmap` files from a savepoint or from
///   the other backend, several handles) the entries of the subtask's key
///   groups are copied into a fresh database.
///
/// # Invariants
///
/// Every downloaded file is checked against the size its handle lists before
/// anything is opened: a missing, truncated or corrupt snapshot fails the
/// restore with an error naming the file, never restores part of the state.
#[derive(Debug, Clone)]
pub struct RocksDbBackendFactory {
    /// Block cache of each subtask's database, in bytes.
    pub block_cache_bytes: usize,
    /// Memtable size of each subtask's database, in bytes (RocksDB's and
    /// Flink's default, 64 MiB). Every checkpoint flushes the memtable, so
    /// between checkpoints (and without them) a larger one means fewer
    /// level-0 files for every read of a new key to check: Nexmark q4 without
    /// checkpoints 302–327 k → 400–454 k events/s, with checkpoints every
    /// 10 s 325 k → 415 k (16 MiB before; the memory is taken as it fills).
    pub write_buffer_bytes: usize,
}

impl Default for RocksDbBackendFactory {
    fn default() -> Self {
        RocksDbBackendFactory {
            block_cache_bytes: 16 << 20,
            write_buffer_bytes: 64 << 20,
        }
    }
}

impl RocksDbBackendFactory {
    /// The options of a subtask's database.
    fn options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Every checkpoint flushes the memtable into a new level-0 file, and
        // window state is mostly deleted within seconds: compressing level
        // 0 and 1 would spend CPU on data that compaction soon drops (as
        // RocksDB's tuning guide advises). Deeper, long-lived levels: LZ4.
        opts.set_compression_per_level(&[
            DBCompressionType::None,
            DBCompressionType::None,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
        ]);
        opts.set_write_buffer_size(self.write_buffer_bytes);
        opts.set_max_background_jobs(2);
        // RocksDB's own info log, in the working directory: small and quiet.
        opts.set_log_level(LogLevel::Warn);
        opts.set_keep_log_file_num(2);
        opts.set_max_log_file_size(1 << 20);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(self.block_cache_bytes));
        // Every put and delete reads its key first (to keep `len` exact):
        // bloom filters make that cheap for new keys.
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        // The same for the memtable, where most reads of new keys end.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        // Filters (and the memtable's) also hold each key's lookup prefix:
        // a join's probe reads only the files holding rows of its key.
        opts.set_prefix_extractor(crate::lookup_prefix_extractor());
        opts
    }

    /// Opens the database in `dir` (wiped first when `fresh`), with a
    /// compaction filter that drops what the operator will call expired
    /// ([`KeyedStateBackend::drop_expired_entries`]).
    async fn open(&self, dir: &Path, fresh: bool) -> Result<(DB, Arc<DroppedByExpiry>)> {
        let mut opts = self.options();
        let dropped = Arc::new(DroppedByExpiry::default());
        opts.set_compaction_filter_factory(ExpiryFilterFactory(dropped.clone()));
        // A restored directory must hold a database: never create an empty
        // one in place of a snapshot missing its `CURRENT`.
        opts.create_if_missing(fresh);
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if fresh {
                fresh_dir(&dir)?;
            }
            DB::open(&opts, &dir)
                .map(|db| (db, dropped))
                .map_err(|e| db_error(format_args!("opening {}", dir.display()), e))
        })
        .await
        .map_err(|e| join_error("opening the database", e))?
    }

    /// Restores `handle`, which covers exactly the subtask's key groups, by
    /// opening its files.
    async fn restore_direct(
        &self,
        scope: &StateScope,
        local: RemoveOnDrop,
        handle: &KeyedStateHandle,
        storage: &CheckpointStorage,
    ) -> Result<RocksDbStateBackend> {
        download(handle, storage, &scope.local_dir).await?;
        let db = self.open(&scope.local_dir, false).await?;
        // The handle's entry count is exact; its sizes stand in for the bytes.
        let bytes = handle
            .files
            .iter()
            .filter(|f| is_sst(&f.name) || f.name.ends_with(".log"))
            .map(|f| f.size)
            .sum();
        let backend = RocksDbStateBackend::new(scope.clone(), db, handle.entries, bytes, local);
        backend.record_uploaded(
            storage.display(),
            handle
                .files
                .iter()
                .filter(|f| f.shared && is_sst(&f.name))
                .map(|f| (f.name.clone(), f.path.clone(), f.size)),
        );
        Ok(backend)
    }

    /// Restores what `restore` holds of the subtask's key groups by copying
    /// entries into a fresh database.
    async fn restore_by_copy(
        &self,
        scope: &StateScope,
        local: RemoveOnDrop,
        restore: &[&(KeyedStateHandle, CheckpointStorage)],
    ) -> Result<RocksDbStateBackend> {
        let db = self.open(&scope.local_dir, true).await?;
        let mut backend = RocksDbStateBackend::new(scope.clone(), db, 0, 0, local);
        let range = scope.key_groups;
        for (i, (handle, storage)) in restore.iter().enumerate() {
            match handle.backend.as_str() {
                "hashmap" => {
                    read_canonical_handle(handle, storage, range, &mut |kg, k, v| backend.put(kg, k, v))
                        .await?
                }
                "rocksdb" => {
                    let dir = sibling(&scope.local_dir, &format!("restore-{i}"));
                    let guard = RemoveOnDrop(dir.clone());
                    tokio::task::spawn_blocking({
                        let dir = dir.clone();
                        move || fresh_dir(&dir)
                    })
                    .await
                    .map_err(|e| join_error("creating a restore directory", e))??;
                    download(handle, storage, &dir).await?;
                    let handle_range = KeyGroupRange {
                        start: handle.key_groups.0,
                        end: handle.key_groups.1,
                    };
                    backend = tokio::task::spawn_blocking(move || {
                        backend.import_dir(&dir, handle_range)?;
                        drop(guard);
                        Ok::<_, DataFusionError>(backend)
                    })
                    .await
                    .map_err(|e| join_error("restoring keyed state", e))??;
                }
                other => return Err(unknown_backend(other)),
            }
        }
        Ok(backend)
    }
}

fn unknown_backend(name: &str) -> DataFusionError {
    DataFusionError::Execution(format!(
        "keyed state written by an unknown backend '{name}' cannot be restored by the rocksdb backend"
    ))
}

/// Downloads every file of `handle` into `dir` (which exists), checking
/// each one's size first.
async fn download(handle: &KeyedStateHandle, storage: &CheckpointStorage, dir: &Path) -> Result<()> {
    // Collected first: a lazy `map` in the stream trips the `Send` check.
    let downloads: Vec<_> = handle
        .files
        .iter()
        .map(|file| download_file(file, storage, dir))
        .collect();
    futures::stream::iter(downloads)
        .buffer_unordered(DOWNLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Downloads `file` into `dir`, checking its size.
async fn download_file(file: &StateFile, storage: &CheckpointStorage, dir: &Path) -> Result<()> {
    let name = Path::new(&file.name);
    if file.name.is_empty() || name.file_name() != Some(name.as_os_str()) {
        return Err(DataFusionError::Execution(format!(
            "rocksdb state file {} has an invalid name '{}' (corrupt _metadata?)",
            file.path, file.name
        )));
    }
    let data = storage.get(&file.path).await.map_err(|e| {
        DataFusionError::Execution(format!(
            "rocksdb state file {}/{} cannot be read (missing?): {e}",
            storage.display(),
            file.path
        ))
    })?;
    if data.len() as u64 != file.size {
        return Err(DataFusionError::Execution(format!(
            "rocksdb state file {}/{} has {} bytes, expected {} (truncated or corrupt)",
            storage.display(),
            file.path,
            data.len(),
            file.size
        )));
    }
    let local: PathBuf = dir.join(name);
    tokio::task::spawn_blocking(move || {
        std::fs::write(&local, &data).map_err(|e| io_error("writing", &local, e))
    })
    .await
    .map_err(|e| join_error("downloading keyed state", e))?
}

#[async_trait]
impl StateBackendFactory for RocksDbBackendFactory {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    async fn create(
        &self,
        scope: &StateScope,
        restore: &[(KeyedStateHandle, CheckpointStorage)],
    ) -> Result<Box<dyn KeyedStateBackend>> {
        let range = scope.key_groups;
        if range.end > MAX_KEY_GROUPS || range.start > range.end {
            return Err(DataFusionError::Configuration(format!(
                "the rocksdb state backend supports at most {MAX_KEY_GROUPS} key groups, not {}..{}",
                range.start, range.end
            )));
        }
        if scope.local_dir.file_name().is_none() {
            return Err(DataFusionError::Configuration(format!(
                "the rocksdb state backend needs a local directory with a name, not '{}'",
                scope.local_dir.display()
            )));
        }
        let relevant: Vec<&(KeyedStateHandle, CheckpointStorage)> =
            restore.iter().filter(|(h, _)| h.overlaps(range)).collect();
        if let Some((h, _)) = relevant
            .iter()
            .find(|(h, _)| h.backend != "hashmap" && h.backend != "rocksdb")
        {
            return Err(unknown_backend(&h.backend));
        }
        // Removes the working directory if the restore fails, and when the
        // backend is dropped.
        let local = RemoveOnDrop(scope.local_dir.clone());
        let backend = match relevant[..] {
            [(handle, storage)]
                if handle.backend == "rocksdb" && handle.key_groups == (range.start, range.end) =>
            {
                let dir = scope.local_dir.clone();
                tokio::task::spawn_blocking(move || fresh_dir(&dir))
                    .await
                    .map_err(|e| join_error("creating the working directory", e))??;
                self.restore_direct(scope, local, handle, storage).await?
            }
            _ => self.restore_by_copy(scope, local, &relevant).await?,
        };
        Ok(Box::new(backend))
    }
}

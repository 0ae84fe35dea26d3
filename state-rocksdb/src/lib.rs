//! weir's `rocksdb` keyed state backend.
//!
//! Each operator subtask keeps its keyed state in its own local RocksDB,
//! under [`StateScope::local_dir`](weir_engine::state::StateScope): a working
//! copy, wiped when the backend is created and removed when it is dropped.
//! Durability comes from checkpoints only: writes skip RocksDB's WAL until
//! the first snapshot, and then go to it unsynced, for checkpoints to copy.
//!
//! # Key layout
//!
//! A RocksDB key is the 2-byte big-endian key group followed by the user key,
//! so the entries of one key group are contiguous and in key order, and the
//! whole database is in key-group order: a prefix scan or the restore of a
//! key-group range is a seek.
//!
//! # Snapshots
//!
//! A snapshot takes a RocksDB checkpoint (hard links to the SST files, a
//! copy of the WAL since the memtable's last flush) next to the working
//! directory, synchronously; the returned future then uploads it. It does
//! not flush the memtable (except at the first snapshot, for the writes made
//! before writes went to the WAL): a flush per checkpoint, every second,
//! makes a small level-0 file that spans every key group, and level-0 to
//! level-1 compactions that rewrite most of level 1 every few checkpoints.
//! Restoring opens the files as a database, which replays the WAL.
//!
//! Uploading:
//!
//! * checkpoints upload RocksDB's own files. With a shared directory
//!   (incremental checkpoints) SST files go there under a name unique to the
//!   backend instance, and an SST already uploaded by an earlier snapshot of
//!   the same instance (SST files never change once written) is referenced
//!   again instead of uploaded; the other files (`MANIFEST-*`, `CURRENT`,
//!   `OPTIONS-*`) go to the checkpoint's exclusive directory;
//! * savepoints (`canonical` targets) write the canonical key-value file
//!   instead, which every backend restores.
//!
//! # Restore
//!
//! [`RocksDbBackendFactory`] opens the downloaded files of a `rocksdb` handle
//! directly when it covers exactly the subtask's key groups; otherwise
//! (rescale, or canonical files) it copies the entries of the subtask's key
//! groups into a fresh database.

mod backend;
mod expiry_filter;
mod factory;
mod snapshot;

use std::path::{Path, PathBuf};

use datafusion::common::{DataFusionError, Result};
use weir_engine::state::lookup_prefix::lookup_prefix_len;

pub use backend::RocksDbStateBackend;
pub use factory::RocksDbBackendFactory;

/// Bytes of the key-group prefix of every RocksDB key.
const KEY_GROUP_BYTES: usize = 2;

/// Key groups are stored in [`KEY_GROUP_BYTES`] bytes.
const MAX_KEY_GROUPS: usize = 1 << 16;

/// The prefix extractor of every database: the key group and the
/// [lookup prefix](weir_engine::state::lookup_prefix) a key starts with, so
/// that bloom filters hold lookup prefixes (besides whole keys) and a probe
/// of one lookup key reads only the files that hold it. Only seeks of a
/// whole lookup prefix use them (every other iterator is in total order).
pub(crate) fn lookup_prefix_extractor() -> rocksdb::SliceTransform {
    rocksdb::SliceTransform::create(
        "weir.lookup_prefix",
        key_group_and_lookup_prefix,
        Some(has_lookup_prefix),
    )
}

fn key_group_and_lookup_prefix(raw: &[u8]) -> &[u8] {
    match raw.get(KEY_GROUP_BYTES..).and_then(lookup_prefix_len) {
        Some(len) => &raw[..KEY_GROUP_BYTES + len],
        None => raw,
    }
}

fn has_lookup_prefix(raw: &[u8]) -> bool {
    raw.get(KEY_GROUP_BYTES..).and_then(lookup_prefix_len).is_some()
}

/// The RocksDB key of `key` in `key_group`, written into `buf`.
fn encode_key(buf: &mut Vec<u8>, key_group: usize, key: &[u8]) {
    debug_assert!(key_group < MAX_KEY_GROUPS);
    buf.clear();
    buf.reserve(KEY_GROUP_BYTES + key.len());
    buf.extend_from_slice(&(key_group as u16).to_be_bytes());
    buf.extend_from_slice(key);
}

/// The key group and user key of a RocksDB key.
fn decode_key(raw: &[u8]) -> Result<(usize, &[u8])> {
    if raw.len() < KEY_GROUP_BYTES {
        return Err(DataFusionError::Execution(format!(
            "rocksdb state: a key of {} bytes has no key group prefix (corrupt state)",
            raw.len()
        )));
    }
    Ok((
        u16::from_be_bytes([raw[0], raw[1]]) as usize,
        &raw[KEY_GROUP_BYTES..],
    ))
}

/// An error of RocksDB while doing `what`.
fn db_error(what: impl std::fmt::Display, e: rocksdb::Error) -> DataFusionError {
    DataFusionError::Execution(format!("rocksdb state: {what}: {e}"))
}

/// An I/O error on a local file or directory.
fn io_error(what: impl std::fmt::Display, path: &Path, e: std::io::Error) -> DataFusionError {
    DataFusionError::Execution(format!("rocksdb state: {what} {}: {e}", path.display()))
}

/// A blocking task that did not finish (panicked or was cancelled).
fn join_error(what: &str, e: tokio::task::JoinError) -> DataFusionError {
    DataFusionError::Execution(format!("rocksdb state: {what}: {e}"))
}

/// `dir/name`, or `name` when `dir` is empty (storage paths).
fn join_path(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Removes a local directory (if it exists) when dropped: the working
/// directory of a backend, or a checkpoint or restore directory that must not
/// outlive the operation that made it, even when that operation fails or its
/// future is dropped.
#[derive(Debug)]
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes `dir` if it exists, then creates it (and its parents) empty.
fn fresh_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("removing", dir, e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))
}

/// Removes `dir` if it exists (its parent is created, for RocksDB to create it).
fn absent_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("removing", dir, e)),
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
    }
    Ok(())
}

/// A directory next to `local_dir`: `<local_dir>-<suffix>`.
fn sibling(local_dir: &Path, suffix: &str) -> PathBuf {
    let name = local_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local_dir.with_file_name(format!("{name}-{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_key_group_then_key() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode_key(&mut a, 1, b"zzz");
        encode_key(&mut b, 256, b"a");
        assert!(a < b);
        assert_eq!(decode_key(&b).unwrap(), (256, &b"a"[..]));
        assert!(decode_key(&[1]).is_err());
    }
}

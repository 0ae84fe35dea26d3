//! Where checkpoints and savepoints are written: a directory of an
//! [`ObjectStore`] (the local filesystem today; any store `object_store`
//! supports, e.g. S3, by URL).

use std::sync::Arc;

use bytes::Bytes;
use datafusion::common::{DataFusionError, Result};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::direct_file::DirectFile;

fn store_error(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(format!("checkpoint storage: {what}: {e}").into())
}

/// A directory in an object store. Cheap to clone.
///
/// Every file of a checkpoint is named relative to one such directory (the
/// job's checkpoint directory, or a savepoint directory), so a checkpoint can
/// be read back from wherever that directory is.
#[derive(Clone)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    base: Path,
    /// The directory as the user wrote it, for messages.
    display: String,
}

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointStorage({})", self.display)
    }
}

impl CheckpointStorage {
    /// Storage rooted at `location`: a local path or a `file://` URL. The
    /// directory is created if missing.
    pub fn open(location: &str) -> Result<Self> {
        let path = location.strip_prefix("file://").unwrap_or(location);
        if location.contains("://") && !location.starts_with("file://") {
            return Err(DataFusionError::Configuration(format!(
                "checkpoint storage '{location}': only local paths and file:// URLs are built in"
            )));
        }
        std::fs::create_dir_all(path).map_err(|e| store_error(&format!("creating {path}"), e))?;
        let abs = std::fs::canonicalize(path).map_err(|e| store_error(path, e))?;
        let store = LocalFileSystem::new_with_prefix(&abs).map_err(|e| store_error(path, e))?;
        Ok(CheckpointStorage {
            store: Arc::new(store),
            base: Path::default(),
            display: abs.display().to_string(),
        })
    }

    /// The subdirectory `dir` of this one.
    pub fn child(&self, dir: &str) -> Self {
        CheckpointStorage {
            store: self.store.clone(),
            base: self.path(dir),
            display: format!("{}/{dir}", self.display),
        }
    }

    /// The directory, for messages (an absolute local path for local storage).
    pub fn display(&self) -> &str {
        &self.display
    }

    fn path(&self, relative: &str) -> Path {
        let mut p = self.base.clone();
        for part in relative.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Writes `data` to `relative`, atomically (readers see all of it or nothing).
    pub async fn put(&self, relative: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.path(relative), PutPayload::from_bytes(data))
            .await
            .map_err(|e| store_error(&format!("writing {relative}"), e))?;
        Ok(())
    }

    /// Makes `relative` a copy of the local file `source`, which must have
    /// `size` bytes and never change (e.g. an SST file), atomically. On local
    /// storage the copy is a hard link where the filesystem allows (no bytes
    /// copied), else a copy made by the kernel.
    pub async fn put_file(&self, relative: &str, source: &std::path::Path, size: u64) -> Result<()> {
        let Some(target) = self.local_path(relative) else {
            let data = tokio::fs::read(source)
                .await
                .map_err(|e| store_error(&format!("reading {}", source.display()), e))?;
            return self.put(relative, Bytes::from(data)).await;
        };
        let (source, relative) = (source.to_path_buf(), relative.to_string());
        tokio::task::spawn_blocking(move || link_or_copy(&source, &target, size))
            .await
            .map_err(|e| store_error(&format!("writing {relative}"), e))?
            .map_err(|e| store_error(&format!("writing {relative}"), e))
    }

    /// Writes `relative` with what `write` writes (through a buffer, around
    /// the page cache where the file system allows: [`DirectFile`]),
    /// atomically; returns its size. Blocking: call it off the async
    /// workers. Local storage only.
    pub fn write_with(
        &self,
        relative: &str,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<u64> {
        let error = |e: std::io::Error| store_error(&format!("writing {relative}"), e);
        let target = self
            .local_path(relative)
            .ok_or_else(|| error(std::io::Error::other("not a local directory")))?;
        replace_atomically(&target, |temporary| {
            let mut out = DirectFile::create(temporary)?;
            write(&mut out)?;
            out.finish()
        })
        .map_err(error)
    }

    /// Reads all of `relative`.
    pub async fn get(&self, relative: &str) -> Result<Bytes> {
        let r = self
            .store
            .get(&self.path(relative))
            .await
            .map_err(|e| store_error(&format!("reading {relative}"), e))?;
        r.bytes()
            .await
            .map_err(|e| store_error(&format!("reading {relative}"), e))
    }

    /// Whether `relative` exists, and its size.
    pub async fn size_of(&self, relative: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(relative)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&format!("reading {relative}"), e)),
        }
    }

    /// Deletes `relative`; a missing file is not an error.
    pub async fn delete(&self, relative: &str) -> Result<()> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&format!("deleting {relative}"), e)),
        }
    }

    /// Deletes every file under `relative` (a directory).
    pub async fn delete_dir(&self, relative: &str) -> Result<()> {
        for f in self.list(relative).await? {
            self.delete(&f).await?;
        }
        if let Some(local) = self.local_path(relative) {
            // object_store leaves empty directories behind on local disks.
            let _ = std::fs::remove_dir_all(local);
        }
        Ok(())
    }

    /// The files under directory `relative`, as paths relative to this storage.
    pub async fn list(&self, relative: &str) -> Result<Vec<String>> {
        let prefix = self.path(relative);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| store_error(&format!("listing {relative}"), e))?;
        let base = self.base.as_ref();
        Ok(metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref().to_string();
                full.strip_prefix(base)
                    .map(|s| s.trim_start_matches('/').to_string())
                    .unwrap_or(full)
            })
            .collect())
    }

    /// The names of the subdirectories of `relative`.
    pub async fn list_dirs(&self, relative: &str) -> Result<Vec<String>> {
        let prefix = self.path(relative);
        let listing = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| store_error(&format!("listing {relative}"), e))?;
        Ok(listing
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(|s| s.to_string()))
            .collect())
    }

    /// The local path of `relative`, when the storage is a local directory.
    pub fn local_path(&self, relative: &str) -> Option<std::path::PathBuf> {
        let mut p = std::path::PathBuf::from(&self.display);
        for part in relative.split('/').filter(|s| !s.is_empty()) {
            p.push(part);
        }
        Some(p)
    }
}

/// `target` as a hard link to (or else a copy of) `source`, which must have
/// `size` bytes.
fn link_or_copy(source: &std::path::Path, target: &std::path::Path, size: u64) -> std::io::Result<()> {
    let actual = std::fs::metadata(source)?.len();
    if actual != size {
        return Err(std::io::Error::other(format!(
            "{} has {actual} bytes, expected {size}: it changed while being copied",
            source.display()
        )));
    }
    replace_atomically(target, |temporary| {
        if std::fs::hard_link(source, temporary).is_err() {
            std::fs::copy(source, temporary)?;
        }
        Ok(())
    })
}

/// Makes `target` (and its directory) with `make`, which writes a temporary
/// file next to it that is then renamed into place (or removed on error).
fn replace_atomically<T>(
    target: &std::path::Path,
    make: impl FnOnce(&std::path::Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut temporary = target.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let made = make(&temporary).and_then(|made| std::fs::rename(&temporary, target).map(|()| made));
    if made.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path().to_str().unwrap()).unwrap();
        let job = s.child("job");
        job.put("chk-1/a", Bytes::from_static(b"hello")).await.unwrap();
        job.put("chk-2/b", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(job.get("chk-1/a").await.unwrap().as_ref(), b"hello");
        assert_eq!(job.size_of("chk-1/a").await.unwrap(), Some(5));
        assert_eq!(job.size_of("chk-1/zz").await.unwrap(), None);
        let mut dirs = job.list_dirs("").await.unwrap();
        dirs.sort();
        assert_eq!(dirs, vec!["chk-1", "chk-2"]);
        assert_eq!(job.list("chk-1").await.unwrap(), vec!["chk-1/a"]);
        job.delete_dir("chk-1").await.unwrap();
        assert_eq!(job.list_dirs("").await.unwrap(), vec!["chk-2"]);
        assert!(!dir.path().join("job/chk-1").exists());
    }

    #[tokio::test]
    async fn put_file_copies_a_local_file_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("000012.sst");
        std::fs::write(&source, b"immutable").unwrap();
        let s = CheckpointStorage::open(dir.path().join("ck").to_str().unwrap()).unwrap();
        s.put_file("shared/a.sst", &source, 9).await.unwrap();
        assert_eq!(s.get("shared/a.sst").await.unwrap().as_ref(), b"immutable");
        // The source may go (RocksDB deletes compacted files); the copy stays.
        std::fs::remove_file(&source).unwrap();
        assert_eq!(s.get("shared/a.sst").await.unwrap().as_ref(), b"immutable");
        assert_eq!(s.list("shared").await.unwrap(), vec!["shared/a.sst"]);

        std::fs::write(&source, b"grown since").unwrap();
        let err = s.put_file("shared/b.sst", &source, 9).await.unwrap_err();
        assert!(err.to_string().contains("changed while being copied"), "{err}");
        assert_eq!(s.size_of("shared/b.sst").await.unwrap(), None);
    }

    #[test]
    fn write_with_writes_a_file_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path().to_str().unwrap()).unwrap();
        let size = s
            .write_with("chk-1/a.kv", |out| out.write_all(&[7u8; 3000]))
            .unwrap();
        assert_eq!(size, 3000);
        assert_eq!(
            std::fs::read(dir.path().join("chk-1/a.kv")).unwrap(),
            vec![7u8; 3000]
        );
        let failed = s.write_with("chk-1/b.kv", |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.unwrap_err().to_string().contains("disk full"));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("chk-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["a.kv"], "no partial file, no temporary left");

        // A file larger than the write buffer (written around the page cache).
        let large: Vec<u8> = (0..3 * (1 << 20) + 5).map(|i| (i % 253) as u8).collect();
        let size = s.write_with("chk-1/c.kv", |out| out.write_all(&large)).unwrap();
        assert_eq!(size, large.len() as u64);
        assert!(std::fs::read(dir.path().join("chk-1/c.kv")).unwrap() == large);
        let failed = s.write_with("chk-1/d.kv", |out| {
            out.write_all(&large)?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert!(!dir.path().join("chk-1/d.kv").exists());
    }
}

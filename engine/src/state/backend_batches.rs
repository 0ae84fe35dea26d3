//! The earlier layout of batch state: a [`RecordBatch`] per namespace and
//! key group, stored as an Arrow IPC stream value in the
//! [`KeyedStateBackend`] under `[tag, namespace]`. Checkpoints written that
//! way still restore: operators read them once, move them to
//! [`BatchState`](super::BatchState) (or their own entries) and delete them.

use std::collections::BTreeMap;

use arrow::compute::concat_batches;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

use super::backend::KeyedStateBackend;

/// The first key byte of every batch value of the earlier layout (every
/// operator that kept batches used this one).
const TAG: u8 = 1;

/// Batches of the earlier layout.
///
/// [`read_all`](Self::read_all) finds them and records which key groups
/// hold each namespace, so that [`delete_all`](Self::delete_all) then touches only
/// those entries.
#[derive(Debug, Default)]
pub struct BackendBatches {
    /// Per namespace: key group → length of the value written.
    written: BTreeMap<Vec<u8>, BTreeMap<usize, usize>>,
}

impl BackendBatches {
    fn key(namespace: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(namespace.len() + 1);
        k.push(TAG);
        k.extend_from_slice(namespace);
        k
    }

    /// Writes the rows of `namespace` in key group `key_group` (as the
    /// earlier layout did; for tests of its restore).
    pub fn write_key_group(
        &mut self,
        backend: &mut dyn KeyedStateBackend,
        namespace: &[u8],
        key_group: usize,
        batch: &RecordBatch,
    ) -> Result<()> {
        let key = Self::key(namespace);
        let written = self.written.entry(namespace.to_vec()).or_default();
        let value = encode(batch)?;
        backend.put_known(key_group, &key, &value, written.remove(&key_group))?;
        written.insert(key_group, value.len());
        Ok(())
    }

    /// Every namespace's rows per key group, in namespace then key group
    /// order: `(namespace, key group, rows)`.
    pub fn read_all(
        &mut self,
        backend: &dyn KeyedStateBackend,
    ) -> Result<Vec<(Vec<u8>, usize, RecordBatch)>> {
        let mut found = Vec::new();
        self.written.clear();
        let written = &mut self.written;
        backend.scan_prefix(&[TAG], &mut |kg, key, value| {
            let ns = key[1..].to_vec();
            written.entry(ns.clone()).or_default().insert(kg, value.len());
            found.push((ns, kg, decode(value)?));
            Ok(())
        })?;
        found.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(found)
    }

    /// Deletes every namespace [`read_all`](Self::read_all) found or
    /// [`write_key_group`](Self::write_key_group) wrote.
    pub fn delete_all(&mut self, backend: &mut dyn KeyedStateBackend) -> Result<()> {
        for (ns, key_groups) in std::mem::take(&mut self.written) {
            let key = Self::key(&ns);
            for (kg, previous) in key_groups {
                backend.delete_known(kg, &key, previous)?;
            }
        }
        Ok(())
    }
}

fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() + 256);
    let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(buf)
}

fn decode(bytes: &[u8]) -> Result<RecordBatch> {
    let mut reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    for b in reader.by_ref() {
        batches.push(b?);
    }
    if batches.is_empty() {
        return Err(DataFusionError::Execution("empty state value".into()));
    }
    Ok(concat_batches(&schema, &batches)?)
}

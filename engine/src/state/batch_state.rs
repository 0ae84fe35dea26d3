//! Rows as keyed state: a [`RecordBatch`] per namespace and key group, stored
//! as an Arrow IPC stream in a [`KeyedStateBackend`].

use std::collections::BTreeMap;

use arrow::compute::concat_batches;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

use super::backend::KeyedStateBackend;
use super::key_group_runs::KeyGroupRuns;

/// Batches of rows kept under `(tag, namespace)` keys, one value per key group.
///
/// An operator uses one `BatchState` per kind of state (its `tag` byte keeps
/// their keys apart) and a namespace per unit it writes and drops as a whole,
/// e.g. a window's bounds. [`write`](Self::write) replaces a namespace's rows;
/// [`delete`](Self::delete) drops them. Values are Arrow IPC streams, a
/// stable, self-describing format.
///
/// The key groups written per namespace, and the length of each value, are
/// kept in memory (and rebuilt by [`read_all`](Self::read_all) on restore),
/// so a delete touches only them and no write reads the backend first.
#[derive(Debug)]
pub struct BatchState {
    tag: u8,
    /// Per namespace: key group → length of the value written.
    written: BTreeMap<Vec<u8>, BTreeMap<usize, usize>>,
}

impl BatchState {
    pub fn new(tag: u8) -> Self {
        BatchState {
            tag,
            written: BTreeMap::new(),
        }
    }

    fn key(&self, namespace: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(namespace.len() + 1);
        k.push(self.tag);
        k.extend_from_slice(namespace);
        k
    }

    /// Replaces the rows of `namespace` with `batch`, whose row `i` belongs to
    /// key group `key_groups[i]`.
    pub fn write(
        &mut self,
        backend: &mut dyn KeyedStateBackend,
        namespace: &[u8],
        batch: &RecordBatch,
        key_groups: &[usize],
    ) -> Result<()> {
        let runs = KeyGroupRuns::sort(&batch.schema(), std::slice::from_ref(batch), &[key_groups])?;
        self.write_runs(backend, namespace, &runs)
    }

    /// Replaces the rows of `namespace` with `rows`, one value per key group.
    pub fn write_runs(
        &mut self,
        backend: &mut dyn KeyedStateBackend,
        namespace: &[u8],
        rows: &KeyGroupRuns,
    ) -> Result<()> {
        let key = self.key(namespace);
        let mut before = self.written.remove(namespace).unwrap_or_default();
        let mut now = BTreeMap::new();
        for (kg, part) in rows.slices() {
            let value = encode(&part)?;
            backend.put_known(kg, &key, &value, before.remove(&kg))?;
            now.insert(kg, value.len());
        }
        for (kg, previous) in before {
            backend.delete_known(kg, &key, previous)?;
        }
        if !now.is_empty() {
            self.written.insert(namespace.to_vec(), now);
        }
        Ok(())
    }

    /// Replaces the rows of `namespace` in key group `key_group` only (an
    /// empty batch deletes them), leaving its other key groups alone.
    pub fn write_key_group(
        &mut self,
        backend: &mut dyn KeyedStateBackend,
        namespace: &[u8],
        key_group: usize,
        batch: &RecordBatch,
    ) -> Result<()> {
        let key = self.key(namespace);
        let written = self.written.entry(namespace.to_vec()).or_default();
        let previous = written.remove(&key_group);
        if batch.num_rows() > 0 {
            let value = encode(batch)?;
            backend.put_known(key_group, &key, &value, previous)?;
            written.insert(key_group, value.len());
        } else if let Some(previous) = previous {
            backend.delete_known(key_group, &key, previous)?;
        }
        Ok(())
    }

    /// Drops the rows of `namespace`.
    pub fn delete(&mut self, backend: &mut dyn KeyedStateBackend, namespace: &[u8]) -> Result<()> {
        let key = self.key(namespace);
        for (kg, previous) in self.written.remove(namespace).unwrap_or_default() {
            backend.delete_known(kg, &key, previous)?;
        }
        Ok(())
    }

    /// Drops the rows of every namespace that starts with `prefix`.
    pub fn delete_prefix(&mut self, backend: &mut dyn KeyedStateBackend, prefix: &[u8]) -> Result<()> {
        let namespaces: Vec<Vec<u8>> = self
            .written
            .range(prefix.to_vec()..)
            .take_while(|(ns, _)| ns.starts_with(prefix))
            .map(|(ns, _)| ns.clone())
            .collect();
        for ns in namespaces {
            self.delete(backend, &ns)?;
        }
        Ok(())
    }

    /// Every namespace's rows (all its key groups concatenated), in
    /// namespace order. Also rebuilds the in-memory record of what is written.
    pub fn read_all(&mut self, backend: &dyn KeyedStateBackend) -> Result<Vec<(Vec<u8>, RecordBatch)>> {
        let mut parts: BTreeMap<Vec<u8>, Vec<RecordBatch>> = BTreeMap::new();
        self.written.clear();
        let written = &mut self.written;
        backend.scan_prefix(&[self.tag], &mut |kg, key, value| {
            let ns = key[1..].to_vec();
            written.entry(ns.clone()).or_default().insert(kg, value.len());
            parts.entry(ns).or_default().push(decode(value)?);
            Ok(())
        })?;
        parts
            .into_iter()
            .map(|(ns, batches)| {
                let batch = concat_batches(&batches[0].schema(), &batches)?;
                Ok((ns, batch))
            })
            .collect()
    }
}

/// An event time as 8 key bytes whose byte order is the times' order
/// (big-endian, sign bit flipped), for namespaces scanned in time order.
pub fn time_key(t: crate::message::EventTime) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The event time of 8 bytes made by [`time_key`]; `None` if not 8 bytes.
pub fn time_of_key(bytes: &[u8]) -> Option<crate::message::EventTime> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
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

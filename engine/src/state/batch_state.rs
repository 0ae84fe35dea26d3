//! Rows as keyed state: batches per namespace, held in memory and written by
//! the asynchronous part of each snapshot as files of the checkpoint
//! ([`super::batch_files`]), never through the keyed state backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt16Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use parking_lot::Mutex;

use super::backend::SnapshotTarget;
use super::batch_files::{BatchFiles, BatchSnapshot, ChunkLocation};

/// The column, appended to every stored batch, holding each row's key group
/// (so that a restore at another parallelism keeps the rows of its own key
/// groups).
const KEY_GROUP_COLUMN: &str = "__weir_key_group";

/// Batches of rows kept as keyed state, one set of batches per namespace.
///
/// An operator keeps a namespace per unit it writes and drops as a whole
/// (e.g. a window's accumulators, or the rows one side of a window received
/// between two checkpoints). [`write`](Self::write) replaces a namespace's
/// rows; [`delete`](Self::delete) drops them. Every row carries its key
/// group, so that a restore at another parallelism hands it to the subtask
/// that owns its key.
///
/// # Lifecycle
///
/// Part of a [`KeyedState`](super::KeyedState): restored with it (the rows
/// of the subtask's key groups, from every snapshot handle that holds any),
/// snapshotted with it. A snapshot costs nothing at the barrier but cloning
/// the namespaces' batch references: the returned future encodes them (Arrow
/// IPC) and writes them. With incremental checkpoints, a namespace is
/// written once and later snapshots refer to where it was written until it
/// is replaced or deleted, so a window's rows are written once however many
/// checkpoints it stays open for.
///
/// # Invariants
///
/// The rows are held in memory (operators hold them anyway: they are
/// window buffers and accumulators); storing them costs no copy, as batches
/// are reference-counted. Every stored batch has the key group column last.
#[derive(Debug, Default)]
pub struct BatchState {
    namespaces: BTreeMap<Vec<u8>, Chunk>,
    files: BatchFiles,
    /// Approximate bytes of the batches held, for metrics.
    bytes: usize,
}

/// The rows of one namespace.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The rows, each batch with the key group column last.
    pub batches: Vec<RecordBatch>,
    /// Where a snapshot wrote them (incremental checkpoints).
    pub location: Arc<Mutex<ChunkLocation>>,
    bytes: usize,
}

impl BatchState {
    /// Replaces the rows of `namespace` with `batches`: `key_groups[b][i]`
    /// is the key group of row `i` of batch `b`. No rows delete the
    /// namespace.
    pub fn write<K: AsRef<[usize]>>(
        &mut self,
        namespace: &[u8],
        batches: &[RecordBatch],
        key_groups: &[K],
    ) -> Result<()> {
        let stored = Self::stored(batches, key_groups)?;
        self.insert(namespace.to_vec(), stored);
        Ok(())
    }

    /// Adds `batches` (with their rows' `key_groups`, as in
    /// [`write`](Self::write)) to the rows of `namespace`.
    pub fn append<K: AsRef<[usize]>>(
        &mut self,
        namespace: &[u8],
        batches: &[RecordBatch],
        key_groups: &[K],
    ) -> Result<()> {
        let mut stored = self
            .namespaces
            .get(namespace)
            .map(|c| c.batches.clone())
            .unwrap_or_default();
        stored.extend(Self::stored(batches, key_groups)?);
        self.insert(namespace.to_vec(), stored);
        Ok(())
    }

    /// `batches` with their key group column.
    fn stored<K: AsRef<[usize]>>(batches: &[RecordBatch], key_groups: &[K]) -> Result<Vec<RecordBatch>> {
        if batches.len() != key_groups.len()
            || batches
                .iter()
                .zip(key_groups)
                .any(|(b, k)| b.num_rows() != k.as_ref().len())
        {
            return Err(DataFusionError::Internal(
                "key groups do not match the rows they are of".into(),
            ));
        }
        let mut stored = Vec::with_capacity(batches.len());
        let mut schema: Option<(SchemaRef, SchemaRef)> = None;
        for (batch, kgs) in batches.iter().zip(key_groups) {
            if batch.num_rows() == 0 {
                continue;
            }
            // The batches of a namespace most often share one schema: extend it once.
            let extended = match &schema {
                Some((of, extended)) if Arc::ptr_eq(of, &batch.schema()) => extended.clone(),
                _ => {
                    let extended = with_key_group_field(&batch.schema());
                    schema = Some((batch.schema(), extended.clone()));
                    extended
                }
            };
            stored.push(with_key_groups(batch, kgs.as_ref(), extended)?);
        }
        Ok(stored)
    }

    /// Sets a namespace's stored batches (key group column included).
    pub(crate) fn insert(&mut self, namespace: Vec<u8>, batches: Vec<RecordBatch>) {
        self.delete(&namespace);
        if batches.is_empty() {
            return;
        }
        let bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        self.bytes += bytes;
        self.namespaces.insert(
            namespace,
            Chunk {
                batches,
                location: Arc::default(),
                bytes,
            },
        );
    }

    /// Drops the rows of `namespace`.
    pub fn delete(&mut self, namespace: &[u8]) {
        if let Some(chunk) = self.namespaces.remove(namespace) {
            self.bytes -= chunk.bytes;
        }
    }

    /// Drops the rows of every namespace that starts with `prefix`.
    pub fn delete_prefix(&mut self, prefix: &[u8]) {
        let namespaces: Vec<Vec<u8>> = self
            .namespaces
            .range(prefix.to_vec()..)
            .take_while(|(ns, _)| ns.starts_with(prefix))
            .map(|(ns, _)| ns.clone())
            .collect();
        for ns in namespaces {
            self.delete(&ns);
        }
    }

    /// Every namespace's rows (its batches concatenated, without the key
    /// group column), in namespace order.
    pub fn read_all(&self) -> Result<Vec<(Vec<u8>, RecordBatch)>> {
        self.namespaces
            .iter()
            .map(|(ns, chunk)| {
                let rows: Vec<RecordBatch> = chunk.batches.iter().map(without_key_groups).collect();
                let batch = match rows.as_slice() {
                    [one] => one.clone(),
                    _ => concat_batches(&rows[0].schema(), &rows)?,
                };
                Ok((ns.clone(), batch))
            })
            .collect()
    }

    /// Every namespace's rows as the batches it holds (without the key group
    /// column; the arrays are shared, not copied), in namespace order.
    pub fn batches_of_each(&self) -> impl Iterator<Item = (&[u8], Vec<RecordBatch>)> {
        self.namespaces.iter().map(|(ns, chunk)| {
            (
                ns.as_slice(),
                chunk.batches.iter().map(without_key_groups).collect(),
            )
        })
    }

    /// Number of namespaces.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Approximate bytes held.
    pub fn approximate_size(&self) -> usize {
        self.bytes
    }

    /// Fixes what a snapshot to `target` writes (files named after `base`,
    /// e.g. `operator-subtask`); `None` when there is nothing to write.
    pub(crate) fn snapshot(&mut self, target: &SnapshotTarget, base: &str) -> Option<BatchSnapshot> {
        if self.namespaces.is_empty() {
            return None;
        }
        Some(self.files.plan(&self.namespaces, target, base))
    }
}

fn with_key_group_field(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(KEY_GROUP_COLUMN, DataType::UInt16, false)));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn with_key_groups(batch: &RecordBatch, key_groups: &[usize], schema: SchemaRef) -> Result<RecordBatch> {
    let kgs = key_groups
        .iter()
        .map(|&kg| u16::try_from(kg))
        .collect::<std::result::Result<Vec<u16>, _>>()
        .map_err(|_| DataFusionError::Internal("a key group beyond 65535".into()))?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(UInt16Array::from(kgs)));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A stored batch without its key group column.
fn without_key_groups(batch: &RecordBatch) -> RecordBatch {
    let mut batch = batch.clone();
    batch.remove_column(batch.num_columns() - 1);
    batch
}

/// The key group column of a stored batch.
pub(crate) fn key_groups_of_stored(batch: &RecordBatch) -> Result<&UInt16Array> {
    batch
        .columns()
        .last()
        .filter(|c| c.null_count() == 0)
        .and_then(|c| c.as_any().downcast_ref::<UInt16Array>())
        .ok_or_else(|| DataFusionError::Execution("stored rows have no key group column".into()))
}

//! The rows one input of an inner join of append-only inputs has received,
//! held in memory as the batches they arrived in, with a hash index on the
//! join key: what a batch hash join builds once over its build side, kept
//! growing.

use std::hash::BuildHasher;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::row::Rows;
use datafusion::common::{DataFusionError, HashMap, Result};

use crate::key_group::key_hasher;

/// The hash of a join key in the comparable form [`super::join::KeyEncoder`]
/// makes (equal keys of either input have equal bytes, so equal hashes).
pub fn key_hash(key: &[u8]) -> u64 {
    key_hasher().hash_one(key)
}

/// Rows of one join input, indexed by key hash.
///
/// Rows are numbered in arrival order (0, 1, ...); the index maps a key hash
/// to the newest row with that hash, and each row links to the previous row
/// with the same hash (a chained hash table, as DataFusion's `JoinHashMap`,
/// which is built at its full size once and so cannot grow). Rows are never
/// removed: the join this serves never retracts.
///
/// # Invariants
///
/// `starts[b]` is the number of the first row of `batches[b]`; `next` has one
/// entry per row. A hash names candidate rows only: callers compare the keys.
#[derive(Debug)]
pub struct IndexedRows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    starts: Vec<usize>,
    /// Key hash → 1 + the newest row with that hash.
    heads: HashMap<u64, u32>,
    /// Per row: 1 + the previous row with the same hash (0: none).
    next: Vec<u32>,
}

impl IndexedRows {
    pub fn new(schema: SchemaRef) -> Self {
        IndexedRows {
            schema,
            batches: Vec::new(),
            starts: Vec::new(),
            heads: HashMap::new(),
            next: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.next.len()
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// The batches, in arrival order.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Adds the rows of `batch`, where `hashes[i]` is the key hash of row
    /// `i` (the batch is shared, not copied).
    pub fn insert(&mut self, batch: RecordBatch, hashes: &[u64]) -> Result<()> {
        if batch.num_rows() != hashes.len() {
            return Err(DataFusionError::Internal("a key hash per row expected".into()));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let first = self.len();
        if u32::try_from(first + hashes.len()).is_err() {
            return Err(DataFusionError::ResourcesExhausted(
                "a join input holds over 4 billion rows in one subtask".into(),
            ));
        }
        self.next.reserve(hashes.len());
        for (i, &hash) in hashes.iter().enumerate() {
            let head = self.heads.entry(hash).or_insert(0);
            self.next.push(*head);
            *head = (first + i) as u32 + 1;
        }
        self.starts.push(first);
        self.batches.push(batch);
        Ok(())
    }

    /// Calls `f(row)` for every row whose key hash is `hash`, newest first.
    pub fn for_each_match(&self, hash: u64, mut f: impl FnMut(usize)) {
        let mut link = self.heads.get(&hash).copied().unwrap_or(0);
        while link != 0 {
            let row = link as usize - 1;
            f(row);
            link = self.next[row];
        }
    }

    /// The rows numbered `rows`, in that order, as one batch.
    pub fn take(&self, rows: &[usize]) -> Result<RecordBatch> {
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        // Only the batches the rows are in take part, renumbered in order of use.
        let mut used: HashMap<usize, usize> = HashMap::new();
        let mut sources: Vec<&RecordBatch> = Vec::new();
        let mut indices = Vec::with_capacity(rows.len());
        for &row in rows {
            let b = self.starts.partition_point(|&s| s <= row) - 1;
            let source = *used.entry(b).or_insert_with(|| {
                sources.push(&self.batches[b]);
                sources.len() - 1
            });
            indices.push((source, row - self.starts[b]));
        }
        super::select_rows::interleave_rows(&self.schema, &sources, &indices)
    }
}

/// The key hashes of `keys` (rows of [`super::join::KeyEncoder`]).
pub fn key_hashes(keys: &Rows) -> Vec<u64> {
    keys.iter().map(|k| key_hash(k.data())).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn values(batch: &RecordBatch) -> Vec<i64> {
        let a = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        (0..a.len()).map(|i| a.value(i)).collect()
    }

    #[test]
    fn rows_are_found_by_hash_across_batches_newest_first() {
        let first = batch(&[10, 11, 12]);
        let mut rows = IndexedRows::new(first.schema());
        rows.insert(first, &[1, 2, 1]).unwrap();
        rows.insert(batch(&[13]), &[2]).unwrap();
        rows.insert(batch(&[]), &[]).unwrap();
        rows.insert(batch(&[14, 15]), &[1, 3]).unwrap();
        assert_eq!(rows.len(), 6);
        let matches = |hash| {
            let mut found = Vec::new();
            rows.for_each_match(hash, |r| found.push(r));
            found
        };
        assert_eq!(matches(1), [4, 2, 0]);
        assert_eq!(matches(2), [3, 1]);
        assert_eq!(matches(9), [] as [usize; 0]);
        assert_eq!(values(&rows.take(&[5, 0, 3, 0]).unwrap()), [15, 10, 13, 10]);
        assert_eq!(rows.take(&[]).unwrap().num_rows(), 0);
        assert!(rows.insert(batch(&[1]), &[]).is_err(), "a hash per row");
    }
}

//! The rows both inputs of an inner join of append-only inputs have
//! received, held in memory as the batches they arrived in, with one hash
//! index on the join key for both: what a batch hash join builds once over
//! its build side, kept growing on both sides.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::row::Rows;
use datafusion::common::{DataFusionError, HashMap, Result};

use super::join::Side;
use crate::key_group::key_hasher;

/// The hashes of join keys `keys`, in the comparable form
/// [`super::join::KeyEncoder`] makes (equal keys of either input have equal
/// bytes, so equal hashes).
pub fn key_hashes(keys: &Rows) -> Vec<u64> {
    let hasher = key_hasher();
    keys.iter().map(|k| hasher.hash_one(k.data())).collect()
}

/// A [`Hasher`] for keys that are hashes already ([`key_hashes`]): the index
/// uses them as they are instead of hashing them again.
#[derive(Debug, Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with this; fold anything else anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// The rows of one input.
///
/// # Invariants
///
/// `starts[b]` is the number of the first row of `batches[b]`; `next` has
/// one entry per row: 1 + the previous row of this input with the same key
/// hash (0: none).
#[derive(Debug)]
struct InputRows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    starts: Vec<usize>,
    next: Vec<u32>,
}

impl InputRows {
    fn new(schema: SchemaRef) -> Self {
        InputRows {
            schema,
            batches: Vec::new(),
            starts: Vec::new(),
            next: Vec::new(),
        }
    }
}

/// Rows of both inputs of a join, indexed by key hash.
///
/// Rows of each input are numbered in arrival order (0, 1, ...). One hash
/// table maps a key hash to the newest row with that hash of each input,
/// and each row links to the previous row of its input with the same hash
/// (a chained hash table, as DataFusion's `JoinHashMap`, which is built at
/// its full size once and so cannot grow). Both inputs share the table, so
/// a row arriving is matched and indexed with one lookup. Rows are never
/// removed: the join this serves never retracts.
///
/// # Invariants
///
/// A hash names candidate rows only: callers compare the keys.
#[derive(Debug)]
pub struct JoinIndex {
    inputs: [InputRows; 2],
    /// Key hash → per input, 1 + its newest row with that hash (0: none).
    heads: HashMap<u64, [u32; 2], BuildHasherDefault<AlreadyHashed>>,
}

impl JoinIndex {
    pub fn new(left: SchemaRef, right: SchemaRef) -> Self {
        JoinIndex {
            inputs: [InputRows::new(left), InputRows::new(right)],
            heads: HashMap::default(),
        }
    }

    /// Number of rows of `side`.
    pub fn len(&self, side: Side) -> usize {
        self.inputs[side as usize].next.len()
    }

    /// The batches of `side`, in arrival order.
    pub fn batches(&self, side: Side) -> &[RecordBatch] {
        &self.inputs[side as usize].batches
    }

    /// Adds the rows of `batch` to `side`, where `hashes[i]` is the key hash
    /// of row `i` (the batch is shared, not copied), and calls
    /// `matched(i, row)` for every row of the other side with the hash of
    /// row `i`, newest first.
    pub fn insert(
        &mut self,
        side: Side,
        batch: RecordBatch,
        hashes: &[u64],
        mut matched: impl FnMut(u32, usize),
    ) -> Result<()> {
        if batch.num_rows() != hashes.len() {
            return Err(DataFusionError::Internal("a key hash per row expected".into()));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (s, o) = (side as usize, side.other() as usize);
        let [left, right] = &mut self.inputs;
        let (this, other) = if s == 0 { (left, &*right) } else { (right, &*left) };
        let first = this.next.len();
        if u32::try_from(first + hashes.len()).is_err() {
            return Err(DataFusionError::ResourcesExhausted(
                "a join input holds over 4 billion rows in one subtask".into(),
            ));
        }
        this.next.reserve(hashes.len());
        for (i, &hash) in hashes.iter().enumerate() {
            let heads = self.heads.entry(hash).or_insert([0, 0]);
            let mut link = heads[o];
            while link != 0 {
                let row = link as usize - 1;
                matched(i as u32, row);
                link = other.next[row];
            }
            this.next.push(heads[s]);
            heads[s] = (first + i) as u32 + 1;
        }
        this.starts.push(first);
        this.batches.push(batch);
        Ok(())
    }

    /// The rows of `side` numbered `rows`, in that order, as one batch.
    pub fn take(&self, side: Side, rows: &[usize]) -> Result<RecordBatch> {
        let input = &self.inputs[side as usize];
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(input.schema.clone()));
        }
        // Only the batches the rows are in take part, numbered in order of
        // use. Rows of one key are often in one batch: the last batch found
        // is tried before a search.
        let mut position_of = vec![u32::MAX; input.batches.len()];
        let mut sources: Vec<&RecordBatch> = Vec::new();
        let mut indices = Vec::with_capacity(rows.len());
        let mut last = 0;
        for &row in rows {
            let end = input.starts.get(last + 1).copied().unwrap_or(usize::MAX);
            if row < input.starts[last] || row >= end {
                last = input.starts.partition_point(|&s| s <= row) - 1;
            }
            let position = &mut position_of[last];
            if *position == u32::MAX {
                *position = sources.len() as u32;
                sources.push(&input.batches[last]);
            }
            indices.push((*position as usize, row - input.starts[last]));
        }
        super::select_rows::interleave_rows(&input.schema, &sources, &indices)
    }
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

    /// Inserts `values` with `hashes` into `side`; returns the matches.
    fn insert(index: &mut JoinIndex, side: Side, values: &[i64], hashes: &[u64]) -> Vec<(u32, usize)> {
        let mut found = Vec::new();
        index
            .insert(side, batch(values), hashes, |i, row| found.push((i, row)))
            .unwrap();
        found
    }

    #[test]
    fn rows_match_the_other_side_by_hash_across_batches_newest_first() {
        let schema = batch(&[]).schema();
        let mut index = JoinIndex::new(schema.clone(), schema);
        assert_eq!(insert(&mut index, Side::Left, &[10, 11, 12], &[1, 2, 1]), []);
        // Rows of one side never match each other.
        assert_eq!(insert(&mut index, Side::Left, &[13], &[2]), []);
        assert_eq!(insert(&mut index, Side::Left, &[], &[]), []);
        assert_eq!(
            insert(&mut index, Side::Right, &[20, 21, 22], &[1, 9, 2]),
            [(0, 2), (0, 0), (2, 3), (2, 1)]
        );
        assert_eq!(insert(&mut index, Side::Left, &[14, 15], &[9, 3]), [(0, 1)]);
        assert_eq!((index.len(Side::Left), index.len(Side::Right)), (6, 3));
        assert_eq!(index.batches(Side::Left).len(), 3, "empty batches are not kept");
        assert_eq!(
            values(&index.take(Side::Left, &[5, 0, 3, 0, 4, 1]).unwrap()),
            [15, 10, 13, 10, 14, 11]
        );
        assert_eq!(values(&index.take(Side::Right, &[2, 1]).unwrap()), [22, 21]);
        assert_eq!(index.take(Side::Right, &[]).unwrap().num_rows(), 0);
        assert!(
            index.insert(Side::Left, batch(&[1]), &[], |_, _| ()).is_err(),
            "a hash per row"
        );
    }
}

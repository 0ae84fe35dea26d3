//! The rows both inputs of an inner join of append-only inputs have
//! received, held in memory as the batches they arrived in, with one hash
//! index on the join key for both: what a batch hash join builds once over
//! its build side, kept growing on both sides.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};

use super::join::Side;
use super::join_heads::HeadTable;
use crate::message::EventTime;

/// The rows of one input.
///
/// # Invariants
///
/// Rows are numbered in arrival order from the last
/// [compaction](JoinIndex::compact); rows below `first` are evicted.
/// `batches[b]` holds rows `starts[b]..` and every row of it may match rows
/// of the other input until the watermark reaches `expires[b]`. `next` has
/// one entry per row since the compaction: 1 + the previous row of this
/// input with the same key hash (0: none); entries of evicted rows are
/// garbage, and a link below `first` ends a chain (older rows are evicted
/// too). `evicted_batches` counts every batch evicted since the index was
/// created.
#[derive(Debug)]
struct InputRows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    starts: Vec<usize>,
    expires: Vec<EventTime>,
    next: Vec<u32>,
    first: usize,
    evicted_batches: usize,
}

impl InputRows {
    fn new(schema: SchemaRef) -> Self {
        InputRows {
            schema,
            batches: Vec::new(),
            starts: Vec::new(),
            expires: Vec::new(),
            next: Vec::new(),
            first: 0,
            evicted_batches: 0,
        }
    }

    /// Rows kept.
    fn len(&self) -> usize {
        self.next.len() - self.first
    }
}

/// How many rows ahead [`JoinIndex::insert`] prefetches table slots: enough
/// to cover a miss with the work of the rows between.
const PREFETCH_AHEAD: usize = 8;

/// Evicted rows of an input beyond which the index is compacted (fewer are
/// not worth a pass over the hash table).
const COMPACT_AFTER_ROWS: usize = 1 << 16;

/// Rows of both inputs of a join, indexed by key hash.
///
/// Rows of each input are numbered in arrival order (0, 1, ...). One hash
/// table maps a key hash to the newest row with that hash of each input,
/// and each row links to the previous row of its input with the same hash
/// (a chained hash table, as DataFusion's `JoinHashMap`, which is built at
/// its full size once and so cannot grow). Both inputs share the table, so
/// a row arriving is matched and indexed with one lookup. Rows are not
/// retracted (the join this serves has append-only inputs), but batches
/// whose rows can no longer match are [evicted](Self::evict) oldest first,
/// which ends the chains where they reach them; once an input has evicted
/// as many rows as it keeps, the index is compacted (rows renumbered, the
/// table's entries of evicted rows removed), so memory follows the rows
/// kept.
///
/// # Invariants
///
/// A hash names candidate rows only: callers compare the keys.
#[derive(Debug)]
pub struct JoinIndex {
    inputs: [InputRows; 2],
    /// Key hash → per input, 1 + its newest row with that hash (0: none).
    heads: HeadTable,
}

impl JoinIndex {
    pub fn new(left: SchemaRef, right: SchemaRef) -> Self {
        JoinIndex {
            inputs: [InputRows::new(left), InputRows::new(right)],
            heads: HeadTable::default(),
        }
    }

    /// Number of rows of `side` kept.
    pub fn len(&self, side: Side) -> usize {
        self.inputs[side as usize].len()
    }

    /// The batches of `side` kept, in arrival order.
    pub fn batches(&self, side: Side) -> &[RecordBatch] {
        &self.inputs[side as usize].batches
    }

    /// How many batches of `side` were evicted so far: the batch
    /// `batches(side)[i]` is the `evicted_batches(side) + i`-th received.
    pub fn evicted_batches(&self, side: Side) -> usize {
        self.inputs[side as usize].evicted_batches
    }

    /// Adds the rows of `batch` to `side`, where `hashes[i]` is the key hash
    /// of row `i` (the batch is shared, not copied) and no row can match a
    /// row of the other side once the watermark reaches `expires`
    /// ([`EventTime::MAX`]: never), and calls `matched(i, row)` for every
    /// row of the other side with the hash of row `i`, newest first.
    pub fn insert(
        &mut self,
        side: Side,
        batch: RecordBatch,
        hashes: &[u64],
        expires: EventTime,
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
        let other_first = other.first;
        if u32::try_from(first + hashes.len()).is_err() {
            return Err(DataFusionError::ResourcesExhausted(
                "a join input holds over 4 billion rows in one subtask".into(),
            ));
        }
        this.next.reserve(hashes.len());
        for (i, &hash) in hashes.iter().enumerate() {
            // The table is larger than the cache: fetch the slots of the
            // rows a few ahead while this one waits for its own.
            if let Some(&ahead) = hashes.get(i + PREFETCH_AHEAD) {
                self.heads.prefetch(ahead);
            }
            let heads = self.heads.replace(hash, s, (first + i) as u32 + 1);
            let mut link = heads[o] as usize;
            while link > other_first {
                let row = link - 1;
                matched(i as u32, row);
                link = other.next[row] as usize;
            }
            this.next.push(heads[s]);
        }
        this.starts.push(first);
        this.batches.push(batch);
        this.expires.push(expires);
        Ok(())
    }

    /// Evicts the oldest batches of `side` up to the first one whose rows may
    /// still match once the watermark is `watermark` (their expiry is above
    /// it); returns how many. Later batches wait for the ones before them,
    /// so an input's rows should arrive roughly in order of expiry.
    pub fn evict(&mut self, side: Side, watermark: EventTime) -> usize {
        let input = &mut self.inputs[side as usize];
        let n = input.expires.iter().take_while(|&&e| e <= watermark).count();
        if n == 0 {
            return 0;
        }
        input.first = input.starts.get(n).copied().unwrap_or(input.next.len());
        input.batches.drain(..n);
        input.starts.drain(..n);
        input.expires.drain(..n);
        input.evicted_batches += n;
        if input.first >= COMPACT_AFTER_ROWS.max(input.len()) {
            self.compact(side);
        }
        n
    }

    /// Renumbers the kept rows of `side` from 0 and removes the table's
    /// entries that name no kept row of either input.
    fn compact(&mut self, side: Side) {
        let s = side as usize;
        let input = &mut self.inputs[s];
        let first = input.first;
        // A link is 1 + a row number: links to evicted rows become 0.
        let renumber = |link: u32| (link as usize).saturating_sub(first) as u32;
        input.next.drain(..first);
        for link in &mut input.next {
            *link = renumber(*link);
        }
        for start in &mut input.starts {
            *start -= first;
        }
        input.first = 0;
        let other_first = self.inputs[1 - s].first;
        self.heads.retain(|heads| {
            heads[s] = renumber(heads[s]);
            heads[s] != 0 || heads[1 - s] as usize > other_first
        });
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
            .insert(side, batch(values), hashes, EventTime::MAX, |i, row| {
                found.push((i, row))
            })
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
            index
                .insert(Side::Left, batch(&[1]), &[], EventTime::MAX, |_, _| ())
                .is_err(),
            "a hash per row"
        );
    }

    /// Evicted batches end the chains that reach them; batches wait for the
    /// ones before them; compaction renumbers the rows kept and drops the
    /// table's entries that name only evicted rows, matches unchanged.
    #[test]
    fn evicted_rows_match_nothing_and_compaction_keeps_the_rest() {
        let schema = batch(&[]).schema();
        let mut index = JoinIndex::new(schema.clone(), schema);
        let insert_at = |index: &mut JoinIndex, side, values: &[i64], hashes: &[u64], expires| {
            let mut found = Vec::new();
            index
                .insert(side, batch(values), hashes, expires, |i, row| {
                    found.push((i, row))
                })
                .unwrap();
            found
        };
        insert_at(&mut index, Side::Left, &[10, 11], &[1, 2], 100);
        insert_at(&mut index, Side::Left, &[12], &[1], 300);
        insert_at(&mut index, Side::Left, &[13], &[1], 200);
        assert_eq!(index.evict(Side::Left, 99), 0);
        assert_eq!(index.evict(Side::Right, 1000), 0, "nothing to evict");
        // The third batch expires first but waits for the second.
        assert_eq!(index.evict(Side::Left, 250), 1);
        assert_eq!((index.len(Side::Left), index.evicted_batches(Side::Left)), (2, 1));
        let found = insert_at(&mut index, Side::Right, &[20, 21], &[1, 2], EventTime::MAX);
        assert_eq!(
            found,
            [(0, 3), (0, 2)],
            "row 0 (hash 1) is evicted, row 1 (hash 2) too"
        );
        assert_eq!(values(&index.take(Side::Left, &[3, 2]).unwrap()), [13, 12]);
        assert_eq!(index.evict(Side::Left, 300), 2);
        assert_eq!(index.len(Side::Left), 0);
        assert_eq!(
            insert_at(&mut index, Side::Right, &[22], &[1], EventTime::MAX),
            []
        );

        // Enough rows to compact; 8 rows per hash.
        let n = 2 * COMPACT_AFTER_ROWS + 10;
        let hashes: Vec<u64> = (0..n as u64).map(|i| 1000 + i / 8).collect();
        let numbers: Vec<i64> = (0..n as i64).collect();
        for (chunk, (h, v)) in hashes.chunks(4096).zip(numbers.chunks(4096)).enumerate() {
            insert_at(&mut index, Side::Left, v, h, chunk as i64 + 1000);
        }
        let before = index.heads.len();
        let kept_batches = 3;
        let evicted = index.evict(
            Side::Left,
            (hashes.chunks(4096).count() - kept_batches) as i64 + 999,
        );
        assert_eq!(index.evicted_batches(Side::Left), 3 + evicted);
        let kept = index.len(Side::Left);
        assert_eq!(index.inputs[0].first, 0, "compacted");
        assert_eq!(index.inputs[0].next.len(), kept);
        assert!(index.heads.len() < before, "{} of {before}", index.heads.len());
        // A right row matches exactly the kept left rows with its hash, newest first.
        let first_kept = n - kept;
        let probe = 1000 + first_kept as u64 / 8 + 1;
        let found = insert_at(&mut index, Side::Right, &[30], &[probe], EventTime::MAX);
        let rows: Vec<usize> = found.iter().map(|&(_, r)| r).collect();
        let matched = values(&index.take(Side::Left, &rows).unwrap());
        let expected: Vec<i64> = (first_kept as i64..n as i64)
            .rev()
            .filter(|&v| 1000 + v as u64 / 8 == probe)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(matched, expected);
    }
}

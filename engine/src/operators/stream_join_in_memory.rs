//! The regular join's in-memory layout: an inner join of append-only inputs
//! (no TTL) under a backend that holds state in memory keeps each input's
//! rows as the batches they arrived in, hash-indexed on the join key
//! ([`JoinIndex`]), and checkpoints them as batch state, each row written
//! once. Where the join condition bounds the rowtime of the rows a row can
//! match ([`ExpiryBound`]), rows are dropped once the watermark passes the
//! bound, and so are the checkpoint chunks that held them.

use std::collections::VecDeque;

use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use datafusion::common::{DataFusionError, Result};

use super::join::{JoinSpec, KeyEncoder, RowCodec, Side, take_rows};
use super::join_index::JoinIndex;
use super::join_key_match::KeyMatcher;
use super::join_state::{ArrivalIds, JoinRowStore, RowValue, StoredRow};
use super::select_rows::filter_rows;
use super::stream_join::ExpiryBound;
use crate::key_group::{key_groups_of, key_groups_of_batches};
use crate::message::EventTime;
use crate::state::KeyedState;
use crate::watermark::max_timestamp_ns;

/// The batch-state namespaces of this layout start with this tag; then the
/// side and the chunk's number (big-endian `u32`).
const TAG: u8 = b'J';

fn chunk_namespace(side: Side, chunk: u32) -> [u8; 6] {
    let mut ns = [TAG, side as u8, 0, 0, 0, 0];
    ns[2..].copy_from_slice(&chunk.to_be_bytes());
    ns
}

/// The side and chunk number of a namespace of this layout.
fn chunk_of_namespace(ns: &[u8]) -> Result<(Side, u32)> {
    match ns {
        [TAG, side @ (0 | 1), chunk @ ..] if chunk.len() == 4 => Ok((
            Side::of_input(*side as usize),
            u32::from_be_bytes(chunk.try_into().expect("4 bytes")),
        )),
        _ => Err(DataFusionError::Execution(
            "corrupt join state: a batch-state namespace of another operator".into(),
        )),
    }
}

/// The rows of both inputs of an append-only inner join, in memory.
///
/// # Lifecycle
///
/// Created empty or [restored](Self::restore) in `initialize_state`; each
/// input batch is [joined and stored](Self::process); at a checkpoint
/// barrier, [`write_new`](Self::write_new) hands the batches received since
/// the last barrier to the batch state as one chunk per side (shared, not
/// copied), which the snapshot's asynchronous part writes once; later
/// checkpoints refer to it. On a watermark, [`expire`](Self::expire) drops
/// the oldest batches of a side with [`ExpiryBound`]s whose rows can no
/// longer match a row that is not late, and deletes the chunks all of whose
/// batches are gone.
///
/// # Invariants
///
/// Rows with a NULL key are not stored (they match nothing). Batches are
/// numbered per side in arrival order, evicted ones included: per side,
/// batches below `checkpointed` are in batch state (unless evicted), and
/// `chunks` lists the chunks in batch state, oldest first, each with the
/// number after its last batch; chunk numbers grow.
#[derive(Debug)]
pub struct InMemoryJoin {
    index: JoinIndex,
    matcher: KeyMatcher,
    expiry: [Vec<ExpiryBound>; 2],
    checkpointed: [usize; 2],
    chunks: [VecDeque<(u32, usize)>; 2],
    next_chunk: u32,
}

impl InMemoryJoin {
    pub fn new(spec: &JoinSpec, keys: &KeyEncoder, expiry: &[Vec<ExpiryBound>; 2]) -> Self {
        InMemoryJoin {
            index: JoinIndex::new(spec.left_schema.clone(), spec.right_schema.clone()),
            matcher: KeyMatcher::new(keys),
            expiry: expiry.clone(),
            checkpointed: [0, 0],
            chunks: [VecDeque::new(), VecDeque::new()],
            next_chunk: 0,
        }
    }

    /// The watermark at which no row of `batch`, rows of `side`, can match a
    /// row of the other side that is not late: the latest bound of its rows
    /// (a row's bound is the least of its [`ExpiryBound`]s; a NULL one
    /// matches nothing). [`EventTime::MAX`] for a side without bounds.
    fn batch_expiry(&self, side: Side, batch: &RecordBatch) -> Result<EventTime> {
        let bounds = &self.expiry[side as usize];
        match bounds[..] {
            [] => return Ok(EventTime::MAX),
            // One bound: the column's largest value, one `max` kernel
            // (NULLs, which match nothing, are left out as they should).
            [bound] => {
                if let Some(max) = max_timestamp_ns(batch.column(bound.column).as_ref()) {
                    return Ok(max.map_or(EventTime::MIN, |t| t.saturating_add(bound.offset)));
                }
            }
            _ => {}
        }
        let row_expiries = ExpiryBound::row_expiries(bounds, batch)?;
        Ok(row_expiries.into_iter().max().unwrap_or(EventTime::MIN))
    }

    /// The rows a restored `state` holds: its chunks of this layout, and the
    /// rows of the backend's layout ([`JoinRowStore`] entries, written under
    /// another backend or by an earlier weir), which move into this layout
    /// (they are deleted from the backend and written as batch state at the
    /// next checkpoint).
    pub fn restore(
        spec: &JoinSpec,
        keys: &KeyEncoder,
        codec: &RowCodec,
        store: JoinRowStore,
        expiry: &[Vec<ExpiryBound>; 2],
        state: &mut KeyedState,
    ) -> Result<Self> {
        let mut join = InMemoryJoin::new(spec, keys, expiry);
        for (ns, batches) in state.batches().batches_of_each() {
            let (side, chunk) = chunk_of_namespace(ns)?;
            join.next_chunk = join.next_chunk.max(chunk + 1);
            for batch in batches {
                join.store(spec, keys, side, batch)?;
            }
            let s = side as usize;
            join.checkpointed[s] = join.received(side);
            join.chunks[s].push_back((chunk, join.checkpointed[s]));
        }
        let entries = store.take_all(state.backend())?;
        for side in [Side::Left, Side::Right] {
            let rows: Vec<&StoredRow> = entries.iter().filter(|r| r.side() == side).collect();
            if rows.is_empty() {
                continue;
            }
            let decoded = codec.decode(side, rows.iter().map(|r| r.key_and_row()))?;
            // A stored row counts its copies; here each copy is a row.
            let copies: Vec<u32> = rows
                .iter()
                .enumerate()
                .flat_map(|(i, r)| std::iter::repeat_n(i as u32, r.value.count.max(0) as usize))
                .collect();
            join.store(
                spec,
                keys,
                side,
                take_record_batch(&decoded, &UInt32Array::from(copies))?,
            )?;
        }
        Ok(join)
    }

    /// Joins `batch`, rows of input `side`, with the stored rows of the
    /// other input (pairs passing the join condition, left columns first),
    /// then stores its rows.
    pub fn process(
        &mut self,
        spec: &JoinSpec,
        keys: &KeyEncoder,
        side: Side,
        batch: &RecordBatch,
    ) -> Result<RecordBatch> {
        let (this_keys, null_key, _) = spec.key_columns(keys, side, batch)?;
        let mut hashes = self.matcher.hashes(keys, &this_keys)?;
        // Rows with a NULL key match nothing and are not stored; `kept` maps
        // a stored row to its row in `batch`.
        let mut stored = batch.clone();
        let mut kept = None;
        if null_key.iter().any(|&n| n) {
            let keyed = BooleanArray::from(null_key.iter().map(|&n| !n).collect::<Vec<_>>());
            stored = filter_rows(batch, &keyed)?;
            let rows: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&i| !null_key[i as usize])
                .collect();
            hashes = rows.iter().map(|&i| hashes[i as usize]).collect();
            kept = Some(rows);
        }
        let (mut this_rows, mut other_rows) = (Vec::new(), Vec::new());
        let expires = self.batch_expiry(side, &stored)?;
        self.index.insert(side, stored, &hashes, expires, |i, r| {
            this_rows.push(kept.as_ref().map_or(i, |rows| rows[i as usize]));
            other_rows.push(r);
        })?;
        if this_rows.is_empty() {
            return Ok(RecordBatch::new_empty(spec.output_schema.clone()));
        }
        let other = side.other();
        let mut candidates = self.index.take(other, &other_rows)?;
        // Equal hashes name candidates; equal keys make pairs.
        let (candidate_keys, _, _) = spec.key_columns(keys, other, &candidates)?;
        let equal = self
            .matcher
            .equal(keys, &this_keys, &this_rows, &candidate_keys)?;
        if equal.true_count() < this_rows.len() {
            let pairs: Vec<u32> = (0..this_rows.len() as u32)
                .filter(|&p| equal.value(p as usize))
                .collect();
            this_rows = pairs.iter().map(|&p| this_rows[p as usize]).collect();
            candidates = take_rows(&candidates, &pairs)?;
        }
        let this_part = take_rows(batch, &this_rows)?;
        let mut joined = match side {
            Side::Left => spec.combine(&this_part, &candidates)?,
            Side::Right => spec.combine(&candidates, &this_part)?,
        };
        if let Some(mask) = spec.filter_mask(&joined)? {
            joined = filter_rows(&joined, &mask)?;
        }
        Ok(joined)
    }

    /// Stores `batch`, rows of `side` with non-NULL keys.
    fn store(&mut self, spec: &JoinSpec, keys: &KeyEncoder, side: Side, batch: RecordBatch) -> Result<()> {
        let (batch_keys, _, _) = spec.key_columns(keys, side, &batch)?;
        let expires = self.batch_expiry(side, &batch)?;
        let hashes = self.matcher.hashes(keys, &batch_keys)?;
        self.index.insert(side, batch, &hashes, expires, |_, _| ())
    }

    /// Batches of `side` received so far (evicted ones included).
    fn received(&self, side: Side) -> usize {
        self.index.evicted_batches(side) + self.index.batches(side).len()
    }

    /// Drops the rows no row that is not late can match once the watermark
    /// is `watermark` (oldest batches first, see [`JoinIndex::evict`]), and
    /// deletes from `state` the chunks whose batches are all dropped.
    pub fn expire(&mut self, watermark: EventTime, state: &mut KeyedState) {
        for side in [Side::Left, Side::Right] {
            let s = side as usize;
            if self.expiry[s].is_empty() || self.index.evict(side, watermark) == 0 {
                continue;
            }
            let evicted = self.index.evicted_batches(side);
            while let Some(&(chunk, end)) = self.chunks[s].front()
                && end <= evicted
            {
                state.batches().delete(&chunk_namespace(side, chunk));
                self.chunks[s].pop_front();
            }
        }
    }

    /// Hands the rows stored since the last call to `state`'s batch state,
    /// as the next chunk of each side.
    pub fn write_new(
        &mut self,
        spec: &JoinSpec,
        max_parallelism: usize,
        state: &mut KeyedState,
    ) -> Result<()> {
        for side in [Side::Left, Side::Right] {
            let s = side as usize;
            let batches = self.index.batches(side);
            let from = self.checkpointed[s].saturating_sub(self.index.evicted_batches(side));
            let new = &batches[from..];
            self.checkpointed[s] = self.received(side);
            if new.is_empty() {
                continue;
            }
            let key_groups = key_groups_of_batches(spec.keys(side), new, max_parallelism)?;
            state
                .batches()
                .write(&chunk_namespace(side, self.next_chunk), new, &key_groups)?;
            self.chunks[s].push_back((self.next_chunk, self.checkpointed[s]));
        }
        self.next_chunk += 1;
        Ok(())
    }
}

/// Moves the rows of this layout that a restored `state` holds (chunks of
/// batch state) into the backend's layout, as [`JoinRowStore`] entries
/// without a write time (so they never expire by TTL): the join runs with
/// the backend's layout (another backend, or a TTL set on restore).
pub fn move_to_backend(
    spec: &JoinSpec,
    keys: &KeyEncoder,
    codec: &RowCodec,
    store: JoinRowStore,
    ids: &mut ArrivalIds,
    max_parallelism: usize,
    state: &mut KeyedState,
) -> Result<()> {
    let mut chunks = Vec::new();
    for (ns, batches) in state.batches().batches_of_each() {
        let (side, _) = chunk_of_namespace(ns)?;
        chunks.extend(batches.into_iter().map(|b| (side, b)));
    }
    if chunks.is_empty() {
        return Ok(());
    }
    let mut entry = Vec::new();
    for (side, batch) in chunks {
        let (batch_keys, _, hash_columns) = spec.join_keys(keys, side, &batch)?;
        let kgs = key_groups_of(&hash_columns, batch.num_rows(), max_parallelism)?;
        let rows = codec.encode(side, &batch)?;
        let backend = state.backend();
        for (i, &kg) in kgs.iter().enumerate() {
            store.entry_key_into(
                &mut entry,
                side,
                batch_keys.row(i).data(),
                0,
                rows.row(i).data(),
                ids,
            );
            let one = RowValue {
                count: 1,
                ..RowValue::default()
            };
            if let Some(stored) = store.insert(backend, kg, side, &entry, one)? {
                let value = RowValue {
                    count: stored.count + 1,
                    ..stored
                };
                store.put(backend, kg, &entry, value, Some(stored))?;
            }
        }
    }
    state.batches().delete_prefix(&[TAG]);
    Ok(())
}

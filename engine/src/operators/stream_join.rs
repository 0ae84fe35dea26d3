//! Regular (unbounded) join: two streams, append-only or changelogs, joined
//! on equality keys with no time bound, producing a changelog, as Flink's
//! regular join.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::{ArrayRef, Int8Array};
use arrow::compute::interleave_record_batch;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};

use super::join::{JoinSpec, JoinType, KeyEncoder, RowCodec, Side, take_rows};
use super::join_state::{ArrivalIds, BatchProbe, JoinRowStore, RowValue, StoredRow};
use super::stream_join_in_memory::{InMemoryJoin, move_to_backend};
use crate::changelog::{RowKind, attach_ops, split_ops};
use crate::key_group::key_groups_of;
use crate::message::{Barrier, EventTime};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output, processing_time_ms};
use crate::state::{KeyedState, OperatorSnapshot, StateInit};
use crate::watermark::to_event_time;

/// The plan of a regular join.
#[derive(Debug)]
pub struct StreamJoinConfig {
    pub spec: JoinSpec,
    /// Whether each input is a changelog (its batches end with the
    /// row-kind column; `spec`'s schemas do not have it).
    pub left_updating: bool,
    pub right_updating: bool,
    /// Per input (left, right), the bounds its join condition puts on the
    /// rowtime of the rows of the other input a row can match (empty: none).
    pub expiry: [Vec<ExpiryBound>; 2],
}

/// A bound the join condition puts on the rows of the other input a row
/// can match: a row whose timestamp column `column` holds `t` matches only
/// rows of the other input whose rowtime attribute is at most `t + offset`
/// (ns). In `a.id = b.auction AND b.date_time BETWEEN a.date_time AND
/// a.expires`, a bid matches auctions created up to its `date_time` and an
/// auction bids up to its `expires`. Once the watermark reaches `t +
/// offset`, only late rows of the other input could match the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryBound {
    pub column: usize,
    pub offset: i64,
}

impl ExpiryBound {
    /// Per row of `batch` (rows of the input `bounds` are of): the watermark
    /// from which the row can match no row of the other input that is not
    /// late, the least of its `bounds` ([`EventTime::MIN`] where a bound's
    /// time is NULL: the row matches nothing; [`EventTime::MAX`] without
    /// bounds).
    pub fn row_expiries(bounds: &[ExpiryBound], batch: &RecordBatch) -> Result<Vec<EventTime>> {
        let mut expiries = vec![EventTime::MAX; batch.num_rows()];
        for bound in bounds {
            let times = to_event_time(batch.column(bound.column).as_ref())?;
            for (e, t) in expiries.iter_mut().zip(&times) {
                *e = (*e).min(t.map_or(EventTime::MIN, |t| t.saturating_add(bound.offset)));
            }
        }
        Ok(expiries)
    }
}

impl StreamJoinConfig {
    /// Whether the result is a changelog: outer joins retract NULL-padded
    /// rows once a match arrives, and retractions of an input retract the
    /// rows joined with them. An inner join of append-only inputs is
    /// append-only.
    pub fn output_updating(&self) -> bool {
        self.spec.join_type != JoinType::Inner || self.left_updating || self.right_updating
    }
}

/// Where an output row comes from, for [`interleave_record_batch`]: the
/// joined pairs, this batch's rows padded, or stored rows padded.
const JOINED: usize = 0;
const THIS_PADDED: usize = 1;
const OTHER_PADDED: usize = 2;

/// A regular join subtask.
///
/// # Semantics (Flink's)
///
/// Every row is stored (per side and join key) until it is retracted, and
/// joined on arrival with the stored rows of the other side that have the
/// same key and pass the condition:
///
/// - an accumulating row (`+I`, `+U`) emits `+I` for each pair; in an outer
///   join, a stored row of the preserved other side that had no match until
///   now first has its NULL-padded row retracted (`-D`), and an arriving row
///   with no match is emitted NULL-padded (`+I`);
/// - a retracting row (`-U`, `-D`) emits `-D` for each pair, re-emits
///   NULL-padded (`+I`) a preserved stored row left without matches, and
///   retracts its own NULL-padded row if it had no match. A retraction of a
///   row that is not stored (it expired by TTL) is ignored.
///
/// Rows with a NULL key match nothing and are not stored. An inner join of
/// append-only inputs emits only `+I`, so its output is append-only (no
/// row-kind column); otherwise the output is a changelog.
///
/// Watermarks are forwarded: rows are emitted as they join, and the
/// output's time columns are no rowtime attributes (the planner rejects
/// windows over them).
///
/// Where the condition of an inner join of append-only inputs bounds the
/// rowtime of the rows a row can match ([`ExpiryBound`], e.g. `b.date_time
/// BETWEEN a.date_time AND a.expires`: a bid matches auctions created up
/// to its `date_time`, an auction bids up to its `expires`), a row is
/// dropped once the watermark reaches its bound: only late rows of the
/// other input could still match it. Rows that are not late get every
/// match, so the result is the unbounded join's; a late row joins with what
/// is still stored, as in an interval join. The in-memory layout drops the
/// oldest batches. The backend's layout keeps each row's bound in its value
/// and does not store a row the watermark has passed already; a backend
/// that drops expired entries itself (RocksDB, in compactions) drops the
/// rest, probes skip them until then, and a row costs one write; otherwise
/// rows are indexed by their bounds (as interval joins do, see
/// [`JoinRowStore`]) and deleted as the watermark passes them.
///
/// # State
///
/// An inner join of append-only inputs without a TTL, under a backend that
/// holds state in memory (`hashmap`), keeps each input's rows as the batches
/// they arrived in with one hash index on the key for both inputs
/// ([`InMemoryJoin`]): a row is matched and stored with one lookup (its
/// batch appended, the row linked into the index), and
/// checkpointed once, as batch state. Otherwise (RocksDB, changelogs, outer
/// joins, a TTL), each distinct row is an entry of the keyed state backend
/// ([`JoinRowStore`], untimed) with its number of copies and of matches (a
/// row of an append-only input: each arrival, written without a read),
/// read by key on every probe: nothing but the current batch is held in
/// memory, so RocksDB holds state of any size, and a checkpoint is the
/// backend's snapshot. A restore moves rows written in the other layout
/// into the one the join runs with (a savepoint taken with one backend
/// restores into the other). With `table.exec.state.ttl`, a row not written for
/// longer than the TTL is ignored by probes and deleted (lazily when
/// probed, and by a sweep that visits one key group at a time, each key
/// group about once per TTL), as Flink's state TTL; results involving
/// expired rows are then incomplete, which is the TTL's trade-off. The
/// time of the last write is stored only under a TTL: a row written with
/// no TTL configured (e.g. before a restore that sets one) never expires.
pub struct StreamJoin {
    config: Arc<StreamJoinConfig>,
    store: JoinRowStore,
    arrival_ids: ArrivalIds,
    keys: KeyEncoder,
    rows: RowCodec,
    state: Option<KeyedState>,
    max_parallelism: usize,
    metrics: Option<Arc<OperatorMetrics>>,
    ttl_ms: Option<i64>,
    /// The next key group the TTL sweep visits, and when (ms since the epoch).
    sweep_key_group: usize,
    next_sweep_ms: i64,
    /// The in-memory layout, when it applies.
    in_memory: Option<InMemoryJoin>,
    /// The latest watermark, and the one up to which the backend's layout
    /// has deleted expired rows (`None` after a start: the first expiry
    /// scans from the beginning).
    watermark: Option<EventTime>,
    expired_through: Option<EventTime>,
    /// Whether the backend drops expired rows itself (RocksDB: in
    /// compactions), and the watermark it drops them by.
    backend_drops_expired: bool,
    shared_watermark: Arc<AtomicI64>,
}

impl StreamJoin {
    pub fn new(config: Arc<StreamJoinConfig>) -> Result<Self> {
        Ok(StreamJoin {
            keys: config.spec.key_encoder()?,
            rows: RowCodec::new(&config.spec)?,
            store: JoinRowStore {
                timed: false,
                arrivals: [!config.left_updating, !config.right_updating],
            },
            arrival_ids: ArrivalIds::new(),
            config,
            state: None,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
            metrics: None,
            ttl_ms: None,
            sweep_key_group: 0,
            next_sweep_ms: 0,
            in_memory: None,
            watermark: None,
            expired_through: None,
            backend_drops_expired: false,
            shared_watermark: Arc::new(AtomicI64::new(EventTime::MIN)),
        })
    }

    fn configure(&mut self, ctx: &OperatorContext) {
        self.max_parallelism = ctx.max_parallelism;
        self.ttl_ms = ctx.state_ttl_ms();
    }

    /// Whether the in-memory layout applies (see the type's `# State`).
    fn runs_in_memory(&self, state: &KeyedState) -> bool {
        let config = &self.config;
        config.spec.join_type == JoinType::Inner
            && !config.left_updating
            && !config.right_updating
            && self.ttl_ms.is_none()
            && state.backend_ref().holds_state_in_memory()
    }

    fn state(&mut self) -> Result<&mut KeyedState> {
        state_of(&mut self.state)
    }

    fn update_state_metrics(&self) {
        if let (Some(m), Some(state)) = (&self.metrics, &self.state) {
            state.report_size(m);
        }
    }

    /// Deletes the expired rows of the next key group, if a sweep is due.
    fn sweep(&mut self, now: i64) -> Result<()> {
        let Some(ttl) = self.ttl_ms else { return Ok(()) };
        if now < self.next_sweep_ms {
            return Ok(());
        }
        let store = self.store;
        let range = self.state()?.backend_ref().key_groups();
        let groups = (range.end - range.start).max(1);
        let kg = range.start + self.sweep_key_group % groups;
        self.sweep_key_group = (self.sweep_key_group + 1) % groups;
        self.next_sweep_ms = now + (ttl / groups as i64).clamp(1, 1000);
        let mut expired = Vec::new();
        store.scan_key_group(self.state()?.backend_ref(), kg, &mut |k, v| {
            if v.touched_ms.is_some_and(|t| now - t > ttl) {
                expired.push((k.to_vec(), v));
            }
            Ok(())
        })?;
        let backend = self.state()?.backend();
        for (k, v) in expired {
            store.delete(backend, kg, &k, Some(v))?;
        }
        Ok(())
    }

    /// Deletes the rows of the backend's layout whose bound the watermark
    /// has reached.
    fn expire_rows(&mut self, watermark: EventTime) -> Result<()> {
        let (store, after, ttl) = (self.store, self.expired_through, self.ttl_ms);
        if after.is_some_and(|after| watermark <= after) {
            return Ok(());
        }
        let config = self.config.clone();
        let backend = self.state()?.backend();
        for side in [Side::Left, Side::Right] {
            if config.expiry[side as usize].is_empty() {
                continue;
            }
            for (kg, entry) in store.take_expired(backend, side, after, watermark)? {
                // Under a TTL, the sweep may have deleted the row already.
                let value = match ttl {
                    Some(_) => match store.get(backend, kg, &entry)? {
                        Some(value) => Some(value),
                        None => continue,
                    },
                    None => None,
                };
                store.delete(backend, kg, &entry, value)?;
            }
        }
        self.expired_through = Some(watermark);
        Ok(())
    }

    /// Brings the restored rows of the backend's layout under expiry by
    /// their bounds: rows written without it (moved from the in-memory
    /// layout, or written by a weir whose backend layout kept every row) get
    /// it in their values where the backend drops expired entries itself
    /// (which needs no expiry records: any left are deleted), else as
    /// expiry records. One entry read per side with bounds when nothing is
    /// missing.
    fn restore_expiry(&self, state: &mut KeyedState) -> Result<()> {
        let (store, drops) = (self.store, self.backend_drops_expired);
        let backend = state.backend();
        if drops {
            store.delete_expiry_records(backend)?;
        }
        for side in [Side::Left, Side::Right] {
            let bounds = &self.config.expiry[side as usize];
            if bounds.is_empty() {
                continue;
            }
            let missing = match drops {
                true => store.rows_lack_expiry(backend, side)?,
                false => !store.has_expiry_records(backend, side)?,
            };
            if !missing {
                continue;
            }
            let rows = store.rows_of_side(backend, side)?;
            for chunk in rows.chunks(8192) {
                let decoded = self.rows.decode(side, chunk.iter().map(StoredRow::key_and_row))?;
                let expiries = ExpiryBound::row_expiries(bounds, &decoded)?;
                for (row, expires) in chunk.iter().zip(expiries) {
                    if drops {
                        let value = RowValue {
                            expires: Some(expires),
                            ..row.value
                        };
                        store.put(backend, row.kg, &row.entry, value, Some(row.value))?;
                    } else {
                        store.add_expiry(backend, row.kg, expires, &row.entry)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn has_bounds(&self) -> bool {
        self.config.expiry.iter().any(|bounds| !bounds.is_empty())
    }

    fn emit(
        &self,
        joined: Vec<RecordBatch>,
        sources: &[(usize, usize)],
        ops: Vec<i8>,
        out: &mut Output,
    ) -> Result<()> {
        if sources.is_empty() {
            return Ok(());
        }
        let parts: Vec<&RecordBatch> = joined.iter().collect();
        let rows = interleave_record_batch(&parts, sources)?;
        if self.config.output_updating() {
            out.emit(attach_ops(&rows, Arc::new(Int8Array::from(ops)) as ArrayRef)?);
        } else {
            out.emit(rows);
        }
        Ok(())
    }
}

/// The state of an initialized join (a field borrow, beside others).
fn state_of(state: &mut Option<KeyedState>) -> Result<&mut KeyedState> {
    state
        .as_mut()
        .ok_or_else(|| DataFusionError::Internal("join without state".into()))
}

#[async_trait]
impl Operator for StreamJoin {
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut init: StateInit) -> Result<()> {
        self.configure(ctx);
        let mut state = init.keyed_state().await?;
        let spec = &self.config.spec;
        if self.runs_in_memory(&state) {
            self.in_memory = Some(InMemoryJoin::restore(
                spec,
                &self.keys,
                &self.rows,
                self.store,
                &self.config.expiry,
                &mut state,
            )?);
        } else {
            if self.has_bounds() {
                let expiry = JoinRowStore::entry_expiry(self.shared_watermark.clone());
                self.backend_drops_expired = state.backend().drop_expired_entries(expiry);
            }
            move_to_backend(
                spec,
                &self.keys,
                &self.rows,
                self.store,
                &mut self.arrival_ids,
                self.max_parallelism,
                &mut state,
            )?;
            self.store.upgrade_counted_arrivals(
                state.backend(),
                &mut self.arrival_ids,
                &ctx.operator_name,
                ctx.subtask,
            )?;
            self.restore_expiry(&mut state)?;
        }
        self.state = Some(state);
        Ok(())
    }

    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.configure(ctx);
        self.metrics = Some(ctx.metrics.clone());
        self.update_state_metrics();
        Ok(())
    }

    async fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = Side::of_input(input);
        let other = side.other();
        let (batch, ops) = split_ops(&batch);
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        if let Some(in_memory) = &mut self.in_memory {
            let joined = in_memory.process(&self.config.spec, &self.keys, side, &batch)?;
            if joined.num_rows() > 0 {
                out.emit(joined);
            }
            return Ok(());
        }
        let now = processing_time_ms();
        self.sweep(now)?;
        let config = self.config.clone();
        let spec = &config.spec;
        let (keys, null_key, hash_columns) = spec.join_keys(&self.keys, side, &batch)?;
        let kgs = key_groups_of(&hash_columns, n, self.max_parallelism)?;
        let rows = self.rows.encode(side, &batch)?;
        let store = self.store;
        let ttl = self.ttl_ms;
        let watermark = self.watermark;
        let index_expiries = !self.backend_drops_expired;
        // Rows of a side with bounds keep them, and unless the backend drops
        // expired rows itself, are indexed by them (inner joins of
        // append-only inputs: each row is a new arrival).
        let expiries = match &config.expiry[side as usize] {
            bounds if bounds.is_empty() => None,
            bounds => Some(ExpiryBound::row_expiries(bounds, &batch)?),
        };
        let expired = |v: &RowValue| ttl.is_some_and(|ttl| v.touched_ms.is_some_and(|t| now - t > ttl));

        // Probe each distinct key once, all in one pass of the backend;
        // expired rows are dropped.
        let mut stale: Vec<StoredRow> = Vec::new();
        let probes = (0..n).map(|i| (!null_key[i]).then(|| (kgs[i], keys.row(i).data())));
        // Rows past their bound (not yet deleted or dropped) match only late rows.
        let passed = |v: &RowValue| v.expires.zip(watermark).is_some_and(|(e, w)| e <= w);
        let BatchProbe { candidates, ranges } =
            store.probe_batch(self.state()?.backend_ref(), other, probes, &mut |row| {
                if expired(&row.value) {
                    stale.push(row);
                    None
                } else if passed(&row.value) {
                    None
                } else {
                    Some(row)
                }
            })?;
        let (mut pair_this, mut pair_other) = (Vec::new(), Vec::new());
        for (i, range) in ranges.into_iter().enumerate() {
            for c in range {
                pair_this.push(i as u32);
                pair_other.push(c);
            }
        }

        // Every pair joined, and which pass the condition.
        let decoded = self
            .rows
            .decode(other, candidates.iter().map(StoredRow::key_and_row))?;
        let this_part = take_rows(&batch, &pair_this)?;
        let other_part = take_rows(
            &decoded,
            &pair_other.iter().map(|&c| c as u32).collect::<Vec<_>>(),
        )?;
        let joined = match side {
            Side::Left => spec.combine(&this_part, &other_part)?,
            Side::Right => spec.combine(&other_part, &this_part)?,
        };
        let passing: Vec<bool> = match spec.filter_mask(&joined)? {
            Some(mask) => mask.values().iter().collect(),
            None => vec![true; joined.num_rows()],
        };
        // Apply the rows in order: output rows and state changes.
        let (this_preserved, other_preserved) =
            (spec.join_type.preserves(side), spec.join_type.preserves(other));
        // NULL-padded rows of preserved sides only (the other side's columns
        // may be NOT NULL).
        let padded = |preserved: bool, side: Side, rows: &RecordBatch| {
            if preserved {
                spec.pad(side, rows)
            } else {
                Ok(RecordBatch::new_empty(spec.output_schema.clone()))
            }
        };
        let this_padded = padded(this_preserved, side, &batch)?;
        let other_padded = padded(other_preserved, other, &decoded)?;
        let mut matches: Vec<i64> = candidates.iter().map(|c| c.value.matches).collect();
        let mut touched = vec![false; candidates.len()];
        let mut sources: Vec<(usize, usize)> = Vec::new();
        let mut kinds: Vec<i8> = Vec::new();
        let mut push = |src: usize, idx: usize, kind: RowKind, copies: i64| {
            for _ in 0..copies.max(1) {
                sources.push((src, idx));
                kinds.push(kind as i8);
            }
        };
        let ids = &mut self.arrival_ids;
        let backend = state_of(&mut self.state)?.backend();
        for c in &stale {
            store.delete(backend, c.kg, &c.entry, Some(c.value))?;
        }
        let mut entry = Vec::new();
        let mut pair = 0usize;
        for i in 0..n {
            let accumulate = RowKind::from_i8(ops.value(i))?.is_accumulate();
            let first = pair;
            while pair < pair_this.len() && pair_this[pair] as usize == i {
                pair += 1;
            }
            if null_key[i] {
                if this_preserved {
                    let kind = if accumulate {
                        RowKind::Insert
                    } else {
                        RowKind::Delete
                    };
                    push(THIS_PADDED, i, kind, 1);
                }
                continue;
            }
            store.entry_key_into(&mut entry, side, keys.row(i).data(), 0, rows.row(i).data(), ids);
            // A retraction needs the stored row; an accumulate row is
            // inserted below (as a new row, most often) in one lookup.
            let retracted = if accumulate {
                None
            } else {
                match store.get(backend, kgs[i], &entry)? {
                    Some(stored) if !expired(&stored) => Some(stored),
                    _ => continue, // never stored, or expired: nothing to retract
                }
            };
            let mut matched = 0i64;
            for p in first..pair {
                if !passing[p] {
                    continue;
                }
                let c = pair_other[p];
                let copies = candidates[c].value.count;
                matched += copies;
                if accumulate {
                    if other_preserved && matches[c] == 0 {
                        push(OTHER_PADDED, c, RowKind::Delete, copies);
                    }
                    push(JOINED, p, RowKind::Insert, copies);
                    matches[c] += 1;
                } else {
                    push(JOINED, p, RowKind::Delete, copies);
                    matches[c] -= 1;
                    if other_preserved && matches[c] == 0 {
                        push(OTHER_PADDED, c, RowKind::Insert, copies);
                    }
                }
                touched[c] = true;
            }
            if matched == 0 && this_preserved {
                let kind = if accumulate {
                    RowKind::Insert
                } else {
                    RowKind::Delete
                };
                push(THIS_PADDED, i, kind, 1);
            }
            // Read only for rows of a preserved side.
            let matches = if this_preserved { matched } else { 0 };
            match retracted {
                None => {
                    let expires = expiries.as_ref().map(|e| e[i]);
                    if let (Some(expires), Some(watermark)) = (expires, watermark)
                        && expires <= watermark
                    {
                        continue; // no row that is not late can match it
                    }
                    let fresh = RowValue {
                        count: 1,
                        matches,
                        touched_ms: ttl.map(|_| now),
                        expires,
                    };
                    if let Some(stored) = store.insert(backend, kgs[i], side, &entry, fresh)? {
                        let count = if expired(&stored) { 1 } else { stored.count + 1 };
                        let value = RowValue { count, ..fresh };
                        store.put(backend, kgs[i], &entry, value, Some(stored))?;
                    }
                    if let Some(expires) = expires.filter(|_| index_expiries) {
                        store.add_expiry(backend, kgs[i], expires, &entry)?;
                    }
                }
                Some(stored) => {
                    let value = RowValue {
                        count: stored.count - 1,
                        matches,
                        touched_ms: ttl.and(stored.touched_ms),
                        expires: stored.expires,
                    };
                    store.put(backend, kgs[i], &entry, value, Some(stored))?;
                }
            }
        }
        if other_preserved {
            for (c, cand) in candidates.iter().enumerate() {
                if touched[c] {
                    let value = RowValue {
                        matches: matches[c],
                        touched_ms: ttl.map(|_| now),
                        ..cand.value
                    };
                    store.put(backend, cand.kg, &cand.entry, value, Some(cand.value))?;
                }
            }
        }
        self.emit(vec![joined, this_padded, other_padded], &sources, kinds, out)?;
        self.update_state_metrics();
        Ok(())
    }

    async fn process_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        if let (Some(in_memory), Some(state)) = (&mut self.in_memory, &mut self.state) {
            in_memory.expire(watermark, state);
        } else if self.backend_drops_expired {
            self.shared_watermark.store(watermark, Ordering::Relaxed);
        } else if self.has_bounds() {
            self.expire_rows(watermark)?;
        }
        self.watermark = Some(watermark);
        self.update_state_metrics();
        out.emit_watermark(watermark);
        Ok(())
    }

    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        self.sweep(processing_time_ms())?;
        if let (Some(in_memory), Some(state)) = (&mut self.in_memory, &mut self.state) {
            in_memory.write_new(&self.config.spec, self.max_parallelism, state)?;
        }
        self.update_state_metrics();
        let pending = self.state()?.snapshot(barrier)?;
        Ok(OperatorSnapshot::keyed(pending))
    }
}

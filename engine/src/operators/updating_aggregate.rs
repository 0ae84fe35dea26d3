//! Non-windowed `GROUP BY`: an updating result, as a changelog.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int8Array, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::common::{DataFusionError, HashMap, HashSet, Result, ScalarValue, plan_err};
use datafusion::physical_expr::PhysicalExpr;

use super::aggregates::{AggregateInput, AggregateSpec, cast_to, evaluate_exprs, evaluate_inputs};
use super::group_state::{Group, GroupCodec};
use super::updating_aggregate_in_memory::{self as in_memory, InMemoryGroups};
use crate::changelog::{RowKind, ops_of, with_op_column};
use crate::key_group::key_groups_of;
use crate::message::Barrier;
use crate::operator::{Operator, OperatorContext, Output, processing_time_ms};
use crate::state::{BackendBatches, KeyedState, OperatorSnapshot, StateInit};

/// The plan of an updating aggregate, shared by its subtasks.
#[derive(Debug)]
pub struct UpdatingAggregateConfig {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub key_schema: SchemaRef,
    pub aggregates: Vec<AggregateSpec>,
    /// Whether the input is itself a changelog (then `-U`/`-D` rows retract).
    pub input_updating: bool,
    /// Keys then aggregates (without the row-kind column).
    pub output_schema: SchemaRef,
    /// The grouping keys (indices into `keys`, in the order the exchange
    /// feeding the aggregate hashes them) whose hash places a group in its
    /// key group, when the input arrives partitioned by a subset of the
    /// keys: the join key of a join below, whose exchange the aggregate then
    /// shares instead of hashing every row again. `None`: all the keys, as
    /// the aggregate's own hash exchange partitions its input.
    pub partition_keys: Option<Vec<usize>>,
}

impl UpdatingAggregateConfig {
    /// Checks that every aggregate can retract, if the input can retract.
    pub fn validate(&self) -> Result<()> {
        if self.input_updating {
            for a in &self.aggregates {
                if !a.accumulator()?.supports_retract_batch() {
                    return plan_err!(
                        "aggregate {} cannot consume an updating input (it cannot retract rows); \
                         aggregate an append-only input or use a retractable aggregate (count, sum, avg)",
                        a.name()
                    );
                }
            }
        }
        if let Some(picked) = &self.partition_keys
            && (picked.is_empty() || picked.iter().any(|&k| k >= self.keys.len()))
        {
            return plan_err!(
                "an aggregate partitioned by keys {picked:?} of its {} grouping keys",
                self.keys.len()
            );
        }
        Ok(())
    }

    /// The key group of every row with grouping keys `keys`: by
    /// `partition_keys`, as the exchange feeding the aggregate placed it.
    pub fn key_groups(&self, keys: &[ArrayRef], n: usize, max_parallelism: usize) -> Result<Vec<usize>> {
        match &self.partition_keys {
            None => key_groups_of(keys, n, max_parallelism),
            Some(picked) => {
                let columns: Vec<ArrayRef> = picked.iter().map(|&k| keys[k].clone()).collect();
                key_groups_of(&columns, n, max_parallelism)
            }
        }
    }

    /// The first byte of a group's keyed-state entry. Groups placed by a
    /// subset of the keys are written under a tag of their own, so that
    /// state is never restored into a job that places them otherwise (its
    /// groups would sit on subtasks that never see their rows).
    pub(crate) fn group_tag(&self) -> u8 {
        if self.partition_keys.is_some() {
            PARTITIONED_GROUP_TAG
        } else {
            GROUP_TAG
        }
    }

    /// The error for restored state whose groups were placed otherwise than
    /// this job places them.
    pub(crate) fn other_placement(&self) -> DataFusionError {
        let (written, planned, setting) = if self.partition_keys.is_some() {
            ("all its grouping keys", "the join key of its input", "false")
        } else {
            ("the join key of its input", "all its grouping keys", "true")
        };
        DataFusionError::Execution(format!(
            "cannot restore the state of a GROUP BY: it was written by a job that placed the groups by \
             the hash of {written}, and this job places them by {planned}; restored, groups would sit \
             on subtasks that never receive their rows. Plan the job as the one that wrote the state \
             did: SET 'table.optimizer.reuse-join-partitioning' = '{setting}'"
        ))
    }

    /// Fails if restored state holds groups of the other placement: entries
    /// under the other tag in `backend`, or, when `earliest_layout` (batches
    /// of the earliest layout were restored), groups placed by all their
    /// keys, as that layout placed them. (Chunks of the in-memory layout are
    /// checked by their namespace: `updating_aggregate_in_memory::chunk_of_namespace`.)
    pub(crate) fn check_placement(
        &self,
        backend: &dyn crate::state::KeyedStateBackend,
        earliest_layout: bool,
    ) -> Result<()> {
        if earliest_layout && self.partition_keys.is_some() {
            return Err(self.other_placement());
        }
        let other = if self.group_tag() == GROUP_TAG {
            PARTITIONED_GROUP_TAG
        } else {
            GROUP_TAG
        };
        backend.scan_prefix(&[other], &mut |_, _, _| Err(self.other_placement()))
    }
}

/// A non-windowed aggregate subtask: for every batch, updates the groups it
/// touches and emits, per changed group, `+I` (new), `-U`/`+U` (changed) or
/// `-D` (no rows left), as Flink's group aggregate does. Unchanged results are
/// not re-emitted.
///
/// State: per group, DataFusion row accumulators (non-destructive
/// `evaluate`, `retract_batch` for changelog inputs), keyed by the key's
/// Arrow row encoding. As in Flink, a group whose rows have all been
/// retracted is dropped (after its `-D`), and a retraction for a group that
/// has no state (never seen, or expired) is ignored, until an accumulate
/// row of that key arrives in the same batch.
///
/// Checkpoints: one keyed-state entry per group, under the group key's row
/// encoding ([`GroupCodec`] has the value's layout), as Flink keeps one value
/// per key. A barrier writes the groups changed since the last one and
/// deletes the entries of the groups dropped since, so its cost follows what
/// changed, not how many groups there are. State written by earlier versions
/// (one batch per key group) is still restored, and replaced by entries at
/// the first checkpoint.
///
/// Known limitation: an accumulator whose `state()` does not capture what
/// `retract_batch` needs would lose it at every barrier and on restore. In
/// DataFusion 55 that is the case of the sliding (retractable) `min`/`max`
/// (`SlidingMinAccumulator`: its `state()` is the current minimum only, not
/// the multiset of values), but this operator never uses them: it creates
/// accumulators with `create_accumulator`, whose `min`/`max` cannot retract,
/// so [`UpdatingAggregateConfig::validate`] rejects `min`/`max` over an
/// updating input. The retractable accumulators it does get (`count`, `avg`,
/// `var`/`stddev`, `array_agg`, `median`, …) keep all they need in `state()`.
///
/// State TTL (`table.exec.state.ttl`): a group not updated for longer than
/// the TTL (processing time) is dropped without emitting anything, as in
/// Flink; a later row of its key starts a new group (and emits `+I`). Expiry
/// is checked when a group is looked up (so the result never depends on when
/// sweeps run), and the state of expired groups is swept at most once per
/// `min(TTL, 1 s)`, checked at each batch and each barrier.
pub struct UpdatingAggregate {
    config: Arc<UpdatingAggregateConfig>,
    converter: RowConverter,
    index: HashMap<Arc<[u8]>, u32>,
    /// Groups by id; `None` for a free id (in `free`).
    groups: Vec<Option<Group>>,
    free: Vec<u32>,
    codec: GroupCodec,
    /// The groups changed since the last snapshot (those with `dirty` set;
    /// an id may repeat, or have been freed since).
    dirty: Vec<u32>,
    /// The entries of the groups dropped since the last snapshot: key, key
    /// group, value length.
    dropped: Vec<(Arc<[u8]>, usize, usize)>,
    state: Option<KeyedState>,
    /// State of the earlier layout, one batch per key group: read on
    /// restore, deleted at the first snapshot.
    key_group_batches: BackendBatches,
    /// Whether restored state holds such batches.
    has_key_group_batches: bool,
    /// Whether restored state holds chunks of the in-memory layout (read
    /// on restore, deleted at the first snapshot).
    has_chunks: bool,
    /// The groups, when the in-memory layout applies (see the type's docs).
    in_memory: Option<InMemoryGroups>,
    max_parallelism: usize,
    ttl_ms: Option<i64>,
    /// When expired groups are next swept (ms since the epoch).
    next_sweep_ms: i64,
}

/// The first key byte of a group's entry (the group key's row encoding
/// follows), when groups are placed by all their keys.
pub(crate) const GROUP_TAG: u8 = 2;

/// The first key byte of a group's entry when groups are placed by a subset
/// of their keys ([`UpdatingAggregateConfig::partition_keys`]).
pub(crate) const PARTITIONED_GROUP_TAG: u8 = 3;

/// Groups encoded per call when a snapshot writes them.
const ENCODE_CHUNK: usize = 4096;

impl UpdatingAggregate {
    pub fn new(config: Arc<UpdatingAggregateConfig>) -> Result<Self> {
        let fields = config
            .key_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(UpdatingAggregate {
            converter: RowConverter::new(fields)?,
            codec: GroupCodec::new(&config.aggregates)?,
            config,
            index: HashMap::new(),
            groups: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            dropped: Vec::new(),
            state: None,
            key_group_batches: BackendBatches::default(),
            has_key_group_batches: false,
            has_chunks: false,
            in_memory: None,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
            ttl_ms: None,
            next_sweep_ms: 0,
        })
    }

    fn configure(&mut self, ctx: &OperatorContext) {
        self.max_parallelism = ctx.max_parallelism;
        self.ttl_ms = ctx.state_ttl_ms();
    }

    /// Whether the in-memory layout applies: an append-only input, no TTL,
    /// and a backend that holds state in memory.
    fn runs_in_memory(&self, state: &KeyedState) -> bool {
        !self.config.input_updating && self.ttl_ms.is_none() && state.backend_ref().holds_state_in_memory()
    }

    fn group(&self, id: u32) -> &Group {
        self.groups[id as usize].as_ref().expect("a live group id")
    }

    fn is_expired(&self, id: u32, now: i64) -> bool {
        self.ttl_ms
            .is_some_and(|ttl| now - self.group(id).updated_ms > ttl)
    }

    /// Marks group `id` as changed since the last snapshot.
    fn touch(&mut self, id: u32) {
        let group = self.groups[id as usize].as_mut().expect("a live group id");
        group.mark_changed(id, &mut self.dirty);
    }

    /// Adds a group (changed, unless restored with an entry of its own).
    fn insert_group(&mut self, group: Group) -> u32 {
        let key = group.key.clone();
        let written = group.stored_len.is_some();
        let id = match self.free.pop() {
            Some(id) => {
                self.groups[id as usize] = Some(group);
                id
            }
            None => {
                self.groups.push(Some(group));
                (self.groups.len() - 1) as u32
            }
        };
        self.index.insert(key, id);
        if !written {
            self.touch(id);
        }
        id
    }

    /// Drops a group (its entry is deleted at the next snapshot).
    fn remove_group(&mut self, id: u32) {
        let group = self.groups[id as usize].take().expect("a live group id");
        self.index.remove(&group.key);
        if let Some(len) = group.stored_len {
            self.dropped.push((group.key, group.key_group, len));
        }
        self.free.push(id);
    }

    /// Drops the groups idle for longer than the TTL, if a sweep is due.
    fn sweep_expired(&mut self, now: i64) {
        let Some(ttl) = self.ttl_ms else {
            return;
        };
        if now < self.next_sweep_ms {
            return;
        }
        self.next_sweep_ms = now + ttl.min(1000);
        let expired: Vec<u32> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(id, g)| g.as_ref().filter(|g| now - g.updated_ms > ttl).map(|_| id as u32))
            .collect();
        for id in expired {
            self.remove_group(id);
        }
    }

    /// The group of every row, creating the missing (or expired) ones; also
    /// returns the groups created.
    fn group_ids(&mut self, keys: &[ArrayRef], n: usize, now: i64) -> Result<(Vec<u32>, HashSet<u32>)> {
        let mut created = HashSet::new();
        if keys.is_empty() {
            if n == 0 {
                return Ok((Vec::new(), created));
            }
            let id = match self.index.get(&[][..]).copied() {
                Some(id) if !self.is_expired(id, now) => id,
                existing => {
                    if let Some(id) = existing {
                        self.remove_group(id);
                    }
                    let id = self.new_group(Arc::new([]), 0, now)?;
                    created.insert(id);
                    id
                }
            };
            return Ok((vec![id; n], created));
        }
        let rows = self.converter.convert_columns(keys)?;
        let mut key_groups: Option<Vec<usize>> = None;
        let mut ids = Vec::with_capacity(n);
        for (i, row) in rows.iter().enumerate() {
            let bytes = row.as_ref();
            let id = match self.index.get(bytes).copied() {
                Some(id) if !self.is_expired(id, now) => id,
                existing => {
                    if let Some(id) = existing {
                        self.remove_group(id);
                    }
                    if key_groups.is_none() {
                        key_groups = Some(self.config.key_groups(keys, n, self.max_parallelism)?);
                    }
                    let kg = key_groups.as_ref().expect("computed above")[i];
                    let id = self.new_group(bytes.into(), kg, now)?;
                    created.insert(id);
                    id
                }
            };
            ids.push(id);
        }
        Ok((ids, created))
    }

    fn new_group(&mut self, key: Arc<[u8]>, key_group: usize, now: i64) -> Result<u32> {
        let accumulators = self.codec.fresh_accumulators()?;
        Ok(self.insert_group(Group {
            key,
            key_group,
            accumulators,
            count: 0,
            emitted: None,
            updated_ms: now,
            stored_len: None,
            dirty: false,
        }))
    }

    /// Writes to keyed state what changed since the last snapshot: deletes
    /// the entries of dropped groups, writes those of changed groups.
    fn write_changes(&mut self, state: &mut KeyedState) -> Result<()> {
        if std::mem::take(&mut self.has_chunks) {
            state
                .batches()
                .delete_prefix(&[in_memory::chunk_tag(&self.config)]);
        }
        let backend = state.backend();
        if std::mem::take(&mut self.has_key_group_batches) {
            self.key_group_batches.delete_all(backend)?;
        }
        let mut key = Vec::new();
        let tag = self.config.group_tag();
        for (group_key, kg, len) in self.dropped.drain(..) {
            entry_key(&mut key, tag, &group_key);
            backend.delete_known(kg, &key, len)?;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        // Each changed group once (an id may repeat if it was freed and reused).
        dirty.retain(|&id| {
            self.groups[id as usize]
                .as_mut()
                .is_some_and(|g| std::mem::take(&mut g.dirty))
        });
        let mut chunk: Vec<Group> = Vec::with_capacity(ENCODE_CHUNK.min(dirty.len()));
        for ids in dirty.chunks(ENCODE_CHUNK) {
            chunk.extend(
                ids.iter()
                    .map(|&id| self.groups[id as usize].take().expect("a live group")),
            );
            let values = self.codec.encode(&mut chunk);
            let written = values.and_then(|values| {
                for (group, value) in chunk.iter_mut().zip(values.iter()) {
                    entry_key(&mut key, tag, &group.key);
                    let value = value.as_ref();
                    backend.put_known(group.key_group, &key, value, group.stored_len)?;
                    group.stored_len = Some(value.len());
                }
                Ok(())
            });
            // The groups go back even if writing failed.
            for (&id, group) in ids.iter().zip(chunk.drain(..)) {
                self.groups[id as usize] = Some(group);
            }
            written?;
        }
        dirty.clear();
        self.dirty = dirty;
        Ok(())
    }

    /// Restores the groups of keyed state (entries, batches of the earlier
    /// layout, or chunks of the in-memory layout, which become entries at
    /// the next snapshot).
    fn restore(&mut self, state: &mut KeyedState) -> Result<()> {
        let mut chunks = Vec::new();
        for (ns, batches) in state.batches().batches_of_each() {
            in_memory::chunk_of_namespace(&self.config, ns)?;
            chunks.extend(batches);
        }
        let keys = self.config.keys.len();
        let config = self.config.clone();
        let max_parallelism = self.max_parallelism;
        let key_groups = |columns: &[ArrayRef], n: usize| config.key_groups(columns, n, max_parallelism);
        for batch in chunks {
            self.has_chunks = true;
            for group in self
                .codec
                .decode_key_group_batch(&batch, &self.converter, keys, key_groups)?
            {
                // A later chunk's row of a group replaces an earlier one's.
                if let Some(id) = self.index.get(&group.key).copied() {
                    self.remove_group(id);
                }
                self.insert_group(group);
            }
        }
        let backend = state.backend_ref();
        let earliest = self.key_group_batches.read_all(backend)?;
        self.config.check_placement(backend, !earliest.is_empty())?;
        for (_, _, batch) in earliest {
            self.has_key_group_batches = true;
            for group in self
                .codec
                .decode_key_group_batch(&batch, &self.converter, keys, key_groups)?
            {
                // No entry of its own yet: written at the next snapshot.
                self.insert_group(group);
            }
        }
        let mut entries: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        backend.scan_prefix(&[self.config.group_tag()], &mut |kg, key, value| {
            entries.push((kg, key[1..].to_vec(), value.to_vec()));
            if entries.len() == ENCODE_CHUNK {
                self.restore_entries(&mut entries)?;
            }
            Ok(())
        })?;
        self.restore_entries(&mut entries)
    }

    fn restore_entries(&mut self, entries: &mut Vec<(usize, Vec<u8>, Vec<u8>)>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let groups = self
            .codec
            .decode(entries.iter().map(|(kg, k, v)| (*kg, k.as_slice(), v.as_slice())))?;
        entries.clear();
        for group in groups {
            self.insert_group(group);
        }
        Ok(())
    }
}

/// The keyed-state key of the group with key `group_key`, into `out`; `tag`:
/// [`UpdatingAggregateConfig::group_tag`].
fn entry_key(out: &mut Vec<u8>, tag: u8, group_key: &[u8]) {
    out.clear();
    out.push(tag);
    out.extend_from_slice(group_key);
}

#[async_trait]
impl Operator for UpdatingAggregate {
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut init: StateInit) -> Result<()> {
        self.configure(ctx);
        let mut state = init.keyed_state().await?;
        if self.runs_in_memory(&state) {
            self.in_memory = Some(InMemoryGroups::restore(
                self.config.clone(),
                &self.codec,
                &self.converter,
                &mut self.key_group_batches,
                self.max_parallelism,
                &mut state,
            )?);
        } else if init.is_restored() {
            self.restore(&mut state)?;
        }
        self.state = Some(state);
        Ok(())
    }

    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.configure(ctx);
        Ok(())
    }

    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        let Some(mut state) = self.state.take() else {
            return Ok(OperatorSnapshot::default());
        };
        self.sweep_expired(processing_time_ms());
        let written = match &mut self.in_memory {
            Some(groups) => groups.write_changes(&mut state),
            None => self.write_changes(&mut state),
        };
        let pending = written.and_then(|()| state.snapshot(barrier));
        self.state = Some(state);
        Ok(OperatorSnapshot::keyed(pending?))
    }

    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let now = processing_time_ms();
        if let Some(groups) = &mut self.in_memory {
            if let Some(changes) = groups.process(&batch, now)? {
                out.emit(changes);
            }
            return Ok(());
        }
        self.sweep_expired(now);
        let keys = evaluate_exprs(&self.config.keys, &batch)?;
        let inputs = evaluate_inputs(&self.config.aggregates, &batch)?;
        let retract: Option<Vec<bool>> = match ops_of(&batch) {
            Some(ops) if self.config.input_updating => Some(
                ops.values()
                    .iter()
                    .map(|v| RowKind::from_i8(*v).map(|k| !k.is_accumulate()))
                    .collect::<Result<Vec<_>>>()?,
            ),
            _ => None,
        };
        let (ids, created) = self.group_ids(&keys, n, now)?;

        // Rows of each touched group, accumulating and retracting apart, in
        // order of first touch. A retraction for a group without state (as
        // Flink: it was never seen, or expired) is ignored, unless the group
        // got an accumulate row earlier in this batch.
        let slots = Slots::of(&ids, retract.as_deref(), &created);
        // Each input once, its rows ordered by slot: a group's rows are then
        // a slice of it.
        let inputs: Vec<AggregateInput> = if slots.order.iter().enumerate().all(|(i, &r)| i as u32 == r) {
            inputs
        } else {
            let order = UInt32Array::from(slots.order.clone());
            inputs.iter().map(|i| i.take(&order)).collect::<Result<_>>()?
        };

        let mut kinds: Vec<i8> = Vec::new();
        let mut out_groups: Vec<u32> = Vec::new();
        let mut out_values: Vec<Vec<ScalarValue>> = Vec::new();
        let mut emptied: Vec<u32> = Vec::new();
        // A group's new values, compared with those last emitted before
        // anything is allocated for them (most often they are the same).
        let mut new_values: Vec<ScalarValue> = Vec::with_capacity(self.config.aggregates.len());
        for (slot, &g) in slots.groups.iter().enumerate() {
            let group = self.groups[g as usize].as_mut().expect("a live group id");
            for (rows, is_retract) in [
                (slots.adds[slot].clone(), false),
                (slots.retracts[slot].clone(), true),
            ] {
                if rows.is_empty() {
                    continue;
                }
                let count = rows.len() as i64;
                for (acc, input) in group.accumulators.iter_mut().zip(&inputs) {
                    let values = apply_filter(&input.slice(rows.start, rows.len()))?;
                    if is_retract {
                        acc.retract_batch(&values)?;
                    } else {
                        acc.update_batch(&values)?;
                    }
                }
                group.count += if is_retract { -count } else { count };
            }
            group.updated_ms = now;
            group.mark_changed(g, &mut self.dirty);
            if group.count == 0 {
                // Every row retracted (or none applied): drop the group, as Flink does.
                emptied.push(g);
            }
            new_values.clear();
            if group.count > 0 {
                for a in group.accumulators.iter_mut() {
                    new_values.push(a.evaluate()?);
                }
            }
            match (group.emitted.take(), group.count > 0) {
                (None, true) => {
                    kinds.push(RowKind::Insert as i8);
                    out_groups.push(g);
                    out_values.push(new_values.clone());
                    group.emitted = Some(new_values.clone());
                }
                (Some(old), true) if old == new_values => group.emitted = Some(old),
                (Some(old), true) => {
                    kinds.push(RowKind::UpdateBefore as i8);
                    out_groups.push(g);
                    out_values.push(old);
                    kinds.push(RowKind::UpdateAfter as i8);
                    out_groups.push(g);
                    out_values.push(new_values.clone());
                    group.emitted = Some(new_values.clone());
                }
                (Some(old), false) => {
                    kinds.push(RowKind::Delete as i8);
                    out_groups.push(g);
                    out_values.push(old);
                }
                (None, false) => {}
            }
        }
        let output = if kinds.is_empty() {
            None
        } else {
            Some(self.output_batch(&out_groups, &out_values, kinds)?)
        };
        for g in emptied {
            self.remove_group(g);
        }
        if let Some(batch) = output {
            out.emit(batch);
        }
        Ok(())
    }
}

impl UpdatingAggregate {
    /// The changelog rows for groups `groups` with `values` and row kinds `kinds`.
    fn output_batch(
        &self,
        groups: &[u32],
        values: &[Vec<ScalarValue>],
        kinds: Vec<i8>,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = if self.config.keys.is_empty() {
            Vec::new()
        } else {
            let parser = self.converter.parser();
            let rows: Vec<_> = groups.iter().map(|g| parser.parse(&self.group(*g).key)).collect();
            self.converter.convert_rows(rows)?
        };
        for a in 0..self.config.aggregates.len() {
            columns.push(ScalarValue::iter_to_array(values.iter().map(|v| v[a].clone()))?);
        }
        changelog_batch(&self.config.output_schema, columns, kinds)
    }
}

/// The changelog batch of `columns` (keys, then results) with row kinds
/// `kinds`, in the plan's output schema.
pub(crate) fn changelog_batch(
    output_schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    kinds: Vec<i8>,
) -> Result<RecordBatch> {
    let schema = with_op_column(output_schema);
    let mut columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| cast_to(c, f.data_type()))
        .collect::<Result<Vec<_>>>()?;
    columns.push(Arc::new(Int8Array::from(kinds)));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The groups a batch touches, in order of first touch, and where each
/// one's rows are in `order`: its accumulating rows at `adds[slot]`, then
/// its retracting rows at `retracts[slot]`, each in batch order.
struct Slots {
    groups: Vec<u32>,
    adds: Vec<Range<usize>>,
    retracts: Vec<Range<usize>>,
    /// Row indices of the batch, grouped by slot (ignored rows left out).
    order: Vec<u32>,
}

impl Slots {
    /// Groups the rows of groups `ids` (`retract[i]`: row `i` retracts),
    /// ignoring the retractions of a group in `created` (it had no state)
    /// that come before its first accumulating row.
    fn of(ids: &[u32], retract: Option<&[bool]>, created: &HashSet<u32>) -> Slots {
        let retracts = |row: usize| retract.is_some_and(|r| r[row]);
        let mut slot_of: HashMap<u32, u32> = HashMap::with_capacity(ids.len().min(1024));
        let mut groups: Vec<u32> = Vec::new();
        // Per slot: accumulating rows (-1 until the first one, for a created
        // group: it has no state to retract from), retracting rows.
        let mut counts: Vec<(i64, usize)> = Vec::new();
        // The slot of each row that counts.
        let mut row_slots: Vec<Option<u32>> = Vec::with_capacity(ids.len());
        for (row, &g) in ids.iter().enumerate() {
            let slot = *slot_of.entry(g).or_insert_with(|| {
                groups.push(g);
                counts.push((if created.contains(&g) { -1 } else { 0 }, 0));
                (groups.len() - 1) as u32
            });
            let c = &mut counts[slot as usize];
            if retracts(row) {
                if c.0 < 0 {
                    row_slots.push(None);
                    continue;
                }
                c.1 += 1;
            } else {
                c.0 = c.0.max(0) + 1;
            }
            row_slots.push(Some(slot));
        }
        let (mut adds, mut retract_ranges) =
            (Vec::with_capacity(groups.len()), Vec::with_capacity(groups.len()));
        let mut at = 0usize;
        for &(a, r) in &counts {
            let a = a.max(0) as usize;
            adds.push(at..at + a);
            retract_ranges.push(at + a..at + a + r);
            at += a + r;
        }
        let mut next: Vec<(usize, usize)> = adds
            .iter()
            .zip(&retract_ranges)
            .map(|(a, r)| (a.start, r.start))
            .collect();
        let mut order = vec![0u32; at];
        for (row, slot) in row_slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let n = &mut next[*slot as usize];
            let pos = if retracts(row) { &mut n.1 } else { &mut n.0 };
            order[*pos] = row as u32;
            *pos += 1;
        }
        Slots {
            groups,
            adds,
            retracts: retract_ranges,
            order,
        }
    }
}

/// Applies an aggregate's FILTER to its inputs (row accumulators take no filter).
fn apply_filter(input: &AggregateInput) -> Result<Vec<ArrayRef>> {
    match &input.filter {
        None => Ok(input.values.clone()),
        Some(f) => {
            let f = super::aggregates::nulls_as_false(f);
            input
                .values
                .iter()
                .map(|v| arrow::compute::filter(v.as_ref(), &f).map_err(DataFusionError::from))
                .collect()
        }
    }
}

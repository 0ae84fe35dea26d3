//! Non-windowed `GROUP BY`: an updating result, as a changelog.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, Int64Array, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::common::{DataFusionError, HashMap, HashSet, Result, ScalarValue, plan_err};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use super::aggregates::{AggregateInput, AggregateSpec, evaluate_exprs, evaluate_inputs};
use crate::changelog::{RowKind, ops_of, with_op_column};
use crate::key_group::key_groups_of;
use crate::message::Barrier;
use crate::operator::{Operator, OperatorContext, Output, processing_time_ms};
use crate::state::{BatchState, KeyedState, OperatorSnapshot, StateInit};

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
        Ok(())
    }
}

struct Group {
    /// The key's Arrow row encoding (empty without keys), shared with the
    /// index.
    key: Arc<[u8]>,
    /// The key group of the key.
    key_group: usize,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Accumulated rows minus retracted rows.
    count: i64,
    /// The aggregate values last emitted, if the group is in the result.
    emitted: Option<Vec<ScalarValue>>,
    /// Processing time of the last update, in ms since the epoch (for the
    /// state TTL).
    updated_ms: i64,
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
/// Checkpoints: the groups of a key group are written together, as one batch
/// per key group ([`BatchState::write_key_group`]): key columns, `count`,
/// last update time, each accumulator's `state()` columns, the values last
/// emitted (one nullable column per aggregate) and an `emitted` flag. Only
/// the key groups touched since the last barrier are rewritten. Since
/// `Accumulator::state` may consume the accumulator, the groups written are
/// rebuilt by merging that state into fresh accumulators, as on restore.
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
    /// Key groups whose groups changed since the last snapshot.
    dirty: BTreeSet<usize>,
    state: Option<KeyedState>,
    stored: BatchState,
    max_parallelism: usize,
    ttl_ms: Option<i64>,
    /// When expired groups are next swept (ms since the epoch).
    next_sweep_ms: i64,
}

/// The keyed-state namespace of the groups (one batch per key group).
const GROUPS_NAMESPACE: &[u8] = b"";

/// The state-batch columns before the accumulator states: `count`, `updated_ms`.
const FIXED_COLUMNS: usize = 2;

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
            config,
            index: HashMap::new(),
            groups: Vec::new(),
            free: Vec::new(),
            dirty: BTreeSet::new(),
            state: None,
            stored: BatchState::new(1),
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
            ttl_ms: None,
            next_sweep_ms: 0,
        })
    }

    fn configure(&mut self, ctx: &OperatorContext) {
        self.max_parallelism = ctx.max_parallelism;
        self.ttl_ms = ctx.state_ttl_ms();
    }

    fn group(&self, id: u32) -> &Group {
        self.groups[id as usize].as_ref().expect("a live group id")
    }

    fn group_mut(&mut self, id: u32) -> &mut Group {
        self.groups[id as usize].as_mut().expect("a live group id")
    }

    fn is_expired(&self, id: u32, now: i64) -> bool {
        self.ttl_ms
            .is_some_and(|ttl| now - self.group(id).updated_ms > ttl)
    }

    fn fresh_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.config.aggregates.iter().map(|a| a.accumulator()).collect()
    }

    /// Adds a group and marks its key group dirty.
    fn insert_group(&mut self, group: Group) -> u32 {
        let (key, kg) = (group.key.clone(), group.key_group);
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
        self.dirty.insert(kg);
        id
    }

    /// Drops a group (its state is deleted at the next snapshot).
    fn remove_group(&mut self, id: u32) {
        let group = self.groups[id as usize].take().expect("a live group id");
        self.index.remove(&group.key);
        self.dirty.insert(group.key_group);
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
                        key_groups = Some(key_groups_of(keys, n, self.max_parallelism)?);
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
        let accumulators = self.fresh_accumulators()?;
        Ok(self.insert_group(Group {
            key,
            key_group,
            accumulators,
            count: 0,
            emitted: None,
            updated_ms: now,
        }))
    }

    /// The state of groups `ids` as one batch: key columns, `count`,
    /// `updated_ms`, each aggregate's state columns, each aggregate's last
    /// emitted value, `emitted`. Takes the accumulators' state: rebuild them
    /// after (with [`Self::groups_from_state`]).
    fn state_batch(&mut self, ids: &[u32]) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = if self.config.keys.is_empty() {
            Vec::new()
        } else {
            let parser = self.converter.parser();
            let rows: Vec<_> = ids.iter().map(|id| parser.parse(&self.group(*id).key)).collect();
            self.converter.convert_rows(rows)?
        };
        columns.push(Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|id| self.group(*id).count),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|id| self.group(*id).updated_ms),
        )));
        let specs = self.config.aggregates.clone();
        for (a, spec) in specs.iter().enumerate() {
            let fields = spec.function.state_fields()?;
            let mut per_field: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(ids.len()); fields.len()];
            for id in ids {
                let state = self.group_mut(*id).accumulators[a].state()?;
                if state.len() != fields.len() {
                    return Err(DataFusionError::Internal(format!(
                        "aggregate {} has {} state values, expected {}",
                        spec.name(),
                        state.len(),
                        fields.len()
                    )));
                }
                for (column, v) in per_field.iter_mut().zip(state) {
                    column.push(v);
                }
            }
            for (values, field) in per_field.into_iter().zip(&fields) {
                columns.push(scalars_to_array(values, field.data_type())?);
            }
        }
        for (a, spec) in specs.iter().enumerate() {
            let values: Vec<Option<ScalarValue>> = ids
                .iter()
                .map(|id| self.group(*id).emitted.as_ref().map(|v| v[a].clone()))
                .collect();
            let data_type = match values.iter().flatten().next() {
                Some(v) => v.data_type(),
                None => spec.function.field().data_type().clone(),
            };
            let null = ScalarValue::try_from(&data_type)?;
            let values = values
                .into_iter()
                .map(|v| v.unwrap_or_else(|| null.clone()))
                .collect();
            columns.push(scalars_to_array(values, &data_type)?);
        }
        columns.push(Arc::new(BooleanArray::from_iter(
            ids.iter().map(|id| Some(self.group(*id).emitted.is_some())),
        )));
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(ids.len()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }

    /// Decodes a batch made by [`Self::state_batch`]: per row, its key (row
    /// encoding), key group and group.
    fn groups_from_state(&self, batch: &RecordBatch) -> Result<Vec<Group>> {
        let corrupt = |what: &str| {
            DataFusionError::Execution(format!(
                "group aggregate state does not match the query's keys and aggregates: {what}"
            ))
        };
        let n = batch.num_rows();
        let k = self.config.keys.len();
        let mut widths = Vec::with_capacity(self.config.aggregates.len());
        for spec in &self.config.aggregates {
            widths.push(spec.function.state_fields()?.len());
        }
        let a = self.config.aggregates.len();
        let expected = k + FIXED_COLUMNS + widths.iter().sum::<usize>() + a + 1;
        if batch.num_columns() != expected {
            return Err(corrupt(&format!(
                "{} columns, expected {expected}",
                batch.num_columns()
            )));
        }
        let cols = batch.columns();
        let keys = &cols[..k];
        let key_rows = if k == 0 {
            None
        } else {
            Some(self.converter.convert_columns(keys)?)
        };
        let key_groups = key_groups_of(keys, n, self.max_parallelism)?;
        let int64 = |c: &ArrayRef| {
            c.as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| corrupt("bad count or time column"))
        };
        let counts = int64(&cols[k])?;
        let updated = int64(&cols[k + 1])?;
        let mut state_cols = Vec::with_capacity(a);
        let mut col = k + FIXED_COLUMNS;
        for w in &widths {
            state_cols.push(&cols[col..col + w]);
            col += w;
        }
        let emitted_values = &cols[col..col + a];
        let emitted = cols[col + a]
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| corrupt("bad emitted column"))?;
        let mut groups = Vec::with_capacity(n);
        for (row, &key_group) in key_groups.iter().enumerate() {
            let mut accumulators = self.fresh_accumulators()?;
            for (acc, state) in accumulators.iter_mut().zip(&state_cols) {
                let slices: Vec<ArrayRef> = state.iter().map(|c| c.slice(row, 1)).collect();
                acc.merge_batch(&slices)?;
            }
            let emitted = if emitted.value(row) {
                Some(
                    emitted_values
                        .iter()
                        .map(|c| ScalarValue::try_from_array(c, row))
                        .collect::<Result<Vec<_>>>()?,
                )
            } else {
                None
            };
            groups.push(Group {
                key: key_rows
                    .as_ref()
                    .map_or_else(|| Arc::new([]) as Arc<[u8]>, |r| r.row(row).as_ref().into()),
                key_group,
                accumulators,
                count: counts.value(row),
                emitted,
                updated_ms: updated.value(row),
            });
        }
        Ok(groups)
    }

    /// Writes the groups of the dirty key groups to keyed state.
    fn write_dirty(&mut self, state: &mut KeyedState) -> Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        // The groups of each dirty key group, in id order.
        let mut members: BTreeMap<usize, Vec<u32>> = dirty.iter().map(|&kg| (kg, Vec::new())).collect();
        for (id, group) in self.groups.iter().enumerate() {
            if let Some(g) = group
                && let Some(ids) = members.get_mut(&g.key_group)
            {
                ids.push(id as u32);
            }
        }
        for (kg, ids) in members {
            if ids.is_empty() {
                let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
                self.stored
                    .write_key_group(state.backend(), GROUPS_NAMESPACE, kg, &empty)?;
                continue;
            }
            let batch = self.state_batch(&ids)?;
            self.stored
                .write_key_group(state.backend(), GROUPS_NAMESPACE, kg, &batch)?;
            // `state()` may have consumed the accumulators: rebuild them.
            for (id, restored) in ids.iter().zip(self.groups_from_state(&batch)?) {
                self.group_mut(*id).accumulators = restored.accumulators;
            }
        }
        Ok(())
    }
}

/// An array of `values` (of type `data_type`, or of their own common type).
fn scalars_to_array(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(arrow::array::new_empty_array(data_type));
    }
    match ScalarValue::iter_to_array(values.iter().cloned()) {
        Ok(array) => Ok(array),
        // Mixed types (e.g. an untyped NULL among typed values): cast to the declared type.
        Err(_) => ScalarValue::iter_to_array(
            values
                .into_iter()
                .map(|v| {
                    if v.is_null() {
                        ScalarValue::try_from(data_type)
                    } else {
                        v.cast_to(data_type)
                    }
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    }
}

#[async_trait]
impl Operator for UpdatingAggregate {
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut init: StateInit) -> Result<()> {
        self.configure(ctx);
        let state = init.keyed_state().await?;
        if init.is_restored() {
            for (_, batch) in self.stored.read_all(state.backend_ref())? {
                for group in self.groups_from_state(&batch)? {
                    self.insert_group(group);
                }
            }
            // What was just read is what the state holds.
            self.dirty.clear();
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
        let pending = self
            .write_dirty(&mut state)
            .and_then(|()| state.snapshot(barrier));
        self.state = Some(state);
        Ok(OperatorSnapshot::keyed(pending?))
    }

    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let now = processing_time_ms();
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
            self.dirty.insert(group.key_group);
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
        columns.push(Arc::new(Int8Array::from(kinds)));
        let schema = with_op_column(&self.config.output_schema);
        // Aggregate result types may differ in nullability only; cast to the plan's schema.
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    arrow::compute::cast(&c, f.data_type()).map_err(DataFusionError::from)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
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

//! The updating aggregate's in-memory layout: a `GROUP BY` over an
//! append-only input (no TTL) under a backend that holds state in memory
//! keeps its groups as columns ([`GroupChunks`]), updates them a batch at a
//! time with DataFusion's vectorized `GroupsAccumulator`s, and checkpoints
//! the groups changed since the last barrier as one batch-state chunk.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{interleave, take};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::row::RowConverter;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregates::{AggregateSpec, cast_to, evaluate_exprs, evaluate_inputs, nulls_as_false};
use super::group_chunks::GroupChunks;
use super::group_state::{GroupCodec, corrupt};
use super::updating_aggregate::{UpdatingAggregateConfig, changelog_batch};
use crate::changelog::RowKind;
use crate::state::{BackendBatches, KeyedState};

/// The batch-state namespaces of this layout: this tag, then the chunk's
/// number (big-endian `u32`, so namespace order is chunk order).
pub const TAG: u8 = b'G';

/// The tag of this layout's namespaces when groups are placed by a subset of
/// their keys (see `UpdatingAggregateConfig::group_tag`).
pub const PARTITIONED_TAG: u8 = b'P';

/// The namespace tag of `config`'s chunks.
pub fn chunk_tag(config: &UpdatingAggregateConfig) -> u8 {
    if config.partition_keys.is_some() {
        PARTITIONED_TAG
    } else {
        TAG
    }
}

fn chunk_namespace(tag: u8, chunk: u32) -> [u8; 5] {
    let mut ns = [tag, 0, 0, 0, 0];
    ns[1..].copy_from_slice(&chunk.to_be_bytes());
    ns
}

/// The chunk number of a namespace of this layout, written by an aggregate
/// that places its groups as `config` does.
pub fn chunk_of_namespace(config: &UpdatingAggregateConfig, ns: &[u8]) -> Result<u32> {
    match ns {
        [tag, chunk @ ..] if chunk.len() == 4 && (*tag == TAG || *tag == PARTITIONED_TAG) => {
            if *tag != chunk_tag(config) {
                return Err(config.other_placement());
            }
            Ok(u32::from_be_bytes(chunk.try_into().expect("4 bytes")))
        }
        _ => Err(DataFusionError::Execution(
            "corrupt group aggregate state: a batch-state namespace of another operator".into(),
        )),
    }
}

/// The schema of a group's row in this layout and in its checkpoint chunks:
/// the key columns, then [`GroupCodec`]'s value columns (the layout of the
/// row layout's entries), all nullable.
pub fn chunk_schema(key_schema: &Schema, codec: &GroupCodec) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = key_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.extend(codec.value_fields()?);
    Ok(Arc::new(Schema::new(fields)))
}

/// Garbage rows the checkpoint chunks may hold (rows superseded by later
/// chunks) beyond the live groups before a checkpoint writes every group as
/// one chunk and deletes the others.
const CHECKPOINT_SLACK_ROWS: usize = 65536;

/// The groups of an updating aggregate over an append-only input, in memory.
///
/// # Lifecycle
///
/// Created empty or [restored](Self::restore) in `initialize_state`; each
/// input batch [updates the groups it touches](Self::process) and yields the
/// changelog (`+I` for a new group, `-U`/`+U` for a changed result); at a
/// checkpoint barrier [`write_changes`](Self::write_changes) hands the rows
/// of the groups changed since the last barrier to the batch state as the
/// next chunk, which the snapshot's asynchronous part writes once.
///
/// # Invariants
///
/// Groups are numbered in order of first appearance (DataFusion's
/// `GroupValues`; the one group of an aggregate without keys is 0), and
/// every group has a row in `chunks`: its key, the rows it counted, its
/// accumulators' state (DataFusion's state fields, as the row layout
/// stores them), and its current result, which is also the result last
/// emitted (an append-only input never empties a group, and every change of
/// result is emitted). Restored, the chunks of batch state, applied in
/// order, give every group's row at the last checkpoint.
pub struct InMemoryGroups {
    config: Arc<UpdatingAggregateConfig>,
    /// The group of each key; `None` without keys.
    group_values: Option<Box<dyn GroupValues>>,
    chunks: GroupChunks,
    /// Scratch: the group of each row of a batch.
    group_of_row: Vec<usize>,
    /// Per group, its slot among the groups of the batch being processed
    /// (`u32::MAX` outside [`process`](Self::process)).
    slot_of: Vec<u32>,
    /// Per group, whether it changed since the last checkpoint.
    dirty: Vec<bool>,
    /// The groups with `dirty` set.
    changed: Vec<u32>,
    /// Rows in the checkpoint chunks of batch state.
    written_rows: usize,
    next_chunk: u32,
    max_parallelism: usize,
    cols: Columns,
    /// Per aggregate, whether its one state column is its result (see
    /// [`state_is_result`]): then no second accumulator evaluates it.
    state_is_result: Vec<bool>,
}

/// Whether the result of `spec` is its state: DataFusion's `min`, `max`,
/// `sum` and `count` (not DISTINCT) keep one state column holding the
/// result, of the result's type. Checked against the DataFusion in use by
/// `append_only_group_aggregate_in_columns_matches_the_row_layout`, whose
/// row layout evaluates every aggregate.
fn state_is_result(spec: &AggregateSpec) -> Result<bool> {
    let fields = spec.function.state_fields()?;
    Ok(!spec.function.is_distinct()
        && matches!(spec.function.fun().name(), "min" | "max" | "sum" | "count")
        && fields.len() == 1
        && fields[0].data_type() == spec.function.field().data_type())
}

/// Where the columns of a group's row are: the key columns, then
/// [`GroupCodec`]'s value columns.
struct Columns {
    keys: usize,
    /// Per aggregate, its state columns.
    states: Vec<std::ops::Range<usize>>,
    /// The first emitted-value (result) column.
    values: usize,
}

impl Columns {
    fn new(keys: usize, aggregates: usize, codec: &GroupCodec) -> Self {
        let shift = |r: std::ops::Range<usize>| r.start + keys..r.end + keys;
        Columns {
            keys,
            states: (0..aggregates).map(|a| shift(codec.state_range(a))).collect(),
            values: keys + codec.emitted_value_column(0),
        }
    }

    fn count(&self) -> usize {
        self.keys + GroupCodec::COUNT_COLUMN
    }

    fn state(&self, a: usize) -> std::ops::Range<usize> {
        self.states[a].clone()
    }
}

impl InMemoryGroups {
    pub fn new(
        config: Arc<UpdatingAggregateConfig>,
        codec: &GroupCodec,
        max_parallelism: usize,
    ) -> Result<Self> {
        let group_values = if config.keys.is_empty() {
            None
        } else {
            Some(new_group_values(config.key_schema.clone(), &GroupOrdering::None)?)
        };
        let chunks = GroupChunks::new(chunk_schema(&config.key_schema, codec)?);
        Ok(InMemoryGroups {
            cols: Columns::new(config.keys.len(), config.aggregates.len(), codec),
            state_is_result: config
                .aggregates
                .iter()
                .map(state_is_result)
                .collect::<Result<_>>()?,
            config,
            group_values,
            chunks,
            group_of_row: Vec::new(),
            slot_of: Vec::new(),
            dirty: Vec::new(),
            changed: Vec::new(),
            written_rows: 0,
            next_chunk: 0,
            max_parallelism,
        })
    }

    /// The groups a restored `state` holds: the chunks of this layout, and
    /// groups of the row layout (entries under `UpdatingAggregateConfig::group_tag`, written under
    /// another backend or with a TTL, and batches of the earliest layout),
    /// which move into this one: they are deleted from the backend and
    /// written as batch state at the next checkpoint.
    pub fn restore(
        config: Arc<UpdatingAggregateConfig>,
        codec: &GroupCodec,
        keys: &RowConverter,
        key_group_batches: &mut BackendBatches,
        max_parallelism: usize,
        state: &mut KeyedState,
    ) -> Result<Self> {
        let mut groups = InMemoryGroups::new(config, codec, max_parallelism)?;
        let mut restored = Vec::new();
        for (ns, batches) in state.batches().batches_of_each() {
            let chunk = chunk_of_namespace(&groups.config, ns)?;
            groups.next_chunk = groups.next_chunk.max(chunk + 1);
            restored.extend(batches);
        }
        for batch in restored {
            groups.written_rows += batch.num_rows();
            groups.absorb(batch, false)?;
        }
        let backend = state.backend();
        let earliest = key_group_batches.read_all(backend)?;
        groups.config.check_placement(backend, !earliest.is_empty())?;
        for (_, _, batch) in earliest {
            groups.absorb(batch, true)?;
        }
        key_group_batches.delete_all(backend)?;
        let mut entries: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        backend.scan_prefix(&[groups.config.group_tag()], &mut |kg, key, value| {
            entries.push((kg, key.to_vec(), value.to_vec()));
            Ok(())
        })?;
        for part in entries.chunks(4096) {
            let mut columns = if groups.config.keys.is_empty() {
                Vec::new()
            } else {
                let parser = keys.parser();
                keys.convert_rows(part.iter().map(|(_, k, _)| parser.parse(&k[1..])))?
            };
            columns.extend(codec.decode_values(part.iter().map(|(_, _, v)| v.as_slice()))?);
            let batch = RecordBatch::try_new(groups.chunks.schema().clone(), columns)?;
            groups.absorb(batch, true)?;
            for (kg, key, value) in part {
                backend.delete_known(*kg, key, value.len())?;
            }
        }
        Ok(groups)
    }

    /// Makes the rows of `batch` (in the chunk schema) the rows of their
    /// groups; `changed`: to be written at the next checkpoint.
    fn absorb(&mut self, batch: RecordBatch, changed: bool) -> Result<()> {
        let schema = self.chunks.schema().clone();
        if batch.num_columns() != schema.fields().len() {
            return Err(corrupt(&format!(
                "{} columns, expected {}",
                batch.num_columns(),
                schema.fields().len()
            )));
        }
        let batch = RecordBatch::try_new(schema, batch.columns().to_vec())?;
        let groups = self.intern(&batch.columns()[..self.config.keys.len()], batch.num_rows())?;
        if changed {
            for &g in &groups {
                self.mark_changed(g);
            }
        }
        self.chunks.push(groups, batch)
    }

    /// The group of every row with key columns `keys`, into `group_of_row`;
    /// returns them as `u32`.
    fn intern(&mut self, keys: &[ArrayRef], n: usize) -> Result<Vec<u32>> {
        self.group_of_row.clear();
        let count = match &mut self.group_values {
            Some(values) => {
                values.intern(keys, &mut self.group_of_row)?;
                values.len()
            }
            None => {
                self.group_of_row.resize(n, 0);
                usize::from(n > 0)
            }
        };
        if count > u32::MAX as usize {
            return Err(DataFusionError::ResourcesExhausted(
                "a group aggregate subtask has more than 2^32 groups".into(),
            ));
        }
        if self.slot_of.len() < count {
            self.slot_of.resize(count, u32::MAX);
            self.dirty.resize(count, false);
        }
        Ok(self.group_of_row.iter().map(|&g| g as u32).collect())
    }

    fn mark_changed(&mut self, group: u32) {
        let dirty = &mut self.dirty[group as usize];
        if !*dirty {
            *dirty = true;
            self.changed.push(group);
        }
    }

    /// Updates the groups of `batch`'s rows at processing time `now`;
    /// returns the changelog of their results (keys, results, row kind), if
    /// any changed.
    pub fn process(&mut self, batch: &RecordBatch, now: i64) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let config = self.config.clone();
        let keys = evaluate_exprs(&config.keys, batch)?;
        let inputs = evaluate_inputs(&config.aggregates, batch)?;
        let groups = self.intern(&keys, n)?;

        // The groups of the batch as slots 0..k, in order of first touch.
        let mut touched: Vec<u32> = Vec::with_capacity(n);
        let mut first_rows: Vec<u32> = Vec::with_capacity(n);
        let mut rows_per_slot: Vec<i64> = Vec::with_capacity(n);
        let mut slot_of_row: Vec<usize> = Vec::with_capacity(n);
        for (row, &g) in groups.iter().enumerate() {
            let slot = &mut self.slot_of[g as usize];
            if *slot == u32::MAX {
                *slot = touched.len() as u32;
                touched.push(g);
                first_rows.push(row as u32);
                rows_per_slot.push(0);
            }
            rows_per_slot[*slot as usize] += 1;
            slot_of_row.push(*slot as usize);
        }
        for &g in &touched {
            self.slot_of[g as usize] = u32::MAX;
        }
        let k = touched.len();

        // The accumulators number the groups with state first (0..e), then
        // the new ones: DataFusion's accumulators take a call in which every
        // group up to `total_num_groups` gets no NULL and no filtered value
        // as "every group has seen a value", so a merge of the old states
        // must cover all its groups, and the new groups come with rows.
        let is_old: Vec<bool> = touched.iter().map(|&g| self.chunks.contains(g)).collect();
        let e = is_old.iter().filter(|&&o| o).count();
        let mut index_of_slot = vec![0usize; k];
        let (mut next_old, mut next_new) = (0, e);
        for (slot, &old) in is_old.iter().enumerate() {
            let next = if old { &mut next_old } else { &mut next_new };
            index_of_slot[slot] = *next;
            *next += 1;
        }
        let mut groups_by_index = vec![0u32; k];
        let mut first_rows_by_index = vec![0u32; k];
        let mut counts = vec![0i64; k];
        for slot in 0..k {
            let i = index_of_slot[slot];
            groups_by_index[i] = touched[slot];
            first_rows_by_index[i] = first_rows[slot];
            counts[i] = rows_per_slot[slot];
        }
        let index_of_row: Vec<usize> = slot_of_row.iter().map(|&s| index_of_slot[s]).collect();
        let old_groups = &groups_by_index[..e];
        let cols = &self.cols;
        let aggregates = config.aggregates.len();
        let schema = self.chunks.schema().clone();

        // Each aggregate's new state and result per group: the old state
        // merged, the rows accumulated, vectorized.
        let mut states: Vec<ArrayRef> = Vec::new();
        let mut results: Vec<ArrayRef> = Vec::with_capacity(aggregates);
        let old_indices: Vec<usize> = (0..e).collect();
        let all_indices: Vec<usize> = (0..k).collect();
        for (a, (spec, input)) in config.aggregates.iter().zip(&inputs).enumerate() {
            let mut acc = spec.groups_accumulator()?;
            if e > 0 {
                let old = self
                    .chunks
                    .gather(old_groups, &cols.state(a).collect::<Vec<_>>())?;
                acc.merge_batch(&old, &old_indices, e)?;
            }
            let filter = input.filter.as_ref().map(nulls_as_false);
            acc.update_batch(&input.values, &index_of_row, filter.as_ref(), k)?;
            let state = acc.state(EmitTo::All)?;
            let result = if self.state_is_result[a] {
                state[0].clone()
            } else {
                let mut evaluator = spec.groups_accumulator()?;
                evaluator.merge_batch(&state, &all_indices, k)?;
                evaluator.evaluate(EmitTo::All)?
            };
            for (i, column) in state.into_iter().enumerate() {
                states.push(cast_to(
                    column,
                    schema.field(cols.state(a).start + i).data_type(),
                )?);
            }
            results.push(cast_to(result, schema.field(cols.values + a).data_type())?);
        }

        // The changelog, in order of first touch: +I for new groups, -U/+U
        // for changed results.
        let mut old_results: Vec<ArrayRef> = Vec::new();
        let mut changed = vec![false; e];
        if e > 0 {
            let mut wanted = vec![cols.count()];
            wanted.extend((0..aggregates).map(|a| cols.values + a));
            let mut old = self.chunks.gather(old_groups, &wanted)?;
            old_results = old.split_off(1);
            let old_counts = old[0]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Internal("a group's count is not Int64".into()))?;
            for (count, old) in counts.iter_mut().zip(old_counts.values()) {
                *count += old;
            }
            for (old, new) in old_results.iter().zip(&results) {
                let differs = arrow::compute::kernels::cmp::distinct(old, &new.slice(0, e))?;
                for (c, d) in changed.iter_mut().zip(differs.values().iter()) {
                    *c |= d;
                }
            }
        }
        let mut kinds: Vec<i8> = Vec::new();
        let mut out_indices: Vec<u32> = Vec::new();
        let mut sources: Vec<(usize, usize)> = Vec::new();
        for &i in &index_of_slot {
            if i >= e {
                kinds.push(RowKind::Insert as i8);
                out_indices.push(i as u32);
                sources.push((1, i));
            } else if changed[i] {
                kinds.extend([RowKind::UpdateBefore as i8, RowKind::UpdateAfter as i8]);
                out_indices.extend([i as u32, i as u32]);
                sources.extend([(0, i), (1, i)]);
            }
        }

        let group_keys: Vec<ArrayRef> = {
            let rows = UInt32Array::from(first_rows_by_index);
            keys.iter()
                .map(|c| take(c.as_ref(), &rows, None).map_err(DataFusionError::from))
                .collect::<Result<_>>()?
        };
        let output = if kinds.is_empty() {
            None
        } else {
            let at = UInt32Array::from(out_indices);
            let mut columns: Vec<ArrayRef> = group_keys
                .iter()
                .map(|c| take(c.as_ref(), &at, None).map_err(DataFusionError::from))
                .collect::<Result<_>>()?;
            for (a, new) in results.iter().enumerate() {
                let old = old_results.get(a).cloned().unwrap_or_else(|| new.slice(0, 0));
                columns.push(interleave(&[old.as_ref(), new.as_ref()], &sources)?);
            }
            Some(changelog_batch(&config.output_schema, columns, kinds)?)
        };

        // The groups' new rows.
        let mut columns = group_keys;
        columns.push(Arc::new(Int64Array::from(counts)));
        columns.push(Arc::new(Int64Array::from_value(now, k)));
        columns.extend(states);
        columns.extend(results);
        columns.push(Arc::new(BooleanArray::from(vec![true; k])));
        let rows = RecordBatch::try_new(schema, columns)?;
        for &g in &touched {
            self.mark_changed(g);
        }
        self.chunks.push(groups_by_index, rows)?;
        Ok(output)
    }

    /// Hands the rows of the groups changed since the last call to `state`'s
    /// batch state as the next chunk; when the chunks written would hold
    /// more superseded rows than live ones (plus
    /// [`CHECKPOINT_SLACK_ROWS`]), writes every group as one chunk instead
    /// and deletes the others.
    pub fn write_changes(&mut self, state: &mut KeyedState) -> Result<()> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let changed = std::mem::take(&mut self.changed);
        for &g in &changed {
            self.dirty[g as usize] = false;
        }
        let live = self.chunks.live();
        let full = self.written_rows + changed.len() > 2 * live + CHECKPOINT_SLACK_ROWS;
        let groups = if full { self.chunks.groups() } else { changed };
        let batch = self.chunks.gather_batch(&groups)?;
        let n = batch.num_rows();
        let key_groups = if self.config.keys.is_empty() {
            vec![0; n]
        } else {
            self.config.key_groups(
                &batch.columns()[..self.config.keys.len()],
                n,
                self.max_parallelism,
            )?
        };
        let tag = chunk_tag(&self.config);
        if full {
            state.batches().delete_prefix(&[tag]);
            self.written_rows = 0;
        }
        state
            .batches()
            .write(&chunk_namespace(tag, self.next_chunk), &[batch], &[key_groups])?;
        self.written_rows += n;
        self.next_chunk += 1;
        Ok(())
    }
}

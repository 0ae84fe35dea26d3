//! Window join: two streams carrying the same windows (`window_start`,
//! `window_end`), joined per window on equality keys when the watermark of
//! both inputs passes the window's end, as Flink's window join.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use async_trait::async_trait;
use datafusion::common::{DataFusionError, HashMap, Result};
use datafusion::physical_expr::PhysicalExpr;

use super::aggregates::evaluate_exprs;
use super::join::{Side, null_batch};
use super::select_rows::{filter_rows, take_rows};
use crate::key_group::key_groups_of_batches;
use crate::message::{Barrier, EventTime};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::{KeyedState, OperatorSnapshot, StateInit, time_key, time_of_key};
use crate::watermark::to_event_time;

/// Which rows of a window join are kept without a match.
pub use super::join::JoinType as WindowJoinType;

/// The plan of a window join.
#[derive(Debug)]
pub struct WindowJoinConfig {
    pub join_type: WindowJoinType,
    /// Equality keys of the left input: `window_start` first, then the join
    /// keys proper (`left_keys[1..]`), which are what the inputs are
    /// hash-partitioned on.
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Equality keys of the right input, pairwise with `left_keys`.
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// `window_end` of each side.
    pub left_window_end: Arc<dyn PhysicalExpr>,
    pub right_window_end: Arc<dyn PhysicalExpr>,
    /// A non-equality condition over the joined row.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    /// Left columns then right columns.
    pub output_schema: SchemaRef,
}

/// The rows of one side of a window.
#[derive(Default)]
struct SideRows {
    batches: Vec<RecordBatch>,
    /// How many of the leading `batches` are in keyed state already.
    stored: usize,
    /// The number of the next chunk written to keyed state.
    next_chunk: u32,
}

impl WindowJoinConfig {
    /// The expressions a side is hash-partitioned on: its equality keys
    /// without the leading `window_start` (see [`WindowJoinConfig::left_keys`]).
    fn partition_keys(&self, side: Side) -> &[Arc<dyn PhysicalExpr>] {
        let keys = match side {
            Side::Left => &self.left_keys,
            Side::Right => &self.right_keys,
        };
        keys.get(1..).unwrap_or_default()
    }

    fn schema(&self, side: Side) -> &SchemaRef {
        match side {
            Side::Left => &self.left_schema,
            Side::Right => &self.right_schema,
        }
    }
}

impl SideRows {
    /// Stores the rows received since the last checkpoint as the next chunk
    /// of `side` of window `end` (the batches are shared, not copied).
    fn write_new(
        &mut self,
        config: &WindowJoinConfig,
        side: Side,
        end: EventTime,
        max_parallelism: usize,
        state: &mut KeyedState,
    ) -> Result<()> {
        let new = &self.batches[self.stored..];
        if new.is_empty() {
            return Ok(());
        }
        let key_groups = key_groups_of_batches(config.partition_keys(side), new, max_parallelism)?;
        state
            .batches()
            .write(&chunk_namespace(side, end, self.next_chunk), new, &key_groups)?;
        self.next_chunk += 1;
        self.stored = self.batches.len();
        Ok(())
    }
}

#[derive(Default)]
struct WindowBuffers {
    left: SideRows,
    right: SideRows,
}

impl WindowBuffers {
    fn side(&mut self, side: Side) -> &mut SideRows {
        match side {
            Side::Left => &mut self.left,
            Side::Right => &mut self.right,
        }
    }
}

/// A window join subtask.
///
/// State: the rows of each side per window end, until the watermark passes
/// the window's end (`window_end - 1`); then the window's rows are joined
/// with a hash join on the keys and dropped. Rows of a window that has
/// already been joined are late: dropped and counted.
///
/// Checkpoints: at a barrier, the rows each (window, side) received since the
/// last one become a new chunk of batch state (namespace: the side, the
/// window end and the chunk's number), which the snapshot writes once, off
/// the barrier's path; later checkpoints refer to it, so a checkpoint writes
/// only new rows however long a window stays open. Each row goes in the key group of
/// its join keys — the columns the inputs are hash-partitioned on,
/// `left_keys[1..]` / `right_keys[1..]` (without `window_start`) — so that a
/// rescale hands each row to the subtask its key is routed to. A joined
/// window's chunks are deleted. On restore the buffers are those rows.
pub struct WindowJoin {
    config: Arc<WindowJoinConfig>,
    windows: BTreeMap<EventTime, WindowBuffers>,
    watermark: Option<EventTime>,
    metrics: Option<Arc<OperatorMetrics>>,
    state: Option<KeyedState>,
    max_parallelism: usize,
}

/// The batch-state namespace prefix of one side of window `end`.
fn window_namespace(side: Side, end: EventTime) -> [u8; 9] {
    let mut ns = [0u8; 9];
    ns[0] = side as u8;
    ns[1..].copy_from_slice(&time_key(end));
    ns
}

/// The batch-state namespace of chunk `chunk` of one side of window `end`.
fn chunk_namespace(side: Side, end: EventTime, chunk: u32) -> [u8; 13] {
    let mut ns = [0u8; 13];
    ns[..9].copy_from_slice(&window_namespace(side, end));
    ns[9..].copy_from_slice(&chunk.to_be_bytes());
    ns
}

/// The side, window end and chunk of a namespace. A namespace without a
/// chunk number (written before chunks were) is chunk 0.
fn chunk_of_namespace(ns: &[u8]) -> Result<(Side, EventTime, u32)> {
    let corrupt = || DataFusionError::Execution("corrupt window join state: bad namespace".into());
    let chunk = match ns.len() {
        9 => 0,
        13 => u32::from_be_bytes(ns[9..].try_into().map_err(|_| corrupt())?),
        _ => return Err(corrupt()),
    };
    let side = match ns[0] {
        0 => Side::Left,
        1 => Side::Right,
        _ => return Err(corrupt()),
    };
    let end = time_of_key(&ns[1..9]).ok_or_else(corrupt)?;
    Ok((side, end, chunk))
}

impl WindowJoin {
    pub fn new(config: Arc<WindowJoinConfig>) -> Self {
        WindowJoin {
            config,
            windows: BTreeMap::new(),
            watermark: None,
            metrics: None,
            state: None,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
        }
    }

    /// Joins the rows of one window: a hash join whose table holds the
    /// smaller side (concatenated), probed by the other side batch by
    /// batch, so the larger side (often every row of the window) is never
    /// copied whole; only matched and padded rows are.
    fn join_window(&self, buffers: WindowBuffers) -> Result<Option<RecordBatch>> {
        let c = &self.config;
        let rows = |batches: &[RecordBatch]| batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        let (left_n, right_n) = (rows(&buffers.left.batches), rows(&buffers.right.batches));
        if left_n == 0 && right_n == 0 {
            return Ok(None);
        }
        // Both sides' keys are compared in the left keys' types.
        let key_types = c
            .left_keys
            .iter()
            .map(|k| k.data_type(&c.left_schema))
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(key_types.iter().map(|t| SortField::new(t.clone())).collect())?;
        let keys_of = |side: Side, batch: &RecordBatch| -> Result<(Rows, Option<NullBuffer>)> {
            let exprs = match side {
                Side::Left => &c.left_keys,
                Side::Right => &c.right_keys,
            };
            let mut keys = evaluate_exprs(exprs, batch)?;
            for (k, t) in keys.iter_mut().zip(&key_types) {
                if k.data_type() != t {
                    *k = cast(k, t)?;
                }
            }
            // A row with a NULL key matches nothing.
            let valid = keys.iter().fold(None, |acc: Option<NullBuffer>, k| {
                NullBuffer::union(acc.as_ref(), k.logical_nulls().as_ref())
            });
            Ok((converter.convert_columns(&keys)?, valid))
        };
        let is_valid = |valid: &Option<NullBuffer>, i: usize| valid.as_ref().is_none_or(|v| v.is_valid(i));

        let (build_side, build_batches, probe_batches) = if left_n <= right_n {
            (Side::Left, &buffers.left.batches, &buffers.right.batches)
        } else {
            (Side::Right, &buffers.right.batches, &buffers.left.batches)
        };
        let build_schema = c.schema(build_side);
        let build = concat_batches(build_schema, build_batches)?;
        let (build_rows, build_valid) = keys_of(build_side, &build)?;
        let mut table: HashMap<&[u8], Vec<u32>> = HashMap::with_capacity(build.num_rows());
        for i in 0..build.num_rows() {
            if is_valid(&build_valid, i) {
                table.entry(build_rows.row(i).data()).or_default().push(i as u32);
            }
        }
        let mut build_matched = vec![false; build.num_rows()];
        let probe_side = build_side.other();
        let keep_probe = match probe_side {
            Side::Left => matches!(c.join_type, WindowJoinType::Left | WindowJoinType::Full),
            Side::Right => matches!(c.join_type, WindowJoinType::Right | WindowJoinType::Full),
        };
        let keep_build = match build_side {
            Side::Left => matches!(c.join_type, WindowJoinType::Left | WindowJoinType::Full),
            Side::Right => matches!(c.join_type, WindowJoinType::Right | WindowJoinType::Full),
        };
        // (left, right) from (probe, build) rows.
        let pair = |probe: RecordBatch, build: RecordBatch| match probe_side {
            Side::Left => self.combine(probe, build),
            Side::Right => self.combine(build, probe),
        };
        let mut parts = Vec::new();
        for batch in probe_batches {
            let (probe_rows, probe_valid) = keys_of(probe_side, batch)?;
            let (mut pi, mut bi) = (Vec::new(), Vec::new());
            for i in 0..batch.num_rows() {
                if !is_valid(&probe_valid, i) {
                    continue;
                }
                if let Some(matches) = table.get(probe_rows.row(i).data()) {
                    for &b in matches {
                        pi.push(i as u32);
                        bi.push(b);
                    }
                }
            }
            let mut probe_matched = vec![false; batch.num_rows()];
            if !pi.is_empty() {
                let mut joined = pair(take_rows(batch, &pi)?, take_rows(&build, &bi)?)?;
                let mut mark = |k: usize| {
                    probe_matched[pi[k] as usize] = true;
                    build_matched[bi[k] as usize] = true;
                };
                if let Some(f) = &c.filter {
                    let mask = f.evaluate(&joined)?.into_array(joined.num_rows())?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| DataFusionError::Plan("a join condition must be a boolean".into()))?;
                    let mask = super::aggregates::nulls_as_false(mask);
                    for (k, keep) in mask.values().iter().enumerate() {
                        if keep {
                            mark(k);
                        }
                    }
                    joined = filter_rows(&joined, &mask)?;
                } else {
                    (0..pi.len()).for_each(&mut mark);
                }
                parts.push(joined);
            }
            if keep_probe {
                let idx = unmatched(&probe_matched);
                if !idx.is_empty() {
                    let padded = null_batch(build_schema, idx.len());
                    parts.push(pair(take_rows(batch, &idx)?, padded)?);
                }
            }
        }
        if keep_build {
            let idx = unmatched(&build_matched);
            if !idx.is_empty() {
                parts.push(pair(
                    null_batch(c.schema(probe_side), idx.len()),
                    take_rows(&build, &idx)?,
                )?);
            }
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(concat_batches(&c.output_schema, &parts)?),
        })
    }

    fn combine(&self, left: RecordBatch, right: RecordBatch) -> Result<RecordBatch> {
        let mut columns = left.columns().to_vec();
        columns.extend(right.columns().iter().cloned());
        Ok(RecordBatch::try_new(self.config.output_schema.clone(), columns)?)
    }
}

fn unmatched(matched: &[bool]) -> Vec<u32> {
    matched
        .iter()
        .enumerate()
        .filter(|(_, m)| !**m)
        .map(|(i, _)| i as u32)
        .collect()
}

#[async_trait]
impl Operator for WindowJoin {
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut init: StateInit) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        let mut state = init.keyed_state().await?;
        if init.is_restored() {
            state.adopt_backend_batches()?;
            for (ns, batch) in state.batches().read_all()? {
                let (side, end, chunk) = chunk_of_namespace(&ns)?;
                let rows = self.windows.entry(end).or_default().side(side);
                rows.batches.push(batch);
                rows.stored = rows.batches.len();
                rows.next_chunk = rows.next_chunk.max(chunk + 1);
            }
        }
        self.state = Some(state);
        Ok(())
    }

    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(ctx.metrics.clone());
        self.max_parallelism = ctx.max_parallelism;
        Ok(())
    }

    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        let Some(mut state) = self.state.take() else {
            return Ok(OperatorSnapshot::default());
        };
        let (config, max_parallelism) = (&self.config, self.max_parallelism);
        let written = self.windows.iter_mut().try_for_each(|(end, buffers)| {
            [Side::Left, Side::Right].into_iter().try_for_each(|side| {
                let rows = buffers.side(side);
                rows.write_new(config, side, *end, max_parallelism, &mut state)
            })
        });
        let pending = written.and_then(|()| state.snapshot(barrier));
        self.state = Some(state);
        Ok(OperatorSnapshot::keyed(pending?))
    }

    async fn process_batch(&mut self, input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let end_expr = if input == 0 {
            &self.config.left_window_end
        } else {
            &self.config.right_window_end
        };
        let ends = to_event_time(end_expr.evaluate(&batch)?.into_array(batch.num_rows())?.as_ref())?;
        let mut rows_of: BTreeMap<EventTime, Vec<u32>> = BTreeMap::new();
        let mut late = 0u64;
        for (i, end) in ends.iter().enumerate() {
            match end {
                Some(end) if self.watermark.is_none_or(|w| end - 1 > w) => {
                    rows_of.entry(end).or_default().push(i as u32)
                }
                _ => late += 1,
            }
        }
        if let Some(m) = &self.metrics {
            OperatorMetrics::add(&m.late_rows_dropped, late);
        }
        for (end, rows) in rows_of {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(&batch, &UInt32Array::from(rows))?
            };
            let rows = self.windows.entry(end).or_default().side(Side::of_input(input));
            rows.batches.push(part);
        }
        Ok(())
    }

    async fn process_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        self.watermark = Some(watermark);
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() - 1 > watermark {
                break;
            }
            let end = *entry.key();
            let buffers = entry.remove();
            if let Some(batch) = self.join_window(buffers)? {
                out.emit(batch);
            }
            if let Some(keyed) = &mut self.state {
                for side in [Side::Left, Side::Right] {
                    keyed.batches().delete_prefix(&window_namespace(side, end));
                }
            }
        }
        out.emit_watermark(watermark);
        Ok(())
    }
}

//! Session-window aggregation: per key, rows at most `gap` apart share a
//! window `[first, last + gap)` (windows that touch merge, as in Flink); a session is emitted once the watermark
//! passes its end.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::PhysicalExpr;

use super::aggregates::{AggregateSpec, evaluate_exprs, evaluate_inputs, take_all};
use super::window::timestamps_from_ns;
use super::window_aggregate::GroupColumn;
use crate::key_group::key_groups_of;
use crate::message::{Barrier, EventTime};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::{KeyedState, OperatorSnapshot, StateInit};
use crate::watermark::to_event_time;

/// The plan of a session-window aggregate.
#[derive(Debug)]
pub struct SessionAggregateConfig {
    /// The session gap, in ns.
    pub gap: i64,
    pub time_column: Arc<dyn PhysicalExpr>,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub key_schema: SchemaRef,
    pub aggregates: Vec<AggregateSpec>,
    pub group_columns: Vec<GroupColumn>,
    pub output_schema: SchemaRef,
}

/// A session-window aggregate subtask.
///
/// State: the input rows of sessions that have not fired yet. When the
/// watermark may close a session, the buffered rows are sorted by key and
/// time, split into sessions, and the closed sessions are aggregated with
/// DataFusion's accumulators; rows of open sessions stay buffered. A row
/// whose own window `[t, t + gap)` is already behind the watermark is dropped
/// and counted as late.
///
/// Checkpoints: at a barrier, if the buffer changed since the last one, all
/// buffered rows are written to batch state (one namespace), each row in the
/// key group of its key, so that a rescale hands every key's rows to its new
/// owner. On restore the buffer is those rows.
pub struct SessionAggregate {
    config: Arc<SessionAggregateConfig>,
    buffer: Vec<RecordBatch>,
    /// The smallest event time buffered (no session can close before `min + gap - 1`).
    min_time: Option<EventTime>,
    watermark: Option<EventTime>,
    metrics: Option<Arc<OperatorMetrics>>,
    state: Option<KeyedState>,
    /// Whether the buffer changed since the last snapshot.
    changed: bool,
    max_parallelism: usize,
}

/// The batch-state namespace of the buffered rows (there is only one).
const BUFFER_NAMESPACE: &[u8] = b"";

impl SessionAggregate {
    pub fn new(config: Arc<SessionAggregateConfig>) -> Self {
        SessionAggregate {
            config,
            buffer: Vec::new(),
            min_time: None,
            watermark: None,
            metrics: None,
            state: None,
            changed: false,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
        }
    }

    /// The smallest event time of `batch`'s rows (every buffered row has one).
    fn min_time_of(&self, batch: &RecordBatch) -> Result<Option<EventTime>> {
        let times = self
            .config
            .time_column
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        let times = to_event_time(times.as_ref())?;
        Ok(times.iter().flatten().min())
    }

    fn fire(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        let schema = self.buffer[0].schema();
        let all = concat_batches(&schema, &self.buffer)?;
        self.buffer.clear();
        let n = all.num_rows();
        let times_arr = self.config.time_column.evaluate(&all)?.into_array(n)?;
        let times = to_event_time(times_arr.as_ref())?;
        let keys = evaluate_exprs(&self.config.keys, &all)?;
        let mut sort_columns: Vec<SortColumn> = keys
            .iter()
            .map(|k| SortColumn {
                values: k.clone(),
                options: None,
            })
            .collect();
        sort_columns.push(SortColumn {
            values: Arc::new(times.clone()),
            options: None,
        });
        let order = lexsort_to_indices(&sort_columns, None)?;
        let converter = RowConverter::new(
            self.config
                .key_schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let key_rows = if keys.is_empty() {
            None
        } else {
            Some(converter.convert_columns(&keys)?)
        };

        // Split into sessions: (start, end, first row) and each row's session.
        let mut sessions: Vec<(EventTime, EventTime, u32)> = Vec::new();
        let mut session_of = vec![0usize; n];
        let mut prev: Option<u32> = None;
        for &r in order.values().iter() {
            let t = times.value(r as usize);
            let same_key = match (prev, &key_rows) {
                (Some(p), Some(rows)) => rows.row(p as usize) == rows.row(r as usize),
                (Some(_), None) => true,
                (None, _) => false,
            };
            match sessions.last_mut() {
                Some(s) if same_key && t <= s.1 => s.1 = s.1.max(t + self.config.gap),
                _ => sessions.push((t, t + self.config.gap, r)),
            }
            session_of[r as usize] = sessions.len() - 1;
            prev = Some(r);
        }

        // Closed sessions get dense group ids; rows of open ones stay buffered.
        let mut group_of_session = vec![usize::MAX; sessions.len()];
        let mut closed: Vec<usize> = Vec::new();
        for (i, s) in sessions.iter().enumerate() {
            if s.1 - 1 <= watermark {
                group_of_session[i] = closed.len();
                closed.push(i);
            }
        }
        let (mut closed_rows, mut closed_groups, mut open_rows) = (Vec::new(), Vec::new(), Vec::new());
        let mut open_min: Option<EventTime> = None;
        for r in 0..n {
            let g = group_of_session[session_of[r]];
            if g == usize::MAX {
                open_rows.push(r as u32);
                let t = times.value(r);
                open_min = Some(open_min.map_or(t, |m| m.min(t)));
            } else {
                closed_rows.push(r as u32);
                closed_groups.push(g);
            }
        }
        if !open_rows.is_empty() {
            self.buffer
                .push(take_record_batch(&all, &UInt32Array::from(open_rows))?);
        }
        self.min_time = open_min;
        if closed.is_empty() {
            return Ok(());
        }
        self.changed = true;

        let idx = UInt32Array::from(closed_rows);
        let closed_batch = take_record_batch(&all, &idx)?;
        let inputs = evaluate_inputs(&self.config.aggregates, &closed_batch)?;
        let num_groups = closed.len();
        let mut accs = Vec::new();
        for (spec, input) in self.config.aggregates.iter().zip(&inputs) {
            let mut acc = spec.groups_accumulator()?;
            acc.update_batch(&input.values, &closed_groups, input.filter.as_ref(), num_groups)?;
            accs.push(acc);
        }
        let first_rows = UInt32Array::from(closed.iter().map(|&s| sessions[s].2).collect::<Vec<_>>());
        let session_keys = take_all(&keys, &first_rows)?;
        let schema = &self.config.output_schema;
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, g) in self.config.group_columns.iter().enumerate() {
            let dt = schema.field(i).data_type();
            let bounds = closed.iter().map(|&s| sessions[s]);
            columns.push(match g {
                GroupColumn::WindowStart => timestamps_from_ns(dt, bounds.map(|s| s.0))?,
                GroupColumn::WindowEnd => timestamps_from_ns(dt, bounds.map(|s| s.1))?,
                GroupColumn::WindowTime => timestamps_from_ns(dt, bounds.map(|s| s.1 - 1))?,
                GroupColumn::Key(k) => session_keys[*k].clone(),
            });
        }
        for acc in &mut accs {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        out.emit(RecordBatch::try_new(schema.clone(), columns)?);
        Ok(())
    }
}

#[async_trait]
impl Operator for SessionAggregate {
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut init: StateInit) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        let mut state = init.keyed_state().await?;
        if init.is_restored() {
            state.adopt_backend_batches()?;
            for (_, batch) in state.batches().read_all()? {
                if let Some(t) = self.min_time_of(&batch)? {
                    self.min_time = Some(self.min_time.map_or(t, |m| m.min(t)));
                }
                if batch.num_rows() > 0 {
                    self.buffer.push(batch);
                }
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
        if self.changed {
            if self.buffer.is_empty() {
                state.batches().delete(BUFFER_NAMESPACE);
            } else {
                // Compact the buffer into one batch: it is written as one anyway.
                let all = concat_batches(&self.buffer[0].schema(), &self.buffer)?;
                let keys = evaluate_exprs(&self.config.keys, &all)?;
                let kgs = key_groups_of(&keys, all.num_rows(), self.max_parallelism)?;
                state
                    .batches()
                    .write(BUFFER_NAMESPACE, std::slice::from_ref(&all), &[kgs])?;
                self.buffer.clear();
                if all.num_rows() > 0 {
                    self.buffer.push(all);
                }
            }
            self.changed = false;
        }
        let pending = state.snapshot(barrier);
        self.state = Some(state);
        Ok(OperatorSnapshot::keyed(pending?))
    }

    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let times = self.config.time_column.evaluate(&batch)?.into_array(n)?;
        let times = to_event_time(times.as_ref())?;
        let gap = self.config.gap;
        let mut keep = Vec::with_capacity(n);
        let (mut late, mut null_time) = (0, 0);
        for r in 0..n {
            if times.is_null(r) {
                null_time += 1;
            } else if self.watermark.is_some_and(|w| times.value(r) + gap - 1 <= w) {
                late += 1;
            } else {
                keep.push(r as u32);
                let t = times.value(r);
                self.min_time = Some(self.min_time.map_or(t, |m| m.min(t)));
            }
        }
        if let Some(m) = &self.metrics {
            OperatorMetrics::add(&m.late_rows_dropped, late);
            OperatorMetrics::add(&m.records_skipped, null_time);
        }
        self.changed |= !keep.is_empty();
        if keep.len() == n {
            self.buffer.push(batch);
        } else if !keep.is_empty() {
            self.buffer
                .push(take_record_batch(&batch, &UInt32Array::from(keep))?);
        }
        Ok(())
    }

    async fn process_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        self.watermark = Some(watermark);
        if self
            .min_time
            .is_some_and(|m| m.saturating_add(self.config.gap - 1) <= watermark)
        {
            self.fire(watermark, out)?;
        }
        out.emit_watermark(watermark);
        Ok(())
    }
}

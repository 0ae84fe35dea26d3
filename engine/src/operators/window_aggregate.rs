//! Windowed aggregation for TUMBLE, HOP and CUMULATE windows: results are
//! emitted when the watermark passes the end of a window; rows whose every
//! window has already fired are dropped and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregates::{AggregateInput, AggregateSpec, evaluate_exprs, evaluate_inputs, take_all};
use super::window::{WindowKind, timestamps_from_ns};
use crate::key_group::key_groups_of;
use crate::message::{Barrier, EventTime};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::{KeyedState, OperatorSnapshot, StateInit, time_key, time_of_key};
use crate::watermark::to_event_time;

/// What one `GROUP BY` column of a window aggregate outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupColumn {
    WindowStart,
    WindowEnd,
    /// `window_end - 1` in the column's unit: the rowtime of the result.
    WindowTime,
    /// The i-th key expression.
    Key(usize),
}

/// Where a window aggregate finds the windows of a row.
#[derive(Debug, Clone)]
pub enum WindowSource {
    /// Computes them from an event-time column (the window TVF is fused into
    /// the aggregate: no row is copied per window).
    Assign {
        window: WindowKind,
        time_column: Arc<dyn PhysicalExpr>,
    },
    /// Reads them from `window_start` / `window_end` columns (e.g. a window
    /// aggregate over the result of another window aggregate).
    Columns {
        start: Arc<dyn PhysicalExpr>,
        end: Arc<dyn PhysicalExpr>,
    },
}

/// The plan of a window aggregate, shared by its subtasks.
#[derive(Debug)]
pub struct WindowAggregateConfig {
    pub windows: WindowSource,
    /// The grouping keys other than the window columns.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The schema of the keys (for the group table).
    pub key_schema: SchemaRef,
    pub aggregates: Vec<AggregateSpec>,
    /// The output's group columns, in output order; aggregates follow.
    pub group_columns: Vec<GroupColumn>,
    pub output_schema: SchemaRef,
}

/// The rows of one batch per window, in order of first appearance.
///
/// A batch usually spans a few windows and consecutive rows mostly share
/// theirs, so a short list searched from the last hit beats hashing every row.
#[derive(Default)]
struct WindowRows {
    windows: Vec<((EventTime, EventTime), Vec<u32>)>,
    last: usize,
}

impl WindowRows {
    fn clear(&mut self) {
        self.windows.clear();
        self.last = 0;
    }

    #[inline]
    fn push(&mut self, window: (EventTime, EventTime), row: u32) {
        let n = self.windows.len();
        for k in 0..n {
            let i = (self.last + k) % n;
            if self.windows[i].0 == window {
                self.windows[i].1.push(row);
                self.last = i;
                return;
            }
        }
        self.windows.push((window, vec![row]));
        self.last = n;
    }
}

/// The groups and accumulators of one open window.
struct WindowState {
    groups: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    num_groups: usize,
}

/// A TUMBLE / HOP / CUMULATE window aggregate subtask.
///
/// State: one group table and one set of DataFusion `GroupsAccumulator`s per
/// open window, keyed by `(window_end, window_start)`. A row is added to each
/// of its windows that has not fired; a window fires (is emitted and dropped)
/// when the watermark reaches `window_end - 1`.
///
/// Checkpoints: at a barrier, every window that received rows since the last
/// one is written to batch state as a batch of (keys, accumulator states),
/// each row in the key group of its keys (namespace: the window's bounds),
/// and a fired window's state is deleted. On restore the windows are
/// rebuilt by merging those states into fresh accumulators.
pub struct WindowAggregate {
    config: Arc<WindowAggregateConfig>,
    windows: BTreeMap<(EventTime, EventTime), WindowState>,
    watermark: Option<EventTime>,
    metrics: Option<Arc<OperatorMetrics>>,
    assignment: WindowRows,
    group_indices: Vec<usize>,
    state: Option<KeyedState>,
    /// Windows (end, start) changed since the last snapshot.
    dirty: BTreeSet<(EventTime, EventTime)>,
    max_parallelism: usize,
}

/// The batch-state namespace of window `(end, start)`.
fn window_namespace(end: EventTime, start: EventTime) -> [u8; 16] {
    let mut ns = [0u8; 16];
    ns[..8].copy_from_slice(&time_key(end));
    ns[8..].copy_from_slice(&time_key(start));
    ns
}

fn window_of_namespace(ns: &[u8]) -> Result<(EventTime, EventTime)> {
    let corrupt =
        || datafusion::common::DataFusionError::Execution("corrupt window state: bad namespace".into());
    if ns.len() != 16 {
        return Err(corrupt());
    }
    let end = time_of_key(&ns[..8]).ok_or_else(corrupt)?;
    let start = time_of_key(&ns[8..]).ok_or_else(corrupt)?;
    Ok((end, start))
}

impl WindowAggregate {
    pub fn new(config: Arc<WindowAggregateConfig>) -> Self {
        WindowAggregate {
            config,
            windows: BTreeMap::new(),
            watermark: None,
            metrics: None,
            assignment: WindowRows::default(),
            group_indices: Vec::new(),
            state: None,
            dirty: BTreeSet::new(),
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
        }
    }

    /// Takes a window's groups and accumulator states out as one batch:
    /// key columns, then each accumulator's state columns.
    fn state_batch(&self, state: &mut WindowState) -> Result<RecordBatch> {
        let mut columns = match &mut state.groups {
            Some(groups) => groups.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        for acc in &mut state.accumulators {
            columns.extend(acc.state(EmitTo::All)?);
        }
        let fields: Vec<arrow::datatypes::Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| arrow::datatypes::Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(state.num_groups));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            columns,
            &options,
        )?)
    }

    /// Rebuilds a window from a batch made by [`Self::state_batch`].
    fn window_from_state(&mut self, batch: &RecordBatch) -> Result<WindowState> {
        let mut state = self.new_window()?;
        let n = batch.num_rows();
        let k = self.config.keys.len();
        let keys = &batch.columns()[..k];
        self.group_indices.clear();
        match &mut state.groups {
            Some(groups) => {
                groups.intern(keys, &mut self.group_indices)?;
                state.num_groups = groups.len();
            }
            None => {
                self.group_indices.resize(n, 0);
                state.num_groups = if n > 0 { 1 } else { 0 };
            }
        }
        let mut col = k;
        for (acc, spec) in state.accumulators.iter_mut().zip(&self.config.aggregates) {
            let width = spec.function.state_fields()?.len();
            let cols = batch.columns().get(col..col + width).ok_or_else(|| {
                datafusion::common::DataFusionError::Execution(
                    "window state does not match the query's aggregates".into(),
                )
            })?;
            acc.merge_batch(cols, &self.group_indices, state.num_groups)?;
            col += width;
        }
        Ok(state)
    }

    fn new_window(&self) -> Result<WindowState> {
        let groups = if self.config.keys.is_empty() {
            None
        } else {
            Some(new_group_values(
                self.config.key_schema.clone(),
                &GroupOrdering::None,
            )?)
        };
        let accumulators = self
            .config
            .aggregates
            .iter()
            .map(|a| a.groups_accumulator())
            .collect::<Result<Vec<_>>>()?;
        Ok(WindowState {
            groups,
            accumulators,
            num_groups: 0,
        })
    }

    fn update(
        &mut self,
        window: (EventTime, EventTime),
        keys: &[ArrayRef],
        inputs: &[AggregateInput],
        num_rows: usize,
    ) -> Result<()> {
        if !self.windows.contains_key(&(window.1, window.0)) {
            let state = self.new_window()?;
            self.windows.insert((window.1, window.0), state);
        }
        self.dirty.insert((window.1, window.0));
        let state = self
            .windows
            .get_mut(&(window.1, window.0))
            .expect("inserted above");
        self.group_indices.clear();
        match &mut state.groups {
            Some(groups) => {
                groups.intern(keys, &mut self.group_indices)?;
                state.num_groups = groups.len();
            }
            None => {
                self.group_indices.resize(num_rows, 0);
                state.num_groups = 1;
            }
        }
        for (acc, input) in state.accumulators.iter_mut().zip(inputs) {
            acc.update_batch(
                &input.values,
                &self.group_indices,
                input.filter.as_ref(),
                state.num_groups,
            )?;
        }
        Ok(())
    }

    fn fire(&self, start: EventTime, end: EventTime, mut state: WindowState) -> Result<RecordBatch> {
        let n = state.num_groups;
        let keys = match &mut state.groups {
            Some(groups) => groups.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        let schema = &self.config.output_schema;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, g) in self.config.group_columns.iter().enumerate() {
            let dt = schema.field(i).data_type();
            columns.push(match g {
                GroupColumn::WindowStart => timestamps_from_ns(dt, std::iter::repeat_n(start, n))?,
                GroupColumn::WindowEnd => timestamps_from_ns(dt, std::iter::repeat_n(end, n))?,
                GroupColumn::WindowTime => timestamps_from_ns(dt, std::iter::repeat_n(end - 1, n))?,
                GroupColumn::Key(k) => keys[*k].clone(),
            });
        }
        for acc in &mut state.accumulators {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

#[async_trait]
impl Operator for WindowAggregate {
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut init: StateInit) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        let mut state = init.keyed_state().await?;
        if init.is_restored() {
            state.adopt_backend_batches()?;
            for (ns, batch) in state.batches().read_all()? {
                let (end, start) = window_of_namespace(&ns)?;
                let window = self.window_from_state(&batch)?;
                self.windows.insert((end, start), window);
            }
        }
        self.state = Some(state);
        Ok(())
    }

    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        let Some(mut state) = self.state.take() else {
            return Ok(OperatorSnapshot::default());
        };
        for key in std::mem::take(&mut self.dirty) {
            let Some(mut window) = self.windows.remove(&key) else {
                continue; // fired since: its state was deleted then
            };
            let batch = self.state_batch(&mut window)?;
            let keys = &batch.columns()[..self.config.keys.len()];
            let kgs = key_groups_of(keys, batch.num_rows(), self.max_parallelism)?;
            state.batches().write(
                &window_namespace(key.0, key.1),
                std::slice::from_ref(&batch),
                &[kgs],
            )?;
            let rebuilt = self.window_from_state(&batch)?;
            self.windows.insert(key, rebuilt);
        }
        let pending = state.snapshot(barrier);
        self.state = Some(state);
        Ok(OperatorSnapshot::keyed(pending?))
    }

    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        let keys = evaluate_exprs(&self.config.keys, &batch)?;
        let inputs = evaluate_inputs(&self.config.aggregates, &batch)?;

        self.assignment.clear();
        let (mut late, mut null_time) = (0u64, 0u64);
        let watermark = self.watermark;
        match &self.config.windows {
            WindowSource::Assign { window, time_column } => {
                let times = time_column.evaluate(&batch)?.into_array(n)?;
                let times = to_event_time(times.as_ref())?;
                for row in 0..n {
                    if times.is_null(row) {
                        null_time += 1;
                        continue;
                    }
                    let mut assigned = false;
                    window.for_each_window(times.value(row), |start, end| {
                        if watermark.is_some_and(|w| end - 1 <= w) {
                            return;
                        }
                        assigned = true;
                        self.assignment.push((start, end), row as u32);
                    });
                    if !assigned {
                        late += 1;
                    }
                }
            }
            WindowSource::Columns { start, end } => {
                let starts = to_event_time(start.evaluate(&batch)?.into_array(n)?.as_ref())?;
                let ends = to_event_time(end.evaluate(&batch)?.into_array(n)?.as_ref())?;
                for row in 0..n {
                    if starts.is_null(row) || ends.is_null(row) {
                        null_time += 1;
                    } else if watermark.is_some_and(|w| ends.value(row) - 1 <= w) {
                        late += 1;
                    } else {
                        let w = (starts.value(row), ends.value(row));
                        self.assignment.push(w, row as u32);
                    }
                }
            }
        }
        if let Some(m) = &self.metrics {
            OperatorMetrics::add(&m.late_rows_dropped, late);
            OperatorMetrics::add(&m.records_skipped, null_time);
        }
        let mut assignment = std::mem::take(&mut self.assignment);
        for (window, rows) in assignment.windows.iter_mut() {
            let window = *window;
            if rows.len() == n {
                self.update(window, &keys, &inputs, n)?;
            } else {
                let idx = UInt32Array::from(std::mem::take(rows));
                let k = take_all(&keys, &idx)?;
                let inp = inputs.iter().map(|i| i.take(&idx)).collect::<Result<Vec<_>>>()?;
                self.update(window, &k, &inp, idx.len())?;
            }
        }
        self.assignment = assignment;
        Ok(())
    }

    async fn process_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        self.watermark = Some(watermark);
        while let Some(entry) = self.windows.first_entry() {
            let (end, start) = *entry.key();
            if end - 1 > watermark {
                break;
            }
            let state = entry.remove();
            out.emit(self.fire(start, end, state)?);
            self.dirty.remove(&(end, start));
            if let Some(keyed) = &mut self.state {
                keyed.batches().delete(&window_namespace(end, start));
            }
        }
        out.emit_watermark(watermark);
        Ok(())
    }
}

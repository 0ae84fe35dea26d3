//! Non-windowed `GROUP BY`: an updating result, as a changelog.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int8Array, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use super::aggregates::{AggregateInput, AggregateSpec, evaluate_exprs, evaluate_inputs};
use crate::changelog::{RowKind, ops_of, with_op_column};
use crate::operator::{Operator, Output};

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
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Accumulated rows minus retracted rows.
    count: i64,
    /// The aggregate values last emitted, if the group is in the result.
    emitted: Option<Vec<ScalarValue>>,
}

/// A non-windowed aggregate subtask: for every batch, updates the groups it
/// touches and emits, per changed group, `+I` (new), `-U`/`+U` (changed) or
/// `-D` (no rows left), as Flink's group aggregate does. Unchanged results are
/// not re-emitted.
///
/// State: per group, DataFusion row accumulators (non-destructive
/// `evaluate`, `retract_batch` for changelog inputs), keyed by the key's
/// Arrow row encoding.
pub struct UpdatingAggregate {
    config: Arc<UpdatingAggregateConfig>,
    converter: RowConverter,
    index: HashMap<Box<[u8]>, u32>,
    key_rows: Vec<Box<[u8]>>,
    groups: Vec<Group>,
}

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
            key_rows: Vec::new(),
            groups: Vec::new(),
        })
    }

    fn group_ids(&mut self, keys: &[ArrayRef], n: usize) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(n);
        if keys.is_empty() {
            if self.groups.is_empty() {
                self.new_group(Box::new([]))?;
            }
            ids.resize(n, 0);
            return Ok(ids);
        }
        let rows = self.converter.convert_columns(keys)?;
        for row in rows.iter() {
            let bytes = row.as_ref();
            let id = match self.index.get(bytes) {
                Some(id) => *id,
                None => self.new_group(bytes.into())?,
            };
            ids.push(id);
        }
        Ok(ids)
    }

    fn new_group(&mut self, key: Box<[u8]>) -> Result<u32> {
        let id = self.groups.len() as u32;
        let accumulators = self
            .config
            .aggregates
            .iter()
            .map(|a| a.accumulator())
            .collect::<Result<Vec<_>>>()?;
        self.groups.push(Group {
            accumulators,
            count: 0,
            emitted: None,
        });
        self.index.insert(key.clone(), id);
        self.key_rows.push(key);
        Ok(id)
    }
}

#[async_trait]
impl Operator for UpdatingAggregate {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
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
        let ids = self.group_ids(&keys, n)?;

        // Rows of each touched group, accumulating and retracting apart, in
        // order of first touch.
        let mut touched: Vec<u32> = Vec::new();
        let mut rows_of: HashMap<u32, (Vec<u32>, Vec<u32>)> = HashMap::new();
        for (row, &g) in ids.iter().enumerate() {
            let entry = rows_of.entry(g).or_insert_with(|| {
                touched.push(g);
                (Vec::new(), Vec::new())
            });
            if retract.as_ref().is_some_and(|r| r[row]) {
                entry.1.push(row as u32);
            } else {
                entry.0.push(row as u32);
            }
        }

        let mut kinds: Vec<i8> = Vec::new();
        let mut out_groups: Vec<u32> = Vec::new();
        let mut out_values: Vec<Vec<ScalarValue>> = Vec::new();
        for g in touched {
            let (add, sub) = rows_of.remove(&g).expect("touched groups have rows");
            let group = &mut self.groups[g as usize];
            for (rows, is_retract) in [(add, false), (sub, true)] {
                if rows.is_empty() {
                    continue;
                }
                let idx = UInt32Array::from(rows);
                let count = idx.len() as i64;
                let taken: Vec<AggregateInput> =
                    inputs.iter().map(|i| i.take(&idx)).collect::<Result<_>>()?;
                for (acc, input) in group.accumulators.iter_mut().zip(&taken) {
                    let values = apply_filter(input)?;
                    if is_retract {
                        acc.retract_batch(&values)?;
                    } else {
                        acc.update_batch(&values)?;
                    }
                }
                group.count += if is_retract { -count } else { count };
            }
            let new_values = if group.count > 0 {
                Some(
                    group
                        .accumulators
                        .iter_mut()
                        .map(|a| a.evaluate())
                        .collect::<Result<Vec<_>>>()?,
                )
            } else {
                None
            };
            match (group.emitted.take(), new_values) {
                (None, Some(new)) => {
                    kinds.push(RowKind::Insert as i8);
                    out_groups.push(g);
                    out_values.push(new.clone());
                    group.emitted = Some(new);
                }
                (Some(old), Some(new)) => {
                    if old != new {
                        kinds.push(RowKind::UpdateBefore as i8);
                        out_groups.push(g);
                        out_values.push(old);
                        kinds.push(RowKind::UpdateAfter as i8);
                        out_groups.push(g);
                        out_values.push(new.clone());
                    }
                    group.emitted = Some(new);
                }
                (Some(old), None) => {
                    kinds.push(RowKind::Delete as i8);
                    out_groups.push(g);
                    out_values.push(old);
                }
                (None, None) => {}
            }
        }
        if kinds.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = if self.config.keys.is_empty() {
            Vec::new()
        } else {
            let parser = self.converter.parser();
            let rows: Vec<_> = out_groups
                .iter()
                .map(|g| parser.parse(&self.key_rows[*g as usize]))
                .collect();
            self.converter.convert_rows(rows)?
        };
        for a in 0..self.config.aggregates.len() {
            columns.push(ScalarValue::iter_to_array(
                out_values.iter().map(|v| v[a].clone()),
            )?);
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
        out.emit(RecordBatch::try_new(schema, columns)?);
        Ok(())
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

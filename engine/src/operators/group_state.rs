//! The groups of a non-windowed `GROUP BY` and their checkpointed form: one
//! keyed-state entry per group.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array};
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::Accumulator;

use super::aggregates::{AggregateSpec, cast_to};

/// One group of an updating aggregate.
///
/// Lifecycle: created by the first row of its key (or restored); updated by
/// every row of its key; dropped when all its rows are retracted or it
/// expires. `dirty` is set when it changes and cleared when it is written
/// to keyed state; `stored_len` is the length of its entry there (so a
/// write or delete never reads the backend first).
pub struct Group {
    /// The key's Arrow row encoding (empty without keys), shared with the
    /// operator's index.
    pub key: Arc<[u8]>,
    /// The key group of the key.
    pub key_group: usize,
    pub accumulators: Vec<Box<dyn Accumulator>>,
    /// Accumulated rows minus retracted rows.
    pub count: i64,
    /// The aggregate values last emitted, if the group is in the result.
    pub emitted: Option<Vec<ScalarValue>>,
    /// Processing time of the last update, in ms since the epoch (for the
    /// state TTL).
    pub updated_ms: i64,
    /// Length of the group's keyed-state entry, if it has one.
    pub stored_len: Option<usize>,
    /// Changed since its entry was last written.
    pub dirty: bool,
}

impl Group {
    /// Marks the group (id `id`) as changed since its entry was written,
    /// listing it in `changed` the first time.
    pub fn mark_changed(&mut self, id: u32, changed: &mut Vec<u32>) {
        if !self.dirty {
            self.dirty = true;
            changed.push(id);
        }
    }
}

/// Encodes groups as keyed-state values and decodes them back.
///
/// A value is one row, in Arrow's row format, of the columns `count`,
/// `updated_ms`, each aggregate's `state()` columns (DataFusion's
/// `state_fields`), each aggregate's last emitted value and an `emitted`
/// flag; the key is the group key's own row encoding, so a checkpoint writes
/// exactly the groups that changed since the last one.
///
/// Since `Accumulator::state` may consume an accumulator (DataFusion's
/// `string_agg` moves its string out), [`encode`](Self::encode) rebuilds the
/// accumulators it read by merging the state back into fresh ones, as a
/// restore does.
pub struct GroupCodec {
    aggregates: Vec<AggregateSpec>,
    /// Per aggregate: how many state columns it has.
    widths: Vec<usize>,
    /// The declared type of every value column.
    types: Vec<DataType>,
    values: RowConverter,
    /// Per aggregate: whether its accumulator is as it was after `state()`.
    state_keeps: Vec<bool>,
}

/// Whether `state()` leaves the aggregate's accumulator as it was, so that
/// encoding a group need not rebuild it: DataFusion 55's `min`, `max`,
/// `sum`, `count` and `avg` (not DISTINCT) return copies of their values;
/// others may take theirs (the trait allows it). Checked by
/// `listed_aggregates_keep_their_state` against the DataFusion in use.
pub fn state_keeps_accumulator(spec: &AggregateSpec) -> bool {
    !spec.function.is_distinct()
        && matches!(
            spec.function.fun().name(),
            "min" | "max" | "sum" | "count" | "avg"
        )
}

/// The columns before the accumulator states: `count`, `updated_ms`.
const FIXED_COLUMNS: usize = 2;

impl GroupCodec {
    /// The position of `count` among the value columns (`updated_ms` follows).
    pub const COUNT_COLUMN: usize = 0;

    pub fn new(aggregates: &[AggregateSpec]) -> Result<Self> {
        let mut types = vec![DataType::Int64, DataType::Int64];
        let mut widths = Vec::with_capacity(aggregates.len());
        for spec in aggregates {
            let fields = spec.function.state_fields()?;
            widths.push(fields.len());
            types.extend(fields.iter().map(|f| f.data_type().clone()));
        }
        types.extend(aggregates.iter().map(|a| a.function.field().data_type().clone()));
        types.push(DataType::Boolean);
        let values = RowConverter::new(types.iter().map(|t| SortField::new(t.clone())).collect())?;
        Ok(GroupCodec {
            aggregates: aggregates.to_vec(),
            widths,
            types,
            values,
            state_keeps: aggregates.iter().map(state_keeps_accumulator).collect(),
        })
    }

    /// The value columns, as fields (all nullable): `count`, `updated_ms`,
    /// each aggregate's state fields, each aggregate's last emitted value,
    /// `emitted`.
    pub fn value_fields(&self) -> Result<Vec<Field>> {
        let mut names = vec!["count".to_string(), "updated_ms".to_string()];
        for spec in &self.aggregates {
            names.extend(spec.function.state_fields()?.iter().map(|f| f.name().clone()));
        }
        names.extend((0..self.aggregates.len()).map(|a| format!("emitted_value_{a}")));
        names.push("emitted".into());
        Ok(names
            .into_iter()
            .zip(&self.types)
            .map(|(name, t)| Field::new(name, t.clone(), true))
            .collect())
    }

    /// Where aggregate `a`'s state columns are among the value columns.
    pub fn state_range(&self, a: usize) -> std::ops::Range<usize> {
        let start = FIXED_COLUMNS + self.widths[..a].iter().sum::<usize>();
        start..start + self.widths[a]
    }

    /// Where aggregate `a`'s last emitted value is among the value columns.
    pub fn emitted_value_column(&self, a: usize) -> usize {
        FIXED_COLUMNS + self.widths.iter().sum::<usize>() + a
    }

    /// The value columns of `values`, encoded by [`encode`](Self::encode).
    pub fn decode_values<'a>(&self, values: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.values.parser();
        let rows: Vec<_> = values.into_iter().map(|v| parser.parse(v)).collect();
        Ok(self.values.convert_rows(rows)?)
    }

    /// New accumulators, one per aggregate.
    pub fn fresh_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.aggregates.iter().map(|a| a.accumulator()).collect()
    }

    /// The values of `groups`, one row each; their accumulators are rebuilt.
    pub fn encode(&self, groups: &mut [Group]) -> Result<Rows> {
        let columns = self.value_columns(groups)?;
        let rows = self.values.convert_columns(&columns)?;
        if self.state_keeps.iter().all(|&k| k) {
            return Ok(rows);
        }
        let states = self.state_columns(&columns);
        for (row, group) in groups.iter_mut().enumerate() {
            for (a, state) in states.iter().enumerate() {
                if !self.state_keeps[a] {
                    let mut acc = self.aggregates[a].accumulator()?;
                    let slices: Vec<ArrayRef> = state.iter().map(|c| c.slice(row, 1)).collect();
                    acc.merge_batch(&slices)?;
                    group.accumulators[a] = acc;
                }
            }
        }
        Ok(rows)
    }

    /// The value columns of `groups` (takes their accumulators' state).
    fn value_columns(&self, groups: &mut [Group]) -> Result<Vec<ArrayRef>> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.types.len());
        columns.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| g.count),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| g.updated_ms),
        )));
        for (a, (spec, &width)) in self.aggregates.iter().zip(&self.widths).enumerate() {
            let mut per_field: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(groups.len()); width];
            for group in groups.iter_mut() {
                let state = group.accumulators[a].state()?;
                if state.len() != width {
                    return Err(DataFusionError::Internal(format!(
                        "aggregate {} has {} state values, expected {width}",
                        spec.name(),
                        state.len(),
                    )));
                }
                for (column, v) in per_field.iter_mut().zip(state) {
                    column.push(v);
                }
            }
            for values in per_field {
                let data_type = &self.types[columns.len()];
                columns.push(scalars_to_array(values, data_type)?);
            }
        }
        for a in 0..self.aggregates.len() {
            let data_type = &self.types[columns.len()];
            let null = ScalarValue::try_from(data_type)?;
            let values = groups
                .iter()
                .map(|g| g.emitted.as_ref().map_or_else(|| null.clone(), |v| v[a].clone()))
                .collect();
            columns.push(scalars_to_array(values, data_type)?);
        }
        columns.push(Arc::new(BooleanArray::from_iter(
            groups.iter().map(|g| Some(g.emitted.is_some())),
        )));
        Ok(columns)
    }

    /// Per aggregate, its state columns among the value columns.
    fn state_columns<'a>(&self, columns: &'a [ArrayRef]) -> Vec<&'a [ArrayRef]> {
        (0..self.aggregates.len())
            .map(|a| &columns[self.state_range(a)])
            .collect()
    }

    /// Fresh accumulators merged with row `row` of the state columns.
    fn accumulators_from(&self, states: &[&[ArrayRef]], row: usize) -> Result<Vec<Box<dyn Accumulator>>> {
        let mut accumulators = self.fresh_accumulators()?;
        for (acc, state) in accumulators.iter_mut().zip(states) {
            let slices: Vec<ArrayRef> = state.iter().map(|c| c.slice(row, 1)).collect();
            acc.merge_batch(&slices)?;
        }
        Ok(accumulators)
    }

    /// The groups of entries `(key group, key, value)` written by
    /// [`encode`](Self::encode) under their key's row encoding.
    pub fn decode<'a>(
        &self,
        entries: impl IntoIterator<Item = (usize, &'a [u8], &'a [u8])>,
    ) -> Result<Vec<Group>> {
        let mut keys = Vec::new();
        let mut key_groups = Vec::new();
        let mut values = Vec::new();
        for (kg, key, value) in entries {
            keys.push(Arc::<[u8]>::from(key));
            key_groups.push(kg);
            values.push(value);
        }
        let lens: Vec<usize> = values.iter().map(|v| v.len()).collect();
        let columns = self.decode_values(values)?;
        let mut groups = self.groups_from(&columns, keys, &key_groups)?;
        for (group, len) in groups.iter_mut().zip(lens) {
            group.stored_len = Some(len);
        }
        Ok(groups)
    }

    /// The groups of a batch of the earlier layout (one batch per key group:
    /// key columns, then the value columns), with keys encoded by `keys`;
    /// they have no entry of their own yet; `key_groups_of(key columns,
    /// rows)` places them.
    pub fn decode_key_group_batch(
        &self,
        batch: &RecordBatch,
        keys: &RowConverter,
        key_count: usize,
        key_groups_of: impl Fn(&[ArrayRef], usize) -> Result<Vec<usize>>,
    ) -> Result<Vec<Group>> {
        let expected = key_count + self.types.len();
        if batch.num_columns() != expected {
            return Err(corrupt(&format!(
                "{} columns, expected {expected}",
                batch.num_columns()
            )));
        }
        let (key_columns, values) = batch.columns().split_at(key_count);
        let n = batch.num_rows();
        let key_rows: Vec<Arc<[u8]>> = if key_count == 0 {
            let empty: Arc<[u8]> = Arc::new([]);
            vec![empty; n]
        } else {
            let rows = keys.convert_columns(key_columns)?;
            rows.iter().map(|r| r.as_ref().into()).collect()
        };
        let key_groups = key_groups_of(key_columns, n)?;
        self.groups_from(values, key_rows, &key_groups)
    }

    fn groups_from(
        &self,
        columns: &[ArrayRef],
        keys: Vec<Arc<[u8]>>,
        key_groups: &[usize],
    ) -> Result<Vec<Group>> {
        let int64 = |c: &ArrayRef| {
            c.as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| corrupt("bad count or time column"))
        };
        let counts = int64(&columns[Self::COUNT_COLUMN])?;
        let updated = int64(&columns[Self::COUNT_COLUMN + 1])?;
        let states = self.state_columns(columns);
        let a = self.aggregates.len();
        let at = self.emitted_value_column(0);
        let emitted_values = &columns[at..at + a];
        let emitted = columns[at + a]
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| corrupt("bad emitted column"))?;
        let mut groups = Vec::with_capacity(keys.len());
        for (row, (key, &key_group)) in keys.into_iter().zip(key_groups).enumerate() {
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
                key,
                key_group,
                accumulators: self.accumulators_from(&states, row)?,
                count: counts.value(row),
                emitted,
                updated_ms: updated.value(row),
                stored_len: None,
                dirty: false,
            });
        }
        Ok(groups)
    }
}

/// The error for restored state that does not fit the query.
pub(crate) fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!(
        "group aggregate state does not match the query's keys and aggregates: {what}"
    ))
}

/// An array of `values` of type `data_type` (values of another type, e.g. an
/// untyped NULL, are cast to it).
fn scalars_to_array(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(arrow::array::new_empty_array(data_type));
    }
    let array = match ScalarValue::iter_to_array(values.iter().cloned()) {
        Ok(array) => array,
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
        )?,
    };
    cast_to(array, data_type)
}

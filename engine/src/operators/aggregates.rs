//! DataFusion aggregate functions, as the streaming aggregates use them.

use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::take;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{Accumulator, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

/// One aggregate of a `GROUP BY`: the function, its argument expressions (and
/// `ORDER BY` expressions of order-sensitive aggregates), and its `FILTER`.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub function: Arc<AggregateFunctionExpr>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

impl AggregateSpec {
    pub fn new(function: Arc<AggregateFunctionExpr>, filter: Option<Arc<dyn PhysicalExpr>>) -> Self {
        AggregateSpec { function, filter }
    }

    /// The argument expressions followed by the ordering expressions, as
    /// DataFusion's accumulators expect their inputs.
    pub fn input_exprs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        let all = self.function.all_expressions();
        all.args.into_iter().chain(all.order_by_exprs).collect()
    }

    /// A fresh vectorized accumulator for many groups (an adapter over
    /// row accumulators for functions without a native one).
    pub fn groups_accumulator(&self) -> Result<Box<dyn GroupsAccumulator>> {
        if self.function.groups_accumulator_supported() {
            self.function.create_groups_accumulator()
        } else {
            let f = self.function.clone();
            Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                f.create_accumulator()
            })))
        }
    }

    /// A fresh accumulator for one group.
    pub fn accumulator(&self) -> Result<Box<dyn Accumulator>> {
        self.function.create_accumulator()
    }

    /// The display name of the aggregate, e.g. `count(t.id)`.
    pub fn name(&self) -> &str {
        self.function.name()
    }
}

/// The evaluated inputs of one aggregate over one batch.
#[derive(Debug, Clone)]
pub struct AggregateInput {
    pub values: Vec<ArrayRef>,
    pub filter: Option<BooleanArray>,
}

impl AggregateInput {
    /// The rows at `indices` of these inputs.
    pub fn take(&self, indices: &UInt32Array) -> Result<AggregateInput> {
        let values = take_all(&self.values, indices)?;
        let filter = match &self.filter {
            Some(f) => Some(
                take(f, indices, None)?
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .expect("take of a BooleanArray")
                    .clone(),
            ),
            None => None,
        };
        Ok(AggregateInput { values, filter })
    }

    /// Rows `offset..offset + len` of these inputs (zero-copy).
    pub fn slice(&self, offset: usize, len: usize) -> AggregateInput {
        AggregateInput {
            values: self.values.iter().map(|v| v.slice(offset, len)).collect(),
            filter: self.filter.as_ref().map(|f| f.slice(offset, len)),
        }
    }
}

/// Evaluates the inputs of every aggregate on `batch`.
pub fn evaluate_inputs(specs: &[AggregateSpec], batch: &RecordBatch) -> Result<Vec<AggregateInput>> {
    specs
        .iter()
        .map(|spec| {
            let values = spec
                .input_exprs()
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
                .collect::<Result<Vec<_>>>()?;
            let filter = match &spec.filter {
                Some(f) => {
                    let v = f.evaluate(batch)?.into_array(batch.num_rows())?;
                    Some(
                        v.as_any()
                            .downcast_ref::<BooleanArray>()
                            .ok_or_else(|| {
                                DataFusionError::Plan("an aggregate FILTER must be a boolean".into())
                            })?
                            .clone(),
                    )
                }
                None => None,
            };
            Ok(AggregateInput { values, filter })
        })
        .collect()
}

/// Evaluates `exprs` on `batch`.
pub fn evaluate_exprs(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
        .collect()
}

/// The rows at `indices` of every array.
pub fn take_all(arrays: &[ArrayRef], indices: &UInt32Array) -> Result<Vec<ArrayRef>> {
    arrays
        .iter()
        .map(|a| take(a.as_ref(), indices, None).map_err(DataFusionError::from))
        .collect()
}

/// `column` as `data_type`, cast only if its type differs (accumulators'
/// results and states may differ from their declared fields in details such
/// as nullability or a decimal's precision).
pub fn cast_to(column: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if column.data_type() == data_type {
        Ok(column)
    } else {
        Ok(arrow::compute::cast(&column, data_type)?)
    }
}

/// A filter mask with NULLs turned into `false` (SQL: a NULL condition does not hold).
pub fn nulls_as_false(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() > 0 {
        arrow::compute::prep_null_mask_filter(mask)
    } else {
        mask.clone()
    }
}

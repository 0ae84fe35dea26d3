//! Changelog (updating) streams, with Flink's row kinds.
//!
//! An append-only stream carries plain batches. An updating stream — the
//! result of a non-windowed aggregate, for instance — carries the kind of each
//! row in a trailing `Int8` column named [`OP_COLUMN`], so that every Arrow
//! kernel (filter, take, concat) keeps rows and kinds together for free.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int8Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

/// The name of the row-kind column of an updating stream.
pub const OP_COLUMN: &str = "_op";

/// The kind of a row in a changelog, as Flink's `RowKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the previous version of a row that is being updated.
    UpdateBefore = 1,
    /// `+U`: the new version of a row that is being updated.
    UpdateAfter = 2,
    /// `-D`: a row that is deleted.
    Delete = 3,
}

impl RowKind {
    /// Flink's short string for the kind: `+I`, `-U`, `+U`, `-D`.
    pub fn short_string(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// Whether the row adds to the result (`+I`, `+U`) rather than retracts from it.
    pub fn is_accumulate(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }

    /// Decodes the value stored in an [`OP_COLUMN`].
    pub fn from_i8(v: i8) -> Result<RowKind> {
        Ok(match v {
            0 => RowKind::Insert,
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            other => {
                return Err(DataFusionError::Internal(format!(
                    "invalid row kind {other} in {OP_COLUMN}"
                )));
            }
        })
    }
}

/// The field of the row-kind column.
pub fn op_field() -> Field {
    Field::new(OP_COLUMN, DataType::Int8, false)
}

/// Whether `schema` is the schema of an updating stream.
pub fn is_updating(schema: &Schema) -> bool {
    schema
        .fields()
        .last()
        .is_some_and(|f| f.name() == OP_COLUMN && f.data_type() == &DataType::Int8)
}

/// The schema of the updating stream whose rows have schema `schema`.
pub fn with_op_column(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(op_field()));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The schema of the rows of an updating stream (without its row-kind column).
pub fn without_op_column(schema: &Schema) -> SchemaRef {
    if !is_updating(schema) {
        return Arc::new(schema.clone());
    }
    let n = schema.fields().len() - 1;
    Arc::new(Schema::new_with_metadata(
        schema.fields()[..n].to_vec(),
        schema.metadata().clone(),
    ))
}

/// A column of row kinds, all equal to `kind`.
pub fn op_array(kind: RowKind, len: usize) -> ArrayRef {
    Arc::new(Int8Array::from_value(kind as i8, len))
}

/// The row kinds of an updating batch, or `None` for an append-only batch.
pub fn ops_of(batch: &RecordBatch) -> Option<&Int8Array> {
    if !is_updating(batch.schema_ref()) {
        return None;
    }
    batch
        .columns()
        .last()
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
}

/// Splits an updating batch into its rows and row kinds. An append-only batch
/// is all `+I`.
pub fn split_ops(batch: &RecordBatch) -> (RecordBatch, Int8Array) {
    match ops_of(batch) {
        Some(ops) => {
            let ops = ops.clone();
            let n = batch.num_columns() - 1;
            let rows = batch
                .project(&(0..n).collect::<Vec<_>>())
                .expect("projection in range");
            (rows, ops)
        }
        None => (
            batch.clone(),
            Int8Array::from_value(RowKind::Insert as i8, batch.num_rows()),
        ),
    }
}

/// Appends a row-kind column to `rows`.
pub fn attach_ops(rows: &RecordBatch, ops: ArrayRef) -> Result<RecordBatch> {
    let schema = with_op_column(rows.schema_ref());
    let mut cols = rows.columns().to_vec();
    if ops.len() != rows.num_rows() {
        return Err(DataFusionError::Internal(
            "row kinds and rows differ in length".into(),
        ));
    }
    cols.push(ops);
    Ok(RecordBatch::try_new(schema, cols)?)
}

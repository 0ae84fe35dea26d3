//! Selecting rows of a batch (by mask, by index) without touching the
//! columns that hold NULLs only: the columns a job does not read, which
//! sources fill with NULLs (`SourceSpec::reading_only`) and which flow
//! through filters, exchanges and joins beside the columns that are read.

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array, new_null_array,
};
use arrow::compute::{FilterBuilder, interleave, take};
use arrow::datatypes::SchemaRef;
use datafusion::common::Result;

/// Whether `column` holds NULLs only (and at least one row).
fn nulls_only(column: &ArrayRef) -> bool {
    !column.is_empty() && column.null_count() == column.len()
}

/// `columns` of `rows` rows as a batch of `schema` (the row count given:
/// a batch may have no columns).
fn with_columns(schema: SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

/// The rows of `batch` where `mask` is true (a NULL in `mask` counts as
/// false, as in `filter_record_batch`).
pub fn filter_rows(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
    let predicate = FilterBuilder::new(mask).optimize().build();
    let rows = predicate.count();
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if nulls_only(c) {
                Ok(new_null_array(c.data_type(), rows))
            } else {
                Ok(predicate.filter(c.as_ref())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    with_columns(batch.schema(), columns, rows)
}

/// The rows of `batch` at `indices`.
pub fn take_rows(batch: &RecordBatch, indices: &[u32]) -> Result<RecordBatch> {
    if indices.len() == batch.num_rows() && indices.iter().enumerate().all(|(i, &j)| i as u32 == j) {
        return Ok(batch.clone());
    }
    let at = UInt32Array::from(indices.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if nulls_only(c) {
                Ok(new_null_array(c.data_type(), indices.len()))
            } else {
                Ok(take(c.as_ref(), &at, None)?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    with_columns(batch.schema(), columns, indices.len())
}

/// Row `indices[i].1` of batch `sources[indices[i].0]` for every `i`, as one
/// batch of `schema` (the sources'), as `interleave_record_batch`.
pub fn interleave_rows(
    schema: &SchemaRef,
    sources: &[&RecordBatch],
    indices: &[(usize, usize)],
) -> Result<RecordBatch> {
    let columns = (0..schema.fields().len())
        .map(|c| {
            if sources.iter().all(|b| nulls_only(b.column(c))) {
                return Ok(new_null_array(schema.field(c).data_type(), indices.len()));
            }
            let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.column(c).as_ref()).collect();
            Ok(interleave(&arrays, indices)?)
        })
        .collect::<Result<Vec<_>>>()?;
    with_columns(schema.clone(), columns, indices.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::compute::{filter_record_batch, take_record_batch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn rows_are_those_arrow_selects() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("unread", DataType::Utf8, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])),
                new_null_array(&DataType::Utf8, 4),
                Arc::new(StringArray::from(vec![Some("w"), Some("x"), None, Some("z")])),
            ],
        )
        .unwrap();
        let mask = BooleanArray::from(vec![Some(true), None, Some(false), Some(true)]);
        assert_eq!(
            filter_rows(&batch, &mask).unwrap(),
            filter_record_batch(&batch, &mask).unwrap()
        );
        let none = BooleanArray::from(vec![false; 4]);
        assert_eq!(
            filter_rows(&batch, &none).unwrap(),
            filter_record_batch(&batch, &none).unwrap()
        );
        let indices = [3u32, 0, 0, 2];
        assert_eq!(
            take_rows(&batch, &indices).unwrap(),
            take_record_batch(&batch, &UInt32Array::from(indices.to_vec())).unwrap()
        );
        assert_eq!(take_rows(&batch, &[0, 1, 2, 3]).unwrap(), batch);
        let other = batch.slice(1, 3);
        let indices = [(1, 2), (0, 0), (1, 0)];
        assert_eq!(
            interleave_rows(&batch.schema(), &[&batch, &other], &indices).unwrap(),
            arrow::compute::interleave_record_batch(&[&batch, &other], &indices).unwrap()
        );
    }
}

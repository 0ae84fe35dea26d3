//! Rendering results as text: tables, changelog rows, values.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow::util::pretty::pretty_format_batches_with_options;
use datafusion::common::Result;
use weir_engine::changelog::{OP_COLUMN, RowKind, is_updating};

/// Flink-like value formatting: `2024-01-01 00:00:05.000` timestamps, `NULL`.
pub fn format_options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f%:z"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
}

/// A batch for display: an updating batch's `_op` column becomes a leading
/// `op` column of `+I`/`-U`/`+U`/`-D`.
pub fn changelog_view(batch: &RecordBatch) -> Result<RecordBatch> {
    if !is_updating(batch.schema_ref()) {
        return Ok(batch.clone());
    }
    let (rows, ops) = weir_engine::changelog::split_ops(batch);
    let kinds: Vec<&str> = ops
        .values()
        .iter()
        .map(|v| RowKind::from_i8(*v).map(|k| k.short_string()))
        .collect::<Result<_>>()?;
    let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, false))];
    fields.extend(
        rows.schema()
            .fields()
            .iter()
            .filter(|f| f.name() != OP_COLUMN)
            .cloned(),
    );
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(kinds))];
    cols.extend(rows.columns().iter().cloned());
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// Renders batches as an ASCII table.
pub fn table(batches: &[RecordBatch]) -> Result<String> {
    Ok(pretty_format_batches_with_options(batches, &format_options())?.to_string())
}

/// Renders each row as a vector of strings (for tests and line output).
pub fn rows(batch: &RecordBatch) -> Result<Vec<Vec<String>>> {
    let options = format_options();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
        .collect())
}

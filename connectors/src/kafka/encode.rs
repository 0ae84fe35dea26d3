//! Turning a batch of a sink table's rows into Kafka records: keys and
//! values per [`RecordLayout`], the record timestamp from a writable
//! `timestamp` metadata column, and, for upsert tables, tombstones.

use arrow::array::{Array, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use weir_engine::changelog::{RowKind, split_ops};

use super::format::{RecordFormat, RecordLayout};

/// The encoded keys or values of a batch: one buffer and the byte range of
/// each row (no allocation per row).
#[derive(Debug, Default)]
pub struct EncodedColumn {
    bytes: Vec<u8>,
    /// Row `i` is `bytes[start..end]`; `None` for a null (no bytes).
    spans: Vec<Option<(usize, usize)>>,
}

impl EncodedColumn {
    /// The bytes of row `i`, `None` when it is null.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let (start, end) = self.spans[i]?;
        Some(&self.bytes[start..end])
    }
}

/// One batch ready to produce: per row, what to write.
#[derive(Debug)]
pub struct EncodedBatch {
    pub keys: Option<EncodedColumn>,
    pub values: EncodedColumn,
    /// Record timestamps in epoch milliseconds, when the table writes them.
    pub timestamps: Option<Int64Array>,
    /// The rows to write, in order: upsert tables skip `-U` rows; a `-D`
    /// row is written with a null value (a tombstone).
    pub rows: Vec<u32>,
    /// Which of `rows` are tombstones (upsert deletes).
    pub tombstone: Vec<bool>,
}

/// Encodes rows of one sink table.
#[derive(Debug)]
pub struct RecordEncoder {
    schema: SchemaRef,
    layout: RecordLayout,
    timestamp_column: Option<usize>,
    upsert: bool,
}

impl RecordEncoder {
    /// An encoder for rows of `schema` (the table's columns); the
    /// `timestamp_column` is a writable `timestamp` metadata column.
    pub fn new(
        schema: SchemaRef,
        layout: RecordLayout,
        timestamp_column: Option<usize>,
        upsert: bool,
    ) -> Self {
        RecordEncoder {
            schema,
            layout,
            timestamp_column,
            upsert,
        }
    }

    /// Encodes `batch` (the table's rows, plus a trailing row-kind column
    /// when the stream is updating).
    pub fn encode(&self, batch: &RecordBatch) -> Result<EncodedBatch> {
        let (rows, ops) = split_ops(batch);
        let n = rows.num_rows();
        let mut selected = Vec::with_capacity(n);
        let mut tombstone = Vec::with_capacity(n);
        for (i, op) in ops.values().iter().enumerate() {
            match RowKind::from_i8(*op)? {
                RowKind::Insert | RowKind::UpdateAfter => {
                    selected.push(i as u32);
                    tombstone.push(false);
                }
                // Upsert-kafka ignores the old version of an update (the new one
                // replaces it under the same key).
                RowKind::UpdateBefore if self.upsert => {}
                RowKind::Delete if self.upsert => {
                    selected.push(i as u32);
                    tombstone.push(true);
                }
                kind => {
                    return Err(DataFusionError::Execution(format!(
                        "the kafka sink is append-only and received a {} row; use 'upsert-kafka'",
                        kind.short_string()
                    )));
                }
            }
        }
        let values = encode_columns(&rows, &self.layout.value_format, &self.layout.value_columns)?;
        let keys = match &self.layout.key {
            Some((format, columns)) => Some(encode_columns(&rows, format, columns)?),
            None => None,
        };
        let timestamps = match self.timestamp_column {
            Some(c) => {
                let ms = cast(rows.column(c), &DataType::Timestamp(TimeUnit::Millisecond, None))?;
                let ms = cast(&ms, &DataType::Int64)?;
                Some(ms.as_primitive::<arrow::datatypes::Int64Type>().clone())
            }
            None => None,
        };
        debug_assert_eq!(rows.schema().fields().len(), self.schema.fields().len());
        Ok(EncodedBatch {
            keys,
            values,
            timestamps,
            rows: selected,
            tombstone,
        })
    }
}

/// Encodes `columns` of every row of `rows` in `format`.
fn encode_columns(rows: &RecordBatch, format: &RecordFormat, columns: &[usize]) -> Result<EncodedColumn> {
    let part = rows.project(columns)?;
    match format {
        RecordFormat::Json(options) => {
            let mut writer = options.writer(Vec::with_capacity(part.num_rows() * 64));
            writer.write(&part)?;
            writer.finish()?;
            let bytes = writer.into_inner();
            // One line per row (a JSON string never contains a raw newline);
            // a row is its line without the newline.
            let mut spans = Vec::with_capacity(part.num_rows());
            let mut start = 0;
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'\n' {
                    spans.push(Some((start, i)));
                    start = i + 1;
                }
            }
            if spans.len() != part.num_rows() {
                return Err(DataFusionError::Internal(format!(
                    "JSON encoding gave {} lines for {} rows",
                    spans.len(),
                    part.num_rows()
                )));
            }
            Ok(EncodedColumn { bytes, spans })
        }
        RecordFormat::Raw => {
            let column = part.column(0);
            let mut bytes = Vec::new();
            let mut spans = Vec::with_capacity(column.len());
            let mut push = |v: Option<&[u8]>| match v {
                Some(v) => {
                    let start = bytes.len();
                    bytes.extend_from_slice(v);
                    spans.push(Some((start, bytes.len())));
                }
                None => spans.push(None),
            };
            match column.data_type() {
                DataType::Utf8 => column
                    .as_string::<i32>()
                    .iter()
                    .for_each(|v| push(v.map(str::as_bytes))),
                DataType::LargeUtf8 => column
                    .as_string::<i64>()
                    .iter()
                    .for_each(|v| push(v.map(str::as_bytes))),
                DataType::Binary => column.as_binary::<i32>().iter().for_each(&mut push),
                DataType::LargeBinary => column.as_binary::<i64>().iter().for_each(&mut push),
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "the 'raw' format needs a STRING or BYTES column, not {other}"
                    )));
                }
            }
            Ok(EncodedColumn { bytes, spans })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array as I64, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    use weir_engine::changelog::{attach_ops, op_array};

    fn layout(key: bool) -> RecordLayout {
        RecordLayout {
            value_format: RecordFormat::Json(crate::filesystem::JsonOptions {
                ignore_parse_errors: false,
                fail_on_missing_field: false,
                timestamp_standard: crate::filesystem::TimestampStandard::Sql,
            }),
            value_columns: vec![0, 1],
            key: key.then(|| (RecordFormat::Raw, vec![1])),
        }
    }

    fn rows() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(I64::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b\nc"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn json_values_and_raw_keys_per_row() {
        let batch = rows();
        let enc = RecordEncoder::new(batch.schema(), layout(true), None, false);
        let out = enc.encode(&batch).unwrap();
        assert_eq!(out.rows, vec![0, 1, 2]);
        let v = |i| String::from_utf8(out.values.get(i).unwrap().to_vec()).unwrap();
        assert_eq!(v(0), r#"{"n":1,"s":"a"}"#);
        assert_eq!(v(1), r#"{"n":null,"s":"b\nc"}"#);
        assert_eq!(v(2), r#"{"n":3,"s":null}"#);
        let keys = out.keys.unwrap();
        assert_eq!(keys.get(0), Some(&b"a"[..]));
        assert_eq!(keys.get(1), Some(&b"b\nc"[..]));
        assert_eq!(keys.get(2), None);
    }

    #[test]
    fn upsert_writes_tombstones_and_skips_update_before() {
        let batch = rows();
        let ops: Vec<i8> = vec![
            RowKind::UpdateBefore as i8,
            RowKind::UpdateAfter as i8,
            RowKind::Delete as i8,
        ];
        let batch = attach_ops(&batch, Arc::new(arrow::array::Int8Array::from(ops))).unwrap();
        let plain = rows();
        let enc = RecordEncoder::new(plain.schema(), layout(true), None, true);
        let out = enc.encode(&batch).unwrap();
        assert_eq!(out.rows, vec![1, 2]);
        assert_eq!(out.tombstone, vec![false, true]);
        let append_only = RecordEncoder::new(plain.schema(), layout(false), None, false);
        let err = append_only.encode(&batch).unwrap_err().to_string();
        assert!(err.contains("-U") && err.contains("upsert-kafka"), "{err}");
        let inserts = attach_ops(&plain, op_array(RowKind::Insert, 3)).unwrap();
        assert_eq!(append_only.encode(&inserts).unwrap().rows, vec![0, 1, 2]);
    }
}

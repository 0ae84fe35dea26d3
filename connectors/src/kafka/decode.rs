//! Turning the records of one Kafka partition into a batch of a source
//! table's rows: values (and keys, per `key.format` / `key.fields`) decoded
//! by their format, metadata columns filled from the records.
//!
//! The source copies each record it takes from the consumer into the
//! partition's [`RecordBuffer`] (one byte buffer for values, one for keys: no
//! allocation per record) and decodes a whole buffer at once: JSON values
//! with one arrow-json decoder call over the concatenated values, halving a
//! failing range down to its malformed records as the filesystem source does
//! ([`crate::filesystem::records::decode_spans`]).
//!
//! As in Flink's `json` format, a record without a value (a tombstone) gives
//! no row and is not counted as malformed.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, Int32Array, Int64Array, PrimitiveBuilder, StringBuilder, UInt32Array,
};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{
    DataType, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, plan_err};
use rdkafka::Timestamp;
use weir_engine::connector::TableRequest;

use super::format::{RecordFormat, RecordLayout};
use crate::filesystem::records::{JsonDecoder, OnError, decode_spans};

/// One record taken from the consumer; its key and value bytes are in the
/// [`RecordBuffer`] that holds it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp and its kind.
    pub timestamp: Timestamp,
    /// The key's bytes in [`RecordBuffer::keys`]; `None`: no key.
    key: Option<Range<usize>>,
    /// The value's bytes in [`RecordBuffer::values`]; `None`: a tombstone.
    value: Option<Range<usize>>,
}

/// Records of one partition taken from the consumer and not yet returned as
/// rows, in offset order.
///
/// Values are stored back to back, each followed by a newline (so that the
/// JSON values of consecutive records can be decoded in one call); a
/// tombstone takes no bytes, so the values of any run of records are one
/// slice of [`values`](Self::values).
#[derive(Debug, Default)]
pub struct RecordBuffer {
    values: Vec<u8>,
    keys: Vec<u8>,
    records: Vec<RawRecord>,
}

impl RecordBuffer {
    /// Appends a record (copying its key and value).
    pub fn push(&mut self, offset: i64, timestamp: Timestamp, key: Option<&[u8]>, value: Option<&[u8]>) {
        let key = key.map(|k| {
            let start = self.keys.len();
            self.keys.extend_from_slice(k);
            start..self.keys.len()
        });
        let value = value.map(|v| {
            let start = self.values.len();
            self.values.extend_from_slice(v);
            let end = self.values.len();
            self.values.push(b'\n');
            start..end
        });
        self.records.push(RawRecord {
            offset,
            timestamp,
            key,
            value,
        });
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The offset of the last record.
    pub fn last_offset(&self) -> Option<i64> {
        self.records.last().map(|r| r.offset)
    }

    /// Removes every record, keeping up to `keep_bytes` of each buffer's
    /// capacity for the next ones.
    pub fn clear(&mut self, keep_bytes: usize) {
        self.values.clear();
        self.keys.clear();
        self.records.clear();
        self.values.shrink_to(keep_bytes);
        self.keys.shrink_to(keep_bytes);
        self.records.shrink_to(keep_bytes / 64);
    }

    fn value(&self, r: &RawRecord) -> Option<&[u8]> {
        r.value.as_ref().map(|v| &self.values[v.clone()])
    }

    fn key(&self, r: &RawRecord) -> Option<&[u8]> {
        r.key.as_ref().map(|k| &self.keys[k.clone()])
    }
}

/// A metadata column's key (Flink's names).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Metadata {
    Topic,
    Partition,
    Offset,
    /// The record's timestamp, in the column's unit and time zone.
    Timestamp(TimeUnit, Option<Arc<str>>),
    TimestampType,
    /// The key as text.
    Key,
}

/// Where a table column's values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    /// Column `i` of the decoded values.
    Value(usize),
    /// Column `i` of the decoded keys.
    Key(usize),
    Metadata(Metadata),
}

/// How one part of a record (key or value) is decoded.
enum PartDecoder {
    Json {
        decoder: JsonDecoder,
        on_error: OnError,
    },
    /// The bytes into one column of this type.
    Raw(DataType),
}

impl std::fmt::Debug for PartDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartDecoder::Json { on_error, .. } => write!(f, "Json({on_error:?})"),
            PartDecoder::Raw(t) => write!(f, "Raw({t})"),
        }
    }
}

impl PartDecoder {
    fn new(format: &RecordFormat, schema: SchemaRef) -> Self {
        match format {
            RecordFormat::Json(o) => PartDecoder::Json {
                decoder: JsonDecoder {
                    schema,
                    fail_on_missing_field: o.fail_on_missing_field,
                },
                on_error: if o.ignore_parse_errors {
                    OnError::Skip
                } else {
                    OnError::Fail
                },
            },
            RecordFormat::Raw => PartDecoder::Raw(schema.field(0).data_type().clone()),
        }
    }
}

/// Which part of a record is being decoded, for error messages.
#[derive(Debug, Clone, Copy)]
enum Part {
    Key,
    Value,
}

/// Where a record came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
}

fn malformed(
    origin: Origin<'_>,
    offset: i64,
    part: Part,
    e: impl std::fmt::Display,
    hint: bool,
) -> DataFusionError {
    let what = match part {
        Part::Key => "key",
        Part::Value => "record",
    };
    DataFusionError::Execution(format!(
        "kafka: malformed {what} in topic '{}' partition {} at offset {offset}: {e}{}",
        origin.topic,
        origin.partition,
        if hint {
            " (set 'json.ignore-parse-errors' = 'true' to skip such records)"
        } else {
            ""
        }
    ))
}

/// Decodes the buffered records of a partition into rows of a source table:
/// every declared column, physical and metadata, in declaration order.
///
/// Built once per table ([`try_new`](Self::try_new)) and shared by its
/// subtasks; [`decode`](Self::decode) is pure and keeps no state between
/// calls.
#[derive(Debug)]
pub struct KafkaDecoder {
    schema: SchemaRef,
    columns: Vec<Column>,
    value: PartDecoder,
    /// The key's decoder, when some column is read from the key only (with
    /// `'value.fields-include' = 'ALL'` a key column is also in the value,
    /// which wins as in Flink, so the key need not be decoded).
    key: Option<PartDecoder>,
}

impl KafkaDecoder {
    /// The decoder of a table's rows: its layout (`format`, `key.format`,
    /// `key.fields`, ...) and metadata columns.
    pub fn try_new(request: &TableRequest<'_>, layout: &RecordLayout) -> Result<Self> {
        let schema = request.schema;
        let key_only: Vec<usize> = layout
            .key
            .as_ref()
            .map(|(_, cols)| {
                cols.iter()
                    .copied()
                    .filter(|c| !layout.value_columns.contains(c))
                    .collect()
            })
            .unwrap_or_default();
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            let column = if let Some(m) = request.metadata_of(field.name()) {
                Column::Metadata(match (m.key.as_str(), field.data_type()) {
                    ("topic", _) => Metadata::Topic,
                    ("partition", _) => Metadata::Partition,
                    ("offset", _) => Metadata::Offset,
                    ("timestamp", DataType::Timestamp(unit, tz)) => Metadata::Timestamp(*unit, tz.clone()),
                    ("timestamp-type", _) => Metadata::TimestampType,
                    ("key", _) => Metadata::Key,
                    (key, t) => {
                        return plan_err!(
                            "kafka: the source cannot read metadata '{key}' into column '{}' of type {t}",
                            field.name()
                        );
                    }
                })
            } else if let Some(j) = layout.value_columns.iter().position(|&c| c == i) {
                Column::Value(j)
            } else if let Some(j) = key_only.iter().position(|&c| c == i) {
                Column::Key(j)
            } else {
                return plan_err!(
                    "kafka: column '{}' is neither in the key nor in the value",
                    field.name()
                );
            };
            columns.push(column);
        }
        let value = PartDecoder::new(&layout.value_format, layout.value_schema(schema));
        let key = match &layout.key {
            Some((format, _)) if !key_only.is_empty() => Some(PartDecoder::new(
                format,
                Arc::new(schema.project(&key_only).map_err(DataFusionError::from)?),
            )),
            _ => None,
        };
        Ok(KafkaDecoder {
            schema: Arc::clone(schema),
            columns,
            value,
            key,
        })
    }

    /// The rows of the records of `buffer`, read from `origin`: one per
    /// record with a value, except malformed records skipped per
    /// `json.ignore-parse-errors` (added to `skipped`). `None` when no record
    /// gives a row. A malformed record otherwise fails, naming its topic,
    /// partition and offset.
    pub fn decode(
        &self,
        origin: Origin<'_>,
        buffer: &RecordBuffer,
        skipped: &mut u64,
    ) -> Result<Option<RecordBatch>> {
        // The records that give rows: those with a value.
        let mut rows: Vec<u32> = (0..buffer.records.len() as u32)
            .filter(|&r| buffer.records[r as usize].value.is_some())
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let mut values = self.decode_part(&self.value, Part::Value, origin, buffer, &mut rows, skipped)?;
        let keys = match &self.key {
            Some(key) => {
                let before = rows.clone();
                let keys = self.decode_part(key, Part::Key, origin, buffer, &mut rows, skipped)?;
                if rows.len() != before.len() {
                    // Some keys were malformed and skipped: drop their rows' values.
                    let keep = UInt32Array::from_iter_values(
                        rows.iter().map(|r| before.binary_search(r).unwrap_or(0) as u32),
                    );
                    values = values
                        .iter()
                        .map(|a| take(a.as_ref(), &keep, None))
                        .collect::<std::result::Result<_, _>>()?;
                }
                keys
            }
            None => Vec::new(),
        };
        if rows.is_empty() {
            return Ok(None);
        }
        let arrays = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Value(i) => Ok(Arc::clone(&values[*i])),
                Column::Key(i) => Ok(Arc::clone(&keys[*i])),
                Column::Metadata(m) => metadata_column(m, origin, buffer, &rows),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?))
    }

    /// Decodes the key or value of the records `rows` of `buffer` into
    /// columns with a row per entry of `rows`, after removing from `rows` the
    /// records found malformed and skipped. Null keys give null columns.
    fn decode_part(
        &self,
        decoder: &PartDecoder,
        part: Part,
        origin: Origin<'_>,
        buffer: &RecordBuffer,
        rows: &mut Vec<u32>,
        skipped: &mut u64,
    ) -> Result<Vec<ArrayRef>> {
        let bytes_of = |r: &RawRecord| match part {
            Part::Key => buffer.key(r),
            Part::Value => buffer.value(r),
        };
        match decoder {
            PartDecoder::Raw(data_type) => {
                let records = rows.iter().map(|&r| &buffer.records[r as usize]);
                let array: ArrayRef = match data_type {
                    DataType::Utf8 | DataType::LargeUtf8 => {
                        let mut b = StringBuilder::with_capacity(rows.len(), buffer.values.len());
                        for r in records {
                            match bytes_of(r).map(std::str::from_utf8) {
                                Some(Ok(s)) => b.append_value(s),
                                None => b.append_null(),
                                Some(Err(e)) => {
                                    return Err(malformed(
                                        origin,
                                        r.offset,
                                        part,
                                        format!("not UTF-8 text: {e}"),
                                        false,
                                    ));
                                }
                            }
                        }
                        Arc::new(b.finish())
                    }
                    _ => {
                        let mut b = BinaryBuilder::with_capacity(rows.len(), buffer.values.len());
                        for r in records {
                            b.append_option(bytes_of(r));
                        }
                        Arc::new(b.finish())
                    }
                };
                let array = if array.data_type() == data_type {
                    array
                } else {
                    cast(&array, data_type)?
                };
                Ok(vec![array])
            }
            PartDecoder::Json { decoder, on_error } => {
                // The records with bytes to decode (values: all of `rows`).
                let present: Vec<u32> = rows
                    .iter()
                    .copied()
                    .filter(|&r| bytes_of(&buffer.records[r as usize]).is_some())
                    .collect();
                let key_copy: Vec<u8>;
                let (bytes, spans): (&[u8], Vec<Range<usize>>) = match part {
                    // Consecutive: tombstones have no bytes.
                    Part::Value => (
                        &buffer.values,
                        present
                            .iter()
                            .map(|&r| buffer.records[r as usize].value.clone().unwrap_or_default())
                            .collect(),
                    ),
                    // Keys of rows left out may lie between: decode a copy,
                    // one key per line.
                    Part::Key => {
                        let mut copy = Vec::with_capacity(buffer.keys.len() + present.len());
                        let mut spans = Vec::with_capacity(present.len());
                        for &r in &present {
                            let start = copy.len();
                            copy.extend_from_slice(bytes_of(&buffer.records[r as usize]).unwrap_or_default());
                            spans.push(start..copy.len());
                            copy.push(b'\n');
                        }
                        key_copy = copy;
                        (&key_copy, spans)
                    }
                };
                let mut out = Vec::new();
                let mut skipped_here = Vec::new();
                let mut on_malformed = |i: usize, e: ArrowError| {
                    let offset = buffer.records[present[i] as usize].offset;
                    match on_error {
                        OnError::Skip => {
                            skipped_here.push(present[i]);
                            Ok(())
                        }
                        OnError::Fail => Err(malformed(origin, offset, part, e, true)),
                    }
                };
                decode_spans(decoder, bytes, &spans, 0, &mut on_malformed, &mut out)?;
                let schema = Arc::clone(&decoder.schema);
                let decoded = match out.len() {
                    0 => RecordBatch::new_empty(Arc::clone(&schema)),
                    1 => out
                        .pop()
                        .map(|(_, b)| b)
                        .unwrap_or_else(|| RecordBatch::new_empty(schema)),
                    _ => concat_batches(&schema, out.iter().map(|(_, b)| b))?,
                };
                *skipped += skipped_here.len() as u64;
                if !skipped_here.is_empty() {
                    rows.retain(|r| !skipped_here.contains(r));
                }
                if decoded.num_rows() == rows.len() {
                    return Ok(decoded.columns().to_vec());
                }
                // Null keys: null rows, placed by index.
                let decoded_rows: Vec<u32> = present
                    .into_iter()
                    .filter(|r| !skipped_here.contains(r))
                    .collect();
                let mut next = 0u32;
                let index = UInt32Array::from_iter(rows.iter().map(|r| {
                    if decoded_rows.get(next as usize) == Some(r) {
                        next += 1;
                        Some(next - 1)
                    } else {
                        None
                    }
                }));
                decoded
                    .columns()
                    .iter()
                    .map(|a| take(a.as_ref(), &index, None).map_err(DataFusionError::from))
                    .collect()
            }
        }
    }
}

/// A metadata column for the records `rows` of `buffer`.
fn metadata_column(
    m: &Metadata,
    origin: Origin<'_>,
    buffer: &RecordBuffer,
    rows: &[u32],
) -> Result<ArrayRef> {
    let records = || rows.iter().map(|&r| &buffer.records[r as usize]);
    Ok(match m {
        Metadata::Topic => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * origin.topic.len());
            for _ in rows {
                b.append_value(origin.topic);
            }
            Arc::new(b.finish())
        }
        Metadata::Partition => Arc::new(Int32Array::from_value(origin.partition, rows.len())),
        Metadata::Offset => Arc::new(Int64Array::from_iter_values(records().map(|r| r.offset))),
        Metadata::Timestamp(unit, tz) => {
            let millis = records().map(|r| r.timestamp.to_millis());
            match unit {
                TimeUnit::Second => {
                    timestamps::<TimestampSecondType>(millis.map(|t| t.map(|t| t.div_euclid(1000))), tz)
                }
                TimeUnit::Millisecond => timestamps::<TimestampMillisecondType>(millis, tz),
                TimeUnit::Microsecond => timestamps::<TimestampMicrosecondType>(
                    millis.map(|t| t.map(|t| t.saturating_mul(1000))),
                    tz,
                ),
                TimeUnit::Nanosecond => timestamps::<TimestampNanosecondType>(
                    millis.map(|t| t.map(|t| t.saturating_mul(1_000_000))),
                    tz,
                ),
            }
        }
        Metadata::TimestampType => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 10);
            for r in records() {
                b.append_value(match r.timestamp {
                    Timestamp::NotAvailable => "NoTimestampType",
                    Timestamp::CreateTime(_) => "CreateTime",
                    Timestamp::LogAppendTime(_) => "LogAppendTime",
                });
            }
            Arc::new(b.finish())
        }
        Metadata::Key => {
            let mut b = StringBuilder::with_capacity(rows.len(), buffer.keys.len());
            for r in records() {
                match buffer.key(r) {
                    None => b.append_null(),
                    Some(k) => match std::str::from_utf8(k) {
                        Ok(s) => b.append_value(s),
                        // Not text: shown with replacement characters (rare; allocates).
                        Err(_) => b.append_value(String::from_utf8_lossy(k)),
                    },
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// Epoch values (already in `T`'s unit) as a timestamp array with time zone `tz`.
fn timestamps<T: arrow::datatypes::ArrowTimestampType>(
    values: impl Iterator<Item = Option<i64>>,
    tz: &Option<Arc<str>>,
) -> ArrayRef {
    let mut b = PrimitiveBuilder::<T>::with_capacity(values.size_hint().0);
    for v in values {
        b.append_option(v);
    }
    // The record's timestamp is an instant: the zone only labels it (no shift).
    Arc::new(b.finish().with_timezone_opt(tz.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Int64Type, Schema};
    use weir_engine::connector::{ConnectorOptions, MetadataColumn};

    fn request_parts(
        options: &[(&str, &str)],
        metadata: &[(&str, &str)],
    ) -> (SchemaRef, ConnectorOptions, Vec<MetadataColumn>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("t", DataType::Utf8, true),
            Field::new("p", DataType::Int32, true),
            Field::new("o", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("tt", DataType::Utf8, true),
            Field::new("k", DataType::Utf8, true),
        ]));
        let options = crate::test_util::options(options);
        let metadata = metadata
            .iter()
            .map(|(c, k)| MetadataColumn {
                column: c.to_string(),
                key: k.to_string(),
                is_virtual: true,
            })
            .collect();
        (schema, options, metadata)
    }

    const ALL_METADATA: &[(&str, &str)] = &[
        ("t", "topic"),
        ("p", "partition"),
        ("o", "offset"),
        ("ts", "timestamp"),
        ("tt", "timestamp-type"),
        ("k", "key"),
    ];

    fn decoder(options: &[(&str, &str)]) -> KafkaDecoder {
        let (schema, options, metadata) = request_parts(options, ALL_METADATA);
        let request = TableRequest {
            schema: &schema,
            options: &options,
            metadata: &metadata,
            primary_key: &[],
        };
        let layout = RecordLayout::try_new(&request, false).unwrap();
        KafkaDecoder::try_new(&request, &layout).unwrap()
    }

    const ORIGIN: Origin<'static> = Origin {
        topic: "orders",
        partition: 3,
    };

    fn buffer(values: &[(i64, Option<&str>, Option<&str>)]) -> RecordBuffer {
        let mut b = RecordBuffer::default();
        for (offset, key, value) in values {
            b.push(
                *offset,
                Timestamp::CreateTime(1_700_000_000_000 + offset),
                key.map(str::as_bytes),
                value.map(str::as_bytes),
            );
        }
        b
    }

    #[test]
    fn values_and_metadata_in_table_order() {
        let d = decoder(&[("format", "json")]);
        let b = buffer(&[
            (40, Some("k1"), Some(r#"{"id": 1, "name": "a"}"#)),
            (41, None, None),
            (42, None, Some("{\n  \"id\": 2\n}")),
        ]);
        let mut skipped = 0;
        let batch = d.decode(ORIGIN, &b, &mut skipped).unwrap().unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(batch.num_rows(), 2, "the tombstone gives no row");
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values(), &[1, 2]);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "a");
        assert!(batch.column(1).is_null(1));
        assert_eq!(batch.column(2).as_string::<i32>().value(1), "orders");
        assert_eq!(
            batch
                .column(3)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            3
        );
        assert_eq!(batch.column(4).as_primitive::<Int64Type>().values(), &[40, 42]);
        let ts = batch
            .column(5)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(1), (1_700_000_000_000 + 42) * 1000);
        assert_eq!(batch.column(6).as_string::<i32>().value(0), "CreateTime");
        assert_eq!(batch.column(7).as_string::<i32>().value(0), "k1");
        assert!(batch.column(7).is_null(1));
    }

    #[test]
    fn malformed_records_name_topic_partition_and_offset() {
        let d = decoder(&[("format", "json")]);
        let b = buffer(&[
            (7, None, Some(r#"{"id": 1}"#)),
            (8, None, Some(r#"{"id": "x"}"#)),
            (9, None, Some(r#"{"id": 3"#)),
            (10, None, Some(r#"{"id": 4}"#)),
        ]);
        let mut skipped = 0;
        let e = d.decode(ORIGIN, &b, &mut skipped).unwrap_err().to_string();
        assert!(e.contains("topic 'orders' partition 3 at offset 8"), "{e}");
        assert!(e.contains("json.ignore-parse-errors"), "{e}");
    }

    #[test]
    fn malformed_records_are_skipped_and_counted() {
        let d = decoder(&[("format", "json"), ("json.ignore-parse-errors", "true")]);
        let b = buffer(&[
            (7, None, Some(r#"{"id": 1}"#)),
            (8, None, Some(r#"{"id": "x"}"#)),
            (9, None, Some(r#"{"id": 3"#)),
            (10, None, Some("[1, 2]")),
            (11, None, Some(r#"{"id": 5}"#)),
        ]);
        let mut skipped = 0;
        let batch = d.decode(ORIGIN, &b, &mut skipped).unwrap().unwrap();
        assert_eq!(skipped, 3);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values(), &[1, 5]);
        assert_eq!(
            batch.column(4).as_primitive::<Int64Type>().values(),
            &[7, 11],
            "offsets stay aligned"
        );
        let all_bad = buffer(&[(1, None, Some("nope"))]);
        assert!(d.decode(ORIGIN, &all_bad, &mut skipped).unwrap().is_none());
        assert_eq!(skipped, 4);
    }

    #[test]
    fn missing_fields_fail_when_asked() {
        let d = decoder(&[("format", "json"), ("json.fail-on-missing-field", "true")]);
        let b = buffer(&[
            (0, None, Some(r#"{"id": 1, "name": "a"}"#)),
            (1, None, Some(r#"{"id": 2}"#)),
        ]);
        let e = d.decode(ORIGIN, &b, &mut 0).unwrap_err().to_string();
        assert!(
            e.contains("offset 1") && e.contains("missing field 'name'"),
            "{e}"
        );
    }

    #[test]
    fn key_columns_from_a_json_key() {
        let d = decoder(&[
            ("format", "json"),
            ("key.format", "json"),
            ("key.fields", "id"),
            ("value.fields-include", "EXCEPT_KEY"),
            ("json.ignore-parse-errors", "true"),
        ]);
        let b = buffer(&[
            (0, Some(r#"{"id": 10}"#), Some(r#"{"name": "a", "id": 99}"#)),
            (1, None, Some(r#"{"name": "b"}"#)),
            (2, Some("bad"), Some(r#"{"name": "c"}"#)),
            (3, Some(r#"{"id": 13}"#), Some(r#"{"name": "d"}"#)),
        ]);
        let mut skipped = 0;
        let batch = d.decode(ORIGIN, &b, &mut skipped).unwrap().unwrap();
        assert_eq!(skipped, 1, "the malformed key");
        let ids = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids.value(0), 10, "from the key, not the value");
        assert!(ids.is_null(1), "no key: null key columns");
        assert_eq!(ids.value(2), 13);
        let names = batch.column(1).as_string::<i32>();
        assert_eq!((names.value(0), names.value(1), names.value(2)), ("a", "b", "d"));
        assert_eq!(batch.column(4).as_primitive::<Int64Type>().values(), &[0, 1, 3]);
    }

    #[test]
    fn raw_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("line", DataType::Utf8, true),
            Field::new("o", DataType::Int64, true),
        ]));
        let options = ConnectorOptions::new([("format".to_string(), "raw".to_string())].into());
        let metadata = vec![MetadataColumn {
            column: "o".into(),
            key: "offset".into(),
            is_virtual: true,
        }];
        let request = TableRequest {
            schema: &schema,
            options: &options,
            metadata: &metadata,
            primary_key: &[],
        };
        let layout = RecordLayout::try_new(&request, false).unwrap();
        let d = KafkaDecoder::try_new(&request, &layout).unwrap();
        let b = buffer(&[
            (5, None, Some("hello world")),
            (6, None, Some("")),
            (7, None, None),
        ]);
        let batch = d.decode(ORIGIN, &b, &mut 0).unwrap().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "hello world");
        assert_eq!(batch.column(0).as_string::<i32>().value(1), "");
        let mut bad = RecordBuffer::default();
        bad.push(9, Timestamp::NotAvailable, None, Some(&[0xff, 0xfe]));
        let e = d.decode(ORIGIN, &bad, &mut 0).unwrap_err().to_string();
        assert!(e.contains("offset 9") && e.contains("UTF-8"), "{e}");
    }
}

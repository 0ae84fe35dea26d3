//! Tests of the `filesystem` connector: options, and round trips through
//! the sink then the source, on real files.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray, StringViewArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;
use weir_engine::changelog::attach_ops;
use weir_engine::connector::{Connector, ConnectorOptions, SinkRequest};
use weir_engine::message::{Barrier, BarrierKind};
use weir_engine::metrics::OperatorMetrics;
use weir_engine::operator::Output;

use super::*;
use crate::test_util::{collect, collect_with, ctx, options};

fn check(kv: &[(&str, &str)]) -> Result<FileSystemOptions> {
    FileSystemOptions::try_new(&options(kv), &["a".to_string()])
}

#[test]
fn options_are_validated_per_format() {
    let ok = check(&[
        ("path", "/tmp/x"),
        ("format", "csv"),
        ("csv.field-delimiter", ";"),
    ])
    .unwrap();
    assert!(matches!(
        ok.format,
        Format::Csv(CsvOptions { delimiter: b';', .. })
    ));
    // A JSON option with the CSV format is unknown; the valid ones are listed.
    let e = check(&[
        ("path", "x"),
        ("format", "csv"),
        ("json.ignore-parse-errors", "true"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("'json.ignore-parse-errors'") && e.contains("csv.field-delimiter"),
        "{e}"
    );
    assert!(
        check(&[("path", "x")])
            .unwrap_err()
            .to_string()
            .contains("'format'")
    );
    assert!(
        check(&[("format", "json")])
            .unwrap_err()
            .to_string()
            .contains("'path'")
    );
    assert!(
        check(&[("path", "x"), ("format", "avro")])
            .unwrap_err()
            .to_string()
            .contains("'format'")
    );
    let e = check(&[("path", "x"), ("format", "csv"), ("csv.field-delimiter", ";;")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'csv.field-delimiter'"), "{e}");
    let e = check(&[
        ("path", "x"),
        ("format", "json"),
        ("json.ignore-parse-errors", "yes"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("'json.ignore-parse-errors'"), "{e}");
    let e = check(&[
        ("path", "x"),
        ("format", "json"),
        ("sink.rolling-policy.file-size", "big"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("'sink.rolling-policy.file-size'"), "{e}");
    let e = check(&[
        ("path", "x"),
        ("format", "parquet"),
        ("parquet.compression", "zstd"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("'parquet.compression'"), "{e}");
}

#[test]
fn memory_sizes() {
    assert_eq!(parse_memory_size("128 mb"), Some(128 << 20));
    assert_eq!(parse_memory_size("1kb"), Some(1024));
    assert_eq!(parse_memory_size("100"), Some(100));
    assert_eq!(parse_memory_size("1 parsec"), None);
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new(
            "ltz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("day", DataType::Date32, true),
        Field::new("price", DataType::Decimal128(10, 2), true),
        Field::new("tag", DataType::Utf8View, true),
    ]))
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    let ids: Vec<i64> = ids.collect();
    let col = |f: &dyn Fn(i64) -> bool| ids.iter().map(|i| f(*i)).collect::<Vec<_>>();
    let present = col(&|i| i % 3 != 1);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from(
            ids.iter()
                .zip(&present)
                .map(|(i, p)| p.then(|| format!("name \"{i}\", with, commas")))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            ids.iter()
                .zip(&present)
                .map(|(i, p)| p.then_some(*i as f64 * 1.5))
                .collect::<Vec<_>>(),
        )),
        Arc::new(BooleanArray::from(
            ids.iter()
                .zip(&present)
                .map(|(i, p)| p.then_some(i % 2 == 0))
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMillisecondArray::from(
            ids.iter()
                .zip(&present)
                .map(|(i, p)| p.then_some(1_704_067_205_000 + i * 1_001))
                .collect::<Vec<_>>(),
        )),
        Arc::new(
            TimestampMicrosecondArray::from(
                ids.iter()
                    .zip(&present)
                    .map(|(i, p)| p.then_some(1_704_067_205_000_000 + i * 7))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("+00:00"),
        ),
        Arc::new(Date32Array::from(
            ids.iter()
                .zip(&present)
                .map(|(i, p)| p.then_some(19_723 + *i as i32))
                .collect::<Vec<_>>(),
        )),
        Arc::new(
            Decimal128Array::from(
                ids.iter()
                    .zip(&present)
                    .map(|(i, p)| p.then_some(i128::from(*i) * 101))
                    .collect::<Vec<_>>(),
            )
            .with_precision_and_scale(10, 2)
            .unwrap(),
        ),
        Arc::new(StringViewArray::from(
            ids.iter()
                .zip(&present)
                .map(|(i, p)| p.then(|| format!("tag-{}", i % 4)))
                .collect::<Vec<_>>(),
        )),
    ];
    let b = RecordBatch::try_new(schema(), cols).unwrap();
    assert_eq!(b.num_rows(), n);
    b
}

fn table_options(dir: &Path, format: &str, extra: &[(&str, &str)]) -> ConnectorOptions {
    let path = dir.to_str().unwrap();
    let mut kv = vec![("connector", "filesystem"), ("path", path), ("format", format)];
    kv.extend_from_slice(extra);
    options(&kv)
}

/// Writes `batches` through one sink subtask, to the end.
async fn write(
    schema: SchemaRef,
    options: &ConnectorOptions,
    subtask: usize,
    batches: &[RecordBatch],
) -> Result<()> {
    let spec = FileSystemConnector.sink(schema.clone(), options)?;
    assert!(!spec.accepts_changelog());
    let mut sink = spec.create(
        &SinkRequest {
            schema,
            updating: false,
        },
        subtask,
        2,
    )?;
    sink.open(&ctx(subtask, 2)).await?;
    let mut out = Output::default();
    for b in batches {
        sink.process_batch(0, b.clone(), &mut out).await?;
    }
    sink.finish(&mut out).await?;
    sink.close().await?;
    assert!(out.is_empty());
    Ok(())
}

async fn read(schema: SchemaRef, options: &ConnectorOptions, parallelism: usize) -> Result<RecordBatch> {
    let spec = FileSystemConnector.source(schema.clone(), options)?;
    assert!(spec.is_bounded());
    let mut batches = Vec::new();
    for i in 0..parallelism {
        batches.extend(collect(spec.as_ref(), i, parallelism).await?);
    }
    Ok(concat_batches(&schema, &batches)?)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn round_trip(format: &str, extra: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let opts = table_options(&out, format, extra);
    write(schema(), &opts, 0, &[batch(0..10), batch(10..25)])
        .await
        .unwrap();
    write(schema(), &opts, 1, &[batch(25..30)]).await.unwrap();
    let files = names(&out);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("part-") && f.ends_with(&format!(".{format}"))),
        "{files:?}"
    );
    // One subtask or two: the same rows (files in name order, so subtask 0's first).
    let expected = concat_batches(&schema(), &[batch(0..10), batch(10..25), batch(25..30)]).unwrap();
    assert_eq!(read(schema(), &opts, 1).await.unwrap(), expected);
    assert_eq!(read(schema(), &opts, 2).await.unwrap(), expected);
}

#[tokio::test]
async fn json_round_trip() {
    round_trip("json", &[]).await;
    round_trip("json", &[("json.timestamp-format.standard", "ISO-8601")]).await;
}

#[tokio::test]
async fn json_timestamps_are_written_as_flink_sql() {
    let dir = tempfile::tempdir().unwrap();
    write(
        schema(),
        &table_options(dir.path(), "json", &[]),
        0,
        &[batch(0..2)],
    )
    .await
    .unwrap();
    let file = dir.path().join(&names(dir.path())[0]);
    let text = std::fs::read_to_string(file).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.contains(r#""ts":"2024-01-01 00:00:05""#), "{first}");
    assert!(first.contains(r#""ltz":"2024-01-01 00:00:05+00:00""#), "{first}");
    let second = text.lines().nth(1).unwrap();
    assert!(
        second.contains(r#""name":null"#) && second.contains(r#""ts":null"#),
        "{second}"
    );
}

#[tokio::test]
async fn csv_round_trip() {
    round_trip("csv", &[]).await;
    round_trip("csv", &[("csv.header", "true"), ("csv.field-delimiter", ";")]).await;
}

#[tokio::test]
async fn parquet_sink_is_readable_with_the_parquet_crate() {
    let dir = tempfile::tempdir().unwrap();
    let opts = table_options(dir.path(), "parquet", &[]);
    write(schema(), &opts, 0, &[batch(0..10), batch(10..20)])
        .await
        .unwrap();
    let files = names(dir.path());
    assert_eq!(files.len(), 1);
    let file = std::fs::File::open(dir.path().join(&files[0])).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let all = concat_batches(&batches[0].schema(), &batches).unwrap();
    let expected = concat_batches(&schema(), &[batch(0..10), batch(10..20)]).unwrap();
    assert_eq!(all.columns(), expected.columns());
    // And through the source, also a subset of the columns, reordered and cast.
    assert_eq!(read(schema(), &opts, 1).await.unwrap(), expected);
    let subset = Arc::new(Schema::new(vec![
        Field::new("score", DataType::Float64, true),
        Field::new("id", DataType::Utf8, false),
        Field::new("missing", DataType::Int32, true),
    ]));
    let part = read(subset.clone(), &table_options(dir.path(), "parquet", &[]), 1)
        .await
        .unwrap();
    assert_eq!(
        part.column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(19),
        "19"
    );
    assert_eq!(part.column(2).null_count(), 20);
    let strict = Arc::new(Schema::new(vec![Field::new("missing", DataType::Int32, false)]));
    let err = read(strict, &table_options(dir.path(), "parquet", &[]), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("'missing'"), "{err}");
}

fn ts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

#[tokio::test]
async fn json_timestamps_in_all_forms() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.json"),
        "{\"id\": 1, \"ts\": \"2024-01-01 00:00:05\"}\n\
         {\"id\": 2, \"ts\": \"2024-01-01T00:00:05Z\"}\n\
         \n\
         {\"id\": 3, \"ts\": 1704067205000, \"other\": [1, 2]}\n\
         {\"id\": 4, \"ts\": \"2024-01-01 00:00:05.250\"}\n\
         {\"id\": 5}\n",
    )
    .unwrap();
    let b = read(ts_schema(), &table_options(dir.path(), "json", &[]), 1)
        .await
        .unwrap();
    let ts = b
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(
        ts.iter().collect::<Vec<_>>(),
        vec![
            Some(1_704_067_205_000),
            Some(1_704_067_205_000),
            Some(1_704_067_205_000),
            Some(1_704_067_205_250),
            None
        ]
    );
    // With json.fail-on-missing-field, line 6 lacks 'ts'.
    let err = read(
        ts_schema(),
        &table_options(dir.path(), "json", &[("json.fail-on-missing-field", "true")]),
        1,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("in.json:6") && err.contains("missing field 'ts'"),
        "{err}"
    );
}

#[tokio::test]
async fn csv_timestamps_and_quoted_newlines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "1,2024-01-01 00:00:05\n2,2024-01-01T00:00:05Z\n3,\n",
    )
    .unwrap();
    let b = read(ts_schema(), &table_options(dir.path(), "csv", &[]), 1)
        .await
        .unwrap();
    let ts = b
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(
        ts.iter().collect::<Vec<_>>(),
        vec![Some(1_704_067_205_000), Some(1_704_067_205_000), None]
    );

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ]));
    std::fs::write(dir.path().join("in.csv"), "1,\"two\nlines\"\nx,bad\n3,three\n").unwrap();
    let err = read(schema.clone(), &table_options(dir.path(), "csv", &[]), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in.csv:3: malformed record"), "{err}");
    let b = read(
        schema,
        &table_options(dir.path(), "csv", &[("csv.ignore-parse-errors", "true")]),
        1,
    )
    .await
    .unwrap();
    let s = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(s.value(0), "two\nlines");
    assert_eq!(s.value(1), "three");
}

#[tokio::test]
async fn malformed_json_fails_with_file_and_line_or_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..20_000 {
        match i {
            12_345 => text.push_str("{\"id\": 12345, \"ts\": \"not a time\"}\n"),
            15_000 => text.push_str("{\"id\": 15000,\n"),
            _ => text.push_str(&format!("{{\"id\": {i}}}\n")),
        }
    }
    std::fs::write(dir.path().join("big.json"), text).unwrap();
    let err = read(ts_schema(), &table_options(dir.path(), "json", &[]), 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("big.json:12346: malformed record"), "{err}");

    let opts = table_options(dir.path(), "json", &[("json.ignore-parse-errors", "true")]);
    let spec = FileSystemConnector.source(ts_schema(), &opts).unwrap();
    let ctx = ctx(0, 1);
    let batches = collect_with(spec.as_ref(), &ctx).await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 19_998);
    assert_eq!(OperatorMetrics::get(&ctx.metrics.records_skipped), 2);
    // Order within the file is preserved.
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn files_are_split_over_subtasks_and_hidden_files_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("a.json"), "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
    std::fs::write(dir.path().join("b.json"), "{\"id\": 3}\n").unwrap();
    std::fs::write(dir.path().join("sub/c.json"), "{\"id\": 4}\n").unwrap();
    std::fs::write(dir.path().join(".hidden.json"), "garbage\n").unwrap();
    std::fs::write(dir.path().join("_SUCCESS"), "garbage\n").unwrap();
    let opts = table_options(dir.path(), "json", &[]);
    let spec = FileSystemConnector.source(ts_schema(), &opts).unwrap();
    assert_eq!(spec.max_parallelism(), Some(3));
    let ids = |batches: Vec<RecordBatch>| -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    assert_eq!(ids(collect(spec.as_ref(), 0, 2).await.unwrap()), vec![1, 2, 4]);
    assert_eq!(ids(collect(spec.as_ref(), 1, 2).await.unwrap()), vec![3]);
    assert_eq!(
        ids(collect(spec.as_ref(), 3, 4).await.unwrap()),
        Vec::<i64>::new()
    );
    // A single file as the path.
    let single = table_options(&dir.path().join("b.json"), "json", &[]);
    assert_eq!(read(ts_schema(), &single, 1).await.unwrap().num_rows(), 1);
    // A missing path fails when the job starts, naming it.
    let missing = table_options(&dir.path().join("nope"), "json", &[]);
    let spec = FileSystemConnector.source(ts_schema(), &missing).unwrap();
    let err = spec.create(0, 1).err().unwrap().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test]
async fn part_files_go_from_in_progress_to_pending_to_committed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = table_options(dir.path(), "json", &[("sink.rolling-policy.file-size", "1kb")]);
    let spec = FileSystemConnector.sink(schema(), &opts).unwrap();
    let mut sink = spec
        .create(
            &SinkRequest {
                schema: schema(),
                updating: false,
            },
            0,
            1,
        )
        .unwrap();
    sink.open(&ctx(0, 1)).await.unwrap();
    let mut out = Output::default();
    sink.process_batch(0, batch(0..3), &mut out).await.unwrap();
    let hidden = names(dir.path());
    assert_eq!(hidden.len(), 1);
    assert!(
        hidden[0].starts_with(".part-0-") && hidden[0].ends_with(".json.inprogress"),
        "{hidden:?}"
    );
    // The barrier of checkpoint 1 rolls the file to pending: still hidden.
    let barrier = Barrier {
        checkpoint_id: 1,
        kind: BarrierKind::Checkpoint,
    };
    sink.snapshot_state(barrier, &mut out).await.unwrap();
    assert!(names(dir.path()).iter().all(|n| n.starts_with('.')));
    // A big batch rolls by size (1 kb) into a pending file of no checkpoint yet.
    sink.process_batch(0, batch(3..40), &mut out).await.unwrap();
    // Checkpoint 1 completes: its file (only) is committed; twice is harmless.
    sink.notify_checkpoint_complete(1).await.unwrap();
    sink.notify_checkpoint_complete(1).await.unwrap();
    let visible: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(visible.len(), 1);
    // The file rolled by size waits, hidden, for the next checkpoint or the end.
    let waiting: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    sink.process_batch(0, batch(40..41), &mut out).await.unwrap();
    // A failure: close without finish deletes the in-progress file.
    sink.close().await.unwrap();
    assert!(
        !names(dir.path())
            .iter()
            .any(|n| n.ends_with(".inprogress") && n.contains("-2.")),
        "{:?}",
        names(dir.path())
    );
    // Another sink instance never collides with the first one's files.
    write(schema(), &opts, 0, &[batch(0..40)]).await.unwrap();
    let visible: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(visible.len(), 2, "{visible:?}");
}

#[tokio::test]
async fn sink_rejects_retractions() {
    let dir = tempfile::tempdir().unwrap();
    let opts = table_options(dir.path(), "csv", &[]);
    let spec = FileSystemConnector.sink(schema(), &opts).unwrap();
    let mut sink = spec
        .create(
            &SinkRequest {
                schema: schema(),
                updating: true,
            },
            0,
            1,
        )
        .unwrap();
    sink.open(&ctx(0, 1)).await.unwrap();
    let mut out = Output::default();
    let inserts = attach_ops(&batch(0..2), Arc::new(arrow::array::Int8Array::from(vec![0, 0]))).unwrap();
    sink.process_batch(0, inserts, &mut out).await.unwrap();
    let deletes = attach_ops(&batch(0..2), Arc::new(arrow::array::Int8Array::from(vec![0, 3]))).unwrap();
    let err = sink
        .process_batch(0, deletes, &mut out)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only") && err.contains("-D"), "{err}");
}

#[test]
fn options_are_listed_for_the_registry() {
    let names: Vec<&str> = FileSystemConnector.options().iter().map(|o| o.name).collect();
    for n in [
        "path",
        "format",
        "json.ignore-parse-errors",
        "csv.field-delimiter",
        "parquet.compression",
    ] {
        assert!(names.contains(&n), "{n}");
    }
}

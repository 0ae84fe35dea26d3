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
    let snapshot = sink.snapshot_state(barrier, &mut out).await.unwrap();
    assert_eq!(snapshot.operator_state.len(), 1);
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

mod resume {
    use super::*;
    use crate::test_util::resume::{check_exact_resume, check_rescale, start};
    use serde_json::{Value, json};
    use weir_engine::checkpoint::targets::SnapshotTargets;
    use weir_engine::key_group::{DEFAULT_MAX_PARALLELISM, KeyGroupRange};
    use weir_engine::operator::Operator;
    use weir_engine::state::{HashMapBackendFactory, StateInit, StateScope};

    /// Three files of `format` with 20,000, 9,000 and 17,000 rows, named
    /// `0.<format>` to `2.<format>`.
    async fn three_files(dir: &Path, format: &str, extra: &[(&str, &str)]) -> ConnectorOptions {
        let parts = [
            vec![batch(0..10_000), batch(10_000..20_000)],
            vec![batch(20_000..29_000)],
            vec![batch(29_000..46_000)],
        ];
        for (i, batches) in parts.iter().enumerate() {
            let tmp = dir.join("tmp");
            write(schema(), &table_options(&tmp, format, extra), 0, batches)
                .await
                .unwrap();
            let written = names(&tmp);
            assert_eq!(written.len(), 1);
            std::fs::rename(tmp.join(&written[0]), dir.join(format!("{i}.{format}"))).unwrap();
            std::fs::remove_dir(&tmp).unwrap();
        }
        table_options(dir, format, extra)
    }

    async fn check_source(format: &str, extra: &[(&str, &str)]) -> Vec<Vec<Value>> {
        let dir = tempfile::tempdir().unwrap();
        let opts = three_files(dir.path(), format, extra).await;
        let spec = FileSystemConnector.source(schema(), &opts).unwrap();
        let spec = spec.as_ref();
        let mut snapshots = Vec::new();
        for before in [1, 2, 4] {
            snapshots = check_exact_resume(spec, 2, before, None).await;
        }
        for before in [1, 2, 3] {
            check_rescale(spec, 2, 3, before).await;
            check_rescale(spec, 2, 1, before).await;
            check_rescale(spec, 3, 2, before).await;
        }
        check_rescale(spec, 1, 2, 2).await;
        snapshots
    }

    #[tokio::test]
    async fn json_resumes_exactly_and_rescales() {
        // Subtask 0 of 2 reads files 0 and 2, in batches of up to 8192
        // records: after four batches (three of file 0), it is in file 2.
        let snapshots = check_source("json", &[]).await;
        assert_eq!(snapshots[0].len(), 1, "{:?}", snapshots[0]);
        let entry = &snapshots[0][0];
        assert!(entry["path"].as_str().unwrap().ends_with("2.json"), "{entry}");
        assert_eq!(entry["line"], json!(8193));
        assert!(entry["offset"].as_u64().unwrap() > 0);
        // Subtask 1 (file 1, 9,000 rows: two batches) finished: nothing left.
        assert_eq!(snapshots[1], Vec::<Value>::new());
    }

    #[tokio::test]
    async fn csv_with_header_resumes_exactly_and_rescales() {
        check_source("csv", &[("csv.header", "true")]).await;
    }

    #[tokio::test]
    async fn parquet_resumes_exactly_and_rescales() {
        let snapshots = check_source("parquet", &[]).await;
        assert_eq!(snapshots[0][0]["rows"], json!(8192));
    }

    #[tokio::test]
    async fn a_changed_file_fails_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let opts = table_options(dir.path(), "json", &[]);
        std::fs::write(dir.path().join("a.json"), "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
        let spec = FileSystemConnector.source(ts_schema(), &opts).unwrap();
        let gone = json!({"path": dir.path().join("b.json").to_str().unwrap(), "offset": 0, "line": 1});
        let err = start(spec.as_ref(), 0, 1, Some(vec![gone]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("b.json") && err.contains("gone"), "{err}");
        let past = json!({"path": dir.path().join("a.json").to_str().unwrap(), "offset": 100, "line": 3});
        let mut s = start(spec.as_ref(), 0, 1, Some(vec![past])).await.unwrap();
        let err = s.poll_next().await.unwrap_err().to_string();
        assert!(err.contains("a.json") && err.contains("changed"), "{err}");
        // No entries: nothing to read.
        let mut s = start(spec.as_ref(), 0, 1, Some(Vec::new())).await.unwrap();
        assert!(matches!(
            s.poll_next().await.unwrap(),
            weir_engine::source::SourceEvent::Finished
        ));
    }

    // The exactly-once sink.

    fn checkpoint(id: u64) -> Barrier {
        Barrier {
            checkpoint_id: id,
            kind: BarrierKind::Checkpoint,
        }
    }

    fn state_init(
        dir: &Path,
        subtask: usize,
        parallelism: usize,
        entries: Option<Vec<Value>>,
        restored_from: Option<u64>,
    ) -> StateInit {
        let scope = StateScope {
            job_name: "test".into(),
            operator_id: "sink".into(),
            subtask,
            key_groups: KeyGroupRange::for_subtask(subtask, parallelism, DEFAULT_MAX_PARALLELISM),
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            local_dir: dir.join(format!("local-{subtask}")),
        };
        StateInit::new(
            scope,
            Arc::new(HashMapBackendFactory),
            Arc::new(SnapshotTargets::new(None, false)),
            Vec::new(),
            entries,
            restored_from,
        )
    }

    /// Sink subtask `subtask` of `parallelism` with checkpoints on, started
    /// fresh or restored.
    async fn sink(
        out_dir: &Path,
        state_dir: &Path,
        subtask: usize,
        parallelism: usize,
        restore: Option<(Vec<Value>, u64)>,
    ) -> Box<dyn Operator> {
        let opts = table_options(out_dir, "json", &[]);
        let spec = FileSystemConnector.sink(schema(), &opts).unwrap();
        let mut sink = spec
            .create(
                &SinkRequest {
                    schema: schema(),
                    updating: false,
                },
                subtask,
                parallelism,
            )
            .unwrap();
        let mut ctx = ctx(subtask, parallelism);
        ctx.checkpointing = true;
        let (entries, restored_from) = match restore {
            Some((e, r)) => (Some(e), Some(r)),
            None => (None, None),
        };
        sink.initialize_state(
            &ctx,
            state_init(state_dir, subtask, parallelism, entries, restored_from),
        )
        .await
        .unwrap();
        sink.open(&ctx).await.unwrap();
        sink
    }

    fn visible(dir: &Path) -> Vec<String> {
        names(dir).into_iter().filter(|n| !n.starts_with('.')).collect()
    }

    fn hidden(dir: &Path) -> Vec<String> {
        names(dir).into_iter().filter(|n| n.starts_with('.')).collect()
    }

    /// The ids of the committed rows, sorted.
    async fn committed_ids(dir: &Path) -> Vec<i64> {
        let b = read(schema(), &table_options(dir, "json", &[]), 1).await.unwrap();
        let mut ids = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec();
        ids.sort();
        ids
    }

    async fn snapshot(sink: &mut dyn Operator, id: u64) -> Vec<Value> {
        let mut out = Output::default();
        let s = sink.snapshot_state(checkpoint(id), &mut out).await.unwrap();
        assert!(s.keyed.is_none() && out.is_empty());
        s.operator_state
    }

    async fn rows(sink: &mut dyn Operator, ids: std::ops::Range<i64>) {
        sink.process_batch(0, batch(ids), &mut Output::default())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn checkpoints_commit_their_own_files_only() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut s = sink(dir.path(), state.path(), 0, 1, None).await;
        rows(s.as_mut(), 0..10).await;
        let c1 = snapshot(s.as_mut(), 1).await;
        assert_eq!(c1.len(), 1);
        assert_eq!(c1[0]["checkpoint"], json!(1));
        let name = c1[0]["file"].as_str().unwrap().to_string();
        assert!(name.starts_with("part-0-") && name.ends_with(".json"), "{name}");
        // The pending file's name tells its checkpoint.
        assert_eq!(hidden(dir.path()), vec![format!(".{name}.ckp-1.pending")]);
        rows(s.as_mut(), 10..25).await;
        let c2 = snapshot(s.as_mut(), 2).await;
        // Checkpoint 1's file is not committed yet: listed again.
        assert_eq!(c2.len(), 2);
        assert!(visible(dir.path()).is_empty());
        s.notify_checkpoint_complete(1).await.unwrap();
        assert_eq!(visible(dir.path()), vec![name]);
        assert_eq!(committed_ids(dir.path()).await, (0..10).collect::<Vec<_>>());
        s.notify_checkpoint_complete(2).await.unwrap();
        s.notify_checkpoint_complete(2).await.unwrap();
        assert_eq!(committed_ids(dir.path()).await, (0..25).collect::<Vec<_>>());
        assert!(hidden(dir.path()).is_empty());
        // A checkpoint with nothing new lists nothing; finish commits nothing.
        assert!(snapshot(s.as_mut(), 3).await.is_empty());
        rows(s.as_mut(), 25..30).await;
        s.finish(&mut Output::default()).await.unwrap();
        assert_eq!(committed_ids(dir.path()).await.len(), 25);
    }

    #[tokio::test]
    async fn an_aborted_checkpoint_is_committed_by_the_next() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut s = sink(dir.path(), state.path(), 0, 1, None).await;
        rows(s.as_mut(), 0..10).await;
        snapshot(s.as_mut(), 1).await;
        s.notify_checkpoint_aborted(1).await.unwrap();
        rows(s.as_mut(), 10..20).await;
        snapshot(s.as_mut(), 2).await;
        s.notify_checkpoint_complete(2).await.unwrap();
        assert_eq!(committed_ids(dir.path()).await, (0..20).collect::<Vec<_>>());
    }

    /// Writes checkpoint 1 (rows 0..10), checkpoint 2 (rows 10..20) and an
    /// in-progress file (rows 20..25), with no notification, and crashes.
    /// Returns the state of both checkpoints.
    async fn crashed_run(dir: &Path, state: &Path) -> (Vec<Value>, Vec<Value>) {
        let mut s = sink(dir, state, 0, 1, None).await;
        rows(s.as_mut(), 0..10).await;
        let c1 = snapshot(s.as_mut(), 1).await;
        rows(s.as_mut(), 10..20).await;
        let c2 = snapshot(s.as_mut(), 2).await;
        rows(s.as_mut(), 20..25).await;
        drop(s);
        let h = hidden(dir);
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h.iter().filter(|n| n.ends_with(".inprogress")).count(), 1);
        (c1, c2)
    }

    #[tokio::test]
    async fn a_restore_commits_its_checkpoint_and_deletes_what_came_after() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (c1, _) = crashed_run(dir.path(), state.path()).await;
        let mut s = sink(dir.path(), state.path(), 0, 1, Some((c1, 1))).await;
        assert!(hidden(dir.path()).is_empty(), "{:?}", names(dir.path()));
        assert_eq!(committed_ids(dir.path()).await, (0..10).collect::<Vec<_>>());
        // The restored run goes on; its files never collide with the old ones.
        rows(s.as_mut(), 10..30).await;
        let c2 = snapshot(s.as_mut(), 2).await;
        assert_eq!(c2.len(), 1);
        s.notify_checkpoint_complete(2).await.unwrap();
        assert_eq!(committed_ids(dir.path()).await, (0..30).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_restore_from_the_later_checkpoint_commits_both() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, c2) = crashed_run(dir.path(), state.path()).await;
        let _s = sink(dir.path(), state.path(), 0, 1, Some((c2, 2))).await;
        assert!(hidden(dir.path()).is_empty(), "{:?}", names(dir.path()));
        assert_eq!(visible(dir.path()).len(), 2);
        assert_eq!(committed_ids(dir.path()).await, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn restoring_twice_is_idempotent() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (c1, _) = crashed_run(dir.path(), state.path()).await;
        drop(sink(dir.path(), state.path(), 0, 1, Some((c1.clone(), 1))).await);
        let after = names(dir.path());
        drop(sink(dir.path(), state.path(), 0, 1, Some((c1, 1))).await);
        assert_eq!(names(dir.path()), after);
        assert_eq!(committed_ids(dir.path()).await, (0..10).collect::<Vec<_>>());

        // A crash in the middle of committing checkpoint 2's state: the first
        // file is renamed already, the second not.
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, c2) = crashed_run(dir.path(), state.path()).await;
        let first = c2[0]["file"].as_str().unwrap();
        std::fs::rename(
            dir.path().join(format!(".{first}.ckp-1.pending")),
            dir.path().join(first),
        )
        .unwrap();
        drop(sink(dir.path(), state.path(), 0, 1, Some((c2.clone(), 2))).await);
        let after = names(dir.path());
        drop(sink(dir.path(), state.path(), 0, 1, Some((c2, 2))).await);
        assert_eq!(names(dir.path()), after);
        assert!(hidden(dir.path()).is_empty(), "{after:?}");
        assert_eq!(committed_ids(dir.path()).await, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_rescaled_restore_splits_the_cleanup_between_subtasks() {
        let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Three subtasks, each with a file of checkpoint 1, one of checkpoint
        // 2, and an in-progress one.
        let mut c1 = Vec::new();
        for i in 0..3 {
            let mut s = sink(dir.path(), state.path(), i, 3, None).await;
            let base = i as i64 * 100;
            rows(s.as_mut(), base..base + 10).await;
            c1.push(snapshot(s.as_mut(), 1).await);
            rows(s.as_mut(), base + 10..base + 20).await;
            snapshot(s.as_mut(), 2).await;
            rows(s.as_mut(), base + 20..base + 30).await;
        }
        assert_eq!(hidden(dir.path()).len(), 9);
        // Restored at parallelism 2 from checkpoint 1: subtask 0 cleans the
        // files of old subtasks 0 and 2, subtask 1 those of old subtask 1.
        let shares = crate::test_util::resume::deal(&c1, 2);
        let _s0 = sink(dir.path(), state.path(), 0, 2, Some((shares[0].clone(), 1))).await;
        // It committed the checkpoint-1 files dealt to it (old 0 and 2) and
        // left old subtask 1's files alone, for subtask 1.
        let left = hidden(dir.path());
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.iter().all(|n| n.starts_with(".part-1-")), "{left:?}");
        assert_eq!(visible(dir.path()).len(), 2);
        let _s1 = sink(dir.path(), state.path(), 1, 2, Some((shares[1].clone(), 1))).await;
        assert!(hidden(dir.path()).is_empty(), "{:?}", names(dir.path()));
        let expected: Vec<i64> = (0..3).flat_map(|i| i * 100..i * 100 + 10).collect();
        assert_eq!(committed_ids(dir.path()).await, expected);
    }
}

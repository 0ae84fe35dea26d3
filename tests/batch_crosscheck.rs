//! Streaming window aggregates on finite input, cross-checked against
//! DataFusion's batch engine.
//!
//! The same generated rows are written as JSON-lines files (read by weir's
//! `filesystem` source, at parallelism 1 and 4) and loaded into a DataFusion
//! `MemTable`. Each window query runs on weir as a window TVF aggregate and on
//! DataFusion as an ordinary `GROUP BY` over computed window bounds
//! (`date_bin` for TUMBLE, a cross join with the window offsets for HOP and
//! CUMULATE, window functions for SESSION); the sorted rows must be equal.
//!
//! The data has no late rows: rows are out of order by at most 4 s within a
//! file, the watermark delay is 5 s, and each file's rows are later than the
//! previous file's (so reading the files one after the other, at parallelism
//! 1, makes none late either). Amounts are multiples of 0.25, so sums and
//! averages are exact whatever the order of summation.

use std::sync::Arc;

use weir::Engine;
use weir::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use weir::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use weir::arrow::record_batch::RecordBatch;
use weir::datafusion::datasource::MemTable;
use weir::datafusion::prelude::SessionContext;

/// Rows per file, and files. 2 batches per file (the source reads 8192 records at a time).
const ROWS_PER_FILE: usize = 10_000;
const FILES: usize = 3;
/// 2024-01-01 10:00:00 UTC, in ms.
const T0: i64 = 1_704_103_200_000;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Fixture {
    /// The directory of the JSON files (kept alive while the fixture is).
    dir: tempfile::TempDir,
    /// The same rows, for DataFusion.
    batch: RecordBatch,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("qty", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]))
}

/// Rows 10:00 to ~10:30: each file covers its own 10 minutes; within a file
/// times advance by ~60 ms per row with up to 4 s of disorder.
fn fixture() -> Fixture {
    let mut rng = Rng(42);
    let (mut ids, mut keys, mut amounts, mut qtys, mut times) = (vec![], vec![], vec![], vec![], vec![]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    for file in 0..FILES {
        let mut lines = String::new();
        let start = T0 + file as i64 * 600_000;
        for i in 0..ROWS_PER_FILE {
            let id = (file * ROWS_PER_FILE + i) as i64;
            // Base time leaves 4 s of room at both ends of the file's 10 minutes.
            let base = start + 4_000 + (i as i64 * 591_000 / ROWS_PER_FILE as i64);
            let ts = base - rng.below(4_000) as i64;
            let k = match rng.below(100) {
                0 => None,
                r => Some(format!("k{}", r % 7)),
            };
            let amount = match rng.below(50) {
                0 => None,
                r => Some((rng.below(2_000) as f64) * 0.25 + r as f64),
            };
            let qty = match rng.below(40) {
                0 => None,
                _ => Some(rng.below(20) as i64 - 5),
            };
            let ts_text = {
                let a = TimestampMillisecondArray::from(vec![ts]);
                let b = RecordBatch::try_from_iter([("t", Arc::new(a) as ArrayRef)]).expect("one column");
                weir::format::rows(&b).expect("formattable").remove(0).remove(0)
            };
            let json_opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
            lines.push_str(&format!(
                "{{\"id\": {id}, \"k\": {}, \"amount\": {}, \"qty\": {}, \"ts\": \"{ts_text}\"}}\n",
                json_opt(k.as_ref().map(|k| format!("\"{k}\""))),
                json_opt(amount.map(|a| format!("{a:?}"))),
                json_opt(qty.map(|q| q.to_string())),
            ));
            ids.push(id);
            keys.push(k);
            amounts.push(amount);
            qtys.push(qty);
            times.push(ts);
        }
        std::fs::write(dir.path().join(format!("part-{file}.json")), lines).expect("write a data file");
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(keys)),
        Arc::new(Float64Array::from(amounts)),
        Arc::new(Int64Array::from(qtys)),
        Arc::new(TimestampMillisecondArray::from(times)),
    ];
    let batch = RecordBatch::try_new(schema(), columns).expect("columns match the schema");
    Fixture { dir, batch }
}

async fn weir_rows(fixture: &Fixture, parallelism: usize, sql: &str) -> Vec<Vec<String>> {
    let engine = Engine::builder()
        .with_config("parallelism.default", parallelism.to_string())
        .build()
        .expect("valid configuration");
    engine
        .execute(&format!(
            "CREATE TABLE t (id BIGINT, k STRING, amount DOUBLE, qty BIGINT, ts TIMESTAMP(3),
                             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            fixture.dir.path().display()
        ))
        .await
        .expect("CREATE TABLE");
    let result = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("weir: {sql}: {e}"));
    assert!(!result.is_updating(), "a window aggregate is append-only");
    let job = result.job().clone();
    let batches = result
        .collect()
        .await
        .unwrap_or_else(|e| panic!("weir: {sql}: {e}"));
    let late: u64 = job.metrics().iter().map(|m| m.late_rows_dropped).sum();
    assert_eq!(late, 0, "the data has no late rows (parallelism {parallelism})");
    sorted_rows(&batches)
}

async fn datafusion_rows(fixture: &Fixture, sql: &str) -> Vec<Vec<String>> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema(), vec![vec![fixture.batch.clone()]]).expect("a MemTable");
    ctx.register_table("t", Arc::new(table)).expect("register");
    let df = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("DataFusion: {sql}: {e}"));
    let batches = df
        .collect()
        .await
        .unwrap_or_else(|e| panic!("DataFusion: {sql}: {e}"));
    sorted_rows(&batches)
}

fn sorted_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = batches
        .iter()
        .flat_map(|b| weir::format::rows(b).expect("formattable"))
        .collect();
    rows.sort();
    rows
}

/// Runs the streaming query at parallelism 1 and 4 and the batch query once,
/// and compares.
async fn crosscheck(name: &str, streaming: &str, batch: &str) {
    let fixture = fixture();
    let expected = datafusion_rows(&fixture, batch).await;
    assert!(
        expected.len() > 10,
        "{name}: the batch query gives {} rows; expected a real workload",
        expected.len()
    );
    for parallelism in [1, 4] {
        let actual = weir_rows(&fixture, parallelism, streaming).await;
        if actual != expected {
            let missing: Vec<_> = expected.iter().filter(|r| !actual.contains(r)).take(10).collect();
            let extra: Vec<_> = actual.iter().filter(|r| !expected.contains(r)).take(10).collect();
            panic!(
                "{name} at parallelism {parallelism}: weir gives {} rows, DataFusion {}.\n\
                 In DataFusion's result only (first 10): {missing:#?}\n\
                 In weir's result only (first 10): {extra:#?}",
                actual.len(),
                expected.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tumble_per_key() {
    crosscheck(
        "TUMBLE per key",
        "SELECT window_start, window_end, k, count(*), count(amount), sum(amount), avg(amount), min(qty), max(qty)
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end, k",
        "SELECT ws, ws + INTERVAL '1 minute', k, count(*), count(amount), sum(amount), avg(amount), min(qty), max(qty)
         FROM (SELECT date_bin(INTERVAL '1 minute', ts) AS ws, k, amount, qty FROM t)
         GROUP BY ws, k",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tumble_global_with_offset_and_distinct() {
    crosscheck(
        "TUMBLE with offset",
        "SELECT window_start, window_end, count(*), sum(qty), count(DISTINCT k), max(ts)
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' MINUTE, INTERVAL '30' SECOND))
         GROUP BY window_start, window_end",
        "SELECT ws, ws + INTERVAL '2 minutes', count(*), sum(qty), count(DISTINCT k), max(ts)
         FROM (SELECT date_bin(INTERVAL '2 minutes', ts, TIMESTAMP '1970-01-01 00:00:30') AS ws, k, qty, ts FROM t)
         GROUP BY ws",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hop_per_key() {
    // A row at t is in the windows starting at floor(t, slide) - i * slide, i in 0..size/slide.
    crosscheck(
        "HOP per key",
        "SELECT window_start, window_end, k, count(*), sum(amount), avg(qty)
         FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '30' SECOND, INTERVAL '2' MINUTE))
         GROUP BY window_start, window_end, k",
        "SELECT ws, ws + INTERVAL '2 minutes', k, count(*), sum(amount), avg(qty)
         FROM (SELECT date_bin(INTERVAL '30 seconds', ts) - o.back AS ws, k, amount, qty
               FROM t CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '30 seconds'),
                                         (INTERVAL '60 seconds'), (INTERVAL '90 seconds')) AS o(back))
         GROUP BY ws, k",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cumulate_global() {
    // A row at t is in the windows [floor(t, max), floor(t, max) + j * step) that end after t.
    crosscheck(
        "CUMULATE",
        "SELECT window_start, window_end, count(*), sum(amount), min(amount), count(DISTINCT k)
         FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
         GROUP BY window_start, window_end",
        "SELECT ws, ws + s.len AS we, count(*), sum(amount), min(amount), count(DISTINCT k)
         FROM (SELECT date_bin(INTERVAL '5 minutes', ts) AS ws, ts, k, amount FROM t)
              CROSS JOIN (VALUES (INTERVAL '1 minute'), (INTERVAL '2 minutes'), (INTERVAL '3 minutes'),
                                 (INTERVAL '4 minutes'), (INTERVAL '5 minutes')) AS s(len)
         WHERE ws + s.len > ts
         GROUP BY ws, ws + s.len",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cumulate_per_key() {
    crosscheck(
        "CUMULATE per key",
        "SELECT window_start, window_end, k, count(*), max(qty)
         FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '20' SECOND, INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end, k",
        "SELECT ws, ws + s.len AS we, k, count(*), max(qty)
         FROM (SELECT date_bin(INTERVAL '1 minute', ts) AS ws, ts, k, qty FROM t)
              CROSS JOIN (VALUES (INTERVAL '20 seconds'), (INTERVAL '40 seconds'), (INTERVAL '60 seconds')) AS s(len)
         WHERE ws + s.len > ts
         GROUP BY ws, ws + s.len, k",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_per_key() {
    // Sessions with a 1 s gap: a row starts a new session when it is more than
    // the gap after the previous row of its key (touching windows merge, as in
    // Flink); a session is [first, last + gap).
    crosscheck(
        "SESSION per key",
        "SELECT window_start, window_end, k, count(*), sum(amount)
         FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end, k",
        "SELECT min(ts), max(ts) + INTERVAL '1 second', k, count(*), sum(amount)
         FROM (SELECT ts, k, amount,
                      sum(CASE WHEN prev IS NULL OR prev + INTERVAL '1 second' < ts THEN 1 ELSE 0 END)
                        OVER (PARTITION BY k ORDER BY ts, id ROWS UNBOUNDED PRECEDING) AS session
               FROM (SELECT ts, k, amount, id, lag(ts) OVER (PARTITION BY k ORDER BY ts, id) AS prev FROM t))
         GROUP BY k, session",
    )
    .await;
}

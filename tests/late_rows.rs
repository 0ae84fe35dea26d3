//! Late rows and the counters of `SHOW JOBS`, through the Engine API.
//!
//! The data (tests/data/late, see tests/slt/late.slt for the results) is read
//! by one source subtask, file after file: after part-0.json the watermark is
//! 10:02:25, and part-1.json then brings row 5 (10:00:50) and row 6 (10:01:59).
//! Which of them are *late* (dropped and counted) depends on the window: a row
//! is late when every window it belongs to has already fired.

use std::path::Path;

use weir::arrow::array::{Array, StringArray};
use weir::arrow::record_batch::RecordBatch;
use weir::{Engine, JobStatus, StatementResult};

fn data(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

async fn engine(parallelism: usize) -> Engine {
    let engine = Engine::builder()
        .with_config("parallelism.default", parallelism.to_string())
        .build()
        .expect("valid configuration");
    engine
        .execute(&format!(
            "CREATE TABLE events (id BIGINT, k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'scan.parallelism' = '1')",
            data("late")
        ))
        .await
        .expect("CREATE TABLE");
    engine
}

/// Runs `sql` to the end; returns its rows (formatted, sorted) and its job.
async fn run(engine: &Engine, sql: &str) -> (Vec<Vec<String>>, weir::JobHandle) {
    let mut result = engine.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    while let Some(batch) = result.next_batch().await {
        let batch = batch.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.extend(weir::format::rows(&batch).expect("formattable"));
    }
    rows.sort();
    let job = result.job().clone();
    assert_eq!(
        job.wait().await.expect("the job succeeds"),
        JobStatus::Finished,
        "{sql}"
    );
    (rows, job)
}

fn late_rows(job: &weir::JobHandle) -> u64 {
    job.metrics().iter().map(|m| m.late_rows_dropped).sum()
}

/// The `SHOW JOBS` row of job `id`, as column name -> value.
async fn show_job(engine: &Engine, id: &str) -> Vec<(String, String)> {
    let mut results = engine.execute("SHOW JOBS").await.expect("SHOW JOBS");
    let StatementResult::Table(table) = results.remove(0) else {
        panic!("SHOW JOBS gives a table")
    };
    let table: RecordBatch = table;
    let ids = table
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("job id is a string");
    let row = (0..table.num_rows())
        .find(|&r| ids.value(r) == id)
        .unwrap_or_else(|| panic!("job {id} in SHOW JOBS"));
    let values = weir::format::rows(&table.slice(row, 1))
        .expect("formattable")
        .remove(0);
    table
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .zip(values)
        .collect()
}

fn column<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    &row.iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("SHOW JOBS has no column '{name}'"))
        .1
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.to_string()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tumble_drops_late_rows_and_show_jobs_counts_them() {
    for parallelism in [1, 4] {
        let engine = engine(parallelism).await;
        let (rows, job) = run(
            &engine,
            "SELECT window_start, count(*), sum(id) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end",
        )
        .await;
        assert_eq!(
            rows,
            strings(&[
                &["2024-01-01 10:00:00.000", "2", "3"],
                &["2024-01-01 10:01:00.000", "1", "3"],
                &["2024-01-01 10:02:00.000", "3", "20"],
                &["2024-01-01 10:03:00.000", "1", "8"],
            ]),
            "parallelism {parallelism}"
        );
        assert_eq!(
            late_rows(&job),
            2,
            "rows 5 and 6 are late (parallelism {parallelism})"
        );

        let row = show_job(&engine, job.id()).await;
        assert_eq!(column(&row, "status"), "FINISHED");
        assert_eq!(
            column(&row, "late rows dropped"),
            "2",
            "parallelism {parallelism}: {row:?}"
        );
        assert_eq!(
            column(&row, "rows read"),
            "9",
            "parallelism {parallelism}: {row:?}"
        );
        assert_eq!(
            column(&row, "rows written"),
            "4",
            "parallelism {parallelism}: {row:?}"
        );
        assert_eq!(
            column(&row, "records skipped"),
            "0",
            "parallelism {parallelism}: {row:?}"
        );
        assert_eq!(column(&row, "error"), "NULL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_is_late_only_when_all_its_windows_have_fired() {
    for parallelism in [1, 4] {
        let engine = engine(parallelism).await;
        // HOP 2 min / 1 min: row 5's windows [09:59, 10:01) and [10:00, 10:02) have
        // both fired; row 6 still belongs to [10:01, 10:03).
        let (_, hop) = run(
            &engine,
            "SELECT window_start, count(*) FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))
             GROUP BY window_start, window_end",
        )
        .await;
        assert_eq!(late_rows(&hop), 1, "HOP, parallelism {parallelism}");
        // CUMULATE 1 min up to 3 min: both rows still belong to [10:00, 10:03).
        let (_, cumulate) = run(
            &engine,
            "SELECT window_start, window_end, count(*) FROM TABLE(CUMULATE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '3' MINUTE))
             GROUP BY window_start, window_end",
        )
        .await;
        assert_eq!(late_rows(&cumulate), 0, "CUMULATE, parallelism {parallelism}");
        // SESSION 30 s: row 5's window [10:00:50, 10:01:20) has fired, row 6's
        // [10:01:59, 10:02:29) has not.
        let (_, session) = run(
            &engine,
            "SELECT k, window_start, count(*) FROM TABLE(SESSION(TABLE events PARTITION BY k, DESCRIPTOR(ts), INTERVAL '30' SECOND))
             GROUP BY k, window_start, window_end",
        )
        .await;
        assert_eq!(late_rows(&session), 1, "SESSION, parallelism {parallelism}");
        // Stateless queries drop nothing.
        let (rows, select) = run(&engine, "SELECT id FROM events").await;
        assert_eq!(rows.len(), 9);
        assert_eq!(late_rows(&select), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_insert_job_counts_late_rows_too() {
    let engine = engine(4).await;
    let out = tempfile::tempdir().expect("a temporary directory");
    engine
        .execute(&format!(
            "CREATE TABLE out (window_start TIMESTAMP(3), cnt BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv')",
            out.path().display()
        ))
        .await
        .expect("CREATE TABLE");
    let job = engine
        .submit(
            "INSERT INTO out SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end",
        )
        .await
        .expect("INSERT");
    assert_eq!(job.wait().await.expect("the job succeeds"), JobStatus::Finished);
    let row = show_job(&engine, job.id()).await;
    assert_eq!(column(&row, "job name"), "insert-into_out");
    assert_eq!(column(&row, "status"), "FINISHED");
    assert_eq!(column(&row, "late rows dropped"), "2", "{row:?}");
    assert_eq!(column(&row, "rows read"), "9", "{row:?}");
    assert_eq!(column(&row, "rows written"), "4", "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skipped_malformed_records_are_counted() {
    let engine = Engine::new();
    engine
        .execute(&format!(
            "CREATE TABLE lenient (id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'json.ignore-parse-errors' = 'true')",
            data("bad")
        ))
        .await
        .expect("CREATE TABLE");
    let (rows, job) = run(&engine, "SELECT id FROM lenient").await;
    assert_eq!(rows, strings(&[&["1"], &["2"], &["4"], &["6"]]));
    let row = show_job(&engine, job.id()).await;
    assert_eq!(column(&row, "records skipped"), "2", "{row:?}");
    assert_eq!(column(&row, "rows read"), "4", "{row:?}");
    assert_eq!(column(&row, "late rows dropped"), "0", "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_job_shows_its_error() {
    let engine = Engine::new();
    engine
        .execute(&format!(
            "CREATE TABLE bad (id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            data("bad")
        ))
        .await
        .expect("CREATE TABLE");
    let result = engine
        .query("SELECT id FROM bad")
        .await
        .expect("the query starts");
    let job = result.job().clone();
    let err = result.collect().await.expect_err("the job fails on line 3");
    assert!(err.to_string().contains("bad.json:3"), "{err}");
    assert!(job.wait().await.is_err());
    let row = show_job(&engine, job.id()).await;
    assert_eq!(column(&row, "status"), "FAILED");
    assert!(column(&row, "error").contains("bad.json:3"), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_without_a_rowtime_are_skipped_by_windows_and_counted() {
    for parallelism in [1, 4] {
        let engine = Engine::builder()
            .with_config("parallelism.default", parallelism.to_string())
            .build()
            .expect("config");
        engine
            .execute(&format!(
                "CREATE TABLE micros (id BIGINT, ts TIMESTAMP(6), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
                 WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
                data("misc/null_ts.json")
            ))
            .await
            .expect("CREATE TABLE");
        let (rows, job) = run(
            &engine,
            "SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE micros, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end",
        )
        .await;
        assert_eq!(
            rows.iter()
                .map(|r| r[1].parse::<u64>().expect("a count"))
                .sum::<u64>(),
            4
        );
        let row = show_job(&engine, job.id()).await;
        assert_eq!(
            column(&row, "records skipped"),
            "2",
            "rows 2 and 4 have no ts (parallelism {parallelism}): {row:?}"
        );
        assert_eq!(column(&row, "late rows dropped"), "0", "{row:?}");
        assert_eq!(column(&row, "rows read"), "6", "{row:?}");
    }
}

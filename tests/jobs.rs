//! Jobs of unbounded queries: SHOW JOBS, STOP JOB, CANCEL JOB, and dropping a
//! query result, through the Engine API (the .slt harness waits for every
//! job, so unbounded ones are tested here).

use std::time::Duration;

use weir::arrow::array::{Array, StringArray};
use weir::{Engine, JobStatus, StatementResult};

/// Statements' messages, for `StatementResult::Ok`.
async fn ok_message(engine: &Engine, sql: &str) -> String {
    match engine
        .execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .remove(0)
    {
        StatementResult::Ok(m) => m,
        other => panic!("{sql}: expected a message, got {other:?}"),
    }
}

async fn status_in_show_jobs(engine: &Engine, id: &str) -> String {
    let StatementResult::Table(t) = engine.execute("SHOW JOBS").await.expect("SHOW JOBS").remove(0) else {
        panic!("SHOW JOBS gives a table")
    };
    let ids = t.column(0).as_any().downcast_ref::<StringArray>().expect("ids");
    let status = t
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("statuses");
    let row = (0..t.num_rows())
        .find(|&r| ids.value(r) == id)
        .unwrap_or_else(|| panic!("job {id} listed"));
    status.value(row).to_string()
}

async fn unbounded_engine() -> Engine {
    let engine = Engine::builder()
        .with_config("parallelism.default", "2")
        .build()
        .expect("config");
    engine
        .execute(
            "CREATE TABLE gen (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
               WITH ('connector' = 'datagen', 'rows-per-second' = '1000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1');
             CREATE TABLE sink (id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');",
        )
        .await
        .expect("DDL");
    engine
}

/// Waits until `job` has read some rows.
async fn until_running(job: &weir::JobHandle) {
    for _ in 0..200 {
        if job.metrics().iter().any(|m| m.rows_out > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {} produced nothing in 2 s", job.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_job_ends_an_unbounded_insert() {
    let engine = unbounded_engine().await;
    let job = engine
        .submit("INSERT INTO sink SELECT * FROM gen")
        .await
        .expect("INSERT starts");
    until_running(&job).await;
    assert_eq!(job.status(), JobStatus::Running);
    assert_eq!(status_in_show_jobs(&engine, job.id()).await, "RUNNING");

    let msg = ok_message(&engine, &format!("STOP JOB '{}'", job.id())).await;
    assert!(msg.contains("stopped (STOPPED)"), "{msg}");
    assert_eq!(job.status(), JobStatus::Stopped);
    assert_eq!(status_in_show_jobs(&engine, job.id()).await, "STOPPED");

    let again = ok_message(&engine, &format!("STOP JOB '{}'", job.id())).await;
    assert!(again.contains("has already ended (STOPPED)"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_job_ends_an_unbounded_insert() {
    let engine = unbounded_engine().await;
    let job = engine
        .submit("INSERT INTO sink SELECT id, ts FROM gen WHERE id % 2 = 0")
        .await
        .expect("INSERT starts");
    until_running(&job).await;
    let msg = ok_message(&engine, &format!("CANCEL JOB '{}'", job.id())).await;
    assert!(msg.contains("CANCELED"), "{msg}");
    assert_eq!(job.status(), JobStatus::Cancelled);
    assert_eq!(status_in_show_jobs(&engine, job.id()).await, "CANCELED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_job_with_savepoint_is_refused_clearly() {
    let engine = unbounded_engine().await;
    let job = engine
        .submit("INSERT INTO sink SELECT * FROM gen")
        .await
        .expect("INSERT starts");
    let err = engine
        .execute(&format!("STOP JOB '{}' WITH SAVEPOINT", job.id()))
        .await
        .expect_err("no savepoints yet");
    assert!(err.to_string().contains("SAVEPOINT"), "{err}");
    assert_eq!(
        job.status(),
        JobStatus::Running,
        "a refused STOP leaves the job running"
    );
    job.cancel();
    assert_eq!(
        job.wait().await.expect("cancelled, not failed"),
        JobStatus::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unbounded_window_query_emits_while_running_and_dropping_it_cancels_the_job() {
    let engine = unbounded_engine().await;
    // 1000 rows per second of event time: a 100 ms window fires every ~100 ms.
    let mut result = engine
        .query(
            "SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE gen, DESCRIPTOR(ts), INTERVAL '0.1' SECOND))
             GROUP BY window_start, window_end",
        )
        .await
        .expect("the query starts");
    let job = result.job().clone();
    let first = tokio::time::timeout(Duration::from_secs(10), result.next_batch())
        .await
        .expect("a window fires within 10 s")
        .expect("a batch")
        .expect("no error");
    assert!(first.num_rows() > 0);
    drop(result);
    let status = tokio::time::timeout(Duration::from_secs(10), job.wait())
        .await
        .expect("the job ends")
        .expect("not failed");
    assert_eq!(status, JobStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_listed_oldest_first_with_their_names() {
    let engine = unbounded_engine().await;
    engine
        .execute("SET 'pipeline.name' = 'first job'")
        .await
        .expect("SET");
    let a = engine
        .submit("INSERT INTO sink SELECT * FROM gen")
        .await
        .expect("INSERT");
    engine.execute("RESET 'pipeline.name'").await.expect("RESET");
    let b = engine
        .submit("INSERT INTO sink SELECT * FROM gen")
        .await
        .expect("INSERT");
    assert_ne!(a.id(), b.id());
    assert_eq!(a.name(), "first job");
    assert_eq!(b.name(), "insert-into_sink");
    let ids: Vec<String> = engine.jobs().iter().map(|j| j.id().to_string()).collect();
    assert_eq!(ids, vec![a.id().to_string(), b.id().to_string()]);
    a.cancel();
    b.cancel();
    a.wait().await.expect("cancelled");
    b.wait().await.expect("cancelled");
}

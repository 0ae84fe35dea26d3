//! Checkpoints, savepoints, rescale and restart strategies through the
//! embedding API and SQL, on real files and real state backends.

use std::time::Duration;

use weir::arrow::array::{Array, Int64Array};
use weir::{Engine, JobStatus, StatementResult};

const ROWS: u64 = 20_000;

fn setup(dir: &std::path::Path, rows_per_second: u64) -> String {
    let d = dir.display();
    format!(
        "CREATE TABLE src (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
           'connector' = 'datagen', 'rows-per-second' = '{rows_per_second}', 'number-of-rows' = '{ROWS}',
           'batch-size' = '100', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
           'event-time.start' = '2024-01-01 00:00:00', 'event-time.step' = '1 ms');
         CREATE TABLE out (k BIGINT, c BIGINT, s BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{d}/out', 'format' = 'json');
         SET 'execution.checkpointing.dir' = '{d}/checkpoints';
         SET 'execution.checkpointing.savepoint-dir' = '{d}/savepoints';
         SET 'pipeline.name' = 'api-test';"
    )
}

const INSERT: &str = "INSERT INTO out SELECT id % 7, count(*), sum(id)
    FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY id % 7, window_start, window_end";

/// Sum over every committed row of (count, sum): must be (ROWS, sum 0..ROWS).
async fn totals(engine: &Engine, dir: &std::path::Path) -> (i64, i64, usize) {
    let d = dir.display();
    engine
        .execute(&format!(
            "CREATE TABLE IF NOT EXISTS readback (k BIGINT, c BIGINT, s BIGINT) WITH (
               'connector' = 'filesystem', 'path' = '{d}/out', 'format' = 'json')"
        ))
        .await
        .unwrap();
    let mut q = engine.query("SELECT c, s FROM readback").await.unwrap();
    let (mut c, mut s, mut rows) = (0, 0, 0);
    while let Some(b) = q.next_batch().await {
        let b = b.unwrap();
        let cs = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let ss = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            c += cs.value(i);
            s += ss.value(i);
        }
        rows += b.num_rows();
    }
    (c, s, rows)
}

fn want() -> (i64, i64, usize) {
    let windows = (ROWS / 1000) as usize * 7;
    (ROWS as i64, (0..ROWS as i64).sum(), windows)
}

/// `STOP JOB '<id>' WITH SAVEPOINT`: the job is stopped; returns the savepoint.
async fn stop_with_savepoint(engine: &Engine, job: &weir::JobHandle) -> String {
    let r = engine
        .execute(&format!("STOP JOB '{}' WITH SAVEPOINT", job.id()))
        .await
        .unwrap();
    let StatementResult::Ok(msg) = &r[0] else {
        panic!("{r:?}")
    };
    assert_eq!(job.status(), JobStatus::Stopped, "{msg}");
    msg.rsplit(' ').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_savepoint_then_resume_at_another_parallelism_and_backend() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine.execute(&setup(dir.path(), 8000)).await.unwrap();
    engine.execute("SET 'parallelism.default' = '2'").await.unwrap();
    let job = engine.submit(INSERT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sp = job
        .trigger_savepoint(None)
        .await
        .expect("a savepoint of a running job");
    assert!(std::path::Path::new(&sp).join("_metadata").exists(), "{sp}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = stop_with_savepoint(&engine, &job).await;
    assert!(
        job.checkpoints()
            .iter()
            .filter(|c| c.status.name() == "COMPLETED")
            .count()
            >= 2
    );

    // Window state is batch state, which the engine restores whatever the backend.
    engine
        .execute(&format!(
            "SET 'execution.savepoint.path' = '{path}'; SET 'parallelism.default' = '3';
             SET 'state.backend.type' = 'rocksdb'; SET 'state.backend.rocksdb.localdir' = '{}';",
            dir.path().join("rocksdb").display()
        ))
        .await
        .unwrap();
    let resumed = engine.submit(INSERT).await.unwrap();
    assert_eq!(resumed.restored_from(), Some(path.as_str()));
    assert_eq!(resumed.wait().await.unwrap(), JobStatus::Finished);
    assert_eq!(totals(&engine, dir.path()).await, want());
}

/// A regular join keeps its rows in memory under `hashmap` and as RocksDB
/// entries under `rocksdb`: savepoints move them between the two layouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_join_resumes_across_backends_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine.execute(&setup(dir.path(), 8000)).await.unwrap();
    engine
        .execute(&format!(
            "CREATE TABLE dim (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
               'connector' = 'datagen', 'rows-per-second' = '8000', 'number-of-rows' = '{ROWS}',
               'batch-size' = '100', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
               'event-time.start' = '2024-01-01 00:00:00', 'event-time.step' = '1 ms');
             SET 'parallelism.default' = '2';"
        ))
        .await
        .unwrap();
    // Every id of `src` meets its one row of `dim`: (ROWS, sum of ids, ROWS rows).
    let join = "INSERT INTO out SELECT a.id % 7, 1, a.id FROM src a JOIN dim b ON a.id = b.id";
    let rocksdb = format!(
        "SET 'state.backend.type' = 'rocksdb'; SET 'state.backend.rocksdb.localdir' = '{}';
         SET 'parallelism.default' = '3';",
        dir.path().join("rocksdb").display()
    );
    let mut restored = None;
    for settings in [
        rocksdb.as_str(),
        "SET 'state.backend.type' = 'hashmap'; SET 'parallelism.default' = '1';",
    ] {
        let job = engine.submit(join).await.unwrap();
        assert_eq!(job.restored_from(), restored.as_deref());
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Some source subtasks of the job at parallelism 3 have no rows and
        // end at once: the savepoint must not wait for them.
        let sp = match tokio::time::timeout(Duration::from_secs(60), job.stop_with_savepoint(None)).await {
            Ok(sp) => sp.unwrap(),
            Err(_) => panic!("the savepoint did not complete: {:#?}", job.checkpoints()),
        };
        engine
            .execute(&format!("SET 'execution.savepoint.path' = '{sp}'; {settings}"))
            .await
            .unwrap();
        restored = Some(sp);
    }
    let last = engine.submit(join).await.unwrap();
    assert_eq!(last.restored_from(), restored.as_deref());
    assert_eq!(last.wait().await.unwrap(), JobStatus::Finished);
    assert_eq!(
        totals(&engine, dir.path()).await,
        (ROWS as i64, (0..ROWS as i64).sum(), ROWS as usize)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_a_different_query_names_the_unclaimed_state() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine.execute(&setup(dir.path(), 5000)).await.unwrap();
    let job = engine.submit(INSERT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sp = job.stop_with_savepoint(None).await.unwrap();
    engine
        .execute(&format!("SET 'execution.savepoint.path' = '{sp}'"))
        .await
        .unwrap();
    let other = "INSERT INTO out SELECT id % 7, id AS c, id AS s FROM src";
    let e = engine.submit(other).await.unwrap_err().to_string();
    assert!(
        e.contains("ignore-unclaimed-state") && e.contains("WindowAggregate"),
        "{e}"
    );
    engine
        .execute("SET 'execution.savepoint.ignore-unclaimed-state' = 'true'")
        .await
        .unwrap();
    let job = engine
        .submit(other)
        .await
        .expect("unclaimed state dropped on request");
    job.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_restarts_from_the_latest_checkpoint_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine.execute(&setup(dir.path(), 10000)).await.unwrap();
    engine
        .execute(
            "SET 'execution.checkpointing.interval' = '100 ms';
             SET 'restart-strategy.type' = 'fixed-delay';
             SET 'restart-strategy.fixed-delay.attempts' = '2';
             SET 'restart-strategy.fixed-delay.delay' = '50 ms';",
        )
        .await
        .unwrap();
    let job = engine.submit(INSERT).await.unwrap();
    for _ in 0..200 {
        if job.checkpoints().iter().any(|c| c.status.name() == "COMPLETED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A task failure: a barrier of a savepoint nobody registered makes the
    // window operator's snapshot fail, which fails its task.
    job.inject_barrier(weir::weir_engine::message::Barrier {
        checkpoint_id: 1_000_000,
        kind: weir::weir_engine::message::BarrierKind::Savepoint,
    });
    assert_eq!(job.wait().await.unwrap(), JobStatus::Finished);
    assert_eq!(job.restarts(), 1);
    assert_eq!(totals(&engine, dir.path()).await, want());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_checkpoints_lists_history_and_a_corrupt_checkpoint_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine.execute(&setup(dir.path(), 10000)).await.unwrap();
    engine
        .execute(
            "SET 'execution.checkpointing.interval' = '100 ms';
             SET 'execution.checkpointing.num-retained' = '3';
             SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';",
        )
        .await
        .unwrap();
    let job = engine.submit(INSERT).await.unwrap();
    for _ in 0..300 {
        if job
            .checkpoints()
            .iter()
            .filter(|c| c.status.name() == "COMPLETED")
            .count()
            >= 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = engine
        .execute(&format!("SHOW CHECKPOINTS FOR JOB '{}'", job.id()))
        .await
        .unwrap();
    let StatementResult::Table(t) = &r[0] else {
        panic!()
    };
    assert!(t.num_rows() >= 3, "{t:?}");
    job.cancel();
    let _ = job.wait().await;
    let chk_root = dir.path().join("checkpoints/api-test");
    let mut ids: Vec<u64> = std::fs::read_dir(&chk_root)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort();
    let newest = *ids.last().unwrap();
    // A partial checkpoint (a crash before its _metadata): ignored and deleted.
    let partial = chk_root.join(format!("chk-{}", newest + 1));
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("x.kv"), b"half").unwrap();
    // The newest complete one, truncated: skipped for the previous one.
    let newest_dir = chk_root.join(format!("chk-{newest}"));
    let victim = std::fs::read_dir(&newest_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "kv"))
        .expect("a keyed state file");
    let data = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &data[..data.len() / 2]).unwrap();

    let resumed = engine.submit(INSERT).await.unwrap();
    let from = resumed
        .restored_from()
        .expect("resumed from an older checkpoint")
        .to_string();
    assert!(from.ends_with(&format!("chk-{}", ids[ids.len() - 2])), "{from}");
    assert_eq!(resumed.wait().await.unwrap(), JobStatus::Finished);
    assert!(!partial.exists(), "the partial checkpoint was deleted");
    // Not an exactly-once check: the sink had already committed the output
    // of the truncated checkpoint, which the older one replays.
    let (c, _, _) = totals(&engine, dir.path()).await;
    assert!(c >= ROWS as i64);
}

/// A job started from a savepoint older than the checkpoints an earlier run
/// left in its directory (that run went on after the savepoint) resumes,
/// when restarted before completing a checkpoint of its own, from that
/// savepoint: not from the earlier run's newer checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_started_from_an_older_savepoint_resumes_from_it_not_from_newer_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine.execute(&setup(dir.path(), 2000)).await.unwrap();
    engine
        .execute(
            "SET 'execution.checkpointing.interval' = '100 ms';
             SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';",
        )
        .await
        .unwrap();
    let completed = |job: &weir::JobHandle| {
        job.checkpoints()
            .iter()
            .filter(|c| c.status.name() == "COMPLETED")
            .count()
    };
    let first = engine.submit(INSERT).await.unwrap();
    let savepoint = first.trigger_savepoint(None).await.expect("a savepoint");
    // Two more checkpoints complete after the savepoint (one may have been
    // in flight with it), then the run is cancelled, keeping them.
    let after = completed(&first);
    for _ in 0..500 {
        if completed(&first) >= after + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(completed(&first) >= after + 2, "{:?}", first.checkpoints());
    first.cancel();
    let _ = first.wait().await;

    // Started from the savepoint, without periodic checkpoints, and cancelled.
    engine
        .execute(&format!(
            "SET 'execution.savepoint.path' = '{savepoint}'; RESET 'execution.checkpointing.interval';"
        ))
        .await
        .unwrap();
    let second = engine.submit(INSERT).await.unwrap();
    assert_eq!(second.restored_from(), Some(savepoint.as_str()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.cancel();
    let _ = second.wait().await;
    assert_eq!(completed(&second), 0);

    // Resumed automatically: from where the second run started.
    engine.execute("RESET 'execution.savepoint.path'").await.unwrap();
    let third = engine.submit(INSERT).await.unwrap();
    assert_eq!(
        third.restored_from(),
        Some(savepoint.as_str()),
        "not from the first run's checkpoints taken after the savepoint"
    );
    third.cancel();
    let _ = third.wait().await;
}

/// `STOP JOB ... WITH SAVEPOINT` while checkpoints are triggered every few
/// milliseconds: none is triggered behind the savepoint (its subtasks end
/// there, and a checkpoint acknowledged for them afterwards would hold none
/// of their state), so the automatic resume starts from the savepoint and
/// the output is exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_checkpoint_follows_a_stop_with_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine.execute(&setup(dir.path(), 2000)).await.unwrap();
    engine
        .execute("SET 'execution.checkpointing.interval' = '10 ms'; SET 'parallelism.default' = '2';")
        .await
        .unwrap();
    let job = engine.submit(INSERT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let path = stop_with_savepoint(&engine, &job).await;
    let savepoint_id: u64 = path
        .rsplit('/')
        .next()
        .and_then(|name| name.split('-').rev().nth(1))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint id in {path}"));
    let later: Vec<String> = job
        .checkpoints()
        .iter()
        .filter(|c| c.id > savepoint_id)
        .map(|c| format!("{} {}", c.id, c.status.name()))
        .collect();
    assert!(
        later.is_empty(),
        "triggered after savepoint {savepoint_id}: {later:?}"
    );

    let resumed = engine.submit(INSERT).await.unwrap();
    assert_eq!(resumed.restored_from(), Some(path.as_str()));
    assert_eq!(resumed.wait().await.unwrap(), JobStatus::Finished);
    assert_eq!(totals(&engine, dir.path()).await, want());
}

//! Kafka end to end against a real broker started by the test: JSON topics
//! in, a window aggregate, JSON topics out through the exactly-once sink,
//! read back with read_committed and compared exactly with results computed
//! here; an upsert changelog into `upsert-kafka`; at-least-once delivery.

#[path = "support/event_time.rs"]
mod event_time;
#[path = "support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::BTreeMap;
use std::time::Duration;

use event_time::{BASE_MS, timestamp_text, window_index};
use kafka_broker::TestBroker;
use weir::Engine;

const KEYS: i64 = 5;

/// Row r: id r, event time 2024-01-01 00:00:00 + r ms, in partition r % 3.
fn produce_input(broker: &TestBroker, topic: &str, rows: i64) {
    broker.create_topic(topic, 3);
    for p in 0..3 {
        let records: Vec<(Option<String>, String)> = (0..rows)
            .filter(|r| r % 3 == p)
            .map(|r| {
                (
                    None,
                    format!(r#"{{"id": {r}, "ts": "{}"}}"#, timestamp_text(BASE_MS + r)),
                )
            })
            .collect();
        broker.produce_json(topic, Some(p as i32), &records);
    }
}

fn source_table(name: &str, bootstrap: &str, topic: &str) -> String {
    format!(
        "CREATE TABLE {name} (id BIGINT, ts TIMESTAMP(3),
           part INT METADATA FROM 'partition' VIRTUAL,
           WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
               'format' = 'json')"
    )
}

/// Waits for a bounded job to finish.
async fn finishes(job: &weir::JobHandle) {
    let status = tokio::time::timeout(Duration::from_secs(120), job.wait())
        .await
        .expect("job ends")
        .unwrap();
    assert_eq!(status, weir::JobStatus::Finished);
}

/// (key, window index) -> (count, sum) of rows 0..rows.
fn expected_windows(rows: i64) -> BTreeMap<(i64, i64), (i64, i64)> {
    let mut m = BTreeMap::new();
    for r in 0..rows {
        let e = m.entry((r % KEYS, r / 1000)).or_insert((0, 0));
        e.0 += 1;
        e.1 += r;
    }
    m
}

async fn window_aggregate_exactly_once(parallelism: usize) {
    const ROWS: i64 = 12_000;
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    produce_input(&broker, "events", ROWS);
    broker.create_topic("windows", 3);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine
        .execute(&format!(
            "SET 'execution.checkpointing.interval' = '200 ms';
             SET 'execution.checkpointing.dir' = '{}';
             SET 'pipeline.name' = 'kafka-windows';
             SET 'parallelism.default' = '{parallelism}';
             {};
             CREATE TABLE windows (k BIGINT, window_start TIMESTAMP(3), c BIGINT, s BIGINT)
             WITH ('connector' = 'kafka', 'topic' = 'windows', 'properties.bootstrap.servers' = '{bootstrap}',
                   'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once');",
            dir.path().display(),
            source_table("events", &bootstrap, "events"),
        ))
        .await
        .unwrap();
    let job = engine
        .submit(&format!(
            "INSERT INTO windows SELECT id % {KEYS}, window_start, count(*), sum(id)
             FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
             GROUP BY id % {KEYS}, window_start, window_end"
        ))
        .await
        .unwrap();
    finishes(&job).await;

    let records = broker.read_all("windows", "read_committed", Duration::from_secs(30));
    let mut got: BTreeMap<(i64, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let window = window_index(v["window_start"].as_str().unwrap());
        got.entry((v["k"].as_i64().unwrap(), window))
            .or_default()
            .push((v["c"].as_i64().unwrap(), v["s"].as_i64().unwrap()));
    }
    let want: BTreeMap<(i64, i64), Vec<(i64, i64)>> = expected_windows(ROWS)
        .into_iter()
        .map(|(k, v)| (k, vec![v]))
        .collect();
    assert_eq!(got.len(), want.len(), "windows");
    assert_eq!(got, want);
    assert!(
        broker.open_transactions("weir-").is_empty(),
        "no transaction stays open: {:?}",
        broker.open_transactions("weir-")
    );
    let uncommitted = broker.read_all("windows", "read_uncommitted", Duration::from_secs(30));
    assert_eq!(
        uncommitted.len(),
        records.len(),
        "nothing was written outside committed transactions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_aggregate_exactly_once_parallelism_1() {
    window_aggregate_exactly_once(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_aggregate_exactly_once_parallelism_3() {
    window_aggregate_exactly_once(3).await;
}

/// A non-windowed aggregate (a changelog) into `upsert-kafka`: the latest
/// value per key, with tombstones for deletes, read back as a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_kafka_keeps_the_latest_row_per_key() {
    const ROWS: i64 = 3_000;
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    produce_input(&broker, "events", ROWS);
    broker.create_topic("counts", 3);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new();
    engine
        .execute(&format!(
            "SET 'execution.checkpointing.interval' = '200 ms';
             SET 'execution.checkpointing.dir' = '{}';
             SET 'pipeline.name' = 'kafka-upsert';
             SET 'parallelism.default' = '2';
             {};
             CREATE TABLE counts (k BIGINT, c BIGINT, s BIGINT, PRIMARY KEY (k) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = 'counts', 'properties.bootstrap.servers' = '{bootstrap}',
                   'key.format' = 'json', 'value.format' = 'json', 'sink.delivery-guarantee' = 'exactly-once');",
            dir.path().display(),
            source_table("events", &bootstrap, "events"),
        ))
        .await
        .unwrap();
    let job = engine
        .submit(&format!(
            "INSERT INTO counts SELECT id % {KEYS} AS k, count(*) AS c, sum(id) AS s FROM events GROUP BY id % {KEYS}"
        ))
        .await
        .unwrap();
    finishes(&job).await;
    let records = broker.read_all("counts", "read_committed", Duration::from_secs(30));
    assert!(!records.is_empty());
    // Replay the changelog in offset order per partition (a key lives in one partition).
    let mut table: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut sorted = records.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let key: serde_json::Value = serde_json::from_str(r.key.as_deref().expect("a key")).unwrap();
        let k = key["k"].as_i64().unwrap();
        if r.value.is_empty() {
            table.remove(&k);
        } else {
            let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            table.insert(k, (v["c"].as_i64().unwrap(), v["s"].as_i64().unwrap()));
        }
    }
    let mut want = BTreeMap::new();
    for r in 0..ROWS {
        let e = want.entry(r % KEYS).or_insert((0, 0));
        e.0 += 1;
        e.1 += r;
    }
    assert_eq!(table, want);
}

/// At-least-once with a record timestamp written from a metadata column,
/// a key from `key.fields`, and a virtual metadata column an INSERT leaves out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_writes_keys_and_timestamps() {
    const ROWS: i64 = 2_000;
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    produce_input(&broker, "events", ROWS);
    broker.create_topic("copy", 2);
    let engine = Engine::new();
    engine
        .execute(&format!(
            "{};
             CREATE TABLE copy (id BIGINT, ts TIMESTAMP(3), rt TIMESTAMP(3) METADATA FROM 'timestamp')
             WITH ('connector' = 'kafka', 'topic' = 'copy', 'properties.bootstrap.servers' = '{bootstrap}',
                   'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'id_text',
                   'sink.delivery-guarantee' = 'at-least-once');",
            source_table("events", &bootstrap, "events"),
        ))
        .await
        .expect_err("key.fields must name a column");
    engine
        .execute(&format!(
            "CREATE TABLE copy (id_text STRING, id BIGINT, ts TIMESTAMP(3), rt TIMESTAMP(3) METADATA FROM 'timestamp',
               part INT METADATA FROM 'partition' VIRTUAL)
             WITH ('connector' = 'kafka', 'topic' = 'copy', 'properties.bootstrap.servers' = '{bootstrap}',
                   'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'id_text',
                   'value.fields-include' = 'EXCEPT_KEY', 'sink.delivery-guarantee' = 'at-least-once');"
        ))
        .await
        .unwrap();
    let job = engine
        .submit("INSERT INTO copy SELECT CAST(id AS STRING) AS id_text, id, ts, ts AS rt FROM events")
        .await
        .unwrap();
    finishes(&job).await;
    let records = broker.read_all("copy", "read_committed", Duration::from_secs(30));
    assert_eq!(records.len(), ROWS as usize);
    let mut ids: Vec<i64> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            let id = v["id"].as_i64().unwrap();
            assert!(
                v.get("id_text").is_none(),
                "EXCEPT_KEY leaves the key out of the value: {v}"
            );
            assert_eq!(r.key.as_deref(), Some(id.to_string().as_str()));
            assert_eq!(
                r.timestamp,
                Some(BASE_MS + id),
                "the record timestamp is the metadata column"
            );
            id
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..ROWS).collect::<Vec<_>>());
}

/// The exactly-once sink at parallelism 3 is cancelled mid-stream (its open
/// and pre-committed transactions left behind, as by a crash) and the job
/// resumes from its latest checkpoint at parallelism 2: the new subtasks
/// commit the old subtasks' pending transactions and abort their open ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_sink_resumes_at_a_lower_parallelism() {
    const ROWS: i64 = 12_000;
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("copy", 3);
    let dir = tempfile::tempdir().unwrap();
    let setup = |parallelism: usize| {
        format!(
            "SET 'execution.checkpointing.interval' = '100 ms';
             SET 'execution.checkpointing.dir' = '{}';
             SET 'pipeline.name' = 'kafka-rescale';
             SET 'execution.checkpointing.externalized-checkpoint-retention' = 'RETAIN_ON_CANCELLATION';
             SET 'parallelism.default' = '{parallelism}';
             CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '6000',
               'number-of-rows' = '{ROWS}', 'batch-size' = '100', 'fields.id.kind' = 'sequence',
               'fields.id.start' = '0');
             CREATE TABLE copy (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'copy',
               'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json',
               'sink.delivery-guarantee' = 'exactly-once');",
            dir.path().display()
        )
    };
    let engine = Engine::new();
    engine.execute(&setup(3)).await.unwrap();
    let job = engine
        .submit("INSERT INTO copy SELECT id FROM gen")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    job.cancel();
    let _ = job.wait().await;
    let committed_before = broker
        .read_all("copy", "read_committed", Duration::from_secs(30))
        .len();
    assert!(committed_before < ROWS as usize, "cancelled mid-stream");

    let engine = Engine::new();
    engine.execute(&setup(2)).await.unwrap();
    let job = engine
        .submit("INSERT INTO copy SELECT id FROM gen")
        .await
        .unwrap();
    assert!(
        job.restored_from().is_some(),
        "resumed from the latest checkpoint"
    );
    finishes(&job).await;
    let mut ids: Vec<i64> = broker
        .read_all("copy", "read_committed", Duration::from_secs(30))
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.value).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids.len(),
        ROWS as usize,
        "each row once (committed before: {committed_before})"
    );
    assert_eq!(ids, (0..ROWS).collect::<Vec<_>>());
    assert!(broker.open_transactions("weir-").is_empty());
}

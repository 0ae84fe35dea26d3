//! The broker goes away mid-job and comes back: a job reading a Kafka topic
//! (while a producer keeps writing it) through a window aggregate into the
//! exactly-once `filesystem` sink rides out the broker being SIGKILLed and
//! restarted — librdkafka reconnects, or the job fails and its restart
//! strategy restores the last checkpoint — and the committed output equals
//! the windows of exactly what the topic holds.
//!
//! The sink is the filesystem, not Kafka: crabka-broker 0.3.8 loses the
//! isolation of a transaction open across its own restart (see
//! `tests/kafka_broker.rs`, the ignored test), which no client can repair.

#[path = "support/event_time.rs"]
mod event_time;
#[path = "support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use event_time::{BASE_MS, timestamp_text, window_index};
use kafka_broker::TestBroker;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use weir::{Engine, JobStatus};

const ROWS: i64 = 18_000;
const KEYS: i64 = 5;

/// Writes rows 0..ROWS at about 3000 rows/s, row r into partition r % 3;
/// librdkafka buffers and retries while the broker is away.
fn produce_slowly(config: rdkafka::ClientConfig) {
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .clone()
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer");
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(300) {
        for &r in chunk {
            let value = format!(r#"{{"id": {r}, "ts": "{}"}}"#, timestamp_text(BASE_MS + r));
            let mut record = BaseRecord::<(), String>::to("events")
                .payload(&value)
                .partition((r % 3) as i32);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("every row delivered");
}

fn script(dir: &Path, bootstrap: &str, bounded: bool) -> String {
    let d = dir.display();
    let bounded = if bounded { "latest-offset" } else { "unbounded" };
    format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         SET 'execution.checkpointing.dir' = '{d}/checkpoints';
         SET 'execution.checkpointing.savepoint-dir' = '{d}/savepoints';
         SET 'restart-strategy.type' = 'fixed-delay';
         SET 'restart-strategy.fixed-delay.attempts' = '50';
         SET 'restart-strategy.fixed-delay.delay' = '500 ms';
         SET 'pipeline.name' = 'broker-restart';
         SET 'parallelism.default' = '2';
         CREATE TABLE events (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '200' MILLISECOND)
         WITH ('connector' = 'kafka', 'topic' = 'events', 'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = '{bounded}', 'format' = 'json');
         CREATE TABLE out (k BIGINT, window_start TIMESTAMP(3), c BIGINT, s BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{d}/out', 'format' = 'json');"
    )
}

const INSERT: &str = "INSERT INTO out SELECT id % 5, window_start, count(*), sum(id)
    FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY id % 5, window_start, window_end";

/// (key, window) -> every (count, sum) committed for it.
fn committed(dir: &Path) -> BTreeMap<(i64, i64), Vec<(i64, i64)>> {
    let mut m: BTreeMap<(i64, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        for line in std::fs::read_to_string(e.path())
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let window = window_index(v["window_start"].as_str().unwrap());
            m.entry((v["k"].as_i64().unwrap(), window))
                .or_default()
                .push((v["c"].as_i64().unwrap(), v["s"].as_i64().unwrap()));
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_the_broker_being_killed_and_restarted() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 3);
    let dir = tempfile::tempdir().unwrap();
    let config = broker.client_config();
    let producer = std::thread::spawn(move || produce_slowly(config));

    let engine = Engine::new();
    engine
        .execute(&script(dir.path(), &bootstrap, false))
        .await
        .unwrap();
    let job = engine.submit(INSERT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = job
        .checkpoints()
        .iter()
        .filter(|c| {
            matches!(
                c.status,
                weir::weir_engine::checkpoint::stats::CheckpointStatus::Completed
            )
        })
        .count();
    assert!(before > 0, "the job checkpoints before the broker goes away");
    let outage = Instant::now();
    broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| broker.restart());
    eprintln!("broker away for {:?}", outage.elapsed());
    tokio::task::spawn_blocking(move || producer.join().expect("producer"))
        .await
        .unwrap();
    // Wait until the job checkpoints again after the outage, then stop it
    // with a savepoint and read the rest of the topic to its end.
    let deadline = Instant::now() + Duration::from_secs(60);
    while job
        .checkpoints()
        .iter()
        .filter(|c| {
            matches!(
                c.status,
                weir::weir_engine::checkpoint::stats::CheckpointStatus::Completed
            )
        })
        .count()
        <= before + 2
    {
        assert!(
            Instant::now() < deadline,
            "no checkpoint after the broker came back"
        );
        assert_eq!(job.status(), JobStatus::Running);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restarts = job.restarts();
    let savepoint = job.stop_with_savepoint(None).await.unwrap();
    eprintln!("restarts during the outage: {restarts}; savepoint {savepoint}");

    let engine = Engine::new();
    engine
        .execute(&script(dir.path(), &bootstrap, true))
        .await
        .unwrap();
    engine
        .execute(&format!("SET 'execution.savepoint.path' = '{savepoint}'"))
        .await
        .unwrap();
    let job = engine.submit(INSERT).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), job.wait())
        .await
        .expect("the bounded run ends")
        .unwrap();
    assert_eq!(status, JobStatus::Finished);

    // Expected: the windows of exactly the rows the topic holds.
    let input =
        tokio::task::block_in_place(|| broker.read_all("events", "read_committed", Duration::from_secs(60)));
    // Every record counts, duplicates included: the producer's retries
    // across a broker SIGKILL are not what is tested here, and crabka does
    // not always keep the idempotent producer's state across a crash.
    let mut want: BTreeMap<(i64, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for r in &input {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let id = v["id"].as_i64().unwrap();
        let e = want.entry((id % KEYS, id / 1000)).or_insert_with(|| vec![(0, 0)]);
        e[0].0 += 1;
        e[0].1 += id;
    }
    if input.len() != ROWS as usize {
        eprintln!("the topic holds {} records for {ROWS} rows produced", input.len());
    }
    let got = committed(&dir.path().join("out"));
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

//! The `kafka` source against a real broker started by each test: metadata
//! and key columns, tombstones, malformed records, the startup modes,
//! `topic-pattern` with partition discovery, transactional input, and
//! resuming from savepoints at other parallelisms with every record read
//! exactly once.

#[path = "support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_broker::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir::{Engine, JobStatus};

const TIMEOUT: Duration = Duration::from_secs(60);

/// One record to produce: key, value (`None`: a tombstone), timestamp (ms).
type Rec<'a> = (Option<&'a str>, Option<&'a str>, Option<i64>);

/// Produces `records` to `partition` of `topic`, in order; returns their offsets.
fn produce(broker: &TestBroker, topic: &str, partition: i32, records: &[Rec<'_>]) -> Vec<i64> {
    let producer: FutureProducer = broker
        .client_config()
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("a producer");
    let deliveries: Vec<_> = records
        .iter()
        .map(|(key, value, ts)| {
            let mut r = FutureRecord::<str, str>::to(topic).partition(partition);
            if let Some(k) = key {
                r = r.key(*k);
            }
            if let Some(v) = value {
                r = r.payload(*v);
            }
            if let Some(ts) = ts {
                r = r.timestamp(*ts);
            }
            producer
                .send_result(r)
                .unwrap_or_else(|(e, _)| panic!("send: {e}"))
        })
        .collect();
    futures::executor::block_on(futures::future::join_all(deliveries))
        .into_iter()
        .map(|d| d.expect("not cancelled").expect("delivered").offset)
        .collect()
}

/// `{"id": i}` for each `i` of `ids`, to `partition`.
fn produce_ids(broker: &TestBroker, topic: &str, partition: i32, ids: impl IntoIterator<Item = i64>) {
    let values: Vec<String> = ids.into_iter().map(|i| format!(r#"{{"id": {i}}}"#)).collect();
    let records: Vec<Rec<'_>> = values.iter().map(|v| (None, Some(v.as_str()), None)).collect();
    produce(broker, topic, partition, &records);
}

fn engine(parallelism: usize) -> Engine {
    Engine::builder()
        .with_config("parallelism.default", parallelism.to_string())
        .build()
        .expect("an engine")
}

/// A source table over `topic` with `extra` options (`'k' = 'v', ...`).
fn table(name: &str, columns: &str, bootstrap: &str, topic: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{topic}',
           'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json'{extra})"
    )
}

/// Runs a bounded query to its end: its rows, formatted and sorted, and its job.
async fn run(engine: &Engine, sql: &str) -> (Vec<Vec<String>>, weir::JobHandle) {
    let mut result = engine.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline.into(), result.next_batch())
            .await
            .unwrap_or_else(|_| panic!("{sql}: no end after {TIMEOUT:?}"));
        match next {
            Some(batch) => {
                rows.extend(weir::format::rows(&batch.unwrap_or_else(|e| panic!("{sql}: {e}"))).unwrap())
            }
            None => break,
        }
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

/// Reads an unbounded query until `done` says its rows so far are enough.
async fn read_until(
    result: &mut weir::QueryResult,
    mut done: impl FnMut(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !done(&rows) {
        let next = tokio::time::timeout_at(deadline.into(), result.next_batch())
            .await
            .unwrap_or_else(|_| panic!("not enough rows after {TIMEOUT:?}: {rows:?}"));
        let batch = next.expect("an unbounded query goes on").expect("no error");
        rows.extend(weir::format::rows(&batch).unwrap());
    }
    rows
}

fn ids_of(rows: &[Vec<String>]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().map(|r| r[0].parse().expect("an id")).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_read_gives_every_record_once_with_metadata() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("meta", 3);
    let mut want = Vec::new();
    for p in 0..3 {
        let values: Vec<(String, String)> = (0..5)
            .map(|i| {
                (
                    format!("k{p}-{i}"),
                    format!(r#"{{"id": {}, "name": "n{i}"}}"#, p * 100 + i),
                )
            })
            .collect();
        let mut records: Vec<Rec<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                (
                    Some(k.as_str()).filter(|_| i != 2),
                    Some(v.as_str()),
                    Some(1_700_000_000_000 + i as i64),
                )
            })
            .collect();
        // A tombstone gives no row.
        records.insert(3, (Some("gone"), None, None));
        let offsets = produce(&broker, "meta", p, &records);
        for ((key, value, ts), offset) in records.iter().zip(offsets) {
            let Some(v) = value else { continue };
            let v: serde_json::Value = serde_json::from_str(v).unwrap();
            want.push(vec![
                v["id"].to_string(),
                v["name"].as_str().unwrap().to_string(),
                key.map_or("NULL".into(), String::from),
                "meta".into(),
                p.to_string(),
                offset.to_string(),
                ts.unwrap().to_string(),
                "CreateTime".into(),
            ]);
        }
    }
    want.sort();
    for parallelism in [1, 3] {
        let engine = engine(parallelism);
        engine
            .execute(&table(
                "meta_t",
                "id BIGINT, name STRING, k STRING METADATA FROM 'key' VIRTUAL,
                 tp STRING METADATA FROM 'topic' VIRTUAL, part INT METADATA FROM 'partition' VIRTUAL,
                 off BIGINT METADATA FROM 'offset' VIRTUAL, ts TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL,
                 tst STRING METADATA FROM 'timestamp-type' VIRTUAL",
                &bootstrap,
                "meta",
                ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'",
            ))
            .await
            .unwrap();
        let (rows, _) = run(
            &engine,
            "SELECT id, name, k, tp, part, off, CAST(ts AS BIGINT), tst FROM meta_t",
        )
        .await;
        assert_eq!(rows, want, "parallelism {parallelism}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_columns_come_from_the_key() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("keyed", 1);
    produce(
        &broker,
        "keyed",
        0,
        &[
            (Some(r#"{"id": 1}"#), Some(r#"{"name": "a"}"#), None),
            (None, Some(r#"{"name": "b"}"#), None),
            (Some(r#"{"id": 3}"#), Some(r#"{"name": "c", "id": 99}"#), None),
        ],
    );
    let engine = engine(1);
    engine
        .execute(&table(
            "keyed_t",
            "id BIGINT, name STRING",
            &bootstrap,
            "keyed",
            ", 'key.format' = 'json', 'key.fields' = 'id', 'value.fields-include' = 'EXCEPT_KEY',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'",
        ))
        .await
        .unwrap();
    let (rows, _) = run(&engine, "SELECT name, id FROM keyed_t").await;
    engine
        .execute(&table(
            "nowhere",
            "id BIGINT",
            &bootstrap,
            "keyed;nope",
            ", 'scan.startup.mode' = 'earliest-offset'",
        ))
        .await
        .unwrap();
    let e = tokio::time::timeout(
        TIMEOUT,
        engine.query("SELECT id FROM nowhere").await.unwrap().collect(),
    )
    .await
    .expect("the job ends")
    .unwrap_err()
    .to_string();
    assert!(e.contains("topic 'nope' does not exist"), "{e}");
    assert_eq!(
        rows,
        vec![
            vec!["a".to_string(), "1".into()],
            vec!["b".into(), "NULL".into()],
            vec!["c".into(), "3".into()]
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_fail_naming_them_or_are_skipped_and_counted() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("bad", 2);
    produce_ids(&broker, "bad", 0, 0..3);
    produce(
        &broker,
        "bad",
        1,
        &[
            (None, Some(r#"{"id": 10}"#), None),
            (None, Some(r#"{"id": "eleven"}"#), None),
            (None, Some("{not json"), None),
            (None, Some(r#"{"id": 13}"#), None),
        ],
    );
    let engine = engine(2);
    let bounded = ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'";
    engine
        .execute(&table("strict", "id BIGINT", &bootstrap, "bad", bounded))
        .await
        .unwrap();
    let result = engine.query("SELECT id FROM strict").await.unwrap();
    let e = tokio::time::timeout(TIMEOUT, result.collect())
        .await
        .expect("the job ends")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("malformed record in topic 'bad' partition 1 at offset 1"),
        "{e}"
    );
    assert!(e.contains("json.ignore-parse-errors"), "{e}");

    engine
        .execute(&table(
            "lenient",
            "id BIGINT",
            &bootstrap,
            "bad",
            &format!("{bounded}, 'json.ignore-parse-errors' = 'true'"),
        ))
        .await
        .unwrap();
    let (rows, job) = run(&engine, "SELECT id FROM lenient").await;
    assert_eq!(ids_of(&rows), vec![0, 1, 2, 10, 13]);
    let skipped: u64 = job.metrics().iter().map(|m| m.records_skipped).sum();
    assert_eq!(skipped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_modes() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("modes", 2);
    let t0 = 1_700_000_000_000i64;
    for p in 0..2 {
        let values: Vec<String> = (0..10).map(|i| format!(r#"{{"id": {}}}"#, p * 100 + i)).collect();
        let records: Vec<Rec<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (None, Some(v.as_str()), Some(t0 + i as i64 * 1000)))
            .collect();
        produce(&broker, "modes", p, &records);
    }
    let engine = engine(2);
    let bounded = ", 'scan.bounded.mode' = 'latest-offset'";
    let read = |name: &'static str, extra: String| {
        let engine = &engine;
        let bootstrap = bootstrap.clone();
        async move {
            engine
                .execute(&table(
                    name,
                    "id BIGINT",
                    &bootstrap,
                    "modes",
                    &format!("{bounded}{extra}"),
                ))
                .await
                .unwrap();
            ids_of(&run(engine, &format!("SELECT id FROM {name}")).await.0)
        }
    };
    let specific = read(
        "specific",
        ", 'scan.startup.mode' = 'specific-offsets', 'scan.startup.specific-offsets' = 'partition:1,offset:7'".into(),
    )
    .await;
    // Partition 0 is not listed: from the earliest offset.
    let want: Vec<i64> = (0..10).chain(107..110).collect();
    assert_eq!(specific, want);

    let by_time = read(
        "by_time",
        format!(
            ", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{}'",
            t0 + 8000
        ),
    )
    .await;
    assert_eq!(by_time, vec![8, 9, 108, 109]);

    // The group's committed offsets; partition 1 has none: earliest.
    let consumer: BaseConsumer = broker.client_config().set("group.id", "g1").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("modes", 0, Offset::Offset(6)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let grouped = read("grouped", ", 'properties.group.id' = 'g1'".into()).await;
    let want: Vec<i64> = (6..10).chain(100..110).collect();
    assert_eq!(grouped, want);
    let latest_reset = read(
        "grouped_latest",
        ", 'properties.group.id' = 'g1', 'properties.auto.offset.reset' = 'latest'".into(),
    )
    .await;
    assert_eq!(latest_reset, vec![6, 7, 8, 9]);

    // Bounded by timestamp: before the first record at or after t0 + 3 s.
    let until_time = |name: &'static str, extra: String| {
        let engine = &engine;
        let bootstrap = bootstrap.clone();
        async move {
            engine
                .execute(&table(name, "id BIGINT", &bootstrap, "modes", &extra))
                .await
                .unwrap();
            ids_of(&run(engine, &format!("SELECT id FROM {name}")).await.0)
        }
    };
    let stop_at_time = until_time(
        "stop_at_time",
        format!(
            ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'timestamp', \
             'scan.bounded.timestamp-millis' = '{}'",
            t0 + 3000
        ),
    )
    .await;
    assert_eq!(stop_at_time, vec![0, 1, 2, 100, 101, 102]);
    // Bounded by offsets: partition 0 stops before offset 2; partition 1 is
    // not listed and reads to its end at start.
    let stop_at_offsets = until_time(
        "stop_at_offsets",
        ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets', \
         'scan.bounded.specific-offsets' = 'partition:0,offset:2'"
            .into(),
    )
    .await;
    let want: Vec<i64> = (0..2).chain(100..110).collect();
    assert_eq!(stop_at_offsets, want);
    // The table is also a sink, so it is created; reading it fails.
    engine
        .execute(&table("no_group", "id BIGINT", &bootstrap, "modes", ""))
        .await
        .unwrap();
    let Err(e) = engine.query("SELECT id FROM no_group").await else {
        panic!("reading without a group id in group-offsets mode must fail")
    };
    let e = e.to_string();
    assert!(e.contains("properties.group.id"), "{e}");

    // latest-offset, unbounded: nothing produced before the job started.
    engine
        .execute(&table(
            "latest",
            "id BIGINT",
            &bootstrap,
            "modes",
            ", 'scan.startup.mode' = 'latest-offset'",
        ))
        .await
        .unwrap();
    let mut result = engine.query("SELECT id FROM latest").await.unwrap();
    // Markers until the source is surely reading, then the real records.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let bootstrap = bootstrap.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let producer: FutureProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 600 {
                let v = format!(r#"{{"id": {}}}"#, 1000 + i);
                let _ =
                    producer.send_result(FutureRecord::<str, str>::to("modes").partition(i % 2).payload(&v));
                let _ = producer.flush(Duration::from_secs(5));
                std::thread::sleep(Duration::from_millis(100));
                i += 1;
            }
        })
    };
    let rows = read_until(&mut result, |rows| !rows.is_empty()).await;
    assert!(ids_of(&rows).iter().all(|&id| id >= 1000), "{rows:?}");
    result.cancel();
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_pattern_picks_up_new_topics_and_partitions() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("disc-a", 2);
    broker.create_topic("other", 1);
    produce_ids(&broker, "disc-a", 0, 0..5);
    produce_ids(&broker, "disc-a", 1, 5..10);
    produce_ids(&broker, "other", 0, 100..105);
    let engine = engine(2);
    engine
        .execute(&format!(
            "CREATE TABLE disc (id BIGINT, tp STRING METADATA FROM 'topic' VIRTUAL) WITH ('connector' = 'kafka',
               'topic-pattern' = 'disc-.*', 'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset', 'scan.topic-partition-discovery.interval' = '200 ms')"
        ))
        .await
        .unwrap();
    let mut result = engine.query("SELECT id, tp FROM disc").await.unwrap();
    let mut rows = read_until(&mut result, |rows| rows.len() >= 10).await;
    broker.create_topic("disc-b", 3);
    for p in 0..3 {
        produce_ids(&broker, "disc-b", p, (0..4).map(|i| 200 + p as i64 * 10 + i));
    }
    rows.extend(read_until(&mut result, |rows| rows.len() >= 12).await);
    let ids = ids_of(&rows);
    let want: Vec<i64> = (0..10)
        .chain((0..3).flat_map(|p| (0..4).map(move |i| 200 + p * 10 + i)))
        .collect();
    assert_eq!(ids, want, "every record once, none of 'other'");
    result.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_reads_of_transactional_input_skip_aborted_records_and_end() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("txn", 2);
    let producer: FutureProducer = broker
        .client_config()
        .set("transactional.id", "txn-test")
        .create()
        .unwrap();
    producer.init_transactions(TIMEOUT).unwrap();
    for (ids, commit) in [(0..6, true), (100..106, false), (6..10, true)] {
        producer.begin_transaction().unwrap();
        for id in ids {
            let v = format!(r#"{{"id": {id}}}"#);
            producer
                .send_result(FutureRecord::<str, str>::to("txn").partition(id % 2).payload(&v))
                .unwrap();
        }
        producer.flush(TIMEOUT).unwrap();
        if commit {
            producer.commit_transaction(TIMEOUT).unwrap();
        } else {
            producer.abort_transaction(TIMEOUT).unwrap();
        }
    }
    // Each partition ends with a commit marker: no record at its last offset.
    let engine = engine(2);
    engine
        .execute(&table(
            "txn_t",
            "id BIGINT",
            &bootstrap,
            "txn",
            ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'",
        ))
        .await
        .unwrap();
    let (rows, _) = run(&engine, "SELECT id FROM txn_t").await;
    assert_eq!(ids_of(&rows), (0..10).collect::<Vec<_>>());
}

/// The group's committed offsets of `topic`'s partitions `0..n`.
fn committed(broker: &TestBroker, group: &str, topic: &str, n: i32) -> Vec<Offset> {
    let consumer: BaseConsumer = broker.client_config().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..n)
        .map(|p| {
            got.find_partition(topic, p)
                .map_or(Offset::Invalid, |e| e.offset())
        })
        .collect()
}

/// Stops with a savepoint at parallelism 1, resumes at 3 with more input,
/// stops again, resumes at 2 with a bounded read: every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_resume_exactly_at_other_parallelisms() {
    const PARTITIONS: i32 = 4;
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("in", PARTITIONS);
    let mut next_id = 0i64;
    let mut produce_round = |n: i64| {
        for p in 0..PARTITIONS {
            let ids: Vec<i64> = (next_id..next_id + n)
                .filter(|i| i % PARTITIONS as i64 == p as i64)
                .collect();
            produce_ids(&broker, "in", p, ids);
        }
        next_id += n;
        next_id
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let engine = Engine::new();
    let setup = |bounded: &str, parallelism: usize| {
        format!(
            "SET 'execution.checkpointing.interval' = '200 ms';
             SET 'execution.checkpointing.dir' = '{d}/checkpoints';
             SET 'execution.checkpointing.savepoint-dir' = '{d}/savepoints';
             SET 'pipeline.name' = 'kafka-source-rescale';
             SET 'parallelism.default' = '{parallelism}';
             DROP TABLE IF EXISTS src;
             CREATE TABLE src (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'in',
               'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json',
               'properties.group.id' = 'rescale', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = '{bounded}');
             CREATE TABLE IF NOT EXISTS out (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{d}/out', 'format' = 'json');"
        )
    };
    let insert = "INSERT INTO out SELECT id FROM src";

    produce_round(20_000);
    engine.execute(&setup("unbounded", 1)).await.unwrap();
    let job = engine.submit(insert).await.unwrap();
    // Stop once some, not necessarily all, records were read.
    let deadline = Instant::now() + TIMEOUT;
    while job.metrics().iter().map(|m| m.rows_out).max().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "nothing read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sp1 = job.stop_with_savepoint(None).await.unwrap();
    assert_eq!(job.wait().await.unwrap(), JobStatus::Stopped);
    let first: u64 = job.metrics().iter().map(|m| m.rows_out).max().unwrap_or(0);
    eprintln!("the first run read {first} of 20000 records");

    produce_round(3000);
    engine.execute(&setup("unbounded", 3)).await.unwrap();
    engine
        .execute(&format!("SET 'execution.savepoint.path' = '{sp1}'"))
        .await
        .unwrap();
    let job = engine.submit(insert).await.unwrap();
    assert_eq!(job.restored_from(), Some(sp1.as_str()));
    // The group follows completed checkpoints (for monitoring).
    let ends: Vec<Offset> = broker
        .watermarks("in")
        .values()
        .map(|(_, high)| Offset::Offset(*high))
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    while committed(&broker, "rescale", "in", PARTITIONS) != ends {
        assert!(
            Instant::now() < deadline,
            "committed {:?}, ends {ends:?}",
            committed(&broker, "rescale", "in", PARTITIONS)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produce_round(3000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sp2 = job.stop_with_savepoint(None).await.unwrap();
    assert_eq!(job.wait().await.unwrap(), JobStatus::Stopped);

    let total = produce_round(3000);
    engine.execute(&setup("latest-offset", 2)).await.unwrap();
    engine
        .execute(&format!("SET 'execution.savepoint.path' = '{sp2}'"))
        .await
        .unwrap();
    let job = engine.submit(insert).await.unwrap();
    let status = tokio::time::timeout(TIMEOUT, job.wait())
        .await
        .expect("the bounded job ends")
        .unwrap();
    assert_eq!(status, JobStatus::Finished);

    let engine = Engine::new();
    engine
        .execute(&format!(
            "CREATE TABLE readback (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{d}/out', 'format' = 'json')"
        ))
        .await
        .unwrap();
    let (rows, _) = run(&engine, "SELECT id FROM readback").await;
    let ids = ids_of(&rows);
    let counts = ids.iter().fold(BTreeMap::<i64, usize>::new(), |mut m, id| {
        *m.entry(*id).or_default() += 1;
        m
    });
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(twice.is_empty(), "read more than once: {twice:?}");
    let missing: Vec<i64> = (0..total).filter(|i| !counts.contains_key(i)).take(10).collect();
    assert!(missing.is_empty(), "never read: {missing:?} ...");
    assert_eq!(ids.len() as i64, total);
}

fn admin(broker: &TestBroker) -> AdminClient<DefaultClientContext> {
    broker.client_config().create().expect("an admin client")
}

/// Records deleted (by retention, here by DeleteRecords) before the job read
/// them: resuming from the savepoint fails, naming the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_past_deleted_records_fails_naming_the_partition() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("retained", 1);
    produce_ids(&broker, "retained", 0, 0..10);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let engine = Engine::new();
    engine
        .execute(&format!(
            "SET 'execution.checkpointing.dir' = '{d}/checkpoints';
             SET 'execution.checkpointing.savepoint-dir' = '{d}/savepoints';
             SET 'pipeline.name' = 'kafka-retention';
             {};
             CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');",
            table(
                "src",
                "id BIGINT",
                &bootstrap,
                "retained",
                ", 'scan.startup.mode' = 'earliest-offset'"
            )
        ))
        .await
        .unwrap();
    let insert = "INSERT INTO out SELECT id FROM src";
    let job = engine.submit(insert).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while job.metrics().iter().map(|m| m.rows_out).max().unwrap_or(0) < 10 {
        assert!(Instant::now() < deadline, "not read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sp = job.stop_with_savepoint(None).await.unwrap();
    job.wait().await.unwrap();

    produce_ids(&broker, "retained", 0, 10..20);
    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset("retained", 0, Offset::Offset(15))
        .unwrap();
    admin(&broker)
        .delete_records(&before, &AdminOptions::new())
        .await
        .expect("DeleteRecords");
    assert_eq!(broker.watermarks("retained")[&0], (15, 20));

    engine
        .execute(&format!("SET 'execution.savepoint.path' = '{sp}'"))
        .await
        .unwrap();
    let e = match engine.submit(insert).await {
        Err(e) => e.to_string(),
        Ok(job) => tokio::time::timeout(TIMEOUT, job.wait())
            .await
            .expect("the job ends")
            .expect_err("the restore fails")
            .to_string(),
    };
    assert!(
        e.contains("cannot resume topic 'retained' partition 0 at offset 10")
            && e.contains("5 records were deleted"),
        "{e}"
    );
}

/// A topic deleted while it is read fails the job, naming its partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_fails_the_job() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("doomed", 2);
    produce_ids(&broker, "doomed", 0, 0..3);
    let engine = engine(1);
    engine
        .execute(&table(
            "doomed_t",
            "id BIGINT",
            &bootstrap,
            "doomed",
            ", 'scan.startup.mode' = 'earliest-offset', 'scan.topic-partition-discovery.interval' = '200 ms'",
        ))
        .await
        .unwrap();
    let mut result = engine.query("SELECT id FROM doomed_t").await.unwrap();
    read_until(&mut result, |rows| rows.len() >= 3).await;
    admin(&broker)
        .delete_topics(&["doomed"], &AdminOptions::new())
        .await
        .expect("DeleteTopics");
    let e = tokio::time::timeout(TIMEOUT, async {
        loop {
            match result.next_batch().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e.to_string(),
                None => panic!("the query ended without an error"),
            }
        }
    })
    .await
    .expect("the job fails");
    assert!(e.contains("topic 'doomed'") && e.contains("exist"), "{e}");
}

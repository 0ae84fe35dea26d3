//! Conformance of the Kafka-protocol broker the tests run against
//! (crabka-broker, see `support/kafka_broker.rs`): the behaviours weir's
//! Kafka connector and its exactly-once sink rely on, checked with librdkafka
//! and with weir's own protocol client. Each test starts its own broker.

#[path = "support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kafka_broker::{Record, TestBroker};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset};
use weir_connectors::kafka::protocol::{EndTxnOutcome, TransactionHandle};

const TIMEOUT: Duration = Duration::from_secs(30);

fn values(records: &[Record]) -> BTreeSet<String> {
    records.iter().map(|r| r.value.clone()).collect()
}

fn numbered(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!(r#"{{"{prefix}":{i}}}"#)).collect()
}

/// A transactional producer, its transactions initialized.
fn txn_producer(broker: &TestBroker, transactional_id: &str) -> FutureProducer {
    let producer: FutureProducer = broker
        .client_config()
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "300000")
        .set("linger.ms", "5")
        .create()
        .expect("create a transactional producer");
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    producer
}

/// Sends `values` (with keys `k<i>`) to `topic` and waits for every delivery.
fn send_all(producer: &FutureProducer, topic: &str, values: &BTreeSet<String>) {
    let deliveries: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = format!("k{i}");
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(v))
                .unwrap_or_else(|(e, _)| panic!("send to {topic}: {e}"))
        })
        .collect();
    for d in futures::executor::block_on(futures::future::join_all(deliveries)) {
        if let Err((e, _)) = d.expect("delivery not cancelled") {
            panic!("delivery to {topic} failed: {e}");
        }
    }
}

// ---- child producer process --------------------------------------------------------------------

const CHILD_ENV: &str = "WEIR_KAFKA_TEST_CHILD";

/// When this test binary runs as a child producer (see [`ChildProducer`]):
/// begins a transaction, produces, flushes, says so on stdout, then sleeps
/// until it is killed. Called first thing by the tests that spawn one.
fn run_as_child_if_asked() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [bootstrap, topic, transactional_id, count]: [&str; 4] = spec
        .split('|')
        .collect::<Vec<_>>()
        .try_into()
        .expect("child spec");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "300000")
        .create()
        .expect("create the child's producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("child init_transactions");
    producer.begin_transaction().expect("child begin_transaction");
    send_all(&producer, topic, &numbered("open", count.parse().unwrap()));
    producer.flush(TIMEOUT).expect("child flush");
    println!("WEIR_CHILD_READY");
    std::thread::sleep(Duration::from_secs(600));
    std::process::exit(3);
}

/// This test binary re-run as another process that leaves a transaction
/// open: it runs the test `test_name` with [`CHILD_ENV`] set, which makes
/// that test call [`run_as_child_if_asked`].
struct ChildProducer {
    child: Child,
}

impl ChildProducer {
    /// Starts the child and waits until its records are written.
    fn start(
        test_name: &str,
        broker: &TestBroker,
        topic: &str,
        transactional_id: &str,
        count: usize,
    ) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                test_name,
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{}|{topic}|{transactional_id}|{count}", broker.bootstrap()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl(2) only, between fork and exec: the child dies with
        // the test thread that started it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn the child producer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("WEIR_CHILD_READY") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("the child producer did not get ready\n{}", broker.log_tail(30));
        }
        ChildProducer { child }
    }

    /// SIGKILLs the child, as a crash would.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the child producer");
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "the child was killed: {status}");
    }
}

impl Drop for ChildProducer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- (a) produce / consume -----------------------------------------------------------------

#[test]
fn produce_and_consume_1000_keyed_messages_on_3_partitions() {
    let broker = TestBroker::start();
    broker.create_topic("a", 3);
    let records: Vec<(Option<String>, String)> = (0..1000)
        .map(|i| (Some(format!("key-{}", i % 50)), format!(r#"{{"i":{i}}}"#)))
        .collect();
    let acks = broker.produce_json("a", None, &records);
    assert_eq!(acks.len(), 1000);

    for isolation in ["read_uncommitted", "read_committed"] {
        let read = broker.read_all("a", isolation, TIMEOUT);
        assert_eq!(read.len(), 1000, "{isolation}");
        assert_eq!(
            values(&read),
            records.iter().map(|r| r.1.clone()).collect(),
            "{isolation}"
        );
        // every key on one partition, offsets dense from 0, all partitions used
        let mut partition_of_key = BTreeMap::new();
        let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for r in &read {
            let key = r.key.clone().expect("keyed");
            assert_eq!(
                *partition_of_key.entry(key.clone()).or_insert(r.partition),
                r.partition,
                "{key}"
            );
            per_partition.entry(r.partition).or_default().push(r.offset);
            assert!(r.timestamp.is_some_and(|t| t > 0));
        }
        assert_eq!(per_partition.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        for (p, offsets) in &per_partition {
            assert_eq!(
                *offsets,
                (0..offsets.len() as i64).collect::<Vec<_>>(),
                "partition {p}"
            );
        }
    }
    // the acknowledged positions are the ones read back
    let read = broker.read_all("a", "read_uncommitted", TIMEOUT);
    let read_positions: BTreeSet<(i32, i64)> = read.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(read_positions, acks.into_iter().collect());
    let marks = broker.watermarks("a");
    assert_eq!(marks.values().map(|m| m.1).sum::<i64>(), 1000, "{marks:?}");
}

// ---- (b) consumer group offsets ------------------------------------------------------------

fn group_consumer(broker: &TestBroker, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("create a group consumer");
    consumer.subscribe(&["b"]).expect("subscribe");
    consumer
}

#[test]
fn consumer_group_commits_offsets_and_resumes_from_them() {
    let broker = TestBroker::start();
    broker.create_topic("b", 2);
    let records: Vec<(Option<String>, String)> = (0..100)
        .map(|i| (Some(format!("k{i}")), format!(r#"{{"b":{i}}}"#)))
        .collect();
    broker.produce_json("b", None, &records);

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = Vec::new();
    {
        let consumer = group_consumer(&broker, "g1");
        while first.len() < 30 {
            assert!(
                Instant::now() < deadline,
                "first consumer got {} records",
                first.len()
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("consume");
                first.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                ));
            }
        }
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit offsets");
        let committed = consumer.committed(TIMEOUT).expect("committed offsets");
        for p in 0..2 {
            let expected = first.iter().filter(|r| r.0 == p).map(|r| r.1 + 1).max();
            let got = committed.find_partition("b", p).map(|e| e.offset());
            match expected {
                Some(o) => assert_eq!(got, Some(Offset::Offset(o)), "partition {p}"),
                None => assert!(
                    !matches!(got, Some(Offset::Offset(o)) if o > 0),
                    "partition {p}: {got:?}"
                ),
            }
        }
        consumer.unsubscribe();
    }

    let mut rest = Vec::new();
    let consumer = group_consumer(&broker, "g1");
    while first.len() + rest.len() < 100 {
        assert!(
            Instant::now() < deadline,
            "second consumer got {} records",
            rest.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            rest.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
            ));
        }
    }
    // nothing more arrives, nothing twice: the second consumer resumed at the commit
    let extra = consumer.poll(Duration::from_secs(1));
    assert!(extra.is_none(), "{:?}", extra.map(|m| m.map(|m| m.offset())));
    let all: Vec<String> = first.iter().chain(&rest).map(|r| r.2.clone()).collect();
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), distinct.len(), "no record consumed twice");
    assert_eq!(distinct, records.iter().map(|r| r.1.clone()).collect());
    for p in 0..2 {
        let resumed = rest.iter().filter(|r| r.0 == p).map(|r| r.1).min();
        let committed = first
            .iter()
            .filter(|r| r.0 == p)
            .map(|r| r.1 + 1)
            .max()
            .unwrap_or(0);
        if let Some(resumed) = resumed {
            assert_eq!(
                resumed, committed,
                "partition {p} resumes at its committed offset"
            );
        }
    }
}

// ---- (c) transactions: commit and abort ----------------------------------------------------

#[test]
fn read_committed_sees_exactly_the_committed_transaction() {
    let broker = TestBroker::start();
    broker.create_topic("c", 3);
    let producer = txn_producer(&broker, "c-txn");
    let committed = numbered("committed", 100);
    let aborted = numbered("aborted", 100);

    producer.begin_transaction().unwrap();
    send_all(&producer, "c", &committed);
    producer
        .commit_transaction(TIMEOUT)
        .expect("commit the first transaction");
    // librdkafka's second transaction of a session: fenced by crabka unless
    // transaction.version is 1
    producer.begin_transaction().unwrap();
    send_all(&producer, "c", &aborted);
    producer
        .abort_transaction(TIMEOUT)
        .expect("abort the second transaction");
    // and a third, committed, proves the session survives an abort
    let third = numbered("third", 10);
    producer.begin_transaction().unwrap();
    send_all(&producer, "c", &third);
    producer
        .commit_transaction(TIMEOUT)
        .expect("commit the third transaction");

    let read = broker.read_all("c", "read_committed", TIMEOUT);
    assert_eq!(read.len(), 110);
    assert_eq!(values(&read), committed.union(&third).cloned().collect());
    let read = broker.read_all("c", "read_uncommitted", TIMEOUT);
    assert_eq!(read.len(), 210);
    let all: BTreeSet<String> = committed.iter().chain(&aborted).chain(&third).cloned().collect();
    assert_eq!(values(&read), all);
    assert!(broker.open_transactions("c-").is_empty());
}

// ---- (d) zombie fencing --------------------------------------------------------------------

#[test]
fn a_new_producer_fences_the_zombie_and_aborts_its_transaction() {
    let broker = TestBroker::start();
    broker.create_topic("d", 3);
    let zombie = txn_producer(&broker, "d-txn");
    zombie.begin_transaction().unwrap();
    let zombie_values = numbered("zombie", 50);
    send_all(&zombie, "d", &zombie_values);
    zombie.flush(TIMEOUT).unwrap();
    assert_eq!(broker.open_transactions("d-"), vec!["d-txn".to_string()]);

    let fresh = txn_producer(&broker, "d-txn");
    let fresh_values = numbered("fresh", 50);
    fresh.begin_transaction().unwrap();
    send_all(&fresh, "d", &fresh_values);
    fresh
        .commit_transaction(TIMEOUT)
        .expect("the new producer commits");

    let err = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("the zombie's commit must fail");
    match &err {
        KafkaError::Transaction(e) => assert!(
            e.is_fatal()
                || matches!(
                    e.code(),
                    RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch
                ),
            "not a fenced/fatal error: {e} ({:?})",
            e.code()
        ),
        other => panic!("unexpected error: {other}"),
    }

    let read = broker.read_all("d", "read_committed", TIMEOUT);
    assert_eq!(values(&read), fresh_values);
    assert_eq!(read.len(), 50);
    let read = broker.read_all("d", "read_uncommitted", TIMEOUT);
    assert_eq!(
        values(&read),
        zombie_values.union(&fresh_values).cloned().collect()
    );
    assert!(broker.open_transactions("d-").is_empty());
}

// ---- (e) a producer killed mid-transaction -------------------------------------------------

#[test]
fn init_transactions_aborts_the_transaction_of_a_killed_producer() {
    run_as_child_if_asked();
    let broker = TestBroker::start();
    broker.create_topic("e", 3);
    let child = ChildProducer::start(
        "init_transactions_aborts_the_transaction_of_a_killed_producer",
        &broker,
        "e",
        "e-txn",
        60,
    );
    assert_eq!(broker.open_transactions("e-"), vec!["e-txn".to_string()]);
    child.kill();
    // the open transaction blocks read_committed: nothing visible, though written
    let offsets = broker.partition_offsets("e");
    assert!(offsets.values().all(|o| o.last_stable_offset == 0), "{offsets:?}");
    assert_eq!(
        offsets.values().map(|o| o.high_watermark).sum::<i64>(),
        60,
        "{offsets:?}"
    );
    assert!(broker.read_all("e", "read_committed", TIMEOUT).is_empty());
    assert_eq!(broker.read_all("e", "read_uncommitted", TIMEOUT).len(), 60);
    assert_eq!(broker.open_transactions("e-"), vec!["e-txn".to_string()]);

    let producer = txn_producer(&broker, "e-txn");
    assert!(
        broker.open_transactions("e-").is_empty(),
        "init_transactions aborted it"
    );
    let after = numbered("after", 5);
    producer.begin_transaction().unwrap();
    send_all(&producer, "e", &after);
    producer.commit_transaction(TIMEOUT).unwrap();

    let read = broker.read_all("e", "read_committed", TIMEOUT);
    assert_eq!(read.len(), 5);
    assert_eq!(values(&read), after);
    let read = broker.read_all("e", "read_uncommitted", TIMEOUT);
    assert_eq!(
        values(&read),
        numbered("open", 60).union(&after).cloned().collect()
    );
}

// ---- (f) EndTxn of another process's transaction -------------------------------------------

#[test]
fn end_txn_commits_the_transaction_of_another_process() {
    run_as_child_if_asked();
    let broker = TestBroker::start();
    broker.create_topic("f", 3);
    let child = ChildProducer::start(
        "end_txn_commits_the_transaction_of_another_process",
        &broker,
        "f",
        "f-txn",
        40,
    );

    let described = broker.with_protocol_client(|mut c| async move { c.describe_transaction("f-txn").await });
    let described = described.expect("describe f-txn");
    assert_eq!(described.state, "Ongoing");
    assert!(
        described.producer_id >= 0 && described.producer_epoch >= 0,
        "{described:?}"
    );
    assert_eq!(
        described.topics.keys().collect::<Vec<_>>(),
        vec!["f"],
        "{described:?}"
    );
    assert!(described.transaction_timeout_ms == 300_000, "{described:?}");
    let handle = described.handle();
    assert_eq!(handle.transactional_id, "f-txn");
    // the handle survives a checkpoint
    let json = serde_json::to_string(&handle).unwrap();
    assert_eq!(serde_json::from_str::<TransactionHandle>(&json).unwrap(), handle);

    child.kill();
    assert!(broker.read_all("f", "read_committed", TIMEOUT).is_empty());

    let h = handle.clone();
    let outcome = broker.with_protocol_client(|mut c| async move { c.end_transaction(&h, true).await });
    assert_eq!(outcome.expect("commit f-txn"), EndTxnOutcome::Completed);
    let read = broker.read_all("f", "read_committed", TIMEOUT);
    assert_eq!(read.len(), 40);
    assert_eq!(values(&read), numbered("open", 40));
    assert!(broker.open_transactions("f-").is_empty());

    let h = handle.clone();
    let (again, abort, fenced, old_after_fence, new_after_fence) =
        broker.with_protocol_client(|mut c| async move {
            let again = c.end_transaction(&h, true).await;
            let abort = c.end_transaction(&h, false).await;
            let fenced = c.fence_transactional_id("f-txn", Duration::from_secs(60)).await;
            let old = c.end_transaction(&h, true).await;
            let new = match &fenced {
                Ok(new) => Some(c.end_transaction(new, true).await),
                Err(_) => None,
            };
            (again, abort, fenced, old, new)
        });
    // committing twice is idempotent
    assert_eq!(
        again.expect("commit f-txn again"),
        EndTxnOutcome::AlreadyCompleted
    );
    // aborting a committed transaction is an error that says so
    let abort = abort.expect_err("abort after commit").to_string();
    assert!(
        abort.contains("f-txn") && abort.contains("committed instead"),
        "{abort}"
    );
    // fencing bumps the epoch of the same producer id
    let fenced = fenced.expect("fence f-txn");
    assert_eq!(fenced.producer_id, handle.producer_id);
    assert_eq!(fenced.producer_epoch, handle.producer_epoch + 1);
    // the old session can no longer commit
    let old = old_after_fence
        .expect_err("commit with the fenced epoch")
        .to_string();
    assert!(old.contains("f-txn") && old.contains("lost"), "{old}");
    // the new session has nothing to commit
    assert_eq!(
        new_after_fence.unwrap().expect("commit the empty session"),
        EndTxnOutcome::AlreadyCompleted
    );
    // and nothing changed for the readers
    assert_eq!(broker.read_all("f", "read_committed", TIMEOUT).len(), 40);
}

#[test]
fn end_txn_aborts_the_transaction_of_another_process() {
    run_as_child_if_asked();
    let broker = TestBroker::start();
    broker.create_topic("f2", 2);
    let committed = numbered("committed", 7);
    {
        let producer = txn_producer(&broker, "f2-other");
        producer.begin_transaction().unwrap();
        send_all(&producer, "f2", &committed);
        producer.commit_transaction(TIMEOUT).unwrap();
    }
    let child = ChildProducer::start(
        "end_txn_aborts_the_transaction_of_another_process",
        &broker,
        "f2",
        "f2-txn",
        25,
    );
    let handle = broker
        .with_protocol_client(|mut c| async move { c.describe_transaction("f2-txn").await })
        .expect("describe f2-txn")
        .handle();
    child.kill();

    let h = handle.clone();
    let (abort, again, commit) = broker.with_protocol_client(|mut c| async move {
        (
            c.end_transaction(&h, false).await,
            c.end_transaction(&h, false).await,
            c.end_transaction(&h, true).await,
        )
    });
    assert_eq!(abort.expect("abort f2-txn"), EndTxnOutcome::Completed);
    assert_eq!(
        again.expect("abort f2-txn again"),
        EndTxnOutcome::AlreadyCompleted
    );
    let commit = commit.expect_err("commit after abort").to_string();
    assert!(
        commit.contains("f2-txn") && commit.contains("was lost") && commit.contains("aborted"),
        "{commit}"
    );

    assert!(broker.open_transactions("f2-").is_empty());
    assert_eq!(
        values(&broker.read_all("f2", "read_committed", TIMEOUT)),
        committed
    );
    assert_eq!(broker.read_all("f2", "read_uncommitted", TIMEOUT).len(), 32);
    let described = broker
        .with_protocol_client(|mut c| async move { c.describe_transaction("f2-txn").await })
        .unwrap();
    assert_eq!(
        (described.state.as_str(), described.handle()),
        ("CompleteAbort", handle)
    );
    let unknown =
        broker.with_protocol_client(|mut c| async move { c.describe_transaction("no-such-txn").await });
    let unknown = unknown
        .expect_err("describe an unknown transactional id")
        .to_string();
    assert!(unknown.contains("no-such-txn"), "{unknown}");
}

// ---- (g) listing and fencing open transactions ---------------------------------------------

#[test]
fn open_transactions_are_listed_until_fenced() {
    let broker = TestBroker::start();
    broker.create_topic("g", 1);
    let producer = txn_producer(&broker, "g-txn-1");
    let idle = txn_producer(&broker, "g-txn-2");
    producer.begin_transaction().unwrap();
    send_all(&producer, "g", &numbered("open", 20));
    producer.flush(TIMEOUT).unwrap();

    assert_eq!(broker.open_transactions("g-"), vec!["g-txn-1".to_string()]);
    assert!(broker.open_transactions("other-").is_empty());
    let all = broker.with_protocol_client(|mut c| async move { c.list_transactions(&[]).await.unwrap() });
    let states: BTreeMap<String, String> = all
        .into_iter()
        .filter(|l| l.transactional_id.starts_with("g-"))
        .map(|l| (l.transactional_id, l.state))
        .collect();
    assert_eq!(
        states.get("g-txn-1").map(String::as_str),
        Some("Ongoing"),
        "{states:?}"
    );
    assert_eq!(
        states.get("g-txn-2").map(String::as_str),
        Some("Empty"),
        "{states:?}"
    );
    let bad = broker.with_protocol_client(|mut c| async move { c.list_transactions(&["Bogus"]).await });
    assert!(bad.is_err(), "unknown state filter: {bad:?}");

    // the open transaction holds read_committed back
    let offsets = broker.partition_offsets("g")[&0];
    assert_eq!((offsets.high_watermark, offsets.last_stable_offset), (20, 0));
    assert_eq!(broker.watermarks("g")[&0], (0, 20));
    assert!(broker.read_all("g", "read_committed", TIMEOUT).is_empty());

    let handle = broker.with_protocol_client(|mut c| async move {
        c.fence_transactional_id("g-txn-1", Duration::from_secs(60))
            .await
            .expect("fence g-txn-1")
    });
    assert_eq!(handle.transactional_id, "g-txn-1");
    assert!(broker.open_transactions("g-").is_empty());
    // the abort marker moved the high watermark; the LSO caught up with it
    let offsets = broker.partition_offsets("g")[&0];
    assert_eq!((offsets.high_watermark, offsets.last_stable_offset), (21, 21));
    assert_eq!(broker.watermarks("g")[&0], (0, 21));
    assert!(broker.read_all("g", "read_committed", TIMEOUT).is_empty());
    assert_eq!(broker.read_all("g", "read_uncommitted", TIMEOUT).len(), 20);
    drop(idle);
}

// ---- (h) restart on the same data directory ------------------------------------------------

fn committed_group_offset(broker: &TestBroker, group: &str, topic: &str, partition: i32) -> Offset {
    let consumer: BaseConsumer = broker.client_config().set("group.id", group).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    committed.find_partition(topic, partition).unwrap().offset()
}

#[test]
fn the_broker_restarts_on_its_data_dir_after_a_stop_or_a_kill() {
    let mut broker = TestBroker::start();
    broker.create_topic("h", 2);
    let plain: Vec<(Option<String>, String)> =
        (0..50).map(|i| (None, format!(r#"{{"plain":{i}}}"#))).collect();
    broker.produce_json("h", None, &plain);
    let producer = txn_producer(&broker, "h-txn");
    producer.begin_transaction().unwrap();
    send_all(&producer, "h", &numbered("committed", 10));
    producer.commit_transaction(TIMEOUT).unwrap();
    drop(producer);
    {
        let consumer: BaseConsumer = broker.client_config().set("group.id", "hg").create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("h", 0, Offset::Offset(7)).unwrap();
        consumer
            .commit(&tpl, CommitMode::Sync)
            .expect("commit a group offset");
    }
    let before = broker.read_all("h", "read_committed", TIMEOUT);
    assert_eq!(before.len(), 60);

    for graceful in [true, false] {
        if graceful {
            let started = Instant::now();
            assert!(broker.stop(), "the broker stops by itself on SIGTERM");
            eprintln!("graceful stop took {:?}", started.elapsed());
        } else {
            broker.kill();
        }
        broker.restart();
        assert_eq!(
            broker.read_all("h", "read_committed", TIMEOUT),
            before,
            "graceful: {graceful}"
        );
        assert_eq!(broker.read_all("h", "read_uncommitted", TIMEOUT).len(), 60);
        assert_eq!(committed_group_offset(&broker, "hg", "h", 0), Offset::Offset(7));
        let described = broker
            .with_protocol_client(|mut c| async move { c.describe_transaction("h-txn").await })
            .expect("the coordinator remembers h-txn");
        assert_eq!(described.state, "CompleteCommit");
    }
    // and it keeps working: a new session of the same transactional id
    let producer = txn_producer(&broker, "h-txn");
    let after = numbered("after", 5);
    producer.begin_transaction().unwrap();
    send_all(&producer, "h", &after);
    producer.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(broker.read_all("h", "read_committed", TIMEOUT).len(), 65);
}

/// Known defect of crabka-broker 0.3.8, hence ignored: after a restart
/// (graceful or not) a partition forgets the transactions open on it. Its
/// last stable offset jumps to the high watermark, `read_committed`
/// consumers see the open transaction's records at once, and still see them
/// after the transaction is aborted. (The coordinator does remember the
/// transaction, and `EndTxn` completes it.) Run with `--ignored` to check a
/// newer broker.
#[test]
#[ignore = "crabka-broker 0.3.8 loses the isolation of transactions open across a restart"]
fn transactions_open_across_a_broker_restart_stay_isolated() {
    run_as_child_if_asked();
    let mut broker = TestBroker::start();
    broker.create_topic("i", 2);
    let committed = numbered("committed", 10);
    let producer = txn_producer(&broker, "i-committed");
    producer.begin_transaction().unwrap();
    send_all(&producer, "i", &committed);
    producer.commit_transaction(TIMEOUT).unwrap();
    let child = ChildProducer::start(
        "transactions_open_across_a_broker_restart_stay_isolated",
        &broker,
        "i",
        "i-open",
        10,
    );
    let handle = broker
        .with_protocol_client(|mut c| async move { c.describe_transaction("i-open").await })
        .expect("describe i-open")
        .handle();
    child.kill();
    assert_eq!(
        values(&broker.read_all("i", "read_committed", TIMEOUT)),
        committed
    );

    assert!(broker.stop());
    broker.restart();
    assert_eq!(broker.open_transactions("i-"), vec!["i-open".to_string()]);
    assert_eq!(
        values(&broker.read_all("i", "read_committed", TIMEOUT)),
        committed,
        "the open transaction is invisible after the restart: {:?}",
        broker.partition_offsets("i")
    );
    let h = handle.clone();
    let outcome = broker.with_protocol_client(|mut c| async move { c.end_transaction(&h, false).await });
    assert_eq!(outcome.expect("abort i-open"), EndTxnOutcome::Completed);
    assert_eq!(
        values(&broker.read_all("i", "read_committed", TIMEOUT)),
        committed
    );
}

//! Crash recovery of the real `weir` binary against a real Kafka broker:
//!
//! - job `feed`: datagen (paced) -> Kafka topic `events`, exactly once;
//! - job `windows`: Kafka `events` -> TUMBLE window aggregate -> Kafka topic
//!   `windows`, exactly once;
//!
//! both in one `weir` process, SIGKILLed at random moments and aborted at
//! named points of the protocol (after pre-commit, after `_metadata` but
//! before commit, between one subtask's commit and another's, after
//! commit), restarted each time (each job resumes from its latest checkpoint
//! by itself). Then `feed` runs to its end, and `windows` reads `events` to
//! its end. Under read_committed, `events` must hold every generated row
//! exactly once and `windows` every window exactly once with the right
//! values (computed here from the datagen contract), and no transaction may
//! stay open.

#[path = "support/event_time.rs"]
mod event_time;
#[path = "support/kafka_broker.rs"]
mod kafka_broker;
#[path = "support/weir_process.rs"]
mod weir_process;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use event_time::window_index;
use kafka_broker::TestBroker;
use rand::{Rng, SeedableRng};
use weir_process::{run_to_end, sigkill, start, stderr_of};

const ROWS: i64 = 30_000;
const KEYS: i64 = 5;

fn settings(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "SET 'execution.checkpointing.interval' = '150 ms';
SET 'execution.checkpointing.dir' = '{d}/checkpoints';
SET 'execution.checkpointing.num-retained' = '2';
SET 'restart-strategy.type' = 'none';
SET 'pipeline.name' = '{name}';
"
    )
}

fn feed(dir: &Path, bootstrap: &str) -> String {
    format!(
        "{}SET 'parallelism.default' = '3';
CREATE TABLE gen (id BIGINT, ts TIMESTAMP(3)) WITH (
  'connector' = 'datagen', 'rows-per-second' = '3000', 'number-of-rows' = '{ROWS}', 'batch-size' = '100',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
  'event-time.start' = '2024-01-01 00:00:00', 'event-time.step' = '1 ms');
CREATE TABLE events_out (id BIGINT, ts TIMESTAMP(3)) WITH (
  'connector' = 'kafka', 'topic' = 'events', 'properties.bootstrap.servers' = '{bootstrap}',
  'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once', 'sink.partitioner' = 'fixed');
INSERT INTO events_out SELECT id, ts FROM gen;
",
        settings(dir, "feed")
    )
}

fn windows(dir: &Path, bootstrap: &str, bounded: bool) -> String {
    let bounded = if bounded { "latest-offset" } else { "unbounded" };
    format!(
        "{}SET 'parallelism.default' = '2';
CREATE TABLE events_in (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '200' MILLISECOND) WITH (
  'connector' = 'kafka', 'topic' = 'events', 'properties.bootstrap.servers' = '{bootstrap}',
  'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = '{bounded}', 'format' = 'json');
CREATE TABLE windows (k BIGINT, window_start TIMESTAMP(3), c BIGINT, s BIGINT) WITH (
  'connector' = 'kafka', 'topic' = 'windows', 'properties.bootstrap.servers' = '{bootstrap}',
  'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once');
INSERT INTO windows SELECT id % {KEYS}, window_start, count(*), sum(id)
FROM TABLE(TUMBLE(TABLE events_in, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY id % {KEYS}, window_start, window_end;
",
        settings(dir, "windows")
    )
}

#[test]
fn sigkill_at_random_and_at_protocol_points() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 3);
    broker.create_topic("windows", 3);
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.sql");
    std::fs::write(
        &both,
        format!(
            "{}{}",
            feed(dir.path(), &bootstrap),
            windows(dir.path(), &bootstrap, false)
        ),
    )
    .unwrap();
    let feed_only = dir.path().join("feed.sql");
    std::fs::write(&feed_only, feed(dir.path(), &bootstrap)).unwrap();
    let windows_to_end = dir.path().join("windows.sql");
    std::fs::write(&windows_to_end, windows(dir.path(), &bootstrap, true)).unwrap();

    let mut starts = 0;
    // Aborts at named points of the protocol.
    for fp in [
        "kafka-sink-after-precommit",
        "checkpoint-after-metadata",
        "kafka-sink-before-commit",
        "kafka-sink-after-commit",
        "checkpoint-after-notify",
    ] {
        starts += 1;
        let mut child = start(&both, Some(&format!("{fp}=return")));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    !status.success(),
                    "failpoint {fp} was never reached: {}",
                    stderr_of(&mut child)
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "failpoint {fp} not reached within 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Random SIGKILLs while both jobs run.
    let mut rng = rand_pcg::Pcg64::seed_from_u64(42);
    for _ in 0..22 {
        starts += 1;
        let mut child = start(&both, None);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1200)));
        match child.try_wait().unwrap() {
            Some(status) => panic!("weir ended before the kill ({status}): {}", stderr_of(&mut child)),
            None => sigkill(&mut child),
        }
    }
    // Then the feed to its end, and the aggregate up to the end of its input.
    run_to_end(&feed_only);
    run_to_end(&windows_to_end);
    eprintln!("finished after {starts} starts and 2 final runs");

    // `events`: every generated row exactly once.
    let events = broker.read_all("events", "read_committed", Duration::from_secs(60));
    let mut seen = vec![0u32; ROWS as usize];
    for r in &events {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        seen[v["id"].as_i64().unwrap() as usize] += 1;
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {ROWS} input rows not exactly once, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    // `windows`: every (key, window) exactly once with the right values.
    let mut want: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for r in 0..ROWS {
        let e = want.entry((r % KEYS, r / 1000)).or_insert((0, 0));
        e.0 += 1;
        e.1 += r;
    }
    let mut got: BTreeMap<(i64, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for r in broker.read_all("windows", "read_committed", Duration::from_secs(60)) {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let window = window_index(v["window_start"].as_str().unwrap());
        got.entry((v["k"].as_i64().unwrap(), window))
            .or_default()
            .push((v["c"].as_i64().unwrap(), v["s"].as_i64().unwrap()));
    }
    let mut problems = Vec::new();
    for (key, w) in &want {
        match got.get(key).map(Vec::as_slice) {
            Some([one]) if one == w => {}
            None => problems.push(format!("{key:?}: missing (want {w:?})")),
            Some(other) => problems.push(format!("{key:?}: got {other:?}, want once {w:?}")),
        }
    }
    for key in got.keys().filter(|k| !want.contains_key(k)) {
        problems.push(format!("{key:?}: unexpected {:?}", got[key]));
    }
    assert!(
        problems.is_empty(),
        "{} of {} windows wrong:\n{}",
        problems.len(),
        want.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    let open = broker.open_transactions("weir-");
    assert!(open.is_empty(), "transactions left open: {open:?}");
}

//! Crash recovery of the real `weir` binary: a windowed aggregate into the
//! exactly-once `filesystem` sink, SIGKILLed at random moments and aborted at
//! named points of the checkpoint protocol, restarted each time (it resumes
//! from its latest checkpoint by itself), until it finishes. The committed
//! output must then equal the expected result exactly: every window once,
//! with the right values — nothing lost, nothing duplicated.
//!
//! The expected result is computed here, independently of weir, from the
//! datagen contract: row r has id r and event time 2024-01-01 00:00:00 + r ms.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

#[path = "support/weir_process.rs"]
mod weir_process;
use weir_process::{sigkill, start, stderr_of};

const ROWS: u64 = 45_000;
const KEYS: u64 = 5;
const WINDOW_MS: u64 = 1_000;

fn script(dir: &Path, backend: &str, parallelism: usize) -> String {
    let d = dir.display();
    format!(
        "SET 'execution.checkpointing.interval' = '150 ms';
SET 'execution.checkpointing.dir' = '{d}/checkpoints';
SET 'execution.checkpointing.num-retained' = '2';
SET 'execution.checkpointing.incremental' = 'true';
SET 'state.backend.type' = '{backend}';
SET 'state.backend.rocksdb.localdir' = '{d}/local';
SET 'pipeline.name' = 'crash-test';
SET 'parallelism.default' = '{parallelism}';
SET 'restart-strategy.type' = 'none';
CREATE TABLE src (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
  'connector' = 'datagen', 'rows-per-second' = '3000', 'number-of-rows' = '{ROWS}', 'batch-size' = '200',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
  'event-time.start' = '2024-01-01 00:00:00', 'event-time.step' = '1 ms');
CREATE TABLE out (k BIGINT, window_start TIMESTAMP(3), c BIGINT, s BIGINT) WITH (
  'connector' = 'filesystem', 'path' = '{d}/out', 'format' = 'json');
INSERT INTO out SELECT id % {KEYS} AS k, window_start, count(*) AS c, sum(id) AS s
FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY id % {KEYS}, window_start, window_end;
"
    )
}

/// (k, window index) -> (count, sum)
fn expected() -> BTreeMap<(u64, u64), (u64, u64)> {
    let mut m = BTreeMap::new();
    for r in 0..ROWS {
        let e = m.entry((r % KEYS, r / WINDOW_MS)).or_insert((0, 0));
        e.0 += 1;
        e.1 += r;
    }
    m
}

/// Every committed row (files whose name does not start with '.'), as
/// (k, window index) -> every (count, sum) seen for it.
fn committed(dir: &Path) -> BTreeMap<(u64, u64), Vec<(u64, u64)>> {
    let mut m: BTreeMap<(u64, u64), Vec<(u64, u64)>> = BTreeMap::new();
    let base_ms = 1_704_067_200_000u64; // 2024-01-01T00:00:00Z
    let Ok(entries) = std::fs::read_dir(dir) else {
        return m;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') || !e.path().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|err| panic!("{name}: {err}: {line}"));
            let ws = v["window_start"].as_str().expect("window_start");
            let ms = parse_ts_ms(ws);
            let key = (v["k"].as_u64().unwrap(), (ms - base_ms) / WINDOW_MS);
            m.entry(key)
                .or_default()
                .push((v["c"].as_u64().unwrap(), v["s"].as_u64().unwrap()));
        }
    }
    m
}

/// Milliseconds since the epoch of "2024-01-01T00:00:05" / "2024-01-01 00:00:05.000".
fn parse_ts_ms(s: &str) -> u64 {
    let s = s.replace('T', " ");
    let (date, time) = s.split_once(' ').expect("date and time");
    assert_eq!(date, "2024-01-01", "test windows are all on 2024-01-01");
    let mut parts = time.split(':');
    let h: u64 = parts.next().unwrap().parse().unwrap();
    let m: u64 = parts.next().unwrap().parse().unwrap();
    let sec: f64 = parts.next().unwrap().trim_end_matches('Z').parse().unwrap();
    1_704_067_200_000 + (h * 3600 + m * 60) * 1000 + (sec * 1000.0).round() as u64
}

/// Runs the job to completion through `kills` random SIGKILLs and one crash
/// at each named failpoint; returns how many times it was started.
fn run_with_crashes(dir: &Path, kills: usize, failpoints: &[&str], seed: u64) -> usize {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut starts = 0;
    // Crashes at named points of the protocol: the process aborts there.
    for fp in failpoints {
        starts += 1;
        let mut child = start(&dir.join("job.sql"), Some(&format!("{fp}=return")));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    !status.success(),
                    "failpoint {fp} was never reached (the job finished)"
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
    // Random SIGKILLs.
    for _ in 0..kills {
        starts += 1;
        let mut child = start(&dir.join("job.sql"), None);
        let wait = Duration::from_millis(rng.random_range(50..900));
        std::thread::sleep(wait);
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(
                    status.success(),
                    "weir failed: {status}\n{}",
                    stderr_of(&mut child)
                );
                return starts; // finished before the kill
            }
            None => sigkill(&mut child),
        }
    }
    // Then let it finish.
    starts += 1;
    let child = start(&dir.join("job.sql"), None);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the last run failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    starts
}

fn check(dir: &Path) {
    let expected = expected();
    let got = committed(&dir.join("out"));
    let mut problems = Vec::new();
    for (key, want) in &expected {
        match got.get(key).map(Vec::as_slice) {
            Some([one]) if one == want => {}
            Some([]) | None => problems.push(format!("{key:?}: missing (want {want:?})")),
            Some(several) => problems.push(format!("{key:?}: got {several:?}, want once {want:?}")),
        }
    }
    for key in got.keys().filter(|k| !expected.contains_key(k)) {
        problems.push(format!("{key:?}: unexpected row {:?}", got[key]));
    }
    assert!(
        problems.is_empty(),
        "{} of {} windows wrong:\n{}",
        problems.len(),
        expected.len(),
        problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn crash_test(backend: &str, parallelism: usize, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        script(dir.path(), backend, parallelism),
    )
    .unwrap();
    let failpoints = [
        "checkpoint-before-metadata",
        "checkpoint-after-metadata",
        "checkpoint-after-notify",
        "filesystem-sink-before-commit",
        "filesystem-sink-after-commit",
    ];
    let starts = run_with_crashes(dir.path(), 22, &failpoints, seed);
    eprintln!("{backend} p{parallelism}: finished after {starts} starts");
    check(dir.path());
}

#[test]
fn sigkill_at_random_and_at_protocol_points_hashmap() {
    crash_test("hashmap", 2, 7);
}

#[test]
fn sigkill_at_random_and_at_protocol_points_rocksdb() {
    crash_test("rocksdb", 2, 11);
}

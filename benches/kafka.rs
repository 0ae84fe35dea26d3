//! Kafka -> filter/project -> Kafka on weir, over a real broker on a
//! loopback address (crabka-broker on `127.0.0.N`, started by the bench):
//! throughput of the Kafka sink's delivery guarantees (`exactly-once`,
//! `at-least-once`, `none`), all with 1 s checkpoints.
//!
//! ```text
//! cargo bench --bench kafka
//! cargo bench --bench kafka -- --events 1000000 --runs 3 --modes exactly-once,at-least-once,none
//! cargo bench --bench kafka -- --events 5000000 --source-property fetch.queue.backoff.ms=10 --timeline
//! ```
//!
//! Needs the test broker (see `tests/support/kafka_broker.rs`:
//! `$WEIR_KAFKA_BROKER`, or the cached build, or built on first use).
//!
//! Options (after `--`):
//!
//! | option                  | default                         | meaning                                 |
//! |-------------------------|---------------------------------|-----------------------------------------|
//! | `--events N`            | 1000000                         | records pre-produced to `orders_in`     |
//! | `--modes a,b`           | exactly-once,at-least-once,none | `sink.delivery-guarantee`s, in order    |
//! | `--runs R`              | 3                               | runs per mode                           |
//! | `--parallelism P`       | 2                               | `parallelism.default` of the job        |
//! | `--threads T`           | available cores                 | tokio worker threads                    |
//! | `--timeline`            | off                             | rows read/written every 250 ms, per run |
//! | `--source-property K=V` | none                            | `'properties.K' = 'V'` on the source    |
//! | `--sink-property K=V`   | none                            | `'properties.K' = 'V'` on the sink      |
//!
//! `--modes` also takes `blackhole`: the same query into a `blackhole` sink,
//! the ceiling of the source and the query (no output topic to check).
//! With `RUST_LOG` set (e.g. `weir_connectors=debug`), weir's logs go to
//! stderr (transactions opened and committed, partitions read to the end).
//!
//! # What is measured
//!
//! One broker is started, `orders_in` (3 partitions) is filled once with N
//! JSON orders (`{"order_id", "customer_id", "amount", "region", "ts"}`,
//! record `i` in partition `i % 3` with event time `2024-01-01 00:00:00` +
//! `i` ms) by an rdkafka producer, whose rate is printed. Then each run (the
//! modes take turns, run 1 of every mode, then run 2, ..., so slow phases of
//! a noisy machine spread over all modes) gets a fresh engine, a fresh output
//! topic (3 partitions) and a fresh checkpoint directory, and runs
//!
//! ```sql
//! INSERT INTO orders_out SELECT order_id, customer_id, amount * 1.1 AS amount_with_tax,
//!     upper(region) AS region FROM orders_in WHERE amount > 50
//! ```
//!
//! with a bounded source (`earliest-offset` to `latest-offset`), checkpoints
//! every second and `sink.delivery-guarantee` = the mode. The clock runs
//! from `submit` to `JobHandle::wait()` returning (for exactly-once that
//! includes the final checkpoint, which commits the last transactions).
//! **events/s** = N / elapsed seconds (input records, not output rows).
//! **cpu** is this process' user + system time over the run (weir and the
//! librdkafka threads), **broker cpu** the broker process' over the same
//! interval.
//!
//! After each run the output topic is read back with `read_committed` and
//! checked against the rows the generator knows pass the filter: every
//! expected `order_id` must be there. Exactly-once must have each exactly
//! once; at-least-once and none may show duplicates (only if something was
//! retried; the `dups` column says how many), never missing rows.
//!
//! The output: progress on stderr, then a table per mode (median events/s
//! over the runs, min and max, checkpoints completed and their median
//! duration, output rows) and one JSON line per mode on stdout.
//!
//! # What limits it
//!
//! With the connector's defaults the source, not the sink, sets the pace:
//! librdkafka (2.x) stops fetching a partition for `fetch.queue.backoff.ms`
//! (default 1000 ms) once its local queue holds `queued.min.messages`
//! (default 100000) records, so each partition yields about 100000 records
//! a second, in bursts (see `--timeline`), and run times are quantised to
//! whole seconds. `--source-property fetch.queue.backoff.ms=10` lifts that
//! and shows what the sinks cost; then use several million events, so that
//! a run spans several checkpoints. The read-back after a run (the test
//! harness' consumer, same default) is slow for the same reason.

#[path = "../tests/support/kafka_broker.rs"]
mod kafka_broker;

#[path = "support/process.rs"]
mod process;
#[path = "support/run_info.rs"]
mod run_info;

use process::{available_cores, clock_ticks_per_second};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kafka_broker::TestBroker;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

const INPUT_TOPIC: &str = "orders_in";
const PARTITIONS: i32 = 3;
const REGIONS: [&str; 8] = [
    "north",
    "south",
    "east",
    "west",
    "central",
    "north-east",
    "south-west",
    "overseas",
];
const MODES: [&str; 3] = ["exactly-once", "at-least-once", "none"];
/// Modes `--modes` accepts: also `blackhole`, the same job into a `blackhole`
/// sink (the source's and the query's ceiling; nothing to read back).
const KNOWN_MODES: [&str; 4] = ["exactly-once", "at-least-once", "none", "blackhole"];

#[derive(Debug, Clone)]
struct Args {
    events: u64,
    modes: Vec<String>,
    runs: usize,
    parallelism: usize,
    threads: usize,
    /// `--timeline`: print rows read and written every 250 ms of each run.
    timeline: bool,
    /// `--source-property K=V` / `--sink-property K=V`: librdkafka settings
    /// (`'properties.K' = 'V'`) added to the source or the sink table.
    source_properties: Vec<(String, String)>,
    sink_properties: Vec<(String, String)>,
}

fn usage() -> String {
    "usage: cargo bench --bench kafka -- [--events N] [--modes exactly-once,at-least-once,none,blackhole] \
     [--runs R] [--parallelism P] [--threads T] [--timeline] [--source-property K=V]... \
     [--sink-property K=V]..."
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        events: 1_000_000,
        modes: MODES.iter().map(|m| m.to_string()).collect(),
        runs: 3,
        parallelism: 2,
        threads: available_cores(),
        timeline: false,
        source_properties: Vec::new(),
        sink_properties: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        let n = v
            .replace(['_', ','], "")
            .parse::<u64>()
            .map_err(|_| format!("{flag}: not a number: '{v}'"))?;
        if n == 0 {
            Err(format!("{flag} must be at least 1"))
        } else {
            Ok(n)
        }
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "--events" => args.events = number("--events", value())?,
            "--runs" => args.runs = number("--runs", value())? as usize,
            "--parallelism" => args.parallelism = number("--parallelism", value())? as usize,
            "--threads" => args.threads = number("--threads", value())? as usize,
            "--timeline" => args.timeline = true,
            "--source-property" | "--sink-property" => {
                let v = value().ok_or_else(|| format!("{flag} needs K=V"))?;
                let (k, v) = v
                    .split_once('=')
                    .ok_or_else(|| format!("{flag}: expected K=V, got '{v}'"))?;
                let list = if flag == "--source-property" {
                    &mut args.source_properties
                } else {
                    &mut args.sink_properties
                };
                list.push((k.trim().to_string(), v.trim().to_string()));
            }
            "--modes" => {
                let v = value().ok_or("--modes needs a value")?;
                args.modes = Vec::new();
                for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    let m = m.to_ascii_lowercase();
                    if !KNOWN_MODES.contains(&m.as_str()) {
                        return Err(format!(
                            "unknown mode '{m}' (one of {})\n{}",
                            KNOWN_MODES.join(", "),
                            usage()
                        ));
                    }
                    args.modes.push(m);
                }
                if args.modes.is_empty() {
                    return Err(format!("no modes\n{}", usage()));
                }
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument '{other}'\n{}", usage())),
        }
    }
    Ok(args)
}

// ---- the input ---------------------------------------------------------------------------------

/// splitmix64: a fixed pseudo-random function of the record number.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Record `i`'s amount in cents, 0..50000 (0.00 to 499.99).
fn amount_cents(i: u64) -> u64 {
    mix(i) % 50_000
}

/// Whether record `i` passes `WHERE amount > 50`.
fn passes(i: u64) -> bool {
    amount_cents(i) > 5_000
}

/// Record `i` as JSON; it goes to partition `i % 3`.
fn record_json(i: u64, out: &mut String) {
    out.clear();
    let cents = amount_cents(i);
    let ms = i % 1000;
    let secs = i / 1000;
    let _ = write!(
        out,
        r#"{{"order_id": {i}, "customer_id": {}, "amount": {}.{:02}, "region": "{}", "ts": "2024-01-{:02} {:02}:{:02}:{:02}.{ms:03}"}}"#,
        i % 10_000,
        cents / 100,
        cents % 100,
        REGIONS[(mix(i ^ 0x5555) % REGIONS.len() as u64) as usize],
        1 + secs / 86_400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
    );
}

/// Counts failed deliveries of the input producer.
#[derive(Default)]
struct ProduceErrors {
    failed: std::sync::atomic::AtomicU64,
    first: parking_lot::Mutex<Option<String>>,
}

impl ClientContext for ProduceErrors {}

impl ProducerContext for ProduceErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.first.lock().get_or_insert_with(|| e.to_string());
        }
    }
}

/// Produces the N input records; returns the seconds it took (until every
/// record was acknowledged).
fn produce_input(broker: &TestBroker, events: u64) -> Result<f64, String> {
    let producer: BaseProducer<ProduceErrors> = broker
        .client_config()
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000")
        .create_with_context(ProduceErrors::default())
        .map_err(|e| format!("create the input producer: {e}"))?;
    let start = Instant::now();
    let mut value = String::with_capacity(160);
    for i in 0..events {
        record_json(i, &mut value);
        let mut record = BaseRecord::<(), str>::to(INPUT_TOPIC)
            .payload(value.as_str())
            .partition((i % PARTITIONS as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(format!("produce to {INPUT_TOPIC}: {e}")),
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flush the input producer: {e}"))?;
    let ctx = producer.context();
    let failed = ctx.failed.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        return Err(format!(
            "{failed} input records were not delivered: {}",
            ctx.first.lock().clone().unwrap_or_default()
        ));
    }
    Ok(start.elapsed().as_secs_f64())
}

// ---- one run -----------------------------------------------------------------------------------

/// The measurement of one run.
#[derive(Debug, Clone, Default)]
struct Run {
    seconds: f64,
    cpu_seconds: f64,
    broker_cpu_seconds: f64,
    checkpoints: usize,
    checkpoint_median_ms: f64,
    /// Records in the output topic under read_committed.
    output_rows: u64,
    /// Output records beyond the first of their order_id.
    duplicates: u64,
    /// Expected order_ids not in the output.
    missing: u64,
    restarts: u32,
    /// Seconds to read the output topic back.
    verify_seconds: f64,
}

impl Run {
    fn events_per_sec(&self, events: u64) -> f64 {
        events as f64 / self.seconds
    }
}

/// User + system CPU seconds of a process (`self` or a pid), all threads.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) is parenthesised and may hold spaces: split after it.
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // Fields from 3 (state) on: utime and stime are fields 14 and 15.
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / clock_ticks_per_second()
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn short(mode: &str) -> &'static str {
    match mode {
        "exactly-once" => "eo",
        "at-least-once" => "alo",
        "blackhole" => "bh",
        _ => "none",
    }
}

async fn run_once(broker: &TestBroker, args: &Args, mode: &str, run: usize) -> Result<Run, String> {
    let bootstrap = broker.bootstrap();
    let out_topic = format!("orders_out_{}_{run}", short(mode));
    broker.create_topic(&out_topic, PARTITIONS);
    let checkpoint_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let src_extra = sql_properties(&args.source_properties);
    let sink_extra = sql_properties(&args.sink_properties);
    let sink_with = if mode == "blackhole" {
        "'connector' = 'blackhole'".to_string()
    } else {
        format!(
            "'connector' = 'kafka', 'topic' = '{out_topic}', 'properties.bootstrap.servers' = '{bootstrap}',
             'format' = 'json', 'sink.delivery-guarantee' = '{mode}'{sink_extra}"
        )
    };
    let engine = weir::Engine::new();
    engine
        .execute(&format!(
            "SET 'execution.checkpointing.interval' = '1 s';
             SET 'execution.checkpointing.dir' = '{dir}';
             SET 'pipeline.name' = 'kafka-bench-{short}-{run}';
             SET 'parallelism.default' = '{parallelism}';
             CREATE TABLE orders_in (order_id BIGINT, customer_id BIGINT, amount DOUBLE, region STRING,
                 ts TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = '{INPUT_TOPIC}',
                   'properties.bootstrap.servers' = '{bootstrap}',
                   'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
                   'format' = 'json'{src_extra});
             CREATE TABLE orders_out (order_id BIGINT, customer_id BIGINT, amount_with_tax DOUBLE,
                 region STRING)
             WITH ({sink_with});",
            dir = checkpoint_dir.path().display(),
            short = short(mode),
            parallelism = args.parallelism,
        ))
        .await
        .map_err(|e| format!("setup: {e}"))?;

    let broker_pid = broker.pid().map(|p| p.to_string()).unwrap_or_default();
    let cpu_before = cpu_seconds("self");
    let broker_before = cpu_seconds(&broker_pid);
    let start = Instant::now();
    let job = engine
        .submit(
            "INSERT INTO orders_out SELECT order_id, customer_id, amount * 1.1 AS amount_with_tax, \
             upper(region) AS region FROM orders_in WHERE amount > 50",
        )
        .await
        .map_err(|e| format!("submit: {e}"))?;
    let sampler = args.timeline.then(|| {
        let job = job.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let (read, written) = rows_read_written(&job);
                samples.push((
                    start.elapsed().as_secs_f64(),
                    read,
                    written,
                    job.checkpoints().len(),
                ));
                if job.status() != weir::JobStatus::Running {
                    return samples;
                }
            }
        })
    });
    let status = job.wait().await.map_err(|e| e.to_string())?;
    let mut r = Run {
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds("self") - cpu_before,
        broker_cpu_seconds: cpu_seconds(&broker_pid) - broker_before,
        restarts: job.restarts(),
        ..Run::default()
    };
    if status != weir::JobStatus::Finished {
        return Err(format!("the job ended {status:?}"));
    }
    let completed: Vec<_> = job
        .checkpoints()
        .into_iter()
        .filter(|c| c.status.name() == "COMPLETED")
        .collect();
    r.checkpoints = completed.len();
    let mut durations: Vec<f64> = completed
        .iter()
        .filter_map(|c| c.duration.map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    r.checkpoint_median_ms = median(&mut durations);
    if let Some(sampler) = sampler {
        let samples = sampler.await.map_err(|e| e.to_string())?;
        eprintln!("  timeline (s: rows read, rows written, checkpoints triggered):");
        let mut line = String::new();
        for (t, read, written, ckpts) in samples {
            let _ = write!(line, " {t:.2}: {read} {written} {ckpts} |");
            if line.len() > 100 {
                eprintln!("   {line}");
                line.clear();
            }
        }
        if !line.is_empty() {
            eprintln!("   {line}");
        }
        for c in job.checkpoints() {
            eprintln!(
                "   checkpoint {}: {} {:?} alignment {:?}",
                c.id,
                c.status.name(),
                c.duration,
                c.alignment
            );
        }
    }
    drop(engine);
    if mode == "blackhole" {
        r.output_rows = rows_read_written(&job).1;
        return Ok(r);
    }

    // Read the output back and check it against the generator.
    let verify_start = Instant::now();
    let records = broker.read_all(&out_topic, "read_committed", Duration::from_secs(600));
    r.verify_seconds = verify_start.elapsed().as_secs_f64();
    r.output_rows = records.len() as u64;
    let mut seen = vec![0u32; args.events as usize];
    for rec in &records {
        let v: serde_json::Value = serde_json::from_str(&rec.value)
            .map_err(|e| format!("output record {}: {e}: {}", rec.offset, rec.value))?;
        let id = v["order_id"]
            .as_u64()
            .filter(|&id| id < args.events && passes(id))
            .ok_or_else(|| format!("unexpected output record {}", rec.value))?;
        seen[id as usize] += 1;
    }
    for (i, &n) in seen.iter().enumerate() {
        if n == 0 && passes(i as u64) {
            r.missing += 1;
        }
        r.duplicates += n.saturating_sub(1) as u64;
    }
    Ok(r)
}

/// `, 'properties.K' = 'V'` for each setting.
fn sql_properties(properties: &[(String, String)]) -> String {
    properties
        .iter()
        .map(|(k, v)| format!(", 'properties.{k}' = '{}'", v.replace('\'', "''")))
        .collect()
}

/// Rows the source produced and rows that reached the sink, so far.
fn rows_read_written(job: &weir::JobHandle) -> (u64, u64) {
    let metrics = job.metrics();
    let read = metrics
        .iter()
        .filter(|o| o.operator_name.starts_with("Source"))
        .map(|o| o.rows_out)
        .sum();
    let written = metrics
        .iter()
        .filter(|o| o.operator_name.starts_with("Sink"))
        .map(|o| o.rows_in)
        .sum();
    (read, written)
}

// ---- output ------------------------------------------------------------------------------------

/// The runs of one mode, summarised.
struct Summary {
    mode: String,
    runs: Vec<Run>,
    errors: Vec<String>,
}

impl Summary {
    fn rates(&self, events: u64) -> Vec<f64> {
        self.runs.iter().map(|r| r.events_per_sec(events)).collect()
    }

    fn median_of(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(&mut self.runs.iter().map(f).collect::<Vec<_>>())
    }

    fn min_max(values: &[f64]) -> (f64, f64) {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }

    fn json(&self, args: &Args, expected: u64, produce_rate: f64, commit: &str) -> String {
        let rates = self.rates(args.events);
        let (min, max) = Self::min_max(&rates);
        let list = |v: Vec<String>| v.join(",");
        let mut s = format!(
            "{{\"bench\":\"kafka\",\"mode\":{},\"events\":{},\"expected_rows\":{expected},\"parallelism\":{},\
             \"runs\":{},\"commit\":{},\"produce_events_per_sec\":{produce_rate:.0}",
            json_string(&self.mode),
            args.events,
            args.parallelism,
            self.runs.len(),
            json_string(commit)
        );
        for (name, properties) in [
            ("source_properties", &args.source_properties),
            ("sink_properties", &args.sink_properties),
        ] {
            if !properties.is_empty() {
                let fields: Vec<String> = properties
                    .iter()
                    .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
                    .collect();
                let _ = write!(s, ",\"{name}\":{{{}}}", fields.join(","));
            }
        }
        if !self.runs.is_empty() {
            let _ = write!(
                s,
                ",\"events_per_sec_median\":{:.0},\"events_per_sec_min\":{min:.0},\"events_per_sec_max\":{max:.0},\
                 \"events_per_sec\":[{}],\"seconds\":[{}],\"cpu_seconds\":[{}],\"broker_cpu_seconds\":[{}],\
                 \"checkpoints\":[{}],\"checkpoint_median_ms\":[{}],\"output_rows\":[{}],\"duplicates\":[{}],\
                 \"missing\":[{}],\"restarts\":[{}]",
                median(&mut rates.clone()),
                list(rates.iter().map(|r| format!("{r:.0}")).collect()),
                list(self.runs.iter().map(|r| format!("{:.3}", r.seconds)).collect()),
                list(
                    self.runs
                        .iter()
                        .map(|r| format!("{:.3}", r.cpu_seconds))
                        .collect()
                ),
                list(
                    self.runs
                        .iter()
                        .map(|r| format!("{:.3}", r.broker_cpu_seconds))
                        .collect()
                ),
                list(self.runs.iter().map(|r| r.checkpoints.to_string()).collect()),
                list(
                    self.runs
                        .iter()
                        .map(|r| format!("{:.1}", r.checkpoint_median_ms))
                        .collect()
                ),
                list(self.runs.iter().map(|r| r.output_rows.to_string()).collect()),
                list(self.runs.iter().map(|r| r.duplicates.to_string()).collect()),
                list(self.runs.iter().map(|r| r.missing.to_string()).collect()),
                list(self.runs.iter().map(|r| r.restarts.to_string()).collect()),
            );
        }
        if !self.errors.is_empty() {
            let _ = write!(
                s,
                ",\"errors\":[{}]",
                list(self.errors.iter().map(|e| json_string(e)).collect())
            );
        }
        s.push('}');
        s
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print_tables(summaries: &[Summary], args: &Args, expected: u64, produce_rate: f64, commit: &str) {
    println!(
        "Kafka -> filter/project -> Kafka on weir {commit}: {} input records ({expected} pass the filter), \
         parallelism {}, {} tokio threads, {} cores, checkpoints every 1 s; input produced at {produce_rate:.0} \
         records/s",
        args.events,
        args.parallelism,
        args.threads,
        available_cores()
    );
    for (what, properties) in [
        ("source", &args.source_properties),
        ("sink", &args.sink_properties),
    ] {
        if !properties.is_empty() {
            let list: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{what} librdkafka properties: {}", list.join(", "));
        }
    }
    for s in summaries {
        println!();
        println!("sink.delivery-guarantee = {}", s.mode);
        println!(
            "  {:>4} {:>8} {:>10} {:>7} {:>9} {:>6} {:>8} {:>10} {:>5} {:>7}",
            "run",
            "seconds",
            "events/s",
            "cpu s",
            "broker s",
            "ckpts",
            "ckpt ms",
            "out rows",
            "dups",
            "missing"
        );
        for (i, r) in s.runs.iter().enumerate() {
            println!(
                "  {:>4} {:>8.2} {:>10.0} {:>7.2} {:>9.2} {:>6} {:>8.1} {:>10} {:>5} {:>7}",
                i + 1,
                r.seconds,
                r.events_per_sec(args.events),
                r.cpu_seconds,
                r.broker_cpu_seconds,
                r.checkpoints,
                r.checkpoint_median_ms,
                r.output_rows,
                r.duplicates,
                r.missing
            );
        }
        for e in &s.errors {
            println!("  FAILED: {e}");
        }
        if !s.runs.is_empty() {
            let rates = s.rates(args.events);
            let (min, max) = Summary::min_max(&rates);
            println!(
                "  median {:.0} events/s (min {min:.0}, max {max:.0}), {:.0} checkpoints, median checkpoint \
                 {:.1} ms, {:.0} output rows",
                median(&mut rates.clone()),
                s.median_of(|r| r.checkpoints as f64),
                s.median_of(|r| r.checkpoint_median_ms),
                s.median_of(|r| r.output_rows as f64)
            );
        }
    }
    println!();
    for s in summaries {
        println!("{}", s.json(args, expected, produce_rate, commit));
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let commit = run_info::git_commit(env!("CARGO_MANIFEST_DIR"));
    let expected = (0..args.events).filter(|&i| passes(i)).count() as u64;

    eprintln!("starting the broker ...");
    let broker = TestBroker::start();
    broker.create_topic(INPUT_TOPIC, PARTITIONS);
    eprintln!("producing {} records to {INPUT_TOPIC} ...", args.events);
    let produce_seconds = match produce_input(&broker, args.events) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let produce_rate = args.events as f64 / produce_seconds;
    eprintln!(
        "  produced in {produce_seconds:.2} s: {produce_rate:.0} records/s; {expected} pass the filter"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut summaries: Vec<Summary> = args
        .modes
        .iter()
        .map(|m| Summary {
            mode: m.clone(),
            runs: Vec::new(),
            errors: Vec::new(),
        })
        .collect();
    let mut ok = true;
    for run in 1..=args.runs {
        for s in summaries.iter_mut() {
            eprintln!("running {} (run {run}/{}) ...", s.mode, args.runs);
            match rt.block_on(run_once(&broker, &args, &s.mode, run)) {
                Ok(r) => {
                    eprintln!(
                        "  {:.2} s, {:.0} events/s, {} checkpoints (median {:.1} ms), {} rows out \
                         ({} dups, {} missing; read back in {:.1} s)",
                        r.seconds,
                        r.events_per_sec(args.events),
                        r.checkpoints,
                        r.checkpoint_median_ms,
                        r.output_rows,
                        r.duplicates,
                        r.missing,
                        r.verify_seconds
                    );
                    let exact = r.output_rows == expected && r.duplicates == 0 && r.missing == 0;
                    if r.missing > 0 || (s.mode == "exactly-once" && !exact) {
                        eprintln!("  WRONG OUTPUT: expected {expected} rows, each once");
                        ok = false;
                    }
                    s.runs.push(r);
                }
                Err(e) => {
                    eprintln!("  FAILED: {e}");
                    s.errors.push(e);
                    ok = false;
                }
            }
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    print_tables(&summaries, &args, expected, produce_rate, &commit);
    drop(broker);
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

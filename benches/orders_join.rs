//! Orders ⋈ payments join throughput on weir: the joins of the orders
//! pipeline (`examples/sql/orders_pipeline.sql`) over the in-process `orders`
//! generator, unthrottled, into a `blackhole` sink, with checkpoints on;
//! reports events/s, join state size, checkpoint durations, CPU and memory.
//!
//! ```text
//! cargo bench --bench orders_join                                   # 1M orders, rocksdb, all queries
//! cargo bench --bench orders_join -- --orders 10000000 --query status --backend rocksdb
//! cargo bench --bench orders_join -- --orders 1000000 --backend hashmap --json
//! ```
//!
//! Options (after `--`):
//!
//! | option                     | default              | meaning                                          |
//! |----------------------------|----------------------|--------------------------------------------------|
//! | `--orders N`               | 1000000              | orders generated (payments: the paid ones, ~95 %)|
//! | `--query a,b`              | paid,unpaid,status   | which queries (below), in order                  |
//! | `--backend B`              | rocksdb              | `state.backend.type`: `rocksdb` or `hashmap`     |
//! | `--checkpoint-interval MS` | 5000                 | checkpoints every MS ms (`0`: off)               |
//! | `--parallelism P`          | available cores      | `parallelism.default`                            |
//! | `--threads T`              | available cores      | tokio worker threads                             |
//! | `--repeat R`               | 1                    | runs per query                                   |
//! | `--json`                   | off                  | JSON lines on stdout instead of the table        |
//!
//! # Queries
//!
//! - `paid`: the interval join, orders ⋈ payments on `order_id` with
//!   `p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE`
//!   (append-only; each side's rows kept until the other side's watermark
//!   passes their 15 minutes);
//! - `unpaid`: the same as a LEFT interval join, `WHERE p.payment_id IS NULL`
//!   (unmatched orders emitted when their 15 minutes expire);
//! - `status`: the per-order status of the pipeline, regular (unbounded)
//!   joins: `orders LEFT JOIN payments LEFT JOIN <unpaid>` with a `CASE`, a
//!   changelog. Its state holds every order and payment (no TTL): this is the
//!   large-state case (millions of keys).
//!
//! The input: the `orders` connector, bounded (`number-of-rows`), unthrottled
//! (`'rows-per-second' = '0'`, event time from 2024-01-01 00:00:00, 100 ms
//! per order), 5 % of orders never paid, payments up to 20 minutes after
//! their order (about a quarter after 15), rows up to 2 s out of order; the
//! tables' watermarks are 5 s behind.
//!
//! # What is measured
//!
//! Each run is a fresh process (the bench re-executes itself with
//! `WEIR_ORDERS_JOIN_CHILD=<query>`), so that its peak RSS is its own. The
//! clock runs from submitting the `INSERT INTO` to `JobHandle::wait()`
//! returning: every row generated, joined and discarded, and the final
//! checkpoint complete.
//!
//! - **events**: orders + payments, the rows of the two input tables (the
//!   `status` query reads each table twice, for the join and for the unpaid
//!   view it joins; **rows read** counts both), **events/s** = events /
//!   elapsed seconds;
//! - **cpu s**: the process' user + system time over the run (`/proc/self/stat`);
//! - **peak MiB**: `VmHWM` (process-wide peak resident memory);
//! - **checkpoints**: completed checkpoints, their median and largest
//!   duration, and the largest **checkpoint size** (bytes of state files,
//!   `SHOW CHECKPOINTS`' size; with RocksDB's incremental checkpoints, the
//!   files a checkpoint references, shared ones included);
//! - **join state**: the join operators' `state_entries` / `state_bytes`
//!   gauges (summed over subtasks and join operators), sampled every 100 ms:
//!   the largest seen.

#[path = "support/process.rs"]
mod process;
#[path = "support/run_info.rs"]
mod run_info;

use process::{available_cores, clock_ticks_per_second, process_cpu_seconds, status_mb};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The env var that makes this binary run one query and report it.
const CHILD_ENV: &str = "WEIR_ORDERS_JOIN_CHILD";
/// The prefix of the line on which a child reports its measurement.
const RESULT_PREFIX: &str = "WEIR_ORDERS_JOIN_RESULT";

const DEFAULT_ORDERS: u64 = 1_000_000;
const QUERIES: [(&str, &str); 3] = [
    ("paid", "interval join"),
    ("unpaid", "left interval join, unmatched rows"),
    ("status", "regular joins, changelog"),
];

fn tables(orders: u64) -> String {
    let options = |kind: &str| {
        format!(
            "'connector' = 'orders', 'kind' = '{kind}', 'number-of-rows' = '{orders}', 'rows-per-second' = '0',
             'payment.unpaid-rate' = '0.05', 'payment.max-delay' = '20 min', 'max-out-of-orderness' = '2 s'"
        )
    };
    format!(
        "CREATE TABLE orders (
            order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE, order_time TIMESTAMP(3),
            WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
         ) WITH ({});
         CREATE TABLE payments (
            payment_id BIGINT, order_id BIGINT, amount DOUBLE, method STRING, pay_time TIMESTAMP(3),
            WATERMARK FOR pay_time AS pay_time - INTERVAL '5' SECOND
         ) WITH ({});
         CREATE VIEW overdue_orders AS
         SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time
         FROM orders o LEFT JOIN payments p
           ON o.order_id = p.order_id
          AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE
         WHERE p.payment_id IS NULL;",
        options("orders"),
        options("payments")
    )
}

/// The sink table and the `INSERT` of a query.
fn query_sql(name: &str) -> (&'static str, &'static str) {
    match name {
        "paid" => (
            "CREATE TABLE sink (order_id BIGINT, amount DOUBLE, order_time TIMESTAMP(3), payment_id BIGINT,
                method STRING, pay_time TIMESTAMP(3)) WITH ('connector' = 'blackhole')",
            "INSERT INTO sink
             SELECT o.order_id, o.amount, o.order_time, p.payment_id, p.method, p.pay_time
             FROM orders o JOIN payments p
               ON o.order_id = p.order_id
              AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE",
        ),
        "unpaid" => (
            "CREATE TABLE sink (order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE,
                order_time TIMESTAMP(3)) WITH ('connector' = 'blackhole')",
            "INSERT INTO sink SELECT * FROM overdue_orders",
        ),
        "status" => (
            "CREATE TABLE sink (order_id BIGINT, customer_id BIGINT, amount DOUBLE, status STRING,
                payment_id BIGINT, pay_time TIMESTAMP(3)) WITH ('connector' = 'blackhole')",
            "INSERT INTO sink
             SELECT o.order_id, o.customer_id, o.amount,
                    CASE WHEN p.payment_id IS NOT NULL THEN 'paid'
                         WHEN u.order_id IS NOT NULL THEN 'overdue'
                         ELSE 'created' END,
                    p.payment_id, p.pay_time
             FROM orders o
             LEFT JOIN payments p ON o.order_id = p.order_id
             LEFT JOIN overdue_orders u ON o.order_id = u.order_id",
        ),
        other => unreachable!("query {other} is validated"),
    }
}

#[derive(Debug, Clone)]
struct Args {
    orders: u64,
    queries: Vec<String>,
    backend: String,
    checkpoint_interval_ms: u64,
    parallelism: usize,
    threads: usize,
    repeat: usize,
    json: bool,
}

fn usage() -> String {
    "usage: cargo bench --bench orders_join -- [--orders N] [--query paid,unpaid,status] \
     [--backend rocksdb|hashmap] [--checkpoint-interval MS] [--parallelism P] [--threads T] \
     [--repeat R] [--json]"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let cores = available_cores();
    let mut args = Args {
        orders: DEFAULT_ORDERS,
        queries: Vec::new(),
        backend: "rocksdb".into(),
        checkpoint_interval_ms: 5000,
        parallelism: cores,
        threads: cores,
        repeat: 1,
        json: false,
    };
    let mut queries = "paid,unpaid,status".to_string();
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.replace(['_', ','], "")
            .parse::<u64>()
            .map_err(|_| format!("{flag}: not a number: '{v}'"))
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
            "--orders" => args.orders = number("--orders", value())?.max(1),
            "--query" | "--queries" => queries = value().ok_or("--query needs a value")?,
            "--backend" => args.backend = value().ok_or("--backend needs a value")?,
            "--checkpoint-interval" => {
                args.checkpoint_interval_ms = number("--checkpoint-interval", value())?
            }
            "--parallelism" => args.parallelism = number("--parallelism", value())?.max(1) as usize,
            "--threads" => args.threads = number("--threads", value())?.max(1) as usize,
            "--repeat" => args.repeat = number("--repeat", value())?.max(1) as usize,
            "--json" => args.json = true,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument '{other}'\n{}", usage())),
        }
    }
    if !matches!(args.backend.as_str(), "rocksdb" | "hashmap") {
        return Err(format!("--backend: '{}' is not rocksdb or hashmap", args.backend));
    }
    for q in queries.split(',').map(str::trim).filter(|q| !q.is_empty()) {
        if !QUERIES.iter().any(|(name, _)| *name == q) {
            return Err(format!("unknown query '{q}'\n{}", usage()));
        }
        args.queries.push(q.to_string());
    }
    if args.queries.is_empty() {
        return Err(format!("no queries\n{}", usage()));
    }
    Ok(args)
}

/// The measurement of one run, or why it failed.
#[derive(Debug, Clone, Default)]
struct Measurement {
    query: String,
    /// Orders + payments generated.
    events: u64,
    /// Rows produced by the source operators (the `status` query reads each table twice).
    rows_read: u64,
    rows_written: u64,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_mb: f64,
    checkpoints: u64,
    checkpoint_median_ms: f64,
    checkpoint_max_ms: f64,
    checkpoint_max_bytes: u64,
    join_state_entries: u64,
    join_state_bytes: u64,
    error: Option<String>,
}

/// The fields of a measurement, in order, for the child's report line and JSON.
macro_rules! fields {
    ($m:expr) => {
        [
            ("events", $m.events as f64),
            ("rows_read", $m.rows_read as f64),
            ("rows_written", $m.rows_written as f64),
            ("seconds", $m.seconds),
            ("cpu_seconds", $m.cpu_seconds),
            ("peak_rss_mb", $m.peak_rss_mb),
            ("checkpoints", $m.checkpoints as f64),
            ("checkpoint_median_ms", $m.checkpoint_median_ms),
            ("checkpoint_max_ms", $m.checkpoint_max_ms),
            ("checkpoint_max_bytes", $m.checkpoint_max_bytes as f64),
            ("join_state_entries", $m.join_state_entries as f64),
            ("join_state_bytes", $m.join_state_bytes as f64),
        ]
    };
}

impl Measurement {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn encode(&self) -> String {
        let mut s = format!("{RESULT_PREFIX}\tquery={}", self.query);
        for (k, v) in fields!(self) {
            let _ = write!(s, "\t{k}={v}");
        }
        if let Some(e) = &self.error {
            let _ = write!(s, "\terror={}", e.replace(['\t', '\n', '\r'], " "));
        }
        s
    }

    fn decode(line: &str) -> Option<Measurement> {
        let rest = line.strip_prefix(RESULT_PREFIX)?;
        let f: BTreeMap<&str, &str> = rest.split('\t').filter_map(|kv| kv.split_once('=')).collect();
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Some(Measurement {
            query: f.get("query")?.to_string(),
            events: num("events") as u64,
            rows_read: num("rows_read") as u64,
            rows_written: num("rows_written") as u64,
            seconds: num("seconds"),
            cpu_seconds: num("cpu_seconds"),
            peak_rss_mb: num("peak_rss_mb"),
            checkpoints: num("checkpoints") as u64,
            checkpoint_median_ms: num("checkpoint_median_ms"),
            checkpoint_max_ms: num("checkpoint_max_ms"),
            checkpoint_max_bytes: num("checkpoint_max_bytes") as u64,
            join_state_entries: num("join_state_entries") as u64,
            join_state_bytes: num("join_state_bytes") as u64,
            error: f.get("error").map(|e| e.to_string()),
        })
    }

    fn json(&self, args: &Args) -> String {
        let mut s = format!(
            "{{\"query\":\"{}\",\"orders\":{},\"backend\":\"{}\",\"parallelism\":{},\"checkpoint_interval_ms\":{}",
            self.query, args.orders, args.backend, args.parallelism, args.checkpoint_interval_ms
        );
        match &self.error {
            Some(e) => {
                let _ = write!(s, ",\"error\":{}}}", serde_json::to_string(e).unwrap_or_default());
            }
            None => {
                let _ = write!(s, ",\"events_per_sec\":{:.0}", self.events_per_sec());
                for (k, v) in fields!(self) {
                    let _ = write!(s, ",\"{k}\":{v}");
                }
                s.push('}');
            }
        }
        s
    }
}

async fn measure(query: &str, args: &Args, m: &mut Measurement) -> Result<(), String> {
    let ticks = clock_ticks_per_second();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let engine = weir::Engine::new();
    let d = dir.path().display();
    if args.checkpoint_interval_ms > 0 {
        engine
            .execute(&format!(
                "SET 'execution.checkpointing.interval' = '{} ms';
                 SET 'execution.checkpointing.dir' = '{d}/checkpoints';
                 SET 'execution.checkpointing.incremental' = 'true';",
                args.checkpoint_interval_ms
            ))
            .await
            .map_err(|e| format!("checkpoint settings: {e}"))?;
    }
    let (sink, insert) = query_sql(query);
    engine
        .execute(&format!(
            "SET 'state.backend.type' = '{}';
             SET 'state.backend.rocksdb.localdir' = '{d}/rocksdb';
             SET 'parallelism.default' = '{}';
             SET 'pipeline.name' = 'orders-join-{query}';
             {} {sink};",
            args.backend,
            args.parallelism,
            tables(args.orders)
        ))
        .await
        .map_err(|e| format!("setup: {e}"))?;

    let cpu_before = process_cpu_seconds(ticks).ok_or("cannot read /proc/self/stat")?;
    let start = Instant::now();
    let job = engine.submit(insert).await.map_err(|e| e.to_string())?;
    // Sample the join state gauges while the job runs.
    let sampler = {
        let job = job.clone();
        tokio::spawn(async move {
            let mut peak = (0u64, 0u64);
            while !job.status().is_terminal() {
                let (entries, bytes) = job
                    .metrics()
                    .iter()
                    .filter(|o| o.operator_name.contains("Join("))
                    .fold((0, 0), |(e, b), o| (e + o.state_entries, b + o.state_bytes));
                peak = (peak.0.max(entries), peak.1.max(bytes));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        })
    };
    job.wait().await.map_err(|e| e.to_string())?;
    m.seconds = start.elapsed().as_secs_f64();
    m.cpu_seconds = process_cpu_seconds(ticks).ok_or("cannot read /proc/self/stat")? - cpu_before;
    m.peak_rss_mb = status_mb("VmHWM").unwrap_or(0.0);
    (m.join_state_entries, m.join_state_bytes) = sampler.await.map_err(|e| e.to_string())?;

    let metrics = job.metrics();
    let sources: Vec<_> = metrics
        .iter()
        .filter(|o| o.operator_name.starts_with("Source"))
        .collect();
    m.rows_read = sources.iter().map(|o| o.rows_out).sum();
    // Each table once: the first source operator of each table.
    let mut per_table: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &sources {
        let table = if o.operator_name.contains("payments") {
            "payments"
        } else {
            "orders"
        };
        per_table.entry(table).or_insert(o.rows_out);
    }
    m.events = per_table.values().sum();
    m.rows_written = metrics
        .iter()
        .filter(|o| o.operator_name.starts_with("Sink"))
        .map(|o| o.rows_in)
        .sum();
    let checkpoints = run_info::CheckpointSummary::of(&job);
    m.checkpoints = checkpoints.completed;
    m.checkpoint_median_ms = checkpoints.median_ms;
    m.checkpoint_max_ms = checkpoints.max_ms;
    m.checkpoint_max_bytes = checkpoints.max_bytes;
    Ok(())
}

/// Child mode: run one query, print its measurement.
fn child(query: &str, args: &Args) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut m = Measurement {
        query: query.to_string(),
        ..Measurement::default()
    };
    if let Err(e) = runtime.block_on(measure(query, args, &mut m)) {
        m.error = Some(e);
    }
    println!("{}", m.encode());
    ExitCode::SUCCESS
}

fn run_in_child(query: &str) -> Measurement {
    let failed = |error: String| Measurement {
        query: query.to_string(),
        error: Some(error),
        ..Measurement::default()
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failed(format!("cannot find the bench executable: {e}")),
    };
    let output = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, query)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    match output {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(Measurement::decode)
            .unwrap_or_else(|| failed(format!("the bench process ended ({}) without a result", o.status))),
        Err(e) => failed(format!("cannot start the bench process: {e}")),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_table(results: &[Measurement], args: &Args) {
    println!(
        "orders ⋈ payments on weir: {} orders, {} backend, checkpoints every {} ms, parallelism {}, \
         {} cores available, one process per run",
        args.orders,
        args.backend,
        args.checkpoint_interval_ms,
        args.parallelism,
        available_cores()
    );
    println!(
        "{:<7} {:>11} {:>8} {:>11} {:>7} {:>9} {:>11} {:>11} {:>5} {:>9} {:>9} {:>10} {:>12} {:>10}",
        "query",
        "events",
        "seconds",
        "events/s",
        "cpu s",
        "peak MiB",
        "rows read",
        "rows out",
        "chk",
        "chk med",
        "chk max",
        "chk MiB",
        "join entries",
        "join MiB"
    );
    for m in results {
        match &m.error {
            None => println!(
                "{:<7} {:>11} {:>8.2} {:>11.0} {:>7.2} {:>9.1} {:>11} {:>11} {:>5} {:>7.0}ms {:>7.0}ms {:>10.1} {:>12} {:>10.1}",
                m.query,
                m.events,
                m.seconds,
                m.events_per_sec(),
                m.cpu_seconds,
                m.peak_rss_mb,
                m.rows_read,
                m.rows_written,
                m.checkpoints,
                m.checkpoint_median_ms,
                m.checkpoint_max_ms,
                mib(m.checkpoint_max_bytes),
                m.join_state_entries,
                mib(m.join_state_bytes)
            ),
            Some(e) => println!("{:<7} FAILED: {e}", m.query),
        }
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
    if let Ok(query) = std::env::var(CHILD_ENV) {
        return child(&query, &args);
    }
    let mut results = Vec::new();
    for query in &args.queries {
        for run in 0..args.repeat {
            eprintln!(
                "running {query} (run {}/{}): {} orders, {} backend ...",
                run + 1,
                args.repeat,
                args.orders,
                args.backend
            );
            let m = run_in_child(query);
            match &m.error {
                Some(e) => eprintln!("  {query} FAILED: {e}"),
                None => eprintln!(
                    "  {query}: {:.2} s, {:.0} events/s",
                    m.seconds,
                    m.events_per_sec()
                ),
            }
            if args.json {
                println!("{}", m.json(&args));
            }
            results.push(m);
        }
    }
    if !args.json {
        println!();
        print_table(&results, &args);
    }
    if results.iter().any(|m| m.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

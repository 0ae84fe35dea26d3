//! Nexmark on weir: runs Nexmark queries end to end through the real
//! [`weir::Engine`] — a bounded, unthrottled `nexmark` source, the query, a
//! `blackhole` sink — and reports throughput, CPU and memory per query.
//!
//! ```text
//! cargo bench --bench nexmark
//! cargo bench --bench nexmark -- --events 1000000 --queries q0,q1 --parallelism 2 --json
//! ```
//!
//! Options (after `--`):
//!
//! | option              | default              | meaning                                              |
//! |---------------------|----------------------|------------------------------------------------------|
//! | `--events N`        | 5000000              | `events.num`: events of all kinds (Nexmark's count)  |
//! | `--queries a,b`     | q0,q1,q2,q5,q7       | which queries, in order (`all` = every one)          |
//! | `--parallelism P`   | available cores      | `parallelism.default` of the jobs                    |
//! | `--threads T`       | available cores      | tokio worker threads                                 |
//! | `--repeat R`        | 1                    | run each query R times (one result line per run)     |
//! | `--json`            | off                  | JSON lines on stdout instead of the table            |
//! | `--in-process`      | off                  | run every query in this process (see *Memory*)       |
//!
//! # What is measured
//!
//! For each query, the tables are created first (not timed), then the clock
//! runs from submitting `INSERT INTO sink SELECT ...` (planning included, a
//! few milliseconds) to `JobHandle::wait()` returning: the source has
//! generated every event and the last row has reached the sink.
//!
//! - **events**: `events.num`, the number of Nexmark events of all kinds
//!   (persons, auctions and bids, 1 : 3 : 46), as Nexmark reports throughput.
//!   weir's `'table' = 'bid'` source generates only the bids among them
//!   (46/50 of the events); the `rows read` column shows how many.
//! - **events/s** = events / elapsed seconds.
//! - **CPU**: the process' user + system time (`/proc/self/stat`, all
//!   threads) over the same interval; **cores used** = CPU time / elapsed.
//! - **events/s/core** = events/s / min(parallelism, available cores), and
//!   **events per CPU-second** = events / CPU time (independent of how many
//!   cores were busy). Prefer the latter to compare runs: parallelism is per
//!   operator, and a job has several tasks (q5 and q7 scan `bid` twice), so
//!   a job may keep more cores busy than its parallelism; and on a machine
//!   shared with other work the elapsed time varies more than the CPU time.
//! - **peak RSS**: `VmHWM` of `/proc/self/status`, which is process-wide and
//!   never goes down; **base** is `VmRSS` just before the query is submitted
//!   (the engine and the runtime, idle).
//! - **rows read** / **rows out**: rows produced by the source(s) (twice the
//!   bids for q5 and q7, which read `bid` twice) and rows that reached the
//!   sink (a sanity check of the query's selectivity).
//!
//! # Memory: one process per query
//!
//! Because the peak RSS of a process only grows, each query runs in a fresh
//! process: the bench re-executes itself with `WEIR_NEXMARK_CHILD=<query>`,
//! and the child reports its measurement on stdout. `--in-process` runs them
//! all in one process instead (faster to start; the peak RSS of a query then
//! includes everything before it).
//!
//! # Queries
//!
//! The SQL is that of the Flink Nexmark benchmark
//! (<https://github.com/nexmark/nexmark>, `nexmark-flink/src/main/resources/queries/qN.sql`),
//! adapted to weir: weir's `nexmark` connector names the event time
//! `date_time` (Flink's DDL: `dateTime`) and is read as the `bid` table
//! directly (Flink reads a combined event table through a `bid` view that
//! filters `event_type = 2`). So weir generates only the bids, where Flink
//! generates every event and filters: keep that in mind when comparing
//! events/s with Flink's published numbers. Each constant below says what
//! else changed.

#[path = "support/process.rs"]
mod process;

use process::{available_cores, clock_ticks_per_second, process_cpu_seconds, status_mb};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The env var that makes this binary run one query and report it (see the module docs).
const CHILD_ENV: &str = "WEIR_NEXMARK_CHILD";
/// The prefix of the line on which a child reports its measurement.
const RESULT_PREFIX: &str = "WEIR_NEXMARK_RESULT";

/// Flink's `bid` columns, with weir's `date_time` for `dateTime`; the watermark
/// of Flink's nexmark DDL (4 s of bounded out-of-orderness).
const BID_DDL: &str = "CREATE TABLE bid (
    auction   BIGINT,
    bidder    BIGINT,
    price     BIGINT,
    channel   VARCHAR,
    url       VARCHAR,
    date_time TIMESTAMP(3),
    extra     VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
    'connector' = 'nexmark',
    'table' = 'bid',
    'events.num' = '{events}',
    'rate' = '0'
)";

/// One Nexmark query: its sink table and its `INSERT`.
struct Query {
    name: &'static str,
    what: &'static str,
    sink_ddl: &'static str,
    insert: &'static str,
}

/// q0, pass-through (Flink `q0.sql`): every bid, five of its columns. Measures
/// the cost of the source, the projection and the sink. Unchanged but for
/// `date_time`.
const Q0: Query = Query {
    name: "q0",
    what: "pass-through",
    sink_ddl: "CREATE TABLE nexmark_q0 (
        auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra VARCHAR
    ) WITH ('connector' = 'blackhole')",
    insert: "INSERT INTO nexmark_q0
        SELECT auction, bidder, price, date_time, extra FROM bid",
};

/// q1, currency conversion (Flink `q1.sql`): the price in euros,
/// `0.908 * price`, into a `DECIMAL(23, 3)` column as in Flink.
const Q1: Query = Query {
    name: "q1",
    what: "currency conversion",
    sink_ddl: "CREATE TABLE nexmark_q1 (
        auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), date_time TIMESTAMP(3), extra VARCHAR
    ) WITH ('connector' = 'blackhole')",
    insert: "INSERT INTO nexmark_q1
        SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
};

/// q2, selection (Flink `q2.sql`): the bids of every 123rd auction. Flink
/// writes `MOD(auction, 123) = 0`; weir (DataFusion) spells it `auction % 123`.
const Q2: Query = Query {
    name: "q2",
    what: "selection",
    sink_ddl: "CREATE TABLE nexmark_q2 (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole')",
    insert: "INSERT INTO nexmark_q2
        SELECT auction, price FROM bid WHERE auction % 123 = 0",
};

/// q5, hot items (Flink `q5.sql`): the auctions with the most bids in each
/// 10-second window sliding every 2 seconds. As in Flink: the bid count per
/// auction and HOP window, joined on the window bounds (`starttime`,
/// `endtime`) with the greatest count of the window — a window join of two
/// window aggregates, with the residual `num >= maxn`. Unchanged but for
/// `date_time`.
const Q5: Query = Query {
    name: "q5",
    what: "hot items (HOP, window join)",
    sink_ddl: "CREATE TABLE nexmark_q5 (auction BIGINT, num BIGINT) WITH ('connector' = 'blackhole')",
    insert: "INSERT INTO nexmark_q5
        SELECT AuctionBids.auction, AuctionBids.num
        FROM (
            SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
            FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end
        ) AS AuctionBids
        JOIN (
            SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
            FROM (
                SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                GROUP BY auction, window_start, window_end
            ) AS CountBids
            GROUP BY CountBids.starttime, CountBids.endtime
        ) AS MaxBids
        ON AuctionBids.starttime = MaxBids.starttime
           AND AuctionBids.endtime = MaxBids.endtime
           AND AuctionBids.num >= MaxBids.maxn",
};

/// q7, highest bid (Flink `q7.sql`): the bids with the highest price of each
/// 10-second tumbling window. Flink joins `bid` with the per-window maximum
/// on `price` and an interval condition on `dateTime` (a regular join with a
/// time range); here it is the equivalent window join: the bids, windowed by
/// the same TUMBLE, joined with the window's maximum on the window bounds and
/// the price. Flink's q7 also selects `auction, price, bidder` into a sink
/// declared `auction, bidder, price`; here the columns are in the sink's order.
const Q7: Query = Query {
    name: "q7",
    what: "highest bid (TUMBLE, window join)",
    sink_ddl: "CREATE TABLE nexmark_q7 (
        auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra VARCHAR
    ) WITH ('connector' = 'blackhole')",
    insert: "INSERT INTO nexmark_q7
        SELECT B.auction, B.bidder, B.price, B.date_time, B.extra
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) B
        JOIN (
            SELECT max(price) AS maxprice, window_start, window_end
            FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
            GROUP BY window_start, window_end
        ) B1
        ON B.window_start = B1.window_start
           AND B.window_end = B1.window_end
           AND B.price = B1.maxprice",
};

const QUERIES: &[Query] = &[Q0, Q1, Q2, Q5, Q7];
const DEFAULT_QUERIES: &str = "q0,q1,q2,q5,q7";
const DEFAULT_EVENTS: u64 = 5_000_000;

#[derive(Debug, Clone)]
struct Args {
    events: u64,
    queries: Vec<String>,
    parallelism: usize,
    threads: usize,
    repeat: usize,
    json: bool,
    in_process: bool,
    /// `--checkpoint-interval MS`: checkpoints on, every MS milliseconds.
    checkpoint_interval_ms: Option<u64>,
    /// `--backend hashmap|rocksdb`: `state.backend.type`.
    backend: String,
}

fn usage() -> String {
    format!(
        "usage: cargo bench --bench nexmark -- [--events N] [--queries q0,q1,...|all] [--parallelism P] \
         [--threads T] [--repeat R] [--json] [--in-process] [--checkpoint-interval MS] \
         [--backend hashmap|rocksdb]\nqueries: {}",
        QUERIES
            .iter()
            .map(|q| format!("{} ({})", q.name, q.what))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn parse_args() -> Result<Args, String> {
    let cores = available_cores();
    let mut args = Args {
        events: DEFAULT_EVENTS,
        queries: Vec::new(),
        parallelism: cores,
        threads: cores,
        repeat: 1,
        json: false,
        in_process: false,
        checkpoint_interval_ms: None,
        backend: "hashmap".to_string(),
    };
    let mut queries = DEFAULT_QUERIES.to_string();
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
            "--queries" => queries = value().ok_or("--queries needs a value")?,
            "--parallelism" => args.parallelism = number("--parallelism", value())? as usize,
            "--threads" => args.threads = number("--threads", value())? as usize,
            "--repeat" => args.repeat = number("--repeat", value())? as usize,
            "--json" => args.json = true,
            "--in-process" => args.in_process = true,
            "--checkpoint-interval" => {
                args.checkpoint_interval_ms = Some(number("--checkpoint-interval", value())?)
            }
            "--backend" => args.backend = value().ok_or("--backend needs a value")?,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument '{other}'\n{}", usage())),
        }
    }
    if queries.eq_ignore_ascii_case("all") {
        queries = DEFAULT_QUERIES.to_string();
    }
    for q in queries.split(',').map(str::trim).filter(|q| !q.is_empty()) {
        let q = q.to_ascii_lowercase();
        if !QUERIES.iter().any(|known| known.name == q) {
            return Err(format!("unknown query '{q}'\n{}", usage()));
        }
        args.queries.push(q);
    }
    if args.queries.is_empty() {
        return Err(format!("no queries\n{}", usage()));
    }
    Ok(args)
}

/// The measurement of one query run, or why it failed.
#[derive(Debug, Clone, Default)]
struct Measurement {
    query: String,
    events: u64,
    parallelism: usize,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_mb: f64,
    /// Resident memory just before the query was submitted.
    baseline_rss_mb: f64,
    /// Rows produced by the source operator(s).
    rows_read: u64,
    /// Rows that reached the sink.
    rows_written: u64,
    /// Completed checkpoints, their median duration and largest state size.
    checkpoints: u64,
    checkpoint_median_ms: f64,
    checkpoint_max_bytes: u64,
    error: Option<String>,
}

impl Measurement {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// Events per second per core the job could use: min(parallelism, cores).
    fn events_per_sec_per_core(&self) -> f64 {
        self.events_per_sec() / self.parallelism.min(available_cores()).max(1) as f64
    }

    fn cores_used(&self) -> f64 {
        self.cpu_seconds / self.seconds
    }

    fn events_per_cpu_second(&self) -> f64 {
        self.events as f64 / self.cpu_seconds
    }

    /// The line a child prints for its parent: `key=value` fields separated by tabs.
    fn encode(&self) -> String {
        let mut s = format!(
            "{RESULT_PREFIX}\tquery={}\tevents={}\tparallelism={}\tseconds={}\tcpu_seconds={}\tpeak_rss_mb={}\
             \tbaseline_rss_mb={}\trows_read={}\trows_written={}\tcheckpoints={}\tcheckpoint_median_ms={}\
             \tcheckpoint_max_bytes={}",
            self.query,
            self.events,
            self.parallelism,
            self.seconds,
            self.cpu_seconds,
            self.peak_rss_mb,
            self.baseline_rss_mb,
            self.rows_read,
            self.rows_written,
            self.checkpoints,
            self.checkpoint_median_ms,
            self.checkpoint_max_bytes
        );
        if let Some(e) = &self.error {
            let _ = write!(s, "\terror={}", e.replace(['\t', '\n', '\r'], " "));
        }
        s
    }

    fn decode(line: &str) -> Option<Measurement> {
        let rest = line.strip_prefix(RESULT_PREFIX)?;
        let fields: BTreeMap<&str, &str> = rest.split('\t').filter_map(|kv| kv.split_once('=')).collect();
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let int = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(Measurement {
            query: fields.get("query")?.to_string(),
            events: int("events"),
            parallelism: int("parallelism") as usize,
            seconds: num("seconds"),
            cpu_seconds: num("cpu_seconds"),
            peak_rss_mb: num("peak_rss_mb"),
            baseline_rss_mb: num("baseline_rss_mb"),
            rows_read: int("rows_read"),
            rows_written: int("rows_written"),
            checkpoints: int("checkpoints"),
            checkpoint_median_ms: num("checkpoint_median_ms"),
            checkpoint_max_bytes: int("checkpoint_max_bytes"),
            error: fields.get("error").map(|e| e.to_string()),
        })
    }

    fn json(&self, commit: &str) -> String {
        let mut s = format!(
            "{{\"query\":{},\"events\":{},\"parallelism\":{},\"commit\":{}",
            json_string(&self.query),
            self.events,
            self.parallelism,
            json_string(commit)
        );
        match &self.error {
            Some(e) => {
                let _ = write!(s, ",\"error\":{}}}", json_string(e));
            }
            None => {
                let _ = write!(
                    s,
                    ",\"seconds\":{:.3},\"events_per_sec\":{:.0},\"events_per_sec_per_core\":{:.0},\
                     \"cpu_seconds\":{:.3},\"cores_used\":{:.2},\"events_per_cpu_sec\":{:.0},\
                     \"peak_rss_mb\":{:.1},\"baseline_rss_mb\":{:.1},\"rows_read\":{},\"rows_written\":{},\
                     \"checkpoints\":{},\"checkpoint_median_ms\":{:.1},\"checkpoint_max_bytes\":{}}}",
                    self.seconds,
                    self.events_per_sec(),
                    self.events_per_sec_per_core(),
                    self.cpu_seconds,
                    self.cores_used(),
                    self.events_per_cpu_second(),
                    self.peak_rss_mb,
                    self.baseline_rss_mb,
                    self.rows_read,
                    self.rows_written,
                    self.checkpoints,
                    self.checkpoint_median_ms,
                    self.checkpoint_max_bytes
                );
            }
        }
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

/// Runs one query in this process on a fresh engine.
async fn run_query(query: &Query, args: &Args) -> Measurement {
    let mut m = Measurement {
        query: query.name.to_string(),
        events: args.events,
        parallelism: args.parallelism,
        ..Measurement::default()
    };
    if let Err(e) = measure(query, args, &mut m).await {
        m.error = Some(e);
    }
    m
}

async fn measure(query: &Query, args: &Args, m: &mut Measurement) -> Result<(), String> {
    let ticks = clock_ticks_per_second();
    let engine = weir::Engine::new();
    let checkpoint_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    if let Some(interval) = args.checkpoint_interval_ms {
        engine
            .execute(&format!(
                "SET 'execution.checkpointing.interval' = '{interval} ms';
                 SET 'execution.checkpointing.dir' = '{}';
                 SET 'state.backend.type' = '{}';
                 SET 'state.backend.rocksdb.localdir' = '{}/local';
                 SET 'execution.checkpointing.incremental' = 'true';",
                checkpoint_dir.path().display(),
                args.backend,
                checkpoint_dir.path().display()
            ))
            .await
            .map_err(|e| format!("checkpoint settings: {e}"))?;
    }
    let setup = format!(
        "SET 'parallelism.default' = '{}'; {}; {};",
        args.parallelism,
        BID_DDL.replace("{events}", &args.events.to_string()),
        query.sink_ddl
    );
    engine.execute(&setup).await.map_err(|e| format!("setup: {e}"))?;

    m.baseline_rss_mb = status_mb("VmRSS").unwrap_or(0.0);
    let cpu_before = process_cpu_seconds(ticks).ok_or("cannot read /proc/self/stat")?;
    let start = Instant::now();
    let job = engine.submit(query.insert).await.map_err(|e| e.to_string())?;
    job.wait().await.map_err(|e| e.to_string())?;
    m.seconds = start.elapsed().as_secs_f64();
    let cpu_after = process_cpu_seconds(ticks).ok_or("cannot read /proc/self/stat")?;
    m.cpu_seconds = cpu_after - cpu_before;
    m.peak_rss_mb = status_mb("VmHWM").unwrap_or(0.0);

    let metrics = job.metrics();
    m.rows_read = metrics
        .iter()
        .filter(|o| o.operator_name.starts_with("Source"))
        .map(|o| o.rows_out)
        .sum();
    m.rows_written = metrics
        .iter()
        .filter(|o| o.operator_name.starts_with("Sink"))
        .map(|o| o.rows_in)
        .sum();
    let completed: Vec<_> = job
        .checkpoints()
        .into_iter()
        .filter(|c| c.status.name() == "COMPLETED")
        .collect();
    m.checkpoints = completed.len() as u64;
    let mut durations: Vec<f64> = completed
        .iter()
        .filter_map(|c| c.duration.map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    durations.sort_by(f64::total_cmp);
    m.checkpoint_median_ms = durations.get(durations.len() / 2).copied().unwrap_or(0.0);
    m.checkpoint_max_bytes = completed.iter().map(|c| c.state_size).max().unwrap_or(0);
    Ok(())
}

fn runtime(args: &Args) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn query_by_name(name: &str) -> &'static Query {
    QUERIES
        .iter()
        .find(|q| q.name == name)
        .expect("queries are validated")
}

/// Child mode: run one query, print its measurement, exit.
fn child(name: &str, args: &Args) -> ExitCode {
    let m = runtime(args).block_on(run_query(query_by_name(name), args));
    println!("{}", m.encode());
    ExitCode::SUCCESS
}

/// Runs `name` in a fresh copy of this process.
fn run_in_child(name: &str) -> Measurement {
    let failed = |error: String| Measurement {
        query: name.to_string(),
        error: Some(error),
        ..Measurement::default()
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return failed(format!("cannot find the bench executable: {e}")),
    };
    let output = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return failed(format!("cannot start the bench process: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().find_map(Measurement::decode) {
        Some(m) => m,
        None => failed(format!(
            "the bench process for {name} ended ({}) without a result",
            output.status
        )),
    }
}

fn git_commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{commit}-dirty") } else { commit }
        }
        _ => "unknown".to_string(),
    }
}

fn print_table(results: &[Measurement], args: &Args, commit: &str) {
    println!(
        "Nexmark on weir {commit}: {} events, parallelism {}, {} tokio threads, {} cores available{}",
        args.events,
        args.parallelism,
        args.threads,
        available_cores(),
        if args.in_process {
            ", one process (peak RSS cumulative)"
        } else {
            ", one process per query"
        }
    );
    println!(
        "{:<5} {:>11} {:>8} {:>12} {:>12} {:>8} {:>6} {:>12} {:>9} {:>9} {:>11} {:>11}",
        "query",
        "events",
        "seconds",
        "events/s",
        "ev/s/core",
        "cpu s",
        "cores",
        "ev/cpu-s",
        "peak MiB",
        "base MiB",
        "rows read",
        "rows out"
    );
    for m in results {
        match &m.error {
            None => println!(
                "{:<5} {:>11} {:>8.2} {:>12.0} {:>12.0} {:>8.2} {:>6.2} {:>12.0} {:>9.1} {:>9.1} {:>11} {:>11}",
                m.query,
                m.events,
                m.seconds,
                m.events_per_sec(),
                m.events_per_sec_per_core(),
                m.cpu_seconds,
                m.cores_used(),
                m.events_per_cpu_second(),
                m.peak_rss_mb,
                m.baseline_rss_mb,
                m.rows_read,
                m.rows_written
            ),
            Some(e) => println!("{:<5} FAILED: {e}", m.query),
        }
    }
    if let Some(interval) = args.checkpoint_interval_ms {
        println!("checkpoints every {interval} ms, state backend {}:", args.backend);
        for m in results.iter().filter(|m| m.error.is_none()) {
            println!(
                "{:<5} {} completed, median {:.1} ms, largest {} bytes",
                m.query, m.checkpoints, m.checkpoint_median_ms, m.checkpoint_max_bytes
            );
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
    if let Ok(name) = std::env::var(CHILD_ENV) {
        return child(&name, &args);
    }

    let commit = git_commit();
    let rt = args.in_process.then(|| runtime(&args));
    let mut results = Vec::new();
    for name in &args.queries {
        for run in 0..args.repeat {
            let runs = if args.repeat > 1 {
                format!(" (run {}/{})", run + 1, args.repeat)
            } else {
                String::new()
            };
            eprintln!(
                "running {name}{runs}: {} events, parallelism {} ...",
                args.events, args.parallelism
            );
            let m = match &rt {
                Some(rt) => rt.block_on(run_query(query_by_name(name), &args)),
                None => run_in_child(name),
            };
            match &m.error {
                Some(e) => eprintln!("  {name} FAILED: {e}"),
                None => eprintln!("  {name}: {:.2} s, {:.0} events/s", m.seconds, m.events_per_sec()),
            }
            if args.json {
                println!("{}", m.json(&commit));
            }
            results.push(m);
        }
    }
    if let Some(rt) = rt {
        rt.shutdown_timeout(Duration::from_secs(1));
    }
    if !args.json {
        println!();
        print_table(&results, &args, &commit);
    }
    if results.iter().any(|m| m.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

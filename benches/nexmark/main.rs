//! Nexmark on weir: runs Nexmark queries end to end through the real
//! [`weir::Engine`] — a bounded, unthrottled `nexmark` source, the query, a
//! `blackhole` sink — and the same queries on DataFusion's batch engine over
//! the same events held in memory, and reports throughput, CPU, memory and
//! (optionally) the cost of checkpointing.
//!
//! ```text
//! cargo bench --bench nexmark
//! cargo bench --bench nexmark -- --events 10000000 --queries q0,q5 --runs 5 --json
//! cargo bench --bench nexmark -- --queries q5,q7 --checkpoints
//! ```
//!
//! `--help` (after `--`) lists the options. By default: the queries q0, q1,
//! q2, q3, q4, q5, q7 and q8 (`--queries all` adds q10, q11, q14, q15, q17,
//! q20, q21 and q22), 10,000,000 events, parallelism = cores, 3 runs of
//! each, each run in a fresh process.
//!
//! # Modes
//!
//! Each query runs three ways (`--modes`):
//! - **generator**: weir reads the `nexmark` connector, which generates the
//!   events as they are read. This is the headline number, as in Nexmark.
//! - **memory**: weir reads the same events, generated beforehand into
//!   memory (the `replay` source of this bench, zero-copy). The difference to
//!   `generator` is the cost of generating.
//! - **batch**: DataFusion's batch engine runs the query's batch SQL over
//!   the same events in memory (`MemTable`s), as the practical ceiling.
//!
//! `gen/bat` and `mem/bat` are the throughput of the streaming runs over the
//! batch run's. `rows` says whether the streaming run wrote as many rows as
//! the batch query returned (`same`; an updating query writes a changelog,
//! `upd`, and is not compared).
//!
//! # What is measured
//!
//! For each run the tables are created first (not timed); then the clock
//! runs from submitting `INSERT INTO sink SELECT ...` (planning included, a
//! few milliseconds) to `JobHandle::wait()` returning: the source has
//! produced every event and the last row has reached the sink. A batch run
//! times planning and executing its SQL, streaming the result into a count.
//!
//! - **events**: `events.num`, the number of Nexmark events of all kinds
//!   (persons, auctions and bids, 1 : 3 : 46), as Nexmark reports throughput.
//!   A table generates only its own kind (`bid`: 46/50 of the events); a
//!   query reading `auction` and `person` only reads 8 % of them.
//! - **event rate**: `--event-rate`, events per second of *event time*
//!   (`first-event.rate`), 100 000 as in Flink's Nexmark workload. It sets
//!   how much event time a run covers (10 M events: 100 s), so how many
//!   windows fire and how much state a window holds; unthrottled, event time
//!   runs ~100x faster than the clock.
//! - **events/s** = events / elapsed seconds, the median of the runs;
//!   **spread** = (fastest − slowest) / median.
//! - **ev/s/core** = events/s / min(parallelism, available cores).
//! - **ev/cpu-s** = events / CPU seconds (user + system of the process, all
//!   threads): independent of how many cores were busy, and steadier than
//!   elapsed time on a shared machine. **cores** = CPU seconds / elapsed.
//! - **peak MiB**: `VmHWM` of the run's process (it never goes down, hence
//!   one process per run). Memory runs include the materialized events.
//! - **rows out**: rows that reached the sink (a check of selectivity).
//!
//! # Checkpoints
//!
//! `--checkpoints` adds, for each query, runs with checkpoints every
//! `--checkpoint-intervals` (default 1 s and 10 s) on each `--backends`
//! (default hashmap and rocksdb; incremental checkpoints, to a temporary
//! directory). A checkpoint every 10 s needs runs much longer than 10 s, so
//! these runs (and a baseline without checkpoints at the same size, per
//! backend) use enough events for the baseline to last
//! `--checkpoint-seconds` (default 30 s), from the measured generator
//! throughput, and run interleaved: the first run of each configuration,
//! then the second, and so on (shared VMs drift in speed by 10–20 % over
//! minutes, which would otherwise fall on whichever configuration ran
//! then). **cost** = 1 − events/s with checkpoints / events/s of the
//! same backend without checkpoints (what checkpointing costs); **cpu
//! cost** = the CPU time per event added to that baseline's, as a fraction
//! of it (other work on the machine disturbs it less than it disturbs
//! elapsed time); **vs hashmap** = 1 − events/s / events/s of the default
//! `hashmap` backend without checkpoints (what the backend and its
//! checkpoints cost together).
//!
//! # Output
//!
//! A table on stdout, or with `--json` JSON lines: one `"kind":"run"` line
//! per run and one `"kind":"median"` line per configuration (with
//! `ratio_to_batch` and `checkpoint_cost`), each with the commit, for
//! tracking across commits.

#[path = "../support/process.rs"]
mod process;
#[path = "../support/run_info.rs"]
mod run_info;

mod batch;
mod measure;
mod queries;
mod replay;
mod report;

use std::process::{Command, ExitCode, Stdio};

use clap::Parser;
use measure::{Checkpointing, Measurement, Mode, RunSpec};
use process::available_cores;
use queries::{DEFAULT_QUERIES, QUERIES, Query};
use report::Series;

/// The env var that makes this binary make one run (a JSON [`RunSpec`]) and report it.
const CHILD_ENV: &str = "WEIR_NEXMARK_RUN";
/// The prefix of the line on which a child reports its measurement (JSON).
const RESULT_PREFIX: &str = "WEIR_NEXMARK_RESULT ";

/// The state backend of the runs without checkpoint settings.
pub const DEFAULT_BACKEND: &str = "hashmap";

#[derive(Debug, Parser)]
#[command(
    name = "nexmark",
    about = "Nexmark on weir: throughput, CPU, memory and checkpoint cost per query, against DataFusion batch"
)]
struct Args {
    /// Nexmark events of all kinds (`events.num`); `_` and `,` allowed.
    #[arg(long, default_value = "10000000", value_parser = parse_count)]
    events: u64,
    /// Events per second of event time (the `nexmark` connector's
    /// `first-event.rate`): how fast event time runs against the event count.
    /// 100 000 is Flink's Nexmark workload (`tps`); Beam's default is 10 000.
    #[arg(long, default_value = "100000", value_parser = parse_count)]
    event_rate: u64,
    /// Queries, in order: names separated by commas, or `all`.
    #[arg(long, default_value_t = DEFAULT_QUERIES.join(","))]
    queries: String,
    /// How each query runs: generator, memory, batch (see the docs).
    #[arg(long, value_delimiter = ',', default_value = "generator,memory,batch")]
    modes: Vec<ModeArg>,
    /// Parallelism of the jobs and partitions of the batch runs [default: cores].
    #[arg(long, value_parser = parse_count)]
    parallelism: Option<u64>,
    /// Tokio worker threads [default: cores].
    #[arg(long, value_parser = parse_count)]
    threads: Option<u64>,
    /// Runs of each configuration; the tables show medians.
    #[arg(long, alias = "repeat", default_value = "3", value_parser = parse_count)]
    runs: u64,
    /// JSON lines on stdout instead of the tables.
    #[arg(long)]
    json: bool,
    /// Make every run in this process instead of a fresh one (peak RSS is then cumulative).
    #[arg(long)]
    in_process: bool,
    /// Also run with checkpoints: every interval of --checkpoint-intervals on every --backends.
    #[arg(long)]
    checkpoints: bool,
    /// Checkpoint intervals in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000", value_parser = parse_count)]
    checkpoint_intervals: Vec<u64>,
    /// State backends of the checkpointed runs.
    #[arg(long, value_delimiter = ',', default_value = "hashmap,rocksdb")]
    backends: Vec<String>,
    /// Checkpointed runs (and their baseline) get events for this many seconds at the measured rate.
    #[arg(long, default_value_t = 30.0)]
    checkpoint_seconds: f64,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    Generator,
    Memory,
    Batch,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Generator => Mode::Generator,
            ModeArg::Memory => Mode::Memory,
            ModeArg::Batch => Mode::Batch,
        }
    }
}

fn parse_count(text: &str) -> Result<u64, String> {
    match text.replace(['_', ','], "").parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("not a number: '{text}'")),
    }
}

impl Args {
    fn queries(&self) -> Result<Vec<&'static Query>, String> {
        if self.queries.eq_ignore_ascii_case("all") {
            return Ok(QUERIES.iter().collect());
        }
        let names: Vec<String> = QUERIES
            .iter()
            .map(|q| format!("{} ({})", q.name, q.what))
            .collect();
        let mut out = Vec::new();
        for name in self.queries.split(',').map(str::trim).filter(|q| !q.is_empty()) {
            match Query::by_name(&name.to_ascii_lowercase()) {
                Some(q) => out.push(q),
                None => {
                    return Err(format!(
                        "unknown query '{name}'; the queries: {}",
                        names.join(", ")
                    ));
                }
            }
        }
        if out.is_empty() {
            return Err("no queries".to_string());
        }
        Ok(out)
    }

    fn parallelism(&self) -> usize {
        self.parallelism.map_or(available_cores(), |p| p as usize)
    }

    fn threads(&self) -> usize {
        self.threads.map_or(available_cores(), |t| t as usize)
    }

    fn spec(&self, query: &Query, mode: Mode, events: u64, checkpointing: Option<Checkpointing>) -> RunSpec {
        RunSpec {
            query: query.name.to_string(),
            mode,
            events,
            event_rate: self.event_rate,
            parallelism: self.parallelism(),
            threads: self.threads(),
            checkpointing,
        }
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Child mode: make the run of `spec_json`, print its measurement, exit.
fn child(spec_json: &str) -> ExitCode {
    let spec: RunSpec = match serde_json::from_str(spec_json) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("bad {CHILD_ENV}: {e}");
            return ExitCode::from(2);
        }
    };
    let m = runtime(spec.threads).block_on(measure::run(&spec));
    println!(
        "{RESULT_PREFIX}{}",
        serde_json::to_string(&m).expect("a measurement serializes")
    );
    ExitCode::SUCCESS
}

/// Makes the run of `spec` in a fresh copy of this process.
fn run_in_child(spec: &RunSpec) -> Measurement {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Measurement::failed(format!("cannot find the bench executable: {e}")),
    };
    let output = Command::new(exe)
        .env(CHILD_ENV, serde_json::to_string(spec).expect("a spec serializes"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return Measurement::failed(format!("cannot start the bench process: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_else(|| {
            Measurement::failed(format!(
                "the run of {} ({}) ended ({}) without a result",
                spec.query,
                spec.mode.name(),
                output.status
            ))
        })
}

/// What progress lines call the runs of `spec`.
fn label(spec: &RunSpec) -> String {
    match &spec.checkpointing {
        None => format!("{} {}", spec.query, spec.mode.name()),
        Some(c) => format!(
            "{} {} {} checkpoint {}",
            spec.query,
            spec.mode.name(),
            c.backend,
            c.interval_ms.map_or("none".to_string(), |i| format!("{i} ms")),
        ),
    }
}

/// Run number `run` of `spec`, with its progress line on stderr.
fn run_once(spec: &RunSpec, run: u64, args: &Args, rt: Option<&tokio::runtime::Runtime>) -> Measurement {
    eprint!(
        "{}, {} events, run {run}/{}: ",
        label(spec),
        spec.events,
        args.runs
    );
    let m = match rt {
        Some(rt) => rt.block_on(measure::run(spec)),
        None => run_in_child(spec),
    };
    match &m.error {
        Some(e) => eprintln!("FAILED: {e}"),
        None => eprintln!(
            "{:.2} s, {:.0} events/s, {} rows out",
            m.seconds,
            spec.events as f64 / m.seconds,
            m.rows_out
        ),
    }
    m
}

/// Makes `runs` runs of `spec`, printing progress on stderr and, with
/// `--json`, each run's line on stdout.
fn run_series(spec: RunSpec, args: &Args, rt: Option<&tokio::runtime::Runtime>, commit: &str) -> Series {
    run_interleaved(vec![spec], args, rt, commit)
        .pop()
        .expect("one series per spec")
}

/// Makes `runs` runs of each of `specs`, one of each in turn (the first run
/// of every spec, then the second, ...), so that the drift of a shared VM's
/// speed over minutes spreads over all of them instead of favouring those
/// that ran in a fast spell; a spec whose run fails runs no more. Prints as
/// [`run_series`] does.
fn run_interleaved(
    specs: Vec<RunSpec>,
    args: &Args,
    rt: Option<&tokio::runtime::Runtime>,
    commit: &str,
) -> Vec<Series> {
    let mut all: Vec<Series> = specs
        .into_iter()
        .map(|spec| Series {
            spec,
            runs: Vec::new(),
        })
        .collect();
    for run in 1..=args.runs {
        for series in &mut all {
            if series.error().is_none() {
                let m = run_once(&series.spec, run, args, rt);
                series.runs.push(m);
            }
        }
    }
    if args.json {
        for series in &all {
            for line in series.run_lines(commit) {
                println!("{line}");
            }
        }
    }
    all
}

/// Events for a checkpointed run of a query that ran at `rate` events/s:
/// enough for `seconds`, rounded up to a million, and at least `events`.
fn checkpoint_events(rate: f64, seconds: f64, events: u64) -> u64 {
    let wanted = (rate * seconds / 1e6).ceil().max(1.0) as u64 * 1_000_000;
    wanted.max(events)
}

fn main() -> ExitCode {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child(&spec);
    }
    let args = Args::parse();
    let queries = match args.queries() {
        Ok(q) => q,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let commit = run_info::git_commit(env!("CARGO_MANIFEST_DIR"));
    let rt = args.in_process.then(|| runtime(args.threads()));
    let mut modes: Vec<Mode> = args.modes.iter().map(|&m| m.into()).collect();
    modes.dedup();

    let mut all: Vec<Series> = Vec::new();
    for query in queries {
        let first = all.len();
        for &mode in &modes {
            let spec = args.spec(query, mode, args.events, None);
            all.push(run_series(spec, &args, rt.as_ref(), &commit));
        }
        if args.checkpoints {
            let rate = all[first..]
                .iter()
                .find(|s| s.spec.mode == Mode::Generator && s.error().is_none())
                .map(Series::events_per_sec);
            let Some(rate) = rate else {
                eprintln!(
                    "{}: no generator run without checkpoints to size the checkpointed runs",
                    query.name
                );
                continue;
            };
            let events = checkpoint_events(rate, args.checkpoint_seconds, args.events);
            // The baseline (unless the runs above are the same size) and the
            // checkpointed runs, interleaved: the costs are small differences
            // between them, and the VM's speed drifts while they run.
            let mut specs = Vec::new();
            if events != args.events {
                specs.push(args.spec(query, Mode::Generator, events, None));
            }
            for backend in &args.backends {
                // The baseline of a backend other than the default: it, without checkpoints.
                let baseline = (backend != DEFAULT_BACKEND).then_some(None);
                let intervals = args.checkpoint_intervals.iter().map(|&i| Some(i));
                for interval_ms in baseline.into_iter().chain(intervals) {
                    let checkpointing = Checkpointing {
                        interval_ms,
                        backend: backend.clone(),
                    };
                    specs.push(args.spec(query, Mode::Generator, events, Some(checkpointing)));
                }
            }
            all.extend(run_interleaved(specs, &args, rt.as_ref(), &commit));
        }
    }
    if let Some(rt) = rt {
        rt.shutdown_timeout(std::time::Duration::from_secs(1));
    }

    if args.json {
        for s in &all {
            let batch = (s.spec.mode != Mode::Batch)
                .then(|| report::batch_of(&all, s))
                .flatten();
            let baseline = report::baseline_of(&all, s);
            let default_baseline = report::default_baseline_of(&all, s);
            println!("{}", s.summary_line(&commit, batch, baseline, default_baseline));
        }
    } else {
        println!();
        report::print_throughput(
            &all,
            args.events,
            &format!(
                "Nexmark on weir {commit}: {} events ({} per second of event time), parallelism {}, \
                 {} tokio threads, {} cores, medians of {} runs, {}",
                args.events,
                args.event_rate,
                args.parallelism(),
                args.threads(),
                available_cores(),
                args.runs,
                if args.in_process {
                    "one process (peak RSS cumulative)"
                } else {
                    "one process per run"
                }
            ),
        );
        report::print_checkpoints(&all);
    }
    if all.iter().any(|s| s.error().is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

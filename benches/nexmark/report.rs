//! The bench's output: the runs of one configuration ([`Series`]), their
//! medians, the tables, and the JSON lines.

use serde_json::{Value, json};

use crate::DEFAULT_BACKEND;
use crate::measure::{Measurement, Mode, RunSpec, usable_cores};
use crate::process::available_cores;
use crate::queries::Query;

/// The runs of one configuration (query, engine, checkpointing, size).
#[derive(Debug)]
pub struct Series {
    pub spec: RunSpec,
    pub runs: Vec<Measurement>,
}

impl Series {
    /// The first error, if any run failed.
    pub fn error(&self) -> Option<&str> {
        self.runs.iter().find_map(|m| m.error.as_deref())
    }

    /// The median over the runs of `f` (the upper median of an even count).
    pub fn median(&self, f: impl Fn(&Measurement) -> f64) -> f64 {
        let mut values: Vec<f64> = self.runs.iter().filter(|m| m.error.is_none()).map(f).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    }

    pub fn events_per_sec(&self) -> f64 {
        let events = self.spec.events as f64;
        self.median(|m| events / m.seconds)
    }

    pub fn events_per_sec_per_core(&self) -> f64 {
        self.events_per_sec() / usable_cores(self.spec.parallelism) as f64
    }

    pub fn events_per_cpu_second(&self) -> f64 {
        let events = self.spec.events as f64;
        self.median(|m| events / m.cpu_seconds)
    }

    pub fn cores_used(&self) -> f64 {
        self.median(|m| m.cpu_seconds / m.seconds)
    }

    pub fn spread(&self) -> f64 {
        let events = self.spec.events as f64;
        let rates: Vec<f64> = self
            .runs
            .iter()
            .filter(|m| m.error.is_none())
            .map(|m| events / m.seconds)
            .collect();
        let (lo, hi) = rates
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        if rates.len() < 2 {
            0.0
        } else {
            (hi - lo) / self.events_per_sec()
        }
    }

    /// One JSON line per run.
    pub fn run_lines(&self, commit: &str) -> Vec<String> {
        self.runs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut line = self.header("run", commit);
                line["run"] = json!(i + 1);
                let fields = serde_json::to_value(m).expect("a measurement serializes");
                merge(&mut line, fields);
                if m.error.is_none() {
                    line["events_per_sec"] = json!((self.spec.events as f64 / m.seconds).round());
                }
                line.to_string()
            })
            .collect()
    }

    /// The JSON line of the medians, with the ratios to `batch` and the
    /// cost relative to `baseline` (the same run without checkpoints).
    /// The median line of the series; `baseline` and `default_baseline` as
    /// [`baseline_of`] and [`default_baseline_of`] give them.
    pub fn summary_line(
        &self,
        commit: &str,
        batch: Option<&Series>,
        baseline: Option<&Series>,
        default_baseline: Option<&Series>,
    ) -> String {
        let mut line = self.header("median", commit);
        if let Some(e) = self.error() {
            line["error"] = json!(e);
            return line.to_string();
        }
        let mut fields = json!({
            "runs": self.runs.len(),
            "events_per_sec": self.events_per_sec().round(),
            "events_per_sec_per_core": self.events_per_sec_per_core().round(),
            "events_per_cpu_sec": self.events_per_cpu_second().round(),
            "cores_used": round2(self.cores_used()),
            "spread": round2(self.spread()),
            "peak_rss_mb": round2(self.median(|m| m.peak_rss_mb)),
            "rows_out": self.median(|m| m.rows_out as f64),
        });
        if self.spec.checkpointing.is_some() {
            fields["checkpoints"] = json!(self.median(|m| m.checkpoints as f64));
            fields["checkpoint_median_ms"] = json!(round2(self.median(|m| m.checkpoint_median_ms)));
            fields["checkpoint_max_ms"] = json!(round2(self.median(|m| m.checkpoint_max_ms)));
            fields["checkpoint_max_bytes"] = json!(self.median(|m| m.checkpoint_max_bytes as f64));
        }
        if let Some(ratio) = batch.and_then(|b| self.ratio_to(b)) {
            fields["ratio_to_batch"] = json!(round2(ratio));
        }
        if let Some(b) = baseline {
            if let Some(cost) = self.cost_against(b) {
                fields["checkpoint_cost"] = json!(round3(cost));
            }
            if let Some(cost) = self.cpu_cost_against(b) {
                fields["checkpoint_cpu_cost"] = json!(round3(cost));
            }
        }
        if let Some(cost) = default_baseline.and_then(|b| self.cost_against(b)) {
            fields["cost_vs_default_backend"] = json!(round3(cost));
        }
        merge(&mut line, fields);
        line.to_string()
    }

    fn header(&self, kind: &str, commit: &str) -> Value {
        let c = self.spec.checkpointing.as_ref();
        json!({
            "kind": kind,
            "commit": commit,
            "query": self.spec.query,
            "mode": self.spec.mode.name(),
            "events": self.spec.events,
            "parallelism": self.spec.parallelism,
            "threads": self.spec.threads,
            "cores": available_cores(),
            "checkpoint_interval_ms": c.and_then(|c| c.interval_ms),
            "backend": c.map(|c| c.backend.clone()),
        })
    }

    /// This series' throughput over `batch`'s.
    pub fn ratio_to(&self, batch: &Series) -> Option<f64> {
        (self.error().is_none() && batch.error().is_none())
            .then(|| self.events_per_sec() / batch.events_per_sec())
    }

    /// The throughput lost against `baseline`, as a fraction of it.
    pub fn cost_against(&self, baseline: &Series) -> Option<f64> {
        (self.error().is_none() && baseline.error().is_none())
            .then(|| 1.0 - self.events_per_sec() / baseline.events_per_sec())
    }

    /// The CPU time added over `baseline`, as a fraction of it: the cost
    /// in work, which other load on the machine disturbs less than elapsed time.
    pub fn cpu_cost_against(&self, baseline: &Series) -> Option<f64> {
        (self.error().is_none() && baseline.error().is_none())
            .then(|| baseline.events_per_cpu_second() / self.events_per_cpu_second() - 1.0)
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A count in a short form: 1.2 M, 850 k, 930.
fn short(x: f64) -> String {
    if !x.is_finite() {
        "-".to_string()
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The throughput table: one row per query, from its generator runs, with
/// the memory and batch runs beside them.
pub fn print_throughput(series: &[Series], events: u64, header: &str) {
    println!("{header}");
    println!(
        "{:<5} {:>10} {:>10} {:>10} {:>9} {:>5} {:>8} {:>9} {:>10} {:>10} {:>7} {:>7} {:>6}  what",
        "query",
        "events/s",
        "ev/s/core",
        "ev/cpu-s",
        "spread",
        "cores",
        "peak MiB",
        "rows out",
        "memory/s",
        "batch/s",
        "gen/bat",
        "mem/bat",
        "rows",
    );
    let find = |query: &str, mode: Mode| {
        series
            .iter()
            .find(|s| s.spec.query == query && s.spec.mode == mode && s.spec.events == events)
    };
    // The runs of `events` events (not the longer baselines of checkpointed runs).
    for s in series.iter().filter(|s| {
        s.spec.mode == Mode::Generator && s.spec.checkpointing.is_none() && s.spec.events == events
    }) {
        let query = Query::by_name(&s.spec.query).expect("queries are validated");
        if let Some(e) = s.error() {
            println!("{:<5} FAILED: {e}", s.spec.query);
            continue;
        }
        let memory = find(query.name, Mode::Memory).filter(|m| m.error().is_none());
        let batch = find(query.name, Mode::Batch).filter(|b| b.error().is_none());
        let rows_check = match (batch, query.append_only) {
            (None, _) => "-".to_string(),
            (Some(_), false) => "upd".to_string(),
            (Some(b), true) => {
                let ours = s.median(|m| m.rows_out as f64);
                let theirs = b.median(|m| m.rows_out as f64);
                if ours == theirs {
                    "same".to_string()
                } else {
                    "DIFF".to_string()
                }
            }
        };
        let ratio = |a: Option<&Series>| match (a, batch) {
            (Some(a), Some(b)) => a
                .ratio_to(b)
                .map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0)),
            _ => "-".to_string(),
        };
        println!(
            "{:<5} {:>10} {:>10} {:>10} {:>8.0}% {:>5.2} {:>8.0} {:>9} {:>10} {:>10} {:>7} {:>7} {:>6}  {}",
            query.name,
            short(s.events_per_sec()),
            short(s.events_per_sec_per_core()),
            short(s.events_per_cpu_second()),
            s.spread() * 100.0,
            s.cores_used(),
            s.median(|m| m.peak_rss_mb),
            short(s.median(|m| m.rows_out as f64)),
            memory.map_or("-".to_string(), |m| short(m.events_per_sec())),
            batch.map_or("-".to_string(), |b| short(b.events_per_sec())),
            ratio(Some(s)),
            ratio(memory),
            rows_check,
            query.what
        );
        for other in [memory, batch].into_iter().flatten() {
            if let Some(e) = other.error() {
                println!("      {} FAILED: {e}", other.spec.mode.name());
            }
        }
    }
    for s in series.iter().filter(|s| s.spec.mode != Mode::Generator) {
        if let Some(e) = s.error() {
            println!("{:<5} {} FAILED: {e}", s.spec.query, s.spec.mode.name());
        }
    }
}

/// The checkpoint table: one row per query, backend and interval, with the
/// throughput cost against the same query and backend without checkpoints
/// at the same size (**cost**, **cpu cost**), and against the default
/// backend without checkpoints (**vs hashmap**: what the backend and its
/// checkpoints cost together).
pub fn print_checkpoints(series: &[Series]) {
    let with: Vec<&Series> = series.iter().filter(|s| s.spec.checkpointing.is_some()).collect();
    if with.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<5} {:<8} {:>8} {:>12} {:>10} {:>7} {:>8} {:>10} {:>6} {:>10} {:>10} {:>10} {:>9}",
        "query",
        "backend",
        "interval",
        "events",
        "events/s",
        "cost",
        "cpu cost",
        "vs hashmap",
        "ckpts",
        "median ms",
        "max ms",
        "state MiB",
        "peak MiB"
    );
    let percent = |cost: Option<f64>| cost.map_or("-".to_string(), |c| format!("{:.1}%", c * 100.0));
    let mut last_query = "";
    for s in with {
        if s.spec.query != last_query {
            last_query = &s.spec.query;
            if let Some(b) = default_baseline_of(series, s).filter(|b| b.error().is_none()) {
                println!(
                    "{:<5} {:<8} {:>8} {:>12} {:>10} {:>7} {:>8} {:>10} {:>6} {:>10} {:>10} {:>10} {:>9.0}",
                    b.spec.query,
                    DEFAULT_BACKEND,
                    "none",
                    b.spec.events,
                    short(b.events_per_sec()),
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    b.median(|m| m.peak_rss_mb)
                );
            }
        }
        let c = s.spec.checkpointing.as_ref().expect("filtered");
        let interval = c
            .interval_ms
            .map_or("none".to_string(), |i| format!("{}s", i as f64 / 1000.0));
        if let Some(e) = s.error() {
            println!("{:<5} {:<8} {:>8} FAILED: {e}", s.spec.query, c.backend, interval);
            continue;
        }
        let baseline = baseline_of(series, s);
        let vs_default = default_baseline_of(series, s).and_then(|b| s.cost_against(b));
        if c.interval_ms.is_none() {
            println!(
                "{:<5} {:<8} {:>8} {:>12} {:>10} {:>7} {:>8} {:>10} {:>6} {:>10} {:>10} {:>10} {:>9.0}",
                s.spec.query,
                c.backend,
                interval,
                s.spec.events,
                short(s.events_per_sec()),
                "-",
                "-",
                percent(vs_default),
                "-",
                "-",
                "-",
                "-",
                s.median(|m| m.peak_rss_mb)
            );
            continue;
        }
        println!(
            "{:<5} {:<8} {:>8} {:>12} {:>10} {:>7} {:>8} {:>10} {:>6.0} {:>10.0} {:>10.0} {:>10.1} {:>9.0}",
            s.spec.query,
            c.backend,
            interval,
            s.spec.events,
            short(s.events_per_sec()),
            percent(baseline.and_then(|b| s.cost_against(b))),
            percent(baseline.and_then(|b| s.cpu_cost_against(b))),
            percent(vs_default),
            s.median(|m| m.checkpoints as f64),
            s.median(|m| m.checkpoint_median_ms),
            s.median(|m| m.checkpoint_max_ms),
            s.median(|m| m.checkpoint_max_bytes as f64) / (1024.0 * 1024.0),
            s.median(|m| m.peak_rss_mb)
        );
    }
}

/// The state backend of `s`'s runs.
fn backend_of(s: &Series) -> &str {
    s.spec
        .checkpointing
        .as_ref()
        .map_or(DEFAULT_BACKEND, |c| c.backend.as_str())
}

/// Whether `b` is a generator run without checkpoints of `s`'s query and size.
fn is_plain_run_of(b: &Series, s: &Series) -> bool {
    b.spec.query == s.spec.query
        && b.spec.mode == Mode::Generator
        && b.spec.events == s.spec.events
        && b.spec
            .checkpointing
            .as_ref()
            .is_none_or(|c| c.interval_ms.is_none())
}

/// The run without checkpoints that the checkpointed run `s` is compared
/// with: same query, size and backend, generator source; `None` for a run
/// without checkpoints.
pub fn baseline_of<'a>(series: &'a [Series], s: &Series) -> Option<&'a Series> {
    s.spec.checkpointing.as_ref()?.interval_ms?;
    series
        .iter()
        .find(|b| is_plain_run_of(b, s) && backend_of(b) == backend_of(s))
}

/// The run on the default backend without checkpoints that `s` (a run with
/// another backend or with checkpoints) is compared with.
pub fn default_baseline_of<'a>(series: &'a [Series], s: &Series) -> Option<&'a Series> {
    s.spec.checkpointing.as_ref()?;
    series
        .iter()
        .find(|b| is_plain_run_of(b, s) && b.spec.checkpointing.is_none())
}

/// The batch run of `s`'s query, if one was made.
pub fn batch_of<'a>(series: &'a [Series], s: &Series) -> Option<&'a Series> {
    series
        .iter()
        .find(|b| b.spec.query == s.spec.query && b.spec.mode == Mode::Batch)
}

//! One measured run: what to run ([`RunSpec`]), what came out
//! ([`Measurement`]), and the streaming run itself on a fresh
//! [`weir::Engine`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use weir::arrow::record_batch::RecordBatch;

use crate::batch;
use crate::process::{available_cores, clock_ticks_per_second, process_cpu_seconds, status_mb};
use crate::queries::{Query, Table};
use crate::replay::ReplayConnector;
use crate::run_info::CheckpointSummary;

/// Which engine runs the query, and what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// weir, reading the `nexmark` connector (events generated as they are read).
    Generator,
    /// weir, reading the pre-materialized events (the `replay` source).
    Memory,
    /// DataFusion's batch engine, reading the pre-materialized events.
    Batch,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Generator => "generator",
            Mode::Memory => "memory",
            Mode::Batch => "batch",
        }
    }
}

/// The state backend and checkpointing of a streaming run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpointing {
    /// `None`: the backend without checkpoints (the baseline its
    /// checkpointed runs are compared with).
    pub interval_ms: Option<u64>,
    /// `state.backend.type`: `hashmap` or `rocksdb`.
    pub backend: String,
}

/// One run to make: a query, an engine, a size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub query: String,
    pub mode: Mode,
    pub events: u64,
    /// Events per second of event time (`first-event.rate`).
    pub event_rate: u64,
    pub parallelism: usize,
    pub threads: usize,
    pub checkpointing: Option<Checkpointing>,
}

/// The measurement of one run, or why it failed. See the bench's docs for
/// what each field means.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measurement {
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_mb: f64,
    /// Resident memory just before the query was submitted.
    pub baseline_rss_mb: f64,
    /// Rows produced by the source operator(s) (0 for batch runs).
    pub rows_read: u64,
    /// Rows that reached the sink (batch: rows of the result).
    pub rows_out: u64,
    /// Completed checkpoints, their median and longest duration, and the
    /// largest checkpointed state.
    pub checkpoints: u64,
    pub checkpoint_median_ms: f64,
    pub checkpoint_max_ms: f64,
    pub checkpoint_max_bytes: u64,
    pub error: Option<String>,
}

impl Measurement {
    pub fn failed(error: String) -> Measurement {
        Measurement {
            error: Some(error),
            ..Measurement::default()
        }
    }
}

/// Runs `spec` in this process.
pub async fn run(spec: &RunSpec) -> Measurement {
    let query = Query::by_name(&spec.query).expect("queries are validated");
    let result = match spec.mode {
        Mode::Generator => run_stream(query, spec, None).await,
        Mode::Memory => match batch::materialize(query.tables, spec.events, spec.event_rate).await {
            Ok(tables) => run_stream(query, spec, Some(tables)).await,
            Err(e) => Err(e),
        },
        Mode::Batch => batch::run(query, spec).await,
    };
    result.unwrap_or_else(Measurement::failed)
}

/// Runs `query` on a fresh engine, reading the `nexmark` connector, or the
/// materialized `tables` through the `replay` source.
async fn run_stream(
    query: &Query,
    spec: &RunSpec,
    tables: Option<HashMap<String, Arc<Vec<RecordBatch>>>>,
) -> Result<Measurement, String> {
    let ticks = clock_ticks_per_second();
    let mut builder = weir::Engine::builder();
    if let Some(tables) = tables {
        builder = builder.with_connector(Arc::new(ReplayConnector::new(tables)));
    }
    let engine = builder.build().map_err(|e| e.to_string())?;
    let checkpoint_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    if let Some(c) = &spec.checkpointing {
        let dir = checkpoint_dir.path().display();
        let mut settings = format!(
            "SET 'state.backend.type' = '{}';
             SET 'state.backend.rocksdb.localdir' = '{dir}/local';",
            c.backend
        );
        if let Some(interval) = c.interval_ms {
            settings.push_str(&format!(
                "SET 'execution.checkpointing.interval' = '{interval} ms';
                 SET 'execution.checkpointing.dir' = '{dir}';
                 SET 'execution.checkpointing.incremental' = 'true';"
            ));
        }
        engine
            .execute(&settings)
            .await
            .map_err(|e| format!("checkpoint settings: {e}"))?;
    }
    let mut setup = format!("SET 'parallelism.default' = '{}';", spec.parallelism);
    for table in query.tables {
        let options = match spec.mode {
            Mode::Memory => format!("'connector' = 'replay', 'table' = '{}'", table.name()),
            _ => generator_options(*table, spec.events, spec.event_rate),
        };
        let options = format!("{options}, {ALIGNMENT}");
        setup.push_str(&table.ddl(&options));
        setup.push(';');
    }
    setup.push_str(&query.sink_ddl());
    engine.execute(&setup).await.map_err(|e| format!("setup: {e}"))?;

    let mut m = Measurement {
        baseline_rss_mb: status_mb("VmRSS").unwrap_or(0.0),
        ..Measurement::default()
    };
    let cpu_before = process_cpu_seconds(ticks).ok_or("cannot read /proc/self/stat")?;
    let start = Instant::now();
    let job = engine.submit(&query.insert()).await.map_err(|e| e.to_string())?;
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
    m.rows_out = metrics
        .iter()
        .filter(|o| o.operator_name.starts_with("Sink"))
        .map(|o| o.rows_in)
        .sum();
    let checkpoints = CheckpointSummary::of(&job);
    m.checkpoints = checkpoints.completed;
    m.checkpoint_median_ms = checkpoints.median_ms;
    m.checkpoint_max_ms = checkpoints.max_ms;
    m.checkpoint_max_bytes = checkpoints.max_bytes;
    Ok(m)
}

/// Source subtasks, of all of a query's tables, read within 5 s of event
/// time of each other (Flink's watermark alignment, one group): unaligned,
/// one subtask of an unthrottled source can run far ahead of the other, and
/// the window or join state waiting for the slower one's watermark grows
/// with the run (q5: 2 GiB at 500 M events; q8, whose tables were aligned
/// each to itself only: 1.2 GiB at 4 G events).
const ALIGNMENT: &str =
    "'scan.watermark.alignment.max-drift' = '5 s', 'scan.watermark.alignment.group' = 'nexmark'";

/// The `nexmark` connector's options for `table`: `events` events of all
/// kinds, unthrottled, `event_rate` per second of event time.
pub fn generator_options(table: Table, events: u64, event_rate: u64) -> String {
    format!(
        "'connector' = 'nexmark', 'table' = '{}', 'events.num' = '{events}', 'rate' = '0', \
         'first-event.rate' = '{event_rate}'",
        table.name()
    )
}

/// Cores a run with `parallelism` can use: the per-core figures divide by it.
pub fn usable_cores(parallelism: usize) -> usize {
    parallelism.min(available_cores()).max(1)
}

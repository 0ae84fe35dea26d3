//! Starting a job graph as tokio tasks, and the handle to watch and stop it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use datafusion::common::{DataFusionError, Result};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::build::{AttemptSpec, build_attempt};
use super::driver::{Driver, JobCommand};
use super::task::SourceControl;
use crate::checkpoint::config::FaultToleranceConfig;
use crate::checkpoint::stats::CheckpointStats;
use crate::checkpoint::storage::CheckpointStorage;
use crate::checkpoint::targets::SnapshotTargets;
use crate::graph::JobGraph;
use crate::message::CheckpointId;
use crate::metrics::{OperatorMetrics, OperatorMetricsSummary};

/// The state of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    /// Every source ended and every operator finished.
    Finished,
    /// Stopped gracefully by [`JobHandle::stop`] or with a savepoint.
    Stopped,
    /// Cancelled by [`JobHandle::cancel`].
    Cancelled,
    /// An operator failed (and the restart strategy gave up); the message
    /// names the operator and the cause.
    Failed(String),
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, JobStatus::Running)
    }

    /// A short name: RUNNING, FINISHED, ...
    pub fn name(&self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Finished => "FINISHED",
            JobStatus::Stopped => "STOPPED",
            JobStatus::Cancelled => "CANCELED",
            JobStatus::Failed(_) => "FAILED",
        }
    }
}

pub(super) struct OperatorEntry {
    pub name: String,
    pub parallelism: usize,
    pub metrics: Vec<Arc<OperatorMetrics>>,
}

/// What the handle and the driver share.
pub(super) struct JobShared {
    pub id: String,
    pub name: String,
    pub started: SystemTime,
    pub operators: Vec<OperatorEntry>,
    /// The sources of the current attempt.
    pub source_controls: Mutex<Vec<mpsc::UnboundedSender<SourceControl>>>,
    pub commands: mpsc::UnboundedSender<JobCommand>,
    pub cancel: watch::Sender<bool>,
    pub status: watch::Sender<JobStatus>,
    pub stop_requested: Mutex<bool>,
    pub checkpoints: Mutex<Vec<CheckpointStats>>,
    pub restarts: AtomicU32,
    pub restored_from: Option<String>,
}

/// A running (or ended) job. Cheap to clone; all clones see the same job.
///
/// Dropping the handle does not stop the job: call [`stop`](Self::stop) or
/// [`cancel`](Self::cancel).
#[derive(Clone)]
pub struct JobHandle {
    shared: Arc<JobShared>,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("status", &self.status())
            .finish()
    }
}

impl JobHandle {
    /// The job's id (unique within an engine).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The job's name (`pipeline.name`, or derived from the statement).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// When the job started.
    pub fn started(&self) -> SystemTime {
        self.shared.started
    }

    /// The current status.
    pub fn status(&self) -> JobStatus {
        self.shared.status.borrow().clone()
    }

    /// The checkpoint or savepoint the job was started from, if any.
    pub fn restored_from(&self) -> Option<&str> {
        self.shared.restored_from.as_deref()
    }

    /// How many times the job restarted after a failure.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// The job's checkpoints and savepoints, oldest first (the last 100).
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.shared.checkpoints.lock().clone()
    }

    /// Counters per operator, summed over subtasks, in graph order.
    pub fn metrics(&self) -> Vec<OperatorMetricsSummary> {
        self.shared
            .operators
            .iter()
            .map(|op| {
                let sum = |f: fn(&OperatorMetrics) -> &std::sync::atomic::AtomicU64| {
                    op.metrics.iter().map(|m| OperatorMetrics::get(f(m))).sum()
                };
                OperatorMetricsSummary {
                    operator_name: op.name.clone(),
                    parallelism: op.parallelism,
                    rows_in: sum(|m| &m.rows_in),
                    rows_out: sum(|m| &m.rows_out),
                    late_rows_dropped: sum(|m| &m.late_rows_dropped),
                    records_skipped: sum(|m| &m.records_skipped),
                    state_entries: sum(|m| &m.state_entries),
                    state_bytes: sum(|m| &m.state_bytes),
                }
            })
            .collect()
    }

    /// Asks the sources to stop; the job then ends gracefully (operators
    /// finish, sinks flush) with status `Stopped`. With checkpoints on, a
    /// final checkpoint is taken first, so two-phase sinks commit everything.
    pub fn stop(&self) {
        *self.shared.stop_requested.lock() = true;
        for c in self.shared.source_controls.lock().iter() {
            let _ = c.send(SourceControl::Stop);
        }
    }

    /// Injects a raw checkpoint barrier at every source (a test hook: the
    /// checkpoint coordinator does this on its own).
    pub fn inject_barrier(&self, barrier: crate::message::Barrier) {
        for c in self.shared.source_controls.lock().iter() {
            let _ = c.send(SourceControl::Barrier(barrier));
        }
    }

    async fn command<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> JobCommand) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .commands
            .send(make(tx))
            .map_err(|_| DataFusionError::Execution(format!("job '{}' has ended", self.shared.name)))?;
        rx.await
            .map_err(|_| DataFusionError::Execution(format!("job '{}' has ended", self.shared.name)))?
    }

    /// Takes a savepoint into `dir` (or `execution.checkpointing.savepoint-dir`)
    /// and returns its directory once complete. The job keeps running.
    pub async fn trigger_savepoint(&self, dir: Option<String>) -> Result<String> {
        self.command(|reply| JobCommand::Savepoint {
            dir,
            stop: false,
            reply,
        })
        .await
    }

    /// Takes a savepoint, then stops the job (`STOP JOB 'id' WITH SAVEPOINT`);
    /// returns the savepoint's directory. If the savepoint fails the job keeps running.
    pub async fn stop_with_savepoint(&self, dir: Option<String>) -> Result<String> {
        let path = self
            .command(|reply| JobCommand::Savepoint {
                dir,
                stop: true,
                reply,
            })
            .await?;
        *self.shared.stop_requested.lock() = true;
        Ok(path)
    }

    /// Triggers a checkpoint now and waits until it completes; returns its id.
    pub async fn trigger_checkpoint(&self) -> Result<CheckpointId> {
        self.command(|reply| JobCommand::Checkpoint { reply }).await
    }

    /// Aborts every task now; status `Cancelled`.
    pub fn cancel(&self) {
        let _ = self.shared.cancel.send(true);
    }

    /// Waits until the job ends and returns its final status; `Err` if it failed.
    pub async fn wait(&self) -> Result<JobStatus> {
        let mut rx = self.shared.status.subscribe();
        let status = rx
            .wait_for(|s| s.is_terminal())
            .await
            .map_err(|_| DataFusionError::Internal("job supervisor vanished".into()))?
            .clone();
        match status {
            JobStatus::Failed(msg) => Err(DataFusionError::Execution(format!(
                "job '{}' failed: {msg}",
                self.shared.name
            ))),
            other => Ok(other),
        }
    }
}

/// Starts `graph` on the current tokio runtime, as job `id`, with no
/// checkpoints and no restarts.
pub fn start_job(graph: JobGraph, id: String) -> Result<JobHandle> {
    start_job_with(graph, id, FaultToleranceConfig::default())
}

/// Starts `graph` as job `id` with checkpoints, state backend, restart
/// strategy and restore source as `config` says.
///
/// Creates every subtask (so creation errors, and a restore source that does
/// not match the graph, are returned here, before anything runs), wires the
/// channels, and spawns one task per chain subtask plus the job's driver:
/// the checkpoint coordinator and supervisor that records the job's end.
pub fn start_job_with(graph: JobGraph, id: String, config: FaultToleranceConfig) -> Result<JobHandle> {
    let job_dir = match &config.checkpoint_dir {
        Some(dir) => Some(CheckpointStorage::open(dir)?.child(&crate::checkpoint::job_dir_name(&graph.name))),
        None => None,
    };
    if config.checkpointing() && job_dir.is_none() {
        return Err(DataFusionError::Configuration(
            "execution.checkpointing.interval is set but no checkpoint directory: \
             SET 'execution.checkpointing.dir' = '/path'"
                .into(),
        ));
    }
    let targets = Arc::new(SnapshotTargets::new(job_dir.clone(), config.incremental));
    let metrics: Vec<Vec<Arc<OperatorMetrics>>> = graph
        .nodes
        .iter()
        .map(|n| {
            (0..n.parallelism)
                .map(|_| Arc::new(OperatorMetrics::default()))
                .collect()
        })
        .collect();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let local_root = config.local_dir.join(format!(
        "{}-{}-{}",
        crate::checkpoint::job_dir_name(&graph.name),
        id,
        std::process::id()
    ));
    let attempt = build_attempt(AttemptSpec {
        graph: &graph,
        config: &config,
        restore: config.restore.as_deref(),
        attempt: 0,
        targets: targets.clone(),
        events: events_tx.clone(),
        metrics: &metrics,
        local_dir: local_root.join("a0"),
    })?;

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (status_tx, _) = watch::channel(JobStatus::Running);
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(JobShared {
        id,
        name: graph.name.clone(),
        started: SystemTime::now(),
        operators: graph
            .nodes
            .iter()
            .zip(metrics.iter())
            .map(|(n, m)| OperatorEntry {
                name: n.name.clone(),
                parallelism: n.parallelism,
                metrics: m.clone(),
            })
            .collect(),
        source_controls: Mutex::new(attempt.source_controls.clone()),
        commands: commands_tx,
        cancel: cancel_tx,
        status: status_tx,
        stop_requested: Mutex::new(false),
        checkpoints: Mutex::new(Vec::new()),
        restarts: AtomicU32::new(0),
        restored_from: config.restore.as_ref().map(|r| r.location.clone()),
    });
    let driver = Driver::new(
        graph,
        config,
        shared.clone(),
        targets,
        job_dir,
        metrics,
        events_tx,
        events_rx,
        commands_rx,
        cancel_rx,
        local_root,
    );
    tokio::spawn(driver.run(attempt));
    Ok(JobHandle { shared })
}

//! Starting a job graph as tokio tasks, and the handle to watch and stop it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use datafusion::common::{DataFusionError, Result};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::chain::{Chain, ChainedOperator};
use super::input_gate::{InputChannel, InputGate};
use super::task::{OperatorTask, SourceControl, SourceTask};
use crate::exchange::{OutputEdge, Outputs};
use crate::graph::{JobGraph, NodeKind, Partitioning};
use crate::key_group::KeyGroupRange;
use crate::message::Message;
use crate::metrics::{OperatorMetrics, OperatorMetricsSummary};
use crate::operator::OperatorContext;

/// One task's work: runs until the task ends.
type TaskFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// How many messages a channel holds before its sender waits (backpressure).
pub const CHANNEL_CAPACITY: usize = 16;

/// The state of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    /// Every source ended and every operator finished.
    Finished,
    /// Stopped gracefully by [`JobHandle::stop`].
    Stopped,
    /// Cancelled by [`JobHandle::cancel`].
    Cancelled,
    /// An operator failed; the message names the operator and the cause.
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

struct OperatorEntry {
    name: String,
    parallelism: usize,
    metrics: Vec<Arc<OperatorMetrics>>,
}

struct JobShared {
    id: String,
    name: String,
    started: SystemTime,
    operators: Vec<OperatorEntry>,
    source_controls: Mutex<Vec<mpsc::UnboundedSender<SourceControl>>>,
    cancel: watch::Sender<bool>,
    status: watch::Sender<JobStatus>,
    stop_requested: Mutex<bool>,
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
                }
            })
            .collect()
    }

    /// Asks the sources to stop; the job then ends gracefully (operators
    /// finish, sinks flush) with status `Stopped`.
    pub fn stop(&self) {
        *self.shared.stop_requested.lock() = true;
        for c in self.shared.source_controls.lock().iter() {
            let _ = c.send(SourceControl::Stop);
        }
    }

    /// Injects a checkpoint barrier at every source. Each operator snapshots
    /// its state when the barrier has arrived on all its inputs.
    pub fn inject_barrier(&self, barrier: crate::message::Barrier) {
        for c in self.shared.source_controls.lock().iter() {
            let _ = c.send(SourceControl::Barrier(barrier));
        }
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

/// Starts `graph` on the current tokio runtime, as job `id`.
///
/// Creates every subtask (so creation errors are returned here, before
/// anything runs), wires channels per edge, and spawns one task per chain
/// subtask plus a supervisor that records the job's end.
pub fn start_job(graph: JobGraph, id: String) -> Result<JobHandle> {
    let chains = graph.chains();
    let mut chain_of = HashMap::new();
    for (ci, chain) in chains.iter().enumerate() {
        for &n in chain {
            chain_of.insert(n, ci);
        }
    }

    // Metrics and contexts for every node subtask.
    let mut metrics: Vec<Vec<Arc<OperatorMetrics>>> = Vec::new();
    for node in &graph.nodes {
        metrics.push(
            (0..node.parallelism)
                .map(|_| Arc::new(OperatorMetrics::default()))
                .collect(),
        );
    }
    let ctx_for = |n: usize, s: usize| -> OperatorContext {
        let node = &graph.nodes[n];
        OperatorContext {
            job_name: graph.name.clone(),
            operator_id: node.operator_id.clone(),
            operator_name: node.name.clone(),
            subtask: s,
            parallelism: node.parallelism,
            max_parallelism: graph.max_parallelism,
            key_groups: KeyGroupRange::for_subtask(s, node.parallelism, graph.max_parallelism),
            metrics: metrics[n][s].clone(),
        }
    };

    // Channels: for every edge between chains, senders per upstream subtask
    // and receivers per downstream subtask.
    let mut outputs: HashMap<(usize, usize), Vec<OutputEdge>> = HashMap::new();
    let mut inputs: HashMap<(usize, usize), Vec<InputChannel>> = HashMap::new();
    for edge in &graph.edges {
        let (from_chain, to_chain) = (chain_of[&edge.from], chain_of[&edge.to]);
        if from_chain == to_chain {
            continue; // a chained edge: no channel
        }
        let p_from = graph.nodes[edge.from].parallelism;
        let p_to = graph.nodes[edge.to].parallelism;
        let partitioning = match (&edge.partitioning, p_from == p_to) {
            (Partitioning::Forward, false) => Partitioning::Rebalance,
            (p, _) => p.clone(),
        };
        // senders[u][d]
        let mut senders: Vec<Vec<Option<mpsc::Sender<Message>>>> = vec![vec![None; p_to]; p_from];
        for (u, row) in senders.iter_mut().enumerate() {
            for (d, slot) in row.iter_mut().enumerate() {
                let connected = match partitioning {
                    Partitioning::Forward => u == d,
                    Partitioning::Single => d == 0,
                    _ => true,
                };
                if connected {
                    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                    *slot = Some(tx);
                    inputs.entry((to_chain, d)).or_default().push(InputChannel {
                        receiver: rx,
                        input: edge.input,
                    });
                }
            }
        }
        for (u, row) in senders.into_iter().enumerate() {
            let row: Vec<_> = row.into_iter().flatten().collect();
            outputs.entry((from_chain, u)).or_default().push(OutputEdge::new(
                partitioning.clone(),
                row,
                graph.max_parallelism,
            ));
        }
    }

    let (cancel_tx, mut cancel_rx) = watch::channel(false);
    let (status_tx, _) = watch::channel(JobStatus::Running);
    let mut source_controls = Vec::new();
    let mut tasks: Vec<(String, TaskFuture)> = Vec::new();

    for (ci, chain) in chains.iter().enumerate() {
        let head = chain[0];
        let parallelism = graph.nodes[head].parallelism;
        for s in 0..parallelism {
            let task_outputs = Outputs {
                edges: outputs.remove(&(ci, s)).unwrap_or_default(),
            };
            let op_nodes: &[usize] = match graph.nodes[head].kind {
                NodeKind::Source { .. } => &chain[1..],
                NodeKind::Operator(_) => &chain[..],
            };
            let mut operators = Vec::new();
            for &n in op_nodes {
                let NodeKind::Operator(factory) = &graph.nodes[n].kind else {
                    return Err(DataFusionError::Internal("a source inside a chain".into()));
                };
                operators.push(ChainedOperator {
                    operator: factory
                        .create(s, parallelism)
                        .map_err(|e| e.context(format!("creating operator {}", graph.nodes[n].name)))?,
                    ctx: ctx_for(n, s),
                });
            }
            let chain_run = Chain {
                operators,
                outputs: task_outputs,
            };
            let name = format!("{} ({}/{})", graph.nodes[head].name, s + 1, parallelism);
            match &graph.nodes[head].kind {
                NodeKind::Source {
                    spec,
                    watermark,
                    idle_timeout,
                } => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    source_controls.push(tx);
                    let task = SourceTask {
                        source: spec
                            .create(s, parallelism)
                            .map_err(|e| e.context(format!("creating source {}", graph.nodes[head].name)))?,
                        ctx: ctx_for(head, s),
                        watermark: watermark.clone(),
                        idle_timeout: *idle_timeout,
                        chain: chain_run,
                        control: rx,
                    };
                    tasks.push((name, Box::pin(task.run())));
                }
                NodeKind::Operator(_) => {
                    let gate = InputGate::new(inputs.remove(&(ci, s)).unwrap_or_default());
                    let task = OperatorTask {
                        gate,
                        chain: chain_run,
                    };
                    tasks.push((name, Box::pin(task.run())));
                }
            }
        }
    }

    let shared = Arc::new(JobShared {
        id,
        name: graph.name.clone(),
        started: SystemTime::now(),
        operators: graph
            .nodes
            .iter()
            .zip(metrics)
            .map(|(n, m)| OperatorEntry {
                name: n.name.clone(),
                parallelism: n.parallelism,
                metrics: m,
            })
            .collect(),
        source_controls: Mutex::new(source_controls),
        cancel: cancel_tx,
        status: status_tx,
        stop_requested: Mutex::new(false),
    });

    let mut set = JoinSet::new();
    for (name, fut) in tasks {
        set.spawn(async move { fut.await.map_err(|e| (name, e)) });
    }
    let supervisor_shared = shared.clone();
    tokio::spawn(async move {
        let status = loop {
            tokio::select! {
                changed = cancel_rx.changed() => {
                    if changed.is_err() || *cancel_rx.borrow() {
                        set.abort_all();
                        break JobStatus::Cancelled;
                    }
                }
                next = set.join_next() => match next {
                    None => {
                        break if *supervisor_shared.stop_requested.lock() {
                            JobStatus::Stopped
                        } else {
                            JobStatus::Finished
                        };
                    }
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err((_task, e)))) => {
                        set.abort_all();
                        break JobStatus::Failed(e.to_string());
                    }
                    Some(Err(join_error)) => {
                        set.abort_all();
                        let what = if join_error.is_panic() {
                            let payload = join_error.into_panic();
                            let msg = payload
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            format!("a task panicked: {msg}")
                        } else {
                            "a task was aborted".to_string()
                        };
                        break JobStatus::Failed(what);
                    }
                }
            }
        };
        while set.join_next().await.is_some() {}
        supervisor_shared.status.send_replace(status);
    });
    Ok(JobHandle { shared })
}

//! Building the tasks of one run ("attempt") of a job graph: operators,
//! channels, restored state. A job that restarts builds a new attempt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use tokio::sync::{broadcast, mpsc};

use super::chain::{Chain, ChainedOperator};
use super::events::{Notice, TaskEvent, TaskReporter};
use super::input_gate::{InputChannel, InputGate};
use super::task::{OperatorTask, SourceControl, SourceTask, TaskLinks};
use crate::checkpoint::config::{CheckpointingMode, FaultToleranceConfig};
use crate::checkpoint::job_dir_name;
use crate::checkpoint::restore::RestoreSource;
use crate::checkpoint::targets::SnapshotTargets;
use crate::exchange::{OutputEdge, Outputs};
use crate::graph::{JobGraph, NodeId, NodeKind, Partitioning};
use crate::key_group::KeyGroupRange;
use crate::message::Message;
use crate::metrics::OperatorMetrics;
use crate::operator::OperatorContext;
use crate::state::{StateInit, StateScope};
use crate::watermark_alignment::WatermarkAlignment;

/// One task's work: runs until the task ends.
pub(super) type TaskFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// How many messages a channel holds before its sender waits (backpressure).
pub const CHANNEL_CAPACITY: usize = 16;

/// What the builder needs besides the graph.
pub(super) struct AttemptSpec<'a> {
    pub graph: &'a JobGraph,
    pub config: &'a FaultToleranceConfig,
    pub restore: Option<&'a RestoreSource>,
    pub attempt: u32,
    pub targets: Arc<SnapshotTargets>,
    pub events: mpsc::UnboundedSender<TaskEvent>,
    pub metrics: &'a [Vec<Arc<OperatorMetrics>>],
    /// This attempt's local working directory (state backends' files).
    pub local_dir: PathBuf,
}

/// The tasks of one attempt, not yet running.
pub(super) struct Attempt {
    pub tasks: Vec<(String, TaskFuture)>,
    pub source_controls: Vec<mpsc::UnboundedSender<SourceControl>>,
    pub notices: broadcast::Sender<Notice>,
}

/// Every (node, subtask) that acknowledges checkpoints, in a fixed order.
pub(super) fn acknowledging_subtasks(graph: &JobGraph) -> Vec<(NodeId, usize)> {
    graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(n, node)| (0..node.parallelism).map(move |s| (n, s)))
        .collect()
}

/// Creates every subtask (so creation errors surface before anything runs)
/// and wires the channels of each edge.
pub(super) fn build_attempt(spec: AttemptSpec<'_>) -> Result<Attempt> {
    let graph = spec.graph;
    if let Some(r) = spec.restore {
        r.check_against(graph, spec.config.ignore_unclaimed_state)?;
    }
    let chains = graph.chains();
    let mut chain_of = HashMap::new();
    for (ci, chain) in chains.iter().enumerate() {
        for &n in chain {
            chain_of.insert(n, ci);
        }
    }
    let checkpointing = spec.config.checkpointing();
    let state_ttl =
        (spec.config.state_ttl_ms > 0).then(|| std::time::Duration::from_millis(spec.config.state_ttl_ms));
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
            metrics: spec.metrics[n][s].clone(),
            checkpointing,
            state_ttl,
        }
    };
    let restored_from = spec.restore.map(|r| r.checkpoint_id());
    let init_for = |n: usize, ctx: &OperatorContext| -> StateInit {
        let node = &graph.nodes[n];
        let scope = StateScope {
            job_name: graph.name.clone(),
            operator_id: node.operator_id.clone(),
            subtask: ctx.subtask,
            key_groups: ctx.key_groups,
            max_parallelism: graph.max_parallelism,
            local_dir: spec
                .local_dir
                .join(format!("{}-{}", job_dir_name(&node.operator_id), ctx.subtask)),
        };
        let (keyed, list) = match spec.restore {
            Some(r) => (
                r.keyed_for(&node.operator_id, ctx.key_groups),
                r.operator_state_for(&node.operator_id, ctx.subtask, ctx.parallelism),
            ),
            None => (Vec::new(), None),
        };
        StateInit::new(
            scope,
            spec.config.backend.clone(),
            spec.targets.clone(),
            keyed,
            list,
            restored_from,
        )
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

    let (notices, _) = broadcast::channel(256);
    let reporter = TaskReporter {
        attempt: spec.attempt,
        events: spec.events.clone(),
    };
    let aligned = spec.config.mode == CheckpointingMode::ExactlyOnce;
    let mut source_controls = Vec::new();
    let mut tasks: Vec<(String, TaskFuture)> = Vec::new();
    let alignment_slots = alignment_slots(graph);

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
                let ctx = ctx_for(n, s);
                operators.push(ChainedOperator {
                    operator: factory
                        .create(s, parallelism)
                        .map_err(|e| e.context(format!("creating operator {}", graph.nodes[n].name)))?,
                    init: Some(init_for(n, &ctx)),
                    ctx,
                    node: n,
                });
            }
            let chain_run = Chain {
                operators,
                outputs: task_outputs,
                reporter: Some(reporter.clone()),
                alignment_ms: 0,
                last_barrier: None,
            };
            let name = format!("{} ({}/{})", graph.nodes[head].name, s + 1, parallelism);
            match &graph.nodes[head].kind {
                NodeKind::Source {
                    spec: source_spec,
                    watermark,
                    idle_timeout,
                    ..
                } => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    source_controls.push(tx);
                    let op_id = &graph.nodes[head].operator_id;
                    let source = source_spec
                        .create(s, parallelism)
                        .map_err(|e| e.context(format!("creating source {}", graph.nodes[head].name)))?;
                    let restored = spec.restore.and_then(|r| {
                        if source.union_list_state() {
                            r.union_operator_state(op_id)
                        } else {
                            r.operator_state_for(op_id, s, parallelism)
                        }
                    });
                    let task = SourceTask {
                        source,
                        ctx: ctx_for(head, s),
                        node: head,
                        watermark: watermark.clone(),
                        idle_timeout: *idle_timeout,
                        alignment: alignment_slots
                            .get(&head)
                            .map(|(alignment, first)| (alignment.clone(), first + s)),
                        chain: chain_run,
                        control: rx,
                        restored,
                        restored_watermark: spec.restore.and_then(|r| r.watermark_for(op_id, s, parallelism)),
                        links: Some(TaskLinks {
                            reporter: reporter.clone(),
                            notices: notices.subscribe(),
                        }),
                    };
                    tasks.push((name, Box::pin(task.run())));
                }
                NodeKind::Operator(_) => {
                    let gate = InputGate::new(inputs.remove(&(ci, s)).unwrap_or_default(), aligned);
                    let task = OperatorTask {
                        gate,
                        chain: chain_run,
                        notices: Some(notices.subscribe()),
                    };
                    tasks.push((name, Box::pin(task.run())));
                }
            }
        }
    }
    Ok(Attempt {
        tasks,
        source_controls,
        notices,
    })
}

/// The watermark alignment of every aligned source, with the slot of its
/// first subtask: one [`WatermarkAlignment`] per `scan.watermark.alignment.group`
/// shared by the subtasks of all of its sources, and one per aligned source
/// without a group.
fn alignment_slots(graph: &JobGraph) -> HashMap<NodeId, (Arc<WatermarkAlignment>, usize)> {
    // Group (its name, or the source for a source without one) → (source,
    // first slot) of its sources, and each slot's drift.
    type Sources = Vec<(NodeId, usize)>;
    let mut groups: HashMap<Result<String, NodeId>, (Sources, Vec<std::time::Duration>)> = HashMap::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if let NodeKind::Source {
            alignment_max_drift: Some(drift),
            alignment_group,
            ..
        } = &node.kind
        {
            let group = alignment_group.clone().ok_or(id);
            let (sources, drifts) = groups.entry(group).or_default();
            sources.push((id, drifts.len()));
            drifts.extend(std::iter::repeat_n(*drift, node.parallelism));
        }
    }
    let mut slots = HashMap::new();
    for (sources, drifts) in groups.into_values() {
        let alignment = Arc::new(WatermarkAlignment::with_drifts(drifts));
        for (id, first) in sources {
            slots.insert(id, (alignment.clone(), first));
        }
    }
    slots
}

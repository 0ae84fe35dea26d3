//! The job graph: operators, their parallelism, and the edges between them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExpr;

use crate::operator::Operator;
use crate::source::SourceSpec;
use crate::watermark::WatermarkStrategy;

/// Index of a node in [`JobGraph::nodes`].
pub type NodeId = usize;

/// Creates the per-subtask instances of an operator.
pub trait OperatorFactory: Send + Sync + fmt::Debug {
    /// Creates subtask `subtask` of `parallelism`.
    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Operator>>;
}

/// How the rows of an edge are spread over the subtasks of its target.
#[derive(Clone)]
pub enum Partitioning {
    /// Subtask i sends to subtask i; both sides have the same parallelism.
    Forward,
    /// Rows go to the subtask owning the key group of their key.
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    /// Whole batches go round-robin to the target subtasks.
    Rebalance,
    /// Everything goes to subtask 0 (the target has parallelism 1).
    Single,
}

impl fmt::Debug for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partitioning::Forward => write!(f, "FORWARD"),
            Partitioning::Hash(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                write!(f, "HASH[{}]", keys.join(", "))
            }
            Partitioning::Rebalance => write!(f, "REBALANCE"),
            Partitioning::Single => write!(f, "SINGLE"),
        }
    }
}

/// What a node runs.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A source, with the table's watermark strategy.
    Source {
        spec: Arc<dyn SourceSpec>,
        watermark: Option<WatermarkStrategy>,
        /// `scan.watermark.idle-timeout`.
        idle_timeout: Option<Duration>,
        /// `scan.watermark.alignment.max-drift`: how far in event time a
        /// subtask may read ahead of the slowest one (see
        /// [`crate::watermark_alignment`]); `None`: unaligned.
        alignment_max_drift: Option<Duration>,
        /// `scan.watermark.alignment.group`: aligned sources with the same
        /// group are aligned to each other; `None`: to itself only.
        alignment_group: Option<String>,
    },
    /// An operator (or a sink, which has no outgoing edge).
    Operator(Arc<dyn OperatorFactory>),
}

/// One operator of the job graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Stable id derived from the plan: the key of the operator's state.
    pub operator_id: String,
    /// Human-readable description, shown by `EXPLAIN` and in errors.
    pub name: String,
    pub parallelism: usize,
    pub kind: NodeKind,
    /// The schema of what the node emits.
    pub schema: SchemaRef,
    /// Number of inputs (0 for a source).
    pub num_inputs: usize,
}

/// A connection from `from` to input `input` of `to`.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    pub input: usize,
    pub partitioning: Partitioning,
}

/// A job: operators and edges, sources first (nodes are in topological order:
/// every edge goes from a lower to a higher index).
#[derive(Debug, Clone)]
pub struct JobGraph {
    pub name: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// `pipeline.max-parallelism`: the number of key groups.
    pub max_parallelism: usize,
}

impl JobGraph {
    /// Edges into `node`.
    pub fn inputs_of(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == node)
    }

    /// Edges out of `node`.
    pub fn outputs_of(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == node)
    }

    /// Groups nodes into chains: maximal runs joined by a forward edge between
    /// operators of equal parallelism, where the upstream has exactly one
    /// output and the downstream exactly one input. A chain runs as one task
    /// per subtask, passing batches by value without a channel.
    pub fn chains(&self) -> Vec<Vec<NodeId>> {
        let chained_to_next = |n: NodeId| -> Option<NodeId> {
            let outs: Vec<&Edge> = self.outputs_of(n).collect();
            if outs.len() != 1 {
                return None;
            }
            let e = outs[0];
            let ins = self.inputs_of(e.to).count();
            (matches!(e.partitioning, Partitioning::Forward)
                && ins == 1
                && self.nodes[e.to].num_inputs == 1
                && self.nodes[e.to].parallelism == self.nodes[n].parallelism)
                .then_some(e.to)
        };
        let mut is_chained_target = vec![false; self.nodes.len()];
        for n in 0..self.nodes.len() {
            if let Some(next) = chained_to_next(n) {
                is_chained_target[next] = true;
            }
        }
        let mut chains = Vec::new();
        for (head, chained) in is_chained_target.iter().enumerate() {
            if *chained {
                continue;
            }
            let mut chain = vec![head];
            let mut cur = head;
            while let Some(next) = chained_to_next(cur) {
                chain.push(next);
                cur = next;
            }
            chains.push(chain);
        }
        chains
    }

    /// A human-readable rendering of the graph: one line per chain of
    /// operators, with parallelism and the partitioning of each edge.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let chains = self.chains();
        let chain_of = |n: NodeId| chains.iter().position(|c| c.contains(&n)).unwrap_or(0);
        for (ci, chain) in chains.iter().enumerate() {
            let head = &self.nodes[chain[0]];
            out.push_str(&format!("Task {ci} (parallelism {}):\n", head.parallelism));
            for e in self.inputs_of(chain[0]) {
                out.push_str(&format!(
                    "  <- input {} from Task {} [{:?}]\n",
                    e.input,
                    chain_of(e.from),
                    e.partitioning
                ));
            }
            for (i, &n) in chain.iter().enumerate() {
                let arrow = if i == 0 { "  " } else { "  -> (chained) " };
                out.push_str(&format!(
                    "{arrow}{} [{}]\n",
                    self.nodes[n].name, self.nodes[n].operator_id
                ));
            }
        }
        out
    }
}

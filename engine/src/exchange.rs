//! Sending a task's output to the subtasks of the next operators.

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use tokio::sync::mpsc;

use crate::graph::Partitioning;
use crate::key_group::{hash_keys, key_group_of, subtask_of_key_group};
use crate::message::Message;
use crate::operators::aggregates::evaluate_exprs;

/// The sending side of one edge, from one upstream subtask.
#[derive(Debug)]
pub struct OutputEdge {
    pub partitioning: Partitioning,
    /// One sender per target subtask (a single one for `Forward`).
    pub senders: Vec<mpsc::Sender<Message>>,
    pub max_parallelism: usize,
    next_rebalance: usize,
    hashes: Vec<u64>,
    indices: Vec<Vec<u32>>,
}

impl OutputEdge {
    pub fn new(
        partitioning: Partitioning,
        senders: Vec<mpsc::Sender<Message>>,
        max_parallelism: usize,
    ) -> Self {
        OutputEdge {
            partitioning,
            senders,
            max_parallelism,
            next_rebalance: 0,
            hashes: Vec::new(),
            indices: Vec::new(),
        }
    }

    async fn send_to(&self, target: usize, msg: Message) -> Result<()> {
        self.senders[target]
            .send(msg)
            .await
            .map_err(|_| DataFusionError::Execution("downstream task has stopped".into()))
    }

    /// Sends a batch, partitioned as the edge says.
    pub async fn send_batch(&mut self, batch: RecordBatch) -> Result<()> {
        match &self.partitioning {
            Partitioning::Forward | Partitioning::Single => self.send_to(0, Message::Batch(batch)).await,
            Partitioning::Rebalance => {
                let target = self.next_rebalance % self.senders.len();
                self.next_rebalance = self.next_rebalance.wrapping_add(1);
                self.send_to(target, Message::Batch(batch)).await
            }
            Partitioning::Hash(keys) => {
                let n = self.senders.len();
                if n == 1 {
                    return self.send_to(0, Message::Batch(batch)).await;
                }
                let key_arrays = evaluate_exprs(keys, &batch)?;
                hash_keys(&key_arrays, batch.num_rows(), &mut self.hashes)?;
                self.indices.resize_with(n, Vec::new);
                for idx in &mut self.indices {
                    idx.clear();
                }
                for (row, &h) in self.hashes.iter().enumerate() {
                    let target =
                        subtask_of_key_group(key_group_of(h, self.max_parallelism), n, self.max_parallelism);
                    self.indices[target].push(row as u32);
                }
                for target in 0..n {
                    let rows = self.indices[target].len();
                    if rows == 0 {
                        continue;
                    }
                    let part = if rows == batch.num_rows() {
                        batch.clone()
                    } else {
                        let idx = UInt32Array::from(std::mem::take(&mut self.indices[target]));
                        take_record_batch(&batch, &idx)?
                    };
                    self.send_to(target, Message::Batch(part)).await?;
                }
                Ok(())
            }
        }
    }

    /// Sends a control message to every target subtask.
    pub async fn broadcast(&mut self, msg: &Message) -> Result<()> {
        for target in 0..self.senders.len() {
            self.send_to(target, msg.clone()).await?;
        }
        Ok(())
    }
}

/// All outgoing edges of one task.
#[derive(Debug, Default)]
pub struct Outputs {
    pub edges: Vec<OutputEdge>,
}

impl Outputs {
    /// Sends a message downstream on every edge.
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        match msg {
            Message::Batch(batch) => {
                for edge in &mut self.edges {
                    // Cheap: a batch is a vector of reference-counted arrays.
                    edge.send_batch(batch.clone()).await?;
                }
                Ok(())
            }
            other => {
                for edge in &mut self.edges {
                    edge.broadcast(&other).await?;
                }
                Ok(())
            }
        }
    }
}

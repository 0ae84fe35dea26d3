//! Sending a task's output to the subtasks of the next operators.

use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use tokio::sync::mpsc;

use crate::graph::Partitioning;
use crate::key_group::{KeyGroupRange, hash_keys, key_group_of};
use crate::message::Message;
use crate::operators::aggregates::evaluate_exprs;
use crate::operators::select_rows::take_rows;

/// The sending side of one edge, from one upstream subtask.
#[derive(Debug)]
pub struct OutputEdge {
    pub partitioning: Partitioning,
    /// One sender per target subtask (a single one for `Forward`).
    pub senders: Vec<mpsc::Sender<Message>>,
    pub max_parallelism: usize,
    next_rebalance: usize,
    hashes: Vec<u64>,
    /// Per key group, where its rows start in `order` (reused per batch).
    starts: Vec<u32>,
    /// The rows of a batch in key-group order (reused per batch).
    order: Vec<u32>,
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
            starts: Vec::new(),
            order: Vec::new(),
        }
    }

    async fn send_to(&self, target: usize, msg: Message) -> Result<()> {
        self.senders[target]
            .send(msg)
            .await
            .map_err(|_| DataFusionError::Execution("downstream task has stopped".into()))
    }

    /// Sends a batch, partitioned as the edge says. A hash-partitioned part
    /// has its rows in key-group order (each key's rows in their order):
    /// keyed operators write their state per key group, and find it in runs.
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
                let rows = batch.num_rows();
                hash_keys(&key_arrays, rows, &mut self.hashes)?;
                // A counting sort of the rows by key group: as each subtask
                // owns a contiguous range of key groups, each target's rows
                // are then one range of `order`. `hashes` is overwritten
                // with each row's key group.
                let max = self.max_parallelism;
                self.starts.clear();
                self.starts.resize(max + 1, 0);
                for h in &mut self.hashes {
                    *h = key_group_of(*h, max) as u64;
                    self.starts[*h as usize + 1] += 1;
                }
                for kg in 0..max {
                    self.starts[kg + 1] += self.starts[kg];
                }
                let bounds: Vec<(usize, usize)> = (0..n)
                    .map(|t| {
                        let r = KeyGroupRange::for_subtask(t, n, max);
                        (self.starts[r.start] as usize, self.starts[r.end] as usize)
                    })
                    .collect();
                self.order.clear();
                self.order.resize(rows, 0);
                for (row, &kg) in self.hashes.iter().enumerate() {
                    let next = &mut self.starts[kg as usize];
                    self.order[*next as usize] = row as u32;
                    *next += 1;
                }
                for (target, (start, end)) in bounds.into_iter().enumerate() {
                    if start == end {
                        continue;
                    }
                    let rows = &self.order[start..end];
                    let part = take_rows(&batch, rows)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::key_group::key_groups_of;

    #[tokio::test]
    async fn hash_parts_hold_their_rows_in_key_group_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("seq", DataType::Int64, false),
        ]));
        let keys: Vec<i64> = (0..1000).map(|i| (i * 7919) % 97).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(Int64Array::from_iter_values(0..1000)),
            ],
        )
        .unwrap();
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::channel(4)).unzip();
        let key = Arc::new(Column::new("k", 0));
        let mut edge = OutputEdge::new(Partitioning::Hash(vec![key]), senders, 16);
        edge.send_batch(batch).await.unwrap();
        drop(edge);
        let mut total = 0;
        for (target, rx) in receivers.iter_mut().enumerate() {
            let Some(Message::Batch(part)) = rx.recv().await else {
                panic!("subtask {target} got no rows")
            };
            let kgs = key_groups_of(&[part.column(0).clone()], part.num_rows(), 16).unwrap();
            let range = KeyGroupRange::for_subtask(target, 3, 16);
            assert!(kgs.iter().all(|kg| range.contains(*kg)), "routed to the owner");
            assert!(kgs.is_sorted(), "key-group order");
            let seq = part.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 1..part.num_rows() {
                if kgs[i] == kgs[i - 1] {
                    assert!(
                        seq.value(i) > seq.value(i - 1),
                        "rows of a key group keep their order"
                    );
                }
            }
            total += seq.len();
        }
        assert_eq!(total, 1000);
    }
}

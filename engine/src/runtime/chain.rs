//! A chain of operators fused into one task: messages pass from one operator
//! to the next by value, with no channel in between.

use datafusion::common::{DataFusionError, Result};

use super::events::{TaskEvent, TaskReporter};
use crate::checkpoint::metadata::SubtaskState;
use crate::exchange::Outputs;
use crate::graph::NodeId;
use crate::message::{Barrier, CheckpointId, Message, Watermark};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::StateInit;

/// One operator of a chain, with where it runs.
pub struct ChainedOperator {
    pub operator: Box<dyn Operator>,
    pub ctx: OperatorContext,
    /// Its node in the job graph (what its checkpoint acknowledgements name).
    pub node: NodeId,
    /// The state to start from; taken by `open`.
    pub init: Option<StateInit>,
}

/// The operators of one task, in order, and the task's outputs.
pub struct Chain {
    pub operators: Vec<ChainedOperator>,
    pub outputs: Outputs,
    /// Where checkpoint acknowledgements go (`None` in tests that run no driver).
    pub reporter: Option<TaskReporter>,
    /// The alignment time of the barrier being pushed, for its acknowledgements.
    pub alignment_ms: u64,
    /// The checkpoint of the last barrier pushed.
    pub last_barrier: Option<CheckpointId>,
}

fn with_operator(ctx: &OperatorContext, e: DataFusionError) -> DataFusionError {
    ctx.error_context("operator", e)
}

impl Chain {
    /// Initializes the state of every operator, then opens them, in order.
    pub async fn open(&mut self) -> Result<()> {
        for op in &mut self.operators {
            if let Some(init) = op.init.take() {
                op.operator
                    .initialize_state(&op.ctx, init)
                    .await
                    .map_err(|e| with_operator(&op.ctx, e))?;
            }
            op.operator
                .open(&op.ctx)
                .await
                .map_err(|e| with_operator(&op.ctx, e))?;
        }
        Ok(())
    }

    /// Pushes `msg` (arriving on input `input` of the first operator) through
    /// the chain and out of the task.
    pub async fn push(&mut self, input: usize, msg: Message) -> Result<()> {
        if let Message::Barrier(b) = &msg {
            self.last_barrier = Some(b.checkpoint_id);
        }
        let mut pending = vec![msg];
        for (i, op) in self.operators.iter_mut().enumerate() {
            let mut out = Output::default();
            let op_input = if i == 0 { input } else { 0 };
            for m in pending.drain(..) {
                deliver(
                    op,
                    op_input,
                    m,
                    &mut out,
                    self.reporter.as_ref(),
                    self.alignment_ms,
                )
                .await?;
            }
            OperatorMetrics::add(&op.ctx.metrics.rows_out, out.pending_rows() as u64);
            pending = out.into_messages();
        }
        for m in pending {
            self.outputs.send(m).await?;
        }
        Ok(())
    }

    /// Tells the driver that this task has ended (after pushing
    /// [`Message::End`]): `source` is the final state of the source that
    /// feeds the chain, if any; its operators have nothing left to restore.
    pub fn report_ended(&self, source: Option<(NodeId, SubtaskState)>) {
        let Some(reporter) = &self.reporter else { return };
        let mut states: Vec<(NodeId, SubtaskState)> = source.into_iter().collect();
        states.extend(
            self.operators
                .iter()
                .map(|op| (op.node, SubtaskState::empty(op.ctx.subtask))),
        );
        reporter.send(TaskEvent::TaskEnded {
            attempt: reporter.attempt,
            after: self.last_barrier,
            states,
        });
    }

    /// Tells every operator that checkpoint `id` is complete.
    pub async fn notify_complete(&mut self, id: CheckpointId) -> Result<()> {
        for op in &mut self.operators {
            op.operator
                .notify_checkpoint_complete(id)
                .await
                .map_err(|e| with_operator(&op.ctx, e))?;
        }
        Ok(())
    }

    /// Tells every operator that checkpoint `id` was aborted.
    pub async fn notify_aborted(&mut self, id: CheckpointId) -> Result<()> {
        for op in &mut self.operators {
            op.operator
                .notify_checkpoint_aborted(id)
                .await
                .map_err(|e| with_operator(&op.ctx, e))?;
        }
        Ok(())
    }

    /// Closes every operator (best effort: the first error is returned).
    pub async fn close(&mut self) -> Result<()> {
        let mut result = Ok(());
        for op in &mut self.operators {
            if let Err(e) = op.operator.close().await
                && result.is_ok()
            {
                result = Err(with_operator(&op.ctx, e));
            }
        }
        result
    }
}

async fn deliver(
    op: &mut ChainedOperator,
    input: usize,
    msg: Message,
    out: &mut Output,
    reporter: Option<&TaskReporter>,
    alignment_ms: u64,
) -> Result<()> {
    let ctx = &op.ctx;
    let r = match msg {
        Message::Batch(batch) => {
            OperatorMetrics::add(&ctx.metrics.rows_in, batch.num_rows() as u64);
            op.operator.process_batch(input, batch, out).await
        }
        Message::Watermark(Watermark::EventTime(t)) => {
            ctx.metrics
                .watermark
                .store(t, std::sync::atomic::Ordering::Relaxed);
            op.operator.process_watermark(t, out).await
        }
        Message::Watermark(Watermark::Idle) => {
            out.push_control(Message::Watermark(Watermark::Idle));
            Ok(())
        }
        Message::Barrier(b) => {
            let r = snapshot(op, b, out, reporter, alignment_ms).await;
            out.push_control(Message::Barrier(b));
            r
        }
        Message::End => {
            let r = op.operator.finish(out).await;
            out.push_control(Message::End);
            r
        }
    };
    r.map_err(|e| with_operator(&op.ctx, e))
}

/// Takes the operator's snapshot for `barrier` and acknowledges it to the
/// driver once its asynchronous part is written.
async fn snapshot(
    op: &mut ChainedOperator,
    barrier: Barrier,
    out: &mut Output,
    reporter: Option<&TaskReporter>,
    alignment_ms: u64,
) -> Result<()> {
    let snap = op.operator.snapshot_state(barrier, out).await?;
    let Some(reporter) = reporter.cloned() else {
        return Ok(());
    };
    let (node, subtask) = (op.node, op.ctx.subtask);
    let id = barrier.checkpoint_id;
    tokio::spawn(async move {
        let keyed = match snap.keyed {
            None => None,
            Some(pending) => match pending.await {
                Ok(handle) => Some(handle),
                Err(e) => {
                    reporter.send(TaskEvent::Decline {
                        attempt: reporter.attempt,
                        id,
                        node,
                        subtask,
                        reason: e.to_string(),
                    });
                    return;
                }
            },
        };
        reporter.send(TaskEvent::Ack {
            attempt: reporter.attempt,
            id,
            node,
            state: SubtaskState {
                subtask,
                watermark: None,
                keyed,
                operator_state: snap.operator_state,
            },
            alignment_ms,
        });
    });
    Ok(())
}

//! A chain of operators fused into one task: messages pass from one operator
//! to the next by value, with no channel in between.

use datafusion::common::{DataFusionError, Result};

use crate::exchange::Outputs;
use crate::message::{Message, Watermark};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};

/// One operator of a chain, with where it runs.
pub struct ChainedOperator {
    pub operator: Box<dyn Operator>,
    pub ctx: OperatorContext,
}

/// The operators of one task, in order, and the task's outputs.
pub struct Chain {
    pub operators: Vec<ChainedOperator>,
    pub outputs: Outputs,
}

fn with_operator(ctx: &OperatorContext, e: DataFusionError) -> DataFusionError {
    ctx.error_context("operator", e)
}

impl Chain {
    /// Opens every operator, in order.
    pub async fn open(&mut self) -> Result<()> {
        for op in &mut self.operators {
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
        let mut pending = vec![msg];
        for (i, op) in self.operators.iter_mut().enumerate() {
            let mut out = Output::default();
            let op_input = if i == 0 { input } else { 0 };
            for m in pending.drain(..) {
                deliver(op, op_input, m, &mut out).await?;
            }
            OperatorMetrics::add(&op.ctx.metrics.rows_out, out.pending_rows() as u64);
            pending = out.into_messages();
        }
        for m in pending {
            self.outputs.send(m).await?;
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

async fn deliver(op: &mut ChainedOperator, input: usize, msg: Message, out: &mut Output) -> Result<()> {
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
            out_push(out, Message::Watermark(Watermark::Idle));
            Ok(())
        }
        Message::Barrier(b) => {
            let r = op.operator.snapshot_state(b, out).await;
            out_push(out, Message::Barrier(b));
            r
        }
        Message::End => {
            let r = op.operator.finish(out).await;
            out_push(out, Message::End);
            r
        }
    };
    r.map_err(|e| with_operator(ctx, e))
}

fn out_push(out: &mut Output, msg: Message) {
    out.push_control(msg);
}

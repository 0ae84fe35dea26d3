//! The loops of the two kinds of task: a source task (a source, then its
//! chained operators) and an operator task (an input gate, then a chain).

use std::time::Duration;

use datafusion::common::{DataFusionError, Result};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::chain::Chain;
use super::input_gate::{GateEvent, InputGate};
use crate::message::{Barrier, Message, Watermark};
use crate::metrics::OperatorMetrics;
use crate::operator::OperatorContext;
use crate::source::{Source, SourceEvent};
use crate::watermark::{WatermarkStrategy, WatermarkUpdate};

/// What the job tells a source task.
#[derive(Debug, Clone, Copy)]
pub enum SourceControl {
    /// Stop reading and end the stream gracefully, without the final watermark
    /// (pending windows are not fired; Flink's `stop` without drain).
    Stop,
    /// Inject a checkpoint barrier after the last batch emitted.
    Barrier(Barrier),
}

/// Everything a source task runs.
pub struct SourceTask {
    pub source: Box<dyn Source>,
    pub ctx: OperatorContext,
    pub watermark: Option<WatermarkStrategy>,
    pub idle_timeout: Option<Duration>,
    pub chain: Chain,
    pub control: mpsc::UnboundedReceiver<SourceControl>,
}

fn in_source(ctx: &OperatorContext, e: DataFusionError) -> DataFusionError {
    ctx.error_context("source", e)
}

impl SourceTask {
    /// Runs the source until it finishes, is stopped, or fails.
    pub async fn run(mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        let result = self.run_inner().await.map_err(|e| in_source(&ctx, e));
        let close = self.source.close().await.map_err(|e| in_source(&ctx, e));
        let close_chain = self.chain.close().await;
        result.and(close).and(close_chain)
    }

    async fn run_inner(&mut self) -> Result<()> {
        self.source.open(&self.ctx).await?;
        self.chain.open().await?;
        let mut watermark: Option<i64> = None;
        let mut idle = false;
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut idle_deadline = self.idle_timeout.map(|d| Instant::now() + d);
        let finished = loop {
            let deadline = if idle {
                far_future
            } else {
                idle_deadline.unwrap_or(far_future)
            };
            tokio::select! {
                biased;
                ctrl = self.control.recv() => match ctrl {
                    Some(SourceControl::Barrier(b)) => {
                        self.source.snapshot_state(b.checkpoint_id).await?;
                        self.chain.push(0, Message::Barrier(b)).await?;
                    }
                    Some(SourceControl::Stop) | None => break false,
                },
                event = self.source.poll_next() => match event? {
                    SourceEvent::Batch(batch) => {
                        OperatorMetrics::add(&self.ctx.metrics.rows_out, batch.num_rows() as u64);
                        let candidate = match &self.watermark {
                            Some(w) => w.max_in(&batch)?,
                            None => None,
                        };
                        self.chain.push(0, Message::Batch(batch)).await?;
                        let advanced = candidate.filter(|c| watermark.is_none_or(|w| *c > w));
                        if let Some(w) = advanced {
                            watermark = Some(w);
                        }
                        if let Some(w) = advanced.or(if idle { watermark } else { None }) {
                            self.ctx.metrics.watermark.store(w, std::sync::atomic::Ordering::Relaxed);
                            self.chain.push(0, Message::Watermark(Watermark::EventTime(w))).await?;
                        }
                        idle = false;
                        idle_deadline = self.idle_timeout.map(|d| Instant::now() + d);
                    }
                    SourceEvent::Idle => tokio::time::sleep(Duration::from_millis(1)).await,
                    SourceEvent::Finished => break true,
                },
                _ = tokio::time::sleep_until(deadline), if !idle && idle_deadline.is_some() => {
                    idle = true;
                    self.chain.push(0, Message::Watermark(Watermark::Idle)).await?;
                }
            }
        };
        if finished {
            self.chain.push(0, Message::Watermark(Watermark::MAX)).await?;
        }
        self.chain.push(0, Message::End).await
    }
}

/// Everything an operator task runs.
pub struct OperatorTask {
    pub gate: InputGate,
    pub chain: Chain,
}

impl OperatorTask {
    /// Runs until every input has ended, or a failure.
    pub async fn run(mut self) -> Result<()> {
        let result = self.run_inner().await;
        let close = self.chain.close().await;
        result.and(close)
    }

    async fn run_inner(&mut self) -> Result<()> {
        self.chain.open().await?;
        loop {
            let msg = match self.gate.next().await {
                GateEvent::Batch { input, batch } => {
                    self.chain.push(input, Message::Batch(batch)).await?;
                    continue;
                }
                GateEvent::Watermark(WatermarkUpdate::Advanced(t)) => {
                    Message::Watermark(Watermark::EventTime(t))
                }
                GateEvent::Watermark(WatermarkUpdate::Idle) => Message::Watermark(Watermark::Idle),
                GateEvent::Watermark(WatermarkUpdate::Unchanged) => continue,
                GateEvent::Aligned(b) => Message::Barrier(b),
                GateEvent::End => {
                    return self.chain.push(0, Message::End).await;
                }
            };
            self.chain.push(0, msg).await?;
        }
    }
}

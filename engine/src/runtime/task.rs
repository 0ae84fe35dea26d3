//! The loops of the two kinds of task: a source task (a source, then its
//! chained operators) and an operator task (an input gate, then a chain).

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::{DataFusionError, Result};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::chain::Chain;
use super::events::{Notice, TaskEvent, TaskReporter};
use super::input_gate::{GateEvent, InputGate};
use crate::checkpoint::metadata::SubtaskState;
use crate::graph::NodeId;
use crate::message::{Barrier, BarrierKind, CheckpointId, Message, Watermark};
use crate::metrics::OperatorMetrics;
use crate::operator::OperatorContext;
use crate::source::{Source, SourceEvent};
use crate::watermark::{SplitWatermarks, WatermarkStrategy, WatermarkUpdate};
use crate::watermark_alignment::{RECHECK_INTERVAL, WatermarkAlignment};

/// What the job tells a source task.
#[derive(Debug, Clone, Copy)]
pub enum SourceControl {
    /// Stop reading and end the stream gracefully, without the final watermark
    /// (pending windows are not fired; Flink's `stop` without drain). With
    /// checkpoints on, the source first waits for a final checkpoint.
    Stop,
    /// Inject a checkpoint barrier after the last batch emitted.
    Barrier(Barrier),
}

/// The checkpoint plumbing of a task: reports to the driver and its news.
pub struct TaskLinks {
    pub reporter: TaskReporter,
    pub notices: broadcast::Receiver<Notice>,
}

/// Everything a source task runs.
pub struct SourceTask {
    pub source: Box<dyn Source>,
    pub ctx: OperatorContext,
    pub node: NodeId,
    pub watermark: Option<WatermarkStrategy>,
    pub idle_timeout: Option<Duration>,
    /// Shared by the subtasks of this source (or of its alignment group)
    /// when the table aligns them, with this subtask's slot in it.
    pub alignment: Option<(Arc<WatermarkAlignment>, usize)>,
    pub chain: Chain,
    pub control: mpsc::UnboundedReceiver<SourceControl>,
    /// The list state to resume from (`None`: a fresh start).
    pub restored: Option<Vec<Value>>,
    /// The watermark to resume from.
    pub restored_watermark: Option<i64>,
    pub links: Option<TaskLinks>,
}

fn in_source(ctx: &OperatorContext, e: DataFusionError) -> DataFusionError {
    ctx.error_context("source", e)
}

/// Where a source task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    /// Stopped reading after injecting a stop-with-savepoint barrier; ends
    /// when it completes, reads on if it is aborted.
    StoppingWithSavepoint(CheckpointId),
    /// Read everything (or was stopped) with checkpoints on: goes on taking
    /// part in checkpoints until one taken after every source finished is
    /// complete ([`Notice::EndOfInput`]), then ends.
    AwaitingFinalCheckpoint,
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

    /// The source's state for checkpoint `id`: its position and watermark.
    async fn state(&mut self, id: CheckpointId, watermark: Option<i64>) -> Result<SubtaskState> {
        Ok(SubtaskState {
            watermark,
            operator_state: self.source.snapshot_state(id).await?,
            ..SubtaskState::empty(self.ctx.subtask)
        })
    }

    async fn snapshot(&mut self, b: Barrier, watermark: Option<i64>) -> Result<()> {
        let state = self.state(b.checkpoint_id, watermark).await?;
        if let Some(links) = &self.links {
            links.reporter.send(TaskEvent::Ack {
                attempt: links.reporter.attempt,
                id: b.checkpoint_id,
                node: self.node,
                state,
                alignment_ms: 0,
            });
        }
        self.chain.push(0, Message::Barrier(b)).await
    }

    /// Ends the stream, and hands the driver the source's final position
    /// (see [`TaskEvent::TaskEnded`]), so that snapshots taken while the rest
    /// of the job runs on include it.
    async fn end(&mut self, watermark: Option<i64>) -> Result<()> {
        let ended = if self.links.is_some() {
            // No checkpoint will be notified complete to this source: any id will do.
            Some((self.node, self.state(0, watermark).await?))
        } else {
            None
        };
        self.chain.push(0, Message::End).await?;
        self.chain.report_ended(ended);
        Ok(())
    }

    fn report_finished(&self) {
        if let Some(links) = &self.links {
            links.reporter.send(TaskEvent::SourceFinished {
                attempt: links.reporter.attempt,
                node: self.node,
                subtask: self.ctx.subtask,
            });
        }
    }

    async fn run_inner(&mut self) -> Result<()> {
        self.source
            .initialize_state(&self.ctx, self.restored.take())
            .await?;
        self.source.open(&self.ctx).await?;
        self.chain.open().await?;
        let checkpointing = self.ctx.checkpointing && self.links.is_some();
        let mut watermark: Option<i64> = self.restored_watermark;
        let alignment = self.alignment.clone();
        let report = |w: Option<i64>| {
            if let Some((a, slot)) = &alignment {
                a.report(*slot, w);
            }
        };
        report(watermark);
        if let Some(w) = watermark {
            self.chain
                .push(0, Message::Watermark(Watermark::EventTime(w)))
                .await?;
        }
        let mut splits = self.source.watermark_splits().map(|assigned| {
            let mut w = SplitWatermarks::new(self.idle_timeout);
            w.assign(&assigned, std::time::Instant::now());
            w
        });
        let mut idle = false;
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut idle_deadline = self.idle_timeout.map(|d| Instant::now() + d);
        let mut phase = Phase::Reading;
        let mut notices = self.links.as_ref().map(|l| l.notices.resubscribe());
        loop {
            let deadline = if idle {
                far_future
            } else {
                idle_deadline.unwrap_or(far_future)
            };
            let reading = phase == Phase::Reading;
            // Ahead of the slowest subtask by more than the drift: wait.
            let paused = reading && alignment.as_ref().is_some_and(|(a, slot)| !a.may_read(*slot));
            if paused {
                // Waiting for others is not being idle.
                idle_deadline = self.idle_timeout.map(|d| Instant::now() + d);
            }
            tokio::select! {
                biased;
                notice = recv_notice(&mut notices) => match notice {
                    Notice::Complete(id) => {
                        self.source.notify_checkpoint_complete(id).await?;
                        self.chain.notify_complete(id).await?;
                        if matches!(phase, Phase::StoppingWithSavepoint(s) if id >= s) {
                            break;
                        }
                    }
                    Notice::EndOfInput => {
                        if phase == Phase::AwaitingFinalCheckpoint {
                            break;
                        }
                    }
                    Notice::Aborted(id) => {
                        self.chain.notify_aborted(id).await?;
                        if phase == Phase::StoppingWithSavepoint(id) {
                            phase = Phase::Reading;
                        }
                    }
                },
                ctrl = self.control.recv() => match ctrl {
                    Some(SourceControl::Barrier(b)) => {
                        self.snapshot(b, watermark).await?;
                        if phase == Phase::Reading && b.kind == BarrierKind::SavepointAndStop {
                            phase = Phase::StoppingWithSavepoint(b.checkpoint_id);
                        }
                    }
                    Some(SourceControl::Stop) | None => {
                        if !checkpointing || phase == Phase::AwaitingFinalCheckpoint {
                            break;
                        }
                        phase = Phase::AwaitingFinalCheckpoint;
                        self.report_finished();
                    }
                },
                _ = recheck_alignment_later(), if paused => {}
                event = self.source.poll_next(), if reading && !paused => {
                    let (split, batch) = match event? {
                        SourceEvent::Batch(batch) => (None, batch),
                        SourceEvent::SplitBatch { split, batch } => (Some(split), batch),
                        SourceEvent::Idle => {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                continue;
                            }
                        SourceEvent::Finished => {
                            self.chain.push(0, Message::Watermark(Watermark::MAX)).await?;
                            watermark = Some(i64::MAX);
                            report(None);
                            if !checkpointing {
                                break;
                            }
                            phase = Phase::AwaitingFinalCheckpoint;
                            self.report_finished();
                            continue;
                        }
                    };
                    OperatorMetrics::add(&self.ctx.metrics.rows_out, batch.num_rows() as u64);
                    let in_batch = match &self.watermark {
                        Some(w) => w.max_in(&batch)?,
                        None => None,
                    };
                    let candidate = match (&mut splits, split) {
                        (Some(per_split), Some(split)) => {
                            let now = std::time::Instant::now();
                            if self.source.splits_changed()
                                && let Some(assigned) = self.source.watermark_splits()
                            {
                                per_split.assign(&assigned, now);
                            }
                            per_split.observe(split, in_batch, now);
                            per_split.combined(now)
                        }
                        _ => in_batch,
                    };
                    self.chain.push(0, Message::Batch(batch)).await?;
                    let advanced = candidate.filter(|c| watermark.is_none_or(|w| *c > w));
                    if let Some(w) = advanced {
                        watermark = Some(w);
                    }
                    if advanced.is_some() || idle {
                        report(watermark);
                    }
                    if let Some(w) = advanced.or(if idle { watermark } else { None }) {
                        self.ctx.metrics.watermark.store(w, std::sync::atomic::Ordering::Relaxed);
                        self.chain.push(0, Message::Watermark(Watermark::EventTime(w))).await?;
                    }
                    idle = false;
                    idle_deadline = self.idle_timeout.map(|d| Instant::now() + d);
                }
                _ = tokio::time::sleep_until(deadline), if reading && !paused && !idle && idle_deadline.is_some() => {
                    idle = true;
                    report(None);
                    self.chain.push(0, Message::Watermark(Watermark::Idle)).await?;
                }
            }
        }
        self.end(watermark).await
    }
}

/// Returns after [`RECHECK_INTERVAL`]. An `async fn`, so that `select!`
/// builds no timer (nor reads the clock) on the iterations that do not wait.
async fn recheck_alignment_later() {
    tokio::time::sleep(RECHECK_INTERVAL).await
}

/// The next notice, or never if the task has no driver.
async fn recv_notice(notices: &mut Option<broadcast::Receiver<Notice>>) -> Notice {
    let Some(rx) = notices else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(n) => return n,
            // Completions are cumulative: a missed one is covered by the next.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// Everything an operator task runs.
pub struct OperatorTask {
    pub gate: InputGate,
    pub chain: Chain,
    pub notices: Option<broadcast::Receiver<Notice>>,
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
            let event = tokio::select! {
                biased;
                notice = recv_notice(&mut self.notices) => {
                    match notice {
                        Notice::Complete(id) => self.chain.notify_complete(id).await?,
                        Notice::Aborted(id) => self.chain.notify_aborted(id).await?,
                        Notice::EndOfInput => {}
                    }
                    continue;
                }
                event = self.gate.next() => event,
            };
            let msg = match event {
                GateEvent::Batch { input, batch } => {
                    self.chain.push(input, Message::Batch(batch)).await?;
                    continue;
                }
                GateEvent::Watermark(WatermarkUpdate::Advanced(t)) => {
                    Message::Watermark(Watermark::EventTime(t))
                }
                GateEvent::Watermark(WatermarkUpdate::Idle) => Message::Watermark(Watermark::Idle),
                GateEvent::Watermark(WatermarkUpdate::Unchanged) => continue,
                GateEvent::Aligned {
                    barrier,
                    alignment_ms,
                } => {
                    self.chain.alignment_ms = alignment_ms;
                    Message::Barrier(barrier)
                }
                GateEvent::End => {
                    self.chain.push(0, Message::End).await?;
                    self.chain.report_ended(None);
                    return Ok(());
                }
            };
            self.chain.push(0, msg).await?;
        }
    }
}

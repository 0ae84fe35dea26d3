//! Reading a task's input channels: fair polling, barrier alignment,
//! watermark merging, end of input.

use std::future::poll_fn;
use std::task::Poll;

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::message::{Barrier, Message};
use crate::watermark::{WatermarkTracker, WatermarkUpdate};

/// One input channel of a task.
#[derive(Debug)]
pub struct InputChannel {
    pub receiver: mpsc::Receiver<Message>,
    /// Which input of the operator the channel feeds.
    pub input: usize,
}

/// What the gate delivers to the task, in order.
#[derive(Debug)]
pub enum GateEvent {
    /// A batch from operator input `input`.
    Batch {
        input: usize,
        batch: arrow::record_batch::RecordBatch,
    },
    /// The combined watermark changed.
    Watermark(WatermarkUpdate),
    /// A barrier has arrived on every live channel; `alignment_ms` is the time
    /// since it arrived on the first.
    Aligned { barrier: Barrier, alignment_ms: u64 },
    /// Every channel has ended.
    End,
}

/// The receiving side of a task.
///
/// Channels are polled round-robin, so a busy input cannot starve the
/// others. After a barrier arrives on a channel, that channel is not read
/// again until the barrier has arrived on every other live channel
/// (alignment), so the snapshot sees exactly the records before the barrier.
///
/// Unaligned (`AT_LEAST_ONCE`), channels are never blocked: the barrier is
/// delivered once it has arrived on every live channel, and records after it
/// on faster channels may already have been processed (they are replayed on
/// restore: at least once).
#[derive(Debug)]
pub struct InputGate {
    channels: Vec<InputChannel>,
    ended: Vec<bool>,
    blocked: Vec<bool>,
    aligned: bool,
    pending_barrier: Option<(Barrier, Instant)>,
    /// Unaligned mode: barriers seen so far, with the channels they arrived on.
    arrivals: BTreeMap<u64, (Barrier, Instant, Vec<bool>)>,
    watermarks: WatermarkTracker,
    next: usize,
}

impl InputGate {
    /// A gate over `channels`; `aligned` selects exactly-once alignment.
    pub fn new(channels: Vec<InputChannel>, aligned: bool) -> Self {
        let n = channels.len();
        InputGate {
            channels,
            ended: vec![false; n],
            blocked: vec![false; n],
            aligned,
            pending_barrier: None,
            arrivals: BTreeMap::new(),
            watermarks: WatermarkTracker::new(n),
            next: 0,
        }
    }

    async fn recv_any(&mut self) -> Option<(usize, Option<Message>)> {
        let n = self.channels.len();
        if self.ended.iter().all(|e| *e) {
            return None;
        }
        let start = self.next;
        let (channels, ended, blocked) = (&mut self.channels, &self.ended, &self.blocked);
        let got = poll_fn(|cx| {
            for k in 0..n {
                let i = (start + k) % n;
                if ended[i] || blocked[i] {
                    continue;
                }
                if let Poll::Ready(msg) = channels[i].receiver.poll_recv(cx) {
                    return Poll::Ready((i, msg));
                }
            }
            Poll::Pending
        })
        .await;
        self.next = (got.0 + 1) % n;
        Some(got)
    }

    /// The next event for the task; `GateEvent::End` once all inputs ended.
    pub async fn next(&mut self) -> GateEvent {
        loop {
            let Some((ch, msg)) = self.recv_any().await else {
                return GateEvent::End;
            };
            match msg {
                Some(Message::Batch(batch)) => {
                    return GateEvent::Batch {
                        input: self.channels[ch].input,
                        batch,
                    };
                }
                Some(Message::Watermark(w)) => match self.watermarks.update(ch, w) {
                    WatermarkUpdate::Unchanged => continue,
                    u => return GateEvent::Watermark(u),
                },
                Some(Message::Barrier(b)) if !self.aligned => {
                    let n = self.channels.len();
                    let entry = self
                        .arrivals
                        .entry(b.checkpoint_id)
                        .or_insert_with(|| (b, Instant::now(), vec![false; n]));
                    entry.2[ch] = true;
                    if let Some(ev) = self.try_complete_unaligned() {
                        return ev;
                    }
                }
                Some(Message::Barrier(b)) => {
                    self.blocked[ch] = true;
                    if self.pending_barrier.is_none() {
                        self.pending_barrier = Some((b, Instant::now()));
                    }
                    if let Some(ev) = self.try_align() {
                        return ev;
                    }
                }
                // A dropped sender is an end too (the upstream task failed or
                // was cancelled; the job supervisor reports why).
                Some(Message::End) | None => {
                    self.ended[ch] = true;
                    self.blocked[ch] = false;
                    if let Some(ev) = self.try_align().or_else(|| self.try_complete_unaligned()) {
                        return ev;
                    }
                    match self.watermarks.end(ch) {
                        WatermarkUpdate::Unchanged => {}
                        u => return GateEvent::Watermark(u),
                    }
                }
            }
        }
    }

    fn try_align(&mut self) -> Option<GateEvent> {
        let (barrier, since) = self.pending_barrier?;
        let aligned = (0..self.channels.len()).all(|i| self.ended[i] || self.blocked[i]);
        if !aligned {
            return None;
        }
        self.pending_barrier = None;
        self.blocked.iter_mut().for_each(|b| *b = false);
        Some(GateEvent::Aligned {
            barrier,
            alignment_ms: since.elapsed().as_millis() as u64,
        })
    }

    fn try_complete_unaligned(&mut self) -> Option<GateEvent> {
        let (&id, (_, _, seen)) = self.arrivals.iter().next()?;
        if !(0..seen.len()).all(|i| seen[i] || self.ended[i]) {
            return None;
        }
        let (barrier, since, _) = self.arrivals.remove(&id).expect("present");
        Some(GateEvent::Aligned {
            barrier,
            alignment_ms: since.elapsed().as_millis() as u64,
        })
    }
}

//! The messages that flow on the channels between operator subtasks.

use arrow::record_batch::RecordBatch;

/// Identifies one checkpoint of a job; strictly increasing within a job.
pub type CheckpointId = u64;

/// An instant of event time, in nanoseconds since the Unix epoch.
///
/// `i64` nanoseconds cover the years 1677..2262, and match Arrow's
/// `Timestamp(Nanosecond, _)`, to which every event-time column is normalised.
pub type EventTime = i64;

/// The only thing that travels on a channel between two operator subtasks.
///
/// Control (watermarks, barriers, end of stream) travels *in band*, in order
/// with the data: a barrier never overtakes a batch sent before it, and a
/// watermark promises nothing about batches sent before it.
#[derive(Debug, Clone)]
pub enum Message {
    /// A batch of rows. An updating (changelog) stream carries its row kinds in
    /// a trailing [`crate::changelog::OP_COLUMN`] column; see [`crate::changelog`].
    Batch(RecordBatch),
    /// Event-time progress (or idleness) of the sender.
    Watermark(Watermark),
    /// A checkpoint barrier, injected at the sources.
    Barrier(Barrier),
    /// The sender will send nothing more on this channel.
    End,
}

/// Event-time progress of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    /// No row with an event time `<= t` will follow on this channel.
    EventTime(EventTime),
    /// The sender is idle: it has had no data for `scan.watermark.idle-timeout`
    /// and must not hold back the watermark of downstream operators. The next
    /// `EventTime` watermark on the same channel makes it active again.
    Idle,
}

impl Watermark {
    /// The watermark that closes every window: emitted by bounded sources at their end.
    pub const MAX: Watermark = Watermark::EventTime(EventTime::MAX);
}

/// What a checkpoint barrier asks of the operators it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierKind {
    /// A periodic checkpoint, owned and retained by weir.
    Checkpoint,
    /// A savepoint: self-contained, owned by the user.
    Savepoint,
    /// A savepoint after which the sources stop and the job ends.
    SavepointAndStop,
}

/// A checkpoint barrier: separates the records that belong to checkpoint
/// `checkpoint_id` (before it) from those after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    pub checkpoint_id: CheckpointId,
    pub kind: BarrierKind,
}

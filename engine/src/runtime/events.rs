//! What tasks tell the job's driver, and what the driver tells them.

use tokio::sync::mpsc;

use crate::checkpoint::metadata::SubtaskState;
use crate::graph::NodeId;
use crate::message::CheckpointId;

/// A task's report to the job driver. `attempt` identifies the run of the
/// job (it restarts with a new one), so late reports of a failed run are ignored.
#[derive(Debug)]
pub enum TaskEvent {
    /// A subtask of `node` has snapshotted checkpoint `id` durably.
    Ack {
        attempt: u32,
        id: CheckpointId,
        node: NodeId,
        state: SubtaskState,
        /// Time from the first barrier to alignment on the subtask's inputs.
        alignment_ms: u64,
    },
    /// A subtask could not snapshot checkpoint `id`.
    Decline {
        attempt: u32,
        id: CheckpointId,
        node: NodeId,
        subtask: usize,
        reason: String,
    },
    /// A source subtask has read everything (or was asked to stop) and waits
    /// for a final checkpoint before ending.
    SourceFinished {
        attempt: u32,
        node: NodeId,
        subtask: usize,
    },
    /// A task has ended (its input ended, or a source read everything or
    /// was stopped) and takes no part in later checkpoints: `states`, one
    /// per operator of its chain (a source's final position; nothing for the
    /// others, whose input has ended), stand for its acknowledgements of
    /// every checkpoint after `after`, the last barrier it took. Without
    /// this, a savepoint of a job in which some subtasks have ended (e.g. a
    /// source subtask left without splits after a rescale) would wait for
    /// them forever.
    TaskEnded {
        attempt: u32,
        after: Option<CheckpointId>,
        states: Vec<(NodeId, SubtaskState)>,
    },
}

/// The driver's news for every task, by broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Checkpoint or savepoint `id` is complete: commit.
    Complete(CheckpointId),
    /// Checkpoint or savepoint `id` was aborted.
    Aborted(CheckpointId),
    /// A checkpoint taken after every source had finished is complete:
    /// finished sources may end their streams now.
    EndOfInput,
}

/// How a task reports to the driver.
#[derive(Debug, Clone)]
pub struct TaskReporter {
    pub attempt: u32,
    pub events: mpsc::UnboundedSender<TaskEvent>,
}

impl TaskReporter {
    pub fn send(&self, event: TaskEvent) {
        // The driver outlives every task; a closed channel means the job is
        // over and the report no longer matters.
        let _ = self.events.send(event);
    }
}

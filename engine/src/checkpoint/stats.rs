//! The history of a job's checkpoints, for `SHOW CHECKPOINTS` and metrics.

use std::time::{Duration, SystemTime};

use super::metadata::SnapshotKind;
use crate::message::CheckpointId;

/// Where a checkpoint is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointStatus {
    InProgress,
    Completed,
    Failed(String),
}

impl CheckpointStatus {
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub fn name(&self) -> &'static str {
        match self {
            CheckpointStatus::InProgress => "IN_PROGRESS",
            CheckpointStatus::Completed => "COMPLETED",
            CheckpointStatus::Failed(_) => "FAILED",
        }
    }
}

/// One checkpoint or savepoint of a job.
#[derive(Debug, Clone)]
pub struct CheckpointStats {
    pub id: CheckpointId,
    pub kind: SnapshotKind,
    pub status: CheckpointStatus,
    pub triggered: SystemTime,
    /// From trigger to completion (or failure).
    pub duration: Option<Duration>,
    /// Bytes of state files (keyed state; incremental files counted whole).
    pub state_size: u64,
    /// The longest barrier alignment of any subtask.
    pub alignment: Duration,
    /// Subtasks that acknowledged, out of how many.
    pub acknowledged: usize,
    pub total: usize,
    /// Its directory.
    pub location: String,
}

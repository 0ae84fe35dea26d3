//! A job's fault-tolerance settings, as Flink names them.

use std::path::PathBuf;
use std::sync::Arc;

use super::coordinator::CheckpointSettings;
use super::restore::RestoreSource;
use crate::runtime::restart::RestartStrategy;
use crate::state::{HashMapBackendFactory, SharedBackendFactory};

/// `execution.checkpointing.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointingMode {
    /// Barriers are aligned: an input that delivered the barrier is not read
    /// until every input has (each record is in exactly one checkpoint).
    ExactlyOnce,
    /// Barriers are not aligned: records after the barrier on a fast input may
    /// be in the snapshot, and are replayed after a restore (duplicates).
    AtLeastOnce,
}

/// `execution.checkpointing.externalized-checkpoint-retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointRetention {
    /// Keep the retained checkpoints when the job is cancelled.
    RetainOnCancellation,
    /// Delete them when the job is cancelled.
    DeleteOnCancellation,
}

/// Everything about checkpoints, state and recovery for one job.
#[derive(Debug, Clone)]
pub struct FaultToleranceConfig {
    /// `execution.checkpointing.interval`; `None` = periodic checkpoints off.
    pub interval_ms: Option<u64>,
    /// Timeout, min-pause, max-concurrent, tolerable failures, num-retained.
    pub settings: CheckpointSettings,
    pub mode: CheckpointingMode,
    pub retention: CheckpointRetention,
    /// `execution.checkpointing.dir` (or `state.checkpoints.dir`): the job's
    /// checkpoints go to `<dir>/<pipeline.name>/`.
    pub checkpoint_dir: Option<String>,
    /// `execution.checkpointing.savepoint-dir` (or `state.savepoints.dir`):
    /// where savepoints go when no directory is given.
    pub savepoint_dir: Option<String>,
    /// `execution.checkpointing.incremental`.
    pub incremental: bool,
    /// `state.backend.type`.
    pub backend: SharedBackendFactory,
    /// Local working directory of state backends (RocksDB files).
    pub local_dir: PathBuf,
    /// `restart-strategy.*`.
    pub restart: RestartStrategy,
    /// What to start from (a savepoint, or the latest checkpoint).
    pub restore: Option<Arc<RestoreSource>>,
    /// `execution.savepoint.ignore-unclaimed-state`.
    pub ignore_unclaimed_state: bool,
    /// `table.exec.state.ttl` in ms (0 = state never expires).
    pub state_ttl_ms: u64,
}

impl Default for FaultToleranceConfig {
    fn default() -> Self {
        FaultToleranceConfig {
            interval_ms: None,
            settings: CheckpointSettings::default(),
            mode: CheckpointingMode::ExactlyOnce,
            retention: CheckpointRetention::DeleteOnCancellation,
            checkpoint_dir: None,
            savepoint_dir: None,
            incremental: false,
            backend: Arc::new(HashMapBackendFactory),
            local_dir: std::env::temp_dir().join("weir-state"),
            restart: RestartStrategy::None,
            restore: None,
            ignore_unclaimed_state: false,
            state_ttl_ms: 0,
        }
    }
}

impl FaultToleranceConfig {
    /// Whether periodic checkpoints are on.
    pub fn checkpointing(&self) -> bool {
        self.interval_ms.is_some()
    }
}

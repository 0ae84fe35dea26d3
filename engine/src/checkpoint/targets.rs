//! Resolving a barrier to the place its snapshot files go.

use std::collections::HashMap;

use datafusion::common::{DataFusionError, Result};
use parking_lot::Mutex;

use super::storage::CheckpointStorage;
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::state::SnapshotTarget;

/// The name of checkpoint `id`'s directory inside the job's directory.
pub fn checkpoint_dir_name(id: CheckpointId) -> String {
    format!("chk-{id}")
}

/// The checkpoint id of directory `name` ([`checkpoint_dir_name`]'s
/// inverse); `None` for any other directory.
pub fn checkpoint_id_of_dir(name: &str) -> Option<CheckpointId> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// The directory of incremental files shared between checkpoints.
pub const SHARED_DIR: &str = "shared";

/// Where the snapshots of one job go: its checkpoint directory, and the
/// directories of the savepoints requested so far. Shared by every task of
/// the job.
#[derive(Debug, Default)]
pub struct SnapshotTargets {
    /// `<execution.checkpointing.dir>/<job name>`, when checkpoints are on.
    pub job_dir: Option<CheckpointStorage>,
    /// `execution.checkpointing.incremental`.
    pub incremental: bool,
    savepoints: Mutex<HashMap<CheckpointId, CheckpointStorage>>,
}

impl SnapshotTargets {
    pub fn new(job_dir: Option<CheckpointStorage>, incremental: bool) -> Self {
        SnapshotTargets {
            job_dir,
            incremental,
            savepoints: Mutex::new(HashMap::new()),
        }
    }

    /// Registers the directory of savepoint `id` (before its barrier is injected).
    pub fn register_savepoint(&self, id: CheckpointId, dir: CheckpointStorage) {
        self.savepoints.lock().insert(id, dir);
    }

    /// Forgets savepoint `id` once it is complete or aborted.
    pub fn forget_savepoint(&self, id: CheckpointId) {
        self.savepoints.lock().remove(&id);
    }

    /// Where the snapshot for `barrier` goes.
    pub fn target_for(&self, barrier: Barrier) -> Result<SnapshotTarget> {
        match barrier.kind {
            BarrierKind::Checkpoint => {
                let storage = self.job_dir.clone().ok_or_else(|| {
                    DataFusionError::Configuration(
                        "a checkpoint needs a checkpoint directory: SET 'execution.checkpointing.dir'".into(),
                    )
                })?;
                Ok(SnapshotTarget {
                    checkpoint_id: barrier.checkpoint_id,
                    storage,
                    exclusive_dir: checkpoint_dir_name(barrier.checkpoint_id),
                    shared_dir: self.incremental.then(|| SHARED_DIR.to_string()),
                    canonical: false,
                })
            }
            BarrierKind::Savepoint | BarrierKind::SavepointAndStop => {
                let storage = self
                    .savepoints
                    .lock()
                    .get(&barrier.checkpoint_id)
                    .cloned()
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "no directory registered for savepoint {}",
                            barrier.checkpoint_id
                        ))
                    })?;
                Ok(SnapshotTarget {
                    checkpoint_id: barrier.checkpoint_id,
                    storage,
                    exclusive_dir: String::new(),
                    shared_dir: None,
                    canonical: true,
                })
            }
        }
    }
}

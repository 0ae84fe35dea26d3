//! Matching a checkpoint or savepoint to a job graph and redistributing its
//! state over the (possibly different) parallelism of the new job.

use datafusion::common::{DataFusionError, Result};
use serde_json::Value;

use super::metadata::{CheckpointMetadata, SnapshotKind};
use super::storage::CheckpointStorage;
use super::targets::checkpoint_id_of_dir;
use super::{SAVEPOINT_POINTERS, savepoint_pointer_id};
use crate::graph::JobGraph;
use crate::key_group::KeyGroupRange;
use crate::message::CheckpointId;
use crate::state::KeyedStateHandle;

/// A verified checkpoint or savepoint to start a job from.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    pub metadata: CheckpointMetadata,
    /// The directory its file paths are relative to.
    pub storage: CheckpointStorage,
    /// Where it is, for messages: `<dir>/chk-7` or the savepoint directory.
    pub location: String,
}

impl RestoreSource {
    /// Reads and verifies the checkpoint in directory `dir` of `storage`
    /// (`dir` is `chk-<n>`, or empty for a savepoint directory).
    pub async fn load(storage: &CheckpointStorage, dir: &str) -> Result<Self> {
        let metadata = CheckpointMetadata::read_and_verify(storage, dir).await?;
        let location = if dir.is_empty() {
            storage.display().to_string()
        } else {
            format!("{}/{dir}", storage.display())
        };
        Ok(RestoreSource {
            metadata,
            storage: storage.clone(),
            location,
        })
    }

    /// The restored checkpoint's id.
    pub fn checkpoint_id(&self) -> CheckpointId {
        self.metadata.checkpoint_id
    }

    /// Whether it is a savepoint.
    pub fn is_savepoint(&self) -> bool {
        self.metadata.kind == SnapshotKind::Savepoint
    }

    /// Checks that `graph` can take this state: the same number of key groups,
    /// and every operator state claimed by an operator of the same id (unless
    /// `ignore_unclaimed`: `execution.savepoint.ignore-unclaimed-state`).
    pub fn check_against(&self, graph: &JobGraph, ignore_unclaimed: bool) -> Result<()> {
        if self.metadata.max_parallelism != graph.max_parallelism {
            return Err(DataFusionError::Configuration(format!(
                "{} was taken with pipeline.max-parallelism = {}, the job has {}: keyed state cannot \
                 be redistributed over a different number of key groups",
                self.location, self.metadata.max_parallelism, graph.max_parallelism
            )));
        }
        if ignore_unclaimed {
            return Ok(());
        }
        let unclaimed: Vec<String> = self
            .metadata
            .operators
            .iter()
            .filter(|o| o.has_state() && !graph.nodes.iter().any(|n| n.operator_id == o.operator_id))
            .map(|o| format!("{} [{}]", o.name, o.operator_id))
            .collect();
        if !unclaimed.is_empty() {
            let present: Vec<String> = graph
                .nodes
                .iter()
                .map(|n| format!("{} [{}]", n.name, n.operator_id))
                .collect();
            return Err(DataFusionError::Configuration(format!(
                "{} holds state of operators this job does not have: {}. The job's operators are: {}. \
                 Was the query changed? Restore with SET 'execution.savepoint.ignore-unclaimed-state' = \
                 'true' to drop that state.",
                self.location,
                unclaimed.join(", "),
                present.join(", ")
            )));
        }
        Ok(())
    }

    /// The keyed state handles of `operator_id` that overlap `range`, with
    /// the storage their paths are relative to.
    pub fn keyed_for(
        &self,
        operator_id: &str,
        range: KeyGroupRange,
    ) -> Vec<(KeyedStateHandle, CheckpointStorage)> {
        self.metadata
            .operator(operator_id)
            .map(|o| {
                o.subtasks
                    .iter()
                    .filter_map(|s| s.keyed.as_ref())
                    .filter(|h| h.overlaps(range))
                    .map(|h| (h.clone(), self.storage.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Subtask `subtask`'s share of `operator_id`'s list state, or `None` if
    /// the operator has no state here (it starts fresh). At the same
    /// parallelism, subtask i gets what subtask i wrote; otherwise entries
    /// are dealt round-robin in (old subtask, entry) order.
    pub fn operator_state_for(
        &self,
        operator_id: &str,
        subtask: usize,
        parallelism: usize,
    ) -> Option<Vec<Value>> {
        let op = self.metadata.operator(operator_id)?;
        if op.parallelism == parallelism {
            return Some(
                op.subtasks
                    .iter()
                    .find(|s| s.subtask == subtask)
                    .map(|s| s.operator_state.clone())
                    .unwrap_or_default(),
            );
        }
        let mut subtasks: Vec<_> = op.subtasks.iter().collect();
        subtasks.sort_by_key(|s| s.subtask);
        Some(
            subtasks
                .iter()
                .flat_map(|s| s.operator_state.iter())
                .enumerate()
                .filter(|(i, _)| i % parallelism == subtask)
                .map(|(_, v)| v.clone())
                .collect(),
        )
    }

    /// Every list-state entry of every old subtask of `operator_id`, in
    /// subtask order (Flink's union list state): for sources whose subtasks
    /// pick their own splits from the full set by a deterministic rule.
    pub fn union_operator_state(&self, operator_id: &str) -> Option<Vec<Value>> {
        let op = self.metadata.operator(operator_id)?;
        let mut subtasks: Vec<_> = op.subtasks.iter().collect();
        subtasks.sort_by_key(|s| s.subtask);
        Some(
            subtasks
                .iter()
                .flat_map(|s| s.operator_state.iter().cloned())
                .collect(),
        )
    }

    /// The watermark a restored source subtask resumes from: its own at the
    /// same parallelism, else the least over the old subtasks.
    pub fn watermark_for(&self, operator_id: &str, subtask: usize, parallelism: usize) -> Option<i64> {
        let op = self.metadata.operator(operator_id)?;
        if op.parallelism == parallelism {
            return op.subtasks.iter().find(|s| s.subtask == subtask)?.watermark;
        }
        op.subtasks.iter().map(|s| s.watermark).min().flatten()
    }
}

/// Finds the newest checkpoint of a job that can be restored, skipping (with
/// a log line) any whose `_metadata` is missing or whose files are missing or
/// truncated. `job_dir` is `<execution.checkpointing.dir>/<job name>`; also
/// considers the savepoints the job recorded in `job_dir/savepoints/`.
pub async fn latest_restorable(job_dir: &CheckpointStorage) -> Result<Option<RestoreSource>> {
    let mut candidates: Vec<(CheckpointId, Candidate)> = Vec::new();
    for d in job_dir.list_dirs("").await? {
        if let Some(id) = checkpoint_id_of_dir(&d) {
            candidates.push((id, Candidate::Checkpoint(d)));
        }
    }
    for f in job_dir.list(SAVEPOINT_POINTERS).await? {
        if let Some(id) = savepoint_pointer_id(&f) {
            candidates.push((id, Candidate::SavepointPointer(f)));
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (id, c) in candidates {
        let loaded = match &c {
            Candidate::Checkpoint(d) => RestoreSource::load(job_dir, d).await,
            Candidate::SavepointPointer(f) => match job_dir.get(f).await {
                Ok(path) => {
                    let path = String::from_utf8_lossy(&path).trim().to_string();
                    match CheckpointStorage::open(&path) {
                        Ok(s) => RestoreSource::load(&s, "").await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
        };
        match loaded {
            Ok(r) => return Ok(Some(r)),
            Err(e) => tracing::warn!("skipping checkpoint {id} of {}: {e}", job_dir.display()),
        }
    }
    Ok(None)
}

enum Candidate {
    Checkpoint(String),
    SavepointPointer(String),
}

//! The `_metadata` file: the list of everything one checkpoint or savepoint
//! holds. Written last and atomically; a checkpoint without it does not exist.
//!
//! Format `weir-checkpoint` version 1 is JSON:
//!
//! ```json
//! { "format": "weir-checkpoint", "version": 1, "kind": "checkpoint",
//!   "job_name": "orders", "checkpoint_id": 7, "timestamp_ms": 1763700000000,
//!   "max_parallelism": 128, "sources_finished": false,
//!   "operators": [ { "operator_id": "window_aggregate-2", "name": "...", "parallelism": 2,
//!       "subtasks": [ { "subtask": 0, "watermark": 1763699990000000000,
//!                       "keyed": { "backend": "hashmap", "key_groups": [0, 64],
//!                                  "files": [ { "path": "chk-7/window_aggregate-2-0.kv",
//!                                               "size": 1234, "name": "...", "shared": false } ],
//!                                  "entries": 10 },
//!                       "operator_state": [ ... ] } ] } ] }
//! ```
//!
//! File paths are relative to the directory holding the checkpoint's
//! directory (the job's checkpoint directory), or to the savepoint directory.

use std::collections::BTreeSet;

use bytes::Bytes;
use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::storage::CheckpointStorage;
use crate::message::CheckpointId;
use crate::state::KeyedStateHandle;

/// The format name in every `_metadata`.
pub const FORMAT: &str = "weir-checkpoint";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// The file name.
pub const METADATA_FILE: &str = "_metadata";

/// Whether a snapshot is a periodic checkpoint or a user's savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

/// One subtask's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskState {
    pub subtask: usize,
    /// The source subtask's watermark at the barrier (sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed: Option<KeyedStateHandle>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operator_state: Vec<Value>,
}

impl SubtaskState {
    /// Subtask `subtask` holding no state.
    pub fn empty(subtask: usize) -> Self {
        SubtaskState {
            subtask,
            watermark: None,
            keyed: None,
            operator_state: Vec::new(),
        }
    }
}

/// One operator's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The stable id derived from the plan: what matches state to operators on restore.
    pub operator_id: String,
    /// Human-readable name, for messages.
    pub name: String,
    pub parallelism: usize,
    pub subtasks: Vec<SubtaskState>,
}

impl OperatorState {
    /// Whether any subtask recorded state.
    pub fn has_state(&self) -> bool {
        self.subtasks
            .iter()
            .any(|s| s.keyed.as_ref().is_some_and(|k| k.has_state()) || !s.operator_state.is_empty())
    }
}

/// The content of `_metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub format: String,
    pub version: u32,
    pub kind: SnapshotKind,
    pub job_name: String,
    pub checkpoint_id: CheckpointId,
    pub timestamp_ms: u64,
    pub max_parallelism: usize,
    /// Every source had ended before this checkpoint (a job's final checkpoint).
    #[serde(default)]
    pub sources_finished: bool,
    pub operators: Vec<OperatorState>,
}

impl CheckpointMetadata {
    /// Total bytes of state files.
    pub fn state_size(&self) -> u64 {
        self.keyed_handles().map(|h| h.size()).sum()
    }

    /// Every keyed state handle.
    pub fn keyed_handles(&self) -> impl Iterator<Item = &KeyedStateHandle> {
        self.operators
            .iter()
            .flat_map(|o| o.subtasks.iter().filter_map(|s| s.keyed.as_ref()))
    }

    /// Paths of the shared (incremental) files this checkpoint uses.
    pub fn shared_files(&self) -> BTreeSet<String> {
        self.keyed_handles()
            .flat_map(|h| h.all_files().filter(|f| f.shared).map(|f| f.path.clone()))
            .collect()
    }

    /// The operator with id `id`.
    pub fn operator(&self, id: &str) -> Option<&OperatorState> {
        self.operators.iter().find(|o| o.operator_id == id)
    }

    /// Serializes to JSON.
    pub fn to_bytes(&self) -> Result<Bytes> {
        serde_json::to_vec_pretty(self)
            .map(Bytes::from)
            .map_err(|e| DataFusionError::Internal(format!("serializing _metadata: {e}")))
    }

    /// Parses and checks format and version.
    pub fn from_bytes(data: &[u8], location: &str) -> Result<Self> {
        let m: CheckpointMetadata = serde_json::from_slice(data).map_err(|e| {
            DataFusionError::Execution(format!("{location}/_metadata is not a weir checkpoint: {e}"))
        })?;
        if m.format != FORMAT || m.version > VERSION {
            return Err(DataFusionError::Execution(format!(
                "{location}/_metadata has format '{}' version {}; this weir reads '{FORMAT}' up to version {VERSION}",
                m.format, m.version
            )));
        }
        Ok(m)
    }

    /// Reads `<dir>/_metadata` of `storage` and checks that every file it
    /// lists exists with the recorded size: a checkpoint is restored whole or
    /// not at all.
    pub async fn read_and_verify(storage: &CheckpointStorage, dir: &str) -> Result<Self> {
        let location = if dir.is_empty() {
            storage.display().to_string()
        } else {
            format!("{}/{dir}", storage.display())
        };
        let path = if dir.is_empty() {
            METADATA_FILE.to_string()
        } else {
            format!("{dir}/{METADATA_FILE}")
        };
        let data = storage
            .get(&path)
            .await
            .map_err(|e| e.context(format!("{location} has no readable _metadata")))?;
        let m = Self::from_bytes(&data, &location)?;
        for h in m.keyed_handles() {
            for f in h.all_files() {
                match storage.size_of(&f.path).await? {
                    Some(size) if size == f.size => {}
                    Some(size) => {
                        return Err(DataFusionError::Execution(format!(
                            "{location}: state file {} has {size} bytes, _metadata says {} (truncated or corrupt)",
                            f.path, f.size
                        )));
                    }
                    None => {
                        return Err(DataFusionError::Execution(format!(
                            "{location}: state file {} is missing",
                            f.path
                        )));
                    }
                }
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateFile;

    #[tokio::test]
    async fn round_trip_and_verification() {
        let dir = tempfile::tempdir().unwrap();
        let s = CheckpointStorage::open(dir.path().to_str().unwrap()).unwrap();
        s.put("chk-1/a.kv", Bytes::from_static(b"12345")).await.unwrap();
        let m = CheckpointMetadata {
            format: FORMAT.into(),
            version: VERSION,
            kind: SnapshotKind::Checkpoint,
            job_name: "j".into(),
            checkpoint_id: 1,
            timestamp_ms: 0,
            max_parallelism: 128,
            sources_finished: false,
            operators: vec![OperatorState {
                operator_id: "op".into(),
                name: "Op".into(),
                parallelism: 1,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    watermark: Some(5),
                    keyed: Some(KeyedStateHandle {
                        backend: "hashmap".into(),
                        key_groups: (0, 128),
                        files: vec![StateFile {
                            path: "chk-1/a.kv".into(),
                            size: 5,
                            name: "a.kv".into(),
                            shared: false,
                        }],
                        entries: 1,
                        batches: Vec::new(),
                    }),
                    operator_state: vec![serde_json::json!({"offset": 3})],
                }],
            }],
        };
        s.put("chk-1/_metadata", m.to_bytes().unwrap()).await.unwrap();
        assert_eq!(CheckpointMetadata::read_and_verify(&s, "chk-1").await.unwrap(), m);
        s.put("chk-1/a.kv", Bytes::from_static(b"123")).await.unwrap();
        let e = CheckpointMetadata::read_and_verify(&s, "chk-1")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(CheckpointMetadata::read_and_verify(&s, "chk-2").await.is_err());
    }
}

//! What an operator receives on start ([`StateInit`]) and hands over at a
//! barrier ([`OperatorSnapshot`]).

use std::sync::Arc;

use datafusion::common::Result;
use serde_json::Value;

use super::backend::{
    KeyedStateBackend, KeyedStateHandle, PendingSnapshot, SharedBackendFactory, StateScope,
};
use super::backend_batches::BackendBatches;
use super::batch_files::read_batch_state;
use super::batch_state::BatchState;
use crate::checkpoint::storage::CheckpointStorage;
use crate::checkpoint::targets::SnapshotTargets;
use crate::message::{Barrier, CheckpointId};

/// The state an operator subtask starts from: nothing (a fresh job), or what
/// a checkpoint or savepoint recorded, redistributed to this subtask.
///
/// Given to [`crate::operator::Operator::initialize_state`] before `open`.
pub struct StateInit {
    scope: StateScope,
    factory: SharedBackendFactory,
    targets: Arc<SnapshotTargets>,
    keyed_restore: Vec<(KeyedStateHandle, CheckpointStorage)>,
    operator_state: Option<Vec<Value>>,
    restored_from: Option<CheckpointId>,
}

impl StateInit {
    /// `operator_state` is `None` for a fresh start and `Some` (possibly
    /// empty) when restoring.
    pub fn new(
        scope: StateScope,
        factory: SharedBackendFactory,
        targets: Arc<SnapshotTargets>,
        keyed_restore: Vec<(KeyedStateHandle, CheckpointStorage)>,
        operator_state: Option<Vec<Value>>,
        restored_from: Option<CheckpointId>,
    ) -> Self {
        StateInit {
            scope,
            factory,
            targets,
            keyed_restore,
            operator_state,
            restored_from,
        }
    }

    /// The checkpoint (or savepoint) restored from, if any.
    pub fn restored_from(&self) -> Option<CheckpointId> {
        self.restored_from
    }

    /// Whether this start restores a checkpoint or savepoint.
    pub fn is_restored(&self) -> bool {
        self.restored_from.is_some()
    }

    /// The operator list state assigned to this subtask: `None` on a fresh
    /// start; on restore, this subtask's share of every subtask's entries
    /// (each entry goes to exactly one subtask; at unchanged parallelism,
    /// subtask i gets what subtask i wrote).
    pub fn take_operator_state(&mut self) -> Option<Vec<Value>> {
        self.operator_state.take()
    }

    /// The subtask's keyed state: entries created by `state.backend.type`'s
    /// backend and batches, each holding the restored state of its key groups.
    pub async fn keyed_state(&mut self) -> Result<KeyedState> {
        let restore = std::mem::take(&mut self.keyed_restore);
        let context = |e: datafusion::common::DataFusionError| {
            e.context(format!(
                "restoring keyed state of operator {} subtask {}",
                self.scope.operator_id, self.scope.subtask
            ))
        };
        let backend = self
            .factory
            .create(&self.scope, &restore)
            .await
            .map_err(context)?;
        let batches = read_batch_state(&restore, self.scope.key_groups)
            .await
            .map_err(context)?;
        Ok(KeyedState {
            backend,
            batches,
            targets: self.targets.clone(),
            name: format!("{}-{}", self.scope.operator_id, self.scope.subtask),
        })
    }
}

/// A subtask's keyed state: a keyed state backend and a [`BatchState`],
/// with where their snapshots go.
///
/// Both are restored together and snapshotted together: one
/// [`KeyedStateHandle`] lists the backend's files and the batch state's.
pub struct KeyedState {
    backend: Box<dyn KeyedStateBackend>,
    batches: BatchState,
    targets: Arc<SnapshotTargets>,
    /// Names the batch state's files (`operator-subtask`).
    name: String,
}

impl KeyedState {
    /// The backend, to read and write entries.
    pub fn backend(&mut self) -> &mut dyn KeyedStateBackend {
        self.backend.as_mut()
    }

    /// The backend, to read entries.
    pub fn backend_ref(&self) -> &dyn KeyedStateBackend {
        self.backend.as_ref()
    }

    /// The batch state.
    pub fn batches(&mut self) -> &mut BatchState {
        &mut self.batches
    }

    /// Moves batches of the earlier layout (values of the backend, see
    /// [`BackendBatches`]) into the batch state, deleting them from the
    /// backend. Namespaces present in both are joined.
    pub fn adopt_backend_batches(&mut self) -> Result<()> {
        let mut legacy = BackendBatches::default();
        let found = legacy.read_all(self.backend.as_ref())?;
        if found.is_empty() {
            return Ok(());
        }
        // Found in namespace order: each namespace's key groups are appended at once.
        let mut found = found.into_iter().peekable();
        while let Some((ns, kg, batch)) = found.next() {
            let mut parts = vec![(kg, batch)];
            while let Some((_, kg, batch)) = found.next_if(|(next, ..)| *next == ns) {
                parts.push((kg, batch));
            }
            let kgs: Vec<Vec<usize>> = parts.iter().map(|(kg, b)| vec![*kg; b.num_rows()]).collect();
            let batches: Vec<_> = parts.into_iter().map(|(_, b)| b).collect();
            self.batches.append(&ns, &batches, &kgs)?;
        }
        legacy.delete_all(self.backend.as_mut())
    }

    /// Publishes the entry count and size to `metrics` (`SHOW JOBS`): the
    /// backend's entries and the batch state's namespaces.
    pub fn report_size(&self, metrics: &crate::metrics::OperatorMetrics) {
        metrics.set_state_size(
            self.backend.len() + self.batches.len() as u64,
            self.backend.approximate_size() + self.batches.approximate_size() as u64,
        );
    }

    /// Starts the snapshot for `barrier` (call after writing every change).
    pub fn snapshot(&mut self, barrier: Barrier) -> Result<PendingSnapshot> {
        let target = self.targets.target_for(barrier)?;
        let batches = self.batches.snapshot(&target, &self.name);
        let storage = target.storage.clone();
        let backend = self.backend.snapshot(target)?;
        let Some(batches) = batches else {
            return Ok(backend);
        };
        let batches = async move {
            tokio::task::spawn_blocking(move || batches.write(&storage))
                .await
                .map_err(|e| {
                    datafusion::common::DataFusionError::Execution(format!("writing batch state: {e}"))
                })?
        };
        Ok(Box::pin(async move {
            let (handle, files) = futures::future::try_join(backend, batches).await?;
            Ok(KeyedStateHandle {
                batches: files,
                ..handle
            })
        }))
    }
}

/// What an operator subtask records at a checkpoint barrier.
#[derive(Default)]
pub struct OperatorSnapshot {
    /// Its keyed state's snapshot, if it has keyed state.
    pub keyed: Option<PendingSnapshot>,
    /// Its operator list state: entries redistributed over the subtasks on
    /// restore (e.g. pending sink commits, source split positions).
    pub operator_state: Vec<Value>,
}

impl std::fmt::Debug for OperatorSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorSnapshot")
            .field("keyed", &self.keyed.is_some())
            .field("operator_state", &self.operator_state)
            .finish()
    }
}

impl OperatorSnapshot {
    /// A snapshot with keyed state only.
    pub fn keyed(pending: PendingSnapshot) -> Self {
        OperatorSnapshot {
            keyed: Some(pending),
            operator_state: Vec::new(),
        }
    }

    /// A snapshot with operator list state only.
    pub fn list(entries: Vec<Value>) -> Self {
        OperatorSnapshot {
            keyed: None,
            operator_state: entries,
        }
    }
}

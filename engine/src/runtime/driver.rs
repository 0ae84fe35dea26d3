//! The job driver: supervises the tasks of a job, coordinates its
//! checkpoints (carrying out the decisions of the pure
//! [`CheckpointCoordinator`]), and restarts it after a failure as the
//! restart strategy allows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use datafusion::common::{DataFusionError, Result};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::build::{Attempt, AttemptSpec, acknowledging_subtasks, build_attempt};
use super::events::{Notice, TaskEvent};
use super::job::{JobShared, JobStatus};
use super::restart::RestartTracker;
use super::task::SourceControl;
use crate::checkpoint::config::{CheckpointRetention, FaultToleranceConfig};
use crate::checkpoint::coordinator::{Action, CheckpointCoordinator, CheckpointSettings};
use crate::checkpoint::metadata::{
    CheckpointMetadata, FORMAT, METADATA_FILE, OperatorState, SnapshotKind, SubtaskState, VERSION,
};
use crate::checkpoint::restore::{RestoreSource, latest_restorable};
use crate::checkpoint::stats::{CheckpointStats, CheckpointStatus};
use crate::checkpoint::storage::CheckpointStorage;
use crate::checkpoint::targets::{SHARED_DIR, SnapshotTargets, checkpoint_dir_name, checkpoint_id_of_dir};
use crate::checkpoint::{SAVEPOINT_POINTERS, savepoint_pointer_id};
use crate::graph::{JobGraph, NodeId, NodeKind};
use crate::message::{Barrier, BarrierKind, CheckpointId};
use crate::metrics::OperatorMetrics;

/// Requests from a [`super::JobHandle`] to the driver.
pub(crate) enum JobCommand {
    Savepoint {
        dir: Option<String>,
        stop: bool,
        reply: oneshot::Sender<Result<String>>,
    },
    Checkpoint {
        reply: oneshot::Sender<Result<CheckpointId>>,
    },
}

enum Reply {
    Savepoint(oneshot::Sender<Result<String>>),
    Checkpoint(oneshot::Sender<Result<CheckpointId>>),
}

impl Reply {
    fn send(self, result: Result<(CheckpointId, String)>) {
        match self {
            Reply::Savepoint(tx) => {
                let _ = tx.send(result.map(|(_, path)| path));
            }
            Reply::Checkpoint(tx) => {
                let _ = tx.send(result.map(|(id, _)| id));
            }
        }
    }
}

/// A checkpoint or savepoint being taken.
struct InFlight {
    kind: SnapshotKind,
    stop: bool,
    /// Where its `_metadata` goes (paths in it are relative to this).
    storage: CheckpointStorage,
    /// Its directory inside `storage` (`chk-7`; empty for a savepoint).
    dir: String,
    states: HashMap<(NodeId, usize), SubtaskState>,
    started: Instant,
    triggered: SystemTime,
    alignment_ms: u64,
    sources_finished: bool,
    replies: Vec<Reply>,
    metadata: Option<CheckpointMetadata>,
}

impl InFlight {
    fn location(&self) -> String {
        if self.dir.is_empty() {
            self.storage.display().to_string()
        } else {
            format!("{}/{}", self.storage.display(), self.dir)
        }
    }
}

/// Results of work the driver spawned.
enum Internal {
    MetadataWritten(CheckpointId, Result<()>),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The failpoint names of the checkpoint protocol, for crash tests. With
/// `FAILPOINTS="<name>=return"` the process aborts when it gets there
/// (debug builds only: failpoints are compiled out of release builds).
pub mod failpoints {
    /// After every subtask acknowledged, before `_metadata` is written.
    pub const BEFORE_METADATA: &str = "checkpoint-before-metadata";
    /// After `_metadata` is written, before the sinks are told to commit.
    pub const AFTER_METADATA: &str = "checkpoint-after-metadata";
    /// After the sinks were told to commit.
    pub const AFTER_NOTIFY: &str = "checkpoint-after-notify";
}

/// Aborts the process at failpoint `name` when it is configured (debug builds).
#[macro_export]
macro_rules! crash_point {
    ($name:expr) => {{
        #[cfg(debug_assertions)]
        $crate::__fail::fail_point!($name, |_| {
            eprintln!("failpoint {} hit: aborting", $name);
            std::process::abort();
        });
    }};
}

pub(crate) struct Driver {
    graph: JobGraph,
    config: FaultToleranceConfig,
    shared: Arc<JobShared>,
    targets: Arc<SnapshotTargets>,
    job_dir: Option<CheckpointStorage>,
    metrics: Vec<Vec<Arc<OperatorMetrics>>>,
    events_tx: mpsc::UnboundedSender<TaskEvent>,
    events_rx: mpsc::UnboundedReceiver<TaskEvent>,
    commands_rx: mpsc::UnboundedReceiver<JobCommand>,
    cancel_rx: watch::Receiver<bool>,
    local_root: PathBuf,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,

    coordinator: CheckpointCoordinator,
    restart: RestartTracker,
    task_index: HashMap<(NodeId, usize), usize>,
    source_subtasks: usize,
    attempt: u32,
    notices: broadcast::Sender<Notice>,
    in_flight: BTreeMap<CheckpointId, InFlight>,
    retained: BTreeMap<CheckpointId, CheckpointMetadata>,
    latest: Option<Arc<RestoreSource>>,
    finished_sources: HashSet<(NodeId, usize)>,
    /// Subtasks that ended (see [`TaskEvent::TaskEnded`]): the last
    /// barrier they took and their final state.
    ended: BTreeMap<(NodeId, usize), (Option<CheckpointId>, SubtaskState)>,
    final_checkpoint: Option<CheckpointId>,
    stopping_with_savepoint: bool,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        graph: JobGraph,
        config: FaultToleranceConfig,
        shared: Arc<JobShared>,
        targets: Arc<SnapshotTargets>,
        job_dir: Option<CheckpointStorage>,
        metrics: Vec<Vec<Arc<OperatorMetrics>>>,
        events_tx: mpsc::UnboundedSender<TaskEvent>,
        events_rx: mpsc::UnboundedReceiver<TaskEvent>,
        commands_rx: mpsc::UnboundedReceiver<JobCommand>,
        cancel_rx: watch::Receiver<bool>,
        local_root: PathBuf,
    ) -> Self {
        let subtasks = acknowledging_subtasks(&graph);
        let task_index = subtasks.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let source_subtasks = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Source { .. }))
            .map(|n| n.parallelism)
            .sum();
        let settings = coordinator_settings(&config);
        let next_id = config
            .restore
            .as_ref()
            .map(|r| r.checkpoint_id() + 1)
            .unwrap_or(1);
        let coordinator = CheckpointCoordinator::new(settings, subtasks.len(), next_id);
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let restart = RestartTracker::new(config.restart.clone());
        let latest = config.restore.clone();
        Driver {
            graph,
            config,
            shared,
            targets,
            job_dir,
            metrics,
            events_tx,
            events_rx,
            commands_rx,
            cancel_rx,
            local_root,
            internal_tx,
            internal_rx,
            coordinator,
            restart,
            task_index,
            source_subtasks,
            attempt: 0,
            notices: broadcast::channel(1).0,
            in_flight: BTreeMap::new(),
            retained: BTreeMap::new(),
            latest,
            finished_sources: HashSet::new(),
            ended: BTreeMap::new(),
            final_checkpoint: None,
            stopping_with_savepoint: false,
        }
    }

    /// Finds the checkpoints an earlier run of this job left: continues
    /// their ids, retains the complete ones (so they are discarded in turn),
    /// and deletes incomplete ones.
    async fn adopt_existing_checkpoints(&mut self) {
        let Some(job_dir) = self.job_dir.clone() else {
            return;
        };
        let Ok(dirs) = job_dir.list_dirs("").await else {
            return;
        };
        let mut max_id = self.coordinator.next_id().saturating_sub(1);
        let mut complete = Vec::new();
        for d in dirs {
            let Some(id) = checkpoint_id_of_dir(&d) else {
                continue;
            };
            max_id = max_id.max(id);
            let meta = match job_dir.get(&format!("{d}/{METADATA_FILE}")).await {
                Ok(bytes) => CheckpointMetadata::from_bytes(&bytes, &d).ok(),
                Err(_) => None,
            };
            match meta {
                Some(m) => complete.push((id, m)),
                None => {
                    tracing::info!("deleting incomplete checkpoint {}/{d}", job_dir.display());
                    let _ = job_dir.delete_dir(&d).await;
                }
            }
        }
        for f in job_dir.list(SAVEPOINT_POINTERS).await.unwrap_or_default() {
            if let Some(id) = savepoint_pointer_id(&f) {
                max_id = max_id.max(id);
            }
        }
        if let Some(restore) = self.config.restore.clone() {
            max_id = self.record_start(&job_dir, &restore, max_id).await;
        }
        if max_id + 1 > self.coordinator.next_id() {
            let settings = coordinator_settings(&self.config);
            self.coordinator = CheckpointCoordinator::new(settings, self.task_index.len(), max_id + 1);
        }
        complete.sort_by_key(|(id, _)| *id);
        let ids: Vec<CheckpointId> = complete.iter().map(|(id, _)| *id).collect();
        self.coordinator.seed_retained(&ids);
        self.retained.extend(complete);
    }

    /// A job started from a savepoint (or a checkpoint elsewhere) that is
    /// not what an automatic resume would pick in its directory — which holds
    /// newer checkpoints of an earlier run, e.g. of the run that took the
    /// savepoint and went on — records where it started under an id above
    /// them (`max_id + 1`, returned), so that a crash before its first
    /// checkpoint resumes from there, not from the earlier run's state.
    async fn record_start(
        &self,
        job_dir: &CheckpointStorage,
        restore: &RestoreSource,
        max_id: CheckpointId,
    ) -> CheckpointId {
        let newest = latest_restorable(job_dir).await.ok().flatten();
        if newest.is_some_and(|n| n.location == restore.location) {
            return max_id;
        }
        let id = max_id + 1;
        let pointer = format!("{SAVEPOINT_POINTERS}/{id}");
        match job_dir.put(&pointer, Bytes::from(restore.location.clone())).await {
            Ok(()) => id,
            Err(e) => {
                tracing::warn!(
                    "job '{}' could not record that it started from {} ({e}): a restart before its \
                     first checkpoint resumes from the newest checkpoint in {}",
                    self.graph.name,
                    restore.location,
                    job_dir.display()
                );
                max_id
            }
        }
    }

    pub(crate) async fn run(mut self, first: Attempt) {
        self.adopt_existing_checkpoints().await;
        let mut set = self.launch(first);
        let tick_every = Duration::from_millis(
            self.config
                .interval_ms
                .map(|i| (i / 4).clamp(5, 100))
                .unwrap_or(100),
        );
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let status = loop {
            // Each event may call for a fail-over, handled once below.
            let failure: Option<String> = tokio::select! {
                changed = self.cancel_rx.changed() => {
                    if changed.is_err() || *self.cancel_rx.borrow() {
                        set.abort_all();
                        break JobStatus::Cancelled;
                    }
                    None
                }
                next = set.join_next() => match next {
                    None => {
                        let stopped = *self.shared.stop_requested.lock() || self.stopping_with_savepoint;
                        break if stopped { JobStatus::Stopped } else { JobStatus::Finished };
                    }
                    Some(Ok(Ok(()))) => None,
                    Some(other) => Some(failure_reason(other)),
                },
                Some(event) = self.events_rx.recv() => self.on_event(event),
                Some(internal) = self.internal_rx.recv() => {
                    let actions = match internal {
                        Internal::MetadataWritten(id, Ok(())) => self.coordinator.on_metadata_written(id, now_ms()),
                        Internal::MetadataWritten(id, Err(e)) => {
                            self.coordinator.on_metadata_failed(id, &e.to_string(), now_ms())
                        }
                    };
                    self.execute(actions)
                }
                Some(cmd) = self.commands_rx.recv() => {
                    self.on_command(cmd);
                    None
                }
                _ = tick.tick() => {
                    // Periodic triggers (none without an interval) and timeouts.
                    let mut actions = self.coordinator.on_tick(now_ms());
                    if self.config.checkpointing()
                        && self.needs_final_checkpoint()
                        && let Some(a) = self.coordinator.trigger_now(now_ms())
                    {
                        actions.push(a);
                    }
                    self.execute(actions)
                }
            };
            if let Some(reason) = failure {
                set.abort_all();
                while set.join_next().await.is_some() {}
                match self.restart_after(&reason).await {
                    Ok(Some(new_set)) => set = new_set,
                    Ok(None) => break JobStatus::Cancelled,
                    Err(status) => break status,
                }
            }
        };
        while set.join_next().await.is_some() {}
        self.finish(&status).await;
        self.shared.status.send_replace(status);
    }

    fn needs_final_checkpoint(&self) -> bool {
        self.source_subtasks > 0
            && self.finished_sources.len() >= self.source_subtasks
            && self
                .final_checkpoint
                .is_none_or(|f| !self.in_flight.contains_key(&f))
            && !self
                .in_flight
                .values()
                .any(|f| f.kind == SnapshotKind::Checkpoint && f.sources_finished)
    }

    fn launch(&mut self, attempt: Attempt) -> JoinSet<std::result::Result<(), (String, DataFusionError)>> {
        *self.shared.source_controls.lock() = attempt.source_controls;
        self.notices = attempt.notices;
        let mut set = JoinSet::new();
        for (name, fut) in attempt.tasks {
            set.spawn(async move { fut.await.map_err(|e| (name, e)) });
        }
        set
    }

    /// After a failure: restart from the latest completed checkpoint if the
    /// strategy allows (`Ok(Some)`), `Ok(None)` if cancelled while waiting,
    /// or the final status.
    async fn restart_after(
        &mut self,
        reason: &str,
    ) -> std::result::Result<Option<JoinSet<std::result::Result<(), (String, DataFusionError)>>>, JobStatus>
    {
        let actions = self.coordinator.fail_over(self.task_index.len());
        let _ = self.execute(actions);
        self.finished_sources.clear();
        self.ended.clear();
        self.final_checkpoint = None;
        let delay = match self.restart.on_failure(now_ms()) {
            Ok(d) => d,
            Err(why) => return Err(JobStatus::Failed(format!("{reason} (not restarted: {why})"))),
        };
        tracing::warn!(
            "job '{}' failed: {reason}; restarting in {delay:?} from {}",
            self.graph.name,
            self.latest
                .as_ref()
                .map(|r| r.location.as_str())
                .unwrap_or("the beginning")
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.cancel_rx.changed() => return Ok(None),
        }
        self.attempt += 1;
        self.shared
            .restarts
            .store(self.restart.restarts(), Ordering::Relaxed);
        let attempt = build_attempt(AttemptSpec {
            graph: &self.graph,
            config: &self.config,
            restore: self.latest.as_deref(),
            attempt: self.attempt,
            targets: self.targets.clone(),
            events: self.events_tx.clone(),
            metrics: &self.metrics,
            local_dir: self.local_root.join(format!("a{}", self.attempt)),
        })
        .map_err(|e| JobStatus::Failed(format!("{reason}; restarting failed: {e}")))?;
        Ok(Some(self.launch(attempt)))
    }

    /// Handles a task's report; `Some(reason)` if the job must fail over.
    fn on_event(&mut self, event: TaskEvent) -> Option<String> {
        let actions = match event {
            TaskEvent::Ack {
                attempt,
                id,
                node,
                state,
                alignment_ms,
            } if attempt == self.attempt => {
                let &task = self.task_index.get(&(node, state.subtask))?;
                if let Some(f) = self.in_flight.get_mut(&id) {
                    f.alignment_ms = f.alignment_ms.max(alignment_ms);
                    f.states.insert((node, state.subtask), state);
                    let (acked, total) = (f.states.len(), self.task_index.len());
                    self.update_stats(id, |s| s.acknowledged = acked.min(total));
                }
                self.coordinator.on_ack(id, task)
            }
            TaskEvent::Decline {
                attempt,
                id,
                node,
                subtask,
                reason,
            } if attempt == self.attempt => {
                let task = self.task_index.get(&(node, subtask)).copied().unwrap_or(0);
                let name = &self.graph.nodes[node].name;
                self.coordinator.on_decline(
                    id,
                    task,
                    &format!("{name} ({}): {reason}", subtask + 1),
                    now_ms(),
                )
            }
            TaskEvent::SourceFinished {
                attempt,
                node,
                subtask,
            } if attempt == self.attempt => {
                self.finished_sources.insert((node, subtask));
                Vec::new()
            }
            TaskEvent::TaskEnded {
                attempt,
                after,
                states,
            } if attempt == self.attempt => {
                for (node, state) in states {
                    self.ended.insert((node, state.subtask), (after, state));
                }
                let pending: Vec<CheckpointId> = self.in_flight.keys().copied().collect();
                pending.into_iter().flat_map(|id| self.ack_ended(id)).collect()
            }
            _ => Vec::new(), // a report of an earlier attempt
        };
        self.execute(actions)
    }

    fn on_command(&mut self, cmd: JobCommand) {
        match cmd {
            JobCommand::Checkpoint { reply } => {
                if self.job_dir.is_none() {
                    let _ = reply.send(Err(DataFusionError::Configuration(
                        "no checkpoint directory: SET 'execution.checkpointing.dir'".into(),
                    )));
                    return;
                }
                if self.coordinator.is_stopping() {
                    let _ = reply.send(Err(DataFusionError::Execution(
                        "the job is stopping with a savepoint".into(),
                    )));
                    return;
                }
                match self.coordinator.trigger_now(now_ms()) {
                    Some(Action::Trigger(id)) => {
                        self.begin(
                            id,
                            SnapshotKind::Checkpoint,
                            false,
                            None,
                            Some(Reply::Checkpoint(reply)),
                        );
                        let _ = self.execute(vec![Action::Trigger(id)]);
                    }
                    _ => {
                        // At the concurrency limit: ride on the newest pending checkpoint.
                        match self
                            .in_flight
                            .values_mut()
                            .rev()
                            .find(|f| f.kind == SnapshotKind::Checkpoint)
                        {
                            Some(f) => f.replies.push(Reply::Checkpoint(reply)),
                            None => {
                                let _ = reply.send(Err(DataFusionError::Execution(
                                    "cannot trigger a checkpoint now".into(),
                                )));
                            }
                        }
                    }
                }
            }
            JobCommand::Savepoint { dir, stop, reply } => {
                let Some(base) = dir.or_else(|| self.config.savepoint_dir.clone()) else {
                    let _ = reply.send(Err(DataFusionError::Configuration(
                        "no savepoint directory: give one (STOP JOB 'id' WITH SAVEPOINT TO '/path') or \
                         SET 'execution.checkpointing.savepoint-dir'"
                            .into(),
                    )));
                    return;
                };
                let Some(Action::Trigger(id)) = self.coordinator.trigger_savepoint(now_ms(), stop) else {
                    let why = if self.coordinator.is_stopping() {
                        "the job is stopping with a savepoint"
                    } else {
                        "the job is ending"
                    };
                    let _ = reply.send(Err(DataFusionError::Execution(why.into())));
                    return;
                };
                let name = format!(
                    "savepoint-{}-{id}-{}",
                    crate::checkpoint::job_dir_name(&self.graph.name),
                    now_ms()
                );
                let storage = match CheckpointStorage::open(&base) {
                    Ok(s) => s.child(&name),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        let actions = self.coordinator.on_metadata_failed(id, "no directory", now_ms());
                        let _ = self.execute(actions);
                        return;
                    }
                };
                self.targets.register_savepoint(id, storage.clone());
                self.begin(
                    id,
                    SnapshotKind::Savepoint,
                    stop,
                    Some(storage),
                    Some(Reply::Savepoint(reply)),
                );
                let _ = self.execute(vec![Action::Trigger(id)]);
            }
        }
    }

    /// Records checkpoint `id` as in flight.
    fn begin(
        &mut self,
        id: CheckpointId,
        kind: SnapshotKind,
        stop: bool,
        savepoint_storage: Option<CheckpointStorage>,
        reply: Option<Reply>,
    ) {
        let (storage, dir) = match savepoint_storage {
            Some(s) => (s, String::new()),
            None => match &self.job_dir {
                Some(j) => (j.clone(), checkpoint_dir_name(id)),
                None => return,
            },
        };
        let sources_finished =
            self.source_subtasks > 0 && self.finished_sources.len() >= self.source_subtasks;
        if sources_finished && kind == SnapshotKind::Checkpoint {
            self.final_checkpoint = Some(id);
        }
        let f = InFlight {
            kind,
            stop,
            storage,
            dir,
            states: HashMap::new(),
            started: Instant::now(),
            triggered: SystemTime::now(),
            alignment_ms: 0,
            sources_finished,
            replies: reply.into_iter().collect(),
            metadata: None,
        };
        let mut history = self.shared.checkpoints.lock();
        history.push(CheckpointStats {
            id,
            kind,
            status: CheckpointStatus::InProgress,
            triggered: f.triggered,
            duration: None,
            state_size: 0,
            alignment: Duration::ZERO,
            acknowledged: 0,
            total: self.task_index.len(),
            location: f.location(),
        });
        if history.len() > 100 {
            history.remove(0);
        }
        drop(history);
        self.in_flight.insert(id, f);
    }

    fn update_stats(&self, id: CheckpointId, f: impl FnOnce(&mut CheckpointStats)) {
        if let Some(s) = self
            .shared
            .checkpoints
            .lock()
            .iter_mut()
            .rev()
            .find(|s| s.id == id)
        {
            f(s);
        }
    }

    /// Acknowledges snapshot `id` for every ended subtask whose last barrier
    /// was before it, with its final state. (Those that took its barrier
    /// acknowledge it themselves.)
    fn ack_ended(&mut self, id: CheckpointId) -> Vec<Action> {
        let Some(f) = self.in_flight.get_mut(&id) else {
            return Vec::new();
        };
        let mut tasks = Vec::new();
        for (key, (after, state)) in &self.ended {
            if after.is_none_or(|a| a < id) && !f.states.contains_key(key) {
                f.states.insert(*key, state.clone());
                tasks.extend(self.task_index.get(key).copied());
            }
        }
        let (acked, total) = (f.states.len(), self.task_index.len());
        self.update_stats(id, |s| s.acknowledged = acked.min(total));
        tasks
            .into_iter()
            .flat_map(|task| self.coordinator.on_ack(id, task))
            .collect()
    }

    /// Carries out the coordinator's decisions; `Some(reason)` to fail over.
    fn execute(&mut self, actions: Vec<Action>) -> Option<String> {
        let mut fail = None;
        let mut actions: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Trigger(id) => {
                    if !self.in_flight.contains_key(&id) {
                        self.begin(id, SnapshotKind::Checkpoint, false, None, None);
                    }
                    let Some(f) = self.in_flight.get(&id) else {
                        continue;
                    };
                    let kind = match (f.kind, f.stop) {
                        (SnapshotKind::Checkpoint, _) => BarrierKind::Checkpoint,
                        (SnapshotKind::Savepoint, false) => BarrierKind::Savepoint,
                        (SnapshotKind::Savepoint, true) => BarrierKind::SavepointAndStop,
                    };
                    let barrier = Barrier {
                        checkpoint_id: id,
                        kind,
                    };
                    for c in self.shared.source_controls.lock().iter() {
                        let _ = c.send(SourceControl::Barrier(barrier));
                    }
                    actions.extend(self.ack_ended(id));
                }
                Action::WriteMetadata(id) => self.write_metadata(id),
                Action::NotifyComplete(id) => self.complete(id),
                Action::Abort { id, reason } => self.abort(id, reason),
                Action::Discard(id) => self.discard(id),
                Action::FailJob(reason) => fail = Some(reason),
            }
        }
        fail
    }

    fn write_metadata(&mut self, id: CheckpointId) {
        let Some(f) = self.in_flight.get_mut(&id) else {
            return;
        };
        let mut operators = Vec::new();
        for (n, node) in self.graph.nodes.iter().enumerate() {
            let subtasks = (0..node.parallelism)
                .map(|s| f.states.remove(&(n, s)).unwrap_or_else(|| SubtaskState::empty(s)))
                .collect();
            operators.push(OperatorState {
                operator_id: node.operator_id.clone(),
                name: node.name.clone(),
                parallelism: node.parallelism,
                subtasks,
            });
        }
        let metadata = CheckpointMetadata {
            format: FORMAT.into(),
            version: VERSION,
            kind: f.kind,
            job_name: self.graph.name.clone(),
            checkpoint_id: id,
            timestamp_ms: now_ms(),
            max_parallelism: self.graph.max_parallelism,
            sources_finished: f.sources_finished,
            operators,
        };
        let size = metadata.state_size();
        f.metadata = Some(metadata.clone());
        let storage = f.storage.clone();
        let path = if f.dir.is_empty() {
            METADATA_FILE.to_string()
        } else {
            format!("{}/{METADATA_FILE}", f.dir)
        };
        let is_savepoint = f.kind == SnapshotKind::Savepoint;
        self.update_stats(id, |s| s.state_size = size);
        let pointer = is_savepoint
            .then(|| self.job_dir.clone().map(|j| (j, storage.display().to_string())))
            .flatten();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            crate::crash_point!(failpoints::BEFORE_METADATA);
            let result = async {
                let bytes = metadata.to_bytes()?;
                // A savepoint is recorded in the job's directory first, so
                // an automatic resume never goes back behind its commits.
                if let Some((job_dir, location)) = pointer {
                    job_dir
                        .put(&format!("{SAVEPOINT_POINTERS}/{id}"), Bytes::from(location))
                        .await?;
                }
                storage.put(&path, bytes).await
            }
            .await;
            if result.is_ok() {
                crate::crash_point!(failpoints::AFTER_METADATA);
            }
            let _ = tx.send(Internal::MetadataWritten(id, result));
        });
    }

    fn complete(&mut self, id: CheckpointId) {
        let _ = self.notices.send(Notice::Complete(id));
        crate::crash_point!(failpoints::AFTER_NOTIFY);
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        let duration = f.started.elapsed();
        let alignment = Duration::from_millis(f.alignment_ms);
        self.update_stats(id, |s| {
            s.status = CheckpointStatus::Completed;
            s.duration = Some(duration);
            s.alignment = alignment;
            s.acknowledged = s.total;
        });
        let location = f.location();
        if let Some(metadata) = f.metadata {
            if f.kind == SnapshotKind::Checkpoint {
                self.retained.insert(id, metadata.clone());
            } else {
                self.targets.forget_savepoint(id);
            }
            self.latest = Some(Arc::new(RestoreSource {
                metadata,
                storage: f.storage.clone(),
                location: location.clone(),
            }));
        }
        if f.stop {
            self.stopping_with_savepoint = true;
        }
        if f.kind == SnapshotKind::Checkpoint && f.sources_finished {
            let _ = self.notices.send(Notice::EndOfInput);
        }
        for r in f.replies {
            r.send(Ok((id, location.clone())));
        }
    }

    fn abort(&mut self, id: CheckpointId, reason: String) {
        let _ = self.notices.send(Notice::Aborted(id));
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        tracing::warn!("checkpoint {id} of job '{}' aborted: {reason}", self.graph.name);
        let duration = f.started.elapsed();
        self.update_stats(id, |s| {
            s.status = CheckpointStatus::Failed(reason.clone());
            s.duration = Some(duration);
        });
        if f.kind == SnapshotKind::Savepoint {
            self.targets.forget_savepoint(id);
        }
        let (storage, dir) = (f.storage.clone(), f.dir.clone());
        tokio::spawn(async move {
            let _ = storage.delete_dir(&dir).await;
        });
        for r in f.replies {
            r.send(Err(DataFusionError::Execution(format!(
                "checkpoint {id} failed: {reason}"
            ))));
        }
    }

    /// Deletes retained checkpoint `id`, and the shared files no other
    /// retained checkpoint uses (reference counting by the `_metadata`s).
    fn discard(&mut self, id: CheckpointId) {
        let Some(job_dir) = self.job_dir.clone() else {
            return;
        };
        let Some(old) = self.retained.remove(&id) else {
            let dir = checkpoint_dir_name(id);
            tokio::spawn(async move {
                let _ = job_dir.delete_dir(&dir).await;
            });
            return;
        };
        let in_use: HashSet<String> = self
            .retained
            .values()
            .chain(self.in_flight.values().filter_map(|f| f.metadata.as_ref()))
            .flat_map(|m| m.shared_files())
            .collect();
        let mut unused: Vec<String> = old
            .shared_files()
            .into_iter()
            .filter(|p| !in_use.contains(p))
            .collect();
        // Files of in-flight checkpoints not yet in a `_metadata` may reuse an
        // old file: keep what an in-flight acknowledgement lists.
        let pending: HashSet<String> = self
            .in_flight
            .values()
            .flat_map(|f| f.states.values())
            .filter_map(|s| s.keyed.as_ref())
            .flat_map(|h| h.all_files().filter(|f| f.shared).map(|f| f.path.clone()))
            .collect();
        unused.retain(|p| !pending.contains(p));
        let dir = checkpoint_dir_name(id);
        tokio::spawn(async move {
            let _ = job_dir.delete_dir(&dir).await;
            for p in unused {
                debug_assert!(p.starts_with(SHARED_DIR));
                let _ = job_dir.delete(&p).await;
            }
        });
    }

    /// The job has ended: settle pending replies, apply the retention policy,
    /// remove local working files.
    async fn finish(&mut self, status: &JobStatus) {
        for (id, f) in std::mem::take(&mut self.in_flight) {
            for r in f.replies {
                r.send(Err(DataFusionError::Execution(format!(
                    "checkpoint {id} did not complete: the job ended ({})",
                    status.name()
                ))));
            }
        }
        while let Ok(cmd) = self.commands_rx.try_recv() {
            match cmd {
                JobCommand::Savepoint { reply, .. } => {
                    let _ = reply.send(Err(DataFusionError::Execution("the job has ended".into())));
                }
                JobCommand::Checkpoint { reply } => {
                    let _ = reply.send(Err(DataFusionError::Execution("the job has ended".into())));
                }
            }
        }
        if *status == JobStatus::Cancelled
            && self.config.retention == CheckpointRetention::DeleteOnCancellation
            && let Some(job_dir) = &self.job_dir
        {
            for id in self.retained.keys() {
                let _ = job_dir.delete_dir(&checkpoint_dir_name(*id)).await;
            }
            let _ = job_dir.delete_dir(SHARED_DIR).await;
        }
        let _ = std::fs::remove_dir_all(&self.local_root);
    }
}

/// The coordinator's settings of a job: `interval_ms` 0 when periodic
/// checkpoints are off.
fn coordinator_settings(config: &FaultToleranceConfig) -> CheckpointSettings {
    CheckpointSettings {
        interval_ms: config.interval_ms.unwrap_or(0),
        ..config.settings.clone()
    }
}

fn failure_reason(
    joined: std::result::Result<std::result::Result<(), (String, DataFusionError)>, tokio::task::JoinError>,
) -> String {
    match joined {
        Ok(Ok(())) => String::new(),
        Ok(Err((_task, e))) => e.to_string(),
        Err(join_error) if join_error.is_panic() => {
            let payload = join_error.into_panic();
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("a task panicked: {msg}")
        }
        Err(_) => "a task was aborted".to_string(),
    }
}

//! The checkpoint coordinator's decisions, as a pure state machine.
//!
//! It owns no clock, no timer and no I/O: the caller feeds it events (a
//! tick, an acknowledgement, a decline, the durable write of `_metadata`)
//! with the current time in milliseconds, and carries out the [`Action`]s it
//! returns. This keeps every rule of Flink's checkpointing settings —
//! interval, timeout, min-pause, max-concurrent, tolerable failures,
//! retention — testable without a running job.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::message::CheckpointId;

/// `execution.checkpointing.*` settings, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// `execution.checkpointing.interval`: time between checkpoint triggers;
    /// 0 = no periodic checkpoints (savepoints and requested checkpoints only).
    pub interval_ms: u64,
    /// `execution.checkpointing.timeout`: a checkpoint not complete after this is aborted.
    pub timeout_ms: u64,
    /// `execution.checkpointing.min-pause`: least time between the end of one
    /// checkpoint and the start of the next.
    pub min_pause_ms: u64,
    /// `execution.checkpointing.max-concurrent-checkpoints`.
    pub max_concurrent: usize,
    /// `execution.checkpointing.tolerable-failed-checkpoints`: consecutive
    /// failures tolerated before the job fails.
    pub tolerable_failures: u32,
    /// `execution.checkpointing.num-retained`: completed checkpoints kept.
    pub num_retained: usize,
}

impl Default for CheckpointSettings {
    /// Flink's defaults (with a 10 s interval; Flink has none by default).
    fn default() -> Self {
        CheckpointSettings {
            interval_ms: 10_000,
            timeout_ms: 600_000,
            min_pause_ms: 0,
            max_concurrent: 1,
            tolerable_failures: 0,
            num_retained: 1,
        }
    }
}

/// What the coordinator asks its caller to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Inject barriers for checkpoint `id` at every source.
    Trigger(CheckpointId),
    /// Every task has acknowledged `id`: write its `_metadata` (last, atomically),
    /// then report [`CheckpointCoordinator::on_metadata_written`].
    WriteMetadata(CheckpointId),
    /// `_metadata` of `id` is durable: tell the tasks to commit (two-phase sinks).
    NotifyComplete(CheckpointId),
    /// Give up on `id` and delete what was written for it.
    Abort { id: CheckpointId, reason: String },
    /// Delete completed checkpoint `id`: it is no longer retained.
    Discard(CheckpointId),
    /// Too many consecutive failures: fail the job.
    FailJob(String),
}

#[derive(Debug, Clone)]
struct Pending {
    started_ms: u64,
    waiting_for: BTreeSet<usize>,
    /// All acknowledged; `_metadata` being written.
    writing: bool,
    /// A savepoint: never retained or discarded by weir, never subsumes
    /// checkpoints, and its failure does not count towards tolerable failures.
    savepoint: bool,
}

/// The decision logic of one job's checkpoint coordinator.
///
/// Invariants: checkpoint ids strictly increase; at most `max_concurrent`
/// checkpoints are pending; a checkpoint completes only after every task has
/// acknowledged it and its `_metadata` is written; `NotifyComplete` is issued
/// in id order and never for an aborted checkpoint.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    settings: CheckpointSettings,
    tasks: usize,
    next_id: CheckpointId,
    pending: BTreeMap<CheckpointId, Pending>,
    completed: VecDeque<CheckpointId>,
    last_trigger_ms: Option<u64>,
    last_end_ms: Option<u64>,
    consecutive_failures: u32,
    stopped: bool,
    /// A stop-with-savepoint in flight: nothing else is triggered until it
    /// completes (then the job ends) or fails (then triggering resumes), as
    /// Flink suspends its checkpoint scheduler for it. A barrier behind it
    /// would reach no subtask: they end at the savepoint, and a snapshot
    /// acknowledged for them once they ended would hold none of the state
    /// their operators stopped with.
    stopping_with: Option<CheckpointId>,
}

impl CheckpointCoordinator {
    /// A coordinator for a job of `tasks` acknowledging tasks, whose next
    /// checkpoint id is `next_id` (one past the restored checkpoint's).
    pub fn new(settings: CheckpointSettings, tasks: usize, next_id: CheckpointId) -> Self {
        CheckpointCoordinator {
            settings,
            tasks,
            next_id,
            pending: BTreeMap::new(),
            completed: VecDeque::new(),
            last_trigger_ms: None,
            last_end_ms: None,
            consecutive_failures: 0,
            stopped: false,
            stopping_with: None,
        }
    }

    /// Ids of pending checkpoints.
    pub fn pending(&self) -> Vec<CheckpointId> {
        self.pending.keys().copied().collect()
    }

    /// Ids of retained completed checkpoints, oldest first.
    pub fn retained(&self) -> Vec<CheckpointId> {
        self.completed.iter().copied().collect()
    }

    /// Time passes: aborts timed-out checkpoints, triggers one if due.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let timed_out: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.writing && now_ms.saturating_sub(p.started_ms) >= self.settings.timeout_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in timed_out {
            self.fail(
                id,
                format!("checkpoint {id} expired before completing"),
                now_ms,
                &mut actions,
            );
        }
        if self.stopped
            || self.stopping_with.is_some()
            || self.pending_checkpoints() >= self.settings.max_concurrent
        {
            return actions;
        }
        let due = self.settings.interval_ms > 0
            && self
                .last_trigger_ms
                .is_none_or(|t| now_ms >= t + self.settings.interval_ms);
        let paused = self
            .last_end_ms
            .is_some_and(|t| now_ms < t + self.settings.min_pause_ms)
            || (self.settings.min_pause_ms > 0 && self.pending_checkpoints() > 0);
        if due && !paused {
            actions.push(self.start(now_ms, false));
        }
        actions
    }

    /// Triggers a checkpoint now, regardless of the interval (a savepoint, or
    /// a user request). Still respects `max_concurrent`: `None` if at the
    /// limit, or while a stop-with-savepoint is in flight.
    pub fn trigger_now(&mut self, now_ms: u64) -> Option<Action> {
        (self.stopping_with.is_none() && self.pending_checkpoints() < self.settings.max_concurrent)
            .then(|| self.start(now_ms, false))
    }

    /// Triggers a savepoint now: not limited by `max_concurrent` or the
    /// interval. With `stop`, the job ends once it completes, and nothing is
    /// triggered while it is in flight. `None` once the coordinator is
    /// stopped or stopping with a savepoint.
    pub fn trigger_savepoint(&mut self, now_ms: u64, stop: bool) -> Option<Action> {
        if self.stopped || self.stopping_with.is_some() {
            return None;
        }
        if stop {
            self.stopping_with = Some(self.next_id);
        }
        Some(self.start(now_ms, true))
    }

    /// Whether a stop-with-savepoint is in flight.
    pub fn is_stopping(&self) -> bool {
        self.stopping_with.is_some()
    }

    /// Whether pending `id` is a savepoint.
    pub fn is_savepoint(&self, id: CheckpointId) -> bool {
        self.pending.get(&id).is_some_and(|p| p.savepoint)
    }

    /// The id the next checkpoint will get.
    pub fn next_id(&self) -> CheckpointId {
        self.next_id
    }

    /// Declares `ids` (oldest first) as already completed and retained, e.g.
    /// the checkpoint a job was restored from: they are discarded in turn as
    /// newer ones complete.
    pub fn seed_retained(&mut self, ids: &[CheckpointId]) {
        self.completed.extend(ids.iter().copied());
    }

    /// The job's tasks failed and will be restarted with `tasks` tasks:
    /// every pending checkpoint is aborted (without counting as a
    /// checkpoint failure); triggering resumes afterwards.
    pub fn fail_over(&mut self, tasks: usize) -> Vec<Action> {
        self.tasks = tasks;
        let ids: Vec<CheckpointId> = self.pending.keys().copied().collect();
        self.pending.clear();
        self.stopping_with = None;
        self.last_trigger_ms = None;
        ids.into_iter()
            .map(|id| Action::Abort {
                id,
                reason: "the job is restarting".into(),
            })
            .collect()
    }

    fn pending_checkpoints(&self) -> usize {
        self.pending.values().filter(|p| !p.savepoint).count()
    }

    fn start(&mut self, now_ms: u64, savepoint: bool) -> Action {
        let id = self.next_id;
        self.next_id += 1;
        if !savepoint {
            self.last_trigger_ms = Some(now_ms);
        }
        self.pending.insert(
            id,
            Pending {
                started_ms: now_ms,
                waiting_for: (0..self.tasks).collect(),
                writing: false,
                savepoint,
            },
        );
        Action::Trigger(id)
    }

    /// Task `task` has snapshotted its state for `id`.
    pub fn on_ack(&mut self, id: CheckpointId, task: usize) -> Vec<Action> {
        let Some(p) = self.pending.get_mut(&id) else {
            return Vec::new(); // late ack of an aborted checkpoint
        };
        p.waiting_for.remove(&task);
        if p.waiting_for.is_empty() && !p.writing {
            p.writing = true;
            return vec![Action::WriteMetadata(id)];
        }
        Vec::new()
    }

    /// Task `task` could not snapshot `id`.
    pub fn on_decline(&mut self, id: CheckpointId, task: usize, reason: &str, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.pending.contains_key(&id) {
            self.fail(
                id,
                format!("task {task} declined checkpoint {id}: {reason}"),
                now_ms,
                &mut actions,
            );
        }
        actions
    }

    /// Writing `_metadata` of `id` failed.
    pub fn on_metadata_failed(&mut self, id: CheckpointId, reason: &str, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.pending.contains_key(&id) {
            self.fail(
                id,
                format!("writing checkpoint {id} failed: {reason}"),
                now_ms,
                &mut actions,
            );
        }
        actions
    }

    /// `_metadata` of `id` is durable: `id` is complete. Older pending
    /// checkpoints are subsumed (aborted), as in Flink.
    pub fn on_metadata_written(&mut self, id: CheckpointId, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(p) = self.pending.remove(&id) else {
            return actions;
        };
        if p.savepoint {
            if self.stopping_with == Some(id) {
                self.stopping_with = None;
                self.stopped = true;
            }
            actions.push(Action::NotifyComplete(id));
            return actions;
        }
        let older: Vec<CheckpointId> = self
            .pending
            .range(..id)
            .filter(|(_, p)| !p.savepoint)
            .map(|(k, _)| *k)
            .collect();
        for old in older {
            self.pending.remove(&old);
            actions.push(Action::Abort {
                id: old,
                reason: format!("subsumed by checkpoint {id}"),
            });
        }
        self.consecutive_failures = 0;
        self.last_end_ms = Some(now_ms);
        actions.push(Action::NotifyComplete(id));
        self.completed.push_back(id);
        while self.completed.len() > self.settings.num_retained.max(1) {
            let old = self.completed.pop_front().expect("non-empty");
            actions.push(Action::Discard(old));
        }
        actions
    }

    /// The job is stopping: trigger nothing more; abort what is pending.
    pub fn stop(&mut self) -> Vec<Action> {
        self.stopped = true;
        let ids: Vec<CheckpointId> = self.pending.keys().copied().collect();
        self.pending.clear();
        ids.into_iter()
            .map(|id| Action::Abort {
                id,
                reason: "the job is stopping".into(),
            })
            .collect()
    }

    fn fail(&mut self, id: CheckpointId, reason: String, now_ms: u64, actions: &mut Vec<Action>) {
        let savepoint = self.pending.remove(&id).is_some_and(|p| p.savepoint);
        if savepoint {
            if self.stopping_with == Some(id) {
                // The job goes on running: so do its checkpoints.
                self.stopping_with = None;
            }
            actions.push(Action::Abort { id, reason });
            return;
        }
        self.last_end_ms = Some(now_ms);
        self.consecutive_failures += 1;
        actions.push(Action::Abort {
            id,
            reason: reason.clone(),
        });
        if self.consecutive_failures > self.settings.tolerable_failures {
            self.stopped = true;
            actions.push(Action::FailJob(format!(
                "{} consecutive checkpoint failures exceed execution.checkpointing.tolerable-failed-checkpoints \
                 ({}); last: {reason}",
                self.consecutive_failures, self.settings.tolerable_failures
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CheckpointSettings {
        CheckpointSettings {
            interval_ms: 1_000,
            timeout_ms: 5_000,
            tolerable_failures: 1,
            ..Default::default()
        }
    }

    fn complete(c: &mut CheckpointCoordinator, id: CheckpointId, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        for t in 0..2 {
            out.extend(c.on_ack(id, t));
        }
        assert_eq!(out, vec![Action::WriteMetadata(id)]);
        c.on_metadata_written(id, now)
    }

    #[test]
    fn triggers_every_interval_and_completes_after_all_acks_and_metadata() {
        let mut c = CheckpointCoordinator::new(settings(), 2, 1);
        assert_eq!(c.on_tick(0), vec![Action::Trigger(1)]);
        assert_eq!(c.on_tick(500), vec![], "one at a time by default");
        assert_eq!(c.on_ack(1, 0), vec![]);
        assert_eq!(c.on_ack(1, 0), vec![], "duplicate acks are harmless");
        assert_eq!(c.on_ack(1, 1), vec![Action::WriteMetadata(1)]);
        assert_eq!(
            c.on_tick(900),
            vec![],
            "still writing _metadata: not complete, at the limit"
        );
        assert_eq!(c.on_metadata_written(1, 950), vec![Action::NotifyComplete(1)]);
        assert_eq!(c.on_tick(999), vec![], "interval counts from the last trigger");
        assert_eq!(c.on_tick(1_000), vec![Action::Trigger(2)]);
    }

    #[test]
    fn min_pause_counts_from_the_end_of_the_previous_checkpoint() {
        let mut c = CheckpointCoordinator::new(
            CheckpointSettings {
                min_pause_ms: 800,
                ..settings()
            },
            2,
            1,
        );
        c.on_tick(0);
        complete(&mut c, 1, 900);
        assert_eq!(c.on_tick(1_000), vec![], "interval due but min-pause not over");
        assert_eq!(c.on_tick(1_700), vec![Action::Trigger(2)]);
    }

    #[test]
    fn concurrent_checkpoints_and_subsumption() {
        let mut c = CheckpointCoordinator::new(
            CheckpointSettings {
                max_concurrent: 2,
                ..settings()
            },
            2,
            1,
        );
        assert_eq!(c.on_tick(0), vec![Action::Trigger(1)]);
        assert_eq!(c.on_tick(1_000), vec![Action::Trigger(2)]);
        assert_eq!(c.on_tick(2_000), vec![], "max 2 pending");
        let actions = complete(&mut c, 2, 2_100);
        assert_eq!(
            actions,
            vec![
                Action::Abort {
                    id: 1,
                    reason: "subsumed by checkpoint 2".into()
                },
                Action::NotifyComplete(2)
            ]
        );
        assert_eq!(
            c.on_ack(1, 0),
            vec![],
            "a late ack of a subsumed checkpoint is ignored"
        );
        assert_eq!(
            c.on_metadata_written(1, 2_200),
            vec![],
            "never completes after being subsumed"
        );
    }

    #[test]
    fn timeouts_and_declines_count_towards_tolerable_failures() {
        let mut c = CheckpointCoordinator::new(settings(), 2, 1);
        c.on_tick(0);
        let a = c.on_tick(5_000);
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(matches!(&a[0], Action::Abort { id: 1, reason } if reason.contains("expired")));
        assert_eq!(
            a[1],
            Action::Trigger(2),
            "one failure is tolerated; the next is triggered"
        );
        let d = c.on_decline(2, 1, "disk full", 5_100);
        assert!(matches!(&d[0], Action::Abort { id: 2, .. }));
        assert!(
            matches!(&d[1], Action::FailJob(m) if m.contains("2 consecutive") && m.contains("disk full"))
        );
        assert_eq!(c.on_tick(10_000), vec![], "a failed job triggers nothing");
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut c = CheckpointCoordinator::new(settings(), 2, 1);
        c.on_tick(0);
        c.on_metadata_failed(1, "io", 10);
        assert_eq!(c.on_tick(1_000), vec![Action::Trigger(2)]);
        complete(&mut c, 2, 1_100);
        c.on_tick(2_000);
        let a = c.on_decline(3, 0, "x", 2_100);
        assert!(!a.iter().any(|x| matches!(x, Action::FailJob(_))), "{a:?}");
    }

    #[test]
    fn retention_discards_the_oldest_beyond_num_retained() {
        let mut c = CheckpointCoordinator::new(
            CheckpointSettings {
                num_retained: 2,
                ..settings()
            },
            2,
            7,
        );
        let mut discarded = Vec::new();
        for (i, now) in [0u64, 1_000, 2_000, 3_000].into_iter().enumerate() {
            assert_eq!(c.on_tick(now), vec![Action::Trigger(7 + i as u64)]);
            for a in complete(&mut c, 7 + i as u64, now + 10) {
                if let Action::Discard(id) = a {
                    discarded.push(id);
                }
            }
        }
        assert_eq!(discarded, vec![7, 8]);
        assert_eq!(c.retained(), vec![9, 10]);
    }

    #[test]
    fn stop_aborts_pending_and_triggers_nothing_more() {
        let mut c = CheckpointCoordinator::new(settings(), 2, 1);
        c.on_tick(0);
        assert_eq!(
            c.stop(),
            vec![Action::Abort {
                id: 1,
                reason: "the job is stopping".into()
            }]
        );
        assert_eq!(c.on_tick(10_000), vec![]);
        assert_eq!(
            c.trigger_now(10_000),
            Some(Action::Trigger(2)),
            "a final savepoint may still be taken"
        );
    }

    #[test]
    fn savepoints_bypass_limits_are_not_retained_and_do_not_count_as_failures() {
        let mut c = CheckpointCoordinator::new(settings(), 1, 1);
        assert_eq!(c.on_tick(0), vec![Action::Trigger(1)]);
        assert_eq!(
            c.trigger_savepoint(10, false),
            Some(Action::Trigger(2)),
            "beyond max_concurrent"
        );
        assert!(c.is_savepoint(2));
        assert_eq!(c.on_ack(2, 0), vec![Action::WriteMetadata(2)]);
        assert_eq!(c.on_metadata_written(2, 20), vec![Action::NotifyComplete(2)]);
        assert_eq!(c.pending(), vec![1], "a savepoint does not subsume checkpoints");
        assert_eq!(c.retained(), Vec::<CheckpointId>::new());
        assert_eq!(c.trigger_savepoint(30, false), Some(Action::Trigger(3)));
        for t in [6_000, 7_000] {
            let actions = c.on_tick(t);
            assert!(
                !actions.iter().any(|a| matches!(a, Action::FailJob(_))),
                "{actions:?}"
            );
        }
        assert!(c.fail_over(2).is_empty() || c.pending().is_empty());
        assert!(c.pending().is_empty());
    }

    #[test]
    fn a_stop_with_savepoint_suspends_triggers_until_it_fails_and_ends_them_when_it_completes() {
        let mut c = CheckpointCoordinator::new(settings(), 1, 1);
        assert_eq!(c.on_tick(0), vec![Action::Trigger(1)]);
        assert_eq!(c.trigger_savepoint(10, true), Some(Action::Trigger(2)));
        assert!(c.is_stopping());
        assert_eq!(c.on_ack(1, 0), vec![Action::WriteMetadata(1)]);
        assert_eq!(
            c.on_metadata_written(1, 20),
            vec![Action::NotifyComplete(1)],
            "a checkpoint triggered before it still completes"
        );
        assert_eq!(c.on_tick(5_000), vec![], "no periodic checkpoint while stopping");
        assert_eq!(c.trigger_now(5_000), None, "nor a requested one");
        assert_eq!(c.trigger_savepoint(5_000, false), None, "nor another savepoint");
        let declined = c.on_decline(2, 0, "sink unavailable", 5_100);
        assert!(
            matches!(declined.as_slice(), [Action::Abort { id: 2, .. }]),
            "{declined:?}"
        );
        assert!(
            !c.is_stopping(),
            "a failed stop-with-savepoint leaves the job running"
        );
        assert_eq!(c.on_tick(6_000), vec![Action::Trigger(3)], "triggering resumes");
        assert_eq!(c.on_ack(3, 0), vec![Action::WriteMetadata(3)]);
        assert_eq!(c.on_metadata_written(3, 6_050)[0], Action::NotifyComplete(3));

        assert_eq!(c.trigger_savepoint(6_100, true), Some(Action::Trigger(4)));
        assert_eq!(c.on_ack(4, 0), vec![Action::WriteMetadata(4)]);
        assert_eq!(c.on_metadata_written(4, 6_200), vec![Action::NotifyComplete(4)]);
        assert!(!c.is_stopping());
        assert_eq!(
            c.on_tick(20_000),
            vec![],
            "the job ends: nothing more is triggered"
        );
        assert_eq!(c.trigger_savepoint(20_000, false), None);
    }

    #[test]
    fn a_restart_abandons_a_stop_with_savepoint() {
        let mut c = CheckpointCoordinator::new(settings(), 1, 1);
        assert_eq!(c.trigger_savepoint(0, true), Some(Action::Trigger(1)));
        assert_eq!(c.fail_over(1).len(), 1);
        assert!(!c.is_stopping());
        assert_eq!(c.on_tick(100), vec![Action::Trigger(2)]);
    }

    #[test]
    fn no_interval_triggers_nothing_but_still_expires_savepoints() {
        let mut c = CheckpointCoordinator::new(
            CheckpointSettings {
                interval_ms: 0,
                timeout_ms: 1_000,
                ..Default::default()
            },
            1,
            1,
        );
        assert_eq!(c.on_tick(0), vec![]);
        assert_eq!(c.on_tick(5_000_000), vec![], "no phantom checkpoint to time out");
        assert_eq!(c.trigger_savepoint(10, false), Some(Action::Trigger(1)));
        assert!(matches!(
            c.on_tick(2_000).as_slice(),
            [Action::Abort { id: 1, .. }]
        ));
    }
}

//! A harness for stateful operators in tests: feed steps, snapshot, restore
//! (at the same or another parallelism) and compare outputs.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::display::array_value_to_string;
use weir_engine::checkpoint::storage::CheckpointStorage;
use weir_engine::checkpoint::targets::SnapshotTargets;
use weir_engine::key_group::{DEFAULT_MAX_PARALLELISM, KeyGroupRange, key_groups_of, subtask_of_key_group};
use weir_engine::message::{Barrier, BarrierKind, EventTime, Message};
use weir_engine::metrics::OperatorMetrics;
use weir_engine::operator::{Operator, OperatorContext, Output};
use weir_engine::state::{
    EntryVisitor, HashMapBackendFactory, KeyVisitor, KeyedStateBackend, KeyedStateHandle, PendingSnapshot,
    SnapshotTarget, StateBackendFactory, StateFile, StateInit, StateScope,
};

pub const MAX_PAR: usize = DEFAULT_MAX_PARALLELISM;

/// What the test feeds an operator.
#[derive(Clone)]
pub enum Step {
    Batch(usize, RecordBatch),
    Watermark(EventTime),
}

/// Where the snapshots of a test go, and the state to start operators from.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub storage: CheckpointStorage,
    pub factory: Arc<dyn StateBackendFactory>,
    /// Whether snapshots are incremental checkpoints (files in `shared/`).
    pub incremental: bool,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_factory(Arc::new(HashMapBackendFactory))
    }

    /// A harness whose operators keep their state in `factory`'s backends.
    pub fn with_factory(factory: Arc<dyn StateBackendFactory>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(dir.path().join("checkpoints").to_str().unwrap())
            .unwrap()
            .child("job");
        Harness {
            dir,
            storage,
            factory,
            incremental: false,
        }
    }

    /// A harness whose snapshots are incremental checkpoints.
    pub fn incremental() -> Self {
        Harness {
            incremental: true,
            ..Self::new()
        }
    }

    pub fn ctx(&self, subtask: usize, parallelism: usize, ttl: Option<Duration>) -> OperatorContext {
        OperatorContext {
            job_name: "job".into(),
            operator_id: "op".into(),
            operator_name: "op".into(),
            subtask,
            parallelism,
            max_parallelism: MAX_PAR,
            key_groups: KeyGroupRange::for_subtask(subtask, parallelism, MAX_PAR),
            metrics: Arc::new(OperatorMetrics::default()),
            checkpointing: true,
            state_ttl: ttl,
        }
    }

    pub fn init(&self, ctx: &OperatorContext, restore: Option<&KeyedStateHandle>) -> StateInit {
        let scope = StateScope {
            job_name: ctx.job_name.clone(),
            operator_id: ctx.operator_id.clone(),
            subtask: ctx.subtask,
            key_groups: ctx.key_groups,
            max_parallelism: MAX_PAR,
            local_dir: self
                .dir
                .path()
                .join(format!("local-{}-{}", ctx.subtask, ctx.parallelism)),
        };
        let targets = Arc::new(SnapshotTargets::new(Some(self.storage.clone()), self.incremental));
        match restore {
            None => StateInit::new(scope, self.factory.clone(), targets, vec![], None, None),
            Some(h) => StateInit::new(
                scope,
                self.factory.clone(),
                targets,
                vec![(h.clone(), self.storage.clone())],
                Some(vec![]),
                Some(1),
            ),
        }
    }

    /// A started operator (state initialized, opened).
    pub async fn start(
        &self,
        mut op: Box<dyn Operator>,
        subtask: usize,
        parallelism: usize,
        ttl: Option<Duration>,
        restore: Option<&KeyedStateHandle>,
    ) -> Box<dyn Operator> {
        let ctx = self.ctx(subtask, parallelism, ttl);
        op.initialize_state(&ctx, self.init(&ctx, restore)).await.unwrap();
        op.open(&ctx).await.unwrap();
        op
    }
}

/// Feeds `steps` to `op`, appending the batches it emits to `out`.
pub async fn feed(op: &mut dyn Operator, steps: &[Step], out: &mut Vec<RecordBatch>) {
    for step in steps {
        let mut o = Output::default();
        match step {
            Step::Batch(input, b) => op.process_batch(*input, b.clone(), &mut o).await.unwrap(),
            Step::Watermark(w) => op.process_watermark(*w, &mut o).await.unwrap(),
        }
        collect(o, out);
    }
}

pub fn collect(o: Output, out: &mut Vec<RecordBatch>) {
    for m in o.into_messages() {
        if let Message::Batch(b) = m {
            out.push(b);
        }
    }
}

/// Feeds the final watermark and ends the input.
pub async fn finish(op: &mut dyn Operator, out: &mut Vec<RecordBatch>) {
    feed(op, &[Step::Watermark(EventTime::MAX)], out).await;
    let mut o = Output::default();
    op.finish(&mut o).await.unwrap();
    collect(o, out);
}

/// The batch-state files of `handle` in the shared directory (incremental
/// checkpoints).
pub fn shared_batch_files(handle: &KeyedStateHandle) -> Vec<StateFile> {
    handle.batches.iter().filter(|f| f.shared).cloned().collect()
}

pub async fn snapshot(op: &mut dyn Operator, checkpoint_id: u64) -> KeyedStateHandle {
    let mut o = Output::default();
    let snap = op
        .snapshot_state(
            Barrier {
                checkpoint_id,
                kind: BarrierKind::Checkpoint,
            },
            &mut o,
        )
        .await
        .unwrap();
    assert!(o.is_empty(), "nothing is emitted at a barrier");
    snap.keyed.expect("keyed state").await.unwrap()
}

/// Every row of `batches`, as text, in order.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, r).unwrap())
                .collect();
            out.push(cells.join(","));
        }
    }
    out
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The last watermark among `steps`.
pub fn last_watermark(steps: &[Step]) -> Vec<Step> {
    steps
        .iter()
        .rev()
        .find(|s| matches!(s, Step::Watermark(_)))
        .cloned()
        .into_iter()
        .collect()
}

/// Runs `steps` uninterrupted, and again with snapshots after
/// `steps[..cuts[i]]` (each continuing on the same instance), the last one
/// restored into a new instance that runs the rest. Returns both outputs.
pub async fn interrupted_and_not(
    make: impl Fn() -> Box<dyn Operator>,
    steps: &[Step],
    cuts: &[usize],
    ttl: Option<Duration>,
) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let h = Harness::new();
    let mut whole = Vec::new();
    let mut op = h.start(make(), 0, 1, ttl, None).await;
    feed(op.as_mut(), steps, &mut whole).await;
    finish(op.as_mut(), &mut whole).await;

    let mut parts = Vec::new();
    let mut op = h.start(make(), 0, 1, ttl, None).await;
    let mut done = 0;
    let mut handle = None;
    for (i, &cut) in cuts.iter().enumerate() {
        feed(op.as_mut(), &steps[done..cut], &mut parts).await;
        done = cut;
        handle = Some(snapshot(op.as_mut(), i as u64 + 1).await);
    }
    // What the first instance does after the last snapshot is lost (a crash).
    feed(op.as_mut(), &steps[done..], &mut Vec::new()).await;
    drop(op);
    let mut op = h.start(make(), 0, 1, ttl, handle.as_ref()).await;
    // The restored instance sees the watermark again before new rows.
    feed(op.as_mut(), &last_watermark(&steps[..done]), &mut parts).await;
    feed(op.as_mut(), &steps[done..], &mut parts).await;
    finish(op.as_mut(), &mut parts).await;
    (whole, parts)
}

/// Splits `batch` by the subtask (of `parallelism`) its `k` column routes to.
pub fn route(batch: &RecordBatch, key: &str, parallelism: usize) -> Vec<RecordBatch> {
    let k = batch.column(batch.schema().index_of(key).unwrap()).clone();
    let kgs = key_groups_of(&[k], batch.num_rows(), MAX_PAR).unwrap();
    (0..parallelism)
        .map(|s| {
            let mask: arrow::array::BooleanArray = kgs
                .iter()
                .map(|kg| Some(subtask_of_key_group(*kg, parallelism, MAX_PAR) == s))
                .collect();
            arrow::compute::filter_record_batch(batch, &mask).unwrap()
        })
        .collect()
}

/// Snapshots at parallelism 1 after `steps[..cuts[i]]` (each continuing on
/// the same instance), restores the last into `parallelism` subtasks, routes
/// the rest of the input by key group; returns the uninterrupted output and
/// the union of the others.
pub async fn rescaled(
    make: impl Fn() -> Box<dyn Operator>,
    steps: &[Step],
    cuts: &[usize],
    key: &str,
    parallelism: usize,
) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    rescaled_with_ttl(make, steps, cuts, key, parallelism, None).await
}

/// [`rescaled`], with state TTL `ttl`.
pub async fn rescaled_with_ttl(
    make: impl Fn() -> Box<dyn Operator>,
    steps: &[Step],
    cuts: &[usize],
    key: &str,
    parallelism: usize,
    ttl: Option<Duration>,
) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let h = Harness::new();
    let mut whole = Vec::new();
    let mut op = h.start(make(), 0, 1, ttl, None).await;
    feed(op.as_mut(), steps, &mut whole).await;
    finish(op.as_mut(), &mut whole).await;

    let mut parts = Vec::new();
    let mut op = h.start(make(), 0, 1, ttl, None).await;
    let (mut cut, mut handle) = (0, None);
    for (i, &next) in cuts.iter().enumerate() {
        feed(op.as_mut(), &steps[cut..next], &mut parts).await;
        cut = next;
        handle = Some(snapshot(op.as_mut(), i as u64 + 1).await);
    }
    let handle = handle.expect("at least one cut");
    drop(op);
    let mut restored = Vec::new();
    for s in 0..parallelism {
        let mut op = h.start(make(), s, parallelism, ttl, Some(&handle)).await;
        feed(op.as_mut(), &last_watermark(&steps[..cut]), &mut parts).await;
        restored.push(op);
    }
    for step in &steps[cut..] {
        match step {
            Step::Batch(input, b) => {
                for (s, part) in route(b, key, parallelism).into_iter().enumerate() {
                    if part.num_rows() > 0 {
                        feed(restored[s].as_mut(), &[Step::Batch(*input, part)], &mut parts).await;
                    }
                }
            }
            w => {
                for op in &mut restored {
                    feed(op.as_mut(), std::slice::from_ref(w), &mut parts).await;
                }
            }
        }
    }
    for op in &mut restored {
        finish(op.as_mut(), &mut parts).await;
    }
    (whole, parts)
}

/// Writes to keyed state, counted by a [`CountingBackendFactory`].
#[derive(Debug, Default)]
pub struct WriteCounts {
    pub puts: AtomicUsize,
    pub put_bytes: AtomicUsize,
    pub deletes: AtomicUsize,
}

impl WriteCounts {
    /// `(puts, bytes put, deletes)` since the last call.
    pub fn take(&self) -> (usize, usize, usize) {
        (
            self.puts.swap(0, Ordering::Relaxed),
            self.put_bytes.swap(0, Ordering::Relaxed),
            self.deletes.swap(0, Ordering::Relaxed),
        )
    }
}

/// Hashmap backends whose writes are counted (all of them in one [`WriteCounts`]).
#[derive(Debug, Default)]
pub struct CountingBackendFactory {
    pub counts: Arc<WriteCounts>,
}

#[async_trait::async_trait]
impl StateBackendFactory for CountingBackendFactory {
    fn name(&self) -> &'static str {
        "hashmap"
    }

    async fn create(
        &self,
        scope: &StateScope,
        restore: &[(KeyedStateHandle, CheckpointStorage)],
    ) -> datafusion::common::Result<Box<dyn KeyedStateBackend>> {
        Ok(Box::new(CountingBackend {
            inner: HashMapBackendFactory.create(scope, restore).await?,
            counts: self.counts.clone(),
        }))
    }
}

struct CountingBackend {
    inner: Box<dyn KeyedStateBackend>,
    counts: Arc<WriteCounts>,
}

impl CountingBackend {
    fn count_put(&self, value: &[u8]) {
        self.counts.puts.fetch_add(1, Ordering::Relaxed);
        self.counts.put_bytes.fetch_add(value.len(), Ordering::Relaxed);
    }
}

type R<T> = datafusion::common::Result<T>;

impl KeyedStateBackend for CountingBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn key_groups(&self) -> KeyGroupRange {
        self.inner.key_groups()
    }
    fn holds_state_in_memory(&self) -> bool {
        self.inner.holds_state_in_memory()
    }
    fn get(&self, key_group: usize, key: &[u8]) -> R<Option<Vec<u8>>> {
        self.inner.get(key_group, key)
    }
    fn put(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> R<()> {
        self.count_put(value);
        self.inner.put(key_group, key, value)
    }
    fn put_known(&mut self, key_group: usize, key: &[u8], value: &[u8], previous: Option<usize>) -> R<()> {
        self.count_put(value);
        self.inner.put_known(key_group, key, value, previous)
    }
    fn put_if_absent(&mut self, key_group: usize, key: &[u8], value: &[u8]) -> R<Option<Vec<u8>>> {
        self.count_put(value);
        self.inner.put_if_absent(key_group, key, value)
    }
    fn delete(&mut self, key_group: usize, key: &[u8]) -> R<()> {
        self.counts.deletes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key_group, key)
    }
    fn delete_known(&mut self, key_group: usize, key: &[u8], previous: usize) -> R<()> {
        self.counts.deletes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_known(key_group, key, previous)
    }
    fn scan_prefix(&self, prefix: &[u8], f: &mut EntryVisitor<'_>) -> R<()> {
        self.inner.scan_prefix(prefix, f)
    }
    fn scan_key_group_prefix(&self, key_group: usize, prefix: &[u8], f: &mut KeyVisitor<'_>) -> R<()> {
        self.inner.scan_key_group_prefix(key_group, prefix, f)
    }
    fn scan_range(&self, start: &[u8], end: &[u8], f: &mut EntryVisitor<'_>) -> R<()> {
        self.inner.scan_range(start, end, f)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn approximate_size(&self) -> u64 {
        self.inner.approximate_size()
    }
    fn snapshot(&mut self, target: SnapshotTarget) -> R<PendingSnapshot> {
        self.inner.snapshot(target)
    }
}

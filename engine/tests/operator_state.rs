//! Checkpoint and restore of the stateful operators: a run interrupted by a
//! snapshot and continued by a new instance restored from it (at the same or
//! another parallelism) produces what an uninterrupted run produces.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Int8Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::array_value_to_string;
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{cast, col};
use weir_engine::changelog::OP_COLUMN;
use weir_engine::checkpoint::storage::CheckpointStorage;
use weir_engine::checkpoint::targets::SnapshotTargets;
use weir_engine::key_group::{DEFAULT_MAX_PARALLELISM, KeyGroupRange, key_groups_of, subtask_of_key_group};
use weir_engine::message::{Barrier, BarrierKind, EventTime, Message};
use weir_engine::metrics::OperatorMetrics;
use weir_engine::operator::{Operator, OperatorContext, Output};
use weir_engine::operators::aggregates::AggregateSpec;
use weir_engine::operators::session_window::{SessionAggregate, SessionAggregateConfig};
use weir_engine::operators::updating_aggregate::{UpdatingAggregate, UpdatingAggregateConfig};
use weir_engine::operators::window_aggregate::GroupColumn;
use weir_engine::operators::window_join::{WindowJoin, WindowJoinConfig, WindowJoinType};
use weir_engine::source::{SourceEvent, SourceSpec};
use weir_engine::state::{HashMapBackendFactory, KeyedStateHandle, StateInit, StateScope};
use weir_engine::values::ValuesSpec;

const MAX_PAR: usize = DEFAULT_MAX_PARALLELISM;
const SEC: i64 = 1_000_000_000;

/// What the test feeds an operator.
#[derive(Clone)]
enum Step {
    Batch(usize, RecordBatch),
    Watermark(EventTime),
}

/// Where the snapshots of a test go, and the state to start operators from.
struct Harness {
    dir: tempfile::TempDir,
    storage: CheckpointStorage,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(dir.path().join("checkpoints").to_str().unwrap())
            .unwrap()
            .child("job");
        Harness { dir, storage }
    }

    fn ctx(&self, subtask: usize, parallelism: usize, ttl: Option<Duration>) -> OperatorContext {
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

    fn init(&self, ctx: &OperatorContext, restore: Option<&KeyedStateHandle>) -> StateInit {
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
        let targets = Arc::new(SnapshotTargets::new(Some(self.storage.clone()), false));
        match restore {
            None => StateInit::new(
                scope,
                Arc::new(HashMapBackendFactory),
                targets,
                vec![],
                None,
                None,
            ),
            Some(h) => StateInit::new(
                scope,
                Arc::new(HashMapBackendFactory),
                targets,
                vec![(h.clone(), self.storage.clone())],
                Some(vec![]),
                Some(1),
            ),
        }
    }

    /// A started operator (state initialized, opened).
    async fn start(
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
async fn feed(op: &mut dyn Operator, steps: &[Step], out: &mut Vec<RecordBatch>) {
    for step in steps {
        let mut o = Output::default();
        match step {
            Step::Batch(input, b) => op.process_batch(*input, b.clone(), &mut o).await.unwrap(),
            Step::Watermark(w) => op.process_watermark(*w, &mut o).await.unwrap(),
        }
        collect(o, out);
    }
}

fn collect(o: Output, out: &mut Vec<RecordBatch>) {
    for m in o.into_messages() {
        if let Message::Batch(b) = m {
            out.push(b);
        }
    }
}

/// Feeds the final watermark and ends the input.
async fn finish(op: &mut dyn Operator, out: &mut Vec<RecordBatch>) {
    feed(op, &[Step::Watermark(EventTime::MAX)], out).await;
    let mut o = Output::default();
    op.finish(&mut o).await.unwrap();
    collect(o, out);
}

async fn snapshot(op: &mut dyn Operator, checkpoint_id: u64) -> KeyedStateHandle {
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
fn rows(batches: &[RecordBatch]) -> Vec<String> {
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

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The last watermark among `steps`.
fn last_watermark(steps: &[Step]) -> Vec<Step> {
    steps
        .iter()
        .rev()
        .find(|s| matches!(s, Step::Watermark(_)))
        .cloned()
        .into_iter()
        .collect()
}

fn aggregate(
    f: Arc<AggregateUDF>,
    arg: &str,
    schema: &SchemaRef,
    alias: &str,
    distinct: bool,
) -> AggregateSpec {
    let mut arg = col(arg, schema).unwrap();
    if f.name() == "avg" {
        // As the planner's type coercion does: avg takes a Float64.
        arg = cast(arg, schema, DataType::Float64).unwrap();
    }
    let mut b = AggregateExprBuilder::new(f, vec![arg])
        .schema(schema.clone())
        .alias(alias);
    if distinct {
        b = b.distinct();
    }
    AggregateSpec::new(Arc::new(b.build().unwrap()), None)
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// Runs `steps` uninterrupted, and again with snapshots after
/// `steps[..cuts[i]]` (each continuing on the same instance), the last one
/// restored into a new instance that runs the rest. Returns both outputs.
async fn interrupted_and_not(
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

// ---------------------------------------------------------------- session

fn session_input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("ts", ts(), true),
    ]))
}

fn session_batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        session_input_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2 * 1000),
            )),
        ],
    )
    .unwrap()
}

fn session_operator() -> Box<dyn Operator> {
    let schema = session_input_schema();
    let config = SessionAggregateConfig {
        gap: 10 * SEC,
        time_column: col("ts", &schema).unwrap(),
        keys: vec![col("k", &schema).unwrap()],
        key_schema: Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)])),
        aggregates: vec![
            aggregate(count_udaf(), "v", &schema, "cnt", false),
            aggregate(sum_udaf(), "v", &schema, "total", false),
        ],
        group_columns: vec![
            GroupColumn::Key(0),
            GroupColumn::WindowStart,
            GroupColumn::WindowEnd,
        ],
        output_schema: Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("window_start", ts(), true),
            Field::new("window_end", ts(), true),
            Field::new("cnt", DataType::Int64, true),
            Field::new("total", DataType::Int64, true),
        ])),
    };
    Box::new(SessionAggregate::new(Arc::new(config)))
}

/// Rows (key, value, event time in s) of 6 keys over 60 s, with session
/// gaps, as batches of 5 s each followed by a watermark.
fn session_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    for chunk in 0..12i64 {
        let mut rows = Vec::new();
        for s in chunk * 5..(chunk + 1) * 5 {
            if (30..40).contains(&s) {
                continue; // a pause of every key: every session closes, the buffer empties
            }
            for (k, key) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
                let k = k as i64;
                // Key k is active except in a pause of its own: sessions close at different times.
                if (s + 7 * k) % 30 < 18 {
                    rows.push((*key, s * 10 + k, s));
                }
            }
        }
        steps.push(Step::Batch(0, session_batch(&rows)));
        steps.push(Step::Watermark(((chunk + 1) * 5 - 1) * SEC));
    }
    steps
}

#[tokio::test]
async fn session_aggregate_restores_its_buffered_rows() {
    let steps = session_steps();
    // Snapshots with rows buffered, then with none (after the pause).
    let (whole, parts) = interrupted_and_not(session_operator, &steps, &[7, 12, 16], None).await;
    assert!(rows(&whole).len() > 6, "sessions fire: {:?}", rows(&whole));
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

// ---------------------------------------------------------------- window join

fn join_side_schema(value: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("window_start", ts(), true),
        Field::new("window_end", ts(), true),
        Field::new("k", DataType::Int64, true),
        Field::new(value, DataType::Utf8, true),
    ]))
}

fn join_batch(schema: &SchemaRef, rows: &[(i64, i64, String)]) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.0 * 1000),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| (r.0 + 10) * 1000),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.clone()))),
        ],
    )
    .unwrap()
}

fn join_config() -> Arc<WindowJoinConfig> {
    let (l, r) = (join_side_schema("lv"), join_side_schema("rv"));
    let mut fields: Vec<Field> = l.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(r.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(WindowJoinConfig {
        join_type: WindowJoinType::Full,
        left_keys: vec![col("window_start", &l).unwrap(), col("k", &l).unwrap()],
        right_keys: vec![col("window_start", &r).unwrap(), col("k", &r).unwrap()],
        left_window_end: col("window_end", &l).unwrap(),
        right_window_end: col("window_end", &r).unwrap(),
        filter: None,
        left_schema: l,
        right_schema: r,
        output_schema: Arc::new(Schema::new(fields)),
    })
}

fn join_operator() -> Box<dyn Operator> {
    Box::new(WindowJoin::new(join_config()))
}

/// Tumbling windows of 10 s; per second, rows of keys 0..20 on the left and
/// of keys 5..25 on the right (some keys only on one side), a watermark after
/// every 3 seconds.
fn join_steps() -> Vec<Step> {
    let (l, r) = (join_side_schema("lv"), join_side_schema("rv"));
    let mut steps = Vec::new();
    for s in 0..45i64 {
        let start = s - s % 10;
        let left: Vec<_> = (0..20)
            .filter(|k| (k + s) % 3 != 0)
            .map(|k| (start, k, format!("l{s}-{k}")))
            .collect();
        let right: Vec<_> = (5..25)
            .filter(|k| (k + s) % 4 != 0)
            .map(|k| (start, k, format!("r{s}-{k}")))
            .collect();
        steps.push(Step::Batch(0, join_batch(&l, &left)));
        steps.push(Step::Batch(1, join_batch(&r, &right)));
        if s % 3 == 2 {
            steps.push(Step::Watermark(s * SEC));
        }
    }
    steps
}

#[tokio::test]
async fn window_join_restores_its_buffered_windows() {
    let steps = join_steps();
    let (whole, parts) = interrupted_and_not(join_operator, &steps, &[40, 61, 62], None).await;
    assert!(rows(&whole).len() > 1000);
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

/// Splits `batch` by the subtask (of `parallelism`) its `k` column routes to.
fn route(batch: &RecordBatch, key: &str, parallelism: usize) -> Vec<RecordBatch> {
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

/// Snapshot at parallelism 1, restore into `parallelism` subtasks, route the
/// rest of the input by key group, compare the union of the outputs.
async fn rescaled(
    make: impl Fn() -> Box<dyn Operator>,
    steps: &[Step],
    cut: usize,
    key: &str,
    parallelism: usize,
) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let h = Harness::new();
    let mut whole = Vec::new();
    let mut op = h.start(make(), 0, 1, None, None).await;
    feed(op.as_mut(), steps, &mut whole).await;
    finish(op.as_mut(), &mut whole).await;

    let mut parts = Vec::new();
    let mut op = h.start(make(), 0, 1, None, None).await;
    feed(op.as_mut(), &steps[..cut], &mut parts).await;
    let handle = snapshot(op.as_mut(), 1).await;
    drop(op);
    let mut restored = Vec::new();
    for s in 0..parallelism {
        let mut op = h.start(make(), s, parallelism, None, Some(&handle)).await;
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

#[tokio::test]
async fn window_join_rescales_from_one_subtask_to_two() {
    let steps = join_steps();
    let (whole, parts) = rescaled(join_operator, &steps, 50, "k", 2).await;
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

// ---------------------------------------------------------------- group aggregate

fn agg_input_schema(updating: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ];
    if updating {
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    }
    Arc::new(Schema::new(fields))
}

fn agg_batch(rows: &[(String, i64)], ops: Option<Vec<i8>>) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.clone()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
    ];
    let updating = ops.is_some();
    if let Some(ops) = ops {
        columns.push(Arc::new(Int8Array::from(ops)));
    }
    RecordBatch::try_new(agg_input_schema(updating), columns).unwrap()
}

fn agg_operator(updating: bool) -> Box<dyn Operator> {
    let schema = agg_input_schema(updating);
    let aggregates = if updating {
        vec![
            aggregate(count_udaf(), "v", &schema, "cnt", false),
            aggregate(avg_udaf(), "v", &schema, "mean", false),
        ]
    } else {
        vec![
            aggregate(count_udaf(), "v", &schema, "cnt", false),
            aggregate(sum_udaf(), "v", &schema, "total", false),
            aggregate(max_udaf(), "v", &schema, "top", false),
            aggregate(count_udaf(), "v", &schema, "distinct_v", true),
            aggregate(avg_udaf(), "v", &schema, "mean", false),
        ]
    };
    let mut out_fields = vec![Field::new("k", DataType::Utf8, true)];
    for a in &aggregates {
        out_fields.push(a.function.field().as_ref().clone().with_nullable(true));
    }
    let config = UpdatingAggregateConfig {
        keys: vec![col("k", &schema).unwrap()],
        key_schema: Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)])),
        aggregates,
        input_updating: updating,
        output_schema: Arc::new(Schema::new(out_fields)),
    };
    config.validate().unwrap();
    Box::new(UpdatingAggregate::new(Arc::new(config)).unwrap())
}

/// Batches over 40 keys, some keys touched often, others rarely (so that
/// some key groups are unchanged between two snapshots).
fn agg_steps() -> Vec<Step> {
    (0..30i64)
        .map(|b| {
            let rows: Vec<_> = (0..25i64)
                .map(|i| {
                    let k = if i % 5 == 0 { (b * 7 + i) % 40 } else { i % 6 };
                    (format!("key{k}"), (b * i) % 13)
                })
                .collect();
            Step::Batch(0, agg_batch(&rows, None))
        })
        .collect()
}

/// A changelog input: rows inserted, later retracted (some keys lose every row).
fn agg_changelog_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    for b in 0..30i64 {
        let mut rows = Vec::new();
        let mut ops = Vec::new();
        for i in 0..10i64 {
            rows.push((format!("key{}", (b + i) % 12), b * 10 + i));
            ops.push(0); // +I
        }
        // A rare key per batch, retracted two batches later: its group is
        // deleted, and created again two batches after that.
        rows.push((format!("rare{}", b % 4), b));
        ops.push(0);
        if b >= 2 {
            rows.push((format!("rare{}", (b - 2) % 4), b - 2));
            ops.push(3);
        }
        if b >= 3 {
            // Retract what batch b - 3 inserted for its even rows.
            for i in (0..10i64).step_by(2) {
                rows.push((format!("key{}", (b - 3 + i) % 12), (b - 3) * 10 + i));
                ops.push(3); // -D
            }
        }
        steps.push(Step::Batch(0, agg_batch(&rows, Some(ops))));
    }
    steps
}

#[tokio::test]
async fn group_aggregate_restores_its_groups() {
    let steps = agg_steps();
    let (whole, parts) = interrupted_and_not(|| agg_operator(false), &steps, &[10, 11, 20], None).await;
    // The changelog is deterministic: the same rows, in the same order.
    assert_eq!(rows(&parts), rows(&whole));
}

#[tokio::test]
async fn group_aggregate_over_a_changelog_restores_its_groups() {
    let steps = agg_changelog_steps();
    let (whole, parts) = interrupted_and_not(|| agg_operator(true), &steps, &[5, 12, 13], None).await;
    assert!(
        rows(&whole).iter().any(|r| r.ends_with(",3")),
        "some groups are deleted"
    );
    assert_eq!(rows(&parts), rows(&whole));
}

#[tokio::test]
async fn group_aggregate_rescales_from_one_subtask_to_three() {
    let steps = agg_changelog_steps();
    let (whole, parts) = rescaled(|| agg_operator(true), &steps, 14, "k", 3).await;
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

fn single(rows: &[(&str, i64)]) -> Step {
    let rows: Vec<_> = rows.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Step::Batch(0, agg_batch(&rows, None))
}

#[tokio::test]
async fn group_aggregate_state_expires_after_the_ttl() {
    let h = Harness::new();
    let ttl = Duration::from_millis(50);
    let mut op = h.start(agg_operator(false), 0, 1, Some(ttl), None).await;
    let mut out = Vec::new();
    feed(op.as_mut(), &[single(&[("a", 1), ("b", 2)])], &mut out).await;
    assert_eq!(rows(&out), ["a,1,1,1,1,1.0,0", "b,1,2,2,1,2.0,0"]);

    // After 3 TTLs both groups have expired: `a` starts over (+I, no
    // retraction), `b` is dropped from the state.
    tokio::time::sleep(3 * ttl).await;
    out.clear();
    feed(op.as_mut(), &[single(&[("a", 3)])], &mut out).await;
    assert_eq!(rows(&out), ["a,1,3,3,1,3.0,0"]);
    let h1 = snapshot(op.as_mut(), 1).await;
    assert_eq!(h1.entries, 1, "only the key group of `a` holds state");

    // Restored with a long TTL: `a` goes on, `b` starts over.
    let mut op = h
        .start(
            agg_operator(false),
            0,
            1,
            Some(Duration::from_secs(3600)),
            Some(&h1),
        )
        .await;
    out.clear();
    feed(op.as_mut(), &[single(&[("a", 4), ("b", 6)])], &mut out).await;
    assert_eq!(
        rows(&out),
        ["a,1,3,3,1,3.0,1", "a,2,7,4,2,3.5,2", "b,1,6,6,1,6.0,0"]
    );
    let h2 = snapshot(op.as_mut(), 2).await;

    // The time of the last update is restored too: idle for 3 TTLs, `a` expires.
    tokio::time::sleep(3 * ttl).await;
    let mut op = h.start(agg_operator(false), 0, 1, Some(ttl), Some(&h2)).await;
    out.clear();
    feed(op.as_mut(), &[single(&[("a", 8)])], &mut out).await;
    assert_eq!(rows(&out), ["a,1,8,8,1,8.0,0"]);
}

#[tokio::test]
async fn group_aggregate_drops_a_group_once_every_row_is_retracted() {
    let h = Harness::new();
    let mut op = h.start(agg_operator(true), 0, 1, None, None).await;
    let mut out = Vec::new();
    let b = |rows: &[(&str, i64, i8)]| {
        let r: Vec<_> = rows.iter().map(|(k, v, _)| (k.to_string(), *v)).collect();
        Step::Batch(0, agg_batch(&r, Some(rows.iter().map(|x| x.2).collect())))
    };
    // A retraction of a group without state is ignored.
    feed(op.as_mut(), &[b(&[("a", 1, 3)])], &mut out).await;
    assert!(out.is_empty());
    feed(op.as_mut(), &[b(&[("a", 1, 0), ("a", 2, 0)])], &mut out).await;
    feed(op.as_mut(), &[b(&[("a", 1, 3), ("a", 2, 3)])], &mut out).await;
    let h1 = snapshot(op.as_mut(), 1).await;
    assert_eq!(h1.entries, 0, "no group left");
    feed(op.as_mut(), &[b(&[("a", 5, 0)])], &mut out).await;
    assert_eq!(
        rows(&out),
        ["a,2,1.5,0", "a,2,1.5,3", "a,1,5.0,0"],
        "+I, -D, then +I of a new group"
    );
}

// ---------------------------------------------------------------- values

#[tokio::test]
async fn values_source_resumes_after_the_rows_it_emitted() {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let batch =
        |v: Vec<i64>| RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap();
    let spec = ValuesSpec {
        schema: schema.clone(),
        batches: vec![batch(vec![1, 2]), batch(vec![3]), batch(vec![4, 5, 6])],
    };
    let h = Harness::new();
    let ctx = h.ctx(0, 1, None);
    async fn drain(src: &mut dyn weir_engine::source::Source, max: usize) -> Vec<i64> {
        let mut got = Vec::new();
        for _ in 0..max {
            match src.poll_next().await.unwrap() {
                SourceEvent::Batch(b) | SourceEvent::SplitBatch { batch: b, .. } => {
                    let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    got.extend(c.values().iter().copied());
                }
                SourceEvent::Finished => break,
                SourceEvent::Idle => {}
            }
        }
        got
    }

    let mut src = spec.create(0, 1).unwrap();
    src.initialize_state(&ctx, None).await.unwrap();
    assert_eq!(drain(src.as_mut(), 2).await, [1, 2, 3]);
    let state = src.snapshot_state(1).await.unwrap();
    assert_eq!(state, [serde_json::json!({"rows_emitted": 3})]);

    let mut resumed = spec.create(0, 1).unwrap();
    resumed.initialize_state(&ctx, Some(state)).await.unwrap();
    assert_eq!(drain(resumed.as_mut(), 10).await, [4, 5, 6]);
    assert_eq!(
        resumed.snapshot_state(2).await.unwrap(),
        [serde_json::json!({"rows_emitted": 6})]
    );

    // A position inside a batch resumes inside it.
    let mut resumed = spec.create(0, 1).unwrap();
    resumed
        .initialize_state(&ctx, Some(vec![serde_json::json!({"rows_emitted": 4})]))
        .await
        .unwrap();
    assert_eq!(drain(resumed.as_mut(), 10).await, [5, 6]);

    // More rows than the query has: the state is not this query's.
    let mut bad = spec.create(0, 1).unwrap();
    let err = bad
        .initialize_state(&ctx, Some(vec![serde_json::json!({"rows_emitted": 7})]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only 6"), "{err}");
}

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
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::AggregateUDF;
use datafusion::logical_expr::Operator as BinaryOp;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{binary, cast, col, lit};
use weir_engine::changelog::OP_COLUMN;
use weir_engine::key_group::key_groups_of;
use weir_engine::message::{Barrier, BarrierKind};
use weir_engine::operator::Operator;
use weir_engine::operators::aggregates::AggregateSpec;
use weir_engine::operators::group_state::state_keeps_accumulator;
use weir_engine::operators::session_window::{SessionAggregate, SessionAggregateConfig};
use weir_engine::operators::updating_aggregate::{UpdatingAggregate, UpdatingAggregateConfig};
use weir_engine::operators::window_aggregate::GroupColumn;
use weir_engine::operators::window_join::{WindowJoin, WindowJoinConfig, WindowJoinType};
use weir_engine::source::{SourceEvent, SourceSpec};
use weir_engine::state::{BackendBatches, KeyedStateHandle};
use weir_engine::values::ValuesSpec;

#[path = "support/operator_harness.rs"]
mod operator_harness;

use operator_harness::*;
const SEC: i64 = 1_000_000_000;

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

/// The aggregates whose accumulators checkpoints do not rebuild after
/// `state()` are as they were after it, in the DataFusion in use.
#[test]
fn listed_aggregates_keep_their_state() {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![Some(3), None, Some(7), Some(-2)]))],
    )
    .unwrap();
    for f in [min_udaf(), max_udaf(), sum_udaf(), count_udaf(), avg_udaf()] {
        let spec = aggregate(f.clone(), "v", &schema, "a", false);
        assert!(state_keeps_accumulator(&spec), "{}", f.name());
        let input: Vec<ArrayRef> = spec
            .input_exprs()
            .iter()
            .map(|e| e.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap())
            .collect();
        let (mut acc, mut twice) = (spec.accumulator().unwrap(), spec.accumulator().unwrap());
        acc.update_batch(&input).unwrap();
        let value = acc.evaluate().unwrap();
        let state = acc.state().unwrap();
        assert_eq!(acc.state().unwrap(), state, "{}", f.name());
        assert_eq!(acc.evaluate().unwrap(), value, "{}", f.name());
        acc.update_batch(&input).unwrap();
        twice.update_batch(&input).unwrap();
        twice.update_batch(&input).unwrap();
        assert_eq!(acc.evaluate().unwrap(), twice.evaluate().unwrap(), "{}", f.name());
    }
    let distinct = aggregate(count_udaf(), "v", &schema, "a", true);
    assert!(!state_keeps_accumulator(&distinct));
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
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

#[tokio::test]
async fn session_aggregate_restores_rows_kept_in_the_backend_by_the_earlier_layout() {
    let steps = session_steps();
    let mut whole = Vec::new();
    let h = Harness::new();
    let mut op = h.start(session_operator(), 0, 1, None, None).await;
    feed(op.as_mut(), &steps[..2], &mut whole).await;
    let buffered = rows(&whole).len();
    feed(op.as_mut(), &steps[2..], &mut whole).await;
    finish(op.as_mut(), &mut whole).await;

    // The first batch's rows (before any watermark: all buffered), as the
    // earlier layout kept them: one backend value per key group.
    let Step::Batch(_, batch) = &steps[0] else {
        panic!("a batch first")
    };
    let ctx = h.ctx(0, 1, None);
    let mut state = h.init(&ctx, None).keyed_state().await.unwrap();
    let kgs = key_groups_of(&[batch.column(0).clone()], batch.num_rows(), MAX_PAR).unwrap();
    let mut legacy = BackendBatches::default();
    for kg in kgs.iter().collect::<std::collections::BTreeSet<_>>() {
        let idx: Vec<u32> = (0..batch.num_rows() as u32)
            .filter(|i| kgs[*i as usize] == *kg)
            .collect();
        let part = arrow::compute::take_record_batch(batch, &arrow::array::UInt32Array::from(idx)).unwrap();
        legacy.write_key_group(state.backend(), b"", *kg, &part).unwrap();
    }
    let barrier = Barrier {
        checkpoint_id: 1,
        kind: BarrierKind::Checkpoint,
    };
    let old = state.snapshot(barrier).unwrap().await.unwrap();
    assert!(old.entries > 1 && old.batches.is_empty());

    let mut parts = Vec::new();
    let mut op = h.start(session_operator(), 0, 1, None, Some(&old)).await;
    feed(op.as_mut(), &steps[1..], &mut parts).await;
    let moved = snapshot(op.as_mut(), 2).await;
    assert_eq!(moved.entries, 0, "the backend values are deleted: {moved:?}");
    assert!(!moved.batches.is_empty());
    finish(op.as_mut(), &mut parts).await;
    assert_eq!(buffered, 0);
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
    let rows: Vec<(i64, Option<i64>, String)> =
        rows.iter().map(|(w, k, v)| (*w, Some(*k), v.clone())).collect();
    nullable_join_batch(schema, &rows)
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

/// Rows of one side of a window join: `(window_start s, key, value)`.
type JoinRows = Vec<(i64, Option<i64>, String)>;

/// Rows `(window_start s, key, value)` per side and window: in even
/// windows the left side is the smaller, in odd ones the right (the join
/// hashes the smaller side), with NULL keys, duplicate keys, and keys on one
/// side only; several batches per side and window.
fn brute_force_input() -> (Vec<Step>, JoinRows, JoinRows) {
    let (ls, rs) = (join_side_schema("lv"), join_side_schema("rv"));
    let (mut steps, mut left, mut right) = (Vec::new(), Vec::new(), Vec::new());
    for window in 0..6i64 {
        let start = window * 10;
        let (small, large) = (7, 23);
        let (nl, nr) = if window % 2 == 0 {
            (small, large)
        } else {
            (large, small)
        };
        for part in 0..3 {
            let side = |n: i64, tag: &str, shift: i64| -> Vec<(i64, Option<i64>, String)> {
                (0..n)
                    .filter(|i| i % 3 == part)
                    .map(|i| {
                        let key = if (i + shift) % 5 == 4 {
                            None
                        } else {
                            Some((i * 7 + shift) % 9)
                        };
                        (start, key, format!("{tag}{window}-{i}"))
                    })
                    .collect()
            };
            let (l, r) = (side(nl, "l", 0), side(nr, "r", 2));
            steps.push(Step::Batch(0, nullable_join_batch(&ls, &l)));
            steps.push(Step::Batch(1, nullable_join_batch(&rs, &r)));
            left.extend(l);
            right.extend(r);
        }
        steps.push(Step::Watermark((start + 10) * SEC));
    }
    (steps, left, right)
}

fn nullable_join_batch(schema: &SchemaRef, rows: &[(i64, Option<i64>, String)]) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.0 * 1000),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| (r.0 + 10) * 1000),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.clone()))),
        ],
    )
    .unwrap()
}

/// Window joins of every type, with and without a residual condition
/// (`lv < rv` as strings), equal a nested-loop join of each window's rows.
#[tokio::test]
async fn window_joins_match_a_brute_force_join() {
    let (steps, left, right) = brute_force_input();
    let text = |r: &(i64, Option<i64>, String)| {
        let ts = |s: i64| array_value_to_string(&TimestampMillisecondArray::from(vec![s * 1000]), 0).unwrap();
        let key = r.1.map_or("".to_string(), |k| k.to_string());
        format!("{},{},{key},{}", ts(r.0), ts(r.0 + 10), r.2)
    };
    let nulls = ",,,";
    for join_type in [
        WindowJoinType::Inner,
        WindowJoinType::Left,
        WindowJoinType::Right,
        WindowJoinType::Full,
    ] {
        for with_filter in [false, true] {
            let mut config = Arc::into_inner(join_config()).expect("a fresh config");
            config.join_type = join_type;
            if with_filter {
                let schema = config.output_schema.clone();
                config.filter = Some(
                    binary(
                        col("lv", &schema).unwrap(),
                        BinaryOp::Lt,
                        col("rv", &schema).unwrap(),
                        &schema,
                    )
                    .unwrap(),
                );
            }
            let config = Arc::new(config);
            let mut op = Harness::new()
                .start(Box::new(WindowJoin::new(config)), 0, 1, None, None)
                .await;
            let mut out = Vec::new();
            feed(op.as_mut(), &steps, &mut out).await;
            finish(op.as_mut(), &mut out).await;

            let matches = |l: &(i64, Option<i64>, String), r: &(i64, Option<i64>, String)| {
                l.0 == r.0 && l.1.is_some() && l.1 == r.1 && (!with_filter || l.2 < r.2)
            };
            let mut expected = Vec::new();
            for l in &left {
                for r in right.iter().filter(|r| matches(l, r)) {
                    expected.push(format!("{},{}", text(l), text(r)));
                }
            }
            if matches!(join_type, WindowJoinType::Left | WindowJoinType::Full) {
                for l in left.iter().filter(|l| !right.iter().any(|r| matches(l, r))) {
                    expected.push(format!("{},{nulls}", text(l)));
                }
            }
            if matches!(join_type, WindowJoinType::Right | WindowJoinType::Full) {
                for r in right.iter().filter(|r| !left.iter().any(|l| matches(l, r))) {
                    expected.push(format!("{nulls},{}", text(r)));
                }
            }
            assert!(expected.len() > 20);
            assert_eq!(
                sorted(rows(&out)),
                sorted(expected),
                "{join_type:?}, filter: {with_filter}"
            );
        }
    }
}

#[tokio::test]
async fn window_join_restores_its_buffered_windows() {
    let steps = join_steps();
    let (whole, parts) = interrupted_and_not(join_operator, &steps, &[40, 61, 62], None).await;
    assert!(rows(&whole).len() > 1000);
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

/// Window 20..30 s of `join_steps` spans steps 46..70: checkpoints at 50, 55
/// and 60 each append a chunk of its new rows; the second instance, restored
/// from 55, appends its own chunk at 60, and the third restores all of them.
#[tokio::test]
async fn window_join_appends_chunks_across_checkpoints_and_restores() {
    let steps = join_steps();
    let h = Harness::incremental();
    let mut whole = Vec::new();
    let mut op = h.start(join_operator(), 0, 1, None, None).await;
    feed(op.as_mut(), &steps, &mut whole).await;
    finish(op.as_mut(), &mut whole).await;

    let mut parts = Vec::new();
    let mut op = h.start(join_operator(), 0, 1, None, None).await;
    feed(op.as_mut(), &steps[..50], &mut parts).await;
    let first = snapshot(op.as_mut(), 1).await;
    feed(op.as_mut(), &steps[50..55], &mut parts).await;
    let second = snapshot(op.as_mut(), 2).await;
    // The rows since the first checkpoint are a new file, and the first
    // checkpoint's file (chunks of windows still open) is referenced, not
    // written again.
    let (first_files, second_files) = (shared_batch_files(&first), shared_batch_files(&second));
    assert_eq!(first_files.len(), 1, "{first:?}");
    assert_eq!(second_files.len(), 2, "{second:?}");
    assert!(second_files.contains(&first_files[0]));
    feed(op.as_mut(), &steps[55..], &mut Vec::new()).await;

    let mut op = h.start(join_operator(), 0, 1, None, Some(&second)).await;
    feed(op.as_mut(), &last_watermark(&steps[..55]), &mut parts).await;
    feed(op.as_mut(), &steps[55..60], &mut parts).await;
    let third = snapshot(op.as_mut(), 3).await;
    feed(op.as_mut(), &steps[60..], &mut Vec::new()).await;

    let mut op = h.start(join_operator(), 0, 1, None, Some(&third)).await;
    feed(op.as_mut(), &last_watermark(&steps[..60]), &mut parts).await;
    feed(op.as_mut(), &steps[60..], &mut parts).await;
    finish(op.as_mut(), &mut parts).await;
    assert!(rows(&whole).len() > 1000);
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

#[tokio::test]
async fn window_join_rescales_from_one_subtask_to_two() {
    let steps = join_steps();
    let (whole, parts) = rescaled(join_operator, &steps, &[50, 55, 60], "k", 2).await;
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
    group_aggregate(&schema, aggregates, updating)
}

/// An updating aggregate of `aggregates` over `schema`, grouped by `k`.
fn group_aggregate(schema: &SchemaRef, aggregates: Vec<AggregateSpec>, updating: bool) -> Box<dyn Operator> {
    let mut out_fields = vec![Field::new("k", DataType::Utf8, true)];
    for a in &aggregates {
        out_fields.push(a.function.field().as_ref().clone().with_nullable(true));
    }
    let config = UpdatingAggregateConfig {
        keys: vec![col("k", schema).unwrap()],
        key_schema: Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)])),
        aggregates,
        input_updating: updating,
        output_schema: Arc::new(Schema::new(out_fields)),
        partition_keys: None,
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
    let (whole, parts) = rescaled(|| agg_operator(true), &steps, &[14], "k", 3).await;
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

/// Rows of one row kind (`0` +I, `3` -D) for the changelog aggregate.
fn changes(rows: &[(&str, i64)], kind: i8) -> Step {
    let rows: Vec<_> = rows.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Step::Batch(0, agg_batch(&rows, Some(vec![kind; rows.len()])))
}

#[tokio::test]
async fn group_aggregate_checkpoints_write_only_the_groups_that_changed() {
    let factory = Arc::new(CountingBackendFactory::default());
    let counts = factory.counts.clone();
    let h = Harness::with_factory(factory);
    let mut op = h.start(agg_operator(true), 0, 1, None, None).await;
    let mut out = Vec::new();
    let keys: Vec<String> = (0..2000).map(|i| format!("key{i}")).collect();
    let all: Vec<(&str, i64)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i as i64))
        .collect();
    feed(op.as_mut(), &[changes(&all, 0)], &mut out).await;
    snapshot(op.as_mut(), 1).await;
    let (puts, bytes, deletes) = counts.take();
    assert_eq!((puts, deletes), (2000, 0), "an entry per group");

    // `key0` loses its only row (its group is dropped), `key1` gets a row.
    feed(
        op.as_mut(),
        &[changes(&[("key0", 0)], 3), changes(&[("key1", 5)], 0)],
        &mut out,
    )
    .await;
    let h2 = snapshot(op.as_mut(), 2).await;
    let (puts2, bytes2, deletes2) = counts.take();
    assert_eq!((puts2, deletes2), (1, 1), "one entry written, one deleted");
    assert!(bytes2 * 100 < bytes, "{bytes2} bytes of {bytes}");
    assert_eq!(h2.entries, 1999);
    snapshot(op.as_mut(), 3).await;
    assert_eq!(counts.take(), (0, 0, 0), "nothing changed, nothing written");
    drop(op);

    let mut op = h.start(agg_operator(true), 0, 1, None, Some(&h2)).await;
    assert_eq!(counts.take(), (0, 0, 0), "a restore writes nothing");
    out.clear();
    feed(op.as_mut(), &[changes(&[("key0", 7), ("key1", 1)], 0)], &mut out).await;
    assert_eq!(
        rows(&out),
        ["key0,1,7.0,0", "key1,2,3.0,1", "key1,3,2.3333333333333335,2"]
    );
}

/// An append-only aggregate over keys with NULLs, with an aggregate
/// FILTER, a DISTINCT aggregate and results that change and do not.
fn append_only_aggregate() -> Box<dyn Operator> {
    let schema = agg_input_schema(false);
    let mut aggregates = vec![
        aggregate(count_udaf(), "v", &schema, "cnt", false),
        aggregate(sum_udaf(), "v", &schema, "total", false),
        aggregate(max_udaf(), "v", &schema, "top", false),
        aggregate(count_udaf(), "v", &schema, "distinct_v", true),
        aggregate(avg_udaf(), "v", &schema, "mean", false),
    ];
    let low = aggregate(min_udaf(), "v", &schema, "low_above_5", false);
    let above_5 = binary(col("v", &schema).unwrap(), BinaryOp::Gt, lit(5i64), &schema).unwrap();
    aggregates.push(AggregateSpec::new(low.function, Some(above_5)));
    group_aggregate(&schema, aggregates, false)
}

/// Batches over 30 keys and NULL, some touched often, others rarely.
fn append_only_steps(batches: i64) -> Vec<Step> {
    (0..batches)
        .map(|b| {
            let (keys, values): (Vec<Option<String>>, Vec<i64>) = (0..20i64)
                .map(|i| {
                    let k = if i % 7 == 0 { (b * 5 + i) % 30 } else { i % 4 };
                    let key = (k != 3).then(|| format!("key{k}"));
                    (key, (b * i) % 11)
                })
                .unzip();
            let batch = RecordBatch::try_new(
                agg_input_schema(false),
                vec![
                    Arc::new(StringArray::from(keys)),
                    Arc::new(Int64Array::from(values)),
                ],
            )
            .unwrap();
            Step::Batch(0, batch)
        })
        .collect()
}

/// The output of `append_only_aggregate` over `steps` with state TTL `ttl`,
/// and the state it checkpoints at the end.
async fn run_append_only(steps: &[Step], ttl: Option<Duration>) -> (Vec<String>, KeyedStateHandle) {
    let h = Harness::new();
    let mut op = h.start(append_only_aggregate(), 0, 1, ttl, None).await;
    let mut out = Vec::new();
    feed(op.as_mut(), steps, &mut out).await;
    (rows(&out), snapshot(op.as_mut(), 1).await)
}

/// Over an append-only input the aggregate keeps its groups in columns,
/// updated by DataFusion's vectorized accumulators (no TTL, a backend in
/// memory); with a TTL it keeps an entry per group with row accumulators.
/// Both give the same changelog.
#[tokio::test]
async fn append_only_group_aggregate_in_columns_matches_the_row_layout() {
    let steps = append_only_steps(40);
    let (columns, in_memory) = run_append_only(&steps, None).await;
    let (entries, in_backend) = run_append_only(&steps, Some(Duration::from_secs(3600))).await;
    assert!(
        in_memory.entries == 0 && !in_memory.batches.is_empty(),
        "{in_memory:?}"
    );
    assert!(
        in_backend.entries > 0 && in_backend.batches.is_empty(),
        "{in_backend:?}"
    );
    assert_eq!(columns, entries);
    assert!(columns.iter().any(|r| r.ends_with(",1")), "updates (-U)");
    assert!(columns.iter().any(|r| r.starts_with(",")), "a NULL key");
    assert!(columns.len() > 200, "{}", columns.len());
}

#[tokio::test]
async fn append_only_group_aggregate_restores_its_groups() {
    let steps = append_only_steps(40);
    let (whole, parts) = interrupted_and_not(append_only_aggregate, &steps, &[10, 11, 25], None).await;
    assert_eq!(rows(&parts), rows(&whole));
}

#[tokio::test]
async fn append_only_group_aggregate_rescales_from_one_subtask_to_three() {
    let steps = append_only_steps(40);
    let (whole, parts) = rescaled(append_only_aggregate, &steps, &[10, 20], "k", 3).await;
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

/// Groups move between the columns of the in-memory layout and entries of
/// the backend's (here: a TTL set, then removed, on restore), and continue.
#[tokio::test]
async fn append_only_group_aggregate_moves_its_groups_between_layouts_on_restore() {
    let steps = append_only_steps(30);
    let whole = run_append_only(&steps, None).await.0;
    let h = Harness::new();
    let ttl = Some(Duration::from_secs(3600));
    let mut out = Vec::new();
    let mut op = h.start(append_only_aggregate(), 0, 1, None, None).await;
    feed(op.as_mut(), &steps[..10], &mut out).await;
    let columns = snapshot(op.as_mut(), 1).await;
    assert!(columns.entries == 0 && !columns.batches.is_empty(), "{columns:?}");

    let mut op = h.start(append_only_aggregate(), 0, 1, ttl, Some(&columns)).await;
    feed(op.as_mut(), &steps[10..20], &mut out).await;
    let entries = snapshot(op.as_mut(), 2).await;
    assert!(entries.entries > 0 && entries.batches.is_empty(), "{entries:?}");

    let mut op = h.start(append_only_aggregate(), 0, 1, None, Some(&entries)).await;
    feed(op.as_mut(), &steps[20..], &mut out).await;
    let back = snapshot(op.as_mut(), 3).await;
    assert!(back.entries == 0 && !back.batches.is_empty(), "{back:?}");
    assert_eq!(rows(&out), whole);
}

/// With incremental checkpoints, each checkpoint writes the groups changed
/// since the last one as a file and refers to the earlier ones; once the
/// files hold more superseded rows than live ones (plus a slack), one
/// checkpoint writes every group and drops the rest.
#[tokio::test]
async fn append_only_group_aggregate_checkpoints_write_the_groups_that_changed() {
    let h = Harness::incremental();
    let mut op = h.start(append_only_aggregate(), 0, 1, None, None).await;
    let mut out = Vec::new();
    let all: Vec<String> = (0..1000).map(|i| format!("key{i}")).collect();
    let batch = |keys: &[String], v: i64| {
        let rows: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), v)).collect();
        Step::Batch(0, agg_batch(&rows, None))
    };
    feed(op.as_mut(), &[batch(&all, 1)], &mut out).await;
    let first = shared_batch_files(&snapshot(op.as_mut(), 1).await);
    feed(op.as_mut(), &[batch(&all[..1], 2)], &mut out).await;
    let second = shared_batch_files(&snapshot(op.as_mut(), 2).await);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second.contains(&first[0]));
    let new = second.iter().find(|f| **f != first[0]).unwrap();
    assert!(new.size * 20 < first[0].size, "{new:?} {first:?}");
    let third = shared_batch_files(&snapshot(op.as_mut(), 3).await);
    assert_eq!(third, second, "nothing changed, nothing written");

    // Every group changes at every checkpoint: 1000 rows written each time.
    let mut most = 0;
    let mut last = None;
    for c in 0..80i64 {
        feed(op.as_mut(), &[batch(&all, c + 3)], &mut out).await;
        let handle = snapshot(op.as_mut(), c as u64 + 4).await;
        most = most.max(shared_batch_files(&handle).len());
        last = Some(handle);
    }
    let last = last.unwrap();
    assert!(shared_batch_files(&last).len() < 20, "{last:?}");
    assert!(most > 60, "files accumulate before they are rewritten: {most}");

    let mut restored = h.start(append_only_aggregate(), 0, 1, None, Some(&last)).await;
    let next = [batch(&all[..2], 100)];
    let (mut expected, mut got) = (Vec::new(), Vec::new());
    feed(op.as_mut(), &next, &mut expected).await;
    feed(restored.as_mut(), &next, &mut got).await;
    assert_eq!(rows(&got), rows(&expected));
    assert_eq!(rows(&got).len(), 4, "-U/+U of two groups: {:?}", rows(&got));
}

/// State as the aggregate wrote it before it kept an entry per group: one
/// Arrow batch per key group (key, count, update time, state columns,
/// values last emitted, emitted flag), under key `[1]`.
#[tokio::test]
async fn group_aggregate_restores_state_written_as_a_batch_per_key_group() {
    let schema = agg_input_schema(false);
    let make = || {
        group_aggregate(
            &schema,
            vec![
                aggregate(count_udaf(), "v", &schema, "cnt", false),
                aggregate(sum_udaf(), "v", &schema, "total", false),
            ],
            false,
        )
    };
    let h = Harness::new();
    let ctx = h.ctx(0, 1, None);
    let mut state = h.init(&ctx, None).keyed_state().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Groups `a` (rows 1, 2: emitted 2, 3) and `b` (row 5: emitted 1, 5).
    let int64 = |v: [i64; 2]| Arc::new(Int64Array::from(v.to_vec())) as ArrayRef;
    let batch = RecordBatch::try_from_iter(vec![
        ("c0", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
        ("c1", int64([2, 1])),
        ("c2", int64([now, now])),
        ("c3", int64([2, 1])),
        ("c4", int64([3, 5])),
        ("c5", int64([2, 1])),
        ("c6", int64([3, 5])),
        (
            "c7",
            Arc::new(arrow::array::BooleanArray::from(vec![true, true])) as ArrayRef,
        ),
    ])
    .unwrap();
    let kgs = key_groups_of(&[batch.column(0).clone()], 2, MAX_PAR).unwrap();
    let mut legacy = BackendBatches::default();
    for (row, kg) in kgs.iter().enumerate() {
        legacy
            .write_key_group(state.backend(), b"", *kg, &batch.slice(row, 1))
            .unwrap();
    }
    let barrier = Barrier {
        checkpoint_id: 1,
        kind: BarrierKind::Checkpoint,
    };
    let h1 = state.snapshot(barrier).unwrap().await.unwrap();

    let mut op = h.start(make(), 0, 1, None, Some(&h1)).await;
    let mut out = Vec::new();
    feed(op.as_mut(), &[single(&[("a", 4)])], &mut out).await;
    assert_eq!(rows(&out), ["a,2,3,1", "a,3,7,2"]);
    let h2 = snapshot(op.as_mut(), 2).await;
    assert!(
        h2.entries == 0 && !h2.batches.is_empty(),
        "the batches deleted, the groups in the in-memory layout: {h2:?}"
    );

    let mut op = h.start(make(), 0, 1, None, Some(&h2)).await;
    out.clear();
    feed(op.as_mut(), &[single(&[("a", 1), ("b", 1)])], &mut out).await;
    assert_eq!(rows(&out), ["a,3,7,1", "a,4,8,2", "b,1,5,1", "b,2,6,2"]);
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

/// An aggregate grouped by `k` and `v` over rows partitioned by `k` alone
/// (as a join on `k` below it partitions them): with `partition_keys`
/// `[0]` it places its groups by `k` too.
fn aggregate_by_k_and_v(partition_keys: Option<Vec<usize>>) -> Box<dyn Operator> {
    let schema = agg_input_schema(false);
    let count = aggregate(count_udaf(), "v", &schema, "cnt", false);
    let config = UpdatingAggregateConfig {
        keys: vec![col("k", &schema).unwrap(), col("v", &schema).unwrap()],
        key_schema: Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ])),
        output_schema: Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            count.function.field().as_ref().clone().with_nullable(true),
        ])),
        aggregates: vec![count],
        input_updating: false,
        partition_keys,
    };
    config.validate().unwrap();
    Box::new(UpdatingAggregate::new(Arc::new(config)).unwrap())
}

/// Restored at another parallelism, an aggregate partitioned by some of its
/// keys finds each group on the subtask that receives its rows, in both
/// layouts (columns; entries, with a TTL). Placed by all its keys, as
/// without `partition_keys`, the groups would sit elsewhere and start again.
#[tokio::test]
async fn an_aggregate_partitioned_by_some_of_its_keys_rescales_by_them() {
    let steps = append_only_steps(40);
    for ttl in [None, Some(Duration::from_secs(3600))] {
        let by_k = || aggregate_by_k_and_v(Some(vec![0]));
        let (whole, parts) = rescaled_with_ttl(by_k, &steps, &[10, 20], "k", 3, ttl).await;
        assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)), "TTL {ttl:?}");

        let by_both = || aggregate_by_k_and_v(None);
        let (whole, parts) = rescaled_with_ttl(by_both, &steps, &[10, 20], "k", 3, ttl).await;
        assert_ne!(sorted(rows(&parts)), sorted(rows(&whole)), "TTL {ttl:?}");
    }
}

/// State written with the groups placed one way is never restored into an
/// aggregate that places them the other way, in either layout: the error
/// names the setting that plans the job as the writer was planned.
#[tokio::test]
async fn group_state_of_another_placement_is_not_restored() {
    let steps = append_only_steps(10);
    let h = Harness::new();
    let mut checkpoint = 0;
    let ttls = [None, Some(Duration::from_secs(3600))];
    for (written, restored) in [(None, Some(vec![0])), (Some(vec![0]), None)] {
        for (write_ttl, restore_ttl) in ttls.iter().flat_map(|&w| ttls.iter().map(move |&r| (w, r))) {
            let mut op = h
                .start(aggregate_by_k_and_v(written.clone()), 0, 1, write_ttl, None)
                .await;
            feed(op.as_mut(), &steps, &mut Vec::new()).await;
            checkpoint += 1;
            let handle = snapshot(op.as_mut(), checkpoint).await;

            let same = h
                .start(
                    aggregate_by_k_and_v(written.clone()),
                    0,
                    1,
                    restore_ttl,
                    Some(&handle),
                )
                .await;
            drop(same);
            let mut op = aggregate_by_k_and_v(restored.clone());
            let ctx = h.ctx(0, 1, restore_ttl);
            let error = op
                .initialize_state(&ctx, h.init(&ctx, Some(&handle)))
                .await
                .err()
                .unwrap_or_else(|| {
                    panic!("{written:?} -> {restored:?}, TTL {write_ttl:?} -> {restore_ttl:?}")
                });
            assert!(
                error
                    .to_string()
                    .contains("'table.optimizer.reuse-join-partitioning'"),
                "{error}"
            );
        }
    }
}

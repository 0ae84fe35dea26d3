//! The interval join and the regular join against brute-force joins of the
//! same input, and their checkpoint, restore and rescale.

#[path = "support/operator_harness.rs"]
mod operator_harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Int8Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::physical_expr::expressions::{binary, col};
use operator_harness::*;
use weir_engine::changelog::{OP_COLUMN, RowKind};
use weir_engine::message::{EventTime, Message};
use weir_engine::operator::{Operator, Output};
use weir_engine::operators::interval_join::{IntervalJoin, IntervalJoinConfig};
use weir_engine::operators::join::{JoinSpec, JoinType};
use weir_engine::operators::stream_join::{ExpiryBound, StreamJoin, StreamJoinConfig};

const MS: i64 = 1_000_000;

/// A row of either side: key, time (ms), value.
type Row = (Option<i64>, i64, String);
/// The rows of the left and the right input at some point.
type Inputs = (Vec<Row>, Vec<Row>);
/// A joined row: the left and the right row, either possibly NULL-padded.
type Joined = (Option<Row>, Option<Row>);

fn side_schema(value: &str, updating: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new(value, DataType::Utf8, true),
    ];
    if updating {
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
    }
    Arc::new(Schema::new(fields))
}

fn batch(value: &str, rows: &[Row], ops: Option<&[RowKind]>) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|r| r.1),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.clone()))),
    ];
    if let Some(ops) = ops {
        columns.push(Arc::new(Int8Array::from_iter_values(
            ops.iter().map(|k| *k as i8),
        )));
    }
    RecordBatch::try_new(side_schema(value, ops.is_some()), columns).unwrap()
}

fn spec(join_type: JoinType) -> JoinSpec {
    let (l, r) = (side_schema("lv", false), side_schema("rv", false));
    let mut fields: Vec<Field> = l.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        r.fields()
            .iter()
            .map(|f| f.as_ref().clone().with_name(format!("r_{}", f.name()))),
    );
    JoinSpec {
        join_type,
        left_keys: vec![col("k", &l).unwrap()],
        right_keys: vec![col("k", &r).unwrap()],
        filter: None,
        left_schema: l,
        right_schema: r,
        output_schema: Arc::new(Schema::new(fields)),
    }
}

/// The joined rows of output batches, with their row kinds (`+I` when the
/// output is append-only).
fn joined(batches: &[RecordBatch]) -> Vec<(RowKind, Joined)> {
    let mut out = Vec::new();
    for b in batches {
        let int = |i: usize| b.column(i).as_any().downcast_ref::<Int64Array>().unwrap().clone();
        let time = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .clone()
        };
        let text = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let ops =
            (b.num_columns() == 7).then(|| b.column(6).as_any().downcast_ref::<Int8Array>().unwrap().clone());
        let side = |base: usize, r: usize| -> Option<Row> {
            let (k, t, v) = (int(base), time(base + 1), text(base + 2));
            (!t.is_null(r)).then(|| {
                (
                    (!k.is_null(r)).then(|| k.value(r)),
                    t.value(r),
                    v.value(r).to_string(),
                )
            })
        };
        for r in 0..b.num_rows() {
            let kind = ops
                .as_ref()
                .map_or(RowKind::Insert, |o| RowKind::from_i8(o.value(r)).unwrap());
            out.push((kind, (side(0, r), side(3, r))));
        }
    }
    out
}

/// Applies a changelog: the multiset of rows it leaves. Panics if it
/// retracts a row that is not there.
fn materialize(changes: &[(RowKind, Joined)]) -> BTreeMap<Joined, usize> {
    let mut rows: BTreeMap<Joined, usize> = BTreeMap::new();
    for (kind, row) in changes {
        if kind.is_accumulate() {
            *rows.entry(row.clone()).or_default() += 1;
        } else {
            let n = rows
                .get_mut(row)
                .unwrap_or_else(|| panic!("{kind:?} of a row not in the result: {row:?}"));
            *n -= 1;
            if *n == 0 {
                rows.remove(row);
            }
        }
    }
    rows
}

/// The join of two multisets, by brute force: pairs with equal non-NULL keys
/// for which `matches` holds, and the unmatched rows of preserved sides.
fn brute_force(
    join_type: JoinType,
    left: &[Row],
    right: &[Row],
    matches: impl Fn(&Row, &Row) -> bool,
) -> BTreeMap<Joined, usize> {
    let mut out: BTreeMap<Joined, usize> = BTreeMap::new();
    let pair = |l: &Row, r: &Row| l.0.is_some() && l.0 == r.0 && matches(l, r);
    for l in left {
        let mut any = false;
        for r in right.iter().filter(|r| pair(l, r)) {
            any = true;
            *out.entry((Some(l.clone()), Some(r.clone()))).or_default() += 1;
        }
        if !any && matches!(join_type, JoinType::Left | JoinType::Full) {
            *out.entry((Some(l.clone()), None)).or_default() += 1;
        }
    }
    if matches!(join_type, JoinType::Right | JoinType::Full) {
        for r in right.iter().filter(|r| !left.iter().any(|l| pair(l, r))) {
            *out.entry((None, Some(r.clone()))).or_default() += 1;
        }
    }
    out
}

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

// ---------------------------------------------------------------- interval join

/// `r.t - l.t ∈ [-2 s, 3 s]`.
fn interval_config(join_type: JoinType) -> Arc<IntervalJoinConfig> {
    let spec = spec(join_type);
    let config = IntervalJoinConfig {
        left_time: col("t", &spec.left_schema).unwrap(),
        right_time: col("t", &spec.right_schema).unwrap(),
        spec,
        lower: -2000 * MS,
        upper: 3000 * MS,
    };
    config.validate().unwrap();
    Arc::new(config)
}

fn interval_within(l: &Row, r: &Row) -> bool {
    (-2000..=3000).contains(&(r.1 - l.1))
}

/// 60 seconds of rows on both sides, up to 0.9 s out of order, keys 0..12
/// (some NULL), a watermark of `t - 1 s` after every second: no row is late.
fn interval_input() -> (Vec<Step>, Vec<Row>, Vec<Row>) {
    let mut rng = Lcg(7);
    let (mut steps, mut left, mut right) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..60i64 {
        for (value, input, all) in [("lv", 0, &mut left), ("rv", 1, &mut right)] {
            let rows: Vec<Row> = (0..rng.next(6) as i64)
                .map(|i| {
                    let k = rng.next(13) as i64;
                    let key = (k != 12).then_some(k);
                    let t = s * 1000 + 1000 - rng.next(900) as i64;
                    (key, t, format!("{value}{s}-{i}"))
                })
                .collect();
            all.extend(rows.iter().cloned());
            steps.push(Step::Batch(input, batch(value, &rows, None)));
        }
        steps.push(Step::Watermark(s * 1000 * MS));
    }
    (steps, left, right)
}

fn interval_operator(join_type: JoinType) -> Box<dyn Operator> {
    Box::new(IntervalJoin::new(interval_config(join_type)).unwrap())
}

#[tokio::test]
async fn interval_joins_match_a_brute_force_join() {
    let (steps, left, right) = interval_input();
    for join_type in [JoinType::Inner, JoinType::Left, JoinType::Right, JoinType::Full] {
        let h = Harness::new();
        let mut op = h.start(interval_operator(join_type), 0, 1, None, None).await;
        let mut out = Vec::new();
        feed(op.as_mut(), &steps, &mut out).await;
        finish(op.as_mut(), &mut out).await;
        let changes = joined(&out);
        assert!(changes.iter().all(|(k, _)| *k == RowKind::Insert), "append-only");
        let expected = brute_force(join_type, &left, &right, interval_within);
        assert!(expected.len() > 50, "{join_type}: a meaningful test");
        assert_eq!(materialize(&changes), expected, "{join_type}");
    }
}

#[tokio::test]
async fn interval_join_holds_back_the_watermark_and_expires_rows() {
    let h = Harness::new();
    let mut op = h.start(interval_operator(JoinType::Left), 0, 1, None, None).await;
    let mut o = Output::default();
    let l = batch(
        "lv",
        &[(Some(1), 10_000, "a".into()), (Some(2), 10_000, "b".into())],
        None,
    );
    op.process_batch(0, l, &mut o).await.unwrap();
    let r = batch("rv", &[(Some(1), 12_000, "x".into())], None);
    op.process_batch(1, r, &mut o).await.unwrap();
    // `b` may still match a right row until the watermark reaches 13 s.
    op.process_watermark(12_999 * MS, &mut o).await.unwrap();
    let rows_before = o.pending_rows();
    op.process_watermark(13_000 * MS, &mut o).await.unwrap();
    assert_eq!(
        (rows_before, o.pending_rows()),
        (1, 2),
        "b is padded at 13 s, not before"
    );
    let messages = o.into_messages();
    let watermarks: Vec<EventTime> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Watermark(weir_engine::message::Watermark::EventTime(t)) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(
        watermarks,
        [9_999 * MS, 10_000 * MS],
        "held back by max(upper, -lower)"
    );
    let batches: Vec<RecordBatch> = messages
        .into_iter()
        .filter_map(|m| match m {
            Message::Batch(b) => Some(b),
            _ => None,
        })
        .collect();
    let rows: Vec<Joined> = joined(&batches).into_iter().map(|(_, j)| j).collect();
    assert_eq!(
        rows,
        [
            (
                Some((Some(1), 10_000, "a".into())),
                Some((Some(1), 12_000, "x".into()))
            ),
            (Some((Some(2), 10_000, "b".into())), None),
        ],
        "the pair at once; the unmatched row when the watermark passes 10 s + upper"
    );

    // A late left row joins with what is still stored (right rows stay until
    // the watermark reaches r.t + 2 s) and, if unmatched, is padded at once.
    let mut o = Output::default();
    let late = batch(
        "lv",
        &[(Some(1), 11_000, "late".into()), (Some(3), 1_000, "gone".into())],
        None,
    );
    op.process_batch(0, late, &mut o).await.unwrap();
    let mut batches = Vec::new();
    collect(o, &mut batches);
    let rows: Vec<Joined> = joined(&batches).into_iter().map(|(_, j)| j).collect();
    assert_eq!(
        rows,
        [
            (
                Some((Some(1), 11_000, "late".into())),
                Some((Some(1), 12_000, "x".into()))
            ),
            (Some((Some(3), 1_000, "gone".into())), None),
        ]
    );
}

#[tokio::test]
async fn interval_join_restores_its_rows() {
    let (steps, _, _) = interval_input();
    let (whole, parts) =
        interrupted_and_not(|| interval_operator(JoinType::Full), &steps, &[30, 61, 62], None).await;
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

#[tokio::test]
async fn interval_join_rescales_from_one_subtask_to_three() {
    let (steps, _, _) = interval_input();
    let (whole, parts) = rescaled(|| interval_operator(JoinType::Full), &steps, &[70], "k", 3).await;
    assert_eq!(sorted(rows(&parts)), sorted(rows(&whole)));
}

// ---------------------------------------------------------------- regular join

fn stream_operator(join_type: JoinType, left_updating: bool, right_updating: bool) -> Box<dyn Operator> {
    let config = StreamJoinConfig {
        spec: spec(join_type),
        left_updating,
        right_updating,
        expiry: Default::default(),
    };
    Box::new(StreamJoin::new(Arc::new(config)).unwrap())
}

/// Changelogs on both sides: rows inserted (some twice), and later some
/// retracted; keys 0..6, some NULL. Also returns the rows left at the end
/// and after each step.
fn changelog_input() -> (Vec<Step>, Vec<Inputs>) {
    let mut rng = Lcg(11);
    let (mut live_left, mut live_right): (Vec<Row>, Vec<Row>) = (Vec::new(), Vec::new());
    let (mut steps, mut states) = (Vec::new(), Vec::new());
    for s in 0..40i64 {
        for (value, input) in [("lv", 0), ("rv", 1)] {
            let live = if input == 0 {
                &mut live_left
            } else {
                &mut live_right
            };
            let (mut rows, mut ops) = (Vec::new(), Vec::new());
            for i in 0..rng.next(5) as i64 {
                let k = rng.next(7) as i64;
                let row: Row = ((k != 6).then_some(k), s * 1000, format!("{value}{s}-{}", i % 3));
                for _ in 0..1 + rng.next(4) / 3 {
                    rows.push(row.clone());
                    ops.push(RowKind::Insert);
                    live.push(row.clone());
                }
            }
            for _ in 0..rng.next(3) {
                if live.is_empty() {
                    break;
                }
                let row = live.remove(rng.next(live.len() as u64) as usize);
                rows.push(row);
                ops.push(if rng.next(2) == 0 {
                    RowKind::Delete
                } else {
                    RowKind::UpdateBefore
                });
            }
            steps.push(Step::Batch(input, batch(value, &rows, Some(&ops))));
            states.push((live_left.clone(), live_right.clone()));
        }
    }
    (steps, states)
}

#[tokio::test]
async fn regular_joins_are_the_join_of_their_inputs_after_every_batch() {
    let (steps, states) = changelog_input();
    for join_type in [JoinType::Inner, JoinType::Left, JoinType::Right, JoinType::Full] {
        let h = Harness::new();
        let mut op = h
            .start(stream_operator(join_type, true, true), 0, 1, None, None)
            .await;
        let mut out = Vec::new();
        for (step, (left, right)) in steps.iter().zip(&states) {
            feed(op.as_mut(), std::slice::from_ref(step), &mut out).await;
            let expected = brute_force(join_type, left, right, |_, _| true);
            assert_eq!(materialize(&joined(&out)), expected, "{join_type}");
        }
        assert!(
            joined(&out).iter().any(|(k, _)| !k.is_accumulate()),
            "retractions happen"
        );
    }
}

#[tokio::test]
async fn an_inner_join_of_append_only_inputs_is_append_only() {
    let h = Harness::new();
    let mut op = h
        .start(stream_operator(JoinType::Inner, false, false), 0, 1, None, None)
        .await;
    let mut out = Vec::new();
    let steps = [
        Step::Batch(
            0,
            batch("lv", &[(Some(1), 0, "a".into()), (Some(1), 0, "a".into())], None),
        ),
        Step::Batch(
            1,
            batch("rv", &[(Some(1), 0, "x".into()), (Some(2), 0, "y".into())], None),
        ),
        Step::Batch(0, batch("lv", &[(Some(2), 0, "b".into())], None)),
    ];
    feed(op.as_mut(), &steps, &mut out).await;
    assert!(out.iter().all(|b| b.num_columns() == 6), "no row-kind column");
    assert_eq!(joined(&out).len(), 3, "a (twice) with x, b with y");
}

#[tokio::test]
async fn regular_join_restores_its_rows() {
    let (steps, _) = changelog_input();
    let make = || stream_operator(JoinType::Full, true, true);
    let (whole, parts) = interrupted_and_not(make, &steps, &[21, 50, 51], None).await;
    // Deterministic: the same changelog, in the same order.
    assert_eq!(rows(&parts), rows(&whole));
}

#[tokio::test]
async fn regular_join_rescales_from_one_subtask_to_two() {
    let (steps, states) = changelog_input();
    let make = || stream_operator(JoinType::Left, true, true);
    let (_, parts) = rescaled(make, &steps, &[33], "k", 2).await;
    let (left, right) = states.last().unwrap();
    // Rows with a NULL key are routed by the NULL hash: both runs agree.
    assert_eq!(
        materialize(&joined(&parts)),
        brute_force(JoinType::Left, left, right, |_, _| true)
    );
}

#[tokio::test]
async fn regular_join_rows_expire_after_the_ttl() {
    let h = Harness::new();
    let ttl = Some(Duration::from_millis(50));
    let mut op = h
        .start(stream_operator(JoinType::Left, false, false), 0, 1, ttl, None)
        .await;
    let mut out = Vec::new();
    feed(
        op.as_mut(),
        &[Step::Batch(0, batch("lv", &[(Some(1), 0, "a".into())], None))],
        &mut out,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    feed(
        op.as_mut(),
        &[Step::Batch(1, batch("rv", &[(Some(1), 0, "x".into())], None))],
        &mut out,
    )
    .await;
    let rows: Vec<(RowKind, Joined)> = joined(&out);
    assert_eq!(
        rows,
        [(RowKind::Insert, (Some((Some(1), 0, "a".into())), None))],
        "the expired left row neither matches nor is retracted"
    );
}

// ------------------------------------ regular join of append-only inputs (in memory)

/// Inserts only, on both sides: keys 0..6 (6 is NULL), some rows twice,
/// times growing by step. Also returns the rows received after each step.
fn append_only_input() -> (Vec<Step>, Vec<Inputs>) {
    let mut rng = Lcg(5);
    let (mut left, mut right): (Vec<Row>, Vec<Row>) = (Vec::new(), Vec::new());
    let (mut steps, mut states) = (Vec::new(), Vec::new());
    for s in 0..40i64 {
        for (value, input) in [("lv", 0), ("rv", 1)] {
            let received = if input == 0 { &mut left } else { &mut right };
            let mut rows = Vec::new();
            for i in 0..rng.next(6) as i64 {
                let k = rng.next(7) as i64;
                let row: Row = (
                    (k != 6).then_some(k),
                    s * 1000 + rng.next(3) as i64 * 700,
                    format!("{value}{s}-{i}"),
                );
                for _ in 0..1 + rng.next(4) / 3 {
                    rows.push(row.clone());
                    received.push(row.clone());
                }
            }
            steps.push(Step::Batch(input, batch(value, &rows, None)));
            states.push((left.clone(), right.clone()));
        }
    }
    (steps, states)
}

/// An inner join on `k` with the residual condition `l.t <= r.t`.
fn append_only_operator() -> Box<dyn Operator> {
    append_only_join(Default::default())
}

/// [`append_only_operator`] whose right rows expire by watermark at the
/// least of `bounds`: `t`, as the planner derives from `l.t <= r.t` with
/// `l.t` the left input's rowtime attribute, alone or beside a looser bound.
fn expiring_operator(bounds: &[ExpiryBound]) -> Box<dyn Operator> {
    append_only_join([Vec::new(), bounds.to_vec()])
}

/// The right rows' bounds of [`expiring_operator`]: one (a `max` per batch),
/// and two whose least is the same (a bound per row).
fn right_row_bounds() -> [Vec<ExpiryBound>; 2] {
    let at_t = ExpiryBound { column: 1, offset: 0 };
    let hour_later = ExpiryBound {
        column: 1,
        offset: 3_600_000_000_000,
    };
    [vec![at_t], vec![hour_later, at_t]]
}

fn append_only_join(expiry: [Vec<ExpiryBound>; 2]) -> Box<dyn Operator> {
    let mut spec = spec(JoinType::Inner);
    let joined = spec.output_schema.clone();
    spec.filter = Some(
        binary(
            col("t", &joined).unwrap(),
            datafusion::logical_expr::Operator::LtEq,
            col("r_t", &joined).unwrap(),
            &joined,
        )
        .unwrap(),
    );
    let config = StreamJoinConfig {
        spec,
        left_updating: false,
        right_updating: false,
        expiry,
    };
    Box::new(StreamJoin::new(Arc::new(config)).unwrap())
}

fn append_only_expected((left, right): &Inputs) -> BTreeMap<Joined, usize> {
    brute_force(JoinType::Inner, left, right, |l, r| l.1 <= r.1)
}

#[tokio::test]
async fn append_only_inner_joins_are_the_join_of_their_inputs_after_every_batch() {
    let (steps, states) = append_only_input();
    let h = Harness::new();
    let mut op = h.start(append_only_operator(), 0, 1, None, None).await;
    let mut out = Vec::new();
    for (step, state) in steps.iter().zip(&states) {
        feed(op.as_mut(), std::slice::from_ref(step), &mut out).await;
        assert_eq!(materialize(&joined(&out)), append_only_expected(state));
    }
    assert!(out.iter().all(|b| b.num_columns() == 6), "no row-kind column");
    let last = append_only_expected(states.last().unwrap());
    assert!(
        last.values().sum::<usize>() > 200 && last.values().any(|&n| n > 1),
        "{last:?}"
    );
}

/// Checkpoints 1 and 2 are incremental: the second writes only the rows
/// received since the first and refers to the first's file; a restore from
/// the second goes on as if never interrupted.
#[tokio::test]
async fn append_only_inner_join_writes_each_row_once_and_restores() {
    let (steps, states) = append_only_input();
    let h = Harness::incremental();
    let mut out = Vec::new();
    let mut op = h.start(append_only_operator(), 0, 1, None, None).await;
    feed(op.as_mut(), &steps[..30], &mut out).await;
    let first = snapshot(op.as_mut(), 1).await;
    feed(op.as_mut(), &steps[30..50], &mut out).await;
    let second = snapshot(op.as_mut(), 2).await;
    let (first_files, second_files) = (shared_batch_files(&first), shared_batch_files(&second));
    assert_eq!(first_files.len(), 1, "{first:?}");
    assert_eq!(second_files.len(), 2, "{second:?}");
    assert!(second_files.contains(&first_files[0]));
    assert_eq!(second.entries, 0, "nothing in the backend: {second:?}");
    feed(op.as_mut(), &steps[50..], &mut Vec::new()).await;
    drop(op);

    let mut op = h.start(append_only_operator(), 0, 1, None, Some(&second)).await;
    feed(op.as_mut(), &steps[50..], &mut out).await;
    assert_eq!(
        materialize(&joined(&out)),
        append_only_expected(states.last().unwrap())
    );
}

#[tokio::test]
async fn append_only_inner_join_rescales_from_one_subtask_to_three() {
    let (steps, states) = append_only_input();
    let (whole, parts) = rescaled(append_only_operator, &steps, &[20, 45], "k", 3).await;
    let expected = append_only_expected(states.last().unwrap());
    assert_eq!(materialize(&joined(&whole)), expected);
    assert_eq!(materialize(&joined(&parts)), expected);
}

/// A TTL puts the join in the backend's layout (entries); restored without
/// one, it moves them into memory, and back into entries when restored with
/// one again: a savepoint of either layout restores into the other (as
/// between the `hashmap` and `rocksdb` backends).
#[tokio::test]
async fn append_only_inner_join_moves_its_rows_between_layouts_on_restore() {
    let (steps, states) = append_only_input();
    let ttl = Some(Duration::from_secs(3600));
    let h = Harness::new();
    let mut out = Vec::new();
    let mut op = h.start(append_only_operator(), 0, 1, ttl, None).await;
    feed(op.as_mut(), &steps[..25], &mut out).await;
    let entries = snapshot(op.as_mut(), 1).await;
    assert!(entries.entries > 0 && entries.batches.is_empty(), "{entries:?}");
    drop(op);

    let mut op = h.start(append_only_operator(), 0, 1, None, Some(&entries)).await;
    feed(op.as_mut(), &steps[25..50], &mut out).await;
    let in_memory = snapshot(op.as_mut(), 2).await;
    assert!(
        in_memory.entries == 0 && !in_memory.batches.is_empty(),
        "{in_memory:?}"
    );
    drop(op);

    let mut op = h.start(append_only_operator(), 0, 1, ttl, Some(&in_memory)).await;
    feed(op.as_mut(), &steps[50..], &mut out).await;
    let back = snapshot(op.as_mut(), 3).await;
    assert!(back.entries > 0 && back.batches.is_empty(), "{back:?}");
    assert_eq!(
        materialize(&joined(&out)),
        append_only_expected(states.last().unwrap())
    );
}

/// [`append_only_input`] with a watermark after each step's two batches:
/// just below the next step's times, so no row is late.
fn append_only_input_with_watermarks() -> (Vec<Step>, Vec<Option<Inputs>>) {
    let (steps, states) = append_only_input();
    let mut out = (Vec::new(), Vec::new());
    for (i, (step, state)) in steps.into_iter().zip(states).enumerate() {
        out.0.push(step);
        out.1.push(Some(state));
        if i % 2 == 1 {
            let next_step_ms = (i as i64 / 2 + 1) * 1000;
            out.0.push(Step::Watermark((next_step_ms - 1) * 1_000_000));
            out.1.push(None);
        }
    }
    out
}

/// Right rows expire once the watermark passes their `t`: rows that are not
/// late still get every match (the result is the join of all rows after
/// every batch), through an incremental checkpoint and a restore; a late
/// left row finds nothing where the watermark dropped the right rows, also
/// after the restore (the expired chunks, or entries, are gone from the
/// checkpoint), while the join without bounds still matches it. Both
/// layouts: in memory, and the backend's (which a TTL selects).
#[tokio::test]
async fn append_only_inner_join_drops_rows_the_watermark_has_passed() {
    let (steps, states) = append_only_input_with_watermarks();
    let layouts = [None, Some(Duration::from_secs(3600))];
    for (ttl, bounds) in layouts
        .into_iter()
        .flat_map(|t| right_row_bounds().map(|b| (t, b)))
    {
        let h = Harness::incremental();
        let mut op = h.start(expiring_operator(&bounds), 0, 1, ttl, None).await;
        let mut out = Vec::new();
        let mut last = None;
        for (i, (step, state)) in steps.iter().zip(&states).enumerate() {
            feed(op.as_mut(), std::slice::from_ref(step), &mut out).await;
            if let Some(state) = state {
                assert_eq!(
                    materialize(&joined(&out)),
                    append_only_expected(state),
                    "step {i}"
                );
                last = Some(state);
            }
            if i == 40 {
                snapshot(op.as_mut(), 1).await;
            }
        }
        let last = append_only_expected(last.unwrap());
        assert!(last.values().sum::<usize>() > 200, "{last:?}");
        // Past every right row (the last batch had rows above the last watermark).
        let past_all = Step::Watermark(100_000 * 1_000_000);
        feed(op.as_mut(), &[past_all], &mut out).await;
        let checkpoint = snapshot(op.as_mut(), 2).await;
        if ttl.is_some() {
            // Only the left rows are left: no right row, no expiry record.
            assert_eq!(checkpoint.entries, keyed_left_rows(&steps), "{checkpoint:?}");
        }

        // Keys 0..6 at time 0: late, and every right row is behind the watermark.
        let late: Vec<Row> = (0..6).map(|k| (Some(k), 0, format!("late{k}"))).collect();
        let late = [Step::Batch(0, batch("lv", &late, None))];
        let matches_of_late = |out: &[RecordBatch]| joined(out).len();
        let (mut fresh, mut restored, mut unbounded) = (Vec::new(), Vec::new(), Vec::new());
        feed(op.as_mut(), &late, &mut fresh).await;
        drop(op);
        let mut op = h
            .start(expiring_operator(&bounds), 0, 1, ttl, Some(&checkpoint))
            .await;
        feed(op.as_mut(), &late, &mut restored).await;
        let mut op = h.start(append_only_operator(), 0, 1, None, None).await;
        feed(op.as_mut(), &steps, &mut Vec::new()).await;
        feed(op.as_mut(), &late, &mut unbounded).await;
        assert_eq!(matches_of_late(&fresh), 0, "{fresh:?}");
        assert_eq!(matches_of_late(&restored), 0, "{restored:?}");
        assert!(matches_of_late(&unbounded) > 10, "{unbounded:?}");
    }
}

/// Rows of the left input (input 0) with a key, in `steps`.
fn keyed_left_rows(steps: &[Step]) -> u64 {
    let mut n = 0;
    for step in steps {
        if let Step::Batch(0, b) = step {
            n += (b.num_rows() - b.column(0).null_count()) as u64;
        }
    }
    n
}

/// A join with bounds in the backend's layout (under a TTL) restored from
/// rows without expiry records (a join without bounds wrote them: in
/// memory, and in the backend's layout, as a weir did before that layout
/// dropped rows) indexes them by their bounds, so a watermark past them
/// drops them: a late left row then matches nothing, and only the left
/// rows are left.
#[tokio::test]
async fn rows_restored_without_expiry_records_expire() {
    let (steps, _) = append_only_input_with_watermarks();
    let ttl = Some(Duration::from_secs(3600));
    for writer_ttl in [None, ttl] {
        let h = Harness::new();
        let mut op = h.start(append_only_operator(), 0, 1, writer_ttl, None).await;
        feed(op.as_mut(), &steps, &mut Vec::new()).await;
        let written = snapshot(op.as_mut(), 1).await;
        drop(op);
        let bounds = [ExpiryBound { column: 1, offset: 0 }];
        let mut op = h
            .start(expiring_operator(&bounds), 0, 1, ttl, Some(&written))
            .await;
        let late: Vec<Row> = (0..6).map(|k| (Some(k), 0, format!("late{k}"))).collect();
        let mut out = Vec::new();
        feed(op.as_mut(), &[Step::Batch(0, batch("lv", &late, None))], &mut out).await;
        assert!(
            joined(&out).len() > 10,
            "before the watermark, the restored rows match"
        );
        out.clear();
        let past_all = Step::Watermark(100_000 * 1_000_000);
        feed(
            op.as_mut(),
            &[past_all, Step::Batch(0, batch("lv", &late, None))],
            &mut out,
        )
        .await;
        assert_eq!(joined(&out).len(), 0, "{out:?}");
        let after = snapshot(op.as_mut(), 2).await;
        let late_rows = 2 * late.len() as u64;
        assert_eq!(after.entries, keyed_left_rows(&steps) + late_rows, "{after:?}");
    }
}

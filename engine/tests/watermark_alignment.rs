//! Watermark alignment (`scan.watermark.alignment.max-drift`) end to end: a
//! source subtask that reads faster than its sibling is held within the drift
//! of it in event time, and without alignment it is not; so is a source
//! faster than another of its alignment group (`scan.watermark.alignment.group`).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::physical_expr::expressions::Column;
use parking_lot::Mutex;
use weir_engine::graph::{Edge, JobGraph, Node, NodeKind, Partitioning};
use weir_engine::operator::{Operator, Output};
use weir_engine::operators::factory::FnOperatorFactory;
use weir_engine::runtime::{JobStatus, start_job};
use weir_engine::source::{Source, SourceEvent, SourceSpec};
use weir_engine::watermark::WatermarkStrategy;

/// Rows a subtask produces, one per batch, a second of event time apart.
const ROWS: i64 = 30;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("subtask", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]))
}

/// Subtask `i` emits row `n` at event time `n` s, pausing `pauses[i]` before
/// each; its rows' `subtask` column is `first_id + i`.
#[derive(Debug, Clone)]
struct PacedSource {
    pauses: Vec<Duration>,
    first_id: i64,
}

struct PacedSubtask {
    subtask: i64,
    pause: Duration,
    next: i64,
}

impl SourceSpec for PacedSource {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create(&self, subtask: usize, _parallelism: usize) -> Result<Box<dyn Source>> {
        Ok(Box::new(PacedSubtask {
            subtask: self.first_id + subtask as i64,
            pause: self.pauses[subtask],
            next: 0,
        }))
    }
}

#[async_trait]
impl Source for PacedSubtask {
    async fn poll_next(&mut self) -> Result<SourceEvent> {
        tokio::time::sleep(self.pause).await;
        if self.next >= ROWS {
            return Ok(SourceEvent::Finished);
        }
        let t = self.next * 1000;
        self.next += 1;
        Ok(SourceEvent::Batch(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![self.subtask])),
                Arc::new(TimestampMillisecondArray::from(vec![t])),
            ],
        )?))
    }
}

/// Records `(subtask, event time)` of every row, in arrival order.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(i64, i64)>>>);

#[async_trait]
impl Operator for Arrivals {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let subtasks = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64");
        let times = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("timestamps");
        let mut arrivals = self.0.lock();
        arrivals.extend(
            subtasks
                .values()
                .iter()
                .copied()
                .zip(times.values().iter().copied()),
        );
        out.emit(batch);
        Ok(())
    }
}

/// How the fast and the slow reader are laid out.
#[derive(Clone, Copy)]
enum Readers {
    /// Two subtasks of one source.
    Subtasks,
    /// Two sources of one subtask each, aligned each to itself or, with a
    /// group, to each other.
    Sources(Option<&'static str>),
}

fn source_node(
    id: &str,
    pauses: Vec<Duration>,
    first_id: i64,
    drift: Option<Duration>,
    group: Option<&str>,
) -> Node {
    Node {
        operator_id: id.into(),
        name: id.into(),
        parallelism: pauses.len(),
        kind: NodeKind::Source {
            spec: Arc::new(PacedSource { pauses, first_id }),
            watermark: Some(WatermarkStrategy::new(
                Arc::new(Column::new("ts", 1)),
                "ts",
                &schema(),
            )),
            idle_timeout: None,
            alignment_max_drift: drift,
            alignment_group: group.map(str::to_string),
        },
        schema: schema(),
        num_inputs: 0,
    }
}

/// Runs a fast reader (no pause) and a slow one (3 ms per row) into one
/// recorder; returns how far (ms of event time) the fast one got ahead of
/// the slow one before the slow one finished.
async fn greatest_lead(max_drift: Option<Duration>, readers: Readers) -> i64 {
    let (fast, slow) = (Duration::ZERO, Duration::from_millis(3));
    let sources = match readers {
        Readers::Subtasks => vec![source_node("source", vec![fast, slow], 0, max_drift, None)],
        Readers::Sources(group) => vec![
            source_node("fast", vec![fast], 0, max_drift, group),
            source_node("slow", vec![slow], 1, max_drift, group),
        ],
    };
    let arrivals = Arrivals::default();
    let recorder = arrivals.clone();
    let sink = Node {
        operator_id: "arrivals".into(),
        name: "Arrivals".into(),
        parallelism: 1,
        kind: NodeKind::Operator(FnOperatorFactory::new("arrivals", move |_, _| {
            Ok(Box::new(recorder.clone()) as Box<dyn Operator>)
        })),
        schema: schema(),
        num_inputs: 1,
    };
    let n = sources.len();
    let mut nodes = sources;
    nodes.push(sink);
    let graph = JobGraph {
        name: "aligned".into(),
        nodes,
        edges: (0..n)
            .map(|from| Edge {
                from,
                to: n,
                input: 0,
                partitioning: Partitioning::Single,
            })
            .collect(),
        max_parallelism: 128,
    };
    let job = start_job(graph, "aligned".into()).expect("a valid graph");
    assert_eq!(job.wait().await.expect("the job runs"), JobStatus::Finished);
    let arrivals = arrivals.0.lock().clone();
    assert_eq!(arrivals.len() as i64, 2 * ROWS, "every row arrives");
    let (mut fast, mut slow) = (-1i64, -1i64);
    let mut lead = 0;
    for (subtask, t) in arrivals {
        if subtask == 0 {
            fast = fast.max(t);
        } else {
            slow = slow.max(t);
        }
        if (0..(ROWS - 1) * 1000).contains(&slow) {
            lead = lead.max(fast - slow);
        }
    }
    lead
}

#[tokio::test]
async fn a_fast_subtask_waits_within_the_drift_of_a_slow_one() {
    let unaligned = greatest_lead(None, Readers::Subtasks).await;
    assert!(
        unaligned >= 10_000,
        "without alignment the fast subtask runs ahead (led by {unaligned} ms)"
    );
    let aligned = greatest_lead(Some(Duration::from_secs(2)), Readers::Subtasks).await;
    // Up to the drift, plus the row read before its watermark was known.
    assert!(
        (1_000..=3_000).contains(&aligned),
        "aligned to 2 s, led by {aligned} ms"
    );
}

#[tokio::test]
async fn sources_of_one_alignment_group_wait_for_each_other() {
    let drift = Some(Duration::from_secs(2));
    let apart = greatest_lead(drift, Readers::Sources(None)).await;
    assert!(
        apart >= 10_000,
        "each source aligned only to itself: the fast one runs ahead (led by {apart} ms)"
    );
    let grouped = greatest_lead(drift, Readers::Sources(Some("inputs"))).await;
    assert!(
        (1_000..=3_000).contains(&grouped),
        "one group aligned to 2 s, led by {grouped} ms"
    );
}

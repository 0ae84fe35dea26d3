//! The runtime end to end: barriers aligned across inputs, watermarks
//! min-merged, chaining, failure reporting, stop and cancel.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::expressions::Column;
use parking_lot::Mutex;
use weir_engine::graph::{Edge, JobGraph, Node, NodeKind, Partitioning};
use weir_engine::message::{Barrier, BarrierKind, EventTime};
use weir_engine::operator::{Operator, Output};
use weir_engine::operators::factory::FnOperatorFactory;
use weir_engine::runtime::{JobStatus, start_job};
use weir_engine::source::{Source, SourceEvent, SourceSpec};
use weir_engine::watermark::WatermarkStrategy;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("v", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]))
}

/// Emits `batches` batches of one row each (value = index, ts = index * 1000 ms),
/// waiting `pause` between them; then finishes, or idles forever if `endless`.
#[derive(Debug, Clone)]
struct TestSource {
    batches: i64,
    pause: Duration,
    endless: bool,
    offset: i64,
}

struct TestSourceTask {
    spec: TestSource,
    next: i64,
}

impl SourceSpec for TestSource {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn is_bounded(&self) -> bool {
        !self.endless
    }
    fn create(&self, _subtask: usize, _parallelism: usize) -> Result<Box<dyn Source>> {
        Ok(Box::new(TestSourceTask {
            spec: self.clone(),
            next: 0,
        }))
    }
}

#[async_trait]
impl Source for TestSourceTask {
    async fn poll_next(&mut self) -> Result<SourceEvent> {
        tokio::time::sleep(self.spec.pause).await;
        if self.next >= self.spec.batches {
            if self.spec.endless {
                std::future::pending::<()>().await;
            }
            return Ok(SourceEvent::Finished);
        }
        let v = self.next + self.spec.offset;
        self.next += 1;
        Ok(SourceEvent::Batch(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![v])),
                Arc::new(TimestampMillisecondArray::from(vec![v * 1000])),
            ],
        )?))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Row(usize, i64),
    Watermark(EventTime),
    Snapshot(u64),
    Finish,
}

#[derive(Clone)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    fail_on: Option<i64>,
}

#[async_trait]
impl Operator for Recorder {
    async fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64");
        for v in values.values().iter() {
            if self.fail_on == Some(*v) {
                return Err(DataFusionError::Execution(format!("bad value {v}")));
            }
            self.events.lock().push(Event::Row(input, *v));
        }
        out.emit(batch);
        Ok(())
    }
    async fn process_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        self.events.lock().push(Event::Watermark(watermark));
        out.emit_watermark(watermark);
        Ok(())
    }
    async fn snapshot_state(
        &mut self,
        barrier: Barrier,
        _out: &mut Output,
    ) -> Result<weir_engine::state::OperatorSnapshot> {
        self.events.lock().push(Event::Snapshot(barrier.checkpoint_id));
        Ok(Default::default())
    }
    async fn finish(&mut self, _out: &mut Output) -> Result<()> {
        self.events.lock().push(Event::Finish);
        Ok(())
    }
}

fn source_node(name: &str, spec: TestSource) -> Node {
    source_node_idle(name, spec, None)
}

fn source_node_idle(name: &str, spec: TestSource, idle_timeout: Option<Duration>) -> Node {
    let watermark = WatermarkStrategy::new(Arc::new(Column::new("ts", 1)), "ts", &schema());
    Node {
        operator_id: name.into(),
        name: name.into(),
        parallelism: 1,
        kind: NodeKind::Source {
            spec: Arc::new(spec),
            watermark: Some(watermark),
            idle_timeout,
            alignment_max_drift: None,
            alignment_group: None,
        },
        schema: schema(),
        num_inputs: 0,
    }
}

/// Two sources into one two-input recorder.
fn two_input_graph(a: TestSource, b: TestSource, recorder: Recorder) -> JobGraph {
    let op = Node {
        operator_id: "recorder".into(),
        name: "Recorder".into(),
        parallelism: 1,
        kind: NodeKind::Operator(FnOperatorFactory::new("recorder", move |_, _| {
            Ok(Box::new(recorder.clone()) as Box<dyn Operator>)
        })),
        schema: schema(),
        num_inputs: 2,
    };
    JobGraph {
        name: "test".into(),
        nodes: vec![source_node("a", a), source_node("b", b), op],
        edges: vec![
            Edge {
                from: 0,
                to: 2,
                input: 0,
                partitioning: Partitioning::Forward,
            },
            Edge {
                from: 1,
                to: 2,
                input: 1,
                partitioning: Partitioning::Forward,
            },
        ],
        max_parallelism: 128,
    }
}

fn recorder(fail_on: Option<i64>) -> Recorder {
    Recorder {
        events: Arc::new(Mutex::new(Vec::new())),
        fail_on,
    }
}

#[tokio::test]
async fn watermark_is_the_minimum_of_the_inputs_and_bounded_jobs_end() {
    let r = recorder(None);
    let fast = TestSource {
        batches: 5,
        pause: Duration::from_millis(1),
        endless: false,
        offset: 0,
    };
    let slow = TestSource {
        batches: 3,
        pause: Duration::from_millis(5),
        endless: false,
        offset: 100,
    };
    let job = start_job(two_input_graph(fast, slow, r.clone()), "j1".into()).unwrap();
    assert_eq!(job.wait().await.unwrap(), JobStatus::Finished);
    let events = r.events.lock().clone();
    let watermarks: Vec<i64> = events
        .iter()
        .filter_map(|e| {
            if let Event::Watermark(w) = e {
                Some(*w)
            } else {
                None
            }
        })
        .collect();
    assert!(
        watermarks.windows(2).all(|w| w[0] < w[1]),
        "watermarks strictly increase: {watermarks:?}"
    );
    // Source a covers 0-4 s, b 100-102 s: the minimum is a's until a ends (its
    // final +inf no longer holds anything back), then b's, then +inf.
    let s = 1_000_000_000i64;
    let expected: Vec<i64> = (0..=4)
        .chain(100..=102)
        .map(|t| t * s)
        .chain([i64::MAX])
        .collect();
    assert!(watermarks.iter().all(|w| expected.contains(w)), "{watermarks:?}");
    assert!(
        watermarks.contains(&(4 * s)) && watermarks.contains(&(102 * s)),
        "{watermarks:?}"
    );
    assert_eq!(watermarks.last(), Some(&i64::MAX));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Row(..))).count(), 8);
    assert_eq!(events.last(), Some(&Event::Finish));
}

#[tokio::test]
async fn barriers_are_aligned_across_inputs() {
    let r = recorder(None);
    let a = TestSource {
        batches: 1_000,
        pause: Duration::from_millis(2),
        endless: true,
        offset: 0,
    };
    let b = TestSource {
        batches: 1_000,
        pause: Duration::from_millis(3),
        endless: true,
        offset: 10_000,
    };
    let job = start_job(two_input_graph(a, b, r.clone()), "j2".into()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    job.inject_barrier(Barrier {
        checkpoint_id: 1,
        kind: BarrierKind::Checkpoint,
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    job.inject_barrier(Barrier {
        checkpoint_id: 2,
        kind: BarrierKind::Checkpoint,
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    job.stop();
    assert_eq!(job.wait().await.unwrap(), JobStatus::Stopped);
    let events = r.events.lock().clone();
    let snapshots: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Snapshot(_)))
        .collect();
    assert_eq!(snapshots, vec![&Event::Snapshot(1), &Event::Snapshot(2)]);
    // Each input's rows are in order, and no input is seen both before and after a
    // snapshot out of order: rows of input i after snapshot k are all larger than before.
    for input in 0..2 {
        let mut last = i64::MIN;
        for e in &events {
            if let Event::Row(i, v) = e
                && *i == input
            {
                assert!(*v > last, "rows of input {input} in order");
                last = *v;
            }
        }
    }
    assert_eq!(
        events.last(),
        Some(&Event::Finish),
        "a stopped job finishes its operators"
    );
}

#[tokio::test]
async fn an_operator_error_fails_the_job_naming_the_operator() {
    let r = recorder(Some(2));
    let a = TestSource {
        batches: 10,
        pause: Duration::from_millis(1),
        endless: false,
        offset: 0,
    };
    let b = TestSource {
        batches: 10,
        pause: Duration::from_millis(1),
        endless: false,
        offset: 100,
    };
    let job = start_job(two_input_graph(a, b, r), "j3".into()).unwrap();
    let err = job.wait().await.unwrap_err().to_string();
    assert!(err.contains("Recorder") && err.contains("bad value 2"), "{err}");
    assert!(matches!(job.status(), JobStatus::Failed(_)));
}

#[tokio::test]
async fn cancel_aborts_an_unbounded_job() {
    let r = recorder(None);
    let a = TestSource {
        batches: 1,
        pause: Duration::from_millis(1),
        endless: true,
        offset: 0,
    };
    let b = TestSource {
        batches: 1,
        pause: Duration::from_millis(1),
        endless: true,
        offset: 0,
    };
    let job = start_job(two_input_graph(a, b, r), "j4".into()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    job.cancel();
    assert_eq!(job.wait().await.unwrap(), JobStatus::Cancelled);
}

#[tokio::test]
async fn an_idle_source_stops_holding_back_the_watermark() {
    let r = recorder(None);
    // `quiet` emits one row (t = 0 s) then nothing; `busy` advances to 50 s.
    let quiet = TestSource {
        batches: 1,
        pause: Duration::from_millis(1),
        endless: true,
        offset: 0,
    };
    let busy = TestSource {
        batches: 50,
        pause: Duration::from_millis(4),
        endless: true,
        offset: 1,
    };
    let mut graph = two_input_graph(quiet, busy, r.clone());
    graph.nodes[0] = source_node_idle("a", graph_source(0), Some(Duration::from_millis(30)));
    let job = start_job(graph, "j5".into()).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    job.cancel();
    job.wait().await.unwrap();
    let events = r.events.lock().clone();
    let max_wm = events
        .iter()
        .filter_map(|e| {
            if let Event::Watermark(w) = e {
                Some(*w)
            } else {
                None
            }
        })
        .max();
    assert!(
        max_wm.is_some_and(|w| w >= 10_000_000_000),
        "with the quiet source idle, the busy one drives the watermark: {max_wm:?}"
    );
}

fn graph_source(offset: i64) -> TestSource {
    TestSource {
        batches: 1,
        pause: Duration::from_millis(1),
        endless: true,
        offset,
    }
}

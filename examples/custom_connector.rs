//! The extension point: a custom source connector, registered with
//! `Engine::builder().with_connector(...)` and then used from SQL like the
//! built-in ones (`'connector' = 'ticks'`).
//!
//! ```text
//! cargo run --example custom_connector
//! ```
//!
//! A connector has three parts, all defined in `weir_engine`:
//! - [`Connector`]: the named factory; validates a table's `WITH` options at
//!   `CREATE TABLE` and returns a [`SourceSpec`] (and/or a sink spec);
//! - [`SourceSpec`]: the validated table; creates one [`Source`] per subtask;
//! - [`Source`]: one subtask, polled by the runtime for batches until it
//!   reports [`SourceEvent::Finished`] (bounded) or the job stops.
//!
//! The `ticks` source below produces `count` rows `n = 0, 1, 2, ...`, one per
//! second of event time from 2024-01-01 00:00:00 UTC. Watermarks come from
//! the table's `WATERMARK FOR` clause: the runtime derives them, the source
//! only produces rows.

use std::sync::Arc;

use async_trait::async_trait;
use weir::arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use weir::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use weir::datafusion::common::{Result, plan_err};
use weir::weir_engine::connector::{Connector, ConnectorOptions, OptionSpec};
use weir::weir_engine::source::{Source, SourceEvent, SourceSpec};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("count", "number of rows (required)"),
    OptionSpec::new("batch-size", "the most rows per batch (default 4)"),
];

/// 2024-01-01 00:00:00 UTC, in epoch milliseconds.
const START_MS: i64 = 1_704_067_200_000;

/// The connector: what `'connector' = 'ticks'` selects.
struct TicksConnector;

impl Connector for TicksConnector {
    fn name(&self) -> &'static str {
        "ticks"
    }

    fn options(&self) -> Vec<OptionSpec> {
        OPTIONS.to_vec()
    }

    /// Called at `CREATE TABLE`: errors here are reported to the user then,
    /// not when a job starts.
    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SourceSpec>> {
        options.check_known("ticks", OPTIONS, &[])?;
        let Some(count) = options.get_u64("count")? else {
            return plan_err!("missing required option 'count'");
        };
        let batch_size = options.get_u64("batch-size")?.unwrap_or(4).max(1);
        // Each declared column must be one we can produce: `n BIGINT` or `ts TIMESTAMP(3)`.
        let mut columns = Vec::new();
        for field in schema.fields() {
            columns.push(match (field.name().as_str(), field.data_type()) {
                ("n", DataType::Int64) => Column::N,
                ("ts", DataType::Timestamp(TimeUnit::Millisecond, None)) => Column::Ts,
                (name, ty) => {
                    return plan_err!(
                        "ticks: unsupported column '{name}' of type {ty}; expected n BIGINT, ts TIMESTAMP(3)"
                    );
                }
            });
        }
        Ok(Arc::new(TicksSpec {
            schema,
            columns: columns.into(),
            count,
            batch_size,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
enum Column {
    N,
    Ts,
}

/// A validated `ticks` table.
#[derive(Debug)]
struct TicksSpec {
    schema: SchemaRef,
    columns: Arc<[Column]>,
    count: u64,
    batch_size: u64,
}

impl SourceSpec for TicksSpec {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    /// Subtask `subtask` of `parallelism` produces the rows `n ≡ subtask (mod parallelism)`.
    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        Ok(Box::new(TicksSource {
            schema: self.schema.clone(),
            columns: self.columns.clone(),
            next: subtask as u64,
            step: parallelism as u64,
            count: self.count,
            batch_size: self.batch_size,
        }))
    }
}

/// One subtask of a `ticks` table.
struct TicksSource {
    schema: SchemaRef,
    columns: Arc<[Column]>,
    next: u64,
    step: u64,
    count: u64,
    batch_size: u64,
}

#[async_trait]
impl Source for TicksSource {
    /// Produces the next batch. It never waits, so it is trivially
    /// cancel-safe: a dropped call has produced nothing.
    async fn poll_next(&mut self) -> Result<SourceEvent> {
        if self.next >= self.count {
            return Ok(SourceEvent::Finished);
        }
        let ns: Vec<i64> = (self.next..self.count)
            .step_by(self.step as usize)
            .take(self.batch_size as usize)
            .map(|n| n as i64)
            .collect();
        self.next += self.step * ns.len() as u64;
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|c| -> ArrayRef {
                match c {
                    Column::N => Arc::new(Int64Array::from(ns.clone())),
                    Column::Ts => Arc::new(TimestampMillisecondArray::from_iter_values(
                        ns.iter().map(|n| START_MS + n * 1000),
                    )),
                }
            })
            .collect();
        Ok(SourceEvent::Batch(RecordBatch::try_new(
            self.schema.clone(),
            arrays,
        )?))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The built-in connectors plus ours.
    let engine = weir::Engine::builder()
        .with_connector(Arc::new(TicksConnector))
        .build()?;
    engine.execute("SET 'parallelism.default' = '2'").await?;

    // Options are validated at CREATE TABLE, through our `Connector::source`.
    let err = engine
        .execute("CREATE TABLE bad (n BIGINT) WITH ('connector' = 'ticks', 'count' = '10', 'rate' = '5')")
        .await
        .unwrap_err();
    println!("an unknown option is rejected at CREATE TABLE:\n  {err}\n");

    engine
        .execute(
            "CREATE TABLE ticks (
                n  BIGINT,
                ts TIMESTAMP(3),
                WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
            ) WITH ('connector' = 'ticks', 'count' = '30')",
        )
        .await?;

    // From here on, `ticks` is a table like any other: windows, filters, joins...
    let batches = engine
        .query(
            "SELECT window_start, count(*) AS ticks, sum(n) AS sum_n, max(n) AS last_n
             FROM TABLE(TUMBLE(TABLE ticks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end",
        )
        .await?
        .collect()
        .await?;
    println!("{}", weir::format::table(&batches)?);
    Ok(())
}

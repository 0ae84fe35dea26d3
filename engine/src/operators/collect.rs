//! The sink behind a `SELECT`: hands batches to the caller's result stream.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use tokio::sync::mpsc;

use crate::operator::{Operator, Output};

/// Sends every batch into a bounded channel read by the query's result
/// stream (backpressure reaches the sources when the reader is slow). When
/// the reader goes away the job fails with "result stream closed", which the
/// engine treats as a normal end of an interactive query.
#[derive(Debug)]
pub struct CollectSink {
    pub sender: mpsc::Sender<RecordBatch>,
}

/// The error text a [`CollectSink`] fails with when its reader is gone.
pub const RESULT_STREAM_CLOSED: &str = "result stream closed";

#[async_trait]
impl Operator for CollectSink {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        self.sender
            .send(batch)
            .await
            .map_err(|_| DataFusionError::Execution(RESULT_STREAM_CLOSED.into()))
    }

    async fn process_watermark(&mut self, _watermark: i64, _out: &mut Output) -> Result<()> {
        Ok(())
    }
}

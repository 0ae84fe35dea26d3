//! What executing a statement returns, and the stream of a query's results.

use std::pin::Pin;
use std::task::{Context, Poll};

use arrow::array::Int8Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::Stream;
use tokio::sync::mpsc;
use weir_engine::changelog::{RowKind, split_ops};
use weir_engine::runtime::{JobHandle, JobStatus};

use crate::error::{Error, Result};

/// The outcome of one statement.
#[derive(Debug)]
pub enum StatementResult {
    /// A statement that only changes the session (DDL, SET, STOP JOB...), with a message.
    Ok(String),
    /// Rows to show (SHOW, DESCRIBE, SET without arguments).
    Table(RecordBatch),
    /// Text to show as is (EXPLAIN, HELP).
    Text(String),
    /// An `INSERT INTO` job, running in the background.
    Job(JobHandle),
    /// A `SELECT`, whose results stream in as they are computed.
    Query(QueryResult),
}

/// A batch of changes: rows and their kinds (`+I`, `-U`, `+U`, `-D`).
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The rows, in the query's result schema.
    pub rows: RecordBatch,
    kinds: Int8Array,
}

impl ChangeBatch {
    /// The kind of row `i`.
    pub fn kind(&self, i: usize) -> RowKind {
        RowKind::from_i8(self.kinds.value(i)).unwrap_or(RowKind::Insert)
    }

    /// The kinds of all rows, in order.
    pub fn kinds(&self) -> impl Iterator<Item = RowKind> + '_ {
        (0..self.kinds.len()).map(|i| self.kind(i))
    }
}

/// The running result of a `SELECT`: a stream of Arrow batches.
///
/// For an updating query (e.g. a non-windowed `GROUP BY`) every batch ends
/// with the `_op` row-kind column; [`next_changes`](Self::next_changes)
/// splits it off. The stream ends when the query's job ends (bounded input);
/// if the job failed, the last item is the error. Dropping the result
/// cancels the job.
#[derive(Debug)]
pub struct QueryResult {
    schema: SchemaRef,
    updating: bool,
    job: JobHandle,
    receiver: mpsc::Receiver<RecordBatch>,
    done: bool,
}

impl QueryResult {
    pub(crate) fn new(
        schema: SchemaRef,
        updating: bool,
        job: JobHandle,
        receiver: mpsc::Receiver<RecordBatch>,
    ) -> Self {
        QueryResult {
            schema,
            updating,
            job,
            receiver,
            done: false,
        }
    }

    /// The schema of the result rows (without the row-kind column).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether the result is a changelog (may contain `-U`/`+U`/`-D` rows).
    pub fn is_updating(&self) -> bool {
        self.updating
    }

    /// The job computing the result.
    pub fn job(&self) -> &JobHandle {
        &self.job
    }

    /// Stops the query.
    pub fn cancel(&self) {
        self.job.cancel();
    }

    /// The next batch (with `_op` if updating), `None` at the end.
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        if self.done {
            return None;
        }
        match self.receiver.recv().await {
            Some(b) => Some(Ok(b)),
            None => {
                self.done = true;
                self.final_error().await.map(Err)
            }
        }
    }

    /// The next batch as changes, `None` at the end.
    pub async fn next_changes(&mut self) -> Option<Result<ChangeBatch>> {
        let batch = self.next_batch().await?;
        Some(batch.map(|b| {
            let (rows, kinds) = split_ops(&b);
            ChangeBatch { rows, kinds }
        }))
    }

    /// Reads the whole (bounded) result.
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while let Some(b) = self.next_batch().await {
            out.push(b?);
        }
        Ok(out)
    }

    async fn final_error(&self) -> Option<Error> {
        match self.job.wait().await {
            Ok(_) => None,
            Err(e) => Some(Error::from(e)),
        }
    }
}

impl Stream for QueryResult {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => {
                // The sink is gone: the job has ended or is ending.
                match self.job.status() {
                    JobStatus::Failed(msg) => {
                        self.done = true;
                        Poll::Ready(Some(Err(Error::execution(msg))))
                    }
                    s if s.is_terminal() => {
                        self.done = true;
                        Poll::Ready(None)
                    }
                    _ => {
                        // Not recorded yet: wait for the supervisor.
                        let job = self.job.clone();
                        let waker = cx.waker().clone();
                        tokio::spawn(async move {
                            let _ = job.wait().await;
                            waker.wake();
                        });
                        Poll::Pending
                    }
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for QueryResult {
    fn drop(&mut self) {
        if !self.job.status().is_terminal() {
            self.job.cancel();
        }
    }
}

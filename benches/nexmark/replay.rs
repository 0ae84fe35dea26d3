//! The `replay` source: a bounded table over record batches already in
//! memory, so that a streaming run and a DataFusion batch run can read the
//! very same pre-materialized events (`--source memory`). It is registered
//! on the bench's engine only (`'connector' = 'replay', 'table' = 'bid'`).
//!
//! Subtask `i` of `p` replays the batches `i, i + p, i + 2p, ...` of the
//! table, in order, without copying (a batch holds `Arc`ed arrays). The
//! batches were generated in event-time order, so every subtask advances
//! through event time at the same pace and the disorder is at most a batch.
//! Watermarks come from the table's `WATERMARK FOR` clause, as for any source.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use weir::arrow::array::{ArrayRef, new_null_array};
use weir::arrow::datatypes::SchemaRef;
use weir::arrow::record_batch::RecordBatch;
use weir::datafusion::common::{Result, plan_err};
use weir::weir_engine::connector::{Connector, ConnectorOptions, OptionSpec};
use weir::weir_engine::source::{Source, SourceEvent, SourceSpec, unread_nullable_columns};

const OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "table",
    "which materialized table to replay (required)",
)];

/// The `replay` connector over a set of named, materialized tables.
pub struct ReplayConnector {
    tables: HashMap<String, Arc<Vec<RecordBatch>>>,
}

impl ReplayConnector {
    pub fn new(tables: HashMap<String, Arc<Vec<RecordBatch>>>) -> Self {
        ReplayConnector { tables }
    }
}

impl Connector for ReplayConnector {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn options(&self) -> Vec<OptionSpec> {
        OPTIONS.to_vec()
    }

    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SourceSpec>> {
        options.check_known("replay", OPTIONS, &[])?;
        let table = options.required("table")?;
        let Some(batches) = self.tables.get(table) else {
            let mut known: Vec<_> = self.tables.keys().cloned().collect();
            known.sort();
            return plan_err!(
                "replay: no materialized table '{table}'; there are: {}",
                known.join(", ")
            );
        };
        // The declared columns, found by name in the materialized batches.
        let columns = match batches.first() {
            None => Vec::new(),
            Some(first) => {
                let stored = first.schema();
                let mut columns = Vec::with_capacity(schema.fields().len());
                for field in schema.fields() {
                    match stored.index_of(field.name()) {
                        Ok(i) if stored.field(i).data_type() == field.data_type() => columns.push(i),
                        _ => {
                            return plan_err!(
                                "replay: table '{table}' has no column {} {}",
                                field.name(),
                                field.data_type()
                            );
                        }
                    }
                }
                columns
            }
        };
        Ok(Arc::new(ReplaySpec {
            schema,
            batches: batches.clone(),
            columns,
            unread: Arc::new([]),
        }))
    }
}

/// A validated `replay` table.
#[derive(Debug)]
struct ReplaySpec {
    schema: SchemaRef,
    batches: Arc<Vec<RecordBatch>>,
    /// For each declared column, its index in the materialized batches.
    columns: Vec<usize>,
    /// Per declared column, whether the job does not read it (then a NULL
    /// column is replayed instead, as the `nexmark` generator does not
    /// generate it, and as DataFusion's scan of a `MemTable` leaves it out).
    unread: Arc<[bool]>,
}

impl SourceSpec for ReplaySpec {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        Ok(Box::new(ReplaySource {
            schema: self.schema.clone(),
            batches: self.batches.clone(),
            columns: self.columns.clone(),
            unread: self.unread.clone(),
            nulls: HashMap::new(),
            next: subtask,
            step: parallelism.max(1),
        }))
    }

    fn reading_only(&self, read: &[usize]) -> Option<Arc<dyn SourceSpec>> {
        unread_nullable_columns(&self.schema, read).map(|unread| {
            Arc::new(ReplaySpec {
                schema: self.schema.clone(),
                batches: self.batches.clone(),
                columns: self.columns.clone(),
                unread,
            }) as Arc<dyn SourceSpec>
        })
    }
}

/// One subtask of a `replay` table. Not checkpointed: the bench runs it
/// without checkpoints (a restored job would replay from the start).
struct ReplaySource {
    schema: SchemaRef,
    batches: Arc<Vec<RecordBatch>>,
    columns: Vec<usize>,
    unread: Arc<[bool]>,
    /// NULL columns replayed for unread ones, by column and length (shared
    /// by every batch of that length: no copy, no allocation per batch).
    nulls: HashMap<(usize, usize), ArrayRef>,
    next: usize,
    step: usize,
}

#[async_trait]
impl Source for ReplaySource {
    async fn poll_next(&mut self) -> Result<SourceEvent> {
        let Some(batch) = self.batches.get(self.next) else {
            return Ok(SourceEvent::Finished);
        };
        self.next += self.step;
        let n = batch.num_rows();
        let columns = self
            .columns
            .iter()
            .enumerate()
            .map(|(c, &i)| {
                if self.unread.get(c).copied().unwrap_or(false) {
                    let data_type = self.schema.field(c).data_type();
                    self.nulls
                        .entry((c, n))
                        .or_insert_with(|| new_null_array(data_type, n))
                        .clone()
                } else {
                    batch.column(i).clone()
                }
            })
            .collect();
        Ok(SourceEvent::Batch(RecordBatch::try_new(
            self.schema.clone(),
            columns,
        )?))
    }
}

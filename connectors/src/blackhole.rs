//! The `blackhole` sink: discards every row (Flink's BlackHole connector), for
//! benchmarks and for testing the rest of a pipeline.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::Result;
use weir_engine::connector::{Connector, ConnectorOptions, OptionSpec, SinkRequest, SinkSpec};
use weir_engine::operator::{Operator, Output};

/// The `blackhole` connector (sink only, no options).
#[derive(Debug, Default)]
pub struct BlackholeConnector;

impl Connector for BlackholeConnector {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn options(&self) -> Vec<OptionSpec> {
        Vec::new()
    }

    fn sink(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SinkSpec>> {
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        options.check_known("blackhole", &[], &columns)?;
        Ok(Arc::new(BlackholeSpec))
    }
}

/// A `blackhole` table: accepts any stream, including changelogs.
#[derive(Debug, Default)]
pub struct BlackholeSpec;

impl SinkSpec for BlackholeSpec {
    fn accepts_changelog(&self) -> bool {
        true
    }

    fn create(
        &self,
        _request: &SinkRequest,
        _subtask: usize,
        _parallelism: usize,
    ) -> Result<Box<dyn Operator>> {
        Ok(Box::new(BlackholeSink))
    }
}

/// A `blackhole` sink subtask: drops every batch; stateless.
#[derive(Debug, Default)]
pub struct BlackholeSink;

#[async_trait]
impl Operator for BlackholeSink {
    async fn process_batch(&mut self, _input: usize, _batch: RecordBatch, _out: &mut Output) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::options;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    #[tokio::test]
    async fn discards_everything_and_rejects_options() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let err = BlackholeConnector
            .sink(schema.clone(), &options(&[("path", "x")]))
            .unwrap_err();
        assert!(err.to_string().contains("'path'"), "{err}");
        let spec = BlackholeConnector
            .sink(schema.clone(), &options(&[("connector", "blackhole")]))
            .unwrap();
        assert!(spec.accepts_changelog());
        let request = SinkRequest {
            schema: schema.clone(),
            updating: false,
        };
        let mut sink = spec.create(&request, 0, 1).unwrap();
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let mut out = Output::default();
        sink.process_batch(0, batch, &mut out).await.unwrap();
        sink.finish(&mut out).await.unwrap();
        assert!(out.is_empty());
    }
}

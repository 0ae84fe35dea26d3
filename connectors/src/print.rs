//! The `print` sink: writes every row to standard output (or standard error)
//! in Flink's form, `+I[1, Alice, 2024-01-01T00:00:05]`.
//!
//! Each line is prefixed as Flink's print connector does: with
//! `print-identifier` and, when the sink runs with more than one subtask, the
//! 1-based subtask number — `id:2> +I[...]`, `2> +I[...]`, `id> +I[...]`, or
//! no prefix at all. The row kind (`+I`, `-U`, `+U`, `-D`) comes from the `_op`
//! column of an updating stream; append-only rows are `+I`. Nulls print as
//! `null`, timestamps in ISO form (`2024-01-01T00:00:05.123`).
//!
//! Each batch is formatted into one buffer and written with a single write
//! to the locked stream, so lines of concurrent subtasks never interleave
//! within a batch.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use weir_engine::changelog::{RowKind, split_ops};
use weir_engine::connector::{Connector, ConnectorOptions, OptionSpec, SinkRequest, SinkSpec};
use weir_engine::operator::{Operator, Output};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("print-identifier", "a prefix for every printed line"),
    OptionSpec::new(
        "standard-error",
        "print to standard error instead of standard output (default false)",
    ),
];

/// The `print` connector (sink only).
#[derive(Debug, Default)]
pub struct PrintConnector;

impl Connector for PrintConnector {
    fn name(&self) -> &'static str {
        "print"
    }

    fn options(&self) -> Vec<OptionSpec> {
        OPTIONS.to_vec()
    }

    fn sink(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SinkSpec>> {
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        options.check_known("print", OPTIONS, &columns)?;
        Ok(Arc::new(PrintSpec {
            identifier: options.get("print-identifier").unwrap_or_default().to_string(),
            standard_error: options.get_bool("standard-error")?.unwrap_or(false),
        }))
    }
}

/// A validated `print` table. Accepts changelogs.
#[derive(Debug, Clone)]
pub struct PrintSpec {
    identifier: String,
    standard_error: bool,
}

/// Flink's prefix of the lines of subtask `subtask` of `parallelism`.
fn prefix(identifier: &str, subtask: usize, parallelism: usize) -> String {
    let mut p = identifier.to_string();
    if parallelism > 1 {
        if !p.is_empty() {
            p.push(':');
        }
        p.push_str(&(subtask + 1).to_string());
    }
    if !p.is_empty() {
        p.push_str("> ");
    }
    p
}

impl SinkSpec for PrintSpec {
    fn accepts_changelog(&self) -> bool {
        true
    }

    fn create(
        &self,
        _request: &SinkRequest,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Box<dyn Operator>> {
        Ok(Box::new(PrintSink {
            prefix: prefix(&self.identifier, subtask, parallelism),
            standard_error: self.standard_error,
            buffer: String::new(),
        }))
    }
}

/// A `print` sink subtask. Stateless; writes each batch as it arrives.
#[derive(Debug)]
pub struct PrintSink {
    prefix: String,
    standard_error: bool,
    /// The text of the current batch (reused between batches).
    buffer: String,
}

/// Appends the lines of `batch` (an append-only or updating batch) to `out`.
pub fn format_batch(prefix: &str, batch: &RecordBatch, out: &mut String) -> Result<()> {
    let (rows, ops) = split_ops(batch);
    let options = FormatOptions::default()
        .with_null("null")
        .with_display_error(false);
    let formatters = rows
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..rows.num_rows() {
        let kind = RowKind::from_i8(ops.value(row))?;
        out.push_str(prefix);
        out.push_str(kind.short_string());
        out.push('[');
        for (i, f) in formatters.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write!(out, "{}", f.value(row)).map_err(|e| DataFusionError::Execution(format!("print: {e}")))?;
        }
        out.push_str("]\n");
    }
    Ok(())
}

#[async_trait]
impl Operator for PrintSink {
    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.buffer.clear();
        format_batch(&self.prefix, &batch, &mut self.buffer)?;
        let written = if self.standard_error {
            std::io::stderr().lock().write_all(self.buffer.as_bytes())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(self.buffer.as_bytes()).and_then(|()| out.flush())
        };
        written.map_err(|e| DataFusionError::Execution(format!("print sink: cannot write: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::options;
    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use weir_engine::changelog::{attach_ops, op_array};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("Alice"), None])),
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1_704_067_205_000),
                    Some(1_704_067_205_123),
                ])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn prefixes_as_flink() {
        assert_eq!(prefix("", 0, 1), "");
        assert_eq!(prefix("", 1, 4), "2> ");
        assert_eq!(prefix("out", 0, 1), "out> ");
        assert_eq!(prefix("out", 3, 4), "out:4> ");
    }

    #[test]
    fn formats_rows_and_kinds() {
        let mut out = String::new();
        format_batch("2> ", &batch(), &mut out).unwrap();
        assert_eq!(
            out,
            "2> +I[1, Alice, 2024-01-01T00:00:05]\n2> +I[2, null, 2024-01-01T00:00:05.123]\n"
        );
        let ops = Arc::new(arrow::array::Int8Array::from(vec![1, 3]));
        let updating = attach_ops(&batch(), ops).unwrap();
        out.clear();
        format_batch("", &updating, &mut out).unwrap();
        assert!(
            out.starts_with("-U[1, Alice") && out.contains("\n-D[2, null"),
            "{out}"
        );
        let _ = op_array;
    }

    #[tokio::test]
    async fn writes_to_stdout_and_validates_options() {
        let schema = batch().schema();
        let err = PrintConnector
            .sink(schema.clone(), &options(&[("print-identifer", "x")]))
            .unwrap_err();
        assert!(err.to_string().contains("print-identifier"), "{err}");
        let err = PrintConnector
            .sink(schema.clone(), &options(&[("standard-error", "maybe")]))
            .unwrap_err();
        assert!(err.to_string().contains("'standard-error'"), "{err}");
        let spec = PrintConnector
            .sink(schema.clone(), &options(&[("print-identifier", "test")]))
            .unwrap();
        assert!(spec.accepts_changelog());
        let mut sink = spec
            .create(
                &SinkRequest {
                    schema,
                    updating: false,
                },
                0,
                1,
            )
            .unwrap();
        let mut out = Output::default();
        sink.process_batch(0, batch(), &mut out).await.unwrap();
        assert!(out.is_empty());
    }
}

//! The catalog: tables (connector-backed) and views, by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use weir_engine::connector::{ConnectorOptions, SinkSpec};
use weir_engine::source::SourceSpec;

/// Table options handled by weir itself rather than by the connector.
pub const ENGINE_TABLE_OPTIONS: &[&str] = &[
    "scan.watermark.idle-timeout",
    "scan.watermark.alignment.max-drift",
    "scan.watermark.alignment.group",
    "scan.parallelism",
    "sink.parallelism",
];

/// A table's `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkDef {
    pub column: String,
    /// The expression, as SQL text (planned against the table's schema).
    pub expr_sql: String,
}

/// A connector-backed table.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: String,
    /// The table's columns.
    pub schema: SchemaRef,
    pub connector: String,
    /// The connector's options (without `connector` and weir's own table options).
    pub options: ConnectorOptions,
    pub watermark: Option<WatermarkDef>,
    /// `scan.watermark.idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `scan.watermark.alignment.max-drift`.
    pub alignment_max_drift: Option<Duration>,
    /// `scan.watermark.alignment.group`: tables of one group are aligned
    /// to each other; without it, a table's source is its own group.
    pub alignment_group: Option<String>,
    /// `scan.parallelism` / `sink.parallelism`.
    pub scan_parallelism: Option<usize>,
    pub sink_parallelism: Option<usize>,
    pub primary_key: Vec<String>,
    /// `METADATA ... VIRTUAL` columns: read-only, left out of an `INSERT`
    /// without a column list (as in Flink).
    pub virtual_columns: Vec<String>,
    /// The source, or why the table cannot be read.
    pub source: Result<Arc<dyn SourceSpec>, String>,
    /// The sink, or why the table cannot be written.
    pub sink: Result<Arc<dyn SinkSpec>, String>,
}

/// A view: a named query.
#[derive(Debug, Clone)]
pub struct ViewDef {
    pub name: String,
    pub sql: String,
    pub plan: LogicalPlan,
}

/// Tables and views, by (normalised) name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: BTreeMap<String, TableDef>,
    pub views: BTreeMap<String, ViewDef>,
}

impl Catalog {
    /// Whether a table or view named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tables.contains_key(name) || self.views.contains_key(name)
    }
}

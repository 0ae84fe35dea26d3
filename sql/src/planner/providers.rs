//! DataFusion table providers standing for weir's tables and window TVFs
//! while DataFusion plans a statement. They are never scanned by DataFusion:
//! the streaming planner recognises them in the logical plan.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{Expr, LogicalPlan, TableType};
use datafusion::physical_plan::ExecutionPlan;
use weir_engine::operators::window::WindowKind;

/// A connector-backed table.
#[derive(Debug)]
pub struct StreamTable {
    pub name: String,
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan_err!(
            "table '{}' is a stream: it is read by a weir job, not by a batch scan",
            self.name
        )
    }
}

/// A window table-valued function applied to a table or view: its rows are
/// the input's, plus `window_start`, `window_end` and `window_time`.
pub struct WindowTvfTable {
    pub kind: WindowKind,
    /// The plan of the TVF's input (a table scan or a view's query).
    pub input: LogicalPlan,
    /// Index of the time column in the input.
    pub time_column: usize,
    /// Input columns then the three window columns.
    pub schema: SchemaRef,
}

impl fmt::Debug for WindowTvfTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)
    }
}

#[async_trait]
impl TableProvider for WindowTvfTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan_err!("a window table function is evaluated by a weir job, not by a batch scan")
    }
}

//! Lowering an optimized DataFusion `LogicalPlan` to a weir `JobGraph`.
//!
//! Stateless nodes (projection, filter) become operators evaluating DataFusion
//! physical expressions, chained to their input. An aggregate grouped by
//! `window_start` and `window_end` of a window TVF becomes a window aggregate
//! (the TVF fused into it); any other aggregate becomes an updating
//! (changelog) aggregate. Keyed operators receive their input hash-partitioned
//! by key over key groups. Joins are lowered in [`super::join`]. Each stream
//! knows which of its columns are event-time attributes ([`TimeAttributes`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, DFSchemaRef, Result, plan_err};
use datafusion::datasource::DefaultTableSource;
use datafusion::execution::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, TableScan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::utils::collect_columns;
use weir_engine::changelog::with_op_column;
use weir_engine::graph::{Edge, JobGraph, Node, NodeId, NodeKind, OperatorFactory, Partitioning};
use weir_engine::operator::Operator;
use weir_engine::operators::aggregates::AggregateSpec;
use weir_engine::operators::factory::FnOperatorFactory;
use weir_engine::operators::filter::Filter;
use weir_engine::operators::projection::Projection;
use weir_engine::operators::session_window::{SessionAggregate, SessionAggregateConfig};
use weir_engine::operators::union::Union;
use weir_engine::operators::updating_aggregate::{UpdatingAggregate, UpdatingAggregateConfig};
use weir_engine::operators::window::WindowKind;
use weir_engine::operators::window_aggregate::{
    GroupColumn, WindowAggregate, WindowAggregateConfig, WindowSource,
};
use weir_engine::operators::window_assign::WindowAssign;
use weir_engine::source::SourceSpec;
use weir_engine::values::ValuesSpec;
use weir_engine::watermark::WatermarkStrategy;

use super::providers::{StreamTable, WindowTvfTable};
use super::read_columns::ReadColumns;
use crate::catalog::Catalog;

/// A window TVF not applied yet: the stream's node emits the TVF's input
/// rows, whose columns are the first `base_len` columns of the stream's schema.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingWindow {
    kind: WindowKind,
    time_column: usize,
    base_len: usize,
}

/// Window columns materialized in a stream, by index.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct WindowColumns {
    pub(super) start: Option<usize>,
    pub(super) end: Option<usize>,
    pub(super) time: Option<usize>,
}

/// Which columns of a stream are event-time (rowtime) attributes, by index.
///
/// As in Flink: a table's `WATERMARK FOR` column is one; projections keep
/// plain references to them, filters keep them, window TVFs add
/// `window_time`, a window aggregate grouped by `window_time` keeps it, an
/// interval join keeps those of both inputs and a window join those of its
/// left input. A regular join (and a non-windowed aggregate) has none: its
/// output rows are not bounded by any watermark, so a regular join
/// *materializes* its inputs' rowtime columns into plain timestamps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TimeAttributes {
    /// The rowtime attribute columns (sorted).
    pub(super) rowtime: Vec<usize>,
    /// Columns that were rowtime attributes upstream of a regular join
    /// (sorted): window TVFs reject them with an explanation.
    pub(super) materialized: Vec<usize>,
}

impl TimeAttributes {
    /// Only `column` is a rowtime attribute.
    pub(super) fn rowtime(column: usize) -> Self {
        TimeAttributes {
            rowtime: vec![column],
            materialized: Vec::new(),
        }
    }

    pub(super) fn is_rowtime(&self, column: usize) -> bool {
        self.rowtime.contains(&column)
    }

    /// The attributes of the columns `map` keeps, at their new indices.
    pub(super) fn map(&self, map: impl Fn(usize) -> Vec<usize>) -> Self {
        let pick = |v: &Vec<usize>| {
            let mut out: Vec<usize> = v.iter().flat_map(|&i| map(i)).collect();
            out.sort_unstable();
            out.dedup();
            out
        };
        TimeAttributes {
            rowtime: pick(&self.rowtime),
            materialized: pick(&self.materialized),
        }
    }

    /// The attributes of a join's output: `left`'s, then `right`'s shifted by
    /// the left width. A regular join (`keep` false) materializes them all.
    pub(super) fn joined(left: &Self, right: &Self, left_width: usize, keep: bool) -> Self {
        let shift = |v: &Vec<usize>| v.iter().map(move |i| i + left_width).collect::<Vec<_>>();
        let rowtime: Vec<usize> = left
            .rowtime
            .iter()
            .copied()
            .chain(shift(&right.rowtime))
            .collect();
        let mut materialized: Vec<usize> = left
            .materialized
            .iter()
            .copied()
            .chain(shift(&right.materialized))
            .collect();
        if keep {
            TimeAttributes {
                rowtime,
                materialized,
            }
        } else {
            materialized.extend(rowtime);
            materialized.sort_unstable();
            TimeAttributes {
                rowtime: Vec::new(),
                materialized,
            }
        }
    }
}

/// The output of a lowered plan node.
#[derive(Debug, Clone)]
pub struct Stream {
    pub node: NodeId,
    /// The logical schema of the rows (without the row-kind column).
    pub schema: DFSchemaRef,
    /// Whether the stream is a changelog.
    pub updating: bool,
    pub parallelism: usize,
    pub(super) pending: Option<PendingWindow>,
    /// The columns (in the order they were hashed) whose hash places each
    /// row on its subtask, when an exchange placed the rows so and every
    /// operator since kept them in place: a keyed operator whose keys
    /// include them may take the rows as they are, without an exchange.
    pub(super) partitioned_by: Option<Vec<usize>>,
    pub(super) window: WindowColumns,
    /// Event-time attributes (with a pending window TVF: of the TVF's output).
    pub(super) times: TimeAttributes,
}

impl Stream {
    /// The physical schema of the batches (with the row-kind column if updating).
    pub fn physical_schema(&self) -> SchemaRef {
        let rows = Arc::new(self.schema.as_arrow().clone());
        if self.updating {
            with_op_column(&rows)
        } else {
            rows
        }
    }
}

/// Builds a job graph while walking a logical plan.
pub struct Lowering<'a> {
    pub state: &'a SessionState,
    pub catalog: &'a Catalog,
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub default_idle_timeout: Option<std::time::Duration>,
    /// `table.optimizer.reuse-join-partitioning`.
    pub reuse_join_partitioning: bool,
    /// The columns the query reads of each source table (absent: all).
    pub read_columns: ReadColumns,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    names: HashMap<String, usize>,
    /// Source nodes by table: a table read twice in one job is read once, and
    /// both readers see the same rows and watermarks (Flink's source reuse).
    sources: HashMap<String, (NodeId, usize)>,
    /// The plans lowered so far, with their streams (see [`Self::lower`]).
    lowered: HashMap<LogicalPlan, Stream>,
    /// Projections that only pick columns, by input node: the same columns
    /// of the same stream picked twice (e.g. the two inputs of a self-join,
    /// narrowed alike) are picked once.
    picks: Vec<Pick>,
}

/// A projection node that picks `columns` of node `input`, into rows of
/// `schema`.
struct Pick {
    input: NodeId,
    columns: Vec<usize>,
    schema: SchemaRef,
    node: NodeId,
}

impl<'a> Lowering<'a> {
    pub fn new(
        state: &'a SessionState,
        catalog: &'a Catalog,
        parallelism: usize,
        max_parallelism: usize,
    ) -> Self {
        Lowering {
            state,
            catalog,
            parallelism,
            max_parallelism,
            default_idle_timeout: None,
            reuse_join_partitioning: true,
            read_columns: ReadColumns::new(),
            nodes: Vec::new(),
            edges: Vec::new(),
            names: HashMap::new(),
            sources: HashMap::new(),
            lowered: HashMap::new(),
            picks: Vec::new(),
        }
    }

    /// The graph built so far.
    pub fn into_graph(self, name: String) -> JobGraph {
        JobGraph {
            name,
            nodes: self.nodes,
            edges: self.edges,
            max_parallelism: self.max_parallelism,
        }
    }

    /// Adds a node; its stable operator id is derived from its position and kind.
    pub fn add_node(
        &mut self,
        kind_slug: &str,
        name: String,
        kind: NodeKind,
        schema: SchemaRef,
        parallelism: usize,
        num_inputs: usize,
    ) -> NodeId {
        let n = self.names.entry(kind_slug.to_string()).or_insert(0);
        *n += 1;
        let operator_id = format!("{kind_slug}-{}", *n);
        self.nodes.push(Node {
            operator_id,
            name,
            parallelism,
            kind,
            schema,
            num_inputs,
        });
        self.nodes.len() - 1
    }

    /// Connects `from` to input `input` of `to`.
    pub fn connect(&mut self, from: NodeId, to: NodeId, input: usize, partitioning: Partitioning) {
        self.edges.push(Edge {
            from,
            to,
            input,
            partitioning,
        });
    }

    /// Adds an operator fed by `input` (forward edge, same parallelism).
    fn add_forward(
        &mut self,
        input: &Stream,
        slug: &str,
        name: String,
        factory: Arc<dyn OperatorFactory>,
        schema: SchemaRef,
    ) -> NodeId {
        let node = self.add_node(
            slug,
            name,
            NodeKind::Operator(factory),
            schema,
            input.parallelism,
            1,
        );
        self.connect(input.node, node, 0, Partitioning::Forward);
        node
    }

    pub(super) fn physical(&self, expr: &Expr, schema: &DFSchemaRef) -> Result<Arc<dyn PhysicalExpr>> {
        let subquery = expr.exists(|e| {
            Ok(matches!(
                e,
                Expr::InSubquery(_) | Expr::ScalarSubquery(_) | Expr::Exists(_)
            ))
        })?;
        if subquery {
            return plan_err!(
                "subqueries in expressions (IN (SELECT ...), EXISTS, scalar subqueries) are not supported \
                 in streaming queries: {expr}"
            );
        }
        self.state.create_physical_expr(expr.clone(), schema)
    }

    /// Lowers `plan`, returning the stream of its rows. A plan equal to one
    /// lowered before in this job is not lowered again: its stream is read
    /// twice (Flink's sub-plan reuse), unless it calls a volatile function
    /// (`random()`), whose two copies must differ.
    pub fn lower(&mut self, plan: &LogicalPlan) -> Result<Stream> {
        if let Some(stream) = self.lowered.get(plan) {
            return Ok(stream.clone());
        }
        let stream = self.lower_node(plan)?;
        let volatile = plan.exists(|node| Ok(node.expressions().iter().any(Expr::is_volatile)))?;
        if !volatile {
            self.lowered.insert(plan.clone(), stream.clone());
        }
        Ok(stream)
    }

    fn lower_node(&mut self, plan: &LogicalPlan) -> Result<Stream> {
        match plan {
            LogicalPlan::TableScan(scan) => self.lower_scan(scan),
            LogicalPlan::SubqueryAlias(alias) => {
                let mut s = self.lower(&alias.input)?;
                s.schema = alias.schema.clone();
                Ok(s)
            }
            LogicalPlan::Projection(p) => {
                let input = self.lower(&p.input)?;
                let input = self.materialize(input)?;
                let exprs = p
                    .expr
                    .iter()
                    .map(|e| self.physical(e, &input.schema))
                    .collect::<Result<Vec<_>>>()?;
                let mut window = WindowColumns::default();
                // Output position of each plain column reference.
                let mut refs: Vec<(usize, usize)> = Vec::new();
                for (i, e) in p.expr.iter().enumerate() {
                    if let Expr::Column(c) = e.clone().unalias() {
                        let idx = input.schema.index_of_column(&c)?;
                        refs.push((idx, i));
                        if input.window.start == Some(idx) {
                            window.start = Some(i);
                        }
                        if input.window.end == Some(idx) {
                            window.end = Some(i);
                        }
                        if input.window.time == Some(idx) {
                            window.time = Some(i);
                        }
                    }
                }
                let times = input.times.map(|idx| {
                    refs.iter()
                        .filter(|(from, _)| *from == idx)
                        .map(|(_, to)| *to)
                        .collect()
                });
                // Rows stay in place: so does their partitioning, if the
                // columns it hashed are passed through.
                let partitioned_by = input.partitioned_by.as_ref().and_then(|hashed| {
                    hashed
                        .iter()
                        .map(|c| refs.iter().find(|(from, _)| from == c).map(|(_, to)| *to))
                        .collect()
                });
                let out = Stream {
                    node: 0,
                    schema: p.schema.clone(),
                    updating: input.updating,
                    parallelism: input.parallelism,
                    pending: None,
                    partitioned_by,
                    window,
                    times,
                };
                let schema = out.physical_schema();
                let columns: Option<Vec<usize>> = exprs
                    .iter()
                    .map(|e| e.downcast_ref::<PhysicalColumn>().map(|c| c.index()))
                    .collect();
                if let Some(columns) = &columns
                    && let Some(pick) = self
                        .picks
                        .iter()
                        .find(|k| k.input == input.node && &k.columns == columns && k.schema == schema)
                {
                    return Ok(Stream {
                        node: pick.node,
                        ..out
                    });
                }
                let op = Projection {
                    exprs: exprs.clone(),
                    schema: schema.clone(),
                };
                let name = format!(
                    "Calc(select=[{}])",
                    p.expr
                        .iter()
                        .map(|e| e.schema_name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let node =
                    self.add_forward(&input, "calc", name, clone_factory("project", op), schema.clone());
                if let Some(columns) = columns {
                    self.picks.push(Pick {
                        input: input.node,
                        columns,
                        schema,
                        node,
                    });
                }
                Ok(Stream { node, ..out })
            }
            LogicalPlan::Filter(f) => {
                let input = self.lower(&f.input)?;
                let input = match input.pending {
                    Some(p) if references_beyond(&f.predicate, &input.schema, p.base_len)? => {
                        self.materialize(input)?
                    }
                    _ => input,
                };
                let predicate = self.physical(&f.predicate, &input.schema)?;
                let schema = self.nodes[input.node].schema.clone();
                let name = format!("Calc(where=[{}])", f.predicate);
                let node = self.add_forward(
                    &input,
                    "calc",
                    name,
                    clone_factory("filter", Filter { predicate }),
                    schema,
                );
                Ok(Stream { node, ..input })
            }
            LogicalPlan::Aggregate(a) => self.lower_aggregate(a),
            LogicalPlan::Union(u) => {
                let inputs = u
                    .inputs
                    .iter()
                    .map(|i| self.lower(i).and_then(|s| self.materialize(s)))
                    .collect::<Result<Vec<_>>>()?;
                let updating = inputs.iter().any(|s| s.updating);
                if updating && inputs.iter().any(|s| !s.updating) {
                    return plan_err!(
                        "UNION ALL of an updating and an append-only query is not supported: make both sides updating or both append-only"
                    );
                }
                // Rowtime attributes common to all inputs (by index).
                let mut times = inputs.first().map(|s| s.times.clone()).unwrap_or_default();
                for s in inputs.iter().skip(1) {
                    times.rowtime.retain(|i| s.times.is_rowtime(*i));
                    times.materialized.extend(&s.times.materialized);
                }
                times.materialized.sort_unstable();
                times.materialized.dedup();
                let out = Stream {
                    node: 0,
                    schema: u.schema.clone(),
                    updating,
                    parallelism: self.parallelism,
                    pending: None,
                    partitioned_by: None,
                    window: WindowColumns::default(),
                    times,
                };
                let schema = out.physical_schema();
                let node = self.add_node(
                    "union",
                    "Union".into(),
                    NodeKind::Operator(clone_factory(
                        "union",
                        Union {
                            schema: schema.clone(),
                        },
                    )),
                    schema,
                    self.parallelism,
                    inputs.len(),
                );
                for (i, s) in inputs.iter().enumerate() {
                    let p = if s.parallelism == self.parallelism {
                        Partitioning::Forward
                    } else {
                        Partitioning::Rebalance
                    };
                    self.connect(s.node, node, i, p);
                }
                Ok(Stream { node, ..out })
            }
            LogicalPlan::EmptyRelation(e) => {
                let schema = Arc::new(e.schema.as_arrow().clone());
                let batches = if e.produce_one_row {
                    vec![RecordBatch::try_new_with_options(
                        schema.clone(),
                        vec![],
                        &RecordBatchOptions::new().with_row_count(Some(1)),
                    )?]
                } else {
                    vec![]
                };
                Ok(self.values_source(e.schema.clone(), schema, batches))
            }
            LogicalPlan::Values(v) => {
                let schema = Arc::new(v.schema.as_arrow().clone());
                let empty = datafusion::common::DFSchema::empty();
                let one_row = RecordBatch::try_new_with_options(
                    Arc::new(Schema::empty()),
                    vec![],
                    &RecordBatchOptions::new().with_row_count(Some(1)),
                )?;
                let mut columns = Vec::new();
                for (ci, field) in schema.fields().iter().enumerate() {
                    let mut scalars = Vec::new();
                    for row in &v.values {
                        let e = self.state.create_physical_expr(row[ci].clone(), &empty)?;
                        let value = e.evaluate(&one_row)?.into_array(1)?;
                        scalars.push(arrow::compute::cast(&value, field.data_type())?);
                    }
                    let refs: Vec<&dyn arrow::array::Array> = scalars.iter().map(|a| a.as_ref()).collect();
                    columns.push(arrow::compute::concat(&refs)?);
                }
                let batch = RecordBatch::try_new(schema.clone(), columns)?;
                Ok(self.values_source(v.schema.clone(), schema, vec![batch]))
            }
            LogicalPlan::Join(join) => self.lower_join(join),
            LogicalPlan::Sort(_) => plan_err!(
                "ORDER BY is not supported on an unbounded stream (rows are emitted as they are computed); \
                 sort the results in the consumer"
            ),
            LogicalPlan::Limit(_) => plan_err!("LIMIT is not supported on a stream"),
            LogicalPlan::Window(_) => plan_err!(
                "OVER windows are not supported on a stream; use window TVFs (TUMBLE, HOP, SESSION, CUMULATE)"
            ),
            LogicalPlan::Distinct(_) => plan_err!("DISTINCT should have been rewritten to an aggregate"),
            other => plan_err!("this query is not supported on a stream: {}", other.display()),
        }
    }

    /// Applies a window TVF still pending at the end of the plan.
    pub fn finish(&mut self, stream: Stream) -> Result<Stream> {
        self.materialize(stream)
    }

    fn values_source(
        &mut self,
        logical: DFSchemaRef,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Stream {
        let spec: Arc<dyn SourceSpec> = Arc::new(ValuesSpec {
            schema: schema.clone(),
            batches,
        });
        let node = self.add_node(
            "values",
            "Values".into(),
            NodeKind::Source {
                spec,
                watermark: None,
                idle_timeout: None,
                alignment_max_drift: None,
                alignment_group: None,
            },
            schema,
            1,
            0,
        );
        Stream {
            node,
            schema: logical,
            updating: false,
            parallelism: 1,
            pending: None,
            partitioned_by: None,
            window: WindowColumns::default(),
            times: TimeAttributes::default(),
        }
    }

    fn lower_scan(&mut self, scan: &TableScan) -> Result<Stream> {
        let Some(source) = scan.source.downcast_ref::<DefaultTableSource>() else {
            return plan_err!("table '{}' is not a weir table", scan.table_name);
        };
        let provider = source.table_provider.clone();
        let stream = if let Some(table) = provider.downcast_ref::<StreamTable>() {
            self.lower_table(table, scan)?
        } else if let Some(tvf) = provider.downcast_ref::<WindowTvfTable>() {
            let input = self.lower(&tvf.input)?;
            let input = self.materialize(input)?;
            if input.times.materialized.contains(&tvf.time_column) {
                let name = input.schema.field(tvf.time_column).name();
                return plan_err!(
                    "window table function {}: column '{name}' is not a time attribute any more: it \
                     comes out of a regular join, whose rows no watermark bounds (a regular join keeps \
                     no event time, as in Flink: rowtime attributes must not be in the input rows of a \
                     regular join). Join the inputs with an interval join instead, which keeps both \
                     inputs' event times: add a time bound between their rowtime columns, e.g. \
                     `AND r.ts BETWEEN l.ts - INTERVAL '1' MINUTE AND l.ts + INTERVAL '1' MINUTE`",
                    tvf.kind.name()
                );
            }
            if input.updating {
                return plan_err!(
                    "window table function {} cannot be applied to an updating input",
                    tvf.kind.name()
                );
            }
            let base_len = input.schema.fields().len();
            // The input's time attributes, and `window_time`.
            let mut times = input.times.clone();
            times.rowtime.push(base_len + 2);
            Stream {
                node: input.node,
                schema: scan.projected_schema.clone(),
                updating: false,
                parallelism: input.parallelism,
                pending: Some(PendingWindow {
                    kind: tvf.kind,
                    time_column: tvf.time_column,
                    base_len,
                }),
                partitioned_by: None,
                window: WindowColumns::default(),
                times,
            }
        } else {
            return plan_err!("table '{}' cannot be read by a stream", scan.table_name);
        };
        match &scan.projection {
            None => Ok(stream),
            Some(indices) if indices.iter().copied().eq(0..stream.schema.fields().len()) => Ok(stream),
            Some(_) => plan_err!(
                "internal: projected table scans are not lowered (projection push-down is disabled)"
            ),
        }
    }

    fn lower_table(&mut self, table: &StreamTable, scan: &TableScan) -> Result<Stream> {
        let Some(def) = self.catalog.tables.get(&table.name) else {
            return plan_err!("table '{}' does not exist", table.name);
        };
        let spec = match &def.source {
            Ok(spec) => spec.clone(),
            Err(why) => return plan_err!("table '{}' cannot be read: {why}", def.name),
        };
        let logical = scan.projected_schema.clone();
        let times = match &def.watermark {
            Some(w) => match logical.fields().iter().position(|f| *f.name() == w.column) {
                Some(i) => TimeAttributes::rowtime(i),
                None => TimeAttributes::default(),
            },
            None => TimeAttributes::default(),
        };
        if let Some(&(node, parallelism)) = self.sources.get(&table.name) {
            return Ok(Stream {
                node,
                schema: logical,
                updating: false,
                parallelism,
                pending: None,
                partitioned_by: None,
                window: WindowColumns::default(),
                times,
            });
        }
        let watermark = match &def.watermark {
            Some(w) => {
                let expr = self.state.create_logical_expr(&w.expr_sql, &logical)?;
                Some(WatermarkStrategy::new(
                    self.physical(&expr, &logical)?,
                    w.column.clone(),
                    logical.as_arrow(),
                ))
            }
            None => None,
        };
        let spec = self.reading_only(&table.name, spec, watermark.as_ref());
        let mut parallelism = def.scan_parallelism.unwrap_or(self.parallelism);
        if let Some(max) = spec.max_parallelism() {
            parallelism = parallelism.min(max.max(1));
        }
        let name = format!(
            "Source: {}[{}]{}",
            def.name,
            def.connector,
            watermark
                .as_ref()
                .map(|w| format!(
                    " watermark({} AS {})",
                    w.column,
                    def.watermark.as_ref().map_or("", |d| d.expr_sql.as_str())
                ))
                .unwrap_or_default()
        );
        let idle_timeout = def.idle_timeout.or(self.default_idle_timeout);
        let node = self.add_node(
            "source",
            name,
            NodeKind::Source {
                spec,
                watermark,
                idle_timeout,
                alignment_max_drift: def.alignment_max_drift,
                alignment_group: def.alignment_group.clone(),
            },
            table.schema.clone(),
            parallelism,
            0,
        );
        self.sources.insert(table.name.clone(), (node, parallelism));
        Ok(Stream {
            node,
            schema: logical,
            updating: false,
            parallelism,
            pending: None,
            partitioned_by: None,
            window: WindowColumns::default(),
            times,
        })
    }

    /// `spec`, told which of its columns the job reads (those the query
    /// reads and those the watermark needs), when it can skip the others.
    fn reading_only(
        &self,
        table: &str,
        spec: Arc<dyn SourceSpec>,
        watermark: Option<&WatermarkStrategy>,
    ) -> Arc<dyn SourceSpec> {
        let Some(read) = self.read_columns.get(table) else {
            return spec;
        };
        let mut read = read.clone();
        if let Some(w) = watermark {
            read.extend(collect_columns(&w.expr).iter().map(|c| c.index()));
        }
        if read.len() >= spec.schema().fields().len() {
            return spec;
        }
        let read: Vec<usize> = read.into_iter().collect();
        spec.reading_only(&read).unwrap_or(spec)
    }

    /// Applies a pending window TVF as an operator (each row once per window).
    pub(super) fn materialize(&mut self, stream: Stream) -> Result<Stream> {
        let Some(p) = stream.pending else {
            return Ok(stream);
        };
        if matches!(p.kind, WindowKind::Session { .. }) {
            return plan_err!(
                "a SESSION window table function must be aggregated directly: \
                 SELECT ... FROM TABLE(SESSION(...)) GROUP BY window_start, window_end[, keys]"
            );
        }
        let time = self.physical(
            &Expr::Column(Column::from(stream.schema.qualified_field(p.time_column))),
            &stream.schema,
        )?;
        let schema = Arc::new(stream.schema.as_arrow().clone());
        let op = WindowAssign::new(p.kind, time, schema.clone())?;
        let node = self.add_forward(
            &stream,
            "window-assign",
            format!("WindowTableFunction({})", p.kind),
            clone_factory("window-assign", op),
            schema,
        );
        Ok(Stream {
            node,
            pending: None,
            partitioned_by: None,
            window: WindowColumns {
                start: Some(p.base_len),
                end: Some(p.base_len + 1),
                time: Some(p.base_len + 2),
            },
            ..stream
        })
    }

    fn lower_aggregate(&mut self, a: &Aggregate) -> Result<Stream> {
        let mut input = self.lower(&a.input)?;
        if a.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return plan_err!("GROUPING SETS, CUBE and ROLLUP are not supported on a stream");
        }
        // Which group columns are window columns?
        let classify = |input: &Stream, e: &Expr| -> Result<Option<GroupColumn>> {
            let Expr::Column(c) = e else { return Ok(None) };
            let idx = input.schema.index_of_column(c)?;
            Ok(match input.pending {
                Some(p) if idx == p.base_len => Some(GroupColumn::WindowStart),
                Some(p) if idx == p.base_len + 1 => Some(GroupColumn::WindowEnd),
                Some(p) if idx == p.base_len + 2 => Some(GroupColumn::WindowTime),
                _ if input.window.start == Some(idx) => Some(GroupColumn::WindowStart),
                _ if input.window.end == Some(idx) => Some(GroupColumn::WindowEnd),
                _ if input.window.time == Some(idx) => Some(GroupColumn::WindowTime),
                _ => None,
            })
        };
        let windowed = {
            let kinds = a
                .group_expr
                .iter()
                .map(|e| classify(&input, e))
                .collect::<Result<Vec<_>>>()?;
            kinds.contains(&Some(GroupColumn::WindowStart)) && kinds.contains(&Some(GroupColumn::WindowEnd))
        };
        if !windowed {
            if input.pending.is_some() {
                input = self.materialize(input)?;
            }
            return self.lower_updating_aggregate(a, input);
        }
        // Window columns used other than as group keys force materialization.
        if let Some(p) = input.pending {
            let mut beyond = false;
            for e in &a.group_expr {
                if classify(&input, e)?.is_none() && references_beyond(e, &input.schema, p.base_len)? {
                    beyond = true;
                }
            }
            for e in &a.aggr_expr {
                beyond |= references_beyond(e, &input.schema, p.base_len)?;
            }
            if beyond {
                input = self.materialize(input)?;
            }
        }
        if input.updating {
            return plan_err!(
                "a window aggregate cannot consume an updating input (the result of a non-windowed GROUP BY)"
            );
        }
        let mut group_columns = Vec::new();
        let mut keys = Vec::new();
        let mut key_fields = Vec::new();
        for (i, e) in a.group_expr.iter().enumerate() {
            match classify(&input, e)? {
                Some(g) => group_columns.push(g),
                None => {
                    group_columns.push(GroupColumn::Key(keys.len()));
                    keys.push(self.physical(e, &input.schema)?);
                    key_fields.push(a.schema.field(i).clone());
                }
            }
        }
        let aggregates = self.aggregate_specs(a, &input)?;
        let output_schema = Arc::new(a.schema.as_arrow().clone());
        let key_schema = Arc::new(Schema::new(key_fields));
        let (parallelism, partitioning) = self.keyed(&keys);
        let agg_names = a
            .aggr_expr
            .iter()
            .map(|e| e.schema_name().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let key_names = a
            .group_expr
            .iter()
            .filter(|e| classify(&input, e).ok().flatten().is_none())
            .map(|e| e.schema_name().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // The session aggregate is its own operator; the others differ only in where windows come from.
        type Built = (Arc<dyn OperatorFactory>, String);
        let windows_and_name: std::result::Result<Built, (WindowSource, String)> = match input.pending {
            Some(PendingWindow {
                kind: WindowKind::Session { gap },
                time_column,
                ..
            }) => {
                let config = Arc::new(SessionAggregateConfig {
                    gap,
                    time_column: self.physical(
                        &Expr::Column(Column::from(input.schema.qualified_field(time_column))),
                        &input.schema,
                    )?,
                    keys: keys.clone(),
                    key_schema: key_schema.clone(),
                    aggregates: aggregates.clone(),
                    group_columns: group_columns.clone(),
                    output_schema: output_schema.clone(),
                });
                let name = format!(
                    "WindowAggregate(window=[{}], groupBy=[{key_names}], select=[{agg_names}])",
                    WindowKind::Session { gap }
                );
                Ok((
                    FnOperatorFactory::new("session-aggregate", move |_, _| {
                        Ok(Box::new(SessionAggregate::new(config.clone())) as Box<dyn Operator>)
                    }),
                    name,
                ))
            }
            Some(PendingWindow {
                kind, time_column, ..
            }) => {
                let windows = WindowSource::Assign {
                    window: kind,
                    time_column: self.physical(
                        &Expr::Column(Column::from(input.schema.qualified_field(time_column))),
                        &input.schema,
                    )?,
                };
                let name =
                    format!("WindowAggregate(window=[{kind}], groupBy=[{key_names}], select=[{agg_names}])");
                Err((windows, name))
            }
            None => {
                let col = |idx: Option<usize>| -> Result<Arc<dyn PhysicalExpr>> {
                    let idx = idx.expect("windowed implies start and end");
                    self.physical(
                        &Expr::Column(Column::from(input.schema.qualified_field(idx))),
                        &input.schema,
                    )
                };
                let windows = WindowSource::Columns {
                    start: col(input.window.start)?,
                    end: col(input.window.end)?,
                };
                let name = format!(
                    "WindowAggregate(window=[window_start, window_end], groupBy=[{key_names}], select=[{agg_names}])"
                );
                Err((windows, name))
            }
        };
        let (factory, name): (Arc<dyn OperatorFactory>, String) = match windows_and_name {
            Ok(f) => f,
            Err((windows, name)) => (
                self.window_aggregate_factory(
                    windows,
                    keys.clone(),
                    key_schema,
                    aggregates,
                    group_columns,
                    output_schema.clone(),
                ),
                name,
            ),
        };
        let node = self.add_node(
            "window-aggregate",
            name,
            NodeKind::Operator(factory),
            output_schema.clone(),
            parallelism,
            1,
        );
        self.connect(input.node, node, 0, partitioning);
        // The result's window columns, for cascaded window aggregates.
        // `window_time` stays a rowtime attribute.
        let mut window = WindowColumns::default();
        let mut times = TimeAttributes::default();
        for (i, e) in a.group_expr.iter().enumerate() {
            match classify(&input, e)? {
                Some(GroupColumn::WindowStart) => window.start = Some(i),
                Some(GroupColumn::WindowEnd) => window.end = Some(i),
                Some(GroupColumn::WindowTime) => {
                    window.time = Some(i);
                    times.rowtime.push(i);
                }
                _ => {}
            }
        }
        Ok(Stream {
            node,
            schema: a.schema.clone(),
            updating: false,
            parallelism,
            pending: None,
            partitioned_by: None,
            window,
            times,
        })
    }

    fn window_aggregate_factory(
        &self,
        windows: WindowSource,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        key_schema: SchemaRef,
        aggregates: Vec<AggregateSpec>,
        group_columns: Vec<GroupColumn>,
        output_schema: SchemaRef,
    ) -> Arc<dyn OperatorFactory> {
        let config = Arc::new(WindowAggregateConfig {
            windows,
            keys,
            key_schema,
            aggregates,
            group_columns,
            output_schema,
        });
        FnOperatorFactory::new("window-aggregate", move |_, _| {
            Ok(Box::new(WindowAggregate::new(config.clone())) as Box<dyn Operator>)
        })
    }

    fn lower_updating_aggregate(&mut self, a: &Aggregate, input: Stream) -> Result<Stream> {
        let keys = a
            .group_expr
            .iter()
            .map(|e| self.physical(e, &input.schema))
            .collect::<Result<Vec<_>>>()?;
        let key_schema = Arc::new(Schema::new(a.schema.fields()[..a.group_expr.len()].to_vec()));
        let aggregates = self.aggregate_specs(a, &input)?;
        let output_schema = Arc::new(a.schema.as_arrow().clone());
        let (parallelism, mut partitioning) = self.keyed(&keys);
        let partition_keys = self.partition_keys_from_input(a, &input, parallelism);
        if partition_keys.is_some() {
            partitioning = Partitioning::Forward;
        }
        let config = Arc::new(UpdatingAggregateConfig {
            keys: keys.clone(),
            key_schema,
            aggregates,
            input_updating: input.updating,
            output_schema: output_schema.clone(),
            partition_keys,
        });
        config.validate()?;
        let key_names: Vec<String> = a.group_expr.iter().map(|e| e.schema_name().to_string()).collect();
        let mut name = format!(
            "GroupAggregate(groupBy=[{}], select=[{}]",
            key_names.join(", "),
            a.aggr_expr
                .iter()
                .map(|e| e.schema_name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(picked) = &config.partition_keys {
            let picked: Vec<&str> = picked.iter().map(|&k| key_names[k].as_str()).collect();
            name.push_str(&format!(", partitionedBy=[{}]", picked.join(", ")));
        }
        name.push(')');
        let factory = FnOperatorFactory::new("group-aggregate", move |_, _| {
            Ok(Box::new(UpdatingAggregate::new(config.clone())?) as Box<dyn Operator>)
        });
        let out = Stream {
            node: 0,
            schema: a.schema.clone(),
            updating: true,
            parallelism,
            pending: None,
            partitioned_by: None,
            window: WindowColumns::default(),
            times: TimeAttributes::default(),
        };
        let node = self.add_node(
            "group-aggregate",
            name,
            NodeKind::Operator(factory),
            out.physical_schema(),
            parallelism,
            1,
        );
        self.connect(input.node, node, 0, partitioning);
        Ok(Stream { node, ..out })
    }

    /// The grouping keys of `a` (indices, in hash order) by which `input`
    /// is already partitioned among the aggregate's `parallelism` subtasks
    /// (a join below on some of its keys), if the aggregate may take its
    /// rows where they are (`table.optimizer.reuse-join-partitioning`).
    fn partition_keys_from_input(
        &self,
        a: &Aggregate,
        input: &Stream,
        parallelism: usize,
    ) -> Option<Vec<usize>> {
        let hashed = input.partitioned_by.as_ref()?;
        if !self.reuse_join_partitioning || parallelism == 1 || input.parallelism != parallelism {
            return None;
        }
        hashed
            .iter()
            .map(|&column| {
                a.group_expr.iter().position(|e| match e {
                    Expr::Column(c) => input.schema.index_of_column(c).ok() == Some(column),
                    _ => false,
                })
            })
            .collect()
    }

    /// Parallelism and input partitioning of a keyed operator.
    fn keyed(&self, keys: &[Arc<dyn PhysicalExpr>]) -> (usize, Partitioning) {
        if keys.is_empty() || self.parallelism == 1 {
            (1, Partitioning::Single)
        } else {
            (self.parallelism, Partitioning::Hash(keys.to_vec()))
        }
    }

    fn aggregate_specs(&self, a: &Aggregate, input: &Stream) -> Result<Vec<AggregateSpec>> {
        let physical_schema = input.schema.as_arrow().clone();
        let planning = PhysicalPlanningContext::default();
        let props = self.state.execution_props();
        a.aggr_expr
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let name = a.schema.field(a.group_expr.len() + i).name().clone();
                let lowered =
                    LoweredAggregateBuilder::new(e, &input.schema, &physical_schema, props, &planning)
                        .with_name(name)
                        .build()?;
                Ok(AggregateSpec::new(lowered.aggregate, lowered.filter))
            })
            .collect()
    }
}

/// Whether `expr` references a column at index `>= base_len` of `schema`.
fn references_beyond(expr: &Expr, schema: &DFSchemaRef, base_len: usize) -> Result<bool> {
    for c in expr.column_refs() {
        if schema.index_of_column(c)? >= base_len {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A factory cloning a stateless operator for every subtask.
fn clone_factory<T: Operator + Clone + Sync + 'static>(name: &str, op: T) -> Arc<dyn OperatorFactory> {
    FnOperatorFactory::new(name.to_string(), move |_, _| {
        Ok(Box::new(op.clone()) as Box<dyn Operator>)
    })
}

//! The streaming planner: DDL into the catalog, and queries into job graphs,
//! with DataFusion doing parsing-to-logical-plan, type checking and
//! expression planning.

mod join;
mod lower;
mod providers;
mod prune;
mod read_columns;
mod window_args;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, Result, plan_datafusion_err, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::OptimizerRule;
use datafusion::prelude::{SessionConfig as DfConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Query, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use weir_engine::changelog::with_op_column;
use weir_engine::connector::{ConnectorOptions, ConnectorRegistry, MetadataColumn, TableRequest};
use weir_engine::graph::{JobGraph, NodeKind, OperatorFactory, Partitioning};
use weir_engine::operators::window::WindowKind;

pub use lower::{Lowering, Stream};
pub use providers::{StreamTable, WindowTvfTable};

use crate::catalog::{Catalog, ENGINE_TABLE_OPTIONS, TableDef, ViewDef, WatermarkDef};
use crate::config::SessionConfig;
use crate::parser::{CreateTableStatement, WindowTvf};

/// A query lowered to a job graph whose last node still needs its sink.
pub struct PlannedQuery {
    pub lowering_graph: JobGraph,
    /// The node whose output is the query result.
    pub tail: usize,
    pub tail_parallelism: usize,
    /// The rows of the result (without the row-kind column).
    pub schema: SchemaRef,
    /// Whether the result is a changelog.
    pub updating: bool,
    /// The optimized DataFusion logical plan, for `EXPLAIN`.
    pub logical_plan: LogicalPlan,
}

impl PlannedQuery {
    /// Appends a sink node fed by the result and returns the finished graph.
    pub fn with_sink(
        mut self,
        name: String,
        factory: Arc<dyn OperatorFactory>,
        parallelism: usize,
    ) -> JobGraph {
        let graph = &mut self.lowering_graph;
        let schema = if self.updating {
            with_op_column(&self.schema)
        } else {
            self.schema.clone()
        };
        graph.nodes.push(weir_engine::graph::Node {
            operator_id: "sink-1".into(),
            name,
            parallelism,
            kind: NodeKind::Operator(factory),
            schema,
            num_inputs: 1,
        });
        let sink = graph.nodes.len() - 1;
        let partitioning = if parallelism == self.tail_parallelism {
            Partitioning::Forward
        } else if parallelism == 1 {
            Partitioning::Single
        } else {
            Partitioning::Rebalance
        };
        graph.edges.push(weir_engine::graph::Edge {
            from: self.tail,
            to: sink,
            input: 0,
            partitioning,
        });
        self.lowering_graph
    }
}

/// Plans statements against a catalog.
///
/// Holds a DataFusion `SessionContext` in which every weir table is
/// registered as a [`StreamTable`] and every view as a DataFusion view, so
/// that DataFusion resolves names, types and functions; window TVFs are
/// registered for the duration of one statement as [`WindowTvfTable`]s.
pub struct StreamPlanner {
    ctx: SessionContext,
    pub catalog: Catalog,
    pub config: SessionConfig,
    registry: Arc<ConnectorRegistry>,
}

fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    use datafusion::optimizer::eliminate_filter::EliminateFilter;
    use datafusion::optimizer::extract_equijoin_predicate::ExtractEquijoinPredicate;
    use datafusion::optimizer::optimize_unions::OptimizeUnions;
    use datafusion::optimizer::push_down_filter::PushDownFilter;
    use datafusion::optimizer::replace_distinct_aggregate::ReplaceDistinctWithAggregate;
    use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
    // Only rules that keep the plan's streaming shape: no projection push-down
    // into scans (window TVFs need their full input), no rewrite of DISTINCT
    // aggregates into two-level aggregates.
    vec![
        Arc::new(OptimizeUnions::new()),
        Arc::new(SimplifyExpressions::new()),
        Arc::new(ReplaceDistinctWithAggregate::new()),
        Arc::new(EliminateFilter::new()),
        Arc::new(PushDownFilter::new()),
        Arc::new(ExtractEquijoinPredicate::new()),
        Arc::new(SimplifyExpressions::new()),
    ]
}

/// Lower-cases an unquoted identifier, as DataFusion does.
pub fn normalize_ident(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

/// The normalised name of a (possibly qualified) object; only the last part counts.
pub fn normalize_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(normalize_ident)
        .unwrap_or_else(|| name.to_string())
}

impl StreamPlanner {
    /// A planner with an empty catalog, resolving connectors in `registry`.
    pub fn new(registry: Arc<ConnectorRegistry>) -> Self {
        let mut config = DfConfig::new();
        let opts = config.options_mut();
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.sql_parser.collect_spans = true;
        opts.execution.time_zone = None;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(optimizer_rules())
            .build();
        StreamPlanner {
            ctx: SessionContext::new_with_state(state),
            catalog: Catalog::default(),
            config: SessionConfig::default(),
            registry,
        }
    }

    /// The DataFusion session state (functions, configuration).
    pub fn state(&self) -> SessionState {
        self.ctx.state()
    }

    /// The connectors the planner knows.
    pub fn registry(&self) -> &ConnectorRegistry {
        &self.registry
    }

    /// `CREATE TABLE`: validates the connector and its options, then registers the table.
    pub async fn create_table(&mut self, stmt: &CreateTableStatement) -> Result<String> {
        let name = normalize_name(&stmt.name);
        if self.catalog.contains(&name) {
            if stmt.if_not_exists {
                return Ok(format!("Table '{name}' already exists; nothing done."));
            }
            if !stmt.or_replace {
                return plan_err!("table or view '{name}' already exists");
            }
        }
        if !stmt.computed_columns.is_empty() {
            return plan_err!(
                "computed columns ({}) are not supported; compute them in a view over the table",
                stmt.computed_columns
                    .iter()
                    .map(|c| c.name.value.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let schema = self.column_schema(&stmt.columns).await?;
        // As in Flink, primary key columns are NOT NULL.
        let primary_key: Vec<String> = stmt.primary_key.iter().map(normalize_ident).collect();
        let schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| {
                    let key = primary_key.contains(f.name());
                    f.as_ref().clone().with_nullable(f.is_nullable() && !key)
                })
                .collect::<Vec<_>>(),
        ));
        let mut options = BTreeMap::new();
        for (k, v) in &stmt.options {
            options.insert(k.clone(), v.clone());
        }
        let Some(connector_name) = options.get("connector").cloned() else {
            return plan_err!(
                "table '{name}' needs a 'connector' option; available connectors are: {}",
                self.registry.names().join(", ")
            );
        };
        let connector = self.registry.get(&connector_name)?.clone();
        let metadata = validate_metadata_columns(&connector_name, connector.as_ref(), stmt, &schema)?;
        let engine_opts = ConnectorOptions::new(
            options
                .iter()
                .filter(|(k, _)| ENGINE_TABLE_OPTIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let idle_timeout = engine_opts
            .get_duration("scan.watermark.idle-timeout")?
            .filter(|d| !d.is_zero());
        let alignment_max_drift = engine_opts.get_duration("scan.watermark.alignment.max-drift")?;
        let alignment_group = engine_opts
            .get("scan.watermark.alignment.group")
            .map(str::to_string);
        if alignment_group.is_some() && alignment_max_drift.is_none() {
            return plan_err!(
                "table '{name}': 'scan.watermark.alignment.group' needs 'scan.watermark.alignment.max-drift' \
                 (how far the table may read ahead of the slowest source of the group)"
            );
        }
        let scan_parallelism = engine_opts
            .get_u64("scan.parallelism")?
            .map(|p| p.max(1) as usize);
        let sink_parallelism = engine_opts
            .get_u64("sink.parallelism")?
            .map(|p| p.max(1) as usize);
        options.retain(|k, _| !ENGINE_TABLE_OPTIONS.contains(&k.as_str()));
        let options = ConnectorOptions::new(options);

        let watermark = match &stmt.watermark {
            Some(w) => {
                let column = normalize_ident(&w.column);
                let Ok(field) = schema.field_with_name(&column) else {
                    return plan_err!(
                        "WATERMARK FOR '{column}': no such column in table '{name}' (columns: {})",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                };
                if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
                    return plan_err!(
                        "WATERMARK FOR '{column}': the rowtime column must be a TIMESTAMP, not {}",
                        field.data_type()
                    );
                }
                let expr_sql = w.expr.to_string();
                // Plan it now so that errors surface at CREATE TABLE.
                let df_schema = DFSchema::try_from_qualified_schema(name.as_str(), &schema)?;
                let expr = self.ctx.state().create_logical_expr(&expr_sql, &df_schema)?;
                let ty = datafusion::logical_expr::ExprSchemable::get_type(&expr, &df_schema)?;
                if !matches!(ty, DataType::Timestamp(_, _)) {
                    return plan_err!("the WATERMARK expression must be a TIMESTAMP, not {ty}: {expr_sql}");
                }
                Some(WatermarkDef { column, expr_sql })
            }
            None => None,
        };
        if alignment_max_drift.is_some() && watermark.is_none() {
            return plan_err!(
                "table '{name}': 'scan.watermark.alignment.max-drift' aligns the source's subtasks by their \
                 watermarks, and the table declares none (add WATERMARK FOR column AS expr)"
            );
        }
        let request = TableRequest {
            schema: &schema,
            options: &options,
            metadata: &metadata,
            primary_key: &primary_key,
        };
        let source = connector.create_source(&request).map_err(|e| e.to_string());
        let sink = connector.create_sink(&request).map_err(|e| e.to_string());
        if let (Err(src), Err(snk)) = (&source, &sink) {
            // Option errors are the same for both sides; report the first.
            let msg = if src.contains("cannot be read from") {
                snk
            } else {
                src
            };
            return plan_err!("{}", msg.trim_start_matches("Error during planning: "));
        }
        let def = TableDef {
            name: name.clone(),
            schema: schema.clone(),
            connector: connector_name,
            options,
            watermark,
            idle_timeout,
            alignment_max_drift,
            alignment_group,
            scan_parallelism,
            sink_parallelism,
            primary_key,
            virtual_columns: metadata
                .iter()
                .filter(|m| m.is_virtual)
                .map(|m| m.column.clone())
                .collect(),
            source,
            sink,
        };
        self.ctx.deregister_table(name.as_str())?;
        self.catalog.views.remove(&name);
        self.ctx.register_table(
            name.as_str(),
            Arc::new(StreamTable {
                name: name.clone(),
                schema,
            }),
        )?;
        self.catalog.tables.insert(name.clone(), def);
        Ok(format!("Table '{name}' created."))
    }

    /// The Arrow schema of a column list, with DataFusion's SQL type mapping.
    async fn column_schema(
        &self,
        columns: &[datafusion::sql::sqlparser::ast::ColumnDef],
    ) -> Result<SchemaRef> {
        if columns.is_empty() {
            return plan_err!("a table needs at least one column");
        }
        use datafusion::sql::sqlparser::ast::DataType as SqlType;
        let cols = columns
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.data_type = match c.data_type {
                    // Flink's BYTES / VARBINARY are DataFusion's BYTEA.
                    SqlType::Bytes(_) | SqlType::Varbinary(_) | SqlType::Binary(_) => SqlType::Bytea,
                    // Flink's TIMESTAMP without precision is TIMESTAMP(6).
                    SqlType::Timestamp(None, tz) => SqlType::Timestamp(Some(6), tz),
                    other => other,
                };
                c.to_string()
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("CREATE TABLE weir_ddl_probe ({cols})");
        let mut state = self.ctx.state();
        // TIMESTAMP WITH LOCAL TIME ZONE takes the session zone: UTC instants.
        state.config_mut().options_mut().execution.time_zone = Some("UTC".into());
        let stmt = state.sql_to_statement(&sql, &datafusion::config::Dialect::Generic)?;
        let plan = state.statement_to_plan(stmt).await?;
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
                let schema = c.input.schema().as_arrow().clone();
                // TIMESTAMP WITH LOCAL TIME ZONE: keep UTC instants.
                let fields: Vec<Field> = schema
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Timestamp(unit, Some(_)) => f
                            .as_ref()
                            .clone()
                            .with_data_type(DataType::Timestamp(*unit, Some("UTC".into()))),
                        _ => f.as_ref().clone(),
                    })
                    .collect();
                Ok(Arc::new(Schema::new(fields)))
            }
            other => plan_err!("internal: unexpected plan for column types: {}", other.display()),
        }
    }

    /// `CREATE VIEW`.
    pub async fn create_view(
        &mut self,
        name: &ObjectName,
        columns: &[Ident],
        query: &Query,
        or_replace: bool,
        if_not_exists: bool,
        window_tvfs: &[WindowTvf],
    ) -> Result<String> {
        let name = normalize_name(name);
        if self.catalog.contains(&name) {
            if if_not_exists {
                return Ok(format!("View '{name}' already exists; nothing done."));
            }
            if !or_replace || self.catalog.tables.contains_key(&name) {
                return plan_err!("table or view '{name}' already exists");
            }
        }
        let mut plan = self.logical_plan(query, window_tvfs).await?;
        if !columns.is_empty() {
            if columns.len() != plan.schema().fields().len() {
                return plan_err!(
                    "view '{name}' names {} columns but its query has {}",
                    columns.len(),
                    plan.schema().fields().len()
                );
            }
            let exprs = plan
                .schema()
                .columns()
                .into_iter()
                .zip(columns)
                .map(|(c, n)| datafusion::logical_expr::Expr::Column(c).alias(normalize_ident(n)))
                .collect::<Vec<_>>();
            plan = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
        }
        // Validate that the view can be lowered (fails early on unsupported shapes).
        self.lower_plan(&plan)?;
        let view = datafusion::datasource::ViewTable::new(plan.clone(), Some(query.to_string()));
        self.ctx.deregister_table(name.as_str())?;
        self.ctx.register_table(name.as_str(), Arc::new(view))?;
        self.catalog.views.insert(
            name.clone(),
            ViewDef {
                name: name.clone(),
                sql: query.to_string(),
                plan,
            },
        );
        Ok(format!("View '{name}' created."))
    }

    /// `DROP TABLE|VIEW`.
    pub fn drop_objects(&mut self, view: bool, names: &[ObjectName], if_exists: bool) -> Result<String> {
        let mut dropped = Vec::new();
        for n in names {
            let name = normalize_name(n);
            let exists = if view {
                self.catalog.views.contains_key(&name)
            } else {
                self.catalog.tables.contains_key(&name)
            };
            if !exists {
                if if_exists {
                    continue;
                }
                let kind = if view { "view" } else { "table" };
                let hint = if !view && self.catalog.views.contains_key(&name) {
                    " (it is a view: use DROP VIEW)"
                } else if view && self.catalog.tables.contains_key(&name) {
                    " (it is a table: use DROP TABLE)"
                } else {
                    ""
                };
                return plan_err!("{kind} '{name}' does not exist{hint}");
            }
            if view {
                self.catalog.views.remove(&name);
            } else {
                self.catalog.tables.remove(&name);
            }
            self.ctx.deregister_table(name.as_str())?;
            dropped.push(name);
        }
        Ok(if dropped.is_empty() {
            "Nothing dropped.".into()
        } else {
            format!("Dropped {}.", dropped.join(", "))
        })
    }

    /// Registers the window TVFs of a statement, plans the query with
    /// DataFusion, and unregisters them.
    pub async fn logical_plan(&mut self, query: &Query, window_tvfs: &[WindowTvf]) -> Result<LogicalPlan> {
        self.plan_statement(Statement::Query(Box::new(query.clone())), window_tvfs)
            .await
    }

    async fn plan_statement(
        &mut self,
        mut statement: Statement,
        window_tvfs: &[WindowTvf],
    ) -> Result<LogicalPlan> {
        alias_window_tvfs(&mut statement, window_tvfs);
        let mut registered = Vec::new();
        let ctes: Vec<(String, Query)> = match &statement {
            Statement::Query(q) => with_clauses(q),
            Statement::Insert(i) => i.source.as_deref().map(with_clauses).unwrap_or_default(),
            _ => Vec::new(),
        };
        let result = async {
            // Window TVFs over tables and views first; then the statement's
            // CTEs (which may use those), then the TVFs over CTEs.
            let mut cte_plans = HashMap::new();
            let mut pending: Vec<&WindowTvf> = Vec::new();
            for tvf in window_tvfs {
                if canonical_window_tvf(window_tvfs, tvf).placeholder != tvf.placeholder {
                    continue; // its scans were renamed to the equal TVF's
                }
                if ctes.iter().any(|(n, _)| *n == normalize_name(&tvf.input)) {
                    pending.push(tvf);
                    continue;
                }
                let provider = self.window_tvf_table(tvf, &cte_plans).await?;
                self.ctx.register_table(tvf.placeholder.as_str(), provider)?;
                registered.push(tvf.placeholder.clone());
            }
            if !pending.is_empty() {
                for (name, query) in &ctes {
                    let state = self.ctx.state();
                    let stmt = DfStatement::Statement(Box::new(Statement::Query(Box::new(query.clone()))));
                    if let Ok(plan) = state.statement_to_plan(stmt).await {
                        // Optimized as a view's plan is (e.g. join conditions
                        // pushed into joins and split into keys).
                        let plan = state.optimize(&plan).unwrap_or(plan);
                        cte_plans.insert(name.clone(), plan);
                    }
                }
                for tvf in pending {
                    let provider = self.window_tvf_table(tvf, &cte_plans).await?;
                    self.ctx.register_table(tvf.placeholder.as_str(), provider)?;
                    registered.push(tvf.placeholder.clone());
                }
            }
            let state = self.ctx.state();
            let plan = state
                .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                .await?;
            state.optimize(&plan)
        }
        .await;
        for name in registered {
            self.ctx.deregister_table(name.as_str())?;
        }
        result
    }

    async fn window_tvf_table(
        &self,
        tvf: &WindowTvf,
        ctes: &HashMap<String, LogicalPlan>,
    ) -> Result<Arc<dyn TableProvider>> {
        let input_name = normalize_name(&tvf.input);
        let input = if let Some(plan) = ctes.get(&input_name) {
            plan.clone()
        } else if self.catalog.tables.contains_key(&input_name) {
            let provider = self.ctx.table_provider(input_name.as_str()).await?;
            LogicalPlanBuilder::scan(input_name.as_str(), provider_as_source(provider), None)?.build()?
        } else if let Some(view) = self.catalog.views.get(&input_name) {
            view.plan.clone()
        } else {
            return plan_err!(
                "{}: no table, view or WITH query named '{input_name}'",
                tvf.kind.name()
            );
        };
        let time_name = normalize_ident(&tvf.time_column);
        let schema = input.schema();
        let Some(time_column) = schema.fields().iter().position(|f| f.name() == &time_name) else {
            return plan_err!(
                "{}: DESCRIPTOR({time_name}) names no column of '{input_name}' (columns: {})",
                tvf.kind.name(),
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let time_type = schema.field(time_column).data_type().clone();
        let window_type = match &time_type {
            DataType::Timestamp(unit, tz) => DataType::Timestamp(*unit, tz.clone()),
            other => {
                return plan_err!(
                    "{}: the time column '{time_name}' must be a TIMESTAMP (a rowtime attribute), not {other}",
                    tvf.kind.name()
                );
            }
        };
        let kind = window_args::window_kind(&self.ctx.state(), tvf)?;
        if let (DataType::Timestamp(TimeUnit::Second, _), true) = (&window_type, kind_has_subsecond(&kind)) {
            return plan_err!(
                "{}: durations below a second need a TIMESTAMP with sub-second precision",
                tvf.kind.name()
            );
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for n in ["window_start", "window_end", "window_time"] {
            if fields.iter().any(|f| f.name() == n) {
                return plan_err!("{}: the input already has a column named '{n}'", tvf.kind.name());
            }
            fields.push(Field::new(n, window_type.clone(), false));
        }
        Ok(Arc::new(WindowTvfTable {
            kind,
            input,
            time_column,
            schema: Arc::new(Schema::new(fields)),
        }))
    }

    /// Plans a query into a job graph (without its sink).
    pub async fn plan_query(&mut self, query: &Query, window_tvfs: &[WindowTvf]) -> Result<PlannedQuery> {
        let plan = self.logical_plan(query, window_tvfs).await?;
        self.lower_plan(&plan)
    }

    /// Plans `INSERT INTO table [(columns)] query`: the graph with the table's sink.
    pub async fn plan_insert(
        &mut self,
        table: &ObjectName,
        columns: &[Ident],
        query: &Query,
        window_tvfs: &[WindowTvf],
    ) -> Result<(PlannedQuery, Arc<dyn weir_engine::connector::SinkSpec>, TableDef)> {
        let name = normalize_name(table);
        let Some(def) = self.catalog.tables.get(&name).cloned() else {
            if self.catalog.views.contains_key(&name) {
                return plan_err!("cannot INSERT INTO view '{name}': views are read-only");
            }
            return plan_err!(
                "INSERT INTO '{name}': no such table (tables: {})",
                self.catalog.tables.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        let sink = def
            .sink
            .clone()
            .map_err(|why| plan_datafusion_err!("table '{name}' cannot be written: {why}"))?;
        // Without a column list, an INSERT writes the persisted columns: all
        // but the virtual metadata ones (which DataFusion then fills with NULL).
        let column_list: Vec<String> = if columns.is_empty() && !def.virtual_columns.is_empty() {
            def.schema
                .fields()
                .iter()
                .filter(|f| !def.virtual_columns.contains(f.name()))
                .map(|f| format!("\"{}\"", f.name().replace('"', "\"\"")))
                .collect()
        } else {
            columns.iter().map(|c| c.to_string()).collect()
        };
        let insert = datafusion::sql::sqlparser::parser::Parser::new(&GenericDialect {})
            .try_with_sql(&format!(
                "INSERT INTO \"{}\" {} SELECT 1",
                name.replace('"', "\"\""),
                if column_list.is_empty() {
                    String::new()
                } else {
                    format!("({})", column_list.join(", "))
                }
            ))?
            .parse_statement()?;
        let Statement::Insert(mut insert) = insert else {
            return plan_err!("internal: INSERT did not parse as INSERT");
        };
        insert.source = Some(Box::new(query.clone()));
        let plan = self
            .plan_statement(Statement::Insert(insert), window_tvfs)
            .await?;
        let LogicalPlan::Dml(dml) = &plan else {
            return plan_err!("internal: INSERT did not plan as DML");
        };
        check_insert_types(&name, &dml.input, &def.schema)?;
        let planned = self.lower_plan(&dml.input)?;
        if planned.updating && !sink.accepts_changelog() {
            return plan_err!(
                "table sink '{name}' (connector '{}') is append-only and cannot consume the update and delete changes \
                 produced by this query (a non-windowed aggregate); write it to an upsert sink or use a window aggregate",
                def.connector
            );
        }
        Ok((
            PlannedQuery {
                logical_plan: plan.clone(),
                ..planned
            },
            sink,
            def,
        ))
    }

    /// Lowers an optimized logical plan.
    pub fn lower_plan(&self, plan: &LogicalPlan) -> Result<PlannedQuery> {
        let state = self.ctx.state();
        let mut lowering = Lowering::new(
            &state,
            &self.catalog,
            self.config.parallelism(),
            self.config.max_parallelism(),
        );
        lowering.default_idle_timeout = self.config.idle_timeout();
        lowering.reuse_join_partitioning = self.config.reuse_join_partitioning();
        lowering.read_columns = read_columns::read_columns(plan);
        let stream = lowering.lower(&prune::prune_join_inputs(plan)?)?;
        let stream = lowering.finish(stream)?;
        let schema = Arc::new(stream.schema.as_arrow().clone());
        Ok(PlannedQuery {
            tail: stream.node,
            tail_parallelism: stream.parallelism,
            schema,
            updating: stream.updating,
            logical_plan: plan.clone(),
            lowering_graph: lowering.into_graph(String::new()),
        })
    }
}

/// Checks a table's `METADATA` columns against the keys its connector
/// offers: the key must exist and the declared type must be the key's type.
fn validate_metadata_columns(
    connector_name: &str,
    connector: &dyn weir_engine::connector::Connector,
    stmt: &CreateTableStatement,
    schema: &Schema,
) -> Result<Vec<MetadataColumn>> {
    if stmt.metadata_columns.is_empty() {
        return Ok(Vec::new());
    }
    let offered = connector.metadata();
    if offered.is_empty() {
        return plan_err!(
            "connector '{connector_name}' provides no METADATA columns (declared: {})",
            stmt.metadata_columns
                .iter()
                .map(|c| c.name.value.clone())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = Vec::with_capacity(stmt.metadata_columns.len());
    for m in &stmt.metadata_columns {
        let column = normalize_ident(&m.name);
        let key = m.key.clone().unwrap_or_else(|| column.clone());
        let Some(spec) = offered.iter().find(|s| s.key == key) else {
            return plan_err!(
                "unknown metadata key '{key}' for column '{column}' of connector '{connector_name}'; valid keys are: {}",
                offered.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
            );
        };
        let declared = schema.field_with_name(&column)?.data_type();
        let compatible = declared == &spec.data_type
            || matches!(
                (declared, &spec.data_type),
                (DataType::Timestamp(_, _), DataType::Timestamp(_, _))
            );
        if !compatible {
            return plan_err!(
                "metadata column '{column}' ('{key}' of connector '{connector_name}') must be declared as {}, not {declared}",
                spec.data_type
            );
        }
        out.push(MetadataColumn {
            column,
            key,
            is_virtual: m.is_virtual,
        });
    }
    Ok(out)
}

/// The CTEs of a query's WITH clause, by normalised name, in order.
fn with_clauses(query: &Query) -> Vec<(String, Query)> {
    query
        .with
        .as_ref()
        .map(|w| {
            w.cte_tables
                .iter()
                .map(|c| (normalize_ident(&c.alias.name), (*c.query).clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The broad kind of a type, for Flink's rule that `INSERT` converts
/// implicitly only within a kind (numbers to numbers, text to text, ...).
fn type_family(t: &DataType) -> &'static str {
    match t {
        DataType::Null => "null",
        DataType::Boolean => "boolean",
        t if t.is_numeric() => "numeric",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "character string",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "binary string"
        }
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => "datetime",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::Interval(_) | DataType::Duration(_) => "interval",
        _ => "other",
    }
}

/// Rejects an `INSERT` whose query columns cannot be converted implicitly
/// to the table's (DataFusion would cast them, and fail only at run time).
fn check_insert_types(table: &str, input: &LogicalPlan, schema: &Schema) -> Result<()> {
    use datafusion::logical_expr::{Cast, Expr, ExprSchemable, TryCast};
    let LogicalPlan::Projection(p) = input else {
        return Ok(());
    };
    for (i, e) in p.expr.iter().enumerate() {
        let inner = match e.clone().unalias() {
            Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => *expr,
            _ => continue,
        };
        let from = inner.get_type(p.input.schema())?;
        let Some(field) = schema.fields().get(i) else {
            continue;
        };
        let (a, b) = (type_family(&from), type_family(field.data_type()));
        if a != b && a != "null" {
            return plan_err!(
                "INSERT INTO '{table}': column '{}' is {} but the query gives {} ({a}); cast it explicitly",
                field.name(),
                field.data_type(),
                from
            );
        }
    }
    Ok(())
}

/// Gives every window TVF without an alias its input's name as alias, so
/// that result columns read `max(bid.price)`, not `max(__weir_tvf_0.price)`.
fn alias_window_tvfs(statement: &mut Statement, window_tvfs: &[WindowTvf]) {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{Ident, ObjectName, TableAlias, TableFactor, VisitMut, VisitorMut};

    struct Aliaser<'a>(&'a [WindowTvf]);
    impl VisitorMut for Aliaser<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, .. } = factor {
                let placeholder = normalize_name(name);
                if let Some(tvf) = self.0.iter().find(|t| t.placeholder == placeholder) {
                    if alias.is_none()
                        && let Some(input) = tvf.input.0.last().and_then(|p| p.as_ident())
                    {
                        *alias = Some(TableAlias {
                            explicit: true,
                            name: input.clone(),
                            columns: vec![],
                            at: None,
                        });
                    }
                    // Aliased, the placeholder's name is seen by nothing but
                    // the scan: the same window of the same input is one table.
                    let canonical = canonical_window_tvf(self.0, tvf);
                    if canonical.placeholder != tvf.placeholder {
                        *name = ObjectName::from(vec![Ident::new(canonical.placeholder.clone())]);
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Aliaser(window_tvfs));
}

/// The first of `window_tvfs` that is the same window TVF as `tvf` (the same
/// kind, input, time column and sizes): textually equal TVFs of one statement
/// read one table, so the subqueries over them are equal plans and are
/// lowered once (see `Lowering::lower`), as Flink reuses equal sub-plans.
fn canonical_window_tvf<'a>(window_tvfs: &'a [WindowTvf], tvf: &'a WindowTvf) -> &'a WindowTvf {
    window_tvfs
        .iter()
        .find(|t| {
            WindowTvf {
                placeholder: tvf.placeholder.clone(),
                ..(*t).clone()
            } == *tvf
        })
        .unwrap_or(tvf)
}

fn kind_has_subsecond(kind: &WindowKind) -> bool {
    let sub = |ns: i64| ns % 1_000_000_000 != 0;
    match *kind {
        WindowKind::Tumble { size, offset } => sub(size) || sub(offset),
        WindowKind::Hop { slide, size, offset } => sub(slide) || sub(size) || sub(offset),
        WindowKind::Cumulate { step, max, offset } => sub(step) || sub(max) || sub(offset),
        WindowKind::Session { gap } => sub(gap),
    }
}

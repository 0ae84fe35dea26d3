//! [`Engine`]: the embeddable entry point. Submit SQL, get job handles and
//! result streams, in-process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Query};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use weir_engine::checkpoint::job_dir_name;
use weir_engine::checkpoint::restore::{RestoreSource, latest_restorable};
use weir_engine::checkpoint::stats::CheckpointStatus;
use weir_engine::checkpoint::storage::CheckpointStorage;
use weir_engine::connector::{Connector, ConnectorRegistry, SinkRequest, SinkSpec};
use weir_engine::metrics::OperatorMetricsSummary;
use weir_engine::operator::Operator;
use weir_engine::operators::collect::CollectSink;
use weir_engine::operators::factory::FnOperatorFactory;
use weir_engine::runtime::{JobHandle, JobStatus, start_job, start_job_with};
use weir_engine::state::{HashMapBackendFactory, StateBackendFactory};
use weir_sql::catalog::TableDef;
use weir_sql::parser::{DropKind, WeirStatement, WindowTvf, parse_statements};
use weir_sql::planner::{PlannedQuery, StreamPlanner, normalize_name};

use crate::error::{Error, Result};
use crate::result::{QueryResult, StatementResult};

/// How many result batches a `SELECT` buffers before its job waits for the reader.
const RESULT_BUFFER: usize = 16;

/// Builds an [`Engine`] with extra connectors or initial configuration.
pub struct EngineBuilder {
    registry: ConnectorRegistry,
    config: Vec<(String, String)>,
    backends: Vec<Arc<dyn StateBackendFactory>>,
}

impl EngineBuilder {
    /// Adds a connector (replacing a built-in one of the same name).
    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.registry.register(connector);
        self
    }

    /// Sets a configuration key, as `SET 'key' = 'value'` would.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Adds a state backend (selected by `state.backend.type` = its name).
    pub fn with_state_backend(mut self, backend: Arc<dyn StateBackendFactory>) -> Self {
        self.backends.retain(|b| b.name() != backend.name());
        self.backends.push(backend);
        self
    }

    /// Builds the engine; fails on an invalid configuration key or value.
    pub fn build(self) -> Result<Engine> {
        let mut planner = StreamPlanner::new(Arc::new(self.registry));
        for (k, v) in &self.config {
            planner.config.set(k, v)?;
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                planner: tokio::sync::Mutex::new(planner),
                jobs: Mutex::new(BTreeMap::new()),
                next_job: AtomicU64::new(1),
                backends: self.backends,
            }),
        })
    }
}

struct Inner {
    planner: tokio::sync::Mutex<StreamPlanner>,
    jobs: Mutex<BTreeMap<String, JobHandle>>,
    next_job: AtomicU64,
    backends: Vec<Arc<dyn StateBackendFactory>>,
}

/// A weir engine: a catalog, a session configuration, and the jobs it runs.
///
/// Cheap to clone; clones share everything. Statements run on the caller's
/// tokio runtime, and jobs are spawned on it: keep the runtime alive while
/// jobs run.
///
/// ```no_run
/// # async fn demo() -> weir::Result<()> {
/// let engine = weir::Engine::new();
/// engine.execute("CREATE TABLE t (x BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10')").await?;
/// let rows = engine.query("SELECT x * 2 AS y FROM t").await?.collect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("jobs", &self.inner.jobs.lock().len())
            .finish()
    }
}

/// The connectors every engine has: datagen, nexmark, orders, filesystem, print, blackhole.
pub fn builtin_connectors() -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::default();
    weir_connectors::register_all(&mut registry);
    registry
}

impl Engine {
    /// An engine with the built-in connectors and default configuration.
    pub fn new() -> Engine {
        Engine::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder, starting from the built-in connectors.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            registry: builtin_connectors(),
            config: Vec::new(),
            backends: builtin_state_backends(),
        }
    }

    /// Runs every statement of `sql` in order, stopping at the first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<StatementResult>> {
        let statements = parse_statements(sql)?;
        let mut results = Vec::with_capacity(statements.len());
        for stmt in statements {
            results.push(self.execute_statement(stmt).await?);
        }
        Ok(results)
    }

    /// Runs one parsed statement.
    pub async fn execute_statement(&self, stmt: WeirStatement) -> Result<StatementResult> {
        let mut planner = self.inner.planner.lock().await;
        match stmt {
            WeirStatement::CreateTable(ct) => Ok(StatementResult::Ok(planner.create_table(&ct).await?)),
            WeirStatement::CreateView {
                name,
                columns,
                query,
                or_replace,
                if_not_exists,
                window_tvfs,
                ..
            } => Ok(StatementResult::Ok(
                planner
                    .create_view(&name, &columns, &query, or_replace, if_not_exists, &window_tvfs)
                    .await?,
            )),
            WeirStatement::Drop {
                kind,
                names,
                if_exists,
            } => Ok(StatementResult::Ok(planner.drop_objects(
                kind == DropKind::View,
                &names,
                if_exists,
            )?)),
            WeirStatement::Set {
                key: Some(key),
                value: Some(value),
            } => {
                planner.config.set(&key, &value)?;
                Ok(StatementResult::Ok(format!("'{key}' = '{value}'")))
            }
            WeirStatement::Set {
                key: Some(key),
                value: None,
            } => {
                let value = planner.config.get(&key).map(str::to_string);
                match value {
                    Some(v) => Ok(StatementResult::Table(key_values(vec![(key, v)]))),
                    None => Err(Error::plan(format!("unknown configuration key '{key}'"))),
                }
            }
            WeirStatement::Set { .. } => Ok(StatementResult::Table(key_values(
                planner
                    .config
                    .entries()
                    .into_iter()
                    .map(|(k, v, _)| (k.to_string(), v))
                    .collect(),
            ))),
            WeirStatement::Reset { key } => {
                planner.config.reset(key.as_deref())?;
                Ok(StatementResult::Ok(match key {
                    Some(k) => format!("'{k}' reset to its default."),
                    None => "All configuration reset to defaults.".into(),
                }))
            }
            WeirStatement::ShowTables => Ok(StatementResult::Table(single_column(
                "table name",
                planner.catalog.tables.keys().cloned().collect(),
            ))),
            WeirStatement::ShowViews => Ok(StatementResult::Table(single_column(
                "view name",
                planner.catalog.views.keys().cloned().collect(),
            ))),
            WeirStatement::ShowFunctions => {
                let state = planner.state();
                let mut names: Vec<String> = state
                    .scalar_functions()
                    .keys()
                    .chain(state.aggregate_functions().keys())
                    .cloned()
                    .collect();
                names.sort();
                names.dedup();
                Ok(StatementResult::Table(single_column("function name", names)))
            }
            WeirStatement::ShowJobs => Ok(StatementResult::Table(self.jobs_table())),
            WeirStatement::ShowCheckpoints { job_id } => {
                let jobs = match job_id {
                    Some(id) => vec![
                        self.job(&id)
                            .ok_or_else(|| Error::plan(format!("no job with id '{id}' (see SHOW JOBS)")))?,
                    ],
                    None => self.jobs(),
                };
                Ok(StatementResult::Table(checkpoints_table(&jobs)))
            }
            WeirStatement::Trigger {
                job_id,
                savepoint,
                directory,
            } => {
                drop(planner);
                let job = self
                    .job(&job_id)
                    .ok_or_else(|| Error::plan(format!("no job with id '{job_id}' (see SHOW JOBS)")))?;
                if savepoint {
                    let path = job.trigger_savepoint(directory).await?;
                    Ok(StatementResult::Ok(format!(
                        "Savepoint of job '{job_id}' completed: {path}"
                    )))
                } else {
                    let id = job.trigger_checkpoint().await?;
                    Ok(StatementResult::Ok(format!(
                        "Checkpoint {id} of job '{job_id}' completed."
                    )))
                }
            }
            WeirStatement::Describe { name } => Ok(StatementResult::Table(describe(&planner, &name)?)),
            WeirStatement::Help => Ok(StatementResult::Text(crate::help::HELP.to_string())),
            WeirStatement::StopJob {
                job_id,
                with_savepoint,
                savepoint_dir,
                cancel,
            } => {
                // Stopping waits for the job: do not block other statements meanwhile.
                drop(planner);
                let job = self
                    .job(&job_id)
                    .ok_or_else(|| Error::plan(format!("no job with id '{job_id}' (see SHOW JOBS)")))?;
                if job.status().is_terminal() {
                    return Ok(StatementResult::Ok(format!(
                        "Job '{job_id}' has already ended ({}).",
                        job.status().name()
                    )));
                }
                if with_savepoint {
                    let path = job.stop_with_savepoint(savepoint_dir).await?;
                    let status = job.wait().await.map(|s| s.name()).unwrap_or("FAILED");
                    return Ok(StatementResult::Ok(format!(
                        "Job '{job_id}' stopped ({status}) with savepoint {path}"
                    )));
                }
                if cancel {
                    job.cancel();
                } else {
                    job.stop();
                }
                let status = job.wait().await.map(|s| s.name()).unwrap_or("FAILED");
                Ok(StatementResult::Ok(format!("Job '{job_id}' stopped ({status}).")))
            }
            WeirStatement::Explain { query } => {
                let (planned, sink_note, sink_parallelism) = match *query {
                    WeirStatement::Query { query, window_tvfs } => (
                        planner.plan_query(&query, &window_tvfs).await?,
                        "Sink: collect (query result)".to_string(),
                        1,
                    ),
                    WeirStatement::Insert {
                        table,
                        columns,
                        query,
                        window_tvfs,
                    } => {
                        let (planned, sink, def) = planner
                            .plan_insert(&table, &columns, &query, &window_tvfs)
                            .await?;
                        let p = sink_parallelism(&def, sink.as_ref(), &planned);
                        (planned, format!("Sink: {}[{}]", def.name, def.connector), p)
                    }
                    _ => return Err(Error::plan("EXPLAIN takes a query or an INSERT")),
                };
                let logical = planned.logical_plan.display_indent().to_string();
                let graph = planned.with_sink(
                    sink_note,
                    FnOperatorFactory::new("explain", |_, _| {
                        Err(datafusion::common::DataFusionError::Plan("explain only".into()))
                    }),
                    sink_parallelism,
                );
                Ok(StatementResult::Text(format!(
                    "== Optimized Logical Plan ==\n{logical}\n\n== Job Graph ==\n{}",
                    graph.explain()
                )))
            }
            WeirStatement::Insert {
                table,
                columns,
                query,
                window_tvfs,
            } => {
                let job = self
                    .submit_insert(&mut planner, &table, &columns, &query, &window_tvfs)
                    .await?;
                if planner.config.dml_sync() {
                    drop(planner);
                    job.wait().await?;
                }
                Ok(StatementResult::Job(job))
            }
            WeirStatement::Query { query, window_tvfs } => Ok(StatementResult::Query(
                self.start_query(&mut planner, &query, &window_tvfs).await?,
            )),
        }
    }

    /// Runs a single `SELECT` and returns its result stream.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        match self.single(sql, "a SELECT query").await? {
            StatementResult::Query(q) => Ok(q),
            _ => Err(Error::plan("expected a SELECT query")),
        }
    }

    /// Plans a single `SELECT` without running it: its result schema, and
    /// whether the result is updating (a changelog).
    pub async fn describe_query(&self, sql: &str) -> Result<(arrow::datatypes::SchemaRef, bool)> {
        let mut statements = parse_statements(sql)?;
        let (Some(WeirStatement::Query { query, window_tvfs }), 1) = (statements.pop(), statements.len() + 1)
        else {
            return Err(Error::plan("expected exactly one SELECT query"));
        };
        let mut planner = self.inner.planner.lock().await;
        let planned = planner.plan_query(&query, &window_tvfs).await?;
        Ok((planned.schema.clone(), planned.updating))
    }

    /// Submits a single `INSERT INTO ... SELECT ...` and returns its job.
    pub async fn submit(&self, sql: &str) -> Result<JobHandle> {
        match self.single(sql, "an INSERT INTO statement").await? {
            StatementResult::Job(j) => Ok(j),
            _ => Err(Error::plan("expected an INSERT INTO statement")),
        }
    }

    async fn single(&self, sql: &str, what: &str) -> Result<StatementResult> {
        let mut statements = parse_statements(sql)?;
        if statements.len() != 1 {
            return Err(Error::plan(format!(
                "expected exactly one statement, {what}; got {}",
                statements.len()
            )));
        }
        self.execute_statement(statements.remove(0)).await
    }

    /// Every job this engine started, oldest first.
    pub fn jobs(&self) -> Vec<JobHandle> {
        let mut jobs: Vec<JobHandle> = self.inner.jobs.lock().values().cloned().collect();
        jobs.sort_by_key(|j| j.started());
        jobs
    }

    /// The job with id `id`.
    pub fn job(&self, id: &str) -> Option<JobHandle> {
        self.inner.jobs.lock().get(id).cloned()
    }

    fn new_job_id(&self) -> String {
        let n = self.inner.next_job.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // Unique within the engine (the counter), unlikely to repeat across runs (the clock).
        let mixed = (t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        format!("{:08x}", (mixed >> 32) as u32 ^ n as u32)
    }

    fn register(&self, job: &JobHandle) {
        self.inner.jobs.lock().insert(job.id().to_string(), job.clone());
    }

    async fn submit_insert(
        &self,
        planner: &mut StreamPlanner,
        table: &ObjectName,
        columns: &[Ident],
        query: &Query,
        window_tvfs: &[WindowTvf],
    ) -> Result<JobHandle> {
        let (planned, sink, def) = planner.plan_insert(table, columns, query, window_tvfs).await?;
        let parallelism = sink_parallelism(&def, sink.as_ref(), &planned);
        let request = SinkRequest {
            schema: def.schema.clone(),
            updating: planned.updating,
        };
        let name = format!("Sink: {}[{}]", def.name, def.connector);
        let sink_factory = sink.clone();
        let factory = FnOperatorFactory::new(name.clone(), move |s, p| sink_factory.create(&request, s, p));
        let mut graph = planned.with_sink(name, factory, parallelism);
        graph.name = planner
            .config
            .pipeline_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("insert-into_{}", def.name));
        let config = self.fault_tolerance(planner, &graph).await?;
        let job = start_job_with(graph, self.new_job_id(), config)?;
        if let Some(from) = job.restored_from() {
            tracing::info!("job '{}' restored from {from}", job.name());
        }
        self.register(&job);
        Ok(job)
    }

    /// The job's checkpoint, state and restart settings, with what it restores:
    /// `execution.savepoint.path` if set, else (with a checkpoint directory
    /// and `execution.state-recovery.from-latest`) the job's latest complete
    /// checkpoint.
    async fn fault_tolerance(
        &self,
        planner: &StreamPlanner,
        graph: &weir_engine::graph::JobGraph,
    ) -> Result<weir_engine::checkpoint::config::FaultToleranceConfig> {
        let mut config = planner.config.fault_tolerance();
        let backend = planner.config.state_backend();
        config.backend = self
            .inner
            .backends
            .iter()
            .find(|b| b.name() == backend)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = self.inner.backends.iter().map(|b| b.name()).collect();
                Error::plan(format!(
                    "state backend '{backend}' is not available; available: {}",
                    known.join(", ")
                ))
            })?;
        let restore = if let Some(path) = planner.config.savepoint_path() {
            Some(load_restore_path(&path).await?)
        } else if let (Some(dir), true) = (&config.checkpoint_dir, planner.config.resume_from_latest()) {
            let job_dir = CheckpointStorage::open(dir)?.child(&job_dir_name(&graph.name));
            latest_restorable(&job_dir).await?
        } else {
            None
        };
        config.restore = restore.map(Arc::new);
        Ok(config)
    }

    async fn start_query(
        &self,
        planner: &mut StreamPlanner,
        query: &Query,
        window_tvfs: &[WindowTvf],
    ) -> Result<QueryResult> {
        let planned: PlannedQuery = planner.plan_query(query, window_tvfs).await?;
        let (tx, rx) = mpsc::channel(RESULT_BUFFER);
        let (schema, updating) = (planned.schema.clone(), planned.updating);
        let factory = FnOperatorFactory::new("collect", move |_, _| {
            Ok(Box::new(CollectSink { sender: tx.clone() }) as Box<dyn Operator>)
        });
        let mut graph = planned.with_sink("Sink: collect".into(), factory, 1);
        graph.name = planner
            .config
            .pipeline_name()
            .map(str::to_string)
            .unwrap_or_else(|| "collect".into());
        let job = start_job(graph, self.new_job_id())?;
        self.register(&job);
        Ok(QueryResult::new(schema, updating, job, rx))
    }

    fn jobs_table(&self) -> RecordBatch {
        let jobs = self.jobs();
        let ts = |j: &JobHandle| {
            let ms = j
                .started()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            chrono_like(ms)
        };
        // One read of each job's counters and status, so a row is consistent.
        let metrics: Vec<Vec<OperatorMetricsSummary>> = jobs.iter().map(|j| j.metrics()).collect();
        let statuses: Vec<JobStatus> = jobs.iter().map(|j| j.status()).collect();
        let sum =
            |f: fn(&OperatorMetricsSummary) -> u64| metrics.iter().map(move |m| m.iter().map(f).sum::<u64>());
        let read = metrics.iter().map(|m| {
            m.iter()
                .filter(|m| m.operator_name.starts_with("Source") || m.operator_name == "Values")
                .map(|m| m.rows_out)
                .sum::<u64>()
        });
        let written = metrics.iter().map(|m| m.last().map(|m| m.rows_in).unwrap_or(0));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                jobs.iter().map(|j| j.id().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                jobs.iter().map(|j| j.name().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.name().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(jobs.iter().map(ts))),
            Arc::new(UInt64Array::from_iter_values(read)),
            Arc::new(UInt64Array::from_iter_values(written)),
            Arc::new(UInt64Array::from_iter_values(sum(|m| m.late_rows_dropped))),
            Arc::new(UInt64Array::from_iter_values(sum(|m| m.records_skipped))),
            Arc::new(UInt64Array::from_iter_values(sum(|m| m.state_entries))),
            Arc::new(UInt64Array::from_iter_values(sum(|m| m.state_bytes))),
            Arc::new(StringArray::from_iter(statuses.iter().map(|s| match s {
                JobStatus::Failed(m) => Some(m.clone()),
                _ => None,
            }))),
        ];
        let schema = Schema::new(vec![
            Field::new("job id", DataType::Utf8, false),
            Field::new("job name", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("start time", DataType::Utf8, false),
            Field::new("rows read", DataType::UInt64, false),
            Field::new("rows written", DataType::UInt64, false),
            Field::new("late rows dropped", DataType::UInt64, false),
            Field::new("records skipped", DataType::UInt64, false),
            Field::new("state entries", DataType::UInt64, false),
            Field::new("state bytes", DataType::UInt64, false),
            Field::new("error", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), columns).expect("columns match the schema")
    }
}

/// A sink's parallelism: `sink.parallelism`, else its input's, capped by the connector.
/// The state backends every engine has: `hashmap` and `rocksdb`.
pub fn builtin_state_backends() -> Vec<Arc<dyn StateBackendFactory>> {
    vec![
        Arc::new(HashMapBackendFactory),
        Arc::new(weir_state_rocksdb::RocksDbBackendFactory::default()),
    ]
}

/// What `execution.savepoint.path` points at: a savepoint directory, a
/// checkpoint's `chk-<n>` directory, or a job's checkpoint directory (its
/// latest complete checkpoint).
async fn load_restore_path(path: &str) -> Result<RestoreSource> {
    let local = std::path::Path::new(path.strip_prefix("file://").unwrap_or(path));
    if !local.exists() {
        return Err(Error::plan(format!(
            "execution.savepoint.path '{path}' does not exist"
        )));
    }
    if local.join("_metadata").exists() {
        let name = local.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("chk-")
            && let Some(parent) = local.parent().and_then(|p| p.to_str())
        {
            return Ok(RestoreSource::load(&CheckpointStorage::open(parent)?, name).await?);
        }
        return Ok(RestoreSource::load(&CheckpointStorage::open(path)?, "").await?);
    }
    latest_restorable(&CheckpointStorage::open(path)?)
        .await?
        .ok_or_else(|| {
            Error::plan(format!(
                "execution.savepoint.path '{path}' holds no complete savepoint or checkpoint (no _metadata)"
            ))
        })
}

/// `SHOW CHECKPOINTS`: one row per checkpoint or savepoint of `jobs`.
fn checkpoints_table(jobs: &[JobHandle]) -> RecordBatch {
    let mut rows: Vec<[String; 11]> = Vec::new();
    for j in jobs {
        for c in j.checkpoints() {
            let ms = c
                .triggered
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let cause = match &c.status {
                CheckpointStatus::Failed(why) => why.clone(),
                _ => String::new(),
            };
            rows.push([
                j.id().to_string(),
                c.id.to_string(),
                format!("{:?}", c.kind).to_uppercase(),
                c.status.name().to_string(),
                chrono_like(ms),
                c.duration.map(|d| d.as_millis().to_string()).unwrap_or_default(),
                c.state_size.to_string(),
                c.alignment.as_millis().to_string(),
                format!("{}/{}", c.acknowledged, c.total),
                c.location.clone(),
                cause,
            ]);
        }
    }
    let names = [
        "job id",
        "checkpoint id",
        "type",
        "status",
        "triggered",
        "duration ms",
        "state size bytes",
        "alignment ms",
        "acknowledged",
        "location",
        "failure cause",
    ];
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].clone()))) as ArrayRef)
        .collect();
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

fn sink_parallelism(def: &TableDef, sink: &dyn SinkSpec, planned: &PlannedQuery) -> usize {
    let mut parallelism = def.sink_parallelism.unwrap_or(planned.tail_parallelism);
    if let Some(max) = sink.max_parallelism() {
        parallelism = parallelism.min(max.max(1));
    }
    parallelism
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of epoch milliseconds.
fn chrono_like(ms: i64) -> String {
    let a = arrow::array::TimestampMillisecondArray::from(vec![ms]);
    let f = arrow::util::display::ArrayFormatter::try_new(&a, &crate::format::format_options())
        .expect("timestamps format");
    f.value(0).to_string()
}

fn single_column(name: &str, values: Vec<String>) -> RecordBatch {
    let schema = Schema::new(vec![Field::new(name, DataType::Utf8, false)]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(StringArray::from(values))]).expect("one column")
}

fn key_values(pairs: Vec<(String, String)>) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]);
    let (k, v): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(StringArray::from(k)), Arc::new(StringArray::from(v))],
    )
    .expect("two columns")
}

fn describe(planner: &StreamPlanner, name: &ObjectName) -> Result<RecordBatch> {
    let n = normalize_name(name);
    let (schema, pk, watermark) = if let Some(t) = planner.catalog.tables.get(&n) {
        (t.schema.clone(), t.primary_key.clone(), t.watermark.clone())
    } else if let Some(v) = planner.catalog.views.get(&n) {
        (Arc::new(v.plan.schema().as_arrow().clone()), Vec::new(), None)
    } else {
        return Err(Error::plan(format!("table or view '{n}' does not exist")));
    };
    let fields = schema.fields();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            fields.iter().map(|f| f.name().clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            fields.iter().map(|f| sql_type(f.data_type())),
        )),
        Arc::new(StringArray::from_iter_values(
            fields
                .iter()
                .map(|f| if f.is_nullable() { "TRUE" } else { "FALSE" }),
        )),
        Arc::new(StringArray::from_iter(
            fields.iter().map(|f| pk.contains(f.name()).then_some("PRI")),
        )),
        Arc::new(StringArray::from_iter(fields.iter().map(|f| {
            watermark
                .as_ref()
                .filter(|w| &w.column == f.name())
                .map(|w| w.expr_sql.clone())
        }))),
    ];
    let schema = Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("null", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("watermark", DataType::Utf8, true),
    ]);
    Ok(RecordBatch::try_new(Arc::new(schema), columns).expect("columns match"))
}

/// The SQL spelling of an Arrow type, as `DESCRIBE` shows it.
pub fn sql_type(t: &DataType) -> String {
    use arrow::datatypes::TimeUnit;
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Timestamp(unit, tz) => {
            let p = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            if tz.is_some() {
                format!("TIMESTAMP_LTZ({p})")
            } else {
                format!("TIMESTAMP({p})")
            }
        }
        other => other.to_string(),
    }
}

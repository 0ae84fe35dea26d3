//! SQL behaviour tests: every `tests/slt/*.slt` file, run by the
//! [`sqllogictest`] crate against an in-process [`weir::Engine`], as
//! DataFusion's `datafusion/sqllogictest` does.
//!
//! ```text
//! cargo test --test sqllogictests                 # every file, at parallelism 1 and 4
//! cargo test --test sqllogictests -- tumble       # files whose name contains "tumble"
//! cargo test --test sqllogictests -- --p1         # only the parallelism-1 pass (also --p4)
//! cargo test --test sqllogictests -- --complete x # rewrite x's expected results with the
//!                                                 # actual ones at parallelism 1 (or with
//!                                                 # --p4: 4); review the diff!
//! ```
//!
//! # How a file runs
//!
//! Each file runs twice, each time on a fresh engine: once with
//! `parallelism.default` = 1 and once with 4. Results must be identical, so
//! queries whose row order is not defined use `rowsort`. A file whose first
//! lines contain `# weir: parallelism 1 only` runs only in the first pass
//! (for exact changelog sequences, which are only deterministic with one
//! subtask). Records can also be guarded with the labels `p1` / `p4`
//! (`onlyif p4`, `skipif p1`), e.g. for `EXPLAIN` output.
//!
//! Substitutions in SQL text:
//! - `__DATA__`: the absolute path of `tests/data` (checked-in data files);
//! - `__TMP__`: a temporary directory of this run of this file (sink output).
//!
//! What a statement returns:
//! - DDL, `SET`, `RESET`, `STOP JOB`: `statement ok` (no rows);
//! - `SHOW`, `DESCRIBE`, `SET` (listing): rows;
//! - `EXPLAIN`, `HELP`: one row per (non-blank) line of text;
//! - `INSERT INTO`: waits for the job to end; fails if the job fails;
//! - a query: its whole (bounded) result, values formatted by
//!   [`weir::format::rows`] (`2024-01-01 00:00:05.000`, `NULL`, and `(empty)`
//!   for an empty string, as in DataFusion's `.slt` files); an updating
//!   query gets a leading `op` column (`+I`, `-U`, `+U`, `-D`).
//!
//! A query whose SQL starts with the line `-- weir: final state` returns,
//! instead of its changelog, the rows it leaves in a table that applies it
//! (`+I`/`+U` add a row, `-U`/`-D` remove an equal one, and retracting a row
//! that is not there is an error): the final result of an updating query,
//! which is the same at any parallelism even when its changelog is not.
//!
//! Every record of a file runs, even after a failure (all failures are
//! reported, the first one first).
//!
//! Every statement has a time limit ([`STATEMENT_TIMEOUT`]), so that an engine
//! bug that makes a job hang fails one record instead of the whole suite.
//!
//! # Recovery passes
//!
//! Each file also runs in [`RECOVERY_PASSES`]: every append-only query runs
//! as an `INSERT` into an exactly-once `filesystem` sink (Parquet) with
//! checkpoints on, and its sources pause after their first batch; the pass
//! takes a checkpoint, cancels the job (a kill: nothing is flushed), starts
//! the same job again — which resumes from that checkpoint, at another
//! parallelism in some passes — lets it finish, and reads the committed
//! files back. The rows must equal the straight run's expected rows: no row
//! lost or duplicated across the restore, with both state backends (and
//! the hashmap backend's incremental checkpoints in the rescaling pass).
//! (`-- --recovery` runs only these passes, `-- --straight` only the others.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use weir::arrow::datatypes::{DataType, SchemaRef};
use weir::datafusion::common::Result as DfResult;
use weir::weir_engine::connector::{Connector, ConnectorOptions, OptionSpec, SinkSpec};
use weir::weir_engine::message::CheckpointId;
use weir::weir_engine::operator::OperatorContext;
use weir::weir_engine::source::{Source, SourceEvent, SourceSpec};
use weir::{Engine, JobStatus, StatementResult};

/// The longest one statement may take (a bounded query should take well under a second).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The parallelisms every file runs at.
const PARALLELISMS: [usize; 2] = [1, 4];

/// The first line of a query whose final state (not its changelog) is compared.
const FINAL_STATE: &str = "-- weir: final state";

/// The marker of files that only run at parallelism 1.
const P1_ONLY: &str = "# weir: parallelism 1 only";

/// The marker of files that skip the recovery passes.
const NO_RECOVERY: &str = "# weir: no recovery pass";

/// How a recovery pass runs each query: the state backend (with
/// incremental checkpoints or not), and the parallelism before and after
/// the restore.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    backend: &'static str,
    incremental: bool,
    before: usize,
    after: usize,
}

/// The recovery passes every file runs (see the module docs).
const RECOVERY_PASSES: [Recovery; 3] = [
    Recovery {
        backend: "hashmap",
        incremental: false,
        before: 1,
        after: 1,
    },
    Recovery {
        backend: "rocksdb",
        incremental: false,
        before: 2,
        after: 2,
    },
    // Scaling up: with fewer subtasks than before, a source subtask would
    // read several splits, and their rows interleave out of event-time order
    // (per-split watermarks come with the Kafka source).
    // Incremental: the hashmap backend's segment files and manifest, read
    // back at another parallelism.
    Recovery {
        backend: "hashmap",
        incremental: true,
        before: 2,
        after: 3,
    },
];

/// Holds sources back after their first batch while closed.
#[derive(Default)]
struct Gate {
    closed: AtomicBool,
    waiting: AtomicUsize,
    opened: tokio::sync::Notify,
}

impl Gate {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.opened.notify_waiters();
    }
}

/// Decrements the gate's count of waiting sources when a wait ends or is dropped.
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A built-in connector whose sources stop at the gate.
struct GatedConnector {
    inner: Arc<dyn Connector>,
    gate: Arc<Gate>,
}

impl Connector for GatedConnector {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn options(&self) -> Vec<OptionSpec> {
        self.inner.options()
    }

    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> DfResult<Arc<dyn SourceSpec>> {
        Ok(Arc::new(GatedSourceSpec {
            inner: self.inner.source(schema, options)?,
            gate: self.gate.clone(),
        }))
    }

    fn sink(&self, schema: SchemaRef, options: &ConnectorOptions) -> DfResult<Arc<dyn SinkSpec>> {
        self.inner.sink(schema, options)
    }
}

#[derive(Debug)]
struct GatedSourceSpec {
    inner: Arc<dyn SourceSpec>,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate")
    }
}

impl SourceSpec for GatedSourceSpec {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn is_bounded(&self) -> bool {
        self.inner.is_bounded()
    }

    fn max_parallelism(&self) -> Option<usize> {
        self.inner.max_parallelism()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> DfResult<Box<dyn Source>> {
        Ok(Box::new(GatedSource {
            inner: self.inner.create(subtask, parallelism)?,
            gate: self.gate.clone(),
            batches: 0,
        }))
    }
}

struct GatedSource {
    inner: Box<dyn Source>,
    gate: Arc<Gate>,
    batches: usize,
}

#[async_trait]
impl Source for GatedSource {
    async fn initialize_state(
        &mut self,
        ctx: &OperatorContext,
        state: Option<Vec<serde_json::Value>>,
    ) -> DfResult<()> {
        self.inner.initialize_state(ctx, state).await
    }

    async fn open(&mut self, ctx: &OperatorContext) -> DfResult<()> {
        self.inner.open(ctx).await
    }

    async fn poll_next(&mut self) -> DfResult<SourceEvent> {
        if self.batches > 0 && self.gate.closed.load(Ordering::SeqCst) {
            // Cancel-safe: the wait holds nothing; a dropped wait just waits again.
            self.gate.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.gate);
            while self.gate.closed.load(Ordering::SeqCst) {
                let opened = self.gate.opened.notified();
                if !self.gate.closed.load(Ordering::SeqCst) {
                    break;
                }
                opened.await;
            }
        }
        let event = self.inner.poll_next().await?;
        if matches!(event, SourceEvent::Batch(_) | SourceEvent::SplitBatch { .. }) {
            self.batches += 1;
        }
        Ok(event)
    }

    fn union_list_state(&self) -> bool {
        self.inner.union_list_state()
    }

    fn watermark_splits(&self) -> Option<Vec<u32>> {
        self.inner.watermark_splits()
    }

    fn splits_changed(&mut self) -> bool {
        self.inner.splits_changed()
    }

    async fn snapshot_state(&mut self, id: CheckpointId) -> DfResult<Vec<serde_json::Value>> {
        self.inner.snapshot_state(id).await
    }

    async fn notify_checkpoint_complete(&mut self, id: CheckpointId) -> DfResult<()> {
        self.inner.notify_checkpoint_complete(id).await
    }

    async fn close(&mut self) -> DfResult<()> {
        self.inner.close().await
    }
}

/// An error of one statement, displayed as weir displays it (e.g.
/// `Invalid statement at line 1, column 15: table 'nope' does not exist`).
#[derive(Debug)]
struct WeirError(String);

impl std::fmt::Display for WeirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WeirError {}

impl From<weir::Error> for WeirError {
    fn from(e: weir::Error) -> Self {
        WeirError(e.to_string())
    }
}

/// One connection: a fresh engine, and the directories substituted in SQL.
struct WeirDb {
    engine: Engine,
    data_dir: String,
    tmp_dir: String,
    recovery: Option<Recovery>,
    gate: Arc<Gate>,
    recovered_queries: Arc<AtomicUsize>,
    next_recovery: usize,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

fn rows_output(
    batches: &[weir::arrow::record_batch::RecordBatch],
    schema: &weir::arrow::datatypes::Schema,
) -> Result<DBOutput<DefaultColumnType>, WeirError> {
    let types = schema
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    let mut rows = Vec::new();
    for b in batches {
        let formatted = weir::format::rows(b).map_err(|e| WeirError(format!("cannot format rows: {e}")))?;
        rows.extend(formatted.into_iter().map(|row| {
            row.into_iter()
                .map(|v| if v.is_empty() { "(empty)".to_string() } else { v })
                .collect::<Vec<_>>()
        }));
    }
    Ok(DBOutput::Rows { types, rows })
}

impl WeirDb {
    /// Undoes a recovery pass's `SET`s: the file's own statements see the
    /// pass's parallelism and no checkpoints.
    async fn restore_settings(
        &self,
        settings: &[(&str, String)],
        recovery: Recovery,
    ) -> Result<(), WeirError> {
        for (k, _) in settings {
            self.engine.execute(&format!("RESET '{k}'")).await?;
        }
        self.engine
            .execute(&format!("SET 'parallelism.default' = '{}'", recovery.before))
            .await?;
        Ok(())
    }

    /// Runs `sql` (an append-only query) through checkpoint, kill, restore
    /// and finish; returns its rows. `None` if the query cannot go through a
    /// file sink (then it runs straight).
    async fn run_recovered(
        &mut self,
        sql: &str,
        recovery: Recovery,
    ) -> Result<Option<DBOutput<DefaultColumnType>>, WeirError> {
        let Ok((schema, false)) = self.engine.describe_query(sql).await else {
            return Ok(None);
        };
        let n = self.next_recovery;
        self.next_recovery += 1;
        let table = format!("__recovery_{n}");
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("`{}` {}", f.name(), weir::sql_type(f.data_type())))
            .collect();
        let create = format!(
            "CREATE TABLE `{table}` ({}) WITH ('connector' = 'filesystem', 'path' = '{}/{table}', \
             'format' = 'parquet')",
            columns.join(", "),
            self.tmp_dir
        );
        if self.engine.execute(&create).await.is_err() {
            return Ok(None); // e.g. duplicate column names
        }
        let settings = [
            (
                "execution.checkpointing.dir",
                format!("{}/checkpoints", self.tmp_dir),
            ),
            ("execution.checkpointing.interval", "1 h".to_string()),
            (
                "execution.checkpointing.externalized-checkpoint-retention",
                "RETAIN_ON_CANCELLATION".to_string(),
            ),
            ("state.backend.type", recovery.backend.to_string()),
            (
                "execution.checkpointing.incremental",
                recovery.incremental.to_string(),
            ),
            ("pipeline.name", format!("recovery-{n}")),
            ("parallelism.default", recovery.before.to_string()),
            ("restart-strategy.type", "none".to_string()),
        ];
        for (k, v) in &settings {
            self.engine.execute(&format!("SET '{k}' = '{v}'")).await?;
        }
        let insert = format!("INSERT INTO `{table}` {sql}");
        self.gate.close();
        let job = self.engine.submit(&insert).await?;
        // Wait until the sources wait at the gate (or the job ended first).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stable = 0;
        while !job.status().is_terminal() && Instant::now() < deadline && stable < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            stable = if self.gate.waiting.load(Ordering::SeqCst) > 0 {
                stable + 1
            } else {
                0
            };
        }
        let checkpointed = !job.status().is_terminal();
        if std::env::var_os("WEIR_SLT_DEBUG").is_some() {
            eprintln!("recovery {n}: gate reached, checkpointing = {checkpointed}: {sql}");
        }
        if checkpointed {
            job.trigger_checkpoint()
                .await
                .map_err(|e| WeirError(format!("recovery pass: checkpoint failed: {e}")))?;
            job.cancel();
            let _ = job.wait().await;
        } else if job.wait().await.is_err() {
            // A query that fails by itself: run it straight, for its error.
            self.gate.open();
            self.restore_settings(&settings, recovery).await?;
            self.engine.execute(&format!("DROP TABLE `{table}`")).await?;
            return Ok(None);
        }
        self.gate.open();
        self.engine
            .execute(&format!("SET 'parallelism.default' = '{}'", recovery.after))
            .await?;
        if std::env::var_os("WEIR_SLT_DEBUG").is_some() {
            eprintln!("recovery {n}: first run over");
        }
        let resumed = self.engine.submit(&insert).await?;
        if checkpointed && resumed.restored_from().is_none() {
            return Err(WeirError(
                "recovery pass: the second run did not restore the checkpoint".into(),
            ));
        }
        let waited = tokio::time::timeout(Duration::from_secs(10), resumed.wait()).await;
        let Ok(waited) = waited else {
            let stats: Vec<String> = resumed
                .checkpoints()
                .iter()
                .map(|c| format!("{} {} {}/{}", c.id, c.status.name(), c.acknowledged, c.total))
                .collect();
            return Err(WeirError(format!(
                "recovery pass: the resumed job did not end; checkpoints: {stats:?}; metrics: {:?}",
                resumed.metrics()
            )));
        };
        match waited {
            Ok(JobStatus::Finished) => {}
            other => {
                return Err(WeirError(format!(
                    "recovery pass: the resumed job ended with {other:?}"
                )));
            }
        }
        self.restore_settings(&settings, recovery).await?;
        let mut result = self.engine.query(&format!("SELECT * FROM `{table}`")).await?;
        let mut batches = Vec::new();
        while let Some(b) = result.next_batch().await {
            batches.push(b?);
        }
        self.engine.execute(&format!("DROP TABLE `{table}`")).await?;
        if checkpointed {
            self.recovered_queries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Some(rows_output(&batches, &schema)?))
    }

    async fn run_statement(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WeirError> {
        if let Some(recovery) = self.recovery {
            let head = sql.trim_start().to_ascii_uppercase();
            if (head.starts_with("SELECT") || head.starts_with("WITH"))
                && let Some(rows) = self.run_recovered(sql, recovery).await?
            {
                return Ok(rows);
            }
        }
        let mut results = self.engine.execute(sql).await?;
        if results.len() != 1 {
            return Err(WeirError(format!(
                "a record must hold exactly one statement, found {}",
                results.len()
            )));
        }
        match results.remove(0) {
            StatementResult::Ok(_) => Ok(DBOutput::StatementComplete(0)),
            StatementResult::Table(batch) => rows_output(std::slice::from_ref(&batch), batch.schema_ref()),
            StatementResult::Text(text) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Text],
                // Blank lines would end the record's results in a .slt file.
                rows: text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| vec![l.to_string()])
                    .collect(),
            }),
            StatementResult::Job(job) => {
                job.wait()
                    .await
                    .map_err(|e| WeirError(format!("INSERT job failed: {e}")))?;
                Ok(DBOutput::StatementComplete(0))
            }
            StatementResult::Query(mut query) => {
                let updating = query.is_updating();
                let mut batches = Vec::new();
                while let Some(batch) = query.next_batch().await {
                    let batch = batch?;
                    batches.push(if updating {
                        weir::format::changelog_view(&batch)
                            .map_err(|e| WeirError(format!("changelog_view: {e}")))?
                    } else {
                        batch
                    });
                }
                let mut schema = (*query.schema()).clone();
                if sql.trim_start().starts_with(FINAL_STATE) {
                    let changes = rows_output(&batches, &schema)?;
                    return final_state(changes, updating, &schema);
                }
                if updating {
                    let mut fields = vec![weir::arrow::datatypes::Field::new("op", DataType::Utf8, false)];
                    fields.extend(schema.fields().iter().map(|f| f.as_ref().clone()));
                    schema = weir::arrow::datatypes::Schema::new(fields);
                }
                rows_output(&batches, &schema)
            }
        }
    }
}

/// Applies a changelog (rows with a leading `op` column if `updating`) to an
/// empty table and returns the rows left, without the `op` column.
fn final_state(
    changes: DBOutput<DefaultColumnType>,
    updating: bool,
    schema: &weir::arrow::datatypes::Schema,
) -> Result<DBOutput<DefaultColumnType>, WeirError> {
    let DBOutput::Rows { rows, .. } = changes else {
        unreachable!("a query gives rows")
    };
    let types = schema
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    if !updating {
        return Ok(DBOutput::Rows { types, rows });
    }
    let mut table: Vec<Vec<String>> = Vec::new();
    for mut row in rows {
        let op = row.remove(0);
        match op.as_str() {
            "+I" | "+U" => table.push(row),
            "-U" | "-D" => match table.iter().position(|r| *r == row) {
                Some(i) => {
                    table.swap_remove(i);
                }
                None => {
                    return Err(WeirError(format!(
                        "the changelog retracts ({op}) a row that is not in the result: [{}]",
                        row.join(", ")
                    )));
                }
            },
            other => return Err(WeirError(format!("unknown row kind '{other}'"))),
        }
    }
    Ok(DBOutput::Rows { types, rows: table })
}

#[async_trait]
impl AsyncDB for WeirDb {
    type Error = WeirError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let sql = sql
            .replace("__DATA__", &self.data_dir)
            .replace("__TMP__", &self.tmp_dir);
        match tokio::time::timeout(STATEMENT_TIMEOUT, self.run_statement(&sql)).await {
            Ok(result) => result,
            Err(_) => Err(WeirError(format!(
                "timed out after {STATEMENT_TIMEOUT:?} (the job did not end)"
            ))),
        }
    }

    async fn shutdown(&mut self) {
        for job in self.engine.jobs() {
            if !job.status().is_terminal() {
                job.cancel();
            }
        }
    }

    fn engine_name(&self) -> &str {
        "weir"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

struct Options {
    filters: Vec<String>,
    parallelisms: Vec<usize>,
    recovery: bool,
    straight: bool,
    list: bool,
    complete: bool,
}

fn options() -> Options {
    let mut filters = Vec::new();
    let mut parallelisms = Vec::new();
    let mut list = false;
    let mut complete = false;
    let (mut recovery, mut straight) = (false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--recovery" => recovery = true,
            "--straight" => straight = true,
            "--p1" => parallelisms.push(1),
            "--p4" => parallelisms.push(4),
            "--list" => list = true,
            "--complete" => complete = true,
            // Flags libtest understands (--nocapture, --quiet, --test-threads=N, ...).
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
    }
    if parallelisms.is_empty() {
        parallelisms = PARALLELISMS.to_vec();
    }
    if !recovery && !straight {
        (recovery, straight) = (true, true);
    }
    Options {
        filters,
        parallelisms,
        recovery,
        straight,
        list,
        complete,
    }
}

fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

async fn run_file(
    path: &Path,
    parallelism: usize,
    recovery: Option<Recovery>,
    data_dir: &Path,
    complete: bool,
    recovered_queries: Arc<AtomicUsize>,
) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let tmp_dir = tmp.path().to_string_lossy().into_owned();
    let data_dir = data_dir.to_string_lossy().into_owned();
    let mut runner = Runner::new(move || {
        let gate = Arc::new(Gate::default());
        let mut builder = Engine::builder().with_config("parallelism.default", parallelism.to_string());
        if recovery.is_some() {
            let registry = weir::builtin_connectors();
            for name in registry.names() {
                let inner = registry.get(name).expect("listed").clone();
                builder = builder.with_connector(Arc::new(GatedConnector {
                    inner,
                    gate: gate.clone(),
                }));
            }
        }
        let engine = builder.build();
        let (data_dir, tmp_dir) = (data_dir.clone(), tmp_dir.clone());
        let recovered_queries = recovered_queries.clone();
        async move {
            let engine = engine.map_err(WeirError::from)?;
            Ok::<_, WeirError>(WeirDb {
                engine,
                data_dir,
                tmp_dir,
                recovery,
                gate,
                recovered_queries,
                next_recovery: 0,
            })
        }
    });
    runner.add_label(&format!("p{parallelism}"));
    let result = if complete {
        runner
            .update_test_file(
                path,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        // Every record runs, even after a failure, so that one engine bug does not
        // hide the results of the rest of the file (a failed CREATE may make
        // later records fail too: read the first failure first).
        match sqllogictest::parse_file::<DefaultColumnType>(path) {
            Err(e) => Err(format!("cannot parse: {e}")),
            Ok(records) => {
                let mut errors = Vec::new();
                for record in records {
                    if let sqllogictest::Record::Halt { .. } = record {
                        break;
                    }
                    if let Err(e) = runner.run_async(record).await {
                        errors.push(e.display(false).to_string());
                    }
                }
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} failed record(s):\n\n{}",
                        errors.len(),
                        errors.join("\n")
                    ))
                }
            }
        }
    };
    runner.shutdown_async().await;
    drop(tmp);
    result
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let data_dir = root.join("data");
    let opts = options();
    let files: Vec<PathBuf> = slt_files(&root.join("slt"))
        .into_iter()
        .filter(|f| {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            opts.filters.is_empty() || opts.filters.iter().any(|flt| name.contains(flt.as_str()))
        })
        .collect();
    if opts.list {
        for f in &files {
            println!("{}: test", f.file_name().unwrap_or_default().to_string_lossy());
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    let recovered_queries = Arc::new(AtomicUsize::new(0));
    for file in &files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let p1_only = text.lines().take(10).any(|l| l.trim() == P1_ONLY);
        let no_recovery = text.lines().take(10).any(|l| l.trim().starts_with(NO_RECOVERY));
        let mut passes: Vec<(usize, Option<Recovery>)> = Vec::new();
        if opts.straight {
            passes.extend(opts.parallelisms.iter().map(|p| (*p, None)));
        }
        if opts.recovery && !opts.complete && !no_recovery {
            passes.extend(
                RECOVERY_PASSES
                    .iter()
                    .filter(|r| !p1_only || (r.before == 1 && r.after == 1))
                    .map(|r| (r.before, Some(*r))),
            );
        }
        for (p, recovery) in passes {
            if (p1_only && p != 1) || (opts.complete && p != opts.parallelisms[0]) {
                continue;
            }
            runs += 1;
            let t = Instant::now();
            let what = match recovery {
                None => format!("parallelism {p}"),
                Some(r) => format!(
                    "recovery, {}{}, parallelism {} -> {}",
                    r.backend,
                    if r.incremental { " incremental" } else { "" },
                    r.before,
                    r.after
                ),
            };
            let result = runtime.block_on(run_file(
                file,
                p,
                recovery,
                &data_dir,
                opts.complete,
                recovered_queries.clone(),
            ));
            match result {
                Ok(()) => println!("ok     {name} ({what}) in {:.1?}", t.elapsed()),
                Err(e) => {
                    println!("FAILED {name} ({what}) in {:.1?}", t.elapsed());
                    failures.push(format!("{name} ({what}):\n{e}"));
                }
            }
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    println!();
    for f in &failures {
        println!("---- {f}\n");
    }
    println!(
        "sqllogictests: {} of {runs} file runs passed, {} failed, in {:.1?}; {} queries went through \
         checkpoint -> kill -> restore -> finish",
        runs - failures.len(),
        failures.len(),
        started.elapsed(),
        recovered_queries.load(Ordering::Relaxed)
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

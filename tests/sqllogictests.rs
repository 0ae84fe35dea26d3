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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use weir::arrow::datatypes::DataType;
use weir::{Engine, StatementResult};

/// The longest one statement may take (a bounded query should take well under a second).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The parallelisms every file runs at.
const PARALLELISMS: [usize; 2] = [1, 4];

/// The first line of a query whose final state (not its changelog) is compared.
const FINAL_STATE: &str = "-- weir: final state";

/// The marker of files that only run at parallelism 1.
const P1_ONLY: &str = "# weir: parallelism 1 only";

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
    async fn run_statement(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WeirError> {
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
    list: bool,
    complete: bool,
}

fn options() -> Options {
    let mut filters = Vec::new();
    let mut parallelisms = Vec::new();
    let mut list = false;
    let mut complete = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
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
    Options {
        filters,
        parallelisms,
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

async fn run_file(path: &Path, parallelism: usize, data_dir: &Path, complete: bool) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let tmp_dir = tmp.path().to_string_lossy().into_owned();
    let data_dir = data_dir.to_string_lossy().into_owned();
    let mut runner = Runner::new(move || {
        let engine = Engine::builder()
            .with_config("parallelism.default", parallelism.to_string())
            .build();
        let (data_dir, tmp_dir) = (data_dir.clone(), tmp_dir.clone());
        async move {
            let engine = engine.map_err(WeirError::from)?;
            Ok::<_, WeirError>(WeirDb {
                engine,
                data_dir,
                tmp_dir,
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
    for file in &files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let p1_only = text.lines().take(10).any(|l| l.trim() == P1_ONLY);
        for &p in &opts.parallelisms {
            if (p1_only && p != 1) || (opts.complete && p != opts.parallelisms[0]) {
                continue;
            }
            runs += 1;
            let t = Instant::now();
            let result = runtime.block_on(run_file(file, p, &data_dir, opts.complete));
            match result {
                Ok(()) => println!("ok     {name} (parallelism {p}) in {:.1?}", t.elapsed()),
                Err(e) => {
                    println!("FAILED {name} (parallelism {p}) in {:.1?}", t.elapsed());
                    failures.push(format!("{name} (parallelism {p}):\n{e}"));
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
        "sqllogictests: {} of {runs} file runs passed, {} failed, in {:.1?}",
        runs - failures.len(),
        failures.len(),
        started.elapsed()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

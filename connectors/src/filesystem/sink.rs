//! The append-only `filesystem` sink: exactly-once, after Flink's FileSink.
//!
//! Each sink subtask writes *part files* into the directory `path` (created
//! if missing), named `part-<subtask>-<run>-<n>.<ext>`: `<subtask>` is the
//! writer's subtask index, `<run>` is random per subtask instance (64 bits:
//! runs, restored ones included, never reuse each other's names), `<n>`
//! counts the files of the instance. A part file goes through three states:
//!
//! 1. **in progress**: the hidden file `.part-<subtask>-<run>-<n>.<ext>.inprogress`
//!    (readers skip hidden files), being written; it is closed when it
//!    reaches `sink.rolling-policy.file-size` or at a checkpoint barrier, and
//!    keeps its name until the barrier;
//! 2. **pending** for checkpoint `c`: at the barrier of checkpoint `c`, every
//!    closed file (flushed and synced) is renamed to
//!    `.part-<subtask>-<run>-<n>.<ext>.ckp-<c>.pending` and listed in the
//!    subtask's operator state, `{"file": "part-0-<run>-3.json", "checkpoint": 7}`
//!    per pending file, with the pending files of earlier checkpoints not yet
//!    committed (phase one: pre-commit);
//! 3. **committed**: renamed to its visible name `part-<subtask>-<run>-<n>.<ext>`
//!    once checkpoint `c` (or a later one) completes
//!    ([`Operator::notify_checkpoint_complete`]; phase two).
//!
//! Renames are atomic, and committing is idempotent: a pending file that is
//! gone while its visible file exists is committed already (a crash between
//! two renames is safe); if both are gone, the file was removed by someone
//! else (an old checkpoint restored after its output was deleted), which is
//! logged and skipped, as Flink does.
//!
//! # Recovery
//!
//! Restored with the state of checkpoint `r`, a subtask first commits every
//! pending file its share of the state lists (they all belong to checkpoints
//! `<= r`, which completed), then deletes what the failed run wrote after
//! `r`: in-progress files and files pending for checkpoints `> r`, among the
//! files of old subtasks `j` with `j % parallelism == subtask`, so that the
//! new subtasks split the old files between them (whatever both
//! parallelisms) and never touch a file another new subtask writes. Rows
//! after `r` are replayed by the sources, so none is lost or duplicated. The
//! directory must therefore belong to one job.
//!
//! Without checkpoints ([`OperatorContext::checkpointing`] false) everything
//! is committed at [`Operator::finish`] (end of a bounded input). With them,
//! `finish` commits nothing: the job ends with a final checkpoint whose
//! completion commits the rest.
//!
//! On failure ([`Operator::close`] without `finish`) the file being written
//! is deleted; closed and pending files are left hidden, for a restore to
//! commit or delete.
//!
//! The sink is append-only: it rejects updating streams at planning
//! ([`SinkSpec::accepts_changelog`] is false) and, defensively, any batch with
//! a row kind other than `+I`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::json::writer::LineDelimited;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};
use weir_engine::changelog::{RowKind, split_ops};
use weir_engine::connector::{SinkRequest, SinkSpec};
use weir_engine::message::{Barrier, CheckpointId};
use weir_engine::operator::{Operator, OperatorContext, Output};
use weir_engine::state::{OperatorSnapshot, StateInit};

use super::{FileSystemOptions, Format};
use crate::random::fresh_seed;
use crate::split::{bad_entry, entry_u64};

/// A validated `filesystem` sink table.
#[derive(Debug)]
pub struct FileSinkSpec {
    schema: SchemaRef,
    options: FileSystemOptions,
}

impl FileSinkSpec {
    /// A sink of `schema` into the directory `options.path`.
    pub fn new(schema: SchemaRef, options: FileSystemOptions) -> Self {
        FileSinkSpec { schema, options }
    }
}

impl SinkSpec for FileSinkSpec {
    fn accepts_changelog(&self) -> bool {
        false
    }

    fn create(
        &self,
        _request: &SinkRequest,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Box<dyn Operator>> {
        Ok(Box::new(FileSink {
            schema: Arc::clone(&self.schema),
            dir: self.options.path.clone(),
            format: self.options.format.clone(),
            rolling_file_size: self.options.rolling_file_size,
            subtask,
            parallelism,
            checkpointing: false,
            run: format!("{:016x}", fresh_seed()),
            counter: 0,
            in_progress: None,
            pending: Vec::new(),
        }))
    }
}

/// A writer that counts the bytes written through it.
struct Counting {
    inner: BufWriter<File>,
    written: Arc<AtomicU64>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Counting {
    /// Flushes and syncs the file to disk.
    fn sync(mut self) -> io::Result<()> {
        self.inner.flush()?;
        self.inner.get_ref().sync_all()
    }
}

fn parquet_error(e: parquet::errors::ParquetError) -> DataFusionError {
    DataFusionError::Execution(format!("filesystem sink: Parquet: {e}"))
}

/// An open writer of one format.
enum FormatWriter {
    Json(arrow::json::Writer<Counting, LineDelimited>),
    Csv(arrow::csv::Writer<Counting>),
    Parquet(ArrowWriter<Counting>),
}

impl FormatWriter {
    fn new(format: &Format, schema: &SchemaRef, out: Counting) -> Result<Self> {
        Ok(match format {
            Format::Json(o) => FormatWriter::Json(o.writer(out)),
            Format::Csv(o) => {
                let (ts, ts_tz) = super::TimestampStandard::Sql.formats();
                FormatWriter::Csv(
                    arrow::csv::WriterBuilder::new()
                        .with_header(o.header)
                        .with_delimiter(o.delimiter)
                        .with_quote(o.quote)
                        .with_timestamp_format(ts.to_string())
                        .with_timestamp_tz_format(ts_tz.to_string())
                        .build(out),
                )
            }
            Format::Parquet(o) => {
                let compression = if o.snappy {
                    Compression::SNAPPY
                } else {
                    Compression::UNCOMPRESSED
                };
                let props = WriterProperties::builder().set_compression(compression).build();
                FormatWriter::Parquet(
                    ArrowWriter::try_new(out, Arc::clone(schema), Some(props)).map_err(parquet_error)?,
                )
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            FormatWriter::Json(w) => w.write(batch)?,
            FormatWriter::Csv(w) => w.write(batch)?,
            FormatWriter::Parquet(w) => w.write(batch).map_err(parquet_error)?,
        }
        Ok(())
    }

    /// Bytes buffered in memory, not yet counted as written.
    fn buffered(&self) -> u64 {
        match self {
            FormatWriter::Parquet(w) => w.in_progress_size() as u64,
            _ => 0,
        }
    }

    /// Finishes the file (footer) and syncs it to disk.
    fn close(self) -> Result<()> {
        let out = match self {
            FormatWriter::Json(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            FormatWriter::Csv(w) => w.into_inner(),
            FormatWriter::Parquet(w) => w.into_inner().map_err(parquet_error)?,
        };
        out.sync()
            .map_err(|e| DataFusionError::Execution(format!("filesystem sink: cannot sync a part file: {e}")))
    }
}

/// The part file being written.
struct InProgressFile {
    /// Its visible name once committed.
    name: String,
    writer: FormatWriter,
    written: Arc<AtomicU64>,
}

/// A closed part file waiting to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFile {
    /// Its visible name once committed, `part-<subtask>-<run>-<n>.<ext>`.
    pub name: String,
    /// The checkpoint whose barrier made it pending: it is committed when
    /// that checkpoint (or a later one) completes. `None`: closed before the
    /// next barrier, still under its in-progress name.
    pub checkpoint: Option<CheckpointId>,
}

impl PendingFile {
    /// Its hidden name: in progress, or pending for its checkpoint.
    pub fn hidden_name(&self) -> String {
        match self.checkpoint {
            None => in_progress_name(&self.name),
            Some(c) => pending_name(&self.name, c),
        }
    }
}

fn in_progress_name(name: &str) -> String {
    format!(".{name}.inprogress")
}

fn pending_name(name: &str, checkpoint: CheckpointId) -> String {
    format!(".{name}.ckp-{checkpoint}.pending")
}

/// What a hidden file of the sink directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hidden {
    /// An in-progress (or closed, not yet pending) file of subtask `subtask`.
    InProgress { subtask: usize },
    /// A file of subtask `subtask` pending for checkpoint `checkpoint`.
    Pending {
        subtask: usize,
        checkpoint: CheckpointId,
    },
}

/// Parses a hidden part file's name; `None` for any other file.
fn parse_hidden(file: &str) -> Option<Hidden> {
    let rest = file.strip_prefix(".part-")?;
    let subtask = rest.split('-').next()?.parse().ok()?;
    if rest.ends_with(".inprogress") {
        return Some(Hidden::InProgress { subtask });
    }
    let (_, checkpoint) = rest.strip_suffix(".pending")?.rsplit_once(".ckp-")?;
    Some(Hidden::Pending {
        subtask,
        checkpoint: checkpoint.parse().ok()?,
    })
}

fn fs_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!(
        "filesystem sink: cannot {what} '{}': {e}",
        path.display()
    ))
}

/// Renames `hidden` to `name` in `dir`. Idempotent: if `hidden` is gone and
/// `name` exists, the rename happened already.
fn commit_file(dir: &Path, hidden: &str, name: &str) -> Result<()> {
    let (from, to) = (dir.join(hidden), dir.join(name));
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !to.exists() {
                // Both gone: lost, or deleted by the user after an earlier
                // commit (an old checkpoint restored). Not ours to fail on.
                tracing::warn!(file = %to.display(), "filesystem sink: a part file to commit is gone; skipped");
            }
            Ok(())
        }
        Err(e) => Err(DataFusionError::Execution(format!(
            "filesystem sink: cannot commit '{}' as '{}': {e}",
            from.display(),
            to.display()
        ))),
    }
}

/// Makes the renames in `dir` durable (best effort: not every platform can
/// sync a directory).
fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "filesystem sink: cannot sync the directory");
    }
}

/// One subtask of a `filesystem` sink. See the [module docs](self) for the
/// life of its part files and its recovery.
///
/// Invariants: `pending` holds every file this instance closed and has not
/// committed, in order, those of no checkpoint last; a file is listed in a
/// snapshot only once renamed to its pending name, so a restore never
/// commits a file the checkpoint did not cover.
pub struct FileSink {
    schema: SchemaRef,
    dir: PathBuf,
    format: Format,
    rolling_file_size: u64,
    subtask: usize,
    parallelism: usize,
    /// Whether checkpoints commit (`finish` then does not).
    checkpointing: bool,
    run: String,
    counter: u64,
    in_progress: Option<InProgressFile>,
    pending: Vec<PendingFile>,
}

impl FileSink {
    /// Opens a new in-progress part file, under a name no file has.
    fn open_part(&mut self) -> Result<InProgressFile> {
        let (name, file) = loop {
            let name = format!(
                "part-{}-{}-{}.{}",
                self.subtask,
                self.run,
                self.counter,
                self.format.extension()
            );
            self.counter += 1;
            if self.dir.join(&name).exists() {
                continue;
            }
            let hidden = self.dir.join(in_progress_name(&name));
            match File::create_new(&hidden) {
                Ok(file) => break (name, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(fs_error("create", &hidden, e)),
            }
        };
        let written = Arc::new(AtomicU64::new(0));
        let out = Counting {
            inner: BufWriter::with_capacity(1 << 16, file),
            written: Arc::clone(&written),
        };
        let writer = FormatWriter::new(&self.format, &self.schema, out)?;
        Ok(InProgressFile {
            name,
            writer,
            written,
        })
    }

    /// Closes the in-progress file, if any: it waits for the next barrier.
    fn roll(&mut self) -> Result<()> {
        if let Some(file) = self.in_progress.take() {
            file.writer.close()?;
            self.pending.push(PendingFile {
                name: file.name,
                checkpoint: None,
            });
        }
        Ok(())
    }

    /// Commits the pending files that `pred` selects, in order.
    fn commit_where(&mut self, pred: impl Fn(&PendingFile) -> bool) -> Result<()> {
        let (commit, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| pred(p));
        self.pending = keep;
        for (i, p) in commit.iter().enumerate() {
            if let Err(e) = commit_file(&self.dir, &p.hidden_name(), &p.name) {
                // Keep what is not committed yet, for a retry.
                self.pending.splice(0..0, commit[i..].iter().cloned());
                return Err(e);
            }
        }
        if !commit.is_empty() {
            sync_dir(&self.dir);
        }
        Ok(())
    }

    /// Restore: commits the pending files of `entries` (this subtask's share
    /// of the restored state), then deletes the leftovers of the failed run
    /// among the files of old subtasks `j ≡ subtask (mod parallelism)`.
    fn recover(&mut self, entries: &[Value], restored_from: Option<CheckpointId>) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| fs_error("create directory", &self.dir, e))?;
        for entry in entries {
            let name = entry
                .get("file")
                .and_then(Value::as_str)
                .filter(|n| n.starts_with("part-") && !n.contains(['/', '\\']))
                .ok_or_else(|| bad_entry("filesystem sink", entry, "no part file name 'file'"))?;
            let checkpoint = entry_u64("filesystem sink", entry, "checkpoint")?;
            commit_file(&self.dir, &pending_name(name, checkpoint), name)?;
        }
        let listing = std::fs::read_dir(&self.dir).map_err(|e| fs_error("list", &self.dir, e))?;
        for file in listing {
            let file = file.map_err(|e| fs_error("list", &self.dir, e))?;
            let file_name = file.file_name();
            let Some(hidden) = file_name.to_str().and_then(parse_hidden) else {
                continue;
            };
            let leftover = match hidden {
                Hidden::InProgress { subtask } => subtask % self.parallelism == self.subtask,
                Hidden::Pending { subtask, checkpoint } => {
                    subtask % self.parallelism == self.subtask
                        && restored_from.is_some_and(|r| checkpoint > r)
                }
            };
            if leftover {
                let path = file.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(fs_error("delete", &path, e)),
                }
            }
        }
        sync_dir(&self.dir);
        Ok(())
    }

    /// The files waiting to be committed.
    pub fn pending_files(&self) -> &[PendingFile] {
        &self.pending
    }
}

/// The rows of `batch`, which must all be inserts.
fn insert_rows(batch: &RecordBatch) -> Result<RecordBatch> {
    let (rows, ops) = split_ops(batch);
    if let Some(i) = ops.values().iter().position(|op| *op != RowKind::Insert as i8) {
        let kind = RowKind::from_i8(ops.value(i))?;
        return Err(DataFusionError::Execution(format!(
            "the filesystem sink is append-only but received a {} row; write updating results into a connector that accepts changelogs",
            kind.short_string()
        )));
    }
    Ok(rows)
}

#[async_trait]
impl Operator for FileSink {
    /// On restore, commits what the state lists and deletes what the failed
    /// run wrote after the checkpoint (see the [module docs](self)).
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut state: StateInit) -> Result<()> {
        self.subtask = ctx.subtask;
        self.parallelism = ctx.parallelism.max(1);
        self.checkpointing = ctx.checkpointing;
        if let Some(entries) = state.take_operator_state() {
            self.recover(&entries, state.restored_from())?;
        }
        Ok(())
    }

    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.checkpointing = ctx.checkpointing;
        std::fs::create_dir_all(&self.dir).map_err(|e| fs_error("create directory", &self.dir, e))
    }

    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let rows = insert_rows(&batch)?;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        // The rows in the table's own schema (names, nullability).
        let rows = RecordBatch::try_new(Arc::clone(&self.schema), rows.columns().to_vec()).map_err(|e| {
            DataFusionError::Execution(format!(
                "filesystem sink: rows do not match the table's schema: {e}"
            ))
        })?;
        if self.in_progress.is_none() {
            self.in_progress = Some(self.open_part()?);
        }
        let Some(file) = self.in_progress.as_mut() else {
            return Err(DataFusionError::Internal(
                "filesystem sink: no in-progress file".into(),
            ));
        };
        file.writer.write(&rows)?;
        if file.written.load(Ordering::Relaxed) + file.writer.buffered() >= self.rolling_file_size {
            self.roll()?;
        }
        Ok(())
    }

    /// Pre-commit: closes the in-progress file, renames every closed file
    /// to its pending name for this checkpoint, and lists all the pending
    /// files not committed yet.
    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        self.roll()?;
        let c = barrier.checkpoint_id;
        let mut renamed = false;
        for p in self.pending.iter_mut().filter(|p| p.checkpoint.is_none()) {
            let from = self.dir.join(in_progress_name(&p.name));
            let to = self.dir.join(pending_name(&p.name, c));
            std::fs::rename(&from, &to).map_err(|e| fs_error("pre-commit", &from, e))?;
            p.checkpoint = Some(c);
            renamed = true;
        }
        if renamed {
            sync_dir(&self.dir);
        }
        let entries = self
            .pending
            .iter()
            .filter_map(|p| p.checkpoint.map(|c| json!({"file": p.name, "checkpoint": c})))
            .collect();
        Ok(OperatorSnapshot::list(entries))
    }

    /// Commit: renames the files of checkpoints up to `checkpoint_id`.
    async fn notify_checkpoint_complete(&mut self, checkpoint_id: CheckpointId) -> Result<()> {
        let due = self
            .pending
            .iter()
            .any(|p| p.checkpoint.is_some_and(|c| c <= checkpoint_id));
        if due {
            weir_engine::crash_point!("filesystem-sink-before-commit");
        }
        self.commit_where(|p| p.checkpoint.is_some_and(|c| c <= checkpoint_id))?;
        if due {
            weir_engine::crash_point!("filesystem-sink-after-commit");
        }
        Ok(())
    }

    /// End of input. Without checkpoints: rolls and commits everything. With
    /// them, the final checkpoint has committed everything already (nothing
    /// arrives after its barrier); anything left waits for a restore.
    async fn finish(&mut self, _out: &mut Output) -> Result<()> {
        if !self.checkpointing {
            self.roll()?;
            return self.commit_where(|_| true);
        }
        if self.in_progress.is_some() || !self.pending.is_empty() {
            tracing::warn!(
                dir = %self.dir.display(),
                pending = self.pending.len(),
                "filesystem sink: part files not committed by a checkpoint at the end of the job"
            );
        }
        Ok(())
    }

    /// After a failure: deletes the in-progress file (best effort).
    async fn close(&mut self) -> Result<()> {
        if let Some(file) = self.in_progress.take() {
            drop(file.writer);
            let hidden = self.dir.join(in_progress_name(&file.name));
            if let Err(e) = std::fs::remove_file(&hidden) {
                tracing::warn!(file = %hidden.display(), error = %e, "filesystem sink: cannot delete an in-progress file");
            }
        }
        Ok(())
    }
}

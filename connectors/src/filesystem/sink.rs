//! The append-only `filesystem` sink, after Flink's FileSink.
//!
//! Each sink subtask writes *part files* into the directory `path` (created
//! if missing), named `part-<subtask>-<run>-<n>.<ext>`: `<run>` is random
//! per subtask instance (so that runs never overwrite each other's files),
//! `<n>` counts the files of the instance. A part file goes through three
//! states:
//!
//! 1. **in progress**: being written, as the hidden file
//!    `.part-<subtask>-<run>-<n>.<ext>.inprogress` (readers skip hidden files);
//! 2. **pending**: closed, flushed and synced to disk, still hidden, waiting
//!    to be committed — it is rolled to pending when it reaches
//!    `sink.rolling-policy.file-size`, at a checkpoint barrier, and at the end;
//! 3. **committed**: renamed to its visible name. Renaming is atomic, and
//!    committing is idempotent (a file already renamed is committed).
//!
//! Pending files rolled at the barrier of checkpoint `c` are committed when
//! checkpoint `c` completes ([`Operator::notify_checkpoint_complete`]), the
//! rest at [`Operator::finish`] (end of a bounded input). This is phase one and
//! two of a two-phase commit; what is still missing for exactly-once across
//! failures is recording the pending files in the checkpoint (the runtime's
//! operator state, not there yet) and committing them on restore.
//!
//! On failure ([`Operator::close`] without `finish`) the in-progress file is
//! deleted; pending files are left hidden, for a restore to commit or discard.
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
use weir_engine::changelog::{RowKind, split_ops};
use weir_engine::connector::{SinkRequest, SinkSpec};
use weir_engine::message::{Barrier, CheckpointId};
use weir_engine::operator::{Operator, OperatorContext, Output};

use super::{FileSystemOptions, Format};
use crate::random::fresh_seed;

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
        _parallelism: usize,
    ) -> Result<Box<dyn Operator>> {
        Ok(Box::new(FileSink {
            schema: Arc::clone(&self.schema),
            dir: self.options.path.clone(),
            format: self.options.format.clone(),
            rolling_file_size: self.options.rolling_file_size,
            subtask,
            run: format!("{:08x}", fresh_seed() as u32),
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
            Format::Json(o) => {
                let (ts, ts_tz) = o.timestamp_standard.formats();
                FormatWriter::Json(
                    arrow::json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .with_timestamp_format(ts.to_string())
                        .with_timestamp_tz_format(ts_tz.to_string())
                        .build::<_, LineDelimited>(out),
                )
            }
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
    /// The hidden in-progress file.
    hidden: PathBuf,
    /// Its name once committed.
    target: PathBuf,
    writer: FormatWriter,
    written: Arc<AtomicU64>,
}

/// A closed part file waiting to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFile {
    /// The hidden, closed file.
    pub hidden: PathBuf,
    /// Its name once committed.
    pub target: PathBuf,
    /// The checkpoint whose barrier rolled it, if any: it is committed when
    /// that checkpoint completes. `None`: committed at the end.
    pub checkpoint: Option<CheckpointId>,
}

impl PendingFile {
    /// Renames the file into place. Idempotent: a file already renamed is
    /// committed.
    pub fn commit(&self) -> Result<()> {
        match std::fs::rename(&self.hidden, &self.target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.target.exists() => Ok(()),
            Err(e) => Err(DataFusionError::Execution(format!(
                "filesystem sink: cannot commit '{}' as '{}': {e}",
                self.hidden.display(),
                self.target.display()
            ))),
        }
    }
}

/// One subtask of a `filesystem` sink. See the [module docs](self) for the
/// life of its part files.
pub struct FileSink {
    schema: SchemaRef,
    dir: PathBuf,
    format: Format,
    rolling_file_size: u64,
    subtask: usize,
    run: String,
    counter: u64,
    in_progress: Option<InProgressFile>,
    pending: Vec<PendingFile>,
}

impl FileSink {
    fn sink_error(&self, what: &str, path: &Path, e: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!(
            "filesystem sink: cannot {what} '{}': {e}",
            path.display()
        ))
    }

    /// Opens a new in-progress part file.
    fn open_part(&mut self) -> Result<InProgressFile> {
        let name = format!(
            "part-{}-{}-{}.{}",
            self.subtask,
            self.run,
            self.counter,
            self.format.extension()
        );
        self.counter += 1;
        let hidden = self.dir.join(format!(".{name}.inprogress"));
        let target = self.dir.join(name);
        let file = File::create(&hidden).map_err(|e| self.sink_error("create", &hidden, e))?;
        let written = Arc::new(AtomicU64::new(0));
        let out = Counting {
            inner: BufWriter::with_capacity(1 << 16, file),
            written: Arc::clone(&written),
        };
        let writer = FormatWriter::new(&self.format, &self.schema, out)?;
        Ok(InProgressFile {
            hidden,
            target,
            writer,
            written,
        })
    }

    /// Closes the in-progress file, if any, into a pending file.
    fn roll(&mut self) -> Result<()> {
        if let Some(file) = self.in_progress.take() {
            file.writer.close()?;
            self.pending.push(PendingFile {
                hidden: file.hidden,
                target: file.target,
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
            if let Err(e) = p.commit() {
                // Keep what is not committed yet, for a retry.
                self.pending.extend_from_slice(&commit[i..]);
                return Err(e);
            }
        }
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
    async fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.sink_error("create directory", &self.dir, e))
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

    /// Pre-commit: rolls the in-progress file, and marks every pending file
    /// as belonging to this checkpoint.
    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<()> {
        self.roll()?;
        for p in &mut self.pending {
            p.checkpoint.get_or_insert(barrier.checkpoint_id);
        }
        Ok(())
    }

    /// Commit: renames the files of checkpoints up to `checkpoint_id`.
    async fn notify_checkpoint_complete(&mut self, checkpoint_id: CheckpointId) -> Result<()> {
        self.commit_where(|p| p.checkpoint.is_some_and(|c| c <= checkpoint_id))
    }

    /// End of input: rolls and commits everything.
    async fn finish(&mut self, _out: &mut Output) -> Result<()> {
        self.roll()?;
        self.commit_where(|_| true)
    }

    /// After a failure: deletes the in-progress file (best effort).
    async fn close(&mut self) -> Result<()> {
        if let Some(file) = self.in_progress.take() {
            drop(file.writer);
            if let Err(e) = std::fs::remove_file(&file.hidden) {
                tracing::warn!(file = %file.hidden.display(), error = %e, "filesystem sink: cannot delete an in-progress file");
            }
        }
        Ok(())
    }
}

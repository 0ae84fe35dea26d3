//! The bounded `filesystem` source.
//!
//! At job start, subtask `i` of `p` lists the files under `path` (sorted by
//! path; hidden files and directories, whose names start with `.` or `_`,
//! skipped) and reads the files `j ≡ i (mod p)`, one after the other, each
//! from start to end, then finishes. The most useful parallelism is the
//! number of files ([`SourceSpec::max_parallelism`]).
//!
//! # Checkpoints
//!
//! Each file is a split. A subtask's state is one entry per file it has not
//! finished, with the position after the last batch returned:
//!
//! ```json
//! {"path": "/data/in/a.json", "offset": 65536, "line": 1201}
//! {"path": "/data/in/b.parquet", "rows": 16384}
//! ```
//!
//! `offset` is a byte offset (JSON lines, CSV; `line` the line number there,
//! for error messages), `rows` the rows already read (Parquet). Finished
//! files have no entry: they are done. A restored subtask reads exactly the
//! files of its entries, each from its position, one after the other (at
//! another parallelism the engine deals the entries over the subtasks), and
//! does not list `path` again: files added since the job started are not read,
//! as in the first run. A file of the checkpoint that is gone, or shorter than
//! its position, fails the restore: it changed, and resuming it would not be
//! exact.
//!
//! Reading is synchronous and in bounded steps (one chunk of records per
//! poll, from a buffered local file), so `poll_next` never waits and is
//! trivially cancel-safe.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Value, json};
use weir_engine::message::CheckpointId;
use weir_engine::metrics::OperatorMetrics;
use weir_engine::operator::OperatorContext;
use weir_engine::source::{Source, SourceEvent, SourceSpec};

use super::records::{Chunk, CsvDecoder, JsonDecoder, OnError, RecordDecoder, RecordReader, decode_chunk};
use super::{FileSystemOptions, Format};
use crate::split::{bad_entry, entry_u64};

/// Records per chunk (and so, at most, rows per batch).
const BATCH_SIZE: usize = 8192;

/// A validated `filesystem` source table.
#[derive(Debug)]
pub struct FileSourceSpec {
    schema: SchemaRef,
    options: FileSystemOptions,
}

impl FileSourceSpec {
    /// A source of `schema` over the files of `options.path`.
    pub fn new(schema: SchemaRef, options: FileSystemOptions) -> Self {
        FileSourceSpec { schema, options }
    }
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("filesystem: cannot {what} '{}': {e}", path.display()))
}

/// A file of the checkpoint to resume that changed since.
fn changed(path: &Path, what: &str) -> DataFusionError {
    DataFusionError::Execution(format!(
        "filesystem: cannot resume reading '{}' from a checkpoint: the file changed ({what})",
        path.display()
    ))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

/// The files of `path`: itself if a file, else the files under it
/// (recursively), hidden ones skipped, sorted.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| io_error("read", path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))? {
            let entry = entry.map_err(|e| io_error("list", &dir, e))?;
            let p = entry.path();
            if is_hidden(&p) {
                continue;
            }
            let kind = entry.file_type().map_err(|e| io_error("read", &p, e))?;
            if kind.is_dir() {
                dirs.push(p);
            } else if kind.is_file() || (kind.is_symlink() && p.is_file()) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

impl SourceSpec for FileSourceSpec {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        true
    }

    /// The number of files now under `path` (at least 1).
    fn max_parallelism(&self) -> Option<usize> {
        Some(list_files(&self.options.path).map_or(1, |f| f.len().max(1)))
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        if parallelism == 0 || subtask >= parallelism {
            return Err(DataFusionError::Internal(format!(
                "filesystem: subtask {subtask} out of range for parallelism {parallelism}"
            )));
        }
        let files = list_files(&self.options.path)?
            .into_iter()
            .enumerate()
            .filter(|(j, _)| j % parallelism == subtask)
            .map(|(_, path)| FileSplit::start_of(path))
            .collect();
        let decoder: Option<Arc<dyn RecordDecoder>> = match &self.options.format {
            Format::Json(o) => Some(Arc::new(JsonDecoder {
                schema: Arc::clone(&self.schema),
                fail_on_missing_field: o.fail_on_missing_field,
            })),
            Format::Csv(o) => Some(Arc::new(CsvDecoder {
                schema: Arc::clone(&self.schema),
                delimiter: o.delimiter,
                quote: o.quote,
            })),
            Format::Parquet(_) => None,
        };
        Ok(Box::new(FileSource {
            schema: Arc::clone(&self.schema),
            format: self.options.format.clone(),
            decoder,
            files,
            current: None,
            chunk: Chunk::default(),
            metrics: None,
        }))
    }
}

/// One subtask of a `filesystem` source: reads its files (its splits) in
/// order, one chunk per poll, then finishes. See the [module docs](self) for
/// its checkpointed state.
pub struct FileSource {
    schema: SchemaRef,
    format: Format,
    /// The text decoder (JSON lines and CSV).
    decoder: Option<Arc<dyn RecordDecoder>>,
    /// The files not finished yet, the one being read first, each with the
    /// position after the last batch returned.
    files: VecDeque<FileSplit>,
    /// The open reader of `files[0]`, once opened.
    current: Option<OpenFile>,
    chunk: Chunk,
    metrics: Option<Arc<OperatorMetrics>>,
}

/// A file to read, and how far it has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileSplit {
    path: PathBuf,
    /// Text: the byte offset after the last record returned.
    offset: u64,
    /// Text: the number of the line at `offset`, 1-based.
    line: u64,
    /// Parquet: the rows returned.
    rows: u64,
}

const FILESYSTEM: &str = "filesystem";

impl FileSplit {
    fn start_of(path: PathBuf) -> Self {
        FileSplit {
            path,
            offset: 0,
            line: 1,
            rows: 0,
        }
    }

    fn to_entry(&self, format: &Format) -> Result<Value> {
        let path = self.path.to_str().ok_or_else(|| {
            DataFusionError::Execution(format!(
                "filesystem: cannot checkpoint the position in '{}': its path is not UTF-8",
                self.path.display()
            ))
        })?;
        Ok(match format {
            Format::Parquet(_) => json!({"path": path, "rows": self.rows}),
            _ => json!({"path": path, "offset": self.offset, "line": self.line}),
        })
    }

    fn from_entry(entry: &Value, format: &Format) -> Result<Self> {
        let path = entry
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_entry(FILESYSTEM, entry, "no string 'path'"))?;
        let mut split = FileSplit::start_of(PathBuf::from(path));
        match format {
            Format::Parquet(_) => split.rows = entry_u64(FILESYSTEM, entry, "rows")?,
            _ => {
                split.offset = entry_u64(FILESYSTEM, entry, "offset")?;
                split.line = entry_u64(FILESYSTEM, entry, "line")?;
            }
        }
        Ok(split)
    }
}

/// The file being read.
enum OpenFile {
    Text {
        path: PathBuf,
        reader: RecordReader<BufReader<File>>,
    },
    Parquet {
        path: PathBuf,
        reader: ParquetRecordBatchReader,
        columns: Vec<ParquetColumn>,
    },
}

/// Where a declared column comes from in a Parquet file's batches.
#[derive(Debug)]
enum ParquetColumn {
    /// Column `i` of the projected batch, cast to the declared type if needed.
    Read(usize),
    /// Not in the file: all null.
    Missing,
}

impl FileSource {
    /// Opens `split`'s file at its position.
    fn open_file(&self, split: &FileSplit) -> Result<OpenFile> {
        let path = &split.path;
        let mut file = File::open(path).map_err(|e| io_error("open", path, e))?;
        let quote = match &self.format {
            Format::Parquet(_) => return self.open_parquet(path, file, split.rows),
            Format::Json(_) => None,
            Format::Csv(o) => Some(o.quote),
        };
        if split.offset > 0 {
            let len = file.metadata().map_err(|e| io_error("read", path, e))?.len();
            if len < split.offset {
                return Err(changed(
                    path,
                    &format!("{len} bytes, was read up to byte {}", split.offset),
                ));
            }
            file.seek(SeekFrom::Start(split.offset))
                .map_err(|e| io_error("read", path, e))?;
        }
        let mut reader = RecordReader::resume(
            BufReader::with_capacity(1 << 16, file),
            quote,
            split.offset,
            split.line,
        );
        if let Format::Csv(o) = &self.format
            && o.header
            && split.offset == 0
        {
            let mut header = Chunk::default();
            reader
                .read_chunk(1, &mut header)
                .map_err(|e| io_error("read", path, e))?;
        }
        Ok(OpenFile::Text {
            path: path.to_path_buf(),
            reader,
        })
    }

    /// Opens a Parquet file, skipping its first `skip` rows.
    fn open_parquet(&self, path: &Path, file: File, skip: u64) -> Result<OpenFile> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| io_error("read Parquet file", path, e))?;
        let num_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        if num_rows < skip {
            return Err(changed(path, &format!("{num_rows} rows, {skip} were read")));
        }
        let file_schema = Arc::clone(builder.schema());
        // The file's column of each declared column: same name, else same name
        // ignoring case.
        let mut roots = Vec::new();
        let found: Vec<Option<usize>> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                let i = file_schema.index_of(f.name()).ok().or_else(|| {
                    file_schema
                        .fields()
                        .iter()
                        .position(|g| g.name().eq_ignore_ascii_case(f.name()))
                });
                if let Some(i) = i {
                    roots.push(i);
                }
                i
            })
            .collect();
        roots.sort_unstable();
        roots.dedup();
        let mut columns = Vec::with_capacity(found.len());
        for (field, i) in self.schema.fields().iter().zip(found) {
            match i {
                Some(i) => columns.push(ParquetColumn::Read(roots.binary_search(&i).unwrap_or(0))),
                None if field.is_nullable() => columns.push(ParquetColumn::Missing),
                None => {
                    return Err(DataFusionError::Execution(format!(
                        "filesystem: Parquet file '{}' has no column '{}' (declared NOT NULL)",
                        path.display(),
                        field.name()
                    )));
                }
            }
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let mut builder = builder.with_projection(mask).with_batch_size(BATCH_SIZE);
        if skip > 0 {
            builder = builder.with_offset(skip as usize);
        }
        let reader = builder
            .build()
            .map_err(|e| io_error("read Parquet file", path, e))?;
        Ok(OpenFile::Parquet {
            path: path.to_path_buf(),
            reader,
            columns,
        })
    }

    /// The next batch of the current file, `None` at its end.
    fn read_current(&mut self) -> Result<Option<RecordBatch>> {
        let Some(current) = self.current.as_mut() else {
            return Ok(None);
        };
        match current {
            OpenFile::Text { path, reader } => {
                if reader.is_done() {
                    return Ok(None);
                }
                reader
                    .read_chunk(BATCH_SIZE, &mut self.chunk)
                    .map_err(|e| io_error("read", path, e))?;
                let (decoder, on_error) = match (&self.decoder, &self.format) {
                    (Some(d), Format::Json(o)) => (
                        d,
                        if o.ignore_parse_errors {
                            OnError::Skip
                        } else {
                            OnError::Fail
                        },
                    ),
                    (Some(d), Format::Csv(o)) => (
                        d,
                        if o.ignore_parse_errors {
                            OnError::Skip
                        } else {
                            OnError::Fail
                        },
                    ),
                    _ => {
                        return Err(DataFusionError::Internal(
                            "filesystem: no decoder for a text file".into(),
                        ));
                    }
                };
                let mut skipped = 0;
                let batches = decode_chunk(decoder.as_ref(), &self.chunk, path, on_error, &mut skipped)?;
                if skipped > 0 {
                    tracing::warn!(file = %path.display(), skipped, "filesystem source skipped malformed records");
                    if let Some(m) = &self.metrics {
                        OperatorMetrics::add(&m.records_skipped, skipped);
                    }
                }
                let batch = match batches.len() {
                    0 => RecordBatch::new_empty(Arc::clone(&self.schema)),
                    1 => batches
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))),
                    _ => concat_batches(&self.schema, &batches)?,
                };
                Ok(Some(batch))
            }
            OpenFile::Parquet {
                path,
                reader,
                columns,
            } => {
                let Some(batch) = reader.next() else {
                    return Ok(None);
                };
                let batch = batch.map_err(|e| io_error("read Parquet file", path, e))?;
                let arrays = self
                    .schema
                    .fields()
                    .iter()
                    .zip(columns.iter())
                    .map(|(field, c)| -> Result<ArrayRef> {
                        match c {
                            ParquetColumn::Missing => Ok(new_null_array(field.data_type(), batch.num_rows())),
                            ParquetColumn::Read(i) => {
                                let array = batch.column(*i);
                                if array.data_type() == field.data_type() {
                                    Ok(Arc::clone(array))
                                } else {
                                    cast(array, field.data_type()).map_err(|e| {
                                        DataFusionError::Execution(format!(
                                            "filesystem: column '{}' of Parquet file '{}' cannot be read as {}: {e}",
                                            field.name(),
                                            path.display(),
                                            field.data_type()
                                        ))
                                    })
                                }
                            }
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                RecordBatch::try_new(Arc::clone(&self.schema), arrays)
                    .map(Some)
                    .map_err(|e| {
                        DataFusionError::Execution(format!(
                            "filesystem: Parquet file '{}': {e}",
                            path.display()
                        ))
                    })
            }
        }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(Arc::clone(&ctx.metrics));
        Ok(())
    }

    async fn poll_next(&mut self) -> Result<SourceEvent> {
        loop {
            if self.current.is_none() {
                let Some(split) = self.files.front() else {
                    return Ok(SourceEvent::Finished);
                };
                self.current = Some(self.open_file(split)?);
            }
            let batch = self.read_current()?;
            // The position after what was just read, returned or not.
            let (Some(split), Some(current)) = (self.files.front_mut(), self.current.as_ref()) else {
                return Err(DataFusionError::Internal("filesystem: no file being read".into()));
            };
            match (current, &batch) {
                (OpenFile::Text { reader, .. }, _) => (split.offset, split.line) = reader.position(),
                (OpenFile::Parquet { .. }, Some(b)) => split.rows += b.num_rows() as u64,
                (OpenFile::Parquet { .. }, None) => {}
            }
            match batch {
                Some(batch) if batch.num_rows() > 0 => return Ok(SourceEvent::Batch(batch)),
                Some(_) => {}
                None => {
                    // Finished: the file leaves the state.
                    self.current = None;
                    self.files.pop_front();
                }
            }
        }
    }

    /// Restores the files to read and their positions (replacing those
    /// listed at `create`).
    async fn initialize_state(&mut self, _ctx: &OperatorContext, state: Option<Vec<Value>>) -> Result<()> {
        if let Some(entries) = state {
            self.files = entries
                .iter()
                .map(|e| FileSplit::from_entry(e, &self.format))
                .collect::<Result<_>>()?;
            self.current = None;
            for split in &self.files {
                if !split.path.is_file() {
                    return Err(changed(&split.path, "it is gone"));
                }
            }
        }
        Ok(())
    }

    /// One entry per file not finished, at the position after the last batch.
    async fn snapshot_state(&mut self, _checkpoint_id: CheckpointId) -> Result<Vec<Value>> {
        self.files.iter().map(|f| f.to_entry(&self.format)).collect()
    }

    async fn close(&mut self) -> Result<()> {
        self.current = None;
        Ok(())
    }
}

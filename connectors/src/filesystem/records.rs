//! Reading text files (JSON lines, CSV) as chunks of records with their line
//! numbers, and decoding a chunk into a batch, pinpointing malformed records.
//!
//! The happy path decodes a whole chunk (thousands of records) with one
//! Arrow decoder. Only when that fails is the chunk split in halves, again
//! and again, down to the malformed records: they are reported with their
//! file and line, or skipped and counted, at a cost logarithmic in the chunk
//! size per malformed record.

use std::io::{self, BufRead};
use std::path::Path;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

/// One record of a chunk: its bytes `start..end` and its first line (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub start: usize,
    pub end: usize,
    pub line: u64,
}

/// Consecutive records of a file. Every record ends with a newline; blank
/// lines are left out (but counted in line numbers).
#[derive(Debug, Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub records: Vec<RecordSpan>,
}

impl Chunk {
    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }
}

/// Reads a text file record by record: a record is a line, or, for CSV, as
/// many lines as it takes to close the quotes (a quoted field may contain
/// newlines).
#[derive(Debug)]
pub struct RecordReader<R> {
    reader: R,
    /// The number of the next line to read, 1-based.
    next_line: u64,
    /// Bytes of the input consumed so far (from where reading started).
    offset: u64,
    /// CSV's quote character; `None` for JSON lines.
    quote: Option<u8>,
    eof: bool,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader of JSON lines (`quote: None`) or CSV records, from the start.
    #[cfg(test)]
    pub fn new(reader: R, quote: Option<u8>) -> Self {
        Self::resume(reader, quote, 0, 1)
    }

    /// A reader of JSON lines (`quote: None`) or CSV records from an input
    /// positioned at byte `offset` of a file, at line `line` (0 and 1 from
    /// the start; else a position from [`position`](Self::position)).
    pub fn resume(reader: R, quote: Option<u8>, offset: u64, line: u64) -> Self {
        RecordReader {
            reader,
            next_line: line,
            offset,
            quote,
            eof: false,
        }
    }

    /// The byte offset and line number just after the last record read:
    /// where [`resume`](Self::resume) goes on from.
    pub fn position(&self) -> (u64, u64) {
        (self.offset, self.next_line)
    }

    /// Whether the whole input has been read.
    pub fn is_done(&self) -> bool {
        self.eof
    }

    /// Replaces the contents of `chunk` with up to `max` next records.
    pub fn read_chunk(&mut self, max: usize, chunk: &mut Chunk) -> io::Result<()> {
        chunk.clear();
        while chunk.records.len() < max && !self.eof {
            let start = chunk.bytes.len();
            let line = self.next_line;
            let n = self.reader.read_until(b'\n', &mut chunk.bytes)?;
            if n == 0 {
                self.eof = true;
                break;
            }
            self.offset += n as u64;
            self.next_line += 1;
            if let Some(q) = self.quote {
                // An odd number of quotes so far: the record goes on.
                let mut open = chunk.bytes[start..].iter().filter(|b| **b == q).count() % 2 == 1;
                while open {
                    let from = chunk.bytes.len();
                    let n = self.reader.read_until(b'\n', &mut chunk.bytes)?;
                    if n == 0 {
                        self.eof = true;
                        break;
                    }
                    self.offset += n as u64;
                    self.next_line += 1;
                    open ^= chunk.bytes[from..].iter().filter(|b| **b == q).count() % 2 == 1;
                }
            }
            if chunk.bytes[start..].iter().all(u8::is_ascii_whitespace) {
                chunk.bytes.truncate(start);
                continue;
            }
            if chunk.bytes.last() != Some(&b'\n') {
                chunk.bytes.push(b'\n');
            }
            chunk.records.push(RecordSpan {
                start,
                end: chunk.bytes.len(),
                line,
            });
        }
        Ok(())
    }
}

/// Decodes complete records of one text format into a batch.
pub trait RecordDecoder: Send + Sync {
    /// Decodes `bytes`, which hold exactly `n` records, into a batch of `n`
    /// rows, or explains why it cannot.
    fn decode(&self, bytes: &[u8], n: usize) -> Result<RecordBatch, ArrowError>;
}

/// Feeds `bytes` to a decoder that stops when its batch is full; an error if
/// it stops before the end.
fn feed(
    mut bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    while !bytes.is_empty() {
        let consumed = decode(bytes)?;
        if consumed == 0 {
            return Err(ArrowError::ParseError(
                "more values than records (one value per record, e.g. per line, expected)".into(),
            ));
        }
        bytes = &bytes[consumed..];
    }
    Ok(())
}

fn check_rows(batch: Option<RecordBatch>, schema: &SchemaRef, n: usize) -> Result<RecordBatch, ArrowError> {
    let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    if batch.num_rows() != n {
        return Err(ArrowError::ParseError(format!(
            "expected {n} record(s), found {} (one value per record, e.g. per line, expected)",
            batch.num_rows()
        )));
    }
    Ok(batch)
}

/// Decodes JSON lines with arrow-json.
#[derive(Debug)]
pub struct JsonDecoder {
    pub schema: SchemaRef,
    /// Check that every line has every column (with serde_json: slower).
    pub fail_on_missing_field: bool,
}

impl RecordDecoder for JsonDecoder {
    fn decode(&self, bytes: &[u8], n: usize) -> Result<RecordBatch, ArrowError> {
        if self.fail_on_missing_field {
            // Value by value, not line by line: a Kafka record's value may
            // span lines.
            for object in serde_json::Deserializer::from_slice(bytes)
                .into_iter::<serde_json::Map<String, serde_json::Value>>()
            {
                let object = object.map_err(|e| ArrowError::JsonError(e.to_string()))?;
                if let Some(f) = self
                    .schema
                    .fields()
                    .iter()
                    .find(|f| !object.contains_key(f.name()))
                {
                    return Err(ArrowError::JsonError(format!("missing field '{}'", f.name())));
                }
            }
        }
        let mut decoder = arrow::json::ReaderBuilder::new(self.schema.clone())
            .with_batch_size(n + 1)
            .build_decoder()?;
        feed(bytes, |b| decoder.decode(b))?;
        check_rows(decoder.flush()?, &self.schema, n)
    }
}

/// Decodes CSV records (without header) with arrow-csv.
#[derive(Debug)]
pub struct CsvDecoder {
    pub schema: SchemaRef,
    pub delimiter: u8,
    pub quote: u8,
}

impl RecordDecoder for CsvDecoder {
    fn decode(&self, bytes: &[u8], n: usize) -> Result<RecordBatch, ArrowError> {
        let mut decoder = arrow::csv::ReaderBuilder::new(self.schema.clone())
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote)
            .with_batch_size(n + 1)
            .build_decoder();
        feed(bytes, |b| decoder.decode(b))?;
        check_rows(decoder.flush()?, &self.schema, n)
    }
}

/// What to do with a malformed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Fail, naming the file and line.
    Fail,
    /// Skip it and count it.
    Skip,
}

/// Decodes the records of `chunk` (read from `file`) into batches, in order.
/// Malformed records fail with `file:line: reason`, or are skipped and added
/// to `skipped`, per `on_error`.
pub fn decode_chunk(
    decoder: &dyn RecordDecoder,
    chunk: &Chunk,
    file: &Path,
    on_error: OnError,
    skipped: &mut u64,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let mut malformed = |i: usize, e: ArrowError| match on_error {
        OnError::Skip => {
            *skipped += 1;
            Ok(())
        }
        OnError::Fail => Err(DataFusionError::Execution(format!(
            "{}:{}: malformed record: {e}",
            file.display(),
            chunk.records[i].line
        ))),
    };
    decode_spans(decoder, &chunk.bytes, &chunk.records, 0, &mut malformed, &mut out)?;
    Ok(out.into_iter().map(|(_, batch)| batch).collect())
}

/// Where a record is in a buffer of consecutive records.
pub trait Span {
    /// Its bytes are `buffer[start..end]`.
    fn bounds(&self) -> (usize, usize);
}

impl Span for RecordSpan {
    fn bounds(&self) -> (usize, usize) {
        (self.start, self.end)
    }
}

impl Span for std::ops::Range<usize> {
    fn bounds(&self) -> (usize, usize) {
        (self.start, self.end)
    }
}

/// Decodes `records` (consecutive in `bytes`: each starts where the previous
/// ends), the first of which is record number `first`, into batches appended
/// to `out` with the number of their first record: a batch of `n` rows holds
/// records `first..first + n`. A malformed record `i` is passed to
/// `malformed`, which fails (returns the error) or skips it (`Ok`); the
/// records around it are decoded without it.
///
/// The happy path is one decoder call for all records; a failing range is
/// halved until its malformed records are isolated.
pub fn decode_spans<S: Span>(
    decoder: &dyn RecordDecoder,
    bytes: &[u8],
    records: &[S],
    first: usize,
    malformed: &mut dyn FnMut(usize, ArrowError) -> Result<()>,
    out: &mut Vec<(usize, RecordBatch)>,
) -> Result<()> {
    let (Some(head), Some(tail)) = (records.first(), records.last()) else {
        return Ok(());
    };
    match decoder.decode(&bytes[head.bounds().0..tail.bounds().1], records.len()) {
        Ok(batch) => {
            out.push((first, batch));
            Ok(())
        }
        Err(e) if records.len() == 1 => malformed(first, e),
        Err(_) => {
            let mid = records.len() / 2;
            let (left, right) = records.split_at(mid);
            decode_spans(decoder, bytes, left, first, malformed, out)?;
            decode_spans(decoder, bytes, right, first + mid, malformed, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn records_have_line_numbers_and_csv_quotes_span_lines() {
        let text = b"a,b\n\n\"multi\nline\",c\nlast";
        let mut r = RecordReader::new(&text[..], Some(b'"'));
        let mut chunk = Chunk::default();
        r.read_chunk(10, &mut chunk).unwrap();
        let lines: Vec<u64> = chunk.records.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![1, 3, 5]);
        assert_eq!(
            &chunk.bytes[chunk.records[1].start..chunk.records[1].end],
            b"\"multi\nline\",c\n"
        );
        assert_eq!(&chunk.bytes[chunk.records[2].start..], b"last\n");
        assert!(r.is_done());
    }

    #[test]
    fn a_reader_resumes_at_its_position() {
        let text = b"a,\"x\ny\"\n\nb\nc\n";
        let mut r = RecordReader::new(&text[..], Some(b'"'));
        let mut chunk = Chunk::default();
        r.read_chunk(2, &mut chunk).unwrap();
        let (offset, line) = r.position();
        assert_eq!((offset, line), (11, 5));
        let mut rest = RecordReader::resume(&text[offset as usize..], Some(b'"'), offset, line);
        rest.read_chunk(10, &mut chunk).unwrap();
        assert_eq!(chunk.records.len(), 1);
        assert_eq!(chunk.records[0].line, 5);
        assert_eq!(&chunk.bytes[..], b"c\n");
        assert_eq!(rest.position(), (text.len() as u64, 6));
    }

    #[test]
    fn chunks_are_bounded() {
        let text = b"1\n2\n3\n";
        let mut r = RecordReader::new(&text[..], None);
        let mut chunk = Chunk::default();
        r.read_chunk(2, &mut chunk).unwrap();
        assert_eq!(chunk.records.len(), 2);
        r.read_chunk(2, &mut chunk).unwrap();
        assert_eq!(chunk.records.len(), 1);
        assert_eq!(chunk.records[0].line, 3);
    }

    #[test]
    fn malformed_records_are_pinpointed() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let decoder = JsonDecoder {
            schema,
            fail_on_missing_field: false,
        };
        let text = b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": \"x\"}\n{\"a\": 4}\n{\"a\": 5\n{\"a\": 6}\n";
        let mut chunk = Chunk::default();
        RecordReader::new(&text[..], None)
            .read_chunk(100, &mut chunk)
            .unwrap();
        let mut skipped = 0;
        let err =
            decode_chunk(&decoder, &chunk, Path::new("f.json"), OnError::Fail, &mut skipped).unwrap_err();
        assert!(err.to_string().contains("f.json:3: malformed record"), "{err}");
        let batches =
            decode_chunk(&decoder, &chunk, Path::new("f.json"), OnError::Skip, &mut skipped).unwrap();
        assert_eq!(skipped, 2);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 4);
    }
}

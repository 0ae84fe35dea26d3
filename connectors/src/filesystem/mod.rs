//! The `filesystem` connector: tables stored as files of JSON lines, CSV or
//! Parquet in a local directory, as Flink's filesystem connector.
//!
//! ```sql
//! CREATE TABLE archive (id BIGINT, name VARCHAR, ts TIMESTAMP(3))
//! WITH ('connector' = 'filesystem', 'path' = '/data/archive', 'format' = 'json');
//! ```
//!
//! - As a **source** ([`source`]) it is bounded: it reads every file under
//!   `path` (a file, or a directory read recursively, skipping names that start
//!   with `.` or `_`, as Flink does) and finishes. Files are split over the
//!   subtasks; rows within a file keep their order.
//! - As a **sink** ([`sink`]) it writes part files into the directory `path`,
//!   each first as a hidden in-progress file, renamed into place when
//!   committed (Flink's FileSink model). It is append-only.
//!
//! # Formats
//!
//! - `json`: one JSON object per line. Missing fields are null (unless
//!   `json.fail-on-missing-field`), unknown fields are ignored. Timestamps
//!   are written as Flink's `SQL` standard, `2024-01-01 00:00:05.123` (or
//!   `ISO-8601`, `2024-01-01T00:00:05.123`, per `json.timestamp-format.standard`);
//!   a time-zoned timestamp (`TIMESTAMP_LTZ`) gets an offset, `+00:00`. Both
//!   forms, and numbers (in the column's unit, e.g. epoch milliseconds for
//!   `TIMESTAMP(3)`), are read back.
//! - `csv`: no header by default (as Flink); `csv.header` writes and skips
//!   one. An empty field is null. Timestamps as in JSON's `SQL` standard.
//! - `parquet`: columns are matched by name and cast to the declared types.
//!
//! Malformed records fail the job with the file name and line number, unless
//! `json.ignore-parse-errors` / `csv.ignore-parse-errors` is set: then they
//! are skipped and counted in the `records_skipped` metric.

pub(crate) mod records;
pub mod sink;
pub mod source;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::{Result, plan_err};
use weir_engine::connector::{Connector, ConnectorOptions, OptionSpec, SinkSpec};
use weir_engine::source::SourceSpec;

const COMMON_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "path",
        "a file or directory (required); the sink writes into the directory",
    ),
    OptionSpec::new("format", "'json' (JSON lines), 'csv' or 'parquet' (required)"),
    OptionSpec::new(
        "sink.rolling-policy.file-size",
        "roll to a new part file past this size (default 128 MB)",
    ),
];
const JSON_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "json.ignore-parse-errors",
        "skip malformed lines instead of failing (default false)",
    ),
    OptionSpec::new(
        "json.fail-on-missing-field",
        "fail on a line without some column (default false: null)",
    ),
    OptionSpec::new(
        "json.timestamp-format.standard",
        "'SQL' (default, 2024-01-01 00:00:05) or 'ISO-8601'",
    ),
];
const CSV_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "csv.field-delimiter",
        "field delimiter, one character (default ',')",
    ),
    OptionSpec::new("csv.quote-character", "quote character (default '\"')"),
    OptionSpec::new(
        "csv.ignore-parse-errors",
        "skip malformed records instead of failing (default false)",
    ),
    OptionSpec::new(
        "csv.header",
        "files start with a header line: the sink writes it, the source skips it (default false)",
    ),
];
const PARQUET_OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "parquet.compression",
    "'snappy' (default) or 'uncompressed'",
)];

const DEFAULT_ROLLING_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// How timestamps are written as JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampStandard {
    /// `2024-01-01 00:00:05.123`
    Sql,
    /// `2024-01-01T00:00:05.123`
    Iso8601,
}

impl TimestampStandard {
    /// The chrono formats of timestamps without and with a time zone.
    pub fn formats(self) -> (&'static str, &'static str) {
        match self {
            TimestampStandard::Sql => ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f%:z"),
            TimestampStandard::Iso8601 => ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f%:z"),
        }
    }
}

/// The options of the `json` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOptions {
    /// `json.ignore-parse-errors`: skip (and count) malformed lines.
    pub ignore_parse_errors: bool,
    /// `json.fail-on-missing-field`: a line without some column is malformed.
    pub fail_on_missing_field: bool,
    /// `json.timestamp-format.standard`: how the sink writes timestamps.
    pub timestamp_standard: TimestampStandard,
}

impl JsonOptions {
    /// A writer of JSON lines in this format: explicit nulls (as Flink), and
    /// timestamps per `json.timestamp-format.standard`.
    pub fn writer<W: std::io::Write>(&self, out: W) -> arrow::json::LineDelimitedWriter<W> {
        let (ts, ts_tz) = self.timestamp_standard.formats();
        arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_timestamp_format(ts.to_string())
            .with_timestamp_tz_format(ts_tz.to_string())
            .build::<_, arrow::json::writer::LineDelimited>(out)
    }

    /// Reads `json.ignore-parse-errors`, `json.fail-on-missing-field` and
    /// `json.timestamp-format.standard` (Flink's names, shared by every
    /// connector with a `json` format).
    pub fn from_options(options: &ConnectorOptions) -> Result<Self> {
        Ok(JsonOptions {
            ignore_parse_errors: options.get_bool("json.ignore-parse-errors")?.unwrap_or(false),
            fail_on_missing_field: options.get_bool("json.fail-on-missing-field")?.unwrap_or(false),
            timestamp_standard: match options
                .get_enum("json.timestamp-format.standard", &["sql", "iso-8601"])?
                .as_deref()
            {
                Some("iso-8601") => TimestampStandard::Iso8601,
                _ => TimestampStandard::Sql,
            },
        })
    }
}

/// The options of the `csv` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// `csv.field-delimiter`.
    pub delimiter: u8,
    /// `csv.quote-character`.
    pub quote: u8,
    /// `csv.ignore-parse-errors`: skip (and count) malformed records.
    pub ignore_parse_errors: bool,
    /// `csv.header`: the sink writes a header line, the source skips one.
    pub header: bool,
}

/// The options of the `parquet` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetOptions {
    /// `parquet.compression`: snappy (else uncompressed).
    pub snappy: bool,
}

/// A file format with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// JSON lines.
    Json(JsonOptions),
    /// CSV (RFC 4180 quoting).
    Csv(CsvOptions),
    /// Parquet.
    Parquet(ParquetOptions),
}

impl Format {
    /// The extension of the part files the sink writes.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Json(_) => "json",
            Format::Csv(_) => "csv",
            Format::Parquet(_) => "parquet",
        }
    }
}

/// The validated options of a `filesystem` table.
#[derive(Debug, Clone)]
pub struct FileSystemOptions {
    /// `path`: a file or directory to read, the directory to write into.
    pub path: PathBuf,
    /// `format` and its options.
    pub format: Format,
    /// The sink rolls to a new part file once a file reaches this size.
    pub rolling_file_size: u64,
}

fn single_byte(options: &ConnectorOptions, key: &str, default: u8) -> Result<u8> {
    match options.get(key) {
        None => Ok(default),
        Some("\\t") => Ok(b'\t'),
        Some(v) if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
        Some(v) => {
            plan_err!("invalid value '{v}' for option '{key}': expected a single ASCII character")
        }
    }
}

/// Parses a memory size in Flink's syntax: `<number> [unit]`, unit `b`, `kb`,
/// `mb`, `gb`, `tb` (1024-based, also `k`, `m`, ...); bytes without unit.
pub fn parse_memory_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let value: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kibibytes" => 10,
        "m" | "mb" | "mebibytes" => 20,
        "g" | "gb" | "gibibytes" => 30,
        "t" | "tb" | "tebibytes" => 40,
        _ => return None,
    };
    value.checked_mul(1 << shift)
}

impl FileSystemOptions {
    /// Validates the options of a `filesystem` table with `columns`.
    pub fn try_new(options: &ConnectorOptions, columns: &[String]) -> Result<Self> {
        let format_name = options.get_enum("format", &["json", "csv", "parquet"])?;
        let format_options = match format_name.as_deref() {
            Some("json") => JSON_OPTIONS,
            Some("csv") => CSV_OPTIONS,
            Some("parquet") => PARQUET_OPTIONS,
            _ => &[],
        };
        let valid: Vec<OptionSpec> = COMMON_OPTIONS.iter().chain(format_options).cloned().collect();
        options.check_known("filesystem", &valid, columns)?;
        let Some(format_name) = format_name else {
            return plan_err!("missing required option 'format': one of json, csv, parquet");
        };
        let path = PathBuf::from(options.required("path")?);
        let format = match format_name.as_str() {
            "json" => Format::Json(JsonOptions::from_options(options)?),
            "csv" => {
                let options = CsvOptions {
                    delimiter: single_byte(options, "csv.field-delimiter", b',')?,
                    quote: single_byte(options, "csv.quote-character", b'"')?,
                    ignore_parse_errors: options.get_bool("csv.ignore-parse-errors")?.unwrap_or(false),
                    header: options.get_bool("csv.header")?.unwrap_or(false),
                };
                if options.delimiter == options.quote || options.delimiter == b'\n' || options.quote == b'\n'
                {
                    return plan_err!(
                        "options 'csv.field-delimiter' and 'csv.quote-character' must differ from each other and from a newline"
                    );
                }
                Format::Csv(options)
            }
            _ => Format::Parquet(ParquetOptions {
                snappy: options
                    .get_enum("parquet.compression", &["snappy", "uncompressed"])?
                    .as_deref()
                    != Some("uncompressed"),
            }),
        };
        let key = "sink.rolling-policy.file-size";
        let rolling_file_size = match options.get(key) {
            None => DEFAULT_ROLLING_FILE_SIZE,
            Some(v) => match parse_memory_size(v) {
                Some(n) if n > 0 => n,
                _ => {
                    return plan_err!(
                        "invalid value '{v}' for option '{key}': expected a size such as '128 mb'"
                    );
                }
            },
        };
        Ok(FileSystemOptions {
            path,
            format,
            rolling_file_size,
        })
    }
}

/// The `filesystem` connector: a bounded source and an append-only sink.
#[derive(Debug, Default)]
pub struct FileSystemConnector;

fn column_names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

impl Connector for FileSystemConnector {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn options(&self) -> Vec<OptionSpec> {
        [COMMON_OPTIONS, JSON_OPTIONS, CSV_OPTIONS, PARQUET_OPTIONS].concat()
    }

    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SourceSpec>> {
        let options = FileSystemOptions::try_new(options, &column_names(&schema))?;
        Ok(Arc::new(source::FileSourceSpec::new(schema, options)))
    }

    fn sink(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SinkSpec>> {
        let options = FileSystemOptions::try_new(options, &column_names(&schema))?;
        Ok(Arc::new(sink::FileSinkSpec::new(schema, options)))
    }
}

#[cfg(test)]
mod tests;

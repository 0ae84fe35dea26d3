//! The `datagen` source: rows of random or sequential values for any table,
//! as Flink's DataGen connector, deterministic for a given `seed`.
//!
//! ```sql
//! CREATE TABLE clicks (
//!     id BIGINT, user_name VARCHAR, score DOUBLE, ts TIMESTAMP(3),
//!     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
//! ) WITH (
//!     'connector' = 'datagen',
//!     'rows-per-second' = '100',
//!     'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '1000',
//!     'fields.user_name.length' = '8',
//!     'fields.score.min' = '0', 'fields.score.max' = '100',
//!     'fields.ts.max-past' = '5 s'
//! );
//! ```
//!
//! # Types and kinds
//!
//! | type | `random` (default) | `sequence` |
//! |---|---|---|
//! | `TINYINT` .. `BIGINT`, unsigned | uniform in `min..=max` (default: the type's range) | `start + r` |
//! | `FLOAT`, `DOUBLE` | uniform in `[min, max)` (default `[0, 1)`) | `start + r` |
//! | `DECIMAL(p, s)` | uniform in `min..=max` (default `0 ..= 10^(p-s) - 10^-s`) | `start + r` |
//! | `BOOLEAN` | true or false | — |
//! | `VARCHAR` (`Utf8`, `LargeUtf8`, `Utf8View`) | `length` alphanumeric characters (default 10; `var-len`: 1 to `length`) | the digits of `start + r` |
//! | `TIMESTAMP(p)` (any unit, any zone), `DATE` | the event clock minus up to `max-past` | — |
//!
//! A sequence needs `start`; `end` is optional and bounds the source (like
//! `number-of-rows`); a sequence that runs out of its type's range fails.
//! Any column may have a `null-rate`.
//!
//! # Rows, subtasks and determinism
//!
//! Rows are numbered globally `r = 0, 1, 2, ...`; subtask `i` of `p` produces
//! the rows `r ≡ i (mod p)`. Every value of row `r` is a pure function of the
//! seed, the column and `r` (see [`crate::random`]), so for a given `seed` the
//! set of rows produced is the same whatever the parallelism, and each
//! subtask's output is reproducible. `number-of-rows` is split the same way
//! (the subtasks' counts sum to it), and sequences are disjoint across
//! subtasks (row `r` holds `start + r`). Without `seed`, each run draws a
//! fresh one, as Flink's DataGen is random.
//!
//! # Checkpoints
//!
//! Each subtask's share of the rows is a split ([`crate::split`]) whose
//! position, seed and event-clock start are checkpointed ([`DatagenSource`]):
//! a restored job resumes every split exactly where it was, at the same or
//! another parallelism, with the same values (a drawn seed included).
//!
//! # Event time
//!
//! Timestamp and date columns follow an *event clock* that advances with the
//! row number: row `r` is at `event-time.start + r * event-time.step`, minus
//! a random amount less than `fields.#.max-past` (by at least 1 ms; Flink's
//! option: "how far in the past"). That is bounded out-of-orderness: a
//! watermark `ts - INTERVAL max-past` never makes a row late. The step defaults to
//! `1 s / rows-per-second`, so that event time tracks the wall clock, and
//! `event-time.start` defaults to the wall-clock time at which the job starts
//! — exactly Flink's "random timestamp in the past" when `max-past` is set.
//! When `rows-per-second` is 0 (unlimited) the defaults are a 1 ms step from
//! 2024-01-01 00:00:00 UTC, so the output is fully deterministic. Set
//! `event-time.start` explicitly for reproducible tests at any rate.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, Date32Array, Date64Array, Decimal128Array, PrimitiveArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result, plan_err};
use serde_json::Value;
use weir_engine::connector::{Connector, ConnectorOptions, OptionSpec};
use weir_engine::message::CheckpointId;
use weir_engine::operator::OperatorContext;
use weir_engine::source::{Source, SourceEvent, SourceSpec};

use crate::columns::{StrBuilder, make_batch, timestamp_array};
use crate::options::{get_batch_size, get_per_second, get_rate};
use crate::pacer::Pacer;
use crate::random::{RowRng, fresh_seed, stream_key};
use crate::split::{SeqSplit, entry_i64, entry_u64, idle_forever, next_active};
use crate::time::{
    DEFAULT_START_NS, NANOS_PER_MILLI, StartTime, get_duration_ns, get_start_time, ns_to_unit,
};

/// The options of `datagen`.
const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "rows-per-second",
        "rows per second over all subtasks (default 10000; 0 = unlimited)",
    ),
    OptionSpec::new(
        "number-of-rows",
        "total number of rows; the source is bounded if set",
    ),
    OptionSpec::new(
        "seed",
        "seed of the random values (default: a fresh seed per job)",
    ),
    OptionSpec::new("batch-size", "the most rows per batch (default 1024)"),
    OptionSpec::new(
        "event-time.start",
        "event time of row 0: 'now', epoch millis, or a timestamp",
    ),
    OptionSpec::new(
        "event-time.step",
        "event time between consecutive rows (default 1 s / rows-per-second)",
    ),
    OptionSpec::new("fields.#.kind", "'random' (default) or 'sequence'"),
    OptionSpec::new("fields.#.min", "minimum of a random number (inclusive)"),
    OptionSpec::new(
        "fields.#.max",
        "maximum of a random number (inclusive for integers)",
    ),
    OptionSpec::new(
        "fields.#.max-past",
        "timestamps: the most a value lies before the event clock",
    ),
    OptionSpec::new("fields.#.length", "length of random strings (default 10)"),
    OptionSpec::new(
        "fields.#.var-len",
        "random strings of random length in 1..=length (default false)",
    ),
    OptionSpec::new(
        "fields.#.start",
        "first value of a sequence (required for sequences)",
    ),
    OptionSpec::new("fields.#.end", "last value of a sequence (bounds the source)"),
    OptionSpec::new(
        "fields.#.null-rate",
        "fraction of null values, in [0, 1] (default 0)",
    ),
];

const DEFAULT_ROWS_PER_SECOND: f64 = 10_000.0;
const DEFAULT_BATCH_SIZE: usize = 1024;
const DEFAULT_STRING_LENGTH: usize = 10;
/// The event-time step between rows when `rows-per-second` is unlimited.
const UNLIMITED_STEP_NS: i64 = 1_000_000;
const ALPHANUMERIC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The `datagen` connector (source only). See the [module docs](self).
#[derive(Debug, Default)]
pub struct DatagenConnector;

impl Connector for DatagenConnector {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn options(&self) -> Vec<OptionSpec> {
        OPTIONS.to_vec()
    }

    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SourceSpec>> {
        Ok(Arc::new(DatagenSpec::try_new(schema, options)?))
    }
}

/// How one column is generated.
#[derive(Debug, Clone, PartialEq)]
enum Gen {
    /// Integers uniform in `min..=max`.
    RandomInt { min: i128, max: i128 },
    /// `start + r`, at most `end` (the declared end, or the type's maximum).
    SeqInt { start: i128, end: i128 },
    /// Floats uniform in `[min, max)`.
    RandomFloat { min: f64, max: f64 },
    /// `start + r`.
    SeqFloat { start: f64 },
    /// Decimals with unscaled values uniform in `min..=max`.
    RandomDecimal { min: i128, max: i128 },
    /// Decimals `start + r` (unscaled: `(start + r) * 10^scale`).
    SeqDecimal { start: i128, end: i128, unit: i128 },
    /// `true` or `false`.
    Bool,
    /// Alphanumeric strings.
    RandomString { length: usize, var_len: bool },
    /// The decimal digits of `start + r`.
    SeqString { start: i128, end: i128 },
    /// The event clock minus up to `max_past_ns` (timestamps and dates).
    Clock { max_past_ns: i64 },
}

/// A validated column generator.
#[derive(Debug, Clone)]
struct FieldGen {
    name: String,
    data_type: DataType,
    null_rate: f64,
    generator: Gen,
}

/// A validated `datagen` table: creates the subtasks' [`DatagenSource`]s.
#[derive(Debug)]
pub struct DatagenSpec {
    schema: SchemaRef,
    fields: Arc<[FieldGen]>,
    rows_per_second: f64,
    /// Total rows over all subtasks (`number-of-rows` and sequence ends).
    total_rows: Option<u64>,
    seed: Option<u64>,
    batch_size: usize,
    start: StartTime,
    step_ns: i64,
}

fn int_range(dt: &DataType) -> Option<(i128, i128)> {
    Some(match dt {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
        DataType::UInt8 => (0, u8::MAX.into()),
        DataType::UInt16 => (0, u16::MAX.into()),
        DataType::UInt32 => (0, u32::MAX.into()),
        DataType::UInt64 => (0, u64::MAX.into()),
        _ => return None,
    })
}

fn get_i128(options: &ConnectorOptions, key: &str) -> Result<Option<i128>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i128>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => plan_err!("invalid value '{v}' for option '{key}': expected an integer"),
        },
    }
}

/// Parses a decimal option into an unscaled value of `scale`.
fn get_unscaled(options: &ConnectorOptions, key: &str, scale: i8) -> Result<Option<i128>> {
    match options.get_f64(key)? {
        None => Ok(None),
        Some(v) => {
            let scaled = v * 10f64.powi(i32::from(scale));
            if scaled.is_finite() && scaled.abs() < 1e38 {
                Ok(Some(scaled.round() as i128))
            } else {
                plan_err!("invalid value '{v}' for option '{key}': out of range")
            }
        }
    }
}

impl DatagenSpec {
    /// Validates `options` against `schema`.
    pub fn try_new(schema: SchemaRef, options: &ConnectorOptions) -> Result<Self> {
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        options.check_known("datagen", OPTIONS, &columns)?;

        let rows_per_second = get_per_second(options, "rows-per-second")?.unwrap_or(DEFAULT_ROWS_PER_SECOND);
        let number_of_rows = options.get_u64("number-of-rows")?;
        let seed = options.get_u64("seed")?;
        let batch_size = get_batch_size(options, "batch-size", DEFAULT_BATCH_SIZE)?;
        let limited = rows_per_second > 0.0;
        let start = get_start_time(options, "event-time.start")?.unwrap_or(if limited {
            StartTime::Now
        } else {
            StartTime::Fixed(DEFAULT_START_NS)
        });
        let step_ns = match get_duration_ns(options, "event-time.step")? {
            Some(ns) => ns,
            None if limited => (1e9 / rows_per_second).round().min(i64::MAX as f64) as i64,
            None => UNLIMITED_STEP_NS,
        };

        let mut fields = Vec::with_capacity(schema.fields().len());
        let mut total_rows = number_of_rows;
        for field in schema.fields() {
            let (generator, bound) = field_gen(field.name(), field.data_type(), options)?;
            let null_rate = get_rate(options, &format!("fields.{}.null-rate", field.name()))?.unwrap_or(0.0);
            if null_rate > 0.0 && !field.is_nullable() {
                return plan_err!(
                    "option 'fields.{}.null-rate' cannot be used on NOT NULL column '{}'",
                    field.name(),
                    field.name()
                );
            }
            if let Some(b) = bound {
                total_rows = Some(total_rows.map_or(b, |t| t.min(b)));
            }
            fields.push(FieldGen {
                name: field.name().clone(),
                data_type: field.data_type().clone(),
                null_rate,
                generator,
            });
        }
        Ok(DatagenSpec {
            schema,
            fields: fields.into(),
            rows_per_second,
            total_rows,
            seed,
            batch_size,
            start,
            step_ns,
        })
    }
}

/// Builds the generator of column `name`; also returns the number of rows its
/// sequence allows, if bounded.
fn field_gen(name: &str, dt: &DataType, options: &ConnectorOptions) -> Result<(Gen, Option<u64>)> {
    let key = |opt: &str| format!("fields.{name}.{opt}");
    let kind = options
        .get_enum(&key("kind"), &["random", "sequence"])?
        .unwrap_or_else(|| "random".to_string());
    let sequence = kind == "sequence";

    // Which options apply to this column, to reject the others.
    let numeric = int_range(dt).is_some()
        || matches!(
            dt,
            DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _)
        );
    let string = matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let temporal = matches!(
        dt,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    );
    let applies = |opt: &str| match opt {
        "min" | "max" => numeric && !sequence,
        "start" | "end" => (numeric || string) && sequence,
        "length" | "var-len" => string && !sequence,
        "max-past" => temporal,
        _ => true,
    };
    for opt in ["min", "max", "start", "end", "length", "var-len", "max-past"] {
        if options.get(&key(opt)).is_some() && !applies(opt) {
            return plan_err!(
                "option '{}' does not apply to column '{name}' of type {dt}{}",
                key(opt),
                if sequence { " with kind 'sequence'" } else { "" }
            );
        }
    }
    if sequence && !(numeric || string) {
        return plan_err!(
            "invalid value 'sequence' for option '{}': column '{name}' of type {dt} can only be random{}",
            key("kind"),
            if temporal {
                " (timestamps follow the event clock; see 'event-time.start')"
            } else {
                ""
            }
        );
    }

    // Sequences: start (required) and end (optional, bounds the rows).
    let seq_bounds = |lo: i128, hi: i128| -> Result<(i128, i128, Option<u64>)> {
        let Some(start) = get_i128(options, &key("start"))? else {
            return plan_err!(
                "option '{}' is required when '{}' is 'sequence'",
                key("start"),
                key("kind")
            );
        };
        let end = get_i128(options, &key("end"))?;
        for (opt, v) in [("start", Some(start)), ("end", end)] {
            if let Some(v) = v.filter(|v| *v < lo || *v > hi) {
                return plan_err!(
                    "invalid value '{v}' for option '{}': out of the range of {dt}",
                    key(opt)
                );
            }
        }
        if let Some(e) = end.filter(|e| *e < start) {
            return plan_err!(
                "invalid value '{e}' for option '{}': smaller than '{}'",
                key("end"),
                key("start")
            );
        }
        let rows = end.map(|e| u64::try_from(e - start + 1).unwrap_or(u64::MAX));
        Ok((start, end.unwrap_or(hi), rows))
    };

    if let Some((lo, hi)) = int_range(dt) {
        if sequence {
            let (start, end, rows) = seq_bounds(lo, hi)?;
            return Ok((Gen::SeqInt { start, end }, rows));
        }
        let min = get_i128(options, &key("min"))?.unwrap_or(lo);
        let max = get_i128(options, &key("max"))?.unwrap_or(hi);
        for (opt, v) in [("min", min), ("max", max)] {
            if v < lo || v > hi {
                return plan_err!(
                    "invalid value '{v}' for option '{}': out of the range of {dt}",
                    key(opt)
                );
            }
        }
        if min > max {
            return plan_err!(
                "invalid value '{max}' for option '{}': smaller than '{}'",
                key("max"),
                key("min")
            );
        }
        return Ok((Gen::RandomInt { min, max }, None));
    }
    match dt {
        DataType::Float32 | DataType::Float64 => {
            if sequence {
                let (start, _, rows) = seq_bounds(-(1 << 53), 1 << 53)?;
                return Ok((Gen::SeqFloat { start: start as f64 }, rows));
            }
            let min = options.get_f64(&key("min"))?.unwrap_or(0.0);
            let max = options.get_f64(&key("max"))?.unwrap_or(1.0);
            if !(min.is_finite() && max.is_finite() && min <= max) {
                return plan_err!(
                    "invalid value '{max}' for option '{}': must be finite and >= min",
                    key("max")
                );
            }
            Ok((Gen::RandomFloat { min, max }, None))
        }
        DataType::Decimal128(precision, scale) => {
            let limit = 10i128.pow(u32::from(*precision)) - 1;
            let unit = 10i128.pow(u32::from((*scale).max(0) as u8));
            if sequence {
                let whole = limit / unit;
                let (start, end, rows) = seq_bounds(-whole, whole)?;
                return Ok((Gen::SeqDecimal { start, end, unit }, rows));
            }
            let min = get_unscaled(options, &key("min"), *scale)?.unwrap_or(0);
            let max = get_unscaled(options, &key("max"), *scale)?.unwrap_or(limit);
            for (opt, v) in [("min", min), ("max", max)] {
                if v < -limit || v > limit {
                    return plan_err!(
                        "invalid value for option '{}': out of the range of {dt}",
                        key(opt)
                    );
                }
            }
            if min > max {
                return plan_err!(
                    "invalid value for option '{}': smaller than '{}'",
                    key("max"),
                    key("min")
                );
            }
            Ok((Gen::RandomDecimal { min, max }, None))
        }
        DataType::Boolean => Ok((Gen::Bool, None)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            if sequence {
                let (start, end, rows) = seq_bounds(i128::from(i64::MIN), i128::from(i64::MAX))?;
                return Ok((Gen::SeqString { start, end }, rows));
            }
            let length = match options.get_u64(&key("length"))? {
                Some(0) => {
                    return plan_err!(
                        "invalid value '0' for option '{}': expected a positive integer",
                        key("length")
                    );
                }
                Some(n) if n > 1 << 20 => {
                    return plan_err!(
                        "invalid value '{n}' for option '{}': at most 1048576",
                        key("length")
                    );
                }
                Some(n) => n as usize,
                None => DEFAULT_STRING_LENGTH,
            };
            let var_len = options.get_bool(&key("var-len"))?.unwrap_or(false);
            Ok((Gen::RandomString { length, var_len }, None))
        }
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            let max_past_ns = get_duration_ns(options, &key("max-past"))?.unwrap_or(0);
            Ok((Gen::Clock { max_past_ns }, None))
        }
        other => plan_err!("datagen cannot generate column '{name}' of type {other}"),
    }
}

impl SourceSpec for DatagenSpec {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        self.total_rows.is_some()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        if parallelism == 0 || subtask >= parallelism {
            return Err(DataFusionError::Internal(format!(
                "datagen: subtask {subtask} out of range for parallelism {parallelism}"
            )));
        }
        let mut source = DatagenSource {
            schema: Arc::clone(&self.schema),
            fields: Arc::clone(&self.fields),
            total_rows: self.total_rows,
            rows_per_second: self.rows_per_second,
            batch_size: self.batch_size,
            step_ns: self.step_ns,
            splits: Vec::new(),
            cursor: 0,
            scratch: String::new(),
        };
        // Drawn here, recorded in the split's state: a restore goes on with
        // the same seed and event clock even when they were not fixed.
        let seed = self.seed.unwrap_or_else(fresh_seed);
        let split = source.split(
            SeqSplit::fresh(subtask, parallelism),
            seed,
            self.start.resolve(),
            false,
        );
        source.splits.push(split);
        Ok(Box::new(source))
    }
}

/// One subtask of a `datagen` table: produces the rows of its splits, each
/// in increasing row order, in batches (one split after the other,
/// round-robin, when it owns several).
///
/// # State
///
/// One entry per split (see [`crate::split`]); on a fresh start subtask `i`
/// of `p` owns split `i` of `p`, the rows `r ≡ i (mod p)`:
///
/// ```json
/// {"split": 0, "splits": 2, "next": 2048, "seed": 7, "start_ns": 1704067200000000000}
/// ```
///
/// `next` is the next global row number of the split; `seed` and `start_ns`
/// (the event clock's row 0) are those the split was created with, so a
/// restore produces the very rows the uninterrupted run would have, even
/// without a `seed` option or with `event-time.start` = now. Rate limiting
/// restarts at the restored position.
///
/// Cancel-safe: `poll_next` waits for the rate limiter first, then generates
/// and returns the batch without further waiting.
pub struct DatagenSource {
    schema: SchemaRef,
    fields: Arc<[FieldGen]>,
    /// Rows over all splits, if bounded.
    total_rows: Option<u64>,
    rows_per_second: f64,
    batch_size: usize,
    step_ns: i64,
    splits: Vec<DatagenSplit>,
    /// The split to read next (round-robin).
    cursor: usize,
    scratch: String,
}

/// A split of a `datagen` subtask and what generates it.
struct DatagenSplit {
    pos: SeqSplit,
    seed: u64,
    start_ns: i64,
    /// Per column: the stream keys of its values and of its nulls.
    keys: Vec<(u64, u64)>,
    pacer: Pacer,
    max_batch: usize,
}

/// The global row numbers of a batch: `first + k * step` for `k` in `0..len`.
#[derive(Debug, Clone, Copy)]
struct Rows {
    first: u64,
    step: u64,
    len: usize,
}

impl Rows {
    #[inline]
    fn iter(self) -> impl Iterator<Item = u64> {
        (0..self.len as u64).map(move |k| self.first + k * self.step)
    }
}

const DATAGEN: &str = "datagen";

impl DatagenSource {
    /// A split at `pos`; `resumed` when restored (pacing restarts there).
    fn split(&self, pos: SeqSplit, seed: u64, start_ns: i64, resumed: bool) -> DatagenSplit {
        let keys = (0..self.fields.len() as u64)
            .map(|c| (stream_key(seed, 2 * c), stream_key(seed, 2 * c + 1)))
            .collect();
        // Each split is paced on the global row numbers at the table's full
        // rate, so that the splits together keep `rows-per-second` however
        // they are spread over the subtasks.
        let pacer = Pacer::resuming(self.rows_per_second, if resumed { pos.next } else { 0 });
        DatagenSplit {
            pos,
            seed,
            start_ns,
            keys,
            max_batch: pacer.batch_len(pos.splits as usize, self.batch_size),
            pacer,
        }
    }

    fn generate(
        fields: &[FieldGen],
        schema: &SchemaRef,
        split: &DatagenSplit,
        step_ns: i64,
        rows: Rows,
        scratch: &mut String,
    ) -> Result<arrow::record_batch::RecordBatch> {
        let mut columns = Vec::with_capacity(fields.len());
        let clock = Clock {
            start_ns: split.start_ns,
            step_ns,
        };
        for (c, field) in fields.iter().enumerate() {
            let (key, null_key) = split.keys[c];
            let nulls = (field.null_rate > 0.0).then(|| {
                NullBuffer::new(BooleanBuffer::collect_bool(rows.len, |k| {
                    !RowRng::new(null_key, rows.first + k as u64 * rows.step).chance(field.null_rate)
                }))
            });
            columns.push(generate_column(field, key, rows, nulls, clock, scratch)?);
        }
        make_batch(schema, columns, rows.len)
    }
}

/// The event clock: row `r` is at `start_ns + r * step_ns`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start_ns: i64,
    step_ns: i64,
}

impl Clock {
    #[inline]
    fn at(self, r: u64) -> i64 {
        self.start_ns
            .saturating_add((r as i64).saturating_mul(self.step_ns))
    }
}

fn exhausted(field: &FieldGen) -> DataFusionError {
    DataFusionError::Execution(format!(
        "datagen: the sequence of column '{}' exhausted the range of {}; set 'fields.{}.end' or 'number-of-rows'",
        field.name, field.data_type, field.name
    ))
}

/// A primitive column from `value(r)` for each row.
fn primitive<T: ArrowPrimitiveType>(
    rows: Rows,
    nulls: Option<NullBuffer>,
    mut value: impl FnMut(u64) -> Result<T::Native>,
) -> Result<PrimitiveArray<T>> {
    let mut values = Vec::with_capacity(rows.len);
    for r in rows.iter() {
        values.push(value(r)?);
    }
    Ok(PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls))
}

fn generate_column(
    field: &FieldGen,
    key: u64,
    rows: Rows,
    nulls: Option<NullBuffer>,
    clock: Clock,
    scratch: &mut String,
) -> Result<ArrayRef> {
    // An integer column of the field's type, with values from `$f(r) -> Result<i128>`.
    macro_rules! ints {
        ($f:expr) => {{
            let f = $f;
            Ok(match field.data_type {
                DataType::Int8 => {
                    Arc::new(primitive::<Int8Type>(rows, nulls, |r| f(r).map(|v| v as i8))?) as ArrayRef
                }
                DataType::Int16 => Arc::new(primitive::<Int16Type>(rows, nulls, |r| f(r).map(|v| v as i16))?),
                DataType::Int32 => Arc::new(primitive::<Int32Type>(rows, nulls, |r| f(r).map(|v| v as i32))?),
                DataType::Int64 => Arc::new(primitive::<Int64Type>(rows, nulls, |r| f(r).map(|v| v as i64))?),
                DataType::UInt8 => Arc::new(primitive::<UInt8Type>(rows, nulls, |r| f(r).map(|v| v as u8))?),
                DataType::UInt16 => {
                    Arc::new(primitive::<UInt16Type>(rows, nulls, |r| f(r).map(|v| v as u16))?)
                }
                DataType::UInt32 => {
                    Arc::new(primitive::<UInt32Type>(rows, nulls, |r| f(r).map(|v| v as u32))?)
                }
                _ => Arc::new(primitive::<UInt64Type>(rows, nulls, |r| f(r).map(|v| v as u64))?),
            })
        }};
    }
    let seq = |start: i128, end: i128| {
        move |r: u64| {
            let v = start + i128::from(r);
            if v > end { Err(exhausted(field)) } else { Ok(v) }
        }
    };
    match &field.generator {
        Gen::RandomInt { min, max } => {
            let (min, max) = (*min, *max);
            ints!(|r: u64| -> Result<i128> { Ok(RowRng::new(key, r).range_i128(min, max)) })
        }
        Gen::SeqInt { start, end } => ints!(seq(*start, *end)),
        Gen::RandomFloat { min, max } => {
            let (min, max) = (*min, *max);
            let f = move |r: u64| min + RowRng::new(key, r).next_f64() * (max - min);
            Ok(match field.data_type {
                DataType::Float32 => Arc::new(primitive::<Float32Type>(rows, nulls, |r| Ok(f(r) as f32))?),
                _ => Arc::new(primitive::<Float64Type>(rows, nulls, |r| Ok(f(r)))?),
            })
        }
        Gen::SeqFloat { start } => {
            let start = *start;
            Ok(match field.data_type {
                DataType::Float32 => Arc::new(primitive::<Float32Type>(rows, nulls, |r| {
                    Ok((start + r as f64) as f32)
                })?),
                _ => Arc::new(primitive::<Float64Type>(rows, nulls, |r| Ok(start + r as f64))?),
            })
        }
        Gen::RandomDecimal { min, max } => {
            let values: Vec<i128> = rows
                .iter()
                .map(|r| RowRng::new(key, r).range_i128(*min, *max))
                .collect();
            decimal(field, values, nulls)
        }
        Gen::SeqDecimal { start, end, unit } => {
            let f = seq(*start, *end);
            let values = rows
                .iter()
                .map(|r| f(r).map(|v| v * unit))
                .collect::<Result<Vec<_>>>()?;
            decimal(field, values, nulls)
        }
        Gen::Bool => {
            let values = BooleanBuffer::collect_bool(rows.len, |k| {
                RowRng::new(key, rows.first + k as u64 * rows.step).next_u64() >> 63 == 1
            });
            Ok(Arc::new(BooleanArray::new(values, nulls)))
        }
        Gen::RandomString { length, var_len } => {
            let mut b = StrBuilder::new(&field.data_type, rows.len, (rows.len * length).min(1 << 26))
                .ok_or_else(|| {
                    DataFusionError::Internal("datagen: string builder for a non-string type".into())
                })?;
            for (k, r) in rows.iter().enumerate() {
                if nulls.as_ref().is_some_and(|n| n.is_null(k)) {
                    b.append_null();
                    continue;
                }
                let mut rng = RowRng::new(key, r);
                let len = if *var_len { 1 + rng.index(*length) } else { *length };
                random_alphanumeric(&mut rng, len, scratch);
                b.append_value(scratch);
            }
            Ok(b.finish())
        }
        Gen::SeqString { start, end } => {
            use std::fmt::Write;
            let f = seq(*start, *end);
            let mut b = StrBuilder::new(&field.data_type, rows.len, rows.len * 8).ok_or_else(|| {
                DataFusionError::Internal("datagen: string builder for a non-string type".into())
            })?;
            for (k, r) in rows.iter().enumerate() {
                let v = f(r)?;
                if nulls.as_ref().is_some_and(|n| n.is_null(k)) {
                    b.append_null();
                } else {
                    scratch.clear();
                    let _ = write!(scratch, "{v}");
                    b.append_value(scratch);
                }
            }
            Ok(b.finish())
        }
        Gen::Clock { max_past_ns } => {
            let ns = |r: u64| {
                let past = if *max_past_ns > NANOS_PER_MILLI {
                    RowRng::new(key, r).range_i64(0, *max_past_ns - NANOS_PER_MILLI)
                } else {
                    0
                };
                clock.at(r).saturating_sub(past)
            };
            Ok(match &field.data_type {
                DataType::Timestamp(unit, _) => {
                    let values = rows.iter().map(|r| ns_to_unit(ns(r), *unit)).collect();
                    timestamp_array(&field.data_type, values, nulls)
                }
                DataType::Date32 => Arc::new(Date32Array::new(
                    rows.iter()
                        .map(|r| ns(r).div_euclid(86_400_000_000_000) as i32)
                        .collect(),
                    nulls,
                )),
                _ => Arc::new(Date64Array::new(
                    rows.iter()
                        .map(|r| ns(r).div_euclid(86_400_000_000_000) * 86_400_000)
                        .collect(),
                    nulls,
                )),
            })
        }
    }
}

fn decimal(field: &FieldGen, values: Vec<i128>, nulls: Option<NullBuffer>) -> Result<ArrayRef> {
    let DataType::Decimal128(p, s) = field.data_type else {
        return Err(DataFusionError::Internal(
            "datagen: decimal generator for a non-decimal type".into(),
        ));
    };
    Ok(Arc::new(
        Decimal128Array::new(ScalarBuffer::from(values), nulls).with_precision_and_scale(p, s)?,
    ))
}

/// Fills `out` with `len` random alphanumeric characters (ten per 64 random bits).
#[inline]
fn random_alphanumeric(rng: &mut RowRng, len: usize, out: &mut String) {
    out.clear();
    let mut left = 0;
    let mut bits = 0u64;
    for _ in 0..len {
        if left == 0 {
            bits = rng.next_u64();
            left = 10;
        }
        out.push(ALPHANUMERIC[(bits % 62) as usize] as char);
        bits /= 62;
        left -= 1;
    }
}

#[async_trait]
impl Source for DatagenSource {
    async fn initialize_state(&mut self, _ctx: &OperatorContext, state: Option<Vec<Value>>) -> Result<()> {
        let Some(entries) = state else {
            return Ok(());
        };
        let mut splits = Vec::with_capacity(entries.len());
        for entry in &entries {
            let pos = SeqSplit::from_entry(DATAGEN, entry)?;
            let seed = entry_u64(DATAGEN, entry, "seed")?;
            let start_ns = entry_i64(DATAGEN, entry, "start_ns")?;
            splits.push(self.split(pos, seed, start_ns, true));
        }
        self.splits = splits;
        self.cursor = 0;
        Ok(())
    }

    async fn poll_next(&mut self) -> Result<SourceEvent> {
        let total = self.total_rows;
        let Some(c) = next_active(self.splits.len(), self.cursor, |c| {
            let s = &self.splits[c];
            (s.pos.remaining(total) > 0).then_some(s.pos.next)
        }) else {
            return match total {
                Some(_) => Ok(SourceEvent::Finished),
                // Unbounded and no split: nothing to read, ever.
                None => idle_forever().await,
            };
        };
        let split = &mut self.splits[c];
        let len = (split.max_batch as u64).min(split.pos.remaining(total)) as usize;
        let rows = Rows {
            first: split.pos.next,
            step: split.pos.splits,
            len,
        };
        // Wait until the batch's last row is due, then produce it: nothing
        // is lost if this future is dropped while waiting.
        let last = rows.first + (len as u64 - 1) * rows.step;
        split.pacer.wait_until_due(last + 1).await;
        let batch = Self::generate(
            &self.fields,
            &self.schema,
            &self.splits[c],
            self.step_ns,
            rows,
            &mut self.scratch,
        )?;
        self.splits[c].pos.advance(len as u64);
        self.cursor = c + 1;
        Ok(SourceEvent::Batch(batch))
    }

    /// One entry per split: exactly after the last batch returned.
    async fn snapshot_state(&mut self, _checkpoint_id: CheckpointId) -> Result<Vec<Value>> {
        Ok(self
            .splits
            .iter()
            .map(|s| {
                let mut m = s.pos.to_entry();
                m.insert("seed".into(), s.seed.into());
                m.insert("start_ns".into(), s.start_ns.into());
                Value::Object(m)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{collect, options};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("small", DataType::Int8, true),
            Field::new("u", DataType::UInt64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("v", DataType::Utf8View, true),
            Field::new("day", DataType::Date32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
            Field::new(
                "tz",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]))
    }

    fn spec(extra: &[(&str, &str)]) -> Result<DatagenSpec> {
        let mut kv = vec![
            ("rows-per-second", "0"),
            ("number-of-rows", "1000"),
            ("seed", "7"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
            ("fields.small.min", "-3"),
            ("fields.small.max", "3"),
            ("fields.f.min", "10"),
            ("fields.f.max", "20"),
            ("fields.d.min", "-1.5"),
            ("fields.d.max", "1.5"),
            ("fields.s.length", "4"),
            ("fields.s.null-rate", "0.5"),
            ("fields.v.var-len", "true"),
            ("fields.ts.max-past", "5 s"),
        ];
        kv.extend_from_slice(extra);
        DatagenSpec::try_new(schema(), &options(&kv))
    }

    fn sorted_by_id(batches: &[arrow::record_batch::RecordBatch]) -> arrow::record_batch::RecordBatch {
        let all = arrow::compute::concat_batches(&schema(), batches).unwrap();
        let idx = arrow::compute::sort_to_indices(all.column(0), None, None).unwrap();
        let cols = all
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c, &idx, None).unwrap())
            .collect();
        arrow::record_batch::RecordBatch::try_new(schema(), cols).unwrap()
    }

    #[tokio::test]
    async fn values_respect_options() {
        let spec = spec(&[("event-time.start", "2024-01-01 00:00:00")]).unwrap();
        assert!(spec.is_bounded());
        let batches = collect(&spec, 0, 1).await.unwrap();
        let all = sorted_by_id(&batches);
        assert_eq!(all.num_rows(), 1000);
        let ids = all.column(0).as_primitive::<Int64Type>();
        assert!(ids.values().iter().copied().eq(1..=1000));
        let small = all.column(1).as_primitive::<Int8Type>();
        assert!(small.values().iter().all(|v| (-3..=3).contains(v)));
        let f = all.column(3).as_primitive::<Float64Type>();
        assert!(f.values().iter().all(|v| (10.0..20.0).contains(v)));
        let d = all.column(4).as_primitive::<arrow::datatypes::Decimal128Type>();
        assert!(d.values().iter().all(|v| (-150..=150).contains(v)));
        let s = all.column(6).as_string::<i32>();
        let nulls = s.null_count();
        assert!(
            (350..650).contains(&nulls),
            "null-rate 0.5 gave {nulls} nulls of 1000"
        );
        assert!(
            s.iter()
                .flatten()
                .all(|v| v.len() == 4 && v.bytes().all(|c| c.is_ascii_alphanumeric()))
        );
        let v = all.column(7).as_string_view();
        assert!(v.iter().flatten().all(|v| (1..=10).contains(&v.len())));
        // Event time: row r at start + r ms, minus at most 5 s.
        let ts = all
            .column(9)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        for (r, t) in ts.values().iter().enumerate() {
            let clock = 1_704_067_200_000 + r as i64;
            assert!((clock - 4_999..=clock).contains(t), "row {r}: {t}");
        }
        assert_eq!(
            all.column(10).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            all.column(8)
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(0),
            19723
        );
    }

    #[tokio::test]
    async fn deterministic_per_seed_and_split_over_subtasks() {
        let spec = spec(&[]).unwrap();
        let one = sorted_by_id(&collect(&spec, 0, 1).await.unwrap());
        assert_eq!(one, sorted_by_id(&collect(&spec, 0, 1).await.unwrap()));
        // Three subtasks: disjoint shares that sum to number-of-rows, and the
        // same rows as one subtask.
        let mut parts = Vec::new();
        let mut counts = Vec::new();
        for i in 0..3 {
            let b = collect(&spec, i, 3).await.unwrap();
            counts.push(b.iter().map(|b| b.num_rows()).sum::<usize>());
            parts.extend(b);
        }
        assert_eq!(counts, vec![334, 333, 333]);
        assert_eq!(sorted_by_id(&parts), one);
        // Another seed, other values.
        let other = sorted_by_id(&collect(&spec_with_seed("8"), 0, 1).await.unwrap());
        assert_eq!(other.column(0), one.column(0));
        assert_ne!(other.column(3), one.column(3));
    }

    fn spec_with_seed(seed: &str) -> DatagenSpec {
        let mut s = spec(&[]).unwrap();
        s.seed = Some(seed.parse().unwrap());
        s
    }

    #[tokio::test]
    async fn sequence_end_bounds_the_source() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int16, false)]));
        let o = options(&[
            ("rows-per-second", "0"),
            ("fields.n.kind", "sequence"),
            ("fields.n.start", "10"),
            ("fields.n.end", "19"),
        ]);
        let spec = DatagenSpec::try_new(schema, &o).unwrap();
        assert!(spec.is_bounded());
        let batches = collect(&spec, 1, 2).await.unwrap();
        let values: Vec<i16> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int16Type>().values().to_vec())
            .collect();
        assert_eq!(values, vec![11, 13, 15, 17, 19]);
    }

    #[tokio::test]
    async fn exhausted_sequence_is_an_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int8, false)]));
        let o = options(&[
            ("rows-per-second", "0"),
            ("fields.n.kind", "sequence"),
            ("fields.n.start", "120"),
        ]);
        let spec = DatagenSpec::try_new(schema, &o).unwrap();
        assert!(!spec.is_bounded());
        let mut src = spec.create(0, 1).unwrap();
        let err = src.poll_next().await.unwrap_err().to_string();
        assert!(err.contains("fields.n.end"), "{err}");
    }

    #[test]
    fn option_errors_name_the_option() {
        let err = |kv: &[(&str, &str)]| spec(kv).unwrap_err().to_string();
        let e = err(&[("rows-per-sec", "5")]);
        assert!(
            e.contains("'rows-per-sec'") && e.contains("rows-per-second") && e.contains("fields.#.kind"),
            "{e}"
        );
        let e = err(&[("fields.nope.kind", "random")]);
        assert!(e.contains("'fields.nope.kind'"), "{e}");
        assert!(err(&[("fields.small.kind", "rand")]).contains("'fields.small.kind'"));
        assert!(err(&[("fields.small.max", "300")]).contains("'fields.small.max'"));
        assert!(err(&[("fields.small.min", "2"), ("fields.small.max", "1")]).contains("'fields.small.max'"));
        assert!(err(&[("fields.f.length", "3")]).contains("'fields.f.length'"));
        assert!(err(&[("fields.b.kind", "sequence")]).contains("'fields.b.kind'"));
        assert!(err(&[("fields.ts.kind", "sequence")]).contains("event clock"));
        assert!(err(&[("fields.id.start", "x")]).contains("'fields.id.start'"));
        assert!(err(&[("fields.ts.null-rate", "0.1")]).contains("NOT NULL"));
        assert!(err(&[("fields.s.null-rate", "2")]).contains("'fields.s.null-rate'"));
        assert!(err(&[("number-of-rows", "-1")]).contains("'number-of-rows'"));
        assert!(err(&[("batch-size", "0")]).contains("'batch-size'"));
        assert!(err(&[("event-time.step", "soon")]).contains("'event-time.step'"));
        let seq = |kv: &[(&str, &str)]| {
            let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
            let mut all = vec![("fields.n.kind", "sequence")];
            all.extend_from_slice(kv);
            DatagenSpec::try_new(schema, &options(&all))
                .unwrap_err()
                .to_string()
        };
        assert!(seq(&[]).contains("'fields.n.start' is required"));
        assert!(seq(&[("fields.n.start", "5"), ("fields.n.end", "4")]).contains("'fields.n.end'"));
        let unsupported = Arc::new(Schema::new(vec![Field::new("x", DataType::Binary, true)]));
        let e = DatagenSpec::try_new(unsupported, &options(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'x'"), "{e}");
    }

    #[tokio::test]
    async fn rate_limited_source_produces_small_batches() {
        // 1000 rows/s over 2 subtasks: batches of 50 rows, about ten a second.
        let spec = spec(&[("rows-per-second", "1000"), ("number-of-rows", "100")]).unwrap();
        let mut src = spec.create(0, 2).unwrap();
        let SourceEvent::Batch(b) = src.poll_next().await.unwrap() else {
            panic!("expected a batch")
        };
        assert_eq!(b.num_rows(), 50);
        assert!(matches!(src.poll_next().await.unwrap(), SourceEvent::Finished));
    }

    #[tokio::test]
    async fn micro_benchmark_shape() {
        // Correctness of a large unlimited run (not timed): batch sizes and totals.
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let o = options(&[
            ("rows-per-second", "0"),
            ("number-of-rows", "100000"),
            ("batch-size", "4096"),
            ("seed", "1"),
        ]);
        let spec = DatagenSpec::try_new(schema, &o).unwrap();
        let batches = collect(&spec, 0, 1).await.unwrap();
        assert!(batches.iter().all(|b| b.num_rows() <= 4096));
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 100_000);
    }

    mod resume {
        use super::*;
        use crate::test_util::resume::{check_exact_resume, check_idle_without_splits, check_rescale, start};
        use serde_json::json;

        #[tokio::test]
        async fn resumes_exactly_at_the_same_parallelism() {
            let spec = spec(&[("number-of-rows", "10000"), ("batch-size", "300")]).unwrap();
            let snapshots = check_exact_resume(&spec, 2, 3, None).await;
            // Three batches of 300 rows of split 1 of 2: rows 1, 3, ..., 1799.
            assert_eq!(
                snapshots[1],
                vec![json!({"split": 1, "splits": 2, "next": 1801, "seed": 7, "start_ns": DEFAULT_START_NS})]
            );
        }

        #[tokio::test]
        async fn a_drawn_seed_and_a_wall_clock_start_are_kept() {
            let mut spec = spec(&[("number-of-rows", "4000"), ("batch-size", "256")]).unwrap();
            spec.seed = None;
            spec.start = StartTime::Now;
            check_exact_resume(&spec, 2, 2, None).await;
        }

        #[tokio::test]
        async fn rescales_without_loss_or_duplicates() {
            let spec = spec(&[("number-of-rows", "5000"), ("batch-size", "200")]).unwrap();
            check_rescale(&spec, 2, 3, 4).await;
            check_rescale(&spec, 2, 1, 4).await;
            check_rescale(&spec, 3, 2, 2).await;
            // Snapshots taken at the end restore to nothing left.
            check_rescale(&spec, 2, 3, 100).await;
            let mut none = start(&spec, 0, 1, Some(Vec::new())).await.unwrap();
            assert!(matches!(none.poll_next().await.unwrap(), SourceEvent::Finished));
        }

        #[tokio::test]
        async fn unbounded_resumes_and_waits_without_splits() {
            let mut spec = spec(&[("batch-size", "100")]).unwrap();
            spec.total_rows = None;
            assert!(!spec.is_bounded());
            check_exact_resume(&spec, 2, 3, Some(4)).await;
            check_idle_without_splits(&spec).await;
        }

        #[tokio::test]
        async fn bad_state_is_an_error() {
            let spec = spec(&[]).unwrap();
            let err = start(
                &spec,
                0,
                1,
                Some(vec![json!({"split": 0, "splits": 1, "next": 5})]),
            )
            .await
            .err()
            .unwrap()
            .to_string();
            assert!(err.contains("datagen") && err.contains("'seed'"), "{err}");
        }
    }
}

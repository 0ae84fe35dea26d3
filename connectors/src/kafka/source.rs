//! The `kafka` source: Kafka topics read by explicitly assigned partitions,
//! positions kept in checkpoints.
//!
//! # Assignment
//!
//! Every subtask lists the partitions of the table's topics (`topic`: one or
//! several names separated by `;`; or `topic-pattern`, a regular expression
//! that must match a whole topic name) and reads those it owns:
//! [`owner`]`(topic, partition, parallelism)`, Flink's rule (a start index
//! from the topic's name hash, then one partition per subtask round-robin).
//! The owner depends on nothing but the partition and the parallelism, so it
//! stays put when partitions are added, and a restored subtask can tell its
//! own checkpointed partitions from new ones. There is no consumer-group
//! membership and no rebalancing: partitions are `assign`ed.
//!
//! Every `scan.topic-partition-discovery.interval` (default 5 min, `0`: off;
//! off for bounded reads) the subtasks list the partitions again and start
//! reading the new ones they own from the earliest offset. A partition that
//! disappears (its topic deleted) fails the job when a listing misses it
//! (listings run every 30 s when discovery is off: librdkafka itself reports
//! nothing).
//!
//! # Checkpoints
//!
//! The state is one entry per partition the subtask owns, the position just
//! after the last row returned:
//!
//! ```json
//! {"topic": "orders", "partition": 3, "offset": 1234}
//! {"topic": "orders", "partition": 7, "offset": -2}
//! {"topic": "orders", "partition": 0, "offset": 512, "end": 512}
//! ```
//!
//! `offset` is the next offset to read, or `-2` (Kafka's `OFFSET_BEGINNING`)
//! for a partition read from its earliest offset of which no record has been
//! returned yet. Bounded reads (`scan.bounded.mode` other than `unbounded`) add
//! `end`, the offset where the partition stops, fixed when the job first
//! started.
//!
//! The entries are union list state: on restore every subtask gets all
//! entries and keeps those of the partitions it owns at the new parallelism.
//! Their offsets are the only truth (`scan.startup.mode` applies to a fresh
//! start only); owned partitions without an entry are new and start from the
//! earliest offset. A checkpointed offset below the partition's earliest
//! offset (records deleted by retention) or past its end fails the restore,
//! naming the partition: the job does not silently skip records. The same
//! holds while running: the consumer never resets a position by itself
//! (`auto.offset.reset` is `error`).
//!
//! When a checkpoint completes and `properties.group.id` is set, its offsets
//! are committed to the group asynchronously, for monitoring tools only.
//!
//! # Reading
//!
//! One consumer (librdkafka, with `enable.auto.commit` off and
//! `isolation.level` `read_committed` unless `properties.isolation.level`
//! says otherwise) per subtask. [`poll_next`](Source::poll_next) waits for
//! records without spinning, takes what is available (up to
//! [`BATCH_RECORDS`]), copies each record into its partition's buffer, and
//! returns one partition's records as a batch
//! ([`SourceEvent::SplitBatch`]; the split is the partition's index in the
//! subtask's assignment, stable for the job's life), so the runtime keeps a
//! watermark per partition. Records taken from the consumer but not yet
//! returned stay in the buffers across polls, so a dropped poll loses
//! nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result, plan_err};
use futures::{FutureExt, StreamExt};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use regex::Regex;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use weir_engine::connector::{ConnectorOptions, TableRequest};
use weir_engine::message::CheckpointId;
use weir_engine::metrics::OperatorMetrics;
use weir_engine::operator::OperatorContext;
use weir_engine::source::{Source, SourceEvent, SourceSpec};

use super::blocking::blocking;
use super::config::{self, METADATA_TIMEOUT};
use super::decode::{KafkaDecoder, Origin, RecordBuffer};
use super::format::RecordLayout;
use crate::split::{bad_entry, entry_i64};

/// The most records taken from the consumer before returning rows (and so,
/// at most, rows per batch).
pub const BATCH_RECORDS: usize = 4096;

/// `scan.topic-partition-discovery.interval` by default (Flink's).
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(300);

/// How often a source that does not discover partitions (discovery off, or
/// a bounded read) checks that its partitions still exist: librdkafka
/// reports nothing when an assigned partition's topic is deleted.
const EXISTENCE_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Kafka's `OFFSET_BEGINNING`: read from the earliest offset there is.
pub const EARLIEST: i64 = -2;

/// How often a bounded read checks whether partitions it has no records of
/// reached their end (their last offsets may be transaction markers, which
/// the consumer skips without delivering a record).
const END_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Bytes of its buffers a partition keeps between batches.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

const KAFKA: &str = "kafka";

/// The topics of a source table.
#[derive(Debug, Clone)]
pub enum TopicSelector {
    /// `topic`: these topics, which must exist.
    Names(Vec<String>),
    /// `topic-pattern`: the topics whose whole name matches (internal topics,
    /// named `__...`, excluded).
    Pattern(Regex),
}

impl TopicSelector {
    /// Whether `topic` is one of the table's topics.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicSelector::Names(names) => names.iter().any(|n| n == topic),
            TopicSelector::Pattern(re) => !topic.starts_with("__") && re.is_match(topic),
        }
    }

    fn parse(options: &ConnectorOptions) -> Result<Self> {
        let names = config::topics(options);
        match (names.is_empty(), options.get("topic-pattern")) {
            (false, None) => Ok(TopicSelector::Names(names)),
            (true, Some(p)) if !p.trim().is_empty() => match Regex::new(&format!("^(?:{})$", p.trim())) {
                Ok(re) => Ok(TopicSelector::Pattern(re)),
                Err(e) => plan_err!("invalid value '{p}' for option 'topic-pattern': {e}"),
            },
            (false, Some(_)) => plan_err!("set either 'topic' or 'topic-pattern', not both"),
            (true, _) => plan_err!(
                "a kafka source needs 'topic' (e.g. 'orders', or 'a;b' for several) or 'topic-pattern' (a regular expression)"
            ),
        }
    }
}

/// `scan.startup.mode`: where a fresh start begins reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupMode {
    /// The offsets committed by `properties.group.id`, else per
    /// `properties.auto.offset.reset` (Flink's default mode).
    GroupOffsets,
    /// The earliest offset of each partition.
    EarliestOffset,
    /// The end of each partition when the job starts.
    LatestOffset,
    /// The first record with a timestamp at or after these epoch milliseconds.
    Timestamp(i64),
    /// These offsets by partition (others per `properties.auto.offset.reset`).
    SpecificOffsets(BTreeMap<i32, i64>),
}

/// `properties.auto.offset.reset`: where to start a partition that has no
/// usable committed or specific offset (Flink's fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the earliest offset (the default).
    Earliest,
    /// From the end.
    Latest,
    /// Fail (`none`).
    Fail,
}

/// The options of a source table, parsed and checked.
#[derive(Debug)]
struct SourceConfig {
    schema: SchemaRef,
    /// librdkafka's configuration for the consumers.
    client: ClientConfig,
    topics: TopicSelector,
    startup: StartupMode,
    reset: OffsetReset,
    /// `scan.bounded.mode`.
    bounded: BoundedMode,
    discovery: Option<Duration>,
    group_id: Option<String>,
    decoder: KafkaDecoder,
}

/// A validated `kafka` source table: its options parsed at `CREATE TABLE`
/// (so errors surface there); creates one [`KafkaSource`] per subtask.
#[derive(Debug)]
pub struct KafkaSourceSpec {
    config: Arc<SourceConfig>,
}

/// Parses `scan.startup.specific-offsets`:
/// `partition:0,offset:42;partition:1,offset:300`.
pub fn parse_specific_offsets(text: &str, option: &str) -> Result<BTreeMap<i32, i64>> {
    let bad = |why: &str| {
        plan_err!(
            "invalid value '{text}' for option '{option}': {why} (expected e.g. 'partition:0,offset:42;partition:1,offset:300')"
        )
    };
    let mut offsets = BTreeMap::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (mut partition, mut offset) = (None, None);
        for kv in item.split(',') {
            let Some((k, v)) = kv.split_once(':') else {
                return bad(&format!("'{kv}' is not key:value"));
            };
            match k.trim() {
                "partition" => partition = v.trim().parse::<i32>().ok().filter(|p| *p >= 0),
                "offset" => offset = v.trim().parse::<i64>().ok().filter(|o| *o >= 0),
                other => return bad(&format!("unknown key '{other}'")),
            }
        }
        match (partition, offset) {
            (Some(p), Some(o)) => {
                if offsets.insert(p, o).is_some() {
                    return bad(&format!("partition {p} given twice"));
                }
            }
            _ => {
                return bad(&format!(
                    "'{item}' needs a partition and an offset, both non-negative integers"
                ));
            }
        }
    }
    if offsets.is_empty() {
        return bad("no offsets");
    }
    Ok(offsets)
}

/// Parses `scan.startup.mode` and the options that go with it.
pub fn parse_startup(options: &ConnectorOptions, topics: &TopicSelector) -> Result<StartupMode> {
    let mode = options
        .get_enum(
            "scan.startup.mode",
            &[
                "group-offsets",
                "earliest-offset",
                "latest-offset",
                "timestamp",
                "specific-offsets",
            ],
        )?
        .unwrap_or_else(|| "group-offsets".into());
    let timestamp = options.get_i64("scan.startup.timestamp-millis")?;
    let specific = options.get("scan.startup.specific-offsets");
    if timestamp.is_some() && mode != "timestamp" {
        return plan_err!("'scan.startup.timestamp-millis' needs 'scan.startup.mode' = 'timestamp'");
    }
    if specific.is_some() && mode != "specific-offsets" {
        return plan_err!("'scan.startup.specific-offsets' needs 'scan.startup.mode' = 'specific-offsets'");
    }
    Ok(match mode.as_str() {
        "earliest-offset" => StartupMode::EarliestOffset,
        "latest-offset" => StartupMode::LatestOffset,
        "timestamp" => match timestamp {
            Some(t) => StartupMode::Timestamp(t),
            None => {
                return plan_err!(
                    "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis' (epoch milliseconds)"
                );
            }
        },
        "specific-offsets" => {
            let Some(text) = specific else {
                return plan_err!(
                    "'scan.startup.mode' = 'specific-offsets' needs 'scan.startup.specific-offsets' (e.g. 'partition:0,offset:42;partition:1,offset:300')"
                );
            };
            if !matches!(topics, TopicSelector::Names(n) if n.len() == 1) {
                return plan_err!("'scan.startup.mode' = 'specific-offsets' needs a single 'topic'");
            }
            StartupMode::SpecificOffsets(parse_specific_offsets(text, "scan.startup.specific-offsets")?)
        }
        _ => {
            if config::property(options, "group.id").is_none_or(|g| g.trim().is_empty()) {
                return plan_err!(
                    "'scan.startup.mode' = 'group-offsets' (the default) needs 'properties.group.id'; set it, or choose another 'scan.startup.mode' such as 'earliest-offset'"
                );
            }
            StartupMode::GroupOffsets
        }
    })
}

/// Parses `properties.auto.offset.reset` (Flink's and librdkafka's names).
pub fn parse_reset(options: &ConnectorOptions) -> Result<OffsetReset> {
    match config::property(options, "auto.offset.reset").map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(OffsetReset::Earliest),
        Some(v) => match v.as_str() {
            "earliest" | "smallest" | "beginning" => Ok(OffsetReset::Earliest),
            "latest" | "largest" | "end" => Ok(OffsetReset::Latest),
            "none" | "error" => Ok(OffsetReset::Fail),
            _ => plan_err!(
                "invalid value '{v}' for option 'properties.auto.offset.reset': expected earliest, latest or none"
            ),
        },
    }
}

/// `scan.bounded.mode`: where a bounded read stops, per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundedMode {
    /// Never (the default).
    Unbounded,
    /// At the partition's end offset when the job first started.
    LatestOffset,
    /// Before the first record whose timestamp is at or after this (epoch
    /// ms); at the end offset when the job first started if there is none.
    Timestamp(i64),
    /// Before these offsets, by partition (every topic); an unlisted
    /// partition stops at its end offset when the job first started.
    SpecificOffsets(BTreeMap<i32, i64>),
}

impl BoundedMode {
    /// Whether the source ends by itself.
    pub fn is_bounded(&self) -> bool {
        *self != BoundedMode::Unbounded
    }
}

/// Parses `scan.bounded.mode` and the options that go with it.
pub fn parse_bounded(options: &ConnectorOptions) -> Result<BoundedMode> {
    let mode = options
        .get_enum(
            "scan.bounded.mode",
            &["unbounded", "latest-offset", "timestamp", "specific-offsets"],
        )?
        .unwrap_or_else(|| "unbounded".into());
    let timestamp = options.get_i64("scan.bounded.timestamp-millis")?;
    let specific = options.get("scan.bounded.specific-offsets");
    let misplaced = match mode.as_str() {
        "timestamp" => specific.map(|_| "scan.bounded.specific-offsets"),
        "specific-offsets" => timestamp.map(|_| "scan.bounded.timestamp-millis"),
        _ => timestamp
            .map(|_| "scan.bounded.timestamp-millis")
            .or(specific.map(|_| "scan.bounded.specific-offsets")),
    };
    if let Some(option) = misplaced {
        return plan_err!("'{option}' does not go with 'scan.bounded.mode' = '{mode}'");
    }
    Ok(match mode.as_str() {
        "latest-offset" => BoundedMode::LatestOffset,
        "timestamp" => match timestamp {
            Some(ts) => BoundedMode::Timestamp(ts),
            None => {
                return plan_err!("'scan.bounded.mode' = 'timestamp' needs 'scan.bounded.timestamp-millis'");
            }
        },
        "specific-offsets" => match specific {
            Some(text) => {
                BoundedMode::SpecificOffsets(parse_specific_offsets(text, "scan.bounded.specific-offsets")?)
            }
            None => {
                return plan_err!(
                    "'scan.bounded.mode' = 'specific-offsets' needs 'scan.bounded.specific-offsets'"
                );
            }
        },
        _ => BoundedMode::Unbounded,
    })
}

/// Parses `scan.topic-partition-discovery.interval` (`None`: off).
pub fn parse_discovery(options: &ConnectorOptions) -> Result<Option<Duration>> {
    Ok(
        match options.get_duration("scan.topic-partition-discovery.interval")? {
            None => Some(DEFAULT_DISCOVERY_INTERVAL),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        },
    )
}

/// Java's `String.hashCode`, as Flink hashes topic names.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The subtask (of `parallelism`) that reads `partition` of `topic`:
/// Flink's `KafkaSourceEnumerator.getSplitOwner`, a start index from the
/// topic's name, then partitions round-robin. It depends on nothing else, so
/// partitions never move when others are added.
pub fn owner(topic: &str, partition: i32, parallelism: usize) -> usize {
    let p = parallelism.max(1) as i64;
    let start = i64::from(java_hash(topic).wrapping_mul(31) & 0x7fff_ffff) % p;
    ((start + i64::from(partition.max(0))) % p) as usize
}

impl KafkaSourceSpec {
    /// Reads and checks the options of a source table (option names were
    /// checked by the connector).
    pub fn try_new(request: &TableRequest<'_>) -> Result<Self> {
        let options = request.options;
        let topics = TopicSelector::parse(options)?;
        let startup = parse_startup(options, &topics)?;
        let reset = parse_reset(options)?;
        let bounded = parse_bounded(options)?;
        let discovery = if bounded.is_bounded() {
            None
        } else {
            parse_discovery(options)?
        };
        let group_id = config::property(options, "group.id")
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(String::from);
        let layout = RecordLayout::try_new(request, false)?;
        let decoder = KafkaDecoder::try_new(request, &layout)?;
        let mut client = config::client_config(options)?;
        // Positions are operator state: librdkafka must neither commit nor
        // reset them on its own (out of range fails, see the module docs).
        client.set("enable.auto.commit", "false");
        client.set("enable.auto.offset.store", "false");
        client.set("auto.offset.reset", "error");
        client.set("enable.partition.eof", "false");
        if config::property(options, "isolation.level").is_none() {
            client.set("isolation.level", "read_committed");
        }
        // librdkafka stops fetching a partition for `fetch.queue.backoff.ms`
        // (default 1 s) once its local queue is full: a reader that keeps up
        // would idle most of the time (5x slower, measured by benches/kafka.rs).
        if config::property(options, "fetch.queue.backoff.ms").is_none() {
            client.set("fetch.queue.backoff.ms", "10");
        }
        Ok(KafkaSourceSpec {
            config: Arc::new(SourceConfig {
                schema: Arc::clone(request.schema),
                client,
                topics,
                startup,
                reset,
                bounded,
                discovery,
                group_id,
                decoder,
            }),
        })
    }
}

impl SourceSpec for KafkaSourceSpec {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.config.schema)
    }

    fn is_bounded(&self) -> bool {
        self.config.bounded.is_bounded()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        if parallelism == 0 || subtask >= parallelism {
            return Err(DataFusionError::Internal(format!(
                "kafka: subtask {subtask} out of range for parallelism {parallelism}"
            )));
        }
        Ok(Box::new(KafkaSource {
            config: Arc::clone(&self.config),
            subtask,
            parallelism,
            restored: None,
            consumer: None,
            partitions: Vec::new(),
            splits: HashMap::new(),
            buffered: 0,
            commits: BTreeMap::new(),
            discovery: None,
            splits_changed: false,
            next_end_check: Instant::now(),
            metrics: None,
            name: String::new(),
        }))
    }
}

/// librdkafka's callbacks for a source's consumer: errors are logged (the
/// client retries transient ones; fatal ones are checked at every poll).
#[derive(Debug, Default)]
struct SourceClientContext;

impl ClientContext for SourceClientContext {
    fn error(&self, error: KafkaError, reason: &str) {
        warn!(error = %error, reason, "kafka source: client error (librdkafka retries)");
    }
}

impl ConsumerContext for SourceClientContext {}

type KafkaConsumer = StreamConsumer<SourceClientContext>;

/// One partition a subtask reads.
#[derive(Debug)]
struct PartitionReader {
    topic: String,
    partition: i32,
    /// The next offset to read: just after the last row returned, or
    /// [`EARLIEST`] before the first.
    next: i64,
    /// Bounded reads: stop before this offset.
    end: Option<i64>,
    /// Bounded reads: every record before `end` has been taken.
    reached_end: bool,
    /// Bounded reads: every record before `end` has been returned.
    finished: bool,
    /// Records taken from the consumer, not yet returned.
    buffer: RecordBuffer,
}

impl PartitionReader {
    fn entry(&self) -> Value {
        let mut e = json!({"topic": self.topic, "partition": self.partition, "offset": self.next});
        if let Some(end) = self.end {
            e["end"] = end.into();
        }
        e
    }

    fn name(&self) -> String {
        format!("topic '{}' partition {}", self.topic, self.partition)
    }
}

/// A state entry: a partition's position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    topic: String,
    partition: i32,
    offset: i64,
    end: Option<i64>,
}

impl Entry {
    fn parse(entry: &Value) -> Result<Self> {
        let topic = entry
            .get("topic")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_entry(KAFKA, entry, "no string 'topic'"))?
            .to_string();
        let partition = i32::try_from(entry_i64(KAFKA, entry, "partition")?)
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| bad_entry(KAFKA, entry, "bad 'partition'"))?;
        let offset = entry_i64(KAFKA, entry, "offset")?;
        if offset < 0 && offset != EARLIEST {
            return Err(bad_entry(KAFKA, entry, "bad 'offset'"));
        }
        let end = match entry.get("end") {
            None | Some(Value::Null) => None,
            Some(_) => Some(entry_i64(KAFKA, entry, "end")?),
        };
        Ok(Entry {
            topic,
            partition,
            offset,
            end,
        })
    }
}

/// Where a partition starts, as decided at `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    next: i64,
    end: Option<i64>,
}

/// Where a fresh start reads a partition from, given the startup mode and
/// what the brokers say: `wanted`, the committed offset (group-offsets),
/// the specific offset, or the offset for the timestamp (`None`: none); and
/// the partition's earliest and end offsets. A wanted offset out of
/// `low..=high` falls back to `reset`, as in Flink.
fn start_offset(
    mode: &StartupMode,
    reset: OffsetReset,
    wanted: Option<i64>,
    (low, high): (i64, i64),
    partition: &str,
) -> Result<i64> {
    let fallback = |why: &str| match reset {
        OffsetReset::Earliest => Ok(EARLIEST),
        OffsetReset::Latest => Ok(high),
        OffsetReset::Fail => Err(DataFusionError::Execution(format!(
            "kafka: {partition} has {why} and 'properties.auto.offset.reset' is 'none'"
        ))),
    };
    match mode {
        StartupMode::EarliestOffset => Ok(EARLIEST),
        StartupMode::LatestOffset => Ok(high),
        // No record at or after the timestamp: from the end.
        StartupMode::Timestamp(_) => Ok(wanted.unwrap_or(high)),
        StartupMode::GroupOffsets | StartupMode::SpecificOffsets(_) => match wanted {
            Some(o) if (low..=high).contains(&o) => Ok(o),
            Some(o) => fallback(&format!("start offset {o} out of its range {low}..{high}")),
            None if matches!(mode, StartupMode::GroupOffsets) => fallback("no committed offset"),
            None => fallback("no specific offset"),
        },
    }
}

/// Why `offset` cannot be read in a partition whose offsets are now
/// `low..=high`, if it cannot.
fn out_of_range(offset: i64, (low, high): (i64, i64)) -> Option<String> {
    if offset == EARLIEST || (low..=high).contains(&offset) {
        None
    } else if offset < low {
        Some(format!(
            "its earliest offset is now {low}: {} records were deleted (by retention?) before they were read",
            low - offset
        ))
    } else {
        Some(format!(
            "that is past its end, {high} (was the topic deleted and recreated?)"
        ))
    }
}

/// Checks a checkpointed offset against the partition's current range.
fn check_restored(offset: i64, range: (i64, i64), partition: &str) -> Result<()> {
    match out_of_range(offset, range) {
        None => Ok(()),
        Some(why) => Err(DataFusionError::Execution(format!(
            "kafka: cannot resume {partition} at offset {offset} from the checkpoint: {why}; resuming would not be exact. Start the job without the checkpoint (e.g. with 'scan.startup.mode') to read from elsewhere"
        ))),
    }
}

fn kafka_err(what: &str, e: KafkaError) -> DataFusionError {
    DataFusionError::Execution(format!("kafka: {what}: {e}"))
}

/// All partitions of the selected topics, sorted by (topic, partition).
/// Fails only if the brokers cannot be asked.
fn list_partitions(consumer: &KafkaConsumer, topics: &TopicSelector) -> Result<Vec<(String, i32)>> {
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|e| kafka_err("cannot list the topics (are the brokers reachable?)", e))?;
    let mut all: Vec<(String, i32)> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && topics.matches(t.name()))
        .flat_map(|t| t.partitions().iter().map(move |p| (t.name().to_string(), p.id())))
        .collect();
    all.sort();
    Ok(all)
}

/// Fails if a topic named by `topic` is not among the partitions found.
fn check_topics_exist(topics: &TopicSelector, all: &[(String, i32)]) -> Result<()> {
    let TopicSelector::Names(names) = topics else {
        return Ok(());
    };
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !all.iter().any(|(t, _)| t == *n))
        .map(|n| format!("'{n}'"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(DataFusionError::Execution(format!(
        "kafka: topic{} {} do{} not exist",
        if missing.len() > 1 { "s" } else { "" },
        missing.join(", "),
        if missing.len() > 1 { "" } else { "es" }
    )))
}

/// Decides where each of `mine` starts (blocking: broker round trips).
fn resolve_starts(
    consumer: &KafkaConsumer,
    config: &SourceConfig,
    mine: &[(String, i32)],
    restored: Option<&HashMap<(String, i32), Entry>>,
) -> Result<Vec<Start>> {
    let tpl_of = |offset: Offset| -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::with_capacity(mine.len());
        for (t, p) in mine {
            tpl.add_partition_offset(t, *p, offset)
                .map_err(|e| kafka_err("bad partition", e))?;
        }
        Ok(tpl)
    };
    let offsets_of = |tpl: TopicPartitionList| -> HashMap<(String, i32), i64> {
        tpl.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if e.error().is_ok() => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect()
    };
    // One request for all partitions where the mode needs one.
    let wanted: HashMap<(String, i32), i64> = match (&config.startup, restored) {
        (_, Some(_)) => HashMap::new(),
        (StartupMode::GroupOffsets, None) => offsets_of(
            consumer
                .committed_offsets(tpl_of(Offset::Invalid)?, METADATA_TIMEOUT)
                .map_err(|e| kafka_err("cannot read the group's committed offsets", e))?,
        ),
        (StartupMode::Timestamp(ts), None) => offsets_of(
            consumer
                .offsets_for_times(tpl_of(Offset::Offset(*ts))?, METADATA_TIMEOUT)
                .map_err(|e| kafka_err("cannot look up offsets by timestamp", e))?,
        ),
        (StartupMode::SpecificOffsets(by_partition), None) => mine
            .iter()
            .filter_map(|(t, p)| by_partition.get(p).map(|o| ((t.clone(), *p), *o)))
            .collect(),
        _ => HashMap::new(),
    };
    // Where a fresh bounded read stops, where the mode asks the brokers.
    let ends_wanted: HashMap<(String, i32), i64> = match &config.bounded {
        BoundedMode::Timestamp(ts) => offsets_of(
            consumer
                .offsets_for_times(tpl_of(Offset::Offset(*ts))?, METADATA_TIMEOUT)
                .map_err(|e| kafka_err("cannot look up end offsets by timestamp", e))?,
        ),
        BoundedMode::SpecificOffsets(by_partition) => mine
            .iter()
            .filter_map(|(t, p)| by_partition.get(p).map(|o| ((t.clone(), *p), *o)))
            .collect(),
        _ => HashMap::new(),
    };
    let mut starts = Vec::with_capacity(mine.len());
    for key in mine {
        let (topic, partition) = key;
        let name = format!("topic '{topic}' partition {partition}");
        let range = consumer
            .fetch_watermarks(topic, *partition, METADATA_TIMEOUT)
            .map_err(|e| kafka_err(&format!("cannot read the offsets of {name}"), e))?;
        let (next, end) = match restored {
            Some(entries) => match entries.get(key) {
                Some(e) => {
                    check_restored(e.offset, range, &name)?;
                    (e.offset, e.end)
                }
                // Not in the checkpoint: a new partition.
                None => (EARLIEST, None),
            },
            None => (
                start_offset(
                    &config.startup,
                    config.reset,
                    wanted.get(key).copied(),
                    range,
                    &name,
                )?,
                None,
            ),
        };
        // A restored end wins: the stop offsets are fixed at the first start.
        let end = config
            .bounded
            .is_bounded()
            .then(|| end.unwrap_or_else(|| ends_wanted.get(key).copied().unwrap_or(range.1)));
        // An empty earliest start: the partition's first offset is its low watermark.
        let next = match end {
            Some(end) if next == EARLIEST && range.0 >= end => end,
            _ => next,
        };
        starts.push(Start { next, end });
    }
    Ok(starts)
}

/// Partitions by topic and number.
type PartitionList = Vec<(String, i32)>;

/// What woke a waiting poll.
enum Wake<'a> {
    Message(Option<Result<BorrowedMessage<'a>, KafkaError>>),
    Discovered(std::result::Result<Result<PartitionList>, tokio::task::JoinError>),
    Timer,
}

/// Periodic partition listing: discovery of new partitions (if on), and
/// the check that the partitions read still exist.
#[derive(Debug)]
struct Discovery {
    interval: Duration,
    /// Whether new partitions are read (else the listing only checks).
    add_new: bool,
    /// When to list the partitions next (while no listing runs).
    next: Instant,
    /// A listing under way (cancel-safe: awaited by reference).
    task: Option<JoinHandle<Result<PartitionList>>>,
}

/// One subtask of a `kafka` source: reads the partitions it owns. See the
/// [module docs](self) for assignment, state and reading.
///
/// Lifecycle: [`initialize_state`](Source::initialize_state) keeps the
/// restored entries; [`open`](Source::open) creates the consumer, decides
/// where each owned partition starts (broker round trips) and assigns them;
/// [`poll_next`](Source::poll_next) returns one partition's rows at a time;
/// [`close`](Source::close) drops the consumer.
pub struct KafkaSource {
    config: Arc<SourceConfig>,
    subtask: usize,
    parallelism: usize,
    /// All subtasks' entries, until `open` (union list state).
    restored: Option<Vec<Value>>,
    consumer: Option<Arc<KafkaConsumer>>,
    /// The partitions read, indexed by split: in assignment order (sorted at
    /// `open`, discovered ones appended), never removed.
    partitions: Vec<PartitionReader>,
    /// Split of each partition, by topic and partition.
    splits: HashMap<String, HashMap<i32, usize>>,
    /// Records in all partitions' buffers.
    buffered: usize,
    /// Offsets to commit to the group, by checkpoint, until it completes.
    commits: BTreeMap<CheckpointId, Vec<(String, i32, i64)>>,
    discovery: Option<Discovery>,
    splits_changed: bool,
    /// Bounded reads: when to check the partitions' positions next.
    next_end_check: Instant,
    metrics: Option<Arc<OperatorMetrics>>,
    /// The operator's name, for logs.
    name: String,
}

impl KafkaSource {
    fn consumer(&self) -> Result<Arc<KafkaConsumer>> {
        self.consumer
            .clone()
            .ok_or_else(|| DataFusionError::Internal("kafka: source polled before open".into()))
    }

    /// Starts reading `partitions` (with their starts) as new splits.
    fn add_partitions(
        &mut self,
        consumer: &KafkaConsumer,
        partitions: Vec<((String, i32), Start)>,
    ) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for ((topic, partition), start) in partitions {
            let finished = start.end.is_some_and(|end| start.next >= end);
            if !finished {
                let offset = if start.next == EARLIEST {
                    Offset::Beginning
                } else {
                    Offset::Offset(start.next)
                };
                tpl.add_partition_offset(&topic, partition, offset)
                    .map_err(|e| kafka_err("bad partition", e))?;
            }
            let split = self.partitions.len();
            self.splits
                .entry(topic.clone())
                .or_default()
                .insert(partition, split);
            self.partitions.push(PartitionReader {
                topic,
                partition,
                next: start.next,
                end: start.end,
                reached_end: finished,
                finished,
                buffer: RecordBuffer::default(),
            });
        }
        if tpl.count() > 0 {
            consumer
                .incremental_assign(&tpl)
                .map_err(|e| kafka_err("cannot assign partitions", e))?;
        }
        self.splits_changed = true;
        Ok(())
    }

    /// Copies a record taken from the consumer into its partition's buffer.
    fn take(
        &mut self,
        consumer: &KafkaConsumer,
        message: Result<BorrowedMessage<'_>, KafkaError>,
    ) -> Result<()> {
        let m = match message {
            Ok(m) => m,
            Err(e) => return self.consume_error(consumer, e),
        };
        let Some(&split) = self.splits.get(m.topic()).and_then(|ps| ps.get(&m.partition())) else {
            debug!(
                topic = m.topic(),
                partition = m.partition(),
                "kafka source: record of a partition not read"
            );
            return Ok(());
        };
        let p = &mut self.partitions[split];
        if p.reached_end {
            return Ok(());
        }
        let offset = m.offset();
        if let Some(end) = p.end {
            if offset >= end {
                p.reached_end = true;
                if p.buffer.is_empty() {
                    self.finish(consumer, split);
                }
                return Ok(());
            }
            p.reached_end = offset + 1 >= end;
        }
        p.buffer.push(offset, m.timestamp(), m.key(), m.payload());
        self.buffered += 1;
        Ok(())
    }

    /// A bounded partition returned everything before its end.
    fn finish(&mut self, consumer: &KafkaConsumer, split: usize) {
        let p = &mut self.partitions[split];
        if p.finished {
            return;
        }
        p.finished = true;
        p.reached_end = true;
        if let Some(end) = p.end {
            p.next = p.next.max(end);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.topic, p.partition);
        if let Err(e) = consumer.pause(&tpl) {
            debug!(error = %e, "kafka source: cannot pause a finished partition");
        }
        debug!(topic = %p.topic, partition = p.partition, "kafka source: partition read to its end");
        self.splits_changed = true;
    }

    /// An error the consumer delivered instead of a record.
    fn consume_error(&mut self, consumer: &KafkaConsumer, e: KafkaError) -> Result<()> {
        let code = match &e {
            KafkaError::PartitionEOF(_) => return Ok(()),
            KafkaError::MessageConsumption(code) => *code,
            _ => {
                warn!(error = %e, source = %self.name, "kafka source: consumer error (retrying)");
                return Ok(());
            }
        };
        match code {
            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange => {
                Err(self.position_out_of_range(consumer))
            }
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::UnknownTopic => match self.missing_partitions(consumer) {
                Some(e) => Err(e),
                None => {
                    warn!(error = %e, source = %self.name, "kafka source: consumer error (retrying)");
                    Ok(())
                }
            },
            RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::GroupAuthorizationFailed => {
                Err(kafka_err("not authorized to read", e))
            }
            _ => {
                warn!(error = %e, source = %self.name, "kafka source: consumer error (retrying)");
                Ok(())
            }
        }
    }

    /// The error for a read position out of range, naming the partitions
    /// whose next offset is outside their current range. Blocks on broker
    /// round trips: the job is failing anyway.
    fn position_out_of_range(&self, consumer: &KafkaConsumer) -> DataFusionError {
        let mut bad = Vec::new();
        for p in self.partitions.iter().filter(|p| !p.finished) {
            let next = p.buffer.last_offset().map_or(p.next, |o| o + 1);
            if let Ok(range) = consumer.fetch_watermarks(&p.topic, p.partition, Duration::from_secs(5))
                && let Some(why) = out_of_range(next, range)
            {
                bad.push(format!("{} at offset {next}: {why}", p.name()));
            }
        }
        DataFusionError::Execution(if bad.is_empty() {
            "kafka: a partition's read position is out of range (records deleted by retention before they were read?)".into()
        } else {
            format!("kafka: read position out of range: {}", bad.join("; "))
        })
    }

    /// The error for assigned partitions that no longer exist, if any
    /// (blocking, as [`position_out_of_range`](Self::position_out_of_range)).
    fn missing_partitions(&self, consumer: &KafkaConsumer) -> Option<DataFusionError> {
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(5)).ok()?;
        let existing: HashSet<(&str, i32)> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(move |p| (t.name(), p.id())))
            .collect();
        self.disappeared(|t, p| existing.contains(&(t, p)))
    }

    fn disappeared(&self, exists: impl Fn(&str, i32) -> bool) -> Option<DataFusionError> {
        let gone: Vec<String> = self
            .partitions
            .iter()
            .filter(|p| !exists(&p.topic, p.partition))
            .map(PartitionReader::name)
            .collect();
        (!gone.is_empty()).then(|| {
            DataFusionError::Execution(format!(
                "kafka: {} no longer exist{} (topic deleted?)",
                gone.join(", "),
                if gone.len() > 1 { "" } else { "s" }
            ))
        })
    }

    /// Returns the rows of the partition with the most buffered records, if
    /// any has some (repeating past partitions whose records give no rows).
    fn emit(&mut self, consumer: &KafkaConsumer) -> Result<Option<SourceEvent>> {
        loop {
            let Some(split) = (0..self.partitions.len())
                .filter(|&i| !self.partitions[i].buffer.is_empty())
                .max_by_key(|&i| (self.partitions[i].buffer.len(), std::cmp::Reverse(i)))
            else {
                return Ok(None);
            };
            let p = &mut self.partitions[split];
            let mut skipped = 0;
            let origin = Origin {
                topic: &p.topic,
                partition: p.partition,
            };
            let batch = self.config.decoder.decode(origin, &p.buffer, &mut skipped)?;
            if skipped > 0 {
                warn!(topic = %p.topic, partition = p.partition, skipped, "kafka source skipped malformed records");
                if let Some(m) = &self.metrics {
                    OperatorMetrics::add(&m.records_skipped, skipped);
                }
            }
            if let Some(last) = p.buffer.last_offset() {
                p.next = last + 1;
            }
            self.buffered -= p.buffer.len();
            p.buffer.clear(KEEP_BUFFER_BYTES);
            if p.reached_end {
                self.finish(consumer, split);
            }
            if let Some(batch) = batch {
                return Ok(Some(SourceEvent::SplitBatch {
                    split: split as u32,
                    batch,
                }));
            }
        }
    }

    /// Bounded reads: finishes the partitions with nothing buffered whose
    /// consumer position reached their end (past trailing transaction
    /// markers, which give no record).
    fn check_ends(&mut self, consumer: &KafkaConsumer) -> Result<()> {
        let positions = consumer
            .position()
            .map_err(|e| kafka_err("cannot read the consumer's positions", e))?;
        for e in positions.elements() {
            let Offset::Offset(position) = e.offset() else {
                continue;
            };
            let Some(&split) = self.splits.get(e.topic()).and_then(|ps| ps.get(&e.partition())) else {
                continue;
            };
            let p = &self.partitions[split];
            if !p.finished && p.buffer.is_empty() && p.end.is_some_and(|end| position >= end) {
                self.finish(consumer, split);
            }
        }
        Ok(())
    }

    /// Applies a partition listing: vanished partitions fail the job; with
    /// discovery on (`add_new`), new partitions this subtask owns start from
    /// the earliest offset.
    fn discovered(&mut self, consumer: &KafkaConsumer, all: Vec<(String, i32)>, add_new: bool) -> Result<()> {
        let existing: HashSet<(&str, i32)> = all.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        if let Some(e) = self.disappeared(|t, p| existing.contains(&(t, p))) {
            return Err(e);
        }
        if !add_new {
            return Ok(());
        }
        let new: Vec<((String, i32), Start)> = all
            .iter()
            .filter(|(t, p)| owner(t, *p, self.parallelism) == self.subtask)
            .filter(|(t, p)| !self.splits.get(t).is_some_and(|ps| ps.contains_key(p)))
            .map(|k| {
                (
                    k.clone(),
                    Start {
                        next: EARLIEST,
                        end: None,
                    },
                )
            })
            .collect();
        if !new.is_empty() {
            info!(
                source = %self.name,
                partitions = ?new.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                "kafka source: new partitions, read from the earliest offset"
            );
            self.add_partitions(consumer, new)?;
        }
        Ok(())
    }

    /// When a waiting poll must wake up without records.
    fn deadline(&self) -> Option<Instant> {
        let discovery = self
            .discovery
            .as_ref()
            .filter(|d| d.task.is_none())
            .map(|d| d.next);
        let end_check = self.config.bounded.is_bounded().then_some(self.next_end_check);
        match (discovery, end_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Awaits the discovery under way, if any (else never).
async fn discovery_done(
    discovery: &mut Option<Discovery>,
) -> std::result::Result<Result<PartitionList>, tokio::task::JoinError> {
    match discovery.as_mut().and_then(|d| d.task.as_mut()) {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Source for KafkaSource {
    /// Keeps the restored entries (all subtasks', see
    /// [`union_list_state`](Source::union_list_state)) for `open`.
    async fn initialize_state(&mut self, _ctx: &OperatorContext, state: Option<Vec<Value>>) -> Result<()> {
        self.restored = state;
        Ok(())
    }

    /// Creates the consumer, lists the partitions, decides where the owned
    /// ones start (the restored offsets, else the startup mode) and assigns
    /// them. Fails if the brokers cannot be reached, a named topic does not
    /// exist, or a restored offset is out of its partition's range.
    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(Arc::clone(&ctx.metrics));
        self.name = format!(
            "{} ({}/{})",
            ctx.operator_name,
            self.subtask + 1,
            self.parallelism
        );
        let mut client = self.config.client.clone();
        if self.config.group_id.is_none() {
            // librdkafka assigns partitions only with a group id. Without
            // `properties.group.id` nothing is ever committed to this one, and
            // the consumer never joins it (no subscription).
            client.set("group.id", format!("weir-{}-{}", ctx.job_name, ctx.operator_id));
        }
        let consumer: KafkaConsumer = client
            .create_with_context(SourceClientContext)
            .map_err(|e| kafka_err("cannot create a consumer", e))?;
        let consumer = Arc::new(consumer);
        let config = Arc::clone(&self.config);
        let c = Arc::clone(&consumer);
        let all = blocking(move || list_partitions(&c, &config.topics)).await?;
        check_topics_exist(&self.config.topics, &all)?;
        let (subtask, parallelism) = (self.subtask, self.parallelism);
        let mine: Vec<(String, i32)> = all
            .iter()
            .filter(|(t, p)| owner(t, *p, parallelism) == subtask)
            .cloned()
            .collect();
        let restored = match self.restored.take() {
            None => None,
            Some(entries) => {
                let mut own = HashMap::new();
                for e in &entries {
                    let e = Entry::parse(e)?;
                    if !self.config.topics.matches(&e.topic) {
                        debug!(topic = %e.topic, "kafka source: checkpointed topic no longer read");
                    } else if owner(&e.topic, e.partition, parallelism) == subtask {
                        if !mine.iter().any(|(t, p)| *t == e.topic && *p == e.partition) {
                            return Err(DataFusionError::Execution(format!(
                                "kafka: cannot resume topic '{}' partition {} from the checkpoint: it no longer exists (topic deleted?)",
                                e.topic, e.partition
                            )));
                        }
                        own.insert((e.topic.clone(), e.partition), e);
                    }
                }
                Some(own)
            }
        };
        let config = Arc::clone(&self.config);
        let keys = mine.clone();
        let c = Arc::clone(&consumer);
        let starts = blocking(move || resolve_starts(&c, &config, &keys, restored.as_ref())).await?;
        info!(
            source = %self.name,
            partitions = ?mine.iter().zip(&starts).map(|((t, p), s)| format!("{t}/{p}@{}", s.next)).collect::<Vec<_>>(),
            "kafka source: reading"
        );
        self.add_partitions(&consumer, mine.into_iter().zip(starts).collect())?;
        let (interval, add_new) = match self.config.discovery {
            Some(interval) => (interval, true),
            None => (EXISTENCE_CHECK_INTERVAL, false),
        };
        self.discovery = Some(Discovery {
            interval,
            add_new,
            next: Instant::now() + interval,
            task: None,
        });
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Returns one partition's buffered rows if there are any; else waits
    /// for records (or a discovery, or a bounded read's end check), takes
    /// what is available up to [`BATCH_RECORDS`], and returns from it.
    /// Cancel-safe: records are taken from the consumer only when a wait
    /// has completed, and stored in `self` at once.
    async fn poll_next(&mut self) -> Result<SourceEvent> {
        let consumer = self.consumer()?;
        let mut stream = consumer.stream();
        loop {
            if let Some((code, reason)) = consumer.client().fatal_error() {
                return Err(DataFusionError::Execution(format!(
                    "kafka: the consumer failed: {reason} ({code:?})"
                )));
            }
            if let Some(event) = self.emit(&consumer)? {
                return Ok(event);
            }
            if self.config.bounded.is_bounded() {
                if Instant::now() >= self.next_end_check {
                    self.check_ends(&consumer)?;
                    self.next_end_check = Instant::now() + END_CHECK_INTERVAL;
                }
                if self.partitions.iter().all(|p| p.finished) {
                    return Ok(SourceEvent::Finished);
                }
            }
            let deadline = self.deadline();
            let wake = tokio::select! {
                m = stream.next() => Wake::Message(m),
                r = discovery_done(&mut self.discovery) => Wake::Discovered(r),
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Timer,
            };
            match wake {
                Wake::Message(None) => {
                    return Err(DataFusionError::Execution(
                        "kafka: the consumer's stream ended".into(),
                    ));
                }
                Wake::Message(Some(m)) => {
                    self.take(&consumer, m)?;
                    // Then whatever else is there, without waiting.
                    while self.buffered < BATCH_RECORDS {
                        match stream.next().now_or_never() {
                            Some(Some(m)) => self.take(&consumer, m)?,
                            _ => break,
                        }
                    }
                }
                Wake::Discovered(result) => {
                    let mut add_new = false;
                    if let Some(d) = self.discovery.as_mut() {
                        d.task = None;
                        d.next = Instant::now() + d.interval;
                        add_new = d.add_new;
                    }
                    match result {
                        Ok(Ok(all)) => self.discovered(&consumer, all, add_new)?,
                        Ok(Err(e)) => {
                            warn!(source = %self.name, error = %e, "kafka source: partition discovery failed (retrying later)")
                        }
                        Err(e) => {
                            warn!(source = %self.name, error = %e, "kafka source: partition discovery failed")
                        }
                    }
                }
                Wake::Timer => {
                    if let Some(d) = self.discovery.as_mut()
                        && d.task.is_none()
                        && Instant::now() >= d.next
                    {
                        let c = Arc::clone(&consumer);
                        let config = Arc::clone(&self.config);
                        d.task = Some(tokio::task::spawn_blocking(move || {
                            list_partitions(&c, &config.topics)
                        }));
                    }
                }
            }
        }
    }

    /// `true`: each subtask picks its partitions from all entries.
    fn union_list_state(&self) -> bool {
        true
    }

    /// The splits of the partitions not finished.
    fn watermark_splits(&self) -> Option<Vec<u32>> {
        Some(
            (0..self.partitions.len() as u32)
                .filter(|&i| !self.partitions[i as usize].finished)
                .collect(),
        )
    }

    fn splits_changed(&mut self) -> bool {
        std::mem::take(&mut self.splits_changed)
    }

    /// One entry per partition, at the position after the last row
    /// returned; remembers the offsets to commit to the group when the
    /// checkpoint completes.
    async fn snapshot_state(&mut self, checkpoint_id: CheckpointId) -> Result<Vec<Value>> {
        if self.config.group_id.is_some() {
            let offsets = self
                .partitions
                .iter()
                .filter(|p| p.next >= 0)
                .map(|p| (p.topic.clone(), p.partition, p.next))
                .collect();
            self.commits.insert(checkpoint_id, offsets);
        }
        Ok(self.partitions.iter().map(PartitionReader::entry).collect())
    }

    /// Commits the checkpoint's offsets to `properties.group.id`
    /// asynchronously (for monitoring; never read back on restore).
    async fn notify_checkpoint_complete(&mut self, checkpoint_id: CheckpointId) -> Result<()> {
        let newer = self.commits.split_off(&(checkpoint_id + 1));
        let done = std::mem::replace(&mut self.commits, newer);
        let (Some(consumer), Some(offsets)) = (&self.consumer, done.get(&checkpoint_id)) else {
            return Ok(());
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (topic, partition, offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| kafka_err("bad partition", e))?;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            warn!(source = %self.name, error = %e, "kafka source: cannot commit offsets to the group (monitoring only)");
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if let Some(task) = self.discovery.take().and_then(|d| d.task) {
            task.abort();
        }
        self.consumer = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::options as opts;

    #[test]
    fn owners_match_flink_and_never_move() {
        // Java: "orders".hashCode() == -1008770331.
        assert_eq!(java_hash("orders"), -1_008_770_331);
        assert_eq!(java_hash(""), 0);
        // Flink: ((hash * 31) & 0x7FFFFFFF) % n, then + partition.
        let start = ((-1_008_770_331i32).wrapping_mul(31) & 0x7fff_ffff) % 3;
        for p in 0..6 {
            assert_eq!(owner("orders", p, 3), ((start + p) % 3) as usize);
        }
        // Partitions of a topic are spread evenly; a partition's owner does
        // not depend on which other partitions exist.
        let mut counts = [0; 4];
        for p in 0..8 {
            counts[owner("t", p, 4)] += 1;
        }
        assert_eq!(counts, [2, 2, 2, 2]);
        assert_eq!(owner("x", 5, 1), 0);
    }

    #[test]
    fn specific_offsets_parse() {
        let o = parse_specific_offsets(
            "partition:0,offset:42; partition:1,offset:300",
            "scan.startup.specific-offsets",
        )
        .unwrap();
        assert_eq!(o, BTreeMap::from([(0, 42), (1, 300)]));
        for bad in [
            "",
            "partition:0",
            "partition:0,offset:x",
            "p:0,offset:1",
            "partition:0,offset:1;partition:0,offset:2",
            "partition:-1,offset:1",
        ] {
            let e = parse_specific_offsets(bad, "scan.startup.specific-offsets")
                .unwrap_err()
                .to_string();
            assert!(e.contains("scan.startup.specific-offsets"), "{bad}: {e}");
        }
    }

    #[test]
    fn startup_modes_parse() {
        let names = TopicSelector::Names(vec!["t".into()]);
        let p = |pairs: &[(&str, &str)]| parse_startup(&opts(pairs), &names);
        let e = p(&[]).unwrap_err().to_string();
        assert!(
            e.contains("properties.group.id") && e.contains("earliest-offset"),
            "{e}"
        );
        assert_eq!(
            p(&[("properties.group.id", "g")]).unwrap(),
            StartupMode::GroupOffsets
        );
        assert_eq!(
            p(&[("scan.startup.mode", "earliest-offset")]).unwrap(),
            StartupMode::EarliestOffset
        );
        assert_eq!(
            p(&[("scan.startup.mode", "LATEST-OFFSET")]).unwrap(),
            StartupMode::LatestOffset
        );
        assert_eq!(
            p(&[
                ("scan.startup.mode", "timestamp"),
                ("scan.startup.timestamp-millis", "1700000000000")
            ])
            .unwrap(),
            StartupMode::Timestamp(1_700_000_000_000)
        );
        assert!(
            p(&[("scan.startup.mode", "timestamp")])
                .unwrap_err()
                .to_string()
                .contains("timestamp-millis")
        );
        assert!(
            p(&[
                ("scan.startup.timestamp-millis", "5"),
                ("scan.startup.mode", "earliest-offset")
            ])
            .is_err()
        );
        assert_eq!(
            p(&[
                ("scan.startup.mode", "specific-offsets"),
                ("scan.startup.specific-offsets", "partition:1,offset:7")
            ])
            .unwrap(),
            StartupMode::SpecificOffsets(BTreeMap::from([(1, 7)]))
        );
        let two = TopicSelector::Names(vec!["a".into(), "b".into()]);
        let e = parse_startup(
            &opts(&[
                ("scan.startup.mode", "specific-offsets"),
                ("scan.startup.specific-offsets", "partition:1,offset:7"),
            ]),
            &two,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("single 'topic'"), "{e}");
        let e = p(&[("scan.startup.mode", "newest")]).unwrap_err().to_string();
        assert!(e.contains("group-offsets, earliest-offset"), "{e}");
    }

    #[test]
    fn bounded_discovery_reset_and_topics_parse() {
        assert_eq!(parse_bounded(&opts(&[])).unwrap(), BoundedMode::Unbounded);
        assert_eq!(
            parse_bounded(&opts(&[("scan.bounded.mode", "latest-offset")])).unwrap(),
            BoundedMode::LatestOffset
        );
        assert!(parse_bounded(&opts(&[("scan.bounded.mode", "timestamp")])).is_err());
        assert_eq!(
            parse_bounded(&opts(&[
                ("scan.bounded.mode", "timestamp"),
                ("scan.bounded.timestamp-millis", "1704067200000")
            ]))
            .unwrap(),
            BoundedMode::Timestamp(1_704_067_200_000)
        );
        assert_eq!(
            parse_bounded(&opts(&[
                ("scan.bounded.mode", "specific-offsets"),
                ("scan.bounded.specific-offsets", "partition:1,offset:7")
            ]))
            .unwrap(),
            BoundedMode::SpecificOffsets([(1, 7)].into_iter().collect())
        );
        let err = parse_bounded(&opts(&[
            ("scan.bounded.mode", "latest-offset"),
            ("scan.bounded.timestamp-millis", "5"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("scan.bounded.timestamp-millis"), "{err}");
        assert_eq!(
            parse_discovery(&opts(&[])).unwrap(),
            Some(DEFAULT_DISCOVERY_INTERVAL)
        );
        assert_eq!(
            parse_discovery(&opts(&[("scan.topic-partition-discovery.interval", "10 s")])).unwrap(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_discovery(&opts(&[("scan.topic-partition-discovery.interval", "0")])).unwrap(),
            None
        );
        assert_eq!(parse_reset(&opts(&[])).unwrap(), OffsetReset::Earliest);
        assert_eq!(
            parse_reset(&opts(&[("properties.auto.offset.reset", "latest")])).unwrap(),
            OffsetReset::Latest
        );
        assert_eq!(
            parse_reset(&opts(&[("properties.auto.offset.reset", "none")])).unwrap(),
            OffsetReset::Fail
        );
        assert!(parse_reset(&opts(&[("properties.auto.offset.reset", "sometimes")])).is_err());

        let e = TopicSelector::parse(&opts(&[])).unwrap_err().to_string();
        assert!(e.contains("'topic'") && e.contains("'topic-pattern'"), "{e}");
        assert!(TopicSelector::parse(&opts(&[("topic", "a"), ("topic-pattern", "a.*")])).is_err());
        assert!(TopicSelector::parse(&opts(&[("topic-pattern", "(")])).is_err());
        let re = TopicSelector::parse(&opts(&[("topic-pattern", "orders-.*")])).unwrap();
        assert!(re.matches("orders-eu") && !re.matches("old-orders-eu") && !re.matches("__orders-x"));
        let names = TopicSelector::parse(&opts(&[("topic", "a; b")])).unwrap();
        assert!(names.matches("b") && !names.matches("c"));
    }

    #[test]
    fn fresh_starts_follow_the_mode_and_fall_back_per_reset() {
        let range = (10, 50);
        let s = |mode: StartupMode, reset, wanted| start_offset(&mode, reset, wanted, range, "t/0");
        use OffsetReset::*;
        assert_eq!(s(StartupMode::EarliestOffset, Earliest, None).unwrap(), EARLIEST);
        assert_eq!(s(StartupMode::LatestOffset, Earliest, None).unwrap(), 50);
        assert_eq!(s(StartupMode::Timestamp(5), Earliest, Some(20)).unwrap(), 20);
        assert_eq!(s(StartupMode::Timestamp(5), Earliest, None).unwrap(), 50);
        assert_eq!(s(StartupMode::GroupOffsets, Earliest, Some(30)).unwrap(), 30);
        assert_eq!(s(StartupMode::GroupOffsets, Earliest, None).unwrap(), EARLIEST);
        assert_eq!(s(StartupMode::GroupOffsets, Latest, None).unwrap(), 50);
        let e = s(StartupMode::GroupOffsets, Fail, None).unwrap_err().to_string();
        assert!(e.contains("no committed offset") && e.contains("t/0"), "{e}");
        let specific = StartupMode::SpecificOffsets(BTreeMap::new());
        assert_eq!(s(specific.clone(), Earliest, Some(50)).unwrap(), 50);
        assert_eq!(
            s(specific.clone(), Latest, Some(5)).unwrap(),
            50,
            "out of range: reset"
        );
        assert_eq!(s(specific, Earliest, None).unwrap(), EARLIEST);
    }

    #[test]
    fn restored_offsets_out_of_range_fail_naming_the_partition() {
        assert!(check_restored(10, (10, 50), "p").is_ok());
        assert!(check_restored(50, (10, 50), "p").is_ok());
        assert!(check_restored(EARLIEST, (10, 50), "p").is_ok());
        let e = check_restored(4, (10, 50), "topic 'o' partition 2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("topic 'o' partition 2 at offset 4") && e.contains("6 records were deleted"),
            "{e}"
        );
        let e = check_restored(60, (10, 50), "topic 'o' partition 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("past its end"), "{e}");
    }

    #[test]
    fn named_topics_must_exist() {
        let all = vec![("a".to_string(), 0), ("a".to_string(), 1)];
        assert!(check_topics_exist(&TopicSelector::Names(vec!["a".into()]), &all).is_ok());
        let e = check_topics_exist(
            &TopicSelector::Names(vec!["a".into(), "b".into(), "c".into()]),
            &all,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("topics 'b', 'c' do not exist"), "{e}");
        let none = TopicSelector::Pattern(Regex::new("^(?:x.*)$").unwrap());
        assert!(
            check_topics_exist(&none, &[]).is_ok(),
            "a pattern may match nothing (yet)"
        );
    }

    #[test]
    fn entries_round_trip() {
        let p = PartitionReader {
            topic: "o".into(),
            partition: 2,
            next: 42,
            end: Some(50),
            reached_end: false,
            finished: false,
            buffer: RecordBuffer::default(),
        };
        let e = Entry::parse(&p.entry()).unwrap();
        assert_eq!(
            e,
            Entry {
                topic: "o".into(),
                partition: 2,
                offset: 42,
                end: Some(50)
            }
        );
        let earliest = Entry::parse(&json!({"topic": "o", "partition": 0, "offset": -2})).unwrap();
        assert_eq!((earliest.offset, earliest.end), (EARLIEST, None));
        assert!(Entry::parse(&json!({"topic": "o", "partition": 0, "offset": -5})).is_err());
        assert!(Entry::parse(&json!({"partition": 0, "offset": 1})).is_err());
    }
}

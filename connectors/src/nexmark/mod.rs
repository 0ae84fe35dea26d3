//! The `nexmark` source: the Nexmark benchmark's online auction events
//! (persons, auctions and bids, in proportions 1 : 3 : 46), one table per
//! stream, generated as Apache Beam's and Flink's nexmark generators do.
//!
//! ```sql
//! CREATE TABLE bid (
//!     auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
//!     date_time TIMESTAMP(3), extra VARCHAR,
//!     WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
//! ) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events.num' = '10000000');
//! ```
//!
//! The columns are those of Flink's nexmark DDL (`person`: id, name,
//! emailAddress, creditCard, city, state, date_time, extra; `auction`: id,
//! itemName, description, initialBid, reserve, date_time, expires, seller,
//! category, extra; `bid`: auction, bidder, price, channel, url, date_time,
//! extra). A table may declare any subset of its columns, in any order; only
//! those are generated. `date_time`/`expires` may be any `TIMESTAMP` precision.
//! `'table' = 'event'` gives Flink's combined form instead, all events with a
//! `ROW` column per kind (see [`event`]).
//!
//! # Events, subtasks and determinism
//!
//! Events are numbered `n = 0, 1, ...` over all three kinds; `events.num`
//! bounds `n` (so a `bid` table holds about 46/50 of it). Every value of event
//! `n` is a function of `n` and `seed` alone, so three tables declared with the
//! same options describe one consistent auction site: bids refer to auctions
//! and persons that exist. A table's events are split round-robin over the
//! subtasks *by their index within the table* (the `k`-th bid goes to
//! subtask `k mod p`), which balances the subtasks whatever `p` is. That
//! share is the subtask's split, checkpointed as its next index (see
//! [`NexmarkSource`]): a restored job resumes every split exactly, at any
//! parallelism.
//!
//! # Time
//!
//! Event `n` happens at `first-event.time + n / first-event.rate` (minus a
//! random delay less than `max-out-of-order`, which gives bounded disorder). With
//! `rate` set, the source is throttled to that many events per second (all
//! kinds counted, as the event numbers are), event time defaults to start at
//! the wall-clock time the job starts and to advance at `rate`. Unthrottled
//! (the default, for benchmarks), event time starts at 2024-01-01 00:00:00 UTC
//! and advances at 10,000 events per second, as Beam's default.

pub mod config;
pub mod event;
pub mod generator;
pub mod strings;

use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result, plan_err};
use serde_json::Value;
use weir_engine::connector::{Connector, ConnectorOptions, OptionSpec};
use weir_engine::message::CheckpointId;
use weir_engine::operator::OperatorContext;
use weir_engine::source::{Source, SourceEvent, SourceSpec, unread_nullable_columns};

use crate::columns::{bind_columns, make_batch};
use crate::options::{get_batch_size, get_per_second};
use crate::pacer::Pacer;
use crate::split::{SeqSplit, entry_i64, idle_forever, next_active};
use crate::time::{DEFAULT_START_NS, NANOS_PER_MILLI, StartTime, get_duration_ns, get_start_time};
use config::{EventKind, GeneratorConfig};
use event::EventLayout;
use generator::{Col, Generator, table_columns};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "table",
        "which events: 'bid', 'auction', 'person', or 'event' for all (required)",
    ),
    OptionSpec::new(
        "events.num",
        "number of events of all kinds; the source is bounded if set",
    ),
    OptionSpec::new(
        "rate",
        "events per second of all kinds over all subtasks (default 0 = unlimited)",
    ),
    OptionSpec::new(
        "first-event.rate",
        "events per second of event time (default: rate, or 10000)",
    ),
    OptionSpec::new(
        "first-event.time",
        "event time of event 0: 'now', epoch millis, or a timestamp",
    ),
    OptionSpec::new(
        "max-out-of-order",
        "events are up to this much late in event time (default 0)",
    ),
    OptionSpec::new("seed", "seed of the random values (default 0)"),
    OptionSpec::new(
        "person.proportion",
        "persons among every total-proportion events (default 1)",
    ),
    OptionSpec::new(
        "auction.proportion",
        "auctions among every total-proportion events (default 3)",
    ),
    OptionSpec::new(
        "bid.proportion",
        "bids among every total-proportion events (default 46)",
    ),
    OptionSpec::new("batch-size", "the most rows per batch (default 8192)"),
];

const DEFAULT_EVENT_RATE: f64 = 10_000.0;
const DEFAULT_BATCH_SIZE: usize = 8192;

/// The `nexmark` connector (source only). See the [module docs](self).
#[derive(Debug, Default)]
pub struct NexmarkConnector;

impl Connector for NexmarkConnector {
    fn name(&self) -> &'static str {
        "nexmark"
    }

    fn options(&self) -> Vec<OptionSpec> {
        OPTIONS.to_vec()
    }

    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SourceSpec>> {
        Ok(Arc::new(NexmarkSpec::try_new(schema, options)?))
    }
}

/// A validated `nexmark` table: creates the subtasks' [`NexmarkSource`]s.
#[derive(Debug, Clone)]
pub struct NexmarkSpec {
    schema: SchemaRef,
    layout: Layout,
    /// Per column: not read by the job ([`SourceSpec::reading_only`]), so
    /// not generated but NULL (only nullable columns of a table of one kind).
    unread: Arc<[bool]>,
    events_num: Option<u64>,
    rate: f64,
    events_per_second: f64,
    start: StartTime,
    max_out_of_order_ms: i64,
    seed: u64,
    proportions: (u64, u64, u64),
    batch_size: usize,
}

impl NexmarkSpec {
    /// Validates `options` against `schema`.
    pub fn try_new(schema: SchemaRef, options: &ConnectorOptions) -> Result<Self> {
        options.check_known("nexmark", OPTIONS, &[])?;
        let kind = match options
            .get_enum("table", &["bid", "auction", "person", "event"])?
            .as_deref()
        {
            Some("bid") => EventKind::Bid,
            Some("auction") => EventKind::Auction,
            Some("person") => EventKind::Person,
            Some(_) => {
                let layout = Layout::Event(EventLayout::bind(&schema)?);
                return Self::with_layout(schema, options, layout);
            }
            None => {
                return plan_err!("missing required option 'table': one of bid, auction, person, event");
            }
        };
        let defs: Vec<_> = table_columns(kind).iter().map(|(d, _)| *d).collect();
        let bound = bind_columns(&format!("nexmark table '{}'", kind.table_name()), &schema, &defs)?;
        let columns = bound.into_iter().map(|i| table_columns(kind)[i].1).collect();
        Self::with_layout(schema, options, Layout::Table { kind, columns })
    }

    fn with_layout(schema: SchemaRef, options: &ConnectorOptions, layout: Layout) -> Result<Self> {
        let rate = get_per_second(options, "rate")?.unwrap_or(0.0);
        let events_per_second = match get_per_second(options, "first-event.rate")? {
            Some(0.0) => {
                return plan_err!("invalid value '0' for option 'first-event.rate': expected a number > 0");
            }
            Some(r) => r,
            None if rate > 0.0 => rate,
            None => DEFAULT_EVENT_RATE,
        };
        let start = get_start_time(options, "first-event.time")?.unwrap_or(if rate > 0.0 {
            StartTime::Now
        } else {
            StartTime::Fixed(DEFAULT_START_NS)
        });
        let max_out_of_order_ms =
            get_duration_ns(options, "max-out-of-order")?.unwrap_or(0) / NANOS_PER_MILLI;
        let proportion = |key: &str, default: u64| -> Result<u64> {
            match options.get_u64(key)? {
                Some(0) => {
                    plan_err!("invalid value '0' for option '{key}': expected a positive integer")
                }
                Some(p) if p > 1_000_000 => {
                    plan_err!("invalid value '{p}' for option '{key}': at most 1000000")
                }
                Some(p) => Ok(p),
                None => Ok(default),
            }
        };
        let proportions = (
            proportion("person.proportion", 1)?,
            proportion("auction.proportion", 3)?,
            proportion("bid.proportion", 46)?,
        );
        let batch_size = get_batch_size(options, "batch-size", DEFAULT_BATCH_SIZE)?;
        Ok(NexmarkSpec {
            unread: vec![false; schema.fields().len()].into(),
            schema,
            layout,
            events_num: options.get_u64("events.num")?,
            rate,
            events_per_second,
            start,
            max_out_of_order_ms,
            seed: options.get_u64("seed")?.unwrap_or(0),
            proportions,
            batch_size,
        })
    }
}

impl SourceSpec for NexmarkSpec {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        self.events_num.is_some()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        if parallelism == 0 || subtask >= parallelism {
            return Err(DataFusionError::Internal(format!(
                "nexmark: subtask {subtask} out of range for parallelism {parallelism}"
            )));
        }
        let placeholders = self
            .schema
            .fields()
            .iter()
            .zip(self.unread.iter())
            .map(|(field, &unread)| unread.then(|| new_null_array(field.data_type(), self.batch_size)))
            .collect();
        let mut source = NexmarkSource {
            placeholders,
            schema: Arc::clone(&self.schema),
            layout: self.layout.clone(),
            proportions: self.proportions,
            events_per_second: self.events_per_second,
            max_out_of_order_ms: self.max_out_of_order_ms,
            seed: self.seed,
            events_num: self.events_num,
            rate: self.rate,
            batch_size: self.batch_size,
            splits: Vec::new(),
            cursor: 0,
            numbers: Vec::new(),
        };
        let split = source.split(SeqSplit::fresh(subtask, parallelism), self.start.resolve(), false);
        source.splits.push(split);
        Ok(Box::new(source))
    }

    /// Unread nullable columns of a `bid`, `auction` or `person` table are
    /// not generated: they are NULL. Every value is a function of the event
    /// number and the seed alone, so the read columns do not change.
    fn reading_only(&self, read: &[usize]) -> Option<Arc<dyn SourceSpec>> {
        if !matches!(self.layout, Layout::Table { .. }) {
            return None;
        }
        unread_nullable_columns(&self.schema, read).map(|unread| {
            Arc::new(NexmarkSpec {
                unread,
                ..self.clone()
            }) as Arc<dyn SourceSpec>
        })
    }
}

/// Which events a table holds, and how its declared columns are generated.
#[derive(Debug, Clone)]
enum Layout {
    /// The events of one kind; the generator column of each declared column.
    Table { kind: EventKind, columns: Vec<Col> },
    /// All events ([`event`]).
    Event(EventLayout),
}

impl Layout {
    /// The event number of the `k`-th event of the table.
    #[inline]
    fn event_number(&self, config: &GeneratorConfig, k: u64) -> u64 {
        match self {
            Layout::Table { kind, .. } => config.event_number(*kind, k),
            Layout::Event(_) => k,
        }
    }
}

/// One subtask of a `nexmark` table: produces the events of its splits of
/// the table, each in order (round-robin over the splits, one batch at a
/// time, when it owns several).
///
/// # State
///
/// One entry per split ([`crate::split`]); on a fresh start subtask `i` of
/// `p` owns split `i` of `p`, the events whose index `k` *within the table*
/// is `≡ i (mod p)`:
///
/// ```json
/// {"split": 1, "splits": 4, "next": 8193, "start_ns": 1704067200000000000}
/// ```
///
/// `next` is the split's next table index (the event index for
/// `'table' = 'event'`); `start_ns` is the resolved `first-event.time`, so
/// event time goes on from where it was even when it started at 'now'.
/// Every value of an event is a function of its event number and the seed,
/// so a split resumes at any index without replaying the ones before.
/// Rate limiting restarts at the restored position.
///
/// Cancel-safe: `poll_next` waits for the rate limiter first, then generates
/// and returns the batch without further waiting.
pub struct NexmarkSource {
    schema: SchemaRef,
    /// Per column: the NULLs of a batch of `batch_size` rows for a column
    /// the job does not read (sliced to the batch), or `None`: generated.
    placeholders: Vec<Option<ArrayRef>>,
    layout: Layout,
    proportions: (u64, u64, u64),
    events_per_second: f64,
    max_out_of_order_ms: i64,
    seed: u64,
    events_num: Option<u64>,
    rate: f64,
    batch_size: usize,
    splits: Vec<NexmarkSplit>,
    /// The split to read next (round-robin).
    cursor: usize,
    /// The event numbers of the batch being generated (reused).
    numbers: Vec<u64>,
}

/// A split of a `nexmark` subtask and what generates it.
struct NexmarkSplit {
    pos: SeqSplit,
    start_ns: i64,
    generator: Generator,
    /// The table's events below `events.num`, if bounded.
    total: Option<u64>,
    pacer: Pacer,
    max_batch: usize,
}

const NEXMARK: &str = "nexmark";

impl NexmarkSource {
    /// A split at `pos` whose event time starts at `start_ns`; `resumed`
    /// when restored (pacing restarts there).
    fn split(&self, pos: SeqSplit, start_ns: i64, resumed: bool) -> NexmarkSplit {
        let config = GeneratorConfig::new(
            self.proportions,
            start_ns.div_euclid(NANOS_PER_MILLI),
            self.events_per_second,
            self.max_out_of_order_ms,
        );
        let total = self.events_num.map(|n| match &self.layout {
            Layout::Table { kind, .. } => config.count_below(*kind, n),
            Layout::Event(_) => n,
        });
        // Paced on event numbers (all kinds count) at the full rate: every
        // split covers the whole event-number range, so the splits together
        // keep `rate` however they are spread over the subtasks.
        let base = if resumed {
            self.layout.event_number(&config, pos.next)
        } else {
            0
        };
        let pacer = Pacer::resuming(self.rate, base);
        NexmarkSplit {
            pos,
            start_ns,
            generator: Generator::new(config, self.seed),
            total,
            max_batch: pacer.batch_len(pos.splits as usize, self.batch_size),
            pacer,
        }
    }

    fn generate(&self, generator: &Generator) -> Result<RecordBatch> {
        let columns = match &self.layout {
            Layout::Table { kind, columns } => self
                .schema
                .fields()
                .iter()
                .zip(columns)
                .zip(&self.placeholders)
                .map(|((field, col), placeholder)| match placeholder {
                    Some(nulls) if nulls.len() >= self.numbers.len() => nulls.slice(0, self.numbers.len()),
                    Some(_) => new_null_array(field.data_type(), self.numbers.len()),
                    None => generator.column(*kind, *col, field, &self.numbers),
                })
                .collect(),
            Layout::Event(layout) => layout.generate(generator, &self.schema, &self.numbers)?,
        };
        make_batch(&self.schema, columns, self.numbers.len())
    }
}

#[async_trait]
impl Source for NexmarkSource {
    async fn initialize_state(&mut self, _ctx: &OperatorContext, state: Option<Vec<Value>>) -> Result<()> {
        let Some(entries) = state else {
            return Ok(());
        };
        let mut splits = Vec::with_capacity(entries.len());
        for entry in &entries {
            let pos = SeqSplit::from_entry(NEXMARK, entry)?;
            let start_ns = entry_i64(NEXMARK, entry, "start_ns")?;
            splits.push(self.split(pos, start_ns, true));
        }
        self.splits = splits;
        self.cursor = 0;
        Ok(())
    }

    async fn poll_next(&mut self) -> Result<SourceEvent> {
        let Some(c) = next_active(self.splits.len(), self.cursor, |c| {
            let s = &self.splits[c];
            (s.pos.remaining(s.total) > 0).then_some(s.pos.next)
        }) else {
            return match self.events_num {
                Some(_) => Ok(SourceEvent::Finished),
                // Unbounded and no split: nothing to read, ever.
                None => idle_forever().await,
            };
        };
        let split = &mut self.splits[c];
        let len = (split.max_batch as u64).min(split.pos.remaining(split.total));
        let config = split.generator.config();
        self.numbers.clear();
        let (layout, pos) = (&self.layout, split.pos);
        self.numbers
            .extend((0..len).map(|j| layout.event_number(config, pos.index(j))));
        // Wait until the batch's last event is due, then produce it.
        let last = self.numbers.last().copied().unwrap_or(0);
        split.pacer.wait_until_due(last + 1).await;
        let batch = self.generate(&self.splits[c].generator)?;
        self.splits[c].pos.advance(len);
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
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, TimestampMillisecondType};

    fn full_schema(kind: EventKind) -> SchemaRef {
        Arc::new(Schema::new(
            table_columns(kind)
                .iter()
                .map(|(d, _)| {
                    let dt = match d.kind {
                        crate::columns::ColumnKind::BigInt => DataType::Int64,
                        crate::columns::ColumnKind::Timestamp => {
                            DataType::Timestamp(TimeUnit::Millisecond, None)
                        }
                        _ => DataType::Utf8,
                    };
                    Field::new(d.name, dt, false)
                })
                .collect::<Vec<_>>(),
        ))
    }

    fn spec(kind: EventKind, schema: SchemaRef, extra: &[(&str, &str)]) -> NexmarkSpec {
        let mut kv = vec![("table", kind.table_name()), ("events.num", "10000")];
        kv.extend_from_slice(extra);
        NexmarkSpec::try_new(schema, &options(&kv)).unwrap()
    }

    async fn all(spec: &NexmarkSpec, parallelism: usize) -> RecordBatch {
        let mut batches = Vec::new();
        for i in 0..parallelism {
            batches.extend(collect(spec, i, parallelism).await.unwrap());
        }
        concat_batches(&spec.schema(), &batches).unwrap()
    }

    #[tokio::test]
    async fn proportions_and_ids_are_consistent() {
        let persons = all(&spec(EventKind::Person, full_schema(EventKind::Person), &[]), 1).await;
        let auctions = all(&spec(EventKind::Auction, full_schema(EventKind::Auction), &[]), 1).await;
        let bids = all(&spec(EventKind::Bid, full_schema(EventKind::Bid), &[]), 1).await;
        assert_eq!(
            (persons.num_rows(), auctions.num_rows(), bids.num_rows()),
            (200, 600, 9200)
        );
        // Person and auction ids are sequential from 1000.
        let ids = persons.column(0).as_primitive::<Int64Type>();
        assert!(ids.values().iter().copied().eq(1000..1200));
        let ids = auctions.column(0).as_primitive::<Int64Type>();
        assert!(ids.values().iter().copied().eq(1000..1600));
        // Bids refer to existing (or about to exist) auctions and persons.
        let auction = bids.column(0).as_primitive::<Int64Type>();
        assert!(auction.values().iter().all(|a| (1000..1600 + 10).contains(a)));
        let bidder = bids.column(1).as_primitive::<Int64Type>();
        assert!(bidder.values().iter().all(|b| (1000..1200 + 10).contains(b)));
        // Sellers and categories.
        let seller = auctions.column(7).as_primitive::<Int64Type>();
        assert!(seller.values().iter().all(|s| (1000..1210).contains(s)));
        let category = auctions.column(8).as_primitive::<Int64Type>();
        assert!(category.values().iter().all(|c| (10..15).contains(c)));
        // Prices between $1 and $1M, reserve above the initial bid.
        let price = bids.column(2).as_primitive::<Int64Type>();
        assert!(price.values().iter().all(|p| (100..=100_000_000).contains(p)));
        let initial = auctions.column(3).as_primitive::<Int64Type>();
        let reserve = auctions.column(4).as_primitive::<Int64Type>();
        assert!(initial.values().iter().zip(reserve.values()).all(|(i, r)| r > i));
        // Event time: 10,000 events per second from 2024-01-01, in order.
        let ts = bids.column(5).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_704_067_200_000);
        assert!(ts.values().windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(ts.value(ts.len() - 1), 1_704_067_200_000 + 999);
        let expires = auctions.column(6).as_primitive::<TimestampMillisecondType>();
        let created = auctions.column(5).as_primitive::<TimestampMillisecondType>();
        assert!(expires.values().iter().zip(created.values()).all(|(e, c)| e > c));
        // Strings look like Nexmark's.
        let channel = bids.column(3).as_string::<i32>();
        assert!(
            channel
                .iter()
                .flatten()
                .all(|c| c.starts_with("channel-") || strings::HOT_CHANNELS.contains(&c))
        );
        let url = bids.column(4).as_string::<i32>();
        assert!(
            url.iter()
                .flatten()
                .all(|u| u.starts_with("https://www.nexmark.com/"))
        );
        let extra = bids.column(6).as_string::<i32>();
        assert!(extra.iter().flatten().all(|e| (54..=82).contains(&e.len())));
        let state = persons.column(5).as_string::<i32>();
        assert!(state.iter().flatten().all(|s| strings::US_STATES.contains(&s)));
    }

    #[tokio::test]
    async fn deterministic_and_independent_of_parallelism() {
        let s = spec(EventKind::Bid, full_schema(EventKind::Bid), &[("seed", "3")]);
        let one = all(&s, 1).await;
        assert_eq!(one, all(&s, 1).await);
        let three = all(&s, 3).await;
        assert_eq!(three.num_rows(), one.num_rows());
        // Same rows, in another order: compare sorted by date_time then auction.
        let sort = |b: &RecordBatch| {
            let mut rows: Vec<(i64, i64, i64, i64)> = (0..b.num_rows())
                .map(|i| {
                    (
                        b.column(5).as_primitive::<TimestampMillisecondType>().value(i),
                        b.column(0).as_primitive::<Int64Type>().value(i),
                        b.column(1).as_primitive::<Int64Type>().value(i),
                        b.column(2).as_primitive::<Int64Type>().value(i),
                    )
                })
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(sort(&one), sort(&three));
        let other = all(
            &spec(EventKind::Bid, full_schema(EventKind::Bid), &[("seed", "4")]),
            1,
        )
        .await;
        assert_ne!(other.column(2), one.column(2));
        // Counts per subtask are balanced and sum to the table's share of events.num.
        let mut counts = Vec::new();
        for i in 0..4 {
            let batches = collect(&s, i, 4).await.unwrap();
            counts.push(batches.iter().map(|b| b.num_rows()).sum::<usize>());
        }
        assert_eq!(counts, vec![2300; 4]);
    }

    /// Unread nullable columns are NULL and not generated; the read ones
    /// are exactly the full table's, at any parallelism.
    #[tokio::test]
    async fn reading_only_nulls_unread_columns() {
        let schema = Arc::new(Schema::new(
            full_schema(EventKind::Bid)
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let full = spec(EventKind::Bid, schema.clone(), &[]);
        // auction, price, date_time
        let read = [0, 2, 5];
        let narrow = full.reading_only(&read).expect("bid columns are skippable");
        assert_eq!(narrow.schema(), full.schema());
        for parallelism in [1, 3] {
            let expected = all(&full, parallelism).await;
            let mut batches = Vec::new();
            for i in 0..parallelism {
                batches.extend(collect(narrow.as_ref(), i, parallelism).await.unwrap());
            }
            let got = concat_batches(&schema, &batches).unwrap();
            assert_eq!(got.num_rows(), expected.num_rows());
            for c in 0..schema.fields().len() {
                if read.contains(&c) {
                    assert_eq!(got.column(c), expected.column(c), "column {c}");
                } else {
                    assert_eq!(got.column(c).null_count(), got.num_rows(), "column {c}");
                }
            }
        }
        // Everything read, non-nullable columns, or the combined event table: nothing to skip.
        assert!(full.reading_only(&[0, 1, 2, 3, 4, 5, 6]).is_none());
        let strict = spec(EventKind::Bid, full_schema(EventKind::Bid), &[]);
        assert!(strict.reading_only(&read).is_none());
    }

    #[tokio::test]
    async fn column_subsets_match_the_full_table() {
        let full = all(&spec(EventKind::Auction, full_schema(EventKind::Auction), &[]), 1).await;
        // Declared in another order, another case, other string and timestamp types.
        let subset = Arc::new(Schema::new(vec![
            Field::new(
                "expires",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("itemname", DataType::Utf8View, false),
            Field::new("reserve", DataType::Int64, false),
        ]));
        let part = all(&spec(EventKind::Auction, subset, &[]), 2).await;
        assert_eq!(part.num_rows(), full.num_rows());
        let expires_ms: Vec<i64> = part
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .values()
            .iter()
            .map(|v| v / 1000)
            .collect();
        let mut full_expires = full
            .column(6)
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec();
        let mut sorted = expires_ms.clone();
        sorted.sort();
        full_expires.sort();
        assert_eq!(sorted, full_expires);
        let names = part.column(1).as_string_view();
        assert!(names.iter().flatten().all(|n| n.len() < 20));
    }

    #[tokio::test]
    async fn bounded_disorder() {
        let s = spec(
            EventKind::Bid,
            full_schema(EventKind::Bid),
            &[("max-out-of-order", "2 s"), ("first-event.rate", "100")],
        );
        let bids = all(&s, 1).await;
        let ts = bids.column(5).as_primitive::<TimestampMillisecondType>();
        let mut max = i64::MIN;
        let mut late = 0;
        for t in ts.values() {
            assert!(*t > max.saturating_sub(2_000), "disorder beyond the bound");
            if *t < max {
                late += 1;
            }
            max = max.max(*t);
        }
        assert!(late > 0, "some events are out of order");
    }

    #[test]
    fn option_errors() {
        let schema = full_schema(EventKind::Bid);
        let err = |kv: &[(&str, &str)]| {
            NexmarkSpec::try_new(schema.clone(), &options(kv))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[]).contains("'table'"));
        assert!(err(&[("table", "bids")]).contains("bid, auction, person"));
        let e = err(&[("table", "bid"), ("events", "5")]);
        assert!(e.contains("'events'") && e.contains("events.num"), "{e}");
        assert!(err(&[("table", "bid"), ("rate", "-1")]).contains("'rate'"));
        assert!(err(&[("table", "bid"), ("bid.proportion", "0")]).contains("'bid.proportion'"));
        assert!(err(&[("table", "bid"), ("first-event.time", "soon")]).contains("'first-event.time'"));
        let e = err(&[("table", "person")]);
        assert!(e.contains("'auction'") && e.contains("emailAddress"), "{e}");
        let wrong = Arc::new(Schema::new(vec![Field::new("price", DataType::Int32, false)]));
        let e = NexmarkSpec::try_new(wrong, &options(&[("table", "bid")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'price'") && e.contains("BIGINT"), "{e}");
    }

    #[tokio::test]
    async fn event_table_matches_the_flat_tables() {
        let schema = Arc::new(event::flink_event_schema());
        let kv = [("table", "event"), ("events.num", "1000")];
        let s = NexmarkSpec::try_new(schema, &options(&kv)).unwrap();
        let events = all(&s, 2).await;
        assert_eq!(events.num_rows(), 1000);
        let types = events.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        let count = |t: i32| types.values().iter().filter(|v| **v == t).count();
        assert_eq!((count(0), count(1), count(2)), (20, 60, 920));
        // The bids of the event table are the rows of the bid table.
        let bid_spec = spec(
            EventKind::Bid,
            full_schema(EventKind::Bid),
            &[("events.num", "1000")],
        );
        let bids = all(&bid_spec, 1).await;
        let rows = events.column(3).as_struct();
        let mut from_events: Vec<(i64, i64, i64)> = (0..rows.len())
            .filter(|i| rows.is_valid(*i))
            .map(|i| {
                (
                    rows.column(0).as_primitive::<Int64Type>().value(i),
                    rows.column(2).as_primitive::<Int64Type>().value(i),
                    rows.column(5).as_primitive::<TimestampMillisecondType>().value(i),
                )
            })
            .collect();
        let mut from_bids: Vec<(i64, i64, i64)> = (0..bids.num_rows())
            .map(|i| {
                (
                    bids.column(0).as_primitive::<Int64Type>().value(i),
                    bids.column(2).as_primitive::<Int64Type>().value(i),
                    bids.column(5).as_primitive::<TimestampMillisecondType>().value(i),
                )
            })
            .collect();
        from_events.sort();
        from_bids.sort();
        assert_eq!(from_events, from_bids);
        let e = NexmarkSpec::try_new(full_schema(EventKind::Bid), &options(&[("table", "event")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'auction'") && e.contains("ROW"), "{e}");
    }

    #[tokio::test]
    async fn micro_benchmark_shape() {
        // A larger unthrottled run, checked for shape only (never timed).
        let s = spec(
            EventKind::Bid,
            full_schema(EventKind::Bid),
            &[("events.num", "200000")],
        );
        let batches = collect(&s, 0, 1).await.unwrap();
        assert!(batches.iter().all(|b| b.num_rows() <= DEFAULT_BATCH_SIZE));
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 184_000);
        assert_eq!(batches[0].column(0).null_count(), 0);
    }

    mod resume {
        use super::*;
        use crate::test_util::resume::{check_exact_resume, check_idle_without_splits, check_rescale};
        use serde_json::json;

        #[tokio::test]
        async fn every_table_resumes_exactly_and_rescales() {
            let extra = [("events.num", "20000"), ("batch-size", "700")];
            for kind in [EventKind::Bid, EventKind::Auction, EventKind::Person] {
                let s = spec(kind, full_schema(kind), &extra);
                check_exact_resume(&s, 2, 2, None).await;
                check_rescale(&s, 2, 3, 3).await;
                check_rescale(&s, 2, 1, 3).await;
            }
            let kv = [("table", "event"), ("events.num", "5000"), ("batch-size", "300")];
            let events = NexmarkSpec::try_new(Arc::new(event::flink_event_schema()), &options(&kv)).unwrap();
            check_exact_resume(&events, 2, 3, None).await;
            check_rescale(&events, 2, 3, 2).await;
            check_rescale(&events, 3, 1, 2).await;
        }

        #[tokio::test]
        async fn state_entries_hold_the_table_index_and_event_time_start() {
            let s = spec(
                EventKind::Bid,
                full_schema(EventKind::Bid),
                &[("batch-size", "100"), ("first-event.time", "now")],
            );
            // Event time started at 'now' goes on from the recorded start.
            let snapshots = check_exact_resume(&s, 2, 2, None).await;
            let entry = &snapshots[0][0];
            assert_eq!(
                (&entry["split"], &entry["splits"], &entry["next"]),
                (&json!(0), &json!(2), &json!(400))
            );
            assert!(entry["start_ns"].as_i64().unwrap() > DEFAULT_START_NS);
        }

        #[tokio::test]
        async fn unbounded_resumes_and_waits_without_splits() {
            let kv = [("table", "bid"), ("batch-size", "100")];
            let s = NexmarkSpec::try_new(full_schema(EventKind::Bid), &options(&kv)).unwrap();
            assert!(!s.is_bounded());
            check_exact_resume(&s, 3, 2, Some(3)).await;
            check_idle_without_splits(&s).await;
        }
    }
}

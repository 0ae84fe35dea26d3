//! The `orders` source: the two streams of weir's flagship demo, orders and
//! their payments, consistent with each other.
//!
//! ```sql
//! CREATE TABLE orders (
//!     order_id BIGINT, customer_id BIGINT, product VARCHAR, amount DOUBLE,
//!     order_time TIMESTAMP(3),
//!     WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
//! ) WITH ('connector' = 'orders', 'kind' = 'orders');
//!
//! CREATE TABLE payments (
//!     payment_id BIGINT, order_id BIGINT, amount DOUBLE, method VARCHAR,
//!     pay_time TIMESTAMP(3),
//!     WATERMARK FOR pay_time AS pay_time - INTERVAL '5' SECOND
//! ) WITH ('connector' = 'orders', 'kind' = 'payments');
//! ```
//!
//! # The model
//!
//! Orders are numbered `k = 0, 1, 2, ...`; everything about order `k` is a
//! function of `k` and `seed` alone (see [`crate::random`]), so the two
//! tables agree as long as they share `seed` (default 0), `event-time.*` and
//! `rows-per-second` (or `event-time.step`):
//!
//! - order `k` has `order_id = k + 1`, a customer among `customers`, a product
//!   and an amount (a product's price times a quantity of 1 to 3), and happens
//!   at `event-time.start + k * event-time.step`;
//! - it is paid with probability `1 - payment.unpaid-rate`, by one payment with
//!   `payment_id = order_id`, the same amount, a method, at a time between
//!   1 s and `payment.max-delay` after the order.
//!
//! The payments stream is emitted in the order of payment time (each subtask
//! keeps the payments of its orders in a heap until the order clock passes
//! them), so both streams are ordered by event time, up to the disorder below.
//!
//! # Disorder and late rows
//!
//! Each row's event time is moved back by a random amount less than
//! `max-out-of-orderness` (by at least 1 ms; default 2 s; a payment never
//! before its order), so a watermark of `ts - INTERVAL '2' SECOND` or more
//! never makes a row late. With
//! `late-rate`, that fraction of rows is moved back by a further 1 to 60 s:
//! late rows, for demos of late data.
//!
//! # Time and rate
//!
//! `number-of-rows` bounds the number of *orders* of both tables (the
//! payments table then has the paid ones). With `rows-per-second` (default 10
//! orders per second) event time starts by default at the wall-clock time the
//! job starts, with a step of `1 s / rows-per-second`, so it tracks the wall
//! clock; unthrottled (`'rows-per-second' = '0'`) it starts at 2024-01-01
//! 00:00:00 UTC with a step of 100 ms. Set `event-time.start` for reproducible
//! output at any rate. Subtask `i` of `p` handles the orders `k ≡ i (mod p)`:
//! its split, checkpointed as its next order (see [`OrdersSource`]), so that a
//! restored job resumes both tables exactly, at any parallelism.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Float64Array, Int64Array};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result, plan_err};
use serde_json::Value;
use weir_engine::connector::{Connector, ConnectorOptions, OptionSpec};
use weir_engine::message::CheckpointId;
use weir_engine::operator::OperatorContext;
use weir_engine::source::{Source, SourceEvent, SourceSpec};

use crate::columns::{
    ColumnDef, ColumnKind, StrBuilder, bind_columns, make_batch, timestamp_array, timestamp_unit,
};
use crate::options::{get_batch_size, get_per_second, get_rate};
use crate::pacer::Pacer;
use crate::random::{RowRng, stream_key};
use crate::split::{SeqSplit, entry_i64, idle_forever, next_active};
use crate::time::{
    DEFAULT_START_NS, NANOS_PER_MILLI, StartTime, get_duration_ns, get_start_time, ns_to_unit,
};

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("kind", "'orders' (default) or 'payments'"),
    OptionSpec::new(
        "rows-per-second",
        "orders per second over all subtasks (default 10; 0 = unlimited)",
    ),
    OptionSpec::new("number-of-rows", "number of orders; the source is bounded if set"),
    OptionSpec::new(
        "seed",
        "seed of the random values (default 0); orders and payments must share it",
    ),
    OptionSpec::new(
        "event-time.start",
        "event time of the first order: 'now', epoch millis, or a timestamp",
    ),
    OptionSpec::new(
        "event-time.step",
        "event time between consecutive orders (default 1 s / rows-per-second)",
    ),
    OptionSpec::new(
        "max-out-of-orderness",
        "rows are up to this much late in event time (default 2 s)",
    ),
    OptionSpec::new(
        "late-rate",
        "fraction of rows made later than max-out-of-orderness (default 0)",
    ),
    OptionSpec::new("customers", "number of distinct customers (default 100)"),
    OptionSpec::new(
        "payment.max-delay",
        "the longest time between an order and its payment (default 5 min)",
    ),
    OptionSpec::new(
        "payment.unpaid-rate",
        "fraction of orders never paid (default 0.05)",
    ),
    OptionSpec::new("batch-size", "the most rows per batch (default 1024)"),
];

const DEFAULT_ROWS_PER_SECOND: f64 = 10.0;
const UNLIMITED_STEP_NS: i64 = 100_000_000;
const DEFAULT_DISORDER_NS: i64 = 2_000_000_000;
const DEFAULT_MAX_DELAY_NS: i64 = 300_000_000_000;
const MIN_DELAY_NS: i64 = 1_000_000_000;
const DEFAULT_UNPAID_RATE: f64 = 0.05;
const DEFAULT_CUSTOMERS: u64 = 100;
const DEFAULT_BATCH_SIZE: usize = 1024;
/// The most payments a subtask may hold back (see `payment.max-delay`).
const MAX_PENDING_PAYMENTS: i64 = 10_000_000;
const SECOND_NS: i64 = 1_000_000_000;

/// Products and their prices in cents.
const PRODUCTS: [(&str, i64); 12] = [
    ("keyboard", 4_999),
    ("mouse", 1_999),
    ("monitor", 18_999),
    ("laptop", 99_900),
    ("headphones", 7_950),
    ("webcam", 3_450),
    ("usb-cable", 899),
    ("charger", 2_499),
    ("desk-lamp", 2_999),
    ("backpack", 5_900),
    ("phone-case", 1_299),
    ("speaker", 12_900),
];
/// The most an order costs, in cents.
const MAX_AMOUNT_CENTS: i64 = 99_900 * 3;
/// Payment methods, the first one most common.
const METHODS: [&str; 5] = ["card", "paypal", "bank_transfer", "apple_pay", "gift_card"];

use ColumnKind::{BigInt, Money, Timestamp, Varchar};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    OrderId,
    CustomerId,
    Product,
    Amount,
    OrderTime,
    PaymentId,
    Method,
    PayTime,
}

const ORDERS: &[(ColumnDef, Col)] = &[
    (ColumnDef::new("order_id", BigInt), Col::OrderId),
    (ColumnDef::new("customer_id", BigInt), Col::CustomerId),
    (ColumnDef::new("product", Varchar), Col::Product),
    (ColumnDef::new("amount", Money), Col::Amount),
    (ColumnDef::new("order_time", Timestamp), Col::OrderTime),
];

const PAYMENTS: &[(ColumnDef, Col)] = &[
    (ColumnDef::new("payment_id", BigInt), Col::PaymentId),
    (ColumnDef::new("order_id", BigInt), Col::OrderId),
    (ColumnDef::new("amount", Money), Col::Amount),
    (ColumnDef::new("method", Varchar), Col::Method),
    (ColumnDef::new("pay_time", Timestamp), Col::PayTime),
];

/// Random stream ids.
mod stream {
    pub const CUSTOMER: u64 = 1;
    pub const PRODUCT: u64 = 2;
    pub const ORDER_DISORDER: u64 = 3;
    pub const PAID: u64 = 4;
    pub const DELAY: u64 = 5;
    pub const METHOD: u64 = 6;
    pub const PAY_DISORDER: u64 = 7;
}

/// The `orders` connector (source only). See the [module docs](self).
#[derive(Debug, Default)]
pub struct OrdersConnector;

impl Connector for OrdersConnector {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn options(&self) -> Vec<OptionSpec> {
        OPTIONS.to_vec()
    }

    fn source(&self, schema: SchemaRef, options: &ConnectorOptions) -> Result<Arc<dyn SourceSpec>> {
        Ok(Arc::new(OrdersSpec::try_new(schema, options)?))
    }
}

/// Everything about order `k`, as pure functions of `k`.
#[derive(Debug, Clone)]
struct Model {
    seed: u64,
    start_ns: i64,
    step_ns: i64,
    disorder_ns: i64,
    late_rate: f64,
    customers: u64,
    max_delay_ns: i64,
    unpaid_rate: f64,
}

impl Model {
    #[inline]
    fn rng(&self, s: u64, k: u64) -> RowRng {
        RowRng::new(stream_key(self.seed, s), k)
    }

    /// When order `k` happens, before disorder.
    #[inline]
    fn order_clock(&self, k: u64) -> i64 {
        self.start_ns
            .saturating_add((k as i64).saturating_mul(self.step_ns))
    }

    #[inline]
    fn customer(&self, k: u64) -> i64 {
        1 + self.rng(stream::CUSTOMER, k).below(self.customers) as i64
    }

    /// The product (index into `PRODUCTS`) and amount in cents of order `k`.
    #[inline]
    fn product_and_amount(&self, k: u64) -> (usize, i64) {
        let mut r = self.rng(stream::PRODUCT, k);
        let product = r.index(PRODUCTS.len());
        let quantity = 1 + r.below(3) as i64;
        (product, PRODUCTS[product].1 * quantity)
    }

    /// How far back a row's event time is moved (disorder, or lateness).
    #[inline]
    fn shift(&self, s: u64, k: u64) -> i64 {
        let mut r = self.rng(s, k);
        if self.late_rate > 0.0 && r.chance(self.late_rate) {
            self.disorder_ns
                .saturating_add(SECOND_NS + r.range_i64(0, 59 * SECOND_NS))
        } else if self.disorder_ns > NANOS_PER_MILLI {
            r.range_i64(0, self.disorder_ns - NANOS_PER_MILLI)
        } else {
            0
        }
    }

    #[inline]
    fn order_time(&self, k: u64) -> i64 {
        self.order_clock(k)
            .saturating_sub(self.shift(stream::ORDER_DISORDER, k))
    }

    /// When order `k` is paid, before disorder; `None` if it never is.
    #[inline]
    fn payment_clock(&self, k: u64) -> Option<i64> {
        if self.unpaid_rate > 0.0 && self.rng(stream::PAID, k).chance(self.unpaid_rate) {
            return None;
        }
        let min = MIN_DELAY_NS.min(self.max_delay_ns);
        let delay = self.rng(stream::DELAY, k).range_i64(min, self.max_delay_ns);
        Some(self.order_clock(k).saturating_add(delay))
    }

    /// The payment time of order `k` (paid at `clock`), after disorder: never
    /// before the order, unless the row is made late.
    #[inline]
    fn pay_time(&self, k: u64, clock: i64) -> i64 {
        let shift = self.shift(stream::PAY_DISORDER, k);
        if shift > self.disorder_ns {
            clock.saturating_sub(shift)
        } else {
            clock.saturating_sub(shift).max(self.order_clock(k))
        }
    }

    #[inline]
    fn method(&self, k: u64) -> &'static str {
        let mut r = self.rng(stream::METHOD, k);
        // Cards half of the time, the others evenly.
        if r.below(2) == 0 {
            METHODS[0]
        } else {
            METHODS[1 + r.index(METHODS.len() - 1)]
        }
    }
}

/// A validated `orders` table: creates the subtasks' [`OrdersSource`]s.
#[derive(Debug)]
pub struct OrdersSpec {
    schema: SchemaRef,
    payments: bool,
    columns: Vec<Col>,
    rows_per_second: f64,
    number_of_rows: Option<u64>,
    start: StartTime,
    batch_size: usize,
    /// The model, with a start time to be resolved at `create`.
    model: Model,
}

impl OrdersSpec {
    /// Validates `options` against `schema`.
    pub fn try_new(schema: SchemaRef, options: &ConnectorOptions) -> Result<Self> {
        options.check_known("orders", OPTIONS, &[])?;
        let payments = options.get_enum("kind", &["orders", "payments"])?.as_deref() == Some("payments");
        let table = if payments { PAYMENTS } else { ORDERS };
        let what = if payments {
            "the payments table"
        } else {
            "the orders table"
        };
        let defs: Vec<_> = table.iter().map(|(d, _)| *d).collect();
        let columns: Vec<Col> = bind_columns(what, &schema, &defs)?
            .into_iter()
            .map(|i| table[i].1)
            .collect();
        for field in schema.fields() {
            if let DataType::Decimal128(p, s) = field.data_type() {
                let (p, s) = (u32::from(*p), (*s).max(0) as u32);
                if s < 2 || 10i128.pow(p - s) <= i128::from(MAX_AMOUNT_CENTS / 100) {
                    return plan_err!(
                        "column '{}' is declared as {} but amounts need DECIMAL(p, s) with s >= 2 and p - s >= 4, e.g. DECIMAL(10, 2)",
                        field.name(),
                        field.data_type()
                    );
                }
            }
        }

        let rows_per_second = get_per_second(options, "rows-per-second")?.unwrap_or(DEFAULT_ROWS_PER_SECOND);
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
        let customers = match options.get_u64("customers")? {
            Some(0) => {
                return plan_err!("invalid value '0' for option 'customers': expected a positive integer");
            }
            Some(n) => n,
            None => DEFAULT_CUSTOMERS,
        };
        let max_delay_ns = get_duration_ns(options, "payment.max-delay")?.unwrap_or(DEFAULT_MAX_DELAY_NS);
        if payments && max_delay_ns / step_ns.max(1) > MAX_PENDING_PAYMENTS {
            return plan_err!(
                "option 'payment.max-delay' spans more than {MAX_PENDING_PAYMENTS} orders (at one order every {step_ns} ns): the payments of that many orders would be held in memory; lower it, or raise 'event-time.step'"
            );
        }
        let batch_size = get_batch_size(options, "batch-size", DEFAULT_BATCH_SIZE)?;
        Ok(OrdersSpec {
            schema,
            payments,
            columns,
            rows_per_second,
            number_of_rows: options.get_u64("number-of-rows")?,
            start,
            batch_size,
            model: Model {
                seed: options.get_u64("seed")?.unwrap_or(0),
                start_ns: 0,
                step_ns,
                disorder_ns: get_duration_ns(options, "max-out-of-orderness")?.unwrap_or(DEFAULT_DISORDER_NS),
                late_rate: get_rate(options, "late-rate")?.unwrap_or(0.0),
                customers,
                max_delay_ns,
                unpaid_rate: get_rate(options, "payment.unpaid-rate")?.unwrap_or(DEFAULT_UNPAID_RATE),
            },
        })
    }
}

impl SourceSpec for OrdersSpec {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        self.number_of_rows.is_some()
    }

    fn create(&self, subtask: usize, parallelism: usize) -> Result<Box<dyn Source>> {
        if parallelism == 0 || subtask >= parallelism {
            return Err(DataFusionError::Internal(format!(
                "orders: subtask {subtask} out of range for parallelism {parallelism}"
            )));
        }
        let mut source = OrdersSource {
            schema: Arc::clone(&self.schema),
            payments: self.payments,
            columns: self.columns.clone(),
            model: self.model.clone(),
            number_of_rows: self.number_of_rows,
            rows_per_second: self.rows_per_second,
            batch_size: self.batch_size,
            splits: Vec::new(),
            cursor: 0,
            ready: Vec::new(),
        };
        let split = source.split(
            SeqSplit::fresh(subtask, parallelism),
            self.start.resolve(),
            false,
            false,
        );
        source.splits.push(split);
        Ok(Box::new(source))
    }
}

/// One subtask of an `orders` table: the orders of its splits in order, or
/// their payments in payment-time order (round-robin over the splits, one
/// batch at a time, when it owns several).
///
/// # State
///
/// One entry per split ([`crate::split`]); on a fresh start subtask `i` of
/// `p` owns split `i` of `p`, the orders `k ≡ i (mod p)`:
///
/// ```json
/// {"split": 0, "splits": 2, "next": 4096, "start_ns": 1704067200000000000, "drained": false}
/// ```
///
/// `next` is the split's next order; `start_ns` the resolved
/// `event-time.start`; `drained` (payments) whether the payments still
/// pending after the split's last order were emitted. The payments a split
/// holds back are not recorded: they are recomputed on restore, as the paid
/// orders before `next` whose payment clock is after the clock of the order
/// before `next` (a scan back over `payment.max-delay` of orders, at most
/// the bound that option is checked against). Everything else is a function
/// of the order number. Rate limiting restarts at the restored position.
///
/// Cancel-safe: `poll_next` waits for the rate limiter before advancing; a
/// wait that is dropped leaves the state as it was after the last batch.
pub struct OrdersSource {
    schema: SchemaRef,
    payments: bool,
    columns: Vec<Col>,
    /// The model, with a start time to be set per split.
    model: Model,
    number_of_rows: Option<u64>,
    rows_per_second: f64,
    batch_size: usize,
    splits: Vec<OrdersSplit>,
    /// The split to read next (round-robin).
    cursor: usize,
    /// The orders (`k`) of the batch being built (reused).
    ready: Vec<u64>,
}

/// A split of an `orders` subtask.
struct OrdersSplit {
    pos: SeqSplit,
    model: Model,
    /// Its orders below `number-of-rows`, if bounded.
    total: Option<u64>,
    pacer: Pacer,
    max_batch: usize,
    /// Payments: `(payment clock, k)` of orders processed but not yet paid.
    pending: BinaryHeap<Reverse<(i64, u64)>>,
    /// Payments: the last orders are processed and every payment emitted.
    drained: bool,
}

impl OrdersSplit {
    fn remaining(&self) -> u64 {
        self.pos.remaining(self.total)
    }

    /// Whether the split has rows left to emit.
    fn active(&self, payments: bool) -> bool {
        self.remaining() > 0 || (payments && !self.drained)
    }

    /// The payments pending after the orders before `pos.next`: those of the
    /// orders whose payment comes after the clock of the last of them (all
    /// earlier ones have been emitted). Only the orders less than
    /// `payment.max-delay` before it can be pending.
    fn recompute_pending(&mut self) {
        self.pending.clear();
        if self.drained || self.pos.produced() == 0 {
            return;
        }
        let step = self.pos.splits;
        let last = self.pos.next - step;
        let now = self.model.order_clock(last);
        let mut k = last;
        loop {
            if self.model.order_clock(k).saturating_add(self.model.max_delay_ns) < now {
                break;
            }
            if let Some(clock) = self.model.payment_clock(k)
                && clock > now
            {
                self.pending.push(Reverse((clock, k)));
            }
            if k < self.pos.split + step {
                break;
            }
            k -= step;
        }
    }
}

const ORDERS_SOURCE: &str = "orders";

impl OrdersSource {
    /// A split at `pos` whose clock starts at `start_ns`; `resumed` when
    /// restored (pacing restarts there, pending payments are recomputed).
    fn split(&self, pos: SeqSplit, start_ns: i64, drained: bool, resumed: bool) -> OrdersSplit {
        // Paced on order numbers at the full rate: the splits together keep
        // `rows-per-second` however they are spread over the subtasks.
        let pacer = Pacer::resuming(self.rows_per_second, if resumed { pos.next } else { 0 });
        let mut split = OrdersSplit {
            pos,
            model: Model {
                start_ns,
                ..self.model.clone()
            },
            total: self.number_of_rows,
            max_batch: pacer.batch_len(pos.splits as usize, self.batch_size),
            pacer,
            pending: BinaryHeap::new(),
            drained: drained || !self.payments,
        };
        if self.payments && resumed {
            split.recompute_pending();
        }
        split
    }

    /// Fills `self.ready` with the next rows of split `c`: the next chunk of
    /// orders, or the payments due once the next chunks are processed (none
    /// only if the split just drained an empty heap). Cancel-safe: the only
    /// wait comes before any change.
    async fn advance_split(&mut self, c: usize) {
        let payments = self.payments;
        let split = &mut self.splits[c];
        loop {
            let remaining = split.remaining();
            if remaining == 0 {
                // Payments (an active split): the last orders are processed,
                // pay everything still pending.
                while let Some(Reverse((_, k))) = split.pending.pop() {
                    self.ready.push(k);
                }
                split.drained = true;
                return;
            }
            let len = (split.max_batch as u64).min(remaining);
            let first = split.pos.next;
            let last = split.pos.index(len - 1);
            // Wait until the chunk's last order is due, then advance. Nothing
            // below awaits, so a dropped wait loses nothing.
            split.pacer.wait_until_due(last + 1).await;
            split.pos.advance(len);
            let orders = (0..len).map(|j| first + j * split.pos.splits);
            if !payments {
                self.ready.extend(orders);
                return;
            }
            for k in orders {
                if let Some(clock) = split.model.payment_clock(k) {
                    split.pending.push(Reverse((clock, k)));
                }
            }
            // Payments due by the clock of the last order processed: every
            // later order (and so its payment) comes after it.
            let now = split.model.order_clock(last);
            while let Some(Reverse((clock, k))) = split.pending.peek().copied() {
                if clock > now {
                    break;
                }
                split.pending.pop();
                self.ready.push(k);
            }
            if !self.ready.is_empty() {
                return;
            }
        }
    }

    /// Builds the batch of the rows of `self.ready`.
    fn build(&self, m: &Model) -> Result<RecordBatch> {
        let ks = &self.ready;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (field, col) in self.schema.fields().iter().zip(&self.columns) {
            let dt = field.data_type();
            let array: ArrayRef = match col {
                Col::OrderId | Col::PaymentId => {
                    Arc::new(Int64Array::from_iter_values(ks.iter().map(|k| *k as i64 + 1)))
                }
                Col::CustomerId => Arc::new(Int64Array::from_iter_values(ks.iter().map(|k| m.customer(*k)))),
                Col::Product | Col::Method => {
                    let mut b = StrBuilder::new(dt, ks.len(), ks.len() * 10).ok_or_else(|| {
                        DataFusionError::Internal("orders: string column of a non-string type".into())
                    })?;
                    for k in ks {
                        b.append_value(if *col == Col::Product {
                            PRODUCTS[m.product_and_amount(*k).0].0
                        } else {
                            m.method(*k)
                        });
                    }
                    b.finish()
                }
                Col::Amount => {
                    let cents = ks.iter().map(|k| m.product_and_amount(*k).1);
                    match dt {
                        DataType::Decimal128(p, s) => {
                            let unit = 10i128.pow(((*s).max(2) - 2) as u32);
                            let values: Vec<i128> = cents.map(|c| i128::from(c) * unit).collect();
                            Arc::new(
                                Decimal128Array::new(ScalarBuffer::from(values), None)
                                    .with_precision_and_scale(*p, *s)?,
                            )
                        }
                        _ => Arc::new(Float64Array::from_iter_values(cents.map(|c| c as f64 / 100.0))),
                    }
                }
                Col::OrderTime => {
                    let unit = timestamp_unit(dt);
                    timestamp_array(
                        dt,
                        ks.iter().map(|k| ns_to_unit(m.order_time(*k), unit)).collect(),
                        None,
                    )
                }
                Col::PayTime => {
                    let unit = timestamp_unit(dt);
                    let values = ks
                        .iter()
                        .map(|k| {
                            let clock = m.payment_clock(*k).unwrap_or_else(|| m.order_clock(*k));
                            ns_to_unit(m.pay_time(*k, clock), unit)
                        })
                        .collect();
                    timestamp_array(dt, values, None)
                }
            };
            columns.push(array);
        }
        make_batch(&self.schema, columns, ks.len())
    }
}

#[async_trait]
impl Source for OrdersSource {
    async fn initialize_state(&mut self, _ctx: &OperatorContext, state: Option<Vec<Value>>) -> Result<()> {
        let Some(entries) = state else {
            return Ok(());
        };
        let mut splits = Vec::with_capacity(entries.len());
        for entry in &entries {
            let pos = SeqSplit::from_entry(ORDERS_SOURCE, entry)?;
            let start_ns = entry_i64(ORDERS_SOURCE, entry, "start_ns")?;
            let drained = entry.get("drained").and_then(Value::as_bool).unwrap_or(false);
            splits.push(self.split(pos, start_ns, drained, true));
        }
        self.splits = splits;
        self.cursor = 0;
        Ok(())
    }

    async fn poll_next(&mut self) -> Result<SourceEvent> {
        let payments = self.payments;
        loop {
            let Some(c) = next_active(self.splits.len(), self.cursor, |c| {
                let s = &self.splits[c];
                s.active(payments).then_some(s.pos.next)
            }) else {
                return match self.number_of_rows {
                    Some(_) => Ok(SourceEvent::Finished),
                    // Unbounded and no split: nothing to read, ever.
                    None => idle_forever().await,
                };
            };
            self.ready.clear();
            self.advance_split(c).await;
            self.cursor = c + 1;
            if !self.ready.is_empty() {
                return Ok(SourceEvent::Batch(self.build(&self.splits[c].model)?));
            }
        }
    }

    /// One entry per split: exactly after the last batch returned.
    async fn snapshot_state(&mut self, _checkpoint_id: CheckpointId) -> Result<Vec<Value>> {
        let payments = self.payments;
        Ok(self
            .splits
            .iter()
            .map(|s| {
                let mut m = s.pos.to_entry();
                m.insert("start_ns".into(), s.model.start_ns.into());
                if payments {
                    m.insert("drained".into(), s.drained.into());
                }
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
    use arrow::datatypes::{Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMillisecondType};
    use std::collections::HashMap;

    fn orders_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("order_id", DataType::Int64, false),
            Field::new("customer_id", DataType::Int64, false),
            Field::new("product", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, false),
            Field::new(
                "order_time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    fn payments_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("payment_id", DataType::Int64, false),
            Field::new("order_id", DataType::Int64, false),
            Field::new("amount", DataType::Decimal128(10, 2), false),
            Field::new("method", DataType::Utf8View, false),
            Field::new(
                "pay_time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    const COMMON: &[(&str, &str)] = &[
        ("rows-per-second", "0"),
        ("number-of-rows", "2000"),
        ("event-time.start", "2024-01-01 00:00:00"),
        ("event-time.step", "100 ms"),
        ("payment.max-delay", "1 min"),
    ];

    async fn run(
        kind: &str,
        schema: SchemaRef,
        extra: &[(&str, &str)],
        parallelism: usize,
    ) -> Vec<RecordBatch> {
        let mut kv = COMMON.to_vec();
        kv.push(("kind", kind));
        kv.extend_from_slice(extra);
        let spec = OrdersSpec::try_new(schema, &options(&kv)).unwrap();
        assert!(spec.is_bounded());
        let mut out = Vec::new();
        for i in 0..parallelism {
            out.push(concat_batches(&spec.schema(), &collect(&spec, i, parallelism).await.unwrap()).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn payments_match_orders() {
        let orders = concat_batches(&orders_schema(), &run("orders", orders_schema(), &[], 1).await).unwrap();
        let payments = run("payments", payments_schema(), &[], 1).await.remove(0);
        assert_eq!(orders.num_rows(), 2000);
        let ids = orders.column(0).as_primitive::<Int64Type>();
        assert!(ids.values().iter().copied().eq(1..=2000));
        let customers = orders.column(1).as_primitive::<Int64Type>();
        assert!(customers.values().iter().all(|c| (1..=100).contains(c)));
        let by_id: HashMap<i64, (f64, i64)> = (0..orders.num_rows())
            .map(|i| {
                (
                    ids.value(i),
                    (
                        orders.column(3).as_primitive::<Float64Type>().value(i),
                        orders
                            .column(4)
                            .as_primitive::<TimestampMillisecondType>()
                            .value(i),
                    ),
                )
            })
            .collect();
        // About 95% of the orders are paid, each once, with the same amount,
        // after the order and within the maximum delay (plus disorder).
        let n = payments.num_rows();
        assert!((1800..2000).contains(&n), "{n} payments");
        let order_ids = payments.column(1).as_primitive::<Int64Type>();
        let mut seen = std::collections::HashSet::new();
        let amounts = payments
            .column(2)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        let pay_time = payments.column(4).as_primitive::<TimestampMillisecondType>();
        let mut max_seen = i64::MIN;
        for i in 0..n {
            let id = order_ids.value(i);
            assert!(seen.insert(id), "order {id} paid twice");
            assert_eq!(payments.column(0).as_primitive::<Int64Type>().value(i), id);
            let (amount, order_time) = by_id[&id];
            assert_eq!(amounts.value(i), (amount * 100.0).round() as i128);
            let t = pay_time.value(i);
            let order_clock = 1_704_067_200_000 + (id - 1) * 100;
            assert!(t >= order_clock && t >= order_time, "paid before the order");
            assert!(t <= order_clock + 60_000, "paid too late");
            // Ordered by payment time up to 2 s of disorder.
            assert!(t > max_seen.saturating_sub(2_000), "disorder beyond the bound");
            max_seen = max_seen.max(t);
        }
        assert!(
            payments
                .column(3)
                .as_string_view()
                .iter()
                .flatten()
                .all(|m| METHODS.contains(&m))
        );
    }

    #[tokio::test]
    async fn deterministic_and_split_over_subtasks() {
        let one = run("payments", payments_schema(), &[], 1).await.remove(0);
        assert_eq!(one, run("payments", payments_schema(), &[], 1).await.remove(0));
        let parts = run("payments", payments_schema(), &[], 3).await;
        let mut ids: Vec<i64> = parts
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        ids.sort();
        let mut expected = one.column(1).as_primitive::<Int64Type>().values().to_vec();
        expected.sort();
        assert_eq!(ids, expected);
        for (i, part) in parts.iter().enumerate() {
            let order_ids = part.column(1).as_primitive::<Int64Type>();
            assert!(order_ids.values().iter().all(|id| (id - 1) % 3 == i as i64));
        }
        let other = run("payments", payments_schema(), &[("seed", "9")], 1)
            .await
            .remove(0);
        assert_ne!(other.column(1), one.column(1));
    }

    #[tokio::test]
    async fn late_rows_and_in_order_rows() {
        let ordered = run("orders", orders_schema(), &[("max-out-of-orderness", "0 s")], 1)
            .await
            .remove(0);
        let t = ordered.column(4).as_primitive::<TimestampMillisecondType>();
        assert!(t.values().windows(2).all(|w| w[0] < w[1]));
        let late = run("orders", orders_schema(), &[("late-rate", "0.1")], 1)
            .await
            .remove(0);
        let t = late.column(4).as_primitive::<TimestampMillisecondType>();
        let late_rows = (0..t.len())
            .filter(|i| t.value(*i) < 1_704_067_200_000 + *i as i64 * 100 - 2_000)
            .count();
        assert!((100..300).contains(&late_rows), "{late_rows} late rows of 2000");
    }

    #[test]
    fn option_errors() {
        let err = |schema: SchemaRef, kv: &[(&str, &str)]| {
            OrdersSpec::try_new(schema, &options(kv)).unwrap_err().to_string()
        };
        let e = err(orders_schema(), &[("kinds", "orders")]);
        assert!(e.contains("'kinds'") && e.contains("payment.max-delay"), "{e}");
        assert!(err(orders_schema(), &[("kind", "refunds")]).contains("'kind'"));
        let e = err(payments_schema(), &[]);
        assert!(e.contains("payment_id") && e.contains("orders table"), "{e}");
        assert!(err(orders_schema(), &[("late-rate", "5")]).contains("'late-rate'"));
        assert!(err(orders_schema(), &[("customers", "0")]).contains("'customers'"));
        assert!(err(orders_schema(), &[("payment.max-delay", "later")]).contains("'payment.max-delay'"));
        let far = [
            ("kind", "payments"),
            ("payment.max-delay", "1000 d"),
            ("rows-per-second", "1000"),
        ];
        assert!(err(payments_schema(), &far).contains("'payment.max-delay'"));
        let small = Arc::new(Schema::new(vec![Field::new(
            "amount",
            DataType::Decimal128(4, 2),
            false,
        )]));
        assert!(err(small, &[]).contains("DECIMAL(10, 2)"));
        assert!(OrdersSpec::try_new(orders_schema(), &options(&[])).is_ok());
    }

    #[tokio::test]
    async fn rate_limited_defaults_start_now() {
        let spec = OrdersSpec::try_new(
            orders_schema(),
            &options(&[("rows-per-second", "1000"), ("number-of-rows", "10")]),
        )
        .unwrap();
        let before = crate::time::now_ns() / 1_000_000;
        let batches = collect(&spec, 0, 1).await.unwrap();
        let t = batches[0].column(4).as_primitive::<TimestampMillisecondType>();
        assert!(t.value(0) >= before - 2_000 && t.null_count() == 0);
    }

    mod resume {
        use super::*;
        use crate::test_util::resume::{check_exact_resume, check_idle_without_splits, check_rescale, start};
        use serde_json::json;

        fn table(kind: &str, schema: SchemaRef, extra: &[(&str, &str)]) -> OrdersSpec {
            let mut kv = COMMON.to_vec();
            kv.push(("kind", kind));
            kv.push(("batch-size", "100"));
            kv.extend_from_slice(extra);
            OrdersSpec::try_new(schema, &options(&kv)).unwrap()
        }

        #[tokio::test]
        async fn orders_resume_exactly_and_rescale() {
            let s = table("orders", orders_schema(), &[("late-rate", "0.1")]);
            let snapshots = check_exact_resume(&s, 2, 3, None).await;
            assert_eq!(
                snapshots[1],
                vec![json!({"split": 1, "splits": 2, "next": 601, "start_ns": DEFAULT_START_NS})]
            );
            check_rescale(&s, 2, 3, 4).await;
            check_rescale(&s, 2, 1, 4).await;
        }

        #[tokio::test]
        async fn payments_resume_exactly_at_any_point() {
            // 1000 orders per subtask in chunks of 100; a payment waits up to
            // a minute (600 orders): the held-back payments are recomputed.
            let s = table("payments", payments_schema(), &[]);
            for before in [1, 3, 7, 10, 11] {
                check_exact_resume(&s, 2, before, None).await;
            }
        }

        #[tokio::test]
        async fn payments_rescale_without_loss_or_duplicates() {
            let s = table("payments", payments_schema(), &[("late-rate", "0.05")]);
            check_rescale(&s, 2, 3, 4).await;
            check_rescale(&s, 2, 1, 4).await;
            check_rescale(&s, 3, 2, 2).await;
            // After the last orders, before and after the final payments.
            check_rescale(&s, 2, 3, 10).await;
            check_rescale(&s, 2, 1, 100).await;
            let mut src = start(&s, 0, 2, None).await.unwrap();
            while !matches!(src.poll_next().await.unwrap(), SourceEvent::Finished) {}
            let state = src.snapshot_state(1).await.unwrap();
            assert_eq!(state[0]["drained"], json!(true));
        }

        #[tokio::test]
        async fn unbounded_resumes_and_waits_without_splits() {
            let mut s = table("payments", payments_schema(), &[]);
            s.number_of_rows = None;
            check_exact_resume(&s, 2, 4, Some(5)).await;
            check_idle_without_splits(&s).await;
        }
    }
}

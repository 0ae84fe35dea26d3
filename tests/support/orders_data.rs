//! Input and expected output of the orders ⋈ payments pipeline
//! (`examples/sql/orders_pipeline.sql`), for tests that run it.
//!
//! [`generate`] makes deterministic orders and payments (a seeded RNG), as
//! the JSON records of each partition of the `orders` and `payments` topics in
//! the order they are to be produced, with:
//! - **out-of-order rows**: within a partition, rows are produced up to 4 s out
//!   of event-time order, less than the tables' 5 s watermark delay, so they are
//!   never behind the watermark;
//! - **late rows**, produced 30 s to 5 min after their event time, behind their
//!   partition's watermark; whether the job's watermark has passed them when
//!   they reach a join depends on timing (other partitions, the other topic,
//!   restarts: watermarks are not checkpointed), so their effect must not
//!   depend on it: a *late order* has no payment (the left interval join emits
//!   it unmatched either way: at once if late, else when its 15 minutes
//!   expire), and a *late payment* is paid outside its order's 15 minutes
//!   (it never matches in the interval joins; it still makes its order `paid` in
//!   `order_status`, a regular join that ignores time);
//! - **boundary cases** of `BETWEEN o.order_time AND o.order_time + 15 min`:
//!   payments at exactly 0 and exactly 15 minutes (matched) and 15 min + 1 ms
//!   (not matched);
//! - **trailing rows**, one order and its payment per partition an hour after
//!   the rest, produced last: they push every partition's watermark past every
//!   order's 15 minutes and every window, so every unmatched order and every
//!   window is emitted by the watermark itself.
//!
//! [`expected`] computes the four outputs with DataFusion's batch engine over
//! the same rows (independently of weir's streaming operators), and the
//! `*_of` functions decode what the pipeline wrote to Kafka into the same
//! shapes.
//!
//! Include it with `event_time` and `kafka_broker`:
//! `#[path = "support/orders_data.rs"] mod orders_data;`.

// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use weir::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use weir::arrow::compute::cast;
use weir::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use weir::datafusion::datasource::MemTable;
use weir::datafusion::prelude::SessionContext;

use crate::event_time::{BASE_MS, parse_ms, timestamp_text};
use crate::kafka_broker::Record;

/// Partitions of the input topics; a row goes to partition `order_id % 3`.
pub const PARTITIONS: i32 = 3;
/// Event time between consecutive orders.
pub const ORDER_STEP_MS: i64 = 500;
const MINUTE_MS: i64 = 60_000;
/// The interval of the joins: a payment matches if `0 <= pay - order <= 15 min`.
pub const PAY_WITHIN_MS: i64 = 15 * MINUTE_MS;
/// The most a row that is not late is produced after rows with a later time
/// (the tables' watermark delay is 5 s).
const MAX_DISORDER_MS: i64 = 4_000;

const PRODUCTS: [(&str, i64); 6] = [
    ("keyboard", 4_999),
    ("mouse", 1_999),
    ("monitor", 18_999),
    ("laptop", 99_900),
    ("usb-cable", 899),
    ("speaker", 12_900),
];
const METHODS: [&str; 3] = ["card", "paypal", "bank_transfer"];

#[derive(Debug, Clone)]
pub struct Order {
    pub order_id: i64,
    pub customer_id: i64,
    pub product: &'static str,
    pub amount_cents: i64,
    /// Event time, epoch ms.
    pub order_time: i64,
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub payment_id: i64,
    pub order_id: i64,
    pub amount_cents: i64,
    pub method: &'static str,
    /// Event time, epoch ms.
    pub pay_time: i64,
}

/// How many rows of each kind [`generate`] made (to check the data has them).
#[derive(Debug, Default, Clone)]
pub struct Mix {
    pub late_orders: usize,
    pub late_payments: usize,
    pub unpaid: usize,
    pub paid_at_order_time: usize,
    pub paid_at_15_minutes: usize,
    pub paid_just_after_15_minutes: usize,
    pub paid_after_15_minutes: usize,
    /// Rows produced after a row of their partition with a later event time.
    pub out_of_order_orders: usize,
    pub out_of_order_payments: usize,
}

/// The generated input.
pub struct Input {
    pub orders: Vec<Order>,
    pub payments: Vec<Payment>,
    /// Per partition, the JSON values of the `orders` topic in produce order.
    pub order_records: Vec<Vec<String>>,
    /// Per partition, the JSON values of the `payments` topic in produce order.
    pub payment_records: Vec<Vec<String>>,
    pub mix: Mix,
}

fn amount_text(cents: i64) -> String {
    // The shortest text that parses back to the same f64.
    format!("{}", cents as f64 / 100.0)
}

impl Order {
    fn json(&self) -> String {
        format!(
            r#"{{"order_id": {}, "customer_id": {}, "product": "{}", "amount": {}, "order_time": "{}"}}"#,
            self.order_id,
            self.customer_id,
            self.product,
            amount_text(self.amount_cents),
            timestamp_text(self.order_time)
        )
    }
}

impl Payment {
    fn json(&self) -> String {
        format!(
            r#"{{"payment_id": {}, "order_id": {}, "amount": {}, "method": "{}", "pay_time": "{}"}}"#,
            self.payment_id,
            self.order_id,
            amount_text(self.amount_cents),
            self.method,
            timestamp_text(self.pay_time)
        )
    }
}

/// `orders` orders from 2024-01-01 00:00:00, one every 500 ms, and their
/// payments (see the module docs), plus the trailing rows.
pub fn generate(seed: u64, orders: usize) -> Input {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut mix = Mix::default();
    let mut out_orders = Vec::new();
    let mut out_payments = Vec::new();
    // (produce-order key, tie-breaker, json) per partition.
    let mut order_queue: Vec<Vec<(i64, i64, String)>> = vec![Vec::new(); PARTITIONS as usize];
    let mut payment_queue: Vec<Vec<(i64, i64, String)>> = vec![Vec::new(); PARTITIONS as usize];
    let late_by = |rng: &mut rand_pcg::Pcg64| rng.random_range(30_000..300_000);
    for k in 0..orders as i64 {
        let (product, price) = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
        let order = Order {
            order_id: k + 1,
            customer_id: rng.random_range(1..=50),
            product,
            amount_cents: price * rng.random_range(1..=3),
            order_time: BASE_MS + k * ORDER_STEP_MS,
        };
        let partition = (order.order_id % PARTITIONS as i64) as usize;
        let roll = rng.random_range(0..1000);
        let late_order = roll < 20;
        let order_key = if late_order {
            mix.late_orders += 1;
            order.order_time + late_by(&mut rng)
        } else {
            order.order_time + rng.random_range(0..=MAX_DISORDER_MS)
        };
        order_queue[partition].push((order_key, order.order_id, order.json()));
        let delay = match roll {
            // Late orders are never paid.
            0..20 => None,
            20..120 => {
                mix.unpaid += 1;
                None
            }
            120..140 => {
                mix.late_payments += 1;
                Some((PAY_WITHIN_MS + rng.random_range(1..180_000), true))
            }
            140..170 => {
                mix.paid_at_order_time += 1;
                Some((0, false))
            }
            170..200 => {
                mix.paid_at_15_minutes += 1;
                Some((PAY_WITHIN_MS, false))
            }
            200..230 => {
                mix.paid_just_after_15_minutes += 1;
                Some((PAY_WITHIN_MS + 1, false))
            }
            _ => {
                let d = rng.random_range(1..20 * MINUTE_MS);
                if d > PAY_WITHIN_MS {
                    mix.paid_after_15_minutes += 1;
                }
                Some((d, false))
            }
        };
        if let Some((delay, late)) = delay {
            let payment = Payment {
                payment_id: 1_000_000 + order.order_id,
                order_id: order.order_id,
                amount_cents: order.amount_cents,
                method: METHODS[rng.random_range(0..METHODS.len())],
                pay_time: order.order_time + delay,
            };
            let key = if late {
                payment.pay_time + late_by(&mut rng)
            } else {
                payment.pay_time + rng.random_range(0..=MAX_DISORDER_MS)
            };
            payment_queue[partition].push((key, payment.payment_id, payment.json()));
            out_payments.push(payment);
        }
        out_orders.push(order);
    }
    // Trailing rows: an order and its payment per partition, an hour after the rest.
    let last = BASE_MS + orders as i64 * ORDER_STEP_MS;
    for i in 0..PARTITIONS as i64 {
        let order = Order {
            order_id: orders as i64 + 1 + i,
            customer_id: 1,
            product: PRODUCTS[0].0,
            amount_cents: PRODUCTS[0].1,
            order_time: last + 60 * MINUTE_MS + i,
        };
        let payment = Payment {
            payment_id: 1_000_000 + order.order_id,
            order_id: order.order_id,
            amount_cents: order.amount_cents,
            method: METHODS[0],
            pay_time: order.order_time + 1_000,
        };
        let partition = (order.order_id % PARTITIONS as i64) as usize;
        order_queue[partition].push((i64::MAX, order.order_id, order.json()));
        payment_queue[partition].push((i64::MAX, payment.payment_id, payment.json()));
        out_orders.push(order);
        out_payments.push(payment);
    }
    let order_records = in_produce_order(order_queue, &mut mix.out_of_order_orders);
    let payment_records = in_produce_order(payment_queue, &mut mix.out_of_order_payments);
    Input {
        orders: out_orders,
        payments: out_payments,
        order_records,
        payment_records,
        mix,
    }
}

/// Each partition's records sorted by their produce-order key; counts the
/// rows produced after a row with a later event time.
fn in_produce_order(queues: Vec<Vec<(i64, i64, String)>>, out_of_order: &mut usize) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(queues.len());
    for mut queue in queues {
        queue.sort();
        let mut max = i64::MIN;
        for (_, _, json) in &queue {
            let t = event_time_of(json);
            if t < max {
                *out_of_order += 1;
            }
            max = max.max(t);
        }
        out.push(queue.into_iter().map(|(_, _, json)| json).collect());
    }
    out
}

/// The event time of a generated JSON record (`order_time` or `pay_time`).
fn event_time_of(json: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(json).expect("generated JSON");
    let t = v.get("order_time").or_else(|| v.get("pay_time")).expect("a time");
    parse_ms(t.as_str().expect("a timestamp text"))
}

/// A `paid_orders` row: order id, customer, product, amount in cents, order
/// time, payment id, method, pay time (times in epoch ms).
pub type Paid = (i64, i64, String, i64, i64, i64, String, i64);
/// An `unpaid_orders` row: order id, customer, product, amount in cents, order time.
pub type Unpaid = (i64, i64, String, i64, i64);

/// A `revenue_per_minute` row (keyed by `window_start`).
#[derive(Debug, Clone, PartialEq)]
pub struct Revenue {
    pub window_end: i64,
    pub orders: i64,
    pub revenue_cents: i64,
    pub avg_amount: f64,
    pub max_cents: i64,
}

impl Revenue {
    /// Equal, with the average within a rounding step (it is rounded to cents,
    /// and a sum in another order may round a tie the other way).
    pub fn matches(&self, want: &Revenue) -> bool {
        self.window_end == want.window_end
            && self.orders == want.orders
            && self.revenue_cents == want.revenue_cents
            && self.max_cents == want.max_cents
            && (self.avg_amount - want.avg_amount).abs() <= 0.0100001
    }
}

/// An `order_status` row (keyed by `order_id`): customer, amount in cents,
/// status, payment id, pay time.
pub type Status = (i64, i64, String, Option<i64>, Option<i64>);

/// The pipeline's four outputs.
#[derive(Debug)]
pub struct Outputs {
    /// Sorted.
    pub paid: Vec<Paid>,
    /// Sorted.
    pub unpaid: Vec<Unpaid>,
    /// By window start; several values = the window was written more than once.
    pub revenue: BTreeMap<i64, Vec<Revenue>>,
    /// By order id: the table `order_status` stands for.
    pub status: BTreeMap<i64, Status>,
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

/// The expected outputs, by DataFusion's batch engine over `input`: the
/// interval joins as ordinary joins with the time condition, the windows with
/// `date_bin`, the final status per order from whether it has any payment (an
/// order without one is `overdue` once the input ends: every such order is
/// unpaid after 15 minutes, and the trailing rows pass all of them).
pub async fn expected(input: &Input) -> Outputs {
    let ctx = SessionContext::new();
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, None);
    let orders_schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("product", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("order_time", ts(), false),
    ]));
    let orders = RecordBatch::try_new(
        orders_schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                input.orders.iter().map(|o| o.order_id),
            )),
            Arc::new(Int64Array::from_iter_values(
                input.orders.iter().map(|o| o.customer_id),
            )),
            Arc::new(StringArray::from_iter_values(
                input.orders.iter().map(|o| o.product),
            )),
            Arc::new(Float64Array::from_iter_values(
                input.orders.iter().map(|o| o.amount_cents as f64 / 100.0),
            )),
            Arc::new(weir::arrow::array::TimestampMillisecondArray::from_iter_values(
                input.orders.iter().map(|o| o.order_time),
            )),
        ],
    )
    .expect("orders batch");
    let payments_schema = Arc::new(Schema::new(vec![
        Field::new("payment_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("pay_time", ts(), false),
    ]));
    let payments = RecordBatch::try_new(
        payments_schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                input.payments.iter().map(|p| p.payment_id),
            )),
            Arc::new(Int64Array::from_iter_values(
                input.payments.iter().map(|p| p.order_id),
            )),
            Arc::new(Float64Array::from_iter_values(
                input.payments.iter().map(|p| p.amount_cents as f64 / 100.0),
            )),
            Arc::new(StringArray::from_iter_values(
                input.payments.iter().map(|p| p.method),
            )),
            Arc::new(weir::arrow::array::TimestampMillisecondArray::from_iter_values(
                input.payments.iter().map(|p| p.pay_time),
            )),
        ],
    )
    .expect("payments batch");
    ctx.register_table(
        "orders",
        Arc::new(MemTable::try_new(orders_schema, vec![vec![orders]]).expect("orders table")),
    )
    .expect("register orders");
    ctx.register_table(
        "payments",
        Arc::new(MemTable::try_new(payments_schema, vec![vec![payments]]).expect("payments table")),
    )
    .expect("register payments");
    let paid_in_time = "SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time,
                               p.payment_id, p.method, p.pay_time
                        FROM orders o JOIN payments p ON o.order_id = p.order_id
                        WHERE p.pay_time >= o.order_time
                          AND p.pay_time <= o.order_time + INTERVAL '15 minutes'";
    let query = |sql: String| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx
                .sql(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            Columns::of(&batches)
        }
    };

    let c = query(paid_in_time.to_string()).await;
    let mut paid: Vec<Paid> = (0..c.rows)
        .map(|i| {
            (
                c.int("order_id", i),
                c.int("customer_id", i),
                c.text("product", i),
                cents(c.float("amount", i)),
                c.int("order_time", i),
                c.int("payment_id", i),
                c.text("method", i),
                c.int("pay_time", i),
            )
        })
        .collect();
    paid.sort();

    // Not the left join of the pipeline: an anti join.
    let c = query(
        "SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time FROM orders o
         WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.order_id
                           AND p.pay_time >= o.order_time
                           AND p.pay_time <= o.order_time + INTERVAL '15 minutes')"
            .to_string(),
    )
    .await;
    let mut unpaid: Vec<Unpaid> = (0..c.rows)
        .map(|i| {
            (
                c.int("order_id", i),
                c.int("customer_id", i),
                c.text("product", i),
                cents(c.float("amount", i)),
                c.int("order_time", i),
            )
        })
        .collect();
    unpaid.sort();

    let c = query(format!(
        "SELECT date_bin(INTERVAL '1 minute', pay_time, TIMESTAMP '1970-01-01 00:00:00') AS window_start,
                count(*) AS orders, sum(amount) AS revenue, avg(amount) AS avg_amount, max(amount) AS max_amount
         FROM ({paid_in_time}) GROUP BY 1"
    ))
    .await;
    let revenue = (0..c.rows)
        .map(|i| {
            let start = c.int("window_start", i);
            let avg = c.float("avg_amount", i);
            (
                start,
                vec![Revenue {
                    window_end: start + MINUTE_MS,
                    orders: c.int("orders", i),
                    revenue_cents: cents(c.float("revenue", i)),
                    avg_amount: (avg * 100.0).round() / 100.0,
                    max_cents: cents(c.float("max_amount", i)),
                }],
            )
        })
        .collect();

    let c = query(
        "SELECT o.order_id, o.customer_id, o.amount,
                CASE WHEN p.payment_id IS NULL THEN 'overdue' ELSE 'paid' END AS status,
                p.payment_id, p.pay_time
         FROM orders o LEFT JOIN payments p ON o.order_id = p.order_id"
            .to_string(),
    )
    .await;
    let mut status = BTreeMap::new();
    for i in 0..c.rows {
        let previous = status.insert(
            c.int("order_id", i),
            (
                c.int("customer_id", i),
                cents(c.float("amount", i)),
                c.text("status", i),
                c.opt_int("payment_id", i),
                c.opt_int("pay_time", i),
            ),
        );
        assert!(previous.is_none(), "one payment per order at most");
    }
    Outputs {
        paid,
        unpaid,
        revenue,
        status,
    }
}

/// Result columns by name, concatenated, with timestamps as epoch ms.
struct Columns {
    rows: usize,
    columns: BTreeMap<String, ArrayRef>,
}

impl Columns {
    fn of(batches: &[RecordBatch]) -> Columns {
        let batch = weir::arrow::compute::concat_batches(
            &batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| Arc::new(Schema::empty())),
            batches,
        )
        .expect("concat");
        let columns = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| {
                let c = match c.data_type() {
                    DataType::Timestamp(..) => {
                        let ms = cast(c, &DataType::Timestamp(TimeUnit::Millisecond, None)).expect("ms");
                        cast(&ms, &DataType::Int64).expect("to i64")
                    }
                    DataType::Utf8View | DataType::LargeUtf8 => cast(c, &DataType::Utf8).expect("to utf8"),
                    _ => c.clone(),
                };
                (f.name().clone(), c)
            })
            .collect();
        Columns {
            rows: batch.num_rows(),
            columns,
        }
    }

    fn column(&self, name: &str) -> &ArrayRef {
        self.columns
            .get(name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns.keys()))
    }

    fn opt_int(&self, name: &str, i: usize) -> Option<i64> {
        let c = self.column(name);
        let a = c.as_any().downcast_ref::<Int64Array>().expect("an Int64 column");
        (!a.is_null(i)).then(|| a.value(i))
    }

    fn int(&self, name: &str, i: usize) -> i64 {
        self.opt_int(name, i).expect("not null")
    }

    fn float(&self, name: &str, i: usize) -> f64 {
        let c = self.column(name);
        c.as_any()
            .downcast_ref::<Float64Array>()
            .expect("a Float64 column")
            .value(i)
    }

    fn text(&self, name: &str, i: usize) -> String {
        let c = self.column(name);
        c.as_any()
            .downcast_ref::<StringArray>()
            .expect("a Utf8 column")
            .value(i)
            .to_string()
    }
}

fn json(record: &Record) -> serde_json::Value {
    serde_json::from_str(&record.value).unwrap_or_else(|e| panic!("{e}: {record:?}"))
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v.get(name).unwrap_or_else(|| panic!("no field {name} in {v}"))
}

fn int_field(v: &serde_json::Value, name: &str) -> i64 {
    field(v, name)
        .as_i64()
        .unwrap_or_else(|| panic!("{name} is not an integer in {v}"))
}

fn float_field(v: &serde_json::Value, name: &str) -> f64 {
    field(v, name)
        .as_f64()
        .unwrap_or_else(|| panic!("{name} is not a number in {v}"))
}

fn text_field(v: &serde_json::Value, name: &str) -> String {
    field(v, name)
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not a string in {v}"))
        .to_string()
}

fn time_field(v: &serde_json::Value, name: &str) -> i64 {
    parse_ms(&text_field(v, name))
}

/// `paid_orders` records as rows, sorted.
pub fn paid_of(records: &[Record]) -> Vec<Paid> {
    let mut rows: Vec<Paid> = records
        .iter()
        .map(|r| {
            let v = json(r);
            (
                int_field(&v, "order_id"),
                int_field(&v, "customer_id"),
                text_field(&v, "product"),
                cents(float_field(&v, "amount")),
                time_field(&v, "order_time"),
                int_field(&v, "payment_id"),
                text_field(&v, "method"),
                time_field(&v, "pay_time"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// `unpaid_orders` records as rows, sorted.
pub fn unpaid_of(records: &[Record]) -> Vec<Unpaid> {
    let mut rows: Vec<Unpaid> = records
        .iter()
        .map(|r| {
            let v = json(r);
            (
                int_field(&v, "order_id"),
                int_field(&v, "customer_id"),
                text_field(&v, "product"),
                cents(float_field(&v, "amount")),
                time_field(&v, "order_time"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// `revenue_per_minute` records by window start.
pub fn revenue_of(records: &[Record]) -> BTreeMap<i64, Vec<Revenue>> {
    let mut out: BTreeMap<i64, Vec<Revenue>> = BTreeMap::new();
    for r in records {
        let v = json(r);
        out.entry(time_field(&v, "window_start"))
            .or_default()
            .push(Revenue {
                window_end: time_field(&v, "window_end"),
                orders: int_field(&v, "orders"),
                revenue_cents: cents(float_field(&v, "revenue")),
                avg_amount: float_field(&v, "avg_amount"),
                max_cents: cents(float_field(&v, "max_amount")),
            });
    }
    out
}

/// The table an `order_status` changelog stands for: each partition replayed
/// in offset order, the last value per key, a tombstone deleting it.
pub fn status_of(records: &[Record]) -> BTreeMap<i64, Status> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut table = BTreeMap::new();
    for r in sorted {
        let key: serde_json::Value =
            serde_json::from_str(r.key.as_deref().unwrap_or_else(|| panic!("no key: {r:?}")))
                .unwrap_or_else(|e| panic!("{e}: {r:?}"));
        let order_id = int_field(&key, "order_id");
        if r.value.is_empty() {
            table.remove(&order_id);
            continue;
        }
        let v = json(r);
        let opt = |name: &str| v.get(name).filter(|x| !x.is_null());
        table.insert(
            order_id,
            (
                int_field(&v, "customer_id"),
                cents(float_field(&v, "amount")),
                text_field(&v, "status"),
                opt("payment_id").map(|_| int_field(&v, "payment_id")),
                opt("pay_time").map(|_| time_field(&v, "pay_time")),
            ),
        );
    }
    table
}

/// What differs between two sorted multisets: rows missing from `got` and
/// rows in excess, with their counts (at most `limit` lines).
pub fn multiset_diff<T: Ord + Debug>(want: &[T], got: &[T], limit: usize) -> Vec<String> {
    let mut counts: BTreeMap<&T, (usize, usize)> = BTreeMap::new();
    for w in want {
        counts.entry(w).or_default().0 += 1;
    }
    for g in got {
        counts.entry(g).or_default().1 += 1;
    }
    counts
        .into_iter()
        .filter(|(_, (w, g))| w != g)
        .take(limit)
        .map(|(row, (w, g))| format!("{row:?}: expected {w} time(s), got {g}"))
        .collect()
}

/// Every difference between the outputs read back and the expected ones
/// (empty if they are equal), at most `limit` lines per output.
pub fn differences(want: &Outputs, got: &Outputs, limit: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for d in multiset_diff(&want.paid, &got.paid, limit) {
        problems.push(format!("paid_orders {d}"));
    }
    for d in multiset_diff(&want.unpaid, &got.unpaid, limit) {
        problems.push(format!("unpaid_orders {d}"));
    }
    let mut revenue = Vec::new();
    for (start, w) in &want.revenue {
        match got.revenue.get(start).map(Vec::as_slice) {
            Some([one]) if one.matches(&w[0]) => {}
            None => revenue.push(format!(
                "window {}: missing, want {:?}",
                timestamp_text(*start),
                w[0]
            )),
            Some(other) => revenue.push(format!(
                "window {}: got {other:?}, want once {:?}",
                timestamp_text(*start),
                w[0]
            )),
        }
    }
    for (start, g) in &got.revenue {
        if !want.revenue.contains_key(start) {
            revenue.push(format!("window {}: unexpected {g:?}", timestamp_text(*start)));
        }
    }
    problems.extend(
        revenue
            .into_iter()
            .take(limit)
            .map(|d| format!("revenue_per_minute {d}")),
    );
    let mut status = Vec::new();
    for (id, w) in &want.status {
        match got.status.get(id) {
            Some(g) if g == w => {}
            g => status.push(format!("order {id}: got {g:?}, want {w:?}")),
        }
    }
    for (id, g) in &got.status {
        if !want.status.contains_key(id) {
            status.push(format!("order {id}: unexpected {g:?}"));
        }
    }
    problems.extend(
        status
            .into_iter()
            .take(limit)
            .map(|d| format!("order_status {d}")),
    );
    problems
}

//! The orders ⋈ payments pipeline embedded in a Rust program: orders and
//! their payments, joined within 15 minutes (an interval join), the orders
//! not paid in time (a left interval join), revenue per minute of payment
//! time (a TUMBLE window over the join), and each order's status as a
//! changelog (regular joins): the four queries of
//! `examples/sql/orders_pipeline.sql`.
//!
//! ```text
//! cargo run --example orders_pipeline                       # in-process, a few seconds
//! cargo run --example orders_pipeline -- --orders 20000     # more orders
//! cargo run --example orders_pipeline -- --kafka 127.0.0.1:9092              # through Kafka
//! cargo run --example orders_pipeline -- --kafka 127.0.0.1:9092 --feed-only  # fill the input topics
//! ```
//!
//! By default the orders and payments come from the built-in `orders`
//! connector (bounded and unthrottled: 3000 orders one second apart in event
//! time from 2024-01-01 00:00:00, 5 % never paid, payments up to 20 minutes
//! after their order, rows up to 2 s out of order), and each query's result is
//! collected in this process and summarized. The order status is an updating
//! result: its changes (`+I`, `-U`, `+U`, `-D`) are applied to a map, as an
//! upsert sink would.
//!
//! With `--kafka <bootstrap>`, the same generated rows are first written to
//! the Kafka topics `orders` and `payments` (JSON), then the SQL script runs
//! as is, but with that broker and reading the input topics up to their
//! current end: its four jobs write `paid_orders`, `unpaid_orders`,
//! `revenue_per_minute` and `order_status` exactly once. The topics must
//! exist. `--feed-only` stops after writing the input, for `weir -f
//! examples/sql/orders_pipeline.sql` to read it.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir::RowKind;
use weir::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use weir::arrow::compute::{SortOptions, concat_batches, sort_to_indices, take_record_batch};

/// The pipeline's SQL script (its `CREATE VIEW`s and `SELECT`s are repeated below).
const SCRIPT: &str = include_str!("sql/orders_pipeline.sql");

/// Paid within 15 minutes (interval join), and not (left interval join).
const VIEWS: &str = "
CREATE VIEW order_payments AS
SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time,
       p.payment_id, p.method, p.pay_time
FROM orders o
JOIN payments p
  ON o.order_id = p.order_id
 AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE;

CREATE VIEW overdue_orders AS
SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time
FROM orders o
LEFT JOIN payments p
  ON o.order_id = p.order_id
 AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE
WHERE p.payment_id IS NULL;";

const PAID_ORDERS: &str = "SELECT * FROM order_payments";

const UNPAID_ORDERS: &str = "SELECT * FROM overdue_orders";

const REVENUE_PER_MINUTE: &str = "
SELECT window_start, window_end, count(*) AS orders, round(sum(amount), 2) AS revenue,
       round(avg(amount), 2) AS avg_amount, max(amount) AS max_amount
FROM TABLE(TUMBLE(TABLE order_payments, DESCRIPTOR(pay_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end";

const ORDER_STATUS: &str = "
SELECT o.order_id, o.customer_id, o.amount,
       CASE WHEN p.payment_id IS NOT NULL THEN 'paid'
            WHEN u.order_id IS NOT NULL THEN 'overdue'
            ELSE 'created' END AS status,
       p.payment_id, p.pay_time
FROM orders o
LEFT JOIN payments p ON o.order_id = p.order_id
LEFT JOIN overdue_orders u ON o.order_id = u.order_id";

/// The generated streams' options: the two tables must agree on all of them.
fn generator(kind: &str, orders: u64) -> String {
    format!(
        "'connector' = 'orders', 'kind' = '{kind}', 'number-of-rows' = '{orders}', 'rows-per-second' = '0',
         'event-time.start' = '2024-01-01 00:00:00', 'event-time.step' = '1 s', 'seed' = '42',
         'payment.unpaid-rate' = '0.05', 'payment.max-delay' = '20 min', 'max-out-of-orderness' = '2 s'"
    )
}

fn input_tables(orders: u64, watermarks: bool) -> String {
    let (ow, pw) = if watermarks {
        (
            ",\n WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND",
            ",\n WATERMARK FOR pay_time AS pay_time - INTERVAL '5' SECOND",
        )
    } else {
        ("", "")
    };
    format!(
        "CREATE TABLE orders (
            order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE, order_time TIMESTAMP(3){ow}
         ) WITH ({});
         CREATE TABLE payments (
            payment_id BIGINT, order_id BIGINT, amount DOUBLE, method STRING, pay_time TIMESTAMP(3){pw}
         ) WITH ({});",
        generator("orders", orders),
        generator("payments", orders)
    )
}

struct Args {
    kafka: Option<String>,
    feed_only: bool,
    orders: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        kafka: None,
        feed_only: false,
        orders: 3000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--kafka" => args.kafka = Some(it.next().ok_or("--kafka needs a bootstrap address")?),
            "--feed-only" => args.feed_only = true,
            "--orders" => {
                let n = it.next().ok_or("--orders needs a number")?;
                args.orders = n.parse().map_err(|_| format!("--orders: not a number: '{n}'"))?;
            }
            other => {
                return Err(format!(
                    "unknown argument '{other}'\nusage: orders_pipeline [--orders N] [--kafka HOST:PORT [--feed-only]]"
                ));
            }
        }
    }
    if args.feed_only && args.kafka.is_none() {
        return Err("--feed-only needs --kafka".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    match &args.kafka {
        None => in_process(args.orders).await,
        Some(bootstrap) => {
            feed_kafka(bootstrap, args.orders).await?;
            if args.feed_only {
                return Ok(());
            }
            through_kafka(bootstrap).await
        }
    }
}

/// The four queries over the generated streams, their results collected here.
async fn in_process(orders: u64) -> Result<(), Box<dyn std::error::Error>> {
    let engine = weir::Engine::new();
    engine.execute("SET 'parallelism.default' = '2'").await?;
    engine.execute(&input_tables(orders, true)).await?;
    engine.execute(VIEWS).await?;

    // Each query is a job of its own; they run at the same time.
    let paid = engine.query(PAID_ORDERS).await?;
    let unpaid = engine.query(UNPAID_ORDERS).await?;
    let revenue = engine.query(REVENUE_PER_MINUTE).await?;
    let mut status = engine.query(ORDER_STATUS).await?;
    assert!(!paid.is_updating() && !unpaid.is_updating() && !revenue.is_updating());
    assert!(status.is_updating(), "regular joins produce a changelog");

    // The changelog of the order status, applied to a map (the latest row per
    // order, a delete removing it), as an upsert sink keyed by order_id does.
    let status_table = async move {
        let mut table: BTreeMap<i64, String> = BTreeMap::new();
        let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
        while let Some(changes) = status.next_changes().await {
            let changes = changes?;
            let ids = column::<Int64Array>(&changes.rows, "order_id");
            let statuses = weir::arrow::compute::cast(
                changes.rows.column_by_name("status").expect("status"),
                &weir::arrow::datatypes::DataType::Utf8,
            )
            .map_err(weir::datafusion::error::DataFusionError::from)?;
            let statuses = statuses.as_any().downcast_ref::<StringArray>().expect("text");
            for (i, kind) in changes.kinds().enumerate() {
                *kinds.entry(kind.short_string()).or_default() += 1;
                match kind {
                    RowKind::Insert | RowKind::UpdateAfter => {
                        table.insert(ids.value(i), statuses.value(i).to_string());
                    }
                    // `-U` is followed by its `+U`; `-D` deletes.
                    RowKind::UpdateBefore => {}
                    RowKind::Delete => {
                        table.remove(&ids.value(i));
                    }
                }
            }
        }
        Ok::<_, weir::Error>((table, kinds))
    };
    let (paid, unpaid, revenue, (status_table, kinds)) =
        tokio::try_join!(paid.collect(), unpaid.collect(), revenue.collect(), status_table)?;

    let paid = sorted(&paid, "order_id")?;
    println!(
        "paid_orders: {} orders paid within 15 minutes, the first ones:",
        paid.num_rows()
    );
    println!(
        "{}",
        weir::format::table(&[paid.slice(0, paid.num_rows().min(5))])?
    );

    let unpaid = sorted(&unpaid, "order_id")?;
    println!(
        "\nunpaid_orders: {} orders not paid within 15 minutes, the first ones:",
        unpaid.num_rows()
    );
    println!(
        "{}",
        weir::format::table(&[unpaid.slice(0, unpaid.num_rows().min(5))])?
    );

    let revenue = sorted(&revenue, "window_start")?;
    println!(
        "\nrevenue_per_minute: {} windows of payment time, the first ones:",
        revenue.num_rows()
    );
    println!(
        "{}",
        weir::format::table(&[revenue.slice(0, revenue.num_rows().min(10))])?
    );

    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for s in status_table.values() {
        *by_status.entry(s.as_str()).or_default() += 1;
    }
    println!(
        "\norder_status: {} orders, final status {by_status:?}, from {} changes {kinds:?}",
        status_table.len(),
        kinds.values().sum::<usize>()
    );
    println!(
        "(an order paid after its 15 minutes is both in unpaid_orders and 'paid': \
         the status join has no time bound)"
    );
    Ok(())
}

/// Writes the generated orders and payments to the Kafka topics `orders` and
/// `payments`, as JSON.
async fn feed_kafka(bootstrap: &str, orders: u64) -> Result<(), Box<dyn std::error::Error>> {
    let engine = weir::Engine::new();
    engine.execute(&input_tables(orders, false)).await?;
    for (table, columns) in [
        (
            "orders",
            "order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE, order_time TIMESTAMP(3)",
        ),
        (
            "payments",
            "payment_id BIGINT, order_id BIGINT, amount DOUBLE, method STRING, pay_time TIMESTAMP(3)",
        ),
    ] {
        engine
            .execute(&format!(
                "CREATE TABLE {table}_topic ({columns}) WITH (
                   'connector' = 'kafka', 'topic' = '{table}', 'properties.bootstrap.servers' = '{bootstrap}',
                   'format' = 'json', 'sink.delivery-guarantee' = 'at-least-once')"
            ))
            .await?;
    }
    let jobs = [
        engine
            .submit("INSERT INTO orders_topic SELECT * FROM orders")
            .await?,
        engine
            .submit("INSERT INTO payments_topic SELECT * FROM payments")
            .await?,
    ];
    for job in &jobs {
        job.wait().await?;
        let written = job.metrics().last().map(|m| m.rows_in).unwrap_or(0);
        println!("{}: {written} rows written to Kafka", job.name());
    }
    Ok(())
}

/// Runs the SQL script's four jobs against `bootstrap`, reading the input
/// topics up to their current end, and waits for them.
async fn through_kafka(bootstrap: &str) -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("weir-orders-pipeline-{}", std::process::id()));
    let script = SCRIPT
        .replace("127.0.0.1:9092", bootstrap)
        .replace("/tmp/weir/orders-pipeline", &dir.display().to_string())
        .replace(
            "'scan.startup.mode' = 'earliest-offset',",
            "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',",
        );
    let engine = weir::Engine::new();
    let mut jobs = Vec::new();
    for result in engine.execute(&script).await? {
        if let weir::StatementResult::Job(job) = result {
            println!("started job {} ({})", job.id(), job.name());
            jobs.push(job);
        }
    }
    for job in &jobs {
        job.wait().await?;
        let written = job.metrics().last().map(|m| m.rows_in).unwrap_or(0);
        let checkpoints = job.checkpoints().len();
        println!(
            "{}: {written} rows written to topic {} ({checkpoints} checkpoints)",
            job.name(),
            job.name()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The column `name` of `batch` as an `A`.
fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> &'a A {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .unwrap_or_else(|| panic!("column {name}"))
}

/// The batches as one, sorted by `key`.
fn sorted(batches: &[RecordBatch], key: &str) -> Result<RecordBatch, Box<dyn std::error::Error>> {
    let Some(first) = batches.first() else {
        return Err("no rows".into());
    };
    let all = concat_batches(&first.schema(), batches)?;
    let key = all.column_by_name(key).map(Arc::clone).ok_or("no such column")?;
    let order = sort_to_indices(&key, Some(SortOptions::default()), None)?;
    Ok(take_record_batch(&all, &order)?)
}

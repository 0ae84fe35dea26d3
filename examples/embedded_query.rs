//! Embedding weir: create a table, run a windowed `SELECT`, and consume its
//! result as a stream of Arrow `RecordBatch`es.
//!
//! ```text
//! cargo run --example embedded_query
//! ```
//!
//! The `orders` table is generated in-process and bounded (`number-of-rows`),
//! and unthrottled (`rows-per-second` = 0), so its event time starts at
//! 2024-01-01 00:00:00 UTC and advances by 100 ms per order: 300 orders span
//! 30 seconds of event time, i.e. three 10-second windows (and a fourth just
//! before the start, for the few orders that the generator's 2 s of disorder
//! moves there). Each window's rows arrive in a batch as soon as the
//! watermark passes the window's end.

use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An engine is a catalog, a session configuration and the jobs it runs.
    // It spawns its jobs on the current tokio runtime.
    let engine = weir::Engine::new();

    // DDL: a bounded, deterministic stream of orders with an event-time
    // watermark (rows may be up to 2 s out of order).
    engine
        .execute(
            "CREATE TABLE orders (
                order_id    BIGINT,
                customer_id BIGINT,
                product     STRING,
                amount      DOUBLE,
                order_time  TIMESTAMP(3),
                WATERMARK FOR order_time AS order_time - INTERVAL '2' SECOND
            ) WITH (
                'connector' = 'orders',
                'number-of-rows' = '300',
                'rows-per-second' = '0',
                'seed' = '7'
            )",
        )
        .await?;

    // A window TVF query: orders and revenue per product and 10-second
    // tumbling window.
    let mut result = engine
        .query(
            "SELECT window_start, window_end, product, count(*) AS orders, round(sum(amount), 2) AS revenue
             FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_time), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end, product",
        )
        .await?;
    println!(
        "result schema: {:?}",
        result
            .schema()
            .fields()
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
    );
    println!("updating (changelog)? {}", result.is_updating());

    // `QueryResult` is a `futures::Stream` of `weir::Result<RecordBatch>`;
    // `next_batch()` is the same without the `StreamExt` import. The stream
    // ends when the (bounded) source is exhausted and the job finishes.
    let mut batches = 0;
    while let Some(batch) = result.next().await {
        let batch = batch?;
        batches += 1;
        println!("batch {batches}: {} row(s)", batch.num_rows());
        println!("{}", weir::format::table(&[batch])?);
    }
    println!(
        "job {} ended: {}",
        result.job().id(),
        result.job().status().name()
    );
    Ok(())
}

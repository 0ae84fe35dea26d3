//! Updating results: a non-windowed `GROUP BY` produces a changelog, as in
//! Flink. Each result row carries its kind: `+I` (insert), `-U` / `+U` (the
//! old and new versions of an updated row), `-D` (delete).
//!
//! ```text
//! cargo run --example changelog
//! ```
//!
//! Twelve orders from three customers arrive in batches of three; every batch
//! updates the running totals of the customers it touches, retracting the
//! previous total (`-U`) before emitting the new one (`+U`).

use weir::RowKind;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = weir::Engine::new();
    engine
        .execute(
            "CREATE TABLE orders (
                order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE,
                order_time TIMESTAMP(3)
            ) WITH (
                'connector' = 'orders',
                'number-of-rows' = '12',
                'rows-per-second' = '0',
                'customers' = '3',
                'batch-size' = '3'
            )",
        )
        .await?;

    // No window: the totals are never final, so every change is emitted.
    let mut result = engine
        .query(
            "SELECT customer_id, count(*) AS orders, round(sum(amount), 2) AS total
             FROM orders GROUP BY customer_id",
        )
        .await?;
    assert!(result.is_updating(), "a non-windowed aggregate is a changelog");

    // `next_changes` splits each batch into its rows and their kinds.
    let mut current = std::collections::BTreeMap::new();
    let mut batch = 0;
    while let Some(changes) = result.next_changes().await {
        let changes = changes?;
        batch += 1;
        println!("-- batch {batch}");
        let rows = weir::format::rows(&changes.rows)?;
        for (kind, row) in changes.kinds().zip(rows) {
            println!("{} {}", kind.short_string(), row.join(" | "));
            // Applying the changelog gives the current result: retractions
            // remove a row, accumulations add one.
            let key = row[0].clone();
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => current.insert(key, row),
                RowKind::UpdateBefore | RowKind::Delete => current.remove(&key),
            };
        }
    }

    println!("\nfinal result (the changelog applied):");
    for row in current.values() {
        println!("  customer {}: {} orders, total {}", row[0], row[1], row[2]);
    }
    Ok(())
}

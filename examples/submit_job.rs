//! Submitting a background job: `INSERT INTO` a `filesystem` sink (JSON
//! lines), watching it through its `JobHandle`, then reading its output back
//! through a `filesystem` source table.
//!
//! ```text
//! cargo run --example submit_job
//! ```
//!
//! The source is throttled to 3000 orders per second, so the job runs for
//! about two seconds and its progress can be watched. Output goes to a fresh
//! temporary directory, removed at the end.

use std::time::Duration;

use weir::JobStatus;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("revenue");
    let engine = weir::Engine::new();

    // Two subtasks per operator: the sink writes one part file per subtask.
    engine.execute("SET 'parallelism.default' = '2'").await?;

    // 6000 orders, 100 ms apart in event time from 2024-01-01 00:00:00:
    // ten minutes of event time, produced in about two seconds of wall time.
    engine
        .execute(
            "CREATE TABLE orders (
                order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE,
                order_time TIMESTAMP(3),
                WATERMARK FOR order_time AS order_time - INTERVAL '2' SECOND
            ) WITH (
                'connector' = 'orders',
                'number-of-rows' = '6000',
                'rows-per-second' = '3000',
                'event-time.start' = '2024-01-01 00:00:00',
                'event-time.step' = '100 ms'
            )",
        )
        .await?;

    // The sink table: JSON lines in a directory.
    let columns =
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), product STRING, orders BIGINT, revenue DOUBLE";
    engine
        .execute(&format!(
            "CREATE TABLE revenue ({columns})
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            out.display()
        ))
        .await?;

    // `submit` starts the job and returns at once with its handle.
    let job = engine
        .submit(
            "INSERT INTO revenue
             SELECT window_start, window_end, product, count(*), round(sum(amount), 2)
             FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end, product",
        )
        .await?;
    println!("submitted job {} ('{}')", job.id(), job.name());

    // Watch it: status and per-operator counters (summed over subtasks).
    while job.status() == JobStatus::Running {
        println!("status: {}", job.status().name());
        print_metrics(&job);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // `wait` returns the final status, or the error if the job failed.
    let status = job.wait().await?;
    println!("final status: {}", status.name());
    print_metrics(&job);

    // The sink committed its part files (renamed them from hidden in-progress files).
    let mut files: Vec<String> = std::fs::read_dir(&out)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    files.sort();
    println!("files in {}: {files:?}", out.display());

    // Read them back: a `filesystem` source table over the same directory is bounded.
    engine
        .execute(&format!(
            "CREATE TABLE revenue_archive ({columns})
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            out.display()
        ))
        .await?;
    let batches = engine
        .query(
            "SELECT window_start, window_end, product, orders, revenue FROM revenue_archive
             WHERE window_start = TIMESTAMP '2024-01-01 00:03:00'",
        )
        .await?
        .collect()
        .await?;
    println!("one window, read back from the files:");
    println!("{}", weir::format::table(&batches)?);
    Ok(())
}

/// Prints the job's counters, one line per operator (summed over its subtasks).
fn print_metrics(job: &weir::JobHandle) {
    for m in job.metrics() {
        println!(
            "  {:>6} rows in {:>6} rows out  x{}  {}",
            m.rows_in, m.rows_out, m.parallelism, m.operator_name
        );
    }
}

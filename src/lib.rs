//! # weir: streaming SQL, embedded
//!
//! weir runs Flink-style streaming SQL in-process: create tables over
//! connectors, run `SELECT`s whose results stream in as Arrow batches (a
//! changelog for updating queries), and submit `INSERT INTO ... SELECT ...`
//! jobs that run in the background on your tokio runtime.
//!
//! ```no_run
//! # async fn demo() -> weir::Result<()> {
//! let engine = weir::Engine::new();
//! engine.execute("
//!     CREATE TABLE orders (order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE,
//!                          order_time TIMESTAMP(3),
//!                          WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND)
//!     WITH ('connector' = 'orders', 'number-of-rows' = '1000');
//! ").await?;
//! let mut result = engine.query("
//!     SELECT window_start, count(*) AS orders, sum(amount) AS revenue
//!     FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
//!     GROUP BY window_start, window_end").await?;
//! while let Some(batch) = result.next_batch().await {
//!     println!("{}", weir::format::table(&[batch?]).unwrap());
//! }
//! # Ok(()) }
//! ```
//!
//! The crates behind it: [`weir_engine`] (runtime), [`weir_sql`] (parser and
//! planner), [`weir_connectors`] (sources and sinks).

pub mod config_file;
mod engine;
mod error;
pub mod format;
mod help;
mod result;

pub use engine::{Engine, EngineBuilder, builtin_connectors, builtin_state_backends, sql_type};
pub use error::{Error, ErrorKind, Result};
pub use result::{ChangeBatch, QueryResult, StatementResult};
pub use weir_engine::changelog::RowKind;
pub use weir_engine::runtime::{JobHandle, JobStatus};
pub use {arrow, datafusion, weir_connectors, weir_engine, weir_sql};

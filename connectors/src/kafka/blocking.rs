//! Running librdkafka's blocking calls (broker round trips, flushes,
//! transaction starts and commits) off the async runtime's threads.

use datafusion::common::{DataFusionError, Result};

/// Runs `f` on tokio's blocking pool and returns its result; a panic in
/// `f` becomes an error.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DataFusionError::Execution(format!("kafka: a blocking librdkafka call failed: {e}")))?
}

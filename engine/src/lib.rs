//! weir's streaming runtime.
//!
//! A job is a [`graph::JobGraph`] of operators. Each operator subtask runs as
//! one tokio task that reads [`message::Message`]s from bounded channels
//! (backpressure) and writes them downstream, forward or hash-partitioned by
//! key over key groups. Control — watermarks, checkpoint barriers, end of
//! stream — travels in band with the data.
//!
//! This crate knows nothing of SQL or of any particular connector: the SQL
//! planner builds graphs, connectors plug in through [`connector::Connector`].

pub mod changelog;
pub mod connector;
pub mod key_group;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod source;
pub mod state;

pub use datafusion;
#[doc(hidden)]
pub use fail as __fail;
pub mod checkpoint;
pub mod exchange;
pub mod graph;
pub mod operators;
pub mod runtime;
pub mod values;
pub mod watermark;
pub mod watermark_alignment;

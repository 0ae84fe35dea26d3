//! The `kafka` and `upsert-kafka` connectors: librdkafka for producing and
//! consuming, and a small Kafka protocol client ([`protocol`]) for the
//! requests librdkafka cannot make, such as committing another producer's
//! transaction when a sink recovers its pending transactions from a
//! checkpoint.
//!
//! - [`source`]: partitions assigned to subtasks explicitly (no group
//!   rebalancing); offsets are operator state, the only truth on restore;
//!   per-partition watermarks; malformed records fail naming topic,
//!   partition and offset, or are skipped and counted.
//! - [`sink`]: `exactly-once` (a Kafka transaction per subtask and
//!   checkpoint, committed when the checkpoint completes and recovered by id,
//!   producer id and epoch after a crash), `at-least-once`, `none`; upsert
//!   tables write tombstones for deletes.

mod blocking;
pub mod config;
mod connector;
mod decode;
mod encode;
pub mod format;
pub mod protocol;
pub mod sink;
pub mod source;

pub use connector::{KafkaConnector, UpsertKafkaConnector};

//! weir's connectors: sources and sinks that plug into the engine through
//! [`weir_engine::connector::Connector`], looked up by a table's
//! `'connector'` option.
//!
//! | `'connector'` | source | sink | module |
//! |---|---|---|---|
//! | `datagen` | random / sequential rows for any schema | | [`datagen`] |
//! | `nexmark` | the Nexmark benchmark's persons, auctions and bids | | [`nexmark`] |
//! | `orders` | the orders / payments demo streams | | [`orders`] |
//! | `filesystem` | JSON lines, CSV, Parquet files (bounded) | JSON lines, CSV, Parquet | [`filesystem`] |
//! | `kafka` | Kafka topics (JSON, raw), offsets in checkpoints | exactly-once (transactions), at-least-once | [`kafka`] |
//! | `upsert-kafka` | | a changelog keyed by the primary key, tombstones for deletes | [`kafka`] |
//! | `print` | | rows to stdout, Flink's `+I[...]` form | [`print`](mod@print) |
//! | `blackhole` | | discards everything | [`blackhole`] |
//!
//! # Checkpoints
//!
//! Every source resumes exactly from a checkpoint, at the same or another
//! parallelism: its state is one entry per split, the split's position (see
//! [`split`] for the generators, [`filesystem::source`] for files). The
//! `filesystem` sink is exactly-once: a two-phase commit of part files
//! ([`filesystem::sink`]). `print` and `blackhole` keep no state.
//!
//! Option names follow Flink's. Every connector validates its options when
//! the table is created: unknown options are reported with the list of valid
//! ones, bad values name the option.
//!
//! # Schema conventions
//!
//! - Sources produce exactly the table's declared columns (a generator with a
//!   fixed schema lets a table declare any subset of its columns, in any
//!   order, matched by name case-insensitively).
//! - `TIMESTAMP(p)` columns may use any Arrow time unit, with or without a time
//!   zone; the generators' native precision is milliseconds (`TIMESTAMP(3)`).
//! - Sinks receive their table's rows; an updating stream carries Flink's row
//!   kinds in a trailing `_op` column ([`weir_engine::changelog`]).

#![warn(missing_docs)]

pub mod blackhole;
pub mod columns;
pub mod datagen;
pub mod filesystem;
pub mod kafka;
pub mod nexmark;
pub mod options;
pub mod orders;
pub mod pacer;
pub mod print;
pub mod random;
pub mod split;
pub mod time;

#[cfg(test)]
mod test_util;

use std::sync::Arc;

use weir_engine::connector::ConnectorRegistry;

/// Registers every connector of this crate in `registry`.
pub fn register_all(registry: &mut ConnectorRegistry) {
    registry.register(Arc::new(datagen::DatagenConnector));
    registry.register(Arc::new(nexmark::NexmarkConnector));
    registry.register(Arc::new(orders::OrdersConnector));
    registry.register(Arc::new(filesystem::FileSystemConnector));
    registry.register(Arc::new(print::PrintConnector));
    registry.register(Arc::new(blackhole::BlackholeConnector));
    registry.register(Arc::new(kafka::KafkaConnector));
    registry.register(Arc::new(kafka::UpsertKafkaConnector));
}

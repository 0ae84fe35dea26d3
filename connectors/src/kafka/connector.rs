//! The `kafka` and `upsert-kafka` connectors: their options and metadata
//! columns, and the sources and sinks they create.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result;
use weir_engine::connector::{Connector, MetadataSpec, OptionSpec, SinkSpec, TableRequest};
use weir_engine::source::SourceSpec;

use super::sink::KafkaSinkSpec;
use super::source::KafkaSourceSpec;

const COMMON_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("topic", "the topic; a source may name several separated by ';'"),
    OptionSpec::new(
        "properties.bootstrap.servers",
        "the brokers, 'host:port[,host:port...]' (required)",
    ),
    OptionSpec::new(
        "properties.*",
        "passed to librdkafka without the prefix (e.g. properties.security.protocol, properties.sasl.mechanism)",
    ),
    OptionSpec::new(
        "format",
        "the value's format: 'json' or 'raw' (or 'value.format')",
    ),
    OptionSpec::new("value.format", "the value's format: 'json' or 'raw'"),
    OptionSpec::new("key.format", "the key's format: 'json' or 'raw'"),
    OptionSpec::new("key.fields", "the columns in the key, separated by ';'"),
    OptionSpec::new(
        "value.fields-include",
        "'ALL' (default): every column in the value; 'EXCEPT_KEY': key columns only in the key",
    ),
    OptionSpec::new(
        "json.ignore-parse-errors",
        "skip (and count) malformed records instead of failing (default false)",
    ),
    OptionSpec::new(
        "json.fail-on-missing-field",
        "a record without some column is malformed (default false: null)",
    ),
    OptionSpec::new(
        "json.timestamp-format.standard",
        "'SQL' (default, 2024-01-01 00:00:05) or 'ISO-8601'",
    ),
];

const SOURCE_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("topic-pattern", "a regular expression of the topics to read"),
    OptionSpec::new(
        "scan.startup.mode",
        "'group-offsets' (default), 'earliest-offset', 'latest-offset', 'timestamp' or 'specific-offsets'",
    ),
    OptionSpec::new(
        "scan.startup.timestamp-millis",
        "with scan.startup.mode 'timestamp': the first record's timestamp",
    ),
    OptionSpec::new(
        "scan.startup.specific-offsets",
        "with 'specific-offsets': 'partition:0,offset:42;partition:1,offset:300'",
    ),
    OptionSpec::new(
        "scan.bounded.mode",
        "'unbounded' (default), 'latest-offset' (the ends seen at start), 'timestamp' or 'specific-offsets'",
    ),
    OptionSpec::new(
        "scan.bounded.timestamp-millis",
        "with scan.bounded.mode 'timestamp': stop before the first record at or after it",
    ),
    OptionSpec::new(
        "scan.bounded.specific-offsets",
        "with 'specific-offsets': stop before these, 'partition:0,offset:42;partition:1,offset:300'",
    ),
    OptionSpec::new(
        "scan.topic-partition-discovery.interval",
        "how often to look for new partitions and topics (default 5 min; 0 turns it off)",
    ),
];

const SINK_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "sink.delivery-guarantee",
        "'exactly-once' (Kafka transactions committed with checkpoints), 'at-least-once' (default) or 'none'",
    ),
    OptionSpec::new(
        "sink.transactional-id-prefix",
        "exactly-once: the prefix of the sink's transactional ids (default weir-<job>-<operator>)",
    ),
    OptionSpec::new(
        "sink.partitioner",
        "'default' (by key hash, else sticky), 'fixed' (subtask i writes partition i mod n) or 'round-robin'",
    ),
];

/// The metadata columns both connectors offer (Flink's names).
fn metadata_specs() -> Vec<MetadataSpec> {
    vec![
        MetadataSpec {
            key: "topic",
            data_type: DataType::Utf8,
            writable: false,
            description: "the record's topic",
        },
        MetadataSpec {
            key: "partition",
            data_type: DataType::Int32,
            writable: false,
            description: "the record's partition",
        },
        MetadataSpec {
            key: "offset",
            data_type: DataType::Int64,
            writable: false,
            description: "the record's offset in its partition",
        },
        MetadataSpec {
            key: "timestamp",
            data_type: DataType::Timestamp(TimeUnit::Millisecond, None),
            writable: true,
            description: "the record's timestamp (a sink writes it)",
        },
        MetadataSpec {
            key: "timestamp-type",
            data_type: DataType::Utf8,
            writable: false,
            description: "'CreateTime', 'LogAppendTime' or 'NoTimestampType'",
        },
        MetadataSpec {
            key: "key",
            data_type: DataType::Utf8,
            writable: false,
            description: "the record's key as text (null when it has none)",
        },
    ]
}

/// `'connector' = 'kafka'`: an append-only source and sink of Kafka topics.
///
/// ```sql
/// CREATE TABLE orders (order_id BIGINT, amount DOUBLE, ts TIMESTAMP(3),
///     part INT METADATA FROM 'partition' VIRTUAL,
///     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
/// WITH ('connector' = 'kafka', 'topic' = 'orders',
///       'properties.bootstrap.servers' = '127.0.0.1:9092',
///       'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
/// ```
#[derive(Debug, Default)]
pub struct KafkaConnector;

impl Connector for KafkaConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn options(&self) -> Vec<OptionSpec> {
        [COMMON_OPTIONS, SOURCE_OPTIONS, SINK_OPTIONS].concat()
    }

    fn metadata(&self) -> Vec<MetadataSpec> {
        metadata_specs()
    }

    fn create_source(&self, request: &TableRequest<'_>) -> Result<Arc<dyn SourceSpec>> {
        request.options.check_known(self.name(), &self.options(), &[])?;
        Ok(Arc::new(KafkaSourceSpec::try_new(request)?))
    }

    fn create_sink(&self, request: &TableRequest<'_>) -> Result<Arc<dyn SinkSpec>> {
        request.options.check_known(self.name(), &self.options(), &[])?;
        Ok(Arc::new(KafkaSinkSpec::try_new(request, false)?))
    }
}

/// `'connector' = 'upsert-kafka'`: a changelog sink keyed by the table's
/// `PRIMARY KEY`: inserts and updates write the row under its key, deletes
/// write a tombstone (a null value), as Flink's upsert-kafka.
#[derive(Debug, Default)]
pub struct UpsertKafkaConnector;

impl Connector for UpsertKafkaConnector {
    fn name(&self) -> &'static str {
        "upsert-kafka"
    }

    fn options(&self) -> Vec<OptionSpec> {
        [COMMON_OPTIONS, SINK_OPTIONS]
            .concat()
            .into_iter()
            .filter(|o| o.name != "key.fields")
            .collect()
    }

    fn metadata(&self) -> Vec<MetadataSpec> {
        metadata_specs()
    }

    fn create_sink(&self, request: &TableRequest<'_>) -> Result<Arc<dyn SinkSpec>> {
        request.options.check_known(self.name(), &self.options(), &[])?;
        Ok(Arc::new(KafkaSinkSpec::try_new(request, true)?))
    }
}

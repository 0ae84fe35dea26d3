//! The Kafka sink: append-only (`kafka`) or upsert (`upsert-kafka`), with
//! Flink's three delivery guarantees.
//!
//! # Exactly once
//!
//! Each sink subtask writes inside a Kafka transaction with a transactional
//! id of its own, `<prefix>-<subtask>-<n>`, where `n` counts the
//! subtask's transactions (a fresh id, hence a fresh producer, per
//! transaction, as Flink's KafkaSink). The protocol, per checkpoint `c`:
//!
//! 1. **Write**: the first row after a barrier opens the next transaction
//!    (`init_transactions`, then `DescribeTransactions` to learn the producer
//!    id and epoch, which librdkafka does not expose, then `begin_transaction`).
//! 2. **Pre-commit** at barrier `c`: flush, and move the transaction to the
//!    pending list. The operator state of the checkpoint is
//!    `{"subtask", "next", "pending": [{transactional_id, producer_id,
//!    producer_epoch}]}`: every transaction pre-committed and not yet
//!    committed, so a checkpoint lists those of earlier aborted checkpoints too.
//! 3. **Commit** once checkpoint `c` is complete: commit every pending
//!    transaction of checkpoints `<= c` (completions are cumulative).
//! 4. **Recover** (open after a restore): commit each pending transaction
//!    the restored checkpoint lists, by id, producer id and epoch with an
//!    `EndTxn` request ([`super::protocol`]); "already committed" counts as
//!    done. Then abort every transaction still open under this sink's prefix
//!    that belongs to this subtask's share (`InitProducerId` aborts it and
//!    fences its producer), so read_committed readers are not stuck behind
//!    it. Transaction numbers go on from the restored `next`, so a listed
//!    transaction's id is never used again and a second recovery from the
//!    same checkpoint finds it committed with the same epoch.
//!
//! A pending transaction must outlive the time from its barrier to the
//! restart that commits it: `transaction.timeout.ms` (default here 15 min,
//! the broker's usual maximum) must exceed checkpoint duration plus the
//! time to detect a failure and restart. If the broker aborted it first,
//! recovery fails naming the transaction: its rows are lost, and weir says so
//! rather than going on.
//!
//! Restoring from a checkpoint older than the newest completed one (or an
//! old savepoint) re-writes what the newer checkpoints committed: as in
//! Flink, exactly-once holds for recovery from the latest checkpoint.
//!
//! # At least once / none
//!
//! One idempotent producer; `at-least-once` flushes at every barrier (so a
//! checkpoint completes only when its rows are acknowledged), `none` never
//! waits. A failed delivery fails the job in both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result, plan_err};
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};
use weir_engine::connector::{ConnectorOptions, SinkRequest, SinkSpec, TableRequest};
use weir_engine::message::{Barrier, CheckpointId};
use weir_engine::operator::{Operator, OperatorContext, Output};
use weir_engine::state::{OperatorSnapshot, StateInit};

use super::blocking::blocking;
use super::config::{self, METADATA_TIMEOUT};
use super::encode::{EncodedBatch, RecordEncoder};
use super::format::RecordLayout;
use super::protocol::{EndTxnOutcome, KafkaProtocolClient, TransactionHandle};

/// The default `transaction.timeout.ms`: Kafka's default
/// `transaction.max.timeout.ms`, the longest a broker allows.
const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long a flush, commit or transaction start may take before the sink
/// fails (and the job restarts from its last checkpoint).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// `sink.delivery-guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Kafka transactions committed when checkpoints complete.
    ExactlyOnce,
    /// Every row acknowledged before a checkpoint completes; may duplicate.
    AtLeastOnce,
    /// Fire and forget: may lose or duplicate rows on failure.
    None,
}

/// `sink.partitioner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkPartitioner {
    /// By the key's murmur2 hash (as Kafka's Java client); keyless rows spread.
    Default,
    /// Subtask `i` writes partition `i mod partitions` (Flink's `fixed`).
    Fixed,
    /// Rows go to the partitions in turn.
    RoundRobin,
}

/// A validated Kafka sink table.
#[derive(Debug)]
pub struct KafkaSinkSpec {
    inner: Arc<SinkConfig>,
}

#[derive(Debug)]
struct SinkConfig {
    options: ConnectorOptions,
    bootstrap: String,
    topic: String,
    schema: SchemaRef,
    layout: RecordLayout,
    timestamp_column: Option<usize>,
    upsert: bool,
    guarantee: DeliveryGuarantee,
    partitioner: SinkPartitioner,
    transactional_id_prefix: Option<String>,
    transaction_timeout: Duration,
}

impl KafkaSinkSpec {
    /// Validates a sink table's options. `upsert`: the `upsert-kafka`
    /// connector (keyed by the primary key, tombstones for deletes).
    pub fn try_new(request: &TableRequest<'_>, upsert: bool) -> Result<Self> {
        let options = request.options;
        let bootstrap = config::bootstrap_servers(options)?.to_string();
        let topics = config::topics(options);
        let topic = match topics.as_slice() {
            [one] => one.clone(),
            [] => return plan_err!("a kafka sink needs 'topic' (one topic)"),
            many => return plan_err!("a kafka sink writes one topic; 'topic' names {}", many.join(", ")),
        };
        if options.get("topic-pattern").is_some() {
            return plan_err!("'topic-pattern' is for reading; a kafka sink needs 'topic'");
        }
        if upsert {
            if request.primary_key.is_empty() {
                return plan_err!(
                    "an 'upsert-kafka' table needs a PRIMARY KEY (...) NOT ENFORCED: it is the record key"
                );
            }
            if options.get("key.format").is_none() {
                return plan_err!("an 'upsert-kafka' table needs 'key.format' ('json' or 'raw')");
            }
        }
        let layout = RecordLayout::try_new(request, upsert)?;
        let timestamp_column = request
            .metadata
            .iter()
            .filter(|m| m.key == "timestamp" && !m.is_virtual)
            .find_map(|m| request.schema.index_of(&m.column).ok());
        let guarantee = match options
            .get_enum(
                "sink.delivery-guarantee",
                &["exactly-once", "at-least-once", "none"],
            )?
            .as_deref()
        {
            Some("exactly-once") => DeliveryGuarantee::ExactlyOnce,
            Some("none") => DeliveryGuarantee::None,
            _ => DeliveryGuarantee::AtLeastOnce,
        };
        let partitioner = match options
            .get_enum("sink.partitioner", &["default", "fixed", "round-robin"])?
            .as_deref()
        {
            Some("fixed") => SinkPartitioner::Fixed,
            Some("round-robin") => SinkPartitioner::RoundRobin,
            _ => SinkPartitioner::Default,
        };
        let transaction_timeout = match config::property(options, "transaction.timeout.ms") {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return plan_err!(
                        "invalid value '{v}' for option 'properties.transaction.timeout.ms': expected milliseconds > 0"
                    );
                }
            },
            None => DEFAULT_TRANSACTION_TIMEOUT,
        };
        if config::property(options, "transactional.id").is_some() {
            return plan_err!(
                "set 'sink.transactional-id-prefix', not 'properties.transactional.id': each sink transaction has its own id"
            );
        }
        Ok(KafkaSinkSpec {
            inner: Arc::new(SinkConfig {
                options: options.clone(),
                bootstrap,
                topic,
                schema: request.schema.clone(),
                layout,
                timestamp_column,
                upsert,
                guarantee,
                partitioner,
                transactional_id_prefix: options.get("sink.transactional-id-prefix").map(String::from),
                transaction_timeout,
            }),
        })
    }
}

impl SinkSpec for KafkaSinkSpec {
    fn accepts_changelog(&self) -> bool {
        self.inner.upsert
    }

    fn create(&self, request: &SinkRequest, subtask: usize, parallelism: usize) -> Result<Box<dyn Operator>> {
        let _ = request;
        let c = &self.inner;
        Ok(Box::new(KafkaSink {
            config: c.clone(),
            encoder: RecordEncoder::new(c.schema.clone(), c.layout.clone(), c.timestamp_column, c.upsert),
            subtask,
            parallelism,
            restored: Vec::new(),
            writer: None,
            partitions: 0,
            next_partition: subtask,
        }))
    }
}

/// Collects the first failed delivery, which fails the sink at its next call.
#[derive(Debug, Default)]
struct DeliveryErrors {
    first: Mutex<Option<String>>,
}

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            use rdkafka::Message;
            let mut first = self.first.lock();
            if first.is_none() {
                *first = Some(format!(
                    "delivery to {} partition {} failed: {e}",
                    msg.topic(),
                    msg.partition()
                ));
            }
        }
    }
}

type KafkaProducer = ThreadedProducer<DeliveryErrors>;

/// What a sink subtask checkpoints (one entry per subtask).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SinkState {
    subtask: usize,
    /// The number of the next transaction this subtask opens.
    next: u64,
    /// Pre-committed transactions not yet committed.
    pending: Vec<TransactionHandle>,
}

/// A transaction being written or waiting for its checkpoint.
struct Transaction {
    producer: KafkaProducer,
    handle: TransactionHandle,
}

/// The exactly-once writer of a subtask.
struct TransactionalWriter {
    prefix: String,
    next: u64,
    current: Option<Transaction>,
    /// The next transaction's producer, being created and initialized in the
    /// background since the last barrier (so the first row after a barrier
    /// does not wait for it): its id and the producer.
    opening: Option<tokio::task::JoinHandle<Result<(String, KafkaProducer)>>>,
    /// Pre-committed, by the checkpoint whose barrier closed them.
    pending: BTreeMap<CheckpointId, Vec<Transaction>>,
    protocol: KafkaProtocolClient,
}

enum Writer {
    Transactional(Box<TransactionalWriter>),
    Plain(KafkaProducer),
}

/// A Kafka sink subtask.
struct KafkaSink {
    config: Arc<SinkConfig>,
    encoder: RecordEncoder,
    subtask: usize,
    parallelism: usize,
    /// The restored checkpoint's entries, until `open` recovers them.
    restored: Vec<SinkState>,
    writer: Option<Writer>,
    /// The topic's partition count (for `fixed` and `round-robin`).
    partitions: i32,
    next_partition: usize,
}

fn kafka_err(what: &str, e: KafkaError) -> DataFusionError {
    DataFusionError::External(format!("kafka sink: {what}: {e}").into())
}

/// The librdkafka configuration of the sink's producers.
fn producer_config(sink: &SinkConfig, transactional_id: Option<&str>) -> Result<ClientConfig> {
    let mut config = config::client_config(&sink.options)?;
    // Kafka's Java partitioner, so keys land where Java clients put them.
    if config.get("partitioner").is_none() {
        config.set("partitioner", "murmur2_random");
    }
    config.set("enable.idempotence", "true");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
        config.set(
            "transaction.timeout.ms",
            sink.transaction_timeout.as_millis().to_string(),
        );
    }
    Ok(config)
}

/// A producer of the sink (transactional when `transactional_id` is given).
fn create_producer(sink: &SinkConfig, transactional_id: Option<&str>) -> Result<KafkaProducer> {
    producer_config(sink, transactional_id)?
        .create_with_context(DeliveryErrors::default())
        .map_err(|e| kafka_err("creating a producer", e))
}

/// The number of partitions of the sink's topic, as `producer` sees it.
async fn partition_count(producer: &KafkaProducer, topic: &str) -> Result<i32> {
    let (producer, topic) = (producer.clone(), topic.to_string());
    let n = blocking(move || {
        let md = producer
            .client()
            .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
            .map_err(|e| kafka_err(&format!("metadata of '{topic}'"), e))?;
        Ok(md.topics().first().map_or(0, |t| t.partitions().len()))
    })
    .await?;
    Ok(n as i32)
}

impl KafkaSink {
    fn errors(producer: &KafkaProducer) -> Result<()> {
        match producer.context().first.lock().as_ref() {
            Some(e) => Err(DataFusionError::External(format!("kafka sink: {e}").into())),
            None => Ok(()),
        }
    }

    /// Recovery after a restore: commits what the checkpoint lists as
    /// pending, then aborts this subtask's share of open transactions.
    async fn recover(
        &self,
        restored: &[SinkState],
        protocol: &mut KafkaProtocolClient,
        prefix: &str,
    ) -> Result<u64> {
        let mut committed = Vec::new();
        for state in restored {
            for txn in &state.pending {
                match protocol.end_transaction(txn, true).await? {
                    EndTxnOutcome::Completed => {
                        info!(transactional_id = %txn.transactional_id, "committed a pending transaction of the restored checkpoint")
                    }
                    EndTxnOutcome::AlreadyCompleted => {
                        debug!(transactional_id = %txn.transactional_id, "pending transaction was already committed")
                    }
                }
                committed.push(txn.transactional_id.clone());
            }
        }
        let open = protocol.list_transactions(&["Ongoing"]).await?;
        for listing in open {
            let Some(owner) = owning_subtask(prefix, &listing.transactional_id) else {
                continue;
            };
            if owner % self.parallelism != self.subtask || committed.contains(&listing.transactional_id) {
                continue;
            }
            info!(transactional_id = %listing.transactional_id, "aborting a transaction left open by an earlier run");
            protocol
                .fence_transactional_id(&listing.transactional_id, self.config.transaction_timeout)
                .await?;
        }
        Ok(restored
            .iter()
            .find(|s| s.subtask == self.subtask)
            .map_or(0, |s| s.next))
    }

    async fn write(&mut self, batch: &EncodedBatch) -> Result<()> {
        let topic = self.config.topic.as_str();
        let fixed = match self.config.partitioner {
            SinkPartitioner::Fixed if self.partitions > 0 => Some((self.subtask as i32) % self.partitions),
            _ => None,
        };
        let round_robin = self.config.partitioner == SinkPartitioner::RoundRobin && self.partitions > 0;
        let producer = match self.writer.as_ref() {
            Some(Writer::Plain(p)) => p,
            Some(Writer::Transactional(w)) => &w.current.as_ref().expect("opened before writing").producer,
            None => return Err(DataFusionError::Internal("kafka sink used before open".into())),
        };
        for (j, &row) in batch.rows.iter().enumerate() {
            let row = row as usize;
            let key = batch.keys.as_ref().and_then(|k| k.get(row));
            let value = if batch.tombstone[j] {
                None
            } else {
                batch.values.get(row)
            };
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(v) = value {
                record = record.payload(v);
            }
            if let Some(ts) = &batch.timestamps
                && arrow::array::Array::is_valid(ts, row)
            {
                record = record.timestamp(ts.value(row));
            }
            if let Some(p) = fixed {
                record = record.partition(p);
            } else if round_robin {
                record = record.partition((self.next_partition % self.partitions as usize) as i32);
                self.next_partition += 1;
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        Self::errors(producer)?;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err(kafka_err(&format!("producing to '{topic}'"), e)),
                }
            }
        }
        Self::errors(producer)
    }
}

/// Starts creating the producer of the next transaction of `subtask` in
/// the background: `init_transactions` (which fences earlier producers of
/// the id) and `begin_transaction`.
fn start_opening(sink: &Arc<SinkConfig>, subtask: usize, w: &mut TransactionalWriter) {
    let id = format!("{}-{}-{}", w.prefix, subtask, w.next);
    w.next += 1;
    let sink = sink.clone();
    w.opening = Some(tokio::task::spawn_blocking(move || {
        let producer = create_producer(&sink, Some(&id))?;
        producer
            .init_transactions(OPERATION_TIMEOUT)
            .map_err(|e| kafka_err(&format!("init_transactions of '{id}'"), e))?;
        producer
            .begin_transaction()
            .map_err(|e| kafka_err(&format!("begin_transaction of '{id}'"), e))?;
        Ok((id, producer))
    }));
}

/// Makes the next transaction of `subtask` the current one (waiting for its
/// producer if it is still being opened).
async fn begin(sink: &Arc<SinkConfig>, subtask: usize, w: &mut TransactionalWriter) -> Result<()> {
    if w.opening.is_none() {
        start_opening(sink, subtask, w);
    }
    let opening = w.opening.take().expect("started above");
    let (id, producer) = opening
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))??;
    // librdkafka does not expose the producer id and epoch the checkpoint
    // must record; the transaction coordinator tells them.
    let described = w.protocol.describe_transaction(&id).await?;
    debug!(transactional_id = %id, producer_id = described.producer_id, epoch = described.producer_epoch, "opened transaction");
    w.current = Some(Transaction {
        producer,
        handle: TransactionHandle {
            transactional_id: id,
            producer_id: described.producer_id,
            producer_epoch: described.producer_epoch,
        },
    });
    Ok(())
}

/// The subtask that owns a transactional id `<prefix>-<subtask>-<n>`.
fn owning_subtask(prefix: &str, transactional_id: &str) -> Option<usize> {
    let rest = transactional_id.strip_prefix(prefix)?.strip_prefix('-')?;
    let (subtask, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    subtask.parse().ok()
}

/// Waits until every record `producer` was given is acknowledged (or failed).
///
/// Not librdkafka's `flush`: rdkafka waits there in 100 ms polls whose
/// events the producer's own thread takes first, so each flush lasted a full
/// 100 ms (measured by benches/kafka.rs); the in-flight count reaches zero as
/// soon as the last acknowledgement arrives.
async fn flush(producer: &KafkaProducer) -> Result<()> {
    let deadline = tokio::time::Instant::now() + OPERATION_TIMEOUT;
    while producer.in_flight_count() > 0 {
        KafkaSink::errors(producer)?;
        if tokio::time::Instant::now() > deadline {
            return Err(DataFusionError::External(
                format!(
                    "kafka sink: {} records not acknowledged within {OPERATION_TIMEOUT:?}",
                    producer.in_flight_count()
                )
                .into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    KafkaSink::errors(producer)
}

#[async_trait]
impl Operator for KafkaSink {
    async fn initialize_state(&mut self, _ctx: &OperatorContext, mut state: StateInit) -> Result<()> {
        if let Some(entries) = state.take_operator_state() {
            for entry in entries {
                let parsed: SinkState = serde_json::from_value(entry)
                    .map_err(|e| DataFusionError::Internal(format!("kafka sink state: {e}")))?;
                self.restored.push(parsed);
            }
        }
        Ok(())
    }

    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let exactly_once = self.config.guarantee == DeliveryGuarantee::ExactlyOnce;
        if exactly_once && !ctx.checkpointing {
            return plan_err!(
                "'sink.delivery-guarantee' = 'exactly-once' commits with checkpoints: set \
                 'execution.checkpointing.interval' (or use 'at-least-once')"
            );
        }
        // The producer that writes (at-least-once, none), or one only to ask
        // for the partition count (exactly-once opens one per transaction).
        let producer = if exactly_once && self.config.partitioner == SinkPartitioner::Default {
            None
        } else {
            Some(create_producer(&self.config, None)?)
        };
        if self.config.partitioner != SinkPartitioner::Default {
            let producer = producer.as_ref().expect("created for the partition count");
            self.partitions = partition_count(producer, &self.config.topic).await?;
            if self.partitions == 0 {
                return plan_err!(
                    "kafka sink: topic '{}' has no partitions (does it exist?)",
                    self.config.topic
                );
            }
        }
        self.writer = Some(if exactly_once {
            let prefix = self
                .config
                .transactional_id_prefix
                .clone()
                .unwrap_or_else(|| format!("weir-{}-{}", ctx.job_name, ctx.operator_id));
            let mut protocol = KafkaProtocolClient::connect(&self.config.bootstrap, METADATA_TIMEOUT).await?;
            let restored = std::mem::take(&mut self.restored);
            let next = self.recover(&restored, &mut protocol, &prefix).await?;
            Writer::Transactional(Box::new(TransactionalWriter {
                prefix,
                next,
                current: None,
                opening: None,
                pending: BTreeMap::new(),
                protocol,
            }))
        } else {
            Writer::Plain(producer.expect("created for writing"))
        });
        Ok(())
    }

    async fn process_batch(&mut self, _input: usize, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let encoded = self.encoder.encode(&batch)?;
        if encoded.rows.is_empty() {
            return Ok(());
        }
        if let Some(Writer::Transactional(w)) = &mut self.writer
            && w.current.is_none()
        {
            begin(&self.config, self.subtask, w).await?;
        }
        self.write(&encoded).await
    }

    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        let state = match self.writer.as_mut() {
            Some(Writer::Transactional(w)) => {
                if let Some(txn) = w.current.take() {
                    flush(&txn.producer).await?;
                    weir_engine::crash_point!("kafka-sink-after-precommit");
                    w.pending.entry(barrier.checkpoint_id).or_default().push(txn);
                    start_opening(&self.config, self.subtask, w);
                }
                SinkState {
                    subtask: self.subtask,
                    next: w.next,
                    pending: w.pending.values().flatten().map(|t| t.handle.clone()).collect(),
                }
            }
            Some(Writer::Plain(p)) => {
                if self.config.guarantee == DeliveryGuarantee::AtLeastOnce {
                    flush(p).await?;
                }
                return Ok(OperatorSnapshot::default());
            }
            None => return Ok(OperatorSnapshot::default()),
        };
        Ok(OperatorSnapshot {
            keyed: None,
            operator_state: vec![
                serde_json::to_value(state).map_err(|e| DataFusionError::External(Box::new(e)))?,
            ],
        })
    }

    async fn notify_checkpoint_complete(&mut self, checkpoint_id: CheckpointId) -> Result<()> {
        let Some(Writer::Transactional(w)) = self.writer.as_mut() else {
            return Ok(());
        };
        let later = w.pending.split_off(&(checkpoint_id + 1));
        let done = std::mem::replace(&mut w.pending, later);
        for txn in done.into_values().flatten() {
            weir_engine::crash_point!("kafka-sink-before-commit");
            let p = txn.producer.clone();
            let id = txn.handle.transactional_id.clone();
            blocking(move || {
                p.commit_transaction(OPERATION_TIMEOUT)
                    .map_err(|e| kafka_err(&format!("committing '{id}'"), e))
            })
            .await?;
            debug!(transactional_id = %txn.handle.transactional_id, checkpoint_id, "committed");
            weir_engine::crash_point!("kafka-sink-after-commit");
        }
        Ok(())
    }

    async fn finish(&mut self, _out: &mut Output) -> Result<()> {
        // Exactly-once commits with the job's final checkpoint; the others
        // wait for every row to be acknowledged.
        if let Some(Writer::Plain(p)) = &self.writer {
            flush(p).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        // Open and pending transactions are left as they are: a pending one
        // may be listed by the latest checkpoint, which the next run commits;
        // an open one is aborted by the next run's recovery.
        self.writer = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_ids_name_their_subtask() {
        assert_eq!(owning_subtask("weir-job-op", "weir-job-op-2-17"), Some(2));
        assert_eq!(owning_subtask("weir-job-op", "weir-job-op2-2-17"), None);
        assert_eq!(owning_subtask("weir-job-op", "weir-job-op-x-1"), None);
        assert_eq!(owning_subtask("weir-job-op", "weir-job-op-1-2-3"), None);
        assert_eq!(owning_subtask("a", "b-1-1"), None);
    }
}

//! A small Kafka protocol client for the transaction requests librdkafka
//! cannot make.
//!
//! librdkafka drives its own transactional producer, but it cannot resume a
//! transaction begun by another process, nor tell its caller the producer id
//! and epoch it was given. An exactly-once sink needs both: at a checkpoint it
//! records the pending transaction ([`TransactionHandle`]); after a crash the
//! restored job finishes committing it with [`KafkaProtocolClient::end_transaction`]
//! (an `EndTxn` request naming that transactional id, producer id and epoch),
//! and fences anything newer with [`KafkaProtocolClient::fence_transactional_id`].
//!
//! Messages are encoded and decoded by the `kafka-protocol` crate; this module
//! only frames them (a big-endian `i32` length, the request header with a
//! correlation id and client id `weir`, the body), negotiates versions with
//! `ApiVersions` (the highest version both sides support), finds the
//! transaction coordinator of each transactional id with `FindCoordinator`
//! and keeps one connection per broker. Requests on one connection are
//! strictly sequential (one in flight), which is all these rare control
//! requests need.
//!
//! # Timeouts and retries
//!
//! The `timeout` given to [`KafkaProtocolClient::connect`] bounds every public
//! operation as a whole, retries included: retriable Kafka errors
//! (`COORDINATOR_LOAD_IN_PROGRESS`, `COORDINATOR_NOT_AVAILABLE`,
//! `NOT_COORDINATOR`, `CONCURRENT_TRANSACTIONS`, ...) and lost connections are
//! retried with exponential backoff (50 ms doubling up to 1 s) until then.
//!
//! # Errors
//!
//! Every error is a [`DataFusionError::Execution`] whose message names the
//! operation, the transactional id and broker involved, and the Kafka error
//! code by its protocol name (e.g. `INVALID_PRODUCER_EPOCH (47)`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use datafusion::common::{DataFusionError, Result};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName, TransactionalId, UpdateFeaturesRequest, UpdateFeaturesResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes, VersionRange};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The client id sent in every request header.
const CLIENT_ID: &str = "weir";

/// The largest response frame accepted (guards against a corrupt length).
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Kafka error codes this client acts upon.
mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    /// `UNKNOWN_LEADER_EPOCH` in Kafka; crabka-broker 0.3.8 answers a
    /// `DescribeTransactions` of an unknown transactional id with it.
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const PRODUCER_FENCED: i16 = 90;
    /// `INVALID_GROUP_ID` in Kafka; crabka-broker 0.3.8 numbers its
    /// `INVALID_TXN_STATE` 24 and sends that. `EndTxn` cannot fail with
    /// `INVALID_GROUP_ID`, so 24 in an `EndTxn` response is read as
    /// `INVALID_TXN_STATE`.
    pub const CRABKA_INVALID_TXN_STATE: i16 = 24;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
}

/// `FindCoordinator` key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// `UpdateFeatures` upgrade types (KIP-584).
const UPGRADE_TYPE_UPGRADE: i8 = 1;
const UPGRADE_TYPE_SAFE_DOWNGRADE: i8 = 2;

/// The identity of one producer session of a transactional id: what a sink
/// records in a checkpoint to be able to finish a pending transaction later,
/// from another process, with [`KafkaProtocolClient::end_transaction`].
///
/// A transaction coordinator accepts `EndTxn` for a transactional id only
/// with its current producer id and epoch; a newer session (a new
/// `InitProducerId`, e.g. a restarted producer or
/// [`KafkaProtocolClient::fence_transactional_id`]) bumps the epoch and so
/// invalidates every older handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionHandle {
    /// The producer's `transactional.id`.
    pub transactional_id: String,
    /// The producer id the coordinator assigned to that transactional id.
    pub producer_id: i64,
    /// The producer epoch of the session that owns the transaction.
    pub producer_epoch: i16,
}

impl fmt::Display for TransactionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transactional id '{}' (producer id {}, epoch {})",
            self.transactional_id, self.producer_id, self.producer_epoch
        )
    }
}

/// The coordinator's view of a transactional id, as `DescribeTransactions`
/// (API 65) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id described.
    pub transactional_id: String,
    /// The coordinator's state name: `Empty`, `Ongoing`, `PrepareCommit`,
    /// `PrepareAbort`, `CompleteCommit`, `CompleteAbort`, `Dead` (or
    /// `PrepareEpochFence` on Apache Kafka).
    pub state: String,
    /// The current producer id of the transactional id.
    pub producer_id: i64,
    /// The current producer epoch of the transactional id.
    pub producer_epoch: i16,
    /// The transaction timeout the producer registered, in milliseconds.
    pub transaction_timeout_ms: i32,
    /// When the current (or last) transaction started, in milliseconds since
    /// the epoch; `-1` when the broker does not know.
    pub transaction_start_time_ms: i64,
    /// The partitions enrolled in the current (or last) transaction, by topic,
    /// partitions ascending.
    pub topics: BTreeMap<String, Vec<i32>>,
}

impl TransactionDescription {
    /// The handle of the session that currently owns this transactional id.
    pub fn handle(&self) -> TransactionHandle {
        TransactionHandle {
            transactional_id: self.transactional_id.clone(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
        }
    }
}

/// One transaction as `ListTransactions` (API 66) reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// Its current producer id.
    pub producer_id: i64,
    /// The coordinator's state name (see [`TransactionDescription::state`]).
    pub state: String,
}

/// The offsets of one partition, as its leader reports them in a
/// `read_committed` `Fetch` response ([`KafkaProtocolClient::partition_offsets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The first offset still in the log.
    pub log_start_offset: i64,
    /// The high watermark: the offset after the last record a
    /// `read_uncommitted` consumer can read.
    pub high_watermark: i64,
    /// The last stable offset: the first offset of the earliest transaction
    /// still open (the high watermark when none is): a `read_committed`
    /// consumer reads up to it.
    pub last_stable_offset: i64,
}

/// The result of a successful [`KafkaProtocolClient::end_transaction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndTxnOutcome {
    /// This request completed the transaction: the coordinator wrote the
    /// commit (or abort) markers and answered `NONE`.
    Completed,
    /// There was nothing left to do: the transaction had already been
    /// completed the same way (committed when committing, aborted when
    /// aborting) by an earlier request with the same producer id and epoch,
    /// e.g. by the producer itself before a crash or by an earlier recovery;
    /// or the producer session never enrolled a partition (state `Empty` for
    /// the same producer id and epoch: it wrote no record in a transaction).
    /// Nothing was changed.
    AlreadyCompleted,
}

/// How a rejected `EndTxn` is interpreted, from the coordinator's current
/// description of the transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejection {
    AlreadyCompleted,
    NothingToComplete,
    /// The coordinator is still completing the transaction the asked way:
    /// ask again.
    InProgress,
    /// The transaction cannot be completed the asked way; the message says
    /// why.
    Lost(String),
}

/// Interprets an `EndTxn` rejected with `error` (one of `INVALID_TXN_STATE`,
/// `INVALID_PRODUCER_EPOCH`, `PRODUCER_FENCED`, `INVALID_PRODUCER_ID_MAPPING`)
/// given the coordinator's current description of the transactional id
/// (`None`: the coordinator does not know it).
fn classify_rejection(
    txn: &TransactionHandle,
    commit: bool,
    error: i16,
    current: Option<&TransactionDescription>,
) -> Rejection {
    let (wanted, opposite) = if commit {
        ("CompleteCommit", "CompleteAbort")
    } else {
        ("CompleteAbort", "CompleteCommit")
    };
    let (preparing, preparing_opposite) = if commit {
        ("PrepareCommit", "PrepareAbort")
    } else {
        ("PrepareAbort", "PrepareCommit")
    };
    let verb = if commit { "commit" } else { "abort" };
    let Some(d) = current else {
        return Rejection::Lost(format!(
            "the transaction of {txn} was lost: the coordinator answered {} to the {verb} and no \
             longer knows the transactional id",
            code_name(error)
        ));
    };
    let found = format!(
        "the coordinator answered {} and reports state {} with producer id {}, epoch {}",
        code_name(error),
        d.state,
        d.producer_id,
        d.producer_epoch
    );
    if d.producer_id == txn.producer_id && d.producer_epoch == txn.producer_epoch {
        return match d.state.as_str() {
            s if s == wanted => Rejection::AlreadyCompleted,
            s if s == preparing => Rejection::InProgress,
            "Ongoing" => Rejection::InProgress,
            "Empty" => Rejection::NothingToComplete,
            s if s == opposite || s == preparing_opposite => Rejection::Lost(format!(
                "the transaction of {txn} was lost: it was {} instead ({found})",
                if commit { "aborted" } else { "committed" }
            )),
            _ => Rejection::Lost(format!("the transaction of {txn} was lost ({found})")),
        };
    }
    // KIP-890 (transaction.version 2): the coordinator bumps the epoch when it
    // completes a transaction, so the session's own completion leaves the same
    // producer id at epoch + 1 in the completed state. Any other change of the
    // epoch is a new session (InitProducerId), which aborts what was open.
    if d.producer_id == txn.producer_id
        && txn.producer_epoch.checked_add(1) == Some(d.producer_epoch)
        && d.state == wanted
    {
        return Rejection::AlreadyCompleted;
    }
    Rejection::Lost(format!(
        "the transaction of {txn} was lost: the transactional id was fenced by a newer producer \
         session, which aborts a transaction still open ({found})"
    ))
}

/// The protocol name of a Kafka error code, with the code: `INVALID_TXN_STATE (48)`.
pub(crate) fn code_name(error: i16) -> String {
    match ResponseError::try_from_code(error) {
        None => format!("NONE ({error})"),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE ({c})"),
        Some(e) => format!("{} ({error})", screaming_snake_case(&format!("{e:?}"))),
    }
}

/// `InvalidTxnState` -> `INVALID_TXN_STATE`.
fn screaming_snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Whether a Kafka error code is worth retrying for the coordinator requests
/// of this client.
fn is_retriable(error: i16) -> bool {
    matches!(
        error,
        code::COORDINATOR_LOAD_IN_PROGRESS
            | code::COORDINATOR_NOT_AVAILABLE
            | code::NOT_COORDINATOR
            | code::CONCURRENT_TRANSACTIONS
            | code::REQUEST_TIMED_OUT
            | code::NOT_CONTROLLER
    ) || ResponseError::try_from_code(error).is_some_and(|e| e.is_retriable())
}

/// Whether a retriable error means the cached coordinator is stale.
fn needs_new_coordinator(error: i16) -> bool {
    matches!(error, code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE)
}

/// A request this client sends, tied to its API key and response type.
trait Api: Encodable + HeaderVersion + Message {
    const KEY: ApiKey;
    type Response: Decodable + HeaderVersion;
}

macro_rules! api {
    ($($req:ty => $resp:ty, $key:ident;)*) => {
        $(impl Api for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $resp;
        })*
    };
}

api! {
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions;
    MetadataRequest => MetadataResponse, Metadata;
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator;
    InitProducerIdRequest => InitProducerIdResponse, InitProducerId;
    EndTxnRequest => EndTxnResponse, EndTxn;
    DescribeTransactionsRequest => DescribeTransactionsResponse, DescribeTransactions;
    ListTransactionsRequest => ListTransactionsResponse, ListTransactions;
    UpdateFeaturesRequest => UpdateFeaturesResponse, UpdateFeatures;
    FetchRequest => FetchResponse, Fetch;
}

/// The highest `Fetch` version used: the last that names topics (v13+ use
/// topic ids).
const MAX_FETCH_VERSION: i16 = 12;

/// Encodes one request frame: the `i32` size, the request header (in the
/// header version that the request's API version requires) and the body.
fn encode_request_frame<R: Api>(request: &R, version: i16, correlation_id: i32) -> Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut frame = BytesMut::with_capacity(64);
    frame.put_i32(0);
    header
        .encode(&mut frame, R::header_version(version))
        .and_then(|()| request.encode(&mut frame, version))
        .map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot encode Kafka {:?} v{version} request: {e:#}",
                R::KEY
            ))
        })?;
    let size = i32::try_from(frame.len() - 4)
        .map_err(|_| DataFusionError::Execution(format!("Kafka {:?} request too large", R::KEY)))?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// Decodes a response frame (without its `i32` size): the response header in
/// the version `R` requires for `version`, whose correlation id must be
/// `correlation_id`, then the body.
fn decode_response_frame<R: Decodable + HeaderVersion>(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<R> {
    let fail = |what: &str| {
        DataFusionError::Execution(format!(
            "cannot decode Kafka {api_key:?} v{version} response: {what}"
        ))
    };
    let header = ResponseHeader::decode(&mut frame, R::header_version(version))
        .map_err(|e| fail(&format!("{e:#}")))?;
    if header.correlation_id != correlation_id {
        return Err(fail(&format!(
            "correlation id {} where {correlation_id} was expected",
            header.correlation_id
        )));
    }
    R::decode(&mut frame, version).map_err(|e| fail(&format!("{e:#}")))
}

/// A failure of one attempt, before it becomes a [`DataFusionError`].
#[derive(Debug)]
struct Failure {
    /// Worth another attempt (a lost connection, a retriable Kafka error).
    retriable: bool,
    message: String,
}

impl Failure {
    fn retriable(message: impl Into<String>) -> Self {
        Self {
            retriable: true,
            message: message.into(),
        }
    }

    fn fatal(message: impl Into<String>) -> Self {
        Self {
            retriable: false,
            message: message.into(),
        }
    }
}

impl From<DataFusionError> for Failure {
    fn from(e: DataFusionError) -> Self {
        Self::fatal(e.to_string())
    }
}

type Attempt<T> = std::result::Result<T, Failure>;

/// Exponential backoff until a deadline.
struct Backoff {
    deadline: Instant,
    delay: Duration,
}

impl Backoff {
    fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            delay: Duration::from_millis(50),
        }
    }

    /// Sleeps before the next attempt, or fails with `failure` (naming
    /// `operation`) when the deadline would pass.
    async fn wait(&mut self, operation: &str, failure: Failure) -> Result<()> {
        if !failure.retriable || Instant::now() + self.delay >= self.deadline {
            let reason = if failure.retriable {
                "gave up at the deadline: "
            } else {
                ""
            };
            return Err(DataFusionError::Execution(format!(
                "{operation}: {reason}{}",
                failure.message
            )));
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(1));
        Ok(())
    }
}

/// One connection to one broker, after the `ApiVersions` handshake.
struct Connection {
    stream: TcpStream,
    /// API key -> the versions the broker supports.
    versions: HashMap<i16, VersionRange>,
}

impl Connection {
    /// The highest version of `R` both this client and the broker support.
    fn version_of<R: Api>(&self, addr: &str) -> Attempt<i16> {
        let ours = R::VERSIONS;
        let Some(theirs) = self.versions.get(&(R::KEY as i16)) else {
            return Err(Failure::fatal(format!(
                "Kafka broker {addr} does not support the {:?} API (key {})",
                R::KEY,
                R::KEY as i16
            )));
        };
        let both = ours.intersect(theirs);
        if both.is_empty() {
            return Err(Failure::fatal(format!(
                "Kafka broker {addr} supports {:?} versions {theirs}, this client {ours}",
                R::KEY
            )));
        }
        Ok(both.max)
    }

    /// Writes one frame and reads one response frame (without its size).
    async fn round_trip(&mut self, frame: &[u8]) -> std::io::Result<Bytes> {
        self.stream.write_all(frame).await?;
        let size = self.stream.read_i32().await?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_FRAME_BYTES)
            .ok_or_else(|| std::io::Error::other(format!("invalid response frame size {size}")))?;
        let mut body = BytesMut::zeroed(size);
        self.stream.read_exact(&mut body).await?;
        Ok(body.freeze())
    }
}

/// A Kafka protocol client for transaction coordinator requests (see the
/// [module documentation](self)).
///
/// It keeps one connection per broker, opened on first use and dropped when
/// it fails, and remembers the coordinator of each transactional id until a
/// broker answers `NOT_COORDINATOR`. It is not `Clone`: each task that needs
/// one connects its own (requests are sequential per client).
pub struct KafkaProtocolClient {
    bootstrap: Vec<String>,
    timeout: Duration,
    /// Node id -> `host:port`, from the last `Metadata` response.
    brokers: BTreeMap<i32, String>,
    /// The controller's node id from the last `Metadata` response, -1 if
    /// unknown.
    controller_id: i32,
    /// `host:port` -> connection.
    connections: HashMap<String, Connection>,
    /// Transactional id -> its coordinator's `host:port`.
    coordinators: HashMap<String, String>,
    next_correlation_id: i32,
}

impl fmt::Debug for KafkaProtocolClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaProtocolClient")
            .field("bootstrap", &self.bootstrap)
            .field("brokers", &self.brokers)
            .field("connected", &self.connections.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaProtocolClient {
    /// Connects to the first reachable broker of `bootstrap_servers` (a
    /// comma-separated list of `host:port`), negotiates API versions and
    /// learns the cluster's brokers with a `Metadata` request.
    ///
    /// `timeout` bounds this call and, later, each public operation as a
    /// whole (retries included).
    pub async fn connect(bootstrap_servers: &str, timeout: Duration) -> Result<Self> {
        let bootstrap: Vec<String> = bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if bootstrap.is_empty() {
            return Err(DataFusionError::Execution(format!(
                "no Kafka bootstrap server in '{bootstrap_servers}'"
            )));
        }
        let mut client = Self {
            bootstrap,
            timeout,
            brokers: BTreeMap::new(),
            controller_id: -1,
            connections: HashMap::new(),
            coordinators: HashMap::new(),
            next_correlation_id: 1,
        };
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new(deadline);
        loop {
            match client.refresh_metadata(deadline).await {
                Ok(()) => return Ok(client),
                Err(f) => {
                    backoff
                        .wait(&format!("cannot connect to Kafka at '{bootstrap_servers}'"), f)
                        .await?
                }
            }
        }
    }

    /// The brokers of the cluster (`node id -> host:port`) as the last
    /// `Metadata` response listed them.
    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }

    /// Describes `transactional_id` with `DescribeTransactions` (API 65),
    /// asked of its transaction coordinator.
    ///
    /// Meant to be called right after librdkafka's `init_transactions` to
    /// learn the producer id and epoch of the new session
    /// ([`TransactionDescription::handle`]), which librdkafka does not
    /// expose. Fails when the coordinator does not know the transactional id.
    pub async fn describe_transaction(&mut self, transactional_id: &str) -> Result<TransactionDescription> {
        let deadline = Instant::now() + self.timeout;
        let operation = format!("cannot describe Kafka transactional id '{transactional_id}'");
        let mut backoff = Backoff::new(deadline);
        loop {
            match self.try_describe(transactional_id, deadline).await {
                Ok(Some(d)) => return Ok(d),
                Ok(None) => {
                    return Err(DataFusionError::Execution(format!(
                        "{operation}: its transaction coordinator does not know it"
                    )));
                }
                Err(f) => backoff.wait(&operation, f).await?,
            }
        }
    }

    /// Ends the transaction of `txn` with `EndTxn`, committing it when
    /// `commit`, else aborting it, as if its producer had done so.
    ///
    /// The request goes to the transactional id's coordinator (found with
    /// `FindCoordinator`, key type 1); retriable answers
    /// (`COORDINATOR_LOAD_IN_PROGRESS`, `NOT_COORDINATOR` (the coordinator is
    /// found again), `COORDINATOR_NOT_AVAILABLE`, `CONCURRENT_TRANSACTIONS`)
    /// and lost connections are retried until the client's timeout.
    ///
    /// Returns [`EndTxnOutcome::Completed`] when the coordinator answers
    /// `NONE`. When it rejects the request (`INVALID_TXN_STATE`,
    /// `INVALID_PRODUCER_EPOCH`, `PRODUCER_FENCED`,
    /// `INVALID_PRODUCER_ID_MAPPING`), the transactional id is described to
    /// tell apart:
    ///
    /// - same producer id and epoch, state `CompleteCommit` when committing
    ///   (`CompleteAbort` when aborting): [`EndTxnOutcome::AlreadyCompleted`].
    ///   So ending a transaction is idempotent. (Also when the producer id is
    ///   the same, the epoch one higher and the state the wanted one: a
    ///   `transaction.version` 2 coordinator bumps the epoch on completion.)
    /// - same producer id and epoch, state `Empty` (the session wrote no
    ///   record in a transaction): [`EndTxnOutcome::AlreadyCompleted`] too.
    /// - same producer id and epoch, state `PrepareCommit` (`PrepareAbort`)
    ///   or `Ongoing`: the coordinator is busy with it; asked again.
    /// - anything else is an error saying that the transaction was lost,
    ///   naming it: it was completed the other way (e.g. aborted by the
    ///   coordinator's transaction timeout), or a newer session of the
    ///   transactional id (`InitProducerId`) fenced it, which aborts a
    ///   transaction still open.
    ///
    /// Verified against crabka-broker 0.3.8 (`transaction.version` 1, see
    /// `tests/kafka_broker.rs`): the first commit (or abort) answers `NONE`;
    /// committing a committed transaction again, aborting it, committing an
    /// aborted one or ending a session that never wrote answer
    /// `INVALID_TXN_STATE` with the epoch unchanged (crabka sends that code
    /// as 24, Kafka's `INVALID_GROUP_ID`, which `EndTxn` reads as
    /// `INVALID_TXN_STATE`), giving `AlreadyCompleted` or the "lost" error by
    /// the state; committing with the epoch of a session fenced by
    /// `fence_transactional_id` answers `INVALID_PRODUCER_EPOCH` (the state is
    /// then `Empty` at epoch + 1), giving the "lost" error.
    ///
    /// **Caveat.** Below `transaction.version` 2 the epoch stays the same for
    /// all the transactions of one producer session, and the coordinator
    /// keeps only the state of the last one. The outcome is therefore only
    /// meaningful if that session began no other transaction after the one
    /// recorded in `txn`: if it did, this commits (or reports) that later
    /// transaction instead.
    pub async fn end_transaction(&mut self, txn: &TransactionHandle, commit: bool) -> Result<EndTxnOutcome> {
        let deadline = Instant::now() + self.timeout;
        let operation = format!(
            "cannot {} the Kafka transaction of {txn}",
            if commit { "commit" } else { "abort" }
        );
        let mut backoff = Backoff::new(deadline);
        loop {
            let failure = match self.try_end_txn(txn, commit, deadline).await {
                Ok(code::NONE) => return Ok(EndTxnOutcome::Completed),
                Ok(
                    error @ (code::INVALID_TXN_STATE
                    | code::INVALID_PRODUCER_EPOCH
                    | code::PRODUCER_FENCED
                    | code::INVALID_PRODUCER_ID_MAPPING),
                ) => {
                    let current = match self.try_describe(&txn.transactional_id, deadline).await {
                        Ok(current) => current,
                        Err(f) => {
                            backoff.wait(&operation, f).await?;
                            continue;
                        }
                    };
                    match classify_rejection(txn, commit, error, current.as_ref()) {
                        Rejection::AlreadyCompleted => return Ok(EndTxnOutcome::AlreadyCompleted),
                        Rejection::NothingToComplete => return Ok(EndTxnOutcome::AlreadyCompleted),
                        Rejection::InProgress => Failure::retriable(format!(
                            "the coordinator answered {} while still completing it",
                            code_name(error)
                        )),
                        Rejection::Lost(message) => return Err(DataFusionError::Execution(message)),
                    }
                }
                Ok(error) => {
                    let addr = self
                        .coordinators
                        .get(&txn.transactional_id)
                        .cloned()
                        .unwrap_or_default();
                    if needs_new_coordinator(error) {
                        self.coordinators.remove(&txn.transactional_id);
                    }
                    Failure {
                        retriable: is_retriable(error),
                        message: format!("coordinator {addr} answered {}", code_name(error)),
                    }
                }
                Err(f) => f,
            };
            backoff.wait(&operation, failure).await?;
        }
    }

    /// Starts a new producer session of `transactional_id` with
    /// `InitProducerId`, as a restarted producer would, and returns its
    /// handle (the producer id and the bumped epoch).
    ///
    /// The coordinator aborts the transaction the previous session left open
    /// (writing abort markers) and bumps the epoch, so every older session
    /// (a zombie producer, an older [`TransactionHandle`]) is fenced: its
    /// produce, commit or abort is rejected from now on. The new session has
    /// no open transaction. `transaction_timeout` is registered as the
    /// session's transaction timeout. `CONCURRENT_TRANSACTIONS` (the
    /// coordinator is still completing a transaction) and other retriable
    /// answers are retried until the client's timeout.
    pub async fn fence_transactional_id(
        &mut self,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<TransactionHandle> {
        let deadline = Instant::now() + self.timeout;
        let operation = format!("cannot fence Kafka transactional id '{transactional_id}'");
        let timeout_ms = i32::try_from(transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        let mut backoff = Backoff::new(deadline);
        loop {
            let failure = match self
                .try_init_producer_id(transactional_id, timeout_ms, deadline)
                .await
            {
                Ok(handle) => return Ok(handle),
                Err(f) => f,
            };
            backoff.wait(&operation, failure).await?;
        }
    }

    /// Lists the transactions of the whole cluster with `ListTransactions`
    /// (API 66), asked of every broker (each reports those it coordinates).
    ///
    /// `state_filters` keeps only transactions in one of these states (see
    /// [`TransactionDescription::state`]); empty keeps all. A state name the
    /// broker does not know is an error. The result is sorted by
    /// transactional id.
    pub async fn list_transactions(&mut self, state_filters: &[&str]) -> Result<Vec<TransactionListing>> {
        let deadline = Instant::now() + self.timeout;
        let operation = "cannot list Kafka transactions";
        let mut backoff = Backoff::new(deadline);
        loop {
            let failure = match self.try_list_transactions(state_filters, deadline).await {
                Ok(mut all) => {
                    all.sort();
                    all.dedup();
                    return Ok(all);
                }
                Err(f) => f,
            };
            backoff.wait(operation, failure).await?;
        }
    }

    /// Sets the finalized level of the cluster feature `feature` (e.g.
    /// `transaction.version`) with `UpdateFeatures`, sent to the controller
    /// (or, when the metadata names none, to any broker), then waits until
    /// the broker's `ApiVersions` reports the new level.
    ///
    /// A level below the current one is sent as a safe downgrade (the
    /// downgrade flag on `UpdateFeatures` v0), so downgrades work. Level 0
    /// removes the finalized feature.
    pub async fn set_feature_level(&mut self, feature: &str, level: i16) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let operation = format!("cannot set Kafka feature '{feature}' to level {level}");
        let mut backoff = Backoff::new(deadline);
        loop {
            let failure = match self.try_set_feature_level(feature, level, deadline).await {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            backoff.wait(&operation, failure).await?;
        }
    }

    /// The log start offset, high watermark and last stable offset of
    /// `partition` of `topic`, from a `read_committed` `Fetch` (of at most a
    /// byte) sent to the partition's leader.
    ///
    /// `ListOffsets` cannot be relied upon for the last stable offset:
    /// crabka-broker 0.3.8 answers the high watermark for `LATEST` whatever
    /// the isolation level.
    pub async fn partition_offsets(&mut self, topic: &str, partition: i32) -> Result<PartitionOffsets> {
        let deadline = Instant::now() + self.timeout;
        let operation = format!("cannot read the offsets of Kafka partition {topic}/{partition}");
        let mut backoff = Backoff::new(deadline);
        loop {
            let failure = match self.try_partition_offsets(topic, partition, deadline).await {
                Ok(offsets) => return Ok(offsets),
                Err(f) => f,
            };
            backoff.wait(&operation, failure).await?;
        }
    }

    // ---- one attempt of each operation -------------------------------------------------------

    async fn try_describe(
        &mut self,
        transactional_id: &str,
        deadline: Instant,
    ) -> Attempt<Option<TransactionDescription>> {
        let addr = self.coordinator(transactional_id, deadline).await?;
        let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(transactional_id.into()),
        )]);
        let response = self.call(&addr, deadline, |_| request).await?;
        let Some(row) = response
            .transaction_states
            .into_iter()
            .find(|s| s.transactional_id.as_str() == transactional_id)
        else {
            return Err(Failure::fatal(format!(
                "coordinator {addr} did not describe transactional id '{transactional_id}'"
            )));
        };
        match row.error_code {
            code::NONE => {}
            code::TRANSACTIONAL_ID_NOT_FOUND | code::UNKNOWN_LEADER_EPOCH => return Ok(None),
            error => {
                if needs_new_coordinator(error) {
                    self.coordinators.remove(transactional_id);
                }
                return Err(Failure {
                    retriable: is_retriable(error),
                    message: format!(
                        "coordinator {addr} answered {} to DescribeTransactions",
                        code_name(error)
                    ),
                });
            }
        }
        Ok(Some(TransactionDescription {
            transactional_id: transactional_id.to_string(),
            state: row.transaction_state.as_str().to_string(),
            producer_id: row.producer_id.0,
            producer_epoch: row.producer_epoch,
            transaction_timeout_ms: row.transaction_timeout_ms,
            transaction_start_time_ms: row.transaction_start_time_ms,
            topics: row
                .topics
                .into_iter()
                .map(|t| {
                    let mut partitions = t.partitions;
                    partitions.sort_unstable();
                    (t.topic.0.as_str().to_string(), partitions)
                })
                .collect(),
        }))
    }

    /// Sends `EndTxn` once; returns the coordinator's error code.
    async fn try_end_txn(
        &mut self,
        txn: &TransactionHandle,
        commit: bool,
        deadline: Instant,
    ) -> Attempt<i16> {
        let addr = self.coordinator(&txn.transactional_id, deadline).await?;
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                txn.transactional_id.clone(),
            )))
            .with_producer_id(txn.producer_id.into())
            .with_producer_epoch(txn.producer_epoch)
            .with_committed(commit);
        let response = self.call(&addr, deadline, |_| request).await?;
        Ok(match response.error_code {
            code::CRABKA_INVALID_TXN_STATE => code::INVALID_TXN_STATE,
            error => error,
        })
    }

    async fn try_init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        deadline: Instant,
    ) -> Attempt<TransactionHandle> {
        let addr = self.coordinator(transactional_id, deadline).await?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                transactional_id.into(),
            ))))
            .with_transaction_timeout_ms(timeout_ms);
        let response = self.call(&addr, deadline, |_| request).await?;
        match response.error_code {
            code::NONE => Ok(TransactionHandle {
                transactional_id: transactional_id.to_string(),
                producer_id: response.producer_id.0,
                producer_epoch: response.producer_epoch,
            }),
            error => {
                if needs_new_coordinator(error) {
                    self.coordinators.remove(transactional_id);
                }
                Err(Failure {
                    retriable: is_retriable(error),
                    message: format!(
                        "coordinator {addr} answered {} to InitProducerId",
                        code_name(error)
                    ),
                })
            }
        }
    }

    async fn try_partition_offsets(
        &mut self,
        topic: &str,
        partition: i32,
        deadline: Instant,
    ) -> Attempt<PartitionOffsets> {
        let leader = self.partition_leader(topic, partition, deadline).await?;
        let mut fetch_offset = 0;
        for _ in 0..2 {
            let request = |_| {
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_min_bytes(0)
                    .with_max_bytes(1)
                    .with_isolation_level(1)
                    .with_topics(vec![
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(vec![
                                FetchPartition::default()
                                    .with_partition(partition)
                                    .with_fetch_offset(fetch_offset)
                                    .with_partition_max_bytes(1),
                            ]),
                    ])
            };
            let response = self
                .call_upto(&leader, deadline, MAX_FETCH_VERSION, request)
                .await?;
            if response.error_code != code::NONE {
                return Err(Failure {
                    retriable: is_retriable(response.error_code),
                    message: format!(
                        "broker {leader} answered {} to Fetch",
                        code_name(response.error_code)
                    ),
                });
            }
            let Some(data) = response
                .responses
                .into_iter()
                .filter(|t| t.topic.0.as_str() == topic)
                .flat_map(|t| t.partitions)
                .find(|p| p.partition_index == partition)
            else {
                return Err(Failure::fatal(format!(
                    "broker {leader} did not answer for {topic}/{partition}"
                )));
            };
            match data.error_code {
                code::NONE => {
                    return Ok(PartitionOffsets {
                        log_start_offset: data.log_start_offset,
                        high_watermark: data.high_watermark,
                        last_stable_offset: data.last_stable_offset,
                    });
                }
                code::OFFSET_OUT_OF_RANGE if data.log_start_offset > fetch_offset => {
                    fetch_offset = data.log_start_offset;
                }
                error => {
                    return Err(Failure {
                        retriable: is_retriable(error),
                        message: format!(
                            "broker {leader} answered {} to a Fetch of {topic}/{partition}",
                            code_name(error)
                        ),
                    });
                }
            }
        }
        Err(Failure::retriable(format!(
            "the log start of {topic}/{partition} keeps moving"
        )))
    }

    /// The address of the leader of `partition` of `topic`, from a fresh
    /// `Metadata` request.
    async fn partition_leader(&mut self, topic: &str, partition: i32, deadline: Instant) -> Attempt<String> {
        let via = self.any_broker(deadline).await?;
        let response = self
            .call(&via, deadline, |version| {
                let request = MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(topic.to_string())))),
                ]));
                if version >= 4 {
                    request.with_allow_auto_topic_creation(false)
                } else {
                    request
                }
            })
            .await?;
        for b in &response.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        let Some(t) = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        else {
            return Err(Failure::fatal(format!(
                "broker {via} did not describe topic {topic}"
            )));
        };
        if t.error_code != code::NONE {
            return Err(Failure {
                retriable: is_retriable(t.error_code),
                message: format!(
                    "broker {via} answered {} for topic {topic}",
                    code_name(t.error_code)
                ),
            });
        }
        let Some(p) = t.partitions.iter().find(|p| p.partition_index == partition) else {
            return Err(Failure::fatal(format!(
                "topic {topic} has no partition {partition}"
            )));
        };
        if p.error_code != code::NONE || p.leader_id.0 < 0 {
            return Err(Failure::retriable(format!(
                "partition {topic}/{partition} has no leader ({})",
                code_name(p.error_code)
            )));
        }
        self.brokers.get(&p.leader_id.0).cloned().ok_or_else(|| {
            Failure::retriable(format!(
                "the leader {} of {topic}/{partition} is unknown",
                p.leader_id.0
            ))
        })
    }

    async fn try_list_transactions(
        &mut self,
        state_filters: &[&str],
        deadline: Instant,
    ) -> Attempt<Vec<TransactionListing>> {
        self.refresh_metadata(deadline).await?;
        let brokers: Vec<String> = self.brokers.values().cloned().collect();
        let mut all = Vec::new();
        for addr in brokers {
            let filters: Vec<StrBytes> = state_filters
                .iter()
                .map(|s| StrBytes::from_string((*s).to_string()))
                .collect();
            let response = self
                .call(&addr, deadline, |_| {
                    ListTransactionsRequest::default().with_state_filters(filters)
                })
                .await?;
            if response.error_code != code::NONE {
                return Err(Failure {
                    retriable: is_retriable(response.error_code),
                    message: format!(
                        "broker {addr} answered {} to ListTransactions",
                        code_name(response.error_code)
                    ),
                });
            }
            if !response.unknown_state_filters.is_empty() {
                let unknown: Vec<&str> = response
                    .unknown_state_filters
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                return Err(Failure::fatal(format!(
                    "broker {addr} does not know the transaction states {unknown:?}"
                )));
            }
            all.extend(
                response
                    .transaction_states
                    .into_iter()
                    .map(|t| TransactionListing {
                        transactional_id: t.transactional_id.0.as_str().to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.as_str().to_string(),
                    }),
            );
        }
        Ok(all)
    }

    async fn try_set_feature_level(&mut self, feature: &str, level: i16, deadline: Instant) -> Attempt<()> {
        self.refresh_metadata(deadline).await?;
        let addr = match self.brokers.get(&self.controller_id) {
            Some(addr) => addr.clone(),
            None => self.any_broker(deadline).await?,
        };
        let current = self.finalized_level(&addr, feature, deadline).await?;
        if current == Some(level) || (level == 0 && current.is_none()) {
            return Ok(());
        }
        let downgrade = current.is_some_and(|c| level < c);
        let timeout_ms = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
        let response = self
            .call(&addr, deadline, |version| {
                let mut update = FeatureUpdateKey::default()
                    .with_feature(StrBytes::from_string(feature.to_string()))
                    .with_max_version_level(level);
                if downgrade || level == 0 {
                    update = if version == 0 {
                        update.with_allow_downgrade(true)
                    } else {
                        update.with_upgrade_type(UPGRADE_TYPE_SAFE_DOWNGRADE)
                    };
                } else if version > 0 {
                    update = update.with_upgrade_type(UPGRADE_TYPE_UPGRADE);
                }
                UpdateFeaturesRequest::default()
                    .with_timeout_ms(timeout_ms)
                    .with_feature_updates(vec![update])
            })
            .await?;
        let mut errors = vec![(response.error_code, response.error_message)];
        errors.extend(
            response
                .results
                .into_iter()
                .map(|r| (r.error_code, r.error_message)),
        );
        if let Some((error, message)) = errors.into_iter().find(|(e, _)| *e != code::NONE) {
            return Err(Failure {
                retriable: is_retriable(error),
                message: format!(
                    "broker {addr} answered {} to UpdateFeatures: {}",
                    code_name(error),
                    message.as_ref().map_or("", |m| m.as_str())
                ),
            });
        }
        // The update is committed through the controller's log; wait until
        // the broker applies it.
        while self.finalized_level(&addr, feature, deadline).await? != (level > 0).then_some(level) {
            if Instant::now() >= deadline {
                return Err(Failure::fatal(format!(
                    "broker {addr} accepted the update but does not report level {level} of '{feature}'"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The finalized level of `feature` that `addr` reports in `ApiVersions`.
    async fn finalized_level(
        &mut self,
        addr: &str,
        feature: &str,
        deadline: Instant,
    ) -> Attempt<Option<i16>> {
        let response = self
            .call(addr, deadline, |_| client_api_versions_request())
            .await?;
        if response.error_code != code::NONE {
            return Err(Failure::retriable(format!(
                "broker {addr} answered {} to ApiVersions",
                code_name(response.error_code)
            )));
        }
        Ok(response
            .finalized_features
            .iter()
            .find(|f| f.name.as_str() == feature)
            .map(|f| f.max_version_level))
    }

    // ---- routing -----------------------------------------------------------------------------

    /// Refreshes the broker list and controller id with a `Metadata` request
    /// (no topics) to any reachable broker.
    async fn refresh_metadata(&mut self, deadline: Instant) -> Attempt<()> {
        let mut last = None;
        for addr in self.candidate_addrs() {
            let result = self
                .call(&addr, deadline, |version| {
                    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
                    if version >= 4 {
                        request.with_allow_auto_topic_creation(false)
                    } else {
                        request
                    }
                })
                .await;
            match result {
                Ok(response) => {
                    self.brokers = response
                        .brokers
                        .iter()
                        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                        .collect();
                    self.controller_id = response.controller_id.0;
                    return Ok(());
                }
                Err(f) => last = Some(f),
            }
        }
        Err(last.unwrap_or_else(|| Failure::retriable("no Kafka broker to ask")))
    }

    /// Addresses to try for a request any broker can answer: those already
    /// connected first, then the known brokers, then the bootstrap list.
    fn candidate_addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = self.connections.keys().cloned().collect();
        out.sort();
        for addr in self.brokers.values().chain(self.bootstrap.iter()) {
            if !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }

    /// The address of some reachable broker.
    async fn any_broker(&mut self, deadline: Instant) -> Attempt<String> {
        let mut last = None;
        for addr in self.candidate_addrs() {
            match self.ensure_connected(&addr, deadline).await {
                Ok(()) => return Ok(addr),
                Err(f) => last = Some(f),
            }
        }
        Err(last.unwrap_or_else(|| Failure::retriable("no Kafka broker to ask")))
    }

    /// The address of the transaction coordinator of `transactional_id`,
    /// cached, else found with `FindCoordinator`.
    async fn coordinator(&mut self, transactional_id: &str, deadline: Instant) -> Attempt<String> {
        if let Some(addr) = self.coordinators.get(transactional_id) {
            return Ok(addr.clone());
        }
        let via = self.any_broker(deadline).await?;
        let response = self
            .call(&via, deadline, |version| {
                let key = StrBytes::from_string(transactional_id.to_string());
                let request = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_TRANSACTION);
                if version >= 4 {
                    request.with_coordinator_keys(vec![key])
                } else {
                    request.with_key(key)
                }
            })
            .await?;
        let (error, message, host, port) = match response.coordinators.into_iter().next() {
            Some(c) => (c.error_code, c.error_message, c.host, c.port),
            None => (
                response.error_code,
                response.error_message,
                response.host,
                response.port,
            ),
        };
        if error != code::NONE {
            return Err(Failure {
                retriable: is_retriable(error),
                message: format!(
                    "broker {via} answered {} to FindCoordinator for transactional id '{transactional_id}'{}",
                    code_name(error),
                    message.map(|m| format!(": {}", m.as_str())).unwrap_or_default()
                ),
            });
        }
        let addr = format!("{}:{port}", host.as_str());
        self.coordinators
            .insert(transactional_id.to_string(), addr.clone());
        Ok(addr)
    }

    // ---- transport ---------------------------------------------------------------------------

    /// Sends the request `build` makes for the negotiated version to `addr`
    /// and returns the response. A transport failure drops the connection
    /// and is retriable.
    async fn call<R: Api>(
        &mut self,
        addr: &str,
        deadline: Instant,
        build: impl FnOnce(i16) -> R,
    ) -> Attempt<R::Response> {
        self.call_upto(addr, deadline, i16::MAX, build).await
    }

    /// [`call`](Self::call), at version `max_version` at most.
    async fn call_upto<R: Api>(
        &mut self,
        addr: &str,
        deadline: Instant,
        max_version: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Attempt<R::Response> {
        self.ensure_connected(addr, deadline).await?;
        let correlation_id = self.correlation_id();
        let connection = self.connections.get_mut(addr).expect("connected above");
        let version = connection.version_of::<R>(addr)?.min(max_version);
        if version < R::VERSIONS.min {
            return Err(Failure::fatal(format!(
                "Kafka broker {addr} supports no {:?} version this client can use",
                R::KEY
            )));
        }
        let frame = encode_request_frame(&build(version), version, correlation_id)?;
        let response = match tokio::time::timeout_at(deadline, connection.round_trip(&frame)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                self.connections.remove(addr);
                return Err(Failure::retriable(format!(
                    "Kafka {:?} request to broker {addr} failed: {e}",
                    R::KEY
                )));
            }
            Err(_) => {
                self.connections.remove(addr);
                return Err(Failure::retriable(format!(
                    "Kafka {:?} request to broker {addr} timed out",
                    R::KEY
                )));
            }
        };
        decode_response_frame(response, R::KEY, version, correlation_id).map_err(|e| {
            self.connections.remove(addr);
            Failure::fatal(format!("broker {addr}: {e}"))
        })
    }

    fn correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = id.checked_add(1).unwrap_or(1);
        id
    }

    /// Opens a connection to `addr` and negotiates API versions, unless one
    /// is open.
    async fn ensure_connected(&mut self, addr: &str, deadline: Instant) -> Attempt<()> {
        if self.connections.contains_key(addr) {
            return Ok(());
        }
        let first = self.correlation_id();
        let second = self.correlation_id();
        let connection = match tokio::time::timeout_at(deadline, handshake(addr, first, second)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(f)) => return Err(f),
            Err(_) => {
                return Err(Failure::retriable(format!(
                    "connecting to Kafka broker {addr} timed out"
                )));
            }
        };
        self.connections.insert(addr.to_string(), connection);
        Ok(())
    }
}

/// The `ApiVersions` request of this client (v3+ carries its name and
/// version).
fn client_api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("weir"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
}

/// Connects to `addr` and asks for its API versions: first at the highest
/// version this client knows; a broker that does not support it answers
/// `UNSUPPORTED_VERSION` in a v0 body listing its own range, and the
/// request is repeated at the highest common version.
async fn handshake(addr: &str, first_correlation_id: i32, second_correlation_id: i32) -> Attempt<Connection> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::retriable(format!("cannot connect to Kafka broker {addr}: {e}")))?;
    stream.set_nodelay(true).ok();
    let mut connection = Connection {
        stream,
        versions: HashMap::new(),
    };
    let mut version = ApiVersionsRequest::VERSIONS.max;
    for correlation_id in [first_correlation_id, second_correlation_id] {
        let request = client_api_versions_request();
        let frame = encode_request_frame(&request, version, correlation_id)?;
        let response = connection.round_trip(&frame).await.map_err(|e| {
            Failure::retriable(format!("ApiVersions request to Kafka broker {addr} failed: {e}"))
        })?;
        // The header of an ApiVersions response is always v0; its body
        // starts with the error code.
        let error = response.get(4..6).map_or(code::NONE, |mut b| b.get_i16());
        let body_version = if error == code::UNSUPPORTED_VERSION {
            0
        } else {
            version
        };
        let decoded: ApiVersionsResponse =
            decode_response_frame(response, ApiKey::ApiVersions, body_version, correlation_id)
                .map_err(|e| Failure::fatal(format!("broker {addr}: {e}")))?;
        connection.versions = decoded
            .api_keys
            .iter()
            .map(|k| {
                let range = VersionRange {
                    min: k.min_version,
                    max: k.max_version,
                };
                (k.api_key, range)
            })
            .collect();
        match decoded.error_code {
            code::NONE => return Ok(connection),
            code::UNSUPPORTED_VERSION => {
                version = connection.version_of::<ApiVersionsRequest>(addr)?;
            }
            error => {
                return Err(Failure::fatal(format!(
                    "Kafka broker {addr} answered {} to ApiVersions",
                    code_name(error)
                )));
            }
        }
    }
    Err(Failure::fatal(format!(
        "Kafka broker {addr} does not agree on an ApiVersions version"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_txn_v0_frame_matches_the_protocol_layout() {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_producer_id(7.into())
            .with_producer_epoch(3)
            .with_committed(true);
        let frame = encode_request_frame(&request, 0, 42).unwrap();
        let mut expected = BytesMut::new();
        // header v1: api key, version, correlation id, client id (i16 length)
        expected.put_i16(26);
        expected.put_i16(0);
        expected.put_i32(42);
        expected.put_i16(4);
        expected.put_slice(b"weir");
        // body v0: transactional id (i16 length), producer id, epoch, committed
        expected.put_i16(2);
        expected.put_slice(b"tx");
        expected.put_i64(7);
        expected.put_i16(3);
        expected.put_u8(1);
        assert_eq!(&frame[..4], &(expected.len() as i32).to_be_bytes());
        assert_eq!(&frame[4..], &expected[..]);
    }

    #[test]
    fn flexible_versions_use_request_header_v2() {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_producer_id(7.into())
            .with_producer_epoch(3)
            .with_committed(false);
        let frame = encode_request_frame(&request, 3, 1).unwrap();
        let body = &frame[4..];
        // api key 26, version 3, correlation id 1, client id "weir", then the
        // header's empty tagged fields
        assert_eq!(
            &body[..14],
            &[0, 26, 0, 3, 0, 0, 0, 1, 0, 4, b'w', b'e', b'i', b'r']
        );
        assert_eq!(body[14], 0, "header v2 ends with an empty tagged-field section");
        // body v3: compact string "tx" (length + 1)
        assert_eq!(&body[15..18], &[3, b't', b'x']);
    }

    #[test]
    fn decodes_end_txn_responses_and_checks_correlation_ids() {
        let mut v0 = BytesMut::new();
        v0.put_i32(9); // correlation id (header v0)
        v0.put_i32(0); // throttle
        v0.put_i16(48); // INVALID_TXN_STATE
        let r: EndTxnResponse = decode_response_frame(v0.clone().freeze(), ApiKey::EndTxn, 0, 9).unwrap();
        assert_eq!(r.error_code, code::INVALID_TXN_STATE);
        let err = decode_response_frame::<EndTxnResponse>(v0.freeze(), ApiKey::EndTxn, 0, 10).unwrap_err();
        assert!(err.to_string().contains("correlation id 9"), "{err}");

        let mut v3 = BytesMut::new();
        v3.put_i32(5);
        v3.put_u8(0); // header v1 tagged fields
        v3.put_i32(0);
        v3.put_i16(0);
        v3.put_u8(0); // body tagged fields
        let r: EndTxnResponse = decode_response_frame(v3.freeze(), ApiKey::EndTxn, 3, 5).unwrap();
        assert_eq!(r.error_code, code::NONE);
    }

    #[test]
    fn api_versions_response_header_is_always_v0() {
        let mut frame = BytesMut::new();
        frame.put_i32(1); // correlation id, no tagged fields even at v3
        frame.put_i16(0); // error
        frame.put_u8(2); // compact array of one
        frame.put_i16(26);
        frame.put_i16(0);
        frame.put_i16(5);
        frame.put_u8(0); // entry tagged fields
        frame.put_i32(0); // throttle
        frame.put_u8(0); // tagged fields
        let r: ApiVersionsResponse =
            decode_response_frame(frame.freeze(), ApiKey::ApiVersions, 3, 1).unwrap();
        assert_eq!(r.api_keys.len(), 1);
        assert_eq!((r.api_keys[0].api_key, r.api_keys[0].max_version), (26, 5));
    }

    #[test]
    fn error_codes_are_named_as_in_the_protocol() {
        assert_eq!(code_name(48), "INVALID_TXN_STATE (48)");
        assert_eq!(code_name(14), "COORDINATOR_LOAD_IN_PROGRESS (14)");
        assert_eq!(code_name(90), "PRODUCER_FENCED (90)");
        assert_eq!(code_name(-1), "UNKNOWN_SERVER_ERROR (-1)");
        assert_eq!(code_name(0), "NONE (0)");
        assert!(is_retriable(code::CONCURRENT_TRANSACTIONS));
        assert!(is_retriable(code::NOT_COORDINATOR));
        assert!(!is_retriable(code::INVALID_TXN_STATE));
    }

    fn handle(epoch: i16) -> TransactionHandle {
        TransactionHandle {
            transactional_id: "t".into(),
            producer_id: 100,
            producer_epoch: epoch,
        }
    }

    fn described(state: &str, epoch: i16) -> TransactionDescription {
        TransactionDescription {
            transactional_id: "t".into(),
            state: state.into(),
            producer_id: 100,
            producer_epoch: epoch,
            transaction_timeout_ms: 60_000,
            transaction_start_time_ms: 0,
            topics: BTreeMap::new(),
        }
    }

    #[test]
    fn rejections_are_classified_by_the_coordinators_state() {
        let h = handle(3);
        let c = |commit, state, epoch| {
            classify_rejection(
                &h,
                commit,
                code::INVALID_TXN_STATE,
                Some(&described(state, epoch)),
            )
        };
        assert_eq!(c(true, "CompleteCommit", 3), Rejection::AlreadyCompleted);
        assert_eq!(c(false, "CompleteAbort", 3), Rejection::AlreadyCompleted);
        assert_eq!(c(true, "PrepareCommit", 3), Rejection::InProgress);
        assert_eq!(c(true, "Empty", 3), Rejection::NothingToComplete);
        // KIP-890: completion bumped the epoch
        assert_eq!(c(true, "CompleteCommit", 4), Rejection::AlreadyCompleted);
        for (commit, state, epoch) in [
            (true, "CompleteAbort", 3),
            (true, "PrepareAbort", 3),
            (false, "CompleteCommit", 3),
            (true, "Empty", 4),
            (true, "CompleteCommit", 5),
            (true, "Ongoing", 4),
        ] {
            match c(commit, state, epoch) {
                Rejection::Lost(m) => assert!(m.contains("'t'") && m.contains("was lost"), "{m}"),
                other => panic!("{commit} {state} {epoch}: {other:?}"),
            }
        }
        assert!(matches!(
            classify_rejection(&h, true, code::INVALID_PRODUCER_EPOCH, None),
            Rejection::Lost(_)
        ));
    }

    #[test]
    fn handles_round_trip_through_serde() {
        let h = handle(3);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<TransactionHandle>(&json).unwrap(), h);
    }
}

//! A real Kafka-protocol broker for tests: crabka-broker, started by the test
//! itself on a loopback address, with helpers to create topics, produce,
//! read back and inspect transactions.
//!
//! Include it from a test file with
//! `#[path = "support/kafka_broker.rs"] mod kafka_broker;`.
//!
//! Each [`TestBroker`] is a separate broker process with a fresh data
//! directory, on its own loopback address `127.0.0.N` (N from 2 up), because
//! crabka's controller always binds `<ip>:9093`. An address is reserved with
//! an exclusive `flock` on `$HOME/.cache/weir/broker/locks/127.0.0.N.lock`,
//! held while the broker runs, so tests in parallel threads and in parallel
//! test processes never pick the same one.
//!
//! The binary is `$WEIR_KAFKA_BROKER` if set, else
//! `$HOME/.cache/weir/broker/crabka-broker-0.3.8`; when missing it is built
//! by `.ci/install-broker` (about 30 minutes, once per machine).
//!
//! Helpers are synchronous, usable from plain `#[test]`s and from
//! `#[tokio::test]`s alike (the async work runs on a private runtime in a
//! helper thread).
//!
//! crabka-broker 0.3.8 quirks the helpers work around or tests must know
//! (see `tests/kafka_broker.rs`):
//! - `ListOffsets` ignores the isolation level: `fetch_watermarks` gives the
//!   high watermark even to a `read_committed` consumer. The last stable
//!   offset comes from a Fetch instead ([`TestBroker::partition_offsets`]).
//! - A Fetch response carries null records for a partition with nothing new;
//!   librdkafka rejects that ("invalid MessageSetSize -1", then a 500 ms
//!   fetch backoff), in both isolation levels: a consumer never gets an
//!   end-of-partition event, and the partitions after that one in the same
//!   response are fetched again later.
//! - The broker restarts on its data directory (after SIGTERM or SIGKILL)
//!   with its records, committed transactions, group offsets and
//!   coordinator state, but transactions open across the restart lose their
//!   isolation (their records become visible to `read_committed`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_connectors::kafka::protocol::{KafkaProtocolClient, PartitionOffsets};

/// The broker version the tests run against.
pub const BROKER_VERSION: &str = "0.3.8";

/// How long a broker may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Transaction states of transactions still open.
pub const OPEN_TRANSACTION_STATES: [&str; 3] = ["Ongoing", "PrepareCommit", "PrepareAbort"];

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its key, if any (UTF-8, lossily decoded).
    pub key: Option<String>,
    /// Its value (UTF-8, lossily decoded; empty for a null value).
    pub value: String,
    /// Its timestamp in milliseconds, if any.
    pub timestamp: Option<i64>,
}

/// A running crabka-broker (see the module docs). Dropping it kills the
/// broker (SIGKILL) and deletes its data directory.
pub struct TestBroker {
    child: Option<Child>,
    binary: PathBuf,
    /// Temp dir holding `data/` (the log dir) and the broker's output files.
    dir: tempfile::TempDir,
    ip: Ipv4Addr,
    port: u16,
    /// The `flock`ed reservation of `ip`.
    _ip_lock: File,
}

impl TestBroker {
    /// Starts a fresh broker and waits until it answers, then downgrades the
    /// cluster feature `transaction.version` to 1 (with `transaction.version`
    /// 2, crabka fences every librdkafka producer's second transaction).
    ///
    /// Panics (with the tail of the broker's log) if it does not come up.
    pub fn start() -> TestBroker {
        let binary = broker_binary();
        let dir = tempfile::Builder::new()
            .prefix("weir-kafka-broker-")
            .tempdir()
            .expect("create the broker's temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("create the broker's log dir");
        let meta = format!(
            r#"{{"cluster_id":"{}","directory_id":"{}","version":1}}"#,
            random_uuid(),
            random_uuid()
        );
        std::fs::write(data.join("meta.properties.json"), meta).expect("write meta.properties.json");
        let (ip, port, ip_lock) = reserve_address();
        let mut broker = TestBroker {
            child: None,
            binary,
            dir,
            ip,
            port,
            _ip_lock: ip_lock,
        };
        broker.spawn();
        broker.wait_ready();
        let bootstrap = broker.bootstrap();
        block_on(async move {
            let mut client = KafkaProtocolClient::connect(&bootstrap, Duration::from_secs(30))
                .await
                .expect("connect to the test broker");
            client
                .set_feature_level("transaction.version", 1)
                .await
                .expect("downgrade transaction.version to 1");
        });
        broker
    }

    /// `host:port` of the broker, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// The broker's log dir (partition data, metadata log).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The OS process id of the broker, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the broker gracefully (SIGTERM), waiting up to 30 s for it to
    /// exit (then SIGKILL). Returns whether it exited by itself.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker at once (SIGKILL), like a machine crash of it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same data directory and address
    /// (after [`stop`](Self::stop) or [`kill`](Self::kill)) and waits until
    /// it answers. See the conformance tests for whether crabka recovers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a stopped broker");
        self.spawn();
        self.wait_ready();
    }

    /// The last `lines` lines of the broker's stdout and stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["broker.stdout", "broker.stderr"] {
            let text = tail_of_file(&self.dir.path().join(name), 64 * 1024);
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            out.push_str(&format!("--- {name} (last {} lines) ---\n", all.len() - from));
            for line in &all[from..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// A librdkafka config with `bootstrap.servers` set to this broker.
    ///
    /// With `WEIR_RDKAFKA_DEBUG` set, librdkafka's `debug` is set to it (e.g.
    /// `fetch,eos`).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        if let Ok(debug) = std::env::var("WEIR_RDKAFKA_DEBUG") {
            // librdkafka logs through `tracing`: print it.
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_writer(std::io::stderr)
                .try_init();
            config
                .set("debug", debug)
                .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        config
    }

    /// A connected [`KafkaProtocolClient`] (30 s timeout), for async tests.
    pub async fn protocol_client(&self) -> KafkaProtocolClient {
        KafkaProtocolClient::connect(&self.bootstrap(), Duration::from_secs(30))
            .await
            .expect("connect a KafkaProtocolClient to the test broker")
    }

    /// Runs `f` with a connected [`KafkaProtocolClient`] on a private
    /// runtime and returns its result (for sync tests).
    pub fn with_protocol_client<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(KafkaProtocolClient) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let bootstrap = self.bootstrap();
        block_on(async move {
            let client = KafkaProtocolClient::connect(&bootstrap, Duration::from_secs(30))
                .await
                .expect("connect a KafkaProtocolClient to the test broker");
            f(client).await
        })
    }

    /// Creates `name` with `partitions` partitions (replication 1) and waits
    /// until the metadata shows every partition with a leader.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .expect("create an rdkafka AdminClient");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics([&topic], &options))
            .unwrap_or_else(|e| panic!("CreateTopics {name}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("cannot create topic {topic}: {code}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = admin
                .inner()
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics().iter().find(|t| t.name() == name).map(|t| {
                        t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} has no leaders after 30 s\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Produces `records` (key, value) to `topic` — to `partition`, or by
    /// the key's hash when `None` — without a transaction, and waits until
    /// every record is acknowledged by the broker (`acks=all`). Returns the
    /// (partition, offset) of each record, in order.
    pub fn produce_json<K: AsRef<str>, V: AsRef<str>>(
        &self,
        topic: &str,
        partition: Option<i32>,
        records: &[(Option<K>, V)],
    ) -> Vec<(i32, i64)> {
        let producer: FutureProducer = self
            .client_config()
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("create an rdkafka producer");
        let mut deliveries = Vec::with_capacity(records.len());
        for (key, value) in records {
            let mut record = FutureRecord::<str, str>::to(topic).payload(value.as_ref());
            if let Some(key) = key {
                record = record.key(key.as_ref());
            }
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("cannot produce to {topic}: {e}"),
                }
            };
            deliveries.push(delivery);
        }
        futures::executor::block_on(futures::future::join_all(deliveries))
            .into_iter()
            .map(|d| match d {
                Ok(Ok(d)) => (d.partition, d.offset),
                Ok(Err((e, _))) => panic!("delivery to {topic} failed: {e}"),
                Err(_) => panic!("delivery to {topic} was cancelled"),
            })
            .collect()
    }

    /// Reads every partition of `topic` from the beginning up to its current
    /// end, with `isolation_level` `"read_committed"` or
    /// `"read_uncommitted"`, and returns the records sorted by (partition,
    /// offset). Panics after `timeout`.
    ///
    /// "Current end" is, per partition when the call starts, the last stable
    /// offset for `read_committed` (before the earliest transaction still
    /// open) and the high watermark for `read_uncommitted`, as the
    /// partition's leader reports them in a Fetch response (see
    /// [`partition_offsets`](Self::partition_offsets)). A partition is read
    /// when the consumer's position reaches its end (positions move past
    /// transaction markers and aborted records too).
    ///
    /// The consumer's end-of-partition event is not used: with crabka it
    /// never comes (crabka sends null records for a partition without new
    /// data, which librdkafka rejects as a protocol parse failure, "invalid
    /// MessageSetSize -1").
    pub fn read_all(&self, topic: &str, isolation_level: &str, timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        let consumer = self.reader(isolation_level);
        let offsets = self.partition_offsets(topic);
        let ends: BTreeMap<i32, (i64, i64)> = offsets
            .iter()
            .map(|(&p, o)| {
                let end = if isolation_level == "read_committed" {
                    o.last_stable_offset
                } else {
                    o.high_watermark
                };
                (p, (o.log_start_offset, end))
            })
            .collect();
        let mut assignment = TopicPartitionList::new();
        for (&partition, &(low, end)) in &ends {
            if end > low {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(low))
                    .expect("add partition");
            }
        }
        let mut out = Vec::new();
        if assignment.count() == 0 {
            return out;
        }
        consumer.assign(&assignment).expect("assign partitions");
        loop {
            let positions = consumer.position().expect("consumer positions");
            let pending: Vec<(i32, Offset, i64)> = positions
                .elements()
                .iter()
                .filter_map(|e| {
                    let end = ends[&e.partition()].1;
                    match e.offset() {
                        Offset::Offset(o) if o >= end => None,
                        other => Some((e.partition(), other, end)),
                    }
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "read_all({topic}, {isolation_level}) timed out: (partition, position, end) {pending:?}, \
                 {} records read\n{}",
                out.len(),
                self.log_tail(40)
            );
            match consumer.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => panic!("read_all({topic}): {e}"),
                Some(Ok(m)) => {
                    if m.offset() < ends.get(&m.partition()).map_or(0, |e| e.1) {
                        out.push(Record {
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                            value: m
                                .payload()
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default(),
                            timestamp: m.timestamp().to_millis(),
                        });
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// (low, high) watermarks of every partition of `topic`, as librdkafka's
    /// `fetch_watermarks` (`ListOffsets`) reports them. (crabka answers the
    /// high watermark whatever the isolation level: see
    /// [`partition_offsets`](Self::partition_offsets) for the last stable
    /// offset.)
    pub fn watermarks(&self, topic: &str) -> BTreeMap<i32, (i64, i64)> {
        let consumer = self.reader("read_uncommitted");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        partition_ids(&metadata, topic)
            .into_iter()
            .map(|p| {
                let marks = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
                (p, marks)
            })
            .collect()
    }

    /// Log start offset, high watermark and last stable offset of every
    /// partition of `topic`, as the partition leaders report them in Fetch
    /// responses ([`KafkaProtocolClient::partition_offsets`]).
    pub fn partition_offsets(&self, topic: &str) -> BTreeMap<i32, PartitionOffsets> {
        let consumer = self.reader("read_uncommitted");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let partitions = partition_ids(&metadata, topic);
        let topic = topic.to_string();
        self.with_protocol_client(move |mut client| async move {
            let mut out = BTreeMap::new();
            for p in partitions {
                let offsets = client
                    .partition_offsets(&topic, p)
                    .await
                    .unwrap_or_else(|e| panic!("offsets of {topic}/{p}: {e}"));
                out.insert(p, offsets);
            }
            out
        })
    }

    /// The transactional ids starting with `prefix` whose transaction is
    /// open (`Ongoing`, `PrepareCommit` or `PrepareAbort`), sorted, from
    /// `ListTransactions` asked of the whole cluster.
    pub fn open_transactions(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.to_string();
        self.with_protocol_client(move |mut client| async move {
            let listings = client
                .list_transactions(&OPEN_TRANSACTION_STATES)
                .await
                .expect("ListTransactions");
            let mut ids: Vec<String> = listings
                .into_iter()
                .map(|l| l.transactional_id)
                .filter(|id| id.starts_with(&prefix))
                .collect();
            ids.sort();
            ids.dedup();
            ids
        })
    }

    // ---- internals ---------------------------------------------------------------------------

    fn reader(&self, isolation_level: &str) -> BaseConsumer {
        assert!(
            matches!(isolation_level, "read_committed" | "read_uncommitted"),
            "isolation level {isolation_level}"
        );
        self.client_config()
            .set("group.id", format!("weir-test-reader-{}", random_uuid()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.queue.backoff.ms", "10")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", isolation_level)
            .create()
            .expect("create an rdkafka consumer")
    }

    fn spawn(&mut self) {
        let out = File::create(self.dir.path().join("broker.stdout")).expect("create broker.stdout");
        let err = File::create(self.dir.path().join("broker.stderr")).expect("create broker.stderr");
        let addr = self.bootstrap();
        let child = Command::new(&self.binary)
            .arg("--listen-addr")
            .arg(&addr)
            .arg("--advertised-listener")
            .arg(&addr)
            .arg("--log-dir")
            .arg(self.data_dir())
            .args([
                "--metrics-listen-addr",
                "none",
                "--partition-disk-scan-interval-secs",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .env_remove("CRABKA_ADVERTISED_LISTENER")
            .env_remove("CRABKA_METRICS_LISTEN_ADDR")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let bootstrap = self.bootstrap();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                panic!("the broker exited at start ({status})\n{}", self.log_tail(40));
            }
            let b = bootstrap.clone();
            let ok =
                block_on(async move { KafkaProtocolClient::connect(&b, Duration::from_millis(500)).await })
                    .is_ok();
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "the broker did not answer on {bootstrap} within {START_TIMEOUT:?}\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `fut` to completion on a private current-thread runtime in a helper
/// thread, so that it works inside and outside a tokio runtime alike.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime")
            .block_on(fut)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A random UUID in its text form.
pub fn random_uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut b = [0u8; 16];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        // Each RandomState is seeded with fresh random keys.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The broker binary: `$WEIR_KAFKA_BROKER`, else the cached build, else
/// built now by `.ci/install-broker` (which prints its path).
fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_KAFKA_BROKER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "WEIR_KAFKA_BROKER={} is not a file",
            path.display()
        );
        return path;
    }
    let cached = cache_dir().join(format!("crabka-broker-{BROKER_VERSION}"));
    if cached.is_file() {
        return cached;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/install-broker");
    eprintln!(
        "{} is missing: building it with {} (takes ~30 minutes once)",
        cached.display(),
        script.display()
    );
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        path.is_file(),
        "{} printed '{}', not a file",
        script.display(),
        path.display()
    );
    path
}

/// `$HOME/.cache/weir/broker` (or under the temp dir without `$HOME`).
fn cache_dir() -> PathBuf {
    let base = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/weir"))
                .unwrap_or_else(|| std::env::temp_dir().join("weir-cache"))
        });
    base.join("broker")
}

/// Reserves a loopback address 127.0.0.N (N from 2 up) for one broker: an
/// exclusive `flock` on its lock file, and both `<ip>:9093` (the broker's
/// controller) and a free port bindable. Returns the address, the port and
/// the locked file (the reservation lasts as long as it is open).
fn reserve_address() -> (Ipv4Addr, u16, File) {
    let locks = cache_dir().join("locks");
    std::fs::create_dir_all(&locks).expect("create the broker lock dir");
    for n in 2..=254u8 {
        let ip = Ipv4Addr::new(127, 0, 0, n);
        let file = File::create(locks.join(format!("{ip}.lock"))).expect("create a lock file");
        // SAFETY: flock(2) on a file descriptor we own.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            continue;
        }
        if TcpListener::bind(SocketAddr::from((ip, 9093))).is_err() {
            continue;
        }
        let Ok(listener) = TcpListener::bind(SocketAddr::from((ip, 0))) else {
            continue;
        };
        let port = listener.local_addr().expect("local addr").port();
        return (ip, port, file);
    }
    panic!("no free loopback address 127.0.0.2..254 for a test broker");
}

/// The last `max` bytes of a file, as text.
fn tail_of_file(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The partition ids of `topic` in `metadata`, sorted.
fn partition_ids(metadata: &rdkafka::metadata::Metadata, topic: &str) -> Vec<i32> {
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("no topic {topic}"));
    assert!(t.error().is_none(), "metadata of {topic}: {:?}", t.error());
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    ids
}

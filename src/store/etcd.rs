//! The etcd v3 datastore: the same [`Store`] as SQLite, kept in an etcd cluster.
//!
//! Keys keep orc's `/registry/…` layout (upstream's), values are the JSON objects
//! (without `metadata.resourceVersion`, which is the key's etcd mod revision, as
//! upstream) passed through the secrets-encryption transformer. Writes are single-key
//! transactions with revision preconditions; reads are served from the same in-memory
//! watch cache as SQLite's, filled by one range read at start and then fed by one etcd
//! watch of `/registry/` (no polling). A write answers once the cache has applied its
//! revision, so this server reads its own writes; other servers' writes arrive through
//! the watch. Keys under `/registry/orc/` are orc's own bookkeeping (the cluster
//! marker), never API objects, and stay out of the cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType as EtcdEventType,
    GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use serde_json::Value;

use super::cache::{Cache, HistoryLimits};
use super::encryption::ValueTransformer;
use super::{
    make_kv, Event, EventType, KeyValue, ListFilter, ListPage, Result, Revision, Store, StoreError,
    Watcher,
};

/// Every key orc stores lives under this prefix.
pub const PREFIX: &str = "/registry/";
/// orc's own bookkeeping keys (not API objects; kept out of the cache).
pub const RESERVED_PREFIX: &str = "/registry/orc/";
/// The key naming the cluster this etcd belongs to (the hash of its CA bundle).
pub const MARKER_KEY: &str = "/registry/orc/cluster";
/// How long a start waits for an unreachable etcd by default.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one request may take before the endpoint is considered unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a committed write waits for this server's watch to deliver it.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Objects per range request while loading (each at most 1.5 MiB).
const LOAD_PAGE: i64 = 500;
/// Largest gRPC message accepted from etcd (a page of the initial load, a watch batch).
const MAX_MESSAGE: usize = 1 << 30;

/// Where the etcd cluster is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`http://HOST:PORT` or `https://HOST:PORT`).
    pub endpoints: Vec<String>,
    /// CA bundle verifying the members' certificates (`--datastore-cafile`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (`--datastore-certfile`, `--datastore-keyfile`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// How long a start retries an unreachable etcd before giving up.
    pub retry_timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--datastore-endpoint {0}: no HOST:PORT given")]
    Empty(String),
    #[error("--datastore-endpoint {endpoint}: {item:?} is not HOST:PORT")]
    BadEndpoint { endpoint: String, item: String },
    #[error("--datastore-endpoint {endpoint}: mixes http and https endpoints")]
    MixedSchemes { endpoint: String },
    #[error("--datastore-certfile and --datastore-keyfile go together: give both or neither")]
    HalfIdentity,
    #[error(
        "--datastore-endpoint {endpoint}: TLS files were given for plain-text (http) endpoints; use https://"
    )]
    TlsOverHttp { endpoint: String },
}

impl EtcdConfig {
    /// Parses `etcd://H:P[,H:P…]`, `https://H:P[,…]` or `http://H:P[,…]` (each item may
    /// repeat the scheme). `etcd://` speaks TLS when TLS files are given, plain text
    /// otherwise.
    pub fn parse(
        endpoint: &str,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        retry_timeout: Duration,
    ) -> std::result::Result<EtcdConfig, ConfigError> {
        if cert_file.is_some() != key_file.is_some() {
            return Err(ConfigError::HalfIdentity);
        }
        let has_tls = ca_file.is_some() || cert_file.is_some();
        let default = if has_tls { "https" } else { "http" };
        let mut scheme: Option<&str> = None;
        let mut endpoints = Vec::new();
        let bad = |item: &str| ConfigError::BadEndpoint {
            endpoint: endpoint.into(),
            item: item.into(),
        };
        for item in endpoint.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (explicit, rest) = match item.split_once("://") {
                Some((s, rest)) => (Some(s), rest),
                None => (None, item),
            };
            let this = match explicit {
                Some("http") => "http",
                Some("https") => "https",
                Some("etcd") => default,
                None => scheme.unwrap_or(default),
                Some(_) => return Err(bad(item)),
            };
            if scheme.is_some_and(|s| s != this) {
                return Err(ConfigError::MixedSchemes {
                    endpoint: endpoint.into(),
                });
            }
            scheme = Some(this);
            let rest = rest.trim_end_matches('/');
            let valid = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid || rest.contains('/') {
                return Err(bad(item));
            }
            endpoints.push(format!("{this}://{rest}"));
        }
        if endpoints.is_empty() {
            return Err(ConfigError::Empty(endpoint.into()));
        }
        if has_tls && scheme == Some("http") {
            return Err(ConfigError::TlsOverHttp {
                endpoint: endpoint.into(),
            });
        }
        Ok(EtcdConfig {
            endpoints,
            ca_file,
            cert_file,
            key_file,
            retry_timeout,
        })
    }

    /// The endpoints, comma-separated, for messages.
    pub fn describe(&self) -> String {
        self.endpoints.join(",")
    }

    fn tls_options(&self) -> Result<Option<etcd_client::TlsOptions>> {
        if !self.endpoints.iter().any(|e| e.starts_with("https://")) {
            return Ok(None);
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| StoreError::Inspect {
                path: path.display().to_string(),
                source,
            })
        };
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(tls))
    }
}

/// What an etcd holds, as far as orc is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// Nothing under `/registry/`: a new cluster may start there.
    Empty,
    /// An orc cluster whose CA bundle hashes to this.
    Orc { ca_hash: String },
    /// Keys under `/registry/` but no orc marker: another Kubernetes or application.
    Foreign { keys: i64 },
}

/// The marker's stored value.
fn marker_value(ca_hash: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"kind": "OrcCluster", "caHash": ca_hash}))
        .unwrap_or_default()
}

fn etcd_error(config: &EtcdConfig, step: &'static str, source: etcd_client::Error) -> StoreError {
    StoreError::Etcd {
        endpoints: config.describe(),
        step,
        source,
    }
}

/// Whether etcd refused a request for its size (`--max-request-bytes`).
fn too_large(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(s) if s.message().contains("too large"))
}

/// Whether etcd no longer holds the requested revision.
fn compacted(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(s) if s.message().contains("compacted"))
}

/// Connects to etcd, retrying for `config.retry_timeout` while no member answers.
pub async fn connect(config: &EtcdConfig) -> Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    let options = match config.tls_options()? {
        Some(tls) => options.with_tls(tls),
        None => options,
    };
    let deadline = Instant::now() + config.retry_timeout;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = async {
            let mut client = Client::connect(&config.endpoints, Some(options.clone())).await?;
            tokio::time::timeout(REQUEST_TIMEOUT, client.status())
                .await
                .map_err(|_| etcd_client::Error::WatchError("status request timed out".into()))??;
            Ok::<_, etcd_client::Error>(client)
        }
        .await;
        match outcome {
            Ok(client) => return Ok(client),
            Err(source) if Instant::now() >= deadline => {
                return Err(StoreError::EtcdUnreachable {
                    endpoints: config.describe(),
                    waited: config.retry_timeout.as_secs(),
                    source,
                })
            }
            Err(error) => {
                tracing::warn!(endpoints = %config.describe(), attempt, %error,
                    retry_for_secs = config.retry_timeout.as_secs(), "etcd not reachable yet, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What `client`'s etcd holds (see [`Contents`]).
pub async fn inspect(client: &Client, config: &EtcdConfig) -> Result<Contents> {
    let mut kv = client.kv_client();
    let marker = kv
        .get(MARKER_KEY, None)
        .await
        .map_err(|e| etcd_error(config, "read the cluster marker", e))?;
    if let Some(found) = marker.kvs().first() {
        let value: Value = serde_json::from_slice(found.value()).unwrap_or(Value::Null);
        return Ok(Contents::Orc {
            ca_hash: value["caHash"].as_str().unwrap_or_default().to_string(),
        });
    }
    let count = kv
        .get(
            PREFIX,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .map_err(|e| etcd_error(config, "count keys", e))?
        .count();
    Ok(if count == 0 {
        Contents::Empty
    } else {
        Contents::Foreign { keys: count }
    })
}

/// Makes sure `client`'s etcd belongs to the cluster whose CA hashes to `ca_hash`:
/// marks an empty etcd as this cluster's, refuses another cluster's or application's.
pub async fn claim(client: &Client, config: &EtcdConfig, ca_hash: &str) -> Result<()> {
    for _ in 0..3 {
        match inspect(client, config).await? {
            Contents::Orc { ca_hash: found } if found.eq_ignore_ascii_case(ca_hash) => {
                return Ok(())
            }
            Contents::Orc { ca_hash: found } => {
                return Err(StoreError::OtherCluster {
                    endpoints: config.describe(),
                    found,
                    expected: ca_hash.into(),
                })
            }
            Contents::Foreign { keys } => {
                return Err(StoreError::ForeignEtcd {
                    endpoints: config.describe(),
                    keys,
                })
            }
            Contents::Empty => {
                let txn = Txn::new()
                    .when([Compare::create_revision(MARKER_KEY, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(MARKER_KEY, marker_value(ca_hash), None)]);
                let written = client
                    .kv_client()
                    .txn(txn)
                    .await
                    .map_err(|e| etcd_error(config, "write the cluster marker", e))?;
                if written.succeeded() {
                    tracing::info!(endpoints = %config.describe(), key = MARKER_KEY, "marked etcd as this cluster's datastore");
                    return Ok(());
                }
                // Another server marked it first: check its marker.
            }
        }
    }
    Err(StoreError::CommitFailed {
        reason: "the cluster marker kept changing while it was checked".into(),
    })
}

/// The state the watch task shares with writers.
struct Shared {
    cache: Cache,
    transformer: Arc<dyn ValueTransformer>,
    config: EtcdConfig,
}

pub struct EtcdStore {
    shared: Arc<Shared>,
    kv: KvClient,
    client: Client,
    /// The last revision the cache applied (the watch task's progress).
    applied: tokio::sync::watch::Receiver<Revision>,
    watch_task: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.watch_task.abort();
    }
}

impl EtcdStore {
    /// Connects (retrying, see [`connect`]), checks or writes the cluster marker for
    /// `ca_hash`, loads `/registry/` into the cache and starts the watch feeding it.
    /// Must be called within a Tokio runtime.
    pub async fn open(
        config: EtcdConfig,
        transformer: Arc<dyn ValueTransformer>,
        limits: HistoryLimits,
        ca_hash: &str,
    ) -> Result<EtcdStore> {
        let client = connect(&config).await?;
        claim(&client, &config, ca_hash).await?;
        EtcdStore::open_claimed(client, config, transformer, limits).await
    }

    /// Like [`EtcdStore::open`] on a client already connected to an etcd whose marker
    /// was checked.
    pub async fn open_claimed(
        client: Client,
        config: EtcdConfig,
        transformer: Arc<dyn ValueTransformer>,
        limits: HistoryLimits,
    ) -> Result<EtcdStore> {
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let (objects, revision) = load(&kv, &config, &*transformer).await?;
        tracing::info!(endpoints = %config.describe(), objects = objects.len(), revision, "loaded the datastore from etcd");
        let shared = Arc::new(Shared {
            cache: Cache::with_limits(objects, vec![], revision, revision, limits),
            transformer,
            config,
        });
        let (applied_tx, applied) = tokio::sync::watch::channel(revision);
        let watch_task = tokio::spawn(run_watch(
            client.clone(),
            kv.clone(),
            shared.clone(),
            applied_tx,
            revision,
        ));
        Ok(EtcdStore {
            shared,
            kv,
            client,
            applied,
            watch_task,
        })
    }

    /// The etcd client (for orc's own bookkeeping keys under [`RESERVED_PREFIX`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn err(&self, step: &'static str, source: etcd_client::Error) -> StoreError {
        etcd_error(&self.shared.config, step, source)
    }

    /// Runs `txn` within [`REQUEST_TIMEOUT`].
    async fn txn(
        &self,
        key: &str,
        step: &'static str,
        txn: Txn,
    ) -> Result<etcd_client::TxnResponse> {
        let mut kv = self.kv.clone();
        match tokio::time::timeout(REQUEST_TIMEOUT, kv.txn(txn)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if too_large(&e) => Err(StoreError::TooLarge {
                key: key.into(),
                reason: e.to_string(),
            }),
            Ok(Err(e)) => Err(self.err(step, e)),
            Err(_) => Err(StoreError::CommitFailed {
                reason: format!(
                    "etcd ({}) did not answer within {}s",
                    self.shared.config.describe(),
                    REQUEST_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    /// The stored bytes of `value` at `key` (without resourceVersion, encoded).
    fn encode(&self, key: &str, value: &mut Value) -> Result<Vec<u8>> {
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let raw = serde_json::to_vec(&*value).map_err(|source| StoreError::Decode {
            key: key.into(),
            source,
        })?;
        match self.shared.transformer.encode(key, &raw) {
            Ok(Some(encoded)) => Ok(encoded),
            Ok(None) => Ok(raw),
            Err(source) => Err(StoreError::Transform {
                key: key.into(),
                source,
            }),
        }
    }

    /// Waits until the cache applied `revision`, then answers the object written at it.
    async fn visible(
        &self,
        key: &str,
        written: impl FnOnce() -> KeyValue,
        revision: Revision,
    ) -> Result<KeyValue> {
        let mut applied = self.applied.clone();
        let seen =
            tokio::time::timeout(VISIBLE_TIMEOUT, applied.wait_for(|r| *r >= revision)).await;
        if !matches!(seen, Ok(Ok(_))) {
            return Err(StoreError::CommitFailed {
                reason: format!(
                    "{key} was written at revision {revision} but the etcd watch of this server has not delivered it within {}s",
                    VISIBLE_TIMEOUT.as_secs()
                ),
            });
        }
        match self.shared.cache.get(key) {
            Some(kv) if kv.mod_revision == revision => Ok(kv),
            _ => Ok(written()),
        }
    }
}

/// The precondition of an update or delete: the key exists, at `expected` if given.
fn exists_at(key: &str, expected: Option<Revision>) -> Compare {
    match expected {
        Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev as i64),
        None => Compare::create_revision(key, CompareOp::Greater, 0),
    }
}

/// Why a conditional update or delete failed, from its failure branch's keys-only get.
fn refusal(key: &str, expected: Option<Revision>, resp: &etcd_client::TxnResponse) -> StoreError {
    let current = resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision() as Revision),
        _ => None,
    });
    match (current, expected) {
        (Some(current), Some(expected)) => StoreError::Conflict {
            key: key.into(),
            expected,
            current,
        },
        _ => StoreError::NotFound { key: key.into() },
    }
}

fn header_revision(resp: &etcd_client::TxnResponse) -> Revision {
    resp.header().map_or(0, |h| h.revision() as Revision)
}

/// Decodes one stored value into a cache entry.
fn decode(
    transformer: &dyn ValueTransformer,
    key: &str,
    stored: &[u8],
    create_revision: Revision,
    mod_revision: Revision,
) -> Result<KeyValue> {
    let decoded = transformer
        .decode(key, stored)
        .map_err(|source| StoreError::Transform {
            key: key.into(),
            source,
        })?;
    let value: Value =
        serde_json::from_slice(decoded.as_deref().unwrap_or(stored)).map_err(|source| {
            StoreError::Decode {
                key: key.into(),
                source,
            }
        })?;
    Ok(make_kv(key, value, create_revision, mod_revision))
}

/// Every object under [`PREFIX`] (but orc's reserved keys) at one revision, read in pages.
async fn load(
    kv: &KvClient,
    config: &EtcdConfig,
    transformer: &dyn ValueTransformer,
) -> Result<(Vec<KeyValue>, Revision)> {
    let mut kv = kv.clone();
    let end = prefix_end(PREFIX);
    let mut start = PREFIX.as_bytes().to_vec();
    let mut revision = 0i64;
    let mut objects = Vec::new();
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(LOAD_PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = kv
            .get(start.clone(), Some(options))
            .await
            .map_err(|e| etcd_error(config, "load the datastore", e))?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        for item in resp.kvs() {
            let Ok(key) = item.key_str() else { continue };
            if key.starts_with(RESERVED_PREFIX) {
                continue;
            }
            objects.push(decode(
                transformer,
                key,
                item.value(),
                item.create_revision() as Revision,
                item.mod_revision() as Revision,
            )?);
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok((objects, revision as Revision))
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Feeds the cache from one etcd watch of [`PREFIX`], from `revision + 1` on. A broken
/// stream is reopened from the last applied revision + 1 (nothing lost or repeated);
/// if etcd compacted that revision meanwhile, the cache is relisted and the
/// differences are sent as events.
async fn run_watch(
    client: Client,
    kv: KvClient,
    shared: Arc<Shared>,
    applied: tokio::sync::watch::Sender<Revision>,
    mut revision: Revision,
) {
    let endpoints = shared.config.describe();
    let mut backoff = Duration::from_millis(100);
    loop {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision as i64 + 1)
            .with_progress_notify();
        let mut watch_client = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let mut stream = match watch_client.watch(PREFIX, Some(options)).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%endpoints, %error, revision, "etcd watch could not be opened, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    backoff = Duration::from_millis(100);
                    if resp.compact_revision() > 0 {
                        tracing::warn!(%endpoints, from = revision + 1, compacted = resp.compact_revision(),
                            "etcd compacted past this server's watch: relisting");
                        match relist(&kv, &shared).await {
                            Ok(rev) => {
                                revision = rev;
                                let _ = applied.send(revision);
                            }
                            Err(error) => {
                                tracing::warn!(%endpoints, %error, "relist after compaction failed, retrying");
                                tokio::time::sleep(backoff).await;
                            }
                        }
                        break;
                    }
                    if resp.canceled() {
                        tracing::warn!(%endpoints, reason = resp.cancel_reason(), "etcd canceled the watch, reopening");
                        break;
                    }
                    if let Some(last) = apply(&shared, resp.events()) {
                        revision = last;
                        let _ = applied.send(revision);
                    }
                }
                Ok(None) => {
                    tracing::warn!(%endpoints, revision, "etcd watch stream ended, reopening");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%endpoints, %error, revision, "etcd watch stream broke, reopening");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    break;
                }
            }
        }
    }
}

/// Turns one watch response's events into cache events and applies them; the last
/// revision seen (reserved keys included), if any.
fn apply(shared: &Shared, events: &[etcd_client::Event]) -> Option<Revision> {
    let mut last = None;
    // Each key's state after the earlier events of this batch.
    let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let Some(item) = event.kv() else { continue };
        let revision = item.mod_revision() as Revision;
        last = Some(revision);
        let Ok(key) = item.key_str() else { continue };
        if key.starts_with(RESERVED_PREFIX) {
            continue;
        }
        let previous = match overlay.get(key) {
            Some(state) => state.clone(),
            None => shared.cache.get(key),
        };
        match event.event_type() {
            EtcdEventType::Put => {
                let kv = match decode(
                    &*shared.transformer,
                    key,
                    item.value(),
                    item.create_revision() as Revision,
                    revision,
                ) {
                    Ok(kv) => kv,
                    Err(error) => {
                        tracing::error!(key, revision, %error, "skipping an undecodable value written to etcd");
                        continue;
                    }
                };
                let (kind, prev) = if item.create_revision() == item.mod_revision() {
                    (EventType::Added, None)
                } else {
                    (EventType::Modified, previous)
                };
                overlay.insert(key.to_string(), Some(kv.clone()));
                out.push(Event { kind, kv, prev });
            }
            EtcdEventType::Delete => {
                let Some(prev) = previous else { continue };
                let kv = make_kv(key, (*prev.value).clone(), prev.create_revision, revision);
                overlay.insert(key.to_string(), None);
                out.push(Event {
                    kind: EventType::Deleted,
                    kv,
                    prev: None,
                });
            }
        }
    }
    if !out.is_empty() {
        shared.cache.apply(out);
    }
    last
}

/// Reads everything again after etcd compacted past the watch: sends the differences
/// to the cache as events and forgets the history before them (watches resuming from
/// earlier get 410 and relist). Returns the revision read at.
async fn relist(kv: &KvClient, shared: &Shared) -> Result<Revision> {
    let (objects, revision) = load(kv, &shared.config, &*shared.transformer).await?;
    let current = shared.cache.list(PREFIX, None, 0, &|_| true).items;
    let mut by_key: HashMap<Arc<str>, KeyValue> =
        current.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    let mut events = Vec::new();
    for kv in objects {
        match by_key.remove(&kv.key) {
            Some(old) if old.mod_revision == kv.mod_revision => {}
            Some(old) if old.create_revision == kv.create_revision => events.push(Event {
                kind: EventType::Modified,
                kv,
                prev: Some(old),
            }),
            _ => events.push(Event {
                kind: EventType::Added,
                kv,
                prev: None,
            }),
        }
    }
    for (key, old) in by_key {
        let kv = make_kv(&key, (*old.value).clone(), old.create_revision, revision);
        events.push(Event {
            kind: EventType::Deleted,
            kv,
            prev: None,
        });
    }
    events.sort_by_key(Event::revision);
    shared.cache.apply(events);
    shared.cache.compact(revision);
    Ok(revision)
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.shared.cache.get(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: ListFilter<'_>,
    ) -> ListPage {
        self.shared.cache.list(prefix, start_after, limit, filter)
    }

    async fn create(&self, key: &str, mut value: Value) -> Result<KeyValue> {
        let stored = self.encode(key, &mut value)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, stored, None)]);
        let resp = self.txn(key, "create", txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let rev = header_revision(&resp);
        self.visible(key, || make_kv(key, value, rev, rev), rev)
            .await
    }

    async fn update(
        &self,
        key: &str,
        mut value: Value,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let stored = self.encode(key, &mut value)?;
        let keys_only = || Some(GetOptions::new().with_keys_only());
        let txn = Txn::new()
            .when([exists_at(key, expected)])
            .and_then([TxnOp::put(key, stored, None), TxnOp::get(key, keys_only())])
            .or_else([TxnOp::get(key, keys_only())]);
        let resp = self.txn(key, "update", txn).await?;
        if !resp.succeeded() {
            return Err(refusal(key, expected, &resp));
        }
        let rev = header_revision(&resp);
        let created = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or_default() as Revision;
        self.visible(key, || make_kv(key, value, created, rev), rev)
            .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([exists_at(key, expected)])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let resp = self.txn(key, "delete", txn).await?;
        if !resp.succeeded() {
            return Err(refusal(key, expected, &resp));
        }
        let rev = header_revision(&resp);
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(del) => del.prev_kvs().first().cloned(),
            _ => None,
        });
        let last = match prev {
            Some(prev) => decode(
                &*self.shared.transformer,
                key,
                prev.value(),
                prev.create_revision() as Revision,
                rev,
            )?,
            None => return Err(StoreError::NotFound { key: key.into() }),
        };
        let mut applied = self.applied.clone();
        let seen = tokio::time::timeout(VISIBLE_TIMEOUT, applied.wait_for(|r| *r >= rev)).await;
        if !matches!(seen, Ok(Ok(_))) {
            return Err(StoreError::CommitFailed {
                reason: format!(
                    "{key} was deleted at revision {rev} but the etcd watch of this server has not delivered it within {}s",
                    VISIBLE_TIMEOUT.as_secs()
                ),
            });
        }
        Ok(last)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher> {
        self.shared.cache.watch(prefix, after)
    }

    fn snapshot_and_watch(&self, prefix: &str) -> (Vec<KeyValue>, Revision, Watcher) {
        self.shared.cache.snapshot_and_watch(prefix)
    }

    fn revision(&self) -> Revision {
        self.shared.cache.revision()
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let revision = revision.min(self.shared.cache.revision());
        if revision <= self.shared.cache.floor() {
            return Ok(());
        }
        let mut kv = self.kv.clone();
        match kv.compact(revision as i64, None).await {
            Ok(_) => {}
            // Another server compacted as far already.
            Err(e) if compacted(&e) => {}
            Err(e) => return Err(self.err("compact", e)),
        }
        self.shared.cache.compact(revision);
        tracing::debug!(revision, "compacted etcd");
        Ok(())
    }

    async fn ready(&self) -> Result<()> {
        let mut kv = self.kv.clone();
        let probe = kv.get(MARKER_KEY, Some(GetOptions::new().with_count_only()));
        match tokio::time::timeout(Duration::from_secs(3), probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.err("readiness probe", e)),
            Err(_) => Err(StoreError::CommitFailed {
                reason: format!(
                    "etcd ({}) did not answer within 3s",
                    self.shared.config.describe()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ep: &str, tls: bool) -> std::result::Result<EtcdConfig, ConfigError> {
        let file = |s: &str| tls.then(|| PathBuf::from(s));
        EtcdConfig::parse(
            ep,
            file("ca"),
            file("crt"),
            file("key"),
            DEFAULT_RETRY_TIMEOUT,
        )
    }

    #[test]
    fn endpoints_parse_as_k3s_writes_them() {
        assert_eq!(
            parse("etcd://127.0.0.1:2379,127.0.0.2:2379", false)
                .unwrap()
                .endpoints,
            vec!["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
        );
        assert_eq!(
            parse("etcd://a:1", true).unwrap().endpoints,
            vec!["https://a:1"]
        );
        assert_eq!(
            parse("https://a:1,https://b:2", true).unwrap().endpoints,
            vec!["https://a:1", "https://b:2"]
        );
        assert_eq!(
            parse("https://a:1,b:2", false).unwrap().endpoints,
            vec!["https://a:1", "https://b:2"]
        );
        assert_eq!(parse("http://a:1", false).unwrap().describe(), "http://a:1");
    }

    #[test]
    fn bad_endpoints_are_refused_with_the_offending_item() {
        assert!(matches!(
            parse("etcd://", false),
            Err(ConfigError::Empty(_))
        ));
        assert!(matches!(
            parse("etcd://a:1,b", false),
            Err(ConfigError::BadEndpoint { item, .. }) if item == "b"
        ));
        assert!(matches!(
            parse("etcd://a:x", false),
            Err(ConfigError::BadEndpoint { .. })
        ));
        assert!(matches!(
            parse("http://a:1,https://b:2", false),
            Err(ConfigError::MixedSchemes { .. })
        ));
        assert!(matches!(
            parse("http://a:1", true),
            Err(ConfigError::TlsOverHttp { .. })
        ));
        let half = EtcdConfig::parse(
            "etcd://a:1",
            None,
            Some("c".into()),
            None,
            DEFAULT_RETRY_TIMEOUT,
        );
        assert_eq!(half, Err(ConfigError::HalfIdentity));
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/"), b"/registry0".to_vec());
    }
}

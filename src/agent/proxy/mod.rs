//! Service proxy: kube-proxy's nftables design in orc's own table (`ip orc-proxy` by
//! default). Other tables are never read or touched.
//!
//! [`rules`] builds the desired table from Services + Endpoints (pure), [`sync`] turns
//! it into nft JSON commands (an incremental diff, or a full resync against the live
//! table), and [`Proxier`] keeps the last applied state and applies each change as one
//! atomic transaction through an [`Nft`] backend: [`NftCli`] sends it as an nf_tables
//! netlink batch ([`netlink`]) when it can, else pipes it to `nft -j`. [`source`] feeds
//! it from the API server.

pub mod netlink;
pub mod rules;
pub mod source;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info_span, warn, Instrument};

use rules::{EndpointsMap, Protocol, Ruleset, ServiceMap};
use sync::LiveTable;

pub const DEFAULT_TABLE: &str = "orc-proxy";
/// The longest wait between two syncs (kube-proxy's `minSyncPeriod`): see [`SyncPacer`].
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// The shortest: changes that come within it of a sync are applied together.
pub const SHORTEST_SYNC_INTERVAL: Duration = Duration::from_millis(5);
/// A sync is followed by a pause of this many times its own duration (bounded by the two
/// intervals above), so the proxier spends at most about a quarter of its time syncing (a larger factor
/// turned a sync slowed by a few milliseconds of jitter into a long pause).
pub const SYNC_PAUSE_FACTOR: u32 = 4;
/// Wait before retrying a failed sync (the retry is a full resync).
pub const SYNC_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run nft to {step}: is nftables installed? (apt-get install nftables)")]
    SpawnNft {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("nft failed to {step}: {stderr}")]
    NftFailed { step: &'static str, stderr: String },
    #[error("nft printed a listing that is not JSON")]
    ListingNotJson(#[source] serde_json::Error),
    #[error("enter the proxy's network namespace")]
    Netns(#[source] crate::agent::net::Error),
    #[error("nft thread panicked")]
    ThreadPanicked,
    #[error("open a netfilter netlink socket")]
    NetlinkSocket(#[source] std::io::Error),
    #[error("netlink transaction to {step}: {source}")]
    NetlinkIo {
        step: &'static str,
        source: std::io::Error,
    },
    #[error(
        "the kernel refused a netlink transaction to {step}: command {index} ({command}): {source}"
    )]
    NetlinkRefused {
        step: &'static str,
        index: usize,
        command: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the proxier talks to nftables. Blocking.
pub trait Nft: Send + Sync {
    /// Applies `commands` as one transaction (all or nothing).
    fn apply(&self, commands: &[Value]) -> Result<()>;
    /// The chains, sets and maps of `table` as an `nft -j` listing (`{"nftables": [...]}`,
    /// without rules or elements); `None` when the table holds none (or does not exist).
    fn list_table(&self, table: &str) -> Result<Option<Value>>;
    /// Applies an nft script (text, `nft -f`): what nft's JSON cannot say.
    fn apply_script(&self, script: &str) -> Result<()>;
    /// Whether every transaction the DNAT maps need can be applied ([`rules::Shape`]):
    /// only over netlink, since nft 1.0.6 cannot parse their rule from JSON.
    fn supports_dnat_maps(&self) -> bool {
        false
    }
}

/// The real backend, inside `netns` when set (in a test's or a node's namespace; the
/// process's own otherwise). A transaction goes to the kernel as one nf_tables netlink
/// batch when [`netlink::encode`] can encode it (every incremental proxy sync): no
/// process, and no dump of the whole ruleset, which the `nft` binary does before each
/// transaction. Otherwise (full resyncs, which create the maps, and most NetworkPolicy
/// transactions) it runs the `nft` binary. Listings always come from `nft`.
#[derive(Debug, Clone, Default)]
pub struct NftCli {
    pub netns: Option<PathBuf>,
    /// The netlink socket, opened in `netns` on first use and shared by clones.
    socket: Arc<Mutex<Option<NetlinkSocket>>>,
    /// Always run the `nft` binary (tests compare both paths).
    binary_only: bool,
    /// Transactions sent over netlink so far (shared by clones).
    netlink_transactions: Arc<std::sync::atomic::AtomicU64>,
}

/// An open NETLINK_NETFILTER socket, the next sequence number and the send buffer size.
struct NetlinkSocket {
    socket: netlink_sys::Socket,
    seq: u32,
    send_buffer: usize,
}

impl std::fmt::Debug for NetlinkSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkSocket")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A batch is sent in one message: the socket's send buffer grows to the largest batch
/// so far (a full sync of 10,000 services is ~25 MB). Bigger ones go to `nft`.
const MAX_NETLINK_BATCH: usize = 256 << 20;
/// The send buffer a socket starts with.
const INITIAL_SEND_BUFFER: usize = 1 << 20;

impl NftCli {
    /// The backend for the network namespace at `netns`.
    pub fn in_netns(netns: impl Into<PathBuf>) -> Self {
        Self {
            netns: Some(netns.into()),
            ..Self::default()
        }
    }

    /// Never uses netlink: every transaction runs the `nft` binary.
    pub fn binary_only(mut self) -> Self {
        self.binary_only = true;
        self
    }

    /// How many transactions went to the kernel over netlink (the others ran `nft`).
    pub fn netlink_transactions(&self) -> u64 {
        self.netlink_transactions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens a netfilter netlink socket in `netns`: a socket belongs to the namespace it
    /// was created in, whichever thread uses it later.
    fn open_socket(&self) -> Result<NetlinkSocket> {
        let open = || -> std::io::Result<netlink_sys::Socket> {
            let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
            socket.bind_auto()?;
            socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
            // Room for a whole batch and for the kernel's answers to it.
            let fd = std::os::fd::AsFd::as_fd(&socket);
            use nix::sys::socket::{setsockopt, sockopt};
            setsockopt(&fd, sockopt::SndBufForce, &INITIAL_SEND_BUFFER)?;
            setsockopt(&fd, sockopt::RcvBufForce, &(1 << 20))?;
            // The kernel answers at once; never block a sync forever.
            let timeout = nix::sys::time::TimeVal::new(5, 0);
            setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
            Ok(socket)
        };
        let socket = match &self.netns {
            None => open(),
            Some(path) => crate::agent::net::spawn_in_netns(Some(path.clone()), move || Ok(open()))
                .map_err(Error::Netns)?
                .join()
                .map_err(|_| Error::ThreadPanicked)?
                .map_err(Error::Netns)?,
        }
        .map_err(Error::NetlinkSocket)?;
        Ok(NetlinkSocket {
            socket,
            seq: 1,
            send_buffer: INITIAL_SEND_BUFFER,
        })
    }

    /// Sends `commands` as one netlink batch; `Ok(false)` when they are not encodable
    /// (the caller runs `nft`). On an I/O error the socket is dropped (reopened next time).
    fn apply_netlink(&self, commands: &[Value], step: &'static str) -> Result<bool> {
        if self.binary_only {
            return Ok(false);
        }
        let mut guard = self.socket.lock().expect("netlink socket lock");
        if guard.is_none() {
            *guard = Some(self.open_socket()?);
        }
        let link = guard.as_mut().expect("socket just opened");
        let batch = match netlink::encode(commands, &rules::element_key_types(), link.seq) {
            Ok(batch) if batch.bytes.len() <= MAX_NETLINK_BATCH => batch,
            Ok(_) => return Ok(false),
            Err(unsupported) => {
                debug!(reason = %unsupported, "nft transaction goes to the nft binary");
                return Ok(false);
            }
        };
        if batch.bytes.len() > link.send_buffer {
            let fd = std::os::fd::AsFd::as_fd(&link.socket);
            let size = batch.bytes.len() + (64 << 10);
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBufForce, &size)
                .map_err(|e| Error::NetlinkIo {
                    step,
                    source: e.into(),
                })?;
            link.send_buffer = size;
        }
        // BATCH_BEGIN, the commands, BATCH_END, then the barrier.
        let barrier_seq = link.seq.wrapping_add(batch.commands as u32 + 2);
        link.seq = barrier_seq.wrapping_add(1);
        let result = exchange(&link.socket, &batch, barrier_seq, commands, step);
        match &result {
            Ok(()) => {
                self.netlink_transactions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(Error::NetlinkIo { .. }) => *guard = None,
            Err(_) => {}
        }
        result.map(|()| true)
    }
}

/// Sends a batch and a barrier, and reads the answers up to the barrier's ack: the
/// first error of a command fails the transaction (the kernel applied none of it).
fn exchange(
    socket: &netlink_sys::Socket,
    batch: &netlink::Batch,
    barrier_seq: u32,
    commands: &[Value],
    step: &'static str,
) -> Result<()> {
    let io = |source| Error::NetlinkIo { step, source };
    socket.send(&batch.bytes, 0).map_err(io)?;
    socket.send(&netlink::barrier(barrier_seq), 0).map_err(io)?;
    let mut refused = None;
    let mut buf = Vec::with_capacity(1 << 16);
    // Bounded: the kernel answers the barrier after every answer to the batch.
    for _ in 0..(batch.commands + 16) {
        buf.clear();
        socket.recv(&mut buf, 0).map_err(io)?;
        for reply in netlink::parse_replies(&buf) {
            let Some(code) = reply.error else {
                continue; // the barrier's generation message
            };
            if reply.seq == barrier_seq {
                return match refused {
                    Some(e) => Err(e),
                    None if code < 0 => Err(io(std::io::Error::from_raw_os_error(-code))),
                    None => Ok(()),
                };
            }
            // BATCH_BEGIN is first_seq - 1, BATCH_END first_seq + commands; older
            // sequence numbers are answers to an earlier, abandoned exchange.
            let offset = reply.seq.wrapping_sub(batch.first_seq.wrapping_sub(1)) as usize;
            if code < 0 && refused.is_none() && offset <= batch.commands + 1 {
                let index = offset.checked_sub(1).unwrap_or(usize::MAX);
                refused = Some(Error::NetlinkRefused {
                    step,
                    index,
                    command: commands
                        .get(index)
                        .map(Value::to_string)
                        .unwrap_or_else(|| "batch".into()),
                    source: std::io::Error::from_raw_os_error(-code),
                });
            }
        }
    }
    Err(io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no acknowledgment of the netlink barrier",
    )))
}

impl NftCli {
    /// Runs `nft args…` with `input` on stdin: `Ok(Ok(stdout))`, or `Ok(Err(stderr))`
    /// when nft itself failed.
    fn run(
        &self,
        args: Vec<String>,
        input: Option<Vec<u8>>,
        step: &'static str,
    ) -> Result<Result<Vec<u8>, String>> {
        let work = move || -> Result<Result<Vec<u8>, String>> {
            let spawn_err = |source| Error::SpawnNft { step, source };
            let mut child = Command::new("nft")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(spawn_err)?;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            if let Some(input) = input {
                stdin.write_all(&input).map_err(spawn_err)?;
            }
            drop(stdin);
            let output = child.wait_with_output().map_err(spawn_err)?;
            Ok(if output.status.success() {
                Ok(output.stdout)
            } else {
                Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
            })
        };
        match &self.netns {
            None => work(),
            Some(path) => crate::agent::net::spawn_in_netns(Some(path.clone()), move || Ok(work()))
                .map_err(Error::Netns)?
                .join()
                .map_err(|_| Error::ThreadPanicked)?
                .map_err(Error::Netns)?,
        }
    }
}

impl Nft for NftCli {
    fn apply(&self, commands: &[Value]) -> Result<()> {
        const STEP: &str = "apply proxy rules";
        match self.apply_netlink(commands, STEP) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            // The kernel applied none of it: `nft` gets the same transaction (and its
            // own error message if it fails too).
            Err(e) => warn!(error = %e, "netlink transaction failed; running nft"),
        }
        /// `{"nftables": [...]}`, serialized without copying the commands.
        #[derive(serde::Serialize)]
        struct Payload<'a> {
            nftables: &'a [Value],
        }
        let payload = serde_json::to_vec(&Payload { nftables: commands })
            .expect("JSON values always serialize");
        self.run(
            vec!["-j".into(), "-f".into(), "-".into()],
            Some(payload),
            STEP,
        )?
        .map(|_| ())
        .map_err(|stderr| Error::NftFailed { step: STEP, stderr })
    }

    fn apply_script(&self, script: &str) -> Result<()> {
        const STEP: &str = "create the proxy table's endpoint map";
        self.run(
            vec!["-f".into(), "-".into()],
            Some(script.as_bytes().to_vec()),
            STEP,
        )?
        .map(|_| ())
        .map_err(|stderr| Error::NftFailed { step: STEP, stderr })
    }

    fn supports_dnat_maps(&self) -> bool {
        !self.binary_only
    }

    fn list_table(&self, table: &str) -> Result<Option<Value>> {
        // `list chains`, `list sets` and terse `list maps` leave out rules and map
        // elements: at 10,000 services they take 0.2 s where `list table` takes 1.9 s.
        let mut items = Vec::new();
        for (what, step) in [
            ("chains", "list the proxy table's chains"),
            ("sets", "list the proxy table's sets"),
            ("maps", "list the proxy table's maps"),
        ] {
            let args = ["-j", "-t", "list", what, "ip"].map(String::from).to_vec();
            let stdout = self
                .run(args, None, step)?
                .map_err(|stderr| Error::NftFailed { step, stderr })?;
            let listing: Value = serde_json::from_slice(&stdout).map_err(Error::ListingNotJson)?;
            let ours = |item: &&Value| {
                item.as_object()
                    .and_then(|o| o.values().next())
                    .is_some_and(|object| object["table"] == table)
            };
            items.extend(
                listing["nftables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(ours)
                    .cloned(),
            );
        }
        Ok((!items.is_empty()).then(|| serde_json::json!({ "nftables": items })))
    }
}

/// One change to what the proxy serves, for [`Proxier::run`].
#[derive(Debug, Clone)]
pub enum Change {
    Service(Box<Service>),
    ServiceDeleted { namespace: String, name: String },
    Endpoints(Box<Endpoints>),
    EndpointsDeleted { namespace: String, name: String },
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub full: bool,
    pub commands: usize,
}

/// Keeps the current Services and Endpoints and, per service, the fragment of the
/// ruleset last applied to the table. The first sync (and the first after a failure) is
/// a full resync against the live table; the others rebuild only the services that
/// changed since and apply the diff of their fragments.
pub struct Proxier<N: Nft> {
    table: String,
    nft: N,
    services: ServiceMap,
    endpoints: EndpointsMap,
    /// Per-service fragments in the table; `None` until a full resync succeeded.
    applied: Option<BTreeMap<ObjectKey, Ruleset>>,
    /// Services whose Service or Endpoints changed since the last sync.
    changed: BTreeSet<ObjectKey>,
    /// ClusterIPs served by this node itself (the cluster DNS): no rules, so neither a
    /// DNAT nor the reject of services without endpoints gets in their way.
    local_ips: BTreeSet<Ipv4Addr>,
    /// This node's name, for the `Local` traffic policies.
    node: Option<String>,
    /// Where sync latency is observed (the kubelet's `/metrics`), if anywhere.
    metrics: Option<Arc<crate::metrics::NodeMetrics>>,
    /// The Services claiming each load-balancer address and port. ClusterIPs and
    /// NodePorts are unique in a cluster, load-balancer addresses are not (another
    /// controller's Services, or a port changing hands): only the first claimant (by
    /// namespace and name) gets the map key, or nft would refuse the transaction.
    lb_claims: BTreeMap<LbKey, BTreeSet<ObjectKey>>,
    /// The claims of each Service, to take them back when it changes.
    claims_of: BTreeMap<ObjectKey, BTreeSet<LbKey>>,
    /// How services are dispatched (chains, or DNAT maps for the plain ones).
    shape: rules::Shape,
    /// How many applied fragments want each [`rules::HAIRPIN_SET`] element (an endpoint
    /// may serve several services); the element exists while the count is above 0.
    hairpin: BTreeMap<Ipv4Addr, usize>,
}

/// `(namespace, name)` of a Service and of its Endpoints.
type ObjectKey = (String, String);

/// A load-balancer address, protocol and Service port.
type LbKey = (Ipv4Addr, Protocol, u16);

/// The external keys a Service asks for (load-balancer addresses and externalIPs).
fn lb_keys(service: &Service) -> BTreeSet<LbKey> {
    let ips = rules::external_ips(service);
    let ports = service.spec.iter().flat_map(|s| s.ports.iter().flatten());
    ports
        .filter_map(|p| {
            let protocol = Protocol::from_k8s(p.protocol.as_deref())?;
            Some((protocol, u16::try_from(p.port).ok()?))
        })
        .flat_map(|(protocol, port)| ips.iter().map(move |ip| (*ip, protocol, port)))
        .collect()
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

impl<N: Nft> Proxier<N> {
    /// A proxier for `table`; plain services go through the DNAT maps when `nft`
    /// supports them ([`Nft::supports_dnat_maps`]).
    pub fn new(table: impl Into<String>, nft: N) -> Self {
        let shape = rules::Shape {
            dnat_maps: nft.supports_dnat_maps(),
        };
        Self {
            shape,
            hairpin: BTreeMap::new(),
            table: table.into(),
            nft,
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            applied: None,
            changed: BTreeSet::new(),
            local_ips: BTreeSet::new(),
            node: None,
            metrics: None,
            lb_claims: BTreeMap::new(),
            claims_of: BTreeMap::new(),
        }
    }

    /// The name of the node this proxier runs on: the `Local` traffic policies keep
    /// traffic on the endpoints whose `nodeName` it is. Without it no endpoint is local.
    pub fn with_node_name(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Dispatches plain services through the DNAT maps (`true`, when the backend
    /// supports them) or through a chain per service (`false`). A builder: before the
    /// first sync.
    pub fn with_dnat_maps(mut self, on: bool) -> Self {
        self.shape.dnat_maps = on && self.nft.supports_dnat_maps();
        self
    }

    /// Observes each sync's duration in `kubeproxy_sync_proxy_rules_duration_seconds`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::NodeMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Leaves the service with ClusterIP `ip` to a server listening on that address on
    /// this node (the cluster DNS at `--cluster-dns`).
    pub fn with_local_ip(mut self, ip: Ipv4Addr) -> Self {
        self.local_ips.insert(ip);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn update_service(&mut self, service: Service) {
        let key = key_of(&service.metadata);
        self.claim(&key, lb_keys(&service));
        self.changed.insert(key.clone());
        self.services.insert(key, service);
    }

    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.claim(&key, BTreeSet::new());
        self.services.remove(&key);
        self.changed.insert(key);
    }

    /// Records `key`'s load-balancer claims; every Service whose claim on a key it
    /// gives up or takes is marked changed (the key may change hands).
    fn claim(&mut self, key: &ObjectKey, claims: BTreeSet<LbKey>) {
        let old = self.claims_of.remove(key).unwrap_or_default();
        if old == claims {
            if !claims.is_empty() {
                self.claims_of.insert(key.clone(), claims);
            }
            return;
        }
        for lb in old.symmetric_difference(&claims) {
            let claimants = self.lb_claims.entry(*lb).or_default();
            if claims.contains(lb) {
                claimants.insert(key.clone());
            } else {
                claimants.remove(key);
            }
            self.changed.extend(claimants.iter().cloned());
            if claimants.is_empty() {
                self.lb_claims.remove(lb);
            }
        }
        if !claims.is_empty() {
            self.claims_of.insert(key.clone(), claims);
        }
    }

    /// Whether the map key `element` belongs to another Service's load-balancer claim.
    fn claimed_by_another(&self, key: &ObjectKey, element: &rules::ElementKey) -> bool {
        let Some(ip) = element.ip else {
            return false;
        };
        self.lb_claims
            .get(&(ip, element.protocol, element.port))
            .and_then(|claimants| claimants.first())
            .is_some_and(|owner| owner != key)
    }

    pub fn update_endpoints(&mut self, endpoints: Endpoints) {
        let key = key_of(&endpoints.metadata);
        self.changed.insert(key.clone());
        self.endpoints.insert(key, endpoints);
    }

    pub fn delete_endpoints(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.endpoints.remove(&key);
        self.changed.insert(key);
    }

    pub fn apply_change(&mut self, change: Change) {
        match change {
            Change::Service(s) => self.update_service(*s),
            Change::ServiceDeleted { namespace, name } => self.delete_service(&namespace, &name),
            Change::Endpoints(e) => self.update_endpoints(*e),
            Change::EndpointsDeleted { namespace, name } => {
                self.delete_endpoints(&namespace, &name)
            }
        }
    }

    /// Forgets the applied state: the next [`sync`](Self::sync) is a full resync.
    pub fn force_full_sync(&mut self) {
        self.applied = None;
    }

    /// Brings the table in line with the current Services and Endpoints in one nft
    /// transaction. Blocking. On failure the next sync is a full resync.
    pub fn sync(&mut self) -> Result<SyncStats> {
        let changed = std::mem::take(&mut self.changed);
        let (full, commands, fragments) = match self.applied.take() {
            Some(mut fragments) => {
                // Every service's element deletions first (see `sync::diff_phases`).
                let mut commands = Vec::new();
                let mut rest = Vec::new();
                let mut hairpin = HairpinChanges::default();
                for key in changed {
                    let new = self.fragment(&key);
                    let old = fragments.remove(&key).unwrap_or_default();
                    let (removals, others) = sync::diff_phases(&self.table, &old, &new);
                    commands.extend(removals);
                    rest.extend(others);
                    hairpin.count(&mut self.hairpin, &old.hairpin, &new.hairpin);
                    if new != Ruleset::default() {
                        fragments.insert(key, new);
                    }
                }
                let (gone, added) = hairpin.settle(&mut self.hairpin);
                commands.extend(sync::hairpin_elements(&self.table, "delete", gone));
                commands.extend(rest);
                commands.extend(sync::hairpin_elements(&self.table, "add", added));
                (false, commands, fragments)
            }
            None => {
                let fragments: BTreeMap<ObjectKey, Ruleset> = self
                    .services
                    .keys()
                    .map(|key| (key.clone(), self.fragment(key)))
                    .collect();
                self.hairpin.clear();
                for fragment in fragments.values() {
                    for ip in &fragment.hairpin {
                        *self.hairpin.entry(*ip).or_default() += 1;
                    }
                }
                let static_chains = rules::build_static(self.shape);
                let desired: Vec<&Ruleset> = std::iter::once(&static_chains)
                    .chain(fragments.values())
                    .collect();
                let live = self
                    .nft
                    .list_table(&self.table)?
                    .map(|listing| LiveTable::from_listing(&listing))
                    .unwrap_or_default();
                if !live.has_maps() {
                    self.nft.apply(&sync::create_maps(&self.table))?;
                    self.nft
                        .apply_script(&sync::create_endpoints_map(&self.table))?;
                }
                (
                    true,
                    sync::full_sync(&self.table, &desired, &live),
                    fragments,
                )
            }
        };
        if !commands.is_empty() {
            // `applied` stays `None`: the next sync is a full resync.
            self.nft.apply(&commands)?;
        }
        self.applied = Some(fragments);
        Ok(SyncStats {
            full,
            commands: commands.len(),
        })
    }

    /// The desired fragment of one service (empty when the Service does not exist).
    fn fragment(&self, key: &ObjectKey) -> Ruleset {
        match self.services.get(key) {
            Some(service) if !self.is_local(service) => {
                let mut fragment = rules::build_service(
                    &key.0,
                    &key.1,
                    service,
                    self.endpoints.get(key),
                    self.node.as_deref(),
                    self.shape,
                );
                if self.claims_of.contains_key(key) {
                    fragment
                        .elements
                        .retain(|element, _| !self.claimed_by_another(key, element));
                }
                fragment
            }
            _ => Ruleset::default(),
        }
    }

    fn is_local(&self, service: &Service) -> bool {
        let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
        cluster_ip
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .is_some_and(|ip| self.local_ips.contains(&ip))
    }

    /// Deletes the whole table (a missing table is fine).
    pub fn uninstall(&mut self) -> Result<()> {
        self.applied = None;
        self.nft.apply(&sync::uninstall(&self.table))
    }
}

/// The [`rules::HAIRPIN_SET`] elements a sync touches: their counts before it.
#[derive(Debug, Default)]
struct HairpinChanges {
    before: BTreeMap<Ipv4Addr, usize>,
}

impl HairpinChanges {
    /// Moves `counts` from one fragment's `old` hairpin addresses to its `new` ones.
    fn count(
        &mut self,
        counts: &mut BTreeMap<Ipv4Addr, usize>,
        old: &BTreeSet<Ipv4Addr>,
        new: &BTreeSet<Ipv4Addr>,
    ) {
        for ip in old.symmetric_difference(new) {
            let count = counts.entry(*ip).or_default();
            self.before.entry(*ip).or_insert(*count);
            if new.contains(ip) {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// The elements to delete (no longer wanted) and to add (newly wanted), dropping
    /// zero counts from `counts`.
    fn settle(self, counts: &mut BTreeMap<Ipv4Addr, usize>) -> (Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
        let mut gone = Vec::new();
        let mut added = Vec::new();
        for (ip, before) in self.before {
            let after = counts.get(&ip).copied().unwrap_or(0);
            match (before > 0, after > 0) {
                (true, false) => gone.push(ip),
                (false, true) => added.push(ip),
                _ => {}
            }
            if after == 0 {
                counts.remove(&ip);
            }
        }
        (gone, added)
    }
}

/// Hands every change already queued to `apply` without waiting, so one sync covers a
/// burst; true when the sender is gone (the caller syncs once more and stops). Shared by
/// the service proxy and NetworkPolicy enforcement.
pub(crate) fn drain_changes<C>(changes: &mut mpsc::Receiver<C>, mut apply: impl FnMut(C)) -> bool {
    loop {
        match changes.try_recv() {
            Ok(change) => apply(change),
            Err(mpsc::error::TryRecvError::Empty) => return false,
            Err(mpsc::error::TryRecvError::Disconnected) => return true,
        }
    }
}

/// Paces syncs by what they cost: after a sync that took `d`, the next may begin
/// `SYNC_PAUSE_FACTOR × d` after it began, at least [`SHORTEST_SYNC_INTERVAL`] and at
/// most [`MIN_SYNC_INTERVAL`]. A change after a quiet spell is applied at once; changes
/// arriving meanwhile wait and go together. Element-only syncs (well under a millisecond)
/// so follow each other within a few milliseconds, while syncs that make the kernel
/// validate a large table (tens of milliseconds) get kube-proxy's pacing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SyncPacer {
    last: Option<(tokio::time::Instant, Duration)>,
}

impl SyncPacer {
    /// How long until a sync may begin.
    pub(crate) fn delay(&self, now: tokio::time::Instant) -> Duration {
        self.last.map_or(Duration::ZERO, |(began, took)| {
            let pause = (took * SYNC_PAUSE_FACTOR).clamp(SHORTEST_SYNC_INTERVAL, MIN_SYNC_INTERVAL);
            (began + pause).saturating_duration_since(now)
        })
    }

    /// A sync began at `began` and took `took`.
    pub(crate) fn record(&mut self, began: tokio::time::Instant, took: Duration) {
        self.last = Some((began, took));
    }
}

impl<N: Nft + 'static> Proxier<N> {
    /// Applies changes as they arrive, at once after a quiet spell, else batching those
    /// that come within [`MIN_SYNC_INTERVAL`] of the last sync, until `changes` closes. nft runs
    /// on a blocking thread. A failed sync is logged and retried as a full resync.
    ///
    /// Starts with a full resync, which deletes every service the proxier does not know:
    /// load the complete initial Services and Endpoints (from a synced cache) with
    /// [`update_service`](Self::update_service) / [`update_endpoints`](Self::update_endpoints)
    /// before calling it, or services keep answering only after their next change.
    pub async fn run(self, mut changes: mpsc::Receiver<Change>) {
        let metrics = self.metrics.clone();
        let proxier = Arc::new(Mutex::new(self));
        let table = proxier.lock().expect("proxier lock").table.clone();
        let mut dirty = true;
        let mut pacer = SyncPacer::default();
        loop {
            if !dirty {
                let Some(change) = changes.recv().await else {
                    return;
                };
                proxier.lock().expect("proxier lock").apply_change(change);
            }
            let wait = pacer.delay(tokio::time::Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let began = tokio::time::Instant::now();
            let closed = drain_changes(&mut changes, |change| {
                proxier.lock().expect("proxier lock").apply_change(change)
            });
            let worker = Arc::clone(&proxier);
            let span = info_span!("proxy_sync", table = %table);
            let result =
                tokio::task::spawn_blocking(move || worker.lock().expect("proxier lock").sync())
                    .instrument(span)
                    .await;
            let took = began.elapsed();
            pacer.record(began, took);
            if let Some(metrics) = &metrics {
                metrics.observe_proxy_sync(took);
            }
            match result {
                Ok(Ok(stats)) => {
                    debug!(%table, full = stats.full, commands = stats.commands, "proxy synced");
                    dirty = false;
                }
                Ok(Err(e)) => {
                    warn!(%table, error = %e, "proxy sync failed; retrying with a full resync");
                    dirty = true;
                    tokio::time::sleep(SYNC_RETRY_DELAY).await;
                }
                Err(e) => {
                    warn!(%table, error = %e, "proxy sync thread failed");
                    dirty = true;
                    tokio::time::sleep(SYNC_RETRY_DELAY).await;
                }
            }
            if closed {
                return;
            }
        }
    }
}

/// A fake [`Nft`] that records every transaction and serves a canned listing; with
/// `fail_next` set, the next transaction fails (and is not recorded).
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct FakeNft {
    pub applied: Arc<Mutex<Vec<Vec<Value>>>>,
    pub listing: Arc<Mutex<Option<Value>>>,
    pub fail_next: Arc<std::sync::atomic::AtomicBool>,
    /// Scripts applied with [`Nft::apply_script`].
    pub scripts: Arc<Mutex<Vec<String>>>,
    /// What [`Nft::supports_dnat_maps`] answers.
    pub dnat_maps: bool,
}

#[cfg(test)]
impl Nft for FakeNft {
    fn apply(&self, commands: &[Value]) -> Result<()> {
        if self
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::NftFailed {
                step: "apply proxy rules",
                stderr: "injected failure".into(),
            });
        }
        self.applied
            .lock()
            .expect("fake nft lock")
            .push(commands.to_vec());
        Ok(())
    }

    fn list_table(&self, _table: &str) -> Result<Option<Value>> {
        Ok(self.listing.lock().expect("fake nft lock").clone())
    }

    fn apply_script(&self, script: &str) -> Result<()> {
        self.scripts
            .lock()
            .expect("fake nft lock")
            .push(script.to_string());
        Ok(())
    }

    fn supports_dnat_maps(&self) -> bool {
        self.dnat_maps
    }
}

#[cfg(test)]
mod tests {
    use super::rules::tests::{web_endpoints, web_service};
    use super::*;
    use serde_json::json;

    #[test]
    fn first_sync_is_full_then_only_diffs() {
        let nft = FakeNft::default();
        let mut proxier = Proxier::new("orc-proxy-test", nft.clone());
        proxier.update_service(web_service());
        proxier.update_endpoints(web_endpoints(&["10.42.0.2"]));
        assert!(proxier.sync().unwrap().full);
        let stats = proxier.sync().unwrap();
        assert_eq!(
            stats,
            SyncStats {
                full: false,
                commands: 0
            }
        );
        assert_eq!(
            nft.applied.lock().unwrap().len(),
            2,
            "the maps, the full sync; an empty diff applies nothing"
        );
        proxier.delete_service("default", "web");
        let stats = proxier.sync().unwrap();
        assert!(!stats.full && stats.commands > 0);
    }

    #[test]
    fn failed_sync_is_followed_by_a_full_resync() {
        let nft = FakeNft::default();
        let mut proxier = Proxier::new("orc-proxy-test", nft.clone());
        proxier.update_service(web_service());
        proxier.sync().unwrap();
        proxier.update_endpoints(web_endpoints(&["10.42.0.2"]));
        nft.fail_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(proxier.sync().is_err());
        let stats = proxier.sync().unwrap();
        assert!(stats.full, "the table may hold anything after a failure");
        let applied = nft.applied.lock().unwrap();
        let last = serde_json::to_string(applied.last().unwrap()).unwrap();
        assert!(
            last.contains("10.42.0.2"),
            "the failed change is applied: {last}"
        );
    }

    #[test]
    fn incremental_sync_touches_only_the_changed_service() {
        let nft = FakeNft::default();
        let mut proxier = Proxier::new("orc-proxy-test", nft.clone());
        proxier.update_service(web_service());
        proxier.update_endpoints(web_endpoints(&["10.42.0.2"]));
        let other = rules::tests::service(
            "other",
            "db",
            json!({"clusterIP": "10.43.0.20", "ports": [{"port": 5432}]}),
        );
        proxier.update_service(other);
        proxier.sync().unwrap();
        proxier.update_endpoints(web_endpoints(&["10.42.0.2", "10.42.0.3"]));
        proxier.sync().unwrap();
        let applied = nft.applied.lock().unwrap();
        let last = serde_json::to_string(applied.last().unwrap()).unwrap();
        assert!(last.contains("default/web"), "{last}");
        assert!(
            !last.contains("other/db") && !last.contains("10.43.0.20"),
            "{last}"
        );
    }

    #[test]
    fn a_locally_served_cluster_ip_gets_no_rules() {
        let nft = FakeNft::default();
        let mut proxier = Proxier::new("orc-proxy-test", nft.clone())
            .with_local_ip("10.43.0.99".parse().unwrap());
        let dns = rules::tests::service(
            "kube-system",
            "kube-dns",
            json!({"clusterIP": "10.43.0.99", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
        );
        proxier.update_service(dns);
        proxier.update_service(web_service());
        proxier.sync().unwrap();
        let applied = nft.applied.lock().unwrap();
        let all = serde_json::to_string(&*applied).unwrap();
        assert!(!all.contains("10.43.0.99"), "no DNAT nor reject: {all}");
        assert!(
            all.contains("10.43.0.10"),
            "other services keep their rules: {all}"
        );
    }

    fn lb_endpoints(name: &str) -> Endpoints {
        rules::tests::endpoints(
            "default",
            name,
            json!([{"addresses": [{"ip": "10.42.0.2"}], "ports": [{"port": 8080}]}]),
        )
    }

    fn lb_service(name: &str, cluster_ip: &str, lb_ip: &str) -> Service {
        let mut svc = rules::tests::service(
            "default",
            name,
            json!({"clusterIP": cluster_ip, "type": "LoadBalancer",
                   "ports": [{"port": 80}]}),
        );
        svc.status = Some(
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": lb_ip}]}})).unwrap(),
        );
        svc
    }

    /// The keys of `map` in the table after every transaction so far, as
    /// `(ip, target chain)`.
    fn lb_elements(nft: &FakeNft, lb_ip: &str) -> Vec<String> {
        let applied = nft.applied.lock().unwrap();
        let mut live: BTreeMap<String, String> = BTreeMap::new();
        for cmd in applied.iter().flatten() {
            for (verb, body) in cmd.as_object().unwrap() {
                let Some(element) = body.get("element") else {
                    continue;
                };
                for elem in element["elem"].as_array().unwrap() {
                    let (key, target) = match elem.as_array() {
                        Some(pair) if pair.len() == 2 && pair[0].get("concat").is_some() => {
                            (&pair[0], pair[1]["goto"]["target"].as_str().unwrap_or(""))
                        }
                        _ => (elem, ""),
                    };
                    if key["concat"][0] != lb_ip {
                        continue;
                    }
                    let id = format!("{}:{}", element["name"], key);
                    match verb.as_str() {
                        "add" => {
                            assert!(
                                !live.contains_key(&id),
                                "{id} added twice: nft refuses that"
                            );
                            live.insert(id, target.to_string());
                        }
                        "delete" => {
                            live.remove(&id);
                        }
                        _ => {}
                    }
                }
            }
            if cmd.get("flush").is_some_and(|f| f.get("map").is_some()) {
                let map = &cmd["flush"]["map"]["name"];
                live.retain(|id, _| !id.starts_with(&map.to_string()));
            }
        }
        live.into_values().collect()
    }

    #[test]
    fn a_load_balancer_address_two_services_claim_goes_to_one_and_changes_hands() {
        let nft = FakeNft::default();
        let mut proxier = Proxier::new("orc-proxy-test", nft.clone());
        let lb_ip = "192.168.1.2";
        // `b` holds the port; `a` (first by name) claims it too, later.
        proxier.update_service(lb_service("b", "10.43.0.12", lb_ip));
        proxier.update_endpoints(lb_endpoints("a"));
        proxier.update_endpoints(lb_endpoints("b"));
        proxier.sync().unwrap();
        let held = lb_elements(&nft, lb_ip);
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].contains("default/b/"), "{held:?}");
        proxier.update_service(lb_service("a", "10.43.0.11", lb_ip));
        proxier.sync().unwrap();
        let held = lb_elements(&nft, lb_ip);
        assert_eq!(held.len(), 1, "one service per address and port: {held:?}");
        // The owner goes, the other takes over in the same transaction.
        proxier.delete_service("default", "a");
        proxier.sync().unwrap();
        let held = lb_elements(&nft, lb_ip);
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].contains("default/b/"), "{held:?}");
        // A full resync never lists the key twice either.
        proxier.update_service(lb_service("a", "10.43.0.11", lb_ip));
        proxier.force_full_sync();
        proxier.sync().unwrap();
        assert_eq!(lb_elements(&nft, lb_ip).len(), 1);
    }

    /// The hairpin element of an endpoint two plain services share stays until both
    /// are gone; the endpoint map is made by a script on the first install.
    #[test]
    fn a_shared_hairpin_element_stays_while_any_service_uses_it() {
        let nft = FakeNft {
            dnat_maps: true,
            ..FakeNft::default()
        };
        let mut proxier = Proxier::new("orc-proxy-test", nft.clone());
        let other = rules::tests::service(
            "default",
            "other",
            json!({"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80}]}),
        );
        let mut other_eps = web_endpoints(&["10.42.0.2"]);
        other_eps.metadata.name = Some("other".into());
        proxier.update_service(web_service());
        proxier.update_endpoints(web_endpoints(&["10.42.0.2"]));
        proxier.update_service(other);
        proxier.update_endpoints(other_eps);
        proxier.sync().unwrap();
        assert_eq!(nft.scripts.lock().unwrap().len(), 1, "the endpoint map");
        let hairpin = |verb: &str| {
            let applied = nft.applied.lock().unwrap();
            let last = applied.last().unwrap();
            last.iter()
                .filter(|c| c[verb]["element"]["name"] == rules::HAIRPIN_SET)
                .count()
        };
        assert_eq!(hairpin("add"), 1, "once for both services");
        proxier.delete_service("default", "web");
        proxier.sync().unwrap();
        assert_eq!(hairpin("delete"), 0, "`other` still needs it");
        proxier.delete_service("default", "other");
        proxier.sync().unwrap();
        assert_eq!(hairpin("delete"), 1);
        assert!(proxier.hairpin.is_empty());
    }

    #[test]
    fn the_pause_after_a_sync_follows_what_it_cost() {
        let start = tokio::time::Instant::now();
        let mut pacer = SyncPacer::default();
        assert_eq!(pacer.delay(start), Duration::ZERO, "first sync");
        let ms = Duration::from_millis;
        // Cheap (an element change): the shortest pause.
        pacer.record(start, Duration::from_micros(300));
        assert_eq!(pacer.delay(start), SHORTEST_SYNC_INTERVAL);
        // 5 ms: SYNC_PAUSE_FACTOR times it, counted from when the sync began.
        pacer.record(start, ms(5));
        assert_eq!(
            pacer.delay(start + ms(10)),
            ms(5) * SYNC_PAUSE_FACTOR - ms(10)
        );
        // Expensive (a validated table): kube-proxy's interval, no more.
        pacer.record(start, ms(40));
        assert!(ms(40) * SYNC_PAUSE_FACTOR >= MIN_SYNC_INTERVAL);
        assert_eq!(pacer.delay(start + ms(30)), MIN_SYNC_INTERVAL - ms(30));
        // After a quiet spell: at once.
        assert_eq!(pacer.delay(start + Duration::from_secs(5)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_change_is_applied_without_waiting() {
        let nft = FakeNft::default();
        let proxier = Proxier::new("orc-proxy-test", nft.clone());
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(proxier.run(rx));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = tokio::time::Instant::now();
        tx.send(Change::Service(Box::new(web_service())))
            .await
            .unwrap();
        // Bounded: the paused clock only moves when every task waits on a timer.
        for _ in 0..1000 {
            if nft.applied.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            nft.applied.lock().unwrap().len(),
            3,
            "startup (maps, full sync) + the change"
        );
        assert!(
            sent.elapsed() < MIN_SYNC_INTERVAL,
            "applied after {:?}",
            sent.elapsed()
        );
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn run_batches_changes_that_arrive_together() {
        let nft = FakeNft::default();
        let proxier = Proxier::new("orc-proxy-test", nft.clone());
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(proxier.run(rx));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let initial = nft.applied.lock().unwrap().len();
        tx.send(Change::Service(Box::new(web_service())))
            .await
            .unwrap();
        tx.send(Change::Endpoints(Box::new(web_endpoints(&["10.42.0.2"]))))
            .await
            .unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("proxier run loop deadlocked")
            .unwrap();
        let applied = nft.applied.lock().unwrap();
        assert_eq!(initial, 2, "startup: the maps, the full sync");
        assert_eq!(applied.len(), 3, "both changes in one transaction");
    }
}

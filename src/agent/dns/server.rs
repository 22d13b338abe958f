//! The DNS request handler: names under the cluster domain are answered from
//! [`Records`], every other name is forwarded to the node's resolvers.

use std::iter;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::{LowerName, Name, RecordType};
use hickory_server::resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_server::resolver::Resolver;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use super::records::{Answer, Records};
use super::DnsError;
use crate::metrics::{dns_type_label, NodeMetrics};

/// How long an idle TCP client may keep its connection.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 16;
/// How long one upstream server gets to answer, and how many tries a query gets.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const UPSTREAM_ATTEMPTS: usize = 2;
/// The largest UDP payload answered when the client advertises more (EDNS).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Shared, live records: one writer (the service watch), the server's readers.
pub type SharedRecords = Arc<RwLock<Records>>;

/// Answers cluster names itself and forwards the rest to `upstream` (when there is no
/// upstream resolver, other names get SERVFAIL).
pub struct ClusterDns {
    records: SharedRecords,
    upstream: Option<Upstream>,
    /// Where queries are counted (`orc_dns_requests_total`), if anywhere.
    metrics: Option<Arc<NodeMetrics>>,
}

impl ClusterDns {
    pub fn new(records: SharedRecords, upstream: Option<Upstream>) -> Self {
        ClusterDns {
            records,
            upstream,
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: Option<Arc<NodeMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }
}

/// Counts an answered query by transport, query type and response code.
fn count_query(metrics: &NodeMetrics, request: &Request, info: &ResponseInfo) {
    let proto = match request.protocol() {
        Protocol::Udp => "udp",
        Protocol::Tcp => "tcp",
        _ => "other",
    };
    let qtype = request
        .queries
        .queries()
        .first()
        .map(|q| dns_type_label(&q.query_type().to_string()))
        .unwrap_or("other");
    let rcode = match info.response_code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "other",
    };
    metrics.observe_dns(proto, qtype, rcode);
}

/// The node's resolvers: a catalog forwarding whole requests, and a resolver (sharing
/// nothing but the configuration) to follow ExternalName CNAMEs out of the cluster.
pub struct Upstream {
    catalog: Catalog,
    resolver: Resolver<TokioRuntimeProvider>,
}

/// Forwarding to `upstreams` (UDP, then TCP for truncated answers), with the
/// resolver's cache; `None` when there is no upstream.
pub fn forwarder(upstreams: &[SocketAddr]) -> Result<Option<Upstream>, DnsError> {
    if upstreams.is_empty() {
        return Ok(None);
    }
    let name_servers: Vec<NameServerConfig> = upstreams
        .iter()
        .map(|addr| {
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            server
        })
        .collect();
    let mut options = ResolverOpts::default();
    options.timeout = UPSTREAM_TIMEOUT;
    options.attempts = UPSTREAM_ATTEMPTS;
    options.use_hosts_file = ResolveHosts::Never;
    let mut resolver = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(name_servers.clone()),
        TokioRuntimeProvider::default(),
    );
    *resolver.options_mut() = options.clone();
    let resolver = resolver.build().map_err(|e| DnsError::Forwarder {
        reason: e.to_string(),
    })?;
    let handler = ForwardZoneHandler::builder_tokio(ForwardConfig {
        name_servers,
        options: Some(options),
    })
    .build()
    .map_err(|reason| DnsError::Forwarder { reason })?;
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(handler)]);
    Ok(Some(Upstream { catalog, resolver }))
}

/// Serves `handler` on `udp` and `tcp` until the returned server is shut down/dropped.
pub fn serve(handler: ClusterDns, udp: UdpSocket, tcp: TcpListener) -> Server<ClusterDns> {
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    server
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let info = self.respond::<R, T>(request, response_handle).await;
        if let Some(metrics) = &self.metrics {
            count_query(metrics, request, &info);
        }
        info
    }
}

impl ClusterDns {
    async fn respond<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let response_edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns
        });
        let error_reply = |code| {
            MessageResponseBuilder::new(&request.queries, response_edns.as_ref())
                .error_msg(&request.metadata, code)
        };
        if request.metadata.message_type != MessageType::Query {
            return send(request, response_handle, error_reply(ResponseCode::FormErr)).await;
        }
        if request.metadata.op_code != OpCode::Query {
            // No updates, notifies or zone transfers here.
            return send(request, response_handle, error_reply(ResponseCode::NotImp)).await;
        }
        let Ok(info) = request.request_info() else {
            // Not exactly one question.
            return send(request, response_handle, error_reply(ResponseCode::FormErr)).await;
        };
        let name = Name::from(info.query.name());
        let qtype = info.query.query_type();
        let answer = self.cluster_answer(&name, qtype);
        let Some(mut answer) = answer else {
            if let Some(upstream) = &self.upstream {
                return upstream
                    .catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await;
            }
            tracing::debug!(%name, "no upstream resolver to forward to");
            return send(
                request,
                response_handle,
                error_reply(ResponseCode::ServFail),
            )
            .await;
        };
        tracing::trace!(%name, %qtype, code = %answer.code, answers = answer.answers.len(), "cluster name answered");
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = self.upstream.is_some();
        if let Some(target) = answer.cname_target().cloned() {
            self.follow_cname(&target, qtype, &mut answer).await;
        }
        metadata.response_code = answer.code;
        let response = MessageResponseBuilder::new(&request.queries, response_edns.as_ref()).build(
            metadata,
            answer.answers.iter(),
            iter::empty(),
            answer.soa.iter(),
            answer.additionals.iter(),
        );
        send(request, response_handle, response).await
    }
}

impl ClusterDns {
    fn cluster_answer(&self, name: &Name, qtype: RecordType) -> Option<Answer> {
        self.records
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .answer(name, qtype)
    }

    /// Adds the records of an ExternalName's target to `answer` (one CNAME deep, as
    /// stub resolvers do not chase CNAMEs themselves): from the cluster's records, or
    /// from the upstream resolvers. Without them the answer keeps just the CNAME.
    async fn follow_cname(&self, target: &Name, qtype: RecordType, answer: &mut Answer) {
        if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
            return;
        }
        if let Some(inner) = self.cluster_answer(target, qtype) {
            answer.answers.extend(inner.answers);
            return;
        }
        let Some(upstream) = &self.upstream else {
            return;
        };
        match upstream.resolver.lookup(target.clone(), qtype).await {
            Ok(lookup) => answer.answers.extend(lookup.answers().iter().cloned()),
            Err(e) => tracing::debug!(%target, error = %e, "ExternalName target did not resolve"),
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS response failed");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// The upstream resolvers in a resolv.conf: its nameservers (port 53) except `own`
/// (the cluster DNS itself, when the node resolves through it: that would loop).
pub fn upstreams_from_resolv_conf(
    contents: &str,
    own: IpAddr,
) -> Result<Vec<SocketAddr>, DnsError> {
    if !contents
        .lines()
        .any(|l| l.trim_start().starts_with("nameserver"))
    {
        return Ok(Vec::new());
    }
    let (config, _options) = hickory_server::resolver::system_conf::parse_resolv_conf(contents)
        .map_err(|source| DnsError::ParseResolvConf { source })?;
    let mut upstreams: Vec<SocketAddr> = config
        .name_servers()
        .iter()
        .map(|ns| ns.ip)
        .filter(|ip| *ip != own)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    upstreams.dedup();
    Ok(upstreams)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::proxy::Change;
    use hickory_server::proto::op::{Message, Query};
    use hickory_server::proto::rr::RecordType;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const DEADLINE: Duration = Duration::from_secs(20);

    fn records(domain: &str, service: &str, ip: &str) -> SharedRecords {
        let mut records = Records::new(Name::from_ascii(domain).unwrap());
        let svc = json!({"metadata": {"namespace": "default", "name": service},
                         "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}});
        records.apply_change(Change::Service(Box::new(
            serde_json::from_value(svc).unwrap(),
        )));
        Arc::new(RwLock::new(records))
    }

    /// A server on loopback (random port); the address answers UDP and TCP.
    async fn start(handler: ClusterDns) -> (SocketAddr, Server<ClusterDns>) {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        (addr, serve(handler, udp, tcp))
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 4242;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message.to_vec().unwrap()
    }

    async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&query(name, qtype), server).await.unwrap();
        let mut buf = vec![0; 4096];
        let (n, _) = tokio::time::timeout(DEADLINE, socket.recv_from(&mut buf))
            .await
            .expect("DNS server answers over UDP")
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let q = query(name, qtype);
        stream
            .write_all(&(q.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&q).await.unwrap();
        let read = async {
            let len = stream.read_u16().await.unwrap();
            let mut buf = vec![0; usize::from(len)];
            stream.read_exact(&mut buf).await.unwrap();
            buf
        };
        let buf = tokio::time::timeout(DEADLINE, read)
            .await
            .expect("DNS server answers over TCP");
        Message::from_vec(&buf).unwrap()
    }

    fn addresses(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[tokio::test]
    async fn cluster_names_are_answered_over_udp_and_tcp() {
        let handler = ClusterDns::new(records("cluster.local", "web", "10.43.0.20"), None);
        let (addr, _server) = start(handler).await;
        for m in [
            ask_udp(addr, "web.default.svc.cluster.local.", RecordType::A).await,
            ask_tcp(addr, "web.default.svc.cluster.local.", RecordType::A).await,
        ] {
            assert_eq!(m.metadata.id, 4242);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative);
            assert_eq!(addresses(&m), ["10.43.0.20"]);
        }
        let nx = ask_udp(addr, "nope.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(nx.authorities.len(), 1, "the SOA, for negative caching");
        let other = ask_udp(addr, "example.com.", RecordType::A).await;
        assert_eq!(
            other.metadata.response_code,
            ResponseCode::ServFail,
            "nowhere to forward to"
        );
    }

    #[tokio::test]
    async fn other_names_are_forwarded_to_the_upstream_resolvers() {
        // The "upstream": another server, authoritative for example.test.
        let upstream = ClusterDns::new(records("example.test", "www", "192.0.2.80"), None);
        let (upstream_addr, _upstream) = start(upstream).await;
        let forward = forwarder(&[upstream_addr]).unwrap();
        assert!(forward.is_some());
        let handler = ClusterDns::new(records("cluster.local", "web", "10.43.0.20"), forward);
        let (addr, _server) = start(handler).await;

        let m = ask_udp(addr, "www.default.svc.example.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&m), ["192.0.2.80"]);
        let m = ask_tcp(addr, "www.default.svc.example.test.", RecordType::A).await;
        assert_eq!(addresses(&m), ["192.0.2.80"]);
        let nx = ask_udp(addr, "gone.default.svc.example.test.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        let own = ask_udp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(addresses(&own), ["10.43.0.20"], "cluster names stay local");
        assert!(own.metadata.recursion_available);
    }

    #[tokio::test]
    async fn external_names_are_followed_in_and_out_of_the_cluster() {
        let upstream = ClusterDns::new(records("example.test", "www", "192.0.2.80"), None);
        let (upstream_addr, _upstream) = start(upstream).await;
        let records = records("cluster.local", "web", "10.43.0.20");
        for (name, target) in [
            ("outside", "www.default.svc.example.test"),
            ("inside", "web.default.svc.cluster.local"),
        ] {
            let svc = json!({"metadata": {"namespace": "default", "name": name},
                             "spec": {"type": "ExternalName", "externalName": target}});
            records
                .write()
                .unwrap()
                .apply_change(Change::Service(Box::new(
                    serde_json::from_value(svc).unwrap(),
                )));
        }
        let handler = ClusterDns::new(records, forwarder(&[upstream_addr]).unwrap());
        let (addr, _server) = start(handler).await;

        let m = ask_udp(addr, "outside.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(
            addresses(&m),
            ["www.default.svc.example.test.", "192.0.2.80"],
            "the CNAME, then its target's address"
        );
        let m = ask_udp(addr, "inside.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(
            addresses(&m),
            ["web.default.svc.cluster.local.", "10.43.0.20"]
        );
        let m = ask_udp(
            addr,
            "outside.default.svc.cluster.local.",
            RecordType::CNAME,
        )
        .await;
        assert_eq!(
            addresses(&m),
            ["www.default.svc.example.test."],
            "a CNAME question gets just the CNAME"
        );
    }

    #[tokio::test]
    async fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
        let records = records("cluster.local", "web", "10.43.0.20");
        let addresses_json: Vec<serde_json::Value> = (1..=200)
            .map(|i| json!({"ip": format!("10.42.{}.{}", i / 250, i % 250 + 1)}))
            .collect();
        let svc = json!({"metadata": {"namespace": "default", "name": "big"},
                         "spec": {"clusterIP": "None"}});
        let eps = json!({"metadata": {"namespace": "default", "name": "big"},
                         "subsets": [{"addresses": addresses_json}]});
        {
            let mut r = records.write().unwrap();
            r.apply_change(Change::Service(Box::new(
                serde_json::from_value(svc).unwrap(),
            )));
            r.apply_change(Change::Endpoints(Box::new(
                serde_json::from_value(eps).unwrap(),
            )));
        }
        let (addr, _server) = start(ClusterDns::new(records, None)).await;
        let udp = ask_udp(addr, "big.default.svc.cluster.local.", RecordType::A).await;
        assert!(
            udp.metadata.truncation,
            "200 addresses do not fit 512 bytes"
        );
        let tcp = ask_tcp(addr, "big.default.svc.cluster.local.", RecordType::A).await;
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 200);
    }

    #[tokio::test]
    async fn garbage_gets_no_answer_and_does_not_stop_the_server() {
        let handler = ClusterDns::new(records("cluster.local", "web", "10.43.0.20"), None);
        let (addr, _server) = start(handler).await;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for junk in [
            &b"\x00"[..],
            &[0xff; 40][..],
            &query("web.default.svc.cluster.local.", RecordType::A)[..20],
        ] {
            socket.send_to(junk, addr).await.unwrap();
        }
        let m = ask_udp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(addresses(&m), ["10.43.0.20"]);
    }

    #[test]
    fn upstreams_come_from_resolv_conf_without_the_cluster_dns_itself() {
        let conf = "search example.com\nnameserver 10.43.0.10\nnameserver 192.0.2.53\nnameserver 127.0.0.53\noptions ndots:2\n";
        let upstreams = upstreams_from_resolv_conf(conf, "10.43.0.10".parse().unwrap()).unwrap();
        assert_eq!(
            upstreams,
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.53:53".parse().unwrap()
            ]
        );
        assert!(
            upstreams_from_resolv_conf("", "10.43.0.10".parse().unwrap())
                .unwrap()
                .is_empty()
        );
    }
}

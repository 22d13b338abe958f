//! The cluster's DNS records, from Services and Endpoints (pure: no I/O). Answers
//! follow the Kubernetes DNS specification as CoreDNS implements it:
//!
//! - `<svc>.<ns>.svc.<domain>`: A of the ClusterIP; for headless services an A per
//!   ready endpoint; for ExternalName services a CNAME to the external name;
//! - `<host>.<svc>.<ns>.svc.<domain>` (headless): the endpoint with that hostname, or
//!   whose IP is `<host>` with dashes;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` and `<svc>.<ns>.svc.<domain>`: SRV;
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A of the address spelled in the name (as CoreDNS's
//!   `pods insecure`: no lookup);
//! - `<d>.<c>.<b>.<a>.in-addr.arpa`: PTR to the service (or headless endpoint) name for
//!   ClusterIPs and headless endpoints; other addresses are left to the forwarder;
//! - NXDOMAIN for any other name under the domain; NOERROR with no answer for names
//!   that exist but hold no record of the asked type. Negative answers carry the
//!   zone's SOA so resolvers cache them for [`TTL`] only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};

use crate::agent::proxy::Change;

/// TTL of every answer (as CoreDNS's default): records follow Services within seconds.
pub const TTL: u32 = 5;

/// `(namespace, name)` of a Service and of its Endpoints.
type ObjectKey = (String, String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    ClusterIp(Ipv4Addr),
    Headless,
    ExternalName(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    /// The port's name, lowercase ("" for an unnamed port).
    name: String,
    /// `tcp`, `udp` or `sctp`.
    protocol: String,
    number: u16,
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    address: Address,
    ports: Vec<Port>,
    publish_not_ready: bool,
}

#[derive(Debug, Clone)]
struct EndpointEntry {
    ip: Ipv4Addr,
    hostname: Option<String>,
    ready: bool,
    ports: Vec<Port>,
}

impl EndpointEntry {
    /// The first label of this endpoint's own name: its hostname, else its dashed IP.
    fn label(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| dashed(self.ip))
    }
}

/// What to send back for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The zone's SOA, on negative answers (NXDOMAIN, or no record of the asked type).
    pub soa: Option<Record>,
}

impl Answer {
    /// Where the answer points when it is an ExternalName's CNAME.
    pub fn cname_target(&self) -> Option<&Name> {
        match self.answers.as_slice() {
            [only] => match &only.data {
                RData::CNAME(CNAME(target)) => Some(target),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The records of one cluster domain, kept up to date with [`Records::apply_change`].
#[derive(Debug, Clone)]
pub struct Records {
    domain: Name,
    services: BTreeMap<ObjectKey, ServiceEntry>,
    endpoints: BTreeMap<ObjectKey, Vec<EndpointEntry>>,
    /// Changes applied so far: the SOA serial.
    serial: u32,
}

impl Records {
    /// Empty records for `domain` (e.g. `cluster.local`).
    pub fn new(domain: Name) -> Records {
        let mut domain = domain.to_lowercase();
        domain.set_fqdn(true);
        Records {
            domain,
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            serial: 1,
        }
    }

    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// Whether `name` is at or below the cluster domain (answered here, not forwarded).
    pub fn is_cluster_name(&self, name: &Name) -> bool {
        self.domain.zone_of(name)
    }

    pub fn apply_change(&mut self, change: Change) {
        self.serial = self.serial.wrapping_add(1);
        match change {
            Change::Service(service) => {
                let key = key_of(&service.metadata);
                match service_entry(&service) {
                    Some(entry) => self.services.insert(key, entry),
                    None => self.services.remove(&key),
                };
            }
            Change::ServiceDeleted { namespace, name } => {
                self.services.remove(&(namespace, name));
            }
            Change::Endpoints(endpoints) => {
                let key = key_of(&endpoints.metadata);
                self.endpoints.insert(key, endpoint_entries(&endpoints));
            }
            Change::EndpointsDeleted { namespace, name } => {
                self.endpoints.remove(&(namespace, name));
            }
        }
    }

    /// The answer to `qtype` at `qname`; `None` when the name is outside the domain.
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Option<Answer> {
        if !self.is_cluster_name(qname) {
            return self.reverse_answer(qname, qtype);
        }
        let qname = {
            let mut n = qname.to_lowercase();
            n.set_fqdn(true);
            n
        };
        let depth = usize::from(qname.num_labels() - self.domain.num_labels());
        let labels: Vec<String> = qname
            .iter()
            .take(depth)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut reply = Reply::new(self, &qname, qtype);
        match labels.as_slice() {
            [] if matches!(qtype, RecordType::SOA | RecordType::ANY) => {
                reply.answers.push(self.soa_record());
            }
            [] | ["svc" | "pod"] => {}
            [ns, "svc" | "pod"] if self.has_namespace(ns) => {}
            [svc, ns, "svc"] => match self.services.get(&key(ns, svc)) {
                Some(entry) => reply.service(ns, svc, entry),
                None => reply.nxdomain(),
            },
            [host, svc, ns, "svc"] if !host.starts_with('_') => {
                let found = self
                    .headless_endpoints(ns, svc)
                    .filter(|ep| ep.label() == *host)
                    .map(|ep| ep.ip)
                    .collect::<BTreeSet<_>>();
                if found.is_empty() {
                    reply.nxdomain();
                } else if wants(qtype, RecordType::A) {
                    reply.a_records(&qname, found);
                }
            }
            [port, proto, svc, ns, "svc"] => match (
                port.strip_prefix('_'),
                proto.strip_prefix('_'),
                self.services.get(&key(ns, svc)),
            ) {
                (Some(port), Some(proto), Some(entry)) => {
                    let matching = |p: &Port| p.name == port && p.protocol == proto;
                    if entry.ports.iter().any(matching) {
                        if wants(qtype, RecordType::SRV) {
                            reply.srv_records(ns, svc, entry, &matching);
                        }
                    } else {
                        reply.nxdomain();
                    }
                }
                _ => reply.nxdomain(),
            },
            [ip, _ns, "pod"] => match undash(ip) {
                Some(ip) if wants(qtype, RecordType::A) => reply.a_records(&qname, [ip]),
                Some(_) => {}
                None => reply.nxdomain(),
            },
            _ => reply.nxdomain(),
        }
        Some(reply.finish())
    }

    /// PTR answers for `<d>.<c>.<b>.<a>.in-addr.arpa.` names of ClusterIPs and of
    /// headless services' endpoints; `None` (forwarded) for any other address.
    fn reverse_answer(&self, qname: &Name, qtype: RecordType) -> Option<Answer> {
        let ip = reverse_ipv4(qname)?;
        let mut targets = BTreeSet::new();
        for ((ns, svc), entry) in &self.services {
            match entry.address {
                Address::ClusterIp(cluster_ip) if cluster_ip == ip => {
                    targets.insert(self.name_under(&[svc, ns, "svc"]));
                }
                Address::Headless => {
                    for ep in self.headless_endpoints(ns, svc).filter(|ep| ep.ip == ip) {
                        targets.insert(self.name_under(&[&ep.label(), svc, ns, "svc"]));
                    }
                }
                _ => {}
            }
        }
        if targets.is_empty() {
            return None;
        }
        let mut qname = qname.to_lowercase();
        qname.set_fqdn(true);
        let answers = if wants(qtype, RecordType::PTR) {
            targets
                .into_iter()
                .map(|t| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(t))))
                .collect()
        } else {
            Vec::new()
        };
        Some(Answer {
            soa: None,
            code: ResponseCode::NoError,
            answers,
            additionals: Vec::new(),
        })
    }

    fn has_namespace(&self, ns: &str) -> bool {
        self.services.keys().any(|(n, _)| n == ns)
    }

    /// The endpoints a headless service publishes (ready ones, or all with
    /// `publishNotReadyAddresses`); none for other services.
    fn headless_endpoints<'a>(
        &'a self,
        ns: &str,
        svc: &str,
    ) -> impl Iterator<Item = &'a EndpointEntry> + 'a {
        let key = key(ns, svc);
        let publish_not_ready = match self.services.get(&key) {
            Some(ServiceEntry {
                address: Address::Headless,
                publish_not_ready,
                ..
            }) => Some(*publish_not_ready),
            _ => None,
        };
        self.endpoints
            .get(&key)
            .into_iter()
            .flatten()
            .filter(move |ep| publish_not_ready.is_some_and(|all| all || ep.ready))
    }

    fn soa_record(&self) -> Record {
        let mname = self.name_under(&["ns", "dns"]);
        let rname = self.name_under(&["hostmaster"]);
        let soa = SOA::new(mname, rname, self.serial, 7200, 1800, 86400, TTL);
        Record::from_rdata(self.domain.clone(), TTL, RData::SOA(soa))
    }

    /// `labels…` + the domain, e.g. `web.default.svc.cluster.local.`.
    fn name_under(&self, labels: &[&str]) -> Name {
        Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .and_then(|n| n.append_domain(&self.domain))
            // Labels come from names that were valid DNS names already.
            .unwrap_or_else(|_| self.domain.clone())
    }
}

/// Builds one [`Answer`].
struct Reply<'a> {
    records: &'a Records,
    qname: &'a Name,
    qtype: RecordType,
    code: ResponseCode,
    answers: Vec<Record>,
    additionals: Vec<Record>,
}

impl<'a> Reply<'a> {
    fn new(records: &'a Records, qname: &'a Name, qtype: RecordType) -> Self {
        Reply {
            records,
            qname,
            qtype,
            code: ResponseCode::NoError,
            answers: Vec::new(),
            additionals: Vec::new(),
        }
    }

    fn nxdomain(&mut self) {
        self.code = ResponseCode::NXDomain;
    }

    fn service(&mut self, ns: &str, svc: &str, entry: &ServiceEntry) {
        match &entry.address {
            Address::ExternalName(target) => {
                let cname = RData::CNAME(CNAME(target.clone()));
                self.answers
                    .push(Record::from_rdata(self.qname.clone(), TTL, cname));
                return;
            }
            Address::ClusterIp(ip) if wants(self.qtype, RecordType::A) => {
                self.a_records(self.qname, [*ip]);
            }
            Address::Headless if wants(self.qtype, RecordType::A) => {
                let ips: BTreeSet<Ipv4Addr> = self
                    .records
                    .headless_endpoints(ns, svc)
                    .map(|ep| ep.ip)
                    .collect();
                self.a_records(self.qname, ips);
            }
            _ => {}
        }
        if wants(self.qtype, RecordType::SRV) {
            self.srv_records(ns, svc, entry, &|_| true);
        }
    }

    fn a_records(&mut self, name: &Name, ips: impl IntoIterator<Item = Ipv4Addr>) {
        self.answers.extend(
            ips.into_iter()
                .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))),
        );
    }

    /// SRV records of the service's ports that match: to the service name for a
    /// ClusterIP, to each endpoint's own name (with its A record as additional) for a
    /// headless service.
    fn srv_records(
        &mut self,
        ns: &str,
        svc: &str,
        entry: &ServiceEntry,
        matching: &dyn Fn(&Port) -> bool,
    ) {
        let records = self.records;
        match entry.address {
            Address::ClusterIp(_) => {
                let target = records.name_under(&[svc, ns, "svc"]);
                for port in entry.ports.iter().filter(|p| matching(p)) {
                    self.srv(port.number, target.clone());
                }
            }
            Address::Headless => {
                let mut targets = BTreeSet::new();
                for ep in records.headless_endpoints(ns, svc) {
                    let target = records.name_under(&[&ep.label(), svc, ns, "svc"]);
                    for port in ep.ports.iter().filter(|p| matching(p)) {
                        self.srv(port.number, target.clone());
                        targets.insert((target.clone(), ep.ip));
                    }
                }
                for (target, ip) in targets {
                    self.additionals
                        .push(Record::from_rdata(target, TTL, RData::A(A(ip))));
                }
            }
            Address::ExternalName(_) => {}
        }
    }

    fn srv(&mut self, port: u16, target: Name) {
        let srv = RData::SRV(SRV::new(0, 100, port, target));
        self.answers
            .push(Record::from_rdata(self.qname.clone(), TTL, srv));
    }

    fn finish(self) -> Answer {
        let negative = self.answers.is_empty();
        Answer {
            soa: negative.then(|| self.records.soa_record()),
            code: self.code,
            answers: self.answers,
            additionals: self.additionals,
        }
    }
}

/// Whether a question of type `qtype` asks for records of type `rtype`.
fn wants(qtype: RecordType, rtype: RecordType) -> bool {
    qtype == rtype || qtype == RecordType::ANY
}

fn key(ns: &str, name: &str) -> ObjectKey {
    (ns.to_string(), name.to_string())
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// `5.0.42.10.in-addr.arpa.` → `10.42.0.5`; `None` for any other name.
fn reverse_ipv4(name: &Name) -> Option<Ipv4Addr> {
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_lowercase())
        .collect();
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            format!("{a}.{b}.{c}.{d}").parse().ok()
        }
        _ => None,
    }
}

/// `10.42.0.5` → `10-42-0-5`.
fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// `10-42-0-5` → `10.42.0.5`; `None` for anything else.
fn undash(label: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = label.split('-').collect();
    if parts.len() != 4 {
        return None;
    }
    parts.join(".").parse().ok()
}

/// What DNS publishes of a Service; `None` when nothing (no ClusterIP allocated yet).
fn service_entry(service: &Service) -> Option<ServiceEntry> {
    let spec = service.spec.as_ref()?;
    let address = if spec.type_.as_deref() == Some("ExternalName") {
        let mut target = Name::from_ascii(spec.external_name.as_deref()?).ok()?;
        target.set_fqdn(true);
        Address::ExternalName(target)
    } else {
        match spec.cluster_ip.as_deref()? {
            "None" => Address::Headless,
            ip => Address::ClusterIp(ip.parse().ok()?),
        }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Port::new(p.name.as_deref(), p.protocol.as_deref(), p.port))
        .collect();
    Some(ServiceEntry {
        address,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

impl Port {
    /// A Service's or an Endpoints' port; `None` when the number is out of range.
    fn new(name: Option<&str>, protocol: Option<&str>, number: i32) -> Option<Port> {
        Some(Port {
            name: name.unwrap_or_default().to_lowercase(),
            protocol: protocol.unwrap_or("TCP").to_lowercase(),
            number: u16::try_from(number).ok()?,
        })
    }
}

fn endpoint_entries(endpoints: &Endpoints) -> Vec<EndpointEntry> {
    let mut entries = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<Port> = subset
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Port::new(p.name.as_deref(), p.protocol.as_deref(), p.port))
            .collect();
        let addresses = [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ];
        for (list, ready) in addresses {
            for address in list.iter().flatten() {
                let Ok(ip) = address.ip.parse() else { continue };
                entries.push(EndpointEntry {
                    ip,
                    hostname: address
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .map(|h| h.to_lowercase()),
                    ready,
                    ports: ports.clone(),
                });
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn service(ns: &str, name: &str, spec: Value) -> Change {
        let s = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
        Change::Service(Box::new(serde_json::from_value(s).unwrap()))
    }

    fn endpoints(ns: &str, name: &str, subsets: Value) -> Change {
        let e = json!({"metadata": {"namespace": ns, "name": name}, "subsets": subsets});
        Change::Endpoints(Box::new(serde_json::from_value(e).unwrap()))
    }

    fn records() -> Records {
        let mut r = Records::new(Name::from_ascii("cluster.local").unwrap());
        r.apply_change(service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.20", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ));
        r.apply_change(service(
            "other",
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ));
        r.apply_change(endpoints(
            "other",
            "db",
            json!([{
                "addresses": [{"ip": "10.42.0.7", "hostname": "db-0"}, {"ip": "10.42.0.8"}],
                "notReadyAddresses": [{"ip": "10.42.0.9"}],
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]
            }]),
        ));
        r.apply_change(service(
            "default",
            "search",
            json!({"type": "ExternalName", "externalName": "search.example.com"}),
        ));
        r
    }

    fn ask(r: &Records, name: &str, qtype: RecordType) -> Answer {
        r.answer(&Name::from_ascii(name).unwrap(), qtype)
            .expect("a cluster name")
    }

    fn data(answer: &Answer) -> Vec<String> {
        answer.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn cluster_ip_service_answers_its_address_with_a_short_ttl() {
        let a = ask(&records(), "web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(data(&a), ["10.43.0.20"]);
        assert_eq!(a.answers[0].ttl, TTL);
        assert!(a.soa.is_none());
        let upper = ask(&records(), "WEB.Default.SVC.cluster.local", RecordType::A);
        assert_eq!(data(&upper), ["10.43.0.20"], "names are case-insensitive");
    }

    #[test]
    fn headless_service_answers_its_ready_endpoints_and_each_by_name() {
        let r = records();
        let a = ask(&r, "db.other.svc.cluster.local.", RecordType::A);
        assert_eq!(
            data(&a),
            ["10.42.0.7", "10.42.0.8"],
            "not-ready 10.42.0.9 left out"
        );
        let by_host = ask(&r, "db-0.db.other.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&by_host), ["10.42.0.7"]);
        let by_ip = ask(&r, "10-42-0-8.db.other.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&by_ip), ["10.42.0.8"]);
        let not_ready = ask(&r, "10-42-0-9.db.other.svc.cluster.local.", RecordType::A);
        assert_eq!(not_ready.code, ResponseCode::NXDomain);
    }

    #[test]
    fn publish_not_ready_addresses_includes_unready_endpoints() {
        let mut r = records();
        r.apply_change(service(
            "other",
            "db",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
        ));
        let a = ask(&r, "db.other.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&a), ["10.42.0.7", "10.42.0.8", "10.42.0.9"]);
    }

    #[test]
    fn srv_records_name_ports_by_name_and_protocol() {
        let r = records();
        let a = ask(
            &r,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(data(&a), ["0 100 80 web.default.svc.cluster.local."]);
        let udp = ask(
            &r,
            "_dns._udp.web.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(data(&udp), ["0 100 53 web.default.svc.cluster.local."]);
        let wrong_proto = ask(
            &r,
            "_http._udp.web.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(wrong_proto.code, ResponseCode::NXDomain);
        let all = ask(&r, "web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(all.answers.len(), 2);
    }

    #[test]
    fn headless_srv_targets_each_endpoint_with_its_address_as_additional() {
        let r = records();
        let a = ask(&r, "_pg._tcp.db.other.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&a),
            [
                "0 100 5432 db-0.db.other.svc.cluster.local.",
                "0 100 5432 10-42-0-8.db.other.svc.cluster.local."
            ]
        );
        let extra: Vec<String> = a.additionals.iter().map(|r| r.to_string()).collect();
        assert_eq!(extra.len(), 2, "{extra:?}");
        assert!(
            extra
                .iter()
                .any(|r| r.contains("db-0.db.other.svc.cluster.local.") && r.contains("10.42.0.7")),
            "{extra:?}"
        );
    }

    #[test]
    fn pod_names_answer_the_address_they_spell() {
        let r = records();
        let a = ask(&r, "10-42-0-5.default.pod.cluster.local.", RecordType::A);
        assert_eq!(data(&a), ["10.42.0.5"]);
        let bad = ask(&r, "10-42-0-500.default.pod.cluster.local.", RecordType::A);
        assert_eq!(bad.code, ResponseCode::NXDomain);
    }

    #[test]
    fn unknown_names_are_nxdomain_with_the_zone_soa() {
        let r = records();
        for name in [
            "nope.default.svc.cluster.local.",
            "web.nope.svc.cluster.local.",
            "web.default.cluster.local.",
            "a.b.c.d.e.f.svc.cluster.local.",
            "_x._tcp.web.default.svc.cluster.local.",
        ] {
            let a = ask(&r, name, RecordType::A);
            assert_eq!(a.code, ResponseCode::NXDomain, "{name}");
            assert!(a.answers.is_empty(), "{name}");
            let soa = a.soa.expect("negative answers carry the SOA");
            assert_eq!(soa.record_type(), RecordType::SOA);
            assert_eq!(soa.name.to_string(), "cluster.local.");
        }
    }

    #[test]
    fn existing_names_without_the_asked_type_are_empty_noerror() {
        let r = records();
        let a = ask(&r, "web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!((a.code, a.answers.len()), (ResponseCode::NoError, 0));
        assert!(a.soa.is_some());
        let mx = ask(&r, "web.default.svc.cluster.local.", RecordType::MX);
        assert_eq!((mx.code, mx.answers.len()), (ResponseCode::NoError, 0));
        for parent in [
            "default.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
        ] {
            let a = ask(&r, parent, RecordType::A);
            assert_eq!(
                (a.code, a.answers.len()),
                (ResponseCode::NoError, 0),
                "{parent}"
            );
        }
        let soa = ask(&r, "cluster.local.", RecordType::SOA);
        assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn external_name_is_a_cname_for_every_type() {
        let r = records();
        for qtype in [RecordType::A, RecordType::AAAA] {
            let a = ask(&r, "search.default.svc.cluster.local.", qtype);
            assert_eq!(data(&a), ["search.example.com."]);
            assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
        }
    }

    #[test]
    fn names_outside_the_domain_are_not_answered() {
        let r = records();
        assert!(r
            .answer(&Name::from_ascii("example.com.").unwrap(), RecordType::A)
            .is_none());
        assert!(r
            .answer(&Name::from_ascii("local.").unwrap(), RecordType::A)
            .is_none());
    }

    #[test]
    fn reverse_names_of_cluster_ips_and_headless_endpoints_point_back() {
        let r = records();
        let a = ask(&r, "20.0.43.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(data(&a), ["web.default.svc.cluster.local."]);
        let a = ask(&r, "7.0.42.10.IN-ADDR.ARPA.", RecordType::PTR);
        assert_eq!(data(&a), ["db-0.db.other.svc.cluster.local."]);
        for unknown in [
            "9.0.42.10.in-addr.arpa.",
            "1.2.3.in-addr.arpa.",
            "example.com.",
        ] {
            assert!(
                r.answer(&Name::from_ascii(unknown).unwrap(), RecordType::PTR)
                    .is_none(),
                "{unknown} is forwarded"
            );
        }
    }

    #[test]
    fn deletions_remove_records() {
        let mut r = records();
        r.apply_change(Change::ServiceDeleted {
            namespace: "default".into(),
            name: "web".into(),
        });
        let a = ask(&r, "web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a.code, ResponseCode::NXDomain);
        r.apply_change(Change::EndpointsDeleted {
            namespace: "other".into(),
            name: "db".into(),
        });
        let a = ask(&r, "db.other.svc.cluster.local.", RecordType::A);
        assert_eq!((a.code, a.answers.len()), (ResponseCode::NoError, 0));
    }
}

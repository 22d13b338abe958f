//! NetworkPolicy enforcement against the real `nft` (needs root and nftables): the
//! enforcer's transactions are accepted by the kernel, incremental changes touch only
//! what they must, a restart's full sync replaces whatever the table held, uninstall
//! removes it; and the sync times with 1,000 policies and 1,000 pods (printed; run with
//! `--nocapture` to read them). Everything happens in a network namespace the test
//! creates; the host's tables are never touched.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use orc::agent::net::{create_netns, delete_netns};
use orc::agent::netpol::{Change, Enforcer, NftCli};

const TABLE: &str = "orc-netpol-test";
const NODE: &str = "n1";

/// A network namespace of the test's own, removed on drop.
struct Netns {
    dir: PathBuf,
    path: PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let dir = PathBuf::from(format!("/run/orc-test-netpol-{tag}-{}", std::process::id()));
        let path = dir.join("node");
        create_netns(&path).expect("create a network namespace (this test needs root)");
        Netns { dir, path }
    }

    fn nft(&self) -> NftCli {
        NftCli::in_netns(&self.path)
    }

    /// `nft -j list …` inside the namespace; `None` when nft fails (no such table).
    fn list(&self, what: &[&str]) -> Option<Value> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(["nft", "-j", "list"])
            .args(what)
            .output()
            .expect("run nft (apt-get install nftables)");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("nft prints JSON"))
    }

    /// The element keys of a set or map of the table, as JSON text.
    fn elements(&self, kind: &str, name: &str) -> Vec<String> {
        let listing = self
            .list(&[kind, "ip", TABLE, name])
            .unwrap_or_else(|| panic!("{kind} {name} exists"));
        listing["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item[kind]["elem"].as_array())
            .flatten()
            .map(|e| match e.get("elem") {
                Some(inner) => inner["val"].to_string(),
                None => e.as_array().map_or(e.to_string(), |kv| kv[0].to_string()),
            })
            .collect()
    }

    fn names(&self, kind: &str) -> Vec<String> {
        let listing = self.list(&["table", "ip", TABLE]).unwrap_or_default();
        listing["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item[kind]["name"].as_str().map(String::from))
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = delete_netns(&self.path);
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pod(ns: &str, name: &str, ip: &str, labels: Value, node: &str) -> Change {
    Change::Pod(Box::new(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c",
            "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip, "phase": "Running"}})))
}

fn policy(ns: &str, name: &str, spec: Value) -> Change {
    let mut object = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
    orc::api::defaults::apply_defaults("NetworkPolicy", &mut object);
    Change::Policy(Box::new(object))
}

fn namespace(name: &str, labels: Value) -> Change {
    Change::Namespace {
        name: name.into(),
        labels: labels.as_object().cloned().unwrap_or_default(),
    }
}

#[test]
fn the_kernel_takes_full_and_incremental_syncs_and_uninstall_removes_the_table() {
    let netns = Netns::new("sync");
    let mut enforcer = Enforcer::new(TABLE, netns.nft(), NODE);
    enforcer.apply_change(namespace("shop", json!({"team": "shop"})));
    enforcer.apply_change(namespace("ops", json!({"team": "ops"})));
    enforcer.apply_change(pod("shop", "db", "10.42.0.2", json!({"app": "db"}), NODE));
    enforcer.apply_change(pod("shop", "web", "10.42.0.3", json!({"app": "web"}), NODE));
    enforcer.apply_change(pod("ops", "mon", "10.42.1.3", json!({"app": "mon"}), "n2"));
    enforcer.apply_change(policy(
        "shop",
        "db",
        json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                                     {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
                                     {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                            "ports": [{"port": "http"}, {"port": 9000, "endPort": 9100, "protocol": "UDP"},
                                      {"protocol": "SCTP", "port": 7}]}],
               "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": "http"}]}]}),
    ));
    // A table left by someone else's hand: the full sync replaces it.
    let handmade = Command::new("nsenter")
        .arg(format!("--net={}", netns.path.display()))
        .args([
            "nft",
            "add table ip orc-netpol-test; add chain ip orc-netpol-test stale",
        ])
        .status()
        .expect("run nft");
    assert!(handmade.success());
    let stats = enforcer.sync().expect("the kernel accepts the full sync");
    assert!(stats.full);
    let chains = netns.names("chain");
    assert!(!chains.contains(&"stale".to_string()), "{chains:?}");
    assert!(chains
        .iter()
        .any(|c| c.starts_with("ingress-") && c.ends_with("shop/db")));
    assert!(chains
        .iter()
        .any(|c| c.starts_with("egress-") && c.ends_with("shop/db")));
    assert!(chains.contains(&"forward".to_string()) && chains.contains(&"input".to_string()));
    let sets = netns.names("set");
    let peers = sets
        .iter()
        .find(|s| s.starts_with("peers-") && s.contains("ingress"))
        .unwrap();
    let mut ips = netns.elements("set", peers);
    ips.sort();
    assert_eq!(ips, ["\"10.42.0.3\"", "\"10.42.1.3\""]);
    let blocks = sets.iter().find(|s| s.starts_with("blocks-")).unwrap();
    assert_eq!(
        netns.elements("set", blocks).len(),
        2,
        "the CIDR around its exception"
    );
    let named = sets.iter().find(|s| s.starts_with("named-")).unwrap();
    assert_eq!(
        netns.elements("set", named).len(),
        2,
        "db and web serve http"
    );
    assert_eq!(netns.elements("map", "ingress-pods"), ["\"10.42.0.2\""]);

    // Incremental: a new peer on another node, a relabelled pod, a changed ipBlock.
    enforcer.apply_change(pod(
        "ops",
        "mon-2",
        "10.42.1.4",
        json!({"app": "mon"}),
        "n2",
    ));
    let stats = enforcer.sync().expect("incremental sync");
    assert!(!stats.full);
    assert_eq!(stats.commands, 1, "one set element");
    assert_eq!(netns.elements("set", peers).len(), 3);
    enforcer.apply_change(pod("shop", "web", "10.42.0.3", json!({"app": "db"}), NODE));
    enforcer.apply_change(policy(
        "shop",
        "db",
        json!({"podSelector": {"matchLabels": {"app": "db"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.2.0/24"]}}]}]}),
    ));
    enforcer
        .sync()
        .expect("incremental sync of a changed policy");
    let mut isolated = netns.elements("map", "ingress-pods");
    isolated.sort();
    assert_eq!(
        isolated,
        ["\"10.42.0.2\"", "\"10.42.0.3\""],
        "web is now selected"
    );
    assert!(
        netns.elements("map", "egress-pods").is_empty(),
        "no Egress type any more"
    );
    assert!(!netns.names("set").iter().any(|s| s.starts_with("named-")));
    let blocks = netns
        .names("set")
        .into_iter()
        .find(|s| s.starts_with("blocks-"))
        .unwrap();
    let ranges = netns.elements("set", &blocks).join(" ");
    // nft lists aligned ranges as prefixes: 192.168.0.0/23 and 192.168.3.0-…255.255.
    assert!(
        ranges.contains("192.168.0.0")
            && ranges.contains("192.168.3.0")
            && !ranges.contains("192.168.2."),
        "{ranges}"
    );

    // Deleting the policy leaves only the static part.
    enforcer.apply_change(Change::PolicyDeleted {
        namespace: "shop".into(),
        name: "db".into(),
    });
    enforcer.sync().expect("delete the policy");
    assert!(netns.names("set").is_empty());
    let mut chains = netns.names("chain");
    chains.sort();
    assert_eq!(chains, ["forward", "input"]);

    enforcer.uninstall().expect("uninstall");
    assert!(
        netns.list(&["table", "ip", TABLE]).is_none(),
        "table removed"
    );
    enforcer.uninstall().expect("uninstalling twice is fine");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// 1,000 pods (100 on this node) in 100 namespaces and 1,000 policies (one per app,
/// allowing another app of any namespace with the label, on a named port): the full sync,
/// then one changed policy and one new pod, each applied incrementally, every time
/// checked in the kernel.
#[test]
fn sync_times_with_a_thousand_policies_and_pods() {
    const PODS: usize = 1000;
    const POLICIES: usize = 1000;
    let netns = Netns::new("scale");
    let mut enforcer = Enforcer::new(TABLE, netns.nft(), NODE);
    let ip = |i: usize| format!("10.42.{}.{}", i / 250, i % 250 + 1);
    for n in 0..100 {
        enforcer.apply_change(namespace(
            &format!("ns-{n}"),
            json!({"team": format!("t{}", n % 10)}),
        ));
    }
    for i in 0..PODS {
        let node = if i % 10 == 0 { NODE } else { "other" };
        enforcer.apply_change(pod(
            &format!("ns-{}", i % 100),
            &format!("pod-{i}"),
            &ip(i),
            json!({"app": format!("app-{}", i % 100)}),
            node,
        ));
    }
    let policy_spec = |i: usize, port: Value| {
        json!({"podSelector": {"matchLabels": {"app": format!("app-{}", i % 100)}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", i % 10)}},
                                      "podSelector": {"matchLabels": {"app": format!("app-{}", (i + 1) % 100)}}}],
                            "ports": [{"port": port}]}]})
    };
    for i in 0..POLICIES {
        enforcer.apply_change(policy(
            &format!("ns-{}", i % 100),
            &format!("pol-{i}"),
            policy_spec(i, json!("http")),
        ));
    }
    let started = Instant::now();
    let stats = enforcer.sync().expect("full sync");
    let full = started.elapsed();
    println!(
        "{POLICIES} policies, {PODS} pods (100 on this node): full sync {} ({} nft commands)",
        ms(full),
        stats.commands
    );
    assert_eq!(
        netns.elements("map", "ingress-pods").len(),
        100,
        "every local pod isolated"
    );

    let started = Instant::now();
    enforcer.apply_change(policy("ns-0", "pol-0", policy_spec(0, json!(8081))));
    let stats = enforcer.sync().expect("one changed policy");
    println!(
        "{POLICIES} policies: one changed policy: compute+apply {} ({} nft commands)",
        ms(started.elapsed()),
        stats.commands
    );
    assert!(!stats.full);
    let chain = netns
        .names("chain")
        .into_iter()
        .find(|c| c.ends_with("ns-0/pod-0") && c.starts_with("ingress-"))
        .expect("pod-0 has its chain");
    let listing = netns.list(&["chain", "ip", TABLE, &chain]).unwrap();
    let pol_0: Vec<String> = listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|rule| rule["expr"].to_string())
        .filter(|expr| expr.contains("ns-0/pol-0/"))
        .collect();
    assert_eq!(pol_0.len(), 1, "{pol_0:?}");
    assert!(
        pol_0[0].contains("8081"),
        "the rule of pol-0 has its new port: {pol_0:?}"
    );

    let started = Instant::now();
    // app-1 pods of t0 namespaces (ns-0, ns-10, …) are peers of the pol-0, pol-100, …
    enforcer.apply_change(pod(
        "ns-10",
        "new",
        "10.42.200.1",
        json!({"app": "app-1"}),
        "other",
    ));
    let stats = enforcer.sync().expect("one new pod");
    println!(
        "{POLICIES} policies: one new peer pod: compute+apply {} ({} nft commands)",
        ms(started.elapsed()),
        stats.commands
    );
    assert!(stats.commands >= 1 && stats.commands < 20, "{stats:?}");
    let listing = netns.list(&["sets", "ip"]).unwrap().to_string();
    assert!(listing.contains("10.42.200.1"), "the new pod is a peer");
    enforcer.uninstall().expect("uninstall");
}

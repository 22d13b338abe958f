//! Turning [`Fragment`]s into nft JSON commands: the incremental diff between what the
//! last sync applied and what is wanted now, the full rewrite (one transaction that
//! replaces the whole table, so traffic sees either the old or the new rules), and
//! uninstall.

use serde_json::{json, Value};

use super::rules::{static_chains, Element, Fragment, SetKind, SetSpec, FILTER_PRIORITY, MAPS};

/// The nft commands of one transaction, with the table they act on.
struct Commands<'a> {
    table: &'a str,
    list: Vec<Value>,
}

impl<'a> Commands<'a> {
    fn new(table: &'a str) -> Self {
        Self {
            table,
            list: Vec::new(),
        }
    }

    fn push(&mut self, verb: &str, object: &str, mut body: Value) {
        body["family"] = json!("ip");
        body["table"] = json!(self.table);
        self.list.push(json!({ verb: { object: body } }));
    }

    fn add_set(&mut self, name: &str, spec: &SetSpec) {
        let body = match spec.kind {
            SetKind::Addresses => json!({"name": name, "type": "ipv4_addr"}),
            SetKind::Ranges => json!({"name": name, "type": "ipv4_addr", "flags": ["interval"]}),
            SetKind::AddressPorts => json!({"name": name,
                "type": ["ipv4_addr", "inet_proto", "inet_service"]}),
        };
        self.push("add", "set", body);
        self.elements("add", name, spec.elements.iter());
    }

    fn elements<'e>(&mut self, verb: &str, set: &str, elements: impl Iterator<Item = &'e Element>) {
        let elem: Vec<Value> = elements.map(Element::to_json).collect();
        if !elem.is_empty() {
            self.push(verb, "element", json!({"name": set, "elem": elem}));
        }
    }

    fn add_chain(&mut self, name: &str, rules: &[Value]) {
        self.push("add", "chain", json!({ "name": name }));
        self.add_rules(name, rules);
    }

    fn add_rules(&mut self, name: &str, rules: &[Value]) {
        for expr in rules {
            self.push("add", "rule", json!({"chain": name, "expr": expr}));
        }
    }

    fn chain(&mut self, verb: &str, name: &str) {
        self.push(verb, "chain", json!({ "name": name }));
    }

    fn verdict(&mut self, verb: &str, map: &str, ip: std::net::Ipv4Addr, chain: Option<&str>) {
        let elem = match chain {
            Some(chain) => json!([[ip.to_string(), {"jump": {"target": chain}}]]),
            None => json!([ip.to_string()]),
        };
        self.push(verb, "element", json!({"name": map, "elem": elem}));
    }
}

/// The commands that turn the objects of `old` into those of `new` (each the union of
/// the fragments that changed): new sets with their elements, changed set elements,
/// new and rewritten chains, changed map elements, then removed chains and sets. Empty
/// when nothing changed. Ordered so that every object exists before it is referenced
/// and nothing is deleted while still referenced.
pub fn diff(table: &str, old: &Fragment, new: &Fragment) -> Vec<Value> {
    let mut cmds = Commands::new(table);
    for (name, spec) in &new.sets {
        match old.sets.get(name) {
            None => cmds.add_set(name, spec),
            Some(before) if before.kind != spec.kind => {
                // Cannot happen with names from one rule; replace to be safe.
                cmds.push("flush", "set", json!({ "name": name }));
                cmds.elements("add", name, spec.elements.iter());
            }
            Some(before) => {
                cmds.elements("delete", name, before.elements.difference(&spec.elements));
                cmds.elements("add", name, spec.elements.difference(&before.elements));
            }
        }
    }
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            None => cmds.add_chain(name, rules),
            Some(before) if before != rules => {
                cmds.chain("flush", name);
                cmds.add_rules(name, rules);
            }
            Some(_) => {}
        }
    }
    for ((map, ip), chain) in &old.verdicts {
        if new.verdicts.get(&(*map, *ip)) != Some(chain) {
            cmds.verdict("delete", map, *ip, None);
        }
    }
    for ((map, ip), chain) in &new.verdicts {
        if old.verdicts.get(&(*map, *ip)) != Some(chain) {
            cmds.verdict("add", map, *ip, Some(chain));
        }
    }
    let removed: Vec<&String> = old
        .chains
        .keys()
        .filter(|name| !new.chains.contains_key(*name))
        .collect();
    for name in &removed {
        cmds.chain("flush", name);
    }
    for name in &removed {
        cmds.chain("delete", name);
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        cmds.push("delete", "set", json!({ "name": name }));
    }
    cmds.list
}

/// The commands that make the table exactly `desired`, whatever it held before (an
/// earlier orc's rules, hand-made ones): the table is deleted and built again in the
/// same transaction.
pub fn full_sync(table: &str, desired: &Fragment) -> Vec<Value> {
    let mut cmds = Commands::new(table);
    cmds.list.extend(uninstall(table));
    cmds.list
        .push(json!({"add": {"table": {"family": "ip", "name": table}}}));
    for map in MAPS {
        cmds.push(
            "add",
            "map",
            json!({"name": map, "type": "ipv4_addr", "map": "verdict"}),
        );
    }
    for (name, spec) in &desired.sets {
        cmds.add_set(name, spec);
    }
    for (name, rules) in &desired.chains {
        cmds.add_chain(name, rules);
    }
    for ((map, ip), chain) in &desired.verdicts {
        cmds.verdict("add", map, *ip, Some(chain));
    }
    // The base chains last: traffic meets no half-built table.
    for (name, hook, rules) in static_chains() {
        cmds.push(
            "add",
            "chain",
            json!({"name": name, "type": "filter", "hook": hook,
                   "prio": FILTER_PRIORITY, "policy": "accept"}),
        );
        cmds.add_rules(name, &rules);
    }
    cmds.list
}

/// Deletes the table; succeeds whether or not it exists ("add" first, in one transaction).
pub fn uninstall(table: &str) -> Vec<Value> {
    vec![
        json!({"add": {"table": {"family": "ip", "name": table}}}),
        json!({"delete": {"table": {"family": "ip", "name": table}}}),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::rules::{
        pod_fragment, policy_fragment,
        tests::{policy, world},
        Cluster,
    };
    use super::*;

    const TABLE: &str = "orc-netpol-test";

    fn count(cmds: &[Value], verb: &str, object: &str) -> usize {
        cmds.iter()
            .filter(|c| c.get(verb).and_then(|v| v.get(object)).is_some())
            .count()
    }

    fn everything(spec: serde_json::Value) -> Fragment {
        let (pods, namespaces) = world();
        let cluster = Cluster {
            pods: &pods,
            namespaces: &namespaces,
        };
        let p = policy("shop", "p", spec);
        let mut all = policy_fragment(&p, &cluster);
        for pod in pods.values().filter(|p| p.node.as_deref() == Some("n1")) {
            all.merge(&pod_fragment(pod, [&p].into_iter()));
        }
        all
    }

    #[test]
    fn an_unchanged_fragment_gives_an_empty_diff() {
        let f = everything(json!({"ingress": [{"from": [{"podSelector": {}}]}]}));
        assert!(diff(TABLE, &f, &f.clone()).is_empty());
    }

    #[test]
    fn a_new_peer_only_adds_a_set_element() {
        let old = everything(
            json!({"ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
        );
        let mut new = old.clone();
        let set = new.sets.values_mut().next().unwrap();
        set.elements
            .insert(Element::Address("10.42.0.9".parse().unwrap()));
        let cmds = diff(TABLE, &old, &new);
        assert_eq!(cmds.len(), 1, "{cmds:#?}");
        assert_eq!(cmds[0]["add"]["element"]["elem"], json!(["10.42.0.9"]));
    }

    #[test]
    fn removing_a_policy_unhooks_pods_before_deleting_chains_and_sets() {
        let old = everything(json!({"ingress": [{"from": [{"podSelector": {}}]}]}));
        let cmds = diff(TABLE, &old, &Fragment::default());
        assert_eq!(count(&cmds, "delete", "element"), 2, "two pods on n1");
        assert_eq!(count(&cmds, "delete", "chain"), 2);
        assert_eq!(count(&cmds, "delete", "set"), 1);
        let position = |verb: &str, object: &str| {
            cmds.iter()
                .position(|c| c.get(verb).and_then(|v| v.get(object)).is_some())
                .unwrap()
        };
        assert!(position("delete", "element") < position("flush", "chain"));
        assert!(position("flush", "chain") < position("delete", "chain"));
        assert!(position("delete", "chain") < position("delete", "set"));
    }

    #[test]
    fn a_full_sync_rebuilds_the_table_in_one_transaction() {
        let desired =
            everything(json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}));
        let cmds = full_sync(TABLE, &desired);
        assert_eq!(cmds[1]["delete"]["table"]["name"], TABLE);
        assert_eq!(cmds[2]["add"]["table"]["name"], TABLE);
        assert_eq!(count(&cmds, "add", "map"), 2);
        let sets: Vec<&Value> = cmds.iter().filter_map(|c| c["add"].get("set")).collect();
        assert_eq!(sets[0]["flags"], json!(["interval"]));
        let base: Vec<&Value> = cmds
            .iter()
            .filter_map(|c| c["add"].get("chain"))
            .filter(|c| c.get("hook").is_some())
            .collect();
        assert_eq!(base.len(), 2);
        assert!(base.iter().all(|c| c["prio"] == FILTER_PRIORITY));
    }
}

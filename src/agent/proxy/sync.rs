//! Turning desired [`Ruleset`]s into nft JSON commands: the incremental diff between
//! two rulesets, the full resync against what the live table holds, and uninstall.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use std::net::Ipv4Addr;

use super::rules::{
    ChainSpec, DnatSlot, ElementKey, Ruleset, DATA_SETS, HAIRPIN_SET, MAPS, SERVICE_ENDPOINTS_DATA,
    SERVICE_ENDPOINTS_MAP,
};

/// What the live table holds, as far as a full resync needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveTable {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
    pub maps: BTreeSet<String>,
}

impl LiveTable {
    /// Reads an `nft -j` listing of the table's chains and sets ([`super::Nft::list_table`]).
    pub fn from_listing(listing: &Value) -> Self {
        let mut live = Self::default();
        for item in listing["nftables"].as_array().into_iter().flatten() {
            if let Some(name) = item["chain"]["name"].as_str() {
                live.chains.insert(name.to_string());
            } else if let Some(name) = item["set"]["name"].as_str() {
                live.sets.insert(name.to_string());
            } else if let Some(name) = item["map"]["name"].as_str() {
                live.maps.insert(name.to_string());
            }
        }
        live
    }

    /// Whether every map and set of the table exists ([`full_sync`] needs them).
    pub fn has_maps(&self) -> bool {
        let present = |name: &str| self.maps.contains(name) || self.sets.contains(name);
        MAPS.iter()
            .chain(DATA_SETS.iter())
            .all(|(name, _)| present(name))
    }
}

/// Creates the table, its verdict maps and sets (empty), leaving whatever exists as it is.
/// Its own transaction before a [`full_sync`] when a map is missing (the first install):
/// only `nft` creates maps (it records their key types for listing), and the full sync
/// can then go over netlink. Harmless on its own: no chain, no hook, no traffic effect.
pub fn create_maps(table: &str) -> Vec<Value> {
    let mut cmds = Commands::new(table);
    cmds.add_table();
    cmds.add_maps();
    cmds.list
}

/// The nft script (text) that creates [`SERVICE_ENDPOINTS_MAP`] in `table` when missing.
pub fn create_endpoints_map(table: &str) -> String {
    let key = DATA_SETS
        .iter()
        .find(|(name, _)| *name == SERVICE_ENDPOINTS_MAP)
        .map(|(_, key)| key.join(" . "))
        .expect("the endpoints map is a data set");
    format!(
        "add table ip {table}\nadd map ip {table} {SERVICE_ENDPOINTS_MAP} {{ type {key} : {}; }}\n",
        SERVICE_ENDPOINTS_DATA.join(" . ")
    )
}

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

    fn add_table(&mut self) {
        self.list
            .push(json!({"add": {"table": {"family": "ip", "name": self.table}}}));
    }

    fn add_maps(&mut self) {
        for (name, key_type) in MAPS {
            self.push(
                "add",
                "map",
                json!({"name": name, "type": key_type, "map": "verdict"}),
            );
        }
        // The sets of values; `service-endpoints`, a map of concatenated values, is
        // made by `nft` from text ([`create_endpoints_map`]): nft 1.0.6 ignores such a
        // map in JSON.
        for (name, key_type) in DATA_SETS {
            if name != SERVICE_ENDPOINTS_MAP {
                self.push("add", "set", json!({"name": name, "type": key_type}));
            }
        }
    }

    fn add_set(&mut self, name: &str) {
        self.push(
            "add",
            "set",
            json!({"name": name, "type": "ipv4_addr", "flags": ["timeout"]}),
        );
    }

    fn add_chain(&mut self, name: &str, spec: &ChainSpec) {
        let mut body = json!({ "name": name });
        if let Some(hook) = spec.hook {
            body["type"] = json!(hook.chain_type);
            body["hook"] = json!(hook.hook);
            body["prio"] = json!(hook.priority);
            body["policy"] = json!("accept");
        }
        self.push("add", "chain", body);
    }

    fn add_rules(&mut self, name: &str, spec: &ChainSpec) {
        for expr in &spec.rules {
            self.push("add", "rule", json!({"chain": name, "expr": expr}));
        }
    }

    fn chain(&mut self, verb: &str, name: &str) {
        self.push(verb, "chain", json!({ "name": name }));
    }

    fn element(&mut self, verb: &str, key: &ElementKey, target: Option<&str>) {
        let elem = match target {
            Some(chain) => json!([[key.to_json(), {"goto": {"target": chain}}]]),
            None => json!([key.to_json()]),
        };
        self.push(verb, "element", json!({"name": key.map, "elem": elem}));
    }

    /// An element of a set (`data` `None`) or of a map of values.
    fn value_element(&mut self, verb: &str, set: &str, key: Value, data: Option<Value>) {
        let elem = match data {
            Some(data) => json!([[key, data]]),
            None => json!([key]),
        };
        self.push(verb, "element", json!({"name": set, "elem": elem}));
    }

    fn dnat_slot(&mut self, verb: &str, slot: &DnatSlot, endpoint: Option<(Ipv4Addr, u16)>) {
        let data = endpoint.map(|(ip, port)| json!({"concat": [ip.to_string(), port]}));
        self.value_element(verb, SERVICE_ENDPOINTS_MAP, slot.to_json(), data);
    }

    /// `verb` the element `ip . ip` of [`HAIRPIN_SET`].
    pub(crate) fn hairpin(&mut self, verb: &str, ip: Ipv4Addr) {
        let key = json!({"concat": [ip.to_string(), ip.to_string()]});
        self.value_element(verb, HAIRPIN_SET, key, None);
    }
}

/// The commands that add (`add`) or delete (`delete`) the [`HAIRPIN_SET`] elements of
/// `ips`.
pub fn hairpin_elements(
    table: &str,
    verb: &str,
    ips: impl IntoIterator<Item = Ipv4Addr>,
) -> Vec<Value> {
    let mut cmds = Commands::new(table);
    for ip in ips {
        cmds.hairpin(verb, ip);
    }
    cmds.list
}

/// The commands that turn the table from `old` (what the last sync applied) into `new`:
/// only changed map elements, new and removed chains and sets, and flushed + rewritten
/// changed chains. Empty when nothing changed. Ordered so that every object exists
/// before it is referenced and nothing is deleted while still referenced.
pub fn diff(table: &str, old: &Ruleset, new: &Ruleset) -> Vec<Value> {
    let (mut removed, rest) = diff_phases(table, old, new);
    removed.extend(rest);
    removed
}

/// [`diff`] in two parts: the map elements to delete, then everything else. A sync of
/// several services runs every first part before any second part, so that a map key
/// changing hands between two services (a load-balancer address and port) is free
/// before it is added again: nft refuses to add a key that maps somewhere else.
pub fn diff_phases(table: &str, old: &Ruleset, new: &Ruleset) -> (Vec<Value>, Vec<Value>) {
    let mut removals = Commands::new(table);
    for (key, target) in &old.elements {
        if new.elements.get(key) != Some(target) {
            removals.element("delete", key, None);
        }
    }
    for key in old.dnat_services.difference(&new.dnat_services) {
        removals.element("delete", key, None);
    }
    for (slot, endpoint) in &old.dnat_slots {
        if new.dnat_slots.get(slot) != Some(endpoint) {
            removals.dnat_slot("delete", slot, None);
        }
    }
    let mut cmds = Commands::new(table);
    for key in new.dnat_services.difference(&old.dnat_services) {
        cmds.value_element("add", key.map, key.to_json(), None);
    }
    for (slot, endpoint) in &new.dnat_slots {
        if old.dnat_slots.get(slot) != Some(endpoint) {
            cmds.dnat_slot("add", slot, Some(*endpoint));
        }
    }
    for set in new.affinity_sets.difference(&old.affinity_sets) {
        cmds.add_set(set);
    }
    // Every new chain before any rule: a rule may jump to a chain that sorts after its
    // own, and the kernel resolves the target when the rule is added (ENOENT otherwise).
    for (name, spec) in &new.chains {
        if !old.chains.contains_key(name) {
            cmds.add_chain(name, spec);
        }
    }
    for (name, spec) in &new.chains {
        match old.chains.get(name) {
            None => cmds.add_rules(name, spec),
            Some(old_spec) if old_spec != spec => {
                cmds.chain("flush", name);
                cmds.add_rules(name, spec);
            }
            Some(_) => {}
        }
    }
    for (key, target) in &new.elements {
        if old.elements.get(key) != Some(target) {
            cmds.element("add", key, Some(target));
        }
    }
    let removed: Vec<&String> = old
        .chains
        .keys()
        .filter(|name| !new.chains.contains_key(*name))
        .collect();
    delete_chains(&mut cmds, removed);
    for set in old.affinity_sets.difference(&new.affinity_sets) {
        cmds.push("delete", "set", json!({ "name": set }));
    }
    (removals.list, cmds.list)
}

/// The commands that make the live table exactly `desired` (the union of its parts:
/// the static chains and one fragment per service), whatever it held: creates the table,
/// sets and chains that are missing (the maps must exist: [`create_maps`]), rewrites
/// every chain and map, and deletes
/// chains and sets orc no longer wants (also ones added by hand). One transaction, so
/// traffic sees either the old or the new rules. Affinity sets are kept (not flushed):
/// clients stay on their endpoint across an orc restart.
pub fn full_sync(table: &str, desired: &[&Ruleset], live: &LiveTable) -> Vec<Value> {
    let mut cmds = Commands::new(table);
    cmds.add_table();
    let sets: BTreeSet<&String> = desired.iter().flat_map(|r| &r.affinity_sets).collect();
    // Only the missing ones: a set that rules update is `dynamic` in the kernel, and
    // adding it again as declared (`flags timeout`) is refused with EEXIST.
    for set in sets.iter().filter(|set| !live.sets.contains(**set)) {
        cmds.add_set(set);
    }
    let chains = || desired.iter().flat_map(|r| &r.chains);
    for (name, spec) in chains() {
        cmds.add_chain(name, spec);
    }
    for (name, _) in MAPS {
        cmds.push("flush", "map", json!({ "name": name }));
    }
    for (name, _) in DATA_SETS {
        let kind = if name == SERVICE_ENDPOINTS_MAP {
            "map"
        } else {
            "set"
        };
        cmds.push("flush", kind, json!({ "name": name }));
    }
    for (name, spec) in chains() {
        // A chain made by this transaction is empty already.
        if live.chains.contains(name) {
            cmds.chain("flush", name);
        }
        cmds.add_rules(name, spec);
    }
    for (key, target) in desired.iter().flat_map(|r| &r.elements) {
        cmds.element("add", key, Some(target));
    }
    for key in desired.iter().flat_map(|r| &r.dnat_services) {
        cmds.value_element("add", key.map, key.to_json(), None);
    }
    for (slot, endpoint) in desired.iter().flat_map(|r| &r.dnat_slots) {
        cmds.dnat_slot("add", slot, Some(*endpoint));
    }
    let hairpin: BTreeSet<Ipv4Addr> = desired
        .iter()
        .flat_map(|r| r.hairpin.iter().copied())
        .collect();
    for ip in hairpin {
        cmds.hairpin("add", ip);
    }
    let wanted: BTreeSet<&String> = chains().map(|(name, _)| name).collect();
    let stale: Vec<&String> = live
        .chains
        .iter()
        .filter(|name| !wanted.contains(name))
        .collect();
    delete_chains(&mut cmds, stale);
    let maps: BTreeSet<&str> = MAPS
        .iter()
        .chain(DATA_SETS.iter())
        .map(|(name, _)| *name)
        .collect();
    for set in &live.sets {
        if !sets.contains(set) && !maps.contains(set.as_str()) {
            cmds.push("delete", "set", json!({ "name": set }));
        }
    }
    cmds.list
}

/// Flushes every chain first (dropping their jumps to each other), then deletes them.
fn delete_chains(cmds: &mut Commands<'_>, chains: Vec<&String>) {
    for name in &chains {
        cmds.chain("flush", name);
    }
    for name in &chains {
        cmds.chain("delete", name);
    }
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
    use super::*;
    use crate::agent::proxy::rules::build;
    use crate::agent::proxy::rules::tests::{maps, service, web_endpoints, web_service};

    const TABLE: &str = "orc-proxy-test";

    fn count(cmds: &[Value], verb: &str, object: &str) -> usize {
        cmds.iter()
            .filter(|c| c.get(verb).and_then(|v| v.get(object)).is_some())
            .count()
    }

    fn web(ips: &[&str]) -> Ruleset {
        let (s, e) = maps(vec![web_service()], vec![web_endpoints(ips)]);
        build(&s, &e, None)
    }

    #[test]
    fn unchanged_ruleset_gives_an_empty_diff() {
        let r = web(&["10.42.0.2"]);
        assert!(diff(TABLE, &r, &r.clone()).is_empty());
    }

    #[test]
    fn one_more_endpoint_rewrites_only_the_service_chain() {
        let old = web(&["10.42.0.2"]);
        let new = web(&["10.42.0.2", "10.42.0.3"]);
        let cmds = diff(TABLE, &old, &new);
        assert_eq!(count(&cmds, "add", "chain"), 0, "{cmds:#?}");
        // The service chain is flushed and rewritten with a 2-way numgen choice.
        assert_eq!(count(&cmds, "flush", "chain"), 1);
        assert_eq!(count(&cmds, "add", "rule"), 4, "two rules per endpoint");
        let draws: Vec<&Value> = cmds
            .iter()
            .filter_map(|c| c["add"]["rule"]["expr"][1]["match"]["left"].get("numgen"))
            .collect();
        assert_eq!(draws.len(), 2, "{cmds:#?}");
        assert!(draws.iter().all(|d| d["mod"] == 2));
        assert_eq!(count(&cmds, "add", "element"), 0, "map entry unchanged");
        assert_eq!(count(&cmds, "delete", "chain"), 0);
    }

    #[test]
    fn removed_service_deletes_its_elements_and_chains() {
        let (s, e) = maps(
            vec![service(
                "default",
                "web",
                json!({"clusterIP": "10.43.0.10", "sessionAffinity": "ClientIP",
                       "ports": [{"name": "http", "port": 80}]}),
            )],
            vec![web_endpoints(&["10.42.0.2", "10.42.0.3"])],
        );
        let old = build(&s, &e, None);
        let (s, e) = maps(vec![], vec![]);
        let new = build(&s, &e, None);
        let cmds = diff(TABLE, &old, &new);
        assert_eq!(count(&cmds, "delete", "element"), 1);
        assert_eq!(count(&cmds, "delete", "chain"), 3, "service + 2 endpoints");
        assert_eq!(count(&cmds, "delete", "set"), 2, "the affinity sets");
        assert_eq!(count(&cmds, "add", "element"), 0);
        let last_flush = cmds.iter().rposition(|c| c.get("flush").is_some()).unwrap();
        let first_delete = cmds
            .iter()
            .position(|c| c["delete"].get("chain").is_some())
            .unwrap();
        assert!(
            last_flush < first_delete,
            "chains are emptied before deletion"
        );
    }

    fn plain_web(ips: &[&str]) -> Ruleset {
        use crate::agent::proxy::rules::{build_with, Shape};
        let (s, e) = maps(vec![web_service()], vec![web_endpoints(ips)]);
        build_with(&s, &e, None, Shape { dnat_maps: true })
    }

    /// An endpoint change of a plain service adds no rule, chain or verdict: only value
    /// elements, their deletions in the first phase.
    #[test]
    fn an_endpoint_change_of_a_plain_service_changes_only_value_elements() {
        let old = plain_web(&["10.42.0.2"]);
        let new = plain_web(&["10.42.0.2", "10.42.0.3"]);
        let (removals, cmds) = diff_phases(TABLE, &old, &new);
        for cmd in removals.iter().chain(&cmds) {
            assert!(
                cmd["add"]
                    .get("element")
                    .or(cmd["delete"].get("element"))
                    .is_some(),
                "{cmd}"
            );
            assert!(!cmd.to_string().contains("goto"), "{cmd}");
        }
        // One endpoint had slot 0; two have slots 1 and 2.
        assert_eq!(count(&removals, "delete", "element"), 1);
        assert_eq!(count(&cmds, "add", "element"), 2);
        assert!(cmds
            .iter()
            .all(|c| c["add"]["element"]["name"] == "service-endpoints"));
        // The service goes: its key and slots are deleted.
        let statics = crate::agent::proxy::rules::build_static(crate::agent::proxy::rules::Shape {
            dnat_maps: true,
        });
        let (removals, cmds) = diff_phases(TABLE, &new, &statics);
        assert_eq!(count(&removals, "delete", "element"), 3, "{removals:#?}");
        assert!(cmds.is_empty());
    }

    #[test]
    fn full_sync_flushes_and_fills_the_dnat_sets() {
        let desired = plain_web(&["10.42.0.2", "10.42.0.3"]);
        let cmds = full_sync(
            TABLE,
            &[&desired, &plain_web(&["10.42.0.2"])],
            &LiveTable::default(),
        );
        let flushed: Vec<&str> = cmds
            .iter()
            .filter_map(|c| {
                c["flush"]["set"]["name"]
                    .as_str()
                    .or(c["flush"]["map"]["name"].as_str())
            })
            .collect();
        for name in ["dnat-services", "service-endpoints", "hairpin-endpoints"] {
            assert!(flushed.contains(&name), "{name}: {flushed:?}");
        }
        let hairpins = cmds
            .iter()
            .filter(|c| c["add"]["element"]["name"] == "hairpin-endpoints")
            .count();
        assert_eq!(
            hairpins, 2,
            "each address once, however many services share it"
        );
    }

    #[test]
    fn losing_all_endpoints_moves_the_key_to_the_reject_map() {
        let old = web(&["10.42.0.2"]);
        let new = web(&[]);
        let cmds = diff(TABLE, &old, &new);
        let deleted = cmds
            .iter()
            .find_map(|c| c["delete"]["element"]["name"].as_str())
            .unwrap();
        assert_eq!(deleted, "service-ips");
        let added = cmds
            .iter()
            .find_map(|c| c["add"]["element"].as_object())
            .unwrap();
        assert_eq!(added["name"], "no-endpoint-services");
        assert_eq!(added["elem"][0][1]["goto"]["target"], "reject-chain");
        assert_eq!(added["elem"][0][0]["concat"][0], "10.43.0.10");
    }

    #[test]
    fn full_sync_deletes_stale_chains_and_sets_but_keeps_wanted_ones() {
        let desired = web(&["10.42.0.2"]);
        let mut live = LiveTable::default();
        live.chains.insert("services".into());
        live.chains.insert("handmade".into());
        live.sets.insert("service-ips".into());
        live.sets.insert("affinity-old".into());
        let cmds = full_sync(TABLE, &[&desired], &live);
        let deleted: Vec<&str> = cmds
            .iter()
            .filter_map(|c| {
                c["delete"]["chain"]["name"]
                    .as_str()
                    .or(c["delete"]["set"]["name"].as_str())
            })
            .collect();
        assert_eq!(deleted, vec!["handmade", "affinity-old"]);
        assert_eq!(cmds[0]["add"]["table"]["name"], TABLE);
    }

    /// An affinity set already in the table is kept as it is, not added again: the
    /// kernel holds it as `dynamic` and refuses it re-declared (EEXIST).
    #[test]
    fn full_sync_adds_only_the_affinity_sets_the_table_lacks() {
        let mut svc = web_service();
        svc.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
        let (s, e) = maps(vec![svc], vec![web_endpoints(&["10.42.0.2"])]);
        let desired = build(&s, &e, None);
        assert_eq!(desired.affinity_sets.len(), 1);
        let added_sets = |live: &LiveTable| {
            let cmds = full_sync(TABLE, &[&desired], live);
            count(&cmds, "add", "set")
        };
        assert_eq!(added_sets(&LiveTable::default()), 1, "a fresh table");
        let mut live = LiveTable::default();
        live.sets.extend(desired.affinity_sets.iter().cloned());
        assert_eq!(added_sets(&live), 0, "a table that has it");
    }

    #[test]
    fn live_table_listing_is_parsed() {
        let listing = json!({"nftables": [
            {"metainfo": {}},
            {"table": {"family": "ip", "name": TABLE}},
            {"chain": {"family": "ip", "table": TABLE, "name": "services"}},
            {"set": {"family": "ip", "table": TABLE, "name": "affinity-x"}},
            {"map": {"family": "ip", "table": TABLE, "name": "service-ips"}},
        ]});
        let live = LiveTable::from_listing(&listing);
        assert!(live.chains.contains("services"));
        assert!(live.sets.contains("affinity-x"));
        assert_eq!(live.sets.len(), 1);
        assert_eq!(live.maps.len(), 1);
        assert!(!live.has_maps(), "three of the four maps are missing");
    }

    /// Every chain a rule jumps to or an element points at is created (or kept) before
    /// that command, in a diff that adds a rich service (NodePort, load balancer, local
    /// policy, affinity): the kernel refuses a jump to a chain that does not exist yet.
    #[test]
    fn a_new_service_creates_its_chains_before_the_rules_that_jump_to_them() {
        let mut lb = service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.10", "type": "LoadBalancer",
                   "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
                   "externalIPs": ["198.51.100.9"],
                   "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                             {"name": "https", "port": 443, "targetPort": 8443, "nodePort": 30443}]}),
        );
        lb.status = Some(
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}))
                .unwrap(),
        );
        let endpoints = crate::agent::proxy::rules::tests::endpoints(
            "default",
            "web",
            json!([{"addresses": [{"ip": "10.42.0.2", "nodeName": "here"},
                                  {"ip": "10.42.0.3", "nodeName": "there"}],
                    "ports": [{"name": "http", "port": 8080}, {"name": "https", "port": 8443}]}]),
        );
        let (s, e) = maps(vec![lb], vec![endpoints]);
        let new = build(&s, &e, Some("here"));
        assert!(
            new.chains.len() > 4,
            "a rich service: {:?}",
            new.chains.keys()
        );
        let (removals, cmds) = diff_phases(TABLE, &Ruleset::default(), &new);
        assert!(removals.is_empty());
        fn targets(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for verb in ["jump", "goto"] {
                        if let Some(target) = map.get(verb).and_then(|v| v["target"].as_str()) {
                            out.push(target.to_string());
                        }
                    }
                    map.values().for_each(|v| targets(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| targets(v, out)),
                _ => {}
            }
        }
        let mut created = BTreeSet::new();
        let mut jumps = 0;
        for cmd in &cmds {
            if let Some(name) = cmd["add"]["chain"]["name"].as_str() {
                created.insert(name.to_string());
                continue;
            }
            let mut to = Vec::new();
            targets(cmd, &mut to);
            for target in to {
                jumps += 1;
                assert!(
                    created.contains(&target) || !new.chains.contains_key(&target),
                    "{target} used before it is created: {cmd}"
                );
            }
        }
        assert!(
            jumps > 4,
            "the service's rules and elements jump: {cmds:#?}"
        );
    }
}

//! Inter-pod affinity, as upstream's InterPodAffinity plugin: a pod's required
//! `podAffinity` / `podAntiAffinity` terms and the required anti-affinity of the pods
//! already placed filter nodes; preferred terms (both ways) and the placed pods'
//! required affinity (`hardPodAffinityWeight` 1) score them. Pure: the cache hands in
//! the placed pods that matter and the namespaces' labels; pods without terms never
//! reach this module (the cache keeps the placed pods that have terms apart).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::info::NodeInfo;
use crate::api::object;
use crate::api::selector::LabelSelector;

/// Upstream's default `hardPodAffinityWeight`: what a placed pod's required affinity
/// term adds to the nodes in its domain for the pods it matches.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;
/// Upstream `MaxNodeScore`.
const MAX_NODE_SCORE: i64 = 100;

/// Which namespaces a term selects pods in: the listed ones, and (with a
/// `namespaceSelector`) those whose labels match; neither = the pod's own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceScope {
    names: Vec<String>,
    selector: Option<LabelSelector>,
}

impl NamespaceScope {
    pub fn contains(&self, ns: &str, namespaces: &NamespaceLabels) -> bool {
        self.names.iter().any(|n| n == ns)
            || self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(namespaces.get(ns)))
    }
}

/// The labels of every namespace (for `namespaceSelector`).
pub type NamespaceLabels = HashMap<String, Map<String, Value>>;

/// One `PodAffinityTerm`, with `matchLabelKeys` / `mismatchLabelKeys` folded into its
/// selector (`key in (value)` / `key notin (value)` of the pod's own labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityTerm {
    /// `None`: no `labelSelector`, which matches no pod (upstream).
    selector: Option<LabelSelector>,
    namespaces: NamespaceScope,
    pub topology_key: String,
}

impl AffinityTerm {
    fn parse(term: &Value, pod_ns: &str, pod_labels: Option<&Map<String, Value>>) -> Self {
        let mut selector = term.get("labelSelector").filter(|s| s.is_object()).cloned();
        if let Some(sel) = selector.as_mut() {
            let extra = |field: &str, op: &str| -> Vec<Value> {
                term[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|k| {
                        let v = pod_labels?.get(k)?.as_str()?;
                        Some(json!({"key": k, "operator": op, "values": [v]}))
                    })
                    .collect()
            };
            let mut exprs = extra("matchLabelKeys", "In");
            exprs.extend(extra("mismatchLabelKeys", "NotIn"));
            if !exprs.is_empty() {
                let all = sel["matchExpressions"].as_array_mut();
                match all {
                    Some(a) => a.extend(exprs),
                    None => sel["matchExpressions"] = Value::Array(exprs),
                }
            }
        }
        let names: Vec<String> = term["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let ns_selector = term
            .get("namespaceSelector")
            .filter(|s| s.is_object())
            .and_then(|s| LabelSelector::from_k8s(s).ok());
        let names = if names.is_empty() && ns_selector.is_none() {
            vec![pod_ns.to_string()]
        } else {
            names
        };
        AffinityTerm {
            selector: selector.and_then(|s| LabelSelector::from_k8s(&s).ok()),
            namespaces: NamespaceScope {
                names,
                selector: ns_selector,
            },
            topology_key: term["topologyKey"].as_str().unwrap_or("").to_string(),
        }
    }

    /// Whether the term selects a pod of namespace `ns` with these labels.
    pub fn matches(
        &self,
        ns: &str,
        labels: Option<&Map<String, Value>>,
        namespaces: &NamespaceLabels,
    ) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(labels))
            && self.namespaces.contains(ns, namespaces)
    }

    /// The node's value of the term's topology key.
    fn domain<'n>(&self, node: &'n NodeInfo) -> Option<&'n str> {
        node.labels.get(&self.topology_key).and_then(Value::as_str)
    }
}

/// A pod's `podAffinity` and `podAntiAffinity`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAffinity {
    pub required: Vec<AffinityTerm>,
    pub required_anti: Vec<AffinityTerm>,
    pub preferred: Vec<(i64, AffinityTerm)>,
    pub preferred_anti: Vec<(i64, AffinityTerm)>,
}

impl PodAffinity {
    /// The pod's terms; `None` when it has none (the common case, which costs nothing).
    pub fn from_pod(pod: &Value) -> Option<PodAffinity> {
        let affinity = &pod["spec"]["affinity"];
        let (aff, anti) = (&affinity["podAffinity"], &affinity["podAntiAffinity"]);
        if !aff.is_object() && !anti.is_object() {
            return None;
        }
        let ns = object::namespace(pod).unwrap_or("default");
        let labels = object::labels(pod);
        let required = |v: &Value| -> Vec<AffinityTerm> {
            v["requiredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, ns, labels))
                .collect()
        };
        let preferred = |v: &Value| -> Vec<(i64, AffinityTerm)> {
            v["preferredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    (
                        w["weight"].as_i64().unwrap_or(0),
                        AffinityTerm::parse(&w["podAffinityTerm"], ns, labels),
                    )
                })
                .collect()
        };
        let rules = PodAffinity {
            required: required(aff),
            required_anti: required(anti),
            preferred: preferred(aff),
            preferred_anti: preferred(anti),
        };
        (!rules.is_empty()).then_some(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.required_anti.is_empty()
            && self.preferred.is_empty()
            && self.preferred_anti.is_empty()
    }

    /// Whether the pod has terms that filter nodes.
    pub fn filters(&self) -> bool {
        !self.required.is_empty() || !self.required_anti.is_empty()
    }
}

/// A placed pod as the plugin sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlacedPod<'a> {
    pub ns: &'a str,
    pub labels: Option<&'a Map<String, Value>>,
    pub node: &'a NodeInfo,
    /// Its own terms, when it has any.
    pub affinity: Option<&'a PodAffinity>,
}

/// The pod being scheduled.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub ns: &'a str,
    pub labels: Option<&'a Map<String, Value>>,
    pub affinity: Option<&'a PodAffinity>,
}

type Domains = HashMap<(String, String), i64>;

fn add_domain(map: &mut Domains, key: &str, node: &NodeInfo, by: i64) {
    if let Some(value) = node.labels.get(key).and_then(Value::as_str) {
        *map.entry((key.to_string(), value.to_string())).or_default() += by;
    }
}

/// Why a node fails the plugin's filter, in upstream's words (checked in its order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AffinityFailure {
    ExistingAntiAffinity,
    Affinity,
    AntiAffinity,
}

/// Upstream's PreFilter state: per topology domain, how many placed pods' required
/// anti-affinity selects the incoming pod, and how many placed pods the incoming pod's
/// required affinity and anti-affinity select.
#[derive(Debug, Default)]
pub struct AffinityFilter<'a> {
    existing_anti: Domains,
    affinity: Domains,
    anti: Domains,
    pod: Option<&'a PodAffinity>,
    /// The incoming pod matches all its own required affinity terms.
    self_match: bool,
}

impl<'a> AffinityFilter<'a> {
    /// `anti_holders`: the placed pods with required anti-affinity terms; `all`: every
    /// placed pod (read only when the incoming pod has required terms).
    pub fn new<'p>(
        pod: Incoming<'a>,
        anti_holders: impl Iterator<Item = PlacedPod<'p>>,
        all: impl Iterator<Item = PlacedPod<'p>>,
        namespaces: &NamespaceLabels,
    ) -> AffinityFilter<'a> {
        let mut state = AffinityFilter::default();
        for placed in anti_holders {
            let Some(rules) = placed.affinity else {
                continue;
            };
            for term in &rules.required_anti {
                if term.matches(pod.ns, pod.labels, namespaces) {
                    add_domain(&mut state.existing_anti, &term.topology_key, placed.node, 1);
                }
            }
        }
        let Some(rules) = pod.affinity.filter(|r| r.filters()) else {
            return state;
        };
        state.pod = Some(rules);
        state.self_match = rules
            .required
            .iter()
            .all(|t| t.matches(pod.ns, pod.labels, namespaces));
        for placed in all {
            if !rules.required.is_empty()
                && rules
                    .required
                    .iter()
                    .all(|t| t.matches(placed.ns, placed.labels, namespaces))
            {
                for t in &rules.required {
                    add_domain(&mut state.affinity, &t.topology_key, placed.node, 1);
                }
            }
            for t in &rules.required_anti {
                if t.matches(placed.ns, placed.labels, namespaces) {
                    add_domain(&mut state.anti, &t.topology_key, placed.node, 1);
                }
            }
        }
        state
    }

    /// Whether there is nothing to check (no placed anti-affinity selects the pod and
    /// the pod has no required terms).
    pub fn is_trivial(&self) -> bool {
        self.existing_anti.is_empty() && self.pod.is_none()
    }

    /// Upstream `Filter`: the pod's affinity, its anti-affinity, then the placed pods'
    /// anti-affinity.
    pub fn check(&self, node: &NodeInfo) -> Result<(), AffinityFailure> {
        let in_domain = |map: &Domains, key: &str| -> i64 {
            node.labels
                .get(key)
                .and_then(Value::as_str)
                .and_then(|v| map.get(&(key.to_string(), v.to_string())))
                .copied()
                .unwrap_or(0)
        };
        if let Some(rules) = self.pod {
            let mut pods_exist = true;
            for t in &rules.required {
                if t.domain(node).is_none() {
                    return Err(AffinityFailure::Affinity);
                }
                if in_domain(&self.affinity, &t.topology_key) <= 0 {
                    pods_exist = false;
                }
            }
            // The first pod of a group with affinity to itself may go anywhere.
            let first_of_its_group = self.affinity.is_empty() && self.self_match;
            if !pods_exist && !first_of_its_group {
                return Err(AffinityFailure::Affinity);
            }
            for t in &rules.required_anti {
                if in_domain(&self.anti, &t.topology_key) > 0 {
                    return Err(AffinityFailure::AntiAffinity);
                }
            }
        }
        let blocked = self.existing_anti.iter().any(|((key, value), count)| {
            *count > 0 && node.labels.get(key).and_then(Value::as_str) == Some(value)
        });
        if blocked {
            return Err(AffinityFailure::ExistingAntiAffinity);
        }
        Ok(())
    }
}

/// Upstream's PreScore: what each topology domain is worth for the incoming pod — its
/// preferred terms over the placed pods they select (anti-affinity negative), and the
/// placed pods' preferred terms and required affinity (hard weight) that select it.
/// Empty when nothing applies (every node then scores the same).
pub fn domain_scores<'p>(
    pod: Incoming<'_>,
    holders: impl Iterator<Item = PlacedPod<'p>>,
    all: impl Iterator<Item = PlacedPod<'p>>,
    namespaces: &NamespaceLabels,
) -> HashMap<(String, String), i64> {
    let mut scores = Domains::new();
    for placed in holders {
        let Some(rules) = placed.affinity else {
            continue;
        };
        for t in &rules.required {
            if t.matches(pod.ns, pod.labels, namespaces) {
                add_domain(
                    &mut scores,
                    &t.topology_key,
                    placed.node,
                    HARD_POD_AFFINITY_WEIGHT,
                );
            }
        }
        for (w, t) in &rules.preferred {
            if t.matches(pod.ns, pod.labels, namespaces) {
                add_domain(&mut scores, &t.topology_key, placed.node, *w);
            }
        }
        for (w, t) in &rules.preferred_anti {
            if t.matches(pod.ns, pod.labels, namespaces) {
                add_domain(&mut scores, &t.topology_key, placed.node, -*w);
            }
        }
    }
    if let Some(rules) = pod
        .affinity
        .filter(|r| !r.preferred.is_empty() || !r.preferred_anti.is_empty())
    {
        for placed in all {
            for (w, t) in &rules.preferred {
                if t.matches(placed.ns, placed.labels, namespaces) {
                    add_domain(&mut scores, &t.topology_key, placed.node, *w);
                }
            }
            for (w, t) in &rules.preferred_anti {
                if t.matches(placed.ns, placed.labels, namespaces) {
                    add_domain(&mut scores, &t.topology_key, placed.node, -*w);
                }
            }
        }
    }
    scores.retain(|_, v| *v != 0);
    scores
}

/// Upstream `Score`: the sum of the worth of the node's domains.
pub fn node_score(node: &NodeInfo, domains: &HashMap<(String, String), i64>) -> i64 {
    domains
        .iter()
        .filter(|((key, value), _)| node.labels.get(key).and_then(Value::as_str) == Some(value))
        .map(|(_, v)| *v)
        .sum()
}

/// Upstream `NormalizeScore`: scaled to 0..=100 between the lowest and the highest.
pub fn normalize(raw: &[i64]) -> Vec<i64> {
    let min = raw.iter().copied().min().unwrap_or(0);
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&s| {
            if max == min {
                0
            } else {
                MAX_NODE_SCORE * (s - min) / (max - min)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::scheduler::spread::{HOSTNAME_KEY, ZONE_KEY};

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo::from_json(&json!({"metadata": {"name": name,
            "labels": {HOSTNAME_KEY: name, ZONE_KEY: zone}}}))
    }

    fn pod(labels: Value, affinity: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels},
               "spec": {"affinity": affinity}})
    }

    fn anti_on(key: &str, app: &str) -> Value {
        json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}})
    }

    fn labels(v: &Value) -> Option<&Map<String, Value>> {
        v.as_object()
    }

    #[test]
    fn pods_without_pod_affinity_have_no_rules() {
        assert!(PodAffinity::from_pod(&pod(json!({}), json!({"nodeAffinity": {}}))).is_none());
        assert!(PodAffinity::from_pod(&json!({"spec": {}})).is_none());
    }

    #[test]
    fn required_anti_affinity_keeps_replicas_off_nodes_that_have_one() {
        let nodes = [node("n1", "a"), node("n2", "a"), node("n3", "b")];
        let web = json!({"app": "web"});
        let rules = PodAffinity::from_pod(&pod(web.clone(), anti_on(HOSTNAME_KEY, "web"))).unwrap();
        let placed = [PlacedPod {
            ns: "ns",
            labels: labels(&web),
            node: &nodes[0],
            affinity: Some(&rules),
        }];
        let incoming = Incoming {
            ns: "ns",
            labels: labels(&web),
            affinity: Some(&rules),
        };
        let ns = NamespaceLabels::new();
        let f = AffinityFilter::new(
            incoming,
            placed.iter().copied(),
            placed.iter().copied(),
            &ns,
        );
        // The pod's own rule is reported first, as upstream checks it first.
        assert_eq!(f.check(&nodes[0]), Err(AffinityFailure::AntiAffinity));
        assert_eq!(f.check(&nodes[1]), Ok(()));
        // A pod without rules is kept off n1 by the placed pod's rule.
        let plain = Incoming {
            ns: "ns",
            labels: labels(&web),
            affinity: None,
        };
        let f = AffinityFilter::new(plain, placed.iter().copied(), placed.iter().copied(), &ns);
        assert_eq!(
            f.check(&nodes[0]),
            Err(AffinityFailure::ExistingAntiAffinity)
        );
        assert_eq!(f.check(&nodes[1]), Ok(()));
        // Zone-wide anti-affinity refuses the whole zone.
        let zonal = PodAffinity::from_pod(&pod(web.clone(), anti_on(ZONE_KEY, "web"))).unwrap();
        let incoming = Incoming {
            ns: "ns",
            labels: labels(&web),
            affinity: Some(&zonal),
        };
        let f = AffinityFilter::new(incoming, std::iter::empty(), placed.iter().copied(), &ns);
        assert_eq!(f.check(&nodes[1]), Err(AffinityFailure::AntiAffinity));
        assert_eq!(f.check(&nodes[2]), Ok(()));
        // Pods of another namespace are not counted.
        let elsewhere = [PlacedPod {
            ns: "other",
            ..placed[0]
        }];
        let f = AffinityFilter::new(incoming, std::iter::empty(), elsewhere.iter().copied(), &ns);
        assert_eq!(f.check(&nodes[0]), Ok(()));
    }

    #[test]
    fn required_affinity_follows_the_pods_it_selects_and_lets_the_first_one_anywhere() {
        let nodes = [node("n1", "a"), node("n2", "b")];
        let cache_labels = json!({"app": "cache"});
        let web_labels = json!({"app": "web"});
        let with_cache = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE_KEY}]}});
        let rules = PodAffinity::from_pod(&pod(web_labels.clone(), with_cache.clone())).unwrap();
        let incoming = Incoming {
            ns: "ns",
            labels: labels(&web_labels),
            affinity: Some(&rules),
        };
        let ns = NamespaceLabels::new();
        // No cache pod anywhere, and the web pod does not match its own term: nowhere.
        let f = AffinityFilter::new(incoming, std::iter::empty(), std::iter::empty(), &ns);
        assert_eq!(f.check(&nodes[0]), Err(AffinityFailure::Affinity));
        let placed = [PlacedPod {
            ns: "ns",
            labels: labels(&cache_labels),
            node: &nodes[1],
            affinity: None,
        }];
        let f = AffinityFilter::new(incoming, std::iter::empty(), placed.iter().copied(), &ns);
        assert_eq!(f.check(&nodes[0]), Err(AffinityFailure::Affinity));
        assert_eq!(f.check(&nodes[1]), Ok(()));
        // A pod with affinity to its own kind may start the group anywhere.
        let selfish = PodAffinity::from_pod(&pod(cache_labels.clone(), with_cache)).unwrap();
        let first = Incoming {
            ns: "ns",
            labels: labels(&cache_labels),
            affinity: Some(&selfish),
        };
        let f = AffinityFilter::new(first, std::iter::empty(), std::iter::empty(), &ns);
        assert_eq!(f.check(&nodes[0]), Ok(()));
        // A node without the topology label never satisfies an affinity term.
        let bare = NodeInfo::from_json(&json!({"metadata": {"name": "bare"}}));
        let f = AffinityFilter::new(incoming, std::iter::empty(), placed.iter().copied(), &ns);
        assert_eq!(f.check(&bare), Err(AffinityFailure::Affinity));
    }

    #[test]
    fn namespace_selectors_and_match_label_keys_narrow_terms() {
        let mut ns = NamespaceLabels::new();
        ns.insert(
            "team-a".into(),
            json!({"team": "a"}).as_object().unwrap().clone(),
        );
        ns.insert(
            "team-b".into(),
            json!({"team": "b"}).as_object().unwrap().clone(),
        );
        let term = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOSTNAME_KEY,
             "namespaceSelector": {"matchLabels": {"team": "a"}},
             "matchLabelKeys": ["version"]}]}});
        let rules =
            PodAffinity::from_pod(&pod(json!({"app": "web", "version": "2"}), term)).unwrap();
        let t = &rules.required_anti[0];
        let v2 = json!({"app": "web", "version": "2"});
        let v1 = json!({"app": "web", "version": "1"});
        assert!(t.matches("team-a", labels(&v2), &ns));
        assert!(
            !t.matches("team-a", labels(&v1), &ns),
            "matchLabelKeys pins the version"
        );
        assert!(!t.matches("team-b", labels(&v2), &ns));
        assert!(
            !t.matches("ns", labels(&v2), &ns),
            "a namespace selector replaces the own namespace"
        );
        // An empty namespaceSelector selects every namespace.
        let all = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOSTNAME_KEY,
             "namespaceSelector": {}}]}});
        let rules = PodAffinity::from_pod(&pod(json!({}), all)).unwrap();
        assert!(rules.required_anti[0].matches("team-b", labels(&v1), &ns));
        // A term without a labelSelector selects no pod.
        let none = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": HOSTNAME_KEY}]}});
        let rules = PodAffinity::from_pod(&pod(json!({}), none)).unwrap();
        assert!(!rules.required_anti[0].matches("ns", labels(&v1), &ns));
    }

    #[test]
    fn preferred_terms_and_placed_pods_terms_score_domains() {
        let nodes = [node("n1", "a"), node("n2", "b"), node("n3", "c")];
        let web = json!({"app": "web"});
        let cache = json!({"app": "cache"});
        let prefs = json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE_KEY}}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOSTNAME_KEY}}]}});
        let rules = PodAffinity::from_pod(&pod(web.clone(), prefs)).unwrap();
        let placed = [
            PlacedPod {
                ns: "ns",
                labels: labels(&cache),
                node: &nodes[0],
                affinity: None,
            },
            PlacedPod {
                ns: "ns",
                labels: labels(&web),
                node: &nodes[0],
                affinity: None,
            },
            PlacedPod {
                ns: "ns",
                labels: labels(&web),
                node: &nodes[1],
                affinity: None,
            },
        ];
        let incoming = Incoming {
            ns: "ns",
            labels: labels(&web),
            affinity: Some(&rules),
        };
        let ns = NamespaceLabels::new();
        let domains = domain_scores(incoming, std::iter::empty(), placed.iter().copied(), &ns);
        let raw: Vec<i64> = nodes.iter().map(|n| node_score(n, &domains)).collect();
        assert_eq!(raw, [80 - 100, -100, 0]);
        assert_eq!(normalize(&raw), [80, 0, 100]);
        // A placed pod's required affinity to web pulls web pods to its zone (weight 1).
        let wants_web = PodAffinity::from_pod(&pod(
            json!({}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE_KEY}]}}),
        ))
        .unwrap();
        let holder = [PlacedPod {
            ns: "ns",
            labels: None,
            node: &nodes[2],
            affinity: Some(&wants_web),
        }];
        let plain = Incoming {
            ns: "ns",
            labels: labels(&web),
            affinity: None,
        };
        let domains = domain_scores(plain, holder.iter().copied(), std::iter::empty(), &ns);
        let raw: Vec<i64> = nodes.iter().map(|n| node_score(n, &domains)).collect();
        assert_eq!(raw, [0, 0, HARD_POD_AFFINITY_WEIGHT]);
        assert_eq!(normalize(&[5, 5]), [0, 0]);
    }
}

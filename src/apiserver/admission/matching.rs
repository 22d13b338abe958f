//! Which webhooks a request reaches (upstream `webhook/predicates`): the webhooks of the
//! stored configurations in their parsed form, and the pure rules that match them
//! against a request's resource, operation, scope, namespace labels and object labels.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::api::client_config;
pub use crate::api::client_config::Endpoint;
use crate::api::object;
use crate::api::selector::LabelSelector;

/// The resources admission webhooks and policies never see (upstream
/// `IsExemptAdmissionConfigurationResource`): a bad webhook or policy must not lock its
/// own configuration.
const EXEMPT_RESOURCES: &[(&str, &str)] = &[
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
];

/// Seconds a webhook call may take when its configuration does not say.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

/// What an admission request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One rule of a webhook (`rules[]`, a RuleWithOperations).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub scope: String,
}

/// A webhook of a stored configuration, parsed once when the configuration changes.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The configuration's name (the order webhooks run in is by it).
    pub configuration: String,
    /// The configuration's resourceVersion: cached clients are rebuilt when it moves.
    pub configuration_version: String,
    pub name: String,
    pub mutating: bool,
    pub endpoint: Endpoint,
    /// The PEM `caBundle`, when set.
    pub ca_bundle: Option<String>,
    pub rules: Vec<Rule>,
    pub fail_open: bool,
    pub exact_match: bool,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
    /// sideEffects: `None`/`NoneOnDryRun` may be called for dry runs.
    pub dry_run_safe: bool,
    pub timeout: Duration,
    pub reinvoke: bool,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The webhooks of a stored configuration, in their order. Stored configurations passed
/// validation, so their selectors parse (one that did not would match everything).
pub fn parse_configuration(config: &Value, mutating: bool) -> Vec<Hook> {
    let configuration = object::name(config).to_string();
    let configuration_version = object::meta_str(config, "resourceVersion")
        .unwrap_or("")
        .to_string();
    let hooks = config["webhooks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    hooks
        .iter()
        .map(|h| {
            // Neither url nor service (validation refuses it): a nameless Service,
            // whose calls fail and leave the webhook's failurePolicy to decide.
            let cc = &h["clientConfig"];
            let endpoint = Endpoint::of(cc).unwrap_or(Endpoint::Service {
                namespace: String::new(),
                name: String::new(),
                path: String::new(),
                port: 443,
            });
            let rules = h["rules"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|r| Rule {
                    operations: strings(&r["operations"]),
                    api_groups: strings(&r["apiGroups"]),
                    api_versions: strings(&r["apiVersions"]),
                    resources: strings(&r["resources"]),
                    scope: r["scope"].as_str().unwrap_or("*").to_string(),
                })
                .collect();
            let selector = |key: &str| {
                LabelSelector::from_k8s(&h[key]).unwrap_or_else(|_| LabelSelector::everything())
            };
            Hook {
                configuration: configuration.clone(),
                configuration_version: configuration_version.clone(),
                name: h["name"].as_str().unwrap_or("").to_string(),
                mutating,
                endpoint,
                ca_bundle: client_config::ca_bundle(cc),
                rules,
                fail_open: h["failurePolicy"] == "Ignore",
                exact_match: h["matchPolicy"] == "Exact",
                namespace_selector: selector("namespaceSelector"),
                object_selector: selector("objectSelector"),
                dry_run_safe: matches!(h["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")),
                timeout: Duration::from_secs(
                    h["timeoutSeconds"]
                        .as_u64()
                        .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
                ),
                reinvoke: h["reinvocationPolicy"] == "IfNeeded",
            }
        })
        .collect()
}

/// The resource a request is for, as the rules see it.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespaced: bool,
    pub operation: Operation,
    /// Other versions the same resource is served at (matchPolicy Equivalent).
    pub other_versions: &'a [&'a str],
}

impl Target<'_> {
    /// Whether the webhook configurations themselves are written (never sent to webhooks).
    pub fn is_exempt(&self) -> bool {
        EXEMPT_RESOURCES.contains(&(self.group, self.resource))
    }
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Upstream's resource match: `*/*`, `*` (main resources), `res`, `res/*`, `*/sub`,
/// `res/sub`.
fn resource_listed(list: &[String], resource: &str, subresource: &str) -> bool {
    list.iter().any(|entry| match entry.split_once('/') {
        None => subresource.is_empty() && (entry == "*" || entry == resource),
        Some((res, sub)) => (res == "*" || res == resource) && (sub == "*" || sub == subresource),
    })
}

impl Rule {
    pub(super) fn matches_version(&self, t: &Target, version: &str) -> bool {
        listed(&self.operations, t.operation.as_str())
            && listed(&self.api_groups, t.group)
            && listed(&self.api_versions, version)
            && resource_listed(&self.resources, t.resource, t.subresource)
            && match self.scope.as_str() {
                "Cluster" => !t.namespaced,
                "Namespaced" => t.namespaced,
                _ => true,
            }
    }
}

impl Hook {
    /// Whether a rule takes the request; with matchPolicy Equivalent also when it names
    /// another version the same resource is served at.
    pub fn matches_rules(&self, t: &Target) -> bool {
        self.rules.iter().any(|r| {
            r.matches_version(t, t.version)
                || (!self.exact_match && t.other_versions.iter().any(|v| r.matches_version(t, v)))
        })
    }

    /// Whether the selectors take the request: `namespace_labels` are the labels of the
    /// object's namespace (of the Namespace itself for namespaces; `None` for other
    /// cluster-scoped objects, which every namespaceSelector takes); the object
    /// selector takes the request when it matches the new or the old object.
    pub fn matches_selectors(
        &self,
        namespace_labels: Option<Option<&Map<String, Value>>>,
        object: Option<&Value>,
        old_object: Option<&Value>,
    ) -> bool {
        if let Some(labels) = namespace_labels {
            if !self.namespace_selector.matches(labels) {
                return false;
            }
        }
        if self.object_selector == LabelSelector::everything() {
            return true;
        }
        [object, old_object]
            .into_iter()
            .flatten()
            .any(|o| self.object_selector.matches(object::labels(o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(rules: Value, extra: Value) -> Hook {
        let mut h = json!({
            "name": "h.example.com", "clientConfig": {"url": "https://127.0.0.1/x"},
            "rules": rules, "sideEffects": "None", "admissionReviewVersions": ["v1"]
        });
        for (k, v) in extra.as_object().expect("object") {
            h[k] = v.clone();
        }
        let config = json!({"metadata": {"name": "cfg", "resourceVersion": "7"}, "webhooks": [h]});
        parse_configuration(&config, false).remove(0)
    }

    fn pods(operation: Operation, subresource: &'static str) -> Target<'static> {
        Target {
            group: "",
            version: "v1",
            resource: "pods",
            subresource,
            namespaced: true,
            operation,
            other_versions: &[],
        }
    }

    #[test]
    fn rules_match_operation_group_version_and_resource() {
        let h = hook(
            json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]),
            json!({}),
        );
        assert!(h.matches_rules(&pods(Operation::Create, "")));
        assert!(!h.matches_rules(&pods(Operation::Delete, "")));
        assert!(!h.matches_rules(&pods(Operation::Update, "status")));
        let mut deployments = pods(Operation::Create, "");
        deployments.group = "apps";
        deployments.resource = "deployments";
        assert!(!h.matches_rules(&deployments));
    }

    #[test]
    fn resource_wildcards_and_subresources_match_as_upstream() {
        let rule = |resources: Value| {
            hook(
                json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": resources}]),
                json!({}),
            )
        };
        assert!(rule(json!(["pods/status"])).matches_rules(&pods(Operation::Update, "status")));
        assert!(!rule(json!(["pods/status"])).matches_rules(&pods(Operation::Update, "")));
        assert!(rule(json!(["*"])).matches_rules(&pods(Operation::Update, "")));
        assert!(!rule(json!(["*"])).matches_rules(&pods(Operation::Update, "status")));
        assert!(rule(json!(["*/*"])).matches_rules(&pods(Operation::Update, "status")));
        assert!(rule(json!(["*/scale"])).matches_rules(&pods(Operation::Update, "scale")));
        assert!(rule(json!(["pods/*"])).matches_rules(&pods(Operation::Update, "exec")));
        assert!(!rule(json!(["*/scale"])).matches_rules(&pods(Operation::Update, "status")));
    }

    #[test]
    fn scope_and_equivalent_versions_decide_too() {
        let scoped = |scope: &str| {
            hook(
                json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["*"], "scope": scope}]),
                json!({}),
            )
        };
        assert!(scoped("Namespaced").matches_rules(&pods(Operation::Create, "")));
        assert!(!scoped("Cluster").matches_rules(&pods(Operation::Create, "")));
        let mut v2 = pods(Operation::Create, "");
        v2.version = "v2";
        assert!(!scoped("*").matches_rules(&v2));
        v2.other_versions = &["v1"];
        assert!(scoped("*").matches_rules(&v2));
        let exact = hook(
            json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["*"]}]),
            json!({"matchPolicy": "Exact"}),
        );
        assert!(!exact.matches_rules(&v2));
    }

    #[test]
    fn selectors_look_at_namespace_labels_and_new_or_old_object_labels() {
        let h = hook(
            json!([]),
            json!({"namespaceSelector": {"matchLabels": {"team": "a"}},
                   "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}),
        );
        let team_a = json!({"team": "a"});
        let team_a = team_a.as_object();
        let plain = json!({"metadata": {"labels": {"app": "x"}}});
        let skipped = json!({"metadata": {"labels": {"skip": "1"}}});
        assert!(h.matches_selectors(Some(team_a), Some(&plain), None));
        assert!(!h.matches_selectors(Some(None), Some(&plain), None));
        assert!(h.matches_selectors(None, Some(&plain), None));
        assert!(!h.matches_selectors(Some(team_a), Some(&skipped), None));
        assert!(h.matches_selectors(Some(team_a), Some(&skipped), Some(&plain)));
        assert!(!h.matches_selectors(Some(team_a), None, Some(&skipped)));
    }

    #[test]
    fn parsing_fills_defaults_and_reads_the_endpoint() {
        let h = hook(
            json!([]),
            json!({"failurePolicy": "Ignore", "timeoutSeconds": 3,
            "clientConfig": {"service": {"namespace": "ns", "name": "svc", "path": "/v"},
                             "caBundle": "LS0tLS0="}}),
        );
        assert!(h.fail_open && h.dry_run_safe && !h.reinvoke && !h.exact_match);
        assert_eq!(h.timeout, Duration::from_secs(3));
        assert_eq!(
            h.endpoint,
            Endpoint::Service {
                namespace: "ns".into(),
                name: "svc".into(),
                path: "/v".into(),
                port: 443
            }
        );
        assert_eq!(h.ca_bundle.as_deref(), Some("-----"));
        assert_eq!(
            (h.configuration.as_str(), h.configuration_version.as_str()),
            ("cfg", "7")
        );
    }

    #[test]
    fn the_configuration_kinds_are_exempt() {
        let mut t = pods(Operation::Create, "");
        assert!(!t.is_exempt());
        t.group = "admissionregistration.k8s.io";
        t.resource = "mutatingwebhookconfigurations";
        assert!(t.is_exempt());
    }
}

//! ValidatingAdmissionPolicy enforcement (upstream `ValidatingAdmissionPolicy` plugin):
//! the stored policies and bindings kept in memory from a watch (each policy's CEL
//! compiled once per generation), which of them a request reaches (matchConstraints,
//! the binding's matchResources), the params each binding names, and the refusals,
//! warnings and audit annotations their evaluation gives.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{json, Map, Value};

use super::matching::{Rule, Target};
use super::review::Request;
use super::Webhooks;
use crate::api::admission_policy::{
    compile_policy, evaluate, reason_code, CompiledPolicy, Decision, FailurePolicy, Input,
};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::LabelSelector;
use crate::api::status::{resource_name, ApiError};
use crate::apiserver::registry::{self, Registry};
use crate::store::EventType;

/// The stored objects' key prefixes.
const POLICIES_PREFIX: &str = "/admissionregistration.k8s.io/validatingadmissionpolicies/";
const BINDINGS_PREFIX: &str = "/admissionregistration.k8s.io/validatingadmissionpolicybindings/";
/// The audit annotation of a failed validation whose binding says `Audit`.
const VALIDATION_FAILURE_ANNOTATION: &str = "validation.policy.admission.k8s.io/validation_failure";

/// One rule of matchResources (`NamedRuleWithOperations`).
#[derive(Debug, Clone)]
struct NamedRule {
    rule: Rule,
    resource_names: Vec<String>,
}

/// matchConstraints or a binding's matchResources, parsed.
#[derive(Debug, Clone)]
struct MatchResources {
    namespace_selector: LabelSelector,
    object_selector: LabelSelector,
    resource_rules: Vec<NamedRule>,
    exclude_resource_rules: Vec<NamedRule>,
    exact: bool,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

impl MatchResources {
    /// Stored objects passed validation: a selector that did not parse would select
    /// everything.
    fn parse(m: &Value) -> MatchResources {
        let selector = |key: &str| {
            LabelSelector::from_k8s(&m[key]).unwrap_or_else(|_| LabelSelector::everything())
        };
        let rules = |key: &str| -> Vec<NamedRule> {
            m[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| NamedRule {
                    rule: Rule {
                        operations: strings(&r["operations"]),
                        api_groups: strings(&r["apiGroups"]),
                        api_versions: strings(&r["apiVersions"]),
                        resources: strings(&r["resources"]),
                        scope: r["scope"].as_str().unwrap_or("*").to_string(),
                    },
                    resource_names: strings(&r["resourceNames"]),
                })
                .collect()
        };
        MatchResources {
            namespace_selector: selector("namespaceSelector"),
            object_selector: selector("objectSelector"),
            resource_rules: rules("resourceRules"),
            exclude_resource_rules: rules("excludeResourceRules"),
            exact: m["matchPolicy"] == "Exact",
        }
    }

    fn rule_takes(&self, rules: &[NamedRule], t: &Target, name: &str) -> bool {
        rules.iter().any(|r| {
            let named = r.resource_names.is_empty() || r.resource_names.iter().any(|n| n == name);
            named
                && (r.rule.matches_version(t, t.version)
                    || (!self.exact
                        && t.other_versions
                            .iter()
                            .any(|v| r.rule.matches_version(t, v))))
        })
    }

    /// Upstream `matching.Matcher.Matches`: the namespace selector (cluster-scoped
    /// objects other than namespaces pass it), the object selector (the new or the old
    /// object), no exclude rule, and a resource rule (none given: every resource).
    fn matches(&self, t: &Target, subject: &Subject) -> bool {
        if let Some(labels) = &subject.namespace_labels {
            if !self.namespace_selector.matches(labels.as_ref()) {
                return false;
            }
        }
        let objects = [subject.object, subject.old_object];
        if self.object_selector != LabelSelector::everything()
            && !objects
                .into_iter()
                .flatten()
                .any(|o| self.object_selector.matches(object::labels(o)))
        {
            return false;
        }
        if self.rule_takes(&self.exclude_resource_rules, t, subject.name) {
            return false;
        }
        self.resource_rules.is_empty() || self.rule_takes(&self.resource_rules, t, subject.name)
    }
}

/// What the selectors of a request look at.
struct Subject<'a> {
    name: &'a str,
    object: Option<&'a Value>,
    old_object: Option<&'a Value>,
    /// `None`: not looked at (cluster-scoped objects other than namespaces).
    namespace_labels: Option<Option<Map<String, Value>>>,
}

/// A binding's paramRef.
#[derive(Debug, Clone)]
struct ParamRef {
    name: String,
    namespace: String,
    selector: Option<LabelSelector>,
    deny_when_missing: bool,
}

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    param_ref: Option<ParamRef>,
    match_resources: Option<MatchResources>,
    deny: bool,
    warn: bool,
    audit: bool,
}

impl Binding {
    fn parse(b: &Value) -> Binding {
        let spec = &b["spec"];
        let actions = strings(&spec["validationActions"]);
        let has = |a: &str| actions.iter().any(|x| x == a);
        let param_ref = spec["paramRef"].as_object().map(|_| {
            let r = &spec["paramRef"];
            ParamRef {
                name: r["name"].as_str().unwrap_or("").to_string(),
                namespace: r["namespace"].as_str().unwrap_or("").to_string(),
                selector: r.get("selector").filter(|s| s.is_object()).map(|s| {
                    LabelSelector::from_k8s(s).unwrap_or_else(|_| LabelSelector::everything())
                }),
                deny_when_missing: r["parameterNotFoundAction"] != "Allow",
            }
        });
        Binding {
            name: object::name(b).to_string(),
            param_ref,
            match_resources: spec
                .get("matchResources")
                .filter(|m| m.is_object())
                .map(MatchResources::parse),
            deny: has("Deny"),
            warn: has("Warn"),
            audit: has("Audit"),
        }
    }
}

/// A stored policy with its bindings.
struct Hook {
    name: String,
    failure_policy: FailurePolicy,
    /// `apiVersion` and `kind` of its paramKind.
    param_kind: Option<(String, String)>,
    constraints: MatchResources,
    /// The compiled CEL, or why it does not compile (a configuration error).
    compiled: Arc<Result<CompiledPolicy, String>>,
    /// The stored policy's uid and generation the compilation is of.
    compiled_of: (String, i64),
    bindings: Vec<Binding>,
}

/// The policies in name order, each with its bindings in name order.
#[derive(Default)]
struct PolicySet {
    hooks: Vec<Hook>,
}

/// The cluster's ValidatingAdmissionPolicies: a cache of the stored policies and
/// bindings (kept current by [`Policies::run`]; a request never reads them from the
/// store).
#[derive(Default)]
pub struct Policies {
    set: RwLock<Arc<PolicySet>>,
}

/// What a request learnt from the policies that let it through.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

fn generation_of(obj: &Value) -> (String, i64) {
    (
        object::meta_str(obj, "uid").unwrap_or("").to_string(),
        obj["metadata"]["generation"].as_i64().unwrap_or(0),
    )
}

impl Policies {
    fn snapshot(&self) -> Arc<PolicySet> {
        self.set.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether any policy is bound (requests skip all work when none is).
    pub fn is_idle(&self) -> bool {
        self.snapshot().hooks.iter().all(|h| h.bindings.is_empty())
    }

    /// Serves exactly the given stored policies and bindings; a policy whose uid and
    /// generation did not change keeps its compiled form.
    pub fn configure<'a>(
        &self,
        policies: impl Iterator<Item = &'a Value>,
        bindings: impl Iterator<Item = &'a Value>,
    ) {
        let previous = self.snapshot();
        let mut by_policy: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
        let mut sorted: Vec<&Value> = bindings.collect();
        sorted.sort_by_key(|b| object::name(b));
        for b in sorted {
            let policy = b["spec"]["policyName"].as_str().unwrap_or("").to_string();
            by_policy.entry(policy).or_default().push(Binding::parse(b));
        }
        let mut hooks: Vec<Hook> = policies
            .map(|p| {
                let name = object::name(p).to_string();
                let compiled_of = generation_of(p);
                let compiled = previous
                    .hooks
                    .iter()
                    .find(|h| h.name == name && h.compiled_of == compiled_of)
                    .map(|h| h.compiled.clone())
                    .unwrap_or_else(|| Arc::new(compile_policy(p)));
                let spec = &p["spec"];
                Hook {
                    failure_policy: if spec["failurePolicy"] == "Ignore" {
                        FailurePolicy::Ignore
                    } else {
                        FailurePolicy::Fail
                    },
                    param_kind: spec["paramKind"].as_object().map(|k| {
                        (
                            k.get("apiVersion")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .into(),
                            k.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                        )
                    }),
                    constraints: MatchResources::parse(&spec["matchConstraints"]),
                    compiled,
                    compiled_of,
                    bindings: by_policy.remove(&name).unwrap_or_default(),
                    name,
                }
            })
            .collect();
        hooks.sort_by(|a, b| a.name.cmp(&b.name));
        if let Ok(mut set) = self.set.write() {
            *set = Arc::new(PolicySet { hooks });
        }
    }

    fn configure_from(&self, stored: &BTreeMap<String, Arc<Value>>) {
        let (policies, bindings): (Vec<_>, Vec<_>) = stored
            .iter()
            .partition(|(k, _)| k.starts_with(POLICIES_PREFIX));
        self.configure(
            policies.into_iter().map(|(_, v)| &**v),
            bindings.into_iter().map(|(_, v)| &**v),
        );
    }

    fn stored(registry: &Registry) -> (BTreeMap<String, Arc<Value>>, Vec<crate::store::Watcher>) {
        let mut stored = BTreeMap::new();
        let mut watchers = Vec::new();
        for prefix in [POLICIES_PREFIX, BINDINGS_PREFIX] {
            let (items, _, watcher) = registry.snapshot_and_watch(prefix);
            stored.extend(
                items
                    .into_iter()
                    .map(|kv| (kv.key.to_string(), kv.value.get())),
            );
            watchers.push(watcher);
        }
        (stored, watchers)
    }

    /// Reads the stored policies and bindings (at start, before the API answers).
    pub fn load(&self, registry: &Registry) {
        let (stored, _) = Self::stored(registry);
        self.configure_from(&stored);
    }

    /// Keeps the policies current from watches of the stored ones, forever.
    pub async fn run(self: Arc<Self>, registry: Arc<Registry>) {
        loop {
            let (mut stored, watchers) = Self::stored(&registry);
            self.configure_from(&stored);
            let mut events = futures::stream::select_all(watchers.into_iter().map(|w| {
                Box::pin(futures::stream::unfold(w, |mut w| async move {
                    let next = w.next().await;
                    Some((next, w))
                }))
            }));
            while let Some(next) = futures::StreamExt::next(&mut events).await {
                match next {
                    Ok(event) => {
                        match event.kind {
                            EventType::Deleted => stored.remove(&*event.kv.key),
                            _ => stored.insert(event.kv.key.to_string(), event.kv.value.get()),
                        };
                        self.configure_from(&stored);
                        tracing::info!(objects = stored.len(), "admission policies changed");
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "admission policy watch ended; relisting");
                        break;
                    }
                }
            }
        }
    }

    /// Evaluates the policies a client write reaches (`req.object` is `None` for
    /// deletes): the first refusal is the answer; warnings and audit annotations of the
    /// others are returned.
    pub fn validate(
        &self,
        registry: &Registry,
        def: &ResourceDef,
        req: &Request<'_>,
    ) -> Result<Verdict, ApiError> {
        let set = self.snapshot();
        let mut verdict = Verdict::default();
        if set.hooks.iter().all(|h| h.bindings.is_empty()) {
            return Ok(verdict);
        }
        let mut versions = Vec::new();
        let target = Webhooks::target(registry, def, req, &mut versions);
        if target.is_exempt() {
            return Ok(verdict);
        }
        let namespace = namespace_of(registry, def, req);
        let subject = Subject {
            name: req.name,
            object: req.object,
            old_object: req.old_object,
            namespace_labels: if def.group.is_empty() && def.kind == "Namespace" {
                Some(
                    req.object
                        .or(req.old_object)
                        .and_then(object::labels)
                        .cloned(),
                )
            } else if def.namespaced {
                Some(namespace.as_ref().and_then(object::labels).cloned())
            } else {
                None
            },
        };
        let request = request_fields(req);
        let mut denial: Option<(String, Option<String>, String, &'static str)> = None;
        for hook in set.hooks.iter().filter(|h| !h.bindings.is_empty()) {
            if !hook.constraints.matches(&target, &subject) {
                continue;
            }
            let compiled = match &*hook.compiled {
                Ok(c) => c,
                Err(e) => {
                    if hook.failure_policy == FailurePolicy::Fail {
                        denial.get_or_insert((
                            hook.name.clone(),
                            None,
                            format!("failed to configure policy: {e}"),
                            "",
                        ));
                    }
                    continue;
                }
            };
            let mut annotations: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for binding in &hook.bindings {
                if !binding
                    .match_resources
                    .as_ref()
                    .is_none_or(|m| m.matches(&target, &subject))
                {
                    continue;
                }
                let params = match params_for(registry, hook, binding, req.namespace) {
                    Ok(p) => p,
                    Err(e) => {
                        if hook.failure_policy == FailurePolicy::Fail {
                            denial.get_or_insert((
                                hook.name.clone(),
                                Some(binding.name.clone()),
                                format!("failed to configure binding: {e}"),
                                "",
                            ));
                        }
                        continue;
                    }
                };
                for param in &params {
                    let input = Input {
                        object: req.object,
                        old_object: req.old_object,
                        request: &request,
                        params: param.as_ref(),
                        namespace_object: namespace.as_ref(),
                    };
                    let outcome = evaluate(compiled, &input);
                    for (i, decision) in outcome.decisions.iter().enumerate() {
                        let Decision::Deny { message, reason } = decision else {
                            continue;
                        };
                        if binding.deny {
                            denial.get_or_insert((
                                hook.name.clone(),
                                Some(binding.name.clone()),
                                message.clone(),
                                reason,
                            ));
                        }
                        if binding.warn {
                            verdict.warnings.push(format!(
                                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {message}",
                                hook.name, binding.name
                            ));
                        }
                        if binding.audit {
                            let actions: Vec<&str> = [
                                (binding.deny, "Deny"),
                                (binding.warn, "Warn"),
                                (binding.audit, "Audit"),
                            ]
                            .into_iter()
                            .filter_map(|(on, a)| on.then_some(a))
                            .collect();
                            verdict.audit_annotations.insert(
                                VALIDATION_FAILURE_ANNOTATION.into(),
                                json!([{"message": message, "policy": hook.name, "binding": binding.name,
                                        "expressionIndex": i, "validationActions": actions}])
                                .to_string(),
                            );
                        }
                    }
                    for a in outcome.audit_annotations {
                        let values = annotations.entry(a.key).or_default();
                        if !values.contains(&a.value) {
                            values.push(a.value);
                        }
                    }
                }
            }
            for (key, values) in annotations {
                verdict
                    .audit_annotations
                    .insert(format!("{}/{key}", hook.name), values.join(", "));
            }
        }
        match denial {
            None => Ok(verdict),
            Some((policy, binding, message, reason)) => Err(refusal(
                def,
                req,
                &policy,
                binding.as_deref(),
                &message,
                reason,
            )),
        }
    }
}

/// The request's namespace object (for `namespaceObject` and namespace selectors).
fn namespace_of(registry: &Registry, def: &ResourceDef, req: &Request) -> Option<Value> {
    if !def.namespaced {
        return None;
    }
    let namespaces = resources::by_plural("", "v1", "namespaces")?;
    let kv = registry.get(namespaces, None, req.namespace?).ok()?;
    Some((*kv.value).clone())
}

/// The `request` variable: the AdmissionRequest's fields without uid and objects.
fn request_fields(req: &Request) -> Value {
    let mut review = req.review("");
    let mut request = review["request"].take();
    if let Some(r) = request.as_object_mut() {
        for key in ["uid", "object", "oldObject"] {
            r.remove(key);
        }
    }
    request
}

/// Upstream `CollectParams`: the params a binding evaluates its policy with (`None`: no
/// param), or why it cannot say.
fn params_for(
    registry: &Registry,
    hook: &Hook,
    binding: &Binding,
    request_namespace: Option<&str>,
) -> Result<Vec<Option<Value>>, String> {
    let (Some((api_version, kind)), Some(r)) = (&hook.param_kind, &binding.param_ref) else {
        return Ok(vec![None]);
    };
    let Some(def) = registry.resources().by_kind(api_version, kind) else {
        return Err(format!(
            "paramKind kind `{api_version}, Kind={kind}` not known"
        ));
    };
    let namespace = if def.namespaced {
        let ns = if r.namespace.is_empty() {
            request_namespace.unwrap_or("")
        } else {
            &r.namespace
        };
        if ns.is_empty() {
            return Err(
                "cannot use namespaced paramRef in policy binding that matches cluster-scoped resources"
                    .into(),
            );
        }
        Some(ns)
    } else if !r.namespace.is_empty() {
        return Err(
            "paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into(),
        );
    } else {
        None
    };
    let as_served = |kv: crate::store::KeyValue| -> Value {
        let kv = if registry::converts(def) {
            registry::in_version(def, kv)
        } else {
            kv
        };
        (*kv.value).clone()
    };
    let found: Vec<Value> = if !r.name.is_empty() {
        registry
            .get(def, namespace, &r.name)
            .ok()
            .map(as_served)
            .into_iter()
            .collect()
    } else {
        let selector = r.selector.clone().unwrap_or_else(LabelSelector::everything);
        let filter = move |kv: &crate::store::KeyValue| selector.matches(object::labels(&kv.value));
        registry
            .list(def, namespace, None, usize::MAX, &filter)
            .items
            .into_iter()
            .map(as_served)
            .collect()
    };
    if found.is_empty() && r.deny_when_missing {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(found.into_iter().map(Some).collect())
}

/// Upstream's refusal: `admission.NewForbidden` with the decision's reason and code and
/// the message as its one cause (kubectl prints `The … "name" is invalid: : …`).
fn refusal(
    def: &ResourceDef,
    req: &Request,
    policy: &str,
    binding: Option<&str>,
    message: &str,
    reason: &'static str,
) -> ApiError {
    let message = match binding {
        Some(b) => format!(
            "ValidatingAdmissionPolicy '{policy}' with binding '{b}' denied request: {message}"
        ),
        None => format!("ValidatingAdmissionPolicy '{policy}' denied request: {message}"),
    };
    let reason = if reason.is_empty() { "Invalid" } else { reason };
    let resource = resource_name(def);
    let name = if req.name.is_empty() {
        req.object
            .or(req.old_object)
            .map(object::name)
            .unwrap_or("")
    } else {
        req.name
    };
    let full = if name.is_empty() {
        format!("{resource} is forbidden: {message}")
    } else {
        format!("{resource} \"{name}\" is forbidden: {message}")
    };
    let mut e = ApiError::new(reason_code(reason), reason, full);
    e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural,
                            "causes": [{"message": message}]}));
    e
}

#[cfg(test)]
mod tests {
    use super::super::matching::Operation;
    use super::*;

    fn target(operation: Operation, subresource: &'static str) -> Target<'static> {
        Target {
            group: "apps",
            version: "v1",
            resource: "deployments",
            subresource,
            namespaced: true,
            operation,
            other_versions: &[],
        }
    }

    fn subject<'a>(obj: &'a Value, ns_labels: Value) -> Subject<'a> {
        Subject {
            name: object::name(obj),
            object: Some(obj),
            old_object: None,
            namespace_labels: Some(ns_labels.as_object().cloned()),
        }
    }

    fn web() -> Value {
        json!({"metadata": {"name": "web", "labels": {"app": "web"}}})
    }

    #[test]
    fn resource_rules_match_operations_resources_and_names() {
        let m = MatchResources::parse(&json!({"matchPolicy": "Equivalent",
            "namespaceSelector": {}, "objectSelector": {},
            "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                               "resources": ["deployments"], "scope": "*"}]}));
        let obj = web();
        assert!(m.matches(&target(Operation::Create, ""), &subject(&obj, json!({}))));
        assert!(!m.matches(&target(Operation::Delete, ""), &subject(&obj, json!({}))));
        assert!(!m.matches(
            &target(Operation::Update, "scale"),
            &subject(&obj, json!({}))
        ));
        let named = MatchResources::parse(&json!({
            "resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"],
                               "resources": ["deployments", "deployments/scale"], "resourceNames": ["api"]}]}));
        assert!(!named.matches(
            &target(Operation::Update, "scale"),
            &subject(&obj, json!({}))
        ));
        let api = json!({"metadata": {"name": "api"}});
        assert!(named.matches(
            &target(Operation::Update, "scale"),
            &subject(&api, json!({}))
        ));
    }

    #[test]
    fn exclusions_selectors_and_equivalent_versions_decide_too() {
        let m = MatchResources::parse(&json!({"matchPolicy": "Equivalent",
            "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
            "objectSelector": {"matchLabels": {"app": "web"}},
            "resourceRules": [{"apiGroups": ["*"], "apiVersions": ["v1beta1"], "operations": ["*"], "resources": ["*"]}],
            "excludeResourceRules": [{"apiGroups": [""], "apiVersions": ["*"], "operations": ["*"], "resources": ["secrets"]}]}));
        let obj = web();
        let mut t = target(Operation::Create, "");
        let prod = json!({"env": "prod"});
        assert!(
            !m.matches(&t, &subject(&obj, prod.clone())),
            "v1 is not listed"
        );
        t.other_versions = &["v1beta1"];
        assert!(m.matches(&t, &subject(&obj, prod.clone())));
        assert!(!m.matches(&t, &subject(&obj, json!({"env": "dev"}))));
        let other = json!({"metadata": {"name": "x", "labels": {"app": "db"}}});
        assert!(!m.matches(&t, &subject(&other, prod.clone())));
        let mut secrets = t.clone();
        secrets.group = "";
        secrets.resource = "secrets";
        assert!(!m.matches(&secrets, &subject(&obj, prod)));
        let exact = MatchResources::parse(&json!({"matchPolicy": "Exact",
            "resourceRules": [{"apiGroups": ["*"], "apiVersions": ["v1beta1"], "operations": ["*"], "resources": ["*"]}]}));
        assert!(!exact.matches(&t, &subject(&obj, json!({}))));
    }

    #[test]
    fn a_binding_without_match_resources_takes_all_its_policy_takes() {
        let b = Binding::parse(&json!({"metadata": {"name": "b"},
            "spec": {"policyName": "p", "validationActions": ["Warn", "Audit"],
                     "paramRef": {"selector": {"matchLabels": {"tier": "x"}}, "parameterNotFoundAction": "Allow"}}}));
        assert!(b.match_resources.is_none());
        assert!(!b.deny && b.warn && b.audit);
        let r = b.param_ref.expect("paramRef");
        assert!(!r.deny_when_missing && r.name.is_empty() && r.selector.is_some());
        let empty = MatchResources::parse(&json!({"namespaceSelector": {}, "objectSelector": {}}));
        let obj = web();
        assert!(empty.matches(
            &target(Operation::Delete, "status"),
            &subject(&obj, json!({}))
        ));
    }

    #[test]
    fn policies_are_compiled_once_per_generation() {
        let policy = |generation: i64, expression: &str| {
            json!({"metadata": {"name": "p", "uid": "u1", "generation": generation},
                   "spec": {"matchConstraints": {"resourceRules": []},
                            "validations": [{"expression": expression}]}})
        };
        let binding = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": ["Deny"]}});
        let policies = Policies::default();
        assert!(policies.is_idle());
        let first = policy(1, "true");
        policies.configure([&first].into_iter(), [&binding].into_iter());
        assert!(!policies.is_idle());
        let compiled = policies.snapshot().hooks[0].compiled.clone();
        policies.configure([&first].into_iter(), [&binding].into_iter());
        assert!(Arc::ptr_eq(
            &compiled,
            &policies.snapshot().hooks[0].compiled
        ));
        let second = policy(2, "false");
        policies.configure([&second].into_iter(), [&binding].into_iter());
        assert!(!Arc::ptr_eq(
            &compiled,
            &policies.snapshot().hooks[0].compiled
        ));
        policies.configure([&second].into_iter(), std::iter::empty());
        assert!(policies.is_idle(), "an unbound policy is never evaluated");
    }

    #[test]
    fn refusals_read_as_upstreams() {
        let def = resources::by_plural("apps", "v1", "deployments").expect("served");
        let user = crate::api::identity::User {
            name: "admin".into(),
            groups: vec![],
            uid: String::new(),
            extra: Default::default(),
        };
        let obj = web();
        let req = Request {
            group: "apps",
            version: "v1",
            resource: "deployments",
            kind: ("apps", "v1", "Deployment"),
            subresource: "",
            name: "web",
            namespace: Some("default"),
            operation: Operation::Create,
            user: &user,
            object: Some(&obj),
            old_object: None,
            dry_run: false,
            options: Value::Null,
        };
        let e = refusal(
            def,
            &req,
            "demo",
            Some("demo-binding"),
            "failed expression: object.spec.replicas <= 5",
            "Invalid",
        );
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'demo' with binding 'demo-binding' denied request: failed expression: object.spec.replicas <= 5"
        );
        let details = e.details.expect("details");
        assert_eq!(details["causes"][0]["message"], "ValidatingAdmissionPolicy 'demo' with binding 'demo-binding' denied request: failed expression: object.spec.replicas <= 5");
        let e = refusal(def, &req, "demo", None, "failed to configure policy: x", "");
        assert_eq!(e.code, 422);
        assert_eq!(
            refusal(def, &req, "p", Some("b"), "m", "Forbidden").code,
            403
        );
        let fields = request_fields(&req);
        assert_eq!(fields["operation"], "CREATE");
        assert_eq!(fields["userInfo"]["username"], "admin");
        assert!(fields.get("object").is_none() && fields.get("uid").is_none());
    }
}

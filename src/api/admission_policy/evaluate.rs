//! One policy evaluated for one request, binding and param (upstream `validator.go` and
//! the CEL filter): matchConditions, then every validation with its message, then the
//! audit annotations; evaluation errors become refusals or are ignored by the
//! policy's failurePolicy. Variables are evaluated when an expression reads them, once.

use std::collections::HashMap;
use std::sync::Arc;

use ::cel::objects::{Key, Map};
use ::cel::Value as CelValue;
use serde_json::Value;

use super::{CompiledPolicy, FailurePolicy};
use crate::api::crd::cel::{self, CompiledRule, Sizes, PER_CALL_LIMIT, RUNTIME_COST_BUDGET};

/// Upstream `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;
/// Upstream `maxAuditAnnotationValueLength`.
const MAX_AUDIT_VALUE_BYTES: usize = 10 * 1024;

/// What the expressions see of one request (JSON; `None` is CEL `null`).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The object as it would be stored (`None` on deletes).
    pub object: Option<&'a Value>,
    /// The stored object (updates, deletes).
    pub old_object: Option<&'a Value>,
    /// The admission request's fields (`kind`, `resource`, `operation`, `userInfo`, …).
    pub request: &'a Value,
    /// The param object (`None`: the policy has no paramKind or the binding no paramRef).
    pub params: Option<&'a Value>,
    /// The namespace of a namespaced object (`None` for cluster-scoped ones).
    pub namespace_object: Option<&'a Value>,
}

/// The verdict of one validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Admit,
    /// The validation failed (or could not be evaluated under failurePolicy Fail).
    Deny {
        message: String,
        /// Empty for evaluation errors (upstream answers them as `Invalid`).
        reason: &'static str,
    },
}

/// An audit annotation: published with its value, or an evaluation error that refuses.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditAnnotation {
    pub key: String,
    pub value: String,
}

/// What one evaluation gave.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// One per validation in order (empty when the matchConditions skip the policy);
    /// errors of matchConditions or audit annotations add a `Deny` of their own.
    pub decisions: Vec<Decision>,
    pub audit_annotations: Vec<AuditAnnotation>,
}

fn to_cel(v: Option<&Value>) -> CelValue {
    v.map_or(CelValue::Null, |v| cel::to_cel(v, None, false))
}

/// The namespace as upstream's `CreateNamespaceObject` shows it: its metadata (name,
/// generateName, namespace, labels, annotations, uid, creationTimestamp,
/// deletionTimestamp), spec and status.
fn namespace_view(ns: &Value) -> Value {
    let mut meta = serde_json::Map::new();
    for key in [
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
    ] {
        if let Some(v) = ns["metadata"].get(key) {
            meta.insert(key.into(), v.clone());
        }
    }
    let mut view = serde_json::json!({"metadata": meta});
    for key in ["spec", "status"] {
        if let Some(v) = ns.get(key) {
            view[key] = v.clone();
        }
    }
    view
}

/// One evaluation's state: the bound variables, the lazily evaluated `variables`, the
/// cost spent.
struct Evaluation<'p> {
    policy: &'p CompiledPolicy,
    bound: Vec<(&'static str, CelValue)>,
    sizes: Sizes,
    variables: Vec<Option<Result<CelValue, String>>>,
    spent: u64,
}

impl<'p> Evaluation<'p> {
    fn new(policy: &'p CompiledPolicy, input: &Input) -> Evaluation<'p> {
        let ns = input.namespace_object.map(namespace_view);
        let bound = vec![
            ("object", to_cel(input.object)),
            ("oldObject", to_cel(input.old_object)),
            ("request", to_cel(Some(input.request))),
            ("namespaceObject", to_cel(ns.as_ref())),
            ("params", to_cel(input.params)),
        ];
        let sizes = [input.object, input.old_object, input.params]
            .into_iter()
            .flatten()
            .map(Sizes::of)
            .fold(Sizes::of(input.request), Sizes::max);
        Evaluation {
            policy,
            bound,
            sizes,
            variables: vec![None; policy.variables.len()],
            spent: 0,
        }
    }

    /// Evaluates variable `i` (once) and what it reads.
    fn variable(&mut self, i: usize) -> Result<CelValue, String> {
        if let Some(done) = &self.variables[i] {
            return done.clone();
        }
        let (name, program) = &self.policy.variables[i];
        let result = self
            .run(program)
            .map_err(|e| format!("composited variable \"{name}\" fails to evaluate: {e}"));
        self.variables[i] = Some(result.clone());
        result
    }

    /// Runs one expression with the variables bound and the `variables` it reads.
    fn run(&mut self, program: &CompiledRule) -> Result<CelValue, String> {
        let cost = program.cost_bound(self.sizes);
        self.spent = self.spent.saturating_add(cost);
        if cost > PER_CALL_LIMIT || self.spent > RUNTIME_COST_BUDGET {
            return Err("operation cancelled: actual cost limit exceeded".into());
        }
        let mut vars: HashMap<Key, CelValue> = HashMap::new();
        for used in &program.variables_used {
            let Some(i) = self.policy.variables.iter().position(|(n, _)| n == used) else {
                continue;
            };
            vars.insert(Key::String(Arc::new(used.clone())), self.variable(i)?);
        }
        let mut bound = self.bound.clone();
        bound.push((
            "variables",
            CelValue::Map(Map {
                map: Arc::new(vars),
            }),
        ));
        cel::evaluate_with(program, bound)
    }

    /// Runs an expression that must give a boolean.
    fn condition(&mut self, source: &str, program: &CompiledRule) -> Result<bool, String> {
        match self.run(program) {
            Ok(CelValue::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "expression '{source}' resulted in non-boolean value: {other:?}"
            )),
            Err(e) => Err(format!("expression '{source}' resulted in error: {e}")),
        }
    }
}

/// The decision an evaluation error leads to under the policy's failurePolicy.
fn on_error(policy: &CompiledPolicy, message: String) -> Decision {
    match policy.failure_policy {
        FailurePolicy::Ignore => Decision::Admit,
        FailurePolicy::Fail => Decision::Deny {
            message,
            reason: "",
        },
    }
}

/// The refusal message of a failed validation: its messageExpression's string when it
/// gives a usable one, else its message, else the expression (as upstream).
fn failure_message(eval: &mut Evaluation, i: usize) -> String {
    let v = &eval.policy.validations[i];
    let from_expression = v
        .message_expression
        .as_ref()
        .and_then(|m| match eval.run(m) {
            Ok(CelValue::String(s)) => {
                let s = s.trim();
                (!s.is_empty() && s.len() <= MAX_MESSAGE_BYTES && !s.contains('\n'))
                    .then(|| s.to_string())
            }
            // One that fails or gives no usable string falls back (upstream only logs it).
            Ok(_) | Err(_) => None,
        });
    from_expression
        .or_else(|| (!v.message.is_empty()).then(|| v.message.clone()))
        .unwrap_or_else(|| format!("failed expression: {}", v.expression))
}

/// Evaluates `policy` for one request and param.
pub fn evaluate(policy: &CompiledPolicy, input: &Input) -> Outcome {
    let mut eval = Evaluation::new(policy, input);
    let mut outcome = Outcome::default();
    // matchConditions: any false skips the policy; else an error is the failurePolicy's.
    let mut condition_error = None;
    for (name, program) in &policy.match_conditions {
        match eval.condition(name, program) {
            Ok(true) => {}
            Ok(false) => return outcome,
            Err(e) => {
                condition_error
                    .get_or_insert(format!("failed to evaluate matchCondition '{name}': {e}"));
            }
        }
    }
    if let Some(e) = condition_error {
        outcome.decisions.push(on_error(policy, e));
        return outcome;
    }
    for (i, v) in policy.validations.iter().enumerate() {
        let decision = match eval.condition(&v.expression, &v.program) {
            Ok(true) => Decision::Admit,
            Ok(false) => Decision::Deny {
                message: failure_message(&mut eval, i),
                reason: v.reason,
            },
            Err(e) => on_error(policy, e),
        };
        outcome.decisions.push(decision);
    }
    for (key, source, program) in &policy.audit_annotations {
        match eval.run(program) {
            Ok(CelValue::String(s)) if !s.trim().is_empty() => {
                let mut value = s.trim().to_string();
                if value.len() > MAX_AUDIT_VALUE_BYTES {
                    let mut end = MAX_AUDIT_VALUE_BYTES;
                    while !value.is_char_boundary(end) {
                        end -= 1;
                    }
                    value.truncate(end);
                }
                outcome.audit_annotations.push(AuditAnnotation {
                    key: key.clone(),
                    value,
                });
            }
            Ok(CelValue::String(_)) | Ok(CelValue::Null) => {}
            Ok(other) => outcome.decisions.push(on_error(
                policy,
                format!(
                    "valueExpression '{source}' resulted in unsupported return type: {other:?}. Return type must be either string or null."
                ),
            )),
            Err(e) => outcome.decisions.push(on_error(
                policy,
                format!("expression '{source}' resulted in error: {e}"),
            )),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::super::compile_policy;
    use super::*;
    use serde_json::json;

    fn policy(spec: Value) -> CompiledPolicy {
        compile_policy(&json!({"metadata": {"name": "demo"}, "spec": spec})).expect("compiles")
    }

    fn deployment(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": {"replicas": replicas}})
    }

    fn input<'a>(object: Option<&'a Value>, request: &'a Value) -> Input<'a> {
        Input {
            object,
            old_object: None,
            request,
            params: None,
            namespace_object: None,
        }
    }

    #[test]
    fn the_upstream_replicas_example_denies_and_admits() {
        let p = policy(json!({"validations": [{"expression": "object.spec.replicas <= 5"}]}));
        let request = json!({"operation": "CREATE"});
        let (small, big) = (deployment(3), deployment(7));
        assert_eq!(
            evaluate(&p, &input(Some(&small), &request)).decisions,
            [Decision::Admit]
        );
        assert_eq!(
            evaluate(&p, &input(Some(&big), &request)).decisions,
            [Decision::Deny {
                message: "failed expression: object.spec.replicas <= 5".into(),
                reason: "Invalid"
            }]
        );
    }

    #[test]
    fn messages_come_from_message_expression_then_message_then_expression() {
        let p = policy(json!({"validations": [
            {"expression": "object.spec.replicas <= 5", "message": "too many",
             "messageExpression": "'replicas ' + string(object.spec.replicas) + ' > 5'", "reason": "Forbidden"},
            {"expression": "false", "message": "static", "messageExpression": "1"},
            {"expression": "false", "messageExpression": "'two\\nlines'"}]}));
        let request = json!({});
        let big = deployment(7);
        let d = evaluate(&p, &input(Some(&big), &request)).decisions;
        assert_eq!(
            d[0],
            Decision::Deny {
                message: "replicas 7 > 5".into(),
                reason: "Forbidden"
            }
        );
        assert!(matches!(&d[1], Decision::Deny { message, .. } if message == "static"));
        assert!(
            matches!(&d[2], Decision::Deny { message, .. } if message == "failed expression: false")
        );
    }

    #[test]
    fn params_namespace_request_and_old_object_are_bound() {
        let p = policy(
            json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [
                {"expression": "object.spec.replicas <= int(params.data.maxReplicas)"},
                {"expression": "namespaceObject.metadata.labels.env == 'prod'"},
                {"expression": "request.operation == 'UPDATE' && oldObject.spec.replicas == 1"},
                {"expression": "params.metadata.name == 'limits'"}]}),
        );
        let request = json!({"operation": "UPDATE", "namespace": "default"});
        let (new, old) = (deployment(4), deployment(1));
        let params = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "limits"},
                            "data": {"maxReplicas": "5"}});
        let ns = json!({"metadata": {"name": "default", "labels": {"env": "prod"}, "managedFields": []},
                        "spec": {"finalizers": ["kubernetes"]}});
        let i = Input {
            object: Some(&new),
            old_object: Some(&old),
            request: &request,
            params: Some(&params),
            namespace_object: Some(&ns),
        };
        assert_eq!(evaluate(&p, &i).decisions, vec![Decision::Admit; 4]);
    }

    #[test]
    fn errors_follow_the_failure_policy() {
        let spec = |fp: &str| json!({"failurePolicy": fp, "validations": [{"expression": "object.spec.missing > 1"}]});
        let request = json!({});
        let obj = deployment(1);
        let fail = evaluate(&policy(spec("Fail")), &input(Some(&obj), &request));
        match &fail.decisions[0] {
            Decision::Deny { message, reason } => {
                assert_eq!(*reason, "");
                assert!(
                    message.starts_with("expression 'object.spec.missing > 1' resulted in error: "),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        let ignore = evaluate(&policy(spec("Ignore")), &input(Some(&obj), &request));
        assert_eq!(ignore.decisions, [Decision::Admit]);
    }

    #[test]
    fn match_conditions_skip_or_fail_the_policy() {
        let p = policy(json!({"matchConditions": [
                {"name": "not-system", "expression": "!request.userInfo.username.startsWith('system:')"},
                {"name": "labelled", "expression": "has(object.metadata.labels) && 'app' in object.metadata.labels"}],
            "validations": [{"expression": "false"}]}));
        let admin = json!({"userInfo": {"username": "admin"}});
        let system = json!({"userInfo": {"username": "system:kube-scheduler"}});
        let obj = deployment(1);
        assert_eq!(evaluate(&p, &input(Some(&obj), &admin)).decisions.len(), 1);
        assert!(evaluate(&p, &input(Some(&obj), &system))
            .decisions
            .is_empty());
        let broken = policy(
            json!({"matchConditions": [{"name": "x", "expression": "object.nope"}],
            "validations": [{"expression": "true"}]}),
        );
        let d = evaluate(&broken, &input(Some(&obj), &admin)).decisions;
        assert!(
            matches!(&d[..], [Decision::Deny { message, .. }] if message.starts_with("failed to evaluate matchCondition 'x'")),
            "{d:?}"
        );
    }

    #[test]
    fn variables_are_evaluated_once_when_read() {
        let p = policy(json!({"variables": [
                {"name": "replicas", "expression": "object.spec.replicas"},
                {"name": "unused", "expression": "object.spec.missing"},
                {"name": "big", "expression": "variables.replicas > 5"}],
            "validations": [{"expression": "!variables.big", "messageExpression": "'got ' + string(variables.replicas)"}]}));
        let request = json!({});
        let (small, big) = (deployment(2), deployment(9));
        assert_eq!(
            evaluate(&p, &input(Some(&small), &request)).decisions,
            [Decision::Admit]
        );
        assert_eq!(
            evaluate(&p, &input(Some(&big), &request)).decisions,
            [Decision::Deny {
                message: "got 9".into(),
                reason: "Invalid"
            }]
        );
    }

    #[test]
    fn deletes_see_a_null_object_and_audit_annotations_are_published() {
        let p = policy(
            json!({"validations": [{"expression": "object == null && oldObject.metadata.name == 'web'"}],
            "auditAnnotations": [{"key": "replicas", "valueExpression": "string(oldObject.spec.replicas)"},
                                 {"key": "skipped", "valueExpression": "null"}]}),
        );
        let request = json!({"operation": "DELETE"});
        let old = deployment(3);
        let i = Input {
            object: None,
            old_object: Some(&old),
            request: &request,
            params: None,
            namespace_object: None,
        };
        let outcome = evaluate(&p, &i);
        assert_eq!(outcome.decisions, [Decision::Admit]);
        assert_eq!(
            outcome.audit_annotations,
            [AuditAnnotation {
                key: "replicas".into(),
                value: "3".into()
            }]
        );
    }

    #[test]
    fn gateway_api_safe_upgrades_policy_refuses_old_and_experimental_crds() {
        let p = policy(json!({"validations": [
            {"expression": "object.spec.group != 'gateway.networking.k8s.io' || oldObject == null || (\n        has(object.metadata.annotations) && object.metadata.annotations.exists(k, k == 'gateway.networking.k8s.io/channel') && \n        object.metadata.annotations['gateway.networking.k8s.io/channel'] == 'standard' ) || (\n        oldObject != null && has(oldObject.metadata.annotations) && oldObject.metadata.annotations.exists(k, k == 'gateway.networking.k8s.io/channel') && \n        oldObject.metadata.annotations['gateway.networking.k8s.io/channel'] == 'experimental' )", "message": "experimental", "reason": "Invalid"},
            {"expression": "object.spec.group != 'gateway.networking.k8s.io' ||\n        (has(object.metadata.annotations) && object.metadata.annotations.exists(k, k == 'gateway.networking.k8s.io/bundle-version') &&\n        (\n          matches(object.metadata.annotations['gateway.networking.k8s.io/bundle-version'], '-(rc)') ||\n          (\n            !matches(object.metadata.annotations['gateway.networking.k8s.io/bundle-version'], 'v1.[0-5].\\\\d+') &&\n            !matches(object.metadata.annotations['gateway.networking.k8s.io/bundle-version'], 'v0')\n          )\n        ))", "message": "old", "reason": "Invalid"}]}));
        let crd = |version: &str, channel: &str| {
            json!({"metadata": {"name": "gateways.gateway.networking.k8s.io",
                "annotations": {"gateway.networking.k8s.io/bundle-version": version,
                                "gateway.networking.k8s.io/channel": channel}},
                   "spec": {"group": "gateway.networking.k8s.io"}})
        };
        let request = json!({});
        let verdicts = |new: &Value, old: Option<&Value>| -> Vec<bool> {
            let i = Input {
                object: Some(new),
                old_object: old,
                request: &request,
                params: None,
                namespace_object: None,
            };
            evaluate(&p, &i)
                .decisions
                .iter()
                .map(|d| *d == Decision::Admit)
                .collect()
        };
        let current = crd("v1.6.1", "standard");
        assert_eq!(verdicts(&current, None), [true, true]);
        assert_eq!(verdicts(&current, Some(&current)), [true, true]);
        assert_eq!(
            verdicts(&crd("v1.4.0", "standard"), Some(&current)),
            [true, false]
        );
        assert_eq!(
            verdicts(&crd("v1.7.0-rc.1", "standard"), None),
            [true, true]
        );
        assert_eq!(
            verdicts(&crd("v1.6.1", "experimental"), Some(&current)),
            [false, true]
        );
        let other = json!({"metadata": {"name": "x"}, "spec": {"group": "example.com"}});
        assert_eq!(verdicts(&other, Some(&other)), [true, true]);
    }
}

//! ValidatingAdmissionPolicy and its binding through the real binary and the real
//! kubectl: the upstream documentation's replicas example refuses and admits, a
//! namespace selector narrows it, Warn prints a kubectl warning, params come from
//! ConfigMaps picked by a selector (and a missing param refuses), a policy whose CEL does
//! not compile is refused with 422, deleting the binding lifts the rule at once, and the
//! Audit action and audit annotations reach the audit log.

mod support;
use support::server::{stdout, Server};

/// The upstream documentation's policy (replicas at most 5).
const POLICY: &str = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: demo-policy.example.com
spec:
  matchConstraints:
    resourceRules:
    - apiGroups:   [apps]
      apiVersions: [v1]
      operations:  [CREATE, UPDATE]
      resources:   [deployments]
  validations:
  - expression: object.spec.replicas <= 5
";

/// The documentation's binding: Deny, for namespaces labelled environment=test.
const BINDING: &str = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-test.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
";

fn deployment(name: &str, namespace: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: nginx, image: nginx}}]
"
    )
}

/// `kubectl apply -f -` of `yaml`: whether it succeeded, and its stderr.
fn apply(s: &Server, yaml: &str) -> (bool, String) {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_documented_replicas_policy_denies_warns_and_lifts_when_unbound() {
    let s = Server::start();
    s.ok(&["create", "namespace", "test"]);
    s.ok(&["label", "namespace", "test", "environment=test"]);
    s.ok(&["create", "namespace", "other"]);
    s.apply_yaml("apply", POLICY);
    s.apply_yaml("apply", BINDING);

    let policy = s.get_json(&["validatingadmissionpolicy", "demo-policy.example.com"]);
    assert_eq!(policy["spec"]["failurePolicy"], "Fail", "{policy}");
    assert_eq!(
        policy["spec"]["matchConstraints"]["matchPolicy"],
        "Equivalent"
    );
    assert_eq!(policy["metadata"]["generation"], 1);
    let table = s.ok(&["get", "validatingadmissionpolicies"]);
    assert!(
        table.contains("VALIDATIONS") && table.contains("PARAMKIND"),
        "{table}"
    );
    assert!(
        table.contains("demo-policy.example.com   1             <unset>"),
        "{table}"
    );
    let table = s.ok(&["get", "validatingadmissionpolicybindings"]);
    assert!(
        table.contains("POLICYNAME") && table.contains("PARAMREF"),
        "{table}"
    );
    let explained = s.ok(&["explain", "validatingadmissionpolicy.spec.validations"]);
    assert!(explained.contains("messageExpression"), "{explained}");

    let (ok, err) = apply(&s, &deployment("nginx", "test", 7));
    assert!(
        !ok,
        "7 replicas in an environment=test namespace were admitted"
    );
    assert!(
        err.contains("The deployments \"nginx\" is invalid: : ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"),
        "{err}"
    );
    assert!(
        s.kubectl(&["get", "deployment", "-n", "test", "nginx"])
            .status
            .code()
            != Some(0)
    );
    let (ok, err) = apply(&s, &deployment("nginx", "test", 3));
    assert!(ok, "{err}");
    // An update is judged too; `scale` is another resource (deployments/scale), which
    // the policy's rules do not list, as upstream.
    let patched = s.kubectl(&[
        "patch",
        "deployment",
        "-n",
        "test",
        "nginx",
        "-p",
        r#"{"spec":{"replicas":9}}"#,
    ]);
    assert!(!patched.status.success());
    s.ok(&["scale", "deployment", "-n", "test", "nginx", "--replicas=9"]);
    s.ok(&["scale", "deployment", "-n", "test", "nginx", "--replicas=3"]);
    // The namespace selector leaves other namespaces alone.
    let (ok, err) = apply(&s, &deployment("big", "other", 7));
    assert!(ok, "{err}");

    // A second binding that warns, for every namespace.
    s.apply_yaml(
        "apply",
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: demo-warn}
spec:
  policyName: demo-policy.example.com
  validationActions: [Warn]
",
    );
    let (ok, err) = apply(&s, &deployment("bigger", "other", 8));
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-warn': failed expression: object.spec.replicas <= 5"),
        "{err}"
    );
    s.ok(&["delete", "validatingadmissionpolicybinding", "demo-warn"]);

    // Deleting the binding lifts the rule for the very next request.
    s.ok(&[
        "delete",
        "validatingadmissionpolicybinding",
        "demo-binding-test.example.com",
    ]);
    let (ok, err) = apply(&s, &deployment("nginx", "test", 7));
    assert!(ok, "the rule outlived its binding: {err}");
    s.ok(&[
        "delete",
        "validatingadmissionpolicy",
        "demo-policy.example.com",
    ]);
}

#[test]
fn params_come_from_selected_config_maps_and_bad_policies_are_refused() {
    let s = Server::start();
    s.ok(&["create", "namespace", "limits"]);
    s.apply_yaml(
        "apply",
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: replica-limit}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: object.spec.replicas <= int(params.data.maxReplicas)
    messageExpression: \"'at most ' + params.data.maxReplicas + ' replicas in ' + namespaceObject.metadata.name\"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: replica-limit}
spec:
  policyName: replica-limit
  validationActions: [Deny]
  paramRef:
    namespace: limits
    selector: {matchLabels: {limits: replicas}}
    parameterNotFoundAction: Deny
",
    );
    let table = s.ok(&["get", "validatingadmissionpolicy", "replica-limit"]);
    assert!(table.contains("v1/ConfigMap"), "{table}");

    // No param yet: the binding says Deny.
    let (ok, err) = apply(&s, &deployment("web", "default", 1));
    assert!(!ok);
    assert!(
        err.contains("ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{err}"
    );

    // Two selected params: the policy is evaluated once per param, the strictest refuses.
    s.apply_yaml(
        "apply",
        "apiVersion: v1
kind: ConfigMap
metadata: {name: loose, namespace: limits, labels: {limits: replicas}}
data: {maxReplicas: \"5\"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: strict, namespace: limits, labels: {limits: replicas}}
data: {maxReplicas: \"3\"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unselected, namespace: limits}
data: {maxReplicas: \"1\"}
",
    );
    let (ok, err) = apply(&s, &deployment("web", "default", 4));
    assert!(!ok);
    assert!(
        err.contains("Error from server (Forbidden)")
            && err.contains("deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit' denied request: at most 3 replicas in default"),
        "{err}"
    );
    let (ok, err) = apply(&s, &deployment("web", "default", 2));
    assert!(ok, "{err}");

    // A policy whose CEL does not compile is refused at create, and not stored.
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  validations:
  - expression: object.spec.replicas <
  - expression: params.max > 1
",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("The ValidatingAdmissionPolicy \"broken\" is invalid")
            && err.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <\": compilation failed: ERROR: <input>:1:")
            && err.contains("spec.validations[1].expression: Invalid value: \"params.max > 1\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'params'"),
        "{err}"
    );
    let listed = stdout(&s.kubectl(&["get", "validatingadmissionpolicies", "-o", "name"]));
    assert!(!listed.contains("broken"), "{listed}");

    s.ok(&[
        "delete",
        "validatingadmissionpolicybinding",
        "replica-limit",
    ]);
    let (ok, err) = apply(&s, &deployment("web", "default", 9));
    assert!(ok, "{err}");
}

#[test]
fn audit_actions_and_audit_annotations_reach_the_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.log");
    let s = Server::start_with(&["--audit-log-path", audit.to_str().expect("path")]);
    s.apply_yaml(
        "apply",
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: small-config}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  validations:
  - expression: \"!has(object.data) || object.data.size() < 2\"
    message: at most one key
  auditAnnotations:
  - key: keys
    valueExpression: \"has(object.data) ? string(object.data.size()) : null\"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: small-config}
spec:
  policyName: small-config
  validationActions: [Audit]
",
    );
    // Audit only records: the create succeeds.
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big, namespace: default}\ndata: {a: \"1\", b: \"2\", c: \"3\"}\n",
    );
    support::wait::wait_until(
        std::time::Duration::from_secs(10),
        "the create's audit event",
        || {
            let text = std::fs::read_to_string(&audit).unwrap_or_default();
            text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| {
                e["verb"] == "create"
                    && e["objectRef"]["resource"] == "configmaps"
                    && e["objectRef"]["name"] == "big"
                    && e["stage"] == "ResponseComplete"
            })
            .map(|e| {
                let a = &e["annotations"];
                assert_eq!(a["small-config/keys"], "3", "{e}");
                let failure: serde_json::Value = serde_json::from_str(
                    a["validation.policy.admission.k8s.io/validation_failure"]
                        .as_str()
                        .expect("validation failure annotation"),
                )
                .expect("JSON");
                assert_eq!(
                    failure,
                    serde_json::json!([{"message": "at most one key", "policy": "small-config",
                        "binding": "small-config", "expressionIndex": 0, "validationActions": ["Audit"]}])
                );
                assert_eq!(a["authorization.k8s.io/decision"], "allow");
            })
        },
    );
}

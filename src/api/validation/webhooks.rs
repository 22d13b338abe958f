//! ValidatingWebhookConfiguration and MutatingWebhookConfiguration rules (upstream
//! `pkg/apis/admissionregistration/validation`, v1 strictness).

use std::collections::HashSet;

use serde_json::Value;

use super::field_error::go_quote;
use super::names::{is_dns1035_label, is_dns1123_subdomain, is_valid_port_num};
use super::workloads::validate_label_selector;
use super::{arr_at, field, str_at, Errs, FieldError};

/// The AdmissionReview versions the API server can send (only `v1` is sent).
pub const ACCEPTED_REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const REINVOCATION_POLICIES: &[&str] = &["IfNeeded", "Never"];
const SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const URL_FORM: &str = "; desired format: https://host[/path]";

/// A Go `[]string` as `%#v` prints it.
fn go_strings(items: &[Value]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|v| go_quote(v.as_str().unwrap_or("")))
        .collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Validates the `webhooks` of a (Validating|Mutating)WebhookConfiguration.
pub(super) fn validate_webhook_configuration(kind: &str, obj: &Value, errs: &mut Errs) {
    let mutating = kind == "MutatingWebhookConfiguration";
    let mut names = HashSet::new();
    for (i, hook) in arr_at(obj, "webhooks").iter().enumerate() {
        let path = format!("webhooks[{i}]");
        let name = str_at(hook, "name");
        if !names.insert(name) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
        validate_webhook(hook, &path, mutating, errs);
    }
}

fn validate_webhook(hook: &Value, path: &str, mutating: bool, errs: &mut Errs) {
    let name = str_at(hook, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        for e in is_dns1123_subdomain(name) {
            errs.push(FieldError::invalid(format!("{path}.name"), name, e));
        }
        if name.split('.').count() < 3 {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                name,
                "should be a domain with at least three segments separated by dots",
            ));
        }
    }
    for (j, rule) in arr_at(hook, "rules").iter().enumerate() {
        validate_rule(rule, &format!("{path}.rules[{j}]"), errs);
    }
    check_one_of(hook, "failurePolicy", path, FAILURE_POLICIES, errs);
    check_one_of(hook, "matchPolicy", path, MATCH_POLICIES, errs);
    if mutating {
        check_one_of(
            hook,
            "reinvocationPolicy",
            path,
            REINVOCATION_POLICIES,
            errs,
        );
    }
    match str_at(hook, "sideEffects") {
        "" => errs.push(FieldError::required(
            format!("{path}.sideEffects"),
            format!("must specify one of {}", SIDE_EFFECTS.join(", ")),
        )),
        s if !SIDE_EFFECTS.contains(&s) => errs.push(FieldError::not_supported(
            format!("{path}.sideEffects"),
            s,
            SIDE_EFFECTS,
        )),
        _ => {}
    }
    if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64) {
        if !(1..=30).contains(&t) {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.timeoutSeconds"),
                t.to_string(),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
    }
    for selector in ["namespaceSelector", "objectSelector"] {
        if let Some(sel) = field(hook, selector) {
            validate_label_selector(sel, &format!("{path}.{selector}"), errs);
        }
    }
    validate_review_versions(
        arr_at(hook, "admissionReviewVersions"),
        &format!("{path}.admissionReviewVersions"),
        errs,
    );
    if !arr_at(hook, "matchConditions").is_empty() {
        errs.push(FieldError::forbidden(
            format!("{path}.matchConditions"),
            "orc does not evaluate matchConditions: narrow the webhook with rules, namespaceSelector and objectSelector",
        ));
    }
    validate_client_config(
        hook.get("clientConfig").unwrap_or(&Value::Null),
        &format!("{path}.clientConfig"),
        errs,
    );
}

fn check_one_of(hook: &Value, key: &str, path: &str, allowed: &[&str], errs: &mut Errs) {
    if let Some(v) = field(hook, key) {
        let s = v.as_str().unwrap_or("");
        if !allowed.contains(&s) {
            errs.push(FieldError::not_supported(
                format!("{path}.{key}"),
                s,
                allowed,
            ));
        }
    }
}

fn validate_review_versions(versions: &[Value], path: &str, errs: &mut Errs) {
    if versions.is_empty() {
        errs.push(FieldError::required(
            path,
            format!(
                "must specify one of {}",
                ACCEPTED_REVIEW_VERSIONS.join(", ")
            ),
        ));
        return;
    }
    let mut seen = HashSet::new();
    let mut accepted = false;
    for (i, v) in versions.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        if !seen.insert(v) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                v,
                "duplicate version",
            ));
            continue;
        }
        for e in is_dns1035_label(v) {
            errs.push(FieldError::invalid(format!("{path}[{i}]"), v, e));
        }
        accepted |= ACCEPTED_REVIEW_VERSIONS.contains(&v);
    }
    if !accepted {
        errs.push(FieldError::invalid_rendered(
            path,
            go_strings(versions),
            format!(
                "must include at least one of {}",
                ACCEPTED_REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
}

/// A list that may hold `*` only on its own (apiGroups, apiVersions, operations).
fn validate_wildcard_list(rule: &Value, key: &str, path: &str, what: &str, errs: &mut Errs) {
    let items = arr_at(rule, key);
    if items.is_empty() {
        errs.push(FieldError::required(format!("{path}.{key}"), ""));
    }
    if items.len() > 1 && items.iter().any(|v| v == "*") {
        errs.push(FieldError::invalid_rendered(
            format!("{path}.{key}"),
            go_strings(items),
            format!("if '*' is present, must not specify other {what}"),
        ));
    }
}

/// Upstream `validateRuleWithOperations` (subresources allowed).
pub(super) fn validate_rule(rule: &Value, path: &str, errs: &mut Errs) {
    validate_wildcard_list(rule, "operations", path, "operations", errs);
    for (i, op) in arr_at(rule, "operations").iter().enumerate() {
        let op = op.as_str().unwrap_or("");
        if !OPERATIONS.contains(&op) {
            errs.push(FieldError::not_supported(
                format!("{path}.operations[{i}]"),
                op,
                OPERATIONS,
            ));
        }
    }
    validate_wildcard_list(rule, "apiGroups", path, "API groups", errs);
    validate_wildcard_list(rule, "apiVersions", path, "API versions", errs);
    for (i, v) in arr_at(rule, "apiVersions").iter().enumerate() {
        if v.as_str().unwrap_or("").is_empty() {
            errs.push(FieldError::required(format!("{path}.apiVersions[{i}]"), ""));
        }
    }
    validate_resources(
        arr_at(rule, "resources"),
        &format!("{path}.resources"),
        errs,
    );
    if let Some(scope) = field(rule, "scope") {
        let s = scope.as_str().unwrap_or("");
        if !SCOPES.contains(&s) {
            errs.push(FieldError::not_supported(
                format!("{path}.scope"),
                s,
                SCOPES,
            ));
        }
    }
}

/// Upstream `validateResources`: `*`, `*/*`, `x/*` and `*/x` may not overlap other entries.
fn validate_resources(resources: &[Value], path: &str, errs: &mut Errs) {
    if resources.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let mut wildcard_subresources: HashSet<&str> = HashSet::new();
    let mut wildcard_resources: HashSet<&str> = HashSet::new();
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, item) in resources.iter().enumerate() {
        let item = item.as_str().unwrap_or("");
        if item.is_empty() {
            errs.push(FieldError::required(format!("{path}[{i}]"), ""));
            continue;
        }
        double |= item == "*/*";
        single |= item == "*";
        let Some((res, sub)) = item.split_once('/') else {
            plain = item != "*";
            continue;
        };
        if wildcard_subresources.contains(res) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                item,
                format!("if '{res}/*' is present, must not specify {item}"),
            ));
        }
        if wildcard_resources.contains(sub) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                item,
                format!("if '*/{sub}' is present, must not specify {item}"),
            ));
        }
        if sub == "*" {
            wildcard_subresources.insert(res);
        }
        if res == "*" {
            wildcard_resources.insert(sub);
        }
    }
    if resources.len() > 1 && double {
        errs.push(FieldError::invalid_rendered(
            path,
            go_strings(resources),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    if single && plain {
        errs.push(FieldError::invalid_rendered(
            path,
            go_strings(resources),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
}

fn validate_client_config(cc: &Value, path: &str, errs: &mut Errs) {
    match (field(cc, "url"), field(cc, "service")) {
        (Some(url), None) => validate_url(url.as_str().unwrap_or(""), &format!("{path}.url"), errs),
        (None, Some(service)) => validate_service(service, &format!("{path}.service"), errs),
        _ => errs.push(FieldError::required(
            path,
            "exactly one of url or service is required",
        )),
    }
    // As upstream, `caBundle` is not validated: published manifests carry placeholders
    // (ECK's `Cg==`) that their operators replace; a bundle that does not parse fails
    // the call, where the webhook's failurePolicy applies.
}

fn validate_url(raw: &str, path: &str, errs: &mut Errs) {
    let parsed = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            errs.push(FieldError::required(
                path,
                format!("url must be a valid URL: {e}{URL_FORM}"),
            ));
            return;
        }
    };
    if parsed.scheme() != "https" {
        errs.push(FieldError::invalid(
            path,
            parsed.scheme(),
            format!("'https' is the only allowed URL scheme{URL_FORM}"),
        ));
    }
    if parsed.host_str().unwrap_or("").is_empty() {
        errs.push(FieldError::invalid(
            path,
            "",
            format!("host must be specified{URL_FORM}"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let user = match parsed.password() {
            Some(_) => format!("{}:xxxxx", parsed.username()),
            None => parsed.username().to_string(),
        };
        errs.push(FieldError::invalid(
            path,
            &user,
            "user information is not permitted in the URL",
        ));
    }
    if let Some(fragment) = parsed.fragment().filter(|f| !f.is_empty()) {
        errs.push(FieldError::invalid(
            path,
            fragment,
            "fragments are not permitted in the URL",
        ));
    }
    if let Some(query) = parsed.query().filter(|q| !q.is_empty()) {
        errs.push(FieldError::invalid(
            path,
            query,
            "query parameters are not permitted in the URL",
        ));
    }
}

fn validate_service(service: &Value, path: &str, errs: &mut Errs) {
    if str_at(service, "name").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "service name is required",
        ));
    }
    if str_at(service, "namespace").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.namespace"),
            "service namespace is required",
        ));
    }
    if let Some(port) = service.get("port").and_then(Value::as_i64) {
        let problems = is_valid_port_num(port);
        if !problems.is_empty() {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.port"),
                port.to_string(),
                format!("port is not valid: {}", problems.join(", ")),
            ));
        }
    }
    let url_path = str_at(service, "path");
    if url_path.is_empty() || url_path == "/" {
        return;
    }
    let at = format!("{path}.path");
    if url_path == "//" {
        errs.push(FieldError::invalid(
            &at,
            url_path,
            "segment[0] may not be empty",
        ));
        return;
    }
    if !url_path.starts_with('/') {
        errs.push(FieldError::invalid(&at, url_path, "must start with a '/'"));
    }
    let rest = url_path.strip_prefix('/').unwrap_or(url_path);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for (i, step) in rest.split('/').enumerate() {
        if step.is_empty() {
            errs.push(FieldError::invalid(
                &at,
                url_path,
                format!("segment[{i}] may not be empty"),
            ));
            continue;
        }
        for e in is_dns1123_subdomain(step) {
            errs.push(FieldError::invalid(
                &at,
                url_path,
                format!("segment[{i}]: {e}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{has, messages};
    use super::super::validate;
    use serde_json::{json, Value};

    fn config(kind: &str, hook: Value) -> Value {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
               "metadata": {"name": "cfg"}, "webhooks": [hook]})
    }

    fn good_hook() -> Value {
        json!({
            "name": "deny.example.com",
            "clientConfig": {"url": "https://127.0.0.1:8443/validate"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods", "pods/status"], "scope": "*"}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "namespaceSelector": {}, "objectSelector": {}
        })
    }

    fn errors_of(kind: &str, change: impl FnOnce(&mut Value)) -> Vec<super::FieldError> {
        let mut hook = good_hook();
        change(&mut hook);
        validate(kind, &config(kind, hook), None)
    }

    #[test]
    fn a_complete_webhook_is_valid_for_both_kinds() {
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            assert_eq!(messages(&errors_of(kind, |_| {})), Vec::<String>::new());
        }
    }

    #[test]
    fn names_are_unique_subdomains_of_three_segments() {
        let kind = "ValidatingWebhookConfiguration";
        let errs = errors_of(kind, |h| h["name"] = json!("deny.example"));
        has(&errs, "webhooks[0].name: Invalid value: \"deny.example\": should be a domain with at least three segments separated by dots");
        let mut cfg = config(kind, good_hook());
        cfg["webhooks"] = json!([good_hook(), good_hook()]);
        has(
            &validate(kind, &cfg, None),
            "webhooks[1].name: Duplicate value: \"deny.example.com\"",
        );
    }

    #[test]
    fn client_config_needs_exactly_one_https_url_or_service() {
        let kind = "ValidatingWebhookConfiguration";
        let errs = errors_of(kind, |h| h["clientConfig"] = json!({}));
        has(
            &errs,
            "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
        );
        let errs = errors_of(kind, |h| {
            h["clientConfig"]["url"] = json!("http://u:p@host/x?a=b#f")
        });
        has(&errs, "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]");
        has(&errs, "webhooks[0].clientConfig.url: Invalid value: \"u:xxxxx\": user information is not permitted in the URL");
        has(&errs, "webhooks[0].clientConfig.url: Invalid value: \"a=b\": query parameters are not permitted in the URL");
        has(&errs, "webhooks[0].clientConfig.url: Invalid value: \"f\": fragments are not permitted in the URL");
        let errs = errors_of(
            kind,
            |h| {
                h["clientConfig"] = json!({"service": {"name": "", "namespace": "ns", "port": 70000, "path": "no//x"}})
            },
        );
        has(
            &errs,
            "webhooks[0].clientConfig.service.name: Required value: service name is required",
        );
        has(&errs, "webhooks[0].clientConfig.service.port: Invalid value: 70000: port is not valid: must be between 1 and 65535, inclusive");
        has(
            &errs,
            "webhooks[0].clientConfig.service.path: Invalid value: \"no//x\": must start with a '/'",
        );
        has(
            &errs,
            "webhooks[0].clientConfig.service.path: Invalid value: \"no//x\": segment[1] may not be empty",
        );
        // A placeholder bundle (ECK's "\n") is stored as upstream stores it.
        let errs = errors_of(kind, |h| h["clientConfig"]["caBundle"] = json!("Cg=="));
        assert_eq!(messages(&errs), Vec::<String>::new());
    }

    #[test]
    fn rules_check_operations_wildcards_resources_and_scope() {
        let kind = "MutatingWebhookConfiguration";
        let errs = errors_of(kind, |h| {
            h["rules"] = json!([{"operations": ["*", "PATCH"], "apiGroups": [], "apiVersions": [""],
                                 "resources": ["*", "pods", "*/*"], "scope": "Everywhere"}])
        });
        has(&errs, "webhooks[0].rules[0].operations: Invalid value: []string{\"*\", \"PATCH\"}: if '*' is present, must not specify other operations");
        has(&errs, "webhooks[0].rules[0].operations[1]: Unsupported value: \"PATCH\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\"");
        has(&errs, "webhooks[0].rules[0].apiGroups: Required value");
        has(&errs, "webhooks[0].rules[0].apiVersions[0]: Required value");
        has(&errs, "webhooks[0].rules[0].resources: Invalid value: []string{\"*\", \"pods\", \"*/*\"}: if '*/*' is present, must not specify other resources");
        has(&errs, "webhooks[0].rules[0].resources: Invalid value: []string{\"*\", \"pods\", \"*/*\"}: if '*' is present, must not specify other resources without subresources");
        has(&errs, "webhooks[0].rules[0].scope: Unsupported value: \"Everywhere\": supported values: \"*\", \"Cluster\", \"Namespaced\"");
        let errs = errors_of(kind, |h| {
            h["rules"][0]["resources"] = json!(["pods/*", "pods/status", "*/scale"])
        });
        has(&errs, "webhooks[0].rules[0].resources[1]: Invalid value: \"pods/status\": if 'pods/*' is present, must not specify pods/status");
    }

    #[test]
    fn policies_side_effects_versions_and_timeouts_are_checked() {
        let kind = "MutatingWebhookConfiguration";
        let errs = errors_of(kind, |h| {
            h["sideEffects"] = json!("");
            h["timeoutSeconds"] = json!(31);
            h["admissionReviewVersions"] = json!(["v2", "v2"]);
            h["failurePolicy"] = json!("Maybe");
            h["reinvocationPolicy"] = json!("Always");
        });
        has(
            &errs,
            "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
        );
        has(
            &errs,
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
        );
        has(
            &errs,
            "webhooks[0].admissionReviewVersions[1]: Invalid value: \"v2\": duplicate version",
        );
        has(&errs, "webhooks[0].admissionReviewVersions: Invalid value: []string{\"v2\", \"v2\"}: must include at least one of v1, v1beta1");
        has(&errs, "webhooks[0].failurePolicy: Unsupported value: \"Maybe\": supported values: \"Fail\", \"Ignore\"");
        has(&errs, "webhooks[0].reinvocationPolicy: Unsupported value: \"Always\": supported values: \"IfNeeded\", \"Never\"");
        let errs = errors_of(kind, |h| h["sideEffects"] = json!("Some"));
        has(&errs, "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"");
    }
}

//! Admission webhooks (issue 14) through the real binary and the real kubectl, against a
//! real HTTPS webhook server run by the test (its own CA and serving certificate): a
//! validating webhook refuses labelled pods (nothing stored), a mutating one labels
//! them, failurePolicy decides for dead, slow and garbage-answering webhooks, selectors
//! pick objects and namespaces, a Service-backed webhook is reached at its Endpoints,
//! dry runs reach webhooks without side effects, and the cost of a webhook per create.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

mod support;
use support::https_webhook::HttpsWebhook;
use support::server::{stdout, Server};
use support::wait::wait_until;

const DEADLINE: Duration = Duration::from_secs(20);
/// The name the webhook's certificate holds besides 127.0.0.1 (Service `wh` in default).
const SERVICE_HOST: &str = "wh.default.svc";

/// The answer to a review: `/validate` refuses objects labelled deny=true, `/mutate`
/// adds the label mutated=yes, `/max-replicas` refuses more than 3 replicas, `/allow`
/// allows, `/deny-all` refuses, `/garbage` answers no review, `/slow` answers after 3 s.
async fn answer(path: &str, review: &Value) -> Vec<u8> {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let labels = &request["object"]["metadata"]["labels"];
    let response = match path {
        "/validate" if labels["deny"] == "true" => json!({
            "uid": uid, "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": "objects labelled deny=true are not allowed"}
        }),
        "/validate" => {
            json!({"uid": uid, "allowed": true, "warnings": ["checked by the test webhook"]})
        }
        "/mutate" => {
            let patch = if labels.is_object() {
                json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
            };
            let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
        }
        "/max-replicas" if request["object"]["spec"]["replicas"].as_i64() > Some(3) => json!({
            "uid": uid, "allowed": false,
            "status": {"code": 422, "reason": "Invalid", "message": format!(
                "{} may not have more than 3 replicas", request["kind"]["kind"].as_str().unwrap_or(""))}
        }),
        "/deny-all" => {
            json!({"uid": uid, "allowed": false, "status": {"message": "nothing passes"}})
        }
        "/garbage" => return b"<html>surprise</html>".to_vec(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json!({"uid": uid, "allowed": true})
        }
        _ => json!({"uid": uid, "allowed": true}),
    };
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    )
    .expect("encode review")
}

/// The test's webhook server, answering with [`answer`].
fn start_webhooks() -> HttpsWebhook {
    HttpsWebhook::start(
        SERVICE_HOST,
        Arc::new(|path: String, review: Value| {
            Box::pin(async move { answer(&path, &review).await })
        }),
    )
}

/// A webhook configuration of `kind` with one webhook per `(name, clientConfig, extra)`,
/// each for CREATE/UPDATE/DELETE of pods and configmaps.
fn configuration(kind: &str, name: &str, hooks: &[(&str, Value, Value)]) -> String {
    let webhooks: Vec<Value> = hooks
        .iter()
        .map(|(hook, client_config, extra)| {
            let mut h = json!({
                "name": hook,
                "clientConfig": client_config,
                "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""],
                           "apiVersions": ["v1"], "resources": ["pods", "configmaps"]}],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            });
            for (k, v) in extra.as_object().into_iter().flatten() {
                h[k] = v.clone();
            }
            h
        })
        .collect();
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
           "metadata": {"name": name}, "webhooks": webhooks})
    .to_string()
}

fn pod(name: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    .to_string()
}

fn config_map(name: &str, namespace: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace, "labels": labels}})
    .to_string()
}

/// `kubectl create -f -` of `manifest`: whether it worked, and stdout + stderr.
fn create(s: &Server, manifest: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["create", "-f", "-"];
    args.extend_from_slice(extra);
    let out = s.kubectl_stdin(&args, manifest);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn validating_and_mutating_webhooks_refuse_and_label_pods() {
    let hooks = start_webhooks();
    let s = Server::start();
    let by_url = |path: &str| json!({"url": hooks.url(path), "caBundle": hooks.ca_bundle()});
    s.apply_yaml(
        "apply",
        &configuration(
            "MutatingWebhookConfiguration",
            "label",
            &[("label.example.com", by_url("/mutate"), json!({}))],
        ),
    );
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "deny",
            &[("deny.example.com", by_url("/validate"), json!({}))],
        ),
    );
    let listed = s.ok(&["get", "validatingwebhookconfigurations"]);
    assert!(
        listed.contains("WEBHOOKS") && listed.contains("deny"),
        "{listed}"
    );

    let refused = wait_until(DEADLINE, "the validating webhook refuses", || {
        let (ok, text) = create(&s, &pod("bad", json!({"deny": "true"})), &[]);
        (!ok).then_some(text)
    });
    assert!(
        refused.contains(
            "admission webhook \"deny.example.com\" denied the request: objects labelled deny=true are not allowed"
        ),
        "{refused}"
    );
    assert!(
        s.fails(&["get", "pod", "bad"]).contains("NotFound"),
        "a refused pod is not stored"
    );

    let (ok, text) = create(&s, &pod("good", json!({"app": "web"})), &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Warning: checked by the test webhook"),
        "webhook warnings reach kubectl: {text}"
    );
    let stored = s.get_json(&["pod", "good"]);
    assert_eq!(stored["metadata"]["labels"]["mutated"], "yes");
    assert_eq!(stored["metadata"]["labels"]["app"], "web");

    // The validating webhook saw the mutated object, with the caller's identity.
    let reviews = hooks.reviews_to("/validate");
    let seen = reviews
        .iter()
        .find(|r| r["request"]["name"] == "good" && r["request"]["operation"] == "CREATE")
        .expect("the validating webhook was asked about the good pod");
    let request = &seen["request"];
    assert_eq!(request["object"]["metadata"]["labels"]["mutated"], "yes");
    assert_eq!(
        request["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(request["namespace"], "default");
    assert_eq!(request["options"]["kind"], "CreateOptions");
    let groups = request["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("system:masters") && groups.contains("system:authenticated"),
        "{groups}"
    );

    // Updates reach the webhooks with the old object; the refusal keeps the old pod.
    let out = s.kubectl(&["label", "pod", "good", "deny=true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied the request"));
    assert!(s.get_json(&["pod", "good"])["metadata"]["labels"]["deny"].is_null());

    // Dry runs reach webhooks whose sideEffects are None, and store nothing.
    let (ok, text) = create(
        &s,
        &pod("dry", json!({"app": "x"})),
        &["--dry-run=server", "-o", "json"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("\"mutated\": \"yes\""), "{text}");
    assert!(s.fails(&["get", "pod", "dry"]).contains("NotFound"));
    assert!(hooks
        .reviews_to("/mutate")
        .iter()
        .any(|r| r["request"]["name"] == "dry" && r["request"]["dryRun"] == true));

    // Deletes are reviewed with the old object.
    s.ok(&["delete", "pod", "good", "--wait=false"]);
    assert!(hooks.reviews_to("/validate").iter().any(|r| {
        r["request"]["operation"] == "DELETE"
            && r["request"]["oldObject"]["metadata"]["name"] == "good"
            && r["request"]["options"]["kind"] == "DeleteOptions"
    }));

    // Bad configurations are refused with field paths.
    let bad = configuration(
        "ValidatingWebhookConfiguration",
        "bad",
        &[(
            "two.parts",
            json!({"url": "http://127.0.0.1/x"}),
            json!({"timeoutSeconds": 31}),
        )],
    );
    let (ok, text) = create(&s, &bad, &[]);
    assert!(!ok);
    for expected in [
        "webhooks[0].name: Invalid value: \"two.parts\": should be a domain with at least three segments separated by dots",
        "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme",
        "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
}

#[test]
fn failure_policy_decides_for_dead_slow_and_garbage_webhooks() {
    let hooks = start_webhooks();
    let s = Server::start();
    let dead = json!({"url": "https://127.0.0.1:1/dead", "caBundle": hooks.ca_bundle()});

    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "dead",
            &[(
                "dead.example.com",
                dead.clone(),
                json!({"failurePolicy": "Ignore", "timeoutSeconds": 2}),
            )],
        ),
    );
    wait_until(DEADLINE, "the ignored webhook to be called", || {
        let name = format!("probe-{}", rand_suffix());
        let started = Instant::now();
        let (ok, text) = create(&s, &config_map(&name, "default", json!({})), &[]);
        assert!(ok, "failurePolicy Ignore lets the write through: {text}");
        assert!(started.elapsed() < Duration::from_secs(10));
        s.log().contains("failurePolicy Ignore")
    });

    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "dead",
            &[(
                "dead.example.com",
                dead,
                json!({"failurePolicy": "Fail", "timeoutSeconds": 2}),
            )],
        ),
    );
    let refused = wait_until(DEADLINE, "the failing webhook refuses", || {
        let (ok, text) = create(&s, &config_map("dead", "default", json!({})), &[]);
        (!ok).then_some(text)
    });
    assert!(
        refused.contains("Internal error occurred: failed calling webhook \"dead.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/dead?timeout=2s\""),
        "{refused}"
    );
    assert!(s.fails(&["get", "configmap", "dead"]).contains("NotFound"));
    s.ok(&["delete", "validatingwebhookconfiguration", "dead"]);

    let garbage = json!({"url": hooks.url("/garbage"), "caBundle": hooks.ca_bundle()});
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "garbage",
            &[("garbage.example.com", garbage, json!({}))],
        ),
    );
    let refused = wait_until(DEADLINE, "the garbage-answering webhook refuses", || {
        let (ok, text) = create(&s, &config_map("garbage", "default", json!({})), &[]);
        (!ok && text.contains("garbage.example.com")).then_some(text)
    });
    assert!(
        refused.contains("failed calling webhook \"garbage.example.com\": received invalid webhook response: the body is not JSON"),
        "{refused}"
    );
    s.ok(&["delete", "validatingwebhookconfiguration", "garbage"]);

    let slow = json!({"url": hooks.url("/slow"), "caBundle": hooks.ca_bundle()});
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "slow",
            &[("slow.example.com", slow, json!({"timeoutSeconds": 1}))],
        ),
    );
    let (refused, took) = wait_until(DEADLINE, "the slow webhook times out", || {
        let started = Instant::now();
        let (ok, text) = create(&s, &config_map("slow", "default", json!({})), &[]);
        (!ok).then(|| (text, started.elapsed()))
    });
    assert!(
        refused.contains("failed calling webhook \"slow.example.com\"")
            && refused.contains("context deadline exceeded"),
        "{refused}"
    );
    assert!(took < Duration::from_millis(2900), "took {took:?}");
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn selectors_pick_the_objects_and_namespaces_a_webhook_sees() {
    let hooks = start_webhooks();
    let s = Server::start();
    s.ok(&["create", "namespace", "watched"]);
    s.ok(&["label", "namespace", "watched", "webhooks=on"]);
    s.ok(&["create", "namespace", "quiet"]);
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "strict",
            &[(
                "strict.example.com",
                json!({"url": hooks.url("/deny-all"), "caBundle": hooks.ca_bundle()}),
                json!({
                    "namespaceSelector": {"matchLabels": {"webhooks": "on"}},
                    "objectSelector": {"matchExpressions": [{"key": "exempt", "operator": "DoesNotExist"}]}
                }),
            )],
        ),
    );
    let refused = wait_until(
        DEADLINE,
        "the webhook refuses in the watched namespace",
        || {
            let (ok, text) = create(&s, &config_map("a", "watched", json!({})), &[]);
            (!ok).then_some(text)
        },
    );
    assert!(
        refused.contains(
            "admission webhook \"strict.example.com\" denied the request: nothing passes"
        ),
        "{refused}"
    );
    let (ok, text) = create(&s, &config_map("b", "quiet", json!({})), &[]);
    assert!(ok, "other namespaces are not selected: {text}");
    let (ok, text) = create(
        &s,
        &config_map("c", "watched", json!({"exempt": "yes"})),
        &[],
    );
    assert!(ok, "exempt objects are not selected: {text}");
    // A webhook refusing every write of everything still leaves the configurations
    // themselves alone (they never reach webhooks), so it can be removed.
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "everything",
            &[(
                "everything.example.com",
                json!({"url": hooks.url("/deny-all"), "caBundle": hooks.ca_bundle()}),
                json!({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}]}),
            )],
        ),
    );
    wait_until(DEADLINE, "the catch-all webhook refuses", || {
        !create(&s, &config_map("d", "quiet", json!({})), &[]).0
    });
    s.ok(&[
        "label",
        "validatingwebhookconfiguration",
        "strict",
        "touched=yes",
    ]);
    s.ok(&["delete", "validatingwebhookconfiguration", "everything"]);
    wait_until(DEADLINE, "writes pass again", || {
        create(&s, &config_map("d", "quiet", json!({})), &[]).0
    });
}

#[test]
fn a_service_backed_webhook_is_reached_at_its_endpoints() {
    let hooks = start_webhooks();
    let s = Server::start();
    s.apply_yaml(
        "create",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wh", "namespace": "default"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": hooks.port}]}})
        .to_string(),
    );
    s.apply_yaml(
        "create",
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "wh", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": hooks.port}]}]})
        .to_string(),
    );
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "svc",
            &[(
                "svc.example.com",
                json!({"service": {"namespace": "default", "name": "wh", "path": "/validate"},
                       "caBundle": hooks.ca_bundle()}),
                json!({}),
            )],
        ),
    );
    let stored = s.get_json(&["validatingwebhookconfiguration", "svc"]);
    let hook = &stored["webhooks"][0];
    assert_eq!(hook["clientConfig"]["service"]["port"], 443);
    assert_eq!(
        (
            &hook["failurePolicy"],
            &hook["timeoutSeconds"],
            &hook["matchPolicy"]
        ),
        (&json!("Fail"), &json!(10), &json!("Equivalent"))
    );
    let refused = wait_until(DEADLINE, "the service-backed webhook refuses", || {
        let (ok, text) = create(&s, &pod("bad", json!({"deny": "true"})), &[]);
        (!ok).then_some(text)
    });
    assert!(
        refused.contains("admission webhook \"svc.example.com\" denied the request"),
        "{refused}"
    );
    let (ok, text) = create(&s, &pod("fine", json!({})), &[]);
    assert!(ok, "{text}");
}

#[test]
fn scale_writes_reach_webhooks_as_scales() {
    let hooks = start_webhooks();
    let s = Server::start();
    s.apply_yaml(
        "create",
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        .to_string(),
    );
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "replicas",
            &[(
                "replicas.example.com",
                json!({"url": hooks.url("/max-replicas"), "caBundle": hooks.ca_bundle()}),
                json!({"rules": [{"operations": ["UPDATE"], "apiGroups": ["apps"],
                                  "apiVersions": ["v1"], "resources": ["*/scale"]}]}),
            )],
        ),
    );
    let refused = wait_until(DEADLINE, "the scale webhook refuses", || {
        let out = s.kubectl(&["scale", "deployment", "web", "--replicas=5"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(
        refused.contains("admission webhook \"replicas.example.com\" denied the request: Scale may not have more than 3 replicas"),
        "{refused}"
    );
    assert_eq!(s.get_json(&["deployment", "web"])["spec"]["replicas"], 1);
    s.ok(&["scale", "deployment", "web", "--replicas=2"]);
    assert_eq!(s.get_json(&["deployment", "web"])["spec"]["replicas"], 2);
    let review = hooks
        .reviews_to("/max-replicas")
        .into_iter()
        .find(|r| r["request"]["object"]["spec"]["replicas"] == 2)
        .expect("the webhook saw the allowed scale");
    let request = &review["request"];
    assert_eq!(request["subResource"], "scale");
    assert_eq!(request["resource"]["resource"], "deployments");
    assert_eq!(
        request["kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(request["oldObject"]["spec"]["replicas"], 1);
    // Writes of the main resource do not match a `*/scale` rule.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        "{\"spec\":{\"replicas\":4}}",
    ]);
}

/// Run with `cargo test --test webhooks -- --nocapture webhook_call_overhead` to see the
/// figures.
#[test]
fn webhook_call_overhead_per_create() {
    const CREATES: usize = 200;
    let hooks = start_webhooks();
    let s = Server::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = s.client(true);
    let url = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let run = |prefix: &str| -> Duration {
        runtime.block_on(async {
            let started = Instant::now();
            for i in 0..CREATES {
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": format!("{prefix}-{i}")}});
                let resp = client.post(&url).json(&body).send().await.expect("create");
                assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
            }
            started.elapsed()
        })
    };
    let without = run("plain");
    s.apply_yaml(
        "apply",
        &configuration(
            "ValidatingWebhookConfiguration",
            "noop",
            &[(
                "noop.example.com",
                json!({"url": hooks.url("/allow"), "caBundle": hooks.ca_bundle()}),
                json!({}),
            )],
        ),
    );
    wait_until(DEADLINE, "the no-op webhook to be called", || {
        let name = format!("probe-{}", rand_suffix());
        create(&s, &config_map(&name, "default", json!({})), &[]).0
            && !hooks.reviews_to("/allow").is_empty()
    });
    let before = hooks.reviews_to("/allow").len();
    let with = run("hooked");
    assert_eq!(hooks.reviews_to("/allow").len() - before, CREATES);
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / CREATES as f64;
    eprintln!(
        "{CREATES} sequential ConfigMap creates: without webhook {:.0}/s ({:.2} ms each), with a no-op validating webhook {:.0}/s ({:.2} ms each): +{:.2} ms per create",
        CREATES as f64 / without.as_secs_f64(),
        per(without),
        CREATES as f64 / with.as_secs_f64(),
        per(with),
        per(with) - per(without)
    );
}

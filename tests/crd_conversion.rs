//! CRD conversion webhooks through the real binary and the real kubectl, against a real
//! HTTPS conversion webhook run by the test on loopback (moving `spec.size` of v1 to
//! `spec.replicas` of v2, the storage version): writes in v1 are stored as v2, reads and
//! watches in either version (answers pruned and defaulted by the target version's
//! schema), by URL and through a Service's Endpoints, and upstream's errors (500,
//! nothing written) for a webhook that is down or answers wrongly.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

mod support;
use support::https_webhook::HttpsWebhook;
use support::server::{stdout, Server};
use support::wait::wait_until;

const DEADLINE: Duration = Duration::from_secs(20);
/// The webhook's Service (`conv` in default), as its certificate names it.
const SERVICE_HOST: &str = "conv.default.svc";
const GROUP: &str = "conv.example.com";

/// A ConversionReview answer: `/convert` converts honestly; `/wrong-uid`, `/none` and
/// `/renamed` answer with another uid, no objects, or objects renamed.
fn convert(path: &str, review: &Value) -> Vec<u8> {
    let request = &review["request"];
    let desired = request["desiredAPIVersion"].as_str().unwrap_or("");
    let mut objects: Vec<Value> = request["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            let spec = o["spec"].take();
            // `extra` is in neither schema: pruned from what the webhook answers.
            o["spec"] = if desired.ends_with("/v2") {
                json!({"replicas": spec["size"], "extra": "junk"})
            } else {
                json!({"size": spec["replicas"], "extra": "junk"})
            };
            o["apiVersion"] = json!(desired);
            o
        })
        .collect();
    let mut uid = request["uid"].clone();
    match path {
        "/wrong-uid" => uid = json!("not-the-request's"),
        "/none" => objects.clear(),
        "/renamed" => {
            for o in &mut objects {
                o["metadata"]["name"] = json!("renamed");
            }
        }
        _ => {}
    }
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "response": {"uid": uid, "result": {"status": "Success"}, "convertedObjects": objects}
    }))
    .expect("encode review")
}

fn crd(client_config: Value) -> String {
    let schema = |field: &str| {
        let mut properties = json!({field: {"type": "integer"}});
        if field == "size" {
            // v1 only: defaulted when a v2 object is read in v1.
            properties["color"] = json!({"type": "string", "default": "blue"});
        }
        json!({"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": properties}}}})
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{GROUP}")},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {"name": "v1", "served": true, "storage": false, "schema": schema("size")},
                {"name": "v2", "served": true, "storage": true, "schema": schema("replicas")}
            ],
            "conversion": {"strategy": "Webhook", "webhook": {
                "clientConfig": client_config, "conversionReviewVersions": ["v1"]}}
        }
    })
    .to_string()
}

fn widget(name: &str, size: i64) -> String {
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Widget",
           "metadata": {"name": name, "namespace": "default"}, "spec": {"size": size}})
    .to_string()
}

/// `kubectl` with stdout + stderr, and whether it worked.
fn run(s: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let out = match stdin {
        Some(text) => s.kubectl_stdin(args, text),
        None => s.kubectl(args),
    };
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn in_version(version: &str) -> String {
    format!("widgets.{version}.{GROUP}")
}

/// The events of a watch of widgets in `version` that ends after 2 s.
fn watch_events(s: &Server, version: &str) -> Vec<Value> {
    let url = format!(
        "{}/apis/{GROUP}/{version}/namespaces/default/widgets?watch=1&timeoutSeconds=2",
        s.url()
    );
    let client = s.client(true);
    let body = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async { client.get(&url).send().await?.text().await })
        .expect("watch");
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect()
}

/// Points the CRD's webhook at `client_config` and waits until a get in v1 says `expect`.
fn switch_webhook(s: &Server, client_config: Value, expect: &str) -> String {
    let patch = json!({"spec": {"conversion": {"webhook": {"clientConfig": client_config}}}});
    s.ok(&[
        "patch",
        "crd",
        &format!("widgets.{GROUP}"),
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    wait_until(DEADLINE, "the CRD's new webhook is used", || {
        let (_, text) = run(s, &["get", &in_version("v1"), "a", "-o", "json"], None);
        text.contains(expect).then_some(text)
    })
}

#[test]
fn a_conversion_webhook_converts_reads_writes_and_watches() {
    let mut hooks = HttpsWebhook::start(
        SERVICE_HOST,
        Arc::new(|path: String, review: Value| Box::pin(async move { convert(&path, &review) })),
    );
    let s = Server::start();
    s.apply_yaml(
        "create",
        &crd(json!({"url": hooks.url("/convert"), "caBundle": hooks.ca_bundle()})),
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        &format!("crd/widgets.{GROUP}"),
        "--timeout=20s",
    ]);

    // A create in v1 is converted to v2 for storage, and answered in v1.
    let (ok, text) = run(
        &s,
        &["create", "-f", "-", "-o", "json"],
        Some(&widget("a", 3)),
    );
    assert!(ok, "{text}");
    let created: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        (&created["apiVersion"], &created["spec"]),
        (
            &json!("conv.example.com/v1"),
            &json!({"size": 3, "color": "blue"})
        )
    );
    let reviews = hooks.reviews_to("/convert");
    assert!(
        reviews.iter().any(
            |r| r["request"]["desiredAPIVersion"] == "conv.example.com/v2"
                && r["request"]["objects"][0]["spec"] == json!({"size": 3, "color": "blue"})
        ),
        "{reviews:?}"
    );
    // Read in both versions: v2 as stored, v1 converted back.
    let v2 = s.get_json(&[&in_version("v2"), "a"]);
    assert_eq!(
        (&v2["apiVersion"], &v2["spec"]),
        (&json!("conv.example.com/v2"), &json!({"replicas": 3}))
    );
    let v1 = s.get_json(&[&in_version("v1"), "a"]);
    assert_eq!(v1["spec"], json!({"size": 3, "color": "blue"}));
    assert_eq!(v1["metadata"]["uid"], v2["metadata"]["uid"]);
    // Lists: the page's objects in one review.
    s.apply_yaml("create", &widget("b", 5));
    let before = hooks.reviews_to("/convert").len();
    let list = s.get_json(&[&in_version("v1")]);
    let sizes: Vec<&Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["spec"]["size"])
        .collect();
    assert_eq!(sizes, [&json!(3), &json!(5)]);
    let after = hooks.reviews_to("/convert");
    assert_eq!(after.len(), before + 1);
    assert_eq!(
        after[before]["request"]["objects"].as_array().map(Vec::len),
        Some(2)
    );
    let list = s.get_json(&[&in_version("v2")]);
    assert_eq!(list["items"][1]["spec"], json!({"replicas": 5}));
    // An update in v1 (kubectl patch reads, patches and writes in v1).
    s.ok(&[
        "patch",
        &in_version("v1"),
        "a",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);
    assert_eq!(
        s.get_json(&[&in_version("v2"), "a"])["spec"],
        json!({"replicas": 4})
    );
    // kubectl apply in v1, client-side and server-side, twice each; diff is empty.
    let e = widget("e", 7);
    let (ok, text) = run(&s, &["apply", "-f", "-"], Some(&e));
    assert!(
        ok && text.contains("widget.conv.example.com/e created"),
        "{text}"
    );
    let (ok, text) = run(&s, &["apply", "-f", "-"], Some(&e));
    assert!(
        ok && text.contains("widget.conv.example.com/e unchanged"),
        "{text}"
    );
    for _ in 0..2 {
        let (ok, text) = run(&s, &["apply", "--server-side", "-f", "-"], Some(&e));
        assert!(
            ok && text.contains("widget.conv.example.com/e serverside-applied"),
            "{text}"
        );
    }
    let (ok, text) = run(&s, &["diff", "-f", "-"], Some(&e));
    assert!(ok && text.is_empty(), "{text}");
    assert_eq!(
        s.get_json(&[&in_version("v2"), "e"])["spec"],
        json!({"replicas": 7})
    );
    s.ok(&["delete", &in_version("v1"), "e"]);
    // A watch in v1 sees v1 objects.
    let events = watch_events(&s, "v1");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["type"] == "ADDED" && e["object"]["apiVersion"] == "conv.example.com/v1"));
    assert_eq!(
        events[0]["object"]["spec"],
        json!({"size": 4, "color": "blue"})
    );

    // Through a Service whose Endpoints point at the webhook on loopback.
    s.apply_yaml(
        "create",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "conv", "namespace": "default"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": hooks.port}]}})
        .to_string(),
    );
    s.apply_yaml(
        "create",
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "conv", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": hooks.port}]}]})
        .to_string(),
    );
    let service = |path: &str| json!({"service": {"namespace": "default", "name": "conv", "path": path}, "caBundle": hooks.ca_bundle(), "url": null});
    let text = switch_webhook(&s, service("/wrong-uid"), "expected response.uid");
    assert!(
        text.contains("Error from server (InternalError): Internal error occurred: conversion webhook for conv.example.com/v2, Kind=Widget failed: expected response.uid="),
        "{text}"
    );
    let text = switch_webhook(&s, service("/none"), "returned 0 objects");
    assert!(
        text.contains("conversion webhook for conv.example.com/v2, Kind=Widget returned 0 objects, expected 1"),
        "{text}"
    );
    let text = switch_webhook(&s, service("/renamed"), "must have the same name");
    assert!(
        text.contains("conversion webhook for conv.example.com/v2, Kind=Widget returned invalid object: must have the same name: a != renamed"),
        "{text}"
    );
    // A bad answer writes nothing.
    let (ok, text) = run(&s, &["create", "-f", "-"], Some(&widget("c", 1)));
    assert!(!ok && text.contains("must have the same name"), "{text}");
    assert!(!run(&s, &["get", &in_version("v2"), "c"], None).0);
    let text = switch_webhook(&s, service("/convert"), "\"size\": 4");
    assert!(text.contains("conv.example.com/v1"), "{text}");

    // The webhook down: reads in the storage version still work; conversions fail
    // with upstream's 500 and a write in v1 stores nothing.
    hooks.stop();
    let (ok, text) = run(&s, &["get", &in_version("v1"), "a"], None);
    assert!(!ok, "{text}");
    assert!(
        text.contains("Internal error occurred: conversion webhook for conv.example.com/v2, Kind=Widget failed: Post \"https://conv.default.svc:443/convert?timeout=30s\""),
        "{text}"
    );
    let (ok, text) = run(&s, &["get", &in_version("v1")], None);
    assert!(!ok && text.contains("conversion webhook for"), "{text}");
    let (ok, text) = run(&s, &["create", "-f", "-"], Some(&widget("d", 1)));
    assert!(!ok, "{text}");
    assert!(
        text.contains("conversion webhook for conv.example.com/v1, Kind=Widget failed: Post"),
        "{text}"
    );
    assert!(!run(&s, &["get", &in_version("v2"), "d"], None).0);
    assert_eq!(
        s.get_json(&[&in_version("v2")])["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // A watch in v1 ends with an ERROR event naming the failure.
    let events = watch_events(&s, "v1");
    let last = events.last().expect("an event");
    assert_eq!(last["type"], "ERROR", "{events:?}");
    assert_eq!(last["object"]["code"], 500);
    // A deletecollection in v1 needs the conversion too: refused, nothing deleted.
    let (ok, text) = run(
        &s,
        &[
            "delete",
            "--raw",
            &format!("/apis/{GROUP}/v1/namespaces/default/widgets"),
        ],
        None,
    );
    assert!(!ok && text.contains("conversion webhook for"), "{text}");
    assert_eq!(
        s.get_json(&[&in_version("v2")])["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Deleting works without the webhook (the object is removed as stored).
    s.ok(&["delete", &in_version("v2"), "a", "b"]);
    s.ok(&["delete", "crd", &format!("widgets.{GROUP}")]);
}

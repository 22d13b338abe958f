//! Raw HTTP against a real `orc server`: what only a real connection shows (TLS client
//! authentication, oversized bodies on the wire, chunked watches), concurrency, durability
//! and restarts. Bad input answered by the handlers is tested in-process
//! (`src/apiserver/handlers/tests.rs`).

mod support;

use reqwest::RequestBuilder;
use serde_json::{json, Value};
use support::server::Server;

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
}

/// Sends `req`; the status code and the JSON body (`Null` when it is not JSON).
async fn send(req: RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("send request");
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (code, body)
}

/// Sends `req` and asserts it gets code `want`; returns the body.
async fn expect_code(req: RequestBuilder, want: u16) -> Value {
    let (code, body) = send(req).await;
    assert_eq!(code, want, "{body}");
    body
}

/// Sends `req` and asserts it succeeds (any 2xx); returns the body.
async fn expect_success(req: RequestBuilder) -> Value {
    let (code, body) = send(req).await;
    assert!((200..300).contains(&code), "{code}: {body}");
    body
}

/// Sends `req` and asserts the answer is the upstream failure `Status` with `want_code`
/// and `want_reason` and a message; returns it.
async fn assert_status(req: RequestBuilder, want_code: u16, want_reason: &str) -> Value {
    let (code, body) = send(req).await;
    assert_eq!(code, want_code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(body["reason"], want_reason, "{body}");
    assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{body}");
    body
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("a name").to_string())
        .collect()
}

fn resource_version(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .parse()
        .expect("a numeric resourceVersion")
}

#[tokio::test]
async fn unauthenticated_requests_get_401_but_version_is_public() {
    let s = Server::start();
    let anon = s.client(false);
    assert_status(
        anon.get(format!("{}/api/v1/pods", s.url())),
        401,
        "Unauthorized",
    )
    .await;
    expect_code(anon.get(format!("{}/version", s.url())), 200).await;
    let ca = anon
        .get(format!("{}/cacerts", s.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn bad_input_on_the_wire_gets_a_status_and_the_server_keeps_serving() {
    let s = Server::start();
    let c = s.client(true);
    let pods = format!("{}/api/v1/namespaces/default/pods", s.url());
    let post = |body: Vec<u8>| {
        c.post(&pods)
            .header("Content-Type", "application/json")
            .body(body)
    };
    assert_status(post(b"{\"apiVersion\": ".to_vec()), 400, "BadRequest").await;
    // An oversized body is read (and dropped) so that the client gets the answer, not a
    // reset connection.
    let mut huge = pod("huge");
    huge["metadata"]["annotations"] = json!({"a": "x".repeat(4 * 1024 * 1024)});
    let huge = serde_json::to_vec(&huge).unwrap();
    assert_status(post(huge), 413, "RequestEntityTooLarge").await;
    // Nothing was stored, and the server still serves.
    assert!(names(&expect_code(c.get(&pods), 200).await).is_empty());
    expect_code(c.post(&pods).json(&pod("fine")), 201).await;
}

#[tokio::test]
async fn list_paginates_with_limit_and_continue() {
    let s = Server::start();
    let c = s.client(true);
    let pods = format!("{}/api/v1/namespaces/default/pods", s.url());
    for i in 0..7 {
        expect_code(c.post(&pods).json(&pod(&format!("p{i}"))), 201).await;
    }
    let mut all = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = expect_code(c.get(format!("{pods}?limit=3&continue={token}")), 200).await;
        all.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    assert_eq!(all, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn graceful_pod_deletion_and_finalizers() {
    let s = Server::start();
    let c = s.client(true);
    let pods = format!("{}/api/v1/namespaces/default/pods", s.url());
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("node-a");
    expect_code(c.post(&pods).json(&bound), 201).await;
    expect_success(c.delete(format!("{pods}/bound"))).await;
    let got = expect_code(c.get(format!("{pods}/bound")), 200).await;
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got}");
    assert_eq!(got["metadata"]["deletionGracePeriodSeconds"], 30);
    // A zero grace period removes it now (what the kubelet does once containers stopped).
    let now = json!({"gracePeriodSeconds": 0});
    expect_success(c.delete(format!("{pods}/bound")).json(&now)).await;
    expect_code(c.get(format!("{pods}/bound")), 404).await;

    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let mut held = config_map("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    expect_code(c.post(&cms).json(&held), 201).await;
    expect_success(c.delete(format!("{cms}/held"))).await;
    let held = expect_code(c.get(format!("{cms}/held")), 200).await;
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let release = c
        .patch(format!("{cms}/held"))
        .header("Content-Type", "application/merge-patch+json")
        .body(r#"{"metadata":{"finalizers":null}}"#);
    expect_success(release).await;
    expect_code(c.get(format!("{cms}/held")), 404).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_restart_keeps_credentials() {
    let mut s = Server::start();
    let c = s.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let create = c.post(&cms).json(&config_map(&format!("cm{i}")));
        tasks.push(tokio::spawn(expect_code(create, 201)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let kubeconfig_before = std::fs::read(s.kubeconfig()).unwrap();
    s.kill9();
    s.spawn();
    // Same CA and admin credentials after the restart.
    let c = s.client(true);
    let list = expect_code(c.get(&cms), 200).await;
    let stored = names(&list);
    for i in 0..50 {
        assert!(
            stored.contains(&format!("cm{i}")),
            "cm{i} lost after kill -9"
        );
    }
    assert_eq!(std::fs::read(s.kubeconfig()).unwrap(), kubeconfig_before);
    // Revisions keep increasing after the restart.
    let created = expect_code(c.post(&cms).json(&config_map("after")), 201).await;
    assert!(resource_version(&created) > resource_version(&list));
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let s = Server::start();
    let c = s.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let mut rvs = Vec::new();
    for i in 0..3 {
        let created = expect_code(c.post(&cms).json(&config_map(&format!("w{i}"))), 201).await;
        rvs.push(resource_version(&created));
    }
    let resp = c
        .get(format!(
            "{cms}?watch=1&resourceVersion={}&timeoutSeconds=1",
            rvs[0]
        ))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["w1", "w2"]);
    assert!(events.iter().all(|e| e["type"] == "ADDED"));
}

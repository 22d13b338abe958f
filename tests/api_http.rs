//! Raw HTTP against a real `orc server`: bad input gets the upstream `Status`, changes
//! nothing, and the server keeps serving; concurrency control, durability and restarts.

mod support;

use serde_json::{json, Value};
use support::server::Server;

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

async fn status_of(resp: reqwest::Response) -> (u16, Value) {
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (code, body)
}

fn assert_status(code: u16, body: &Value, want_code: u16, want_reason: &str) {
    assert_eq!(code, want_code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(body["reason"], want_reason, "{body}");
    assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{body}");
}

async fn pod_names(s: &Server, c: &reqwest::Client) -> Vec<String> {
    let list: Value = c
        .get(format!("{}/api/v1/namespaces/default/pods", s.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn unauthenticated_requests_get_401_but_version_is_public() {
    let s = Server::start();
    let anon = s.client(false);
    let (code, body) = status_of(
        anon.get(format!("{}/api/v1/pods", s.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 401, "Unauthorized");
    let v = anon
        .get(format!("{}/version", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(v.status().as_u16(), 200);
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
async fn bad_input_gets_a_status_and_stores_nothing() {
    let s = Server::start();
    let c = s.client(true);
    let pods = format!("{}/api/v1/namespaces/default/pods", s.url());
    let post = |body: Vec<u8>, ct: &'static str| {
        c.post(&pods).header("Content-Type", ct).body(body).send()
    };
    // Malformed JSON and YAML.
    let (code, body) = status_of(
        post(b"{\"apiVersion\": ".to_vec(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    let (code, body) = status_of(
        post(b"a: [unclosed".to_vec(), "application/yaml")
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    // Wrong kind / apiVersion for the path.
    let mut svc = pod("x");
    svc["kind"] = json!("Service");
    let (code, body) = status_of(
        post(serde_json::to_vec(&svc).unwrap(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    let mut wrong_version = pod("x");
    wrong_version["apiVersion"] = json!("v2");
    let (code, body) = status_of(
        post(
            serde_json::to_vec(&wrong_version).unwrap(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    // Mismatched namespace.
    let mut other_ns = pod("x");
    other_ns["metadata"]["namespace"] = json!("kube-system");
    let (code, body) = status_of(
        post(serde_json::to_vec(&other_ns).unwrap(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("does not match the namespace"));
    // Invalid name and missing required field.
    let (code, body) = status_of(
        post(
            serde_json::to_vec(&pod("Bad_Name")).unwrap(),
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_status(code, &body, 422, "Invalid");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    let mut no_image = pod("x");
    no_image["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let (code, body) = status_of(
        post(serde_json::to_vec(&no_image).unwrap(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 422, "Invalid");
    // Wrong field types.
    let mut wrong_type = pod("x");
    wrong_type["spec"]["containers"] = json!("not-a-list");
    let (code, body) = status_of(
        post(serde_json::to_vec(&wrong_type).unwrap(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    // Oversized body.
    let mut huge = pod("huge");
    huge["metadata"]["annotations"] = json!({"a": "x".repeat(4 * 1024 * 1024)});
    let (code, body) = status_of(
        post(serde_json::to_vec(&huge).unwrap(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 413, "RequestEntityTooLarge");
    // Unknown resource, bad selector, bad continue token.
    let (code, body) = status_of(
        c.get(format!("{}/api/v1/namespaces/default/widgets", s.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 404, "NotFound");
    let (code, body) = status_of(
        c.get(format!("{pods}?labelSelector=a%20in%20(b"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    let (code, body) = status_of(
        c.get(format!("{pods}?fieldSelector=spec.bogus%3Dx"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    let (code, body) = status_of(
        c.get(format!("{pods}?continue=garbage"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_status(code, &body, 400, "BadRequest");
    // Unknown patch type.
    let (code, body) = status_of(
        c.patch(format!("{pods}/nothing"))
            .header("Content-Type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 415, "{body}");
    // Nothing was stored, and the server still serves.
    assert!(pod_names(&s, &c).await.is_empty());
    let ok = c.post(&pods).json(&pod("fine")).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 201);
}

#[tokio::test]
async fn stale_resource_version_conflicts() {
    let s = Server::start();
    let c = s.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let created: Value = c
        .post(&cms)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut first = created.clone();
    first["data"]["k"] = json!("2");
    let r = c.put(format!("{cms}/a")).json(&first).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut stale = created.clone();
    stale["data"]["k"] = json!("3");
    let (code, body) =
        status_of(c.put(format!("{cms}/a")).json(&stale).send().await.unwrap()).await;
    assert_status(code, &body, 409, "Conflict");
    let now: Value = c
        .get(format!("{cms}/a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["data"]["k"], "2");
    // Creating it again is AlreadyExists.
    let (code, body) = status_of(c.post(&cms).json(&created).send().await.unwrap()).await;
    assert_status(code, &body, 409, "AlreadyExists");
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let s = Server::start();
    let c = s.client(true);
    let pods = format!("{}/api/v1/namespaces/default/pods", s.url());
    let r = c
        .post(format!("{pods}?dryRun=All"))
        .json(&pod("dry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["spec"]["restartPolicy"], "Always");
    assert!(pod_names(&s, &c).await.is_empty());
}

#[tokio::test]
async fn list_paginates_with_limit_and_continue() {
    let s = Server::start();
    let c = s.client(true);
    let pods = format!("{}/api/v1/namespaces/default/pods", s.url());
    for i in 0..7 {
        let r = c
            .post(&pods)
            .json(&pod(&format!("p{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let mut names = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page: Value = c
            .get(format!("{pods}?limit=3&continue={token}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for p in page["items"].as_array().unwrap() {
            names.push(p["metadata"]["name"].as_str().unwrap().to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn graceful_pod_deletion_and_finalizers() {
    let s = Server::start();
    let c = s.client(true);
    let pods = format!("{}/api/v1/namespaces/default/pods", s.url());
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("node-a");
    c.post(&pods).json(&bound).send().await.unwrap();
    let r = c.delete(format!("{pods}/bound")).send().await.unwrap();
    assert!(r.status().is_success());
    let got: Value = c
        .get(format!("{pods}/bound"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got}");
    assert_eq!(got["metadata"]["deletionGracePeriodSeconds"], 30);
    // A zero grace period removes it now (what the kubelet does once containers stopped).
    let r = c
        .delete(format!("{pods}/bound"))
        .json(&json!({"gracePeriodSeconds": 0}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        c.get(format!("{pods}/bound"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    c.post(&cms)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}))
        .send()
        .await
        .unwrap();
    c.delete(format!("{cms}/held")).send().await.unwrap();
    let held: Value = c
        .get(format!("{cms}/held"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let r = c
        .patch(format!("{cms}/held"))
        .header("Content-Type", "application/merge-patch+json")
        .body(r#"{"metadata":{"finalizers":null}}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        c.get(format!("{cms}/held"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_restart_keeps_credentials() {
    let mut s = Server::start();
    let c = s.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = c.clone();
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(&cms)
                .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}")}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let kubeconfig_before = std::fs::read(s.kubeconfig()).unwrap();
    s.kill9();
    s.spawn();
    // Same CA and admin credentials after the restart.
    let c = s.client(true);
    let list: Value = c.get(&cms).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    for i in 0..50 {
        assert!(
            names.contains(&format!("cm{i}").as_str()),
            "cm{i} lost after kill -9"
        );
    }
    assert_eq!(std::fs::read(s.kubeconfig()).unwrap(), kubeconfig_before);
    // Revisions keep increasing after the restart.
    let before: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let created: Value = c
        .post(&cms)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > before);
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let s = Server::start();
    let c = s.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let mut rvs = Vec::new();
    for i in 0..3 {
        let v: Value = c
            .post(&cms)
            .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("w{i}")}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rvs.push(
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        );
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

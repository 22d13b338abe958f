//! Watch hardening through the real binary (issue 11, items 3 and 16): watchers that never
//! read cost little and are closed when far behind while a reading watcher gets every
//! event, each user's watches are capped, a node's Secret watch ends with the last pod
//! that uses the Secret, and reads at a future resourceVersion answer 504 as upstream.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of the data of each large ConfigMap.
const LARGE: usize = 1_000_000;

fn rss_mb(s: &Server) -> u64 {
    let pid = s.child.as_ref().expect("server running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024
}

fn admin_tls(s: &Server) -> Arc<rustls::ClientConfig> {
    let creds = orc::tls::kubeconfig_credentials(
        &std::fs::read_to_string(s.kubeconfig()).expect("read kubeconfig"),
    )
    .expect("parse kubeconfig");
    orc::tls::client_config_pinned(&creds.ca_pem, Some((&creds.cert_pem, &creds.key_pem)))
        .expect("client tls config")
}

/// A watch over HTTP/1.1 on a socket with a tiny receive buffer, whose response is not
/// read until the test says so. The server closes the connection when the watch ends.
async fn non_reading_watch(
    s: &Server,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket
        .connect(([127, 0, 0, 1], s.port).into())
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection (bounded by `limit`).
async fn read_to_end(
    mut stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    limit: Duration,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    loop {
        let left = limit
            .checked_sub(started.elapsed())
            .expect("the server did not end the watch in time");
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not end the watch within {limit:?}"),
        }
    }
}

fn count(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

fn large_config_map(name: &str, round: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name},
           "data": {"round": round.to_string(), "blob": "x".repeat(LARGE)}})
}

async fn expect_ok(resp: reqwest::Response) -> Value {
    let code = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(code.is_success(), "{code}: {body}");
    body
}

/// Reads until `want` more MODIFIED events arrived (or the stream ended): how many did.
async fn read_events(resp: &mut reqwest::Response, want: usize) -> usize {
    let mut seen = Vec::new();
    while count(&seen, "\"type\":\"MODIFIED\"") < want {
        match resp.chunk().await.expect("watch stream") {
            Some(chunk) => seen.extend_from_slice(&chunk),
            None => break,
        }
    }
    count(&seen, "\"type\":\"MODIFIED\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_watchers_cost_little_and_are_closed_when_far_behind() {
    const WATCHES: usize = 50;
    const ROUNDS: usize = 8;
    let s = Server::start();
    let client = s.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    for name in ["big-1", "big-2"] {
        expect_ok(
            client
                .post(&cms)
                .json(&large_config_map(name, 0))
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    let before = rss_mb(&s);

    let tls = admin_tls(&s);
    let path = "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=300";
    let mut stuck = Vec::new();
    for _ in 0..WATCHES {
        stuck.push(non_reading_watch(&s, &tls, path).await);
    }
    let mut reader = client
        .get(format!("{cms}?watch=1&timeoutSeconds=60"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(reader.status(), 200);

    let mut received = 0;
    for round in 1..=ROUNDS {
        for name in ["big-1", "big-2"] {
            expect_ok(
                client
                    .put(format!("{cms}/{name}"))
                    .json(&large_config_map(name, round))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
        }
        received += read_events(&mut reader, 2).await;
    }
    assert_eq!(received, ROUNDS * 2, "the reading watcher got every event");

    let after = rss_mb(&s);
    // Before the fix every watcher held its own copy of every 1 MB event: ~20 MB each.
    assert!(
        after.saturating_sub(before) < 100,
        "RSS grew from {before} MB to {after} MB for {WATCHES} non-reading watches"
    );

    // The stuck watchers were ended long before their timeout: reading them now yields
    // what the server had handed over before they fell behind, then the end.
    let stream = stuck.pop().unwrap();
    let sent = read_to_end(stream, Duration::from_secs(60)).await;
    let modified = count(&sent, "\"type\":\"MODIFIED\"");
    assert!(
        modified < ROUNDS * 2,
        "a watcher that never read got all {modified} events instead of being closed"
    );
    assert!(
        s.log().contains("watcher fell too far behind"),
        "{}",
        s.log()
    );
}

#[tokio::test]
async fn watches_beyond_the_per_user_cap_get_429_too_many_requests() {
    let s = Server::start_with(&["--max-watches-per-user", "2"]);
    let client = s.client(true);
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=60",
        s.url()
    );
    let first = client.get(&url).send().await.unwrap();
    let second = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);

    let third = client.get(&url).send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1");
    let status: Value = third.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("--max-watches-per-user"),
        "{status}"
    );
    // Lists are not watches.
    let list = client
        .get(format!("{}/api/v1/namespaces/default/configmaps", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);

    // Closing a watch gives its place back.
    drop(first);
    let started = Instant::now();
    loop {
        let resp = client.get(&url).send().await.unwrap();
        if resp.status() == 200 {
            break;
        }
        assert_eq!(resp.status(), 429);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the closed watch's place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}

/// A client with a node's credential, obtained with the join token as an agent does.
async fn node_client(s: &Server, node: &str) -> reqwest::Client {
    let token = std::fs::read_to_string(s.data_dir().join("server/token")).expect("token");
    let secret = token.trim().rsplit(':').next().unwrap().to_string();
    let creds: Value = expect_ok(
        s.client(false)
            .post(format!("{}/v1-orc/node-credentials", s.url()))
            .bearer_auth(secret)
            .json(&json!({"nodeName": node, "nodePassword": "pw"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let tls = orc::tls::client_config_pinned(
        creds["caCertificate"].as_str().unwrap(),
        Some((
            creds["certificate"].as_str().unwrap(),
            creds["key"].as_str().unwrap(),
        )),
    )
    .expect("node tls config");
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_nodes_secret_watch_ends_when_the_last_pod_using_it_is_gone() {
    let s = Server::start();
    let admin = s.client(true);
    let base = format!("{}/api/v1/namespaces/default", s.url());
    expect_ok(
        admin
            .post(format!("{base}/secrets"))
            .json(
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                          "stringData": {"password": "first"}}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    expect_ok(
        admin
            .post(format!("{base}/pods"))
            .json(
                &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
                          "spec": {"nodeName": "n1",
                                   "containers": [{"name": "c", "image": "busybox"}],
                                   "volumes": [{"name": "s", "secret": {"secretName": "db"}}]}}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;

    let node = node_client(&s, "n1").await;
    let watch_url =
        format!("{base}/secrets?watch=1&fieldSelector=metadata.name%3Ddb&timeoutSeconds=60");
    let mut watch = node.get(&watch_url).send().await.unwrap();
    assert_eq!(watch.status(), 200);
    let mut seen = Vec::new();
    while count(&seen, "\"type\":\"ADDED\"") < 1 {
        seen.extend_from_slice(&watch.chunk().await.unwrap().expect("initial event"));
    }

    let patch = |value: &str| {
        admin
            .patch(format!("{base}/secrets/db"))
            .header("Content-Type", "application/merge-patch+json")
            .body(json!({"stringData": {"password": value}}).to_string())
            .send()
    };
    expect_ok(patch("second").await.unwrap()).await;
    while count(&seen, "\"type\":\"MODIFIED\"") < 1 {
        seen.extend_from_slice(&watch.chunk().await.unwrap().expect("modification"));
    }

    expect_ok(
        admin
            .delete(format!("{base}/pods/app?gracePeriodSeconds=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Not running (no kubelet), so it is deleted at once.
    let pod = admin.get(format!("{base}/pods/app")).send().await.unwrap();
    assert_eq!(pod.status(), 404);
    expect_ok(patch("third").await.unwrap()).await;
    // The watch ends without the new data; a new watch is refused.
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = Vec::new();
        while let Some(chunk) = watch.chunk().await.unwrap() {
            rest.extend_from_slice(&chunk);
        }
        rest
    })
    .await
    .expect("the node's watch did not end");
    let third = base64_of("third");
    assert_eq!(count(&rest, &third), 0, "the node received the secret");
    let again = node.get(&watch_url).send().await.unwrap();
    assert_eq!(again.status(), 403);
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn resource_version(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("resourceVersion")
}

/// Checks upstream's answer to a read at a resourceVersion the store has not reached.
async fn assert_too_large(resp: reqwest::Response, requested: u64) {
    assert_eq!(resp.status(), 504);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Timeout");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Timeout: Too large resource version: {requested}, current: "
        )),
        "{message}"
    );
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Too large resource version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_a_future_resource_version_wait_then_answer_504_too_large() {
    let s = Server::start();
    let client = s.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", s.url());
    let list = expect_ok(client.get(&cms).send().await.unwrap()).await;
    let future = resource_version(&list) + 1000;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
    expect_ok(client.post(&cms).json(&cm).send().await.unwrap()).await;

    let started = Instant::now();
    let (not_older, plain, exact, get, watch) = tokio::join!(
        client
            .get(format!(
                "{cms}?resourceVersion={future}&resourceVersionMatch=NotOlderThan"
            ))
            .send(),
        client.get(format!("{cms}?resourceVersion={future}")).send(),
        client
            .get(format!(
                "{cms}?resourceVersion={future}&resourceVersionMatch=Exact"
            ))
            .send(),
        client
            .get(format!("{cms}/a?resourceVersion={future}"))
            .send(),
        client
            .get(format!(
                "{cms}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion={future}"
            ))
            .send(),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "answered without waiting for the store: {:?}",
        started.elapsed()
    );
    for resp in [not_older, plain, exact, get] {
        assert_too_large(resp.unwrap(), future).await;
    }
    // A watch reports it as an ERROR event, as upstream.
    let watch = watch.unwrap();
    assert_eq!(watch.status(), 200);
    let event: Value = serde_json::from_slice(&watch.bytes().await.unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 504);
    assert_eq!(
        event["object"]["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );

    // A resourceVersion the store reaches while the read waits is served.
    let list = expect_ok(client.get(&cms).send().await.unwrap()).await;
    let next = resource_version(&list) + 1;
    let waiting = tokio::spawn({
        let client = client.clone();
        let url = format!("{cms}?resourceVersion={next}&resourceVersionMatch=NotOlderThan");
        async move { client.get(url).send().await.unwrap() }
    });
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}});
    expect_ok(client.post(&cms).json(&cm).send().await.unwrap()).await;
    let list = expect_ok(waiting.await.unwrap()).await;
    assert!(resource_version(&list) >= next);
    let current = resource_version(&list);
    expect_ok(
        client
            .get(format!(
                "{cms}?resourceVersion={current}&resourceVersionMatch=NotOlderThan"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
}

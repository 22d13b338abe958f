//! Hostile HTTP clients against a real `orc server` over raw TLS: slow and idle
//! connections, the connection cap, a low open-file limit, early answers to large bodies,
//! deeply nested bodies and a JSON patch that used to panic.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Tls = TlsStream<TcpStream>;

/// A TLS connection to `server`, with the admin client certificate or anonymous.
async fn connect(server: &Server, admin: bool) -> Tls {
    let creds = orc::tls::kubeconfig_credentials(
        &std::fs::read_to_string(server.kubeconfig()).expect("read kubeconfig"),
    )
    .expect("parse kubeconfig");
    let identity = admin.then_some((creds.cert_pem.as_str(), creds.key_pem.as_str()));
    let config = orc::tls::client_config_pinned(&creds.ca_pem, identity).expect("tls config");
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake")
}

/// A parsed HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    code: u16,
    head: String,
    body: Value,
}

/// Reads one HTTP/1.1 answer (with a Content-Length) from `stream`.
async fn read_answer(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let code = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    Ok(Answer { code, head, body })
}

/// Sends a request with `body` while reading the answer (so an early answer is read even
/// while the body is still being sent); the answer or the I/O error that ended it.
async fn exchange(
    stream: Tls,
    method: &str,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> std::io::Result<Answer> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&body).await?;
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let answer = tokio::time::timeout(Duration::from_secs(20), read_answer(&mut rd))
        .await
        .expect("no answer within 20s");
    writer.abort();
    answer
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut Tls, within: Duration) -> bool {
    let mut byte = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the server sent data to a client that never finished a request"),
        Err(_) => false,
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// The three kinds of slow client: TLS and nothing, a few bytes (less than HTTP/2's
/// preface), half the headers.
const HALF_REQUESTS: [&[u8]; 3] = [
    b"",
    b"GET / HT",
    b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n",
];

async fn slow_clients(server: &Server, n: usize) -> Vec<Tls> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = connect(server, false).await;
        let half = HALF_REQUESTS[i % HALF_REQUESTS.len()];
        if !half.is_empty() {
            c.write_all(half).await.expect("send half a request");
            c.flush().await.expect("flush");
        }
        conns.push(c);
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_closed_after_the_header_timeout_while_others_are_answered() {
    let server = Server::start_with(&["--request-header-timeout", "3s"]);
    let started = Instant::now();
    let mut slow = slow_clients(&server, 150).await;
    // None is closed before its headers are due (the last one connected a moment ago) ...
    let last = slow.last_mut().expect("slow clients");
    assert!(
        !closed_within(last, Duration::from_secs(1)).await,
        "closed before the header timeout"
    );
    // ... a normal client is answered meanwhile ...
    let client = server.client(true);
    for _ in 0..20 {
        let t = Instant::now();
        let resp = client
            .get(format!("{}/api/v1/namespaces", server.url()))
            .send()
            .await
            .expect("a normal client is answered while slow clients hold connections");
        assert_eq!(resp.status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "slow answer: {:?}",
            t.elapsed()
        );
    }
    // ... and every one is closed soon after.
    for (i, c) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(8)).await,
            "slow client {i} still open {:?} after connecting",
            started.elapsed()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let server = Server::start_with(&[
        "--request-header-timeout",
        "1s",
        "--idle-connection-timeout",
        "4s",
    ]);
    let mut c = connect(&server, false).await;
    c.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut c).await.expect("answer");
    assert_eq!(answer.code, 200);
    // Idle, not late with headers: it outlives the 1s header timeout ...
    assert!(!closed_within(&mut c, Duration::from_secs(2)).await);
    // ... and is still usable ...
    c.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut c).await.expect("second answer").code, 200);
    // ... until it stays idle for the idle timeout.
    let idle = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(8)).await);
    assert!(
        idle.elapsed() >= Duration::from_secs(3),
        "{:?}",
        idle.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_connection_cap_wait_until_slow_ones_are_closed() {
    let server = Server::start_with(&["--max-connections", "20", "--request-header-timeout", "2s"]);
    let _slow = slow_clients(&server, 20).await;
    let client = server.client(true);
    let t = Instant::now();
    let resp = client
        .get(format!("{}/api/v1/namespaces", server.url()))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("answered once slow clients are closed");
    assert_eq!(resp.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "cap not applied: {:?}",
        t.elapsed()
    );
    let log = server.log();
    assert_eq!(count(&log, "connection limit reached"), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_few_file_descriptors_new_clients_recover_and_warnings_are_rate_limited() {
    let server = Server::start_with(&["--request-header-timeout", "2s"]);
    let pid = server.child.as_ref().expect("server running").id();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=160:160"])
        .status()
        .expect("prlimit is installed (util-linux)");
    assert!(status.success());
    // Plain TCP connections that never start TLS: more than the server has descriptors for.
    let mut hogs = Vec::new();
    for _ in 0..300 {
        hogs.push(
            TcpStream::connect(("127.0.0.1", server.port))
                .await
                .expect("connect"),
        );
    }
    support::wait::wait_until(
        Duration::from_secs(10),
        "accept to run out of descriptors",
        || server.log().contains("accept failed"),
    );
    let client = server.client(true);
    let t = Instant::now();
    let resp = client
        .get(format!("{}/api/v1/namespaces", server.url()))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("a new client is answered once the slow ones are closed");
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let log = server.log();
    let warnings = count(&log, "accept failed");
    assert!((1..=3).contains(&warnings), "{warnings} warnings:\n{log}");
    drop(hogs);
}

/// Sends `n` requests with a `size`-byte body, each on a fresh connection, 10 at a time;
/// asserts each gets the whole `Status` with `code` and `reason`.
async fn every_client_gets_the_early_answer(
    server: &Server,
    admin: bool,
    path: &str,
    size: usize,
    n: usize,
    code: u16,
    reason: &str,
) {
    for batch in 0..n / 10 {
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let stream = connect(server, admin).await;
            let path = path.to_string();
            tasks.push(tokio::spawn(async move {
                exchange(stream, "POST", &path, "application/json", vec![b' '; size]).await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let answer = task
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{path} connection {}: {e}", batch * 10 + i));
            assert_eq!(answer.code, code, "{path}: {}", answer.body);
            assert_eq!(answer.body["kind"], "Status", "{path}: {}", answer.head);
            assert_eq!(answer.body["reason"], reason, "{path}: {}", answer.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_errors_reach_every_client_sending_a_large_body() {
    let server = Server::start();
    const MB: usize = 1024 * 1024;
    let cms = "/api/v1/namespaces/default/configmaps";
    every_client_gets_the_early_answer(&server, true, "/nope", MB, 60, 404, "NotFound").await;
    every_client_gets_the_early_answer(&server, false, cms, MB, 60, 401, "Unauthorized").await;
    let bad_dry_run = format!("{cms}?dryRun=Bad");
    every_client_gets_the_early_answer(&server, true, &bad_dry_run, MB, 60, 400, "BadRequest")
        .await;
    every_client_gets_the_early_answer(
        &server,
        true,
        cms,
        4 * MB,
        20,
        413,
        "RequestEntityTooLarge",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deeply_nested_bodies_are_refused_quickly_while_other_requests_are_answered() {
    let server = Server::start();
    let url = server.url();
    let client = server.client(true);
    let cms = format!("{url}/api/v1/namespaces/default/configmaps");
    client
        .post(&cms)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let bodies = [
        (
            "POST",
            cms.clone(),
            "application/yaml",
            "{a: ".repeat(500_000),
        ),
        (
            "POST",
            cms.clone(),
            "application/yaml",
            "[".repeat(2_000_000),
        ),
        (
            "POST",
            cms.clone(),
            "application/json",
            "[".repeat(2_000_000),
        ),
        (
            "PUT",
            format!("{cms}/cm"),
            "application/yaml",
            "{a: ".repeat(500_000),
        ),
        (
            "PATCH",
            format!("{cms}/cm?fieldManager=t"),
            "application/apply-patch+yaml",
            "{a: ".repeat(500_000),
        ),
    ];
    let mut hostile = Vec::new();
    for (method, url, ct, body) in bodies {
        let req = client
            .request(method.parse().unwrap(), url)
            .header("Content-Type", ct)
            .body(body);
        hostile.push(tokio::spawn(async move {
            let t = Instant::now();
            let resp = req.send().await.expect("answered");
            let code = resp.status().as_u16();
            let status: Value = resp.json().await.unwrap_or(Value::Null);
            (t.elapsed(), code, status)
        }));
    }
    for _ in 0..20 {
        let t = Instant::now();
        let resp = client
            .get(format!("{url}/api/v1/namespaces"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stalled: {:?}",
            t.elapsed()
        );
    }
    for task in hostile {
        let (elapsed, code, status) = task.await.unwrap();
        assert_eq!(code, 400, "{status}");
        assert_eq!(status["reason"], "BadRequest", "{status}");
        let message = status["message"].as_str().unwrap_or("");
        assert!(
            message.contains("nested more than 128 levels deep"),
            "{status}"
        );
        assert!(
            elapsed < Duration::from_secs(5),
            "took {elapsed:?}: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_failing_after_a_move_is_unprocessable_and_the_connection_stays_usable() {
    let server = Server::start();
    let client = server.client(true);
    let cms = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    client
        .post(&cms)
        .json(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                      "data": {"a": "1"}}),
        )
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut c = connect(&server, true).await;
    let patch = json!([
        {"op": "move", "from": "/metadata/name", "path": "/metadata"},
        {"op": "test", "path": "/data/a", "value": "2"}
    ])
    .to_string();
    let head = format!(
        "PATCH /api/v1/namespaces/default/configmaps/cm HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json-patch+json\r\nContent-Length: {}\r\n\r\n{patch}",
        patch.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut c)
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(answer.code, 422, "{}", answer.body);
    assert_eq!(answer.body["kind"], "Status");
    assert_eq!(answer.body["reason"], "Invalid", "{}", answer.body);
    c.write_all(
        b"GET /api/v1/namespaces/default/configmaps/cm HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_answer(&mut c)
        .await
        .expect("the connection stays usable");
    assert_eq!(answer.code, 200);
    assert_eq!(answer.body["data"]["a"], "1");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

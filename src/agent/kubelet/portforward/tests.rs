use std::collections::BTreeMap;

use tokio::io::DuplexStream;
use tokio::net::TcpListener;

use super::*;

/// A SPDY client over an in-memory connection to a session.
struct Client {
    io: DuplexStream,
    encoder: Encoder,
    decoder: Decoder,
    buf: BytesMut,
    next_id: u32,
}

impl Client {
    fn start(dialer: PodDialer) -> (Client, tokio::task::JoinHandle<()>) {
        let (server, client) = tokio::io::duplex(256 * 1024);
        let target = Arc::new(Target {
            pod: "ns/p".into(),
            uid: "uid-1".into(),
            dialer,
        });
        let task = tokio::spawn(serve(server, target));
        let client = Client {
            io: client,
            encoder: Encoder::new(),
            decoder: Decoder::new(),
            buf: BytesMut::new(),
            next_id: 1,
        };
        (client, task)
    }

    async fn send(&mut self, frame: Frame) {
        let mut wire = BytesMut::new();
        self.encoder.encode(&frame, &mut wire).unwrap();
        self.io.write_all(&wire).await.unwrap();
    }

    /// Opens the error and data streams of request `request` to `port`.
    async fn open_pair(&mut self, request: &str, port: u16) -> (u32, u32) {
        let mut ids = [0; 2];
        for (i, kind) in ["error", "data"].into_iter().enumerate() {
            ids[i] = self.next_id;
            self.next_id += 2;
            let headers = vec![
                ("streamtype".to_string(), kind.to_string()),
                ("port".to_string(), port.to_string()),
                ("requestid".to_string(), request.to_string()),
            ];
            self.send(Frame::SynStream {
                stream_id: ids[i],
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers,
            })
            .await;
        }
        // As kubectl: nothing is written on the error stream.
        self.send(data(ids[0], Vec::new(), true)).await;
        (ids[0], ids[1])
    }

    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(60), self.io.read_buf(&mut self.buf))
                    .await
                    .expect("session went silent");
            if read.unwrap() == 0 {
                return None;
            }
        }
    }

    /// Reads until every stream in `ids` ended (FIN or reset); what each carried.
    async fn collect(&mut self, ids: &[u32]) -> BTreeMap<u32, Vec<u8>> {
        let mut got: BTreeMap<u32, Vec<u8>> = ids.iter().map(|id| (*id, Vec::new())).collect();
        let mut open: Vec<u32> = ids.to_vec();
        while !open.is_empty() {
            match self.next().await.expect("session ended early") {
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    got.entry(stream_id).or_default().extend_from_slice(&data);
                    if flags & spdy::FLAG_FIN != 0 {
                        open.retain(|id| *id != stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => open.retain(|id| *id != stream_id),
                _ => {}
            }
        }
        got
    }
}

/// A TCP server on loopback answering each connection with `reply` + what it read
/// until the client's half-close.
async fn echo_server(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = conn.read_to_end(&mut all).await;
                let _ = conn.write_all(reply).await;
                let _ = conn.write_all(&all).await;
            });
        }
    });
    port
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn each_pair_is_forwarded_with_half_close_and_an_empty_error_stream() {
    let port = echo_server(b"echo:").await;
    let (mut client, task) = Client::start(PodDialer::host());
    let (e1, d1) = client.open_pair("0", port).await;
    let (e2, d2) = client.open_pair("1", port).await;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    client.send(data(d1, b"first".to_vec(), true)).await;
    for chunk in big.chunks(20_000) {
        client.send(data(d2, chunk.to_vec(), false)).await;
    }
    client.send(data(d2, Vec::new(), true)).await;
    let got = client.collect(&[e1, d1, e2, d2]).await;
    assert_eq!(got[&d1], b"echo:first");
    assert_eq!(&got[&d2][..5], b"echo:");
    assert!(got[&d2][5..] == big[..], "large transfer intact");
    assert!(got[&e1].is_empty() && got[&e2].is_empty());
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("session outlived its client")
        .unwrap();
}

#[tokio::test]
async fn every_stream_is_acknowledged_with_a_reply() {
    let port = echo_server(b"").await;
    let (mut client, _task) = Client::start(PodDialer::host());
    let (e, d) = client.open_pair("7", port).await;
    let mut replied = Vec::new();
    while replied.len() < 2 {
        if let Some(Frame::SynReply { stream_id, .. }) = client.next().await {
            replied.push(stream_id);
        }
    }
    assert_eq!(replied, [e, d]);
}

#[tokio::test]
async fn a_closed_port_is_reported_on_the_error_stream() {
    let port = closed_port().await;
    let (mut client, _task) = Client::start(PodDialer::host());
    let (e, d) = client.open_pair("0", port).await;
    let got = client.collect(&[e, d]).await;
    let message = String::from_utf8(got[&e].clone()).unwrap();
    assert!(
        message.starts_with(&format!(
            "error forwarding port {port} to pod ns/p, uid uid-1: "
        )),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
    assert!(got[&d].is_empty());
}

#[tokio::test]
async fn a_missing_network_namespace_is_reported_on_the_error_stream() {
    let (mut client, _task) = Client::start(PodDialer::in_netns("/nonexistent/netns".into()));
    let (e, d) = client.open_pair("0", 80).await;
    let got = client.collect(&[e, d]).await;
    let message = String::from_utf8(got[&e].clone()).unwrap();
    assert!(message.contains("no network namespace"), "{message}");
}

#[tokio::test]
async fn pings_from_the_client_are_answered() {
    let (mut client, _task) = Client::start(PodDialer::host());
    client.send(Frame::Ping { id: 1 }).await;
    client.send(Frame::Ping { id: 3 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
    assert_eq!(client.next().await, Some(Frame::Ping { id: 3 }));
}

#[tokio::test]
async fn streams_without_port_or_type_and_reused_ids_are_reset() {
    let (mut client, _task) = Client::start(PodDialer::host());
    let syn = |id: u32, headers: &[(&str, &str)]| Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        flags: 0,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    };
    client.send(syn(1, &[("streamtype", "data")])).await;
    client
        .send(syn(3, &[("port", "80"), ("streamtype", "other")]))
        .await;
    client
        .send(syn(5, &[("port", "0"), ("streamtype", "data")]))
        .await;
    client
        .send(syn(5, &[("port", "80"), ("streamtype", "data")]))
        .await;
    client
        .send(syn(8, &[("port", "80"), ("streamtype", "data")]))
        .await;
    let mut resets = Vec::new();
    while resets.len() < 5 {
        match client.next().await {
            Some(Frame::RstStream { stream_id, status }) => resets.push((stream_id, status)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        resets,
        [
            (1, spdy::status::CANCEL),
            (3, spdy::status::CANCEL),
            (5, spdy::status::CANCEL),
            (5, spdy::status::PROTOCOL_ERROR),
            (8, spdy::status::PROTOCOL_ERROR),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_pair_missing_its_data_stream_times_out_on_the_error_stream() {
    let (mut client, _task) = Client::start(PodDialer::host());
    client
        .send(Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![
                ("streamtype".into(), "error".into()),
                ("port".into(), "80".into()),
                ("requestid".into(), "4".into()),
            ],
        })
        .await;
    let got = client.collect(&[1]).await;
    assert_eq!(got[&1], b"request 4: timed out waiting for streams");
}

#[tokio::test]
async fn a_reset_data_stream_ends_its_forwarding() {
    // A server that never closes: only the client's reset ends the pair.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let (mut client, _task) = Client::start(PodDialer::host());
    let (e, d) = client.open_pair("0", port).await;
    client
        .send(Frame::RstStream {
            stream_id: d,
            status: spdy::status::CANCEL,
        })
        .await;
    let got = client.collect(&[e]).await;
    assert!(got[&e].is_empty());
}

#[test]
fn legacy_clients_pair_streams_by_consecutive_ids() {
    let h = |kind: &str| vec![("streamtype".to_string(), kind.to_string())];
    assert_eq!(request_id(&h("error"), StreamKind::Error, 5), "5");
    assert_eq!(request_id(&h("data"), StreamKind::Data, 7), "5");
    let mut with_id = h("data");
    with_id.push(("requestid".into(), "12".into()));
    assert_eq!(request_id(&with_id, StreamKind::Data, 7), "12");
}

#[test]
fn the_handshake_wants_spdy_and_the_port_forward_protocol() {
    let mut h = http::HeaderMap::new();
    assert_eq!(negotiate(&h).unwrap(), None);
    assert!(!is_spdy_upgrade(&h));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    assert!(is_spdy_upgrade(&h));
    h.insert(PROTOCOL_HEADER, HeaderValue::from_static(PROTOCOL_V1));
    assert_eq!(negotiate(&h).unwrap(), Some(PROTOCOL_V1));
    h.insert(
        PROTOCOL_HEADER,
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let e = negotiate(&h).unwrap_err();
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    assert!(
        e.to_string().contains("unable to negotiate protocol"),
        "{e}"
    );
}

#[test]
fn host_network_pods_are_dialed_in_the_nodes_namespace() {
    let endpoint = Endpoint {
        pods: Default::default(),
        pods_dir: "/pods".into(),
        netns_dir: "/netns".into(),
        runtime: Arc::new(crate::agent::runtime::FakeRuntime::new()),
        cgroups: crate::agent::stats::CgroupReader::new("/nonexistent"),
        metrics: crate::metrics::NodeMetrics::new(),
    };
    for (name, uid, host_network) in [("net", "u1", false), ("host", "u2", true)] {
        endpoint.pods.write().unwrap().insert(
            ("ns".into(), name.into()),
            super::super::server::IndexedPod {
                uid: uid.into(),
                host_network,
            },
        );
    }
    let (uid, dialer) = pod_dialer(&endpoint, "ns", "net").unwrap();
    assert_eq!(
        (uid.as_str(), dialer.netns),
        ("u1", Some("/netns/u1".into()))
    );
    let (uid, dialer) = pod_dialer(&endpoint, "ns", "host").unwrap();
    assert_eq!((uid.as_str(), dialer.netns), ("u2", None));
    let e = pod_dialer(&endpoint, "ns", "gone").unwrap_err();
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
}

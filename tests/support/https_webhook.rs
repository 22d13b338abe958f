//! An HTTPS webhook server a test runs on loopback (its own CA; a serving certificate
//! for 127.0.0.1 and one Service DNS name), answering each POST with what the test's
//! handler makes of the JSON review, and recording what it was sent, per path.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Makes the answer's body from the request path and the review sent.
pub type Handler =
    Arc<dyn Fn(String, Value) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;

pub struct HttpsWebhook {
    pub port: u16,
    pub ca_pem: String,
    pub reviews: Arc<Mutex<Vec<(String, Value)>>>,
    /// Serves the connections; dropping it stops the server.
    runtime: Option<tokio::runtime::Runtime>,
}

impl HttpsWebhook {
    /// Starts the server; its certificate also holds `service_host` (`NAME.NS.svc`).
    pub fn start(service_host: &str, handler: Handler) -> HttpsWebhook {
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "webhook test CA");
        let ca = ca_params.self_signed(&ca_key).expect("self-sign ca");
        let key = rcgen::KeyPair::generate().expect("serving key");
        let mut params =
            rcgen::CertificateParams::new(vec![service_host.to_string()]).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
        let certs = rustls_pemfile::certs(&mut cert.pem().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let private = rustls_pemfile::private_key(&mut key.serialize_pem().as_bytes())
            .expect("key")
            .expect("a key");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind webhook port");
        let port = listener.local_addr().expect("addr").port();
        let reviews = Arc::new(Mutex::new(Vec::new()));
        let seen = reviews.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen, handler) = (acceptor.clone(), seen.clone(), handler.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (seen, handler) = (seen.clone(), handler.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let body: Result<Bytes, _> =
                                    req.into_body().collect().await.map(|b| b.to_bytes());
                                let review: Value = body
                                    .ok()
                                    .and_then(|b| serde_json::from_slice(&b).ok())
                                    .unwrap_or(Value::Null);
                                seen.lock().unwrap().push((path.clone(), review.clone()));
                                let out = handler(path, review).await;
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsWebhook {
            port,
            ca_pem: ca.pem(),
            reviews,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The CA as a base64 `caBundle`.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// The reviews sent to `path` so far.
    pub fn reviews_to(&self, path: &str) -> Vec<Value> {
        self.reviews
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Stops serving: the port refuses connections from now on.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

//! `pods/{name}/log`: the API server asks the kubelet of the pod's node (its InternalIP
//! and daemonEndpoints port, over HTTPS with the admin client certificate) and streams
//! the answer back.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;

use super::request::Query;
use super::response::Body;
use super::ApiContext;
use crate::api::resources;
use crate::api::status::ApiError;

/// Longest connecting to a kubelet may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Kubelet port when the Node does not advertise one.
const DEFAULT_KUBELET_PORT: u64 = 10250;
/// Query parameters passed on to the kubelet.
const LOG_PARAMS: [&str; 4] = ["follow", "tailLines", "previous", "timestamps"];

/// The container a log request means: the one named, or the pod's only container.
pub fn log_container(pod: &Value, requested: &str) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| pod["spec"][*f].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    if !requested.is_empty() {
        return if names.contains(&requested) {
            Ok(requested.to_string())
        } else {
            Err(ApiError::bad_request(format!(
                "container {requested} is not valid for pod {name}"
            )))
        };
    }
    let apps: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match apps.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            apps.join(" ")
        ))),
    }
}

/// Streams the log of a container of `pod` from its node's kubelet.
pub async fn pod_logs(
    ctx: &ApiContext,
    pod: &Value,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let container = log_container(pod, query.str("container"))?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    let nodes = resources::by_plural("", "v1", "nodes").expect("nodes are served");
    let node = ctx
        .registry
        .get(nodes, None, node_name)
        .map_err(|_| ApiError::unavailable(format!("node {node_name} of pod {name} is gone")))?
        .value;
    let address = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::unavailable(format!("node {node_name} has no InternalIP")))?
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(DEFAULT_KUBELET_PORT) as u16;
    let mut path = format!("/containerLogs/{ns}/{name}/{container}");
    let params: Vec<(&str, &str)> = LOG_PARAMS
        .iter()
        .map(|p| (*p, query.str(p)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if !params.is_empty() {
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        path = format!("{path}?{encoded}");
    }
    let unreachable = |e: String| {
        ApiError::unavailable(format!(
            "the kubelet of node {node_name} ({address}:{port}) cannot be reached: {e}"
        ))
    };
    let tls = crate::tls::kubelet_client_config(ctx.pki.admin_cert_pem(), ctx.pki.admin_key_pem())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let connect = async {
        let tcp = TcpStream::connect((address.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let server_name = ServerName::try_from(address.clone()).map_err(|e| e.to_string())?;
        let stream = TlsConnector::from(Arc::clone(&tls))
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())
    };
    let (mut sender, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| unreachable("timeout".into()))?
        .map_err(unreachable)?;
    tokio::spawn(conn);
    let req = Request::get(&path)
        .header(header::HOST, format!("{address}:{port}"))
        .body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Err(match status.as_u16() {
            400 | 404 => ApiError::bad_request(text),
            _ => ApiError::unavailable(text),
        });
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(Ok(Frame::data(data))).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut out = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_only_container_is_the_default() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app"}],
        }});
        assert_eq!(log_container(&pod, "").unwrap(), "app");
        assert_eq!(log_container(&pod, "init").unwrap(), "init");
        assert!(log_container(&pod, "nope").is_err());
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let e = log_container(&two, "").unwrap_err();
        assert!(e.to_status()["message"]
            .as_str()
            .unwrap()
            .contains("choose one of: [a b]"));
    }
}

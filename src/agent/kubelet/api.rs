//! What the kubelet asks of the API server: the pods bound to this node (list + watch),
//! pod status writes, the final pod delete, events, and the ConfigMaps and Secrets its
//! pods reference. [`PodApi`] is the seam unit tests replace with [`FakePodApi`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::agent::client::{ApiClient, ClientError, WatchEvent, WatchEvents};

/// How long one watch request stays open before it is renewed.
const WATCH_TIMEOUT_SECONDS: u64 = 300;
/// Wait before relisting after a failed list or watch.
const RELIST_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what}")]
    Request {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("{what}: the server answered {status}: {message}")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Rejected { status, .. } => Some(*status),
            ApiError::Request { .. } => None,
        }
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The API calls a pod worker makes.
#[async_trait]
pub trait PodApi: Send + Sync {
    /// Replaces the pod's status (merge patch of `status`).
    async fn patch_status(&self, namespace: &str, name: &str, status: &Value) -> Result<()>;
    /// Deletes the pod at once (grace period 0), only if it still has `uid`.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()>;
    /// Reads a ConfigMap or Secret (`plural` is `configmaps` or `secrets`); `None` if missing.
    async fn get_object(&self, plural: &str, namespace: &str, name: &str) -> Result<Option<Value>>;
    /// Records an event (best effort: callers log failures and go on).
    async fn create_event(&self, namespace: &str, event: &Value) -> Result<()>;
    /// The Services of a namespace (for the service environment variables).
    async fn list_services(&self, namespace: &str) -> Result<Vec<Value>>;
}

/// [`PodApi`] over HTTPS with the node's credential.
pub struct HttpPodApi {
    client: Arc<ApiClient>,
}

impl HttpPodApi {
    pub fn new(client: Arc<ApiClient>) -> Self {
        HttpPodApi { client }
    }
}

fn pod_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{name}")
}

async fn send(
    what: impl Into<String>,
    fut: impl std::future::Future<Output = Result<crate::agent::client::Response, ClientError>>,
) -> Result<crate::agent::client::Response> {
    let what = what.into();
    let resp = fut.await.map_err(|source| ApiError::Request {
        what: what.clone(),
        source,
    })?;
    if resp.status.is_success() {
        Ok(resp)
    } else {
        Err(ApiError::Rejected {
            what,
            status: resp.status.as_u16(),
            message: resp.message(),
        })
    }
}

#[async_trait]
impl PodApi for HttpPodApi {
    async fn patch_status(&self, namespace: &str, name: &str, status: &Value) -> Result<()> {
        let path = format!("{}/status", pod_path(namespace, name));
        let body = json!({ "status": status });
        send(
            format!("update status of pod {namespace}/{name}"),
            self.client.merge_patch(&path, &body),
        )
        .await
        .map(drop)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        let body = json!({
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        });
        match send(
            format!("delete pod {namespace}/{name}"),
            self.client.delete(&pod_path(namespace, name), &body),
        )
        .await
        {
            // Gone already, or replaced by a pod of the same name (uid precondition).
            Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(()),
            other => other.map(drop),
        }
    }

    async fn get_object(&self, plural: &str, namespace: &str, name: &str) -> Result<Option<Value>> {
        let path = format!("/api/v1/namespaces/{namespace}/{plural}/{name}");
        match send(
            format!("read {plural} {namespace}/{name}"),
            self.client.get(&path),
        )
        .await
        {
            Ok(resp) => Ok(resp.json()),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_event(&self, namespace: &str, event: &Value) -> Result<()> {
        let path = format!("/api/v1/namespaces/{namespace}/events");
        send("create event", self.client.post(&path, event))
            .await
            .map(drop)
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Value>> {
        let path = format!("/api/v1/namespaces/{namespace}/services");
        let resp = send(
            format!("list services in {namespace}"),
            self.client.get(&path),
        )
        .await?;
        Ok(resp
            .json()
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default())
    }
}

/// A change to the set of pods bound to this node.
#[derive(Debug, Clone)]
pub enum PodUpdate {
    /// A full list: every pod bound to the node now (sent after each (re)list).
    Snapshot(Vec<Value>),
    Upsert(Value),
    Deleted(Value),
}

/// Lists and watches the pods bound to `node` forever, relisting after any error, and
/// sends what it sees. Returns when the receiver is gone.
pub async fn watch_pods(client: Arc<ApiClient>, node: String, out: mpsc::Sender<PodUpdate>) {
    let selector = format!("spec.nodeName%3D{node}");
    loop {
        let rv = match list_pods(&client, &selector).await {
            Ok((pods, rv)) => {
                if out.send(PodUpdate::Snapshot(pods)).await.is_err() {
                    return;
                }
                rv
            }
            Err(e) => {
                tracing::warn!(%node, error = %e, "list pods failed; retrying");
                tokio::time::sleep(RELIST_DELAY).await;
                continue;
            }
        };
        match watch_from(&client, &selector, rv, &out).await {
            Ok(WatchEnd::ReceiverGone) => return,
            Ok(WatchEnd::Expired) => {}
            Err(e) => {
                tracing::warn!(%node, error = %e, "pod watch failed; relisting");
                tokio::time::sleep(RELIST_DELAY).await;
            }
        }
    }
}

async fn list_pods(client: &ApiClient, selector: &str) -> Result<(Vec<Value>, String)> {
    let path = format!("/api/v1/pods?fieldSelector={selector}");
    let resp = send("list pods bound to this node", client.get(&path)).await?;
    let list = resp.json().unwrap_or_default();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let pods = list["items"].as_array().cloned().unwrap_or_default();
    Ok((pods, rv))
}

enum WatchEnd {
    /// The watch ended (timeout, 410 Gone, closed stream): relist.
    Expired,
    ReceiverGone,
}

async fn watch_from(
    client: &ApiClient,
    selector: &str,
    mut rv: String,
    out: &mpsc::Sender<PodUpdate>,
) -> Result<WatchEnd> {
    loop {
        let path = format!(
            "/api/v1/pods?watch=1&fieldSelector={selector}&resourceVersion={rv}\
             &allowWatchBookmarks=true&timeoutSeconds={WATCH_TIMEOUT_SECONDS}"
        );
        let what = "watch pods bound to this node";
        let (status, body) = client
            .stream(&path)
            .await
            .map_err(|source| ApiError::Request {
                what: what.into(),
                source,
            })?;
        if !status.is_success() {
            return Err(ApiError::Rejected {
                what: what.into(),
                status: status.as_u16(),
                message: String::new(),
            });
        }
        let mut events = WatchEvents::new(body);
        while let Some(event) = events.next().await {
            let WatchEvent { kind, object } = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::debug!(error = %e, "pod watch stream broke");
                    return Ok(WatchEnd::Expired);
                }
            };
            if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                rv = v.to_string();
            }
            let update = match kind.as_str() {
                "ADDED" | "MODIFIED" => PodUpdate::Upsert(object),
                "DELETED" => PodUpdate::Deleted(object),
                "BOOKMARK" => continue,
                // ERROR (e.g. 410 Gone): the resourceVersion is too old.
                _ => return Ok(WatchEnd::Expired),
            };
            if out.send(update).await.is_err() {
                return Ok(WatchEnd::ReceiverGone);
            }
        }
    }
}

/// One call made to a [`FakePodApi`].
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    PatchStatus { pod: String, status: Value },
    DeletePod { pod: String, uid: String },
    GetObject { plural: String, name: String },
    Event { reason: String, message: String },
}

/// A [`PodApi`] that records calls and serves ConfigMaps and Secrets from memory.
#[derive(Debug, Default)]
pub struct FakePodApi {
    calls: Mutex<Vec<ApiCall>>,
    objects: Mutex<Vec<(String, String, Value)>>,
}

impl FakePodApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a ConfigMap, Secret or Service.
    pub fn add_object(&self, plural: &str, object: Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut objects = self.objects.lock().expect("fake api poisoned");
        objects.retain(|(p, n, _)| !(p == plural && *n == name));
        objects.push((plural.to_string(), name, object));
    }

    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().expect("fake api poisoned").clone()
    }

    /// The statuses written so far, oldest first.
    pub fn statuses(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::PatchStatus { status, .. } => Some(status),
                _ => None,
            })
            .collect()
    }

    /// The reasons of the events recorded so far.
    pub fn event_reasons(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::Event { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// The events recorded so far, as `(reason, message)`.
    pub fn events(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::Event { reason, message } => Some((reason, message)),
                _ => None,
            })
            .collect()
    }

    fn record(&self, call: ApiCall) {
        self.calls.lock().expect("fake api poisoned").push(call);
    }
}

#[async_trait]
impl PodApi for FakePodApi {
    async fn patch_status(&self, namespace: &str, name: &str, status: &Value) -> Result<()> {
        self.record(ApiCall::PatchStatus {
            pod: format!("{namespace}/{name}"),
            status: status.clone(),
        });
        Ok(())
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        self.record(ApiCall::DeletePod {
            pod: format!("{namespace}/{name}"),
            uid: uid.to_string(),
        });
        Ok(())
    }

    async fn get_object(
        &self,
        plural: &str,
        _namespace: &str,
        name: &str,
    ) -> Result<Option<Value>> {
        self.record(ApiCall::GetObject {
            plural: plural.to_string(),
            name: name.to_string(),
        });
        Ok(self
            .objects
            .lock()
            .expect("fake api poisoned")
            .iter()
            .find(|(p, n, _)| p == plural && n == name)
            .map(|(_, _, o)| o.clone()))
    }

    async fn create_event(&self, _namespace: &str, event: &Value) -> Result<()> {
        self.record(ApiCall::Event {
            reason: event["reason"].as_str().unwrap_or("").to_string(),
            message: event["message"].as_str().unwrap_or("").to_string(),
        });
        Ok(())
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Value>> {
        Ok(self
            .objects
            .lock()
            .expect("fake api poisoned")
            .iter()
            .filter(|(p, _, o)| p == "services" && o["metadata"]["namespace"] == namespace)
            .map(|(_, _, o)| o.clone())
            .collect())
    }
}

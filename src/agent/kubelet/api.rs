//! What the kubelet asks of the API server: the pods bound to this node (list + watch),
//! pod status writes, the final pod delete, events, and the ConfigMaps and Secrets its
//! pods reference. [`PodApi`] is the seam unit tests replace with a fake that records
//! calls.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::agent::client::error::accepted;
use crate::agent::client::last_known::{LastKnownDir, LastKnownFile};
use crate::agent::client::{ApiClient, Event, ListWatchApi, Query, Reflector};

pub use crate::agent::client::error::{ApiError, Result};

/// The API calls a pod worker makes.
#[async_trait]
pub trait PodApi: Send + Sync {
    /// Replaces the pod's status (merge patch of `status`).
    async fn patch_status(&self, namespace: &str, name: &str, status: &Value) -> Result<()>;
    /// Deletes the pod at once (grace period 0), only if it still has `uid`.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()>;
    /// Reads a ConfigMap, Secret or PersistentVolumeClaim (`plural` is `configmaps`,
    /// `secrets` or `persistentvolumeclaims`), or with an empty `namespace` a
    /// PersistentVolume (`persistentvolumes`) or RuntimeClass (`runtimeclasses`); `None`
    /// if missing.
    async fn get_object(&self, plural: &str, namespace: &str, name: &str) -> Result<Option<Value>>;
    /// Records an event (best effort: callers log failures and go on).
    async fn create_event(&self, namespace: &str, event: &Value) -> Result<()>;
    /// Records a repeat of an event created before: `event` is it with its new `count`
    /// and `lastTimestamp`, which are merged into the stored one (a NotFound error when
    /// it expired meanwhile).
    async fn repeat_event(&self, namespace: &str, event: &Value) -> Result<()>;
    /// The Services of a namespace (for the service environment variables).
    async fn list_services(&self, namespace: &str) -> Result<Vec<Value>>;
    /// Asks for a token of ServiceAccount `account` (`request` is a `TokenRequest`);
    /// answers the `TokenRequest` the server returns.
    async fn request_token(&self, namespace: &str, account: &str, request: &Value)
        -> Result<Value>;
}

/// [`PodApi`] over HTTPS with the node's credential.
pub struct HttpPodApi {
    client: Arc<ApiClient>,
    last_known: Option<LastKnownDir>,
}

impl HttpPodApi {
    pub fn new(client: Arc<ApiClient>) -> Self {
        HttpPodApi {
            client,
            last_known: None,
        }
    }

    /// While the server cannot be reached, the Services come from the last known state
    /// in `dir` (kept by the service proxy), so containers still (re)start with their
    /// service variables, as upstream's kubelet does from its informer cache.
    pub fn with_last_known(mut self, dir: LastKnownDir) -> Self {
        self.last_known = Some(dir);
        self
    }

    /// The last known Services of `namespace`, if they were kept.
    fn last_known_services(&self, namespace: &str) -> Option<Vec<Value>> {
        let file = self.last_known.as_ref()?.file("services");
        let all: Vec<Value> = file.load(&Query::all("services").list_path()).ok()??;
        Some(
            all.into_iter()
                .filter(|s| s["metadata"]["namespace"] == namespace)
                .collect(),
        )
    }
}

fn pod_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{name}")
}

#[async_trait]
impl PodApi for HttpPodApi {
    async fn patch_status(&self, namespace: &str, name: &str, status: &Value) -> Result<()> {
        let path = format!("{}/status", pod_path(namespace, name));
        let body = json!({ "status": status });
        accepted(
            &format!("update status of pod {namespace}/{name}"),
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
        match accepted(
            &format!("delete pod {namespace}/{name}"),
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
        let prefix = match plural {
            "runtimeclasses" => "/apis/node.k8s.io/v1",
            _ => "/api/v1",
        };
        let (path, what) = if namespace.is_empty() {
            (
                format!("{prefix}/{plural}/{name}"),
                format!("read {plural} {name}"),
            )
        } else {
            (
                format!("{prefix}/namespaces/{namespace}/{plural}/{name}"),
                format!("read {plural} {namespace}/{name}"),
            )
        };
        match accepted(&what, self.client.get(&path)).await {
            Ok(resp) => Ok(resp.json()),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_event(&self, namespace: &str, event: &Value) -> Result<()> {
        let path = format!("/api/v1/namespaces/{namespace}/events");
        accepted("create event", self.client.post(&path, event))
            .await
            .map(drop)
    }

    async fn repeat_event(&self, namespace: &str, event: &Value) -> Result<()> {
        let name = event["metadata"]["name"].as_str().unwrap_or("");
        let path = format!("/api/v1/namespaces/{namespace}/events/{name}");
        // What upstream's recorder patches on a repeat.
        let body = json!({
            "count": event["count"],
            "lastTimestamp": event["lastTimestamp"],
            "message": event["message"],
        });
        accepted("update event", self.client.merge_patch(&path, &body))
            .await
            .map(drop)
    }

    async fn request_token(
        &self,
        namespace: &str,
        account: &str,
        request: &Value,
    ) -> Result<Value> {
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token");
        let resp = accepted(
            &format!("request a token of service account {namespace}/{account}"),
            self.client.post(&path, request),
        )
        .await?;
        Ok(resp.json().unwrap_or(Value::Null))
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Value>> {
        let path = format!("/api/v1/namespaces/{namespace}/services");
        let listed = accepted(
            &format!("list services in {namespace}"),
            self.client.get(&path),
        )
        .await;
        let resp = match listed {
            Err(e @ ApiError::Request { .. }) => {
                return self.last_known_services(namespace).ok_or(e);
            }
            other => other?,
        };
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
    /// The pods bound to the node when this agent last saw them (the server cannot be
    /// reached): run them, remove nothing; a [`PodUpdate::Snapshot`] follows once the
    /// server answers.
    LastKnown(Vec<Value>),
    Upsert(Value),
    Deleted(Value),
}

/// Lists and watches the pods bound to `node` forever and sends what it sees, keeping
/// them in `last_known` (if given) for a start without server. Returns when the
/// receiver is gone.
pub async fn watch_pods(
    api: Arc<dyn ListWatchApi>,
    node: String,
    last_known: Option<LastKnownFile>,
    out: mpsc::Sender<PodUpdate>,
) {
    let span = tracing::info_span!("pod_watch", %node);
    let query = Query::all("pods").fields(&format!("spec.nodeName={node}"));
    let mut pods = Reflector::<Value>::new(api, query);
    if let Some(file) = last_known {
        pods = pods.remember_in(file);
    }
    async move {
        loop {
            let update = match pods.next().await {
                Event::Restarted(pods) => PodUpdate::Snapshot(pods),
                Event::LastKnown(pods) => PodUpdate::LastKnown(pods),
                Event::Applied(pod) => PodUpdate::Upsert(pod),
                Event::Deleted(pod) => PodUpdate::Deleted(pod),
            };
            if out.send(update).await.is_err() {
                return;
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
pub use fake::{ApiCall, FakePodApi};

#[cfg(test)]
mod fake {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::Value;

    use super::{PodApi, Result};

    /// One call made to a [`FakePodApi`].
    #[derive(Debug, Clone, PartialEq)]
    pub enum ApiCall {
        PatchStatus { pod: String, status: Value },
        DeletePod { pod: String, uid: String },
        GetObject { plural: String, name: String },
        Event { reason: String, message: String },
        RequestToken { account: String, request: Value },
    }

    /// A [`PodApi`] that records calls and serves ConfigMaps and Secrets from memory.
    #[derive(Debug, Default)]
    pub struct FakePodApi {
        calls: Mutex<Vec<ApiCall>>,
        objects: Mutex<Vec<(String, String, Value)>>,
        /// Tokens handed out, by account: `(token, expirationTimestamp)`; none: 403.
        tokens: Mutex<Vec<(String, String, String)>>,
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

        /// Makes `request_token` for `account` answer `token` expiring at `expires`.
        pub fn add_token(&self, account: &str, token: &str, expires: &str) {
            let mut tokens = self.tokens.lock().expect("fake api poisoned");
            tokens.retain(|(a, _, _)| a != account);
            tokens.push((account.into(), token.into(), expires.into()));
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

        async fn repeat_event(&self, namespace: &str, event: &Value) -> Result<()> {
            self.create_event(namespace, event).await
        }

        async fn request_token(
            &self,
            namespace: &str,
            account: &str,
            request: &Value,
        ) -> Result<Value> {
            self.record(ApiCall::RequestToken {
                account: account.to_string(),
                request: request.clone(),
            });
            let tokens = self.tokens.lock().expect("fake api poisoned");
            match tokens.iter().find(|(a, _, _)| a == account) {
                Some((_, token, expires)) => Ok(serde_json::json!({
                    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": request["spec"].clone(),
                    "status": {"token": token, "expirationTimestamp": expires}})),
                None => Err(super::ApiError::Rejected {
                    what: format!("request a token of service account {namespace}/{account}"),
                    rejection: crate::agent::client::error::Rejection {
                        status: http::StatusCode::FORBIDDEN,
                        reason: "Forbidden".into(),
                        message: "forbidden".into(),
                    },
                }),
            }
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::agent::client::fake::{Answer, FakeListWatch};

    fn pod(name: &str) -> Value {
        json!({"metadata": {"namespace": "default", "name": name, "uid": format!("uid-{name}"),
                            "resourceVersion": "1"}, "spec": {"nodeName": "n1"}})
    }

    fn name(pod: &Value) -> &str {
        pod["metadata"]["name"].as_str().unwrap_or("")
    }

    #[tokio::test]
    async fn without_a_server_services_come_from_the_last_known_state() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on: the server cannot be reached.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = crate::agent::client::ServerAddr {
            host: "127.0.0.1".into(),
            port: closed.local_addr().unwrap().port(),
        };
        drop(closed);
        let tls = crate::tls::client_config_unverified().unwrap();
        let client = Arc::new(ApiClient::new(addr, tls, None));
        let keep = LastKnownDir::new(dir.path());
        let api = HttpPodApi::new(client.clone()).with_last_known(keep.clone());
        let e = api.list_services("web").await.unwrap_err();
        assert_eq!(e.status(), None, "nothing kept yet: the error stands");
        let services = [
            json!({"metadata": {"namespace": "web", "name": "a"}}),
            json!({"metadata": {"namespace": "other", "name": "b"}}),
        ];
        keep.file("services")
            .store(&LastKnownFile::encode("/api/v1/services", services.iter()).unwrap())
            .unwrap();
        let listed = api.list_services("web").await.unwrap();
        assert_eq!(listed, [services[0].clone()]);
    }

    #[tokio::test(start_paused = true)]
    async fn pods_deleted_while_the_watch_was_expired_reach_the_kubelet_as_deletions() {
        let api = Arc::new(FakeListWatch::new());
        let expired = json!({"kind": "Status", "code": 410, "reason": "Expired"});
        api.answer("/api/v1/pods", Answer::list("5", vec![pod("a"), pod("b")]))
            .answer("/api/v1/pods", Answer::events([("ERROR", expired)]))
            .answer("/api/v1/pods", Answer::list("9", vec![pod("b")]));
        let (tx, mut updates) = mpsc::channel(8);
        let watch = tokio::spawn(watch_pods(api.clone(), "n1".into(), None, tx));
        let mut seen = Vec::new();
        let receive = async {
            while seen.len() < 3 {
                seen.push(match updates.recv().await.expect("the watch runs") {
                    PodUpdate::Snapshot(pods) => {
                        format!("snapshot {:?}", pods.iter().map(name).collect::<Vec<_>>())
                    }
                    PodUpdate::LastKnown(pods) => format!("last known {}", pods.len()),
                    PodUpdate::Upsert(pod) => format!("upsert {}", name(&pod)),
                    PodUpdate::Deleted(pod) => format!("deleted {}", name(&pod)),
                });
            }
        };
        tokio::time::timeout(Duration::from_secs(60), receive)
            .await
            .expect("the pod watch deadlocked");
        assert_eq!(
            seen,
            [r#"snapshot ["a", "b"]"#, "deleted a", r#"snapshot ["b"]"#]
        );
        assert_eq!(
            api.paths()[0],
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
            "only the pods bound to this node"
        );
        drop(updates);
        watch.abort();
    }
}

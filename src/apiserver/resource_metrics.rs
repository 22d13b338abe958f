//! Built-in resource metrics (what metrics-server does, without its pod): every
//! `RESOLUTION` the server scrapes each Ready node's kubelet `/metrics/resource`, keeps
//! the last scrape per node and the rates against the one before, and serves
//! `metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics from them (get and list, label and
//! field selectors). An object without a rate yet is absent from lists and 404 on get,
//! as with metrics-server.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;
use tracing::{debug, Instrument};

use super::kubelet_proxy::Kubelet;
use super::request::Query;
use super::response::{self, Body};
use super::ApiContext;
use crate::api::metrics::{self, NodeRates, PodUsage, Rated, Scrape};
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::api::status::ApiError;

/// How often kubelets are scraped (metrics-server's default `--metric-resolution`).
pub const RESOLUTION: Duration = Duration::from_secs(15);
/// Longest one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `/metrics/resource` answer read.
const MAX_SCRAPE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("connect to the kubelet: {0}")]
    Connect(String),
    #[error("kubelet answered {0}")]
    Status(StatusCode),
    #[error("read the answer: {0}")]
    Read(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Parse(#[from] metrics::ParseError),
}

#[derive(Debug, Default)]
struct NodeEntry {
    last: Scrape,
    rates: NodeRates,
}

/// The last scrape of each node and the rates from it (shared by the API handlers and
/// the HorizontalPodAutoscaler controller). May be up to `RESOLUTION` old.
#[derive(Debug, Default)]
pub struct ResourceMetrics {
    nodes: RwLock<HashMap<String, NodeEntry>>,
}

impl ResourceMetrics {
    pub fn new() -> ResourceMetrics {
        ResourceMetrics::default()
    }

    /// Records a new scrape of `node`: rates are taken against the previous one.
    pub fn record(&self, node: &str, scrape: Scrape) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let entry = nodes.entry(node.to_string()).or_default();
        entry.rates = metrics::rates(&entry.last, &scrape);
        entry.last = scrape;
    }

    /// Drops what is known of nodes not in `keep` (deleted or not Ready).
    pub fn retain(&self, keep: &HashSet<String>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|name, _| keep.contains(name));
    }

    pub fn node(&self, name: &str) -> Option<Rated> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.get(name)?.rates.node
    }

    /// The usage of pod `namespace/name` measured on `node`.
    pub fn pod(&self, node: &str, namespace: &str, name: &str) -> Option<PodUsage> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .get(node)?
            .rates
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Scrapes every Ready node each `resolution`, until the task is dropped.
pub async fn collect(ctx: Arc<ApiContext>, resolution: Duration) {
    let nodes_def = resources::by_plural("", "v1", "nodes").expect("nodes are served");
    let mut tick = tokio::time::interval(resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let nodes: Vec<Value> = ctx
            .registry
            .list(nodes_def, None, None, 0, &|kv| is_ready(&kv.value))
            .items
            .into_iter()
            .map(|kv| (*kv.value).clone())
            .collect();
        let names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        ctx.registry.resource_metrics.retain(&names);
        let scrapes = nodes.iter().map(|node| {
            let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
            let ctx = ctx.clone();
            async move {
                match scrape(&ctx, node).await {
                    Ok(s) => ctx.registry.resource_metrics.record(&name, s),
                    Err(error) => debug!(%error, "scrape failed"),
                }
            }
            .instrument(tracing::debug_span!("scrape", node = %node["metadata"]["name"]))
        });
        futures::future::join_all(scrapes).await;
    }
}

/// One scrape of `node`'s kubelet.
async fn scrape(ctx: &ApiContext, node: &Value) -> Result<Scrape, ScrapeError> {
    let work = async {
        let mut kubelet = Kubelet::connect_node(ctx, node)
            .await
            .map_err(|e| ScrapeError::Connect(e.message.clone()))?;
        let req = Request::get("/metrics/resource")
            .header(header::HOST, &kubelet.host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| ScrapeError::Connect(e.to_string()))?;
        let resp = kubelet
            .send(req)
            .await
            .map_err(|e| ScrapeError::Connect(e.message.clone()))?;
        if resp.status() != StatusCode::OK {
            return Err(ScrapeError::Status(resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_SCRAPE_BYTES)
            .collect()
            .await
            .map_err(|e| ScrapeError::Read(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        Ok(metrics::parse_scrape(
            &text,
            chrono::Utc::now().timestamp_millis(),
        )?)
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, work)
        .await
        .map_err(|_| ScrapeError::Timeout(SCRAPE_TIMEOUT))?
}

/// Whether `def` is one of the metrics kinds (served here, not from the store).
pub fn is_metrics(def: &ResourceDef) -> bool {
    def.group == metrics::GROUP && def.custom.is_none()
}

fn selectors(query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.str("labelSelector"))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(query.str("fieldSelector"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

/// What a metrics object's field selector may name (metrics-server: the object meta).
fn field_value(obj: &Value, field: &str) -> String {
    match field {
        "metadata.name" | "metadata.namespace" => {
            let key = field.trim_start_matches("metadata.");
            obj["metadata"][key].as_str().unwrap_or("").to_string()
        }
        _ => String::new(),
    }
}

/// Serves a get or list of NodeMetrics or PodMetrics (the caller authorized it).
pub fn serve(
    ctx: &ApiContext,
    def: &'static ResourceDef,
    ns: Option<&str>,
    name: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let source = if def.kind == "NodeMetrics" {
        resources::by_plural("", "v1", "nodes")
    } else {
        resources::by_plural("", "v1", "pods")
    }
    .expect("nodes and pods are served");
    let store = &ctx.registry.resource_metrics;
    let now = chrono::Utc::now();
    let measure = |obj: &Value| -> Option<Value> {
        let meta = &obj["metadata"];
        let name = meta["name"].as_str()?;
        let labels = meta.get("labels");
        let v = if def.kind == "NodeMetrics" {
            serde_json::to_value(metrics::node_metrics(name, labels, &store.node(name)?, now))
        } else {
            let ns = meta["namespace"].as_str()?;
            let node = obj["spec"]["nodeName"].as_str()?;
            let usage = store.pod(node, ns, name)?;
            serde_json::to_value(metrics::pod_metrics(ns, name, labels, &usage, now))
        };
        v.ok()
    };
    if let Some(name) = name {
        let obj = ctx
            .registry
            .get(source, ns, name)
            .map_err(|_| ApiError::not_found(def, name))?;
        let found = measure(&obj.value).ok_or_else(|| ApiError::not_found(def, name))?;
        return Ok(response::json(200, &found));
    }
    let (labels, fields) = selectors(query)?;
    crate::api::selector::check_supported(&["metadata.name", "metadata.namespace"], &fields)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let items: Vec<Value> = ctx
        .registry
        .list(source, ns, None, 0, &|kv| {
            labels.matches(crate::api::object::labels(&kv.value))
                && fields.matches_by(|f| field_value(&kv.value, f))
        })
        .items
        .iter()
        .filter_map(|kv| measure(&kv.value))
        .collect();
    Ok(response::json(200, &metrics::list(def.kind, items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(cpu: f64, ms: i64) -> Scrape {
        metrics::parse_scrape(
            &format!(
                "node_cpu_usage_seconds_total {cpu} {ms}\nnode_memory_working_set_bytes 1024 {ms}\n\
                 container_cpu_usage_seconds_total{{container=\"c\",namespace=\"d\",pod=\"p\"}} {cpu} {ms}\n\
                 container_memory_working_set_bytes{{container=\"c\",namespace=\"d\",pod=\"p\"}} 2048 {ms}\n"
            ),
            0,
        )
        .unwrap()
    }

    #[test]
    fn a_node_has_rates_from_its_second_scrape_on_and_is_forgotten_when_gone() {
        let m = ResourceMetrics::new();
        m.record("n1", scrape(1.0, 1000));
        assert_eq!(m.node("n1"), None, "one scrape: no rate yet");
        assert_eq!(m.pod("n1", "d", "p"), None);
        m.record("n1", scrape(2.0, 3000));
        assert_eq!(m.node("n1").unwrap().usage.cpu_nano_cores, 500_000_000);
        let p = m.pod("n1", "d", "p").unwrap();
        assert_eq!(p.containers[0].1.memory_bytes, 2048);
        assert_eq!(m.pod("n2", "d", "p"), None, "measured on another node");
        m.retain(&HashSet::new());
        assert_eq!(m.node("n1"), None);
    }
}

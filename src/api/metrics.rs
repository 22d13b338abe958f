//! Resource metrics (`metrics.k8s.io/v1beta1`) without I/O: the NodeMetrics and
//! PodMetrics kinds, parsing a kubelet's `/metrics/resource` scrape, and CPU rates from
//! two scrapes as metrics-server computes them (cumulative core-seconds over the time
//! between the samples; a counter that went back means a restart: no rate).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// A node's usage (upstream `metrics.k8s.io/v1beta1` NodeMetrics).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics")]
pub struct NodeMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub timestamp: Option<Time>,
    /// The interval the usage was measured over (a Go duration, e.g. `15.004s`).
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// One container's usage within a PodMetrics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics")]
pub struct ContainerMetrics {
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// A pod's usage, by container (upstream `metrics.k8s.io/v1beta1` PodMetrics).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics")]
pub struct PodMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub timestamp: Option<Time>,
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// One reading of a cgroup: cumulative CPU and the memory working set at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub cpu_seconds: f64,
    pub memory_bytes: f64,
    pub timestamp_ms: i64,
}

/// `(namespace, pod)`.
pub type PodKey = (String, String);

/// What one kubelet scrape held: the node and each running container by pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scrape {
    pub node: Option<Point>,
    pub containers: BTreeMap<PodKey, BTreeMap<String, Point>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("line {line}: malformed sample")]
    Malformed { line: usize },
    #[error("line {line}: sample {metric} has no label {label}")]
    MissingLabel {
        line: usize,
        metric: String,
        label: &'static str,
    },
}

/// One line of the Prometheus text format.
struct Sample<'a> {
    name: &'a str,
    labels: BTreeMap<String, String>,
    value: f64,
    timestamp: Option<i64>,
}

/// Splits `name{labels} value [timestamp]` into its parts; labels unescaped.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let end = loop {
            // key
            let mut key = String::new();
            let mut end = None;
            for (i, c) in chars.by_ref() {
                match c {
                    '}' => {
                        end = Some(i);
                        break;
                    }
                    '=' => break,
                    ',' | ' ' => {}
                    c => key.push(c),
                }
            }
            if let Some(end) = end {
                break end;
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            let mut escaped = false;
            let mut closed = false;
            for (_, c) in chars.by_ref() {
                match (escaped, c) {
                    (true, 'n') => {
                        value.push('\n');
                        escaped = false;
                    }
                    (true, c) => {
                        value.push(c);
                        escaped = false;
                    }
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        closed = true;
                        break;
                    }
                    (false, c) => value.push(c),
                }
            }
            if !closed {
                return None;
            }
            labels.insert(key, value);
        };
        &body[end + 1..]
    } else {
        rest
    };
    let mut fields = rest.split_whitespace();
    let value: f64 = fields.next()?.parse().ok()?;
    let timestamp = match fields.next() {
        Some(t) => Some(t.parse().ok()?),
        None => None,
    };
    Some(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Parses a kubelet's `/metrics/resource`; samples without a timestamp are taken at
/// `now_ms`. A container or node appears only when both its CPU and memory were given.
pub fn parse_scrape(text: &str, now_ms: i64) -> Result<Scrape, ParseError> {
    #[derive(Default)]
    struct Partial {
        cpu: Option<(f64, i64)>,
        memory: Option<f64>,
    }
    let mut node = Partial::default();
    let mut containers: BTreeMap<PodKey, BTreeMap<String, Partial>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Sample {
            name,
            labels,
            value,
            timestamp: ts,
        } = parse_sample(line).ok_or(ParseError::Malformed { line: i + 1 })?;
        let ts = ts.unwrap_or(now_ms);
        let label = |l: &'static str| {
            labels.get(l).cloned().ok_or(ParseError::MissingLabel {
                line: i + 1,
                metric: name.to_string(),
                label: l,
            })
        };
        match name {
            "node_cpu_usage_seconds_total" => node.cpu = Some((value, ts)),
            "node_memory_working_set_bytes" => node.memory = Some(value),
            "container_cpu_usage_seconds_total" | "container_memory_working_set_bytes" => {
                let entry = containers
                    .entry((label("namespace")?, label("pod")?))
                    .or_default()
                    .entry(label("container")?)
                    .or_default();
                if name.starts_with("container_cpu") {
                    entry.cpu = Some((value, ts));
                } else {
                    entry.memory = Some(value);
                }
            }
            _ => {}
        }
    }
    let point = |p: &Partial| {
        let (cpu_seconds, timestamp_ms) = p.cpu?;
        Some(Point {
            cpu_seconds,
            memory_bytes: p.memory?,
            timestamp_ms,
        })
    };
    Ok(Scrape {
        node: point(&node),
        containers: containers
            .into_iter()
            .map(|(pod, cs)| {
                let points = cs
                    .iter()
                    .filter_map(|(name, p)| Some((name.clone(), point(p)?)))
                    .collect::<BTreeMap<_, _>>();
                (pod, points)
            })
            .filter(|(_, cs)| !cs.is_empty())
            .collect(),
    })
}

/// Usage over a window: CPU in nanocores, memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
}

/// Usage measured between two samples, stamped with the later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rated {
    pub usage: Usage,
    pub timestamp_ms: i64,
    pub window_ms: i64,
}

/// A pod's containers' usage (each container's between the same two scrapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub containers: Vec<(String, Usage)>,
    pub timestamp_ms: i64,
    pub window_ms: i64,
}

impl PodUsage {
    /// The pod's total usage: the sum of its containers'.
    pub fn total(&self) -> Usage {
        self.containers.iter().fold(
            Usage {
                cpu_nano_cores: 0,
                memory_bytes: 0,
            },
            |acc, (_, u)| Usage {
                cpu_nano_cores: acc.cpu_nano_cores + u.cpu_nano_cores,
                memory_bytes: acc.memory_bytes + u.memory_bytes,
            },
        )
    }
}

/// The rate between `prev` and `cur`, or `None` when `cur` is not later or its CPU
/// counter went back (the cgroup was made anew: a restart).
pub fn rate(prev: &Point, cur: &Point) -> Option<Rated> {
    let window_ms = cur.timestamp_ms - prev.timestamp_ms;
    if window_ms <= 0 || cur.cpu_seconds < prev.cpu_seconds {
        return None;
    }
    let cores = (cur.cpu_seconds - prev.cpu_seconds) / (window_ms as f64 / 1000.0);
    Some(Rated {
        usage: Usage {
            cpu_nano_cores: (cores * 1e9).round() as u64,
            memory_bytes: cur.memory_bytes.max(0.0) as u64,
        },
        timestamp_ms: cur.timestamp_ms,
        window_ms,
    })
}

/// Rates of one node between two of its scrapes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeRates {
    pub node: Option<Rated>,
    pub pods: BTreeMap<PodKey, PodUsage>,
}

/// Rates between two scrapes of one kubelet. As metrics-server, a pod is there only when
/// every one of its containers has a rate (a container seen once, or restarted, leaves
/// its pod out until the next scrape).
pub fn rates(prev: &Scrape, cur: &Scrape) -> NodeRates {
    let node = match (&prev.node, &cur.node) {
        (Some(p), Some(c)) => rate(p, c),
        _ => None,
    };
    let mut pods = BTreeMap::new();
    'pods: for (key, containers) in &cur.containers {
        let Some(before) = prev.containers.get(key) else {
            continue;
        };
        let mut rated = Vec::new();
        let (mut timestamp_ms, mut window_ms) = (0, 0);
        for (name, c) in containers {
            let Some(r) = before.get(name).and_then(|p| rate(p, c)) else {
                continue 'pods;
            };
            timestamp_ms = timestamp_ms.max(r.timestamp_ms);
            window_ms = window_ms.max(r.window_ms);
            rated.push((name.clone(), r.usage));
        }
        pods.insert(
            key.clone(),
            PodUsage {
                containers: rated,
                timestamp_ms,
                window_ms,
            },
        );
    }
    NodeRates { node, pods }
}

/// A duration as Go prints it (`metav1.Duration`): `15s`, `15.004s`, `1m0.5s`.
pub fn go_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let (minutes, rest) = (ms / 60_000, ms % 60_000);
    let seconds = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let s = format!("{}.{:03}", rest / 1000, rest % 1000);
        format!("{}s", s.trim_end_matches('0'))
    };
    if minutes > 0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

/// CPU nanocores as a canonical quantity (`250m`, `1500u`, `2`, `12345n`).
pub fn cpu_quantity(nano_cores: u64) -> Quantity {
    let text = [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")]
        .iter()
        .find(|(unit, _)| nano_cores.is_multiple_of(*unit))
        .map(|(unit, suffix)| format!("{}{suffix}", nano_cores / unit))
        .unwrap_or_else(|| format!("{nano_cores}n"));
    Quantity(text)
}

/// Bytes as a canonical binary quantity (`64Mi`, `1536Ki`, `1000`).
pub fn memory_quantity(bytes: u64) -> Quantity {
    let text = [(1u64 << 30, "Gi"), (1 << 20, "Mi"), (1 << 10, "Ki")]
        .iter()
        .find(|(unit, _)| bytes != 0 && bytes.is_multiple_of(*unit))
        .map(|(unit, suffix)| format!("{}{suffix}", bytes / unit))
        .unwrap_or_else(|| bytes.to_string());
    Quantity(text)
}

fn usage_map(u: Usage) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), cpu_quantity(u.cpu_nano_cores)),
        ("memory".to_string(), memory_quantity(u.memory_bytes)),
    ])
}

fn time_of(ms: i64) -> Option<Time> {
    Utc.timestamp_millis_opt(ms).single().map(Time)
}

fn meta(
    namespace: Option<&str>,
    name: &str,
    labels: Option<&Value>,
    now: DateTime<Utc>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: labels.and_then(|l| serde_json::from_value(l.clone()).ok()),
        creation_timestamp: Some(Time(now)),
        ..ObjectMeta::default()
    }
}

/// The NodeMetrics of node `name` (with the node's `labels`), served at `now`.
pub fn node_metrics(
    name: &str,
    labels: Option<&Value>,
    r: &Rated,
    now: DateTime<Utc>,
) -> NodeMetrics {
    NodeMetrics {
        api_version: Some(format!("{GROUP}/{VERSION}")),
        kind: Some("NodeMetrics".into()),
        metadata: meta(None, name, labels, now),
        timestamp: time_of(r.timestamp_ms),
        window: go_duration(r.window_ms),
        usage: usage_map(r.usage),
    }
}

/// The PodMetrics of pod `namespace/name` (with the pod's `labels`), served at `now`.
pub fn pod_metrics(
    namespace: &str,
    name: &str,
    labels: Option<&Value>,
    p: &PodUsage,
    now: DateTime<Utc>,
) -> PodMetrics {
    PodMetrics {
        api_version: Some(format!("{GROUP}/{VERSION}")),
        kind: Some("PodMetrics".into()),
        metadata: meta(Some(namespace), name, labels, now),
        timestamp: time_of(p.timestamp_ms),
        window: go_duration(p.window_ms),
        containers: p
            .containers
            .iter()
            .map(|(n, u)| ContainerMetrics {
                name: n.clone(),
                usage: usage_map(*u),
            })
            .collect(),
    }
}

/// A `…List` of metrics objects.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web"} 10.5 1000000
container_cpu_usage_seconds_total{container="side",namespace="default",pod="web"} 1 1000000
container_cpu_usage_seconds_total{container="x",namespace="o\"dd",pod="p"} 3 1000000
container_memory_working_set_bytes{container="app",namespace="default",pod="web"} 4.194304e+06 1000000
container_memory_working_set_bytes{container="side",namespace="default",pod="web"} 1024 1000000
node_cpu_usage_seconds_total 100 1000000
node_memory_working_set_bytes 2.147483648e+09 1000000
resource_scrape_error 0
"#;

    fn later(secs: f64, ms: i64) -> String {
        format!(
            "container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"web\"}} {} {ms}\n\
             container_memory_working_set_bytes{{container=\"app\",namespace=\"default\",pod=\"web\"}} 8192 {ms}\n\
             container_cpu_usage_seconds_total{{container=\"side\",namespace=\"default\",pod=\"web\"}} 1.15 {ms}\n\
             container_memory_working_set_bytes{{container=\"side\",namespace=\"default\",pod=\"web\"}} 1024 {ms}\n\
             node_cpu_usage_seconds_total 115 {ms}\n\
             node_memory_working_set_bytes 1000 {ms}\n",
            10.5 + secs
        )
    }

    #[test]
    fn a_scrape_parses_into_node_and_container_points() {
        let s = parse_scrape(SCRAPE, 0).unwrap();
        assert_eq!(
            s.node,
            Some(Point {
                cpu_seconds: 100.0,
                memory_bytes: 2147483648.0,
                timestamp_ms: 1_000_000
            })
        );
        let web = &s.containers[&("default".to_string(), "web".to_string())];
        assert_eq!(web["app"].cpu_seconds, 10.5);
        assert_eq!(web["app"].memory_bytes, 4194304.0);
        assert_eq!(web.len(), 2);
        // Only CPU given: no point, and so no pod.
        assert!(!s
            .containers
            .contains_key(&("o\"dd".to_string(), "p".to_string())));
        let no_ts = parse_scrape(
            "node_cpu_usage_seconds_total 1\nnode_memory_working_set_bytes 2\n",
            77,
        )
        .unwrap();
        assert_eq!(no_ts.node.unwrap().timestamp_ms, 77);
        assert_eq!(
            parse_scrape("node_cpu_usage_seconds_total\n", 0),
            Err(ParseError::Malformed { line: 1 })
        );
        assert!(matches!(
            parse_scrape("container_cpu_usage_seconds_total{pod=\"p\"} 1 2\n", 0),
            Err(ParseError::MissingLabel {
                label: "namespace",
                ..
            })
        ));
    }

    #[test]
    fn cpu_is_the_rate_between_two_scrapes_and_pods_need_every_container() {
        let prev = parse_scrape(SCRAPE, 0).unwrap();
        let cur = parse_scrape(&later(3.0, 1_015_000), 0).unwrap();
        let r = rates(&prev, &cur);
        assert_eq!(
            r.node,
            Some(Rated {
                usage: Usage {
                    cpu_nano_cores: 1_000_000_000,
                    memory_bytes: 1000
                },
                timestamp_ms: 1_015_000,
                window_ms: 15_000
            })
        );
        let web = &r.pods[&("default".to_string(), "web".to_string())];
        assert_eq!(web.window_ms, 15_000);
        assert_eq!(
            web.containers[0],
            (
                "app".to_string(),
                Usage {
                    cpu_nano_cores: 200_000_000,
                    memory_bytes: 8192
                }
            )
        );
        assert_eq!(web.containers[1].1.cpu_nano_cores, 10_000_000);
        assert_eq!(web.total().cpu_nano_cores, 210_000_000);
        // A restarted container (counter back to near zero) leaves the pod out.
        let restarted = parse_scrape(&later(-10.0, 1_015_000), 0).unwrap();
        assert!(rates(&prev, &restarted).pods.is_empty());
        // The same timestamp twice: no rate.
        assert!(rates(&prev, &prev).node.is_none());
        // A pod seen only in the later scrape has no rate yet.
        assert!(rates(&Scrape::default(), &cur).pods.is_empty());
    }

    #[test]
    fn quantities_and_windows_print_as_upstream() {
        assert_eq!(cpu_quantity(250_000_000).0, "250m");
        assert_eq!(cpu_quantity(2_000_000_000).0, "2");
        assert_eq!(cpu_quantity(1_500_000).0, "1500u");
        assert_eq!(cpu_quantity(12_345).0, "12345n");
        assert_eq!(cpu_quantity(0).0, "0");
        assert_eq!(memory_quantity(64 << 20).0, "64Mi");
        assert_eq!(memory_quantity(1536 * 1024).0, "1536Ki");
        assert_eq!(memory_quantity(1000).0, "1000");
        assert_eq!(memory_quantity(0).0, "0");
        assert_eq!(go_duration(15_000), "15s");
        assert_eq!(go_duration(15_004), "15.004s");
        assert_eq!(go_duration(15_100), "15.1s");
        assert_eq!(go_duration(60_500), "1m0.5s");
    }

    #[test]
    fn metrics_objects_serialize_as_metrics_server_serves_them() {
        let now = Utc.timestamp_millis_opt(2_000_000).unwrap();
        let labels = json!({"app": "web"});
        let pod = PodUsage {
            containers: vec![(
                "app".into(),
                Usage {
                    cpu_nano_cores: 5_000_000,
                    memory_bytes: 1 << 20,
                },
            )],
            timestamp_ms: 1_015_000,
            window_ms: 15_000,
        };
        let v =
            serde_json::to_value(pod_metrics("default", "web", Some(&labels), &pod, now)).unwrap();
        assert_eq!(v["kind"], "PodMetrics");
        assert_eq!(v["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(v["metadata"]["labels"]["app"], "web");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["window"], "15s");
        assert_eq!(
            v["containers"][0]["usage"],
            json!({"cpu": "5m", "memory": "1Mi"})
        );
        assert_eq!(v["timestamp"], "1970-01-01T00:16:55Z");
        let back: PodMetrics = serde_json::from_value(v).unwrap();
        assert_eq!(back.containers[0].name, "app");
        let l = list("NodeMetrics", vec![]);
        assert_eq!(l["kind"], "NodeMetricsList");
    }
}

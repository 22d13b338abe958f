//! Container probes (liveness, readiness, startup): when each is due, how results add up
//! against the thresholds (pure), and running one (exec in the container, HTTP GET or TCP
//! connect to the pod's address).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::agent::runtime::ContainerRuntime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// A probe's timing and thresholds (Kubernetes defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    pub action: Value,
}

impl ProbeSpec {
    /// The probe of `kind` in the container spec, if it has one.
    pub fn of(container: &Value, kind: ProbeKind) -> Option<ProbeSpec> {
        let p = &container[kind.field()];
        if !p.is_object() {
            return None;
        }
        let secs =
            |field: &str, default: u64| Duration::from_secs(p[field].as_u64().unwrap_or(default));
        let count =
            |field: &str, default: u32| p[field].as_u64().map_or(default, |n| n.max(1) as u32);
        Some(ProbeSpec {
            initial_delay: secs("initialDelaySeconds", 0),
            period: secs("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: secs("timeoutSeconds", 1).max(Duration::from_secs(1)),
            // Liveness and startup probes must use 1 (validation enforces it upstream).
            success_threshold: if kind == ProbeKind::Readiness {
                count("successThreshold", 1)
            } else {
                1
            },
            failure_threshold: count("failureThreshold", 3),
            action: p.clone(),
        })
    }
}

/// Where one probe of one container instance stands.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    pub last_run: Option<Instant>,
    successes: u32,
    failures: u32,
    /// The settled result: `None` until a threshold was first reached.
    pub result: Option<bool>,
}

impl ProbeState {
    /// Whether the probe should run now for an instance started at `started`.
    pub fn due(&self, spec: &ProbeSpec, started: Instant, now: Instant) -> bool {
        if now < started + spec.initial_delay {
            return false;
        }
        self.last_run.is_none_or(|t| now >= t + spec.period)
    }

    /// Adds one result; returns the settled result when it changed.
    pub fn record(&mut self, spec: &ProbeSpec, ok: bool, now: Instant) -> Option<bool> {
        self.last_run = Some(now);
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let settled = if self.successes >= spec.success_threshold {
            Some(true)
        } else if self.failures >= spec.failure_threshold {
            Some(false)
        } else {
            None
        };
        match settled {
            Some(r) if self.result != Some(r) => {
                self.result = Some(r);
                Some(r)
            }
            _ => None,
        }
    }

    /// Starts counting failures again (after a liveness kill).
    pub fn reset(&mut self) {
        *self = ProbeState::default();
    }
}

/// The port a probe names: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &Value, container: &Value) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).ok();
    }
    let name = port.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// Why a probe run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The check ran and failed (the message is the Unhealthy event's).
    #[error("{0}")]
    Failed(String),
    /// The check could not run because the runtime does not answer: as upstream does
    /// with prober errors, the result is thrown away (a containerd restart must not
    /// make healthy containers fail their liveness probes).
    #[error("{0}")]
    Unknown(String),
}

/// Runs a probe once.
pub async fn run_probe(
    spec: &ProbeSpec,
    container: &Value,
    container_id: &str,
    pod_ip: Option<IpAddr>,
    runtime: &dyn ContainerRuntime,
) -> Result<(), ProbeError> {
    let Some(cmd) = spec.action["exec"]["command"].as_array() else {
        return network_probe(spec, container, pod_ip)
            .await
            .map_err(ProbeError::Failed);
    };
    let cmd: Vec<String> = cmd
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let out = match runtime.exec(container_id, &cmd, spec.timeout).await {
        Ok(out) => out,
        Err(e) if e.is_unavailable() => return Err(ProbeError::Unknown(e.to_string())),
        Err(e) => return Err(ProbeError::Failed(e.to_string())),
    };
    if out.exit_code == 0 {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string()
        + String::from_utf8_lossy(&out.stderr).trim();
    Err(ProbeError::Failed(format!(
        "command {cmd:?} exited with {}: {text}",
        out.exit_code
    )))
}

/// An httpGet or tcpSocket probe; `Err` carries the failure message.
async fn network_probe(
    spec: &ProbeSpec,
    container: &Value,
    pod_ip: Option<IpAddr>,
) -> Result<(), String> {
    let action = &spec.action;
    let target = |section: &Value| -> Result<(String, u16), String> {
        let port = resolve_port(&section["port"], container)
            .ok_or_else(|| format!("probe port {} not found", section["port"]))?;
        let host = section["host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .or_else(|| pod_ip.map(|ip| ip.to_string()))
            .ok_or("the pod has no IP")?;
        Ok((host, port))
    };
    if action["httpGet"].is_object() {
        let http = &action["httpGet"];
        let (host, port) = target(http)?;
        let path = http["path"].as_str().unwrap_or("/");
        let headers: Vec<(String, String)> = http["httpHeaders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| Some((h["name"].as_str()?.into(), h["value"].as_str()?.into())))
            .collect();
        return tokio::time::timeout(spec.timeout, http_get(&host, port, path, &headers))
            .await
            .map_err(|_| format!("Get \"http://{host}:{port}{path}\": timeout"))?;
    }
    if action["tcpSocket"].is_object() {
        let (host, port) = target(&action["tcpSocket"])?;
        return match tokio::time::timeout(spec.timeout, TcpStream::connect((host.as_str(), port)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: timeout")),
        };
    }
    Err("probe has no exec, httpGet or tcpSocket action (grpc is not supported)".into())
}

/// One HTTP/1.0 GET; a status from 200 to 399 is success.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut req =
        format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let read = stream
            .read(&mut head[n..])
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        if read == 0 {
            break;
        }
        n += read;
    }
    let line = String::from_utf8_lossy(&head[..n]).to_string();
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(kind: ProbeKind, probe: Value) -> ProbeSpec {
        let mut c = json!({"name": "c"});
        c[kind.field()] = probe;
        ProbeSpec::of(&c, kind).unwrap()
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let s = spec(ProbeKind::Liveness, json!({"exec": {"command": ["true"]}}));
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        assert!(ProbeSpec::of(&json!({"name": "c"}), ProbeKind::Readiness).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn probes_wait_for_the_initial_delay_and_period() {
        let s = spec(
            ProbeKind::Readiness,
            json!({"initialDelaySeconds": 5, "periodSeconds": 2, "tcpSocket": {"port": 80}}),
        );
        let mut state = ProbeState::default();
        let started = Instant::now();
        assert!(!state.due(&s, started, started + Duration::from_secs(4)));
        let t = started + Duration::from_secs(5);
        assert!(state.due(&s, started, t));
        state.record(&s, true, t);
        assert!(!state.due(&s, started, t + Duration::from_secs(1)));
        assert!(state.due(&s, started, t + Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_settle_results() {
        let s = spec(
            ProbeKind::Readiness,
            json!({"successThreshold": 2, "failureThreshold": 2, "tcpSocket": {"port": 80}}),
        );
        let mut st = ProbeState::default();
        let now = Instant::now();
        assert_eq!(st.record(&s, true, now), None);
        assert_eq!(st.record(&s, true, now), Some(true));
        assert_eq!(st.record(&s, true, now), None);
        assert_eq!(st.record(&s, false, now), None);
        assert_eq!(st.record(&s, true, now), None);
        assert_eq!(st.record(&s, false, now), None);
        assert_eq!(st.record(&s, false, now), Some(false));
        assert_eq!(st.result, Some(false));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c = json!({"ports": [{"name": "http", "containerPort": 8080}]});
        assert_eq!(resolve_port(&json!("http"), &c), Some(8080));
        assert_eq!(resolve_port(&json!(81), &c), Some(81));
        assert_eq!(resolve_port(&json!("nope"), &c), None);
    }

    #[tokio::test]
    async fn http_and_tcp_probes_reach_a_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let rt = crate::agent::runtime::FakeRuntime::new();
        let ip = Some("127.0.0.1".parse().unwrap());
        let c = json!({"name": "c"});
        let http = spec(
            ProbeKind::Liveness,
            json!({"httpGet": {"port": port, "path": "/healthz"}}),
        );
        assert_eq!(run_probe(&http, &c, "x", ip, &rt).await, Ok(()));
        let err = run_probe(&http, &c, "x", ip, &rt).await.unwrap_err();
        assert!(
            matches!(&err, ProbeError::Failed(m) if m.contains("500")),
            "{err}"
        );
        let closed = spec(ProbeKind::Liveness, json!({"tcpSocket": {"port": 1}}));
        assert!(run_probe(&closed, &c, "x", ip, &rt).await.is_err());
    }

    #[tokio::test]
    async fn exec_probe_is_unknown_while_the_runtime_does_not_answer() {
        let rt = crate::agent::runtime::FakeRuntime::new();
        let c = json!({"name": "c"});
        let exec = spec(ProbeKind::Liveness, json!({"exec": {"command": ["true"]}}));
        rt.set_down(true);
        let err = run_probe(&exec, &c, "x", None, &rt).await.unwrap_err();
        assert!(matches!(err, ProbeError::Unknown(_)), "{err:?}");
        rt.set_down(false);
        // A container that is gone is a failure, not an unknown.
        let err = run_probe(&exec, &c, "x", None, &rt).await.unwrap_err();
        assert!(matches!(err, ProbeError::Failed(_)), "{err:?}");
    }
}

//! The API servers an agent may talk to, shared by all its clients: the one it joined
//! through, then every server the `default/kubernetes` Endpoints list (each server
//! keeps its address there, see `apiserver::peers`). Clients use the current server;
//! when it cannot be reached they move on to the next, so an agent whose server dies
//! reconnects to another one (watches resume, heartbeats continue) without touching
//! its pods. The list is kept on disk (`<data-dir>/agent/last-known/servers.json`), so
//! an agent restarted while the server it joined through is down starts with the
//! others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::last_known::LastKnownFile;
use super::{ApiClient, ServerAddr};

/// The last-known file (and its collection name) holding the server list.
pub const LAST_KNOWN: &str = "servers";

/// How often the list is refreshed from the `kubernetes` Endpoints.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(15);

/// The servers, in order of preference, and the one in use.
#[derive(Debug)]
pub struct Servers {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Always non-empty; the configured server stays in it.
    list: Vec<ServerAddr>,
    current: usize,
}

impl Servers {
    /// Only the configured server (`--join`, or the embedded agent's own server).
    pub fn new(configured: ServerAddr) -> Arc<Servers> {
        Servers::with_known(configured, Vec::new())
    }

    /// The configured server first, then the others known from an earlier run.
    pub fn with_known(configured: ServerAddr, known: Vec<ServerAddr>) -> Arc<Servers> {
        let mut list = vec![configured];
        for s in known {
            if !list.contains(&s) {
                list.push(s);
            }
        }
        Arc::new(Servers {
            inner: Mutex::new(Inner { list, current: 0 }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server to talk to now.
    pub fn current(&self) -> ServerAddr {
        let inner = self.lock();
        inner.list[inner.current].clone()
    }

    /// Every known server.
    pub fn all(&self) -> Vec<ServerAddr> {
        self.lock().list.clone()
    }

    /// `failed` could not be reached: moves on to the server after it, unless another
    /// client already did. Returns the server to try next.
    pub fn failed(&self, failed: &ServerAddr) -> ServerAddr {
        let mut inner = self.lock();
        if inner.list[inner.current] == *failed {
            inner.current = (inner.current + 1) % inner.list.len();
            let next = inner.list[inner.current].clone();
            if next != *failed {
                tracing::warn!(from = %failed.authority(), to = %next.authority(), "API server unreachable; failing over");
            }
        }
        inner.list[inner.current].clone()
    }

    /// Takes the servers the `kubernetes` Endpoints name. The current server stays in
    /// use while it is listed (no needless reconnects); the configured one is kept at
    /// the end as a last resort (it may come back, or the list may be stale). Returns
    /// whether the list changed.
    pub fn update(&self, listed: Vec<ServerAddr>, configured: &ServerAddr) -> bool {
        let mut inner = self.lock();
        let current = inner.list[inner.current].clone();
        let mut list: Vec<ServerAddr> = Vec::new();
        for s in listed.into_iter().chain([configured.clone()]) {
            if !list.contains(&s) {
                list.push(s);
            }
        }
        if list == inner.list {
            return false;
        }
        tracing::info!(servers = ?list.iter().map(ServerAddr::authority).collect::<Vec<_>>(), "API servers");
        inner.current = match list.iter().position(|s| *s == current) {
            Some(i) => i,
            None => {
                list.insert(0, current);
                0
            }
        };
        inner.list = list;
        true
    }
}

/// The servers kept by an earlier run (none when there is no readable file: the agent
/// then starts with the configured server alone, as on its first start).
pub fn load_known(file: &LastKnownFile) -> Vec<ServerAddr> {
    match file.load::<String>(LAST_KNOWN) {
        Ok(urls) => urls
            .unwrap_or_default()
            .iter()
            .filter_map(|url| ServerAddr::parse(url).ok())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %crate::agent::error_chain(&e), "ignoring the kept server list");
            Vec::new()
        }
    }
}

fn keep(file: &LastKnownFile, servers: &[ServerAddr]) {
    let urls: Vec<String> = servers.iter().map(ServerAddr::url).collect();
    let stored = LastKnownFile::encode(LAST_KNOWN, urls.iter())
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            file.store(&bytes)
                .map_err(|e| crate::agent::error_chain(&e))
        });
    if let Err(error) = stored {
        tracing::warn!(%error, "cannot keep the server list");
    }
}

/// The servers an Endpoints object lists (`https://IP:port` for each address of each
/// subset's `https` port).
pub fn from_endpoints(endpoints: &Value) -> Vec<ServerAddr> {
    let mut out = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let ports = subset["ports"].as_array();
        let Some(port) = ports.into_iter().flatten().find_map(|p| {
            let https = p["name"].as_str().is_none_or(|n| n == "https");
            https.then(|| p["port"].as_u64()).flatten()
        }) else {
            continue;
        };
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str() {
                out.push(ServerAddr {
                    host: ip.to_string(),
                    port,
                });
            }
        }
    }
    out
}

/// Refreshes `servers` from the `kubernetes` Endpoints every [`REFRESH_PERIOD`], until
/// the task is dropped, and keeps each new list in `file`. A failed read keeps the list
/// as it is.
pub async fn follow_endpoints(
    client: Arc<ApiClient>,
    servers: Arc<Servers>,
    configured: ServerAddr,
    file: LastKnownFile,
) {
    let mut ticker = tokio::time::interval(REFRESH_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match client
            .get("/api/v1/namespaces/default/endpoints/kubernetes")
            .await
        {
            Ok(resp) if resp.status.is_success() => {
                let listed = resp.json().map(|v| from_endpoints(&v)).unwrap_or_default();
                if !listed.is_empty() && servers.update(listed, &configured) {
                    keep(&file, &servers.all());
                }
            }
            Ok(resp) => {
                tracing::debug!(status = %resp.status, message = %resp.message(), "cannot read the kubernetes endpoints")
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the kubernetes endpoints"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addr(s: &str) -> ServerAddr {
        ServerAddr::parse(&format!("https://{s}")).unwrap()
    }

    #[test]
    fn endpoints_name_every_server_with_its_https_port() {
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
             "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
            {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 7443}]},
            {"addresses": [{"ip": "10.0.0.4"}], "ports": [{"name": "other", "port": 1}]},
        ]});
        assert_eq!(
            from_endpoints(&ep),
            vec![
                addr("10.0.0.1:6443"),
                addr("10.0.0.2:6443"),
                addr("10.0.0.3:7443")
            ]
        );
        assert!(from_endpoints(&json!({})).is_empty());
    }

    #[test]
    fn a_failed_server_hands_over_to_the_next_once() {
        let join = addr("10.0.0.1:6443");
        let servers = Servers::new(join.clone());
        // Alone, a failure leaves the only server in place.
        assert_eq!(servers.failed(&join), join);
        servers.update(vec![addr("10.0.0.1:6443"), addr("10.0.0.2:6443")], &join);
        assert_eq!(servers.current(), join);
        let next = servers.failed(&join);
        assert_eq!(next, addr("10.0.0.2:6443"));
        // Another client that saw the same failure does not skip the new server.
        assert_eq!(servers.failed(&join), next);
        // Round and round: after the last comes the first again.
        assert_eq!(servers.failed(&next), join);
    }

    #[test]
    fn an_update_keeps_the_current_server_and_the_configured_one() {
        let join = addr("10.0.0.1:6443");
        let servers = Servers::new(join.clone());
        servers.update(vec![addr("10.0.0.1:6443"), addr("10.0.0.2:6443")], &join);
        servers.failed(&join);
        assert_eq!(servers.current(), addr("10.0.0.2:6443"));
        // The joined server dropped out of the endpoints: it stays as a last resort.
        servers.update(vec![addr("10.0.0.2:6443"), addr("10.0.0.3:6443")], &join);
        assert_eq!(servers.current(), addr("10.0.0.2:6443"));
        assert_eq!(
            servers.all(),
            vec![addr("10.0.0.2:6443"), addr("10.0.0.3:6443"), join.clone()]
        );
        // The server in use is no longer listed (yet): it stays current until it fails.
        servers.update(vec![addr("10.0.0.3:6443")], &join);
        assert_eq!(servers.current(), addr("10.0.0.2:6443"));
        assert_eq!(servers.all().len(), 3);
        assert_eq!(
            servers.failed(&addr("10.0.0.2:6443")),
            addr("10.0.0.3:6443")
        );
    }

    #[test]
    fn the_kept_list_comes_back_after_the_configured_server() {
        let dir = tempfile::tempdir().unwrap();
        let file = LastKnownFile::at(dir.path().join("servers.json"));
        assert!(load_known(&file).is_empty(), "nothing kept yet");
        let join = addr("10.0.0.2:6443");
        keep(&file, &[addr("10.0.0.1:6443"), join.clone()]);
        let servers = Servers::with_known(join.clone(), load_known(&file));
        assert_eq!(servers.current(), join);
        assert_eq!(servers.all(), vec![join.clone(), addr("10.0.0.1:6443")]);
        // The configured server is down: the next is the one kept.
        assert_eq!(servers.failed(&join), addr("10.0.0.1:6443"));
        // A damaged file is ignored, not fatal.
        std::fs::write(file.path(), b"{not json").unwrap();
        assert!(load_known(&file).is_empty());
    }
}

//! The pod sandbox: pod directory, network namespace and address, shared IPC/UTS
//! namespaces, and the /etc/hosts, resolv.conf and hostname files.

use std::net::IpAddr;
use std::path::Path;

use chrono::Utc;
use tokio::time::Instant;
use tracing::warn;

use super::{error_chain, PodWorker, SELF_EXE};
use crate::agent::kubelet::pod_files;
use crate::agent::net::PodInterface;

/// The node's hosts file, the base of a host-network pod's.
const NODE_HOSTS_FILE: &str = "/etc/hosts";

impl PodWorker {
    pub(super) async fn ensure_sandbox(&mut self) {
        if self.start_time.is_none() {
            self.start_time = Some(Utc::now());
            self.active_since = Some(Instant::now());
        }
        let begun = Instant::now();
        match self.make_sandbox().await {
            Ok(()) => {
                tracing::debug!(pod = %self.name(), ms = begun.elapsed().as_millis() as u64, "pod sandbox ready");
                self.sandbox_ready = true;
                self.message = None;
            }
            Err((reason, message)) => {
                // Retried every sync: tell only when the problem changes.
                if self.message.as_ref() != Some(&(reason.clone(), message.clone())) {
                    warn!(pod = %self.name(), %reason, %message, "pod sandbox not ready");
                    self.event("Warning", &reason, &message, None).await;
                }
                self.message = Some((reason, message));
            }
        }
    }

    /// Waits until the pod is plugged into the network, if that is under way. On failure
    /// the sandbox is not ready any more: what was plugged is unplugged, the address given
    /// back, and the next sync makes the sandbox again. The error message, if any.
    pub(super) async fn await_network(&mut self) -> Result<(), String> {
        let Some(attach) = self.pending_attach.take() else {
            return Ok(());
        };
        let begun = Instant::now();
        let attached = match attach.await {
            Ok(result) => result.map_err(|e| error_chain(&e)),
            Err(e) => Err(format!("plugging the pod into the network: {e}")),
        };
        let message = match attached {
            Ok(ip) => {
                tracing::debug!(pod = %self.name(), waited_ms = begun.elapsed().as_millis() as u64, "pod network attached");
                if self.pod_ip != Some(IpAddr::V4(ip)) {
                    warn!(pod = %self.name(), %ip, pod_ip = ?self.pod_ip, "the pod was plugged in with another address than it was given");
                }
                return Ok(());
            }
            Err(message) => message,
        };
        let iface = PodInterface::new(self.uid.clone(), self.netns.clone());
        if let Err(e) = self.shared.network.detach_pod(&iface).await {
            warn!(pod = %self.name(), error = %error_chain(&e), "unplugging the pod after a failed attach failed");
        }
        self.sandbox_ready = false;
        self.pod_ip = None;
        let failure = ("FailedCreatePodSandBox".to_string(), message.clone());
        if self.message.as_ref() != Some(&failure) {
            warn!(pod = %self.name(), reason = %failure.0, %message, "pod sandbox not ready");
            self.event("Warning", &failure.0, &message, None).await;
        }
        self.message = Some(failure);
        Err(message)
    }

    async fn make_sandbox(&mut self) -> Result<(), (String, String)> {
        let sandbox_err = |m: String| ("FailedCreatePodSandBox".to_string(), m);
        if self.runtime_handler.is_none() {
            let handler = self
                .lookup_runtime_handler()
                .await
                .map_err(|e| sandbox_err(format!("Failed to create pod sandbox: {e}")))?;
            self.runtime_handler = Some(handler);
        }
        std::fs::create_dir_all(&self.pod_dir).map_err(|e| {
            sandbox_err(format!(
                "create pod directory {}: {e}",
                self.pod_dir.display()
            ))
        })?;
        let host_network = self.pod["spec"]["hostNetwork"].as_bool() == Some(true);
        let cfg = &self.shared.config;
        // The IPC/UTS namespaces (a thread that unshares, bind-mounts and ends) are made
        // while the network namespace and the volumes are. A pod on the host's network
        // has the host's UTS namespace but an IPC namespace of its own, as upstream.
        let ipc_uts = cfg.shared_ipc_uts.then(|| {
            let files = cfg.pod_namespaces(&self.uid);
            let hostname = pod_files::pod_hostname(&self.pod);
            tokio::task::spawn_blocking(move || files.create(&hostname))
        });
        // The network namespace (a thread that unshares, which the kernel takes its time
        // over) is made while the volumes are.
        let begun = Instant::now();
        let netns = self.netns_to_make(host_network).map(|path| {
            let net = self.shared.network.clone();
            async move { net.create_netns(&path).await }
        });
        let (netns, volumes) = tokio::join!(
            async move {
                let made = match netns {
                    Some(make) => make.await.map(|()| true),
                    None => Ok(false),
                };
                (made, begun.elapsed().as_millis() as u64)
            },
            async {
                let volumes = self.prepare_volumes().await;
                (volumes, begun.elapsed().as_millis() as u64)
            }
        );
        let ((made, netns_ms), (volumes, volumes_ms)) = (netns, volumes);
        let network = match made {
            Ok(made) => self.address_pod(host_network, made),
            Err(e) => Err(("FailedCreatePodSandBox".to_string(), error_chain(&e))),
        };
        let result = network
            .and_then(|()| self.write_etc_files())
            .and(volumes.map_err(|m| ("FailedMount".to_string(), m)));
        let begun = Instant::now();
        let namespaces = match ipc_uts {
            Some(made) => match made.await {
                Ok(result) => result.map_err(|e| format!("create IPC/UTS namespaces: {e}")),
                Err(e) => Err(format!("create IPC/UTS namespaces: {e}")),
            },
            None => Ok(()),
        };
        tracing::debug!(pod = %self.name(), netns_ms, volumes_ms, ipc_uts_wait_ms = begun.elapsed().as_millis() as u64, "pod sandbox steps");
        namespaces.map_err(sandbox_err)?;
        if self.shares_process_namespace() {
            let pid_ns = self.shared.config.pod_pid_namespace(&self.uid);
            tokio::task::spawn_blocking(move || pid_ns.create(Path::new(SELF_EXE)))
                .await
                .map_err(|e| e.to_string())
                .and_then(|made| made.map_err(|e| e.to_string()))
                .map_err(|e| sandbox_err(format!("create the shared PID namespace: {e}")))?;
        }
        result
    }

    /// The runtime handler of the pod's RuntimeClass (`None` without one: the node's
    /// default), which must be one of this node's. The error as upstream's kubelet and
    /// containerd word it.
    pub(super) async fn lookup_runtime_handler(&self) -> Result<Option<String>, String> {
        let Some(class) = self.pod["spec"]["runtimeClassName"]
            .as_str()
            .filter(|c| !c.is_empty())
        else {
            return Ok(None);
        };
        let object = self
            .shared
            .api
            .get_object("runtimeclasses", "", class)
            .await
            .map_err(|e| format!("failed to lookup RuntimeClass {class}: {}", error_chain(&e)))?
            .ok_or_else(|| format!("runtimeclass.node.k8s.io {class:?} not found"))?;
        let handler = object["handler"].as_str().unwrap_or_default();
        if !self
            .shared
            .config
            .runtime_handlers
            .iter()
            .any(|h| h == handler)
        {
            return Err(crate::agent::runtime::RuntimeError::UnknownHandler {
                handler: handler.to_string(),
            }
            .to_string());
        }
        Ok(Some(handler.to_string()))
    }

    /// The network namespace to make for the pod: none with the host's network or when
    /// re-adopted (the pod keeps its address and interface untouched).
    fn netns_to_make(&self, host_network: bool) -> Option<std::path::PathBuf> {
        if host_network {
            return None;
        }
        let adopted = self.shared.network.pod_ip(&self.uid).is_some()
            && crate::agent::net::is_netns(&self.netns);
        (!adopted).then(|| self.netns.clone())
    }

    /// The pod's address: the host's, the one it kept (re-adopted), or with its network
    /// namespace just `made` a new one, plugged in meanwhile (see
    /// [`Self::await_network`]).
    fn address_pod(&mut self, host_network: bool, made: bool) -> Result<(), (String, String)> {
        if host_network {
            self.pod_ip = Some(self.shared.config.host_ip);
            return Ok(());
        }
        let net = &self.shared.network;
        if !made {
            self.pod_ip = net.pod_ip(&self.uid).map(IpAddr::V4);
            return Ok(());
        }
        let ip = net
            .allocate_pod_ip(&self.uid)
            .map_err(|e| ("FailedCreatePodSandBox".to_string(), error_chain(&e)))?;
        // Plugging in (netlink: veth, addresses, routes) goes on while the rest of the
        // sandbox and the first container are made; the container's start waits for it.
        let iface = PodInterface::new(self.uid.clone(), self.netns.clone());
        let network = net.clone();
        self.pending_attach = Some(tokio::spawn(
            async move { network.attach_pod(&iface).await },
        ));
        self.pod_ip = Some(IpAddr::V4(ip));
        Ok(())
    }

    /// /etc/hosts (with the pod's address), resolv.conf and hostname for its containers.
    fn write_etc_files(&self) -> Result<(), (String, String)> {
        let cfg = &self.shared.config;
        let host_resolv = std::fs::read_to_string(&cfg.dns.host_resolv_conf).unwrap_or_default();
        let resolv = pod_files::render_resolv_conf(&self.pod, &cfg.dns, &host_resolv);
        let (hosts, hostname) = if self.pod["spec"]["hostNetwork"].as_bool() == Some(true) {
            // The node's hosts file and name (upstream's `nodeHostsFileContent`; the
            // sandbox of a host-network pod has the node's hostname).
            let node_hosts = std::fs::read_to_string(NODE_HOSTS_FILE).unwrap_or_default();
            let node_name = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                pod_files::render_host_network_hosts(&self.pod, &node_hosts),
                format!("{node_name}\n"),
            )
        } else {
            (
                pod_files::render_hosts(&self.pod, self.pod_ip, &cfg.dns.domain),
                format!("{}\n", pod_files::pod_hostname(&self.pod)),
            )
        };
        for (file, contents) in [
            ("etc-hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", hostname),
        ] {
            pod_files::write_if_changed(&self.pod_dir.join(file), contents.as_bytes())
                .map_err(|e| ("FailedCreatePodSandBox".to_string(), error_chain(&e)))?;
        }
        Ok(())
    }
}

//! The pod sandbox: pod directory, network namespace and address, shared IPC/UTS
//! namespaces, and the /etc/hosts, resolv.conf and hostname files.

use std::net::IpAddr;

use chrono::Utc;
use tokio::time::Instant;
use tracing::warn;

use super::{error_chain, PodWorker};
use crate::agent::kubelet::pod_files;
use crate::agent::net::PodInterface;

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

    async fn make_sandbox(&mut self) -> Result<(), (String, String)> {
        let sandbox_err = |m: String| ("FailedCreatePodSandBox".to_string(), m);
        std::fs::create_dir_all(&self.pod_dir).map_err(|e| {
            sandbox_err(format!(
                "create pod directory {}: {e}",
                self.pod_dir.display()
            ))
        })?;
        let host_network = self.pod["spec"]["hostNetwork"].as_bool() == Some(true);
        let net = &self.shared.network;
        if host_network {
            self.pod_ip = Some(self.shared.config.host_ip);
        } else {
            let existing = net.pod_ip(&self.uid);
            let have_netns = crate::agent::net::is_netns(&self.netns);
            self.pod_ip = match existing {
                // Re-adopted: the pod keeps its address and interface untouched.
                Some(ip) if have_netns => Some(IpAddr::V4(ip)),
                _ => {
                    net.create_netns(&self.netns)
                        .await
                        .map_err(|e| sandbox_err(error_chain(&e)))?;
                    let iface = PodInterface::new(self.uid.clone(), self.netns.clone());
                    let ip = net
                        .attach_pod(&iface)
                        .await
                        .map_err(|e| sandbox_err(error_chain(&e)))?;
                    Some(IpAddr::V4(ip))
                }
            };
        }
        let cfg = &self.shared.config;
        if cfg.shared_ipc_uts && !host_network {
            let files = cfg.pod_namespaces(&self.uid);
            files
                .create(&pod_files::pod_hostname(&self.pod))
                .map_err(|e| sandbox_err(format!("create IPC/UTS namespaces: {e}")))?;
        }
        let hosts = pod_files::render_hosts(&self.pod, self.pod_ip, &cfg.dns.domain);
        let host_resolv = std::fs::read_to_string(&cfg.dns.host_resolv_conf).unwrap_or_default();
        let resolv = pod_files::render_resolv_conf(&self.pod, &cfg.dns, &host_resolv);
        let hostname = format!("{}\n", pod_files::pod_hostname(&self.pod));
        for (file, contents) in [
            ("etc-hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", hostname),
        ] {
            pod_files::write_if_changed(&self.pod_dir.join(file), contents.as_bytes())
                .map_err(|e| sandbox_err(error_chain(&e)))?;
        }
        self.prepare_volumes()
            .await
            .map_err(|m| ("FailedMount".to_string(), m))
    }
}

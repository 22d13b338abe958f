//! The worker side of orc (`orc agent`, also embedded in `orc server`): join the cluster,
//! register this machine as a Node and keep it alive. Running pods is not part of it yet.

pub mod client;
pub mod join;
pub mod net;
pub mod node;
pub mod proxy;
pub mod runtime;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use client::{ApiClient, ServerAddr};
use join::{JoinConfig, JoinError};

/// The checked configuration an agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: ServerAddr,
    pub token: crate::tls::JoinToken,
    pub insecure_skip_ca_hash: bool,
    /// The orc data dir; the agent keeps its state in `agent/` below it.
    pub data_dir: PathBuf,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub node_labels: BTreeMap<String, String>,
    /// Not used yet: pods are not run by this build.
    pub containerd_socket: PathBuf,
}

impl AgentConfig {
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("use the node credential")]
    Credential(#[source] crate::tls::Error),
}

/// Joins (or reuses the stored credential), registers the Node, then heartbeats forever.
/// Returns only when joining fails in a way that needs the user.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let join = JoinConfig {
        server: config.server.clone(),
        token: config.token.clone(),
        insecure_skip_ca_hash: config.insecure_skip_ca_hash,
        node_name: config.node_name.clone(),
        agent_dir: config.agent_dir(),
    };
    join::check_token(&join.token, join.insecure_skip_ca_hash)?;
    let creds = join::obtain_credentials(&join).await?;
    let tls = crate::tls::client_config_pinned(
        &creds.ca_certificate,
        Some((&creds.certificate, &creds.key)),
    )
    .map_err(AgentError::Credential)?;
    let client = ApiClient::new(config.server.clone(), tls, None);
    tracing::info!(
        node = %config.node_name,
        server = %config.server.url(),
        containerd = %config.containerd_socket.display(),
        "orc agent is running (pods are not run by this build)"
    );
    node::Heartbeat::new(
        client,
        &config.node_name,
        config.node_ip,
        config.node_labels.clone(),
    )
    .run()
    .await;
    Ok(())
}

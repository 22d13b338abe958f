//! Controllers running inside `orc server`, reading the shared watch cache.

pub mod bootstrap;
pub mod events;
pub mod namespace;
pub mod node_ipam;
pub mod runtime;

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::apiserver::registry::Registry;

/// Starts every controller; they run until the returned set is aborted.
pub fn start(registry: Arc<Registry>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(namespace::run(registry.clone()));
    set
}

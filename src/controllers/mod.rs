//! Controllers running inside `orc server`, reading the shared watch cache.

pub mod bootstrap;
pub mod deployment;
pub mod events;
pub mod expectations;
pub mod namespace;
pub mod ownership;
pub mod pods;
pub mod replication;
pub mod runtime;
pub mod workers;
#[cfg(test)]
mod workload_tests;

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::apiserver::registry::Registry;

/// Starts every controller; they run until the returned set is aborted.
pub fn start(registry: Arc<Registry>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(namespace::run(registry.clone()));
    set.spawn(replication::run(
        registry.clone(),
        &replication::REPLICATION_CONTROLLER,
    ));
    set.spawn(replication::run(
        registry.clone(),
        &replication::REPLICA_SET,
    ));
    set.spawn(deployment::run(registry.clone()));
    set
}

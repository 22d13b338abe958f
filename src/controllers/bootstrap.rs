//! Objects every cluster has: the system namespaces, the built-in PriorityClasses, the
//! `kubernetes` Service and the `kube-system/kube-dns` Service reserving the cluster DNS
//! address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;

use crate::api::resources;
use crate::api::status::ApiError;
use crate::apiserver::peers::write_kubernetes_endpoints;
use crate::apiserver::registry::{Registry, WriteOptions, SYSTEM_NAMESPACES};

pub struct Bootstrap {
    /// Address agents and pods reach the API server at.
    pub advertise_ip: IpAddr,
    pub https_port: u16,
    /// The cluster DNS address (`--cluster-dns`), ClusterIP of `kube-system/kube-dns`.
    pub cluster_dns: Ipv4Addr,
    /// Servers on a shared datastore list each other in the `kubernetes` endpoints
    /// (`apiserver::peers`); a lone server writes only its own address here.
    pub endpoints_from_peers: bool,
}

fn ignore_exists(r: Result<impl Sized, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates what is missing (idempotent: run at every start).
pub async fn run(registry: &Registry, b: &Bootstrap) -> Result<(), ApiError> {
    let opts = WriteOptions::default();
    let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
    for ns in SYSTEM_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ignore_exists(registry.create(namespaces, None, body, &opts).await)?;
    }
    // The built-in PriorityClasses (upstream's scheduling bootstrap).
    let classes = crate::apiserver::registry::priority_classes();
    for pc in crate::apiserver::registry::system_priority_classes() {
        let name = crate::api::object::name(&pc).to_string();
        if registry.get(classes, None, &name).is_err() {
            ignore_exists(registry.create(classes, None, pc, &opts).await)?;
        }
    }
    let services = resources::by_plural("", "v1", "services").expect("served");
    let ip = registry.allocators.first_ip().to_string();
    if registry
        .get(services, Some("default"), "kubernetes")
        .is_err()
    {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "type": "ClusterIP", "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": b.https_port}]},
        });
        ignore_exists(registry.create(services, Some("default"), svc, &opts).await)?;
    }
    if registry
        .get(services, Some("kube-system"), "kube-dns")
        .is_err()
    {
        // Served by every node's own DNS server (no endpoints: the proxy leaves it alone).
        let svc = kube_dns_service(b.cluster_dns);
        if let Err(e) = ignore_exists(
            registry
                .create(services, Some("kube-system"), svc, &opts)
                .await,
        ) {
            tracing::warn!(cluster_dns = %b.cluster_dns, error = %e.message, "cannot reserve the cluster DNS address as Service kube-system/kube-dns: is another Service using it?");
        }
    }
    if !b.endpoints_from_peers {
        let own = SocketAddr::new(b.advertise_ip, b.https_port);
        write_kubernetes_endpoints(registry, &[own], b.https_port).await?;
    }
    Ok(())
}

/// `kube-system/kube-dns` as k3s and kubeadm clusters show it.
fn kube_dns_service(cluster_dns: Ipv4Addr) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
                                "kubernetes.io/cluster-service": "true"}},
        "spec": {"clusterIP": cluster_dns.to_string(), "type": "ClusterIP",
                 "sessionAffinity": "None",
                 "ports": [
                     {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                     {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testutil;

    fn bootstrap() -> Bootstrap {
        Bootstrap {
            advertise_ip: "192.0.2.1".parse().unwrap(),
            https_port: 6443,
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            endpoints_from_peers: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn kube_dns_reserves_the_cluster_dns_address_once() {
        let registry = testutil::registry().await;
        run(&registry, &bootstrap()).await.unwrap();
        run(&registry, &bootstrap()).await.unwrap();
        let services = resources::by_plural("", "v1", "services").unwrap();
        let dns = registry
            .get(services, Some("kube-system"), "kube-dns")
            .unwrap();
        assert_eq!(dns.value["spec"]["clusterIP"], "10.43.0.10");
        assert_eq!(dns.value["spec"]["ports"][0]["protocol"], "UDP");
        assert_eq!(dns.value["spec"]["ports"][1]["protocol"], "TCP");
        assert!(
            registry
                .allocators
                .allocate_ip(Some(Ipv4Addr::new(10, 43, 0, 10)))
                .is_err(),
            "no other Service gets the cluster DNS address"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_taken_cluster_dns_address_does_not_stop_the_server() {
        let registry = testutil::registry().await;
        let services = resources::by_plural("", "v1", "services").unwrap();
        let squatter = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "squatter", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.10", "ports": [{"port": 80}]},
        });
        registry
            .create(
                services,
                Some("default"),
                squatter,
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        run(&registry, &bootstrap()).await.unwrap();
        assert!(registry
            .get(services, Some("kube-system"), "kube-dns")
            .is_err());
    }
}

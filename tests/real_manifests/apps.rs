//! Application manifests users deploy: demo applications (Online Boutique, Sock Shop,
//! Bookinfo, emojivoto, the guestbooks), podinfo's kustomizations and homelab apps.

use super::*;

/// Every ReplicationController in `ns` has as many Pods as it asks for.
fn controllers_have_pods(s: &Server, ns: &str) {
    let controllers = s.get_json(&["replicationcontrollers", "-n", ns]);
    for rc in controllers["items"].as_array().into_iter().flatten() {
        let name = rc["metadata"]["name"].as_str().unwrap_or("").to_string();
        let want = rc["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        wait_until(
            SETTLE,
            &format!("replicationcontroller {ns}/{name}'s pods"),
            || {
                let pods = s.get_json(&["pods", "-n", ns]);
                let owned = pods["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| {
                        p["metadata"]["ownerReferences"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|r| {
                                r["kind"] == "ReplicationController" && r["name"] == name.as_str()
                            })
                    })
                    .count();
                (owned == want).then_some(())
            },
        );
    }
}

#[test]
fn demo_applications_install_reapply_and_uninstall() {
    // The microservice demos people deploy first: Google's Online Boutique, Weaveworks'
    // Sock Shop, Istio's Bookinfo, Linkerd's emojivoto and the Kubernetes examples'
    // guestbooks (the all-in-one Deployments, and guestbook-go's ReplicationControllers),
    // each applied as its README says, re-applied, applied server-side, diffed, deleted.
    let s = Server::start();
    for (name, objects, namespace) in [
        ("online-boutique", 35, "default"),
        ("sock-shop", 29, "sock-shop"),
        ("istio-bookinfo", 14, "default"),
        ("emojivoto", 11, "emojivoto"),
        ("guestbook-all-in-one", 6, "default"),
    ] {
        let file = manifest(&s, name);
        apply_twice(&s, &file, objects, &[]);
        deployments_have_pods(&s, namespace);
        server_side_twice(&s, &["-f", &file]);
        diff_is_empty(&s, &file);
        delete_all(
            &s,
            &file,
            &[namespace]
                .into_iter()
                .filter(|n| *n != "default")
                .collect::<Vec<_>>(),
        );
    }
    let file = manifest(&s, "guestbook-go");
    apply_twice(&s, &file, 6, &[]);
    controllers_have_pods(&s, "default");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    delete_all(&s, &file, &[]);
    // Sock Shop's services run as user 10001 with every capability dropped but
    // NET_BIND_SERVICE (lower-case `all`), as written.
    let file = manifest(&s, "sock-shop");
    s.ok(&["apply", "-f", &file]);
    let front = s.get_json(&["deployment", "-n", "sock-shop", "front-end"]);
    let security = &front["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(security["capabilities"]["drop"][0], "all", "{security}");
    assert_eq!(security["runAsUser"], 10001, "{security}");
    delete_all(&s, &file, &["sock-shop"]);
}

#[test]
fn podinfo_installs_its_kustomizations_with_their_database_and_jobs() {
    // stefanprodan/podinfo 6.14.1: `kubectl apply -k kustomize/` (a Deployment with its
    // HorizontalPodAutoscaler), the webapp demo (`kubectl apply -f deploy/webapp/…`), and
    // the dev overlay (a StatefulSet database with its claim, CronJobs, ConfigMaps from
    // generators, autoscalers).
    // Their containers' `cpu: 1000m`/`2000m` limits are stored in canonical form (`1`,
    // `2`): kubectl sends them again (`configured`, kubernetes#116135).
    let s = Server::start();
    let file = manifest(&s, "podinfo-kustomize");
    apply_twice(&s, &file, 3, &["deployment.apps/podinfo"]);
    deployments_have_pods(&s, "default");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    delete_all(&s, &file, &[]);

    let file = manifest(&s, "podinfo-webapp");
    apply_twice(
        &s,
        &file,
        11,
        &["deployment.apps/backend", "deployment.apps/frontend"],
    );
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    delete_all(&s, &file, &["webapp"]);

    let file = manifest(&s, "podinfo-dev");
    apply_twice(
        &s,
        &file,
        25,
        &[
            "deployment.apps/backend",
            "deployment.apps/cache",
            "deployment.apps/database-replica",
            "deployment.apps/frontend",
            "statefulset.apps/database-primary",
        ],
    );
    wait_until(SETTLE, "the database StatefulSet's first pod", || {
        s.kubectl(&["get", "pod", "-n", "dev", "database-primary-0"])
            .status
            .success()
            .then_some(())
    });
    // No node here: the claim waits for its first consumer to be scheduled.
    let claim = s.get_json(&["pvc", "-n", "dev", "database-primary"]);
    assert_eq!(claim["status"]["phase"], "Pending", "{claim}");
    let jobs = s.ok(&["get", "cronjobs", "-n", "dev", "-o", "name"]);
    assert_eq!(jobs.lines().count(), 4, "{jobs}");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    delete_all(&s, &file, &["dev"]);
}

#[test]
fn homelab_apps_install_with_their_claims_probes_and_ingress() {
    // Self-hosted apps as k3s homelab users commit them: Pi-hole (`kubectl apply -f
    // manifests/`: a claim on the default class, a ConfigMap mounted by subPath, a
    // NodePort Service with externalTrafficPolicy Local), a DNS stack (its own
    // WaitForFirstConsumer StorageClass for Rancher's provisioner, exec/tcp/http probes,
    // LoadBalancer Services) and Home Assistant (`kubectl apply -k overlay -n
    // home-assistant`: startup probes, an Ingress, `privileged: null`).
    let s = Server::start();
    let file = manifest(&s, "k3s-pi-hole");
    // As against any Kubernetes: the files hold `creationTimestamp: null` and
    // `status: {}`, explicit nulls kubectl sends on every apply.
    apply_twice(
        &s,
        &file,
        5,
        &[
            "configmap/pihole-custom-dnsmasq",
            "deployment.apps/pihole",
            "persistentvolumeclaim/pihole-config",
        ],
    );
    deployments_have_pods(&s, "default");
    let service = s.get_json(&["service", "pihole-tcp"]);
    assert_eq!(service["spec"]["ports"][1]["nodePort"], 30007, "{service}");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    delete_all(&s, &file, &[]);

    let file = manifest(&s, "homelab-dns");
    apply_twice(&s, &file, 9, &[]);
    deployments_have_pods(&s, "dns");
    let class = s.get_json(&["storageclass", "local-path-retain"]);
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    delete_all(&s, &file, &["dns"]);

    s.ok(&["create", "namespace", "home-assistant"]);
    let file = manifest(&s, "home-assistant");
    let args = ["-n", "home-assistant", "-f", &file];
    // `privileged: null` is sent again on every apply, as upstream.
    apply_twice_with(&s, &args, 5, &["deployment.apps/home-assistant"]);
    deployments_have_pods(&s, "home-assistant");
    server_side_twice(&s, &args);
    diff_is_empty_with(&s, &args);
    delete_all_with(&s, &args, &[]);
    s.ok(&["delete", "namespace", "home-assistant"]);
}

//! RBAC (issue 14) through the real binary and the real kubectl: the bootstrap policy
//! and its aggregated roles, `kubectl create role/clusterrole/rolebinding/
//! clusterrolebinding` with upstream's columns, validation errors, and a non-admin user
//! (a client certificate issued by the cluster CA) allowed and refused by RBAC, including
//! escalation prevention.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod support;
use support::server::{kubectl_with, wait_for, Server};

/// A kubeconfig for `user` in `groups`, with a client certificate from the server's CA
/// (issued from a copy of its TLS directory, so the server's own files stay untouched).
fn user_kubeconfig(server: &Server, user: &str, groups: &[&str]) -> PathBuf {
    let copy = server.dir.path().join(format!("tls-{user}"));
    std::fs::create_dir_all(&copy).expect("mkdir");
    let tls = server.data_dir().join("server/tls");
    for entry in std::fs::read_dir(&tls).expect("read tls dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy tls file");
    }
    let pki = orc::tls::Pki::load_or_create(&copy, &[]).expect("load the CA");
    let (cert, key) = pki.issue_client_cert(user, groups).expect("issue");
    let path = server.dir.path().join(format!("{user}.kubeconfig"));
    let text = orc::tls::admin_kubeconfig(&server.url(), pki.ca_cert_pem(), &cert, &key);
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn run(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = kubectl_with(kubeconfig, args, None);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn resources_of(role: &Value) -> Vec<String> {
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.as_str().map(String::from))
        .collect()
}

#[test]
fn bootstrap_policy_is_served_and_aggregated() {
    let server = Server::start();
    let names = server.ok(&["get", "clusterroles", "-o", "name"]);
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
    ] {
        assert!(
            names.contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}")),
            "{names}"
        );
    }
    wait_for(
        "admin to aggregate edit, view and aggregate-to-admin",
        || {
            let admin = server.get_json(&["clusterrole", "admin"]);
            let resources = resources_of(&admin);
            ["rolebindings", "deployments", "pods/log", "secrets"]
                .iter()
                .all(|r| resources.contains(&r.to_string()))
        },
    );
    let yaml = server.ok(&["get", "clusterrole", "admin", "-o", "yaml"]);
    assert!(
        yaml.contains("rbac.authorization.k8s.io/aggregate-to-admin"),
        "{yaml}"
    );
    assert!(yaml.contains("localsubjectaccessreviews"), "{yaml}");
    let table = server.ok(&["get", "clusterrole", "cluster-admin"]);
    assert!(
        table.starts_with("NAME") && table.contains("CREATED AT"),
        "{table}"
    );
    let bindings = server.ok(&["get", "clusterrolebinding", "cluster-admin", "-o", "wide"]);
    let header = bindings.lines().next().unwrap_or("");
    for column in ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"] {
        assert!(header.contains(column), "{bindings}");
    }
    assert!(
        bindings.contains("ClusterRole/cluster-admin") && bindings.contains("system:masters"),
        "{bindings}"
    );
}

#[test]
fn kubectl_creates_rbac_objects_and_invalid_ones_get_422s() {
    let server = Server::start();
    server.ok(&["create", "namespace", "dev"]);
    server.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list,watch",
        "--resource=pods",
        "-n",
        "dev",
    ]);
    server.ok(&[
        "create",
        "rolebinding",
        "readers",
        "--role=pod-reader",
        "--user=alice",
        "--serviceaccount=dev:ci",
        "-n",
        "dev",
    ]);
    server.ok(&[
        "create",
        "clusterrole",
        "secret-reader",
        "--verb=get",
        "--resource=secrets",
    ]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        "devs-secrets",
        "--clusterrole=secret-reader",
        "--group=devs",
    ]);
    let wide = server.ok(&["get", "rolebinding", "readers", "-n", "dev", "-o", "wide"]);
    assert!(
        wide.contains("Role/pod-reader") && wide.contains("alice") && wide.contains("dev/ci"),
        "{wide}"
    );
    let role = server.get_json(&["role", "pod-reader", "-n", "dev"]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );

    let no_verbs = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: bad, namespace: dev}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: []\n";
    let out = server.kubectl_stdin(&["create", "-f", "-"], no_verbs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("is invalid")
            && err
                .contains("rules[0].verbs: Required value: verbs must contain at least one value"),
        "{err}"
    );
    let urls_in_role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: bad, namespace: dev}\nrules:\n- nonResourceURLs: [/healthz]\n  verbs: [get]\n";
    let out = server.kubectl_stdin(&["create", "-f", "-"], urls_in_role);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("namespaced rules cannot apply to non-resource URLs"),
        "{err}"
    );
    let sa_without_ns = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bad}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects:\n- {kind: ServiceAccount, name: ci}\n";
    let out = server.kubectl_stdin(&["create", "-f", "-"], sa_without_ns);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("subjects[0].namespace: Required value"),
        "{err}"
    );
    let err = server.fails(&[
        "patch",
        "rolebinding",
        "readers",
        "-n",
        "dev",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"other"}}"#,
    ]);
    assert!(err.contains("cannot change roleRef"), "{err}");
}

#[test]
fn a_non_admin_user_gets_what_rbac_grants_and_cannot_escalate() {
    let server = Server::start();
    server.ok(&["create", "namespace", "dev"]);
    let alice = user_kubeconfig(&server, "alice", &["devs"]);
    let (ok, _, err) = run(&alice, &["get", "pods", "-n", "dev"]);
    assert!(!ok);
    assert!(
        err.contains(r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "dev""#),
        "{err}"
    );
    server.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list,watch",
        "--resource=pods",
        "-n",
        "dev",
    ]);
    server.ok(&[
        "create",
        "rolebinding",
        "alice-reads",
        "--role=pod-reader",
        "--user=alice",
        "-n",
        "dev",
    ]);
    server.ok(&[
        "create",
        "rolebinding",
        "devs-manage-roles",
        "--clusterrole=admin",
        "--group=devs",
        "-n",
        "dev",
    ]);
    wait_for("alice to read pods in dev", || {
        run(&alice, &["get", "pods", "-n", "dev"]).0
    });
    let (ok, _, err) = run(&alice, &["get", "pods", "-n", "default"]);
    assert!(!ok && err.contains("forbidden"), "{err}");
    // admin in dev lets alice manage roles there, but only with permissions she holds.
    let (ok, out, err) = run(
        &alice,
        &[
            "create",
            "role",
            "viewer",
            "--verb=get",
            "--resource=configmaps",
            "-n",
            "dev",
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(
        &alice,
        &[
            "create",
            "role",
            "node-admin",
            "--verb=delete",
            "--resource=nodes",
            "-n",
            "dev",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains(r#"roles.rbac.authorization.k8s.io "node-admin" is forbidden: user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#)
            && err.contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["delete"]}"#),
        "{err}"
    );
    let (ok, _, err) = run(
        &alice,
        &[
            "create",
            "rolebinding",
            "all-powerful",
            "--clusterrole=cluster-admin",
            "--user=alice",
            "-n",
            "dev",
        ],
    );
    assert!(
        !ok && err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let (ok, _, err) = run(
        &alice,
        &[
            "create",
            "clusterrolebinding",
            "mine",
            "--clusterrole=view",
            "--user=alice",
        ],
    );
    assert!(
        !ok && err.contains("cannot create resource \"clusterrolebindings\""),
        "{err}"
    );
}

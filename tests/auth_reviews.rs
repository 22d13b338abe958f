//! Who am I, what may I do, acting as someone else (issue 14) through the real binary
//! and the real kubectl: `kubectl auth whoami`, `kubectl auth can-i` (incl. `--list`
//! and `--as`), SubjectAccessReview, and impersonation allowed only with RBAC's
//! `impersonate`.

use serde_json::Value;

mod support;
use support::server::{kubectl_with, Server};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn whoami_names_the_caller_and_the_impersonated_user() {
    let s = Server::start();
    let me = s.ok(&["auth", "whoami", "-o", "json"]);
    let me: Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["kind"], "SelfSubjectReview");
    assert_eq!(me["status"]["userInfo"]["username"], "system:admin");
    let groups = me["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("system:masters") && groups.contains("system:authenticated"),
        "{groups}"
    );

    let jane = s.ok(&[
        "auth",
        "whoami",
        "--as",
        "jane",
        "--as-group",
        "dev",
        "--as-uid",
        "u-7",
        "-o",
        "json",
    ]);
    let jane: Value = serde_json::from_str(&jane).unwrap();
    let info = &jane["status"]["userInfo"];
    assert_eq!(info["username"], "jane");
    assert_eq!(info["uid"], "u-7");
    assert_eq!(
        info["groups"],
        serde_json::json!(["dev", "system:authenticated"])
    );

    // A group without a user is a bad request, as upstream.
    let client = s.client(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let resp = rt.block_on(async {
        client
            .get(format!("{}/api/v1/namespaces/default/pods", s.url()))
            .header("Impersonate-Group", "system:masters")
            .send()
            .await
            .unwrap()
    });
    assert_eq!(resp.status().as_u16(), 400);
}

#[test]
fn can_i_follows_rbac_for_the_impersonated_user() {
    let s = Server::start();
    assert_eq!(s.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    s.ok(&["create", "namespace", "dev"]);
    s.ok(&["create", "namespace", "prod"]);

    let no = s.kubectl(&["auth", "can-i", "get", "pods", "-n", "dev", "--as", "jane"]);
    assert_eq!(no.status.code(), Some(1), "{}", stderr(&no));
    assert_eq!(stdout(&no).trim(), "no");

    s.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "dev",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "jane-reads",
        "-n",
        "dev",
        "--role=pod-reader",
        "--user=jane",
    ]);
    support::wait::wait_until(
        support::server::DEADLINE,
        "jane may get pods in dev",
        || {
            stdout(&s.kubectl(&["auth", "can-i", "get", "pods", "-n", "dev", "--as", "jane"]))
                .trim()
                == "yes"
        },
    );
    let prod = s.kubectl(&["auth", "can-i", "get", "pods", "-n", "prod", "--as", "jane"]);
    assert_eq!(stdout(&prod).trim(), "no");
    // The impersonated user really is jane: she lists pods in dev, not in prod.
    s.ok(&["get", "pods", "-n", "dev", "--as", "jane"]);
    let refused = s.fails(&["get", "pods", "-n", "prod", "--as", "jane"]);
    assert!(
        refused.contains("User \"jane\" cannot list resource \"pods\""),
        "{refused}"
    );

    let list = s.ok(&["auth", "can-i", "--list", "-n", "dev", "--as", "jane"]);
    let pods_line = list
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods rule in\n{list}"));
    assert!(pods_line.contains("[get list]"), "{list}");
    // system:basic-user lets every user review their own access.
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    let admin = s.ok(&["auth", "can-i", "--list"]);
    assert!(admin.lines().any(|l| l.starts_with("*.* ")), "{admin}");
}

#[test]
fn subject_access_reviews_answer_for_any_user() {
    let s = Server::start();
    s.ok(&[
        "create",
        "clusterrole",
        "node-viewer",
        "--verb=get,list",
        "--resource=nodes",
    ]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "ops-view-nodes",
        "--clusterrole=node-viewer",
        "--group=ops",
    ]);
    let review = |user: &str, group: &str| -> Value {
        let yaml = format!(
            "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: {user}\n  groups: [{group}]\n  resourceAttributes:\n    verb: list\n    resource: nodes\n"
        );
        let out = s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &yaml);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let mut allowed = false;
    for _ in 0..50 {
        allowed = review("amy", "ops")["status"]["allowed"] == true;
        if allowed {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(allowed, "a member of ops may list nodes");
    assert_eq!(review("amy", "dev")["status"]["allowed"], false);

    // Neither user nor group: 422 naming the field; nothing to show for it.
    let bad = "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  resourceAttributes:\n    verb: list\n    resource: nodes\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], bad);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at least one of user or group must be specified"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let s = Server::start();
    s.ok(&["create", "namespace", "ci"]);
    s.ok(&["create", "serviceaccount", "deployer", "-n", "ci"]);
    let token = s.ok(&["create", "token", "deployer", "-n", "ci"]);
    let kubeconfig = s.token_kubeconfig(token.trim());
    let as_sa = |args: &[&str]| kubectl_with(&kubeconfig, args, None);

    let whoami = as_sa(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(
        stdout(&whoami),
        "system:serviceaccount:ci:deployer",
        "{}",
        stderr(&whoami)
    );

    // (Discovery is refused too, as upstream: ask with --raw to see the Status.)
    let refused = as_sa(&["get", "--raw", "/api/v1/namespaces/ci/pods", "--as", "jane"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            "users \"jane\" is forbidden: User \"system:serviceaccount:ci:deployer\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{}",
        stderr(&refused)
    );

    s.ok(&[
        "create",
        "clusterrole",
        "impersonate-jane",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=jane",
    ]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "deployer-as-jane",
        "--clusterrole=impersonate-jane",
        "--serviceaccount=ci:deployer",
    ]);
    let mut name = String::new();
    for _ in 0..50 {
        name = stdout(&as_sa(&[
            "auth",
            "whoami",
            "--as",
            "jane",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]));
        if name == "jane" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(name, "jane");
    // Only jane: another user or a group is still refused.
    let bob = as_sa(&["get", "--raw", "/api/v1/namespaces/ci/pods", "--as", "bob"]);
    assert!(
        stderr(&bob).contains("cannot impersonate resource \"users\""),
        "{}",
        stderr(&bob)
    );
    let group = as_sa(&[
        "get",
        "pods",
        "--as",
        "jane",
        "--as-group",
        "system:masters",
    ]);
    assert!(
        stderr(&group).contains("groups \"system:masters\" is forbidden"),
        "{}",
        stderr(&group)
    );
}

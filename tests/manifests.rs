//! Auto-deployed manifests through the real binary: files in
//! `<data-dir>/server/manifests/` are applied at start and when they change; a `.skip`
//! file keeps one out; a bad file gets an event naming it while the others still apply.

mod support;

use std::path::PathBuf;

use support::server::{wait_for, Server};

fn manifests(s: &Server) -> PathBuf {
    s.data_dir().join("server/manifests")
}

fn config_map_value(s: &Server, ns: &str, name: &str) -> Option<String> {
    let out = s.kubectl(&[
        "get",
        "configmap",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

const APP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: hello
  namespace: demo
data:
  greeting: GREETING
---
# The namespace comes second in the file: namespaces are applied first.
apiVersion: v1
kind: Namespace
metadata:
  name: demo
";

#[test]
fn manifests_apply_at_start_and_on_change_skip_files_stay_out_bad_files_are_reported() {
    let mut s = Server::start();
    let dir = manifests(&s);
    // The manifests controller creates it as it starts, a moment after the API is ready.
    wait_for("the server to create its manifests directory", || {
        dir.is_dir()
    });

    // Written before a restart: applied at start.
    std::fs::write(dir.join("app.yaml"), APP.replace("GREETING", "hello")).unwrap();
    std::fs::write(
        dir.join("off.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: off, namespace: default}\n",
    )
    .unwrap();
    std::fs::write(dir.join("off.yaml.skip"), "").unwrap();
    s.kill9();
    s.spawn();
    wait_for("app.yaml to be applied at start", || {
        config_map_value(&s, "demo", "hello").as_deref() == Some("hello")
    });

    // Applied server-side by field manager orc-deploy; an edit by hand is overwritten
    // when the file changes (the file wins, as k3s's deploy controller).
    let cm = s.get_json(&["cm", "hello", "-n", "demo", "--show-managed-fields"]);
    assert_eq!(
        cm["metadata"]["managedFields"][0]["manager"], "orc-deploy",
        "{cm}"
    );
    assert_eq!(
        cm["metadata"]["managedFields"][0]["operation"], "Apply",
        "{cm}"
    );
    s.ok(&[
        "patch",
        "cm",
        "hello",
        "-n",
        "demo",
        "-p",
        r#"{"data":{"greeting":"by hand"}}"#,
    ]);

    // Changed: applied again.
    std::fs::write(dir.join("app.yaml"), APP.replace("GREETING", "bonjour")).unwrap();
    wait_for("the changed app.yaml to be applied", || {
        config_map_value(&s, "demo", "hello").as_deref() == Some("bonjour")
    });

    // A file that does not parse and one with a refused object: events and log lines
    // naming them; a good file written at the same time still applies.
    std::fs::write(
        dir.join("broken.yaml"),
        "kind: ConfigMap\nmetadata: [unclosed\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("refused.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_A_Name}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: beside-refused}\ndata: {greeting: fine}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("later.yml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {greeting: hi}\n",
    )
    .unwrap();
    wait_for(
        "later.yml and the good half of refused.yaml to be applied",
        || {
            config_map_value(&s, "default", "later").as_deref() == Some("hi")
                && config_map_value(&s, "default", "beside-refused").as_deref() == Some("fine")
        },
    );
    wait_for("events naming broken.yaml and refused.yaml", || {
        let events = s.ok(&[
            "get",
            "events",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        events.contains("broken.yaml: document 1")
            && events.contains("refused.yaml: ConfigMap Not_A_Name")
    });
    let log = s.log();
    assert!(
        log.contains("manifest not applied") && log.contains("broken.yaml"),
        "{log}"
    );
    assert!(
        config_map_value(&s, "default", "off").is_none(),
        "a skipped manifest was applied"
    );

    // Fixed: applied without a restart.
    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fixed}\ndata: {greeting: ok}\n",
    )
    .unwrap();
    wait_for("the fixed broken.yaml to be applied", || {
        config_map_value(&s, "default", "fixed").as_deref() == Some("ok")
    });
}

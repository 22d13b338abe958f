//! Table tests of the checks and the policy, with upstream's fixtures and messages.

use serde_json::{json, Value};

use super::*;

fn restricted() -> LevelVersion {
    LevelVersion {
        level: Level::Restricted,
        version: Version::Latest,
    }
}

fn baseline() -> LevelVersion {
    LevelVersion {
        level: Level::Baseline,
        version: Version::Latest,
    }
}

fn one(check: CheckFn, spec: Value) -> Option<(String, String)> {
    check(&json!({}), &spec).map(|f| (f.reason, f.detail))
}

fn fails(check: CheckFn, spec: Value, reason: &str, detail: &str) {
    assert_eq!(
        one(check, spec.clone()),
        Some((reason.to_string(), detail.to_string())),
        "{spec}"
    );
}

fn passes(check: CheckFn, spec: Value) {
    assert_eq!(one(check, spec.clone()), None, "{spec}");
}

#[test]
fn capabilities_restricted_as_upstream() {
    fails(
        checks::capabilities_restricted_1_25,
        json!({"containers": [
            {"name": "a", "securityContext": {"capabilities": {"add": ["FOO", "BAR"]}}},
            {"name": "b", "securityContext": {"capabilities": {"add": ["BAR", "BAZ"], "drop": ["NET_RAW"]}}},
            {"name": "c", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}}},
        ]}),
        "unrestricted capabilities",
        r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#,
    );
    passes(
        checks::capabilities_restricted_1_25,
        json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}),
    );
    fails(
        checks::capabilities_restricted_1_22,
        json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}),
        "unrestricted capabilities",
        r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#,
    );
}

#[test]
fn capabilities_baseline_allows_the_default_set() {
    passes(
        checks::capabilities_baseline_1_0,
        json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]}}}]}),
    );
    fails(
        checks::capabilities_baseline_1_0,
        json!({"containers": [
            {"name": "a", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}},
            {"name": "b", "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]}}},
        ]}),
        "non-default capabilities",
        r#"containers "a", "b" must not include "NET_ADMIN", "SYS_ADMIN" in securityContext.capabilities.add"#,
    );
}

#[test]
fn seccomp_restricted_as_upstream() {
    let check = checks::seccomp_profile_restricted_1_25;
    fails(
        check,
        json!({"containers": [{"name": "a"}]}),
        "seccompProfile",
        r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
    );
    passes(
        check,
        json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}),
    );
    fails(
        check,
        json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]}),
        "seccompProfile",
        r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
    fails(
        check,
        json!({"securityContext": {"seccompProfile": {"type": "Localhost"}}, "containers": [
            {"name": "a"},
            {"name": "b", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            {"name": "d", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        ]}),
        "seccompProfile",
        r#"containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
    fails(
        check,
        json!({"containers": [
            {"name": "a"},
            {"name": "b"},
            {"name": "c", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
        ]}),
        "seccompProfile",
        r#"pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
    );
}

#[test]
fn seccomp_baseline_judges_annotations_before_1_19() {
    let meta = json!({"annotations": {
        "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
        "container.seccomp.security.alpha.kubernetes.io/a": "runtime/default",
        "container.seccomp.security.alpha.kubernetes.io/b": "unconfined",
    }});
    let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
    let f = checks::seccomp_profile_baseline_1_0(&meta, &spec).expect("forbidden");
    assert_eq!(
        f.detail,
        r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/b="unconfined", seccomp.security.alpha.kubernetes.io/pod="unconfined""#
    );
    let lv = LevelVersion {
        level: Level::Baseline,
        version: Version::Minor(18),
    };
    assert_eq!(evaluate(lv, &meta, &spec).len(), 1);
    assert!(evaluate(baseline(), &meta, &spec).is_empty());
}

#[test]
fn host_ports_as_upstream() {
    fails(
        checks::host_ports_1_0,
        json!({"containers": [
            {"name": "a", "ports": [{"containerPort": 1}]},
            {"name": "b", "ports": [{"hostPort": 0}, {"hostPort": 20}]},
        ]}),
        "hostPort",
        r#"container "b" uses hostPort 20"#,
    );
    fails(
        checks::host_ports_1_0,
        json!({"containers": [
            {"name": "a"},
            {"name": "b", "ports": [{"hostPort": 10}, {"hostPort": 20}]},
            {"name": "c", "ports": [{"hostPort": 20}, {"hostPort": 30}]},
        ]}),
        "hostPort",
        r#"containers "b", "c" use hostPorts 10, 20, 30"#,
    );
}

#[test]
fn restricted_volumes_name_each_type() {
    fails(
        checks::restricted_volumes_1_0,
        json!({"volumes": [
            {"name": "a", "emptyDir": {}},
            {"name": "b", "hostPath": {"path": "/"}},
            {"name": "c", "nfs": {"server": "x", "path": "/"}},
            {"name": "d", "secret": {}},
            {"name": "e", "hostPath": {"path": "/x"}},
            {"name": "f"},
        ]}),
        "restricted volume types",
        r#"volumes "b", "c", "e", "f" use restricted volume types "hostPath", "nfs", "unknown""#,
    );
    fails(
        checks::host_path_volumes_1_0,
        json!({"volumes": [{"name": "b", "hostPath": {"path": "/"}}]}),
        "hostPath volumes",
        r#"volume "b""#,
    );
}

#[test]
fn app_armor_as_upstream() {
    fails(
        checks::app_armor_profile_1_0,
        json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}, "containers": [{"name": "a"}]}),
        "forbidden AppArmor profile",
        r#"pod must not set AppArmor profile type to "Unconfined""#,
    );
    fails(
        checks::app_armor_profile_1_0,
        json!({"initContainers": [{"name": "bar", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}], "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}]}),
        "forbidden AppArmor profile",
        r#"container "bar" must not set AppArmor profile type to "Unconfined""#,
    );
    let meta = json!({"annotations": {
        "container.apparmor.security.beta.kubernetes.io/a": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/b": "localhost/x",
    }});
    let f = checks::app_armor_profile_1_0(&meta, &json!({"containers": [{"name": "a"}]}))
        .expect("forbidden");
    assert_eq!(f.reason, "forbidden AppArmor profile");
    assert_eq!(
        f.detail,
        r#"annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/a="unconfined"""#
    );
}

#[test]
fn host_namespaces_privileged_proc_mount_and_host_process() {
    fails(
        checks::host_namespaces_1_0,
        json!({"hostNetwork": true, "hostIPC": true, "containers": []}),
        "host namespaces",
        "hostNetwork=true, hostIPC=true",
    );
    fails(
        checks::privileged_1_0,
        json!({"containers": [{"name": "a", "securityContext": {"privileged": true}}, {"name": "b", "securityContext": {"privileged": false}}]}),
        "privileged",
        r#"container "a" must not set securityContext.privileged=true"#,
    );
    fails(
        checks::proc_mount_1_0,
        json!({"containers": [{"name": "a", "securityContext": {"procMount": "Default"}}, {"name": "b", "securityContext": {"procMount": "Unmasked"}}]}),
        "procMount",
        r#"container "b" must not set securityContext.procMount to "Unmasked""#,
    );
    fails(
        checks::windows_host_process_1_0,
        json!({"securityContext": {"windowsOptions": {"hostProcess": true}}, "containers": [{"name": "a", "securityContext": {"windowsOptions": {"hostProcess": true}}}]}),
        "hostProcess",
        r#"pod and container "a" must not set securityContext.windowsOptions.hostProcess=true"#,
    );
}

#[test]
fn se_linux_options_as_upstream() {
    fails(
        checks::se_linux_options_1_31,
        json!({"securityContext": {"seLinuxOptions": {"type": "foo"}}, "containers": [
            {"name": "a", "securityContext": {"seLinuxOptions": {"type": "bar", "user": "u"}}},
            {"name": "b", "securityContext": {"seLinuxOptions": {"type": "container_engine_t", "role": "r"}}},
            {"name": "c", "securityContext": {"seLinuxOptions": {"type": "container_t"}}},
        ]}),
        "seLinuxOptions",
        r#"pod and containers "a", "b" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#,
    );
    fails(
        checks::se_linux_options_1_0,
        json!({"containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}]}),
        "seLinuxOptions",
        r#"container "a" set forbidden securityContext.seLinuxOptions: type "container_engine_t""#,
    );
}

#[test]
fn sysctls_grow_with_the_version() {
    let spec = json!({"securityContext": {"sysctls": [
        {"name": "net.ipv4.tcp_rmem"}, {"name": "kernel.msgmax"}, {"name": "net.ipv4.tcp_syncookies"},
    ]}, "containers": []});
    fails(
        checks::sysctls_1_29,
        spec.clone(),
        "forbidden sysctls",
        "net.ipv4.tcp_rmem, kernel.msgmax",
    );
    fails(
        checks::sysctls_1_32,
        spec,
        "forbidden sysctls",
        "kernel.msgmax",
    );
}

#[test]
fn run_as_non_root_and_user() {
    fails(
        checks::run_as_non_root_1_0,
        json!({"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a", "securityContext": {"runAsNonRoot": false}}, {"name": "b"}]}),
        "runAsNonRoot != true",
        r#"pod and container "a" must not set securityContext.runAsNonRoot=false"#,
    );
    fails(
        checks::run_as_non_root_1_0,
        json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"runAsNonRoot": true}}, {"name": "c"}]}),
        "runAsNonRoot != true",
        r#"pod or containers "a", "c" must set securityContext.runAsNonRoot=true"#,
    );
    passes(
        checks::run_as_non_root_1_0,
        json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "a"}]}),
    );
    fails(
        checks::run_as_user_1_23,
        json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "a", "securityContext": {"runAsUser": 0}}, {"name": "b", "securityContext": {"runAsUser": 1000}}]}),
        "runAsUser=0",
        r#"pod and container "a" must not set runAsUser=0"#,
    );
}

#[test]
fn allow_privilege_escalation_unless_explicitly_false() {
    fails(
        checks::allow_privilege_escalation_1_25,
        json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"allowPrivilegeEscalation": true}}, {"name": "c", "securityContext": {"allowPrivilegeEscalation": false}}]}),
        "allowPrivilegeEscalation != false",
        r#"containers "a", "b" must set securityContext.allowPrivilegeEscalation=false"#,
    );
}

/// A plain `nginx` pod under restricted: the message kubectl shows upstream.
#[test]
fn a_plain_pod_fails_restricted_in_upstream_order() {
    let spec = json!({"containers": [{"name": "nginx", "image": "nginx"}]});
    let results = evaluate(restricted(), &json!({}), &spec);
    assert_eq!(
        forbidden_detail(&results),
        r#"allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    assert!(evaluate(baseline(), &json!({}), &spec).is_empty());
    let compliant = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "nginx", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
    });
    assert!(evaluate(restricted(), &json!({}), &compliant).is_empty());
}

#[test]
fn restricted_overrides_its_baseline_counterparts_by_version() {
    let spec = json!({
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
    });
    let reasons = |version| {
        forbidden_reason(&evaluate(
            LevelVersion {
                level: Level::Restricted,
                version,
            },
            &json!({}),
            &spec,
        ))
    };
    assert_eq!(
        reasons(Version::Latest),
        "allowPrivilegeEscalation != false, unrestricted capabilities, restricted volume types, runAsNonRoot != true, seccompProfile"
    );
    // Before 1.22 the baseline capabilities check stands in; before 1.8 there is no
    // privilege-escalation check, before 1.19 no seccomp one.
    assert_eq!(
        reasons(Version::Minor(7)),
        "non-default capabilities, restricted volume types, runAsNonRoot != true"
    );
    assert_eq!(reasons(Version::Minor(99)), reasons(Version::Latest));
}

#[test]
fn versions_parse_as_upstream() {
    assert_eq!(Version::parse("latest"), Ok(Version::Latest));
    assert_eq!(Version::parse("v1.0"), Ok(Version::Minor(0)));
    assert_eq!(Version::parse("v1.32"), Ok(Version::Minor(32)));
    for bad in ["v1.01", "1.32", "v2.0", "v1.", "v1.x", ""] {
        assert_eq!(
            Version::parse(bad),
            Err("must be \"latest\" or \"v1.x\""),
            "{bad}"
        );
    }
}

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn warn_follows_a_stricter_enforce_level() {
    let (p, errs) = policy_to_evaluate(
        &labels(json!({ENFORCE_LEVEL_LABEL: "restricted", ENFORCE_VERSION_LABEL: "v1.30"})),
        Policy::default(),
    );
    assert!(errs.is_empty());
    assert_eq!(p.enforce.to_string(), "restricted:v1.30");
    assert_eq!(p.warn.to_string(), "restricted:v1.30");
    assert_eq!(p.audit.to_string(), "privileged:latest");
    let (p, _) = policy_to_evaluate(
        &labels(json!({ENFORCE_LEVEL_LABEL: "baseline", WARN_LEVEL_LABEL: "privileged"})),
        Policy::default(),
    );
    assert_eq!(p.warn.level, Level::Privileged);
}

#[test]
fn bad_labels_fail_closed_for_enforce_and_open_for_the_others() {
    let (p, errs) = policy_to_evaluate(
        &labels(
            json!({ENFORCE_LEVEL_LABEL: "strict", WARN_LEVEL_LABEL: "nope", AUDIT_VERSION_LABEL: "1.2"}),
        ),
        Policy::default(),
    );
    assert_eq!(p.enforce.level, Level::Restricted);
    assert_eq!(p.warn.level, Level::Privileged);
    let messages: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        messages,
        [
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "1.2": must be "latest" or "v1.x""#,
            r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "nope": must be one of privileged, baseline, restricted"#,
        ]
    );
}

#[test]
fn templates_are_found_where_each_kind_keeps_them() {
    let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}});
    let cron = json!({"spec": {"jobTemplate": {"spec": {"template": template.clone()}}}});
    assert_eq!(
        pod_spec_of("batch", "cronjobs", &cron),
        Some((&template["metadata"], &template["spec"]))
    );
    assert!(pod_spec_of("", "replicationcontrollers", &json!({"spec": {}})).is_none());
    assert!(has_pod_spec("apps", "daemonsets"));
    assert!(!has_pod_spec("apps", "controllerrevisions"));
}

#[test]
fn only_image_changes_and_new_ephemeral_containers_are_significant() {
    let old = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
    let relabelled = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "a", "image": "x", "resources": {}}]}});
    assert!(!is_significant_pod_update(&relabelled, &old));
    let reimaged = json!({"spec": {"containers": [{"name": "a", "image": "y"}]}});
    assert!(is_significant_pod_update(&reimaged, &old));
    let debugged = json!({"spec": {"containers": [{"name": "a", "image": "x"}], "ephemeralContainers": [{"name": "d", "image": "busybox"}]}});
    assert!(is_significant_pod_update(&debugged, &old));
    assert!(!is_significant_pod_update(&debugged, &debugged));
}

#[test]
fn relabelling_warnings_group_pods_by_reasons() {
    let pod = |name: &str, owner: Option<&str>, privileged: bool| {
        let mut p = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "securityContext": {"privileged": privileged}}]}});
        if let Some(uid) = owner {
            p["metadata"]["ownerReferences"] = json!([{"uid": uid, "controller": true}]);
        }
        p
    };
    let pods = [
        pod("web-2", Some("rs"), true),
        pod("web-1", Some("rs"), true),
        pod("solo", None, false),
        pod("admin", None, true),
    ];
    let refs: Vec<&Value> = pods.iter().collect();
    let warnings = evaluate_pods_in_namespace("apps", baseline(), &refs);
    assert_eq!(
        warnings,
        [
            r#"existing pods in namespace "apps" violate the new PodSecurity enforce level "baseline:latest""#,
            "admin (and 2 other pods): privileged",
        ]
    );
    assert!(evaluate_pods_in_namespace("apps", baseline(), &refs[2..3]).is_empty());
}

//! Protobuf bodies built by hand, as kubectl's typed clients would send them.

use serde_json::json;

use super::*;

/// A tiny protobuf encoder: fields appended in call order.
#[derive(Default, Clone)]
struct Enc(Vec<u8>);

impl Enc {
    fn new() -> Enc {
        Enc::default()
    }

    fn raw_varint(mut self, mut v: u64) -> Enc {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }

    fn key(self, tag: u32, wire_type: u8) -> Enc {
        self.raw_varint(u64::from(tag) << 3 | u64::from(wire_type))
    }

    fn varint(self, tag: u32, v: u64) -> Enc {
        self.key(tag, 0).raw_varint(v)
    }

    /// An int32/int64 as Go writes it (negative values sign-extended to 10 bytes).
    fn int(self, tag: u32, v: i64) -> Enc {
        self.varint(tag, v as u64)
    }

    fn bytes(self, tag: u32, b: &[u8]) -> Enc {
        let mut e = self.key(tag, 2).raw_varint(b.len() as u64);
        e.0.extend_from_slice(b);
        e
    }

    fn str(self, tag: u32, s: &str) -> Enc {
        self.bytes(tag, s.as_bytes())
    }

    fn msg(self, tag: u32, m: Enc) -> Enc {
        self.bytes(tag, &m.0)
    }

    /// A map<string, string|bytes> entry.
    fn entry(self, tag: u32, key: &str, value: &[u8]) -> Enc {
        self.msg(tag, Enc::new().str(1, key).bytes(2, value))
    }

    /// A map<string, message> entry.
    fn entry_msg(self, tag: u32, key: &str, value: Enc) -> Enc {
        self.msg(tag, Enc::new().str(1, key).msg(2, value))
    }
}

fn time(seconds: i64, nanos: i64) -> Enc {
    Enc::new().int(1, seconds).int(2, nanos)
}

fn quantity(s: &str) -> Enc {
    Enc::new().str(1, s)
}

fn int_or_string_int(v: i64) -> Enc {
    Enc::new().int(1, 0).int(2, v)
}

fn int_or_string_str(s: &str) -> Enc {
    Enc::new().int(1, 1).str(3, s)
}

/// Magic + `runtime.Unknown` { typeMeta, raw } around an object's message.
fn body(api_version: &str, kind: &str, object: Enc) -> Vec<u8> {
    let type_meta = Enc::new().str(1, api_version).str(2, kind);
    let unknown = Enc::new()
        .msg(1, type_meta)
        .msg(2, object)
        .str(3, "")
        .str(4, "");
    let mut out = MAGIC.to_vec();
    out.extend(unknown.0);
    out
}

/// ObjectMeta as Go's encoder writes it: every plain field present, even when zero.
fn go_object_meta(name: &str, namespace: &str) -> Enc {
    Enc::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Enc::new())
}

#[test]
fn namespace_with_labels_and_creation_time_decodes_to_its_json() {
    let meta = go_object_meta("foo", "")
        .msg(8, time(1_704_067_200, 0))
        .entry(11, "team", b"a")
        .entry(11, "tier", b"");
    let ns = Enc::new()
        .msg(1, meta)
        .msg(2, Enc::new().str(1, "kubernetes"))
        .msg(3, Enc::new());
    let v = decode_object(&body("v1", "Namespace", ns)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "foo",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"team": "a", "tier": ""},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {},
        })
    );
    // Key order follows the wire; apiVersion and kind come first.
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
}

#[test]
fn configmap_binary_data_is_base64() {
    let cm = Enc::new()
        .msg(1, go_object_meta("c", "default"))
        .entry(2, "a", b"b")
        .entry(2, "empty", b"")
        .entry(3, "true", &[0x7f, b'E', b'L', b'F', 0, 0xff]);
    let v = decode_object(&body("v1", "ConfigMap", cm)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default"},
            "data": {"a": "b", "empty": ""},
            "binaryData": {"true": "f0VMRgD/"},
        })
    );
}

#[test]
fn secret_data_bytes_and_type() {
    let secret = Enc::new()
        .msg(1, go_object_meta("s", "default"))
        .entry(2, "p", b"q")
        .str(3, "Opaque")
        .varint(5, 0);
    let v = decode_object(&body("v1", "Secret", secret)).unwrap();
    assert_eq!(v["data"], json!({"p": "cQ=="}));
    assert_eq!(v["type"], "Opaque");
    // immutable is a *bool: an explicit false is kept.
    assert_eq!(v["immutable"], false);
}

#[test]
fn service_ports_with_int_and_named_target_ports() {
    let http = Enc::new()
        .str(1, "80-8080")
        .str(2, "TCP")
        .int(3, 80)
        .msg(4, int_or_string_int(8080))
        .int(5, 0);
    let dns = Enc::new()
        .str(1, "dns")
        .str(2, "UDP")
        .int(3, 53)
        .msg(4, int_or_string_str("dns"))
        .int(5, 30053);
    let spec = Enc::new()
        .msg(1, http)
        .msg(1, dns)
        .entry(2, "app", b"n")
        .str(3, "")
        .str(4, "NodePort")
        .int(12, 0)
        .varint(13, 0);
    let svc = Enc::new()
        .msg(1, go_object_meta("n", ""))
        .msg(2, spec)
        .msg(3, Enc::new().msg(1, Enc::new()));
    let v = decode_object(&body("v1", "Service", svc)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "n"},
            "spec": {
                "ports": [
                    {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns", "nodePort": 30053},
                ],
                "selector": {"app": "n"},
                "type": "NodePort",
            },
            "status": {"loadBalancer": {}},
        })
    );
}

#[test]
fn deployment_with_pod_template_resources_and_env() {
    let resources = Enc::new()
        .entry_msg(1, "memory", quantity("128Mi"))
        .entry_msg(2, "cpu", quantity("100m"));
    let container = Enc::new()
        .str(1, "busybox")
        .str(2, "busybox")
        .str(3, "sleep")
        .str(3, "3600")
        .msg(
            6,
            Enc::new()
                .str(1, "http")
                .int(2, 0)
                .int(3, 8080)
                .str(4, "TCP"),
        )
        .msg(7, Enc::new().str(1, "MODE").str(2, "fast"))
        .msg(7, Enc::new().str(1, "EMPTY").str(2, ""))
        .msg(8, resources)
        .str(13, "")
        .varint(16, 0)
        .varint(17, 0)
        .varint(18, 0);
    let labels = |e: Enc| e.entry(11, "app", b"d");
    let volume = Enc::new().str(1, "cfg").msg(
        2,
        Enc::new().msg(19, Enc::new().msg(1, Enc::new().str(1, "c")).int(3, 420)),
    );
    let pod_spec = Enc::new()
        .msg(1, volume)
        .msg(2, container)
        .str(3, "Always")
        .varint(11, 0)
        .varint(12, 0)
        .varint(13, 0)
        .msg(14, Enc::new());
    let template = Enc::new()
        .msg(1, labels(go_object_meta("", "")))
        .msg(2, pod_spec);
    let spec = Enc::new()
        .int(1, 2)
        .msg(2, Enc::new().entry(1, "app", b"d"))
        .msg(3, template)
        .msg(4, Enc::new())
        .int(5, 0)
        .varint(7, 0);
    let deployment = Enc::new()
        .msg(1, labels(go_object_meta("d", "default")))
        .msg(2, spec)
        .msg(3, Enc::new().int(1, 0).int(2, 0));
    let v = decode_object(&body("apps/v1", "Deployment", deployment)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default", "labels": {"app": "d"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {
                        "volumes": [{"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
                        "containers": [{
                            "name": "busybox",
                            "image": "busybox",
                            "command": ["sleep", "3600"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "fast"}, {"name": "EMPTY"}],
                            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
                        }],
                        "restartPolicy": "Always",
                        "securityContext": {},
                    },
                },
                "strategy": {},
            },
            "status": {},
        })
    );
}

#[test]
fn pointer_zeros_are_kept() {
    let spec = Enc::new().int(1, 0).int(6, 0);
    let pod_spec = Enc::new().int(4, 0).varint(30, 0);
    let deployment = Enc::new().msg(2, spec.msg(3, Enc::new().msg(2, pod_spec)));
    let v = decode_object(&body("apps/v1", "Deployment", deployment)).unwrap();
    assert_eq!(v["spec"]["replicas"], 0);
    assert_eq!(v["spec"]["revisionHistoryLimit"], 0);
    assert_eq!(
        v["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        0
    );
    assert_eq!(v["spec"]["template"]["spec"]["enableServiceLinks"], false);
}

#[test]
fn negative_integers_and_packed_repeated_scalars() {
    // supplementalGroups (repeated int64): one packed run, then one unpacked element.
    let mut packed = Enc::new().raw_varint(1).raw_varint(2).raw_varint(300);
    packed = Enc::new().bytes(4, &packed.0);
    let security = packed.int(4, 7).int(2, -1);
    let pod = Enc::new().msg(2, Enc::new().msg(14, security));
    let v = decode_object(&body("v1", "Pod", pod)).unwrap();
    let sc = &v["spec"]["securityContext"];
    assert_eq!(sc["supplementalGroups"], json!([1, 2, 300, 7]));
    assert_eq!(sc["runAsUser"], -1);
}

#[test]
fn micro_time_and_lease_fields() {
    let spec = Enc::new()
        .str(1, "node-1")
        .int(2, 40)
        .msg(4, time(1_704_067_200, 123_456_789));
    let lease = Enc::new()
        .msg(1, go_object_meta("node-1", "kube-node-lease"))
        .msg(2, spec);
    let v = decode_object(&body("coordination.k8s.io/v1", "Lease", lease)).unwrap();
    assert_eq!(
        v["spec"],
        json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.123456Z"})
    );
}

#[test]
fn event_zero_times_are_left_out() {
    let event = Enc::new()
        .msg(1, go_object_meta("e", "default"))
        .str(3, "Started")
        .msg(6, time(1_704_067_200, 999_000_000))
        .msg(7, time(GO_ZERO_TIME_SECONDS, 0))
        .int(8, 0)
        .msg(10, Enc::new());
    let v = decode_object(&body("v1", "Event", event)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "reason": "Started",
            "firstTimestamp": "2024-01-01T00:00:00Z",
        })
    );
}

#[test]
fn delete_options_decode_under_any_group_version() {
    let opts = Enc::new().int(1, 0).str(4, "Foreground").str(5, "All");
    let v = decode_object(&body("apps/v1", "DeleteOptions", opts)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "apps/v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "propagationPolicy": "Foreground",
            "dryRun": ["All"],
        })
    );
}

#[test]
fn scale_decodes() {
    let scale = Enc::new()
        .msg(1, go_object_meta("d", "default"))
        .msg(2, Enc::new().int(1, 5))
        .msg(3, Enc::new().int(1, 2).str(2, "app=d"));
    let v = decode_object(&body("autoscaling/v1", "Scale", scale)).unwrap();
    assert_eq!(v["spec"], json!({"replicas": 5}));
    assert_eq!(v["status"], json!({"replicas": 2, "selector": "app=d"}));
}

#[test]
fn unknown_fields_and_groups_are_skipped() {
    let group_start = Enc::new()
        .key(99, 3)
        .varint(1, 5)
        .key(98, 3)
        .key(98, 4)
        .key(99, 4);
    let mut ns = Enc::new()
        .msg(1, Enc::new().str(1, "foo").str(500, "future"))
        .key(77, 5);
    ns.0.extend([1, 2, 3, 4]);
    ns = ns.key(78, 1);
    ns.0.extend([0; 8]);
    ns.0.extend(group_start.0);
    let v = decode_object(&body("v1", "Namespace", ns)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}})
    );
}

#[test]
fn unknown_kinds_are_named_in_the_error() {
    let err = decode_object(&body("ex.io/v1", "Foo", Enc::new())).unwrap_err();
    assert!(matches!(err, ProtobufError::NoSchema { .. }));
    assert_eq!(err.to_string(), "no protobuf schema for ex.io/v1/Foo");
}

#[test]
fn wrong_magic_garbage_and_truncation_are_errors_not_panics() {
    assert!(matches!(
        decode_object(b"{\"kind\":\"Namespace\"}"),
        Err(ProtobufError::MissingMagic)
    ));
    assert!(matches!(
        decode_object(b"k8s"),
        Err(ProtobufError::MissingMagic)
    ));
    assert!(matches!(
        decode_object(b"k8s\0"),
        Err(ProtobufError::MissingTypeMeta)
    ));

    let ns = Enc::new().msg(
        1,
        go_object_meta("foo", "")
            .msg(8, time(1, 0))
            .entry(11, "a", b"b"),
    );
    let full = body("v1", "Namespace", ns);
    for len in 0..full.len() {
        // Every prefix either decodes (ends on a field boundary) or fails cleanly.
        let _ = decode_object(&full[..len]);
    }
    assert!(matches!(
        decode_object(&full[..full.len() - 3]),
        Err(ProtobufError::Truncated { .. })
    ));

    // Deterministic pseudo-random garbage after the magic, and inside a valid envelope.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..2000 {
        let len = (round % 64) + 1;
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut raw = MAGIC.to_vec();
        raw.extend(&garbage);
        let _ = decode_object(&raw);
        let _ = decode_object(&body("v1", "Pod", Enc(garbage)));
    }
}

#[test]
fn wrong_wire_types_are_reported_with_the_field() {
    let ns = Enc::new().msg(1, Enc::new().varint(1, 5));
    let err = decode_object(&body("v1", "Namespace", ns)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta.name has protobuf wire type 0, expected 2"
    );
}

#[test]
fn varints_longer_than_ten_bytes_are_refused() {
    let mut ns = Enc::new().key(1, 0).0;
    ns.extend([0xff; 11]);
    let err = decode_object(&body("v1", "Namespace", Enc(ns))).unwrap_err();
    assert!(
        matches!(err, ProtobufError::MalformedVarint { .. }),
        "{err}"
    );
}

#[test]
fn deeply_nested_groups_are_bounded() {
    let mut ns = Enc::new();
    for _ in 0..10_000 {
        ns = ns.key(90, 3);
    }
    let err = decode_object(&body("v1", "Namespace", ns)).unwrap_err();
    assert!(matches!(err, ProtobufError::TooDeep), "{err}");
}

#[test]
fn fields_v1_holds_embedded_json() {
    let entry = Enc::new()
        .str(1, "kubectl")
        .str(2, "Apply")
        .msg(7, Enc::new().bytes(1, br#"{"f:metadata":{}}"#));
    let ns = Enc::new().msg(1, Enc::new().str(1, "foo").msg(17, entry));
    let v = decode_object(&body("v1", "Namespace", ns)).unwrap();
    assert_eq!(
        v["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:metadata": {}}}])
    );

    let bad = Enc::new().msg(
        1,
        Enc::new().msg(17, Enc::new().msg(7, Enc::new().bytes(1, b"{nope"))),
    );
    let err = decode_object(&body("v1", "Namespace", bad)).unwrap_err();
    assert!(
        matches!(err, ProtobufError::InvalidEmbeddedJson { .. }),
        "{err}"
    );
}

#[test]
fn content_encodings_are_refused() {
    let unknown = Enc::new()
        .msg(1, Enc::new().str(1, "v1").str(2, "Namespace"))
        .bytes(2, &[])
        .str(3, "gzip");
    let mut raw = MAGIC.to_vec();
    raw.extend(unknown.0);
    assert!(matches!(
        decode_object(&raw),
        Err(ProtobufError::UnsupportedContentEncoding(_))
    ));
}

#[test]
fn durations_print_like_go() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1), "1ns");
    assert_eq!(go_duration(1_500), "1.5µs");
    assert_eq!(go_duration(150_000_000), "150ms");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(-3_723_000_000_000), "-1h2m3s");
}

#[test]
fn times_outside_go_range_are_refused() {
    assert_eq!(
        format_time(0, 0, false).as_deref(),
        Some("1970-01-01T00:00:00Z")
    );
    assert_eq!(
        format_time(0, -1, true).as_deref(),
        Some("1969-12-31T23:59:59.999999Z")
    );
    assert_eq!(format_time(i64::MAX, 0, false), None);
    let ns = Enc::new().msg(1, Enc::new().msg(8, time(i64::MAX / 2, 0)));
    let err = decode_object(&body("v1", "Namespace", ns)).unwrap_err();
    assert!(matches!(err, ProtobufError::TimeOutOfRange { .. }), "{err}");
}

#[test]
fn content_types_are_recognised() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
}

#[test]
fn every_served_kind_has_a_schema_and_tables_are_sorted() {
    for (api_version, kind, message) in schema::KINDS {
        assert!(
            schema_for(api_version, kind).is_some(),
            "{api_version}/{kind}"
        );
        assert!(message.field(1).is_some(), "{}", message.name);
    }
    assert_eq!(schema::ENVELOPE.field(1).map(|f| f.json), Some("typeMeta"));
    assert_eq!(schema::ENVELOPE.field(2).map(|f| f.json), Some("raw"));
    assert_eq!(
        schema::ENVELOPE.field(3).map(|f| f.json),
        Some("contentEncoding")
    );
    let mut stack: Vec<&'static Message> = schema::KINDS.iter().map(|(_, _, m)| *m).collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(m) = stack.pop() {
        if !seen.insert(m.name) {
            continue;
        }
        assert!(
            m.fields.windows(2).all(|w| w[0].tag < w[1].tag),
            "{} unsorted",
            m.name
        );
        for f in m.fields {
            assert_eq!(
                f.json.is_empty(),
                f.cardinality == Cardinality::Inline,
                "{}",
                m.name
            );
            if let Kind::Message(inner) = f.kind {
                stack.push(inner);
            }
        }
    }
}

#[test]
fn csi_drivers_and_runtime_classes_decode() {
    let spec = Enc::new()
        .varint(1, 0)
        .str(3, "Persistent")
        .str(3, "Ephemeral")
        .str(5, "File");
    let driver = Enc::new()
        .msg(1, go_object_meta("nfs.csi.k8s.io", ""))
        .msg(2, spec);
    let v = decode_object(&body("storage.k8s.io/v1", "CSIDriver", driver)).unwrap();
    assert_eq!(v["metadata"]["name"], "nfs.csi.k8s.io");
    assert_eq!(
        v["spec"],
        json!({"attachRequired": false, "volumeLifecycleModes": ["Persistent", "Ephemeral"],
            "fsGroupPolicy": "File"})
    );
    let class = Enc::new()
        .msg(1, go_object_meta("gvisor", ""))
        .str(2, "runsc")
        .msg(3, Enc::new().entry_msg(1, "cpu", quantity("250m")));
    let v = decode_object(&body("node.k8s.io/v1", "RuntimeClass", class)).unwrap();
    assert_eq!(v["handler"], "runsc");
    assert_eq!(v["overhead"], json!({"podFixed": {"cpu": "250m"}}));
}

#[test]
fn validating_admission_policy_decodes() {
    let validation = Enc::new()
        .str(1, "object.spec.replicas <= 5")
        .str(3, "Forbidden");
    let spec = Enc::new()
        .msg(2, Enc::new().str(7, "Equivalent"))
        .msg(3, validation)
        .str(4, "Fail");
    let policy = Enc::new().msg(1, Enc::new().str(1, "demo")).msg(2, spec);
    let v = decode_object(&body(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        policy,
    ))
    .unwrap();
    assert_eq!(v["spec"]["failurePolicy"], "Fail");
    assert_eq!(v["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
    assert_eq!(
        v["spec"]["validations"],
        json!([{"expression": "object.spec.replicas <= 5", "reason": "Forbidden"}])
    );
    let binding = Enc::new()
        .msg(1, Enc::new().str(1, "b"))
        .msg(2, Enc::new().str(1, "demo").str(4, "Deny"));
    let v = decode_object(&body(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        binding,
    ))
    .unwrap();
    assert_eq!(v["spec"]["policyName"], "demo");
    assert_eq!(v["spec"]["validationActions"], json!(["Deny"]));
}

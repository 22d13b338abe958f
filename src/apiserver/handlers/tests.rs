//! Bad input, answered in-process: every row gets the upstream `Status` and stores nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use super::handle;
use crate::api::resources;
use crate::apiserver::allocator::Allocators;
use crate::apiserver::auth::{TokenAuthenticator, User, ADMIN_GROUP};
use crate::apiserver::openapi::OpenApi;
use crate::apiserver::registry::{Registry, WriteOptions};
use crate::apiserver::request::MAX_BODY_BYTES;
use crate::apiserver::ApiContext;
use crate::store::sqlite::SqliteStore;

const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

const PODS: &str = "/api/v1/namespaces/default/pods";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
/// A ConfigMap that exists before every row (updated once: its first version is stale).
const HELD: &str = "/api/v1/namespaces/default/configmaps/held";

/// Who sends a row's request.
#[derive(Debug, Clone, Copy)]
enum Sender {
    Admin,
    Anonymous,
    /// The join token's identity, which may only ask for a node credential.
    Bootstrap,
}

impl Sender {
    fn user(self) -> Option<User> {
        match self {
            Sender::Admin => Some(User {
                name: "admin".into(),
                groups: vec![ADMIN_GROUP.into()],
                ..Default::default()
            }),
            Sender::Anonymous => None,
            Sender::Bootstrap => Some(User::bootstrap()),
        }
    }
}

/// One bad request and the answer it must get.
struct Case {
    what: &'static str,
    sender: Sender,
    method: &'static str,
    path: String,
    content_type: &'static str,
    /// Sent as `Content-Length` (a streamed body has none).
    content_length: Option<usize>,
    body: Vec<u8>,
    code: u16,
    /// The Status `reason`; empty for a success (a dry run).
    reason: &'static str,
    /// Found in the Status `message`, or in the body of a success.
    fragment: &'static str,
    /// The field the Status names as the first cause, if any.
    cause: Option<&'static str>,
}

fn case(what: &'static str, method: &'static str, path: impl Into<String>) -> Case {
    Case {
        what,
        sender: Sender::Admin,
        method,
        path: path.into(),
        content_type: JSON,
        content_length: None,
        body: Vec::new(),
        code: 0,
        reason: "",
        fragment: "",
        cause: None,
    }
}

impl Case {
    fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = content_type;
        self.body = body.into();
        self
    }

    fn json(self, body: Value) -> Case {
        self.body(JSON, serde_json::to_vec(&body).expect("json"))
    }

    fn with_content_length(mut self) -> Case {
        self.content_length = Some(self.body.len());
        self
    }

    fn by(mut self, sender: Sender) -> Case {
        self.sender = sender;
        self
    }

    fn expect(mut self, code: u16, reason: &'static str, fragment: &'static str) -> Case {
        self.code = code;
        self.reason = reason;
        self.fragment = fragment;
        self
    }

    fn cause(mut self, field: &'static str) -> Case {
        self.cause = Some(field);
        self
    }
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "1"}})
}

/// An API context on a temporary SQLite store with the `default` namespace and the
/// ConfigMap `held`; also returns `held` as first created (now stale).
async fn context() -> (tempfile::TempDir, Arc<ApiContext>, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open store");
    let allocators = Allocators::new("10.43.0.0/16".parse().expect("cidr"), (30000, 32767));
    let registry = Arc::new(Registry::new(Arc::new(store), allocators));
    let opts = WriteOptions::default();
    let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
    let default = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    registry
        .create(namespaces, None, default, &opts)
        .await
        .expect("create namespace");
    let accounts = resources::by_plural("", "v1", "serviceaccounts").expect("served");
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "default", "namespace": "default"}});
    registry
        .create(accounts, Some("default"), account, &opts)
        .await
        .expect("create service account");
    let config_maps = resources::by_plural("", "v1", "configmaps").expect("served");
    let held = registry
        .create(config_maps, Some("default"), config_map("held"), &opts)
        .await
        .expect("create configmap");
    let stale = (*held.kv.value).clone();
    let mut changed = stale.clone();
    changed["data"]["k"] = json!("2");
    registry
        .update(config_maps, Some("default"), "held", changed, None, &opts)
        .await
        .expect("update configmap");
    let pki = crate::tls::Pki::load_or_create(&dir.path().join("tls"), &[]).expect("pki");
    let ctx = ApiContext {
        rbac: registry.rbac.clone(),
        registry,
        ca_pem: pki.ca_cert_pem().to_string(),
        advertise: "127.0.0.1:6443".into(),
        tokens: TokenAuthenticator::default(),
        openapi: OpenApi::new(),
        pki: Arc::new(pki),
        audit: None,
        watches: crate::apiserver::watch::WatchLimiter::new(0),
        metrics: crate::metrics::ServerMetrics::new(None),
    };
    (dir, Arc::new(ctx), stale)
}

/// Sends a row's request to the handler, returning the status code and body.
async fn send(ctx: &Arc<ApiContext>, case: &Case) -> (u16, Bytes) {
    let mut req = Request::builder()
        .method(case.method)
        .uri(&case.path)
        .header(http::header::CONTENT_TYPE, case.content_type);
    if let Some(len) = case.content_length {
        req = req.header(http::header::CONTENT_LENGTH, len);
    }
    let req = req
        .body(Full::new(Bytes::from(case.body.clone())))
        .expect("request");
    let resp = handle(ctx.clone(), case.sender.user(), req).await;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (code, body)
}

fn cases(stale_held: &Value) -> Vec<Case> {
    let mut wrong_kind = pod("x");
    wrong_kind["kind"] = json!("Service");
    let mut wrong_version = pod("x");
    wrong_version["apiVersion"] = json!("v2");
    let mut other_namespace = pod("x");
    other_namespace["metadata"]["namespace"] = json!("kube-system");
    let mut no_image = pod("x");
    no_image["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("image");
    let mut wrong_type = pod("x");
    wrong_type["spec"]["containers"] = json!("not-a-list");
    let mut unknown_field = pod("x");
    unknown_field["spec"]["bogus"] = json!(1);
    let mut huge = pod("huge");
    huge["metadata"]["annotations"] = json!({"a": "x".repeat(MAX_BODY_BYTES + 1)});
    let mut stale = stale_held.clone();
    stale["data"]["k"] = json!("3");
    let mut renamed = stale_held.clone();
    renamed["metadata"]["name"] = json!("other");
    renamed["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let protobuf_job = b"k8s\0\x0a\x0f\x0a\x08ex.io/v1\x12\x03Foo".to_vec();
    vec![
        // Authentication and authorization.
        case("no credentials", "GET", PODS)
            .by(Sender::Anonymous)
            .expect(401, "Unauthorized", "Unauthorized"),
        case("join token lists pods", "GET", PODS)
            .by(Sender::Bootstrap)
            .expect(403, "Forbidden", "cannot list resource \"pods\""),
        // Bodies that do not parse.
        case("malformed JSON", "POST", PODS)
            .body(JSON, "{\"apiVersion\": ")
            .expect(400, "BadRequest", "not valid JSON"),
        case("malformed YAML", "POST", PODS)
            .body(YAML, "a: [unclosed")
            .expect(400, "BadRequest", "not valid YAML"),
        case("empty body", "POST", PODS).body(JSON, "  ").expect(
            400,
            "BadRequest",
            "the request body is empty",
        ),
        case("a JSON array", "POST", PODS).body(JSON, "[1]").expect(
            400,
            "BadRequest",
            "must be a JSON object",
        ),
        case("garbage protobuf", "POST", PODS)
            .body(PROTOBUF, "garbage")
            .expect(400, "BadRequest", "not valid protobuf"),
        case("protobuf kind without a schema", "POST", PODS)
            .body(PROTOBUF, protobuf_job)
            .expect(
                415,
                "UnsupportedMediaType",
                "no protobuf schema for ex.io/v1/Foo",
            ),
        case("unknown media type", "POST", PODS)
            .body("text/html", "<p>")
            .expect(415, "UnsupportedMediaType", "unknown format (text/html)"),
        // Bodies that do not fit the path.
        case("wrong kind", "POST", PODS)
            .json(wrong_kind)
            .expect(400, "BadRequest", "Service"),
        case("wrong apiVersion", "POST", PODS)
            .json(wrong_version)
            .expect(400, "BadRequest", "v2"),
        case("namespace mismatch", "POST", PODS)
            .json(other_namespace)
            .expect(400, "BadRequest", "does not match the namespace"),
        case("name mismatch", "PUT", HELD).json(renamed).expect(
            400,
            "BadRequest",
            "does not match",
        ),
        case(
            "namespace that does not exist",
            "POST",
            "/api/v1/namespaces/nope/pods",
        )
        .json(pod("x"))
        .expect(404, "NotFound", "namespaces \"nope\" not found"),
        // Objects that are not valid.
        case("invalid name", "POST", PODS)
            .json(pod("Bad_Name"))
            .expect(422, "Invalid", "metadata.name")
            .cause("metadata.name"),
        case("missing required field", "POST", PODS)
            .json(no_image)
            .expect(422, "Invalid", "image"),
        case("wrong field type", "POST", PODS)
            .json(wrong_type)
            .expect(
                400,
                "BadRequest",
                "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container",
            ),
        case(
            "unknown field with strict validation",
            "POST",
            format!("{PODS}?fieldValidation=Strict"),
        )
        .json(unknown_field)
        .expect(400, "BadRequest", "unknown field \"spec.bogus\""),
        case(
            "duplicate field with strict validation",
            "POST",
            format!("{CONFIGMAPS}?fieldValidation=Strict"),
        )
        .body(
            JSON,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d","name":"d"}}"#,
        )
        .expect(400, "BadRequest", "duplicate field \"name\""),
        case(
            "unknown field validation mode",
            "POST",
            format!("{PODS}?fieldValidation=Loud"),
        )
        .json(pod("x"))
        .expect(
            400,
            "BadRequest",
            "fieldValidation parameter unsupported: Loud",
        ),
        // Too large: announced, and streamed without a length.
        case("announced oversized body", "POST", PODS)
            .json(huge.clone())
            .with_content_length()
            .expect(413, "RequestEntityTooLarge", "too large"),
        case("streamed oversized body", "POST", PODS)
            .json(huge)
            .expect(413, "RequestEntityTooLarge", "too large"),
        // Paths and query parameters.
        case(
            "unknown resource",
            "GET",
            "/api/v1/namespaces/default/widgets",
        )
        .expect(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        case(
            "cluster resource under a namespace",
            "GET",
            "/api/v1/namespaces/default/nodes",
        )
        .expect(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
        case("method on a collection it does not serve", "PUT", PODS)
            .json(pod("x"))
            .expect(405, "MethodNotAllowed", "PUT"),
        case("write to a discovery document", "POST", "/api")
            .json(pod("x"))
            .expect(405, "MethodNotAllowed", "POST"),
        case(
            "bad label selector",
            "GET",
            format!("{PODS}?labelSelector=a%20in%20(b"),
        )
        .expect(400, "BadRequest", "unable to parse requirement"),
        case(
            "unsupported field selector",
            "GET",
            format!("{PODS}?fieldSelector=spec.bogus%3Dx"),
        )
        .expect(400, "BadRequest", "spec.bogus"),
        case(
            "bad continue token",
            "GET",
            format!("{PODS}?continue=garbage"),
        )
        .expect(400, "BadRequest", "continue key is not valid"),
        case("non-numeric limit", "GET", format!("{PODS}?limit=x")).expect(
            400,
            "BadRequest",
            "invalid value \"x\" for query parameter limit",
        ),
        case(
            "exact resource version that is gone",
            "GET",
            format!("{PODS}?resourceVersion=1&resourceVersionMatch=Exact"),
        )
        .expect(410, "Expired", "too old resource version: 1"),
        case(
            "unknown dry-run value",
            "POST",
            format!("{PODS}?dryRun=Some"),
        )
        .json(pod("x"))
        .expect(400, "BadRequest", "Invalid dry run value: Some"),
        // Conflicts.
        case("stale resourceVersion", "PUT", HELD)
            .json(stale)
            .expect(409, "Conflict", "the object has been modified"),
        case("create an existing name", "POST", CONFIGMAPS)
            .json(config_map("held"))
            .expect(409, "AlreadyExists", "configmaps \"held\" already exists"),
        case("delete with a wrong uid precondition", "DELETE", HELD)
            .json(json!({"preconditions": {"uid": "not-the-uid"}}))
            .expect(
                409,
                "Conflict",
                "cannot be fulfilled on configmaps \"held\"",
            ),
        // Deletes and patches of what is not there, or not a patch.
        case("invalid DeleteOptions", "DELETE", HELD)
            .body(JSON, "{nope")
            .expect(400, "BadRequest", "invalid DeleteOptions body"),
        case(
            "delete a missing object",
            "DELETE",
            format!("{PODS}/missing"),
        )
        .expect(404, "NotFound", "pods \"missing\" not found"),
        case("unknown patch type", "PATCH", format!("{PODS}/nothing"))
            .body("text/plain", "x")
            .expect(415, "UnsupportedMediaType", "application/merge-patch+json"),
        case("patch a missing object", "PATCH", format!("{PODS}/missing"))
            .body(MERGE_PATCH, "{}")
            .expect(404, "NotFound", "pods \"missing\" not found"),
        case("malformed merge patch", "PATCH", HELD)
            .body(MERGE_PATCH, "{nope")
            .expect(400, "BadRequest", ""),
        case("JSON patch that is not a list of operations", "PATCH", HELD)
            .body(JSON_PATCH, r#"{"op":"add"}"#)
            .expect(400, "BadRequest", ""),
        case("JSON patch whose test fails", "PATCH", HELD)
            .body(
                JSON_PATCH,
                r#"[{"op":"test","path":"/data/k","value":"9"}]"#,
            )
            .expect(422, "Invalid", ""),
        case("patch that makes the object invalid", "PATCH", HELD)
            .body(MERGE_PATCH, r#"{"metadata":{"labels":{"bad key!":"v"}}}"#)
            .expect(422, "Invalid", "metadata.labels"),
        // A dry run answers as a write would, and writes nothing.
        case("dry-run create", "POST", format!("{PODS}?dryRun=All"))
            .json(pod("dry"))
            .expect(201, "", "\"restartPolicy\":\"Always\""),
        // A ConfigMap is not a kind that answers a delete with the object (upstream's
        // ReturnDeletedObject): a Status of success names what went.
        case("dry-run delete", "DELETE", format!("{HELD}?dryRun=All")).expect(
            200,
            "",
            "\"details\":{\"name\":\"held\",\"group\":\"\",\"kind\":\"configmaps\"",
        ),
    ]
}

/// What is wrong with the answer to `case`, if anything.
fn mismatch(case: &Case, code: u16, body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    if code != case.code {
        return Some(format!("got {code}, want {}: {text}", case.code));
    }
    if case.reason.is_empty() {
        return (!text.contains(case.fragment))
            .then(|| format!("body lacks {:?}: {text}", case.fragment));
    }
    let Ok(status) = serde_json::from_slice::<Value>(body) else {
        return Some(format!("not JSON: {text}"));
    };
    let message = status["message"].as_str().unwrap_or("");
    let well_formed = status["kind"] == "Status"
        && status["status"] == "Failure"
        && status["code"] == case.code
        && status["reason"] == case.reason
        && !message.is_empty();
    if !well_formed {
        return Some(format!("want a {} Status: {status}", case.reason));
    }
    if !message.contains(case.fragment) {
        return Some(format!("message lacks {:?}: {status}", case.fragment));
    }
    let cause = &status["details"]["causes"][0];
    if case.cause.is_some()
        && cause["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(cause["field"].as_str().unwrap_or("")))
    {
        // kubectl prints "field: message": a message naming its field prints it twice.
        return Some(format!("the cause's message repeats its field: {status}"));
    }
    case.cause
        .filter(|field| &cause["field"] != field)
        .map(|field| format!("first cause is not {field}: {status}"))
}

#[tokio::test]
async fn bad_input_gets_a_status_and_stores_nothing() {
    let (_dir, ctx, stale_held) = context().await;
    let revision = ctx.registry.revision();
    let mut failures = Vec::new();
    for case in cases(&stale_held) {
        let (code, body) = send(&ctx, &case).await;
        if let Some(problem) = mismatch(&case, code, &body) {
            failures.push(format!("{}: {problem}", case.what));
        }
        if ctx.registry.revision() != revision {
            panic!("{} stored something", case.what);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let config_maps = resources::by_plural("", "v1", "configmaps").expect("served");
    let held = ctx
        .registry
        .get(config_maps, Some("default"), "held")
        .expect("held is still there");
    assert_eq!(held.value["data"]["k"], "2");
}

#[test]
fn gzip_is_accepted_unless_refused() {
    use super::accepts_gzip;
    assert!(accepts_gzip("gzip"));
    assert!(accepts_gzip("deflate, GZIP;q=0.5"));
    assert!(accepts_gzip("br, *"));
    assert!(!accepts_gzip(""));
    assert!(!accepts_gzip("identity"));
    assert!(!accepts_gzip("gzip;q=0"));
    assert!(!accepts_gzip("x-gzip2"));
}

/// Label and field selectors of lists evaluated on what each object version extracts
/// once (`list_filter`) agree with the same selectors on the parsed object, for labels
/// and every selectable field of a few kinds, on the writer's handle, on a cold handle
/// of the cache and on an object loaded as JSON.
#[test]
fn list_filters_on_extracted_fields_agree_with_selectors_on_the_object() {
    use super::{list_filter, selectors};
    use crate::apiserver::registry::strategy_for;
    use crate::apiserver::request::Query;
    use crate::store::{make_kv, KeyValue};

    let admin = Sender::Admin.user().expect("admin");
    let pod = |name: &str, labels: Value, spec: Value, status: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns1", "labels": labels},
            "spec": spec, "status": status})
    };
    let cases: Vec<(&str, &str, Vec<Value>)> = vec![
        (
            "v1",
            "pods",
            vec![
                pod(
                    "a",
                    json!({"app": "web", "tier": "1"}),
                    json!({"nodeName": "n1", "restartPolicy": "Always",
                        "schedulerName": "default-scheduler", "serviceAccountName": "sa",
                        "hostNetwork": true}),
                    json!({"phase": "Running", "podIP": "10.0.0.1",
                        "podIPs": [{"ip": "10.0.0.9"}], "nominatedNodeName": "n2"}),
                ),
                pod(
                    "b",
                    json!({"app": "db", "n": 7}),
                    json!({"restartPolicy": "Never"}),
                    json!({"phase": "Pending", "podIP": "10.0.0.2"}),
                ),
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "c", "namespace": "ns2"}, "spec": {}}),
            ],
        ),
        (
            "v1",
            "nodes",
            vec![
                json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "n1", "labels": {"zone": "a"}},
                    "spec": {"unschedulable": true}}),
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}),
            ],
        ),
        (
            "v1",
            "events",
            vec![
                json!({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": "e1", "namespace": "ns1"},
                    "involvedObject": {"kind": "Pod", "name": "a", "namespace": "ns1"},
                    "reason": "Started", "source": {"component": "kubelet"}, "type": "Normal"}),
                json!({"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": "e2", "namespace": "ns1"},
                    "involvedObject": {"kind": "Node", "name": "n1"},
                    "reportingComponent": "sched", "type": "Warning"}),
            ],
        ),
        (
            "batch/v1",
            "jobs",
            vec![
                json!({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": "j1", "namespace": "ns1", "labels": {"app": "web"}},
                    "status": {"succeeded": 2}}),
                json!({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": "j2", "namespace": "ns1"}}),
            ],
        ),
    ];
    let label_selectors = [
        "",
        "app=web",
        "app!=web",
        "app in (web,db)",
        "app notin (web)",
        "tier",
        "!tier",
        "n=7",
        "n>5",
        "tier<2",
        "app=web,tier=1",
        "zone=a",
        "missing=x",
    ];
    let mut checked = 0;
    for (group_version, plural, objects) in cases {
        let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
        let def = resources::by_plural(group, version, plural).expect("served");
        let strategy = strategy_for(def);
        let fields = strategy.selectable_fields();
        for (i, obj) in objects.iter().enumerate() {
            let ns = def
                .namespaced
                .then(|| obj["metadata"]["namespace"].as_str().unwrap());
            let key = def.key(ns, obj["metadata"]["name"].as_str().unwrap());
            let written = make_kv(&key, obj.clone(), 5, 5);
            let loaded = KeyValue::from_raw(&key, written.raw.clone(), 5, 5);
            // Field selectors: each field equal to this object's value, to another
            // object's value, and "" (missing), with = and !=.
            let mut field_selectors: Vec<String> = Vec::new();
            for field in fields {
                for other in &objects {
                    let value = strategy.field_value(other, field);
                    field_selectors.push(format!("{field}={value}"));
                    field_selectors.push(format!("{field}!={value}"));
                }
                field_selectors.push(format!("{field}="));
            }
            for labels in label_selectors {
                for fs in std::iter::once(String::new()).chain(field_selectors.iter().cloned()) {
                    let raw_query = form_urlencoded::Serializer::new(String::new())
                        .append_pair("labelSelector", labels)
                        .append_pair("fieldSelector", &fs)
                        .finish();
                    let query = Query::parse(Some(&raw_query));
                    let want = selectors(def, &query).expect("valid")(obj);
                    let filter = list_filter(&admin, def, &query).expect("valid");
                    for (what, kv) in [
                        ("writer's handle", &written),
                        ("cached cold handle", &written.cold()),
                        ("loaded as JSON", &loaded),
                    ] {
                        assert_eq!(
                            filter(kv),
                            want,
                            "{plural} #{i} {what}: labelSelector={labels:?} fieldSelector={fs:?}"
                        );
                        checked += 1;
                    }
                }
            }
            assert!(written.value.is_extracted() && loaded.value.is_extracted());
            let extracted = loaded.value.selectable(fields, |_, _| String::new());
            assert!(
                extracted.is_some(),
                "extracted once, for this kind's fields"
            );
        }
    }
    assert!(checked > 1000, "{checked} comparisons");
}

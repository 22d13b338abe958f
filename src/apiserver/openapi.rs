//! OpenAPI v3 documents (`/openapi/v3` and one per served group-version), generated from the
//! k8s-openapi schemas of the served kinds, with the paths, operations and extensions kubectl
//! reads (`x-kubernetes-group-version-kind`, `fieldValidation`, patch strategies).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use bytes::Bytes;
use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling, coordination::v1 as coordination,
    core::v1 as core,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::gen::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::patch::schema::{self as patch_schema, Ty};
use crate::api::resources::{self, ResourceDef};

/// Where `$ref`s point in an OpenAPI 3 document.
const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const BINDING: &str = "io.k8s.api.core.v1.Binding";

/// The media types a PATCH request body may have.
const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// One served OpenAPI document: its JSON and the hex sha256 of that JSON (stable for a
/// given orc build, used as `hash=` in the index and as the strong `ETag`).
#[derive(Debug)]
pub struct Document {
    pub body: Bytes,
    pub hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        let body = serde_json::to_vec(value).expect("a JSON value serializes");
        let hash = hex::encode(Sha256::digest(&body));
        Document {
            body: Bytes::from(body),
            hash,
        }
    }

    /// The `ETag` header value (quoted, strong).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

/// The OpenAPI documents of this server, generated on first use and immutable afterwards.
#[derive(Debug, Default)]
pub struct OpenApi {
    docs: OnceLock<Documents>,
}

#[derive(Debug)]
struct Documents {
    index: Document,
    /// By index path: `api/v1`, `apis/apps/v1`.
    group_versions: BTreeMap<String, Document>,
}

impl OpenApi {
    pub fn new() -> OpenApi {
        OpenApi::default()
    }

    /// The document served at `/openapi/<path>` (`v3`, `v3/api/v1`, `v3/apis/apps/v1`);
    /// `None` for anything else (including `v2`, which kubectl reads only as protobuf).
    pub fn document(&self, path: &str) -> Option<&Document> {
        let docs = self.docs.get_or_init(Documents::generate);
        let path = path.trim_matches('/');
        if path == "v3" {
            return Some(&docs.index);
        }
        docs.group_versions.get(path.strip_prefix("v3/")?)
    }
}

impl Documents {
    fn generate() -> Documents {
        let group_versions: BTreeMap<String, Document> = served_group_versions()
            .into_iter()
            .filter_map(|(group, version)| {
                let doc = group_version_document(group, version)?;
                Some((index_path(group, version), Document::new(&doc)))
            })
            .collect();
        let index = Document::new(&index(&group_versions));
        Documents {
            index,
            group_versions,
        }
    }
}

/// `api/v1` or `apis/<group>/<version>`: a group-version's key in the v3 index.
fn index_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn index(group_versions: &BTreeMap<String, Document>) -> Value {
    let paths: Map<String, Value> = group_versions
        .iter()
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// Every served (group, version), in `RESOURCES` order.
fn served_group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for r in resources::RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Registers the schema of a served kind (and everything it references) with `gen`;
/// returns its definition name, `None` for a kind orc does not know the type of.
fn register_kind(gen: &mut SchemaGenerator, group: &str, kind: &str) -> Option<String> {
    fn add<T: JsonSchema>(gen: &mut SchemaGenerator) -> String {
        gen.subschema_for::<T>();
        T::schema_name()
    }
    let name = match (group, kind) {
        ("", "Namespace") => add::<core::Namespace>(gen),
        ("", "Pod") => add::<core::Pod>(gen),
        ("", "Binding") => add::<core::Binding>(gen),
        ("", "ReplicationController") => add::<core::ReplicationController>(gen),
        ("", "Service") => add::<core::Service>(gen),
        ("", "Endpoints") => add::<core::Endpoints>(gen),
        ("", "Node") => add::<core::Node>(gen),
        ("", "Event") => add::<core::Event>(gen),
        ("", "ConfigMap") => add::<core::ConfigMap>(gen),
        ("", "Secret") => add::<core::Secret>(gen),
        ("", "ServiceAccount") => add::<core::ServiceAccount>(gen),
        ("apps", "Deployment") => add::<apps::Deployment>(gen),
        ("apps", "ReplicaSet") => add::<apps::ReplicaSet>(gen),
        ("coordination.k8s.io", "Lease") => add::<coordination::Lease>(gen),
        _ => return None,
    };
    Some(name)
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{SCHEMA_REF_PREFIX}{name}") })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// The OpenAPI 3.0 document of one served group-version; `None` when nothing is served there.
pub fn group_version_document(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&'static ResourceDef> = resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::DeleteOptions>();
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::ListMeta>();
    gen.subschema_for::<meta::WatchEvent<()>>();
    if defs.iter().any(|d| d.has_subresource("scale")) {
        gen.subschema_for::<autoscaling::Scale>();
    }
    if defs.iter().any(|d| d.has_subresource("binding")) {
        gen.subschema_for::<core::Binding>();
    }
    let mut kinds: Vec<(&'static ResourceDef, String)> = Vec::new();
    for def in &defs {
        if let Some(name) = register_kind(&mut gen, def.group, def.kind) {
            kinds.push((def, name));
        } else {
            tracing::warn!(kind = def.kind, "served kind has no OpenAPI schema");
        }
    }

    let mut schemas: Map<String, Value> = gen
        .definitions()
        .iter()
        .map(|(name, schema)| {
            let mut value = serde_json::to_value(schema).expect("a schema serializes");
            wrap_ref_siblings(&mut value);
            (name.clone(), value)
        })
        .collect();

    for (def, name) in &kinds {
        set_gvk(
            &mut schemas,
            name,
            vec![gvk(def.group, def.version, def.kind)],
        );
        annotate_patch_strategies(
            &mut schemas,
            name,
            Ty::of_kind(def.kind),
            &mut BTreeSet::new(),
        );
        if def.verbs().contains(&"list") {
            let list_name = format!("{name}List");
            schemas.insert(list_name.clone(), list_schema(def, name));
        }
    }
    set_gvk(&mut schemas, STATUS, vec![gvk("", "v1", "Status")]);
    let delete_options: Vec<Value> = served_group_versions()
        .into_iter()
        .map(|(g, v)| gvk(g, v, "DeleteOptions"))
        .collect();
    set_gvk(&mut schemas, DELETE_OPTIONS, delete_options);
    set_gvk(&mut schemas, SCALE, vec![gvk("autoscaling", "v1", "Scale")]);
    set_gvk(&mut schemas, BINDING, vec![gvk("", "v1", "Binding")]);
    if schemas.contains_key(SCALE) {
        annotate_patch_strategies(
            &mut schemas,
            SCALE,
            Ty::of_kind("Scale"),
            &mut BTreeSet::new(),
        );
    }

    let mut paths = Map::new();
    for (def, name) in &kinds {
        resource_paths(&mut paths, def, name);
    }
    let title = if group.is_empty() {
        "Kubernetes".to_string()
    } else {
        format!("Kubernetes {group}")
    };
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": title, "version": crate::api::KUBERNETES_VERSION },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "name": "authorization",
                    "in": "header",
                    "description": "Bearer Token authentication",
                }
            }
        },
        "security": [{ "BearerToken": [] }],
    }))
}

fn set_gvk(schemas: &mut Map<String, Value>, name: &str, gvks: Vec<Value>) {
    if let Some(Value::Object(schema)) = schemas.get_mut(name) {
        schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
    }
}

/// OpenAPI 3.0 ignores the siblings of a `$ref`; as upstream, a `$ref` that carries a
/// description (or anything else) becomes `allOf: [{$ref}]` beside it.
fn wrap_ref_siblings(value: &mut Value) {
    match value {
        Value::Object(obj) => {
            if obj.len() > 1 {
                if let Some(reference) = obj.remove("$ref") {
                    obj.insert("allOf".into(), json!([{ "$ref": reference }]));
                }
            }
            obj.values_mut().for_each(wrap_ref_siblings);
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_ref_siblings),
        _ => {}
    }
}

/// The definition name a property schema refers to: directly, through `allOf`, or
/// through its list items.
fn referenced_definition(property: &Value) -> Option<&str> {
    fn direct(v: &Value) -> Option<&str> {
        v.get("$ref")
            .or_else(|| v.get("allOf")?.get(0)?.get("$ref"))
            .and_then(Value::as_str)
            .map(|r| r.trim_start_matches(SCHEMA_REF_PREFIX))
    }
    direct(property).or_else(|| direct(property.get("items")?))
}

/// Adds `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` to the fields of
/// definition `name` (of Go type `ty`) and, through the struct-typed fields the patch table
/// knows, to the definitions they refer to.
fn annotate_patch_strategies(
    schemas: &mut Map<String, Value>,
    name: &str,
    ty: Ty,
    visited: &mut BTreeSet<(String, String)>,
) {
    if !visited.insert((name.to_string(), format!("{ty:?}"))) {
        return;
    }
    let mut nested: Vec<(String, Ty)> = Vec::new();
    let Some(properties) = schemas
        .get_mut(name)
        .and_then(|s| s.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (field, property) in properties.iter_mut() {
        let meta = patch_schema::lookup(ty, field);
        let mut strategies = Vec::new();
        if meta.strategy.merge {
            strategies.push("merge");
        }
        if meta.strategy.retain_keys {
            strategies.push("retainKeys");
        }
        if meta.strategy.replace {
            strategies.push("replace");
        }
        if let Value::Object(obj) = property {
            if !strategies.is_empty() {
                obj.insert(
                    "x-kubernetes-patch-strategy".into(),
                    json!(strategies.join(",")),
                );
            }
            if let Some(key) = meta.merge_key {
                obj.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
        if meta.ty != Ty::Opaque {
            if let Some(target) = referenced_definition(property) {
                nested.push((target.to_string(), meta.ty));
            }
        }
    }
    for (target, ty) in nested {
        annotate_patch_strategies(schemas, &target, ty, visited);
    }
}

/// `<Kind>List`, which k8s-openapi models as a generic type without a schema.
fn list_schema(def: &ResourceDef, item: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", def.kind, def.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", def.plural),
                "type": "array",
                "items": schema_ref(item),
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [schema_ref(LIST_META)],
            },
        },
        "x-kubernetes-group-version-kind": [
            gvk(def.group, def.version, &format!("{}List", def.kind))
        ],
    })
}

// ---- paths ----

fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn param(name: &str) -> Value {
    match name {
        "pretty" => query_param("pretty", "string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget)."),
        "dryRun" => query_param("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"),
        "fieldManager" => query_param("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
        "fieldValidation" => query_param("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered."),
        "force" => query_param("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."),
        "labelSelector" => query_param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        "fieldSelector" => query_param("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        "limit" => query_param("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results."),
        "continue" => query_param("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue)."),
        "resourceVersion" => query_param("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details. Defaults to unset"),
        "resourceVersionMatch" => query_param("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details. Defaults to unset"),
        "watch" => query_param("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
        "allowWatchBookmarks" => query_param("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session."),
        "sendInitialEvents" => query_param("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event will be sent."),
        "timeoutSeconds" => query_param("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
        "gracePeriodSeconds" => query_param("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately."),
        "propagationPolicy" => query_param("propagationPolicy", "string", "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground."),
        "orphanDependents" => query_param("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both."),
        other => unreachable!("undocumented query parameter {other}"),
    }
}

fn params(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| param(n)).collect()
}

const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn responses(codes: &[(&str, &str)], schema: &Value, content_types: &[&str]) -> Value {
    let mut out = Map::new();
    for (code, description) in codes {
        let content: Map<String, Value> = content_types
            .iter()
            .map(|ct| (ct.to_string(), json!({ "schema": schema })))
            .collect();
        out.insert(
            code.to_string(),
            json!({ "description": description, "content": content }),
        );
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

/// `CoreV1`, `AppsV1`, `CoordinationV1`: the group-version part of upstream operation ids.
fn operation_gv(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    let mut out: String = group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect();
    out.push_str(&capitalize(version));
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One operation of a path.
struct Op<'a> {
    id: String,
    description: String,
    action: &'a str,
    gvk: Value,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Value,
}

impl Op<'_> {
    fn into_value(self, tag: &str) -> Value {
        let mut op = json!({
            "tags": [tag],
            "description": self.description,
            "operationId": self.id,
            "parameters": self.params,
            "responses": self.responses,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        op
    }
}

/// Adds the paths of one served resource (collection, object, all-namespaces list, the
/// deprecated `/watch/` paths and subresources) to `paths`.
fn resource_paths(paths: &mut Map<String, Value>, def: &ResourceDef, schema_name: &str) {
    let prefix = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let tag = format!(
        "{}_{}",
        if def.group.is_empty() {
            "core".to_string()
        } else {
            def.group.trim_end_matches(".k8s.io").replace('.', "_")
        },
        def.version
    );
    let gv = operation_gv(def.group, def.version);
    let kind = def.kind;
    let scoped = if def.namespaced {
        format!("Namespaced{kind}")
    } else {
        kind.to_string()
    };
    let (scope_path, scope_params) = if def.namespaced {
        (
            format!("namespaces/{{namespace}}/{}", def.plural),
            vec![path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            )],
        )
    } else {
        (def.plural.to_string(), Vec::new())
    };
    let name_param = path_param("name", &format!("name of the {kind}"));
    let verbs = def.verbs();
    let can = |verb: &str| verbs.contains(&verb);
    let kind_gvk = gvk(def.group, def.version, kind);
    let item = schema_ref(schema_name);
    let list = schema_ref(&format!("{schema_name}List"));
    let status = schema_ref(STATUS);
    let watch_event = schema_ref(WATCH_EVENT);
    let list_types = ["application/json", "application/json;stream=watch"];
    let json_only = ["application/json"];
    let body =
        |schema: &Value| json!({ "content": json_content(schema.clone()), "required": true });
    let patch_body = json!({
        "content": PATCH_CONTENT_TYPES
            .iter()
            .map(|ct| (ct.to_string(), json!({ "schema": schema_ref(PATCH) })))
            .collect::<Map<String, Value>>(),
        "required": true,
    });

    let mut add_path = |path: String, common: Vec<Value>, ops: Vec<(&str, Op)>| {
        if ops.is_empty() {
            return;
        }
        let mut item = Map::new();
        for (method, op) in ops {
            item.insert(method.to_string(), op.into_value(&tag));
        }
        let mut common = common;
        common.push(param("pretty"));
        item.insert("parameters".into(), Value::Array(common));
        paths.insert(path, Value::Object(item));
    };

    // Collection: list, create, deletecollection.
    let mut ops = Vec::new();
    if can("list") {
        ops.push((
            "get",
            Op {
                id: format!("list{gv}{scoped}"),
                description: format!("list or watch objects of kind {kind}"),
                action: "list",
                gvk: kind_gvk.clone(),
                params: params(LIST_PARAMS),
                body: None,
                responses: responses(&[("200", "OK")], &list, &list_types),
            },
        ));
    }
    if can("create") {
        ops.push((
            "post",
            Op {
                id: format!("create{gv}{scoped}"),
                description: format!("create a {kind}"),
                action: "post",
                gvk: kind_gvk.clone(),
                params: params(WRITE_PARAMS),
                body: Some(body(&item)),
                responses: responses(
                    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                    &item,
                    &json_only,
                ),
            },
        ));
    }
    if can("deletecollection") {
        ops.push((
            "delete",
            Op {
                id: format!("delete{gv}Collection{scoped}"),
                description: format!("delete collection of {kind}"),
                action: "deletecollection",
                gvk: kind_gvk.clone(),
                params: params(DELETE_COLLECTION_PARAMS),
                body: Some(body(&schema_ref(DELETE_OPTIONS))),
                responses: responses(&[("200", "OK")], &status, &json_only),
            },
        ));
    }
    add_path(format!("{prefix}/{scope_path}"), scope_params.clone(), ops);

    // Object: read, replace, delete, patch.
    let object_params = || {
        let mut p = vec![name_param.clone()];
        p.extend(scope_params.iter().cloned());
        p
    };
    let mut ops = Vec::new();
    if can("get") {
        ops.push((
            "get",
            Op {
                id: format!("read{gv}{scoped}"),
                description: format!("read the specified {kind}"),
                action: "get",
                gvk: kind_gvk.clone(),
                params: Vec::new(),
                body: None,
                responses: responses(&[("200", "OK")], &item, &json_only),
            },
        ));
    }
    if can("update") {
        ops.push((
            "put",
            Op {
                id: format!("replace{gv}{scoped}"),
                description: format!("replace the specified {kind}"),
                action: "put",
                gvk: kind_gvk.clone(),
                params: params(WRITE_PARAMS),
                body: Some(body(&item)),
                responses: responses(&[("200", "OK"), ("201", "Created")], &item, &json_only),
            },
        ));
    }
    if can("delete") {
        ops.push((
            "delete",
            Op {
                id: format!("delete{gv}{scoped}"),
                description: format!("delete a {kind}"),
                action: "delete",
                gvk: kind_gvk.clone(),
                params: params(DELETE_PARAMS),
                body: Some(body(&schema_ref(DELETE_OPTIONS))),
                responses: responses(&[("200", "OK"), ("202", "Accepted")], &item, &json_only),
            },
        ));
    }
    if can("patch") {
        ops.push((
            "patch",
            Op {
                id: format!("patch{gv}{scoped}"),
                description: format!("partially update the specified {kind}"),
                action: "patch",
                gvk: kind_gvk.clone(),
                params: params(PATCH_PARAMS),
                body: Some(patch_body.clone()),
                responses: responses(&[("200", "OK"), ("201", "Created")], &item, &json_only),
            },
        ));
    }
    add_path(
        format!("{prefix}/{scope_path}/{{name}}"),
        object_params(),
        ops,
    );

    // Lists across namespaces.
    if def.namespaced && can("list") {
        let op = Op {
            id: format!("list{gv}{kind}ForAllNamespaces"),
            description: format!("list or watch objects of kind {kind}"),
            action: "list",
            gvk: kind_gvk.clone(),
            params: params(LIST_PARAMS),
            body: None,
            responses: responses(&[("200", "OK")], &list, &list_types),
        };
        add_path(
            format!("{prefix}/{}", def.plural),
            Vec::new(),
            vec![("get", op)],
        );
    }

    // Deprecated watch paths.
    if can("watch") {
        let watch_op = |id: String, action: &'static str, description: String| Op {
            id,
            description,
            action,
            gvk: kind_gvk.clone(),
            params: params(LIST_PARAMS),
            body: None,
            responses: responses(&[("200", "OK")], &watch_event, &list_types),
        };
        add_path(
            format!("{prefix}/watch/{scope_path}"),
            scope_params.clone(),
            vec![(
                "get",
                watch_op(
                    format!("watch{gv}{scoped}List"),
                    "watchlist",
                    format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                ),
            )],
        );
        add_path(
            format!("{prefix}/watch/{scope_path}/{{name}}"),
            object_params(),
            vec![(
                "get",
                watch_op(
                    format!("watch{gv}{scoped}"),
                    "watch",
                    format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
                ),
            )],
        );
        if def.namespaced {
            add_path(
                format!("{prefix}/watch/{}", def.plural),
                Vec::new(),
                vec![(
                    "get",
                    watch_op(
                        format!("watch{gv}{kind}ListForAllNamespaces"),
                        "watchlist",
                        format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                    ),
                )],
            );
        }
    }

    // Subresources.
    for sub in def.subresources {
        let path = format!("{prefix}/{scope_path}/{{name}}/{sub}");
        let suffix = capitalize(sub);
        // get / put / patch of a view of the object (status, scale).
        let read_write = |sub_gvk: Value, schema: Value, what: &str| {
            vec![
                (
                    "get",
                    Op {
                        id: format!("read{gv}{scoped}{suffix}"),
                        description: format!("read {what} of the specified {kind}"),
                        action: "get",
                        gvk: sub_gvk.clone(),
                        params: Vec::new(),
                        body: None,
                        responses: responses(&[("200", "OK")], &schema, &json_only),
                    },
                ),
                (
                    "put",
                    Op {
                        id: format!("replace{gv}{scoped}{suffix}"),
                        description: format!("replace {what} of the specified {kind}"),
                        action: "put",
                        gvk: sub_gvk.clone(),
                        params: params(WRITE_PARAMS),
                        body: Some(body(&schema)),
                        responses: responses(
                            &[("200", "OK"), ("201", "Created")],
                            &schema,
                            &json_only,
                        ),
                    },
                ),
                (
                    "patch",
                    Op {
                        id: format!("patch{gv}{scoped}{suffix}"),
                        description: format!("partially update {what} of the specified {kind}"),
                        action: "patch",
                        gvk: sub_gvk,
                        params: params(PATCH_PARAMS),
                        body: Some(patch_body.clone()),
                        responses: responses(
                            &[("200", "OK"), ("201", "Created")],
                            &schema,
                            &json_only,
                        ),
                    },
                ),
            ]
        };
        let ops = match *sub {
            "status" => read_write(kind_gvk.clone(), item.clone(), "status"),
            "scale" => read_write(
                gvk("autoscaling", "v1", "Scale"),
                schema_ref(SCALE),
                "scale",
            ),
            "binding" => vec![(
                "post",
                Op {
                    id: format!("create{gv}{scoped}{suffix}"),
                    description: format!("create binding of a {kind}"),
                    action: "post",
                    gvk: gvk("", "v1", "Binding"),
                    params: params(WRITE_PARAMS),
                    body: Some(body(&schema_ref(BINDING))),
                    responses: responses(
                        &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                        &schema_ref(BINDING),
                        &json_only,
                    ),
                },
            )],
            "finalize" => vec![(
                "put",
                Op {
                    id: format!("replace{gv}{scoped}{suffix}"),
                    description: format!("replace finalize of the specified {kind}"),
                    action: "put",
                    gvk: kind_gvk.clone(),
                    params: params(WRITE_PARAMS),
                    body: Some(body(&item)),
                    responses: responses(
                        &[("200", "OK"), ("201", "Created")],
                        &item,
                        &json_only,
                    ),
                },
            )],
            "log" => vec![(
                "get",
                Op {
                    id: format!("read{gv}{scoped}{suffix}"),
                    description: format!("read log of the specified {kind}"),
                    action: "get",
                    gvk: kind_gvk.clone(),
                    params: vec![
                        query_param("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
                        query_param("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
                        query_param("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output."),
                        query_param("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
                        query_param("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
                        query_param("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
                        query_param("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
                    ],
                    body: None,
                    responses: responses(
                        &[("200", "OK")],
                        &json!({ "type": "string" }),
                        &["text/plain"],
                    ),
                },
            )],
            "exec" | "attach" | "portforward" => {
                let options_kind = match *sub {
                    "exec" => "PodExecOptions",
                    "attach" => "PodAttachOptions",
                    _ => "PodPortForwardOptions",
                };
                ["get", "post"]
                    .into_iter()
                    .map(|method| {
                        (
                            method,
                            Op {
                                id: format!(
                                    "connect{gv}{}{scoped}{suffix}",
                                    capitalize(method)
                                ),
                                description: format!("connect {method} requests to {sub} of {kind}"),
                                action: "connect",
                                gvk: gvk(def.group, def.version, options_kind),
                                params: Vec::new(),
                                body: None,
                                responses: responses(
                                    &[("200", "OK")],
                                    &json!({ "type": "string" }),
                                    &["*/*"],
                                ),
                            },
                        )
                    })
                    .collect()
            }
            other => {
                tracing::warn!(kind, subresource = other, "subresource missing from OpenAPI");
                Vec::new()
            }
        };
        add_path(path, object_params(), ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(group: &str, version: &str) -> Value {
        group_version_document(group, version).expect("served group-version")
    }

    fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(obj) => {
                if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                obj.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_served_kind_has_a_patch_operation_with_field_validation() {
        for def in resources::RESOURCES
            .iter()
            .filter(|d| d.verbs().contains(&"patch"))
        {
            let doc = doc(def.group, def.version);
            let want = gvk(def.group, def.version, def.kind);
            let patches: Vec<&Value> = doc["paths"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|p| p.get("patch"))
                .filter(|op| op["x-kubernetes-group-version-kind"] == want)
                .collect();
            assert!(!patches.is_empty(), "{}: no PATCH operation", def.kind);
            for op in patches {
                let names: Vec<&str> = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                assert!(
                    names.contains(&"fieldValidation"),
                    "{}: {names:?}",
                    def.kind
                );
                assert_eq!(op["x-kubernetes-action"], "patch");
                let content = op["requestBody"]["content"].as_object().unwrap();
                assert!(content.contains_key("application/strategic-merge-patch+json"));
            }
        }
    }

    #[test]
    fn every_served_kind_schema_carries_its_group_version_kind() {
        for def in resources::RESOURCES {
            let doc = doc(def.group, def.version);
            let want = gvk(def.group, def.version, def.kind);
            let found = doc["components"]["schemas"]
                .as_object()
                .unwrap()
                .values()
                .filter(|s| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|a| a.contains(&want))
                })
                .count();
            assert_eq!(found, 1, "{}", def.kind);
        }
    }

    #[test]
    fn every_ref_resolves_within_components() {
        for (group, version) in served_group_versions() {
            let doc = doc(group, version);
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            let mut refs = Vec::new();
            collect_refs(&doc, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let name = r
                    .strip_prefix(SCHEMA_REF_PREFIX)
                    .unwrap_or_else(|| panic!("{r} is not a component ref"));
                assert!(schemas.contains_key(name), "{group}/{version}: {r} dangles");
            }
        }
    }

    #[test]
    fn refs_with_siblings_are_wrapped_in_all_of() {
        let doc = doc("", "v1");
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        let spec = &pod["properties"]["spec"];
        assert!(spec.get("$ref").is_none());
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(spec["description"].as_str().unwrap().contains("behavior"));
    }

    #[test]
    fn list_fields_carry_patch_metadata_from_the_patch_table() {
        let core = doc("", "v1");
        let schemas = &core["components"]["schemas"];
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let env = &schemas["io.k8s.api.core.v1.Container"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
        let tolerations = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"];
        assert!(tolerations.get("x-kubernetes-patch-strategy").is_none());
        let owners = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
            ["ownerReferences"];
        assert_eq!(owners["x-kubernetes-patch-merge-key"], "uid");

        let apps = doc("apps", "v1");
        let strategy = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
            ["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        let ports =
            &apps["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    }

    #[test]
    fn paths_follow_upstream_naming_and_scopes() {
        let core = doc("", "v1");
        let paths = &core["paths"];
        let pods = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(pods["get"]["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(pods["post"]["x-kubernetes-action"], "post");
        assert_eq!(pods["delete"]["x-kubernetes-action"], "deletecollection");
        let pod = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(pod["patch"]["operationId"], "patchCoreV1NamespacedPod");
        assert_eq!(
            paths["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(
            paths["/api/v1/nodes/{name}/status"]["patch"]["operationId"],
            "patchCoreV1NodeStatus"
        );
        assert_eq!(
            paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
                ["x-kubernetes-group-version-kind"],
            gvk("", "v1", "Binding")
        );
        assert_eq!(
            paths["/api/v1/watch/namespaces/{namespace}/pods"]["get"]["x-kubernetes-action"],
            "watchlist"
        );
        assert!(paths.get("/api/v1/namespaces/{namespace}/nodes").is_none());
        assert!(paths["/api/v1/namespaces/{namespace}/bindings"]
            .get("get")
            .is_none());

        let apps = doc("apps", "v1");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["get"]["operationId"],
            "readAppsV1NamespacedDeploymentScale"
        );
        assert_eq!(
            scale["patch"]["x-kubernetes-group-version-kind"],
            gvk("autoscaling", "v1", "Scale")
        );
        let lease = doc("coordination.k8s.io", "v1");
        assert_eq!(
            lease["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"]["get"]
                ["operationId"],
            "listCoordinationV1NamespacedLease"
        );
    }

    #[test]
    fn list_responses_use_the_list_schema() {
        let doc = doc("apps", "v1");
        let list = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0],
            gvk("apps", "v1", "DeploymentList")
        );
        let op = &doc["paths"]["/apis/apps/v1/deployments"]["get"];
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentList"
        );
    }

    #[test]
    fn index_lists_every_served_group_version_with_its_hash() {
        let openapi = OpenApi::new();
        let index: Value = serde_json::from_slice(&openapi.document("v3").unwrap().body).unwrap();
        let paths = index["paths"].as_object().unwrap();
        for (group, version) in served_group_versions() {
            let key = index_path(group, version);
            let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
            let doc = openapi.document(&format!("v3/{key}")).unwrap();
            assert_eq!(url, format!("/openapi/v3/{key}?hash={}", doc.hash));
            let parsed: Value = serde_json::from_slice(&doc.body).unwrap();
            assert_eq!(parsed["openapi"], "3.0.0");
        }
        assert_eq!(paths.len(), served_group_versions().len());
        assert!(paths.contains_key("api/v1"));
        assert!(paths.contains_key("apis/apps/v1"));
        assert!(paths.contains_key("apis/coordination.k8s.io/v1"));
    }

    #[test]
    fn documents_are_stable_and_unknown_paths_are_not_served() {
        let a = OpenApi::new();
        let b = OpenApi::new();
        assert_eq!(
            a.document("v3/api/v1").unwrap().hash,
            b.document("v3/api/v1").unwrap().hash
        );
        assert_eq!(
            a.document("v3").unwrap().hash,
            b.document("v3/").unwrap().hash
        );
        assert!(a.document("v3/apis/apps/v2").is_none());
        assert!(a.document("v3/apis/batch/v1").is_none());
        assert!(a.document("v2").is_none());
        assert!(group_version_document("apps", "v2").is_none());
    }

    #[test]
    fn every_served_kind_has_a_schema() {
        let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
        for def in resources::RESOURCES {
            assert!(
                register_kind(&mut gen, def.group, def.kind).is_some(),
                "{}",
                def.kind
            );
        }
    }
}

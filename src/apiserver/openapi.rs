//! OpenAPI v3 documents (`/openapi/v3` and one per served group-version), generated from the
//! k8s-openapi schemas of the served kinds, with the paths, operations and extensions kubectl
//! reads (`x-kubernetes-group-version-kind`, `fieldValidation`, patch strategies).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use k8s_openapi::api::{autoscaling::v1 as autoscaling, core::v1 as core};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::gen::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::patch::schema::{self as patch_schema, Ty};
use crate::api::resources::{ResourceDef, Resources};
use crate::apiserver::registry::schema_of;
use crate::apiserver::registry::strategy_for;

mod paths;
pub mod v2;

/// Where `$ref`s point in an OpenAPI 3 document.
const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const BINDING: &str = "io.k8s.api.core.v1.Binding";

/// The media types a PATCH request body may have.
const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// One served OpenAPI document: its body (JSON, or protobuf for `/openapi/v2`) and the
/// hex sha256 of that body (stable for a given orc build and set of served kinds, used as
/// `hash=` in the index and as the strong `ETag`).
///
/// The body is kept gzip-compressed: the documents are large (the v3 set ~4 MB of JSON,
/// `/openapi/v2` ~6 MB more as JSON and protobuf), live as long as the served kinds do,
/// and compress ~10×. Clients that accept gzip (kubectl, client-go) get the compressed
/// bytes as they are; others get them decompressed.
#[derive(Debug, Clone)]
pub struct Document {
    /// `body` compressed when `gzipped`; as generated otherwise (compression failed).
    stored: Bytes,
    gzipped: bool,
    pub hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        Document::from_bytes(serde_json::to_vec(value).expect("a JSON value serializes"))
    }

    fn from_bytes(body: Vec<u8>) -> Document {
        let hash = hex::encode(Sha256::digest(&body));
        match gzip(&body) {
            Ok(compressed) => Document {
                stored: Bytes::from(compressed),
                gzipped: true,
                hash,
            },
            Err(error) => {
                tracing::warn!(%error, "cannot compress an OpenAPI document; kept as it is");
                Document {
                    stored: Bytes::from(body),
                    gzipped: false,
                    hash,
                }
            }
        }
    }

    /// The body gzip-compressed, when it is kept so (`Content-Encoding: gzip`).
    pub fn gzipped(&self) -> Option<Bytes> {
        self.gzipped.then(|| self.stored.clone())
    }

    /// The body as generated.
    pub fn body(&self) -> std::io::Result<Bytes> {
        if !self.gzipped {
            return Ok(self.stored.clone());
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&self.stored[..]),
            &mut body,
        )?;
        Ok(Bytes::from(body))
    }

    /// The `ETag` header value (quoted, strong).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

/// `body` gzip-compressed (fast level: the documents are generated on a request's path).
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    let mut compressed = encoder.finish()?;
    compressed.shrink_to_fit();
    Ok(compressed)
}

/// The OpenAPI documents of this server, generated on first use and again after the
/// served kinds change (a CustomResourceDefinition was established, changed or deleted).
/// `/openapi/v2` is generated only when asked for (kubectl reads v3 when served).
#[derive(Debug, Default)]
pub struct OpenApi {
    docs: Mutex<Option<Arc<Documents>>>,
}

#[derive(Debug)]
struct Documents {
    /// The `Resources::generation` they describe.
    generation: u64,
    index: Document,
    /// By index path: `api/v1`, `apis/apps/v1`.
    group_versions: BTreeMap<String, Document>,
    /// `/openapi/v2`, once asked for.
    v2: std::sync::OnceLock<V2Documents>,
}

#[derive(Debug)]
struct V2Documents {
    /// `/openapi/v2` as JSON, and as protobuf (`None` if it could not be encoded).
    json: Document,
    protobuf: Option<Document>,
}

impl OpenApi {
    pub fn new() -> OpenApi {
        OpenApi::default()
    }

    /// The document served at `/openapi/<path>` (`v3`, `v3/api/v1`, `v3/apis/apps/v1`);
    /// `None` for anything else (`v2` is served by [`OpenApi::v2`]).
    pub fn document(&self, path: &str, served: &Resources) -> Option<Document> {
        let docs = self.documents(served);
        let path = path.trim_matches('/');
        if path == "v3" {
            return Some(docs.index.clone());
        }
        docs.group_versions.get(path.strip_prefix("v3/")?).cloned()
    }

    fn documents(&self, served: &Resources) -> Arc<Documents> {
        let mut docs = self
            .docs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*docs {
            Some(d) if d.generation == served.generation => d.clone(),
            _ => {
                // The old set goes before the new one is built: both are large.
                *docs = None;
                let fresh = Arc::new(Documents::generate(served));
                *docs = Some(fresh.clone());
                fresh
            }
        }
    }

    /// The Swagger 2.0 document (`/openapi/v2`) in `format`; `None` when its protobuf form
    /// could not be encoded (logged when generated).
    pub fn v2(&self, format: v2::Format, served: &Resources) -> Option<Document> {
        let docs = self.documents(served);
        let v2 = docs.v2.get_or_init(|| V2Documents::generate(served));
        match format {
            v2::Format::Json => Some(v2.json.clone()),
            v2::Format::Protobuf => v2.protobuf.clone(),
        }
    }
}

impl Documents {
    fn generate(served: &Resources) -> Documents {
        let group_versions: BTreeMap<String, Document> = group_version_documents(served)
            .iter()
            .map(|(path, doc)| (path.clone(), Document::new(doc)))
            .collect();
        let index = Document::new(&index(&group_versions));
        Documents {
            generation: served.generation,
            index,
            group_versions,
            v2: std::sync::OnceLock::new(),
        }
    }
}

impl V2Documents {
    /// From the v3 documents of `served`, generated again (the same as the cached ones:
    /// `served` has their generation).
    fn generate(served: &Resources) -> V2Documents {
        let started = std::time::Instant::now();
        let swagger = v2::swagger(&group_version_documents(served));
        let json = Document::new(&swagger);
        let protobuf = match v2::to_protobuf(&swagger) {
            Ok(body) => Some(Document::from_bytes(body)),
            Err(error) => {
                tracing::error!(%error, "cannot encode /openapi/v2 as protobuf");
                None
            }
        };
        tracing::info!(
            json_gzip_bytes = json.stored.len(),
            protobuf_gzip_bytes = protobuf.as_ref().map_or(0, |d| d.stored.len()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "generated /openapi/v2"
        );
        V2Documents { json, protobuf }
    }
}

/// The OpenAPI v3 document of every served group-version, by index path.
fn group_version_documents(served: &Resources) -> BTreeMap<String, Value> {
    served_group_versions(served)
        .into_iter()
        .filter_map(|(group, version)| {
            let doc = group_version_document(served, group, version)?;
            Some((index_path(group, version), doc))
        })
        .collect()
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

/// Every served (group, version), built-in kinds first.
fn served_group_versions(served: &Resources) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for r in served.iter() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{SCHEMA_REF_PREFIX}{name}") })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// The definition name of a custom resource's schema, as upstream names it (the group
/// reversed: `com.example.stable.v1.CronTab`).
fn custom_definition_name(def: &ResourceDef) -> String {
    let group: Vec<&str> = def.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), def.version, def.kind)
}

/// A custom resource's schema as published: the CRD's `openAPIV3Schema` with
/// `apiVersion`, `kind` and `metadata` (ObjectMeta) filled in as upstream does.
fn custom_schema(def: &ResourceDef, schema: Option<&Value>) -> Value {
    let mut out = schema
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if !out.is_object() {
        out = json!({"type": "object"});
    }
    let properties = out
        .as_object_mut()
        .expect("an object")
        .entry("properties")
        .or_insert_with(|| json!({}));
    if let Value::Object(props) = properties {
        props.insert("apiVersion".into(), json!({
            "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
            "type": "string",
        }));
        props.insert("kind".into(), json!({
            "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            "type": "string",
        }));
        props.insert("metadata".into(), json!({
            "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            "allOf": [schema_ref(OBJECT_META)],
        }));
    }
    out["x-kubernetes-group-version-kind"] = json!([gvk(def.group, def.version, def.kind)]);
    out
}

/// The OpenAPI 3.0 document of one served group-version; `None` when nothing is served there.
pub fn group_version_document(served: &Resources, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&'static ResourceDef> = served
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
    let mut custom: Vec<(String, Value)> = Vec::new();
    for def in &defs {
        if let Some(c) = def.custom {
            gen.subschema_for::<meta::ObjectMeta>();
            let name = custom_definition_name(def);
            custom.push((name.clone(), custom_schema(def, c.schema.as_ref())));
            kinds.push((def, name));
        } else if let Some(name) = kind_schema(def, &mut gen) {
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
    schemas.extend(custom);

    for (def, name) in &kinds {
        if def.custom.is_some() {
            if def.verbs().contains(&"list") {
                schemas.insert(format!("{name}List"), list_schema(def, name));
            }
            continue;
        }
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
    let delete_options: Vec<Value> = served_group_versions(served)
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

    let mut path_items = Map::new();
    for (def, name) in &kinds {
        paths::resource_paths(&mut path_items, def, name);
    }
    let title = if group.is_empty() {
        "Kubernetes".to_string()
    } else {
        format!("Kubernetes {group}")
    };
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": title, "version": crate::api::KUBERNETES_VERSION },
        "paths": path_items,
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
            // A `$ref` whose value is not a string is a property named "$ref"
            // (JSONSchemaProps has one), not a reference.
            if obj.len() > 1 && obj.get("$ref").is_some_and(Value::is_string) {
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

/// The schema of a built-in kind: its strategy's, else that of its k8s-openapi type for
/// the kinds served with default rules.
fn kind_schema(def: &ResourceDef, gen: &mut SchemaGenerator) -> Option<String> {
    use k8s_openapi::api::storage::v1 as storage;
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, policy::v1 as policy};
    if let Some(name) = strategy_for(def).openapi_schema(gen) {
        return Some(name);
    }
    match (def.group, def.kind) {
        ("", "PersistentVolumeClaim") => schema_of::<core::PersistentVolumeClaim>(gen),
        ("", "PersistentVolume") => schema_of::<core::PersistentVolume>(gen),
        ("apps", "StatefulSet") => schema_of::<apps::StatefulSet>(gen),
        ("apps", "DaemonSet") => schema_of::<apps::DaemonSet>(gen),
        ("apps", "ControllerRevision") => schema_of::<apps::ControllerRevision>(gen),
        ("batch", "Job") => schema_of::<batch::Job>(gen),
        ("batch", "CronJob") => schema_of::<batch::CronJob>(gen),
        ("policy", "PodDisruptionBudget") => schema_of::<policy::PodDisruptionBudget>(gen),
        ("storage.k8s.io", "StorageClass") => schema_of::<storage::StorageClass>(gen),
        ("metrics.k8s.io", "NodeMetrics") => schema_of::<crate::api::metrics::NodeMetrics>(gen),
        ("metrics.k8s.io", "PodMetrics") => schema_of::<crate::api::metrics::PodMetrics>(gen),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Arc<Resources> {
        crate::api::resources::Catalog::new().snapshot()
    }

    fn doc(group: &str, version: &str) -> Value {
        group_version_document(&builtin(), group, version).expect("served group-version")
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
        for def in crate::api::resources::RESOURCES
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
        for def in crate::api::resources::RESOURCES {
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
        for (group, version) in served_group_versions(&builtin()) {
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
        let index: Value =
            serde_json::from_slice(&openapi.document("v3", &builtin()).unwrap().body().unwrap())
                .unwrap();
        let paths = index["paths"].as_object().unwrap();
        for (group, version) in served_group_versions(&builtin()) {
            let key = index_path(group, version);
            let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
            let doc = openapi.document(&format!("v3/{key}"), &builtin()).unwrap();
            assert_eq!(url, format!("/openapi/v3/{key}?hash={}", doc.hash));
            let parsed: Value = serde_json::from_slice(&doc.body().unwrap()).unwrap();
            assert_eq!(parsed["openapi"], "3.0.0");
        }
        assert_eq!(paths.len(), served_group_versions(&builtin()).len());
        assert!(paths.contains_key("api/v1"));
        assert!(paths.contains_key("apis/apps/v1"));
        assert!(paths.contains_key("apis/coordination.k8s.io/v1"));
    }

    #[test]
    fn documents_are_kept_compressed_and_served_as_generated() {
        let openapi = OpenApi::new();
        let doc = openapi.document("v3/api/v1", &builtin()).unwrap();
        let body = doc.body().unwrap();
        let gzipped = doc.gzipped().expect("kept compressed");
        assert!(
            gzipped.len() * 4 < body.len(),
            "{} bytes compressed to {}",
            body.len(),
            gzipped.len()
        );
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            doc.hash,
            "hash of the JSON"
        );
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&gzipped[..]),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, body);
    }

    #[test]
    fn v2_is_generated_only_when_asked_for() {
        let openapi = OpenApi::new();
        openapi.document("v3", &builtin()).unwrap();
        let docs = openapi.documents(&builtin());
        assert!(docs.v2.get().is_none(), "v3 alone does not build v2");
        let json = openapi.v2(v2::Format::Json, &builtin()).unwrap();
        let swagger: Value = serde_json::from_slice(&json.body().unwrap()).unwrap();
        assert_eq!(swagger["swagger"], "2.0");
        assert!(docs.v2.get().is_some());
        assert!(openapi.v2(v2::Format::Protobuf, &builtin()).is_some());
    }

    #[test]
    fn documents_are_stable_and_unknown_paths_are_not_served() {
        let a = OpenApi::new();
        let b = OpenApi::new();
        assert_eq!(
            a.document("v3/api/v1", &builtin()).unwrap().hash,
            b.document("v3/api/v1", &builtin()).unwrap().hash
        );
        assert_eq!(
            a.document("v3", &builtin()).unwrap().hash,
            b.document("v3/", &builtin()).unwrap().hash
        );
        assert!(a.document("v3/apis/apps/v2", &builtin()).is_none());
        assert!(a.document("v3/apis/example.com/v1", &builtin()).is_none());
        assert!(a.document("v3/apis/batch/v1", &builtin()).is_some());
        assert!(a.document("v2", &builtin()).is_none());
        assert!(group_version_document(&builtin(), "apps", "v2").is_none());
    }

    #[test]
    fn every_served_kind_has_a_schema() {
        let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
        for def in crate::api::resources::RESOURCES {
            assert!(kind_schema(def, &mut gen).is_some(), "{}", def.kind);
        }
    }
}

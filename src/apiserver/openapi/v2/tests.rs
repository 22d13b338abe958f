//! Tests of the v3→v2 conversion, the protobuf encoding and `Accept` negotiation.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::{json, Value};

use super::protobuf::{self, additional_properties_item, non_body_parameter, parameter};
use super::*;

fn one_group_version(doc: Value) -> BTreeMap<String, Value> {
    BTreeMap::from([("apis/example.com/v1".to_string(), doc)])
}

/// A v3 group-version document in the shape `group_version_document` writes, with the
/// v3-only constructs the conversion must translate.
fn fragment() -> Value {
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes example.com", "version": "v1.32.0" },
        "paths": {
            "/apis/example.com/v1/namespaces/{namespace}/widgets": {
                "post": {
                    "tags": ["example_v1"],
                    "description": "create a Widget",
                    "operationId": "createExampleV1NamespacedWidget",
                    "parameters": [{
                        "name": "dryRun", "in": "query", "description": "dry",
                        "schema": { "type": "string", "uniqueItems": true },
                    }],
                    "requestBody": {
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/com.example.v1.Widget" } } },
                        "required": true,
                    },
                    "responses": {
                        "200": { "description": "OK", "content": {
                            "application/json": { "schema": { "$ref": "#/components/schemas/com.example.v1.Widget" } },
                            "application/yaml": { "schema": { "$ref": "#/components/schemas/com.example.v1.Widget" } },
                        } },
                        "401": { "description": "Unauthorized" },
                    },
                    "x-kubernetes-action": "post",
                    "x-kubernetes-group-version-kind": { "group": "example.com", "kind": "Widget", "version": "v1" },
                },
                "parameters": [
                    { "name": "namespace", "in": "path", "required": true, "description": "ns",
                      "schema": { "type": "string", "uniqueItems": true } },
                    { "name": "session", "in": "cookie", "schema": { "type": "string" } },
                ],
            },
        },
        "components": {
            "schemas": {
                "com.example.v1.Widget": {
                    "type": "object",
                    "required": ["spec", "note"],
                    "properties": {
                        "spec": {
                            "description": "the spec",
                            "default": {},
                            "allOf": [{ "$ref": "#/components/schemas/com.example.v1.WidgetSpec" }],
                        },
                        "note": { "type": "string", "nullable": true },
                        "size": { "anyOf": [{ "type": "integer" }, { "type": "string" }],
                                  "x-kubernetes-int-or-string": true },
                        "raw": { "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                 "properties": { "a": { "type": "string" } } },
                        "loose": { "type": "array", "nullable": true, "items": { "type": "string" } },
                        "ports": {
                            "type": "array",
                            "items": { "$ref": "#/components/schemas/com.example.v1.Port" },
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "x-kubernetes-patch-strategy": "merge",
                            "x-kubernetes-patch-merge-key": "name",
                        },
                        "choice": { "oneOf": [{ "type": "string" }], "not": { "type": "integer" },
                                    "type": "string", "writeOnly": true, "deprecated": true },
                    },
                    "x-kubernetes-group-version-kind": [
                        { "group": "example.com", "kind": "Widget", "version": "v1" }
                    ],
                },
                "com.example.v1.WidgetSpec": { "type": "object", "properties": {} },
                "com.example.v1.Port": { "type": "object", "properties": { "name": { "type": "string" } } },
            },
            "securitySchemes": {
                "BearerToken": { "type": "apiKey", "name": "authorization", "in": "header",
                                 "description": "Bearer Token authentication" },
            },
        },
        "security": [{ "BearerToken": [] }],
    })
}

#[test]
fn definitions_use_v2_refs_and_keep_kubernetes_extensions() {
    let v2 = swagger(&one_group_version(fragment()));
    assert_eq!(v2["swagger"], "2.0");
    assert_eq!(
        v2["info"],
        json!({ "title": "Kubernetes", "version": "v1.32.0" })
    );
    let widget = &v2["definitions"]["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"],
        json!([{ "group": "example.com", "kind": "Widget", "version": "v1" }])
    );
    let spec = &widget["properties"]["spec"];
    assert_eq!(
        spec,
        &json!({
            "description": "the spec",
            "default": {},
            "$ref": "#/definitions/com.example.v1.WidgetSpec",
        })
    );
    let ports = &widget["properties"]["ports"];
    assert_eq!(ports["items"]["$ref"], "#/definitions/com.example.v1.Port");
    assert_eq!(ports["x-kubernetes-list-type"], "map");
    assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(ports["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        v2["securityDefinitions"]["BearerToken"]["type"],
        json!("apiKey")
    );
    assert_eq!(v2["security"], json!([{ "BearerToken": [] }]));
}

#[test]
fn v3_only_constructs_are_converted_as_upstream() {
    let v2 = swagger(&one_group_version(fragment()));
    let widget = &v2["definitions"]["com.example.v1.Widget"];
    let props = &widget["properties"];
    // nullable: no type, and no longer required.
    assert_eq!(props["note"], json!({}));
    assert_eq!(widget["required"], json!(["spec"]));
    // anyOf/oneOf/not and v3-only keywords are dropped, extensions kept.
    assert_eq!(props["size"], json!({ "x-kubernetes-int-or-string": true }));
    assert_eq!(props["choice"], json!({ "type": "string" }));
    // Preserved unknown fields: no properties for kubectl to check against.
    assert_eq!(
        props["raw"],
        json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
    );
    // A nullable array loses its type and items (kubectl refuses items without a type).
    assert_eq!(props["loose"], json!({}));
}

#[test]
fn request_bodies_become_body_parameters() {
    let v2 = swagger(&one_group_version(fragment()));
    let item = &v2["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets"];
    let post = &item["post"];
    assert_eq!(post["operationId"], "createExampleV1NamespacedWidget");
    assert_eq!(post["consumes"], json!(["application/json"]));
    assert_eq!(
        post["produces"],
        json!(["application/json", "application/yaml"])
    );
    assert_eq!(post["schemes"], json!(["https"]));
    assert_eq!(post["x-kubernetes-action"], "post");
    assert_eq!(post["x-kubernetes-group-version-kind"]["kind"], "Widget");
    assert_eq!(
        post["parameters"],
        json!([
            { "name": "body", "in": "body", "required": true,
              "schema": { "$ref": "#/definitions/com.example.v1.Widget" } },
            { "type": "string", "uniqueItems": true, "name": "dryRun", "in": "query",
              "description": "dry" },
        ])
    );
    assert_eq!(
        post["responses"],
        json!({
            "200": { "description": "OK", "schema": { "$ref": "#/definitions/com.example.v1.Widget" } },
            "401": { "description": "Unauthorized" },
        })
    );
    // Path parameters are spelled out; cookie parameters do not exist in Swagger 2.0.
    assert_eq!(
        item["parameters"],
        json!([{ "type": "string", "uniqueItems": true, "name": "namespace", "in": "path",
                 "required": true, "description": "ns" }])
    );
}

#[test]
fn definitions_shared_by_group_versions_carry_every_kind() {
    let status = |kind_version: &str| {
        json!({ "components": { "schemas": { "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": {
            "type": "object", "properties": {},
            "x-kubernetes-group-version-kind": [{ "group": "", "kind": "DeleteOptions", "version": kind_version }],
        } } } })
    };
    let docs = BTreeMap::from([
        ("api/v1".to_string(), status("v1")),
        ("apis/apps/v1".to_string(), status("v1beta1")),
    ]);
    let v2 = swagger(&docs);
    let gvks = &v2["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]
        ["x-kubernetes-group-version-kind"];
    assert_eq!(gvks.as_array().unwrap().len(), 2, "{gvks}");
}

fn served_swagger() -> Value {
    swagger(&crate::apiserver::openapi::group_version_documents(
        &crate::api::resources::Catalog::new().snapshot(),
    ))
}

fn visit_schemas<'a>(schema: &'a Value, at: &str, f: &mut dyn FnMut(&'a Value, &str)) {
    f(schema, at);
    for (name, p) in schema["properties"].as_object().into_iter().flatten() {
        visit_schemas(p, &format!("{at}.{name}"), f);
    }
    if let Some(items) = schema.get("items") {
        visit_schemas(items, &format!("{at}[]"), f);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        visit_schemas(additional, &format!("{at}{{}}"), f);
    }
}

/// What kubectl's v2 model parser (`k8s.io/kube-openapi/pkg/util/proto`) and gnostic's
/// `ParseDocument` refuse, checked on every definition orc serves.
#[test]
fn served_definitions_parse_as_kubectl_reads_them() {
    let v2 = served_swagger();
    let definitions = v2["definitions"].as_object().unwrap();
    assert!(definitions.len() > 100, "{}", definitions.len());
    let allowed: Vec<&str> = SCHEMA_KEYWORDS
        .iter()
        .copied()
        .chain([
            "$ref",
            "properties",
            "items",
            "additionalProperties",
            "required",
        ])
        .collect();
    for (name, definition) in definitions {
        visit_schemas(definition, name, &mut |s, at| {
            let obj = s
                .as_object()
                .unwrap_or_else(|| panic!("{at}: not an object"));
            for key in obj.keys() {
                assert!(
                    key.starts_with("x-") || allowed.contains(&key.as_str()),
                    "{at}: {key}"
                );
            }
            if let Some(r) = s.get("$ref") {
                let target = r.as_str().unwrap().strip_prefix(V2_REF_PREFIX);
                let target = target.unwrap_or_else(|| panic!("{at}: {r}"));
                assert!(definitions.contains_key(target), "{at}: {r} dangles");
                assert!(s.get("type").is_none(), "{at}: $ref with type");
                assert!(s.get("properties").is_none(), "{at}: $ref with properties");
            }
            match s.get("type") {
                None => {}
                Some(Value::String(t)) => {
                    let known = ["object", "array", "string", "integer", "number", "boolean"];
                    assert!(known.contains(&t.as_str()), "{at}: type {t}");
                    if t == "array" {
                        assert!(s["items"].is_object(), "{at}: array without items");
                    }
                }
                Some(t) => panic!("{at}: type {t}"),
            }
        });
    }
}

#[test]
fn served_document_has_kinds_paths_and_patch_metadata() {
    let v2 = served_swagger();
    let defs = &v2["definitions"];
    assert_eq!(
        defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        json!([{ "group": "", "kind": "Pod", "version": "v1" }])
    );
    assert_eq!(
        defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["kind"],
        "Deployment"
    );
    assert_eq!(
        defs["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    let delete_options_kinds = defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]
        ["x-kubernetes-group-version-kind"]
        .as_array()
        .unwrap()
        .len();
    assert!(delete_options_kinds >= 3, "{delete_options_kinds}");

    let patch = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert!(patch["consumes"]
        .as_array()
        .unwrap()
        .contains(&json!("application/strategic-merge-patch+json")));
    assert_eq!(patch["parameters"][0]["in"], "body");
    assert_eq!(
        patch["parameters"][0]["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    let list = &v2["paths"]["/api/v1/pods"]["get"];
    assert_eq!(
        list["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodList"
    );
    assert_eq!(list["x-kubernetes-action"], "list");
}

fn extension(extensions: &[protobuf::NamedAny], name: &str) -> Value {
    let found = extensions.iter().find(|e| e.name == name);
    let yaml = &found
        .unwrap_or_else(|| panic!("no {name}"))
        .value
        .as_ref()
        .unwrap()
        .yaml;
    serde_yaml::from_str(yaml).unwrap()
}

fn definition<'a>(doc: &'a protobuf::Document, name: &str) -> &'a protobuf::Schema {
    let defs = &doc.definitions.as_ref().unwrap().additional_properties;
    let found = defs.iter().find(|d| d.name == name);
    found
        .unwrap_or_else(|| panic!("no {name}"))
        .value
        .as_ref()
        .unwrap()
}

fn property<'a>(schema: &'a protobuf::Schema, name: &str) -> &'a protobuf::Schema {
    let props = &schema.properties.as_ref().unwrap().additional_properties;
    let found = props.iter().find(|p| p.name == name);
    found
        .unwrap_or_else(|| panic!("no {name}"))
        .value
        .as_ref()
        .unwrap()
}

fn body_parameter(item: &protobuf::ParametersItem) -> Option<&protobuf::BodyParameter> {
    let Some(protobuf::parameters_item::Oneof::Parameter(p)) = &item.oneof else {
        return None;
    };
    match &p.oneof {
        Some(parameter::Oneof::BodyParameter(body)) => Some(body.as_ref()),
        _ => None,
    }
}

fn path_parameter(item: &protobuf::ParametersItem) -> Option<&protobuf::PathParameterSubSchema> {
    let Some(protobuf::parameters_item::Oneof::Parameter(p)) = &item.oneof else {
        return None;
    };
    let Some(parameter::Oneof::NonBodyParameter(non_body)) = &p.oneof else {
        return None;
    };
    match &non_body.oneof {
        Some(non_body_parameter::Oneof::PathParameterSubSchema(sub)) => Some(sub),
        _ => None,
    }
}

#[test]
fn protobuf_round_trips_what_kubectl_reads() {
    let v2 = served_swagger();
    let bytes = to_protobuf(&v2).unwrap();
    let doc = protobuf::Document::decode(bytes.as_slice()).unwrap();
    assert_eq!(doc.swagger, "2.0");
    let info = doc.info.as_ref().unwrap();
    assert_eq!(
        (info.title.as_str(), info.version.as_str()),
        ("Kubernetes", crate::api::KUBERNETES_VERSION)
    );
    assert_eq!(doc, protobuf::document(&v2).unwrap());
    let defs = &doc.definitions.as_ref().unwrap().additional_properties;
    assert_eq!(defs.len(), v2["definitions"].as_object().unwrap().len());

    let pod = definition(&doc, "io.k8s.api.core.v1.Pod");
    assert_eq!(
        extension(&pod.vendor_extension, "x-kubernetes-group-version-kind"),
        json!([{ "group": "", "kind": "Pod", "version": "v1" }])
    );
    assert_eq!(pod.r#type.as_ref().unwrap().value, ["object"]);
    let spec = property(pod, "spec");
    assert_eq!(spec.xref, "#/definitions/io.k8s.api.core.v1.PodSpec");
    assert!(!spec.description.is_empty());
    let containers = property(definition(&doc, "io.k8s.api.core.v1.PodSpec"), "containers");
    assert_eq!(
        extension(&containers.vendor_extension, "x-kubernetes-patch-merge-key"),
        json!("name")
    );
    assert_eq!(containers.items.as_ref().unwrap().schema.len(), 1);
    let labels = property(
        definition(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "labels",
    );
    match &labels.additional_properties.as_ref().unwrap().oneof {
        Some(additional_properties_item::Oneof::Schema(s)) => {
            assert_eq!(s.r#type.as_ref().unwrap().value, ["string"])
        }
        other => panic!("labels: {other:?}"),
    }

    let paths = &doc.paths.as_ref().unwrap().path;
    assert_eq!(paths.len(), v2["paths"].as_object().unwrap().len());
    let item = paths
        .iter()
        .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    let post = item.post.as_ref().unwrap();
    assert_eq!(post.operation_id, "createAppsV1NamespacedDeployment");
    assert_eq!(
        extension(&post.vendor_extension, "x-kubernetes-group-version-kind"),
        json!({ "group": "apps", "kind": "Deployment", "version": "v1" })
    );
    let body = body_parameter(&post.parameters[0]).expect("a body parameter first");
    assert!(body.required);
    assert_eq!(
        body.schema.as_ref().unwrap().xref,
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    let ns = path_parameter(&item.parameters[0]).expect("a path parameter");
    assert_eq!((ns.name.as_str(), ns.required), ("namespace", true));
    let responses = &post.responses.as_ref().unwrap().response_code;
    assert_eq!(responses[0].name, "200");
}

#[test]
fn protobuf_refuses_a_malformed_schema() {
    let bad = json!({ "swagger": "2.0", "definitions": { "X": { "properties": { "a": 1 } } } });
    let err = to_protobuf(&bad).unwrap_err();
    assert!(err.to_string().contains("expected an object"), "{err}");
}

#[test]
fn accept_picks_json_or_protobuf_as_upstream() {
    assert_eq!(negotiate(""), Some(Format::Json));
    assert_eq!(negotiate("*/*"), Some(Format::Json));
    assert_eq!(negotiate("application/json"), Some(Format::Json));
    assert_eq!(
        negotiate("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        Some(Format::Protobuf)
    );
    assert_eq!(
        negotiate("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        Some(Format::Protobuf)
    );
    assert_eq!(
        negotiate(
            "application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        ),
        Some(Format::Protobuf)
    );
    assert_eq!(
        negotiate("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json"),
        Some(Format::Protobuf)
    );
    assert_eq!(negotiate("text/html, */*;q=0.1"), Some(Format::Json));
    assert_eq!(negotiate("application/yaml"), None);
    assert_eq!(negotiate("application/json;q=0"), None);
    assert_eq!(
        Format::Protobuf.content_type(),
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
}

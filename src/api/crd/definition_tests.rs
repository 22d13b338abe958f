//! Tests of CRD validation and defaulting, with upstream messages and paths.

use super::*;
use crate::api::crd::test_support::messages;
use serde_json::json;

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {"replicas": {"type": "integer", "default": 1}}},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]
            }]
        }
    })
}

fn errs(c: &Value) -> Vec<String> {
    messages(&validate_crd(c, None))
}

fn defaulted(mut c: Value) -> Value {
    default_crd(&mut c);
    c
}

#[test]
fn defaulting_fills_names_and_conversion() {
    let c = defaulted(crd());
    assert_eq!(c["spec"]["names"]["singular"], "widget");
    assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(c["spec"]["conversion"], json!({"strategy": "None"}));
    assert_eq!(c["spec"]["preserveUnknownFields"], false);
    assert!(errs(&c).is_empty(), "{:?}", errs(&c));
}

#[test]
fn name_must_be_plural_dot_group() {
    let mut c = defaulted(crd());
    c["metadata"]["name"] = json!("widget.example.com");
    assert_eq!(
        errs(&c),
        vec![
            r#"metadata.name: Invalid value: "widget.example.com": must be spec.names.plural+"."+spec.group"#
        ]
    );
}

#[test]
fn group_scope_and_names_are_checked() {
    let mut c = defaulted(crd());
    c["metadata"]["name"] = json!("widgets.example");
    c["spec"]["group"] = json!("example");
    c["spec"]["scope"] = json!("Global");
    c["spec"]["names"]["listKind"] = json!("Widget");
    c["spec"]["names"]["shortNames"] = json!(["W"]);
    assert_eq!(
        errs(&c),
        vec![
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
            r#"spec.names.shortNames[0]: Invalid value: "W": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#,
        ]
    );
}

#[test]
fn versions_need_one_storage_and_unique_names_and_a_schema() {
    let mut c = defaulted(crd());
    let mut v2 = c["spec"]["versions"][0].clone();
    v2.as_object_mut().unwrap().remove("schema");
    c["spec"]["versions"].as_array_mut().unwrap().push(v2);
    let e = errs(&c);
    assert!(
        e.contains(&"spec.versions[1].schema.openAPIV3Schema: Required value".to_string()),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.versions: Invalid value: ")
                && m.ends_with(": must contain unique version names")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.ends_with(": must have exactly one version marked as storage version")),
        "{e:?}"
    );
}

#[test]
fn non_structural_schemas_are_refused_with_upstream_paths() {
    let mut c = defaulted(crd());
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"properties": {"replicas": {"type": "integer"}}});
    assert_eq!(
        errs(&c),
        vec!["spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"]
    );
}

#[test]
fn unsupported_keywords_are_forbidden() {
    let mut c = defaulted(crd());
    c["spec"]["versions"][0]["subresources"] = json!(null);
    let schema = &mut c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    schema["properties"]["spec"]["properties"]["ref"] = json!({"type": "object", "$ref": "#/x"});
    schema["properties"]["spec"]["properties"]["tags"] =
        json!({"type": "array", "uniqueItems": true, "items": {"type": "string"}});
    schema["properties"]["spec"]["properties"]["mixed"] = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}});
    assert_eq!(
        errs(&c),
        vec![
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[mixed].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[ref].$ref: Forbidden: $ref is not supported",
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[tags].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ]
    );
}

#[test]
fn defaults_must_validate_and_not_be_in_metadata() {
    let mut c = defaulted(crd());
    let schema = &mut c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    schema["properties"]["spec"]["properties"]["replicas"]["minimum"] = json!(2);
    schema["properties"]["metadata"] = json!({"type": "object", "default": {"name": "x"}});
    assert_eq!(
        errs(&c),
        vec![
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].default: Invalid value: 1: spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].default in body should be greater than or equal to 2",
            "spec.versions[0].schema.openAPIV3Schema.properties[metadata].default: Forbidden: must not be set in top-level metadata",
        ]
    );
}

#[test]
fn list_map_keys_must_be_required_or_defaulted_scalars() {
    let mut c = defaulted(crd());
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["ports"] = json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name", "missing"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}}}
    });
    assert_eq!(
        errs(&c),
        vec![
            r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[ports].x-kubernetes-list-map-keys: Invalid value: []string{"name", "missing"}: entries must all be names of item properties"#,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[ports].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
        ]
    );
}

#[test]
fn rules_that_do_not_compile_are_refused() {
    let mut c = defaulted(crd());
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["x-kubernetes-validations"] =
        json!([{"rule": "self.replicas >"}, {"rule": "self.replicas > 0", "reason": "Nope"}]);
    let e = errs(&c);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].reason: Unsupported value: \"Nope\""), "{e:?}");
    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["x-kubernetes-validations"] = json!([{"rule": "self.replicas >"}]);
    let e = errs(&c);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:"self.replicas >", Message:"", MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:"#),
        "{}",
        e[0]
    );
}

#[test]
fn subresources_columns_and_conversion() {
    let mut c = defaulted(crd());
    let v = &mut c["spec"]["versions"][0];
    v["subresources"]["scale"] = json!({"specReplicasPath": ".status.replicas", "statusReplicasPath": "status.replicas", "labelSelectorPath": ".metadata.labels"});
    v["additionalPrinterColumns"] =
        json!([{"name": "", "type": "time", "format": "hex", "jsonPath": "spec"}]);
    c["spec"]["conversion"] = json!({"strategy": "Webhook"});
    assert_eq!(
        errs(&c),
        vec![
            r#"spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#,
            r#"spec.versions[0].subresources.scale.statusReplicasPath: Invalid value: "status.replicas": must be a simple json path starting with ."#,
            r#"spec.versions[0].subresources.scale.labelSelectorPath: Invalid value: ".metadata.labels": should be a json path under either .spec or .status"#,
            "spec.versions[0].additionalPrinterColumns[0].name: Required value",
            r#"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "time": must be one of boolean,date,integer,number,string"#,
            r#"spec.versions[0].additionalPrinterColumns[0].format: Invalid value: "hex": must be one of byte,date,date-time,double,float,int32,int64,password"#,
            r#"spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: "spec": must be a simple json path starting with ."#,
            "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
            "spec.conversion.conversionReviewVersions: Required value",
        ]
    );
    c["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {
        "clientConfig": {"url": "http://conv.example.com/convert"}, "conversionReviewVersions": ["v2"]}});
    let e = errs(&c);
    assert!(e.contains(&r#"spec.conversion.webhookClientConfig.url: Invalid value: "http://conv.example.com/convert": 'https' is the only allowed URL scheme"#.to_string()), "{e:?}");
    assert!(e.contains(&r#"spec.conversion.conversionReviewVersions: Invalid value: []string{"v2"}: must include at least one of v1, v1beta1"#.to_string()), "{e:?}");
}

#[test]
fn update_keeps_group_plural_and_established_scope() {
    let old = {
        let mut o = defaulted(crd());
        o["status"] = json!({"conditions": [{"type": "Established", "status": "True"}], "storedVersions": ["v1"]});
        o
    };
    let mut new = old.clone();
    new["spec"]["scope"] = json!("Cluster");
    new["spec"]["group"] = json!("other.io");
    new["metadata"]["name"] = json!("widgets.other.io");
    let e = messages(&validate_crd(&new, Some(&old)));
    assert_eq!(
        e,
        vec![
            r#"spec.scope: Invalid value: "Cluster": field is immutable"#,
            r#"spec.group: Invalid value: "other.io": field is immutable"#,
        ]
    );
    let mut new = old.clone();
    new["status"]["storedVersions"] = json!(["v1", "v0"]);
    assert_eq!(
        messages(&validate_crd(&new, Some(&old))),
        vec![
            r#"status.storedVersions[1]: Invalid value: "v0": missing from spec.versions; v0 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v0 and removes v0 from status.storedVersions"#
        ]
    );
}

#[test]
fn schema_for_version_prefers_the_version_schema() {
    let c = crd();
    assert!(schema_for_version(&c, "v1").is_some());
    assert!(schema_for_version(&c, "v2").is_none());
}

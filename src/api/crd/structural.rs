//! Whether a schema is structural (upstream `schema.ValidateStructural`): every node of the
//! spine has a type, value validations under `allOf`/`anyOf`/`oneOf`/`not` only restrict
//! what the spine specifies, and root `metadata` restricts `name`/`generateName` only.

use super::schema::{AdditionalProperties, Structural};
use super::FieldPath;
use crate::api::validation::FieldError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// Structural errors of `s` (paths under `base`), sorted as upstream sorts them.
pub(crate) fn validate_structural(s: &Structural, base: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    invariants(s, Level::Root, base, &mut errs);
    completeness(s, base, &mut errs);
    errs.sort_by_key(ToString::to_string);
    errs
}

fn invariants(s: &Structural, lvl: Level, p: &FieldPath, errs: &mut Vec<FieldError>) {
    if s.type_ == "array" && s.items.is_none() {
        errs.push(FieldError::required(
            p.child("items").field,
            "must be specified",
        ));
    }
    if let Some(is) = &s.items {
        invariants(is, Level::Item, &p.child("items"), errs);
    }
    for (k, ps) in &s.properties {
        invariants(ps, Level::Field, &p.child("properties").key(k), errs);
    }
    if let Some(ap) = &s.additional_properties {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                p.child("additionalProperties").field,
                "must not be used at the root",
            ));
        }
        if let AdditionalProperties::Schema(ap) = ap {
            invariants(ap, Level::Field, &p.child("additionalProperties"), errs);
        }
    }
    if s.x_int_or_string && s.preserves_unknown_fields() {
        errs.push(FieldError::invalid_rendered(
            p.child("x-kubernetes-preserve-unknown-fields").field,
            "true",
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if s.x_int_or_string && s.x_embedded_resource {
        errs.push(FieldError::invalid_rendered(
            p.child("x-kubernetes-embedded-resource").field,
            "true",
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = is_int_or_string_any_of(&s.any_of);
    let skip_first_all_of_any_of = s
        .all_of
        .first()
        .is_some_and(|a| is_int_or_string_any_of(&a.any_of));
    junctors(s, skip_any_of, skip_first_all_of_any_of, p, errs);

    let check_metadata = lvl == Level::Root || s.x_embedded_resource;
    let type_path = p.child("type").field;
    if s.x_embedded_resource && s.type_ != "object" {
        let msg = "must be object if x-kubernetes-embedded-resource is true";
        errs.push(if s.type_.is_empty() {
            FieldError::required(type_path.clone(), msg)
        } else {
            FieldError::invalid(type_path.clone(), &s.type_, msg)
        });
    } else if s.type_.is_empty() && !s.x_int_or_string && !s.preserves_unknown_fields() {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(type_path.clone(), msg));
    }
    if s.x_embedded_resource && s.additional_properties.is_some() {
        errs.push(FieldError::forbidden(
            p.child("additionalProperties").field,
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !s.type_.is_empty() && s.type_ != "object" {
        errs.push(FieldError::invalid(
            type_path,
            &s.type_,
            "must be object at the root",
        ));
    }
    if check_metadata {
        for key in ["kind", "apiVersion"] {
            if let Some(k) = s.properties.get(key) {
                if k.type_ != "string" {
                    errs.push(FieldError::invalid(
                        p.child("properties").key(key).child("type").field,
                        &k.type_,
                        "must be string",
                    ));
                }
            }
        }
    }
    if let Some(meta) = s.properties.get("metadata") {
        let mp = p.child("properties").key("metadata");
        if check_metadata && meta.type_ != "object" {
            errs.push(FieldError::invalid(
                mp.child("type").field,
                &meta.type_,
                "must be object",
            ));
        }
        if lvl == Level::Root && !metadata_only_restricts_names(meta) {
            errs.push(FieldError::forbidden(
                mp.field,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if s.x_embedded_resource && !s.preserves_unknown_fields() && s.properties.is_empty() {
        errs.push(FieldError::required(
            p.child("properties").field,
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// Root `metadata` may carry `type`, a default, and properties `name`/`generateName` only.
fn metadata_only_restricts_names(m: &Structural) -> bool {
    let names_only = m
        .properties
        .keys()
        .all(|k| k == "name" || k == "generateName");
    let bare = Structural {
        type_: m.type_.clone(),
        default: m.default.clone(),
        properties: m.properties.clone(),
        ..Structural::default()
    };
    names_only && format!("{m:?}") == format!("{bare:?}")
}

fn is_int_or_string_any_of(any_of: &[Structural]) -> bool {
    if any_of.len() != 2 {
        return false;
    }
    let only_type = |s: &Structural, t: &str| {
        let bare = Structural {
            type_: t.to_string(),
            ..Structural::default()
        };
        format!("{s:?}") == format!("{bare:?}")
    };
    only_type(&any_of[0], "integer") && only_type(&any_of[1], "string")
}

fn junctors(
    s: &Structural,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    p: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, a) in s.any_of.iter().enumerate() {
            nested(a, false, &p.child("anyOf").index(i), errs);
        }
    }
    for (i, a) in s.all_of.iter().enumerate() {
        nested(
            a,
            skip_first_all_of_any_of && i == 0,
            &p.child("allOf").index(i),
            errs,
        );
    }
    for (i, a) in s.one_of.iter().enumerate() {
        nested(a, false, &p.child("oneOf").index(i), errs);
    }
    if let Some(n) = &s.not {
        nested(n, false, &p.child("not"), errs);
    }
    if let Some(pattern) = &s.pattern {
        if let Err(e) = &pattern.regex {
            errs.push(FieldError::invalid(
                p.child("pattern").field,
                &pattern.source,
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
}

/// Upstream `validateNestedValueValidation`: what a value validation may not carry.
fn nested(v: &Structural, skip_any_of: bool, p: &FieldPath, errs: &mut Vec<FieldError>) {
    junctors(v, skip_any_of, false, p, errs);
    if let Some(is) = &v.items {
        nested(is, false, &p.child("items"), errs);
    }
    for (k, ps) in &v.properties {
        nested(ps, false, &p.child("properties").key(k), errs);
    }
    let forbid = |errs: &mut Vec<FieldError>, key: &str, msg: &str| {
        errs.push(FieldError::forbidden(p.child(key).field, msg));
    };
    if !v.type_.is_empty() {
        forbid(errs, "type", "must be empty to be structural");
    }
    if v.additional_properties.is_some() {
        forbid(
            errs,
            "additionalProperties",
            "must be undefined to be structural",
        );
    }
    if v.default.is_some() {
        forbid(errs, "default", "must be undefined to be structural");
    }
    if !v.title.is_empty() {
        forbid(errs, "title", "must be empty to be structural");
    }
    if !v.description.is_empty() {
        forbid(errs, "description", "must be empty to be structural");
    }
    if v.nullable {
        forbid(errs, "nullable", "must be false to be structural");
    }
    if v.preserves_unknown_fields() {
        forbid(
            errs,
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        );
    }
    if v.x_embedded_resource {
        forbid(
            errs,
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        );
    }
    if v.x_int_or_string {
        forbid(
            errs,
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        );
    }
    if !v.x_list_map_keys.is_empty() {
        forbid(
            errs,
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        );
    }
    if v.x_list_type.is_some() {
        forbid(
            errs,
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        );
    }
    if v.x_map_type.is_some() {
        forbid(
            errs,
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        );
    }
    if !v.rules.is_empty() {
        forbid(
            errs,
            "x-kubernetes-validations",
            "must be empty to be structural",
        );
    }
    if v.properties.contains_key("metadata") {
        errs.push(FieldError::forbidden(
            p.child("properties").key("metadata").field,
            "must not be specified in a nested context",
        ));
    }
}

/// Upstream `validateStructuralCompleteness`: fields and items named in value
/// validations must be specified in the spine too.
fn completeness(s: &Structural, p: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(is) = &s.items {
        completeness(is, &p.child("items"), errs);
    }
    for (k, ps) in &s.properties {
        completeness(ps, &p.child("properties").key(k), errs);
    }
    junctor_completeness(s, s, p, p, errs);
}

fn junctor_completeness(
    v: &Structural,
    s: &Structural,
    sp: &FieldPath,
    vp: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let groups = [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ];
    for (name, list) in groups {
        for (i, n) in list.iter().enumerate() {
            nested_completeness(n, s, sp, &vp.child(name).index(i), errs);
        }
    }
    if let Some(n) = &v.not {
        nested_completeness(n, s, sp, &vp.child("not"), errs);
    }
}

fn nested_completeness(
    v: &Structural,
    s: &Structural,
    sp: &FieldPath,
    vp: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    junctor_completeness(v, s, sp, vp, errs);
    if let Some(vi) = &v.items {
        match &s.items {
            None => errs.push(FieldError::required(
                sp.child("items").field,
                format!("because it is defined in {}", vp.child("items").field),
            )),
            Some(si) => nested_completeness(vi, si, &sp.child("items"), &vp.child("items"), errs),
        }
    }
    for (k, vf) in &v.properties {
        let spk = sp.child("properties").key(k);
        let vpk = vp.child("properties").key(k);
        match s.properties.get(k) {
            None => errs.push(FieldError::required(
                spk.field,
                format!("because it is defined in {}", vpk.field),
            )),
            Some(sf) => nested_completeness(vf, sf, &spk, &vpk, errs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::test_support::messages;
    use serde_json::{json, Value};

    fn check(schema: Value) -> Vec<String> {
        let s = Structural::from_json(&schema).unwrap();
        messages(&validate_structural(
            &s,
            &FieldPath::new("spec.versions[0].schema.openAPIV3Schema"),
        ))
    }

    #[test]
    fn missing_types_are_required() {
        assert_eq!(
            check(json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}})),
            vec!["spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"]
        );
        assert_eq!(
            check(json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}})),
            vec!["spec.versions[0].schema.openAPIV3Schema.properties[l].items.type: Required value: must not be empty for specified array items"]
        );
        assert_eq!(
            check(json!({"properties": {"a": {"x-kubernetes-preserve-unknown-fields": true}, "b": {"x-kubernetes-int-or-string": true}}})),
            vec!["spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root"]
        );
    }

    #[test]
    fn root_must_be_an_object_without_additional_properties() {
        assert_eq!(
            check(json!({"type": "object", "additionalProperties": {"type": "string"}})),
            vec!["spec.versions[0].schema.openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root"]
        );
        assert_eq!(
            check(json!({"type": "string"})),
            vec![
                r#"spec.versions[0].schema.openAPIV3Schema.type: Invalid value: "string": must be object at the root"#
            ]
        );
        assert_eq!(
            check(json!({"type": "object", "properties": {"a": {"type": "array"}}})),
            vec!["spec.versions[0].schema.openAPIV3Schema.properties[a].items: Required value: must be specified"]
        );
    }

    #[test]
    fn root_metadata_may_only_restrict_names() {
        assert!(check(json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}}}})).is_empty());
        assert_eq!(
            check(json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}})),
            vec!["spec.versions[0].schema.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"]
        );
    }

    #[test]
    fn value_validations_must_not_carry_structure() {
        let errs = check(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "anyOf": [{"type": "object", "properties": {"b": {"description": "x"}}}]
        }));
        assert_eq!(
            errs,
            vec![
                "spec.versions[0].schema.openAPIV3Schema.anyOf[0].properties[b].description: Forbidden: must be empty to be structural",
                "spec.versions[0].schema.openAPIV3Schema.anyOf[0].type: Forbidden: must be empty to be structural",
                "spec.versions[0].schema.openAPIV3Schema.properties[b]: Required value: because it is defined in spec.versions[0].schema.openAPIV3Schema.anyOf[0].properties[b]",
            ]
        );
    }

    #[test]
    fn int_or_string_patterns_are_allowed() {
        assert!(check(json!({"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "other": {"x-kubernetes-int-or-string": true, "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^[0-9]+$"}]}
        }})).is_empty());
    }

    #[test]
    fn embedded_resources_need_object_type_and_properties() {
        assert_eq!(
            check(json!({"type": "object", "properties": {"t": {"x-kubernetes-embedded-resource": true}}})),
            vec![
                "spec.versions[0].schema.openAPIV3Schema.properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
                "spec.versions[0].schema.openAPIV3Schema.properties[t].type: Required value: must be object if x-kubernetes-embedded-resource is true",
            ]
        );
    }

    #[test]
    fn invalid_patterns_are_reported() {
        let errs = check(
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(x"}}}),
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with(r#"spec.versions[0].schema.openAPIV3Schema.properties[a].pattern: Invalid value: "(x": must be a valid regular expression, but isn't: "#), "{}", errs[0]);
    }
}

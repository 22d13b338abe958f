//! Applying a strategic merge patch, following k8s.io/apimachinery/pkg/util/strategicpatch.
//!
//! Semantics (as upstream, with `MergeParallelList` and `IgnoreUnmatchedNulls`):
//! - maps merge recursively; a `null` value deletes the key;
//! - lists whose field has no `merge` strategy are replaced;
//! - lists of maps with a merge key merge item by item; lists of primitives with the
//!   `merge` strategy are unioned;
//! - result order: items named by the patch in patch order, interleaved with the items only
//!   the server has in server order (a new item goes before the server-only items that
//!   follow it, as upstream); `$setElementOrder/<field>` overrides the patch order;
//! - directives: `$patch: replace|delete` (in a map or as a list item), `$retainKeys`,
//!   `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`.
//!
//! Unlike upstream, a value the patch adds where the original had none is normalised too, so
//! directives never leak into the result (upstream stores such values verbatim).

use serde_json::{Map, Value};

use super::schema::{lookup, FieldMeta, Ty};
use super::PatchError;

pub(crate) const DIRECTIVE_MARKER: &str = "$patch";
pub(crate) const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
pub(crate) const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder/";
pub(crate) const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList/";
pub(crate) const REPLACE: &str = "replace";
pub(crate) const DELETE: &str = "delete";
const MERGE: &str = "merge";

/// Applies `patch` to `original`, an object of the Go type `ty`.
pub(crate) fn merge_object(
    original: Map<String, Value>,
    patch: Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, PatchError> {
    merge_map(original, patch, ty)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            // The map replaces the original whole; it is still normalised so that its own
            // directives and nulls do not reach the result.
            Some(REPLACE) => merge_map(Map::new(), patch, ty),
            Some(DELETE) => Ok(Map::new()),
            _ => Err(PatchError::BadDirective {
                message: format!(
                    "unknown patch type: {} in map: {}",
                    display(&directive),
                    Value::Object(patch)
                ),
            }),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, ty)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            Some(field) => (field.to_owned(), true),
            None => (key, false),
        };
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let meta = lookup(ty, &key);
        let Some(current) = original.get_mut(&key) else {
            if !is_delete_list {
                let value = fresh(&key, patch_value, meta)?;
                original.insert(key, value);
            }
            continue;
        };
        let merged = match (current.take(), patch_value) {
            (Value::Object(o), Value::Object(p)) if !meta.strategy.replace => {
                Value::Object(merge_map(o, p, meta.ty)?)
            }
            (Value::Array(o), Value::Array(p)) => {
                Value::Array(merge_list_field(&key, o, p, meta, is_delete_list)?)
            }
            (o, _) if is_delete_list => o,
            (_, p) => fresh(&key, p, meta)?,
        };
        *current = merged;
    }
    Ok(original)
}

/// The value a patch creates where the original has none (or has a value of another
/// type): the patch value with its directives applied against nothing.
fn fresh(field: &str, value: Value, meta: FieldMeta) -> Result<Value, PatchError> {
    Ok(match value {
        Value::Object(map) => Value::Object(merge_map(Map::new(), map, meta.ty)?),
        Value::Array(items) => {
            Value::Array(merge_list_field(field, Vec::new(), items, meta, false)?)
        }
        scalar => scalar,
    })
}

/// `$retainKeys`: drops every key of `original` the directive does not list.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let bad_format = || PatchError::BadDirective {
        message: "invalid patch format of retainKeys".to_owned(),
    };
    let Value::Array(retain) = retain else {
        return Err(bad_format());
    };
    let keep = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        let is_directive = k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX);
        if !v.is_null() && !is_directive && !keep(k) {
            return Err(bad_format());
        }
    }
    original.retain(|k, _| keep(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list now and orders the result by the
/// directive (then by the live list for items the directive does not name).
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for directive in directives {
        let order = patch.shift_remove(&directive).unwrap_or(Value::Null);
        let field = &directive[SET_ELEMENT_ORDER_PREFIX.len()..];
        let bad_format = || PatchError::BadDirective {
            message: "invalid patch format of setElementOrder list".to_owned(),
        };
        let Value::Array(order) = order else {
            return Err(bad_format());
        };
        if field.is_empty() {
            return Err(bad_format());
        }
        let original_list = match original.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(bad_arg_type(field, "list", other)),
        };
        let patch_list = match patch.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(bad_arg_type(field, "list", other)),
        };
        let meta = lookup(ty, field);
        let merge_key = meta.merge_key.filter(|_| meta.strategy.merge);
        if let Some(patch_list) = &patch_list {
            validate_patch_with_set_order(patch_list, &order, merge_key)?;
        }
        let server_order = original_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(o), None) => o,
            (o, Some(p)) => merge_list_field(field, o.unwrap_or_default(), p, meta, false)?,
        };
        let merged = if meta.strategy.merge {
            let (named, server_only) = partition_by_presence(merged, &order, merge_key)?;
            normalize_order(named, server_only, &order, &server_order, merge_key)?
        } else {
            merged
        };
        original.insert(field.to_owned(), Value::Array(merged));
        patch.shift_remove(field);
    }
    Ok(())
}

/// Checks that the patch list names its items in the relative order of the
/// `$setElementOrder` list and names none the directive does not list.
fn validate_patch_with_set_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    let items: Vec<&Value> = patch_list.iter().filter(|v| !has_directive(v)).collect();
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if same_item(items[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(PatchError::BadDirective {
            message: format!(
                "the order in patch list {} doesn't match $setElementOrder list {}",
                Value::Array(patch_list.to_vec()),
                Value::Array(order.to_vec())
            ),
        });
    }
    Ok(())
}

/// Merges the list `patch` into the list `original` of field `field` per its strategy.
fn merge_list_field(
    field: &str,
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if !meta.strategy.merge && !is_delete_list {
        // Replaced whole; items are normalised against nothing.
        let item_meta = FieldMeta {
            strategy: Default::default(),
            merge_key: None,
            ty: meta.ty,
        };
        return patch
            .into_iter()
            .map(|v| fresh(field, v, item_meta))
            .collect();
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let of_maps = list_of_maps(field, &original, &patch)?;

    if !of_maps {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|o| !patch.iter().any(|p| json_eq(o, p)))
                .collect());
        }
        let replace = patch
            .iter()
            .any(|v| v.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(REPLACE));
        let patch: Vec<Value> = patch.into_iter().filter(|v| !has_directive(v)).collect();
        let original = if replace { Vec::new() } else { original };
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.iter().any(|m| json_eq(m, v)) {
                merged.push(v.clone());
            }
        }
        let (named, server_only) = partition_by_presence(merged, &patch, None)?;
        return normalize_order(named, server_only, &patch, &original, None);
    }

    let Some(merge_key) = meta.merge_key else {
        return Err(PatchError::BadDirective {
            message: format!("cannot merge lists without merge key for {field}"),
        });
    };
    let (original, patch, replaced) = apply_list_directives(original, patch, merge_key)?;
    if replaced {
        let item_meta = FieldMeta {
            strategy: Default::default(),
            merge_key: None,
            ty: meta.ty,
        };
        return original
            .into_iter()
            .map(|v| fresh(field, v, item_meta))
            .collect();
    }
    let server_order = original.clone();
    let merged = merge_items_by_key(original, &patch, merge_key, meta.ty)?;
    let (named, server_only) = partition_by_presence(merged, &patch, Some(merge_key))?;
    normalize_order(named, server_only, &patch, &server_order, Some(merge_key))
}

/// Whether the items of a merging list are maps (`true`) or primitives (`false`);
/// mixed lists and lists of lists are refused as upstream does. Directive items
/// (`{"$patch": "replace"}`) do not count.
fn list_of_maps(field: &str, original: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut class = None;
    let mut saw_directive = false;
    for v in original.iter().chain(patch) {
        let c = match v {
            Value::Array(_) => return Err(PatchError::ListOfLists),
            _ if has_directive(v) => {
                saw_directive = true;
                continue;
            }
            Value::Object(_) => "map",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            Value::Null => "null",
        };
        match class {
            None => class = Some(c),
            Some(k) if k == c => {}
            Some(_) => {
                return Err(PatchError::MixedListItems {
                    field: field.to_owned(),
                })
            }
        }
    }
    Ok(class.map_or(saw_directive, |c| c == "map"))
}

/// Handles the items carrying `$patch`: `delete` removes the original items with that merge
/// key, `replace` makes the other patch items the whole list (third value `true`).
/// Returns the original and the patch without directive items.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>, bool), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE_MARKER) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some(DELETE) => {
                let Some(key_value) = item.get(merge_key) else {
                    return Err(missing_merge_key(&item, merge_key));
                };
                original.retain(|o| !o.get(merge_key).is_some_and(|v| json_eq(v, key_value)));
            }
            Some(REPLACE) => replace = true,
            Some(MERGE) => {
                return Err(PatchError::BadDirective {
                    message: "merging lists cannot yet be specified in the patch".to_owned(),
                })
            }
            _ => {
                return Err(PatchError::BadDirective {
                    message: format!("unknown patch type: {} in map: {item}", display(directive)),
                })
            }
        }
    }
    if replace {
        return Ok((plain, Vec::new(), true));
    }
    Ok((original, plain, false))
}

/// Merges each patch item into the original item with the same merge key, or adds it.
fn merge_items_by_key(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    ty: Ty,
) -> Result<Vec<Value>, PatchError> {
    for item in patch {
        let Value::Object(item_map) = item else {
            return Err(bad_arg_type(merge_key, "map", item));
        };
        let Some(key_value) = item_map.get(merge_key) else {
            return Err(missing_merge_key(item, merge_key));
        };
        let found = original
            .iter()
            .position(|o| o.get(merge_key).is_some_and(|v| json_eq(v, key_value)));
        match found {
            Some(i) => {
                let current = match original[i].take() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(current, item_map.clone(), ty)?);
            }
            None => original.push(Value::Object(merge_map(Map::new(), item_map.clone(), ty)?)),
        }
    }
    Ok(original)
}

/// Splits `items` into those `by` names (by merge key, or by value for primitives) and the
/// rest, keeping their order.
fn partition_by_presence(
    items: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut named = Vec::new();
    let mut rest = Vec::new();
    for item in items {
        if index_of(by, &item, merge_key)?.is_some() {
            named.push(item);
        } else {
            rest.push(item);
        }
    }
    Ok((named, rest))
}

/// Sorts `named` by `named_order` and `server_only` by `server_order`, then interleaves
/// them: a server-only item goes first only when both it and the next named item are in
/// the live list and it came first there (upstream `normalizeElementOrder`).
fn normalize_order(
    mut named: Vec<Value>,
    mut server_only: Vec<Value>,
    named_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    sort_by_order(&mut named, named_order, merge_key)?;
    sort_by_order(&mut server_only, server_order, merge_key)?;

    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, merge_key)?,
                    index_of(server_order, r, merge_key)?,
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Stable sort by position in `order`; items `order` does not name keep their relative
/// order after the named ones.
fn sort_by_order(
    items: &mut Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    let mut keyed = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let pos = index_of(order, &item, merge_key)?.unwrap_or(usize::MAX);
        keyed.push((pos, item));
    }
    keyed.sort_by_key(|(pos, _)| *pos);
    items.extend(keyed.into_iter().map(|(_, item)| item));
    Ok(())
}

/// Position of `item` in `list`, matching maps by merge key and primitives by value.
fn index_of(
    list: &[Value],
    item: &Value,
    merge_key: Option<&str>,
) -> Result<Option<usize>, PatchError> {
    match merge_key {
        None => Ok(list.iter().position(|v| json_eq(v, item))),
        Some(key) => {
            let Some(wanted) = item.get(key) else {
                return Err(missing_merge_key(item, key));
            };
            Ok(list
                .iter()
                .position(|v| v.get(key).is_some_and(|k| json_eq(k, wanted))))
        }
    }
}

fn same_item(a: &Value, b: &Value, merge_key: Option<&str>) -> Result<bool, PatchError> {
    match merge_key {
        None => Ok(json_eq(a, b)),
        Some(key) => {
            let ka = a.get(key).ok_or_else(|| missing_merge_key(a, key))?;
            let kb = b.get(key).ok_or_else(|| missing_merge_key(b, key))?;
            Ok(json_eq(ka, kb))
        }
    }
}

fn has_directive(v: &Value) -> bool {
    v.get(DIRECTIVE_MARKER).is_some()
}

/// JSON equality where `80` and `80.0` are the same number (Go decodes both to float64).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn missing_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::MissingMergeKey {
        item: item.to_string(),
        key: key.to_owned(),
    }
}

fn bad_arg_type(field: &str, expected: &str, got: &Value) -> PatchError {
    PatchError::BadDirective {
        message: format!("expected a {expected} for {field}, but received {got}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, original: Value, patch: Value) -> Result<Value, PatchError> {
        let (Value::Object(o), Value::Object(p)) = (original, patch) else {
            panic!("objects expected");
        };
        merge_object(o, p, Ty::of_kind(kind)).map(Value::Object)
    }

    fn pod_with(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    /// True when no key anywhere in `v` starts with `$`.
    fn free_of_directives(v: &Value) -> bool {
        match v {
            Value::Object(m) => m
                .iter()
                .all(|(k, v)| !k.starts_with('$') && free_of_directives(v)),
            Value::Array(items) => items.iter().all(free_of_directives),
            _ => true,
        }
    }

    #[test]
    fn null_deletes_keys_and_nested_maps_merge() {
        let out = smp(
            "Pod",
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}}}),
            json!({"metadata": {"labels": {"a": null, "c": "3"}, "annotations": null, "gone": null}}),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn key_order_of_the_original_is_kept() {
        let out = smp(
            "Pod",
            json!({"a": 1, "b": 2, "c": 3}),
            json!({"b": null, "d": 4, "a": 0}),
        )
        .unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "c", "d"]);
    }

    #[test]
    fn patch_replace_in_a_list_replaces_the_list() {
        let out = smp(
            "Pod",
            pod_with(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"$patch": "replace"}]}}),
        )
        .unwrap();
        assert_eq!(out, pod_with(json!([{"name": "c", "image": "x"}])));
    }

    #[test]
    fn patch_replace_in_a_primitive_list_replaces_it() {
        let out = smp(
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["c", {"$patch": "replace"}]}}),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"finalizers": ["c"]}}));
    }

    #[test]
    fn patch_replace_in_a_map_replaces_the_map() {
        let out = smp(
            "Pod",
            json!({"spec": {"nodeSelector": {"a": "1", "b": "2"}, "hostname": "h"}}),
            json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3", "d": null}}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"nodeSelector": {"c": "3"}, "hostname": "h"}})
        );
    }

    #[test]
    fn patch_delete_in_a_map_empties_it() {
        let out = smp(
            "Pod",
            json!({"spec": {"securityContext": {"runAsUser": 1}, "hostname": "h"}}),
            json!({"spec": {"securityContext": {"$patch": "delete"}}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"securityContext": {}, "hostname": "h"}})
        );
    }

    #[test]
    fn patch_delete_of_an_unknown_item_is_a_no_op() {
        let out = smp(
            "Pod",
            pod_with(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"name": "zzz", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(out, pod_with(json!([{"name": "a"}])));
    }

    #[test]
    fn patch_delete_without_merge_key_is_refused() {
        let err = smp(
            "Pod",
            pod_with(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::MissingMergeKey { .. }));
    }

    #[test]
    fn unknown_or_merge_directives_are_refused() {
        let err = smp(
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"$patch": "frobnicate"}}),
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unknown patch type: frobnicate in map"));
        assert_eq!(err.status_code(), 400);

        let err = smp(
            "Pod",
            pod_with(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "merging lists cannot yet be specified in the patch"
        );
    }

    #[test]
    fn directives_in_new_subtrees_do_not_leak() {
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{
                "name": "a",
                "$setElementOrder/env": [{"name": "X"}],
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}],
                "$deleteFromPrimitiveList/args": ["z"],
                "resources": {"$patch": "replace", "limits": {"cpu": "1"}}
            }],
            "volumes": [{"$retainKeys": ["name", "emptyDir"], "name": "v", "emptyDir": {}}],
            "securityContext": {"runAsUser": 1, "fsGroup": null}
        }, "metadata": {"$setElementOrder/finalizers": ["f"], "finalizers": ["f"]}});
        let out = smp("Pod", json!({}), patch).unwrap();
        assert!(free_of_directives(&out), "{out}");
        assert_eq!(
            out,
            json!({"spec": {
                "containers": [{
                    "name": "a",
                    "env": [{"name": "X", "value": "1"}],
                    "resources": {"limits": {"cpu": "1"}}
                }],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "securityContext": {"runAsUser": 1}
            }, "metadata": {"finalizers": ["f"]}})
        );
    }

    #[test]
    fn value_of_another_type_is_replaced() {
        let out = smp(
            "Pod",
            json!({"spec": {"a": "scalar", "b": {"x": 1}, "c": [1]}}),
            json!({"spec": {"a": {"y": 2, "z": null}, "b": "s", "c": {"k": 1}}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"a": {"y": 2}, "b": "s", "c": {"k": 1}}})
        );
    }

    #[test]
    fn delete_from_primitive_list_without_list_is_a_no_op() {
        let out = smp(
            "Node",
            json!({"spec": {}}),
            json!({"spec": {"$deleteFromPrimitiveList/podCIDRs": ["10.0.0.0/24"]}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {}}));
    }

    #[test]
    fn primitive_merge_lists_deduplicate() {
        let out = smp(
            "Node",
            json!({"spec": {"podCIDRs": ["a", "b"]}}),
            json!({"spec": {"podCIDRs": ["b", "a", "c", "c"]}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"podCIDRs": ["b", "a", "c"]}}));
    }

    #[test]
    fn updated_items_interleave_with_server_only_items_in_live_order() {
        // Upstream: patch items keep patch order, server-only items slot in by live order.
        let out = smp(
            "Pod",
            pod_with(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            json!({"spec": {"containers": [{"name": "b", "image": "1"}, {"name": "d"}]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            pod_with(
                json!([{"name": "a"}, {"name": "b", "image": "1"}, {"name": "d"}, {"name": "c"}])
            )
        );
    }

    #[test]
    fn merge_keys_compare_numbers_by_value() {
        let out = smp(
            "Service",
            json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
            json!({"spec": {"ports": [{"port": 80.0, "targetPort": 8080}]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"ports": [{"port": 80.0, "name": "http", "targetPort": 8080}]}})
        );
    }

    #[test]
    fn lists_of_lists_and_mixed_lists_are_unprocessable() {
        let err = smp(
            "Node",
            json!({"spec": {"podCIDRs": [["a"]]}}),
            json!({"spec": {"podCIDRs": [["b"]]}}),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::ListOfLists));
        assert_eq!(err.status_code(), 422);

        let err = smp(
            "Node",
            json!({"spec": {"podCIDRs": ["a"]}}),
            json!({"spec": {"podCIDRs": [1]}}),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::MixedListItems { .. }));
    }

    #[test]
    fn top_level_patch_delete_empties_the_object() {
        let out = smp(
            "Pod",
            json!({"metadata": {"name": "p"}}),
            json!({"$patch": "delete"}),
        )
        .unwrap();
        assert_eq!(out, json!({}));
    }

    #[test]
    fn set_element_order_for_a_non_merging_list_keeps_the_patch_list() {
        let out = smp(
            "Pod",
            json!({"spec": {"tolerations": [{"key": "a"}]}}),
            json!({"spec": {"$setElementOrder/tolerations": [{"key": "b"}],
                            "tolerations": [{"key": "b"}]}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"tolerations": [{"key": "b"}]}}));
    }

    #[test]
    fn set_element_order_must_be_a_list() {
        let err = smp(
            "Pod",
            pod_with(json!([{"name": "a"}])),
            json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid patch format of setElementOrder list"
        );
    }
}

//! Computing a two-way strategic merge patch (upstream `CreateTwoWayMergePatch`): the patch
//! that turns `original` into `modified` when applied with strategic merge semantics.

use serde_json::{Map, Value};

use super::schema::{lookup, FieldMeta, Ty};
use super::strategic::{
    json_eq, DELETE, DELETE_FROM_PRIMITIVE_LIST_PREFIX, DIRECTIVE_MARKER, RETAIN_KEYS_DIRECTIVE,
    SET_ELEMENT_ORDER_PREFIX,
};

/// Diff of two objects of type `ty`; `retain_keys` adds `$retainKeys` when the map changed.
pub(crate) fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    ty: Ty,
    retain_keys: bool,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, new) in modified {
        let Some(old) = original.get(key) else {
            patch.insert(key.clone(), new.clone());
            continue;
        };
        let meta = lookup(ty, key);
        match (old, new) {
            (Value::Object(o), Value::Object(m)) if !meta.strategy.replace => {
                let sub = diff_maps(o, m, meta.ty, meta.strategy.retain_keys);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(o), Value::Array(m)) if meta.strategy.merge => {
                diff_merging_lists(key, o, m, meta, &mut patch);
            }
            _ if !json_eq(old, new) => {
                patch.insert(key.clone(), new.clone());
            }
            _ => {}
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    let adds_retain_keys =
        retain_keys && !patch.is_empty() && modified.iter().any(|(_, v)| !v.is_null());
    if adds_retain_keys {
        let mut keys: Vec<&String> = modified
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        patch.insert(
            RETAIN_KEYS_DIRECTIVE.to_owned(),
            Value::Array(keys.into_iter().map(|k| Value::String(k.clone())).collect()),
        );
    }
    patch
}

/// Diff of a list with the `merge` strategy: changed and added items, `$patch: delete`
/// items (maps) or `$deleteFromPrimitiveList` (primitives), and `$setElementOrder`.
fn diff_merging_lists(
    key: &str,
    original: &[Value],
    modified: &[Value],
    meta: FieldMeta,
    patch: &mut Map<String, Value>,
) {
    if original.is_empty() {
        if !modified.is_empty() {
            patch.insert(key.to_owned(), Value::Array(modified.to_vec()));
        }
        return;
    }
    let of_maps = original.iter().chain(modified).any(Value::is_object);
    match meta.merge_key {
        Some(merge_key) if of_maps => {
            let key_of = |v: &Value| v.get(merge_key).cloned().unwrap_or(Value::Null);
            let find = |list: &[Value], k: &Value| {
                list.iter()
                    .find(|v| v.get(merge_key).is_some_and(|x| json_eq(x, k)))
                    .cloned()
            };
            let mut items = Vec::new();
            for new in modified {
                let k = key_of(new);
                match (find(original, &k), new) {
                    (Some(Value::Object(o)), Value::Object(m)) => {
                        let mut sub = diff_maps(&o, m, meta.ty, meta.strategy.retain_keys);
                        if !sub.is_empty() {
                            sub.insert(merge_key.to_owned(), k);
                            items.push(Value::Object(sub));
                        }
                    }
                    _ => items.push(new.clone()),
                }
            }
            for old in original {
                let k = key_of(old);
                if find(modified, &k).is_none() {
                    let mut delete = Map::new();
                    delete.insert(merge_key.to_owned(), k);
                    delete.insert(
                        DIRECTIVE_MARKER.to_owned(),
                        Value::String(DELETE.to_owned()),
                    );
                    items.push(Value::Object(delete));
                }
            }
            let order_same = original.len() == modified.len()
                && original
                    .iter()
                    .zip(modified)
                    .all(|(o, m)| json_eq(&key_of(o), &key_of(m)));
            if !items.is_empty() || !order_same {
                let order = modified
                    .iter()
                    .map(|m| {
                        let mut entry = Map::new();
                        entry.insert(merge_key.to_owned(), key_of(m));
                        Value::Object(entry)
                    })
                    .collect();
                patch.insert(
                    format!("{SET_ELEMENT_ORDER_PREFIX}{key}"),
                    Value::Array(order),
                );
            }
            if !items.is_empty() {
                patch.insert(key.to_owned(), Value::Array(items));
            }
        }
        _ => {
            let contains = |list: &[Value], v: &Value| list.iter().any(|x| json_eq(x, v));
            let mut added: Vec<Value> = Vec::new();
            for v in modified {
                if !contains(original, v) && !contains(&added, v) {
                    added.push(v.clone());
                }
            }
            let mut deleted: Vec<Value> = Vec::new();
            for v in original {
                if !contains(modified, v) && !contains(&deleted, v) {
                    deleted.push(v.clone());
                }
            }
            if !added.is_empty() {
                patch.insert(key.to_owned(), Value::Array(added));
            }
            if !deleted.is_empty() {
                patch.insert(
                    format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}{key}"),
                    Value::Array(deleted),
                );
            }
            if original != modified {
                patch.insert(
                    format!("{SET_ELEMENT_ORDER_PREFIX}{key}"),
                    Value::Array(modified.to_vec()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::api::patch::{create_two_way_merge_patch, strategic_merge_patch};

    fn round_trip(kind: &str, original: Value, modified: Value) -> Value {
        let patch = create_two_way_merge_patch(&original, &modified, kind);
        let Value::Object(map) = patch.clone() else {
            panic!("object patch expected");
        };
        let applied = strategic_merge_patch(kind, &original, map).expect("diff applies");
        assert_eq!(applied, modified, "patch {patch}");
        patch
    }

    #[test]
    fn identical_objects_give_an_empty_patch() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(create_two_way_merge_patch(&pod, &pod, "Pod"), json!({}));
    }

    #[test]
    fn image_change_yields_the_set_image_patch() {
        let patch = round_trip(
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.24"}, {"name": "sidecar", "image": "b"}
            ]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.25"}, {"name": "sidecar", "image": "b"}
            ]}}}}),
        );
        assert_eq!(
            patch,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.25", "name": "web"}]
            }}}})
        );
    }

    #[test]
    fn removed_fields_and_items_become_null_and_delete_directives() {
        let patch = round_trip(
            "Pod",
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
                   "spec": {"containers": [{"name": "a", "args": ["-v"]}, {"name": "b"}]}}),
            json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["y", "z"]},
                   "spec": {"containers": [{"name": "a"}]}}),
        );
        assert_eq!(
            patch,
            json!({
                "metadata": {
                    "labels": {"b": null},
                    "finalizers": ["z"],
                    "$deleteFromPrimitiveList/finalizers": ["x"],
                    "$setElementOrder/finalizers": ["y", "z"]
                },
                "spec": {
                    "$setElementOrder/containers": [{"name": "a"}],
                    "containers": [{"args": null, "name": "a"}, {"name": "b", "$patch": "delete"}]
                }
            })
        );
    }

    #[test]
    fn retain_keys_fields_send_the_retain_keys_directive() {
        let patch = round_trip(
            "Deployment",
            json!({"spec": {
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}
            }}),
            json!({"spec": {
                "strategy": {"type": "Recreate"},
                "template": {"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/d"}}]}}
            }}),
        );
        assert_eq!(
            patch["spec"]["strategy"],
            json!({"type": "Recreate", "rollingUpdate": null, "$retainKeys": ["type"]})
        );
        assert_eq!(
            patch["spec"]["template"]["spec"]["volumes"],
            json!([{"hostPath": {"path": "/d"}, "emptyDir": null,
                    "$retainKeys": ["hostPath", "name"], "name": "v"}])
        );
    }

    #[test]
    fn round_trips_for_reordered_added_and_replaced_lists() {
        round_trip(
            "Service",
            json!({"spec": {"ports": [{"port": 80}, {"port": 443}], "externalIPs": ["1.1.1.1"]}}),
            json!({"spec": {"ports": [{"port": 443}, {"port": 8080, "name": "alt"}, {"port": 80}],
                            "externalIPs": ["2.2.2.2"]}}),
        );
        round_trip(
            "Node",
            json!({"spec": {"taints": [{"key": "a"}]}, "status": {"conditions": [
                {"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}
            ]}}),
            json!({"spec": {"taints": []}, "status": {"conditions": [
                {"type": "DiskPressure", "status": "True"}, {"type": "Ready", "status": "True"}
            ]}}),
        );
        round_trip(
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}),
        );
        round_trip(
            "Pod",
            json!({"spec": {"containers": [{"name": "a"}], "nodeName": "n"}}),
            json!({"spec": {"containers": []}}),
        );
    }
}

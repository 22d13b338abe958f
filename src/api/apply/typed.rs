//! Walks of JSON values by their [`Shape`](super::shape::Shape): validation, the field
//! set of a value, the comparison of two values, the apply merge and the removal of
//! fields, following structured-merge-diff's `typed` package.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde_json::{Map, Value};

use super::fieldset::{values_equal, FieldSet, Path, PathElement};
use super::json::go_quote;
use super::shape::{Form, ListNode, ListType, Node};

/// One problem found in a value, at a rendered path such as `.spec.containers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

/// Every problem of one value, rendered as upstream's `ValidationErrors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            errors => {
                f.write_str("errors:")?;
                errors.iter().try_for_each(|e| write!(f, "\n  {e}"))
            }
        }
    }
}

/// The path element of a list item: its key fields (list-maps) or its value (sets).
pub(crate) fn item_element(list: &ListNode, item: &Value) -> Result<PathElement, String> {
    match &list.list_type {
        ListType::Map(keys) => {
            let Value::Object(fields) = item else {
                return Err(match item {
                    Value::Null => "associative list with keys may not have a null element",
                    _ => "associative list with keys may not have non-map elements",
                }
                .to_owned());
            };
            let key: Vec<(String, Value)> = keys
                .iter()
                .filter_map(|k| {
                    let v = fields.get(k).or_else(|| list.key_defaults.get(k))?;
                    Some((k.clone(), v.clone()))
                })
                .collect();
            if !keys.is_empty() && key.is_empty() {
                let quoted: Vec<String> = keys.iter().map(|k| go_quote(k)).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
                    quoted.join(" ")
                ));
            }
            Ok(PathElement::key(key))
        }
        ListType::Set => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => {
                Err("associative list without keys has an element that's an explicit null".into())
            }
            v => Ok(PathElement::Value(v.clone())),
        },
        ListType::Atomic => Err("invalid indexing of non-associative list".into()),
    }
}

fn child_path(path: &[PathElement], pe: PathElement) -> Vec<PathElement> {
    let mut out = Vec::with_capacity(path.len() + 1);
    out.extend_from_slice(path);
    out.push(pe);
    out
}

/// Checks that every list item has a path element; duplicates are errors unless
/// `allow_duplicates` (stored objects may hold them, apply configurations may not).
pub(crate) fn validate(
    value: &Value,
    node: &Node,
    allow_duplicates: bool,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    validate_at(value, node, &mut Vec::new(), allow_duplicates, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

fn validate_at(
    value: &Value,
    node: &Node,
    path: &mut Vec<PathElement>,
    allow_duplicates: bool,
    errors: &mut Vec<ValidationError>,
) {
    match node.form(value) {
        Form::Leaf => {}
        Form::Map => {
            for (k, v) in value.as_object().into_iter().flatten() {
                path.push(PathElement::field(k));
                validate_at(v, &node.field(k).0, path, allow_duplicates, errors);
                path.pop();
            }
        }
        Form::List(list) => {
            let mut seen = BTreeSet::new();
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                let error = |message| ValidationError {
                    path: Path(path.clone()).to_string(),
                    message,
                };
                match item_element(&list, item) {
                    Err(message) => errors.push(error(format!("element {i}: {message}"))),
                    Ok(pe) if seen.contains(&pe) => {
                        if !allow_duplicates {
                            errors.push(error(format!("duplicate entries for key {pe}")));
                        }
                    }
                    Ok(pe) => {
                        seen.insert(pe.clone());
                        path.push(pe);
                        validate_at(item, &list.items, path, allow_duplicates, errors);
                        path.pop();
                    }
                }
            }
        }
    }
}

/// The fields a value sets, as upstream's `ToFieldSet`: scalars, atomic values, empty
/// or null maps, map keys and list items are members; named struct fields holding
/// non-empty objects are only parents.
pub(crate) fn to_field_set(value: &Value, node: &Node) -> FieldSet {
    let mut set = FieldSet::new();
    collect_fields(value, node, &mut Vec::new(), &mut set);
    set
}

fn collect_fields(value: &Value, node: &Node, path: &mut Vec<PathElement>, set: &mut FieldSet) {
    match node.form(value) {
        Form::Leaf => set.insert(path),
        Form::Map => {
            for (k, v) in value.as_object().into_iter().flatten() {
                let (child, named) = node.field(k);
                path.push(PathElement::field(k));
                collect_fields(v, &child, path, set);
                let empty = v.is_null() || v.as_object().is_some_and(Map::is_empty);
                if empty || !named {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Form::List(list) => {
            let items: Vec<(Option<PathElement>, &Value)> = value
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| (item_element(&list, item).ok(), item))
                .collect();
            let mut counts: BTreeMap<&PathElement, usize> = BTreeMap::new();
            for pe in items.iter().filter_map(|(pe, _)| pe.as_ref()) {
                *counts.entry(pe).or_default() += 1;
            }
            for (pe, count) in &counts {
                if *count > 1 {
                    set.insert(&child_path(path, (*pe).clone()));
                }
            }
            for (pe, item) in &items {
                let Some(pe) = pe else { continue };
                if counts[pe] > 1 {
                    continue;
                }
                path.push(pe.clone());
                collect_fields(item, &list.items, path, set);
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// What changed between two values (upstream's `typed.Comparison`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Drops reset fields and everything below them.
    pub fn exclude(&mut self, fields: &FieldSet) {
        self.added = self.added.recursive_difference(fields);
        self.modified = self.modified.recursive_difference(fields);
        self.removed = self.removed.recursive_difference(fields);
    }

    pub fn changed(&self) -> FieldSet {
        self.modified.union(&self.added)
    }
}

/// Compares `old` to `new`: leaves that differ, and every field or item that appears
/// or disappears (a new map or list item is itself added, as upstream records it).
pub(crate) fn compare(old: &Value, new: &Value, node: &Node) -> Comparison {
    let mut cmp = Comparison::default();
    compare_at(Some(old), Some(new), node, &mut Vec::new(), &mut cmp);
    cmp
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The form both sides share, or `Leaf` when they differ in kind or are both empty
/// (upstream promotes empty maps and lists to leaves to keep `{}` apart from absent).
fn shared_form(lhs: Option<&Value>, rhs: Option<&Value>, node: &Node) -> Form {
    let form_of = |v: &Value| node.form(v);
    // Null takes the form of the other side, as upstream's nil values do.
    let (lhs_shape, rhs_shape) = match (lhs, rhs) {
        (Some(Value::Null), r) => (r, r),
        (l, Some(Value::Null)) => (l, l),
        (l, r) => (l, r),
    };
    let form = match (lhs_shape, rhs_shape) {
        (Some(l), Some(r)) => match (form_of(l), form_of(r)) {
            (Form::Map, Form::Map) => Form::Map,
            (Form::List(list), Form::List(_)) => Form::List(list),
            _ => Form::Leaf,
        },
        (Some(v), None) | (None, Some(v)) => form_of(v),
        (None, None) => Form::Leaf,
    };
    if !matches!(form, Form::Leaf) && is_empty_container(lhs) && is_empty_container(rhs) {
        return Form::Leaf;
    }
    form
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    node: &Node,
    path: &mut Vec<PathElement>,
    cmp: &mut Comparison,
) {
    match shared_form(lhs, rhs, node) {
        Form::Leaf => {
            match (lhs, rhs) {
                (None, _) => cmp.added.insert(path),
                (_, None) => cmp.removed.insert(path),
                (Some(l), Some(r)) if !values_equal(l, r) => cmp.modified.insert(path),
                _ => {}
            }
            return;
        }
        Form::Map => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let keys = l.keys().chain(r.keys().filter(|k| !l.contains_key(*k)));
            for k in keys {
                path.push(PathElement::field(k));
                compare_at(l.get(k), r.get(k), &node.field(k).0, path, cmp);
                path.pop();
            }
        }
        Form::List(list) => compare_lists(lhs, rhs, &list, path, cmp),
    }
    match (lhs, rhs) {
        (None, _) => cmp.added.insert(path),
        (_, None) => cmp.removed.insert(path),
        _ => {}
    }
}

/// Items of a list grouped by path element, in first-seen order.
fn group_items<'v>(
    list: &ListNode,
    value: Option<&'v Value>,
) -> Vec<(PathElement, Vec<&'v Value>)> {
    let mut groups: Vec<(PathElement, Vec<&Value>)> = Vec::new();
    let mut index: BTreeMap<PathElement, usize> = BTreeMap::new();
    for item in value.and_then(Value::as_array).into_iter().flatten() {
        let Ok(pe) = item_element(list, item) else {
            continue;
        };
        match index.get(&pe) {
            Some(&i) => groups[i].1.push(item),
            None => {
                index.insert(pe.clone(), groups.len());
                groups.push((pe, vec![item]));
            }
        }
    }
    groups
}

fn compare_lists(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    list: &ListNode,
    path: &mut Vec<PathElement>,
    cmp: &mut Comparison,
) {
    let left = group_items(list, lhs);
    let right = group_items(list, rhs);
    let right_index: BTreeMap<&PathElement, &Vec<&Value>> =
        right.iter().map(|(pe, items)| (pe, items)).collect();
    let left_pes: BTreeSet<&PathElement> = left.iter().map(|(pe, _)| pe).collect();
    let none = Vec::new();
    let all = left
        .iter()
        .map(|(pe, items)| (pe, items, *right_index.get(pe).unwrap_or(&&none)))
        .chain(
            right
                .iter()
                .filter(|(pe, _)| !left_pes.contains(pe))
                .map(|(pe, items)| (pe, &none, items)),
        );
    for (pe, l, r) in all {
        path.push(pe.clone());
        match (l.len(), r.len()) {
            (0..=1, 0..=1) => compare_at(
                l.first().copied(),
                r.first().copied(),
                &list.items,
                path,
                cmp,
            ),
            (2.., 2..) => {
                let same = l.len() == r.len() && l.iter().zip(r).all(|(a, b)| values_equal(a, b));
                if !same {
                    cmp.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(item) = r.first() {
                    compare_at(None, Some(item), &list.items, path, cmp);
                }
                cmp.removed.insert(path);
            }
            (_, _) => {
                if let Some(item) = l.first() {
                    compare_at(Some(item), None, &list.items, path, cmp);
                }
                cmp.added.insert(path);
            }
        }
        path.pop();
    }
}

/// Merges an applied configuration (`rhs`) into a live value (`lhs`): leaves and atomic
/// values take the configuration's, maps merge key by key, list-maps and sets merge by
/// item, keeping live items the configuration does not mention where upstream keeps
/// them. Live key order is kept; new keys follow in configuration order.
pub(crate) fn merge(lhs: &Value, rhs: &Value, node: &Node) -> Value {
    match shared_form(Some(lhs), Some(rhs), node) {
        Form::Leaf => rhs.clone(),
        Form::Map => {
            // A null on either side leaves the other side's map as it is.
            let (Some(l), Some(r)) = (lhs.as_object(), rhs.as_object()) else {
                return if rhs.is_null() {
                    lhs.clone()
                } else {
                    rhs.clone()
                };
            };
            let mut out = Map::new();
            for (k, lv) in l {
                let merged = match r.get(k) {
                    Some(rv) => merge(lv, rv, &node.field(k).0),
                    None => lv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            for (k, rv) in r.iter().filter(|(k, _)| !l.contains_key(*k)) {
                out.insert(k.clone(), rv.clone());
            }
            Value::Object(out)
        }
        Form::List(_) if rhs.is_null() => lhs.clone(),
        Form::List(list) => Value::Array(merge_lists(lhs, rhs, &list)),
    }
}

fn merge_item(lhs: Option<&Value>, rhs: Option<&Value>, node: &Node) -> Option<Value> {
    match (lhs, rhs) {
        (Some(l), Some(r)) => Some(merge(l, r, node)),
        (Some(v), None) | (None, Some(v)) => Some(v.clone()),
        (None, None) => None,
    }
}

/// Upstream's list merge order: live items keep their places, configuration items are
/// placed in configuration order, and items both hold follow the configuration's order.
fn merge_lists(lhs: &Value, rhs: &Value, list: &ListNode) -> Vec<Value> {
    let elements = |v: &Value| -> Vec<(PathElement, Value)> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| Some((item_element(list, item).ok()?, item.clone())))
            .collect()
    };
    let left = elements(lhs);
    let right = elements(rhs);
    // A duplicated live item merges as null: the configuration's item replaces all copies.
    let mut observed_left: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (pe, item) in &left {
        if observed_left.insert(pe, item).is_some() {
            observed_left.insert(pe, &Value::Null);
        }
    }
    let mut observed_right: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (pe, item) in &right {
        observed_right.entry(pe).or_insert(item);
    }
    let mut shared: VecDeque<&PathElement> = right
        .iter()
        .map(|(pe, _)| pe)
        .filter(|pe| observed_left.contains_key(pe))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_right: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(left.len().max(right.len()));
    let (mut li, mut ri) = (0, 0);
    while li < left.len() || ri < right.len() {
        if li < left.len() && ri < right.len() {
            let pe = &left[li].0;
            if *pe == right[ri].0 {
                merged_right.insert(pe);
                out.extend(merge_item(
                    observed_left.get(pe).copied(),
                    observed_right.get(pe).copied(),
                    &list.items,
                ));
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if observed_right.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < left.len() {
            let pe = &left[li].0;
            if !observed_right.contains_key(pe) {
                out.push(left[li].1.clone());
                li += 1;
                continue;
            } else if merged_right.contains(pe) {
                li += 1;
            }
        }
        if ri < right.len() {
            let pe = &right[ri].0;
            merged_right.insert(pe);
            out.extend(merge_item(
                observed_left.get(pe).copied(),
                observed_right.get(pe).copied(),
                &list.items,
            ));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// `set` plus every named struct field that has members below it (upstream's
/// `EnsureNamedFieldsAreMembers`), so that removing a field takes the struct with it
/// only when nothing below is owned.
pub(crate) fn ensure_named_fields(set: &FieldSet, node: &Node) -> FieldSet {
    let mut out = FieldSet::new();
    for pe in set.members() {
        out.insert(std::slice::from_ref(pe));
    }
    for (pe, child) in set.children() {
        let child_node = match (pe, node) {
            (PathElement::Field(name), _) => {
                let (child_node, named) = node.field(name);
                if named {
                    out.insert(std::slice::from_ref(pe));
                }
                child_node
            }
            (_, Node::List(list)) => list.items.clone(),
            _ => Node::Deduced,
        };
        for path in ensure_named_fields(child, &child_node).paths() {
            let mut full = vec![pe.clone()];
            full.extend(path.0);
            out.insert(&full);
        }
    }
    out
}

/// `value` without the members of `set` (and everything below them). A map or list
/// emptied by the removal is dropped from its parent.
pub(crate) fn remove(value: &Value, set: &FieldSet, node: &Node) -> Value {
    match node.form(value) {
        Form::Leaf => value.clone(),
        Form::Map => {
            let mut out = Map::new();
            for (k, v) in value.as_object().into_iter().flatten() {
                let pe = PathElement::field(k);
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(sub) => {
                        let kept = remove(v, sub, &node.field(k).0);
                        if is_empty_container(Some(&kept)) && !is_empty_container(Some(v)) {
                            continue;
                        }
                        out.insert(k.clone(), kept);
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(out)
        }
        Form::List(list) => {
            let mut out = Vec::new();
            for item in value.as_array().into_iter().flatten() {
                let Ok(pe) = item_element(&list, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(sub) => out.push(remove(item, sub, &list.items)),
                    None => out.push(item.clone()),
                }
            }
            Value::Array(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::apply::fieldset::set_of;
    use crate::api::apply::shape::Shape;

    fn deployment() -> Node {
        Shape::for_kind("Deployment").root
    }

    #[test]
    fn applied_deployment_owns_leaves_items_and_key_fields() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{
                    "name": "nginx", "image": "nginx:1.25",
                    "ports": [{"containerPort": 80}],
                    "resources": {},
                }]}},
            },
        });
        let set = to_field_set(&config, &deployment());
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            concat!(
                r#"{"f:apiVersion":{},"f:kind":{},"f:metadata":{"f:labels":{"f:app":{}},"f:name":{}},"#,
                r#""f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:spec":{"f:containers":{"#,
                r#""k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"#,
                r#""k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}},"#,
                r#""f:resources":{}}}}}}}"#
            )
        );
    }

    #[test]
    fn duplicate_items_are_owned_as_a_whole() {
        let node = Shape::for_kind("Pod").root;
        let pod = json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}]}
        ]}});
        let set = to_field_set(&pod, &node);
        assert!(set.has(&[
            PathElement::field("spec"),
            PathElement::field("containers"),
            PathElement::key(vec![("name".into(), json!("a"))]),
            PathElement::field("env"),
            PathElement::key(vec![("name".into(), json!("X"))]),
        ]));
        assert!(validate(&pod, &node, true).is_ok());
        let err = validate(&pod, &node, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#".spec.containers[name="a"].env: duplicate entries for key [name="X"]"#
        );
    }

    #[test]
    fn list_map_item_without_any_key_is_an_error() {
        let pod = json!({"spec": {"containers": [{"image": "x"}]}});
        let err = validate(&pod, &Shape::for_kind("Pod").root, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#".spec.containers: element 0: associative list with keys has an element that omits all key fields ["name"] (and doesn't have default values for any key fields)"#
        );
    }

    #[test]
    fn compare_marks_new_maps_and_items_as_owned_wholes() {
        let old = json!({"metadata": {}, "spec": {"template": {"metadata": {}, "spec": {}}}});
        let new = json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"replicas": 1, "template": {"metadata": {}, "spec": {
                "containers": [{"name": "c", "image": "i"}]
            }}},
        });
        let cmp = compare(&old, &new, &deployment());
        assert_eq!(
            cmp.added,
            set_of(json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    ".": {},
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}},
            }))
        );
        // A null field (a Go field without omitempty) is there already: only its
        // content is added.
        let old = json!({"spec": {"template": {"spec": {"containers": null}}}});
        let cmp = compare(&old, &new, &deployment());
        assert!(!cmp
            .added
            .has(&Path::fields(&["spec", "template", "spec", "containers"]).0));
        assert!(cmp.modified.is_empty() && cmp.removed.is_empty());

        let cmp = compare(&new, &old, &deployment());
        assert_eq!(cmp.removed, cmp_added_of(&old, &new));
    }

    fn cmp_added_of(old: &Value, new: &Value) -> FieldSet {
        compare(old, new, &deployment()).added
    }

    #[test]
    fn merge_keeps_live_items_and_orders_shared_items_by_config() {
        let node = Shape::for_kind("Pod").root;
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}, {"name": "c", "image": "c:1"}
        ]}});
        let config = json!({"spec": {"containers": [
            {"name": "c", "image": "c:2"}, {"name": "a"}, {"name": "d", "image": "d:1"}
        ]}});
        let merged = merge(&live, &config, &node);
        let names: Vec<&str> = merged["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "c", "a", "d"]);
        assert_eq!(merged["spec"]["containers"][1]["image"], "c:2");
        assert_eq!(merged["spec"]["containers"][2]["image"], "a:1");
    }

    #[test]
    fn merge_replaces_atomic_values_whole() {
        let live = json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "strategy": {"type": "Recreate"}}});
        let config = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "strategy": {"rollingUpdate": {}}}});
        let merged = merge(&live, &config, &deployment());
        assert_eq!(
            merged["spec"]["selector"],
            json!({"matchLabels": {"a": "1"}})
        );
        assert_eq!(
            merged["spec"]["strategy"],
            json!({"type": "Recreate", "rollingUpdate": {}})
        );
    }

    #[test]
    fn null_in_the_configuration_clears_leaves_but_leaves_granular_maps() {
        let live = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 3}});
        let config = json!({"metadata": {"labels": null}, "spec": {"replicas": null}});
        assert_eq!(
            merge(&live, &config, &deployment()),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": null}})
        );
    }

    #[test]
    fn remove_drops_members_and_emptied_parents() {
        let node = Shape::for_kind("ConfigMap").root;
        let obj =
            json!({"metadata": {"labels": {"a": "1"}, "name": "x"}, "data": {"k": "v", "j": "w"}});
        let set = set_of(json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:k": {}}}));
        assert_eq!(
            remove(&obj, &set, &node),
            json!({"metadata": {"name": "x"}, "data": {"j": "w"}})
        );
    }

    #[test]
    fn named_struct_fields_become_members_but_map_keys_do_not() {
        let set =
            set_of(json!({"f:spec": {"f:template": {"f:metadata": {"f:labels": {"f:app": {}}}}}}));
        assert_eq!(
            ensure_named_fields(&set, &deployment()),
            set_of(
                json!({"f:spec": {".": {}, "f:template": {".": {}, "f:metadata": {
                    ".": {}, "f:labels": {".": {}, "f:app": {}}
                }}}})
            )
        );
    }
}

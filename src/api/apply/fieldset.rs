//! Field sets (the tries of `managedFields`) and their FieldsV1 JSON form, as
//! sigs.k8s.io/structured-merge-diff `fieldpath` defines them.
//!
//! A [`FieldSet`] holds paths made of [`PathElement`]s. A path is either a *member* (the
//! field itself is owned, serialized as `{}` or with a `"."` key) or only the parent of
//! owned children. Elements are ordered as upstream orders them (field names, then keys,
//! then values, then indexes), which is also the order FieldsV1 objects are written in.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::json::{go_json, go_value_string};

/// Why a FieldsV1 document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    #[error("FieldsV1 must be a JSON object, got {found}")]
    NotAnObject { found: String },
    #[error("parsing key as path element: {key:?}: {reason}")]
    BadKey { key: String, reason: String },
}

/// One step of a path: a struct field or map key (`f:`), a list-map item by its key
/// fields (`k:`), a set item by value (`v:`) or a list index (`i:`).
#[derive(Clone, Debug)]
pub enum PathElement {
    Field(String),
    /// Key fields of a list-map item, sorted by name.
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(usize),
}

impl PathElement {
    pub fn field(name: impl Into<String>) -> PathElement {
        PathElement::Field(name.into())
    }

    /// A list-map key; the fields are sorted by name as upstream does.
    pub fn key(mut fields: Vec<(String, Value)>) -> PathElement {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The FieldsV1 key of this element (`f:name`, `k:{"name":"x"}`, `v:"a"`, `i:0`).
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", go_json(&Value::String(k.clone())), go_json(v)))
                    .collect();
                format!("k:{{{}}}", body.join(","))
            }
            PathElement::Value(v) => format!("v:{}", go_json(v)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; `Ok(None)` for an unknown element type, which upstream
    /// drops silently so that a newer writer's elements do not break older readers.
    pub fn from_fields_v1_key(key: &str) -> Result<Option<PathElement>, FieldsV1Error> {
        let bad = |reason: &str| FieldsV1Error::BadKey {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, rest) = match key.split_at_checked(2) {
            Some((kind, rest)) if kind.len() == 2 => (kind, rest),
            _ => return Err(bad("key must be 2 characters long")),
        };
        if !kind.ends_with(':') {
            return Err(bad("missing colon"));
        }
        let element = match kind {
            "f:" => PathElement::Field(rest.to_owned()),
            "v:" => {
                PathElement::Value(serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?)
            }
            "k:" => {
                let map: Map<String, Value> =
                    serde_json::from_str(rest).map_err(|e| bad(&e.to_string()))?;
                PathElement::key(map.into_iter().collect())
            }
            "i:" => PathElement::Index(rest.parse().map_err(|_| bad("invalid index"))?),
            _ => return Ok(None),
        };
        Ok(Some(element))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => compare_field_lists(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Renders as upstream's `PathElement.String()`: `.name`, `[name="x",port=80]`,
/// `[="a"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", go_value_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", go_value_string(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn compare_field_lists(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        let ord = ka.cmp(kb).then_with(|| compare_values(va, vb));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

fn value_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// Upstream's total order of values: numbers (compared numerically, ints and floats
/// alike), then strings, booleans, lists, maps and null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y) {
                let ord = compare_values(i, j);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|a, b| a.0.cmp(b.0));
            ys.sort_by(|a, b| a.0.cmp(b.0));
            for ((ka, va), (kb, vb)) in xs.iter().zip(&ys) {
                let ord = ka.cmp(kb).then_with(|| compare_values(va, vb));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => value_rank(a).cmp(&value_rank(b)),
    }
}

/// Deep equality as upstream's `value.Equals`: numbers compare numerically (`1 == 1.0`),
/// maps ignore key order.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(i, j)| values_equal(i, j))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => compare_values(a, b) == Ordering::Equal && value_rank(a) == value_rank(b),
    }
}

/// A path from the object's root, e.g. `.spec.containers[name="nginx"].image`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path of field names: `Path::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> Path {
        Path(names.iter().map(|n| PathElement::field(*n)).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|pe| write!(f, "{pe}"))
    }
}

/// A set of field paths. Invariant: no child set is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// A set holding `paths` as members.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> FieldSet {
        let mut set = FieldSet::new();
        for path in paths {
            set.insert(&path.0);
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Makes `path` a member; the empty path (the whole object) is never owned.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member (not merely the parent of members).
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The members below `pe`, relative to it (empty when there are none).
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, set) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(set),
                None => set.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, set)| {
                let both = set.intersection(other.children.get(pe)?);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Members of `self` that are not members of `other` (a member of `other` does not
    /// take away the members below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        self.diff(other, false)
    }

    /// Like [`FieldSet::difference`], but a member of `other` also takes away
    /// everything below it (upstream's `RecursiveDifference`, used for reset fields).
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        self.diff(other, true)
    }

    fn diff(&self, other: &FieldSet, recursive: bool) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, set)| {
                if recursive && other.members.contains(pe) {
                    return None;
                }
                let rest = match other.children.get(pe) {
                    Some(theirs) => set.diff(theirs, recursive),
                    None => set.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Only the members that have no members below them.
    pub fn leaves(&self) -> FieldSet {
        let members = self
            .members
            .iter()
            .filter(|pe| !self.children.contains_key(*pe))
            .cloned()
            .collect();
        let children = self
            .children
            .iter()
            .map(|(pe, set)| (pe.clone(), set.leaves()))
            .filter(|(_, set)| !set.is_empty())
            .collect();
        FieldSet { members, children }
    }

    /// Every member path, in upstream's iteration order (a level's members, then its
    /// children in order).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut path = prefix.clone();
            path.push(pe.clone());
            out.push(Path(path));
        }
        for (pe, set) in &self.children {
            prefix.push(pe.clone());
            set.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON of this set, keys in upstream's order.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".to_owned(), Value::Object(Map::new()));
        }
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            let body = match self.children.get(pe) {
                Some(set) => set.emit(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.to_fields_v1_key(), Value::Object(body));
        }
        out
    }

    /// Reads a FieldsV1 JSON object.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(map) = v else {
            return Err(FieldsV1Error::NotAnObject { found: go_json(v) });
        };
        let mut set = FieldSet::new();
        for (key, body) in map {
            if key == "." {
                continue;
            }
            let Some(pe) = PathElement::from_fields_v1_key(key)? else {
                continue;
            };
            let Value::Object(inner) = body else {
                return Err(FieldsV1Error::NotAnObject {
                    found: go_json(body),
                });
            };
            let child = FieldSet::from_fields_v1(body)?;
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            if !child.is_empty() {
                let merged = match set.children.remove(&pe) {
                    Some(prev) => prev.union(&child),
                    None => child,
                };
                set.children.insert(pe, merged);
            }
        }
        Ok(set)
    }
}

/// Builds a set from FieldsV1 JSON in tests and examples; panics on malformed input.
#[cfg(test)]
pub fn set_of(v: Value) -> FieldSet {
    FieldSet::from_fields_v1(&v).expect("valid FieldsV1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    #[test]
    fn real_deployment_fields_v1_round_trips_byte_for_byte() {
        // managedFields of `kubectl create deployment nginx --image=nginx` (v1.30).
        let text = r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}}"#;
        let set = set_of(serde_json::from_str(text).unwrap());
        assert_eq!(serde_json::to_string(&set.to_fields_v1()).unwrap(), text);
        assert!(set.has(&Path::fields(&["spec", "replicas"]).0));
        assert!(set.has(&Path::fields(&["metadata", "labels"]).0));
        assert!(!set.has(&Path::fields(&["spec", "strategy"]).0));
    }

    #[test]
    fn list_map_keys_serialize_sorted_with_numbers_as_json() {
        let pe = PathElement::key(vec![
            ("protocol".into(), json!("TCP")),
            ("containerPort".into(), json!(80)),
        ]);
        assert_eq!(
            pe.to_fields_v1_key(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        let back = PathElement::from_fields_v1_key(&pe.to_fields_v1_key())
            .unwrap()
            .unwrap();
        assert_eq!(back, pe);
        assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    }

    #[test]
    fn children_are_ordered_fields_then_keys_then_values_then_indexes() {
        let mut set = FieldSet::new();
        set.insert(&[f("a"), PathElement::Index(1)]);
        set.insert(&[f("a"), PathElement::Value(json!("x"))]);
        set.insert(&[f("a"), PathElement::Value(json!(2))]);
        set.insert(&[f("a"), PathElement::key(vec![("name".into(), json!("n"))])]);
        set.insert(&[f("a"), f("z")]);
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            r#"{"f:a":{"f:z":{},"k:{\"name\":\"n\"}":{},"v:2":{},"v:\"x\"":{},"i:1":{}}}"#
        );
    }

    #[test]
    fn set_operations_follow_members_not_prefixes() {
        let a = set_of(json!({"f:spec": {"f:replicas": {}, "f:paused": {}}}));
        let b = set_of(json!({"f:spec": {"f:replicas": {}}, "f:data": {}}));
        assert_eq!(
            a.union(&b),
            set_of(json!({"f:data": {}, "f:spec": {"f:paused": {}, "f:replicas": {}}}))
        );
        assert_eq!(
            a.intersection(&b),
            set_of(json!({"f:spec": {"f:replicas": {}}}))
        );
        assert_eq!(
            a.difference(&b),
            set_of(json!({"f:spec": {"f:paused": {}}}))
        );
        assert!(a.difference(&a).is_empty());

        let owner = set_of(json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}));
        let labels = set_of(json!({"f:metadata": {"f:labels": {}}}));
        assert_eq!(
            owner.difference(&labels),
            set_of(json!({"f:metadata": {"f:labels": {"f:app": {}}}}))
        );
        assert!(owner.recursive_difference(&labels).is_empty());
    }

    #[test]
    fn leaves_drop_members_with_children() {
        let set = set_of(json!({"f:a": {".": {}, "f:b": {}}, "f:c": {}}));
        assert_eq!(set.leaves(), set_of(json!({"f:a": {"f:b": {}}, "f:c": {}})));
    }

    #[test]
    fn paths_render_as_upstream_conflict_paths() {
        let set = set_of(json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {"f:image": {}}
            }}}},
            "f:finalizers": {"v:\"a/b\"": {}},
        }));
        let rendered: Vec<String> = set.paths().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            rendered,
            [
                r#".finalizers[="a/b"]"#,
                ".metadata.labels.app",
                ".spec.replicas",
                r#".spec.template.spec.containers[name="nginx"].image"#,
            ]
        );
    }

    #[test]
    fn unknown_element_types_are_dropped_and_bad_keys_rejected() {
        let set = set_of(json!({"f:a": {}, "x:future": {}}));
        assert_eq!(set, set_of(json!({"f:a": {}})));
        assert!(FieldSet::from_fields_v1(&json!({"f": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:{bad": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"i:x": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }

    #[test]
    fn html_characters_in_values_are_escaped_like_go() {
        let pe = PathElement::Value(json!("a<b&c"));
        assert_eq!(pe.to_fields_v1_key(), r#"v:"a\u003cb\u0026c""#);
    }

    #[test]
    fn numbers_compare_numerically_across_int_and_float() {
        assert!(values_equal(&json!(1), &json!(1.0)));
        assert!(values_equal(
            &json!({"a": 1, "b": 2}),
            &json!({"b": 2, "a": 1})
        ));
        assert!(!values_equal(&json!("1"), &json!(1)));
        assert_eq!(compare_values(&json!(2), &json!("1")), Ordering::Less);
    }
}

//! How each part of an object merges under server-side apply: granular or atomic maps,
//! list-maps, sets, atomic lists and scalars, read from a CRD's OpenAPI v3 schema or,
//! for built-in kinds, from the strategic-merge table of `api::patch::schema`.
//!
//! Upstream builds these from the OpenAPI models (`schemaconv` in kube-openapi); orc's
//! built-in table only covers the fields that carry a patch strategy, so every other
//! field of a built-in type is *opaque*: objects are structs whose keys are named fields,
//! lists are atomic, as upstream's generated types are for untagged fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::patch::schema::{lookup, Ty};

/// `x-kubernetes-list-type` (with `x-kubernetes-list-map-keys` for maps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole.
    Atomic,
    /// Items are scalars merged by value.
    Set,
    /// Items are objects merged by these key fields.
    Map(Vec<String>),
}

/// What a position of an object is, as [`Shape::at`] answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    Scalar,
    /// A struct or map; `atomic` ones are replaced whole.
    Map {
        atomic: bool,
    },
    List(ListType),
    /// Untyped: objects merge key by key, lists are atomic.
    Deduced,
    /// A field of a built-in type orc's table does not describe: objects are structs
    /// merged field by field, lists are atomic.
    Opaque,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    Scalar,
    /// Any value, replaced whole (atomic maps and structs, untyped atomic values).
    Atomic,
    /// Untyped, as upstream's `__untyped_deduced_`: objects are maps whose every key is
    /// owned on its own, lists are atomic.
    Deduced,
    /// A field of a built-in type the table does not describe: objects are structs
    /// (keys are named fields), lists are atomic.
    Opaque,
    Builtin(Ty),
    Map(Arc<MapNode>),
    List(Arc<ListNode>),
}

#[derive(Debug)]
pub(crate) struct MapNode {
    pub fields: BTreeMap<String, Node>,
    /// The shape of keys that are not named fields.
    pub elements: Node,
    pub atomic: bool,
}

#[derive(Debug)]
pub(crate) struct ListNode {
    pub list_type: ListType,
    pub items: Node,
    /// Defaults of list-map key fields (`protocol: TCP` for ports).
    pub key_defaults: BTreeMap<String, Value>,
}

/// How a value is walked at one position.
pub(crate) enum Form {
    /// Compared, merged and owned as a whole.
    Leaf,
    Map,
    List(Arc<ListNode>),
}

impl Node {
    fn list(list_type: ListType, items: Node, key_defaults: &[(&str, &str)]) -> Node {
        Node::List(Arc::new(ListNode {
            list_type,
            items,
            key_defaults: key_defaults
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        }))
    }

    fn map_of(elements: Node) -> Node {
        Node::Map(Arc::new(MapNode {
            fields: BTreeMap::new(),
            elements,
            atomic: false,
        }))
    }

    /// How `value` is walked here. A value whose JSON type does not fit the shape is a
    /// leaf, so bad input never panics.
    pub fn form(&self, value: &Value) -> Form {
        match (value, self) {
            (Value::Object(_), Node::Map(m)) if !m.atomic => Form::Map,
            (Value::Object(_), Node::Builtin(_) | Node::Deduced | Node::Opaque) => Form::Map,
            (Value::Array(_), Node::List(l)) if l.list_type != ListType::Atomic => {
                Form::List(l.clone())
            }
            _ => Form::Leaf,
        }
    }

    /// The shape of `key` within this map, and whether it is a named (struct) field
    /// rather than a map key.
    pub fn field(&self, key: &str) -> (Node, bool) {
        match self {
            Node::Map(m) => match m.fields.get(key) {
                Some(node) => (node.clone(), true),
                None => (m.elements.clone(), false),
            },
            Node::Builtin(ty) => (builtin_field(*ty, key), true),
            Node::Opaque => (Node::Opaque, true),
            _ => (Node::Deduced, false),
        }
    }

    fn position(&self) -> Position {
        match self {
            Node::Scalar => Position::Scalar,
            Node::Atomic => Position::Map { atomic: true },
            Node::Deduced => Position::Deduced,
            Node::Opaque => Position::Opaque,
            Node::Builtin(_) => Position::Map { atomic: false },
            Node::Map(m) => Position::Map { atomic: m.atomic },
            Node::List(l) => Position::List(l.list_type.clone()),
        }
    }
}

fn builtin_node(ty: Ty) -> Node {
    match ty {
        Ty::Opaque => Node::Opaque,
        ty => Node::Builtin(ty),
    }
}

/// Fields whose upstream list type or map type differs from what their patch strategy
/// implies (`+listType`, `+listMapKey`, `+mapType=atomic`, `+structType=atomic` markers
/// of k8s.io/api v0.32).
fn builtin_override(ty: Ty, field: &str) -> Option<Node> {
    let keys = |k: &[&str]| ListType::Map(k.iter().map(|s| s.to_string()).collect());
    let node = match (ty, field) {
        (Ty::Container, "ports") => Node::list(
            keys(&["containerPort", "protocol"]),
            Node::Opaque,
            &[("protocol", "TCP")],
        ),
        (Ty::ServiceSpec, "ports") => Node::list(
            keys(&["port", "protocol"]),
            Node::Opaque,
            &[("protocol", "TCP")],
        ),
        (Ty::PodSpec, "topologySpreadConstraints") => Node::list(
            keys(&["topologyKey", "whenUnsatisfiable"]),
            Node::Opaque,
            &[],
        ),
        (Ty::PodStatus, "hostIPs") => Node::Atomic,
        (Ty::PodSpec, "nodeSelector")
        | (Ty::ServiceSpec, "selector")
        | (Ty::ReplicationControllerSpec, "selector")
        | (Ty::DeploymentSpec, "selector")
        | (Ty::ReplicaSetSpec, "selector")
        | (Ty::JobSpec, "selector")
        | (Ty::PodDisruptionBudgetSpec, "selector") => Node::Atomic,
        _ => return None,
    };
    Some(node)
}

/// `metav1.ObjectMeta`: labels and annotations are granular maps, finalizers a set,
/// ownerReferences a list-map keyed by `uid` of atomic items.
fn object_meta_field(field: &str) -> Node {
    match field {
        "labels" | "annotations" => Node::map_of(Node::Scalar),
        "finalizers" => Node::list(ListType::Set, Node::Scalar, &[]),
        "ownerReferences" => Node::list(ListType::Map(vec!["uid".into()]), Node::Atomic, &[]),
        "managedFields" => Node::Atomic,
        _ => Node::Opaque,
    }
}

fn builtin_field(ty: Ty, field: &str) -> Node {
    if ty == Ty::ObjectMeta {
        return object_meta_field(field);
    }
    if let Some(node) = builtin_override(ty, field) {
        return node;
    }
    let meta = lookup(ty, field);
    match (meta.strategy.merge, meta.merge_key) {
        (true, Some(key)) => {
            Node::list(ListType::Map(vec![key.into()]), builtin_node(meta.ty), &[])
        }
        (true, None) => Node::list(ListType::Set, Node::Scalar, &[]),
        _ => builtin_node(meta.ty),
    }
}

/// The merge shape of one kind of object.
#[derive(Clone, Debug)]
pub struct Shape {
    pub(crate) root: Node,
    /// The object upstream compares a create against: the Go zero value of the kind,
    /// whose non-pointer struct fields (`spec`, `spec.template`…) already exist and
    /// whose fields without `omitempty` are null, so a create does not own them as
    /// wholes.
    pub(crate) baseline: Value,
}

impl Shape {
    /// A built-in kind, from orc's strategic-merge table; kinds not in the table only
    /// know their `metadata` (every other field is a struct with atomic lists).
    pub fn for_kind(kind: &str) -> Shape {
        let baseline = match kind {
            "Pod" => json!({"metadata": {}, "spec": {"containers": null}, "status": {}}),
            "Service" | "Node" | "Namespace" | "ReplicationController" => {
                json!({"metadata": {}, "spec": {}, "status": {}})
            }
            "Deployment" => json!({
                "metadata": {},
                "spec": {
                    "selector": null,
                    "template": {"metadata": {}, "spec": {"containers": null}},
                    "strategy": {},
                },
                "status": {},
            }),
            "ReplicaSet" => json!({
                "metadata": {},
                "spec": {"selector": null, "template": {"metadata": {}, "spec": {"containers": null}}},
                "status": {},
            }),
            "DaemonSet" => json!({
                "metadata": {},
                "spec": {
                    "selector": null,
                    "template": {"metadata": {}, "spec": {"containers": null}},
                    "updateStrategy": {},
                },
                "status": {},
            }),
            "Job" => json!({
                "metadata": {},
                "spec": {"template": {"metadata": {}, "spec": {"containers": null}}},
                "status": {},
            }),
            "CronJob" => json!({
                "metadata": {},
                "spec": {"jobTemplate": {"metadata": {}, "spec": {
                    "template": {"metadata": {}, "spec": {"containers": null}},
                }}},
                "status": {},
            }),
            _ => json!({"metadata": {}}),
        };
        Shape {
            root: Node::Builtin(Ty::of_kind(kind)),
            baseline,
        }
    }

    /// A custom resource, from its CRD's `openAPIV3Schema`. `apiVersion`, `kind` and
    /// `metadata` always have their standard shapes.
    pub fn from_openapi_v3(schema: &Value) -> Shape {
        let mut root = match parse_schema(schema, false) {
            Node::Map(m) => Arc::try_unwrap(m).unwrap_or_else(|m| MapNode {
                fields: m.fields.clone(),
                elements: m.elements.clone(),
                atomic: m.atomic,
            }),
            _ => MapNode {
                fields: BTreeMap::new(),
                elements: Node::Deduced,
                atomic: false,
            },
        };
        root.atomic = false;
        add_type_meta(&mut root.fields);
        Shape {
            root: Node::Map(Arc::new(root)),
            baseline: json!({}),
        }
    }

    /// An object with no schema at all: every part is deduced from its value.
    pub fn deduced() -> Shape {
        let mut fields = BTreeMap::new();
        add_type_meta(&mut fields);
        Shape {
            root: Node::Map(Arc::new(MapNode {
                fields,
                elements: Node::Deduced,
                atomic: false,
            })),
            baseline: json!({}),
        }
    }

    /// What the position at `path` is; a step `[]` enters the items of a list.
    pub fn at(&self, path: &[&str]) -> Position {
        let mut node = self.root.clone();
        for step in path {
            node = match (&node, *step) {
                (Node::List(l), "[]") => l.items.clone(),
                (Node::List(_), _) => return Position::Deduced,
                (_, field) => node.field(field).0,
            };
        }
        node.position()
    }
}

fn add_type_meta(fields: &mut BTreeMap<String, Node>) {
    fields.insert("apiVersion".into(), Node::Scalar);
    fields.insert("kind".into(), Node::Scalar);
    fields.insert("metadata".into(), Node::Builtin(Ty::ObjectMeta));
}

fn is_true(schema: &Value, extension: &str) -> bool {
    schema.get(extension).and_then(Value::as_bool) == Some(true)
}

/// One OpenAPI v3 schema node as upstream's `schemaconv` converts it.
/// `preserve_unknown` is inherited by descendants once set.
fn parse_schema(schema: &Value, preserve_unknown: bool) -> Node {
    let preserve = preserve_unknown || is_true(schema, "x-kubernetes-preserve-unknown-fields");
    if is_true(schema, "x-kubernetes-int-or-string") {
        return Node::Scalar;
    }
    let has_properties = schema.get("properties").is_some_and(Value::is_object);
    let embedded = is_true(schema, "x-kubernetes-embedded-resource");
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => parse_object(schema, preserve, embedded),
        Some("array") => parse_list(schema, preserve),
        Some("integer" | "number" | "string" | "boolean") => Node::Scalar,
        _ if has_properties || embedded || schema.get("additionalProperties").is_some() => {
            parse_object(schema, preserve, embedded)
        }
        _ if schema.get("items").is_some() => parse_list(schema, preserve),
        _ => Node::Deduced,
    }
}

fn parse_object(schema: &Value, preserve: bool, embedded: bool) -> Node {
    let mut fields: BTreeMap<String, Node> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, sub)| (name.clone(), parse_schema(sub, preserve)))
                .collect()
        })
        .unwrap_or_default();
    if embedded {
        add_type_meta(&mut fields);
    }
    let elements = match schema.get("additionalProperties") {
        Some(Value::Object(sub)) => parse_schema(&Value::Object(sub.clone()), preserve),
        // Unknown keys are deduced from their values; keys a schema forbids were
        // pruned before apply, so treating them the same keeps this total.
        _ => Node::Deduced,
    };
    let atomic = schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
    Node::Map(Arc::new(MapNode {
        fields,
        elements,
        atomic,
    }))
}

fn parse_list(schema: &Value, preserve: bool) -> Node {
    let items_schema = schema.get("items");
    let items = match items_schema {
        Some(sub) => parse_schema(sub, preserve),
        None => Node::Atomic,
    };
    let list_type = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    };
    let key_defaults = match &list_type {
        ListType::Map(keys) => keys
            .iter()
            .filter_map(|k| {
                let default = items_schema?.get("properties")?.get(k)?.get("default")?;
                Some((k.clone(), default.clone()))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    Node::List(Arc::new(ListNode {
        list_type,
        items,
        key_defaults,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Position {
        Position::List(ListType::Map(k.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn deployment_lists_follow_upstream_list_map_keys() {
        let shape = Shape::for_kind("Deployment");
        let pod = ["spec", "template", "spec"];
        let at = |rest: &[&str]| shape.at(&[&pod[..], rest].concat());
        assert_eq!(at(&["containers"]), keys(&["name"]));
        assert_eq!(
            at(&["containers", "[]", "ports"]),
            keys(&["containerPort", "protocol"])
        );
        assert_eq!(at(&["containers", "[]", "env"]), keys(&["name"]));
        assert_eq!(at(&["containers", "[]", "args"]), Position::Opaque);
        assert_eq!(at(&["tolerations"]), Position::Opaque);
        assert_eq!(at(&["nodeSelector"]), Position::Map { atomic: true });
        assert_eq!(
            shape.at(&["spec", "selector"]),
            Position::Map { atomic: true }
        );
        assert_eq!(shape.at(&["spec", "strategy"]), Position::Opaque);
        assert_eq!(
            shape.at(&["spec", "template"]),
            Position::Map { atomic: false }
        );
    }

    #[test]
    fn tolerations_are_atomic_because_opaque_lists_are() {
        let shape = Shape::for_kind("Pod");
        let tolerations = shape.root.field("spec").0.field("tolerations").0;
        assert!(matches!(
            tolerations.form(&json!([{"key": "a"}])),
            Form::Leaf
        ));
    }

    #[test]
    fn object_meta_has_its_upstream_shape_in_every_kind() {
        for kind in ["Pod", "ConfigMap", "Deployment"] {
            let shape = Shape::for_kind(kind);
            assert_eq!(
                shape.at(&["metadata", "labels"]),
                Position::Map { atomic: false }
            );
            assert_eq!(
                shape.at(&["metadata", "finalizers"]),
                Position::List(ListType::Set)
            );
            assert_eq!(shape.at(&["metadata", "ownerReferences"]), keys(&["uid"]));
        }
        let crd = Shape::from_openapi_v3(&json!({"type": "object"}));
        assert_eq!(
            crd.at(&["metadata", "finalizers"]),
            Position::List(ListType::Set)
        );
    }

    #[test]
    fn service_ports_key_on_port_and_protocol_with_tcp_default() {
        let shape = Shape::for_kind("Service");
        let ports = shape.root.field("spec").0.field("ports").0;
        let Node::List(list) = ports else {
            panic!("ports is a list")
        };
        assert_eq!(
            list.list_type,
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(list.key_defaults["protocol"], json!("TCP"));
    }

    #[test]
    fn openapi_extensions_set_list_and_map_types() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name", "protocol"],
                            "items": {"type": "object", "properties": {
                                "name": {"type": "string"},
                                "protocol": {"type": "string", "default": "TCP"},
                            }},
                        },
                        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                 "items": {"type": "string"}},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                                     "additionalProperties": {"type": "string"}},
                        "size": {"x-kubernetes-int-or-string": true},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true},
                    },
                },
            },
        });
        let shape = Shape::from_openapi_v3(&schema);
        assert_eq!(shape.at(&["spec", "ports"]), keys(&["name", "protocol"]));
        assert_eq!(shape.at(&["spec", "tags"]), Position::List(ListType::Set));
        assert_eq!(
            shape.at(&["spec", "args"]),
            Position::List(ListType::Atomic)
        );
        assert_eq!(
            shape.at(&["spec", "selector"]),
            Position::Map { atomic: true }
        );
        assert_eq!(shape.at(&["spec", "size"]), Position::Scalar);
        assert_eq!(
            shape.at(&["spec", "extra"]),
            Position::Map { atomic: false }
        );
        assert_eq!(shape.at(&["spec", "extra", "anything"]), Position::Deduced);
        assert_eq!(
            shape.at(&["spec", "template", "metadata", "labels"]),
            Position::Map { atomic: false }
        );
        let Node::List(ports) = shape.root.field("spec").0.field("ports").0 else {
            panic!("ports is a list")
        };
        assert_eq!(ports.key_defaults["protocol"], json!("TCP"));
    }
}

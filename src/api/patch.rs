//! PATCH bodies applied to stored objects: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and Kubernetes strategic merge patch, as pure functions on JSON values.

mod diff;
pub(crate) mod schema;
mod strategic;

use serde_json::{Map, Value};

use schema::Ty;

/// The patch formats of `PATCH` requests, told apart by their `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value, ignoring parameters such as
    /// `; charset=utf-8`; `None` for any other media type (the server answers 415).
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media_type = ct.split(';').next().unwrap_or_default().trim();
        let patch_type = match media_type.to_ascii_lowercase().as_str() {
            "application/merge-patch+json" => PatchType::Merge,
            "application/json-patch+json" => PatchType::Json,
            "application/strategic-merge-patch+json" => PatchType::StrategicMerge,
            "application/apply-patch+yaml" => PatchType::Apply,
            _ => return None,
        };
        Some(patch_type)
    }

    /// Like [`PatchType::from_content_type`], with the upstream 415 error otherwise.
    pub fn try_from_content_type(ct: &str) -> Result<PatchType, PatchError> {
        PatchType::from_content_type(ct).ok_or_else(|| PatchError::UnsupportedMediaType {
            content_type: ct.to_owned(),
        })
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a JSON patch operation could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonPatchFailure {
    /// A `test` operation found another value.
    TestFailed,
    /// `path` names no location in the document (or an index out of range).
    InvalidPath,
    /// `from` of a `move`/`copy` names no location in the document.
    InvalidFrom,
    /// A `move` into a child of its own source.
    MoveIntoItself,
}

/// A patch that could not be applied. [`PatchError::status_code`] gives the HTTP status
/// the API server answers with, as upstream.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The request's `Content-Type` is no patch type: 415.
    #[error("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json")]
    UnsupportedMediaType { content_type: String },
    /// The body is not the JSON (or YAML) document the patch type needs: 400.
    #[error("{message}")]
    Decode { message: String },
    /// The body is not a list of JSON patch operations: 400.
    #[error("{message}")]
    JsonPatchDecode { message: String },
    /// A JSON patch operation failed (`test` mismatch, missing path): 422.
    #[error("{message}")]
    JsonPatchFailed {
        /// Index of the failed operation in the patch.
        operation: usize,
        /// Its `op` (`add`, `remove`, `replace`, `move`, `copy`, `test`).
        op: &'static str,
        /// Its `path`.
        path: String,
        failure: JsonPatchFailure,
        message: String,
    },
    /// A malformed strategic merge patch directive (`$patch`, `$retainKeys`,
    /// `$setElementOrder`, `$deleteFromPrimitiveList`): 400.
    #[error("{message}")]
    BadDirective { message: String },
    /// An item of a list merged by key lacks the key: 422.
    #[error("map: {item} does not contain declared merge key: {key}")]
    MissingMergeKey { item: String, key: String },
    /// Lists of lists cannot be merged: 422.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merging list whose items are not all of one type: 422.
    #[error("list element types are not identical in {field}")]
    MixedListItems { field: String },
}

impl PatchError {
    /// The HTTP status of the `Status` the API server answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::UnsupportedMediaType { .. } => 415,
            PatchError::Decode { .. }
            | PatchError::JsonPatchDecode { .. }
            | PatchError::BadDirective { .. } => 400,
            PatchError::JsonPatchFailed { .. }
            | PatchError::MissingMergeKey { .. }
            | PatchError::ListOfLists
            | PatchError::MixedListItems { .. } => 422,
        }
    }
}

/// Applies a `PATCH` body of `patch_type` to `original`, an object of `kind` (Pod,
/// Deployment, …; the kind picks the strategic merge strategies, and unknown kinds only
/// know those of `metadata`). The result still needs defaulting and validation.
///
/// [`PatchType::Apply`] is a simplified server-side apply: the YAML or JSON configuration
/// is merged like a strategic merge patch. There are no managed fields, so no conflicts
/// are detected and fields dropped from the configuration are not removed; an empty
/// `original` (`{}` or `null`) yields the configuration itself, for apply-as-create.
pub fn apply_patch(
    kind: &str,
    original: &Value,
    patch_body: &[u8],
    patch_type: PatchType,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Merge => Ok(merge_patch(original, &decode_json(patch_body)?)),
        PatchType::Json => json_patch(original, patch_body),
        PatchType::StrategicMerge => {
            let patch = match decode_json(patch_body)? {
                Value::Object(map) => map,
                other => {
                    return Err(PatchError::Decode {
                        message: format!(
                        "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                        json_type_name(&other)
                    ),
                    })
                }
            };
            strategic_merge_patch(kind, original, patch)
        }
        PatchType::Apply => {
            super::nesting::check_yaml_depth(patch_body, super::nesting::MAX_NESTING_DEPTH)
                .map_err(|e| PatchError::Decode {
                    message: format!("error decoding YAML: {e}"),
                })?;
            let config: Value =
                serde_yaml::from_slice(patch_body).map_err(|e| PatchError::Decode {
                    message: format!("error decoding YAML: {e}"),
                })?;
            let Value::Object(config) = config else {
                return Err(PatchError::Decode {
                    message: "apply configuration must be an object".to_owned(),
                });
            };
            strategic_merge_patch(kind, original, config)
        }
    }
}

/// The strategic merge patch that turns `original` into `modified` (both objects of
/// `kind`), as `kubectl` computes for a two-way diff: changed and added fields, `null` for
/// removed ones, `$patch: delete` / `$deleteFromPrimitiveList` for removed list items,
/// `$setElementOrder` for merging lists that changed and `$retainKeys` where the field's
/// strategy asks for it. A non-object `modified` is returned as is.
pub fn create_two_way_merge_patch(original: &Value, modified: &Value, kind: &str) -> Value {
    match (original, modified) {
        (Value::Object(o), Value::Object(m)) => {
            Value::Object(diff::diff_maps(o, m, Ty::of_kind(kind), false))
        }
        (_, Value::Object(m)) => {
            Value::Object(diff::diff_maps(&Map::new(), m, Ty::of_kind(kind), false))
        }
        _ => modified.clone(),
    }
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes a key, anything
/// else (lists included) replaces the target value.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies a strategic merge patch object to `original` (an object of `kind`).
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: Map<String, Value>,
) -> Result<Value, PatchError> {
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    strategic::merge_object(original, patch, Ty::of_kind(kind)).map(Value::Object)
}

/// JSON patch (RFC 6902), all operations or none: the operations apply to a copy, which
/// is dropped when one fails. (`json_patch::patch` undoes the applied operations in place
/// instead, and panics when the undo of a `move` fails, so it is not used.)
fn json_patch(original: &Value, patch_body: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_slice(patch_body).map_err(|e| PatchError::JsonPatchDecode {
            message: format!("invalid JSON patch: {e}"),
        })?;
    let mut doc = original.clone();
    json_patch::patch_unsafe(&mut doc, &ops).map_err(|e| {
        let op = ops.0.get(e.operation);
        let op_name = op.map_or("unknown", operation_name);
        let path = e.path.to_string();
        let failure = match e.kind {
            json_patch::PatchErrorKind::TestFailed => JsonPatchFailure::TestFailed,
            json_patch::PatchErrorKind::InvalidFromPointer => JsonPatchFailure::InvalidFrom,
            json_patch::PatchErrorKind::CannotMoveInsideItself => JsonPatchFailure::MoveIntoItself,
            _ => JsonPatchFailure::InvalidPath,
        };
        // Wording of evanphx/json-patch, which upstream uses.
        let message = match failure {
            JsonPatchFailure::TestFailed => format!("testing value {path} failed: test failed"),
            JsonPatchFailure::InvalidPath => {
                format!("{op_name} operation does not apply: doc is missing path: \"{path}\": missing value")
            }
            JsonPatchFailure::InvalidFrom => {
                let from = match op {
                    Some(json_patch::PatchOperation::Move(m)) => m.from.to_string(),
                    Some(json_patch::PatchOperation::Copy(c)) => c.from.to_string(),
                    _ => String::new(),
                };
                format!("{op_name} operation does not apply: doc is missing from path: \"{from}\": missing value")
            }
            JsonPatchFailure::MoveIntoItself => {
                format!("{op_name} operation does not apply: cannot move {path} into itself")
            }
        };
        PatchError::JsonPatchFailed {
            operation: e.operation,
            op: op_name,
            path,
            failure,
            message,
        }
    })?;
    Ok(doc)
}

fn operation_name(op: &json_patch::PatchOperation) -> &'static str {
    match op {
        json_patch::PatchOperation::Add(_) => "add",
        json_patch::PatchOperation::Remove(_) => "remove",
        json_patch::PatchOperation::Replace(_) => "replace",
        json_patch::PatchOperation::Move(_) => "move",
        json_patch::PatchOperation::Copy(_) => "copy",
        json_patch::PatchOperation::Test(_) => "test",
    }
}

fn decode_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| PatchError::Decode {
        message: format!("error decoding patch: {e}"),
    })
}

/// The JSON type of `v` as Go's decoders name it in their messages.
pub(crate) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strategic(kind: &str, original: Value, patch: Value) -> Value {
        apply_patch(
            kind,
            &original,
            patch.to_string().as_bytes(),
            PatchType::StrategicMerge,
        )
        .expect("strategic merge patch applies")
    }

    fn strategic_err(kind: &str, original: Value, patch: Value) -> PatchError {
        apply_patch(
            kind,
            &original,
            patch.to_string().as_bytes(),
            PatchType::StrategicMerge,
        )
        .expect_err("strategic merge patch must fail")
    }

    fn json_patch_of(original: &Value, ops: Value) -> Result<Value, PatchError> {
        apply_patch("Pod", original, ops.to_string().as_bytes(), PatchType::Json)
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": containers}
                }
            }
        })
    }

    fn containers_of(obj: &Value) -> &Value {
        &obj["spec"]["template"]["spec"]["containers"]
    }

    // --- content types -------------------------------------------------------------

    #[test]
    fn content_types_map_to_patch_types_ignoring_parameters() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json; charset=utf-8"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml;charset=utf-8"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(PatchType::from_content_type(""), None);
        for t in [
            PatchType::Merge,
            PatchType::Json,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn unknown_media_type_is_415() {
        let err = PatchType::try_from_content_type("application/json").unwrap_err();
        assert_eq!(err.status_code(), 415);
        assert!(err
            .to_string()
            .contains("application/strategic-merge-patch+json"));
    }

    #[test]
    fn simple_server_side_apply_merges_the_yaml_configuration() {
        let live = deployment(json!([
            {"name": "web", "image": "nginx:1.24", "imagePullPolicy": "IfNotPresent"}
        ]));
        let config = b"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.25
";
        let out = apply_patch("Deployment", &live, config, PatchType::Apply).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            containers_of(&out),
            &json!([{"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent"}])
        );

        let created = apply_patch("Deployment", &Value::Null, config, PatchType::Apply).unwrap();
        assert_eq!(created["metadata"], json!({"name": "web"}));

        let err = apply_patch("Pod", &live, b"- a\n- b\n", PatchType::Apply).unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = apply_patch("Pod", &live, b"a: [b", PatchType::Apply).unwrap_err();
        assert_eq!(err.status_code(), 400);
    }

    // --- JSON merge patch ------------------------------------------------------------

    #[test]
    fn merge_patch_follows_rfc7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(merge_patch(&target, &patch), want, "patch {patch}");
        }
    }

    #[test]
    fn kubectl_label_overwrite_merges_labels() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "a"}}});
        let body = br#"{"metadata":{"labels":{"tier":"b"}}}"#;
        let out = apply_patch("Pod", &pod, body, PatchType::Merge).unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "tier": "b"})
        );

        // `kubectl label pod p app-`
        let body = br#"{"metadata":{"labels":{"app":null}}}"#;
        let out = apply_patch("Pod", &out, body, PatchType::Merge).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"tier": "b"}));
    }

    #[test]
    fn merge_patch_replaces_lists_even_with_merge_keys() {
        let dep = deployment(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]));
        let body = br#"{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"z"}]}}}}"#;
        let out = apply_patch("Deployment", &dep, body, PatchType::Merge).unwrap();
        assert_eq!(containers_of(&out), &json!([{"name": "a", "image": "z"}]));
    }

    #[test]
    fn merge_patch_with_invalid_json_is_bad_request() {
        let err = apply_patch("Pod", &json!({}), b"{not json", PatchType::Merge).unwrap_err();
        assert!(matches!(err, PatchError::Decode { .. }));
        assert_eq!(err.status_code(), 400);
    }

    // --- JSON patch ------------------------------------------------------------------

    #[test]
    fn json_patch_add_replace_remove() {
        let pod = json!({"metadata": {"name": "p", "labels": {"a": "1"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let out = json_patch_of(
            &pod,
            json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx"},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "add", "path": "/spec/containers/-", "value": {"name": "d", "image": "x"}},
                {"op": "test", "path": "/metadata/name", "value": "p"},
                {"op": "copy", "from": "/metadata/name", "path": "/metadata/generateName"},
                {"op": "move", "from": "/metadata/generateName", "path": "/metadata/annotations"}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"name": "p", "labels": {"b": "2"}, "annotations": "p"},
                   "spec": {"containers": [{"name": "c", "image": "nginx"},
                                           {"name": "d", "image": "x"}]}})
        );
    }

    #[test]
    fn json_patch_failed_test_is_unprocessable_and_applies_nothing() {
        let pod = json!({"metadata": {"name": "p", "resourceVersion": "5"}});
        let err = json_patch_of(
            &pod,
            json!([
                {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "4"}
            ]),
        )
        .unwrap_err();
        let PatchError::JsonPatchFailed {
            operation,
            op,
            ref path,
            failure,
            ..
        } = err
        else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(
            (operation, op, path.as_str()),
            (1, "test", "/metadata/resourceVersion")
        );
        assert_eq!(failure, JsonPatchFailure::TestFailed);
        assert_eq!(err.status_code(), 422);
        assert_eq!(
            err.to_string(),
            "testing value /metadata/resourceVersion failed: test failed"
        );
    }

    #[test]
    fn json_patch_failing_after_a_move_is_unprocessable_and_leaves_the_original() {
        let original = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        let err = json_patch_of(
            &original,
            json!([
                {"op": "move", "from": "/metadata/labels", "path": "/metadata/annotations"},
                {"op": "replace", "path": "/spec/missing", "value": 1}
            ]),
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 422, "{err}");
        assert_eq!(
            original,
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}})
        );
        // A child moved over its parent, then a failure: undoing that move in place (as
        // json_patch::patch does) is a move into itself and panicked.
        let err = json_patch_of(
            &json!({"a": {"b": {"x": 1}}}),
            json!([
                {"op": "move", "from": "/a/b", "path": "/a"},
                {"op": "test", "path": "/a/x", "value": 3}
            ]),
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 422, "{err}");
    }

    #[test]
    fn json_patch_on_missing_path_is_unprocessable() {
        let pod = json!({"metadata": {"name": "p"}});
        for ops in [
            json!([{"op": "remove", "path": "/metadata/labels/a"}]),
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            json!([{"op": "add", "path": "/spec/containers/0/image", "value": "x"}]),
        ] {
            let err = json_patch_of(&pod, ops.clone()).unwrap_err();
            assert!(
                matches!(
                    err,
                    PatchError::JsonPatchFailed {
                        failure: JsonPatchFailure::InvalidPath,
                        ..
                    }
                ),
                "{ops}: {err:?}"
            );
            assert_eq!(err.status_code(), 422);
        }
        let err = json_patch_of(
            &pod,
            json!([{"op": "move", "from": "/nope", "path": "/metadata/x"}]),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            PatchError::JsonPatchFailed {
                failure: JsonPatchFailure::InvalidFrom,
                ..
            }
        ));
    }

    #[test]
    fn json_patch_that_is_not_a_list_of_operations_is_bad_request() {
        for body in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
        ] {
            let err = json_patch_of(&json!({}), body.clone()).unwrap_err();
            assert!(matches!(err, PatchError::JsonPatchDecode { .. }), "{body}");
            assert_eq!(err.status_code(), 400);
        }
    }

    // --- strategic merge patch: what kubectl sends -------------------------------------

    #[test]
    fn kubectl_set_image_updates_one_container_and_keeps_order() {
        let dep = deployment(json!([
            {"name": "web", "image": "nginx:1.24", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "busybox"}
        ]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.25", "name": "web"}]
        }}}});
        let out = strategic("Deployment", dep, patch);
        assert_eq!(
            containers_of(&out),
            &json!([
                {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "busybox"}
            ])
        );
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn kubectl_apply_three_way_patch_removes_field_and_container() {
        let dep = deployment(json!([
            {"name": "app", "image": "app:1", "args": ["--verbose"],
             "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]));
        let patch = json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}\n"
            }},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [
                    {"args": null, "name": "app"},
                    {"$patch": "delete", "name": "sidecar"}
                ]
            }}}
        });
        let out = strategic("Deployment", dep, patch);
        assert_eq!(
            containers_of(&out),
            &json!([{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]}])
        );
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"kind\":\"Deployment\"}\n"
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    }

    #[test]
    fn kubectl_set_env_adds_env_var_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "app", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                "name": "app"
            }]
        }});
        let out = strategic("Pod", pod, patch);
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([
                {"name": "A", "value": "1"},
                {"name": "B", "value": "two"},
                {"name": "C", "value": "3"}
            ])
        );
    }

    #[test]
    fn env_var_value_from_replaces_value_with_null() {
        let pod = json!({"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "value": "1"}]}
        ]}});
        let patch = json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "A", "value": null,
             "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}}
        ]}]}});
        let out = strategic("Pod", pod, patch);
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}}])
        );
    }

    #[test]
    fn service_port_changes_by_port_key() {
        let svc = json!({"kind": "Service", "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}
            ]
        }});
        let patch = json!({"spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [{"port": 80, "targetPort": 8080}]
        }});
        let out = strategic("Service", svc, patch);
        assert_eq!(
            out["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}
            ])
        );
        assert_eq!(out["spec"]["selector"], json!({"app": "web"}));
    }

    #[test]
    fn container_port_merges_by_container_port() {
        let pod = json!({"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "protocol": "TCP"}
        ]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "name": "http"},
            {"containerPort": 9090, "name": "metrics"}
        ]}]}});
        let out = strategic("Pod", pod, patch);
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([
                {"containerPort": 80, "protocol": "TCP", "name": "http"},
                {"containerPort": 9090, "name": "metrics"}
            ])
        );
    }

    #[test]
    fn new_item_without_set_element_order_goes_before_server_only_items() {
        // Upstream (kubectl patch docs, "patch-demo-ctr-2"): the added container comes first.
        let dep = deployment(json!([{"name": "patch-demo-ctr", "image": "nginx"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "patch-demo-ctr-2", "image": "redis"}
        ]}}}});
        let out = strategic("Deployment", dep, patch);
        assert_eq!(
            containers_of(&out),
            &json!([
                {"name": "patch-demo-ctr-2", "image": "redis"},
                {"name": "patch-demo-ctr", "image": "nginx"}
            ])
        );
    }

    #[test]
    fn set_element_order_appends_new_item_at_its_position() {
        let dep = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "containers": [{"name": "c", "image": "x"}]
        }}}});
        let out = strategic("Deployment", dep, patch);
        assert_eq!(
            containers_of(&out),
            &json!([{"name": "a"}, {"name": "b"}, {"name": "c", "image": "x"}])
        );
    }

    #[test]
    fn set_element_order_alone_reorders_the_live_list() {
        let dep = deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]
        }}}});
        let out = strategic("Deployment", dep, patch);
        assert_eq!(
            containers_of(&out),
            &json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])
        );
    }

    #[test]
    fn set_element_order_that_contradicts_the_patch_list_is_bad_request() {
        let dep = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
        }}}});
        let err = strategic_err("Deployment", dep, patch);
        assert!(matches!(err, PatchError::BadDirective { .. }), "{err:?}");
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn kubectl_apply_switching_volume_source_clears_the_old_one_with_retain_keys() {
        let dep = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a"}],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}}
            ]
        }}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
            "volumes": [{
                "$retainKeys": ["configMap", "name"],
                "configMap": {"name": "cm"},
                "name": "data"
            }]
        }}}});
        let out = strategic("Deployment", dep, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([
                {"name": "data", "configMap": {"name": "cm"}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}}
            ])
        );
    }

    #[test]
    fn kubectl_apply_switching_deployment_strategy_to_recreate() {
        let dep = json!({"spec": {"strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
        }}});
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "rollingUpdate": null,
            "type": "Recreate"
        }}});
        let out = strategic("Deployment", dep, patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_must_list_every_key_the_patch_sets() {
        let dep = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let err = strategic_err("Deployment", dep, patch);
        assert_eq!(err.to_string(), "invalid patch format of retainKeys");
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let pod = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
        let out = strategic(
            "Pod",
            pod.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

        // What kubectl apply sends when a finalizer is dropped from the config.
        let out = strategic(
            "Pod",
            pod,
            json!({"metadata": {
                "$deleteFromPrimitiveList/finalizers": ["a"],
                "$setElementOrder/finalizers": ["b"]
            }}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn finalizers_on_a_config_map_merge_too() {
        let cm = json!({"metadata": {"finalizers": ["x"]}, "data": {"a": "1"}});
        let out = strategic(
            "ConfigMap",
            cm,
            json!({"metadata": {"finalizers": ["y"]}, "data": {"b": "2"}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["y", "x"]));
        assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let rs = json!({"metadata": {"ownerReferences": [
            {"uid": "1", "kind": "Deployment", "name": "d", "controller": true}
        ]}});
        let patch = json!({"metadata": {"ownerReferences": [
            {"uid": "1", "blockOwnerDeletion": true},
            {"uid": "2", "kind": "Foo", "name": "f"}
        ]}});
        let out = strategic("ReplicaSet", rs, patch);
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([
                {"uid": "1", "kind": "Deployment", "name": "d", "controller": true,
                 "blockOwnerDeletion": true},
                {"uid": "2", "kind": "Foo", "name": "f"}
            ])
        );
    }

    #[test]
    fn node_status_conditions_and_addresses_merge_by_type() {
        let node = json!({"spec": {"podCIDRs": ["10.42.0.0/24"], "taints": [
            {"key": "a", "effect": "NoSchedule"}
        ]}, "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                          {"type": "Hostname", "address": "n1"}],
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True", "lastHeartbeatTime": "t0"}
            ]
        }});
        let patch = json!({
            "spec": {"taints": [{"key": "b", "effect": "NoExecute"}], "podCIDRs": ["10.42.0.0/24"]},
            "status": {
                "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
                "conditions": [{"type": "Ready", "status": "False", "lastHeartbeatTime": "t1"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]
            }
        });
        let out = strategic("Node", node, patch);
        assert_eq!(
            out["status"]["conditions"],
            json!([
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "False", "lastHeartbeatTime": "t1"}
            ])
        );
        assert_eq!(
            out["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.2"},
                   {"type": "Hostname", "address": "n1"}])
        );
        // Taints have no patch strategy: replaced.
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
        assert_eq!(out["spec"]["podCIDRs"], json!(["10.42.0.0/24"]));
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let pod = json!({"spec": {
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "containers": [{"name": "c", "command": ["sh", "-c"], "args": ["x"],
                            "envFrom": [{"configMapRef": {"name": "a"}}]}]
        }});
        let patch = json!({"spec": {
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "containers": [{"name": "c", "command": ["sleep"],
                            "envFrom": [{"secretRef": {"name": "s"}}]}]
        }});
        let out = strategic("Pod", pod, patch);
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "command": ["sleep"], "args": ["x"],
                    "envFrom": [{"secretRef": {"name": "s"}}]}])
        );
    }

    #[test]
    fn pod_status_conditions_merge_and_pod_ips_merge_by_ip() {
        let pod = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"}
        ]}});
        let patch = json!({"status": {
            "phase": "Running",
            "podIP": "10.42.0.5",
            "podIPs": [{"ip": "10.42.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}]
        }});
        let out = strategic("Pod", pod, patch);
        assert_eq!(out["status"]["phase"], "Running");
        assert_eq!(out["status"]["podIPs"], json!([{"ip": "10.42.0.5"}]));
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
    }

    #[test]
    fn service_account_secrets_merge_by_name() {
        let sa = json!({"secrets": [{"name": "a"}], "imagePullSecrets": [{"name": "x"}]});
        let patch = json!({"secrets": [{"name": "b"}], "imagePullSecrets": [{"name": "y"}]});
        let out = strategic("ServiceAccount", sa, patch);
        assert_eq!(out["secrets"], json!([{"name": "b"}, {"name": "a"}]));
        assert_eq!(out["imagePullSecrets"], json!([{"name": "y"}]));
    }

    #[test]
    fn replication_controller_template_containers_merge() {
        let rc = json!({"kind": "ReplicationController", "spec": {"replicas": 1, "template": {
            "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}
        }}});
        let patch = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "b", "image": "2"}
        ]}}}});
        let out = strategic("ReplicationController", rc, patch);
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
        );
    }

    #[test]
    fn missing_merge_key_is_unprocessable() {
        let dep = deployment(json!([{"name": "a"}]));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = strategic_err("Deployment", dep, patch);
        assert!(matches!(err, PatchError::MissingMergeKey { .. }));
        assert_eq!(
            err.to_string(),
            r#"map: {"image":"x"} does not contain declared merge key: name"#
        );
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn strategic_patch_must_be_an_object() {
        let err = apply_patch("Pod", &json!({}), b"[1]", PatchType::StrategicMerge).unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert_eq!(
            err.to_string(),
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
        let err = apply_patch("Pod", &json!({}), b"{", PatchType::StrategicMerge).unwrap_err();
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn unknown_kind_merges_maps_and_replaces_lists() {
        let obj = json!({"metadata": {"name": "x"}, "subsets": [{"addresses": [{"ip": "1"}]}]});
        let patch =
            json!({"subsets": [{"addresses": [{"ip": "2"}]}], "metadata": {"labels": {"a": "b"}}});
        let out = strategic("Endpoints", obj, patch);
        assert_eq!(out["subsets"], json!([{"addresses": [{"ip": "2"}]}]));
        assert_eq!(out["metadata"], json!({"name": "x", "labels": {"a": "b"}}));
    }
}

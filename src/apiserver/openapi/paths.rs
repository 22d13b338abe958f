//! The `paths` of an OpenAPI document: each served resource's operations, built from one
//! table of operation kinds (`OPERATIONS`) and where each applies.

use serde_json::{json, Map, Value};

use super::{
    gvk, schema_ref, BINDING, DELETE_OPTIONS, PATCH, PATCH_CONTENT_TYPES, SCALE, STATUS,
    WATCH_EVENT,
};
use crate::api::resources::ResourceDef;

fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn param(name: &str) -> Value {
    match name {
        "pretty" => query_param("pretty", "string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget)."),
        "dryRun" => query_param("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"),
        "fieldManager" => query_param("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
        "fieldValidation" => query_param("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered."),
        "force" => query_param("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."),
        "labelSelector" => query_param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        "fieldSelector" => query_param("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        "limit" => query_param("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results."),
        "continue" => query_param("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue)."),
        "resourceVersion" => query_param("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details. Defaults to unset"),
        "resourceVersionMatch" => query_param("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details. Defaults to unset"),
        "watch" => query_param("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
        "allowWatchBookmarks" => query_param("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session."),
        "sendInitialEvents" => query_param("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event will be sent."),
        "timeoutSeconds" => query_param("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
        "gracePeriodSeconds" => query_param("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately."),
        "propagationPolicy" => query_param("propagationPolicy", "string", "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground."),
        "orphanDependents" => query_param("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both."),
        "container" => query_param("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
        "follow" => query_param("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
        "limitBytes" => query_param("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output."),
        "previous" => query_param("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
        "sinceSeconds" => query_param("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
        "tailLines" => query_param("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
        "timestamps" => query_param("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
        other => unreachable!("undocumented query parameter {other}"),
    }
}

fn params(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| param(n)).collect()
}

const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const LOG_PARAMS: &[&str] = &[
    "container",
    "follow",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "tailLines",
    "timestamps",
];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn responses(codes: &[(&str, &str)], schema: &Value, content_types: &[&str]) -> Value {
    let mut out = Map::new();
    for (code, description) in codes {
        let content: Map<String, Value> = content_types
            .iter()
            .map(|ct| (ct.to_string(), json!({ "schema": schema })))
            .collect();
        out.insert(
            code.to_string(),
            json!({ "description": description, "content": content }),
        );
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

/// `CoreV1`, `AppsV1`, `CoordinationV1`: the group-version part of upstream operation ids.
fn operation_gv(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    let mut out: String = group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect();
    out.push_str(&capitalize(version));
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Where an operation's path sits, relative to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// `<prefix>/[namespaces/{namespace}/]<plural>`
    Collection,
    /// `…/<plural>/{name}`
    Object,
    /// `<prefix>/<plural>`: the collection across namespaces (namespaced resources only).
    AllNamespaces,
    /// `<prefix>/watch/…`: the deprecated watch forms of the three above.
    WatchCollection,
    WatchObject,
    WatchAllNamespaces,
    /// `…/<plural>/{name}/<subresource>`
    Subresource,
}

/// The paths of a resource, in the order they appear in a document (subresources follow,
/// in the resource's order).
const RESOURCE_PATHS: &[At] = &[
    At::Collection,
    At::Object,
    At::AllNamespaces,
    At::WatchCollection,
    At::WatchObject,
    At::WatchAllNamespaces,
];

/// What a request or response body holds.
#[derive(Debug, Clone, Copy)]
enum Schema {
    /// The resource's kind.
    Item,
    /// `<Kind>List`.
    List,
    Status,
    WatchEvent,
    DeleteOptions,
    /// Any of the patch media types, as `Patch`.
    Patch,
    Binding,
    /// What a status/scale/finalize subresource reads and writes: `Scale` for `scale`,
    /// the resource's kind otherwise.
    View,
    /// A plain string (logs, streams).
    Text,
}

/// The group-version-kind an operation declares.
#[derive(Debug, Clone, Copy)]
enum Names {
    Kind,
    /// `autoscaling/v1 Scale` for `scale`, the resource's kind otherwise.
    View,
    Binding,
    /// `PodExecOptions`, `PodAttachOptions`, `PodPortForwardOptions` or
    /// `<Kind>ProxyOptions`.
    ConnectOptions,
}

/// One kind of operation, and where and when a resource has it.
struct Operation {
    at: At,
    /// The resource verb it needs; subresource operations need none.
    verb: Option<&'static str>,
    /// The subresources it serves (only for `At::Subresource`).
    subresources: &'static [&'static str],
    method: &'static str,
    /// Operation id: `<id>{GroupVersion}<infix>{[Namespaced]Kind}{Subresource}<suffix>`.
    id: &'static str,
    infix: &'static str,
    suffix: &'static str,
    action: &'static str,
    /// With `{kind}` and `{sub}` filled in.
    description: &'static str,
    params: &'static [&'static str],
    body: Option<Schema>,
    responses: &'static [(&'static str, &'static str)],
    schema: Schema,
    content_types: &'static [&'static str],
    names: Names,
}

const LIST_CONTENT_TYPES: &[&str] = &["application/json", "application/json;stream=watch"];
const JSON_ONLY: &[&str] = &["application/json"];
const OK: &[(&str, &str)] = &[("200", "OK")];
const OK_CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const OK_CREATED_ACCEPTED: &[(&str, &str)] =
    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const OK_ACCEPTED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];
const VIEWS: &[&str] = &["status", "scale", "ephemeralcontainers"];
const CONNECT: &[&str] = &["exec", "attach", "portforward", "proxy"];
const LIST_DESCRIPTION: &str = "list or watch objects of kind {kind}";
const WATCH_LIST_DESCRIPTION: &str = "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead.";

/// A plain operation on the resource itself (the defaults every row starts from).
const fn op(at: At, verb: &'static str, method: &'static str, id: &'static str) -> Operation {
    Operation {
        at,
        verb: Some(verb),
        subresources: &[],
        method,
        id,
        infix: "",
        suffix: "",
        action: verb,
        description: "",
        params: &[],
        body: None,
        responses: OK,
        schema: Schema::Item,
        content_types: JSON_ONLY,
        names: Names::Kind,
    }
}

/// Every operation orc documents, in document order within a path.
const OPERATIONS: &[Operation] = &[
    Operation {
        description: LIST_DESCRIPTION,
        params: LIST_PARAMS,
        schema: Schema::List,
        content_types: LIST_CONTENT_TYPES,
        ..op(At::Collection, "list", "get", "list")
    },
    Operation {
        action: "post",
        description: "create a {kind}",
        params: WRITE_PARAMS,
        body: Some(Schema::Item),
        responses: OK_CREATED_ACCEPTED,
        ..op(At::Collection, "create", "post", "create")
    },
    Operation {
        infix: "Collection",
        description: "delete collection of {kind}",
        params: DELETE_COLLECTION_PARAMS,
        body: Some(Schema::DeleteOptions),
        schema: Schema::Status,
        ..op(At::Collection, "deletecollection", "delete", "delete")
    },
    Operation {
        description: "read the specified {kind}",
        ..op(At::Object, "get", "get", "read")
    },
    Operation {
        action: "put",
        description: "replace the specified {kind}",
        params: WRITE_PARAMS,
        body: Some(Schema::Item),
        responses: OK_CREATED,
        ..op(At::Object, "update", "put", "replace")
    },
    Operation {
        description: "delete a {kind}",
        params: DELETE_PARAMS,
        body: Some(Schema::DeleteOptions),
        responses: OK_ACCEPTED,
        ..op(At::Object, "delete", "delete", "delete")
    },
    Operation {
        description: "partially update the specified {kind}",
        params: PATCH_PARAMS,
        body: Some(Schema::Patch),
        responses: OK_CREATED,
        ..op(At::Object, "patch", "patch", "patch")
    },
    Operation {
        suffix: "ForAllNamespaces",
        description: LIST_DESCRIPTION,
        params: LIST_PARAMS,
        schema: Schema::List,
        content_types: LIST_CONTENT_TYPES,
        ..op(At::AllNamespaces, "list", "get", "list")
    },
    Operation {
        suffix: "List",
        action: "watchlist",
        description: WATCH_LIST_DESCRIPTION,
        params: LIST_PARAMS,
        schema: Schema::WatchEvent,
        content_types: LIST_CONTENT_TYPES,
        ..op(At::WatchCollection, "watch", "get", "watch")
    },
    Operation {
        description: "watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.",
        params: LIST_PARAMS,
        schema: Schema::WatchEvent,
        content_types: LIST_CONTENT_TYPES,
        ..op(At::WatchObject, "watch", "get", "watch")
    },
    Operation {
        suffix: "ListForAllNamespaces",
        action: "watchlist",
        description: WATCH_LIST_DESCRIPTION,
        params: LIST_PARAMS,
        schema: Schema::WatchEvent,
        content_types: LIST_CONTENT_TYPES,
        ..op(At::WatchAllNamespaces, "watch", "get", "watch")
    },
    Operation {
        verb: None,
        subresources: VIEWS,
        description: "read {sub} of the specified {kind}",
        schema: Schema::View,
        names: Names::View,
        ..op(At::Subresource, "get", "get", "read")
    },
    Operation {
        verb: None,
        subresources: &["status", "scale", "finalize", "ephemeralcontainers"],
        description: "replace {sub} of the specified {kind}",
        params: WRITE_PARAMS,
        body: Some(Schema::View),
        responses: OK_CREATED,
        schema: Schema::View,
        names: Names::View,
        ..op(At::Subresource, "put", "put", "replace")
    },
    Operation {
        verb: None,
        subresources: VIEWS,
        description: "partially update {sub} of the specified {kind}",
        params: PATCH_PARAMS,
        body: Some(Schema::Patch),
        responses: OK_CREATED,
        schema: Schema::View,
        names: Names::View,
        ..op(At::Subresource, "patch", "patch", "patch")
    },
    Operation {
        verb: None,
        subresources: &["binding"],
        description: "create {sub} of a {kind}",
        params: WRITE_PARAMS,
        body: Some(Schema::Binding),
        responses: OK_CREATED_ACCEPTED,
        schema: Schema::Binding,
        names: Names::Binding,
        ..op(At::Subresource, "post", "post", "create")
    },
    Operation {
        verb: None,
        subresources: &["log"],
        description: "read {sub} of the specified {kind}",
        params: LOG_PARAMS,
        schema: Schema::Text,
        content_types: &["text/plain"],
        ..op(At::Subresource, "get", "get", "read")
    },
    Operation {
        verb: None,
        subresources: CONNECT,
        infix: "Get",
        description: "connect get requests to {sub} of {kind}",
        schema: Schema::Text,
        content_types: &["*/*"],
        names: Names::ConnectOptions,
        ..op(At::Subresource, "connect", "get", "connect")
    },
    Operation {
        verb: None,
        subresources: CONNECT,
        infix: "Post",
        description: "connect post requests to {sub} of {kind}",
        schema: Schema::Text,
        content_types: &["*/*"],
        names: Names::ConnectOptions,
        ..op(At::Subresource, "connect", "post", "connect")
    },
];

/// A served resource, as its paths and operations spell it.
struct Resource<'a> {
    def: &'a ResourceDef,
    schema_name: &'a str,
    /// `/api/v1`, `/apis/apps/v1`.
    prefix: String,
    /// `core_v1`, `apps_v1`: the operations' tag.
    tag: String,
    /// `CoreV1`, `AppsV1`.
    gv: String,
    /// `namespaces/{namespace}/pods` or `nodes`.
    scope_path: String,
    /// The `namespace` path parameter, if namespaced.
    scope_params: Vec<Value>,
}

impl<'a> Resource<'a> {
    fn new(def: &'a ResourceDef, schema_name: &'a str) -> Resource<'a> {
        let (prefix, tag_group) = if def.group.is_empty() {
            (format!("/api/{}", def.version), "core".to_string())
        } else {
            (
                format!("/apis/{}/{}", def.group, def.version),
                def.group.trim_end_matches(".k8s.io").replace('.', "_"),
            )
        };
        let (scope_path, scope_params) = if def.namespaced {
            (
                format!("namespaces/{{namespace}}/{}", def.plural),
                vec![path_param(
                    "namespace",
                    "object name and auth scope, such as for teams and projects",
                )],
            )
        } else {
            (def.plural.to_string(), Vec::new())
        };
        Resource {
            def,
            schema_name,
            prefix,
            tag: format!("{tag_group}_{}", def.version),
            gv: operation_gv(def.group, def.version),
            scope_path,
            scope_params,
        }
    }

    /// Whether the resource has paths `at` (a subresource's are asked for by name).
    fn has(&self, at: At) -> bool {
        match at {
            At::AllNamespaces | At::WatchAllNamespaces => self.def.namespaced,
            _ => true,
        }
    }

    fn path(&self, at: At, sub: &str) -> String {
        let (prefix, scope, plural) = (&self.prefix, &self.scope_path, self.def.plural);
        match at {
            At::Collection => format!("{prefix}/{scope}"),
            At::Object => format!("{prefix}/{scope}/{{name}}"),
            At::AllNamespaces => format!("{prefix}/{plural}"),
            At::WatchCollection => format!("{prefix}/watch/{scope}"),
            At::WatchObject => format!("{prefix}/watch/{scope}/{{name}}"),
            At::WatchAllNamespaces => format!("{prefix}/watch/{plural}"),
            At::Subresource => format!("{prefix}/{scope}/{{name}}/{sub}"),
        }
    }

    /// The parameters every operation of the path shares (`pretty` is added last).
    fn path_params(&self, at: At) -> Vec<Value> {
        match at {
            At::Collection | At::WatchCollection => self.scope_params.clone(),
            At::Object | At::WatchObject | At::Subresource => {
                let mut p = vec![path_param(
                    "name",
                    &format!("name of the {}", self.def.kind),
                )];
                p.extend(self.scope_params.iter().cloned());
                p
            }
            At::AllNamespaces | At::WatchAllNamespaces => Vec::new(),
        }
    }

    fn schema(&self, schema: Schema, sub: &str) -> Value {
        match schema {
            Schema::Item => schema_ref(self.schema_name),
            Schema::List => schema_ref(&format!("{}List", self.schema_name)),
            Schema::Status => schema_ref(STATUS),
            Schema::WatchEvent => schema_ref(WATCH_EVENT),
            Schema::DeleteOptions => schema_ref(DELETE_OPTIONS),
            Schema::Patch => schema_ref(PATCH),
            Schema::Binding => schema_ref(BINDING),
            Schema::View if sub == "scale" => schema_ref(SCALE),
            Schema::View => schema_ref(self.schema_name),
            Schema::Text => json!({ "type": "string" }),
        }
    }

    fn names(&self, names: Names, sub: &str) -> Value {
        let def = self.def;
        match names {
            Names::View if sub == "scale" => gvk("autoscaling", "v1", "Scale"),
            Names::Kind | Names::View => gvk(def.group, def.version, def.kind),
            Names::Binding => gvk("", "v1", "Binding"),
            Names::ConnectOptions => {
                let options = match sub {
                    "exec" => "PodExecOptions".to_string(),
                    "attach" => "PodAttachOptions".to_string(),
                    "proxy" => format!("{}ProxyOptions", def.kind),
                    _ => "PodPortForwardOptions".to_string(),
                };
                gvk(def.group, def.version, &options)
            }
        }
    }

    fn request_body(&self, schema: Schema, sub: &str) -> Value {
        let content = match schema {
            // Custom kinds take no strategic merge patch (kubectl reads this list to
            // choose between strategic and JSON merge patch).
            Schema::Patch => Value::Object(
                PATCH_CONTENT_TYPES
                    .iter()
                    .filter(|ct| {
                        self.def.custom.is_none()
                            || **ct != "application/strategic-merge-patch+json"
                    })
                    .map(|ct| (ct.to_string(), json!({ "schema": schema_ref(PATCH) })))
                    .collect(),
            ),
            schema => json_content(self.schema(schema, sub)),
        };
        json!({ "content": content, "required": true })
    }

    /// The operation `op` on the path `at` (of subresource `sub`).
    fn operation(&self, op: &Operation, at: At, sub: &str) -> Value {
        let kind = self.def.kind;
        let scoped = match at {
            At::AllNamespaces | At::WatchAllNamespaces => kind.to_string(),
            _ if self.def.namespaced => format!("Namespaced{kind}"),
            _ => kind.to_string(),
        };
        let (gv, sub_name) = (&self.gv, capitalize(sub));
        let mut value = json!({
            "tags": [self.tag],
            "description": op.description.replace("{kind}", kind).replace("{sub}", sub),
            "operationId": format!("{}{gv}{}{scoped}{sub_name}{}", op.id, op.infix, op.suffix),
            "parameters": params(op.params),
            "responses": responses(op.responses, &self.schema(op.schema, sub), op.content_types),
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": self.names(op.names, sub),
        });
        if let Some(schema) = op.body {
            value["requestBody"] = self.request_body(schema, sub);
        }
        value
    }

    /// Adds the path `at` (of subresource `sub`) with the operations the resource has
    /// there; `false` when it has none.
    fn add_path(&self, paths: &mut Map<String, Value>, at: At, sub: &str) -> bool {
        let verbs = self.def.verbs();
        let mut item = Map::new();
        for op in OPERATIONS.iter().filter(|op| op.at == at) {
            let served = match op.verb {
                Some(verb) => verbs.contains(&verb),
                None => op.subresources.contains(&sub),
            };
            if served {
                let value = self.operation(op, at, sub);
                item.insert(op.method.to_string(), value);
            }
        }
        if item.is_empty() {
            return false;
        }
        let mut common = self.path_params(at);
        common.push(param("pretty"));
        item.insert("parameters".into(), Value::Array(common));
        paths.insert(self.path(at, sub), Value::Object(item));
        true
    }
}

/// Adds the paths of one served resource (collection, object, all-namespaces list, the
/// deprecated `/watch/` paths and subresources) to `paths`, from `OPERATIONS`.
pub(super) fn resource_paths(paths: &mut Map<String, Value>, def: &ResourceDef, schema_name: &str) {
    let resource = Resource::new(def, schema_name);
    for &at in RESOURCE_PATHS.iter().filter(|&&at| resource.has(at)) {
        resource.add_path(paths, at, "");
    }
    for sub in def.subresources {
        if !resource.add_path(paths, At::Subresource, sub) {
            tracing::warn!(
                kind = def.kind,
                subresource = sub,
                "subresource missing from OpenAPI"
            );
        }
    }
}

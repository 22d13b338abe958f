#!/usr/bin/env python3
"""Generates src/api/protobuf/schema.rs: the Kubernetes protobuf field tables orc decodes.

Reads two crates from the cargo registry (stdlib only, no network):
  - k8s-pb:      prost-generated messages (field tags and wire types)
  - k8s-openapi: serde impls (the exact JSON name of every field)
and the Go types themselves (the json tags: which fields are `omitempty`, which are
pointers) from source trees of k8s.io/api and k8s.io/apimachinery at the release orc
serves (v0.32.x), plus a newer k8s.io/api for the few fields k8s-pb has that 1.32 lacks,
and writes a static table of every message reachable from the kinds orc serves.

Usage: python3 scripts/gen-proto-schema.py --go-api DIR --go-apimachinery DIR
           [--go-api-newer DIR] [--registry DIR] [--out PATH]
  e.g. DIRs from `git archive v0.32.9` of github.com/kubernetes/api and
  github.com/kubernetes/apimachinery, and `git archive HEAD` of kubernetes/api.
The output is committed; the build never runs this script.
"""

import argparse
import glob
import os
import re
import sys

K8S_PB = "k8s-pb-0.9.0"
K8S_OPENAPI = "k8s-openapi-0.24.0"
OPENAPI_VERSION_DIR = "v1_32"

# (apiVersion, kind, k8s-pb module, message) the API server accepts as request bodies.
ROOTS = [
    ("v1", "Namespace", "api/core/v1", "Namespace"),
    ("v1", "Pod", "api/core/v1", "Pod"),
    ("v1", "Binding", "api/core/v1", "Binding"),
    ("v1", "ReplicationController", "api/core/v1", "ReplicationController"),
    ("v1", "Service", "api/core/v1", "Service"),
    ("v1", "Endpoints", "api/core/v1", "Endpoints"),
    ("v1", "Node", "api/core/v1", "Node"),
    ("v1", "Event", "api/core/v1", "Event"),
    ("v1", "ConfigMap", "api/core/v1", "ConfigMap"),
    ("v1", "Secret", "api/core/v1", "Secret"),
    ("v1", "ServiceAccount", "api/core/v1", "ServiceAccount"),
    ("apps/v1", "Deployment", "api/apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet", "api/apps/v1", "ReplicaSet"),
    ("v1", "PersistentVolumeClaim", "api/core/v1", "PersistentVolumeClaim"),
    ("v1", "PersistentVolume", "api/core/v1", "PersistentVolume"),
    ("v1", "ResourceQuota", "api/core/v1", "ResourceQuota"),
    ("v1", "LimitRange", "api/core/v1", "LimitRange"),
    ("v1", "PodTemplate", "api/core/v1", "PodTemplate"),
    ("apps/v1", "StatefulSet", "api/apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet", "api/apps/v1", "DaemonSet"),
    ("apps/v1", "ControllerRevision", "api/apps/v1", "ControllerRevision"),
    ("batch/v1", "Job", "api/batch/v1", "Job"),
    ("batch/v1", "CronJob", "api/batch/v1", "CronJob"),
    ("policy/v1", "PodDisruptionBudget", "api/policy/v1", "PodDisruptionBudget"),
    ("policy/v1", "Eviction", "api/policy/v1", "Eviction"),
    ("scheduling.k8s.io/v1", "PriorityClass", "api/scheduling/v1", "PriorityClass"),
    ("storage.k8s.io/v1", "StorageClass", "api/storage/v1", "StorageClass"),
    ("storage.k8s.io/v1", "CSIDriver", "api/storage/v1", "CSIDriver"),
    ("storage.k8s.io/v1", "CSINode", "api/storage/v1", "CSINode"),
    ("storage.k8s.io/v1", "VolumeAttachment", "api/storage/v1", "VolumeAttachment"),
    ("storage.k8s.io/v1", "CSIStorageCapacity", "api/storage/v1", "CSIStorageCapacity"),
    ("node.k8s.io/v1", "RuntimeClass", "api/node/v1", "RuntimeClass"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api/discovery/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "Ingress", "api/networking/v1", "Ingress"),
    ("networking.k8s.io/v1", "IngressClass", "api/networking/v1", "IngressClass"),
    ("networking.k8s.io/v1", "NetworkPolicy", "api/networking/v1", "NetworkPolicy"),
    ("coordination.k8s.io/v1", "Lease", "api/coordination/v1", "Lease"),
    ("rbac.authorization.k8s.io/v1", "Role", "api/rbac/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "api/rbac/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "api/rbac/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "api/rbac/v1", "ClusterRoleBinding"),
    ("autoscaling/v1", "Scale", "api/autoscaling/v1", "Scale"),
    ("autoscaling/v1", "HorizontalPodAutoscaler", "api/autoscaling/v1", "HorizontalPodAutoscaler"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "api/autoscaling/v2", "HorizontalPodAutoscaler"),
    ("events.k8s.io/v1", "Event", "api/events/v1", "Event"),
    ("authentication.k8s.io/v1", "TokenRequest", "api/authentication/v1", "TokenRequest"),
    ("authentication.k8s.io/v1", "TokenReview", "api/authentication/v1", "TokenReview"),
    ("authentication.k8s.io/v1", "SelfSubjectReview", "api/authentication/v1", "SelfSubjectReview"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "api/authorization/v1", "SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "api/authorization/v1", "SubjectAccessReview"),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview", "api/authorization/v1", "LocalSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", "api/authorization/v1", "SelfSubjectRulesReview"),
    ("rbac.authorization.k8s.io/v1", "Role", "api/rbac/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "api/rbac/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "api/rbac/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "api/rbac/v1", "ClusterRoleBinding"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "api/admissionregistration/v1", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "api/admissionregistration/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "api/admissionregistration/v1", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", "api/admissionregistration/v1", "ValidatingAdmissionPolicyBinding"),
    ("meta.k8s.io/v1", "DeleteOptions", "apimachinery/pkg/apis/meta/v1", "DeleteOptions"),
    ("meta.k8s.io/v1", "Status", "apimachinery/pkg/apis/meta/v1", "Status"),
]

# The envelope every protobuf body is wrapped in (not a kind of its own).
ENVELOPE = [("apimachinery/pkg/runtime", "Unknown")]

# Messages with a JSON form of their own, decoded by hand rather than field by field.
SPECIAL = {
    ("apimachinery/pkg/apis/meta/v1", "Time"): "Time",
    ("apimachinery/pkg/apis/meta/v1", "MicroTime"): "MicroTime",
    ("apimachinery/pkg/apis/meta/v1", "Duration"): "Duration",
    ("apimachinery/pkg/apis/meta/v1", "FieldsV1"): "FieldsV1",
    ("apimachinery/pkg/util/intstr", "IntOrString"): "IntOrString",
    ("apimachinery/pkg/api/resource", "Quantity"): "Quantity",
    ("apimachinery/pkg/runtime", "RawExtension"): "RawExtension",
    ("api/authentication/v1", "ExtraValue"): "StringList",
    ("api/authorization/v1", "ExtraValue"): "StringList",
}

SCALARS = {
    "string": "String",
    "bool": "Bool",
    "int32": "Int32",
    "int64": "Int64",
    "double": "Double",
    "bytes": "Bytes",
}

PROST_ATTR = re.compile(r"#\[prost\((.*)\)\]")
STRUCT_START = re.compile(r"^pub struct (\w+) \{")
TYPE_PATH = re.compile(r"((?:super::)*(?:\w+::)*)(\w+)$")

GO_STRUCT_START = re.compile(r"^type (\w+) struct \{")
GO_JSON_TAG = re.compile(r'json:"([^"]*)"')

# Protobuf kinds whose Go field is a plain value (not a struct): `omitempty` drops its
# zero value.
GO_SCALAR_KINDS = ("String", "Bool", "Int32", "Int64", "Double", "Bytes")


def parse_go_structs(directory):
    """Returns {lowercased struct: {json name: (go type, omitempty)}} of a Go package."""
    structs = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.go"))):
        if path.endswith("_test.go") or path.endswith("generated.pb.go"):
            continue
        with open(path) as f:
            lines = f.read().split("\n")
        current = None
        for line in lines:
            m = GO_STRUCT_START.match(line)
            if m:
                # By lowercased name: k8s-pb spells `PodDNSConfig` `PodDnsConfig`.
                current = structs.setdefault(m.group(1).lower(), {})
                continue
            if current is None:
                continue
            if line.startswith("}"):
                current = None
                continue
            code = line.split("//", 1)[0] if "`" not in line else line
            if "`" not in code:
                continue
            decl, tag = code.split("`", 1)
            words = decl.split()
            t = GO_JSON_TAG.search(tag)
            if not t or not words or len(words) > 2:
                continue
            name, *options = t.group(1).split(",")
            if name in ("", "-"):
                continue
            current[name] = (words[-1], "omitempty" in options)
    return structs


def go_package_dir(roots, module):
    """The Go package directory of a k8s-pb module (`api/core/v1` → core/v1 of k8s.io/api)."""
    head, _, rest = module.partition("/")
    root = roots.get(head)
    return os.path.join(root, rest) if root else None


def omission(go_field, cardinality, kind):
    """How Go's JSON encoder leaves the field out: `Never`, `Empty` (omitempty on a plain
    value, list or map: its zero, empty list or empty map, and a JSON null) or `Nil`
    (omitempty on a pointer: only a JSON null). Go's omitempty never drops a struct."""
    go_type, omitempty = go_field
    if not omitempty:
        return "Never"
    if go_type.startswith("*"):
        return "Nil"
    if cardinality in ("Repeated", "Map") or kind in GO_SCALAR_KINDS:
        return "Empty"
    return "Never"


def find_crate(registry, name):
    hits = sorted(glob.glob(os.path.join(registry, "*", name)))
    if not hits:
        sys.exit(f"crate {name} not found under {registry}/*/ (run a cargo build first)")
    return hits[0]


def parse_pb_module(pb_src, module):
    """Returns {message: [(tag, field_name, attr, rust_type)]} for one k8s-pb module."""
    path = os.path.join(pb_src, module, "mod.rs")
    with open(path) as f:
        lines = f.read().split("\n")
    messages = {}
    current = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = STRUCT_START.match(line)
        if m:
            current = messages.setdefault(m.group(1), [])
        elif line == "}":
            current = None
        elif current is not None:
            a = PROST_ATTR.search(line)
            if a and "oneof" in a.group(1):
                sys.exit(f"{module}: oneof fields are not supported: {line.strip()}")
            if a:
                # The field declaration follows, possibly over several lines.
                decl = ""
                i += 1
                while True:
                    decl += " " + lines[i].strip()
                    if decl.rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                        break
                    i += 1
                fm = re.match(r"\s*pub (?:r#)?(\w+):\s*(.*),$", decl)
                if not fm:
                    sys.exit(f"{module}: cannot parse field declaration {decl!r}")
                tag = int(re.search(r'tag = "(\d+)"', a.group(1)).group(1))
                current.append((tag, fm.group(1), a.group(1), fm.group(2).replace(" ", "")))
        i += 1
    return messages


def resolve(module, type_path):
    """Resolves a Rust type path as written in `module` to (module, message)."""
    m = TYPE_PATH.search(type_path.rstrip(","))
    if not m:
        sys.exit(f"{module}: cannot resolve type {type_path!r}")
    prefix, name = m.group(1), m.group(2)
    parts = module.split("/")
    segs = [s for s in prefix.split("::") if s]
    while segs and segs[0] == "super":
        parts = parts[:-1]
        segs = segs[1:]
    return ("/".join(parts + segs), name)


def message_type(module, rust_type):
    """The message type inside Option<…>/Vec<…>/BTreeMap<String, …>."""
    t = rust_type
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<"):
        if t.startswith(wrapper):
            t = t[len(wrapper) : -1]
    if t.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = t[len("::prost::alloc::collections::BTreeMap<") : -1]
        t = inner.split(",", 1)[1]
    return resolve(module, t)


def openapi_json_names(openapi_src, module):
    """Returns {lowercased struct name: [JSON keys]} from k8s-openapi's serde impls."""
    out = {}
    directory = os.path.join(openapi_src, OPENAPI_VERSION_DIR, module)
    for path in glob.glob(os.path.join(directory, "*.rs")):
        with open(path) as f:
            text = f.read()
        s = re.search(r"^pub struct (\w+)", text, re.M)
        if not s:
            continue
        keys = re.findall(r'^\s*"([^"]+)" => Field::Key_', text, re.M)
        out[s.group(1).lower()] = keys
    return out


def field_shape(message, name, attr):
    """(cardinality, protobuf value type) from a prost attribute."""
    kind_word = attr.split(",")[0].strip()
    if kind_word.startswith("btree_map"):
        key, value = (p.strip() for p in attr.split('"')[1].split(","))
        if key != "string":
            sys.exit(f"{message}.{name}: map keys other than string are not supported")
        cardinality = "Map"
    elif ", repeated" in attr:
        cardinality, value = "Repeated", kind_word
    else:
        cardinality, value = "Optional", kind_word
    if value.startswith("bytes"):
        value = "bytes"
    return cardinality, value


def norm(name):
    return name.replace("_", "").lower()


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def const_name(module, message):
    parts = [p for p in module.split("/") if p not in ("api", "apimachinery", "pkg", "apis")]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", message)
    return "_".join(p.upper() for p in parts) + "_" + snake.upper()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--registry", default=os.path.expanduser("~/.cargo/registry/src"))
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "src", "api", "protobuf", "schema.rs"))
    ap.add_argument("--go-api", required=True, help="k8s.io/api source tree (v0.32.x)")
    ap.add_argument("--go-apimachinery", required=True, help="k8s.io/apimachinery source tree (v0.32.x)")
    ap.add_argument("--go-api-newer", help="a newer k8s.io/api, for fields 1.32 lacks")
    args = ap.parse_args()
    go_roots = [{"api": args.go_api, "apimachinery": args.go_apimachinery}]
    if args.go_api_newer:
        go_roots.append({"api": args.go_api_newer})
    go_packages = {}

    def go_field(module, message, json):
        """(go type, omitempty) of a field from the first source tree that has it."""
        for roots in go_roots:
            directory = go_package_dir(roots, module)
            if directory is None:
                continue
            if directory not in go_packages:
                go_packages[directory] = parse_go_structs(directory)
            hit = go_packages[directory].get(message.lower(), {}).get(json)
            if hit:
                return hit
        return None

    pb_src = os.path.join(find_crate(args.registry, K8S_PB), "src")
    openapi_src = os.path.join(find_crate(args.registry, K8S_OPENAPI), "src")

    modules = {}
    json_names = {}

    def fields_of(module, message):
        if module not in modules:
            modules[module] = parse_pb_module(pb_src, module)
            json_names[module] = openapi_json_names(openapi_src, module)
        if message not in modules[module]:
            sys.exit(f"message {module}::{message} not found in {K8S_PB}")
        return modules[module][message]

    # Breadth-first walk from the roots; `order` is the emission order.
    order = []
    seen = set()
    queue = [(m, n) for (_, _, m, n) in ROOTS] + ENVELOPE
    while queue:
        key = queue.pop(0)
        if key in seen or key in SPECIAL:
            continue
        seen.add(key)
        order.append(key)
        for tag, name, attr, rust_type in fields_of(*key):
            if field_shape(key[1], name, attr)[1] == "message":
                queue.append(message_type(key[0], rust_type))

    # JSON names: a message's own k8s-openapi struct, else (for Go structs embedded with
    # `json:",inline"`, which have no OpenAPI definition) the struct that embeds them.
    pool = {key: json_names[key[0]].get(key[1].lower()) for key in order}
    inline = set()  # (module, message, pb field name) of embedded structs
    changed = True
    while changed:
        changed = False
        for key in order:
            names = pool[key]
            if names is None:
                continue
            normalized = {norm(k) for k in names}
            for tag, name, attr, rust_type in fields_of(*key):
                shape = field_shape(key[1], name, attr)
                if shape != ("Optional", "message") or norm(name) in normalized:
                    continue
                target = message_type(key[0], rust_type)
                if target in SPECIAL or (*key, name) in inline:
                    continue
                inner = fields_of(*target)
                shared = sum(norm(n) in normalized for (_, n, _, _) in inner)
                if inner and shared * 2 >= len(inner):
                    inline.add((*key, name))
                    if pool[target] is None:
                        pool[target] = names
                    changed = True

    unmatched = []
    no_go_field = []
    out = []
    out.append("// @generated by scripts/gen-proto-schema.py — do not edit")
    out.append("//! Kubernetes protobuf field tables: GENERATED by scripts/gen-proto-schema.py, do not edit.")
    out.append("//!")
    out.append(f"//! Source: the {K8S_PB} (tags, wire types) and {K8S_OPENAPI} (JSON names) crates in")
    out.append("//! the cargo registry, and the Go json tags (`omit`) of k8s.io/api and")
    out.append("//! k8s.io/apimachinery v0.32.9. Regenerate with `python3 scripts/gen-proto-schema.py`")
    out.append("//! (see its usage) after changing the kinds it walks (ROOTS) or the versions.")
    out.append("")
    out.append("use super::{Cardinality::*, Field, Kind::*, Message, Omit::*};")
    out.append("")
    out.append("/// (apiVersion, kind, message) of every object kind accepted as a protobuf body.")
    out.append("pub static KINDS: &[(&str, &str, &Message)] = &[")
    for api_version, kind, module, message in ROOTS:
        out.append(f'    ("{api_version}", "{kind}", &{const_name(module, message)}),')
    out.append("];")
    out.append("")
    out.append("/// The `runtime.Unknown` envelope around every protobuf body.")
    out.append(f"pub static ENVELOPE: &Message = &{const_name(*ENVELOPE[0])};")

    for module, message in order:
        fields = sorted(fields_of(module, message))
        names = pool[(module, message)]
        proto_name = "k8s.io." + module.replace("/", ".") + "." + message
        out.append("")
        out.append(f"pub static {const_name(module, message)}: Message = Message {{")
        out.append(f'    name: "{proto_name}",')
        out.append("    fields: &[")
        for tag, name, attr, rust_type in fields:
            cardinality, value = field_shape(message, name, attr)
            json = None
            if (module, message, name) in inline:
                cardinality, json = "Inline", ""
            elif names is not None:
                hits = [k for k in names if norm(k) == norm(name)]
                if len(hits) == 1:
                    json = hits[0]
            if json is None:
                json = camel(name)
                if module != ENVELOPE[0][0]:
                    unmatched.append(f"{message}.{json}")
            if value == "message":
                target = message_type(module, rust_type)
                kind = SPECIAL.get(target) or f"Message(&{const_name(*target)})"
            elif value in SCALARS:
                kind = SCALARS[value]
            else:
                sys.exit(f"{message}.{name}: unsupported protobuf type {value!r}")
            omit = "Never"
            if cardinality != "Inline" and module != ENVELOPE[0][0]:
                found = go_field(module, message, json)
                if found is None:
                    no_go_field.append(f"{message}.{json}")
                else:
                    omit = omission(found, cardinality, kind)
            out.append(
                f'        Field {{ tag: {tag}, json: "{json}", kind: {kind}, '
                f"cardinality: {cardinality}, omit: {omit} }},"
            )
        out.append("    ],")
        out.append("};")

    if no_go_field:
        print(
            "note: fields without a Go struct field of that JSON name, kept as written: "
            + ", ".join(no_go_field),
            file=sys.stderr,
        )
    for module, message, name in sorted(inline):
        print(f"note: {message}.{name} is an inlined Go struct", file=sys.stderr)
    if unmatched:
        print(
            f"note: {len(unmatched)} fields not in {K8S_OPENAPI} {OPENAPI_VERSION_DIR}, camelCased: "
            + ", ".join(unmatched),
            file=sys.stderr,
        )

    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {len(order)} messages to {os.path.normpath(args.out)}", file=sys.stderr)


if __name__ == "__main__":
    main()

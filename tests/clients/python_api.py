"""orc driven by the official Python client (PyPI `kubernetes`): the API without pods.

Run by tests/clients.rs as `python python_api.py KUBECONFIG`. Every check runs even when
an earlier one failed; each failure is printed with its traceback, and the exit status is
the number of failed checks.
"""

import json
import sys
import threading
import time
import traceback

from kubernetes import client, config, dynamic, utils, watch
from kubernetes.client.rest import ApiException

NS = "py-client"
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_for(what, cond, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def api_error(status, fn, *args, **kwargs):
    """Calls fn expecting an ApiException with `status`; returns its decoded Status."""
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        expect(e.status == status, f"status {e.status}, expected {status}: {e.body}")
        body = json.loads(e.body)
        expect(body.get("kind") == "Status", f"not a Status: {e.body}")
        return body
    raise AssertionError(f"{fn.__name__} succeeded, expected {status}")


def cm(name, labels=None, data=None):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        data=data or {"k": "v"},
    )


@check
def core_v1_crud():
    core = client.CoreV1Api()
    created = core.create_namespaced_config_map(NS, cm("crud", {"app": "crud"}))
    expect(created.metadata.uid and created.metadata.resource_version, created.metadata)
    expect(created.metadata.creation_timestamp is not None, "creationTimestamp")
    got = core.read_namespaced_config_map("crud", NS)
    expect(got.data == {"k": "v"}, got.data)
    got.data["k2"] = "v2"
    replaced = core.replace_namespaced_config_map("crud", NS, got)
    expect(replaced.data == {"k": "v", "k2": "v2"}, replaced.data)
    # The old resourceVersion is a conflict now.
    stale = api_error(409, core.replace_namespaced_config_map, "crud", NS, got)
    expect(stale["reason"] == "Conflict", stale)
    missing = api_error(404, core.read_namespaced_config_map, "nope", NS)
    expect(missing["reason"] == "NotFound" and missing["details"]["name"] == "nope", missing)
    dup = api_error(409, core.create_namespaced_config_map, NS, cm("crud"))
    expect(dup["reason"] == "AlreadyExists", dup)
    # A ConfigMap's delete answers with a Status naming it (a Pod's with the pod).
    deleted = core.delete_namespaced_config_map("crud", NS)
    expect(deleted["kind"] == "Status" and deleted["status"] == "Success", deleted)
    expect(deleted["details"]["name"] == "crud" and deleted["details"]["uid"] == created.metadata.uid, deleted)
    api_error(404, core.read_namespaced_config_map, "crud", NS)
    # Secrets: data is base64 on the wire; string_data is folded into data.
    s = core.create_namespaced_secret(
        NS,
        client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"a": "b"}),
    )
    expect(s.data == {"a": "Yg=="} and s.type == "Opaque", s)
    core.delete_namespaced_secret("s", NS)


@check
def list_selectors_and_pages():
    core = client.CoreV1Api()
    for i in range(5):
        core.create_namespaced_config_map(
            NS, cm(f"page-{i}", {"set": "pages", "parity": "even" if i % 2 == 0 else "odd"})
        )
    even = core.list_namespaced_config_map(NS, label_selector="set=pages,parity=even")
    expect(sorted(i.metadata.name for i in even.items) == ["page-0", "page-2", "page-4"], even)
    notin = core.list_namespaced_config_map(NS, label_selector="set in (pages),parity notin (even)")
    expect(sorted(i.metadata.name for i in notin.items) == ["page-1", "page-3"], notin)
    by_name = core.list_namespaced_config_map(NS, field_selector="metadata.name=page-3")
    expect([i.metadata.name for i in by_name.items] == ["page-3"], by_name)
    everywhere = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={NS}", label_selector="set=pages"
    )
    expect(len(everywhere.items) == 5, everywhere)
    names, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(NS, label_selector="set=pages", limit=2, _continue=token)
        pages += 1
        expect(len(page.items) <= 2, f"page of {len(page.items)}")
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
        expect(page.metadata.remaining_item_count is None or page.metadata.remaining_item_count > 0, page.metadata)
    expect(pages == 3 and names == [f"page-{i}" for i in range(5)], (pages, names))
    bad = api_error(400, core.list_namespaced_config_map, NS, field_selector="data.k=v")
    expect(bad["reason"] == "BadRequest", bad)
    core.delete_collection_namespaced_config_map(NS, label_selector="set=pages")
    wait_for("the pages to go", lambda: not core.list_namespaced_config_map(NS, label_selector="set=pages").items)


@check
def watch_stream():
    core = client.CoreV1Api()
    start = core.list_namespaced_config_map(NS, label_selector="set=watched")
    rv = start.metadata.resource_version
    expect(rv, "list resourceVersion")
    seen = []

    def writer():
        time.sleep(0.5)
        core.create_namespaced_config_map(NS, cm("w1", {"set": "watched"}))
        core.patch_namespaced_config_map("w1", NS, {"data": {"k": "changed"}})
        core.delete_namespaced_config_map("w1", NS)

    t = threading.Thread(target=writer)
    t.start()
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        NS,
        label_selector="set=watched",
        resource_version=rv,
        timeout_seconds=10,
        allow_watch_bookmarks=True,
    ):
        if event["type"] == "BOOKMARK":
            continue
        seen.append((event["type"], event["object"].metadata.name))
        expect(isinstance(event["object"], client.V1ConfigMap), type(event["object"]))
        if event["type"] == "DELETED":
            w.stop()
    t.join()
    expect(seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")], seen)
    # timeout_seconds ends the stream on the server's side.
    began = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_config_map, NS, label_selector="set=quiet", timeout_seconds=2))
    took = time.monotonic() - began
    expect(events == [] and 1.5 < took < 8, (events, took))
    # A resourceVersion from long ago: 410 Gone (as an ERROR event or an exception).
    try:
        for event in watch.Watch().stream(core.list_namespaced_config_map, NS, resource_version="1", timeout_seconds=3):
            if event["type"] == "ERROR":
                break
    except ApiException as e:
        expect(e.status == 410, e)


@check
def patches():
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    core.create_namespaced_config_map(NS, cm("patched", {"a": "1"}, {"x": "1", "y": "2"}))
    merged = core.patch_namespaced_config_map("patched", NS, {"metadata": {"labels": {"b": "2"}}, "data": {"y": None}})
    expect(merged.metadata.labels == {"a": "1", "b": "2"} and merged.data == {"x": "1"}, merged)
    jp = core.patch_namespaced_config_map(
        "patched", NS, [{"op": "add", "path": "/data/z", "value": "3"}, {"op": "remove", "path": "/metadata/labels/a"}]
    )
    expect(jp.data == {"x": "1", "z": "3"} and jp.metadata.labels == {"b": "2"}, jp)
    failed = api_error(
        422, core.patch_namespaced_config_map, "patched", NS, [{"op": "test", "path": "/data/x", "value": "nope"}]
    )
    expect(failed["reason"] == "Invalid" or failed["code"] == 422, failed)
    # Strategic merge (the client's default for a dict on a built-in kind): containers
    # merge by name.
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="smp"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "smp"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "smp"}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(name="a", image="busybox"),
                        client.V1Container(name="b", image="busybox"),
                    ]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(NS, dep)
    smp = apps.patch_namespaced_deployment(
        "smp", NS, {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "busybox:2"}]}}}}
    )
    images = [(c.name, c.image) for c in smp.spec.template.spec.containers]
    expect(images == [("a", "busybox"), ("b", "busybox:2")], images)
    # Server-side apply: the body as YAML/JSON with field_manager; a second manager's
    # conflicting value is a 409 unless forced.
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": NS},
        "data": {"owner": "first"},
    }
    applied = core.patch_namespaced_config_map(
        "applied", NS, body, field_manager="py-first", _content_type="application/apply-patch+yaml"
    )
    expect(applied.data == {"owner": "first"}, applied)
    managers = [m.manager for m in applied.metadata.managed_fields]
    expect(managers == ["py-first"], managers)
    body["data"]["owner"] = "second"
    conflict = api_error(
        409,
        core.patch_namespaced_config_map,
        "applied",
        NS,
        body,
        field_manager="py-second",
        _content_type="application/apply-patch+yaml",
    )
    expect(conflict["reason"] == "Conflict", conflict)
    forced = core.patch_namespaced_config_map(
        "applied", NS, body, field_manager="py-second", force=True, _content_type="application/apply-patch+yaml"
    )
    expect(forced.data == {"owner": "second"}, forced)
    no_manager = api_error(
        422, core.patch_namespaced_config_map, "applied", NS, body, _content_type="application/apply-patch+yaml"
    )
    expect("fieldManager: Required value" in no_manager["message"], no_manager)
    apps.delete_namespaced_deployment("smp", NS)


@check
def delete_options():
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    owner = core.create_namespaced_config_map(NS, cm("owner"))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    child = cm("owned")
    child.metadata.owner_references = [ref]
    core.create_namespaced_config_map(NS, child)
    # Foreground: the owner stays (with the foregroundDeletion finalizer) until its
    # dependents are gone, then goes.
    core.delete_namespaced_config_map(
        "owner", NS, body=client.V1DeleteOptions(propagation_policy="Foreground", grace_period_seconds=0)
    )
    wait_for("the owned configmap to be collected", lambda: "owned" not in names(core))
    wait_for("the owner to go", lambda: "owner" not in names(core))
    # Orphan: the dependent stays, without its ownerReference.
    owner = core.create_namespaced_config_map(NS, cm("owner2"))
    child = cm("orphan")
    child.metadata.owner_references = [
        client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner2", uid=owner.metadata.uid)
    ]
    core.create_namespaced_config_map(NS, child)
    core.delete_namespaced_config_map("owner2", NS, propagation_policy="Orphan")
    wait_for("the owner to go", lambda: "owner2" not in names(core))
    wait_for(
        "the orphan's ownerReference to go",
        lambda: not core.read_namespaced_config_map("orphan", NS).metadata.owner_references,
    )
    core.delete_namespaced_config_map("orphan", NS)
    # Preconditions in the body: a wrong uid is a 409.
    c = core.create_namespaced_config_map(NS, cm("precond"))
    wrong = api_error(
        409,
        core.delete_namespaced_config_map,
        "precond",
        NS,
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid")),
    )
    expect(wrong["reason"] == "Conflict", wrong)
    core.delete_namespaced_config_map(
        "precond", NS, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=c.metadata.uid))
    )
    # Background on a Deployment returns the object (with deletionTimestamp or gone).
    apps.create_namespaced_deployment(NS, simple_deployment("bg", 0))
    apps.delete_namespaced_deployment("bg", NS, propagation_policy="Background")
    wait_for("the deployment to go", lambda: not apps.list_namespaced_deployment(NS, field_selector="metadata.name=bg").items)


def names(core):
    return [i.metadata.name for i in core.list_namespaced_config_map(NS).items]


def simple_deployment(name, replicas):
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )


@check
def scale_subresource():
    apps = client.AppsV1Api()
    apps.create_namespaced_deployment(NS, simple_deployment("scaled", 1))
    scale = apps.read_namespaced_deployment_scale("scaled", NS)
    expect(scale.kind == "Scale" and scale.spec.replicas == 1, scale)
    expect(scale.status.selector == "app=scaled", scale.status)
    patched = apps.patch_namespaced_deployment_scale("scaled", NS, {"spec": {"replicas": 3}})
    expect(patched.spec.replicas == 3, patched)
    # A read-modify-write of the scale, retried on a conflict (the deployment controller
    # writes the status meanwhile), as clients do.
    for _ in range(10):
        scale = apps.read_namespaced_deployment_scale("scaled", NS)
        scale.spec.replicas = 2
        try:
            replaced = apps.replace_namespaced_deployment_scale("scaled", NS, scale)
            break
        except ApiException as e:
            expect(e.status == 409, e)
    expect(replaced.spec.replicas == 2, replaced)
    expect(apps.read_namespaced_deployment("scaled", NS).spec.replicas == 2, "deployment replicas")
    wait_for(
        "a replicaset of 2",
        lambda: [rs.spec.replicas for rs in apps.list_namespaced_replica_set(NS, label_selector="app=scaled").items] == [2],
    )
    rs = apps.list_namespaced_replica_set(NS, label_selector="app=scaled").items[0]
    rs_scale = apps.read_namespaced_replica_set_scale(rs.metadata.name, NS)
    expect(rs_scale.spec.replicas == 2, rs_scale)
    apps.delete_namespaced_deployment("scaled", NS)


CRD_GROUP = "py.orc.test"


@check
def crd_and_custom_objects():
    ext = client.ApiextensionsV1Api()
    crd = client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name=f"widgets.{CRD_GROUP}"),
        spec=client.V1CustomResourceDefinitionSpec(
            group=CRD_GROUP,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(
                plural="widgets", singular="widget", kind="Widget", list_kind="WidgetList", short_names=["wd"]
            ),
            versions=[
                client.V1CustomResourceDefinitionVersion(
                    name="v1",
                    served=True,
                    storage=True,
                    subresources=client.V1CustomResourceSubresources(status={}),
                    schema=client.V1CustomResourceValidation(
                        open_apiv3_schema=client.V1JSONSchemaProps(
                            type="object",
                            properties={
                                "spec": client.V1JSONSchemaProps(
                                    type="object",
                                    properties={
                                        "size": client.V1JSONSchemaProps(type="integer", minimum=1),
                                        "color": client.V1JSONSchemaProps(type="string"),
                                    },
                                ),
                                "status": client.V1JSONSchemaProps(
                                    type="object",
                                    properties={"phase": client.V1JSONSchemaProps(type="string")},
                                ),
                            },
                        )
                    ),
                )
            ],
        ),
    )
    ext.create_custom_resource_definition(crd)
    wait_for(
        "the CRD to be Established",
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in (ext.read_custom_resource_definition(f"widgets.{CRD_GROUP}").status.conditions or [])
        ),
    )
    co = client.CustomObjectsApi()

    def widget(name, size):
        return {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Widget", "metadata": {"name": name, "labels": {"w": "yes"}}, "spec": {"size": size, "color": "red"}}

    # The CRD's resources may take a moment to be served after Established.
    wait_for("widgets to be served", lambda: try_call(co.list_namespaced_custom_object, CRD_GROUP, "v1", NS, "widgets"))
    made = co.create_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", widget("w1", 1))
    expect(made["metadata"]["uid"] and made["spec"]["size"] == 1, made)
    co.create_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", widget("w2", 2))
    invalid = api_error(422, co.create_namespaced_custom_object, CRD_GROUP, "v1", NS, "widgets", widget("w3", 0))
    expect(invalid["reason"] == "Invalid", invalid)
    listed = co.list_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", label_selector="w=yes")
    expect(listed["kind"] == "WidgetList" and sorted(i["metadata"]["name"] for i in listed["items"]) == ["w1", "w2"], listed)
    everywhere = co.list_cluster_custom_object(CRD_GROUP, "v1", "widgets")
    expect(len(everywhere["items"]) == 2, everywhere)
    # The client sends a dict patch to a custom object as a merge patch.
    patched = co.patch_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", "w1", {"spec": {"size": 5}})
    expect(patched["spec"] == {"size": 5, "color": "red"}, patched)
    jp = co.patch_namespaced_custom_object(
        CRD_GROUP,
        "v1",
        NS,
        "widgets",
        "w1",
        [{"op": "replace", "path": "/spec/color", "value": "blue"}],
        _content_type="application/json-patch+json",
    )
    expect(jp["spec"]["color"] == "blue", jp)
    # status: only through the subresource.
    st = co.patch_namespaced_custom_object_status(CRD_GROUP, "v1", NS, "widgets", "w1", {"status": {"phase": "Ready"}})
    expect(st["status"] == {"phase": "Ready"}, st)
    ignored = co.patch_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", "w1", {"status": {"phase": "Lost"}})
    expect(ignored["status"] == {"phase": "Ready"}, ignored)
    got = co.get_namespaced_custom_object_status(CRD_GROUP, "v1", NS, "widgets", "w1")
    expect(got["status"]["phase"] == "Ready", got)
    got["status"]["phase"] = "Done"
    replaced = co.replace_namespaced_custom_object_status(CRD_GROUP, "v1", NS, "widgets", "w1", got)
    expect(replaced["status"]["phase"] == "Done", replaced)
    # Server-side apply of a custom object.
    applied = co.patch_namespaced_custom_object(
        CRD_GROUP,
        "v1",
        NS,
        "widgets",
        "w4",
        widget("w4", 4),
        field_manager="py-apply",
        _content_type="application/apply-patch+yaml",
    )
    # A create by apply answers 201, which this client's patch_namespaced_custom_object
    # does not decode (it knows only 200): the object is read back instead.
    expect(applied is None, applied)
    applied = co.get_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", "w4")
    expect(applied["spec"]["size"] == 4, applied)
    expect([m["manager"] for m in applied["metadata"]["managedFields"]] == ["py-apply"], applied["metadata"])
    co.delete_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", "w2")
    co.delete_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", "w4", body=client.V1DeleteOptions(propagation_policy="Background"))
    # A watch of custom objects.
    rv = co.list_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets")["metadata"]["resourceVersion"]
    co.patch_namespaced_custom_object(CRD_GROUP, "v1", NS, "widgets", "w1", {"spec": {"size": 6}})
    for event in watch.Watch().stream(co.list_namespaced_custom_object, CRD_GROUP, "v1", NS, "widgets", resource_version=rv, timeout_seconds=5):
        expect(event["type"] == "MODIFIED" and event["object"]["spec"]["size"] == 6, event)
        break
    else:
        raise AssertionError("no watch event for the custom object")


def try_call(fn, *args):
    try:
        fn(*args)
        return True
    except ApiException:
        return False


@check
def create_from_yaml():
    k8s = client.ApiClient()
    docs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-yaml"}, "data": {"a": "b"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "from-yaml"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "from-yaml"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "from-yaml"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    ]
    created = utils.create_from_yaml(k8s, yaml_objects=docs, namespace=NS)
    expect(len(created) == 4, created)
    svc = client.CoreV1Api().read_namespaced_service("from-yaml", NS)
    expect(svc.spec.cluster_ip and svc.spec.ports[0].protocol == "TCP", svc.spec)
    try:
        utils.create_from_yaml(k8s, yaml_objects=docs[:1], namespace=NS)
        raise AssertionError("creating twice succeeded")
    except utils.FailToCreateError as e:
        expect(e.api_exceptions[0].status == 409, e)


@check
def dynamic_client():
    dyn = dynamic.DynamicClient(client.ApiClient())
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    expect(cms.namespaced and cms.name == "configmaps", cms)
    made = cms.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"}, "data": {"d": "1"}}, namespace=NS)
    expect(made.metadata.name == "dyn", made)
    got = cms.get(name="dyn", namespace=NS)
    expect(got.data.d == "1", got)
    cms.patch(name="dyn", namespace=NS, body={"data": {"d": "2"}}, content_type="application/merge-patch+json")
    expect(cms.get(name="dyn", namespace=NS).data.d == "2", "patched")
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    expect(deps.namespaced and "scale" in deps.subresources, deps.subresources)
    nodes = dyn.resources.get(api_version="v1", kind="Node")
    expect(not nodes.namespaced, nodes)
    widgets = dyn.resources.get(api_version=f"{CRD_GROUP}/v1", kind="Widget")
    expect(widgets.short_names == ["wd"], widgets.short_names)
    listed = widgets.get(namespace=NS)
    expect(len(listed.items) >= 1, listed)
    groups = {g for g in dyn.resources.search(group="apps")}
    expect(groups, "apps resources found by search")
    crb = dyn.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRoleBinding")
    expect(not crb.namespaced, crb)
    cms.delete(name="dyn", namespace=NS)


@check
def events():
    core = client.CoreV1Api()
    ev_api = client.EventsV1Api()
    target = core.create_namespaced_config_map(NS, cm("evented"))
    ref = client.V1ObjectReference(kind="ConfigMap", namespace=NS, name="evented", uid=target.metadata.uid, api_version="v1")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.create_namespaced_event(
        NS,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="evented.1"),
            involved_object=ref,
            reason="Tested",
            message="from the python client",
            type="Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="py-client"),
        ),
    )
    listed = core.list_namespaced_event(NS, field_selector="involvedObject.name=evented,reason=Tested")
    expect([e.message for e in listed.items] == ["from the python client"], listed)
    ev = ev_api.create_namespaced_event(
        NS,
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(name="evented.2"),
            event_time=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            reporting_controller="orc.test/py-client",
            reporting_instance="py-client-1",
            action="Testing",
            reason="TestedV1",
            regarding=ref,
            note="events.k8s.io from the python client",
            type="Normal",
        ),
    )
    expect(ev.note.startswith("events.k8s.io"), ev)
    as_core = core.read_namespaced_event("evented.2", NS)
    expect(as_core.message == ev.note and as_core.involved_object.name == "evented", as_core)
    # Read raw: a core/v1 Event has no eventTime, which events.k8s.io/v1 serves as null
    # (as upstream does), and this client's EventsV1Event refuses a null eventTime.
    got = json.loads(
        ev_api.list_namespaced_event(NS, field_selector="regarding.name=evented", _preload_content=False).data
    )
    expect(sorted(e["metadata"]["name"] for e in got["items"]) == ["evented.1", "evented.2"], got)
    typed = ev_api.list_namespaced_event(NS, field_selector="reason=TestedV1")
    expect([e.metadata.name for e in typed.items] == ["evented.2"], typed)


def main():
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    failed = 0
    for fn in CHECKS:
        began = time.monotonic()
        try:
            fn()
            print(f"ok   {fn.__name__} ({time.monotonic() - began:.1f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}:\n{traceback.format_exc()}", flush=True)
    core.delete_namespace(NS)
    wait_for(f"namespace {NS} to go", lambda: NS not in [n.metadata.name for n in core.list_namespace().items], 30)
    client.ApiextensionsV1Api().delete_custom_resource_definition(f"widgets.{CRD_GROUP}")
    print(f"python api: {len(CHECKS) - failed} of {len(CHECKS)} checks passed", flush=True)
    sys.exit(failed)


if __name__ == "__main__":
    main()

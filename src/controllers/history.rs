//! ControllerRevision history of StatefulSets and DaemonSets, as upstream's
//! `pkg/controller/history`: a revision holds the part of the parent's spec that a
//! rollout changes (the pod template, as a strategic-merge patch `kubectl rollout undo`
//! applies back), is named `<parent>-<hash>`, is numbered, and is owned by its parent.
//! `sync` finds or makes the revision of the parent's current spec (re-numbering an
//! older equal revision on a roll back) and `truncate` keeps `revisionHistoryLimit`.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::deployment::pod_template_hash;
use super::framework::{def_of, Client};
use super::ownership::{is_controlled_by, owner_reference};
use crate::api::object;
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;

/// The label pods and revisions carry with the hash of their revision.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Upstream cuts the parent's name so that `<parent>-<hash>` stays a valid name.
const MAX_PREFIX: usize = 223;

/// How many times `sync` retries a name already taken by a different revision.
const MAX_COLLISIONS: i64 = 16;

fn revisions_def() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::apps::v1::ControllerRevision>()
}

/// The revision data of a pod template: `{"spec": {"template": {…, "$patch":
/// "replace"}}}`, as upstream's StatefulSet and DaemonSet controllers record it.
pub fn template_patch(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The pod template recorded in a revision (its data without `$patch`).
pub fn template_of(revision: &Value) -> Value {
    let mut template = revision["data"]["spec"]["template"].clone();
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    template
}

/// The revision number of a ControllerRevision.
pub fn number(revision: &Value) -> i64 {
    revision["revision"].as_i64().unwrap_or(0)
}

/// The name of the revision of `parent` with `data` (upstream `ControllerRevisionName`
/// of `HashControllerRevision`).
pub fn revision_name(parent: &str, data: &Value, collision_count: Option<i64>) -> String {
    let prefix: String = parent.chars().take(MAX_PREFIX).collect();
    format!("{prefix}-{}", pod_template_hash(data, collision_count))
}

/// A new (not yet stored) revision of `parent` with `data` and number `revision`,
/// labelled like the parent's pod template.
pub fn build(parent: &Value, data: Value, revision: i64, collision_count: Option<i64>) -> Value {
    let name = revision_name(object::name(parent), &data, collision_count);
    let hash = name.rsplit('-').next().unwrap_or_default().to_string();
    let mut labels = parent["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), json!(hash));
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": object::namespace(parent).unwrap_or("default"),
            "labels": labels,
            "ownerReferences": [owner_reference(parent)],
        },
        "data": data,
        "revision": revision,
    })
}

/// Whether two revisions record the same data (key order aside).
pub fn equal(a: &Value, b: &Value) -> bool {
    object::same_content(&a["data"], &b["data"])
}

/// The revisions `parent` controls, oldest first (by number, then name).
pub fn owned(client: &dyn Client, parent: &Value) -> Vec<Value> {
    let uid = object::uid(parent).unwrap_or_default().to_string();
    let ns = object::namespace(parent);
    let mut revisions: Vec<Value> = client
        .list(revisions_def(), ns, &|_| true)
        .into_iter()
        .map(|kv| (*kv.value).clone())
        .filter(|r| is_controlled_by(r, &uid))
        .collect();
    sort(&mut revisions);
    revisions
}

/// Sorts revisions oldest first, as upstream's `SortControllerRevisions`.
pub fn sort(revisions: &mut [Value]) {
    revisions.sort_by(|a, b| {
        number(a)
            .cmp(&number(b))
            .then_with(|| object::name(a).cmp(object::name(b)))
    });
}

/// The outcome of `sync`.
#[derive(Debug, Clone)]
pub struct Revisions {
    /// The revision the parent's pods were last fully rolled to (`status.currentRevision`).
    pub current: Value,
    /// The revision of the parent's spec now (`status.updateRevision`).
    pub update: Value,
    /// Every revision the parent controls after the sync, oldest first.
    pub all: Vec<Value>,
    /// The collision count to store in the parent's status.
    pub collision_count: i64,
}

/// Finds or creates the revision of `parent`'s current spec (`data`), as upstream's
/// `getStatefulSetRevisions` / `constructHistory`: an equal revision that is the latest
/// is reused, an equal older one is re-numbered to the next number (a roll back), and
/// otherwise a new revision is created (a taken name bumps the collision count).
/// `current_name` is the parent's `status.currentRevision` (if any).
pub async fn sync(
    client: &dyn Client,
    parent: &Value,
    data: Value,
    current_name: Option<&str>,
    collision_count: i64,
) -> Result<Revisions, ApiError> {
    let mut all = owned(client, parent);
    let next = all.last().map(number).unwrap_or(0) + 1;
    let mut collision_count = collision_count;
    let candidate = build(parent, data, next, Some(collision_count).filter(|c| *c > 0));
    let latest_equal = all.last().is_some_and(|last| equal(last, &candidate));
    let older_equal = all.iter().rposition(|r| equal(r, &candidate));
    let update = if latest_equal {
        all.last().cloned().unwrap_or(candidate)
    } else if let Some(i) = older_equal {
        let renumbered = renumber(client, &all[i], next).await?;
        all[i] = renumbered.clone();
        sort(&mut all);
        renumbered
    } else {
        let created = create(client, parent, candidate, &mut collision_count).await?;
        all.push(created.clone());
        created
    };
    let current = current_name
        .and_then(|name| all.iter().find(|r| object::name(r) == name).cloned())
        .unwrap_or_else(|| update.clone());
    Ok(Revisions {
        current,
        update,
        all,
        collision_count,
    })
}

/// Stores `revision`; a name taken by a revision with other data retries with the next
/// collision count, as upstream's `CreateControllerRevision`. An equal revision already
/// stored under the name (e.g. a cache behind a write) is returned as is.
async fn create(
    client: &dyn Client,
    parent: &Value,
    revision: Value,
    collision_count: &mut i64,
) -> Result<Value, ApiError> {
    let ns = object::namespace(parent);
    let mut revision = revision;
    for _ in 0..MAX_COLLISIONS {
        match client.create(revisions_def(), ns, revision.clone()).await {
            Ok(written) => return Ok((*written.kv.value).clone()),
            Err(e) if e.reason == "AlreadyExists" => {
                let name = object::name(&revision).to_string();
                if let Ok(kv) = client.get(revisions_def(), ns, &name) {
                    let uid = object::uid(parent).unwrap_or_default();
                    if equal(&kv.value, &revision) && is_controlled_by(&kv.value, uid) {
                        return Ok((*kv.value).clone());
                    }
                }
                *collision_count += 1;
                revision = build(
                    parent,
                    revision["data"].clone(),
                    number(&revision),
                    Some(*collision_count),
                );
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::internal(format!(
        "no free ControllerRevision name for {} after {MAX_COLLISIONS} collisions",
        object::name(parent)
    )))
}

/// Gives `revision` the number `to` (upstream `UpdateControllerRevision`).
async fn renumber(client: &dyn Client, revision: &Value, to: i64) -> Result<Value, ApiError> {
    let written = client
        .modify(
            revisions_def(),
            object::namespace(revision),
            object::name(revision),
            None,
            &|current| {
                let mut next = current.clone();
                next["revision"] = json!(to);
                Ok(next)
            },
        )
        .await?;
    Ok((*written.kv.value).clone())
}

/// Deletes the oldest revisions beyond `limit` that are not `live` (the names of the
/// current and update revisions and of revisions pods still run), as upstream's
/// `truncateHistory`.
pub async fn truncate(
    client: &dyn Client,
    revisions: &[Value],
    live: &HashSet<String>,
    limit: i64,
) -> Result<(), ApiError> {
    let history: Vec<&Value> = revisions
        .iter()
        .filter(|r| !live.contains(object::name(r)))
        .collect();
    let excess = history
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    for revision in history.into_iter().take(excess) {
        let deleted = client
            .delete(
                revisions_def(),
                object::namespace(revision),
                object::name(revision),
                &DeleteOptions::default(),
            )
            .await;
        match deleted {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The revision hash label of a pod (empty when it has none).
pub fn pod_revision(pod: &Value) -> &str {
    pod["metadata"]["labels"][REVISION_HASH_LABEL]
        .as_str()
        .unwrap_or_default()
}

/// The hash part of a revision's name: what pods of that revision carry in their
/// `controller-revision-hash` label (upstream labels StatefulSet pods with the whole
/// revision name and DaemonSet pods with the hash only).
pub fn hash_of(revision: &Value) -> String {
    revision["metadata"]["labels"][REVISION_HASH_LABEL]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `labels` with the revision hash label set to `value`.
pub fn with_revision_label(labels: Option<&Map<String, Value>>, value: &str) -> Value {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), json!(value));
    Value::Object(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::testutil;

    async fn parent(registry: &crate::apiserver::registry::Registry, image: &str) -> Value {
        let def = def_of::<k8s_openapi::api::apps::v1::StatefulSet>();
        let body = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}
        });
        match registry.get(def, Some("default"), "web") {
            Ok(kv) => {
                let mut next = (*kv.value).clone();
                next["spec"] = body["spec"].clone();
                let written = registry
                    .update(
                        def,
                        Some("default"),
                        "web",
                        next,
                        None,
                        &WriteOptions::default(),
                    )
                    .await
                    .expect("update");
                (*written.kv.value).clone()
            }
            Err(_) => {
                let written = registry
                    .create(def, Some("default"), body, &WriteOptions::default())
                    .await
                    .expect("create");
                (*written.kv.value).clone()
            }
        }
    }

    #[test]
    fn template_patch_round_trips_and_names_are_stable() {
        let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}});
        let data = template_patch(&template);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let revision = json!({"data": data});
        assert_eq!(template_of(&revision), template);
        let reordered = json!({"spec": {"template": {"spec": {"containers": []},
            "$patch": "replace", "metadata": {"labels": {"a": "b"}}}}});
        assert_eq!(
            revision_name("web", &data, None),
            revision_name("web", &reordered, None)
        );
        assert_ne!(
            revision_name("web", &data, None),
            revision_name("web", &data, Some(1))
        );
        let long = "x".repeat(300);
        assert!(revision_name(&long, &data, None).len() < 240);
    }

    #[tokio::test]
    async fn sync_creates_reuses_and_renumbers_on_roll_back() {
        let registry = testutil::registry().await;
        let client: &dyn Client = &*registry;
        let v1 = parent(&registry, "img:1").await;
        let data = |p: &Value| template_patch(&p["spec"]["template"]);

        let first = sync(client, &v1, data(&v1), None, 0).await.expect("sync");
        assert_eq!(number(&first.update), 1);
        assert_eq!(object::name(&first.current), object::name(&first.update));
        assert!(!hash_of(&first.update).is_empty());
        assert!(object::name(&first.update).ends_with(&hash_of(&first.update)));

        let again = sync(client, &v1, data(&v1), None, 0).await.expect("sync");
        assert_eq!(object::name(&again.update), object::name(&first.update));
        assert_eq!(again.all.len(), 1);

        let v2 = parent(&registry, "img:2").await;
        let second = sync(client, &v2, data(&v2), Some(object::name(&first.update)), 0)
            .await
            .expect("sync");
        assert_eq!(number(&second.update), 2);
        assert_eq!(object::name(&second.current), object::name(&first.update));

        // Back to the first template: its revision is re-used with number 3.
        let v1_again = parent(&registry, "img:1").await;
        let back = sync(client, &v1_again, data(&v1_again), None, 0)
            .await
            .expect("sync");
        assert_eq!(object::name(&back.update), object::name(&first.update));
        assert_eq!(number(&back.update), 3);
        assert_eq!(back.all.len(), 2);
        assert_eq!(back.all.last().map(number), Some(3));

        // History of 0 beyond the live ones removes the other revision.
        let live: HashSet<String> = [object::name(&back.update).to_string()].into();
        truncate(client, &back.all, &live, 0)
            .await
            .expect("truncate");
        assert_eq!(owned(client, &v1_again).len(), 1);
    }

    #[tokio::test]
    async fn a_name_taken_by_other_data_bumps_the_collision_count() {
        let registry = testutil::registry().await;
        let client: &dyn Client = &*registry;
        let sts = parent(&registry, "img:1").await;
        let data = template_patch(&sts["spec"]["template"]);
        // Someone else's revision under the name the first revision would get.
        let mut squatter = build(&sts, json!({"other": true}), 1, None);
        squatter["metadata"]["name"] = json!(revision_name("web", &data, None));
        squatter["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("ownerReferences");
        registry
            .create(
                revisions_def(),
                Some("default"),
                squatter,
                &WriteOptions::default(),
            )
            .await
            .expect("create squatter");
        let synced = sync(client, &sts, data.clone(), None, 0)
            .await
            .expect("sync");
        assert_eq!(synced.collision_count, 1);
        assert_eq!(
            object::name(&synced.update),
            revision_name("web", &data, Some(1))
        );
    }
}

//! Controller references: building them, and claiming children (adopting matching
//! orphans, releasing owned objects whose labels no longer match) as upstream's
//! `ControllerRefManager` does.

use serde_json::{json, Value};

use super::framework::Client;
use super::pods::controller_ref;
use crate::api::object;
use crate::api::resources::ResourceDef;
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::store::KeyValue;

/// The ownerReference a controller puts on the objects it creates.
pub fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": object::name(owner),
        "uid": object::uid(owner).unwrap_or(""),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether `obj`'s controller is the object with `uid`.
pub fn is_controlled_by(obj: &Value, uid: &str) -> bool {
    controller_ref(obj).is_some_and(|r| r["uid"] == uid)
}

/// The children among `candidates` that `owner` controls after adopting orphans that
/// match `selector` and releasing owned ones that do not. `candidates` are objects of
/// `child_def` in the owner's namespace; `owner_def` is used to re-read the owner
/// before adopting (never adopt for a deleted or replaced owner).
pub async fn claim(
    client: &dyn Client,
    owner_def: &ResourceDef,
    owner: &Value,
    selector: &LabelSelector,
    child_def: &ResourceDef,
    candidates: Vec<KeyValue>,
) -> Result<Vec<KeyValue>, ApiError> {
    let uid = object::uid(owner).unwrap_or("").to_string();
    let owner_deleting = object::is_deleting(owner);
    let mut claimed = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for kv in candidates {
        let child = &*kv.value;
        let matches = selector.matches(object::labels(child));
        match controller_ref(child) {
            Some(r) if r["uid"] != uid.as_str() => {}
            Some(_) if matches => claimed.push(kv),
            Some(_) => {
                if !owner_deleting {
                    release(client, child_def, child, &uid).await?;
                }
            }
            None => {
                if !matches || owner_deleting || object::is_deleting(child) {
                    continue;
                }
                let allowed = *can_adopt.get_or_insert_with(|| {
                    client
                        .get(owner_def, object::namespace(owner), object::name(owner))
                        .is_ok_and(|fresh| {
                            object::uid(&fresh.value) == Some(uid.as_str())
                                && !object::is_deleting(&fresh.value)
                        })
                });
                if !allowed {
                    continue;
                }
                if let Some(adopted) = adopt(client, child_def, child, owner, selector).await? {
                    claimed.push(adopted);
                }
            }
        }
    }
    Ok(claimed)
}

/// Adds `owner` as controller of `child`; None when it cannot be adopted any more
/// (gone, owned by someone else, labels changed, being deleted).
async fn adopt(
    client: &dyn Client,
    def: &ResourceDef,
    child: &Value,
    owner: &Value,
    selector: &LabelSelector,
) -> Result<Option<KeyValue>, ApiError> {
    let reference = owner_reference(owner);
    let uid = object::uid(child).unwrap_or("").to_string();
    let result = client
        .modify(
            def,
            object::namespace(child),
            object::name(child),
            None,
            &|cur| {
                let unchanged = object::uid(cur) == Some(uid.as_str())
                    && controller_ref(cur).is_none()
                    && !object::is_deleting(cur)
                    && selector.matches(object::labels(cur));
                if !unchanged {
                    return Err(ApiError::conflict(
                        def,
                        object::name(cur),
                        "no longer an orphan matching the selector",
                    ));
                }
                let mut cur = cur.clone();
                let meta = object::meta_mut(&mut cur);
                let refs = meta.entry("ownerReferences").or_insert_with(|| json!([]));
                if let Some(refs) = refs.as_array_mut() {
                    refs.push(reference.clone());
                }
                Ok(cur)
            },
        )
        .await;
    match result {
        Ok(w) => Ok(Some(w.kv)),
        Err(e) if e.code == 404 || e.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the owner reference with `owner_uid` from `child`.
async fn release(
    client: &dyn Client,
    def: &ResourceDef,
    child: &Value,
    owner_uid: &str,
) -> Result<(), ApiError> {
    let result = client
        .modify(
            def,
            object::namespace(child),
            object::name(child),
            None,
            &|cur| {
                let mut cur = cur.clone();
                if let Some(refs) = cur["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != owner_uid);
                }
                Ok(cur)
            },
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

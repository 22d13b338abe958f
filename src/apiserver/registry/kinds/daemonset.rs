//! DaemonSet rules: created with an empty status (the controller owns it), and the
//! template generation upstream keeps in the `deprecated.daemonset.template.generation`
//! annotation: 1 on create, raised by one on every change of the pod template, never
//! set by clients. Pods are labelled `pod-template-generation` with it.

use serde_json::{json, Value};

use crate::api::defaults::{
    self, daemon_set_template_generation as template_generation,
    DAEMON_SET_TEMPLATE_GENERATION as TEMPLATE_GENERATION_ANNOTATION,
};
use crate::api::object;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{keep_unwritten_part, schema_of, Context, Strategy};

pub struct DaemonSetStrategy;

fn set_template_generation(ds: &mut Value, generation: i64) {
    let meta = object::meta_mut(ds);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[TEMPLATE_GENERATION_ANNOTATION] = json!(generation.to_string());
}

impl Strategy for DaemonSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::apps::v1::DaemonSet>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::DAEMON_SET
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                               "desiredNumberScheduled": 0, "numberReady": 0});
        defaults::apply_defaults(cx.def.kind, obj);
        let generation = template_generation(obj).filter(|g| *g >= 1).unwrap_or(1);
        set_template_generation(obj, generation);
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        defaults::apply_defaults(cx.def.kind, new);
        let old_generation = template_generation(old).unwrap_or(1);
        let changed = new["spec"]["template"] != old["spec"]["template"];
        set_template_generation(new, old_generation + i64::from(changed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::framework::def_of;
    use crate::controllers::testutil;

    fn ds(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "agent", "namespace": "default",
                            "annotations": {TEMPLATE_GENERATION_ANNOTATION: "7"}},
               "spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "template": {"metadata": {"labels": {"app": "agent"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[tokio::test]
    async fn template_generation_moves_only_with_the_template() {
        let registry = testutil::registry().await;
        let def = def_of::<k8s_openapi::api::apps::v1::DaemonSet>();
        let opts = WriteOptions::default();
        let mut body = ds("img:1");
        body["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION] = json!("0");
        let created = registry
            .create(def, Some("default"), body, &opts)
            .await
            .expect("create");
        let created = (*created.kv.value).clone();
        assert_eq!(template_generation(&created), Some(1));
        assert_eq!(created["status"]["numberReady"], 0);
        assert_eq!(created["spec"]["updateStrategy"]["type"], "RollingUpdate");

        // A client cannot set the generation; a change elsewhere in the spec keeps it.
        let mut next = created.clone();
        next["spec"]["minReadySeconds"] = json!(3);
        next["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION] = json!("9");
        let written = registry
            .update(def, Some("default"), "agent", next, None, &opts)
            .await
            .expect("update");
        assert_eq!(template_generation(&written.kv.value), Some(1));
        assert_eq!(written.kv.value["metadata"]["generation"], 2);

        let mut next = (*written.kv.value).clone();
        next["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
        let written = registry
            .update(def, Some("default"), "agent", next, None, &opts)
            .await
            .expect("update");
        assert_eq!(template_generation(&written.kv.value), Some(2));
        assert_eq!(written.kv.value["metadata"]["generation"], 3);

        // Status writes keep the spec and the generation.
        let mut status = (*written.kv.value).clone();
        status["status"]["numberReady"] = json!(4);
        status["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:3");
        let written = registry
            .update(def, Some("default"), "agent", status, Some("status"), &opts)
            .await
            .expect("status");
        assert_eq!(written.kv.value["status"]["numberReady"], 4);
        assert_eq!(template_generation(&written.kv.value), Some(2));
        assert_eq!(
            written.kv.value["spec"]["template"]["spec"]["containers"][0]["image"],
            "img:2"
        );
    }

    #[tokio::test]
    async fn bad_specs_are_refused_and_not_stored() {
        let registry = testutil::registry().await;
        let def = def_of::<k8s_openapi::api::apps::v1::DaemonSet>();
        let mut body = ds("img:1");
        body["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let err = registry
            .create(def, Some("default"), body, &WriteOptions::default())
            .await
            .expect_err("refused");
        assert_eq!(err.code, 422);
        assert!(registry.get(def, Some("default"), "agent").is_err());
    }
}

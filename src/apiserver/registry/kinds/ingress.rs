//! Ingress and IngressClass rules: an Ingress is created with an empty status (the
//! ingress status controller owns it), and one that names no class gets the default
//! IngressClass (upstream's DefaultIngressClass admission); an IngressClass's parameters
//! default to cluster scope (upstream `SetDefaults_IngressClass`).

use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::api::ingress::{default_class, LEGACY_CLASS_ANNOTATION};
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{keep_unwritten_part, schema_of, Context, Strategy};

fn ingress_classes() -> &'static ResourceDef {
    resources::by_plural("networking.k8s.io", "v1", "ingressclasses").expect("served")
}

/// Upstream's zero `IngressStatus` as JSON.
pub fn empty_status() -> Value {
    json!({"loadBalancer": {}})
}

pub struct IngressStrategy;

impl Strategy for IngressStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        obj["status"] = empty_status();
    }

    /// DefaultIngressClass admission: neither `spec.ingressClassName` nor the legacy
    /// annotation set → the default class, when there is one.
    fn admit_create<'a>(
        &'a self,
        cx: &'a Context<'a>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let named = obj["spec"]
            .get("ingressClassName")
            .is_some_and(|c| !c.is_null())
            || !obj["metadata"]["annotations"][LEGACY_CLASS_ANNOTATION].is_null();
        if !named && obj["spec"].is_object() {
            let classes = cx
                .store
                .list(&ingress_classes().prefix(), None, 0, &|_| true)
                .items;
            if let Some(class) = default_class(classes.iter().map(|kv| &*kv.value)) {
                obj["spec"]["ingressClassName"] = json!(class);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::networking::v1::Ingress>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::INGRESS
    }
}

/// Upstream `SetDefaults_IngressClass`.
fn default_parameters_scope(obj: &mut Value) {
    let params = &mut obj["spec"]["parameters"];
    if params.is_object() && params.get("scope").is_none_or(Value::is_null) {
        params["scope"] = json!("Cluster");
    }
}

pub struct IngressClassStrategy;

/// Field labels of IngressClasses (cluster-scoped: the name only).
const CLASS_FIELDS: &[&str] = &["metadata.name"];

impl Strategy for IngressClassStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        default_parameters_scope(obj);
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        default_parameters_scope(new);
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::networking::v1::IngressClass>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::INGRESS_CLASS
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        CLASS_FIELDS
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::apiserver::allocator::Allocators;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::store::memory::MemoryStore;
    use serde_json::json;

    async fn registry() -> Registry {
        let allocators = Allocators::new("10.43.0.0/16".parse().expect("cidr"), (30000, 32767));
        let reg = Registry::new(Arc::new(MemoryStore::new()), allocators);
        let namespaces = crate::api::resources::by_plural("", "v1", "namespaces").expect("served");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        reg.create(namespaces, None, ns, &WriteOptions::default())
            .await
            .expect("namespace");
        reg
    }

    fn def(plural: &str) -> &'static crate::api::resources::ResourceDef {
        crate::api::resources::by_plural("networking.k8s.io", "v1", plural).expect("served")
    }

    fn ingress(name: &str, spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
    }

    #[tokio::test]
    async fn classless_ingresses_get_the_default_class_and_an_empty_status() {
        let reg = registry().await;
        let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
        let w = reg
            .create(
                def("ingresses"),
                Some("default"),
                ingress("before", json!({"defaultBackend": backend})),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            w.kv.value["spec"]["ingressClassName"].is_null(),
            "no default class yet"
        );
        assert_eq!(w.kv.value["status"], json!({"loadBalancer": {}}));
        let class = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "orc", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "orc.io/ingress", "parameters": {"kind": "Cfg", "name": "x"}}});
        let w = reg
            .create(def("ingressclasses"), None, class, &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(w.kv.value["spec"]["parameters"]["scope"], "Cluster");
        let w = reg
            .create(
                def("ingresses"),
                Some("default"),
                ingress("after", json!({"defaultBackend": backend})),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(w.kv.value["spec"]["ingressClassName"], "orc");
        let w = reg
            .create(
                def("ingresses"),
                Some("default"),
                ingress(
                    "other",
                    json!({"ingressClassName": "nginx", "defaultBackend": backend}),
                ),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(w.kv.value["spec"]["ingressClassName"], "nginx");
        let err = reg
            .create(
                def("ingresses"),
                Some("default"),
                ingress("bad", json!({})),
                &WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, 422);
        assert!(reg.get(def("ingresses"), Some("default"), "bad").is_err());
    }

    #[tokio::test]
    async fn nodes_may_read_only_the_tls_secrets_of_ingresses_of_orc_classes() {
        use crate::apiserver::auth::NodeGraph;
        let reg = registry().await;
        let class = |name: &str, controller: &str| {
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": name}, "spec": {"controller": controller}})
        };
        for c in [
            class("orc", "orc.io/ingress"),
            class("nginx", "k8s.io/ingress-nginx"),
        ] {
            reg.create(def("ingressclasses"), None, c, &WriteOptions::default())
                .await
                .unwrap();
        }
        let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
        let with_tls = |class: &str, secret: &str| {
            json!({"ingressClassName": class, "defaultBackend": backend,
                "tls": [{"hosts": ["a.example.com"], "secretName": secret}]})
        };
        for (name, spec) in [
            ("ours", with_tls("orc", "ours-tls")),
            ("theirs", with_tls("nginx", "theirs-tls")),
        ] {
            reg.create(
                def("ingresses"),
                Some("default"),
                ingress(name, spec),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        }
        assert!(reg.ingress_tls_secret("default", "ours-tls"));
        assert!(
            !reg.ingress_tls_secret("default", "theirs-tls"),
            "another controller's"
        );
        assert!(!reg.ingress_tls_secret("default", "db-password"));
        assert!(
            !reg.ingress_tls_secret("other", "ours-tls"),
            "same name, other namespace"
        );
    }
}

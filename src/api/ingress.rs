//! Ingress glue without I/O: which IngressClass is the default (upstream's
//! DefaultIngressClass admission), which Ingresses orc's built-in controller serves, and
//! the Secrets their TLS sections name (what a node may read for them).

use serde_json::Value;

/// The `spec.controller` of IngressClasses served by orc's built-in ingress.
pub const CONTROLLER: &str = "orc.io/ingress";
/// The name of the IngressClass orc ships (`embedded/ingress/orc.yaml`).
pub const CLASS_NAME: &str = "orc";
/// Upstream `networkingv1.AnnotationIsDefaultIngressClass`.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation Ingresses used before `spec.ingressClassName` (still honoured by
/// controllers, as upstream's ingress-nginx and Traefik do).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The label an agent running the ingress proxy puts on its Node (the status controller
/// publishes the addresses of those nodes).
pub const NODE_LABEL: &str = "ingress.orc.io/enabled";

/// Whether `class` is marked as the cluster's default IngressClass.
pub fn is_default_class(class: &Value) -> bool {
    class["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true"
}

/// Upstream DefaultIngressClass admission: the name of the default class (the newest
/// when several are marked, as upstream since 1.28), `None` when there is none.
pub fn default_class<'a>(classes: impl IntoIterator<Item = &'a Value>) -> Option<String> {
    classes
        .into_iter()
        .filter(|c| is_default_class(c))
        .map(|c| {
            let created = c["metadata"]["creationTimestamp"].as_str().unwrap_or("");
            let name = c["metadata"]["name"].as_str().unwrap_or("");
            (std::cmp::Reverse(created.to_string()), name.to_string())
        })
        .min()
        .map(|(_, name)| name)
}

/// The class an Ingress asks for: `spec.ingressClassName`, else the legacy annotation;
/// `None` when it names none.
pub fn requested_class(ingress: &Value) -> Option<&str> {
    ingress["spec"]["ingressClassName"]
        .as_str()
        .or_else(|| ingress["metadata"]["annotations"][LEGACY_CLASS_ANNOTATION].as_str())
        .filter(|c| !c.is_empty())
}

/// Whether orc's built-in controller serves `ingress`, given the cluster's classes: its
/// class is one whose controller is [`CONTROLLER`] (the legacy annotation may also name
/// `orc` before the class exists), or it names no class while the default class is ours.
/// Ingresses of any other class are left to their controller.
pub fn is_ours<'a>(ingress: &Value, classes: impl IntoIterator<Item = &'a Value> + Clone) -> bool {
    let controller_of = |name: &str| {
        classes
            .clone()
            .into_iter()
            .find(|c| c["metadata"]["name"] == name)
            .map(|c| c["spec"]["controller"] == CONTROLLER)
    };
    match requested_class(ingress) {
        Some(name) => match controller_of(name) {
            Some(ours) => ours,
            None => {
                ingress["spec"]["ingressClassName"].is_null()
                    && ingress["metadata"]["annotations"][LEGACY_CLASS_ANNOTATION] == CLASS_NAME
            }
        },
        None => default_class(classes.clone())
            .and_then(|name| controller_of(&name))
            .unwrap_or(false),
    }
}

/// The Secrets (in the Ingress's namespace) its TLS sections name.
pub fn tls_secret_names(ingress: &Value) -> Vec<&str> {
    ingress["spec"]["tls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|t| t["secretName"].as_str())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, controller: &str, default: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created,
            "annotations": {DEFAULT_CLASS_ANNOTATION: if default { "true" } else { "false" }}},
            "spec": {"controller": controller}})
    }

    #[test]
    fn the_newest_default_class_is_the_default() {
        let classes = [
            class("orc", CONTROLLER, true, "2024-01-01T00:00:00Z"),
            class(
                "nginx",
                "k8s.io/ingress-nginx",
                true,
                "2024-02-01T00:00:00Z",
            ),
            class(
                "traefik",
                "traefik.io/ingress-controller",
                false,
                "2024-03-01T00:00:00Z",
            ),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("nginx"));
        assert_eq!(default_class(&classes[2..]), None);
    }

    #[test]
    fn orc_serves_its_classes_the_legacy_annotation_and_classless_ingresses_when_default() {
        let classes = [
            class("orc", CONTROLLER, true, "2024-01-01T00:00:00Z"),
            class(
                "nginx",
                "k8s.io/ingress-nginx",
                false,
                "2024-01-01T00:00:00Z",
            ),
        ];
        let named = |c: &str| json!({"spec": {"ingressClassName": c}});
        assert!(is_ours(&named("orc"), &classes));
        assert!(!is_ours(&named("nginx"), &classes));
        assert!(!is_ours(&named("missing"), &classes));
        let annotated = |c: &str| json!({"metadata": {"annotations": {LEGACY_CLASS_ANNOTATION: c}}, "spec": {}});
        assert!(is_ours(&annotated("orc"), &classes));
        assert!(!is_ours(&annotated("nginx"), &classes));
        assert!(is_ours(&annotated("orc"), &[]), "before the class exists");
        let classless = json!({"spec": {}});
        assert!(is_ours(&classless, &classes));
        let nginx_default = [
            class("orc", CONTROLLER, false, "2024-01-01T00:00:00Z"),
            class(
                "nginx",
                "k8s.io/ingress-nginx",
                true,
                "2024-01-01T00:00:00Z",
            ),
        ];
        assert!(!is_ours(&classless, &nginx_default));
        assert!(is_ours(&named("orc"), &nginx_default));
    }

    #[test]
    fn tls_sections_name_their_secrets() {
        let ing = json!({"spec": {"tls": [{"hosts": ["a"], "secretName": "a-tls"}, {"hosts": ["b"]},
            {"secretName": ""}]}});
        assert_eq!(tls_secret_names(&ing), ["a-tls"]);
        assert!(tls_secret_names(&json!({"spec": {}})).is_empty());
    }
}

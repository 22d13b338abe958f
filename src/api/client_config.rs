//! Where a webhook listens, from its `clientConfig`: admission webhooks' and CRD
//! conversion webhooks' alike (upstream's `WebhookClientConfig`).

use serde_json::Value;

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Url(String),
    Service {
        namespace: String,
        name: String,
        path: String,
        port: u16,
    },
}

impl Endpoint {
    /// A validated `clientConfig`'s endpoint: its `url`, else its `service` (port 443
    /// unless set); `None` when it has neither (validation refuses that).
    pub fn of(client_config: &Value) -> Option<Endpoint> {
        if let Some(url) = client_config["url"].as_str() {
            return Some(Endpoint::Url(url.to_string()));
        }
        let service = client_config["service"].as_object()?;
        let text = |key: &str| service.get(key).and_then(Value::as_str).unwrap_or("");
        Some(Endpoint::Service {
            namespace: text("namespace").into(),
            name: text("name").into(),
            path: text("path").into(),
            port: service
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(443),
        })
    }
}

/// The PEM bundle a `clientConfig`'s `caBundle` carries (base64), when it decodes to
/// text; a placeholder that does not is as none.
pub fn ca_bundle(client_config: &Value) -> Option<String> {
    use base64::Engine;
    let b64 = client_config["caBundle"]
        .as_str()
        .filter(|s| !s.is_empty())?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_url_wins_and_a_service_port_defaults_to_443() {
        assert_eq!(
            Endpoint::of(&json!({"url": "https://h:8443/x"})),
            Some(Endpoint::Url("https://h:8443/x".into()))
        );
        assert_eq!(
            Endpoint::of(&json!({"service": {"namespace": "ns", "name": "svc"}})),
            Some(Endpoint::Service {
                namespace: "ns".into(),
                name: "svc".into(),
                path: String::new(),
                port: 443
            })
        );
        assert_eq!(Endpoint::of(&json!({"caBundle": "Cg=="})), None);
    }

    #[test]
    fn a_ca_bundle_is_base64_text() {
        assert_eq!(ca_bundle(&json!({"caBundle": "UEVN"})), Some("PEM".into()));
        assert_eq!(ca_bundle(&json!({"caBundle": ""})), None);
        assert_eq!(ca_bundle(&json!({"caBundle": "not base64!"})), None);
        assert_eq!(ca_bundle(&json!({})), None);
    }
}

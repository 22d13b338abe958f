//! The admin kubeconfig, in the shape k3s writes (everything named `default`, data inline).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;

/// Renders a kubeconfig whose cluster, context and user are all named `default`, with the
/// CA and the client certificate and key inlined as base64 data. Write it with
/// [`super::write_private_file`]: it holds the admin key.
pub fn admin_kubeconfig(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: NAME,
            cluster: Cluster {
                certificate_authority_data: BASE64.encode(ca_pem),
                server: server_url,
            },
        }],
        contexts: vec![NamedContext {
            name: NAME,
            context: Context {
                cluster: NAME,
                user: NAME,
            },
        }],
        current_context: NAME,
        preferences: Preferences {},
        users: vec![NamedUser {
            name: NAME,
            user: User {
                client_certificate_data: BASE64.encode(cert_pem),
                client_key_data: BASE64.encode(key_pem),
            },
        }],
    };
    serde_yaml::to_string(&config).expect("a kubeconfig of strings and lists always serializes")
}

const NAME: &str = "default";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kubeconfig<'a> {
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<Named<'a>>,
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    current_context: &'static str,
    preferences: Preferences,
    users: Vec<NamedUser>,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'static str,
    cluster: Cluster<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster<'a> {
    certificate_authority_data: String,
    server: &'a str,
}

#[derive(Serialize)]
struct NamedContext {
    name: &'static str,
    context: Context,
}

#[derive(Serialize)]
struct Context {
    cluster: &'static str,
    user: &'static str,
}

#[derive(Serialize)]
struct Preferences {}

#[derive(Serialize)]
struct NamedUser {
    name: &'static str,
    user: User,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    client_certificate_data: String,
    client_key_data: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::Value;

    fn decode(v: &Value) -> String {
        String::from_utf8(BASE64.decode(v.as_str().unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn admin_kubeconfig_has_the_k3s_shape() {
        let yaml = admin_kubeconfig("https://127.0.0.1:6443", "CA", "CERT", "KEY");
        let v: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Config");
        assert_eq!(v["current-context"], "default");

        let cluster = &v["clusters"][0];
        assert_eq!(cluster["name"], "default");
        assert_eq!(cluster["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(
            decode(&cluster["cluster"]["certificate-authority-data"]),
            "CA"
        );

        let context = &v["contexts"][0];
        assert_eq!(context["name"], "default");
        assert_eq!(context["context"]["cluster"], "default");
        assert_eq!(context["context"]["user"], "default");

        let user = &v["users"][0];
        assert_eq!(user["name"], "default");
        assert_eq!(decode(&user["user"]["client-certificate-data"]), "CERT");
        assert_eq!(decode(&user["user"]["client-key-data"]), "KEY");
    }

    #[test]
    fn admin_kubeconfig_quotes_odd_server_urls() {
        let yaml = admin_kubeconfig("https://[::1]:6443 # not a comment", "", "", "");
        let v: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://[::1]:6443 # not a comment"
        );
    }
}

/// The server URL and inline credentials of a kubeconfig's current context.
#[derive(Clone, PartialEq, Eq)]
pub struct KubeconfigCredentials {
    pub server: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for KubeconfigCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeconfigCredentials")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Reads the credentials of a kubeconfig with inline data (as orc writes them).
pub fn kubeconfig_credentials(text: &str) -> super::Result<KubeconfigCredentials> {
    let bad = |reason: &str| super::Error::ParseKubeconfig {
        reason: reason.to_string(),
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let current = doc["current-context"].as_str().unwrap_or(NAME);
    let context = doc["contexts"]
        .as_sequence()
        .and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(current)))
        .ok_or_else(|| bad("current context not found"))?;
    let pick = |list: &str, key: &str| {
        let wanted = context["context"][key].as_str().unwrap_or(NAME).to_string();
        doc[list]
            .as_sequence()
            .and_then(|s| {
                s.iter()
                    .find(|c| c["name"].as_str() == Some(wanted.as_str()))
            })
            .cloned()
            .ok_or_else(|| bad(&format!("{key} {wanted} not found")))
    };
    let cluster = pick("clusters", "cluster")?;
    let user = pick("users", "user")?;
    let decode = |v: &serde_yaml::Value, what: &str| -> super::Result<String> {
        let data = v
            .as_str()
            .ok_or_else(|| bad(&format!("{what} is missing")))?;
        let bytes = BASE64
            .decode(data)
            .map_err(|_| bad(&format!("{what} is not base64")))?;
        String::from_utf8(bytes).map_err(|_| bad(&format!("{what} is not PEM text")))
    };
    Ok(KubeconfigCredentials {
        server: cluster["cluster"]["server"]
            .as_str()
            .ok_or_else(|| bad("cluster server is missing"))?
            .to_string(),
        ca_pem: decode(
            &cluster["cluster"]["certificate-authority-data"],
            "certificate-authority-data",
        )?,
        cert_pem: decode(
            &user["user"]["client-certificate-data"],
            "client-certificate-data",
        )?,
        key_pem: decode(&user["user"]["client-key-data"], "client-key-data")?,
    })
}

#[cfg(test)]
mod credentials_tests {
    use super::*;

    #[test]
    fn credentials_round_trip_through_the_admin_kubeconfig() {
        let text = admin_kubeconfig("https://127.0.0.1:6443", "CA", "CERT", "KEY");
        let c = kubeconfig_credentials(&text).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(
            (c.ca_pem.as_str(), c.cert_pem.as_str(), c.key_pem.as_str()),
            ("CA", "CERT", "KEY")
        );
        assert!(kubeconfig_credentials("kind: Config\n").is_err());
        assert!(!format!("{c:?}").contains("KEY"));
    }
}

//! OIDC discovery of the service-account issuer (upstream's
//! `/.well-known/openid-configuration` and `/openid/v1/jwks`): lets other systems verify
//! service-account tokens with the server's public key.

use serde_json::{json, Value};

use super::ServiceAccountTokens;
use crate::tls::service_account::ALGORITHM;

pub const CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";
/// Media type of the key set.
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";
/// How long clients may cache either document (upstream: an hour).
pub const CACHE_CONTROL: &str = "public, max-age=3600";

/// The discovery document; `advertise` is `host:port` of this server.
pub fn configuration(tokens: &ServiceAccountTokens, advertise: &str) -> Value {
    json!({
        "issuer": tokens.issuer(),
        "jwks_uri": jwks_uri(advertise),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
    })
}

/// The key set: the one signing key's public half.
pub fn jwks(tokens: &ServiceAccountTokens) -> Value {
    json!({"keys": [tokens.key().jwk()]})
}

/// `https://<advertise>/openid/v1/jwks`, with an IPv6 host in brackets.
pub fn jwks_uri(advertise: &str) -> String {
    let host = match advertise.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.to_string(),
        Err(_) => advertise.to_string(),
    };
    format!("https://{host}{JWKS_PATH}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jwks_uri_is_on_the_advertised_address() {
        assert_eq!(
            jwks_uri("10.0.0.5:6443"),
            "https://10.0.0.5:6443/openid/v1/jwks"
        );
        assert_eq!(
            jwks_uri("[fd00::1]:6443"),
            "https://[fd00::1]:6443/openid/v1/jwks"
        );
    }
}

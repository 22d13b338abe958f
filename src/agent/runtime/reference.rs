//! Image references as Docker and Kubernetes normalize them (`busybox` →
//! `docker.io/library/busybox:latest`).

use super::{Result, RuntimeError};

pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Where `docker.io` images are actually served from.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";

/// A normalized image reference: registry, repository and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Host[:port] as written (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference> {
        let invalid = |reason: &str| RuntimeError::InvalidReference {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(invalid("empty"));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(invalid("contains whitespace"));
        }
        let (name, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let (algo, hex) = d
                    .split_once(':')
                    .ok_or_else(|| invalid("digest must be algorithm:hex"))?;
                if algo != "sha256"
                    || hex.len() != 64
                    || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(invalid("digest must be sha256:<64 hex digits>"));
                }
                (n, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is a ':' after the last '/' (a ':' before it is a registry port).
        let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_string()),
            ),
            None => (name, None),
        };
        if let Some(t) = &tag {
            let valid = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid {
                return Err(invalid("invalid tag"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let repo_valid = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !repo_valid {
            return Err(invalid(
                "repository must be lowercase letters, digits and separators",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The tag or digest to ask the registry's manifest endpoint for (digest wins).
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// Host[:port] to send registry API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// Loopback registries are spoken to over plain HTTP (as `docker` treats them).
    pub fn is_insecure(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map(|(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    &self.registry
                }
            })
            .unwrap_or(&self.registry);
        host == "localhost" || host == "[::1]" || host.starts_with("127.")
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_normalize_to_docker_hub_library() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
    }

    #[test]
    fn registry_with_port_is_not_a_tag() {
        let r = Reference::parse("127.0.0.1:5000/busybox").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(r.is_insecure());
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        let r = Reference::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("a/b", Some("v1"))
        );
        assert!(!Reference::parse("ghcr.io/x/y").unwrap().is_insecure());
        assert_eq!(
            Reference::parse("busybox").unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn digest_references_keep_their_digest_and_no_default_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        let r = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_reference(), d);
    }

    #[test]
    fn malformed_references_are_rejected() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox@sha256:12",
            "a b",
            "x//y",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}

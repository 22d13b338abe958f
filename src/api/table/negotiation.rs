//! Which table a request asks for: `Accept` header negotiation (`as=Table;g=meta.k8s.io;v=v1`) and `includeObject`.

/// What each row carries in `object` (query parameter `includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` with the object's metadata (upstream's default).
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Lenient parse: an unknown value is treated as the default (`Metadata`).
    pub fn parse(s: &str) -> IncludeObject {
        Self::try_parse(s).unwrap_or_default()
    }

    /// Strict parse, as upstream: the error is the message of its 400 Bad Request.
    pub fn try_parse(s: &str) -> Result<IncludeObject, String> {
        match s {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }
}

/// True when the preferred media type of `accept` that orc can serve is a Table
/// (`application/json;as=Table;v=v1;g=meta.k8s.io`, or `v=v1beta1`).
pub fn wants_table(accept: &str) -> bool {
    negotiated_table_version(accept).is_some()
}

/// The Table `apiVersion` the client asked for (`meta.k8s.io/v1` or `meta.k8s.io/v1beta1`),
/// or None when its preferred servable media type is a plain object. Clauses are tried by
/// descending `q`, in header order among equals; clauses orc cannot serve are skipped.
pub fn negotiated_table_version(accept: &str) -> Option<&'static str> {
    let mut clauses: Vec<(f32, usize, MediaType)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, c)| MediaType::parse(c).map(|m| (m.q, i, m)))
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, m) in clauses {
        if !m.is_json() {
            continue;
        }
        match (m.param("as"), m.param("g"), m.param("v")) {
            (None, _, _) => return None,
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => return Some("meta.k8s.io/v1"),
            (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => {
                return Some("meta.k8s.io/v1beta1")
            }
            _ => continue,
        }
    }
    None
}

struct MediaType {
    essence: String,
    params: Vec<(String, String)>,
    q: f32,
}

impl MediaType {
    fn parse(clause: &str) -> Option<MediaType> {
        let mut parts = clause.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        if essence.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        let mut q = 1.0;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            if k.eq_ignore_ascii_case("q") {
                q = v.parse().unwrap_or(0.0);
            } else {
                params.push((k.to_string(), v.to_string()));
            }
        }
        Some(MediaType { essence, params, q })
    }

    fn is_json(&self) -> bool {
        matches!(
            self.essence.as_str(),
            "application/json" | "application/*" | "*/*"
        )
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_object_parsing() {
        assert_eq!(IncludeObject::parse(""), IncludeObject::Metadata);
        assert_eq!(IncludeObject::parse("Metadata"), IncludeObject::Metadata);
        assert_eq!(IncludeObject::parse("None"), IncludeObject::None);
        assert_eq!(IncludeObject::parse("Object"), IncludeObject::Object);
        assert_eq!(IncludeObject::parse("bogus"), IncludeObject::Metadata);
        assert_eq!(
            IncludeObject::try_parse("object"),
            Err("unrecognized includeObject value: \"object\"".to_string())
        );
    }

    #[test]
    fn accept_header_negotiation() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert!(wants_table(kubectl));
        assert_eq!(negotiated_table_version(kubectl), Some("meta.k8s.io/v1"));
        assert_eq!(
            negotiated_table_version(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"
            ),
            Some("meta.k8s.io/v1beta1")
        );
        assert!(wants_table(
            "application/json; as=Table; v=v1; g=meta.k8s.io"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(""));
        assert!(!wants_table("*/*"));
        assert!(!wants_table(
            "application/json,application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(wants_table(
            "application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        // Unknown transformations and unserved types are skipped, not fatal.
        assert!(!wants_table(
            "application/json;as=Table;v=v2;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(wants_table(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(!wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io;q=0"
        ));
    }
}

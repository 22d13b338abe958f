//! Reading requests: query parameters, bodies (JSON, YAML or Kubernetes protobuf) with a size limit.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::api::nesting::{self, NestingError};
use crate::api::protobuf::{self, ProtobufError};
use crate::api::status::ApiError;

/// Largest request body accepted, as upstream (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Most bytes of an oversized body read (and dropped) before answering 413.
const MAX_DISCARD_BYTES: usize = 32 * 1024 * 1024;

/// Any error a request body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the handlers read a request from: hyper's `Incoming` when served over a
/// connection, `Full<Bytes>` when a test calls them in-process.
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

/// Query parameters (last value wins).
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1") | Some(""))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for query parameter {key}"))
            }),
        }
    }

    /// `dryRun=All` (anything else non-empty is refused, as upstream).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}; supported values: All"
            ))),
        }
    }
}

/// Reads the whole body, refusing more than `MAX_BODY_BYTES`.
pub async fn read_body(
    body: impl RequestBody,
    content_length: Option<u64>,
) -> Result<Bytes, ApiError> {
    if content_length.is_some_and(|l| l > MAX_BODY_BYTES as u64) {
        discard(body).await;
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e: BoxError = e.into();
            ApiError::bad_request(format!("error reading request body: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_BODY_BYTES {
                discard(body).await;
                return Err(ApiError::too_large(MAX_BODY_BYTES));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Reads and drops the rest of an oversized body (up to a bound) so the client gets
/// to read the 413 answer instead of a reset connection.
async fn discard(body: impl RequestBody) {
    let _ = Limited::new(body, MAX_DISCARD_BYTES).collect().await;
}

/// Bodies from this size on are decoded on a blocking thread (YAML always is).
const DECODE_INLINE_MAX_BYTES: usize = 64 * 1024;

/// [`decode_body`] off the async workers when it may take long (YAML, large bodies), so
/// that one expensive body does not stall other requests.
pub async fn decode(content_type: &str, body: &Bytes) -> Result<Value, ApiError> {
    if !is_yaml(content_type) && body.len() < DECODE_INLINE_MAX_BYTES {
        return decode_body(content_type, body);
    }
    let (content_type, body) = (content_type.to_string(), body.clone());
    tokio::task::spawn_blocking(move || decode_body(&content_type, &body))
        .await
        .map_err(|e| ApiError::internal(format!("decoding the request body failed: {e}")))?
}

fn is_yaml(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    matches!(
        media,
        "application/yaml" | "application/x-yaml" | "text/yaml" | "application/apply-patch+yaml"
    )
}

/// What serde reports for a document deeper than its limit, in the words of [`nesting`].
fn too_deep(e: &impl std::fmt::Display) -> Option<NestingError> {
    e.to_string()
        .starts_with("recursion limit exceeded")
        .then_some(NestingError::TooDeep {
            limit: nesting::MAX_NESTING_DEPTH,
        })
}

/// Decodes a JSON, YAML or Kubernetes protobuf request body into a JSON value. Documents
/// nested deeper than [`nesting::MAX_NESTING_DEPTH`] are refused (400).
pub fn decode_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| match too_deep(&e) {
            Some(deep) => ApiError::bad_request(format!("the request body is not valid JSON: {deep}")),
            None => ApiError::bad_request(format!("the request body is not valid JSON: {e}")),
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            nesting::check_yaml_depth(body, nesting::MAX_NESTING_DEPTH).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?;
            let v: serde_yaml::Value = serde_yaml::from_slice(body).map_err(|e| {
                let e = too_deep(&e).map_or_else(|| e.to_string(), |deep| deep.to_string());
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?;
            serde_json::to_value(v)
                .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
        }
        protobuf::MEDIA_TYPE => protobuf::decode_object(body).map_err(|e| match e {
            ProtobufError::NoSchema { .. } => ApiError::unsupported_media_type(format!(
                "{e}: send this object as application/json"
            )),
            e => ApiError::bad_request(format!("the request body is not valid protobuf: {e}")),
        }),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_from_json_and_yaml_and_refuse_garbage() {
        let v = decode_body("application/json", br#"{"a":1}"#).unwrap();
        assert_eq!(v["a"], 1);
        let v = decode_body("application/yaml", b"a: 1\nb: [x]\n").unwrap();
        assert_eq!(v["b"][0], "x");
        assert_eq!(
            decode_body("application/json", b"{nope").unwrap_err().code,
            400
        );
        assert_eq!(
            decode_body("application/json", b"  ").unwrap_err().code,
            400
        );
        assert_eq!(decode_body("text/html", b"<p>").unwrap_err().code, 415);
    }

    #[test]
    fn deeply_nested_bodies_are_refused_quickly_with_a_clear_message() {
        let started = std::time::Instant::now();
        for (content_type, body) in [
            ("application/yaml", "{a: ".repeat(100_000)),
            ("application/yaml", "[".repeat(1_000_000)),
            ("application/json", "[".repeat(1_000_000)),
            (
                "application/json",
                format!("{}1{}", "[".repeat(200), "]".repeat(200)),
            ),
        ] {
            let err = decode_body(content_type, body.as_bytes()).unwrap_err();
            assert_eq!(err.code, 400);
            assert!(
                err.message.ends_with("nested more than 128 levels deep"),
                "{}",
                err.message
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let nested_ok = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(decode_body("application/json", nested_ok.as_bytes()).is_ok());
        assert!(decode_body("application/yaml", nested_ok.as_bytes()).is_ok());
    }

    #[test]
    fn yaml_alias_bombs_are_refused() {
        let mut doc = String::from("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
        let mut prev = 'a';
        for c in 'b'..='i' {
            let refs = vec![format!("*{prev}"); 9].join(",");
            doc.push_str(&format!("{c}: &{c} [{refs}]\n"));
            prev = c;
        }
        let err = decode_body("application/yaml", doc.as_bytes()).unwrap_err();
        assert_eq!(err.code, 400, "{}", err.message);
    }

    #[tokio::test]
    async fn yaml_bodies_decode_off_the_async_workers() {
        let body = Bytes::from_static(b"a: 1\n");
        assert_eq!(decode("application/yaml", &body).await.unwrap()["a"], 1);
    }

    #[test]
    fn protobuf_bodies_decode_and_refuse_garbage_and_unknown_kinds() {
        const PB: &str = "application/vnd.kubernetes.protobuf";
        // runtime.Unknown{typeMeta{v1, Namespace}, raw: Namespace{metadata{name: foo}}}
        let mut body =
            b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x07\x0a\x05\x0a\x03foo".to_vec();
        let v = decode_body(PB, &body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}})
        );
        body.truncate(body.len() - 2);
        assert_eq!(decode_body(PB, &body).unwrap_err().code, 400);
        assert_eq!(decode_body(PB, b"garbage").unwrap_err().code, 400);
        let job = b"k8s\0\x0a\x0f\x0a\x08ex.io/v1\x12\x03Foo";
        let err = decode_body(PB, job).unwrap_err();
        assert_eq!(err.code, 415);
        assert!(
            err.message.contains("no protobuf schema for ex.io/v1/Foo"),
            "{}",
            err.message
        );
    }

    #[test]
    fn query_parameters() {
        let q = Query::parse(Some("watch=1&labelSelector=app%3Dweb&limit=5&dryRun=All"));
        assert!(q.flag("watch"));
        assert_eq!(q.str("labelSelector"), "app=web");
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert!(q.dry_run().unwrap());
        assert!(Query::parse(Some("dryRun=Some")).dry_run().is_err());
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}

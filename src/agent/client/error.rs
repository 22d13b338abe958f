//! The one error of the agent's API calls: a request got no answer, or the API server
//! rejected it (status code, and the reason and message of its `Status` body). Module
//! errors wrap it instead of repeating its variants.

use std::future::Future;

use http::StatusCode;

use super::{ClientError, Response};

/// What the API server said when it refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server answered {}: {message}", status.as_u16())]
pub struct Rejection {
    pub status: StatusCode,
    /// The `reason` of the `Status` body (`NotFound`, `AlreadyExists`, `Expired` …);
    /// empty when the body is no `Status`.
    pub reason: String,
    /// The `message` of the `Status` body, else the body as text.
    pub message: String,
}

impl Rejection {
    pub fn from_response(resp: &Response) -> Rejection {
        let reason = resp
            .json()
            .and_then(|status| status["reason"].as_str().map(str::to_string))
            .unwrap_or_default();
        Rejection {
            status: resp.status,
            reason,
            message: resp.message(),
        }
    }

    /// The rejection a `Status` object carries (the object of a watch `ERROR` event).
    pub fn from_status_object(status: &serde_json::Value) -> Rejection {
        let code = status["code"].as_u64().unwrap_or(500);
        let text = |field: &str| status[field].as_str().unwrap_or("").to_string();
        Rejection {
            status: u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason: text("reason"),
            message: text("message"),
        }
    }
}

/// A request to the API server that failed; `what` names it ("update status of pod ns/a").
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what}")]
    Request {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("{what}: {rejection}")]
    Rejected { what: String, rejection: Rejection },
}

impl ApiError {
    pub fn rejected(what: impl Into<String>, resp: &Response) -> ApiError {
        ApiError::Rejected {
            what: what.into(),
            rejection: Rejection::from_response(resp),
        }
    }

    /// The status code the server answered; `None` when it did not answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Rejected { rejection, .. } => Some(rejection.status.as_u16()),
            ApiError::Request { .. } => None,
        }
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The answer to `request`, whatever its status (the caller looks at it).
pub async fn answered(
    what: &str,
    request: impl Future<Output = Result<Response, ClientError>>,
) -> Result<Response> {
    request.await.map_err(|source| ApiError::Request {
        what: what.to_string(),
        source,
    })
}

/// The answer to `request` if the server accepted it (2xx), else the rejection.
pub async fn accepted(
    what: &str,
    request: impl Future<Output = Result<Response, ClientError>>,
) -> Result<Response> {
    let resp = answered(what, request).await?;
    if resp.status.is_success() {
        Ok(resp)
    } else {
        Err(ApiError::rejected(what, &resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            body: serde_json::to_vec(body).unwrap().into(),
        }
    }

    #[test]
    fn a_rejection_carries_the_status_bodys_reason_and_message() {
        let resp = response(
            409,
            &json!({"kind": "Status", "reason": "AlreadyExists", "message": "pods \"a\" already exists", "code": 409}),
        );
        let e = ApiError::rejected("create pod default/a", &resp);
        assert_eq!(e.status(), Some(409));
        assert_eq!(
            e.to_string(),
            "create pod default/a: the server answered 409: pods \"a\" already exists"
        );
        let ApiError::Rejected { rejection, .. } = e else {
            panic!("a rejection")
        };
        assert_eq!(rejection.reason, "AlreadyExists");
    }

    #[test]
    fn a_body_that_is_no_status_becomes_the_message() {
        let resp = Response {
            status: StatusCode::BAD_GATEWAY,
            body: "upstream down\n".into(),
        };
        let rejection = Rejection::from_response(&resp);
        assert_eq!(rejection.reason, "");
        assert_eq!(rejection.message, "upstream down");
    }

    #[test]
    fn a_watch_error_event_is_read_as_a_rejection() {
        let rejection = Rejection::from_status_object(
            &json!({"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 1 (5)"}),
        );
        assert_eq!(rejection.status, StatusCode::GONE);
        assert_eq!(rejection.reason, "Expired");
    }
}

//! A scripted [`ListWatchApi`] for unit tests: per collection, the answers to its lists
//! and watches in order; it records every request with the (test clock) time it came.
//! A request with no answer left waits forever (the test's timeout then fires).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use http::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::watch::{ListWatchApi, WatchStart};
use super::{ClientError, Response, WatchEvent};

/// One scripted answer.
pub enum Answer {
    /// A list with these items at this resourceVersion.
    List {
        resource_version: String,
        items: Vec<Value>,
    },
    /// A watch that sends these `(type, object)` events, then ends.
    Events(Vec<(String, Value)>),
    /// A watch whose events the test sends through the channel; it ends when the
    /// sender is dropped.
    Live(mpsc::UnboundedReceiver<WatchEvent>),
    /// An error status with a `Status` body.
    Status(StatusCode),
    /// No answer: the server cannot be reached.
    Unreachable,
}

impl Answer {
    pub fn list(resource_version: &str, items: Vec<Value>) -> Answer {
        Answer::List {
            resource_version: resource_version.to_string(),
            items,
        }
    }

    pub fn events<'a>(events: impl IntoIterator<Item = (&'a str, Value)>) -> Answer {
        Answer::Events(
            events
                .into_iter()
                .map(|(k, o)| (k.to_string(), o))
                .collect(),
        )
    }
}

/// One request the fake got.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub path: String,
    pub at: Instant,
}

#[derive(Default)]
pub struct FakeListWatch {
    answers: Mutex<BTreeMap<String, VecDeque<Answer>>>,
    requests: Mutex<Vec<Request>>,
}

impl FakeListWatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues the next answer to a list or watch of `collection` (`/api/v1/pods`).
    pub fn answer(&self, collection: &str, answer: Answer) -> &Self {
        self.answers
            .lock()
            .expect("fake poisoned")
            .entry(collection.to_string())
            .or_default()
            .push_back(answer);
        self
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("fake poisoned").clone()
    }

    /// The paths requested so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }

    async fn next_answer(&self, path: &str) -> Answer {
        self.requests.lock().expect("fake poisoned").push(Request {
            path: path.to_string(),
            at: Instant::now(),
        });
        let collection = path.split('?').next().unwrap_or(path);
        let answer = self
            .answers
            .lock()
            .expect("fake poisoned")
            .get_mut(collection)
            .and_then(VecDeque::pop_front);
        match answer {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }
}

fn unreachable() -> ClientError {
    ClientError::Connect {
        addr: "fake:6443".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    }
}

fn status_response(status: StatusCode) -> Response {
    let body =
        serde_json::json!({"kind": "Status", "code": status.as_u16(), "message": "scripted"});
    Response {
        status,
        body: serde_json::to_vec(&body).unwrap_or_default().into(),
    }
}

#[async_trait]
impl ListWatchApi for FakeListWatch {
    async fn list(&self, path: &str) -> Result<Response, ClientError> {
        match self.next_answer(path).await {
            Answer::List {
                resource_version,
                items,
            } => {
                let list = serde_json::json!({
                    "kind": "List",
                    "metadata": {"resourceVersion": resource_version},
                    "items": items,
                });
                Ok(Response {
                    status: StatusCode::OK,
                    body: serde_json::to_vec(&list).unwrap_or_default().into(),
                })
            }
            Answer::Status(status) => Ok(status_response(status)),
            Answer::Unreachable => Err(unreachable()),
            Answer::Events(_) | Answer::Live(_) => panic!("{path}: a list was answered a watch"),
        }
    }

    async fn watch(&self, path: &str) -> Result<WatchStart, ClientError> {
        match self.next_answer(path).await {
            Answer::Events(events) => {
                let events = events
                    .into_iter()
                    .map(|(kind, object)| WatchEvent { kind, object });
                Ok(WatchStart::Events(stream::iter(events).boxed()))
            }
            Answer::Live(mut rx) => Ok(WatchStart::Events(
                stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed(),
            )),
            Answer::Status(status) => Ok(WatchStart::Rejected(status_response(status))),
            Answer::Unreachable => Err(unreachable()),
            Answer::List { .. } => panic!("{path}: a watch was answered a list"),
        }
    }
}

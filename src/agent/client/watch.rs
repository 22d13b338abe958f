//! The agent's one list-watch (a "reflector", as client-go's): list a resource, watch it
//! from the list's resourceVersion with bookmarks, resume from the last resourceVersion
//! seen when a watch ends, relist when the server has forgotten it (410 Gone), back off
//! on failures; the consumer gets typed [`Event`]s. Optionally it keeps what it saw on
//! disk ([`super::last_known`]) and starts from that when the server cannot be reached.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use super::error::{ApiError, Rejection};
use super::last_known::{LastKnownFile, Save, SAVE_DEBOUNCE};
use super::{backoff, ApiClient, ClientError, Response, WatchEvent, WatchEvents};

/// How long one watch request stays open before it is renewed.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(300);
/// A watch that ends sooner than this without a single event counts as a failure (a
/// server that closes watches at once must not be asked again in a tight loop).
const SHORT_WATCH: Duration = Duration::from_secs(1);

/// A change for the consumer of a [`Reflector`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event<T> {
    /// A fresh list: every object that exists now; it replaces what the consumer knew.
    /// Objects that went away since the previous list were reported [`Event::Deleted`]
    /// just before.
    Restarted(Vec<T>),
    /// The objects as this agent last saw them, read from disk because the server could
    /// not be reached at start (see [`Reflector::remember_in`]). They may be stale: keep
    /// serving them, but remove nothing they lack. The first list that succeeds follows
    /// as an [`Event::Restarted`], with deletions for what went away meanwhile.
    LastKnown(Vec<T>),
    /// An object was added or changed.
    Applied(T),
    Deleted(T),
}

/// What a [`Reflector`] lists and watches: a collection, optionally in one namespace and
/// narrowed by label and field selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    collection: String,
    label_selector: Option<String>,
    field_selector: Option<String>,
    relist_every: Option<Duration>,
}

impl Query {
    /// Every object of `plural` (`pods`, `nodes`, `services` …) in the cluster.
    pub fn all(plural: &str) -> Query {
        Query::at(format!("/api/v1/{plural}"))
    }

    /// The objects of `plural` in `namespace`.
    pub fn in_namespace(namespace: &str, plural: &str) -> Query {
        Query::at(format!("/api/v1/namespaces/{namespace}/{plural}"))
    }

    /// Every object of `plural` of an API group version (`discovery.k8s.io/v1`).
    pub fn all_in_group(group_version: &str, plural: &str) -> Query {
        Query::at(format!("/apis/{group_version}/{plural}"))
    }

    fn at(collection: String) -> Query {
        Query {
            collection,
            label_selector: None,
            field_selector: None,
            relist_every: None,
        }
    }

    /// Only objects whose labels match `selector` (`app=web,tier!=db`).
    pub fn labels(mut self, selector: &str) -> Query {
        self.label_selector = Some(selector.to_string());
        self
    }

    /// Only objects whose fields match `selector` (`spec.nodeName=n1`).
    pub fn fields(mut self, selector: &str) -> Query {
        self.field_selector = Some(selector.to_string());
        self
    }

    /// List again (an [`Event::Restarted`]) whenever a watch ends and `interval` has
    /// passed since the last list, for consumers that repair their own state from a
    /// full list now and then. Watches then last at most `interval`.
    pub fn relist_every(mut self, interval: Duration) -> Query {
        self.relist_every = Some(interval);
        self
    }

    /// The collection path, for logs.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The list request's path (collection and selectors).
    pub fn list_path(&self) -> String {
        let query = self.selectors().finish();
        if query.is_empty() {
            self.collection.clone()
        } else {
            format!("{}?{query}", self.collection)
        }
    }

    fn watch_path(&self, resource_version: &str) -> String {
        let timeout = self
            .relist_every
            .map_or(WATCH_TIMEOUT, |every| every.min(WATCH_TIMEOUT));
        let query = self
            .selectors()
            .append_pair("watch", "1")
            .append_pair("resourceVersion", resource_version)
            .append_pair("allowWatchBookmarks", "true")
            .append_pair("timeoutSeconds", &timeout.as_secs().max(1).to_string())
            .finish();
        format!("{}?{query}", self.collection)
    }

    fn selectors(&self) -> form_urlencoded::Serializer<'static, String> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(selector) = &self.label_selector {
            query.append_pair("labelSelector", selector);
        }
        if let Some(selector) = &self.field_selector {
            query.append_pair("fieldSelector", selector);
        }
        query
    }
}

/// The events of one watch request; it ends when the server ends the watch or the
/// connection breaks.
pub type EventStream = BoxStream<'static, WatchEvent>;

/// How a watch request was answered.
pub enum WatchStart {
    Events(EventStream),
    /// The server refused to start the watch (e.g. 410 Gone: the resourceVersion is too
    /// old).
    Rejected(Response),
}

/// How a [`Reflector`] reaches the API server: [`ApiClient`], or a fake in tests.
#[async_trait]
pub trait ListWatchApi: Send + Sync {
    /// GETs a list.
    async fn list(&self, path: &str) -> Result<Response, ClientError>;
    /// GETs a watch.
    async fn watch(&self, path: &str) -> Result<WatchStart, ClientError>;
}

#[async_trait]
impl ListWatchApi for ApiClient {
    async fn list(&self, path: &str) -> Result<Response, ClientError> {
        self.get(path).await
    }

    async fn watch(&self, path: &str) -> Result<WatchStart, ClientError> {
        use http_body_util::BodyExt;
        let (status, body) = self.stream(path).await?;
        if !status.is_success() {
            // An error answer is a short `Status`; a body that does not come is no reason
            // to wait longer than for any answer.
            let body = tokio::time::timeout(super::REQUEST_TIMEOUT, body.collect()).await;
            let body = match body {
                Ok(Ok(collected)) => collected.to_bytes(),
                _ => bytes::Bytes::new(),
            };
            return Ok(WatchStart::Rejected(Response { status, body }));
        }
        let events = stream::unfold(WatchEvents::new(body), |mut events| async move {
            match events.next().await? {
                Ok(event) => Some((event, events)),
                Err(e) => {
                    tracing::debug!(error = %e, "watch stream broke");
                    None
                }
            }
        });
        Ok(WatchStart::Events(events.boxed()))
    }
}

/// Why a list or watch failed; the reflector backs off, then tries again.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the server ended the watch at once")]
    ShortWatch,
    #[error("the watch reported an error: {0}")]
    WatchError(Rejection),
}

/// Identifies an object across lists: namespace, name and uid (a recreated object is
/// another object).
type ObjectKey = (String, String, String);

fn key_of(object: &Value) -> ObjectKey {
    let meta = &object["metadata"];
    let text = |field: &str| meta[field].as_str().unwrap_or("").to_string();
    (text("namespace"), text("name"), text("uid"))
}

/// An object the consumer was told about, kept as the compact JSON the server sent: a
/// parsed copy costs several times its text (a pod: ~4 KB of JSON, ~30 KB as a
/// `Value`), and the reflector reads its objects back only to report a relist's
/// deletions and to save them ([`Reflector::remember_in`]), which then shares them.
type Kept = Arc<str>;

fn kept(object: &Value) -> Kept {
    // A `Value` always serializes (its map keys are strings).
    Arc::from(serde_json::to_string(object).unwrap_or_default())
}

/// A reflector's objects kept on disk ([`Reflector::remember_in`]).
struct Keeper {
    file: LastKnownFile,
    /// The writer task, started at the first save.
    writer: Option<tokio::sync::watch::Sender<Option<Save>>>,
    /// When the objects changed since the last save are due to be saved.
    due: Option<Instant>,
    /// Whether the file was read already, or needs no reading (a list succeeded).
    loaded: bool,
}

struct OpenWatch {
    events: EventStream,
    started: Instant,
    seen: usize,
}

/// Lists and watches one [`Query`] forever, yielding typed [`Event`]s from
/// [`Reflector::next`]. Objects that do not decode as `T` are logged and skipped.
///
/// It remembers the objects it reported (its consumer's view), so a relist reports the
/// objects that went away meanwhile as [`Event::Deleted`] before the
/// [`Event::Restarted`]. A watch that ends or breaks is resumed from the last
/// resourceVersion seen (bookmarks included); 410 Gone relists at once. Failures (no
/// answer, a rejection, a watch the server ends at once) wait [`backoff`] delays that
/// double up to a cap and start over once a watch delivers or runs its course.
pub struct Reflector<T> {
    api: Arc<dyn ListWatchApi>,
    query: Query,
    /// The objects the consumer was told about, by key.
    known: BTreeMap<ObjectKey, Kept>,
    /// Where the next watch starts; `None`: list first.
    resource_version: Option<String>,
    watch: Option<OpenWatch>,
    listed_at: Instant,
    pending: VecDeque<Event<T>>,
    /// Failures since the last success; the next delay grows with them.
    failures: u32,
    keeper: Option<Keeper>,
}

impl<T: DeserializeOwned + Clone + Send + Sync + 'static> Reflector<T> {
    pub fn new(api: Arc<dyn ListWatchApi>, query: Query) -> Reflector<T> {
        Reflector {
            api,
            query,
            known: BTreeMap::new(),
            resource_version: None,
            watch: None,
            listed_at: Instant::now(),
            pending: VecDeque::new(),
            failures: 0,
            keeper: None,
        }
    }

    /// Keeps the objects in `file` (debounced) and, when the server cannot be reached
    /// at start, reports what the file holds as an [`Event::LastKnown`].
    pub fn remember_in(mut self, file: LastKnownFile) -> Reflector<T> {
        self.keeper = Some(Keeper {
            file,
            writer: None,
            due: None,
            loaded: false,
        });
        self
    }

    /// The next change. The first is always an [`Event::Restarted`] (the first list),
    /// or with [`Reflector::remember_in`] an [`Event::LastKnown`] when the server cannot
    /// be reached; failures are logged and retried, with growing delays, until
    /// something comes.
    pub async fn next(&mut self) -> Event<T> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            self.save_if_due();
            if let Err(e) = self.step().await {
                self.load_last_known(&e);
                let delay = backoff(self.failures);
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(
                    resource = %self.query.collection,
                    error = %crate::agent::error_chain(&e),
                    retry_in_ms = delay.as_millis() as u64,
                    "list-watch failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Lists, opens a watch, or reads one watch event; queues what the consumer sees.
    async fn step(&mut self) -> Result<(), Failure> {
        let Some(resource_version) = self.resource_version.clone() else {
            return self.relist().await;
        };
        let save_due = self.keeper.as_ref().and_then(|k| k.due);
        let Some(watch) = self.watch.as_mut() else {
            if self
                .query
                .relist_every
                .is_some_and(|every| self.listed_at.elapsed() >= every)
            {
                return self.relist().await;
            }
            return self.open_watch(&resource_version).await;
        };
        let next = match save_due {
            // Changes wait at most for their save: come back to it when it is due.
            Some(due) => tokio::select! {
                event = watch.events.next() => event,
                () = tokio::time::sleep_until(due) => return Ok(()),
            },
            None => watch.events.next().await,
        };
        match next {
            Some(event) => {
                watch.seen += 1;
                self.failures = 0;
                self.apply(event)
            }
            None => {
                let short = watch.seen == 0 && watch.started.elapsed() < SHORT_WATCH;
                self.watch = None;
                if short {
                    return Err(Failure::ShortWatch);
                }
                self.failures = 0;
                Ok(())
            }
        }
    }

    async fn open_watch(&mut self, resource_version: &str) -> Result<(), Failure> {
        let what = || format!("watch {}", self.query.collection);
        let path = self.query.watch_path(resource_version);
        let start = self
            .api
            .watch(&path)
            .await
            .map_err(|source| ApiError::Request {
                what: what(),
                source,
            })?;
        match start {
            WatchStart::Events(events) => {
                self.watch = Some(OpenWatch {
                    events,
                    started: Instant::now(),
                    seen: 0,
                });
                Ok(())
            }
            WatchStart::Rejected(resp) => {
                // Whatever the reason, a fresh list is the way on; at once when the
                // server merely forgot the resourceVersion.
                self.resource_version = None;
                if resp.status == StatusCode::GONE {
                    tracing::debug!(resource = %self.query.collection, "resourceVersion expired; relisting");
                    return Ok(());
                }
                Err(ApiError::rejected(what(), &resp).into())
            }
        }
    }

    async fn relist(&mut self) -> Result<(), Failure> {
        self.watch = None;
        let what = format!("list {}", self.query.collection);
        let resp = super::error::accepted(&what, self.api.list(&self.query.list_path())).await?;
        let mut list = resp.json().unwrap_or_default();
        let resource_version = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let items = match list["items"].take() {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        let (listed, objects) = self.decode_all(items);
        let previous = std::mem::replace(&mut self.known, listed);
        for (key, text) in previous {
            if !self.known.contains_key(&key) {
                if let Some(object) = self.decode_kept(&text) {
                    self.pending.push_back(Event::Deleted(object));
                }
            }
        }
        self.pending.push_back(Event::Restarted(objects));
        self.resource_version = Some(resource_version);
        self.listed_at = Instant::now();
        self.changed();
        if let Some(keeper) = self.keeper.as_mut() {
            keeper.loaded = true;
        }
        Ok(())
    }

    /// After the first failure to reach the server, before any list succeeded: the
    /// objects kept on disk become the known ones, reported as [`Event::LastKnown`].
    fn load_last_known(&mut self, failure: &Failure) {
        let unreachable = matches!(failure, Failure::Api(ApiError::Request { .. }));
        let Some(keeper) = self.keeper.as_mut().filter(|k| !k.loaded && unreachable) else {
            return;
        };
        keeper.loaded = true;
        let collection = self.query.list_path();
        let objects: Vec<Value> = match keeper.file.load(&collection) {
            Ok(Some(objects)) => objects,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %crate::agent::error_chain(&e), "ignoring the last known state");
                return;
            }
        };
        let (known, objects) = self.decode_all(objects);
        self.known = known;
        tracing::info!(
            resource = %self.query.collection,
            objects = self.known.len(),
            "the server cannot be reached: going on with the last known state"
        );
        self.pending.push_back(Event::LastKnown(objects));
    }

    /// The known objects changed: save them once [`SAVE_DEBOUNCE`] has passed.
    fn changed(&mut self) {
        if let Some(keeper) = self.keeper.as_mut() {
            keeper
                .due
                .get_or_insert_with(|| Instant::now() + SAVE_DEBOUNCE);
        }
    }

    /// Hands the known objects to the writer when their save is due.
    fn save_if_due(&mut self) {
        let Some(keeper) = self.keeper.as_mut() else {
            return;
        };
        if keeper.due.is_none_or(|due| due > Instant::now()) {
            return;
        }
        keeper.due = None;
        // The objects (shared, not copied) go to the writer, which encodes them on a
        // blocking thread: changes keep flowing to the consumer meanwhile.
        let items: Vec<Kept> = self.known.values().cloned().collect();
        let collection = self.query.list_path();
        let save = Save::new(move || LastKnownFile::encode_json(&collection, &items));
        let file = &keeper.file;
        let writer = keeper
            .writer
            .get_or_insert_with(|| file.clone().spawn_writer());
        writer.send_replace(Some(save));
    }

    fn apply(&mut self, event: WatchEvent) -> Result<(), Failure> {
        let WatchEvent { kind, object } = event;
        if kind == "ERROR" {
            self.watch = None;
            self.resource_version = None;
            let rejection = Rejection::from_status_object(&object);
            if rejection.status == StatusCode::GONE {
                tracing::debug!(resource = %self.query.collection, "resourceVersion expired; relisting");
                return Ok(());
            }
            return Err(Failure::WatchError(rejection));
        }
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
            self.resource_version = Some(rv.to_string());
        }
        let key = key_of(&object);
        match kind.as_str() {
            "ADDED" | "MODIFIED" => {
                let text = kept(&object);
                if let Some(decoded) = self.decode(object) {
                    self.known.insert(key, text);
                    self.pending.push_back(Event::Applied(decoded));
                    self.changed();
                }
            }
            "DELETED" => {
                // An object that does not decode is still gone: report it as it was.
                let known = self.known.remove(&key);
                self.changed();
                let gone = match self.decode(object) {
                    Some(gone) => Some(gone),
                    None => known.and_then(|text| self.decode_kept(&text)),
                };
                if let Some(gone) = gone {
                    self.pending.push_back(Event::Deleted(gone));
                }
            }
            "BOOKMARK" => {}
            other => {
                tracing::debug!(resource = %self.query.collection, kind = other, "ignoring a watch event of unknown type")
            }
        }
        Ok(())
    }

    /// The objects that decode, by key (kept) and in key order (decoded).
    fn decode_all(&self, objects: Vec<Value>) -> (BTreeMap<ObjectKey, Kept>, Vec<T>) {
        let mut decoded: BTreeMap<ObjectKey, (Kept, T)> = BTreeMap::new();
        for object in objects {
            let (key, text) = (key_of(&object), kept(&object));
            if let Some(object) = self.decode(object) {
                decoded.insert(key, (text, object));
            }
        }
        let mut known = BTreeMap::new();
        let objects = decoded
            .into_iter()
            .map(|(key, (text, object))| {
                known.insert(key, text);
                object
            })
            .collect();
        (known, objects)
    }

    /// A kept object, decoded again (it decoded when it was kept).
    fn decode_kept(&self, text: &str) -> Option<T> {
        self.decode(serde_json::from_str(text).ok()?)
    }

    fn decode(&self, object: Value) -> Option<T> {
        // A reflector of `Value`s takes the object as it is: deserializing a `Value` into
        // a `Value` would build a copy of it.
        let object: Box<dyn Any> = Box::new(object);
        let object = match object.downcast::<T>() {
            Ok(same) => return Some(*same),
            Err(other) => *other.downcast::<Value>().ok()?,
        };
        serde_json::from_value(object)
            .inspect_err(|e| {
                tracing::warn!(resource = %self.query.collection, error = %e, "ignoring an unreadable object")
            })
            .ok()
    }
}

#[cfg(test)]
mod tests;

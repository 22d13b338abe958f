//! Event rules: printed as `kubectl get events` lists them, selectable by the
//! object they are about, their reason, source and type; writes by each node identity
//! rate-limited (upstream's EventRateLimit admission, type User). Served twice over one
//! storage, as upstream: core/v1 as stored, and `events.k8s.io/v1` converted on every
//! write (to the core shape, then its stricter validation) and every read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::events::{self as events_v1, core_field_label, V1_SELECTABLE_FIELDS};
use crate::api::identity::User;
use crate::api::resources::ResourceDef;
use crate::api::selector;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::{self, FieldError};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};
use crate::store::KeyValue;

pub struct EventStrategy;

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// Event writes a node may make at once: as many as a kubelet's own client-side limit
/// lets through in a burst (upstream kubelet `eventBurst`).
pub const NODE_EVENT_BURST: u32 = 100;
/// Event writes per second a node may sustain after a burst.
pub const NODE_EVENTS_PER_SECOND: u32 = 10;
/// Nodes tracked at most; beyond that, nodes whose bucket is full again are forgotten.
const MAX_TRACKED_NODES: usize = 4096;

/// A token bucket: `burst` tokens, refilled at `per_second`; each write takes one.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant, burst: u32, per_second: u32) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
        self.updated = now;
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant, burst: u32, per_second: u32) -> Result<(), Duration> {
        self.refill(now, burst, per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::from_secs_f64(
            missing / f64::from(per_second.max(1)),
        ))
    }

    fn is_full(&mut self, now: Instant, burst: u32, per_second: u32) -> bool {
        self.refill(now, burst, per_second);
        self.tokens >= f64::from(burst)
    }
}

/// One token bucket per node identity, for the events it writes.
#[derive(Debug)]
pub struct EventRateLimit {
    burst: u32,
    per_second: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl Default for EventRateLimit {
    fn default() -> Self {
        EventRateLimit::new(NODE_EVENT_BURST, NODE_EVENTS_PER_SECOND)
    }
}

impl EventRateLimit {
    pub fn new(burst: u32, per_second: u32) -> EventRateLimit {
        EventRateLimit {
            burst,
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one event write by `user` at `now`: 429 `TooManyRequests` (upstream's
    /// wording, with `Retry-After`) once its node has used its burst. Only node
    /// identities are limited.
    pub fn admit(&self, user: &User, now: Instant) -> Result<(), ApiError> {
        if user.node_name().is_none() {
            return Ok(());
        }
        let (burst, per_second) = (self.burst, self.per_second);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_NODES && !buckets.contains_key(&user.name) {
            buckets.retain(|_, b| !b.is_full(now, burst, per_second));
        }
        let bucket = buckets
            .entry(user.name.clone())
            .or_insert_with(|| TokenBucket::full(burst, now));
        bucket
            .try_take(now, burst, per_second)
            .map_err(|wait| too_many_events(&user.name, wait))
    }
}

fn too_many_events(user: &str, wait: Duration) -> ApiError {
    let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut e = ApiError::new(
        429,
        "TooManyRequests",
        format!("Too many requests: limit reached on type User for key {user}"),
    );
    e.details = Some(json!({"retryAfterSeconds": retry_after}));
    e
}

impl Strategy for EventStrategy {
    fn admit(
        &self,
        cx: &Context,
        requester: &User,
        _new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        cx.event_rate_limit.admit(requester, Instant::now())
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Event>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::EVENT
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }

    /// `source` is the legacy source component, else the reporting controller.
    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "source" => {
                let component = selector::field_value(obj, "source.component");
                if component.is_empty() {
                    selector::field_value(obj, "reportingComponent")
                } else {
                    component
                }
            }
            _ => selector::field_value(obj, field),
        }
    }
}

/// Whether `def` is the `events.k8s.io/v1` view of the stored core Events.
pub fn is_v1(def: &ResourceDef) -> bool {
    def.group == events_v1::GROUP && def.custom.is_none()
}

/// The stored (core) Event `kv` as `events.k8s.io/v1` shows it.
pub fn v1_view(kv: KeyValue) -> KeyValue {
    if kv.value["apiVersion"] == events_v1::API_VERSION {
        return kv;
    }
    let value = events_v1::to_v1(&kv.value);
    kv.with_value(value)
}

/// `events.k8s.io/v1` Events: the core Events' storage and admission, upstream's v1
/// validation, field labels and shape.
pub struct EventV1Strategy;

impl Strategy for EventV1Strategy {
    fn admit(
        &self,
        cx: &Context,
        requester: &User,
        _new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        cx.event_rate_limit.admit(requester, Instant::now())
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::events::v1::Event>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::EVENT
    }

    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        *obj = events_v1::from_v1(obj);
    }

    /// `old` is the v1 view of the stored object; `new` is stored in core shape.
    fn prepare_for_update(
        &self,
        _cx: &Context,
        new: &mut Value,
        _old: &Value,
        _subresource: Option<&str>,
    ) {
        *new = events_v1::from_v1(new);
    }

    fn validate(&self, _cx: &Context, obj: &Value) -> Vec<FieldError> {
        validation::validate_event_v1(obj, None)
    }

    fn validate_update(&self, _cx: &Context, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::validate_event_v1(new, Some(&events_v1::from_v1(old)))
    }

    fn fresh_view(&self, _cx: &Context, kv: KeyValue) -> KeyValue {
        v1_view(kv)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        V1_SELECTABLE_FIELDS
    }

    /// Selectors run on the stored (core) shape: each v1 label reads its core field.
    fn field_value(&self, obj: &Value, field: &str) -> String {
        let field = core_field_label(field).unwrap_or(field);
        if obj["apiVersion"] == events_v1::API_VERSION {
            return selector::field_value(&events_v1::from_v1(obj), field);
        }
        selector::field_value(obj, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_field_selectors_read_the_stored_core_event() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reportingComponent": "kubelet", "reason": "Started", "type": "Normal",
        });
        let s = EventV1Strategy;
        assert_eq!(s.field_value(&core, "regarding.name"), "web");
        assert_eq!(s.field_value(&core, "regarding.kind"), "Pod");
        assert_eq!(s.field_value(&core, "reportingController"), "kubelet");
        assert_eq!(s.field_value(&core, "reason"), "Started");
        let v1 = events_v1::to_v1(&core);
        assert_eq!(s.field_value(&v1, "regarding.name"), "web");
        let sel = selector::FieldSelector::parse("involvedObject.name=web").unwrap();
        assert!(selector::check_supported(s.selectable_fields(), &sel).is_err());
    }

    #[test]
    fn the_v1_view_converts_once() {
        let kv = crate::store::make_kv(
            "/core/events/ns/e",
            json!({"apiVersion": "v1", "kind": "Event", "message": "m"}),
            3,
            3,
        );
        let view = v1_view(kv);
        assert_eq!(view.value["note"], "m");
        assert_eq!(view.mod_revision, 3);
        let raw: Value = serde_json::from_slice(&view.raw).unwrap();
        assert_eq!(raw["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1_view(view.clone()).raw, view.raw);
    }

    fn node(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec![crate::api::identity::NODES_GROUP.into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_node_gets_its_burst_then_429_until_tokens_refill() {
        let limit = EventRateLimit::new(3, 2);
        let t0 = Instant::now();
        let n1 = node("n1");
        for _ in 0..3 {
            assert!(limit.admit(&n1, t0).is_ok());
        }
        let e = limit.admit(&n1, t0).unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        assert_eq!(
            e.message,
            "Too many requests: limit reached on type User for key system:node:n1"
        );
        assert_eq!(e.details.unwrap()["retryAfterSeconds"], 1);
        // Another node has its own bucket.
        assert!(limit.admit(&node("n2"), t0).is_ok());
        // Half a second later one token (2 per second) is back, and only one.
        let later = t0 + Duration::from_millis(500);
        assert!(limit.admit(&n1, later).is_ok());
        assert!(limit.admit(&n1, later).is_err());
    }

    #[test]
    fn admins_and_controllers_are_not_limited() {
        let limit = EventRateLimit::new(1, 1);
        let admin = User {
            name: "system:admin".into(),
            groups: vec![crate::api::identity::ADMIN_GROUP.into()],
            ..Default::default()
        };
        let now = Instant::now();
        for _ in 0..10 {
            assert!(limit.admit(&admin, now).is_ok());
        }
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(2, t0);
        let much_later = t0 + Duration::from_secs(3600);
        assert!(bucket.try_take(much_later, 2, 10).is_ok());
        assert!(bucket.try_take(much_later, 2, 10).is_ok());
        let wait = bucket.try_take(much_later, 2, 10).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
    }

    #[test]
    fn event_source_falls_back_to_the_reporting_component() {
        let old_style = json!({"source": {"component": "kubelet"}, "reportingComponent": "x"});
        assert_eq!(EventStrategy.field_value(&old_style, "source"), "kubelet");
        let new_style = json!({"reportingComponent": "orc-controller"});
        assert_eq!(
            EventStrategy.field_value(&new_style, "source"),
            "orc-controller"
        );
    }
}

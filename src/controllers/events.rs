//! Records core/v1 Events about objects, aggregating repeats (count, lastTimestamp) as
//! upstream's event recorder does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::framework::Client;
use crate::api::object;
use crate::api::resources;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// Creates Events as `component`; repeats of the same (object, type, reason, message)
/// update one Event instead of creating new ones.
pub struct Recorder {
    client: Arc<dyn Client>,
    component: String,
    seen: Mutex<HashMap<String, (String, String)>>,
}

impl Recorder {
    pub fn new(client: Arc<dyn Client>, component: &str) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event about `involved` (any object with kind/apiVersion/metadata).
    /// Failures are logged, never returned: events are best effort.
    pub async fn record(&self, involved: &Value, event_type: &str, reason: &str, message: &str) {
        let events = resources::by_plural("", "v1", "events").expect("served");
        let ns = object::namespace(involved).unwrap_or("default").to_string();
        let uid = object::uid(involved).unwrap_or("").to_string();
        let dedupe = format!("{uid}\u{0}{event_type}\u{0}{reason}\u{0}{message}");
        let now = object::timestamp(chrono::Utc::now());
        let previous = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&dedupe)
            .cloned();
        if let Some((ev_ns, ev_name)) = previous {
            let now = now.clone();
            let bumped = self
                .client
                .modify(events, Some(&ev_ns), &ev_name, None, &|cur| {
                    let mut cur = cur.clone();
                    cur["count"] = json!(cur["count"].as_i64().unwrap_or(1) + 1);
                    cur["lastTimestamp"] = json!(now);
                    Ok(cur)
                })
                .await;
            if bumped.is_ok() {
                return;
            }
        }
        let name = format!(
            "{}.{:x}",
            object::name(involved),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "kind": involved["kind"],
                "apiVersion": involved["apiVersion"],
                "namespace": object::namespace(involved),
                "name": object::name(involved),
                "uid": uid,
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": "",
        });
        match self.client.create(events, Some(&ns), event).await {
            Ok(_) => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(dedupe, (ns, name));
            }
            Err(e) => tracing::debug!(reason, error = %e, "could not record event"),
        }
    }
}

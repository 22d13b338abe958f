//! What the worker tells the API: the pod status (posted only when it changed) and
//! events on the pod, repeats aggregated into one Event as upstream's recorder does.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::{LaterEvent, PodWorker};
use crate::agent::kubelet::status::{self, PodFacts};

/// Most distinct events a pod's series remembers; past it the oldest are forgotten
/// (their next repeat starts a new Event), as upstream's recorder keeps an LRU cache.
const EVENT_SERIES_CAPACITY: usize = 256;

/// The events recorded about one pod, by what makes two of them the same (type,
/// reason, container and message; client-go's `EventLogger` key): a repeat raises the
/// first Event's `count` and `lastTimestamp` instead of creating another, so `kubectl
/// describe` shows `(x4 over 3m)` and a pod backing off does not pile up Events.
#[derive(Debug, Default)]
pub(super) struct EventSeries {
    /// Key → (Event name, count, when it was last recorded: a sequence number).
    seen: HashMap<String, (String, u64, u64)>,
    next: u64,
}

/// What to do with an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Occurrence {
    /// Create an Event; remember it with [`EventSeries::created`].
    First,
    /// Raise Event `name` to `count`.
    Repeat { name: String, count: u64 },
}

impl EventSeries {
    fn key(kind: &str, reason: &str, message: &str, field_path: &str) -> String {
        [kind, reason, field_path, message].join("\u{0}")
    }

    /// Counts an occurrence of the event.
    pub(super) fn observe(
        &mut self,
        kind: &str,
        reason: &str,
        message: &str,
        field_path: &str,
    ) -> Occurrence {
        self.next += 1;
        let now = self.next;
        match self
            .seen
            .get_mut(&Self::key(kind, reason, message, field_path))
        {
            Some((name, count, last)) => {
                *count += 1;
                *last = now;
                Occurrence::Repeat {
                    name: name.clone(),
                    count: *count,
                }
            }
            None => Occurrence::First,
        }
    }

    /// Remembers Event `name`, just created for the event (count 1).
    pub(super) fn created(
        &mut self,
        kind: &str,
        reason: &str,
        message: &str,
        field_path: &str,
        name: &str,
    ) {
        if self.seen.len() >= EVENT_SERIES_CAPACITY {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (_, _, last))| *last)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(
            Self::key(kind, reason, message, field_path),
            (name.to_string(), 1, self.next),
        );
    }

    /// Forgets the event (its Event is gone: the next occurrence creates a new one).
    pub(super) fn forget(&mut self, kind: &str, reason: &str, message: &str, field_path: &str) {
        self.seen
            .remove(&Self::key(kind, reason, message, field_path));
    }
}

impl PodWorker {
    pub(super) fn facts(&self) -> PodFacts<'_> {
        let initialized = self.initialized();
        PodFacts {
            pod: &self.pod,
            pod_ip: self.pod_ip,
            host_ip: self.shared.config.host_ip,
            start_time: self.start_time.unwrap_or_else(Utc::now),
            now: Utc::now(),
            initialized,
            message: self.message.clone(),
            failed: self.stopped,
            previous: self.last_posted.as_ref().unwrap_or(&self.pod["status"]),
        }
    }

    /// The status as it would be posted now.
    pub fn status(&self) -> Value {
        let mut status = status::pod_status(&self.facts(), &self.init, &self.apps);
        if !self.ephemeral.is_empty() {
            status["ephemeralContainerStatuses"] = json!(status::ephemeral_container_statuses(
                &self.pod,
                &self.ephemeral
            ));
        }
        if let (Some(at), Some((_, message))) = (self.evicted_at, &self.message) {
            status::add_disruption_target(&mut status, message, at);
        }
        status
    }

    pub(super) async fn post_status(&mut self) {
        if self.is_terminal()
            && self.last_posted.is_none()
            && self.pod["status"]["phase"].is_string()
        {
            // Ended before this agent started: the stored status stays as it is.
            let stored = self.pod["status"]["phase"].as_str().unwrap_or("");
            if stored == "Succeeded" || stored == "Failed" {
                return;
            }
        }
        let status = self.status();
        let unchanged_stored = !status::status_changed(&self.pod["status"], &status);
        let unchanged_posted = self
            .last_posted
            .as_ref()
            .is_some_and(|p| !status::status_changed(p, &status));
        if unchanged_stored || unchanged_posted {
            return;
        }
        let (ns, name) = (self.namespace().to_string(), self.pod_name().to_string());
        let changed: Vec<&String> = status
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| &&self.pod["status"][k.as_str()] != v)
            .map(|(k, _)| k)
            .collect();
        debug!(pod = %self.name(), ?changed, "posting pod status");
        let previous = self.last_posted.as_ref().unwrap_or(&self.pod["status"]);
        let began_running = status["phase"] == "Running" && previous["phase"] != "Running";
        let begun = std::time::Instant::now();
        match self.shared.api.patch_status(&ns, &name, &status).await {
            Ok(()) => {
                if began_running {
                    self.shared.metrics.observe_pod_start(self.seen.elapsed());
                }
                debug!(pod = %self.name(), phase = %status["phase"], ms = begun.elapsed().as_millis() as u64, "pod status updated");
                self.last_posted = Some(status);
                self.status_unposted = false;
            }
            Err(e) => {
                warn!(pod = %self.name(), error = %e, "pod status update failed");
                self.status_unposted = true;
            }
        }
    }

    /// Queues an event to be recorded once the sync has written the status
    /// ([`Self::flush_events`]): the routine events of a container start do not delay
    /// the status clients wait for.
    pub(super) fn event_later(
        &self,
        kind: &str,
        reason: &str,
        message: &str,
        container: Option<&str>,
    ) {
        let field = container.map(|c| self.field_path(self.group_of(c), c));
        self.event_at_later(kind, reason, message, field.as_deref().unwrap_or(""));
    }

    pub(super) fn event_at_later(&self, kind: &str, reason: &str, message: &str, field_path: &str) {
        let mut queue = self.events_later.lock().unwrap_or_else(|e| e.into_inner());
        queue.push(LaterEvent {
            kind: kind.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            field_path: field_path.to_string(),
        });
    }

    /// Records the queued events, in order.
    pub(super) async fn flush_events(&mut self) {
        let queued =
            std::mem::take(&mut *self.events_later.lock().unwrap_or_else(|e| e.into_inner()));
        for e in queued {
            self.event_at(&e.kind, &e.reason, &e.message, &e.field_path)
                .await;
        }
    }

    pub(super) async fn event(
        &self,
        kind: &str,
        reason: &str,
        message: &str,
        container: Option<&str>,
    ) {
        let field = container.map(|c| self.field_path(self.group_of(c), c));
        self.event_at(kind, reason, message, field.as_deref().unwrap_or(""))
            .await;
    }

    pub(super) async fn event_at(&self, kind: &str, reason: &str, message: &str, field_path: &str) {
        let ns = self.namespace();
        if ns.is_empty() {
            // An orphan known only by its uid: there is no pod to attach the event to.
            return;
        }
        let now = status::timestamp(Utc::now());
        let occurrence = self
            .event_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(kind, reason, message, field_path);
        if let Occurrence::Repeat { name, count } = occurrence {
            let repeat = json!({
                "metadata": {"name": name, "namespace": ns},
                "reason": reason,
                "message": message,
                "count": count,
                "lastTimestamp": now,
            });
            match self.shared.api.repeat_event(ns, &repeat).await {
                Ok(()) => return,
                // Expired (the event TTL): recorded anew below.
                Err(e) if e.status() == Some(404) => self
                    .event_series
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget(kind, reason, message, field_path),
                Err(e) => {
                    debug!(pod = %self.name(), %reason, error = %e, "event repeat not recorded");
                    return;
                }
            }
        }
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let event_name = format!("{}.{}", self.pod_name(), &suffix[..16]);
        let mut involved = json!({
            "kind": "Pod", "apiVersion": "v1", "namespace": ns,
            "name": self.pod_name(), "uid": self.uid,
        });
        if !field_path.is_empty() {
            involved["fieldPath"] = json!(field_path);
        }
        let node = &self.shared.config.node_name;
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        match self.shared.api.create_event(ns, &event).await {
            Ok(()) => self
                .event_series
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .created(kind, reason, message, field_path, &event_name),
            Err(e) => debug!(pod = %self.name(), %reason, error = %e, "event not recorded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_of_an_event_raise_the_first_ones_count() {
        let mut series = EventSeries::default();
        let pull = |s: &mut EventSeries| {
            s.observe(
                "Normal",
                "Pulling",
                "Pulling image \"x\"",
                "spec.containers{app}",
            )
        };
        assert_eq!(pull(&mut series), Occurrence::First);
        series.created(
            "Normal",
            "Pulling",
            "Pulling image \"x\"",
            "spec.containers{app}",
            "p.1",
        );
        assert_eq!(
            pull(&mut series),
            Occurrence::Repeat {
                name: "p.1".into(),
                count: 2
            }
        );
        assert_eq!(
            pull(&mut series),
            Occurrence::Repeat {
                name: "p.1".into(),
                count: 3
            }
        );
        // Another message, reason, type or container is another event.
        assert_eq!(
            series.observe(
                "Normal",
                "Pulling",
                "Pulling image \"y\"",
                "spec.containers{app}"
            ),
            Occurrence::First
        );
        assert_eq!(
            series.observe(
                "Normal",
                "Pulling",
                "Pulling image \"x\"",
                "spec.containers{side}"
            ),
            Occurrence::First
        );
        assert_eq!(
            series.observe(
                "Warning",
                "Pulling",
                "Pulling image \"x\"",
                "spec.containers{app}"
            ),
            Occurrence::First
        );
        // A forgotten (expired) one starts over.
        series.forget(
            "Normal",
            "Pulling",
            "Pulling image \"x\"",
            "spec.containers{app}",
        );
        assert_eq!(pull(&mut series), Occurrence::First);
    }

    #[test]
    fn the_series_forgets_its_oldest_events_past_its_capacity() {
        let mut series = EventSeries::default();
        for i in 0..EVENT_SERIES_CAPACITY + 1 {
            let message = format!("m{i}");
            assert_eq!(
                series.observe("Normal", "R", &message, ""),
                Occurrence::First
            );
            series.created("Normal", "R", &message, "", &format!("e{i}"));
        }
        assert_eq!(series.seen.len(), EVENT_SERIES_CAPACITY);
        assert_eq!(series.observe("Normal", "R", "m0", ""), Occurrence::First);
        assert!(matches!(
            series.observe("Normal", "R", &format!("m{EVENT_SERIES_CAPACITY}"), ""),
            Occurrence::Repeat { count: 2, .. }
        ));
    }
}

//! What the worker tells the API: the pod status (posted only when it changed) and
//! events on the pod.

use chrono::Utc;
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::{LaterEvent, PodWorker};
use crate::agent::kubelet::status::{self, PodFacts};

impl PodWorker {
    pub(super) fn facts(&self) -> PodFacts<'_> {
        let initialized = self
            .init
            .iter()
            .all(|r| r.terminated().is_some_and(|t| t.exit_code == 0));
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
        let field = container.map(|c| {
            let init = self.init.iter().any(|r| r.name == c);
            self.field_path(init, c)
        });
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
        let field = container.map(|c| {
            let init = self.init.iter().any(|r| r.name == c);
            self.field_path(init, c)
        });
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
        let suffix = uuid::Uuid::new_v4().simple().to_string();
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
            "metadata": {"name": format!("{}.{}", self.pod_name(), &suffix[..16]), "namespace": ns},
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
        if let Err(e) = self.shared.api.create_event(ns, &event).await {
            debug!(pod = %self.name(), %reason, error = %e, "event not recorded");
        }
    }
}

//! Startup, liveness and readiness probes of running app containers, run when due; a
//! failed liveness or startup probe restarts the container.

use std::collections::BTreeMap;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::{containers, PodWorker, Track};
use crate::agent::kubelet::probes::{run_probe, ProbeError, ProbeKind, ProbeSpec};
use crate::agent::runtime::SIGTERM;

impl PodWorker {
    /// Runs the probes that are due for running app containers: startup first, then
    /// liveness (a failed one restarts the container) and readiness.
    pub(super) async fn run_probes(&mut self) {
        let specs = containers(&self.pod["spec"], "containers");
        for (i, spec) in specs.iter().enumerate() {
            let Some(record) = self.apps.get(i) else {
                continue;
            };
            let Some(id) = record
                .is_running()
                .then(|| record.current.as_ref().map(|c| c.id.clone()))
                .flatten()
            else {
                continue;
            };
            let name = record.name.clone();
            let kinds: &[ProbeKind] = if record.started {
                &[ProbeKind::Liveness, ProbeKind::Readiness]
            } else {
                &[ProbeKind::Startup]
            };
            for &kind in kinds {
                let Some(probe) = ProbeSpec::of(spec, kind) else {
                    continue;
                };
                let now = Instant::now();
                let track = self.track.entry(name.clone()).or_default();
                let started = *track.started.get_or_insert(now);
                let state = track.probes.entry(kind.field()).or_default();
                if !state.due(&probe, started, now) {
                    continue;
                }
                state.last_run = Some(now);
                let result =
                    run_probe(&probe, spec, &id, self.pod_ip, self.shared.runtime.as_ref()).await;
                match &result {
                    Ok(()) => {}
                    Err(ProbeError::Failed(message)) => {
                        let text = format!("{} probe failed: {message}", kind.name());
                        self.event("Warning", "Unhealthy", &text, Some(&name)).await;
                    }
                    Err(ProbeError::Unknown(message)) => {
                        debug!(pod = %self.name(), container = %name, probe = kind.name(), %message, "probe result unknown; ignored");
                        continue;
                    }
                }
                let track = self.track.entry(name.clone()).or_default();
                let state = track.probes.entry(kind.field()).or_default();
                let Some(settled) = state.record(&probe, result.is_ok(), Instant::now()) else {
                    continue;
                };
                match (kind, settled) {
                    (ProbeKind::Readiness, ready) => self.apps[i].probe_ready = Some(ready),
                    (ProbeKind::Startup, true) => self.apps[i].started = true,
                    (ProbeKind::Liveness, true) => {}
                    (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                        let text = format!(
                            "Container {name} failed {} probe, will be restarted",
                            kind.name().to_lowercase()
                        );
                        self.event("Normal", "Killing", &text, Some(&name)).await;
                        track_reset(&mut self.track, &name);
                        let grace = self.termination_grace();
                        if let Err(e) = self.shared.runtime.stop(&id, SIGTERM, grace).await {
                            warn!(pod = %self.name(), container = %name, error = %e, "stopping unhealthy container failed");
                        }
                        break;
                    }
                }
            }
        }
    }
}

fn track_reset(track: &mut BTreeMap<String, Track>, name: &str) {
    if let Some(t) = track.get_mut(name) {
        t.probes.clear();
    }
}

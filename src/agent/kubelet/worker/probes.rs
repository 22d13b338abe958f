//! Startup, liveness and readiness probes of running app containers and sidecars, run
//! when due; a failed liveness or startup probe restarts the container.

use std::collections::BTreeMap;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::{containers, Group, PodWorker, Track};
use crate::agent::kubelet::probes::{run_probe, ProbeError, ProbeKind, ProbeSpec};
use crate::agent::runtime::SIGTERM;

impl PodWorker {
    /// Runs the probes that are due for running app containers and sidecars: startup
    /// first, then liveness (a failed one restarts the container) and readiness.
    pub(super) async fn run_probes(&mut self) {
        let sidecars = containers(&self.pod["spec"], "initContainers")
            .into_iter()
            .enumerate()
            .filter(|(_, spec)| crate::agent::kubelet::status::is_sidecar(spec))
            .map(|(i, spec)| (Group::Init, i, spec));
        let apps = containers(&self.pod["spec"], "containers")
            .into_iter()
            .enumerate()
            .map(|(i, spec)| (Group::App, i, spec));
        let probed: Vec<(Group, usize, serde_json::Value)> = sidecars
            .chain(apps)
            .filter(|(_, _, spec)| {
                [
                    ProbeKind::Startup,
                    ProbeKind::Liveness,
                    ProbeKind::Readiness,
                ]
                .iter()
                .any(|&k| ProbeSpec::of(spec, k).is_some())
            })
            .collect();
        for (group, i, spec) in &probed {
            let (group, i) = (*group, *i);
            let records = if group == Group::Init {
                &self.init
            } else {
                &self.apps
            };
            let Some(record) = records.get(i) else {
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
                    (ProbeKind::Readiness, ready) => {
                        self.record_mut(group, i).probe_ready = Some(ready)
                    }
                    (ProbeKind::Startup, true) => self.record_mut(group, i).started = true,
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

//! The one helper module every integration test (and the pod benchmark) includes with
//! `mod support;`: the server harness, host set-up for the root tests, the one-node
//! kubelet cluster, bounded waits.
#![allow(dead_code)]

pub mod etcd;
pub mod host;
pub mod host_agent;
pub mod https_webhook;
pub mod kubelet;
pub mod multinode;
pub mod server;
pub mod wait;

/// The value of the Prometheus sample whose name and labels are `series` (exactly), in
/// the text exposition `text`, if present.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

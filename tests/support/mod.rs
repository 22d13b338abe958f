//! The one helper module every integration test (and the pod benchmark) includes with
//! `mod support;`: the server harness, host set-up for the root tests, the one-node
//! kubelet cluster, bounded waits.
#![allow(dead_code)]

pub mod host;
pub mod kubelet;
pub mod multinode;
pub mod server;
pub mod wait;

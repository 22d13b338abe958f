//! `orc version`.

use crate::api::KUBERNETES_VERSION;

pub fn run() {
    println!(
        "orc version v{} (kubernetes {KUBERNETES_VERSION})",
        env!("CARGO_PKG_VERSION")
    );
}

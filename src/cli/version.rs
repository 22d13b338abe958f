//! `orc version`.

/// The Kubernetes version orc's API speaks (matches the k8s-openapi feature in use).
pub const KUBERNETES_VERSION: &str = "v1.32.0";

pub fn run() {
    println!(
        "orc version v{} (kubernetes {KUBERNETES_VERSION})",
        env!("CARGO_PKG_VERSION")
    );
}

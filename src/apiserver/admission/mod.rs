//! Admission webhooks (`admissionregistration.k8s.io/v1`): which webhooks a write
//! reaches (`matching`), the AdmissionReview exchanged (`review`), calling a webhook
//! (`client`), applying a mutating webhook's JSONPatch (`patch`) and the dispatcher the
//! registry calls on every client write (`dispatch`); ValidatingAdmissionPolicies
//! (`policy`), evaluated on the same writes before the validating webhooks; the built-in
//! `PodSecurity` plugin (`pod_security`), before both.

mod client;
mod dispatch;
mod matching;
mod patch;
mod pod_security;
mod policy;
mod review;

pub use client::{CallError, Clients, Destination};
pub use dispatch::{denied, Webhooks};
pub use matching::Endpoint;
pub use matching::Operation;
pub use pod_security::{Attributes as PodSecurityAttributes, Cluster, PodSecurity};
pub use policy::{Policies, Verdict};
pub use review::{options, Request};

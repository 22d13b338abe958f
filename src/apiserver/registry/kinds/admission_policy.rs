//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding rules: defaults and
//! validation from `api/` (a policy whose CEL does not compile is refused), the policy's
//! status kept apart from its spec (written through `status` only), generation tracked,
//! printed as upstream. The admission step that enforces them is
//! `apiserver::admission::policy`, fed by a watch of the stored objects.

use k8s_openapi::api::admissionregistration::v1 as admissionregistration;
use schemars::gen::SchemaGenerator;
use serde_json::Value;

use crate::api::defaults;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};

/// ValidatingAdmissionPolicy: upstream's strategy resets the status on create (the
/// type-checking controller owns it).
pub struct ValidatingAdmissionPolicyStrategy;

impl Strategy for ValidatingAdmissionPolicyStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        defaults::apply_defaults(cx.def.kind, obj);
    }

    fn openapi_schema(&self, gen: &mut SchemaGenerator) -> Option<String> {
        schema_of::<admissionregistration::ValidatingAdmissionPolicy>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::VALIDATING_ADMISSION_POLICY
    }
}

/// ValidatingAdmissionPolicyBinding.
pub struct ValidatingAdmissionPolicyBindingStrategy;

impl Strategy for ValidatingAdmissionPolicyBindingStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut SchemaGenerator) -> Option<String> {
        schema_of::<admissionregistration::ValidatingAdmissionPolicyBinding>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::VALIDATING_ADMISSION_POLICY_BINDING
    }
}

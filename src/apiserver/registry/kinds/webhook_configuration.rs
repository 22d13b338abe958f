//! Validating- and MutatingWebhookConfiguration rules: defaults and validation from
//! `api/`, printed with their webhook count. The admission dispatcher
//! (`apiserver::admission`) follows the stored configurations through a watch.

use k8s_openapi::api::admissionregistration::v1 as admissionregistration;
use schemars::gen::SchemaGenerator;

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Strategy};

/// The rules of one of the two webhook configuration kinds (they differ only in type).
pub struct WebhookConfigurationStrategy {
    schema: fn(&mut SchemaGenerator) -> Option<String>,
}

pub static VALIDATING: WebhookConfigurationStrategy = WebhookConfigurationStrategy {
    schema: schema_of::<admissionregistration::ValidatingWebhookConfiguration>,
};

pub static MUTATING: WebhookConfigurationStrategy = WebhookConfigurationStrategy {
    schema: schema_of::<admissionregistration::MutatingWebhookConfiguration>,
};

impl Strategy for WebhookConfigurationStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut SchemaGenerator) -> Option<String> {
        (self.schema)(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::WEBHOOK_CONFIGURATION
    }
}

//! Event rules: printed as `kubectl get events` lists them, selectable by the
//! object they are about, their reason, source and type.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct EventStrategy;

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

impl Strategy for EventStrategy {
    fn printer(&self) -> &'static Printer {
        &table::EVENT
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }
}

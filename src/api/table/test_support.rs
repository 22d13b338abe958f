//! Helpers shared by the tests of this module.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::{Printer, RowPrinter};

pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
}

/// RFC 3339 time `secs` seconds before [`now`].
pub(super) fn ago(secs: i64) -> String {
    (now() - chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(super) fn cells(printer: &Printer, obj: &Value) -> Vec<String> {
    printer
        .row(obj, now())
        .into_iter()
        .map(|c| match c {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect()
}

pub(super) fn pod(status: Value) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(300)},
        "spec": {"containers": [{"name": "app", "image": "busybox"}], "nodeName": "n1"},
        "status": status,
    })
}

//! Event cells: last seen, type, reason, object and message — the same columns for
//! core/v1 and events.k8s.io/v1 Events (upstream prints both from one internal type).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::cells::{human_duration, int, meta_str, parse_time, str_at};

pub(super) fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let core_shape;
    let ev = if ev["apiVersion"] == crate::api::events::API_VERSION {
        core_shape = crate::api::events::from_v1(ev);
        &core_shape
    } else {
        ev
    };
    let since = |v: &Value| match parse_time(v) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    };
    let first_seen = if str_at(&ev["firstTimestamp"]).is_empty() {
        since(&ev["eventTime"])
    } else {
        since(&ev["firstTimestamp"])
    };
    let mut last_seen = if str_at(&ev["lastTimestamp"]).is_empty() {
        first_seen.clone()
    } else {
        since(&ev["lastTimestamp"])
    };
    let mut count = int(&ev["count"]);
    if ev["series"].is_object() {
        last_seen = since(&ev["series"]["lastObservedTime"]);
        count = int(&ev["series"]["count"]);
    } else if count == 0 {
        // Singleton events of the events.k8s.io API carry no count.
        count = 1;
    }
    let involved = &ev["involvedObject"];
    let kind = str_at(&involved["kind"]).to_lowercase();
    let target = match str_at(&involved["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(
        str_at(&ev["source"]["component"]),
        str_at(&ev["reportingComponent"]),
    );
    let instance = first_non_empty(
        str_at(&ev["source"]["host"]),
        str_at(&ev["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(str_at(&ev["type"])),
        json!(str_at(&ev["reason"])),
        json!(target),
        json!(str_at(&involved["fieldPath"])),
        json!(source),
        json!(str_at(&ev["message"]).trim()),
        json!(first_seen),
        json!(count),
        json!(meta_str(ev, "name")),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RowPrinter, EVENT};
    use crate::api::table::test_support::{ago, cells, now};
    use serde_json::json;

    #[test]
    fn v1_events_print_as_their_core_shape() {
        let core = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Started",
            "message": "Started container app",
            "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600),
            "lastTimestamp": ago(65),
            "count": 2,
        });
        let v1 = crate::api::events::to_v1(&core);
        assert_eq!(EVENT.row(&v1, now()), EVENT.row(&core, now()));
    }

    #[test]
    fn event_cells() {
        let ev = json!({
            "metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "type": "Warning",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600),
            "lastTimestamp": ago(65),
            "count": 7,
        });
        assert_eq!(
            EVENT.row(&ev, now()),
            vec![
                json!("65s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("Back-off restarting failed container"),
                json!("10m"),
                json!(7),
                json!("web.17a"),
            ]
        );
        let new_api = json!({
            "metadata": {"name": "x"},
            "involvedObject": {"kind": "Node"},
            "eventTime": "2024-06-01T11:59:30.123456Z",
            "reportingComponent": "orc-node-controller",
            "type": "Normal",
            "reason": "NodeReady",
        });
        let c = cells(&EVENT, &new_api);
        assert_eq!(c[0], "29s");
        assert_eq!(c[3], "node");
        assert_eq!(c[5], "orc-node-controller");
        assert_eq!(c[7], "29s");
        assert_eq!(c[8], "1");
        let series = json!({
            "metadata": {"name": "y"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": ago(3600),
            "series": {"count": 12, "lastObservedTime": "2024-06-01T11:58:00.000000Z"},
        });
        let c = cells(&EVENT, &series);
        assert_eq!(
            (c[0].as_str(), c[7].as_str(), c[8].as_str()),
            ("2m", "60m", "12")
        );
    }
}

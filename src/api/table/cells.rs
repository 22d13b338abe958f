//! Cell helpers every kind's printer shares: ages, label strings, selectors, JSON access.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::api::selector::LabelSelector;

/// Container names and images of a pod template, comma-separated (`layoutContainerCells`).
pub(super) fn container_cells(template: &Value) -> (String, String) {
    let containers = arr(&template["spec"]["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// Upstream `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
pub(super) fn labels_string(map: &Value) -> String {
    match map.as_object() {
        Some(m) if !m.is_empty() => {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", str_at(v)))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => "<none>".into(),
    }
}

/// Upstream `metav1.FormatLabelSelector`: `<none>` for a nil or empty selector.
pub(super) fn format_label_selector(selector: &Value) -> String {
    if !selector.is_object() {
        return "<none>".into();
    }
    match LabelSelector::from_k8s(selector) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".into(),
    }
}

/// The Deployment printer renders the selector directly: empty when nil or empty.
pub(super) fn deployment_selector(selector: &Value) -> String {
    if !selector.is_object() {
        return String::new();
    }
    match LabelSelector::from_k8s(selector) {
        Ok(s) => s.to_string(),
        Err(_) => "<invalid>".into(),
    }
}

pub(super) fn age(obj: &Value, now: DateTime<Utc>) -> String {
    match parse_time(&obj["metadata"]["creationTimestamp"]) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// Upstream `duration.HumanDuration`: "45s", "3m2s", "10m", "5h", "7h30m", "2d3h", "400d", "3y10d".
pub fn human_duration(d: chrono::Duration) -> String {
    // Whole seconds, truncated toward zero like Go's int(d.Seconds()).
    let seconds = d.num_seconds();
    // Allow up to two seconds of clock skew before calling a time in the future invalid.
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

pub(super) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    str_at(&obj["metadata"][field])
}

pub(super) fn str_at(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(super) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub(super) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub(super) fn obj_len(v: &Value) -> usize {
    v.as_object().map_or(0, Map::len)
}

pub(super) fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn human_duration_matches_upstream_buckets() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(-5)), "<invalid>");
        assert_eq!(human_duration(chrono::Duration::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(d(0)), "0s");
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(120)), "2m");
        assert_eq!(human_duration(d(182)), "3m2s");
        assert_eq!(human_duration(d(599)), "9m59s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(179 * 60 + 30)), "179m");
        assert_eq!(human_duration(d(3 * 3600)), "3h");
        assert_eq!(human_duration(d(7 * 3600 + 30 * 60)), "7h30m");
        assert_eq!(human_duration(d(5 * 3600 + 59)), "5h");
        assert_eq!(human_duration(d(47 * 3600)), "47h");
        assert_eq!(human_duration(d(51 * 3600)), "2d3h");
        assert_eq!(human_duration(d(72 * 3600)), "3d");
        assert_eq!(human_duration(d(8 * 24 * 3600)), "8d");
        assert_eq!(human_duration(d(400 * 24 * 3600)), "400d");
        assert_eq!(human_duration(d(365 * 3 * 24 * 3600)), "3y");
        assert_eq!(human_duration(d((365 * 3 + 10) * 24 * 3600)), "3y10d");
        assert_eq!(human_duration(d(365 * 9 * 24 * 3600)), "9y");
    }

    #[test]
    fn age_is_unknown_without_creation_timestamp() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}});
        assert_eq!(
            cells(&super::super::CONFIG_MAP, &cm),
            ["cfg", "1", "<unknown>"]
        );
    }
}

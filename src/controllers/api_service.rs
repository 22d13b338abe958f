//! APIService availability (upstream kube-aggregator's `AvailableConditionController`,
//! without the proxy): keeps the `Available` condition of every APIService. A local
//! one (no service) is available; one whose service is missing is not
//! (`ServiceNotFound`, upstream's reason and message); one for a group/version orc
//! serves itself (e.g. metrics-server's `v1beta1.metrics.k8s.io`: orc has
//! `metrics.k8s.io` built in) is available, its message saying the service is not
//! called; any other is not available (`ProxyNotSupported`): orc stores aggregated
//! APIs' registrations but does not forward requests to them.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources::{by_plural, ResourceDef};

use super::framework::{
    object_key, run_workers, wait_for_sync, Client, Informer, Reader, Reconciled, WorkQueue,
};

const WORKERS: usize = 1;
/// The work-queue key that stands for "every APIService" (a service changed).
const ALL: &str = "*";

fn api_services() -> &'static ResourceDef {
    by_plural("apiregistration.k8s.io", "v1", "apiservices").expect("served")
}

fn services() -> &'static ResourceDef {
    by_plural("", "v1", "services").expect("served")
}

/// The `Available` condition's status, reason and message.
#[derive(Debug, PartialEq, Eq)]
pub struct Availability {
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// The availability of `api_service`: `service` is its backing Service when it exists,
/// `served_here` whether orc itself serves its group/version.
pub fn availability(
    api_service: &Value,
    service: Option<&Value>,
    served_here: bool,
) -> Availability {
    let spec = &api_service["spec"];
    let svc = &spec["service"];
    if svc.is_null() {
        return Availability {
            status: "True",
            reason: "Local",
            message: "Local APIServices are always available".into(),
        };
    }
    let (ns, name) = (
        svc["namespace"].as_str().unwrap_or(""),
        svc["name"].as_str().unwrap_or(""),
    );
    if service.is_none() {
        return Availability {
            status: "False",
            reason: "ServiceNotFound",
            message: format!("service/{name} in {ns:?} is not present"),
        };
    }
    let group_version = match spec["group"].as_str().unwrap_or("") {
        "" => spec["version"].as_str().unwrap_or("").to_string(),
        group => format!("{group}/{}", spec["version"].as_str().unwrap_or("")),
    };
    if served_here {
        return Availability {
            status: "True",
            reason: "Local",
            message: format!(
                "orc serves {group_version} itself; requests are not forwarded to service/{name} in {ns:?}"
            ),
        };
    }
    Availability {
        status: "False",
        reason: "ProxyNotSupported",
        message: format!(
            "orc does not proxy aggregated APIs: requests for {group_version} are not forwarded to service/{name} in {ns:?}"
        ),
    }
}

/// `api_service`'s status with `want` as its Available condition; `None` when it
/// already says so. The transition time moves only when the status does.
pub fn with_condition(api_service: &Value, want: &Availability, now: &str) -> Option<Value> {
    let old = api_service["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available");
    if let Some(c) = old {
        if c["status"] == want.status && c["reason"] == want.reason && c["message"] == *want.message
        {
            return None;
        }
    }
    let since = old
        .filter(|c| c["status"] == want.status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let mut conditions: Vec<Value> = api_service["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] != "Available")
        .cloned()
        .collect();
    conditions.push(json!({
        "type": "Available", "status": want.status, "lastTransitionTime": since,
        "reason": want.reason, "message": want.message,
    }));
    let mut obj = api_service.clone();
    obj["status"]["conditions"] = Value::Array(conditions);
    Some(obj)
}

struct Ctx {
    client: Arc<dyn Client>,
    queue: Arc<WorkQueue>,
    api_services: Reader,
    services: Reader,
}

/// Runs the availability controller until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            api_services(),
            queue.clone(),
            Box::new(|e| vec![object_key(&e.kv.value)]),
        ),
        Informer::start(
            client.clone(),
            services(),
            queue.clone(),
            Box::new(|_| vec![ALL.to_string()]),
        ),
    ];
    wait_for_sync(&informers).await;
    let ctx = Arc::new(Ctx {
        client,
        queue: queue.clone(),
        api_services: informers[0].reader(),
        services: informers[1].reader(),
    });
    run_workers("apiservice-availability", queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    })
    .await;
}

async fn sync(ctx: &Ctx, key: &str) -> Reconciled {
    if key == ALL {
        for kv in ctx.api_services.list() {
            ctx.queue.add(object_key(&kv.value));
        }
        return Ok(None);
    }
    let Some(api_service) = ctx.api_services.get(key).map(|kv| (*kv.value).clone()) else {
        return Ok(None);
    };
    let spec = &api_service["spec"];
    let svc = &spec["service"];
    let service = ctx.services.get(&format!(
        "{}/{}",
        svc["namespace"].as_str().unwrap_or(""),
        svc["name"].as_str().unwrap_or("")
    ));
    let (group, version) = (
        spec["group"].as_str().unwrap_or(""),
        spec["version"].as_str().unwrap_or(""),
    );
    let served_here = ctx
        .client
        .resources()
        .iter()
        .any(|d| d.group == group && d.version == version);
    let want = availability(
        &api_service,
        service.as_ref().map(|kv| &*kv.value),
        served_here,
    );
    let now = object::timestamp(chrono::Utc::now());
    if with_condition(&api_service, &want, &now).is_none() {
        return Ok(None);
    }
    let set = |obj: &Value| Ok(with_condition(obj, &want, &now).unwrap_or_else(|| obj.clone()));
    match ctx
        .client
        .modify(api_services(), None, key, Some("status"), &set)
        .await
    {
        Ok(_) => {
            tracing::info!(apiservice = %key, status = want.status, reason = want.reason, "apiservice availability updated");
            Ok(None)
        }
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_service(group: &str, service: Value) -> Value {
        json!({"metadata": {"name": format!("v1beta1.{group}")},
            "spec": {"group": group, "version": "v1beta1", "service": service}})
    }

    #[test]
    fn local_api_services_are_available() {
        let a = availability(&api_service("apps", Value::Null), None, true);
        assert_eq!((a.status, a.reason), ("True", "Local"));
        assert_eq!(a.message, "Local APIServices are always available");
    }

    #[test]
    fn a_missing_service_is_reported_as_upstream_does() {
        let svc =
            json!({"namespace": "keda", "name": "keda-operator-metrics-apiserver", "port": 443});
        let a = availability(&api_service("external.metrics.k8s.io", svc), None, false);
        assert_eq!((a.status, a.reason), ("False", "ServiceNotFound"));
        assert_eq!(
            a.message,
            r#"service/keda-operator-metrics-apiserver in "keda" is not present"#
        );
    }

    #[test]
    fn a_group_served_here_is_available_and_others_are_not_proxied() {
        let svc = json!({"namespace": "kube-system", "name": "metrics-server", "port": 443});
        let service = json!({"metadata": {"name": "metrics-server", "namespace": "kube-system"}});
        let metrics = availability(
            &api_service("metrics.k8s.io", svc.clone()),
            Some(&service),
            true,
        );
        assert_eq!((metrics.status, metrics.reason), ("True", "Local"));
        assert!(metrics
            .message
            .contains("orc serves metrics.k8s.io/v1beta1 itself"));
        let custom = availability(
            &api_service("custom.metrics.k8s.io", svc),
            Some(&service),
            false,
        );
        assert_eq!(
            (custom.status, custom.reason),
            ("False", "ProxyNotSupported")
        );
        assert!(custom.message.contains("custom.metrics.k8s.io/v1beta1"));
    }

    #[test]
    fn the_condition_is_written_only_on_change_and_keeps_its_transition_time() {
        let obj = api_service("apps", Value::Null);
        let want = availability(&obj, None, true);
        let first = with_condition(&obj, &want, "2026-01-01T00:00:00Z").expect("a change");
        let c = &first["status"]["conditions"][0];
        assert_eq!(c["type"], "Available");
        assert_eq!(c["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert!(with_condition(&first, &want, "2026-01-02T00:00:00Z").is_none());
        let other = Availability {
            status: "True",
            reason: "Local",
            message: "changed".into(),
        };
        let second = with_condition(&first, &other, "2026-01-03T00:00:00Z").expect("a change");
        assert_eq!(
            second["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }
}

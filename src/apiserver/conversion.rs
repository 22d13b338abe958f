//! Custom objects changing version (upstream's CRD converters): behind one [`Converter`]
//! trait, conversion `None` (only `apiVersion` changes, `nop_converter.go`) and
//! `Webhook` (a `ConversionReview` to the CRD's webhook through the admission webhooks'
//! transport — Service resolution, `caBundle`, timeout — `webhook_converter.go`).
//! Objects already in the desired version are never sent.

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::admission::{CallError, Clients, Destination};
use super::registry::Registry;
use crate::api::crd::conversion::{self, ConversionError, Webhook};
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;
use crate::store::KeyValue;

/// Turns custom objects of one kind into another served version of it.
pub trait Converter: Send + Sync {
    /// `objects` in `desired` (`group/version`), in their order. `list_kind` set: they
    /// are the items of one list read (one review for all, with upstream's messages
    /// for list items).
    fn convert<'a>(
        &'a self,
        objects: Vec<Value>,
        desired: &'a str,
        list_kind: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ConversionError>>;
}

/// Conversion `None`: only `apiVersion` changes.
pub struct NoneConverter;

impl Converter for NoneConverter {
    fn convert<'a>(
        &'a self,
        mut objects: Vec<Value>,
        desired: &'a str,
        _list_kind: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ConversionError>> {
        for obj in &mut objects {
            obj["apiVersion"] = json!(desired);
        }
        Box::pin(async move { Ok(objects) })
    }
}

/// Sends a review and returns the answer's body; the error is the reason upstream
/// puts after `conversion webhook for … failed: `.
pub trait Transport: Send + Sync {
    fn post<'a>(&'a self, review: &'a Value) -> BoxFuture<'a, Result<Vec<u8>, String>>;
}

/// Conversion `Webhook`: the objects not yet in the desired version go in one review.
pub struct WebhookConverter<'a, T> {
    pub webhook: &'a Webhook,
    pub transport: T,
}

impl<T: Transport> Converter for WebhookConverter<'_, T> {
    fn convert<'a>(
        &'a self,
        objects: Vec<Value>,
        desired: &'a str,
        list_kind: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ConversionError>> {
        Box::pin(async move {
            let pending: Vec<usize> = (0..objects.len())
                .filter(|&i| objects[i]["apiVersion"].as_str() != Some(desired))
                .collect();
            if pending.is_empty() {
                return Ok(objects);
            }
            let originals: Vec<&Value> = pending.iter().map(|&i| &objects[i]).collect();
            // Upstream decodes a list's items one by one: errors name the item's kind.
            let gvk = conversion::gvk_of(originals[0]);
            let version = conversion::review_version(&self.webhook.review_versions)?;
            let uid = uuid::Uuid::new_v4().to_string();
            let review = conversion::review(version, &uid, desired, &originals);
            let started = std::time::Instant::now();
            let body =
                self.transport
                    .post(&review)
                    .await
                    .map_err(|reason| ConversionError::Failed {
                        gvk: gvk.clone(),
                        reason,
                    })?;
            let converted =
                conversion::converted_objects(version, &uid, &body).map_err(|reason| {
                    ConversionError::Failed {
                        gvk: gvk.clone(),
                        reason,
                    }
                })?;
            let converted = conversion::accept_converted(
                &originals,
                converted,
                desired,
                list_kind.map(|_| gvk.as_str()),
            )?;
            tracing::debug!(crd = %self.webhook.crd_name, desired, objects = pending.len(), elapsed_ms = started.elapsed().as_millis() as u64, "conversion webhook answered");
            let mut objects = objects;
            for (i, obj) in pending.into_iter().zip(converted) {
                objects[i] = obj;
            }
            Ok(objects)
        })
    }
}

/// The admission webhooks' HTTPS transport, to a CRD's conversion webhook.
pub struct ClientTransport<'a> {
    pub registry: &'a Registry,
    pub clients: &'a Clients,
    pub webhook: &'a Webhook,
}

impl Transport for ClientTransport<'_> {
    fn post<'a>(&'a self, review: &'a Value) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let destination = Destination {
                key: (self.webhook.crd_name.clone(), "conversion".into(), false),
                version: &self.webhook.crd_version,
                endpoint: &self.webhook.target,
                ca_bundle: self.webhook.ca_bundle.as_deref(),
                timeout: conversion::WEBHOOK_TIMEOUT,
            };
            self.clients
                .post(self.registry, &destination, review)
                .await
                .map_err(|e| post_failure(&self.webhook.url(), &e))
        })
    }
}

/// What upstream's REST client says when the POST fails (`Post "URL": …`).
fn post_failure(url: &str, e: &CallError) -> String {
    match e {
        CallError::ServiceNotFound { name, .. } => {
            format!("Post \"{url}\": service \"{name}\" not found")
        }
        CallError::ServicePortNotFound { name, port, .. } => {
            format!("Post \"{url}\": no service port {port} found for service \"{name}\"")
        }
        CallError::EndpointsNotFound { name, .. } => {
            format!("Post \"{url}\": endpoints \"{name}\" not found")
        }
        CallError::NoEndpoints { name, .. } => {
            format!("Post \"{url}\": no endpoints available for service \"{name}\"")
        }
        CallError::Timeout { .. } => format!("Post \"{url}\": context deadline exceeded"),
        CallError::Send { reason, .. } => format!("Post \"{url}\": {reason}"),
        CallError::NoTrustedCa => {
            format!("Post \"{url}\": x509: certificate signed by unknown authority")
        }
        CallError::Trust(e) => format!("Post \"{url}\": {e}"),
        CallError::Build(e) => format!("Post \"{url}\": {e}"),
        CallError::HttpStatus { status, body } => {
            format!("the server responded with HTTP {status}: {body}")
        }
        CallError::Invalid(e) => e.to_string(),
    }
}

/// A conversion failure as the client sees it: 500, upstream's InternalError.
pub fn api_error(e: &ConversionError) -> ApiError {
    ApiError::internal(format!("Internal error occurred: {e}"))
}

impl Registry {
    /// Runs `f` with the converter of `def`'s CRD (`None` for other kinds).
    fn converter_of<'a>(&'a self, def: &'a ResourceDef) -> Option<Box<dyn Converter + 'a>> {
        let custom = def.custom?;
        Some(match custom.conversion.as_deref() {
            None => Box::new(NoneConverter),
            Some(webhook) => Box::new(WebhookConverter {
                webhook,
                transport: ClientTransport {
                    registry: self,
                    clients: &self.conversion_clients,
                    webhook,
                },
            }),
        })
    }

    /// Stored custom objects of `def` as clients of `def`'s version see them (a list's
    /// items with `as_list`: one review for all). Other kinds are returned as they are.
    pub async fn in_served_version(
        &self,
        def: &ResourceDef,
        kvs: Vec<KeyValue>,
        as_list: bool,
    ) -> Result<Vec<KeyValue>, ApiError> {
        let Some(converter) = self.converter_of(def) else {
            return Ok(kvs);
        };
        let desired = def.api_version();
        if kvs
            .iter()
            .all(|kv| kv.value["apiVersion"].as_str() == Some(desired.as_str()))
        {
            return Ok(kvs);
        }
        let list_kind = def.custom.map(|c| c.list_kind.as_str());
        let objects = kvs.iter().map(|kv| (*kv.value).clone()).collect();
        let converted = converter
            .convert(objects, &desired, if as_list { list_kind } else { None })
            .await
            .map_err(|e| api_error(&e))?;
        let webhook = def.custom.is_some_and(|c| c.conversion.is_some());
        let schema = def.custom.and_then(|c| c.structural.as_deref());
        Ok(kvs
            .into_iter()
            .zip(converted)
            .map(|(kv, mut obj)| {
                if kv.value["apiVersion"] == obj["apiVersion"] {
                    return kv;
                }
                if let (true, Some(schema)) = (webhook, schema) {
                    // Upstream's schema-coercing converter and read defaulting: what the
                    // webhook answered, pruned to the served version's schema and
                    // defaulted by it.
                    crate::api::crd::prune(schema, &mut obj);
                    crate::api::crd::apply_defaults(schema, &mut obj);
                }
                kv.with_value(obj)
            })
            .collect())
    }

    /// One stored object of `def` in `def`'s version.
    pub async fn one_in_served_version(
        &self,
        def: &ResourceDef,
        kv: KeyValue,
    ) -> Result<KeyValue, ApiError> {
        let mut out = self.in_served_version(def, vec![kv], false).await?;
        Ok(out.remove(0))
    }

    /// A custom object about to be written, in its CRD's storage version.
    pub async fn in_storage_version(
        &self,
        def: &ResourceDef,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let (Some(custom), Some(converter)) = (def.custom, self.converter_of(def)) else {
            return Ok(obj);
        };
        let desired = format!("{}/{}", def.group, custom.storage_version);
        if obj["apiVersion"].as_str() == Some(desired.as_str()) {
            return Ok(obj);
        }
        let mut out = converter
            .convert(vec![obj], &desired, None)
            .await
            .map_err(|e| api_error(&e))?;
        let mut obj = out.remove(0);
        if custom.conversion.is_some() {
            // Pruned to the storage version's schema (when it is served), as upstream's
            // schema-coercing converter does with the webhook's answer.
            let storage =
                self.catalog
                    .snapshot()
                    .by_plural(def.group, &custom.storage_version, def.plural);
            if let Some(schema) = storage.and_then(|d| d.custom?.structural.as_deref()) {
                crate::api::crd::prune(schema, &mut obj);
            }
        }
        Ok(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::client_config::Endpoint;
    use std::sync::Mutex;

    /// Answers every review with what `answer` makes of it, recording the reviews.
    struct FakeWebhook<F> {
        answer: F,
        seen: Mutex<Vec<Value>>,
    }

    impl<F: Fn(&Value) -> Result<Value, String> + Send + Sync> Transport for &FakeWebhook<F> {
        fn post<'a>(&'a self, review: &'a Value) -> BoxFuture<'a, Result<Vec<u8>, String>> {
            self.seen.lock().unwrap().push(review.clone());
            let answer = (self.answer)(review).map(|v| serde_json::to_vec(&v).unwrap());
            Box::pin(async move { answer })
        }
    }

    fn webhook() -> Webhook {
        Webhook {
            crd_name: "widgets.example.com".into(),
            crd_version: "1".into(),
            target: Endpoint::Url("https://127.0.0.1:1/convert".into()),
            ca_bundle: None,
            review_versions: vec!["v1".into()],
        }
    }

    fn widget(version: &str, name: &str) -> Value {
        json!({"apiVersion": format!("example.com/{version}"), "kind": "Widget",
               "metadata": {"name": name, "uid": name}, "spec": {"size": 2}})
    }

    /// A webhook moving `spec.size` to `spec.replicas`, honest about uid and objects.
    fn honest(review: &Value) -> Result<Value, String> {
        let desired = review["request"]["desiredAPIVersion"].clone();
        let objects: Vec<Value> = review["request"]["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let mut o = o.clone();
                o["apiVersion"] = desired.clone();
                o["spec"] = json!({"replicas": o["spec"]["size"]});
                o
            })
            .collect();
        Ok(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                  "response": {"uid": review["request"]["uid"], "result": {"status": "Success"},
                               "convertedObjects": objects}}),
        )
    }

    #[tokio::test]
    async fn only_objects_in_another_version_are_sent_in_one_review() {
        let fake = FakeWebhook {
            answer: honest,
            seen: Mutex::default(),
        };
        let hook = webhook();
        let converter = WebhookConverter {
            webhook: &hook,
            transport: &fake,
        };
        let objects = vec![widget("v1", "a"), widget("v2", "b"), widget("v1", "c")];
        let out = converter
            .convert(objects, "example.com/v2", Some("WidgetList"))
            .await
            .unwrap();
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["request"]["objects"].as_array().unwrap().len(), 2);
        assert_eq!(out[0]["spec"], json!({"replicas": 2}));
        assert_eq!(out[1], widget("v2", "b"));
        assert_eq!(out[2]["metadata"]["name"], "c");
        // Nothing to convert: no review at all.
        converter
            .convert(vec![widget("v2", "b")], "example.com/v2", None)
            .await
            .unwrap();
        assert_eq!(fake.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_call_or_a_bad_answer_names_the_kind_as_upstream() {
        let hook = webhook();
        let down = FakeWebhook {
            answer: |_: &Value| Err("Post \"https://x\": connection refused".to_string()),
            seen: Mutex::default(),
        };
        let e = WebhookConverter {
            webhook: &hook,
            transport: &down,
        }
        .convert(vec![widget("v1", "a")], "example.com/v2", None)
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "conversion webhook for example.com/v1, Kind=Widget failed: Post \"https://x\": connection refused");
        let wrong_uid = FakeWebhook {
            answer: |r: &Value| {
                let mut a = honest(r)?;
                a["response"]["uid"] = json!("nope");
                Ok(a)
            },
            seen: Mutex::default(),
        };
        let e = WebhookConverter {
            webhook: &hook,
            transport: &wrong_uid,
        }
        .convert(vec![widget("v1", "a")], "example.com/v2", None)
        .await
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "conversion webhook for example.com/v1, Kind=Widget failed: expected response.uid="
            ),
            "{e}"
        );
        let none = FakeWebhook {
            answer: |r: &Value| {
                let mut a = honest(r)?;
                a["response"]["convertedObjects"] = json!([]);
                Ok(a)
            },
            seen: Mutex::default(),
        };
        let e = WebhookConverter {
            webhook: &hook,
            transport: &none,
        }
        .convert(vec![widget("v1", "a")], "example.com/v2", None)
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "conversion webhook for example.com/v1, Kind=Widget returned 0 objects, expected 1"
        );
        assert_eq!(api_error(&e).code, 500);
    }

    #[tokio::test]
    async fn conversion_none_only_changes_the_api_version() {
        let out = NoneConverter
            .convert(vec![widget("v1", "a")], "example.com/v2", None)
            .await
            .unwrap();
        let mut expected = widget("v1", "a");
        expected["apiVersion"] = json!("example.com/v2");
        assert_eq!(out, vec![expected]);
    }
}

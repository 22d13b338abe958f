//! TokenReview rules: never stored; creating one reviews its token (see
//! `apiserver::serviceaccount::review`) and answers the review.

use futures::future::BoxFuture;
use serde_json::Value;

use super::binding::status_written;
use crate::api::status::ApiError;
use crate::apiserver::registry::strategy::Strategy;
use crate::apiserver::registry::{Registry, WriteOptions, Written};
use crate::apiserver::serviceaccount::review;

pub struct TokenReviewStrategy;

impl Strategy for TokenReviewStrategy {
    /// Upstream's schema: a review needs no metadata (k8s-openapi's requires it).
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        let name = crate::apiserver::registry::strategy::schema_of::<
            k8s_openapi::api::authentication::v1::TokenReview,
        >(gen)?;
        if let Some(schemars::schema::Schema::Object(schema)) = gen.definitions_mut().get_mut(&name)
        {
            if let Some(object) = schema.object.as_mut() {
                object.required.remove("metadata");
            }
        }
        Some(name)
    }

    fn create_instead<'a>(
        &self,
        registry: &'a Registry,
        _ns: Option<&'a str>,
        obj: &'a Value,
        _opts: &'a WriteOptions,
    ) -> Option<BoxFuture<'a, Result<Written, ApiError>>> {
        Some(Box::pin(async move {
            let answer = review::review(registry, obj, chrono::Utc::now().timestamp())?;
            Ok(status_written(answer))
        }))
    }
}

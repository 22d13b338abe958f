//! The review kinds (SelfSubjectReview, the access reviews, SelfSubjectRulesReview):
//! never stored; the handler answers their creates (`apiserver::reviews`). The strategy
//! gives them their OpenAPI schema.

use schemars::gen::SchemaGenerator;
use schemars::JsonSchema;

use crate::apiserver::registry::strategy::{schema_of, Strategy};

/// A review kind served as the k8s-openapi type `T`.
pub struct ReviewStrategy<T>(std::marker::PhantomData<fn() -> T>);

impl<T> ReviewStrategy<T> {
    pub const fn new() -> Self {
        ReviewStrategy(std::marker::PhantomData)
    }
}

impl<T: JsonSchema> Strategy for ReviewStrategy<T> {
    /// Upstream's schema: a review needs no metadata (k8s-openapi's requires it).
    fn openapi_schema(&self, gen: &mut SchemaGenerator) -> Option<String> {
        let name = schema_of::<T>(gen)?;
        if let Some(schemars::schema::Schema::Object(schema)) = gen.definitions_mut().get_mut(&name)
        {
            if let Some(object) = schema.object.as_mut() {
                object.required.remove("metadata");
            }
        }
        Some(name)
    }
}

use k8s_openapi::api::{authentication::v1 as authn, authorization::v1 as authz};

pub static SELF_SUBJECT_REVIEW: ReviewStrategy<authn::SelfSubjectReview> = ReviewStrategy::new();
pub static SELF_SUBJECT_ACCESS_REVIEW: ReviewStrategy<authz::SelfSubjectAccessReview> =
    ReviewStrategy::new();
pub static SUBJECT_ACCESS_REVIEW: ReviewStrategy<authz::SubjectAccessReview> =
    ReviewStrategy::new();
pub static LOCAL_SUBJECT_ACCESS_REVIEW: ReviewStrategy<authz::LocalSubjectAccessReview> =
    ReviewStrategy::new();
pub static SELF_SUBJECT_RULES_REVIEW: ReviewStrategy<authz::SelfSubjectRulesReview> =
    ReviewStrategy::new();

//! Roles, ClusterRoles and their bindings: upstream's columns, and escalation prevention
//! on writes by clients (`apiserver::rbac::escalation`).

use serde_json::Value;

use crate::api::identity::User;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::apiserver::rbac::escalation;
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};
use k8s_openapi::api::rbac::v1 as rbac;

/// Role (`cluster` false) or ClusterRole.
pub struct RoleStrategy {
    pub cluster: bool,
}

/// RoleBinding (`cluster` false) or ClusterRoleBinding.
pub struct BindingStrategy {
    pub cluster: bool,
}

pub static ROLE: RoleStrategy = RoleStrategy { cluster: false };
pub static CLUSTER_ROLE: RoleStrategy = RoleStrategy { cluster: true };
pub static ROLE_BINDING: BindingStrategy = BindingStrategy { cluster: false };
pub static CLUSTER_ROLE_BINDING: BindingStrategy = BindingStrategy { cluster: true };

impl Strategy for RoleStrategy {
    fn admit(
        &self,
        cx: &Context,
        requester: &User,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        escalation::admit_role(cx.rbac, requester, cx.def, new, old)
    }

    fn printer(&self) -> &'static Printer {
        &table::ROLE
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        if self.cluster {
            schema_of::<rbac::ClusterRole>(gen)
        } else {
            schema_of::<rbac::Role>(gen)
        }
    }
}

impl Strategy for BindingStrategy {
    fn admit(
        &self,
        cx: &Context,
        requester: &User,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        escalation::admit_binding(cx.rbac, requester, cx.def, new, old)
    }

    fn printer(&self) -> &'static Printer {
        &table::ROLE_BINDING
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        if self.cluster {
            schema_of::<rbac::ClusterRoleBinding>(gen)
        } else {
            schema_of::<rbac::RoleBinding>(gen)
        }
    }
}

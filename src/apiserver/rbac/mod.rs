//! Placeholder for the RBAC authorizer's interface (replaced by the real module on merge).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub namespace: String,
    pub resource: Option<ResourceAttrs>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAttrs {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    NoOpinion(String),
}

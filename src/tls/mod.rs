//! STUB (replaced by the tls branch).
#[derive(Debug, Clone)]
pub struct Identity { pub user: String, pub groups: Vec<String> }
pub fn identity_from_cert(_der: &[u8]) -> Option<Identity> { None }

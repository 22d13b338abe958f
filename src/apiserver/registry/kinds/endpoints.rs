//! Endpoints rules: printed with the addresses they list.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn printer(&self) -> &'static Printer {
        &table::ENDPOINTS
    }
}

//! ServiceAccount rules: printed with their secret count.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    fn printer(&self) -> &'static Printer {
        &table::SERVICE_ACCOUNT
    }
}

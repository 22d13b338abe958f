//! ConfigMap rules: printed with their key count.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn printer(&self) -> &'static Printer {
        &table::CONFIG_MAP
    }
}

//! The strategy of kinds without registry rules of their own: defaults and validation
//! from `api/`, printed as NAME and AGE, selectable by name and namespace.

use crate::apiserver::registry::strategy::Strategy;

pub struct DefaultStrategy;

impl Strategy for DefaultStrategy {}

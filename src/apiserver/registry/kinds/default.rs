//! The strategy of kinds without registry rules of their own (ConfigMap, Secret,
//! Endpoints, Event, …): defaults and validation from `api/`, nothing else.

use crate::apiserver::registry::strategy::Strategy;

pub struct DefaultStrategy;

impl Strategy for DefaultStrategy {}

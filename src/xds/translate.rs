//! Model → xDS: which proxies exist, and what each one gets.

pub mod envoy;
pub mod gateway_api;
pub mod istio;
pub mod mesh;
pub mod plan;

use std::collections::BTreeMap;

use crate::model::{Model, Object};
use plan::ProxyPlan;

use mesh::WAYPOINT_CLASS;

/// Every proxy the model describes, by its node id `<gateway>.<namespace>`.
pub fn plans(model: &Model) -> BTreeMap<String, ProxyPlan> {
    let mut out = BTreeMap::new();
    for o in &model.objects {
        let (key, plan) = match o {
            Object::Gateway(g) if g.spec.gateway_class_name != WAYPOINT_CLASS => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                gateway_api::plan(&model.objects, g),
            ),
            Object::Gateway(g) => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                mesh::plan(&model.objects, g),
            ),
            Object::IstioGateway(g) => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                istio::plan(&model.objects, g),
            ),
            _ => continue,
        };
        out.insert(key, plan);
    }
    out
}

pub fn proxy_id(name: &str, namespace: Option<&str>) -> String {
    format!("{name}.{}", namespace.unwrap_or("default"))
}

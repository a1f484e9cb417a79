//! Ambient mode's waypoints as proxies: a Gateway of class `istio-waypoint` (node id
//! `<waypoint>.<namespace>`) serves the L7 routes of the Services bound to it — the
//! HTTPRoutes whose parent is a Service in a namespace labelled
//! `istio.io/use-waypoint=<waypoint>`. How that is expressed to Envoy (HBONE termination,
//! a filter chain per Service VIP) is the emitter's (`emit::hbone`).

use std::collections::BTreeMap;

use crate::model::gateway_api::{self as gw, HttpRoute};
use crate::model::istio::HBONE_PORT;
use crate::xds::plan::{ProxyPlan, ProxyRef, RoutePlan, ServiceRef, WaypointPlan};

use super::ambient::namespace_waypoint;
use super::http_route::route_plan;
use super::index::Index;
use super::rules::{SortKey, sort_key};
use crate::model::istio::label::USE_WAYPOINT;

/// The plan of waypoint `gateway`: the namespaces bound to it and the L7 routes of their
/// Services.
pub fn plan(ix: &Index<'_>, gateway: &gw::Gateway) -> ProxyPlan {
    let name = gateway.metadata.name.as_str();
    let ns = gateway.metadata.namespace.as_deref().unwrap_or("default");
    let mut plan = ProxyPlan {
        proxy: ProxyRef::of(name, Some(ns)),
        ..ProxyPlan::default()
    };
    let mut wp = WaypointPlan::default();
    for n in ix.namespaces.keys() {
        if namespace_waypoint(ix, n).is_some_and(|(w, wns, _)| w == name && wns == ns) {
            wp.namespaces.push((*n).to_owned());
        }
    }
    wp.namespaces.sort();
    if !gateway
        .spec
        .listeners
        .iter()
        .any(|l| l.port == HBONE_PORT && l.protocol == "HBONE")
    {
        plan.warnings.push(format!(
            "waypoint {name}.{ns} has no listener on port {HBONE_PORT} with protocol HBONE; it is served one anyway"
        ));
    }
    let grants = &ix.grants;
    // Service → (precedence key, port, route)
    type KeyedRoutes = Vec<(SortKey, Option<u16>, RoutePlan)>;
    let mut routes: BTreeMap<ServiceRef, KeyedRoutes> = BTreeMap::new();
    for r in &ix.service_routes {
        let route_ns = r.metadata.namespace.as_deref().unwrap_or("default");
        for p in service_parents(r, route_ns) {
            let (svc, svc_ns, port) = p;
            // The waypoint applies routes of its bound Services that live in the Service's
            // namespace or its own (Istio's rule).
            if !wp.namespaces.iter().any(|n| n == svc_ns) || (route_ns != svc_ns && route_ns != ns)
            {
                continue;
            }
            let entry = routes
                .entry(ServiceRef {
                    name: svc.to_owned(),
                    namespace: svc_ns.to_owned(),
                })
                .or_default();
            for (ri, rule) in r.spec.rules.iter().enumerate() {
                for (mi, m) in rule.matches.iter().enumerate() {
                    let key = sort_key(m, route_ns, r, ri, mi);
                    let route_name = format!(
                        "httproute/{route_ns}/{}/rule/{ri}/match/{mi}",
                        r.metadata.name
                    );
                    entry.push((
                        key,
                        port,
                        route_plan(
                            route_name,
                            m,
                            rule,
                            ("HTTPRoute", route_ns),
                            port.unwrap_or(80),
                            grants,
                        ),
                    ));
                }
            }
        }
    }
    for (k, mut v) in routes {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        wp.routes
            .insert(k, v.into_iter().map(|(_, p, r)| (p, r)).collect());
    }
    if wp.namespaces.is_empty() {
        plan.warnings.push(format!(
            "waypoint {name}.{ns} has no Services bound: no namespace is labelled {USE_WAYPOINT}={name}"
        ));
    }
    plan.waypoint = Some(wp);
    plan
}

/// The Services an HTTPRoute names as parents: (name, namespace, port).
fn service_parents<'a>(
    r: &'a HttpRoute,
    route_ns: &'a str,
) -> Vec<(&'a str, &'a str, Option<u16>)> {
    r.spec
        .parent_refs
        .iter()
        .filter(|p| p.group.is_empty() && p.kind == "Service")
        .map(|p| {
            (
                p.name.as_str(),
                p.namespace.as_deref().unwrap_or(route_ns),
                p.port,
            )
        })
        .collect()
}

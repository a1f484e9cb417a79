//! Ambient mode's waypoints as proxies: a Gateway of class `istio-waypoint` (node id
//! `<waypoint>.<namespace>`) serves the L7 routes of the Services bound to it — the
//! HTTPRoutes and GRPCRoutes whose parent is a Service in a namespace labelled
//! `istio.io/use-waypoint=<waypoint>`; a route of another namespace (a GAMMA consumer
//! route) for the clients of that namespace only. How that is expressed to Envoy (HBONE termination,
//! a filter chain per Service VIP) is the emitter's (`emit::hbone`).

use std::collections::BTreeMap;

use crate::model::gateway_api::{self as gw, HttpRoute};
use crate::model::istio::HBONE_PORT;
use crate::xds::plan::{Action, ProxyPlan, ProxyRef, RoutePlan, ServiceRef, WaypointPlan};

use super::ambient::namespace_waypoint;
use super::backend_tls::{Policies, apply};
use super::http_route::route_plan;
use super::index::Index;
use super::rules::{SortKey, sort_key};
use crate::model::istio::label::USE_WAYPOINT;

/// The plan of waypoint `gateway`: the namespaces bound to it and the L7 routes of their
/// Services.
pub fn plan(ix: &Index<'_>, gateway: &gw::Gateway, policies: &Policies) -> ProxyPlan {
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
    // Service → (precedence key, port, route); consumer routes also by their namespace.
    type KeyedRoutes = Vec<(SortKey, Option<u16>, RoutePlan)>;
    let mut routes: BTreeMap<ServiceRef, KeyedRoutes> = BTreeMap::new();
    let mut consumers: BTreeMap<ServiceRef, BTreeMap<String, KeyedRoutes>> = BTreeMap::new();
    for attached in &ix.service_routes {
        let r = &*attached.route;
        let kind = attached.kind();
        let route_ns = r.metadata.namespace.as_deref().unwrap_or("default");
        for p in service_parents(r, route_ns) {
            let (svc, svc_ns, port) = p;
            if !wp.namespaces.iter().any(|n| n == svc_ns) {
                continue;
            }
            let service = ServiceRef {
                name: svc.to_owned(),
                namespace: svc_ns.to_owned(),
            };
            // Routes of the Service's namespace or the waypoint's own apply to every
            // client (Istio's rule); a route of any other namespace is a consumer route
            // (GAMMA), for the clients of its namespace only.
            let consumer = is_consumer_route(ix, route_ns, svc_ns);
            let own_service = consumer.then(|| consumer_grant(kind, route_ns, svc, svc_ns));
            let route_grants: Vec<&gw::ReferenceGrant> =
                grants.iter().copied().chain(own_service.as_ref()).collect();
            let entry = if !consumer {
                routes.entry(service).or_default()
            } else {
                consumers
                    .entry(service)
                    .or_default()
                    .entry(route_ns.to_owned())
                    .or_default()
            };
            for (ri, rule) in r.spec.rules.iter().enumerate() {
                for (mi, m) in rule.matches.iter().enumerate() {
                    let key = sort_key(m, route_ns, r, ri, mi);
                    let route_name = format!(
                        "{}/{route_ns}/{}/rule/{ri}/match/{mi}",
                        kind.to_ascii_lowercase(),
                        r.metadata.name
                    );
                    let plan_route = route_plan(
                        route_name,
                        m,
                        rule,
                        (kind, route_ns),
                        port.unwrap_or(80),
                        &route_grants,
                    );
                    // gRPC backends are spoken to in HTTP/2, as behind a Gateway.
                    if attached.grpc
                        && let Action::Forward(f) = &plan_route.action
                    {
                        plan.http2_backends.extend(
                            f.backends
                                .iter()
                                .filter_map(|w| w.target.service().cloned()),
                        );
                    }
                    entry.push((key, port, plan_route));
                }
            }
        }
    }
    let sorted = |mut v: KeyedRoutes| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, p, r)| (p, r)).collect::<Vec<_>>()
    };
    for (k, v) in routes {
        wp.routes.insert(k, sorted(v));
    }
    for (k, by_ns) in consumers {
        wp.consumer_routes
            .insert(k, by_ns.into_iter().map(|(n, v)| (n, sorted(v))).collect());
    }
    if wp.namespaces.is_empty() {
        plan.warnings.push(format!(
            "waypoint {name}.{ns} has no Services bound: no namespace is labelled {USE_WAYPOINT}={name}"
        ));
    }
    plan.waypoint = Some(wp);
    // BackendTLSPolicies of the Services the waypoint's routes send to: the waypoint is
    // the proxy that connects to them.
    apply(policies, &mut plan, None);
    plan
}

/// What lets a consumer route (kind `kind` in `route_ns`) send to the Service it is a route
/// of, `svc_ns`/`svc`, without a ReferenceGrant: the client could send there anyway
/// (GAMMA; the suite's MeshConsumerRoute has no grant). As a grant, so that the plan and
/// the route's status read it as they read the repository's.
pub fn consumer_grant(kind: &str, route_ns: &str, svc: &str, svc_ns: &str) -> gw::ReferenceGrant {
    gw::ReferenceGrant {
        api_version: gw::API_VERSION,
        kind: "ReferenceGrant",
        metadata: crate::model::meta::ObjectMeta {
            name: "consumer-route".into(),
            namespace: Some(svc_ns.to_owned()),
            ..Default::default()
        },
        spec: gw::ReferenceGrantSpec {
            from: vec![gw::ReferenceGrantFrom {
                group: gw::GROUP.into(),
                kind: kind.into(),
                namespace: route_ns.to_owned(),
            }],
            to: vec![gw::ReferenceGrantTo {
                group: String::new(),
                kind: "Service".into(),
                name: Some(svc.to_owned()),
            }],
        },
    }
}

/// Whether a route in `route_ns` whose parent is a Service in `svc_ns` is a consumer route:
/// neither in the Service's namespace nor in that of the Service's waypoint.
pub fn is_consumer_route(ix: &Index<'_>, route_ns: &str, svc_ns: &str) -> bool {
    route_ns != svc_ns && namespace_waypoint(ix, svc_ns).is_none_or(|(_, wns, _)| wns != route_ns)
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

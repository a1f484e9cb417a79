//! Ambient mode's one question for the frontends: which waypoint a namespace's Services
//! use (`istio.io/use-waypoint` on the Namespace), and whether ingress traffic must go
//! through it (`istio.io/ingress-use-waypoint=true`).

use std::collections::BTreeMap;

use crate::xds::plan::{Backend, ProxyPlan, WaypointRef};

use super::index::Index;

use crate::model::istio::label::{INGRESS_USE_WAYPOINT, USE_WAYPOINT, USE_WAYPOINT_NAMESPACE};

/// The waypoint namespace `ns` uses, from its labels.
pub fn namespace_waypoint<'a>(ix: &Index<'a>, ns: &str) -> Option<(&'a str, &'a str, bool)> {
    let n = ix.namespaces.get(ns)?;
    let l = &n.metadata.labels;
    let name = l.get(USE_WAYPOINT).filter(|w| w.as_str() != "none")?;
    let wns = l
        .get(USE_WAYPOINT_NAMESPACE)
        .map_or(n.metadata.name.as_str(), String::as_str);
    let ingress = l.get(INGRESS_USE_WAYPOINT).is_some_and(|v| v == "true");
    Some((name.as_str(), wns, ingress))
}

/// Which of a gateway's backends go through their waypoint: those whose namespace uses a
/// waypoint and asks ingress traffic to use it (Istio's `ingress-use-waypoint`).
fn ingress_waypoints(ix: &Index<'_>, backends: &[Backend]) -> BTreeMap<Backend, WaypointRef> {
    let mut out = BTreeMap::new();
    for b in backends {
        if let Some((name, ns, true)) = namespace_waypoint(ix, &b.namespace) {
            out.insert(
                b.clone(),
                WaypointRef {
                    name: name.to_owned(),
                    namespace: ns.to_owned(),
                    exists: ix.waypoints.contains(&(ns, name)),
                },
            );
        }
    }
    out
}

/// Sends a gateway's backends whose namespace asks for it through their waypoint
/// (`plan.via_waypoint`); one whose waypoint is not in the repository is warned about, and
/// the emitter closes it rather than route around the waypoint's rules.
pub fn route_through_waypoints(ix: &Index<'_>, plan: &mut ProxyPlan) {
    // Requests only: a waypoint here serves HTTP per Service port, and UDP cannot go over
    // HBONE, so connections go to their Services' endpoints directly (and say so).
    plan.via_waypoint = ingress_waypoints(ix, &plan.http_backends());
    for (b, w) in ingress_waypoints(ix, &plan.l4_backends()) {
        plan.warnings.push(format!(
            "{}: connections (TLS/TCP/UDP) go to the Service's endpoints directly, not through waypoint {} (waypoints carry requests only here)",
            b.endpoints_key(),
            w.proxy_id()
        ));
    }
    for (b, w) in &plan.via_waypoint {
        if !w.exists {
            plan.warnings.push(format!(
                "{}: its namespace sends ingress traffic through waypoint {}, which is not in the repository; requests to it fail (503) rather than skip the waypoint's rules",
                b.endpoints_key(),
                w.proxy_id()
            ));
        }
    }
}

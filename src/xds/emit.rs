//! A proxy plan → Envoy xDS resources, split by resource kind: `listener` (LDS), `route`
//! (RDS), `cluster` (CDS), `endpoint` (EDS), `secret` (SDS), and `hbone` for ambient
//! mode's tunnels and waypoints. The emitter reads only the plan (`crate::xds::plan`) and
//! the files `serve` was given (endpoints, certificates), never the model: what a proxy
//! is served is decided by the frontends (`crate::xds::translate`), how it is said to
//! Envoy is decided here.

mod cluster;
mod common;
mod endpoint;
mod hbone;
mod l4;
mod listener;
mod route;
mod secret;
mod tls;

use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::ProxyPlan;

pub use common::{
    MESH_CA, MESH_IDENTITY, Resources, Variant, any, per_listener_routes, secret_name,
};
pub use route::misdirected_vhosts;
pub use tls::ca_secret_name;

/// Everything the proxy of `plan` is served, given the files `serve` was given, with the
/// warnings of what could not be.
pub fn resources(
    plan: &ProxyPlan,
    endpoints: Option<&Endpoints>,
    certs: Option<&Certs>,
    variant: &Variant,
) -> (Resources, Vec<String>) {
    let mut warnings = Vec::new();
    let (listeners, served) = listener::listeners(plan, variant, certs, &mut warnings);
    let mut res = Resources {
        routes: route::route_configurations(plan, &served, variant),
        listeners,
        ..Resources::default()
    };
    let mut backends = plan.backends();
    // With an endpoints file, it is the list of Services there are: a route's backend
    // missing from it gets no cluster, so requests to it are answered 500 as Gateway API
    // requires for a backend that does not exist (not 503, as for one without endpoints).
    if let Some(eps) = endpoints {
        backends.retain(|b| {
            let known = eps.entries.contains_key(&b.endpoints_key())
                || plan.via_waypoint.contains_key(b);
            if !known {
                warnings.push(format!(
                    "{}: not in the endpoints file; requests to it are answered 500 (Service not found)",
                    b.endpoints_key()
                ));
            }
            known
        });
    }
    let (mut mesh, extra) =
        hbone::waypoint(plan, endpoints, certs, variant, &mut res, &mut warnings);
    backends.extend(extra);
    backends.sort();
    backends.dedup();
    let (clusters, loads) =
        cluster::backend_clusters(&backends, plan, endpoints, certs, &mut warnings);
    res.clusters.extend(clusters);
    res.endpoints.extend(loads);
    let udp: Vec<_> = plan.listeners.values().collect();
    let (clusters, loads) = l4::udp_clusters(&udp, endpoints);
    res.clusters.extend(clusters);
    res.endpoints.extend(loads);
    mesh |= hbone::tunnels(plan, endpoints, certs, &mut res, &mut warnings);

    // SDS: the Secrets the listeners and clusters above name, and nothing else.
    res.secrets = secret::secrets(plan, certs, mesh, variant);
    (res, warnings)
}

//! Clusters (CDS): one per Service port a plan sends to. With an endpoints file their
//! endpoints come over EDS; without one (in a cluster) they resolve the Service's name.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{self as cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::google::protobuf::Duration;

use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::{Backend, ProxyPlan};

use super::common::{ads, any, transport_socket};
use super::endpoint::load_assignment;
use super::tls;

/// Upstream HTTP/2 without TLS (prior knowledge), as gRPC backends speak.
fn http2_options() -> HttpProtocolOptions {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    HttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        core::Http2ProtocolOptions::default(),
                    )),
                },
            ),
        ),
        ..HttpProtocolOptions::default()
    }
}

/// The clusters (and EDS) of a plan's backends, speaking HTTP/2 without TLS to GRPCRoute
/// backends and to Service ports whose `appProtocol` says h2c.
pub(super) fn backend_clusters(
    backends: &[Backend],
    plan: &ProxyPlan,
    endpoints: Option<&Endpoints>,
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
) -> (
    BTreeMap<String, Cluster>,
    BTreeMap<String, ClusterLoadAssignment>,
) {
    let (mut clusters, mut loads) = clusters(backends, endpoints);
    let h2c = endpoints.into_iter().flat_map(|eps| {
        backends.iter().filter(|b| {
            eps.entries
                .get(&b.endpoints_key())
                .is_some_and(|e| e.is_h2c())
        })
    });
    let mut http2 = std::collections::BTreeSet::new();
    for b in plan.http2_backends.iter().chain(h2c) {
        if let Some(c) = clusters.get_mut(&b.cluster_name()) {
            c.typed_extension_protocol_options.insert(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
                any(&http2_options()),
            );
            http2.insert(b.cluster_name());
        }
    }
    // TLS to backends (BackendTLSPolicy, DestinationRule). Backends reached through a
    // waypoint are the waypoint's to speak to.
    for b in backends {
        if plan.via_waypoint.contains_key(b) {
            continue;
        }
        let Some(u) = tls::for_backend(plan, b, endpoints) else {
            continue;
        };
        let name = b.cluster_name();
        let Some(c) = clusters.get_mut(&name) else {
            continue;
        };
        match tls::upstream(u, http2.contains(&name), certs, warnings, &name) {
            Ok(ctx) => {
                c.transport_socket = Some(transport_socket("envoy.transport_sockets.tls", &ctx));
            }
            Err(why) => {
                // Never plaintext, never unchecked: the backend is not reached at all (503).
                warnings.push(format!(
                    "{name}: not reached: {} asks for TLS but its certificate cannot be checked: {why}",
                    u.source
                ));
                let empty = load_assignment(&name, Vec::new());
                if let Some(l) = loads.get_mut(&name) {
                    *l = empty;
                } else {
                    c.load_assignment = Some(empty);
                }
            }
        }
    }
    (clusters, loads)
}

/// Clusters for backends. With an endpoints file, every cluster is EDS
/// (a Service missing from the file has no endpoints), so a change of the file is an EDS
/// push only; without one, clusters resolve the Service's DNS name (in a cluster).
pub(super) fn clusters(
    backends: &[Backend],
    endpoints: Option<&Endpoints>,
) -> (
    BTreeMap<String, Cluster>,
    BTreeMap<String, ClusterLoadAssignment>,
) {
    let mut clusters = BTreeMap::new();
    let mut loads = BTreeMap::new();
    for b in backends {
        let name = b.cluster_name();
        let (c, load) = cluster(
            &name,
            load_assignment(&name, addresses(b, endpoints)),
            endpoints.is_some(),
        );
        loads.extend(load.map(|l| (name.clone(), l)));
        clusters.insert(name, c);
    }
    (clusters, loads)
}

/// Where `b` is: its addresses in the endpoints file, or (without one, in a cluster) its
/// Service's DNS name.
pub(super) fn addresses(b: &Backend, endpoints: Option<&Endpoints>) -> Vec<(String, u16)> {
    match endpoints {
        Some(eps) => eps.addresses(&b.endpoints_key()),
        None => vec![(b.dns_name(), b.port)],
    }
}

/// A cluster named `name` whose endpoints are `assignment`: sent over EDS (`eds`: with an
/// endpoints file, so a change of the file is an EDS push only; the assignment is returned
/// for EDS), or resolved by DNS from the names in it.
pub(super) fn cluster(
    name: &str,
    assignment: ClusterLoadAssignment,
    eds: bool,
) -> (Cluster, Option<ClusterLoadAssignment>) {
    let mut c = Cluster {
        name: name.to_owned(),
        connect_timeout: Some(Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Cluster::default()
    };
    if eds {
        c.cluster_discovery_type = Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Eds as i32,
        ));
        c.eds_cluster_config = Some(cluster::cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        });
        (c, Some(assignment))
    } else {
        c.cluster_discovery_type = Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::StrictDns as i32,
        ));
        c.load_assignment = Some(assignment);
        (c, None)
    }
}

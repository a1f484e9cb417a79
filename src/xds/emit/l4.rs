//! Listeners that route connections, not requests: TLS (a filter chain per SNI name, each
//! passing the stream through or terminating it, then `tcp_proxy`), TCP (`tcp_proxy` with
//! weighted clusters) and UDP (`udp_proxy`).
//!
//! A share of connections whose backend has no cluster (refused, or not in the endpoints
//! file) names a cluster that does not exist: Envoy closes those connections, the L4
//! analogue of HTTP's 500.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{self as cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, UdpListenerConfig, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::filters::udp::udp_proxy::v3::{
    Route as UdpRoute, UdpProxyConfig, udp_proxy_config,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::pb::xds::core::v3::TypedExtensionConfig;
use envoy_types::pb::xds::r#type::matcher::v3::{Matcher, matcher};

use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::{
    ClientValidation, L4Forward, ListenerKind, ListenerPlan, SecretRef, Target,
};

use super::common::{
    Variant, any, network_filter, sds, secret_name, secret_served, socket_address, tls_inspector,
    transport_socket,
};
use super::endpoint::load_assignment;
use super::tls;

/// The cluster a target's share goes to; a refused target (or one the endpoints file does
/// not list: the caller drops its cluster) gets a name no cluster has.
fn cluster_of(t: &Target) -> String {
    match t {
        Target::Service(b) => b.cluster_name(),
        Target::Refused(r) => format!("refused|{}/{}", r.namespace, r.name),
    }
}

fn tcp_proxy_filter(
    stat_prefix: &str,
    f: &L4Forward,
) -> envoy_types::pb::envoy::config::listener::v3::Filter {
    let spec = match f.backends.as_slice() {
        [] => tcp_proxy::ClusterSpecifier::Cluster(format!("no-backend|{}", f.name)),
        [one] => tcp_proxy::ClusterSpecifier::Cluster(cluster_of(&one.target)),
        many => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: many
                .iter()
                .map(|t| tcp_proxy::weighted_cluster::ClusterWeight {
                    name: cluster_of(&t.target),
                    weight: t.weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    network_filter(
        "envoy.filters.network.tcp_proxy",
        &TcpProxy {
            stat_prefix: stat_prefix.to_owned(),
            cluster_specifier: Some(spec),
            ..TcpProxy::default()
        },
    )
}

/// The listener of an L4 port, or `None` when nothing on it can be served (a TLS port whose
/// every terminating chain lacks its certificate).
pub(super) fn listener(
    l: &ListenerPlan,
    variant: &Variant,
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
) -> Option<(String, Listener)> {
    let port = l.port;
    let bind = variant.bind.as_deref().unwrap_or("0.0.0.0");
    match &l.kind {
        ListenerKind::Http(_) => None,
        ListenerKind::Tcp(f) => {
            let name = format!("tcp.{port}");
            Some((
                name.clone(),
                Listener {
                    name: name.clone(),
                    address: Some(socket_address(bind, port)),
                    filter_chains: vec![FilterChain {
                        name: f.name.clone(),
                        filters: vec![tcp_proxy_filter(&name, f)],
                        ..FilterChain::default()
                    }],
                    ..Listener::default()
                },
            ))
        }
        ListenerKind::Tls(t) => {
            let name = format!("tls.{port}");
            let chains: Vec<FilterChain> = t
                .chains
                .iter()
                .filter_map(|c| {
                    let transport_socket = match &c.terminate {
                        None => None,
                        Some(secret) => Some(terminating_socket(
                            port,
                            secret,
                            c.client_validation.as_ref(),
                            &c.server_names,
                            certs,
                            warnings,
                        )?),
                    };
                    Some(FilterChain {
                        name: format!("{}|{}", c.listener, c.server_names.join(",")),
                        filter_chain_match: Some(FilterChainMatch {
                            server_names: c.server_names.clone(),
                            transport_protocol: "tls".into(),
                            ..FilterChainMatch::default()
                        }),
                        transport_socket,
                        filters: vec![tcp_proxy_filter(&name, &c.forward)],
                        ..FilterChain::default()
                    })
                })
                .collect();
            if chains.is_empty() {
                return None;
            }
            // A ClientHello naming no chain's SNI matches nothing and is closed.
            let inspector = tls_inspector();
            Some((
                name.clone(),
                Listener {
                    name,
                    address: Some(socket_address(bind, port)),
                    filter_chains: chains,
                    listener_filters: vec![inspector],
                    ..Listener::default()
                },
            ))
        }
        ListenerKind::Udp(f) => {
            let name = format!("udp.{port}");
            let mut address = socket_address(bind, port);
            if let Some(core::address::Address::SocketAddress(s)) = &mut address.address {
                s.protocol = core::socket_address::Protocol::Udp as i32;
            }
            let cluster = match f.backends.as_slice() {
                [one] => cluster_of(&one.target),
                // Several backends: one cluster of weighted localities (`udp_clusters`);
                // udp_proxy has no weighted clusters of its own. None: a cluster that does
                // not exist, so datagrams are dropped.
                [] => format!("no-backend|{}", f.name),
                _ => weighted_udp_cluster(port),
            };
            let route = TypedExtensionConfig {
                name: "route".into(),
                typed_config: Some(any(&UdpRoute { cluster })),
            };
            let config = UdpProxyConfig {
                stat_prefix: name.clone(),
                route_specifier: Some(udp_proxy_config::RouteSpecifier::Matcher(Matcher {
                    on_no_match: Some(Box::new(matcher::OnMatch {
                        on_match: Some(matcher::on_match::OnMatch::Action(route)),
                        ..Default::default()
                    })),
                    ..Matcher::default()
                })),
                ..UdpProxyConfig::default()
            };
            Some((
                name.clone(),
                Listener {
                    name,
                    address: Some(address),
                    udp_listener_config: Some(UdpListenerConfig::default()),
                    listener_filters: vec![ListenerFilter {
                        name: "envoy.filters.udp_listener.udp_proxy".into(),
                        config_type: Some(listener_filter::ConfigType::TypedConfig(any(&config))),
                        ..ListenerFilter::default()
                    }],
                    ..Listener::default()
                },
            ))
        }
    }
}

fn weighted_udp_cluster(port: u16) -> String {
    format!("udp.{port}.weighted")
}

/// The TLS a terminating chain serves, if its certificate is in `--certs`.
fn terminating_socket(
    port: u16,
    secret: &SecretRef,
    client_validation: Option<&ClientValidation>,
    server_names: &[String],
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
) -> Option<core::TransportSocket> {
    if !secret_served(port, "TLS", server_names, secret, certs, warnings) {
        return None;
    }
    let SecretRef {
        namespace: ns,
        name,
    } = secret;
    // Client certificates, as on HTTPS chains: a chain whose client CA cannot be had is
    // not served.
    let (validation_context_type, required) = match client_validation {
        None => (None, false),
        Some(v) => match tls::client_validation(v, certs) {
            Ok(x) => x,
            Err(why) => {
                warnings.push(format!(
                    "port {port}: TLS chain {ns}/{name} is not served: its client CA cannot be had: {why}"
                ));
                return None;
            }
        },
    };
    let tls = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(&secret_name(ns, name))],
            validation_context_type,
            ..CommonTlsContext::default()
        }),
        require_client_certificate: required
            .then_some(envoy_types::pb::google::protobuf::BoolValue { value: true }),
        ..DownstreamTlsContext::default()
    };
    Some(transport_socket("envoy.transport_sockets.tls", &tls))
}

/// The weighted clusters of UDP listeners with several backends: one locality per backend,
/// weighted, holding that backend's endpoints (with an endpoints file; without one, its
/// DNS name). Sessions are spread over localities by weight.
pub(super) fn udp_clusters(
    listeners: &[&ListenerPlan],
    endpoints: Option<&Endpoints>,
) -> (
    BTreeMap<String, Cluster>,
    BTreeMap<String, ClusterLoadAssignment>,
) {
    let mut clusters = BTreeMap::new();
    let mut loads = BTreeMap::new();
    for l in listeners {
        let ListenerKind::Udp(f) = &l.kind else {
            continue;
        };
        if f.backends.len() < 2 {
            continue;
        }
        let name = weighted_udp_cluster(l.port);
        let mut assignment = ClusterLoadAssignment {
            cluster_name: name.clone(),
            ..ClusterLoadAssignment::default()
        };
        for (i, t) in f.backends.iter().enumerate() {
            let Target::Service(b) = &t.target else {
                continue;
            };
            let mut group = load_assignment(&name, super::cluster::addresses(b, endpoints))
                .endpoints
                .pop()
                .unwrap_or_default();
            group.locality = Some(core::Locality {
                sub_zone: format!("{i}/{}", b.endpoints_key()),
                ..core::Locality::default()
            });
            group.load_balancing_weight = Some(UInt32Value { value: t.weight });
            assignment.endpoints.push(group);
        }
        let (mut c, load) = super::cluster::cluster(&name, assignment, endpoints.is_some());
        c.common_lb_config = Some(cluster::cluster::CommonLbConfig {
            locality_config_specifier: Some(
                cluster::cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                    Default::default(),
                ),
            ),
            ..Default::default()
        });
        loads.extend(load.map(|l| (name.clone(), l)));
        clusters.insert(name, c);
    }
    (clusters, loads)
}

//! Ambient mode in Envoy's terms: waypoints that terminate HBONE, and gateways that reach
//! Services through their waypoint.
//!
//! A waypoint terminates HBONE — HTTP/2 CONNECT over mutual TLS on port 15008 — the way
//! istiod programs one (`notes/gateway-api-semantics.md` §4): the CONNECT authority
//! (`<service VIP>:<port>`) is put in filter state, the tunnelled bytes go to an internal
//! listener whose `original_dst` filter restores that authority as the destination, and a
//! filter chain per Service VIP and port applies that Service's L7 routes before sending
//! to its endpoints. The client's SPIFFE ID goes along in filter state, so consumer routes
//! (GAMMA) apply to the clients of their namespace only.
//!
//! A gateway backend in `plan.via_waypoint` gets, instead of its endpoints, a cluster that
//! points at an internal listener whose `tcp_proxy` opens a CONNECT to `<VIP>:<port>` on
//! the waypoint's port 15008, with the gateway's mesh certificate.
//!
//! Both sides need the internal listener bootstrap extension (`tidegate bootstrap` adds it)
//! and mesh certificates from `serve --certs` (served over SDS). What is missing — a VIP,
//! a certificate, the waypoint itself — closes that Service (503) with a warning, never
//! routing around the waypoint's rules; the rest of the proxy's config is served.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::{self as cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    self as core, Address, EnvoyInternalAddress, Http2ProtocolOptions, SubstitutionFormatString,
    substitution_format_string,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    self as route, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use envoy_types::pb::envoy::extensions::filters::http::set_filter_state::v3::Config as SetFilterState;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    self as hcm, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::transport_sockets::internal_upstream::v3::InternalUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    TlsParameters, UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
    tls_parameters::TlsProtocol,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    FilterStateMatcher, StringMatcher, filter_state_matcher, string_matcher,
};
use envoy_types::pb::google::protobuf::{BoolValue, Duration};

use crate::model::istio::HBONE_PORT;
use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::{
    Action, Backend, Forward, HeaderOps, PathMatch, ProxyPlan, ProxyRef, RoutePlan, ServiceRef,
    Target, WaypointRef, WeightedTarget,
};

use super::cluster::clusters;
use super::common::{
    MESH_CA, MESH_IDENTITY, Resources, Variant, any, http_connection_manager, network_filter,
    router_filter, sds, socket_address, transport_socket,
};
use super::route::envoy_route;

/// The listener that terminates HBONE, and the internal listener (and the cluster that
/// reaches it) where tunnelled connections are routed by destination.
const CONNECT_TERMINATE: &str = "connect_terminate";

const MAIN_INTERNAL: &str = "main_internal";

/// The filter state key that carries the HBONE client's SPIFFE ID (its certificate's URI
/// SAN) from `connect_terminate` into the internal listener's requests.
const PEER_PRINCIPAL: &str = "tidegate.hbone.peer_principal";

/// A route match on the HBONE client being a workload of namespace `ns`
/// (`spiffe://<trust domain>/ns/<ns>/sa/<account>`).
fn from_namespace(ns: &str) -> FilterStateMatcher {
    FilterStateMatcher {
        key: PEER_PRINCIPAL.into(),
        matcher: Some(filter_state_matcher::Matcher::StringMatch(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::SafeRegex(
                envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher {
                    regex: format!("^spiffe://[^/]+/ns/{}/sa/[^/,]+$", regex_syntax::escape(ns)),
                    ..Default::default()
                },
            )),
            ..StringMatcher::default()
        })),
    }
}

/// A STATIC cluster with these endpoints.
pub(super) fn static_cluster(name: &str, addresses: Vec<Address>) -> Cluster {
    Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(Duration {
            seconds: 5,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            endpoints: (!addresses.is_empty())
                .then(|| LocalityLbEndpoints {
                    lb_endpoints: addresses
                        .into_iter()
                        .map(|a| LbEndpoint {
                            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(
                                Endpoint {
                                    address: Some(a),
                                    ..Endpoint::default()
                                },
                            )),
                            ..LbEndpoint::default()
                        })
                        .collect(),
                    ..LocalityLbEndpoints::default()
                })
                .into_iter()
                .collect(),
            ..ClusterLoadAssignment::default()
        }),
        ..Cluster::default()
    }
}

/// A cluster with no endpoints: requests to it fail with 503. Used where sending around a
/// waypoint would skip its rules.
pub(super) fn closed_cluster(name: &str) -> Cluster {
    static_cluster(name, Vec::new())
}

/// A cluster whose one endpoint is internal listener `listener`.
pub(super) fn internal_cluster(name: &str, listener: &str) -> Cluster {
    let mut c = static_cluster(
        name,
        vec![Address {
            address: Some(core::address::Address::EnvoyInternalAddress(
                EnvoyInternalAddress {
                    address_name_specifier: Some(
                        core::envoy_internal_address::AddressNameSpecifier::ServerListenerName(
                            listener.to_owned(),
                        ),
                    ),
                    ..EnvoyInternalAddress::default()
                },
            )),
        }],
    );
    c.transport_socket = Some(transport_socket(
        "envoy.transport_sockets.internal_upstream",
        &InternalUpstreamTransport {
            transport_socket: Some(transport_socket(
                "envoy.transport_sockets.raw_buffer",
                &RawBuffer::default(),
            )),
            ..InternalUpstreamTransport::default()
        },
    ));
    c
}

pub(super) fn internal_listener(name: &str) -> Listener {
    Listener {
        name: name.to_owned(),
        listener_specifier: Some(listener::ListenerSpecifier::InternalListener(
            listener::InternalListenerConfig::default(),
        )),
        ..Listener::default()
    }
}

/// Mesh TLS: TLS 1.3, ALPN h2, this proxy's identity and the mesh CA, both over SDS, and
/// the peer's SPIFFE ID checked against `peer`.
pub(super) fn mesh_tls(peer: StringMatcher) -> CommonTlsContext {
    use common_tls_context::{CombinedCertificateValidationContext, ValidationContextType};
    CommonTlsContext {
        alpn_protocols: vec!["h2".into()],
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: TlsProtocol::TlSv13 as i32,
            tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
            ..TlsParameters::default()
        }),
        tls_certificate_sds_secret_configs: vec![sds(MESH_IDENTITY)],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: subject_alt_name_matcher::SanType::Uri as i32,
                        matcher: Some(peer),
                        ..SubjectAltNameMatcher::default()
                    }],
                    ..CertificateValidationContext::default()
                }),
                validation_context_sds_secret_config: Some(sds(MESH_CA)),
                ..Default::default()
            },
        )),
        ..CommonTlsContext::default()
    }
}

/// Whether `proxy` has what mesh TLS needs; a warning naming what is missing if not.
pub(super) fn mesh_certs_missing(proxy: &ProxyRef, certs: Option<&Certs>) -> Option<String> {
    let Some(certs) = certs else {
        return Some(
            "mesh certificates are needed and `serve --certs DIR` is not set (DIR/mesh/ca.crt, DIR/mesh/<namespace>/<proxy>/tls.crt and tls.key)".into(),
        );
    };
    let ProxyRef {
        name,
        namespace: ns,
    } = proxy;
    if certs.mesh_ca.is_none() {
        return Some(certs.missing("mesh/ca.crt"));
    }
    if !certs.identities.contains_key(&proxy.id()) {
        return Some(certs.missing(&format!("mesh/{ns}/{name}/tls.crt and tls.key")));
    }
    None
}

/// The HBONE tunnels of a gateway: every backend that goes through its waypoint.
/// Replaces those backends' clusters. Returns whether mesh certificates are used.
pub(super) fn tunnels(
    plan: &ProxyPlan,
    endpoints: Option<&Endpoints>,
    certs: Option<&Certs>,
    res: &mut Resources,
    warnings: &mut Vec<String>,
) -> bool {
    if plan.via_waypoint.is_empty() {
        return false;
    }
    let missing_certs = mesh_certs_missing(&plan.proxy, certs);
    let mut waypoints: BTreeSet<&WaypointRef> = BTreeSet::new();
    for (b, w) in &plan.via_waypoint {
        let name = b.cluster_name();
        res.endpoints.remove(&name);
        let vip = endpoints
            .and_then(|e| e.entries.get(&b.endpoints_key()))
            .and_then(|e| e.vip);
        let why_not = if !w.exists {
            None // warned by the plan
        } else if let Some(m) = &missing_certs {
            Some(m.clone())
        } else if vip.is_none() {
            Some(format!(
                "the endpoints file gives it no vip; valid: {}: {{vip: \"10.96.0.10\", addresses: [...]}}",
                b.endpoints_key()
            ))
        } else {
            None
        };
        let (Some(vip), true, None) = (vip, w.exists, &why_not) else {
            if let Some(why) = why_not {
                warnings.push(format!(
                    "{} goes through waypoint {} but cannot ({why}); requests to it fail (503) rather than skip the waypoint",
                    b.endpoints_key(),
                    w.proxy_id()
                ));
            }
            res.clusters.insert(name.clone(), closed_cluster(&name));
            continue;
        };
        waypoints.insert(w);
        let tunnel = format!("hbone-tunnel|{}", b.endpoints_key());
        res.clusters
            .insert(name.clone(), internal_cluster(&name, &tunnel));
        let mut l = internal_listener(&tunnel);
        l.filter_chains = vec![FilterChain {
            filters: vec![network_filter(
                "envoy.filters.network.tcp_proxy",
                &TcpProxy {
                    stat_prefix: tunnel.clone(),
                    cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
                        hbone_cluster_name(w),
                    )),
                    tunneling_config: Some(tcp_proxy::TunnelingConfig {
                        hostname: std::net::SocketAddr::new(vip, b.port).to_string(),
                        ..tcp_proxy::TunnelingConfig::default()
                    }),
                    ..TcpProxy::default()
                },
            )],
            ..FilterChain::default()
        }];
        res.listeners.insert(tunnel, l);
    }
    for w in &waypoints {
        // The waypoint's Service port 15008, resolved like any backend.
        let (mut clusters, loads) = clusters(&[w.hbone_backend()], endpoints);
        let Some((_, mut c)) = clusters.pop_first() else {
            continue;
        };
        let name = hbone_cluster_name(w);
        c.name = name.clone();
        if let Some(cfg) = c.eds_cluster_config.as_mut() {
            cfg.service_name = w.hbone_backend().cluster_name();
        }
        c.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
            any(&HttpProtocolOptions {
                upstream_protocol_options: Some(
                    http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                        http_protocol_options::ExplicitHttpConfig {
                            protocol_config: Some(
                                http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                                    Http2ProtocolOptions {
                                        allow_connect: true,
                                        ..Http2ProtocolOptions::default()
                                    },
                                ),
                            ),
                        },
                    ),
                ),
                ..HttpProtocolOptions::default()
            }),
        );
        let peer = StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::SafeRegex(
                envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher {
                    regex: format!(
                        "^spiffe://[^/]+/ns/{}/sa/{}$",
                        regex_syntax::escape(&w.namespace),
                        regex_syntax::escape(&w.name)
                    ),
                    ..Default::default()
                },
            )),
            ..StringMatcher::default()
        };
        c.transport_socket = Some(transport_socket(
            "envoy.transport_sockets.tls",
            &UpstreamTlsContext {
                sni: w.hbone_backend().dns_name(),
                common_tls_context: Some(mesh_tls(peer)),
                ..UpstreamTlsContext::default()
            },
        ));
        res.clusters.insert(name.clone(), c);
        for (load_name, mut load) in loads {
            load.cluster_name = load_name.clone();
            res.endpoints.insert(load_name, load);
        }
    }
    !waypoints.is_empty()
}

pub(super) fn hbone_cluster_name(w: &WaypointRef) -> String {
    format!("hbone|{}", w.proxy_id())
}

/// A waypoint's listeners and routes. Returns whether mesh certificates are used, and the
/// backends its default (pass-through) routes need beside the plan's.
pub(super) fn waypoint(
    plan: &ProxyPlan,
    endpoints: Option<&Endpoints>,
    certs: Option<&Certs>,
    variant: &Variant,
    res: &mut Resources,
    warnings: &mut Vec<String>,
) -> (bool, Vec<Backend>) {
    let mut backends = Vec::new();
    let Some(wp) = &plan.waypoint else {
        return (false, backends);
    };
    if variant.proxyless {
        warnings.push("a waypoint is not served to proxyless clients".into());
        return (false, backends);
    }
    let id = plan.proxy.id();
    if let Some(m) = mesh_certs_missing(&plan.proxy, certs) {
        warnings.push(format!("waypoint {id} is not served: {m}"));
        return (false, backends);
    }
    let Some(endpoints) = endpoints else {
        warnings.push(format!(
            "waypoint {id} is not served: it selects Services by address, and without `serve --endpoints FILE` it knows none"
        ));
        return (false, backends);
    };
    // Every Service port of the bound namespaces that has a VIP: one filter chain each.
    // The waypoint's own Service port 15008 is not one it routes.
    let own = Backend {
        service: plan.proxy.name.clone(),
        namespace: plan.proxy.namespace.clone(),
        port: HBONE_PORT,
    };
    let mut chains = Vec::new();
    let mut served: BTreeSet<ServiceRef> = BTreeSet::new();
    for (key, entry) in &endpoints.entries {
        let backend = &entry.service;
        let (svc, ns, port) = (&backend.service, &backend.namespace, backend.port);
        if !wp.namespaces.contains(ns) || *backend == own {
            continue;
        }
        let Some(vip) = entry.vip else {
            warnings.push(format!(
                "{key} is bound to waypoint {id} but the endpoints file gives it no vip, so the waypoint cannot select it; valid: {key}: {{vip: \"10.96.0.10\", addresses: [...]}}"
            ));
            continue;
        };
        let service = ServiceRef {
            name: svc.clone(),
            namespace: ns.clone(),
        };
        served.insert(service.clone());
        let host = backend.dns_name();
        let rc_name = format!("inbound-vip|{port}|http|{host}");
        let mut routes: Vec<&RoutePlan> = wp
            .routes
            .get(&service)
            .map(|v| {
                v.iter()
                    .filter(|(p, _)| p.is_none_or(|p| p == port))
                    .map(|(_, r)| r)
                    .collect()
            })
            .unwrap_or_default();
        // A Service with no route of its own is passed through, as Istio's waypoint does.
        let default_route;
        if routes.is_empty() {
            default_route = RoutePlan {
                name: format!("default/{}", backend.endpoints_key()),
                path: PathMatch::Prefix("/".into()),
                headers: Vec::new(),
                query: Vec::new(),
                method: None,
                action: Action::Forward(Forward {
                    backends: vec![WeightedTarget {
                        target: Target::Service(backend.clone()),
                        weight: 1,
                        request_headers: HeaderOps::default(),
                        response_headers: HeaderOps::default(),
                    }],
                    ..Forward::default()
                }),
                request_headers: HeaderOps::default(),
                response_headers: HeaderOps::default(),
                cors: None,
            };
            backends.push(backend.clone());
            routes.push(&default_route);
        }
        // Consumer routes first, each namespace's behind a match on the client's identity;
        // a request of that namespace matching none of them is answered 404 rather than
        // given the Service's own routes (GAMMA: the consumer's routes replace them).
        let mut envoy_routes = Vec::new();
        for (consumer_ns, consumer) in wp.consumer_routes.get(&service).into_iter().flatten() {
            let peer = from_namespace(consumer_ns);
            let before = envoy_routes.len();
            for (_, r) in consumer.iter().filter(|(p, _)| p.is_none_or(|p| p == port)) {
                let mut er = envoy_route(r, variant);
                if let Some(m) = er.r#match.as_mut() {
                    m.filter_state.push(peer.clone());
                }
                envoy_routes.push(er);
            }
            if envoy_routes.len() == before {
                continue;
            }
            envoy_routes.push(route::Route {
                name: format!("consumer/{consumer_ns}/no-match"),
                r#match: Some(RouteMatch {
                    path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".into())),
                    filter_state: vec![peer],
                    ..RouteMatch::default()
                }),
                action: Some(route::route::Action::DirectResponse(
                    route::DirectResponseAction {
                        status: 404,
                        ..Default::default()
                    },
                )),
                ..route::Route::default()
            });
        }
        envoy_routes.extend(routes.iter().map(|r| envoy_route(r, variant)));
        res.routes.insert(
            rc_name.clone(),
            RouteConfiguration {
                name: rc_name.clone(),
                virtual_hosts: vec![VirtualHost {
                    name: format!("inbound|http|{port}"),
                    domains: vec!["*".into()],
                    routes: envoy_routes,
                    ..VirtualHost::default()
                }],
                ..RouteConfiguration::default()
            },
        );
        chains.push(FilterChain {
            name: rc_name.clone(),
            filter_chain_match: Some(FilterChainMatch {
                prefix_ranges: vec![core::CidrRange {
                    address_prefix: vip.to_string(),
                    prefix_len: Some(envoy_types::pb::google::protobuf::UInt32Value {
                        value: if vip.is_ipv4() { 32 } else { 128 },
                    }),
                }],
                destination_port: Some(envoy_types::pb::google::protobuf::UInt32Value {
                    value: u32::from(port),
                }),
                ..FilterChainMatch::default()
            }),
            filters: vec![network_filter(
                "envoy.filters.network.http_connection_manager",
                &HttpConnectionManager {
                    // Stat names without `|`: `http.inbound_vip_<port>_<svc>_<ns>.*`.
                    stat_prefix: format!("inbound_vip_{port}_{svc}_{ns}"),
                    ..http_connection_manager(&rc_name)
                },
            )],
            ..FilterChain::default()
        });
    }
    let routed: BTreeSet<&ServiceRef> = wp.routes.keys().chain(wp.consumer_routes.keys()).collect();
    for s in routed {
        if !served.contains(s) {
            let (svc, ns) = (&s.name, &s.namespace);
            warnings.push(format!(
                "routes for Service {svc}.{ns} are not served by waypoint {id}: the endpoints file has no entry with a vip for it"
            ));
        }
    }
    if chains.is_empty() {
        warnings.push(format!(
            "waypoint {id} serves no Service: none of {} has an entry with a vip in the endpoints file",
            if wp.namespaces.is_empty() {
                "its (no) bound namespaces".to_owned()
            } else {
                format!("namespace(s) {}", wp.namespaces.join(", "))
            }
        ));
    }

    // connect_terminate: HBONE in. The peer must hold a mesh (SPIFFE) certificate from
    // the mesh CA.
    let peer = StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Prefix("spiffe://".into())),
        ..StringMatcher::default()
    };
    let terminate_tls = DownstreamTlsContext {
        common_tls_context: Some(mesh_tls(peer)),
        require_client_certificate: Some(BoolValue { value: true }),
        ..DownstreamTlsContext::default()
    };
    let filter_state = |key: &str, format: &str| FilterStateValue {
        key: Some(filter_state_value::Key::ObjectKey(key.into())),
        value: Some(filter_state_value::Value::FormatString(
            SubstitutionFormatString {
                format: Some(substitution_format_string::Format::TextFormatSource(
                    core::DataSource {
                        specifier: Some(core::data_source::Specifier::InlineString(format.into())),
                        ..core::DataSource::default()
                    },
                )),
                ..SubstitutionFormatString::default()
            },
        )),
        shared_with_upstream: filter_state_value::SharedWithUpstream::Once as i32,
        ..FilterStateValue::default()
    };
    let connect_hcm = HttpConnectionManager {
        stat_prefix: CONNECT_TERMINATE.into(),
        codec_type: hcm::http_connection_manager::CodecType::Http2 as i32,
        http2_protocol_options: Some(Http2ProtocolOptions {
            allow_connect: true,
            ..Http2ProtocolOptions::default()
        }),
        upgrade_configs: vec![hcm::http_connection_manager::UpgradeConfig {
            upgrade_type: "CONNECT".into(),
            ..Default::default()
        }],
        // Tunnels live as long as their connections.
        stream_idle_timeout: Some(Duration::default()),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: "connect".into(),
                virtual_hosts: vec![VirtualHost {
                    name: "connect".into(),
                    domains: vec!["*".into()],
                    routes: vec![route::Route {
                        name: "connect".into(),
                        r#match: Some(RouteMatch {
                            path_specifier: Some(
                                route::route_match::PathSpecifier::ConnectMatcher(
                                    route::route_match::ConnectMatcher::default(),
                                ),
                            ),
                            ..RouteMatch::default()
                        }),
                        action: Some(route::route::Action::Route(route::RouteAction {
                            cluster_specifier: Some(
                                route::route_action::ClusterSpecifier::Cluster(
                                    MAIN_INTERNAL.into(),
                                ),
                            ),
                            upgrade_configs: vec![route::route_action::UpgradeConfig {
                                upgrade_type: "CONNECT".into(),
                                connect_config: Some(
                                    route::route_action::upgrade_config::ConnectConfig::default(),
                                ),
                                ..Default::default()
                            }],
                            ..route::RouteAction::default()
                        })),
                        ..route::Route::default()
                    }],
                    ..VirtualHost::default()
                }],
                ..RouteConfiguration::default()
            },
        )),
        http_filters: vec![
            HttpFilter {
                name: "connect_authority".into(),
                config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
                    &SetFilterState {
                        on_request_headers: vec![
                            // The CONNECT authority becomes the internal listener's destination.
                            filter_state(
                                "envoy.filters.listener.original_dst.local_ip",
                                "%REQ(:AUTHORITY)%",
                            ),
                            filter_state(
                                "envoy.filters.listener.original_dst.remote_ip",
                                "%DOWNSTREAM_REMOTE_ADDRESS%",
                            ),
                            // Who the client is (its SPIFFE ID), for consumer routes.
                            FilterStateValue {
                                factory_key: "envoy.string".into(),
                                ..filter_state(PEER_PRINCIPAL, "%DOWNSTREAM_PEER_URI_SAN%")
                            },
                        ],
                        ..SetFilterState::default()
                    },
                ))),
                ..HttpFilter::default()
            },
            router_filter(),
        ],
        ..HttpConnectionManager::default()
    };
    res.listeners.insert(
        CONNECT_TERMINATE.into(),
        Listener {
            name: CONNECT_TERMINATE.into(),
            address: Some(socket_address(
                variant.bind.as_deref().unwrap_or("0.0.0.0"),
                HBONE_PORT,
            )),
            filter_chains: vec![FilterChain {
                name: CONNECT_TERMINATE.into(),
                transport_socket: Some(transport_socket(
                    "envoy.transport_sockets.tls",
                    &terminate_tls,
                )),
                filters: vec![network_filter(
                    "envoy.filters.network.http_connection_manager",
                    &connect_hcm,
                )],
                ..FilterChain::default()
            }],
            ..Listener::default()
        },
    );
    res.clusters.insert(
        MAIN_INTERNAL.into(),
        internal_cluster(MAIN_INTERNAL, MAIN_INTERNAL),
    );
    let mut main = internal_listener(MAIN_INTERNAL);
    main.listener_filters = vec![ListenerFilter {
        name: "envoy.filters.listener.original_dst".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &OriginalDst::default(),
        ))),
        ..ListenerFilter::default()
    }];
    // No default chain: a tunnel to an address no Service has is closed.
    main.filter_chains = chains;
    if !main.filter_chains.is_empty() {
        res.listeners.insert(MAIN_INTERNAL.into(), main);
    }
    (true, backends)
}

//! A proxy plan → Envoy xDS resources (Listener, RouteConfiguration, Cluster,
//! ClusterLoadAssignment).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{self as cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use envoy_types::pb::envoy::config::core::v3::{
    self as core, Address, AggregatedConfigSource, ApiVersion, ConfigSource, HeaderValue,
    HeaderValueOption, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    ApiListener, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter,
    listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    self as route, DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::{Cors, CorsPolicy};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    self as hcm, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    TlsCertificate, secret,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, UInt32Value};
use prost::{Message, Name};

use super::plan::{
    Action, Backend, CorsPlan, HeaderOps, ListenerPlan, PathMatch, PathRewrite, ProxyPlan,
    RoutePlan, StrMatch, TlsPlan, VhostPlan,
};
use crate::xds::certs::{Certs, KeyPair};
use crate::xds::endpoints::Endpoints;

/// How the resources of one proxy are shaped for the client that asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    /// Address the listeners bind (`0.0.0.0` when unset).
    pub bind: Option<String>,
    /// A proxyless gRPC client: it gets `api_listener`s named `<host>:<port>` instead of
    /// socket listeners (gRFC A27).
    pub proxyless: bool,
}

/// All resources of one proxy, by type, each `name → message`.
#[derive(Debug, Default)]
pub struct Resources {
    pub listeners: BTreeMap<String, Listener>,
    pub routes: BTreeMap<String, RouteConfiguration>,
    pub clusters: BTreeMap<String, Cluster>,
    pub endpoints: BTreeMap<String, ClusterLoadAssignment>,
    pub secrets: BTreeMap<String, Secret>,
}

/// Everything proxy `id` is served, with the warnings of what could not be.
pub fn resources(
    id: &str,
    plan: &ProxyPlan,
    endpoints: Option<&Endpoints>,
    certs: Option<&Certs>,
    variant: &Variant,
) -> (Resources, Vec<String>) {
    let mut warnings = Vec::new();
    let (listeners, routes) = listeners_and_routes(plan, variant, certs, &mut warnings);
    let mut res = Resources {
        listeners,
        routes,
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
            if !known && b.service != super::gateway_api::NOT_PERMITTED {
                warnings.push(format!(
                    "{}: not in the endpoints file; requests to it are answered 500 (Service not found)",
                    b.endpoints_key()
                ));
            }
            known
        });
    }
    let (mut mesh, extra) =
        super::mesh::waypoint(id, plan, endpoints, certs, variant, &mut res, &mut warnings);
    backends.extend(extra);
    backends.sort();
    backends.dedup();
    let (mut clusters, loads) = clusters(&backends, endpoints);
    // HTTP/2 to GRPCRoute backends, and to Service ports whose appProtocol says h2c.
    let h2c = endpoints.into_iter().flat_map(|eps| {
        backends.iter().filter(|b| {
            eps.entries
                .get(&b.endpoints_key())
                .is_some_and(|e| e.is_h2c())
        })
    });
    for b in plan.http2_backends.iter().chain(h2c) {
        if let Some(c) = clusters.get_mut(&b.cluster_name()) {
            c.typed_extension_protocol_options.insert(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
                any(&http2_options()),
            );
        }
    }
    res.clusters.extend(clusters);
    res.endpoints.extend(loads);
    mesh |= super::mesh::tunnels(id, plan, endpoints, certs, &mut res, &mut warnings);

    // SDS: the Secrets the listeners and clusters above name, and nothing else.
    let Some(certs) = certs else {
        return (res, warnings);
    };
    let tls_pair = |p: &KeyPair| {
        secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline_bytes(&p.chain_pem)),
            private_key: Some(inline_bytes(p.key.pem())),
            ..TlsCertificate::default()
        })
    };
    let mut secrets: Vec<(String, secret::Type)> = Vec::new();
    if mesh {
        if let Some(p) = certs.identities.get(id) {
            secrets.push((MESH_IDENTITY.into(), tls_pair(p)));
        }
        if let Some(ca) = &certs.mesh_ca {
            secrets.push((
                MESH_CA.into(),
                secret::Type::ValidationContext(CertificateValidationContext {
                    trusted_ca: Some(inline_bytes(ca)),
                    ..CertificateValidationContext::default()
                }),
            ));
        }
    }
    if !variant.proxyless {
        for t in plan.listeners.values().flat_map(|l| l.tls.iter()) {
            if let Some(p) = certs.secrets.get(&t.secret) {
                secrets.push((secret_name(&t.secret.0, &t.secret.1), tls_pair(p)));
            }
        }
    }
    for (name, t) in secrets {
        res.secrets.insert(
            name.clone(),
            Secret {
                name,
                r#type: Some(t),
            },
        );
    }
    (res, warnings)
}

fn inline_bytes(b: &[u8]) -> core::DataSource {
    core::DataSource {
        specifier: Some(core::data_source::Specifier::InlineBytes(b.to_vec())),
        ..core::DataSource::default()
    }
}

pub fn any<T: Message + Name>(m: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: m.encode_to_vec(),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..ConfigSource::default()
    }
}

/// The listener and route configuration name of a port: `http.<port>`, or `https.<port>`
/// when it terminates TLS.
fn route_config_name(listener: &ListenerPlan) -> String {
    if listener.tls.is_empty() {
        format!("http.{}", listener.port)
    } else {
        format!("https.{}", listener.port)
    }
}

pub(super) fn router_filter() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &Router::default(),
        ))),
        ..HttpFilter::default()
    }
}

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

const CORS_FILTER: &str = "envoy.filters.http.cors";

/// Envoy's CORS filter, placed before the router in listeners that have a route with a
/// CORS policy (the policy itself is per route).
fn cors_filter() -> HttpFilter {
    HttpFilter {
        name: CORS_FILTER.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &Cors::default(),
        ))),
        ..HttpFilter::default()
    }
}

/// An HTTP connection manager whose routes come over RDS as `route_config_name`.
pub(super) fn http_connection_manager(route_config_name: &str) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: route_config_name.to_owned(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config_name.to_owned(),
        })),
        http_filters: vec![router_filter()],
        // WebSocket upgrades pass through, as on Istio's gateways (Gateway API's
        // `kubernetes.io/ws` backends rely on it).
        upgrade_configs: vec![hcm::http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        }],
        ..HttpConnectionManager::default()
    }
}

pub(super) fn network_filter<T: Message + Name>(name: &str, m: &T) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(m))),
    }
}

pub(super) fn transport_socket<T: Message + Name>(name: &str, m: &T) -> TransportSocket {
    TransportSocket {
        name: name.into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(any(m))),
    }
}

/// SDS secret names. Each proxy's `mesh-identity` is its own certificate.
pub const MESH_IDENTITY: &str = "mesh-identity";
pub const MESH_CA: &str = "mesh-ca";

/// The SDS name of a TLS Secret (what `certificateRefs` / `credentialName` name).
pub fn secret_name(namespace: &str, name: &str) -> String {
    format!("kubernetes://{namespace}/{name}")
}

pub(super) fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_owned(),
        sds_config: Some(ads()),
    }
}

/// The TLS Secret an HTTPS listener's chain serves, if it is in `--certs`.
fn listener_chain(
    listener: &ListenerPlan,
    hcm: &HttpConnectionManager,
    t: &TlsPlan,
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
) -> Option<FilterChain> {
    let (ns, name) = &t.secret;
    let Some(certs) = certs else {
        warnings.push(format!(
            "HTTPS on port {} is not served: certificate Secret {ns}/{name} needs `serve --certs DIR` (DIR/secrets/{ns}/{name}/tls.crt and tls.key)",
            listener.port
        ));
        return None;
    };
    if !certs.secrets.contains_key(&t.secret) {
        warnings.push(format!(
            "HTTPS on port {} for {} is not served: {}",
            listener.port,
            if t.server_names.is_empty() {
                "any host".to_owned()
            } else {
                t.server_names.join(", ")
            },
            certs.missing(&format!("secrets/{ns}/{name}/tls.crt and tls.key"))
        ));
        return None;
    }
    let tls = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            tls_certificate_sds_secret_configs: vec![sds(&secret_name(ns, name))],
            ..CommonTlsContext::default()
        }),
        ..DownstreamTlsContext::default()
    };
    Some(FilterChain {
        name: format!("{}/{ns}/{name}", t.server_names.join(",")),
        filter_chain_match: (!t.server_names.is_empty()).then(|| FilterChainMatch {
            server_names: t.server_names.clone(),
            ..FilterChainMatch::default()
        }),
        transport_socket: Some(transport_socket("envoy.transport_sockets.tls", &tls)),
        filters: vec![network_filter(
            "envoy.filters.network.http_connection_manager",
            hcm,
        )],
        ..FilterChain::default()
    })
}

/// Listeners and routes of a plan (clusters and endpoints come from [`clusters`]).
pub fn listeners_and_routes(
    plan: &ProxyPlan,
    variant: &Variant,
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
) -> (
    BTreeMap<String, Listener>,
    BTreeMap<String, RouteConfiguration>,
) {
    let mut listeners = BTreeMap::new();
    let mut routes = BTreeMap::new();
    for (port, l) in &plan.listeners {
        let rc_name = route_config_name(l);
        // Several Gateway listeners terminating TLS on one port: each gets its own route
        // configuration, so a request whose Host belongs to another listener than the one
        // its SNI chose is answered 421 (Misdirected Request), as Gateway API requires.
        let split =
            !variant.proxyless && l.tls.len() > 1 && l.tls.iter().all(|t| !t.listener.is_empty());
        let mut hcm = http_connection_manager(&rc_name);
        if l.vhosts
            .iter()
            .flat_map(|v| &v.routes)
            .any(|r| r.cors.is_some())
        {
            hcm.http_filters.insert(0, cors_filter());
        }
        if variant.proxyless {
            for v in &l.vhosts {
                for d in v.domains.iter().filter(|d| !d.contains('*')) {
                    let name = format!("{d}:{port}");
                    listeners.insert(
                        name.clone(),
                        Listener {
                            name,
                            api_listener: Some(ApiListener {
                                api_listener: Some(any(&hcm)),
                            }),
                            ..Listener::default()
                        },
                    );
                }
            }
        } else {
            let (filter_chains, listener_filters) = if l.tls.is_empty() {
                (
                    vec![FilterChain {
                        filters: vec![network_filter(
                            "envoy.filters.network.http_connection_manager",
                            &hcm,
                        )],
                        ..FilterChain::default()
                    }],
                    Vec::new(),
                )
            } else {
                let chains: Vec<FilterChain> = l
                    .tls
                    .iter()
                    .filter_map(|t| {
                        if split {
                            let mut own = hcm.clone();
                            let name = format!("{rc_name}.{}", t.listener);
                            if let Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) =
                                &mut own.route_specifier
                            {
                                r.route_config_name = name.clone();
                            }
                            own.stat_prefix = name;
                            listener_chain(l, &own, t, certs, warnings)
                        } else {
                            listener_chain(l, &hcm, t, certs, warnings)
                        }
                    })
                    .collect();
                // SNI is read before a chain is chosen; Envoy no longer adds the TLS
                // inspector by itself.
                let inspector = ListenerFilter {
                    name: "envoy.filters.listener.tls_inspector".into(),
                    config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                        &TlsInspector::default(),
                    ))),
                    ..ListenerFilter::default()
                };
                (chains, vec![inspector])
            };
            if filter_chains.is_empty() {
                continue;
            }
            listeners.insert(
                rc_name.clone(),
                Listener {
                    name: rc_name.clone(),
                    address: Some(socket_address(
                        variant.bind.as_deref().unwrap_or("0.0.0.0"),
                        *port,
                    )),
                    filter_chains,
                    listener_filters,
                    ..Listener::default()
                },
            );
        }
        if split {
            for t in &l.tls {
                let name = format!("{rc_name}.{}", t.listener);
                let own: Vec<&VhostPlan> = l
                    .vhosts
                    .iter()
                    .filter(|v| v.listener == t.listener)
                    .collect();
                let misdirected = misdirected_vhosts(l, t, &own);
                let all: Vec<&VhostPlan> = own.into_iter().chain(&misdirected).collect();
                routes.insert(
                    name.clone(),
                    route_configuration(name, &all, *port, variant),
                );
            }
        } else {
            let all: Vec<&VhostPlan> = l.vhosts.iter().collect();
            routes.insert(
                rc_name.clone(),
                route_configuration(rc_name, &all, *port, variant),
            );
        }
    }
    (listeners, routes)
}

fn route_configuration(
    name: String,
    vhosts: &[&VhostPlan],
    port: u16,
    variant: &Variant,
) -> RouteConfiguration {
    let mut vhosts: Vec<VirtualHost> = vhosts
        .iter()
        .map(|v| VirtualHost {
            name: v.name.clone(),
            // `host:port` too, for clients that match the authority with its port
            // (proxyless gRPC); Envoy ignores the port (see below).
            domains: v
                .domains
                .iter()
                .flat_map(|d| {
                    if d == "*" {
                        vec![d.clone()]
                    } else {
                        vec![d.clone(), format!("{d}:{port}")]
                    }
                })
                .collect(),
            routes: v.routes.iter().map(|r| envoy_route(r, variant)).collect(),
            ..VirtualHost::default()
        })
        .collect();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    RouteConfiguration {
        name,
        virtual_hosts: vhosts,
        // Gateway API: "MUST ignore any port value specified in the HTTP Host
        // header while performing a match"; the Host is forwarded unmodified.
        ignore_port_in_host_matching: !variant.proxyless,
        ..RouteConfiguration::default()
    }
}

/// Virtual hosts answering 421 on the chain of listener `chain`: the hostnames other
/// listeners of the port own. A chain with a hostname also sends everything outside it
/// (`*`) there; the chain of the listener without one (the default chain) leaves
/// unknown hosts to 404. Domains the chain serves itself are never shadowed.
fn misdirected_vhosts(l: &ListenerPlan, chain: &TlsPlan, own: &[&VhostPlan]) -> Vec<VhostPlan> {
    let mut taken: std::collections::BTreeSet<&str> = own
        .iter()
        .flat_map(|v| v.domains.iter().map(String::as_str))
        .collect();
    let mut domains: Vec<String> = Vec::new();
    for other in l.tls.iter().filter(|o| o.listener != chain.listener) {
        for h in &other.server_names {
            if taken.insert(h) {
                domains.push(h.clone());
            }
        }
    }
    if !chain.server_names.is_empty() && taken.insert("*") {
        domains.push("*".into());
    }
    domains
        .into_iter()
        .map(|d| VhostPlan {
            name: format!("misdirected:{d}"),
            listener: chain.listener.clone(),
            domains: vec![d],
            routes: vec![RoutePlan {
                name: "misdirected".into(),
                path: PathMatch::Prefix("/".into()),
                headers: Vec::new(),
                query: Vec::new(),
                method: None,
                action: Action::Status(421),
                request_headers: HeaderOps::default(),
                response_headers: HeaderOps::default(),
                cors: None,
            }],
        })
        .collect()
}

pub(super) fn socket_address(ip: &str, port: u16) -> Address {
    Address {
        address: Some(core::address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                port,
            ))),
            ..SocketAddress::default()
        })),
    }
}

fn string_matcher(m: &StrMatch) -> StringMatcher {
    use string_matcher::MatchPattern;
    StringMatcher {
        match_pattern: Some(match m {
            StrMatch::Exact(v) => MatchPattern::Exact(v.clone()),
            StrMatch::Prefix(v) => MatchPattern::Prefix(v.clone()),
            StrMatch::Regex(v) => MatchPattern::SafeRegex(regex(v)),
        }),
        ..StringMatcher::default()
    }
}

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_owned(),
        ..RegexMatcher::default()
    }
}

fn header_options(ops: &HeaderOps) -> Vec<HeaderValueOption> {
    use core::header_value_option::HeaderAppendAction;
    let one = |(k, v): &(String, String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.to_ascii_lowercase(),
            value: v.clone(),
            ..HeaderValue::default()
        }),
        append_action: action as i32,
        ..HeaderValueOption::default()
    };
    ops.set
        .iter()
        .map(|h| one(h, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|h| one(h, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

pub(super) fn envoy_route(r: &RoutePlan, variant: &Variant) -> Route {
    use route::route_match::PathSpecifier;
    let path_specifier = match &r.path {
        PathMatch::Exact(p) => PathSpecifier::Path(p.clone()),
        PathMatch::Prefix(p) => PathSpecifier::Prefix(p.clone()),
        // gRPC clients know only prefix, path and regex matches (gRFC A28). A gRPC path is
        // always `/service/method`, so `/x/` covers every request `/x` would.
        PathMatch::SegmentPrefix(p) if variant.proxyless => PathSpecifier::Prefix(format!("{p}/")),
        PathMatch::SegmentPrefix(p) => PathSpecifier::PathSeparatedPrefix(p.clone()),
        PathMatch::Regex(p) => PathSpecifier::SafeRegex(regex(p)),
    };
    let mut headers: Vec<HeaderMatcher> = r
        .headers
        .iter()
        .map(|(name, m)| HeaderMatcher {
            name: name.clone(),
            header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(
                string_matcher(m),
            )),
            ..HeaderMatcher::default()
        })
        .collect();
    if let Some(method) = &r.method {
        headers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(
                string_matcher(&StrMatch::Exact(method.clone())),
            )),
            ..HeaderMatcher::default()
        });
    }
    let query_parameters = r
        .query
        .iter()
        .map(|(name, m)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(
                route::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                    string_matcher(m),
                ),
            ),
        })
        .collect();

    let action = match &r.action {
        Action::Status(status) => route::route::Action::DirectResponse(DirectResponseAction {
            status: u32::from(*status),
            ..DirectResponseAction::default()
        }),
        Action::Redirect(red) => {
            use route::redirect_action::{
                PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier,
            };
            let code = match red.status {
                301 => RedirectResponseCode::MovedPermanently,
                303 => RedirectResponseCode::SeeOther,
                307 => RedirectResponseCode::TemporaryRedirect,
                308 => RedirectResponseCode::PermanentRedirect,
                _ => RedirectResponseCode::Found,
            };
            route::route::Action::Redirect(RedirectAction {
                scheme_rewrite_specifier: red
                    .scheme
                    .clone()
                    .map(SchemeRewriteSpecifier::SchemeRedirect),
                host_redirect: red.host.clone().unwrap_or_default(),
                port_redirect: red.port.map(u32::from).unwrap_or_default(),
                path_rewrite_specifier: red.path.as_ref().map(|p| match p {
                    PathRewrite::Full(full) => PathRewriteSpecifier::PathRedirect(full.clone()),
                    PathRewrite::Prefix(prefix) => {
                        PathRewriteSpecifier::PrefixRewrite(prefix.clone())
                    }
                    PathRewrite::Regex {
                        pattern,
                        substitution,
                    } => PathRewriteSpecifier::RegexRewrite(RegexMatchAndSubstitute {
                        pattern: Some(regex(pattern)),
                        substitution: substitution.clone(),
                    }),
                }),
                response_code: code as i32,
                ..RedirectAction::default()
            })
        }
        Action::Forward(f) => {
            use route::route_action::{
                ClusterNotFoundResponseCode, ClusterSpecifier, HostRewriteSpecifier,
            };
            // Per-backend header changes live on a weighted cluster entry, so a route
            // with any uses weighted clusters even for one backend.
            let cluster_specifier = if f.backends.len() == 1 && f.backend_headers.is_empty() {
                ClusterSpecifier::Cluster(f.backends[0].0.cluster_name())
            } else {
                ClusterSpecifier::WeightedClusters(WeightedCluster {
                    clusters: f
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(i, (b, w))| {
                            let mut cw = route::weighted_cluster::ClusterWeight {
                                name: b.cluster_name(),
                                weight: Some(UInt32Value { value: *w }),
                                ..Default::default()
                            };
                            if let Some((_, req, resp)) =
                                f.backend_headers.iter().find(|(at, _, _)| *at == i)
                            {
                                cw.request_headers_to_add = header_options(req);
                                cw.request_headers_to_remove =
                                    req.remove.iter().map(|h| h.to_ascii_lowercase()).collect();
                                cw.response_headers_to_add = header_options(resp);
                                cw.response_headers_to_remove =
                                    resp.remove.iter().map(|h| h.to_ascii_lowercase()).collect();
                            }
                            cw
                        })
                        .collect(),
                    ..WeightedCluster::default()
                })
            };
            let mut action = RouteAction {
                cluster_specifier: Some(cluster_specifier),
                // A backend that does not exist (or is not permitted) answers 500, as
                // HTTPRoute requires (Envoy's default is 503); a gRPC route answers 503,
                // which gRPC clients read as UNAVAILABLE, as GRPCRoute requires.
                cluster_not_found_response_code: if f.grpc {
                    ClusterNotFoundResponseCode::ServiceUnavailable as i32
                } else {
                    ClusterNotFoundResponseCode::InternalServerError as i32
                },
                timeout: f.timeout_ms.map(duration),
                host_rewrite_specifier: f
                    .host_rewrite
                    .clone()
                    .map(HostRewriteSpecifier::HostRewriteLiteral),
                request_mirror_policies: f
                    .mirrors
                    .iter()
                    .map(|m| route::route_action::RequestMirrorPolicy {
                        cluster: m.backend.cluster_name(),
                        runtime_fraction: (m.numerator < m.denominator).then(|| {
                            core::RuntimeFractionalPercent {
                                default_value: Some(per_million(m.numerator, m.denominator)),
                                runtime_key: String::new(),
                            }
                        }),
                        // The mirror sees the request's own Host, as Gateway API expects
                        // (Envoy would append `-shadow`).
                        disable_shadow_host_suffix_append: true,
                        ..Default::default()
                    })
                    .collect(),
                retry_policy: f.retry.as_ref().map(|r| route::RetryPolicy {
                    retry_on: r
                        .on
                        .iter()
                        .map(String::as_str)
                        .chain((!r.codes.is_empty()).then_some("retriable-status-codes"))
                        .collect::<Vec<_>>()
                        .join(","),
                    retriable_status_codes: r.codes.iter().map(|c| u32::from(*c)).collect(),
                    num_retries: Some(UInt32Value { value: r.attempts }),
                    per_try_timeout: f.per_try_timeout_ms.map(duration),
                    retry_back_off: r.backoff_ms.map(|ms| route::retry_policy::RetryBackOff {
                        base_interval: Some(duration(ms)),
                        max_interval: None,
                    }),
                    ..Default::default()
                }),
                ..RouteAction::default()
            };
            if action.retry_policy.is_none()
                && let Some(ms) = f.per_try_timeout_ms
            {
                action.retry_policy = Some(route::RetryPolicy {
                    num_retries: Some(UInt32Value { value: 0 }),
                    per_try_timeout: Some(duration(ms)),
                    ..Default::default()
                });
            }
            match &f.path_rewrite {
                None => {}
                Some(PathRewrite::Prefix(p)) => action.prefix_rewrite = p.clone(),
                Some(PathRewrite::Full(full)) => {
                    action.regex_rewrite = Some(RegexMatchAndSubstitute {
                        pattern: Some(regex("^/.*$")),
                        substitution: full.clone(),
                    })
                }
                Some(PathRewrite::Regex {
                    pattern,
                    substitution,
                }) => {
                    action.regex_rewrite = Some(RegexMatchAndSubstitute {
                        pattern: Some(regex(pattern)),
                        substitution: substitution.clone(),
                    })
                }
            }
            route::route::Action::Route(action)
        }
    };
    let mut typed_per_filter_config = std::collections::HashMap::new();
    if let Some(c) = &r.cors {
        typed_per_filter_config.insert(CORS_FILTER.to_owned(), any(&cors_policy(c)));
    }
    Route {
        name: r.name.clone(),
        typed_per_filter_config,
        r#match: Some(RouteMatch {
            path_specifier: Some(path_specifier),
            headers,
            query_parameters,
            ..RouteMatch::default()
        }),
        action: Some(action),
        request_headers_to_add: header_options(&r.request_headers),
        request_headers_to_remove: r
            .request_headers
            .remove
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        response_headers_to_add: header_options(&r.response_headers),
        response_headers_to_remove: r
            .response_headers
            .remove
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        ..Route::default()
    }
}

fn duration(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// `numerator/denominator` as Envoy's fractional percent (per million: exact for every
/// percentage and for the fractions Gateway API examples use).
fn per_million(
    numerator: u32,
    denominator: u32,
) -> envoy_types::pb::envoy::r#type::v3::FractionalPercent {
    use envoy_types::pb::envoy::r#type::v3::{
        FractionalPercent, fractional_percent::DenominatorType,
    };
    FractionalPercent {
        numerator: (u64::from(numerator) * 1_000_000 / u64::from(denominator.max(1))) as u32,
        denominator: DenominatorType::Million as i32,
    }
}

/// A CORS filter (Gateway API) or policy (Istio) as Envoy's per-route CORS policy.
fn cors_policy(c: &CorsPlan) -> CorsPolicy {
    let origins = c.allow_origins.iter().map(string_matcher).collect();
    CorsPolicy {
        allow_origin_string_match: origins,
        // Envoy writes these as given: `, ` is how browsers and the spec's examples list
        // them.
        allow_methods: c.allow_methods.join(", "),
        allow_headers: c.allow_headers.join(", "),
        expose_headers: c.expose_headers.join(", "),
        max_age: c.max_age.map(|a| a.to_string()).unwrap_or_default(),
        allow_credentials: c.allow_credentials.then_some(BoolValue { value: true }),
        // A preflight that matches no allowed origin is answered by the gateway, never
        // forwarded to the backend.
        forward_not_matching_preflights: Some(BoolValue { value: false }),
        ..CorsPolicy::default()
    }
}

/// Clusters for every backend of a plan. With an endpoints file, every cluster is EDS
/// (a Service missing from the file has no endpoints), so a change of the file is an EDS
/// push only; without one, clusters resolve the Service's DNS name (in a cluster).
pub fn clusters(
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
        let mut c = Cluster {
            name: name.clone(),
            connect_timeout: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Cluster::default()
        };
        match endpoints {
            Some(eps) => {
                c.cluster_discovery_type = Some(cluster::cluster::ClusterDiscoveryType::Type(
                    cluster::cluster::DiscoveryType::Eds as i32,
                ));
                c.eds_cluster_config = Some(cluster::cluster::EdsClusterConfig {
                    eds_config: Some(ads()),
                    service_name: String::new(),
                });
                loads.insert(
                    name.clone(),
                    load_assignment(&name, eps.addresses(&b.endpoints_key())),
                );
            }
            None => {
                c.cluster_discovery_type = Some(cluster::cluster::ClusterDiscoveryType::Type(
                    cluster::cluster::DiscoveryType::StrictDns as i32,
                ));
                c.load_assignment = Some(load_assignment(&name, vec![(b.dns_name(), b.port)]));
            }
        }
        clusters.insert(name, c);
    }
    (clusters, loads)
}

pub fn load_assignment(cluster: &str, addresses: Vec<(String, u16)>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: addresses
                .into_iter()
                .map(|(ip, port)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(&ip, port)),
                        ..Endpoint::default()
                    })),
                    ..LbEndpoint::default()
                })
                .collect(),
            // gRPC ignores endpoints without a locality and a locality weight (gRFC A27);
            // Envoy does not mind them.
            locality: Some(core::Locality::default()),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            ..LocalityLbEndpoints::default()
        }],
        ..ClusterLoadAssignment::default()
    }
}

//! What every resource kind's emitter shares: the client variant, protobuf `Any`
//! packing, ADS/SDS config sources, the HTTP connection manager, names, matchers.

use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use envoy_types::pb::envoy::config::core::v3::{
    self as core, Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    self as hcm, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::{Message, Name};

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

use crate::xds::plan::{HttpListener, StrMatch};

/// How the resources of one proxy are shaped for the client that asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    /// Address the listeners bind (`0.0.0.0` when unset).
    pub bind: Option<String>,
    /// A proxyless gRPC client: it gets `api_listener`s named `<host>:<port>` instead of
    /// socket listeners (gRFC A27).
    pub proxyless: bool,
}

pub(super) fn inline_bytes(b: &[u8]) -> core::DataSource {
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

pub(super) fn ads() -> ConfigSource {
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
pub(super) fn route_config_name(port: u16, listener: &HttpListener) -> String {
    if listener.tls.is_empty() {
        format!("http.{port}")
    } else {
        format!("https.{port}")
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

pub(super) const CORS_FILTER: &str = "envoy.filters.http.cors";

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

pub(super) fn string_matcher(m: &StrMatch) -> StringMatcher {
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

pub(super) fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_owned(),
        ..RegexMatcher::default()
    }
}

pub(super) fn duration(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// Whether an HTTPS port's Gateway listeners each get their own route configuration
/// (`<name>.<listener>`): several Gateway listeners terminating TLS on one port, so that a
/// request whose Host belongs to another listener than the one its SNI chose is answered
/// 421 (Misdirected Request), as Gateway API requires.
pub fn per_listener_routes(l: &HttpListener, variant: &Variant) -> bool {
    !variant.proxyless && l.tls.len() > 1 && l.tls.iter().all(|t| !t.listener.is_empty())
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

/// The TLS inspector: SNI (and whether a stream is TLS at all) is read before a filter
/// chain is chosen; Envoy no longer adds it by itself.
pub(super) fn tls_inspector() -> envoy_types::pb::envoy::config::listener::v3::ListenerFilter {
    use envoy_types::pb::envoy::config::listener::v3::{ListenerFilter, listener_filter};
    use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &TlsInspector::default(),
        ))),
        ..ListenerFilter::default()
    }
}

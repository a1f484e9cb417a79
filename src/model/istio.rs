//! Istio `networking.istio.io/v1` Gateway, VirtualService and DestinationRule (istio mode,
//! seed §2.2).

use std::collections::BTreeMap;

use serde::Serialize;

use super::meta::ObjectMeta;

pub const API_VERSION: &str = "networking.istio.io/v1";

/// `gatewayClassName` of an ambient waypoint (what `istioctl waypoint apply` creates).
pub const WAYPOINT_CLASS: &str = "istio-waypoint";

/// The port a waypoint terminates HBONE (HTTP/2 CONNECT over mutual TLS) on.
pub const HBONE_PORT: u16 = 15008;

/// Labels and annotations Istio reads, as tidegate writes and reads them.
pub mod label {
    /// Namespace (or Service) label: the waypoint its traffic goes through.
    pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
    /// Namespace label: the namespace of the waypoint named by [`USE_WAYPOINT`].
    pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
    /// Namespace label: ingress gateways send traffic through the waypoint too.
    pub const INGRESS_USE_WAYPOINT: &str = "istio.io/ingress-use-waypoint";
    /// Namespace label: `ambient` puts the namespace in the ambient mesh.
    pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
    /// Namespace label: sidecar injection with a given control-plane revision.
    pub const REVISION: &str = "istio.io/rev";
    /// Namespace label: `enabled` injects sidecars from the default revision.
    pub const INJECTION: &str = "istio-injection";
    /// Waypoint Gateway label: which traffic the waypoint handles (`service`).
    pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
    /// Gateway annotation: the type of the Service Istio deploys for it.
    pub const SERVICE_TYPE: &str = "networking.istio.io/service-type";
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: GatewaySpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<Server>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub port: ServerPort,
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerPort {
    pub number: u16,
    pub name: String,
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTls {
    pub mode: &'static str,
    /// Empty for `PASSTHROUGH`, which serves no certificate of its own.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: VirtualServiceSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    pub hosts: Vec<String>,
    pub gateways: Vec<String>,
    /// Absent when the VirtualService routes connections only (`tls`/`tcp`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// Passthrough TLS connections by SNI: the first entry whose match fits wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// TCP connections (and TLS terminated by the gateway): first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
}

/// One `tls[]` entry: connections whose SNI (and port) match go to `route`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    #[serde(rename = "match")]
    pub match_: Vec<L4Match>,
    pub route: Vec<RouteDestination>,
}

/// One `tcp[]` entry: connections to the matched port (any, without a match) go to `route`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    #[serde(rename = "match")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<L4Match>,
    pub route: Vec<RouteDestination>,
}

/// A `tls[].match[]` (`sniHosts` required there) or `tcp[].match[]` entry (no `sniHosts`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4Match {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
}

/// One `http[]` entry. VirtualServices are first-match: the entries' order is the routing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<HttpMatchRequest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMirrorPolicy {
    pub destination: Destination,
    /// Percent of requests mirrored; absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percent {
    pub value: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    pub attempts: u32,
    /// Envoy's retry conditions plus plain status codes, comma-separated.
    pub retry_on: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// A `DestinationRule`: how proxies talk to a host. tidegate reads and writes its
/// `trafficPolicy.tls` (TLS to the backend, istio mode's BackendTLSPolicy).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: DestinationRuleSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The Service, as `<name>.<namespace>.svc.cluster.local` (or a short name, resolved in
    /// the rule's namespace).
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    pub port: PortSelector,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// `trafficPolicy.tls`: `mode` is `DISABLE`, `SIMPLE` (TLS, the backend's certificate
/// checked), `MUTUAL` (and a client certificate) or `ISTIO_MUTUAL` (the mesh's). The CA and
/// the client pair come from the Secret `credentialName` (`ca.crt`, `tls.crt`, `tls.key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// A file path on the proxy (Istio's meaning); tidegate serves CAs from
    /// `credentialName` and reports a path it cannot read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    pub destination: Destination,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    pub port: PortSelector,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSelector {
    pub number: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRedirect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub redirect_code: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectResponse {
    pub status: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOperations {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegexRewrite {
    #[serde(rename = "match")]
    pub match_: String,
    pub rewrite: String,
}

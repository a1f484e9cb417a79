//! Gateway API (`gateway.networking.k8s.io/v1`) objects, with the spec's defaults written
//! out explicitly: a reader of Git cannot rely on an API server to default them, and Argo CD
//! shows routes OutOfSync forever when `group`, `kind` and `weight` are left implicit.

use std::cmp::Reverse;

use serde::Serialize;

use super::meta::ObjectMeta;

pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";
pub const GROUP: &str = "gateway.networking.k8s.io";

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
    pub gateway_class_name: String,
    pub listeners: Vec<Listener>,
    /// Which namespaces' ListenerSets may add listeners to this Gateway (`None`: the
    /// spec's default, none may).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_listeners: Option<AllowedListeners>,
    /// `spec.infrastructure`: kept so the manifests say what Git says; a `parametersRef`
    /// names an object tidegate has no kind for, so such a Gateway is not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
    /// `spec.tls`: the certificate the Gateway shows backends, and how it checks clients'.
    /// Boxed: rare, and large beside the rest of a Gateway (every model object is the size
    /// of the largest kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<GatewayTls>>,
}

/// A Gateway's `spec.tls`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<GatewayBackendTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend: Option<FrontendTls>,
}

/// `spec.tls.backend`: the client certificate the Gateway presents to backends that ask
/// for one (when a BackendTLSPolicy makes the connection TLS).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayBackendTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<ObjectRef>,
}

/// `spec.tls.frontend`: client-certificate validation on the Gateway's TLS listeners, by
/// default and per port.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTls {
    pub default: FrontendTlsConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_port: Vec<FrontendTlsPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<FrontendValidation>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsPort {
    pub port: u16,
    pub tls: FrontendTlsConfig,
}

/// Which clients a TLS listener lets in: those whose certificate chains to one of the CA
/// bundles (`AllowValidOnly`, the default), or any client, asked for a certificate but
/// let in without a valid one (`AllowInsecureFallback`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendValidation {
    pub ca_certificate_refs: Vec<ObjectRef>,
    pub mode: &'static str,
}

impl FrontendValidation {
    pub const ALLOW_VALID_ONLY: &'static str = "AllowValidOnly";
    pub const ALLOW_INSECURE_FALLBACK: &'static str = "AllowInsecureFallback";
}

/// A reference to an object by group, kind, name and (optionally) namespace, with the
/// group and kind written out as given: an unsupported one is reported in status, not
/// refused at decoding (the spec's `InvalidKind` and `InvalidClientCertificateRef`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ObjectRef {
    /// Whether this names a core object of `kind` (group `""`).
    pub fn is_core(&self, kind: &str) -> bool {
        self.group.is_empty() && self.kind == kind
    }
}

/// A `BackendTLSPolicy` (standard since v1.4): connections to the Services it targets are
/// TLS, with the backend's certificate checked against `validation`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicy {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: BackendTlsPolicySpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    pub target_refs: Vec<PolicyTargetRef>,
    pub validation: BackendTlsValidation,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub options: std::collections::BTreeMap<String, String>,
}

/// A policy's target: a Service (group `""`), or one of its ports by port name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// How the backend's certificate is checked: against the CA bundles of ConfigMaps
/// (`caCertificateRefs`) or the system's (`wellKnownCACertificates: System`), for
/// `hostname` (also the SNI sent), or for any of `subjectAltNames` when given.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsValidation {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<LocalObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "wellKnownCACertificates")]
    pub well_known_ca_certificates: Option<String>,
    pub hostname: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A subject alternative name the backend's certificate must carry: `type: Hostname` with
/// `hostname`, or `type: URI` with `uri`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAltName {
    #[serde(rename = "type")]
    pub type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<RouteGroupKindName>,
}

/// A reference by group, kind and name (a Gateway's `parametersRef`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKindName {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// `spec.allowedListeners`: `namespaces.from` is `None`, `Same`, `All` or `Selector`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedListeners {
    pub namespaces: RouteNamespaces,
}

/// A `GatewayClass`: tidegate serves the Gateways of every class it is given (it is the
/// control plane of all the proxies its repository names), so every class is accepted;
/// one with `parametersRef` is not, as tidegate reads no parameters objects.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClass {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: GatewayClassSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    pub controller_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<RouteGroupKindName>,
}

/// A `ListenerSet`: listeners added to a Gateway (`spec.parentRef`) from the ListenerSet's
/// own namespace, so a team can expose its hostnames on a shared Gateway without editing it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSet {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: ListenerSetSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    pub parent_ref: ParentGatewayRef,
    pub listeners: Vec<Listener>,
}

/// A ListenerSet's parent: a Gateway (`namespace` absent: the ListenerSet's own).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentGatewayRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `TLSRoute`, `TCPRoute` and `UDPRoute`: they route connections (TLS by SNI, TCP and UDP by
/// listener), never requests, and differ only in kind and in TLSRoute's `hostnames` (the
/// SNI names it serves), so one type carries all three.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4Route {
    pub api_version: &'static str,
    /// `TLSRoute`, `TCPRoute` or `UDPRoute`.
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: L4RouteSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteSpec {
    pub parent_refs: Vec<ParentRef>,
    /// TLSRoute only: the SNI names, matched like HTTPRoute hostnames.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub rules: Vec<L4RouteRule>,
}

/// A rule of an L4 route: backends only (their `filters` stay empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub backend_refs: Vec<HttpBackendRef>,
}

/// The route kinds that carry connections, with the listener protocols they attach to.
pub const L4_KINDS: [(&str, &str); 3] = [
    ("TLSRoute", "TLS"),
    ("TCPRoute", "TCP"),
    ("UDPRoute", "UDP"),
];

impl L4Route {
    /// The route as an HTTPRoute with its parentRefs, hostnames and backends, so attachment
    /// and reference rules (one implementation, `xds::translate::rules`) read it alike.
    pub fn as_http(&self) -> HttpRoute {
        HttpRoute {
            api_version: API_VERSION,
            kind: "HTTPRoute",
            metadata: self.metadata.clone(),
            spec: HttpRouteSpec {
                parent_refs: self.spec.parent_refs.clone(),
                hostnames: self.spec.hostnames.clone(),
                rules: self
                    .spec
                    .rules
                    .iter()
                    .map(|r| HttpRouteRule {
                        name: r.name.clone(),
                        matches: Vec::new(),
                        backend_refs: r.backend_refs.clone(),
                        ..HttpRouteRule::default()
                    })
                    .collect(),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub port: u16,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    pub mode: &'static str,
    /// Empty (and absent) for `Passthrough`: the backend serves its own certificate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretRef>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub group: &'static str,
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    pub namespaces: RouteNamespaces,
    /// Route kinds the listener accepts; empty: the kinds its protocol supports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    pub group: String,
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    pub from: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// Whether a namespace with these labels is selected (`In`, `NotIn`, `Exists`,
    /// `DoesNotExist`, as Kubernetes defines them).
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.matches_by(|k| labels.get(k).map(String::as_str))
    }

    /// [`LabelSelector::matches`] with labels looked up by `label` (no map to build).
    pub fn matches_by<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| label(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|e| {
                let have = label(&e.key);
                let listed = |v: &str| e.values.iter().any(|x| x == v);
                match e.operator {
                    "In" => have.is_some_and(listed),
                    "NotIn" => have.is_none_or(|v| !listed(v)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: &'static str,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: HttpRouteSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    pub parent_refs: Vec<ParentRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub rules: Vec<HttpRouteRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// An HTTPRoute rule. Intents use exactly this schema, so it doubles as the intent's rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub matches: Vec<HttpRouteMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HttpBackendRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<HttpRouteRetry>,
}

/// `retry`: which responses are retried and how often (Gateway API: codes, attempts,
/// backoff).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRetry {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    pub path: HttpPathMatch,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Sort key of a match in Gateway API precedence; smaller sorts first.
pub type Precedence = (u8, Reverse<usize>, bool, Reverse<usize>, Reverse<usize>);

impl HttpRouteMatch {
    /// Gateway API precedence of one match: Exact, then longer prefixes, then method, more
    /// headers, more query params. Regular expressions go after prefixes (their precedence
    /// is implementation-specific; Istio does the same). Ties are broken by the caller
    /// (route namespace/name, then rule and match order).
    pub fn precedence(&self) -> Precedence {
        let class = match self.path.type_ {
            PathMatchType::Exact => 0,
            PathMatchType::PathPrefix => 1,
            PathMatchType::RegularExpression => 2,
        };
        (
            class,
            Reverse(normalized_prefix(&self.path.value).len()),
            self.method.is_none(),
            Reverse(self.headers.len()),
            Reverse(self.query_params.len()),
        )
    }
}

/// PathPrefix ignores a trailing `/`: `/status/` means the same as `/status`.
pub fn normalized_prefix(p: &str) -> &str {
    if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PathMatchType {
    Exact,
    PathPrefix,
    RegularExpression,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct HttpPathMatch {
    #[serde(rename = "type")]
    pub type_: PathMatchType,
    pub value: String,
}

impl Default for HttpPathMatch {
    /// The spec's default: `PathPrefix /`, which matches every request.
    fn default() -> Self {
        Self {
            type_: PathMatchType::PathPrefix,
            value: "/".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ValueMatchType {
    Exact,
    RegularExpression,
}

/// A header or query-parameter match.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ValueMatch {
    #[serde(rename = "type")]
    pub type_: ValueMatchType,
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub type_: FilterType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "urlRewrite")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectRef>,
}

impl HttpRouteFilter {
    /// A filter of `type_` with no settings yet.
    pub fn of(type_: FilterType) -> Self {
        Self {
            type_,
            request_header_modifier: None,
            response_header_modifier: None,
            request_redirect: None,
            url_rewrite: None,
            request_mirror: None,
            cors: None,
            extension_ref: None,
        }
    }
}

/// `RequestMirror`: a copy of each request (or of a fraction of them) to another backend;
/// its responses are ignored.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    pub backend_ref: BackendObjectRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

impl RequestMirror {
    /// The share of requests mirrored, as (numerator, denominator).
    pub fn share(&self) -> (u32, u32) {
        match (&self.fraction, self.percent) {
            (Some(f), _) => (f.numerator, f.denominator),
            (None, Some(p)) => (p, 100),
            (None, None) => (1, 1),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

/// A reference to a backend object (a mirror's target): a Service unless said otherwise.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendObjectRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `CORS`: answers preflight requests and adds the CORS response headers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

/// A CORS origin as a regular expression, or `None` when it is matched exactly: `*`
/// alone allows any origin; a `*` inside (a host wildcard, `https://*.example.com`)
/// matches within the host, never across `/`.
pub fn origin_regex(o: &str) -> Option<String> {
    if o == "*" {
        Some(".*".into())
    } else if o.contains('*') {
        let pattern = o
            .split('*')
            .map(regex_syntax::escape)
            .collect::<Vec<_>>()
            .join("[^/]*");
        Some(format!("^{pattern}$"))
    } else {
        None
    }
}

/// `ExtensionRef`: an implementation-specific filter object. tidegate has none, so a rule
/// naming one is not served (the spec: such a rule must answer 500).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl HttpRouteFilter {
    /// The header changes of a `RequestHeaderModifier` or `ResponseHeaderModifier`.
    pub fn header_modifier(&self) -> HeaderModifier {
        self.request_header_modifier
            .as_ref()
            .or(self.response_header_modifier.as_ref())
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestMirror,
    #[serde(rename = "CORS")]
    Cors,
    ExtensionRef,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HttpHeader>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HttpHeader>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Defaults to 302 (Envoy's own default is 301, so it is always written).
    pub status_code: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    #[serde(rename = "type")]
    pub type_: PathModifierType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PathModifierType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// 0: not given (only kinds other than Service may leave it out).
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    pub weight: u32,
    /// Filters applied only to requests sent to this backend.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// The API version ReferenceGrants are written with: `v1beta1` is served by every Gateway
/// API release (v1 only from v1.5), so the manifests apply on older clusters too.
pub const REFERENCE_GRANT_API_VERSION: &str = "gateway.networking.k8s.io/v1beta1";

/// Allows routes in other namespaces to reference objects in this one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrant {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: ReferenceGrantSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    pub from: Vec<ReferenceGrantFrom>,
    pub to: Vec<ReferenceGrantTo>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    pub group: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn is_zero(p: &u16) -> bool {
    *p == 0
}

impl ReferenceGrant {
    /// Whether this grant lets an `HTTPRoute` in `from_ns` reference Service `name`.
    pub fn allows_route_to_service(&self, from_ns: &str, name: &str) -> bool {
        self.allows("HTTPRoute", from_ns, name)
    }

    /// Whether this grant lets a route of kind `from_kind` in `from_ns` reference Service
    /// `name` (in the grant's namespace).
    pub fn allows(&self, from_kind: &str, from_ns: &str, name: &str) -> bool {
        self.allows_ref(from_kind, from_ns, "Service", name)
    }

    /// Whether this grant lets a Gateway API object of `from_kind` in `from_ns` reference
    /// the core object `to_kind`/`name` (a Service, or a Gateway's Secret) in the grant's
    /// namespace.
    pub fn allows_ref(&self, from_kind: &str, from_ns: &str, to_kind: &str, name: &str) -> bool {
        self.spec
            .from
            .iter()
            .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
            && self.spec.to.iter().any(|t| {
                t.group.is_empty()
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == name)
            })
    }
}

/// A `GRPCRoute`: routes gRPC calls by service, method and metadata.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRoute {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: GrpcRouteSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    pub parent_refs: Vec<ParentRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub rules: Vec<GrpcRouteRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<GrpcRouteMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HttpBackendRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMethodMatch {
    #[serde(rename = "type")]
    pub type_: ValueMatchType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl GrpcRoute {
    /// The same routing as an HTTPRoute: a gRPC call is an HTTP/2 POST to
    /// `/<service>/<method>`, so every GRPCRoute match is a path match (exact for a
    /// service and method, a whole-segment prefix for a service, a regular expression
    /// otherwise) plus the same header matches. Translation then treats both kinds alike.
    pub fn as_http(&self) -> HttpRoute {
        let rules = self
            .spec
            .rules
            .iter()
            .map(|r| HttpRouteRule {
                name: r.name.clone(),
                matches: if r.matches.is_empty() {
                    vec![HttpRouteMatch::default()]
                } else {
                    r.matches.iter().map(GrpcRouteMatch::as_http).collect()
                },
                filters: r.filters.clone(),
                backend_refs: r.backend_refs.clone(),
                timeouts: None,
                retry: None,
            })
            .collect();
        HttpRoute {
            api_version: API_VERSION,
            kind: "HTTPRoute",
            metadata: self.metadata.clone(),
            spec: HttpRouteSpec {
                parent_refs: self.spec.parent_refs.clone(),
                hostnames: self.spec.hostnames.clone(),
                rules,
            },
        }
    }
}

impl GrpcRouteMatch {
    fn as_http(&self) -> HttpRouteMatch {
        let path = match &self.method {
            None => HttpPathMatch::default(),
            Some(m) => match (m.type_, m.service.as_deref(), m.method.as_deref()) {
                (ValueMatchType::Exact, Some(s), Some(me)) => HttpPathMatch {
                    type_: PathMatchType::Exact,
                    value: format!("/{s}/{me}"),
                },
                (ValueMatchType::Exact, Some(s), None) => HttpPathMatch {
                    type_: PathMatchType::PathPrefix,
                    value: format!("/{s}"),
                },
                (ValueMatchType::Exact, None, Some(me)) => HttpPathMatch {
                    type_: PathMatchType::RegularExpression,
                    value: format!("/[^/]+/{}", regex_escape(me)),
                },
                (ValueMatchType::RegularExpression, s, me) => HttpPathMatch {
                    type_: PathMatchType::RegularExpression,
                    value: format!("/{}/{}", s.unwrap_or("[^/]+"), me.unwrap_or("[^/]+")),
                },
                (ValueMatchType::Exact, None, None) => HttpPathMatch::default(),
            },
        };
        HttpRouteMatch {
            path,
            headers: self.headers.clone(),
            query_params: Vec::new(),
            method: None,
        }
    }
}

/// `s` as a literal in an RE2 pattern.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

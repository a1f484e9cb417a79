//! The plan of one proxy: what it serves, complete and typed, in Envoy's terms but without
//! protobuf. The frontends (`translate::{gateway_api, istio, waypoint}`) read the model and
//! produce a plan; the emitter (`emit`) turns any plan, with the files `serve` was given
//! (endpoints, certificates), into xDS resources. Neither side imports the other: this
//! file is the whole contract between them, so the Gateway API, Istio and ambient
//! frontends cannot drift apart in how a route is expressed to Envoy.
//!
//! Nothing here is a string to be parsed again: a backend is a typed Service port, a
//! refused backend is [`Target::Refused`] (never a magic Service name), a Secret is a
//! [`SecretRef`].

use std::collections::{BTreeMap, BTreeSet};

use crate::model::istio::HBONE_PORT;

/// A Kubernetes Service port a route sends to; names a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub service: String,
    pub namespace: String,
    pub port: u16,
}

impl Backend {
    /// `<svc>.<ns>.svc.cluster.local:<port>`: the cluster (and EDS) name.
    pub fn cluster_name(&self) -> String {
        format!(
            "{}.{}.svc.cluster.local:{}",
            self.service, self.namespace, self.port
        )
    }

    /// `<svc>.<ns>:<port>`: the key of the endpoints file.
    pub fn endpoints_key(&self) -> String {
        format!("{}.{}:{}", self.service, self.namespace, self.port)
    }

    pub fn dns_name(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.service, self.namespace)
    }
}

/// Which proxy a plan is for: the Gateway it implements. Its node id is
/// `<name>.<namespace>` (`node.cluster`, Istio's convention).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProxyRef {
    pub name: String,
    pub namespace: String,
}

impl ProxyRef {
    /// The proxy of the Gateway `name` in `namespace` (`default` when the object has none).
    pub fn of(name: &str, namespace: Option<&str>) -> Self {
        ProxyRef {
            name: name.to_owned(),
            namespace: namespace.unwrap_or("default").to_owned(),
        }
    }

    pub fn id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// A Kubernetes Service (not a port of it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    pub name: String,
    pub namespace: String,
}

/// A TLS Secret (`kubernetes.io/tls`) a listener serves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyPlan {
    pub proxy: ProxyRef,
    /// By port.
    pub listeners: BTreeMap<u16, ListenerPlan>,
    /// Why parts of the model were not served to this proxy (shown in /status).
    pub warnings: Vec<String>,
    /// Backends this gateway reaches through their waypoint over HBONE (ambient mode,
    /// `istio.io/ingress-use-waypoint`), instead of straight to their endpoints.
    pub via_waypoint: BTreeMap<Backend, WaypointRef>,
    /// Set when this proxy is a waypoint.
    pub waypoint: Option<WaypointPlan>,
    /// Backends spoken to over HTTP/2 without TLS (GRPCRoute backends: gRPC needs it).
    pub http2_backends: BTreeSet<Backend>,
    /// TLS to backends (BackendTLSPolicy, DestinationRule `trafficPolicy.tls`), by Service
    /// and port; the emitter picks, for each backend, the entry of its port number, else
    /// of its port's name (the endpoints file's `portName`), else the whole Service's.
    pub upstream_tls: BTreeMap<UpstreamTlsKey, UpstreamTls>,
}

/// Which ports of a Service an [`UpstreamTls`] applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamTlsKey {
    pub service: ServiceRef,
    pub port: PortSel,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortSel {
    /// Every port of the Service.
    Any,
    /// The port with this name (a BackendTLSPolicy's `sectionName`).
    Name(String),
    /// The port with this number (a DestinationRule's `portLevelSettings`).
    Number(u16),
}

/// The proxy speaks TLS to the backend and checks its certificate; a backend that fails
/// the check is never sent a request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpstreamTls {
    /// Sent as SNI.
    pub sni: Option<String>,
    pub trust: Trust,
    /// The certificate must carry one of these names (empty: any name the trust accepts).
    pub names: Vec<San>,
    /// The client certificate shown to backends that ask for one (over SDS).
    pub client_cert: Option<SecretRef>,
    /// What asked for it, for `/status` and explain: `BackendTLSPolicy ns/name`.
    pub source: String,
}

/// What a certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trust {
    /// CA certificates (PEM) from the repository (ConfigMaps' `ca.crt`), concatenated.
    Pem(String),
    /// The proxy's system trust store (`wellKnownCACertificates: System`).
    System,
    /// `ca.crt` of a Secret in `serve --certs` (Istio's `credentialName`), over SDS.
    Secret(SecretRef),
    /// No CA could be had: nothing is trusted, so every connection fails (the spec: never
    /// fall back to plaintext or to not checking). The text says why.
    Nothing(String),
    /// Not checked (Istio's `insecureSkipVerify`, the client allowed anything).
    Unchecked,
}

impl UpstreamTls {
    /// One line for explain and warnings: what asked for it, SNI, trust and names.
    pub fn describe(&self) -> String {
        let trust = match &self.trust {
            Trust::Pem(_) => "CA from the repository".to_owned(),
            Trust::System => "system CAs".to_owned(),
            Trust::Secret(s) => format!("CA of Secret {}/{}", s.namespace, s.name),
            Trust::Nothing(why) => format!("no usable CA ({why})"),
            Trust::Unchecked => "certificate not checked".to_owned(),
        };
        let names: Vec<String> = self
            .names
            .iter()
            .map(|n| match n {
                San::Dns(d) => format!("DNS:{d}"),
                San::Uri(u) => format!("URI:{u}"),
            })
            .collect();
        format!(
            "TLS per {}: SNI {}, {trust}{}{}",
            self.source,
            self.sni.as_deref().unwrap_or("(none)"),
            if names.is_empty() {
                String::new()
            } else {
                format!(", names {}", names.join(" or "))
            },
            self.client_cert
                .as_ref()
                .map(|c| format!(", client certificate {}/{}", c.namespace, c.name))
                .unwrap_or_default()
        )
    }
}

/// A subject alternative name to match exactly.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    Dns(String),
    Uri(String),
}

/// Client-certificate validation on a TLS listener's chain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientValidation {
    pub trust: Trust,
    /// `AllowInsecureFallback`: ask for a certificate, let in clients without a valid one.
    pub allow_insecure: bool,
}

/// The waypoint a Service uses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WaypointRef {
    pub name: String,
    pub namespace: String,
    /// Whether the model has that waypoint Gateway.
    pub exists: bool,
}

impl WaypointRef {
    /// Where the waypoint's HBONE port is: its Service's port 15008.
    pub fn hbone_backend(&self) -> Backend {
        Backend {
            service: self.name.clone(),
            namespace: self.namespace.clone(),
            port: HBONE_PORT,
        }
    }

    pub fn proxy_id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// Routes of one Service, each with the port it is limited to (`None`: every port).
pub type ServiceRoutes = Vec<(Option<u16>, RoutePlan)>;

/// What a waypoint serves: the L7 rules of the Services bound to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WaypointPlan {
    /// Namespaces whose Services use this waypoint (`istio.io/use-waypoint`).
    pub namespaces: Vec<String>,
    /// Routes of the HTTPRoutes whose parent is a Service, by Service, each with the
    /// Service port it is limited to (`None`: every port), in match order.
    pub routes: BTreeMap<ServiceRef, ServiceRoutes>,
    /// Consumer routes (GAMMA): routes of a namespace other than the Service's and the
    /// waypoint's, by Service and by that namespace. They apply to requests from clients of
    /// that namespace only (the HBONE peer's SPIFFE identity says which), instead of the
    /// Service's own routes.
    pub consumer_routes: BTreeMap<ServiceRef, BTreeMap<String, ServiceRoutes>>,
}

impl ProxyPlan {
    /// Every Service port the proxy's routes send or mirror to (requests and connections).
    /// Refused backends are not among them: they have no cluster, so their share of requests
    /// is answered 500 (and of connections, closed).
    pub fn backends(&self) -> Vec<Backend> {
        let mut out = self.http_backends();
        out.extend(self.l4_backends());
        out.sort();
        out.dedup();
        out
    }

    /// The upstream TLS of backend `b` whose Service port is named `port_name`: the entry of
    /// its port number, else of its port name, else of the whole Service.
    pub fn upstream_tls_for(&self, b: &Backend, port_name: Option<&str>) -> Option<&UpstreamTls> {
        if self.upstream_tls.is_empty() {
            return None;
        }
        let key = |port| UpstreamTlsKey {
            service: ServiceRef {
                name: b.service.clone(),
                namespace: b.namespace.clone(),
            },
            port,
        };
        self.upstream_tls
            .get(&key(PortSel::Number(b.port)))
            .or_else(|| {
                port_name.and_then(|n| self.upstream_tls.get(&key(PortSel::Name(n.to_owned()))))
            })
            .or_else(|| self.upstream_tls.get(&key(PortSel::Any)))
    }

    /// Secrets the proxy reads besides its listeners' certificates: client certificates and
    /// CA bundles (`Trust::Secret`) of upstream TLS and of client validation.
    pub fn tls_secrets(&self) -> Vec<&SecretRef> {
        fn trust(t: &Trust) -> Option<&SecretRef> {
            match t {
                Trust::Secret(s) => Some(s),
                _ => None,
            }
        }
        let mut out: Vec<&SecretRef> = self
            .upstream_tls
            .values()
            .flat_map(|u| u.client_cert.iter().chain(trust(&u.trust)))
            .chain(
                self.listeners
                    .values()
                    .flat_map(|l| l.http().tls.iter())
                    .filter_map(|t| t.client_validation.as_ref())
                    .chain(self.listeners.values().flat_map(|l| {
                        match &l.kind {
                            ListenerKind::Tls(t) => t
                                .chains
                                .iter()
                                .filter_map(|c| c.client_validation.as_ref())
                                .collect(),
                            _ => Vec::new(),
                        }
                    }))
                    .filter_map(|v| trust(&v.trust)),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The Service ports of the proxy's connection routes (TLS, TCP, UDP).
    pub fn l4_backends(&self) -> Vec<Backend> {
        let mut out: Vec<Backend> = self
            .listeners
            .values()
            .flat_map(ListenerPlan::l4_forwards)
            .flat_map(|f| &f.backends)
            .filter_map(|t| t.target.service().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The Service ports the proxy's HTTP routes send or mirror to.
    pub fn http_backends(&self) -> Vec<Backend> {
        let mut out: Vec<Backend> = self
            .listeners
            .values()
            .flat_map(|l| l.http().vhosts.iter())
            .flat_map(|v| v.routes.iter())
            .chain(self.waypoint.iter().flat_map(|w| {
                w.routes
                    .values()
                    .chain(w.consumer_routes.values().flat_map(|c| c.values()))
                    .flatten()
                    .map(|(_, r)| r)
            }))
            .flat_map(|r| match &r.action {
                Action::Forward(f) => f
                    .backends
                    .iter()
                    .filter_map(|w| w.target.service().cloned())
                    .chain(f.mirrors.iter().map(|m| m.backend.clone()))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerPlan {
    pub port: u16,
    pub kind: ListenerKind,
}

/// What a listener speaks: HTTP (and HTTPS, terminated) routes requests; TLS, TCP and UDP
/// listeners route connections (by SNI, or all of a port's), emitted as `tcp_proxy` and
/// `udp_proxy` chains. One port has one kind: Envoy's listener is per port and protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum ListenerKind {
    Http(HttpListener),
    Tls(TlsListener),
    Tcp(L4Forward),
    Udp(L4Forward),
}

/// A TLS listener: one chain per SNI name (or one for any name), each passing the TLS
/// stream through untouched to its backends or terminating it first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsListener {
    pub chains: Vec<SniChain>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SniChain {
    /// The SNI names (exact or `*.suffix`) this chain serves; empty: any name, including
    /// none.
    pub server_names: Vec<String>,
    /// Terminate TLS with this certificate, then forward the plain stream; `None`:
    /// passthrough (the backend does the TLS handshake with the client).
    pub terminate: Option<SecretRef>,
    /// When terminating: clients must show a certificate this checks (Gateway
    /// `spec.tls.frontend`).
    pub client_validation: Option<ClientValidation>,
    pub forward: L4Forward,
    /// The Gateway listener (or Istio server) the chain comes from.
    pub listener: String,
}

/// Where connections (or UDP sessions) go: weighted backends, as a route's rule chose them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct L4Forward {
    /// Where the route came from, e.g. `tcproute/ns/name/rule/0`.
    pub name: String,
    /// Weight-0 entries are dropped. Refused backends keep their share: it has no cluster,
    /// so those connections are closed. Empty: every connection is closed.
    pub backends: Vec<L4Target>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct L4Target {
    pub target: Target,
    pub weight: u32,
}
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpListener {
    /// TLS termination (HTTPS): one filter chain per entry. Empty: plain HTTP.
    pub tls: Vec<TlsPlan>,
    /// Virtual hosts in any order: Envoy picks by domain specificity, not by order.
    pub vhosts: Vec<VhostPlan>,
}

impl ListenerPlan {
    pub fn http_listener(port: u16) -> Self {
        ListenerPlan {
            port,
            kind: ListenerKind::Http(HttpListener::default()),
        }
    }

    /// The HTTP side of the listener; an L4 listener has none (an empty one is returned,
    /// so request-level readers see no virtual hosts there).
    pub fn http(&self) -> &HttpListener {
        static NONE: std::sync::LazyLock<HttpListener> =
            std::sync::LazyLock::new(HttpListener::default);
        match &self.kind {
            ListenerKind::Http(h) => h,
            _ => &NONE,
        }
    }

    /// The HTTP side of an HTTP listener.
    ///
    /// # Panics
    /// On an L4 listener: frontends build HTTP listeners before they add to them.
    pub fn http_mut(&mut self) -> &mut HttpListener {
        match &mut self.kind {
            ListenerKind::Http(h) => h,
            _ => panic!("port {} is not an HTTP listener", self.port),
        }
    }

    /// The TLS Secrets the listener serves (HTTPS chains and terminating TLS chains).
    pub fn secrets(&self) -> Vec<&SecretRef> {
        match &self.kind {
            ListenerKind::Http(h) => h.tls.iter().map(|t| &t.secret).collect(),
            ListenerKind::Tls(t) => t
                .chains
                .iter()
                .filter_map(|c| c.terminate.as_ref())
                .collect(),
            ListenerKind::Tcp(_) | ListenerKind::Udp(_) => Vec::new(),
        }
    }

    /// The connection routes of the listener (TLS chains, or the TCP/UDP forward).
    pub fn l4_forwards(&self) -> Vec<&L4Forward> {
        match &self.kind {
            ListenerKind::Http(_) => Vec::new(),
            ListenerKind::Tls(t) => t.chains.iter().map(|c| &c.forward).collect(),
            ListenerKind::Tcp(f) | ListenerKind::Udp(f) => vec![f],
        }
    }
}

/// One certificate of an HTTPS listener and the SNI names it is served for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsPlan {
    /// Empty: any name (the listener has no hostname).
    pub server_names: Vec<String>,
    pub secret: SecretRef,
    /// The Gateway listener this chain is (empty for Istio servers): a request whose
    /// Host belongs to another listener of the port is misdirected (HTTP 421).
    pub listener: String,
    /// Clients must show a certificate this checks (Gateway `spec.tls.frontend`, Istio
    /// `tls.mode: MUTUAL`); `None`: none is asked for.
    pub client_validation: Option<ClientValidation>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VhostPlan {
    pub name: String,
    /// The Gateway listener that owns these domains (empty for Istio servers).
    pub listener: String,
    pub domains: Vec<String>,
    /// In match order: Envoy takes the first route that matches.
    pub routes: Vec<RoutePlan>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RoutePlan {
    /// Where the route came from, e.g. `httproute/ns/name/rule/0/match/1`; Envoy shows it
    /// in config dumps and access logs.
    pub name: String,
    pub path: PathMatch,
    pub headers: Vec<(String, StrMatch)>,
    pub query: Vec<(String, StrMatch)>,
    pub method: Option<String>,
    pub action: Action,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// CORS policy answered by Envoy's CORS filter (Gateway API `CORS` filter).
    pub cors: Option<CorsPlan>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorsPlan {
    /// Allowed origins: exact, or a regular expression (wildcards become one).
    pub allow_origins: Vec<StrMatch>,
    pub allow_credentials: bool,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// String prefix (VirtualService `prefix`, and Gateway API `PathPrefix /`).
    Prefix(String),
    /// Whole path segments (Gateway API `PathPrefix` other than `/`), no trailing slash.
    SegmentPrefix(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    /// A fixed status, e.g. 500 for a rule that has no usable backend.
    Status(u16),
}

/// Where a share of a rule's requests goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Service(Backend),
    /// A backendRef the route may not use: its share of the requests is answered 500
    /// (Gateway API), 503 for gRPC. It has no cluster and never reaches a waypoint.
    Refused(Refused),
}

impl Target {
    pub fn service(&self) -> Option<&Backend> {
        match self {
            Target::Service(b) => Some(b),
            Target::Refused(_) => None,
        }
    }
}

/// A backendRef that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refused {
    /// The backendRef as written: group/kind/namespace/name.
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// 0 when the reference gives none (kinds other than Service may omit it).
    pub port: u16,
    pub reason: RefusedReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefusedReason {
    /// Not a core Service (the only backend kind tidegate routes to).
    NotAService,
    /// A Service in another namespace that no ReferenceGrant lets the route use.
    NotPermitted,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WeightedTarget {
    pub target: Target,
    /// Relative weight; weight 0 entries are dropped before this point.
    pub weight: u32,
    /// Header changes for requests sent to this backend only (the backendRef's own
    /// filters).
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Forward {
    pub backends: Vec<WeightedTarget>,
    /// Copies of the requests, each to a backend, for a share (numerator, denominator).
    pub mirrors: Vec<Mirror>,
    pub retry: Option<RetryPlan>,
    /// Timeout of each try (Gateway API `backendRequest` when `request` is set too).
    pub per_try_timeout_ms: Option<u64>,
    /// Request timeout in milliseconds (`None`: Envoy's default; `Some(0)`: disabled).
    pub timeout_ms: Option<u64>,
    /// A gRPC route: a backend that does not exist answers 503, which gRPC clients see as
    /// UNAVAILABLE (GRPCRoute's rule), instead of HTTPRoute's 500.
    pub grpc: bool,
    pub host_rewrite: Option<String>,
    pub path_rewrite: Option<PathRewrite>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    pub backend: Backend,
    pub numerator: u32,
    pub denominator: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryPlan {
    /// Envoy retry conditions (`connect-failure`, `5xx`, …).
    pub on: Vec<String>,
    /// HTTP status codes retried besides.
    pub codes: Vec<u16>,
    pub attempts: u32,
    pub backoff_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// Replace the matched prefix.
    Prefix(String),
    /// Replace the whole path (query kept).
    Full(String),
    /// Regex substitution over the path.
    Regex {
        pattern: String,
        substitution: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    pub status: u16,
}

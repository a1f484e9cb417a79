//! The routing plan of one proxy: listeners, virtual hosts and routes in Envoy's terms but
//! without protobuf. Both Gateway API objects and Istio Gateway + VirtualService become a
//! plan, and one emitter (`envoy.rs`) turns any plan into xDS resources, so the two APIs
//! cannot drift apart in how a route is expressed to Envoy.

use std::collections::BTreeMap;

/// A Kubernetes Service port a route sends to; names a cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyPlan {
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
    pub http2_backends: std::collections::BTreeSet<Backend>,
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

/// The port waypoints terminate HBONE on (fixed by Istio's ambient mode).
pub const HBONE_PORT: u16 = 15008;

/// Routes of one Service, each with the port it is limited to (`None`: every port).
pub type ServiceRoutes = Vec<(Option<u16>, RoutePlan)>;

/// What a waypoint serves: the L7 rules of the Services bound to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WaypointPlan {
    /// Namespaces whose Services use this waypoint (`istio.io/use-waypoint`).
    pub namespaces: Vec<String>,
    /// Routes of the HTTPRoutes whose parent is a Service, by (service, namespace), each
    /// with the Service port it is limited to (`None`: every port), in match order.
    pub routes: BTreeMap<(String, String), ServiceRoutes>,
}

impl ProxyPlan {
    pub fn backends(&self) -> Vec<Backend> {
        let mut out: Vec<Backend> = self
            .listeners
            .values()
            .flat_map(|l| l.vhosts.iter())
            .flat_map(|v| v.routes.iter())
            .chain(
                self.waypoint
                    .iter()
                    .flat_map(|w| w.routes.values().flatten().map(|(_, r)| r)),
            )
            .flat_map(|r| match &r.action {
                Action::Forward(f) => f
                    .backends
                    .iter()
                    .map(|(b, _)| b.clone())
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
    /// TLS termination (HTTPS): one filter chain per entry. Empty: plain HTTP.
    pub tls: Vec<TlsPlan>,
    /// Virtual hosts in any order: Envoy picks by domain specificity, not by order.
    pub vhosts: Vec<VhostPlan>,
}

/// One certificate of an HTTPS listener and the SNI names it is served for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsPlan {
    /// Empty: any name (the listener has no hostname).
    pub server_names: Vec<String>,
    /// The Secret, (namespace, name).
    pub secret: (String, String),
    /// The Gateway listener this chain is (empty for Istio servers): a request whose
    /// Host belongs to another listener of the port is misdirected (HTTP 421).
    pub listener: String,
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

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Forward {
    /// Weighted backends; weight 0 entries are dropped before this point.
    pub backends: Vec<(Backend, u32)>,
    /// Header changes for requests sent to one backend (by index into `backends`), from
    /// the backendRef's own filters.
    pub backend_headers: Vec<(usize, HeaderOps, HeaderOps)>,
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

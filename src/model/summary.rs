//! What the intents of a commit say beyond the objects they expand to, as far as a stage
//! after expansion needs it: the per-namespace READMEs show curl checks per intent. The
//! intent layer fills these in; render reads them without knowing the intent format.

use super::gateway_api::HttpRouteRule;

/// How an intent's gateway is built and which data plane its namespace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Istio `Gateway` + `VirtualService` on an injected gateway (seed §2.2).
    Istio,
    /// Gateway API `Gateway` + `HTTPRoute`, sidecar data plane (seed §2.4).
    GatewayApi,
    /// Gateway API ingress plus a waypoint that enforces the rules (seed §2.6).
    Ambient,
}

impl Mode {
    pub const NAMES: [&'static str; 3] = ["istio", "gateway-api", "ambient"];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Istio => "istio",
            Mode::GatewayApi => "gateway-api",
            Mode::Ambient => "ambient",
        }
    }

    pub fn is_sidecar(self) -> bool {
        !matches!(self, Mode::Ambient)
    }
}

/// How a gateway is reached from outside the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exposure {
    LoadBalancer,
    ClusterIP,
    OpenShiftRoute,
}

impl Exposure {
    pub const NAMES: [&'static str; 3] = ["LoadBalancer", "ClusterIP", "OpenShiftRoute"];

    pub fn as_str(self) -> &'static str {
        match self {
            Exposure::LoadBalancer => "LoadBalancer",
            Exposure::ClusterIP => "ClusterIP",
            Exposure::OpenShiftRoute => "OpenShiftRoute",
        }
    }

    /// The Kubernetes Service type the gateway's Service gets.
    pub fn service_type(self) -> &'static str {
        match self {
            Exposure::LoadBalancer => "LoadBalancer",
            // Behind an OpenShift Route the router is the entry point (seed §2.3.1).
            Exposure::ClusterIP | Exposure::OpenShiftRoute => "ClusterIP",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Https,
    /// Connections routed by SNI: passed through to the backend, or terminated first.
    Tls,
    Tcp,
    Udp,
}

impl Protocol {
    pub const NAMES: [&'static str; 5] = ["HTTP", "HTTPS", "TLS", "TCP", "UDP"];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => return None,
        })
    }

    /// Whether the listener routes connections (TLS, TCP, UDP) rather than requests.
    pub fn is_l4(self) -> bool {
        matches!(self, Protocol::Tls | Protocol::Tcp | Protocol::Udp)
    }

    /// Whether connections are told apart by name (SNI or Host): TCP and UDP have none.
    pub fn has_hostnames(self) -> bool {
        !matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// Where the config of a render was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provenance {
    Commit {
        /// Full hex id of the commit.
        sha: String,
        /// First line of the commit message.
        subject: String,
        /// The config's directory inside the repository ("" for the root).
        prefix: String,
    },
    /// Files read from a directory that is not in a Git repository.
    Directory,
}

/// One intent, as the READMEs describe it. Borrows from the intent: built per render.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntentSummary<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub mode: Mode,
    /// The first hostname (the one the checks use).
    pub host: &'a str,
    pub gateway_namespace: &'a str,
    pub gateway: &'a str,
    pub port: u16,
    pub protocol: Protocol,
    /// Protocol TLS without a certificate: the backend's own answers.
    pub passthrough: bool,
    pub exposure: Exposure,
    pub rules: &'a [HttpRouteRule],
}

/// What a render says besides the objects: where they came from, and the intents.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary<'a> {
    pub provenance: Provenance,
    /// In the config's order (namespace, then name).
    pub intents: Vec<IntentSummary<'a>>,
}

//! The resource types tidegate serves, in the order ADS sends them.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use prost::Name;

/// Order matters: SDS, then CDS before EDS before LDS before RDS, so a proxy never holds a route to a
/// cluster it has not been told about (xDS "make before break").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TypeUrl {
    /// First: a rotated certificate reaches the proxy before anything that needs it.
    Secret,
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl TypeUrl {
    pub const ALL: [TypeUrl; 5] = [
        TypeUrl::Secret,
        TypeUrl::Cluster,
        TypeUrl::Endpoint,
        TypeUrl::Listener,
        TypeUrl::Route,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn url(self) -> String {
        match self {
            TypeUrl::Secret => Secret::type_url(),
            TypeUrl::Cluster => Cluster::type_url(),
            TypeUrl::Endpoint => ClusterLoadAssignment::type_url(),
            TypeUrl::Listener => Listener::type_url(),
            TypeUrl::Route => RouteConfiguration::type_url(),
        }
    }

    pub fn parse(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.url() == url)
    }

    /// Short name for status output.
    pub fn short(self) -> &'static str {
        match self {
            TypeUrl::Secret => "SDS",
            TypeUrl::Cluster => "CDS",
            TypeUrl::Endpoint => "EDS",
            TypeUrl::Listener => "LDS",
            TypeUrl::Route => "RDS",
        }
    }

    /// LDS and CDS are always sent whole in state-of-the-world (a listener or cluster
    /// missing from a response is removed); RDS and EDS are sent by name.
    pub fn is_wildcard_type(self) -> bool {
        matches!(self, TypeUrl::Cluster | TypeUrl::Listener)
    }
}

//! The model: the Kubernetes objects a commit stands for.
//!
//! Intents expand into these objects; manifests are these objects serialized, and the xDS
//! translator reads these objects (never the intents), so what the proxies do and what
//! Argo CD or Flux apply cannot disagree. Field order in the structs is the order written
//! to YAML; maps are `BTreeMap`, so output is deterministic.

pub mod core;
pub mod duration;
pub mod gateway_api;
pub mod istio;
pub mod meta;
pub mod names;
pub mod openshift;
pub mod summary;

use serde::Serialize;

pub use meta::ObjectMeta;

/// One Kubernetes object tidegate renders.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Namespace(core::Namespace),
    Service(core::Service),
    Gateway(gateway_api::Gateway),
    HttpRoute(gateway_api::HttpRoute),
    GrpcRoute(gateway_api::GrpcRoute),
    /// TLSRoute, TCPRoute or UDPRoute (by its `kind`).
    L4Route(gateway_api::L4Route),
    ListenerSet(gateway_api::ListenerSet),
    GatewayClass(gateway_api::GatewayClass),
    ReferenceGrant(gateway_api::ReferenceGrant),
    BackendTlsPolicy(gateway_api::BackendTlsPolicy),
    ConfigMap(core::ConfigMap),
    IstioGateway(istio::Gateway),
    DestinationRule(istio::DestinationRule),
    VirtualService(istio::VirtualService),
    Route(openshift::Route),
}

impl Object {
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::L4Route(o) => &o.metadata,
            Object::ListenerSet(o) => &o.metadata,
            Object::GatewayClass(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
            Object::BackendTlsPolicy(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::DestinationRule(o) => &o.metadata,
            Object::IstioGateway(o) => &o.metadata,
            Object::VirtualService(o) => &o.metadata,
            Object::Route(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::HttpRoute(o) => &mut o.metadata,
            Object::GrpcRoute(o) => &mut o.metadata,
            Object::L4Route(o) => &mut o.metadata,
            Object::ListenerSet(o) => &mut o.metadata,
            Object::GatewayClass(o) => &mut o.metadata,
            Object::ReferenceGrant(o) => &mut o.metadata,
            Object::BackendTlsPolicy(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::DestinationRule(o) => &mut o.metadata,
            Object::IstioGateway(o) => &mut o.metadata,
            Object::VirtualService(o) => &mut o.metadata,
            Object::Route(o) => &mut o.metadata,
        }
    }

    pub fn api_version(&self) -> &'static str {
        match self {
            Object::Namespace(_) | Object::Service(_) | Object::ConfigMap(_) => "v1",
            Object::Gateway(_)
            | Object::HttpRoute(_)
            | Object::GrpcRoute(_)
            | Object::L4Route(_)
            | Object::ListenerSet(_)
            | Object::GatewayClass(_)
            | Object::BackendTlsPolicy(_) => gateway_api::API_VERSION,
            Object::ReferenceGrant(_) => gateway_api::REFERENCE_GRANT_API_VERSION,
            Object::IstioGateway(_) | Object::VirtualService(_) | Object::DestinationRule(_) => {
                istio::API_VERSION
            }
            Object::Route(_) => openshift::API_VERSION,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Service(_) => "Service",
            Object::Gateway(_) | Object::IstioGateway(_) => "Gateway",
            Object::HttpRoute(_) => "HTTPRoute",
            Object::GrpcRoute(_) => "GRPCRoute",
            Object::L4Route(r) => r.kind,
            Object::ListenerSet(_) => "ListenerSet",
            Object::GatewayClass(_) => "GatewayClass",
            Object::ReferenceGrant(_) => "ReferenceGrant",
            Object::BackendTlsPolicy(_) => "BackendTLSPolicy",
            Object::ConfigMap(_) => "ConfigMap",
            Object::VirtualService(_) => "VirtualService",
            Object::DestinationRule(_) => "DestinationRule",
            Object::Route(_) => "Route",
        }
    }

    /// The namespace the object lives in (a Namespace lives in itself, for layout purposes).
    pub fn namespace(&self) -> &str {
        let m = self.meta();
        m.namespace.as_deref().unwrap_or(&m.name)
    }

    /// A short, lower-case kind name that is unique across API groups, used in file names.
    pub fn file_kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "namespace",
            Object::Service(_) => "service",
            Object::Gateway(_) => "gateway",
            Object::HttpRoute(_) => "httproute",
            Object::GrpcRoute(_) => "grpcroute",
            Object::L4Route(r) => match r.kind {
                "TLSRoute" => "tlsroute",
                "TCPRoute" => "tcproute",
                _ => "udproute",
            },
            Object::ListenerSet(_) => "listenerset",
            Object::GatewayClass(_) => "gatewayclass",
            Object::ReferenceGrant(_) => "referencegrant",
            Object::BackendTlsPolicy(_) => "backendtlspolicy",
            Object::ConfigMap(_) => "configmap",
            Object::DestinationRule(_) => "destinationrule",
            Object::IstioGateway(_) => "istio-gateway",
            Object::VirtualService(_) => "virtualservice",
            Object::Route(_) => "route",
        }
    }

    /// Sort key that gives every object one place in the output.
    pub fn key(&self) -> (&str, &'static str, &str) {
        (
            self.namespace(),
            self.file_kind(),
            self.meta().name.as_str(),
        )
    }
}

/// Everything one commit expands to, sorted by [`Object::key`]. Objects are shared: an
/// object no change touched is the very one of the previous commit (see
/// `intent::expand::Cache`), so later stages can tell it is unchanged by its address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub objects: Vec<std::sync::Arc<Object>>,
}

impl Model {
    pub fn new(objects: Vec<Object>) -> Self {
        Self::from_shared(objects.into_iter().map(std::sync::Arc::new).collect())
    }

    pub fn from_shared(mut objects: Vec<std::sync::Arc<Object>>) -> Self {
        // Borrowed keys: this runs on every commit over every object.
        objects.sort_by(|a, b| a.key().cmp(&b.key()));
        Self { objects }
    }
}

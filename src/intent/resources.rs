//! Plain objects in `resources/`: Gateway API `Gateway`, `HTTPRoute`, `GRPCRoute`,
//! `ReferenceGrant`, Istio `Gateway` and `VirtualService`, and `Namespace`, decoded into the
//! model beside what intents expand to.
//!
//! What a Kubernetes API server would refuse (the CRD schemas and their CEL rules: missing
//! names, bad enums, malformed paths) rejects the commit with file, line and field, as for
//! intents. What an API server accepts but a controller reports in status (a backend of an
//! unknown kind, a Service that does not exist, a parentRef that matches no listener) is
//! accepted here too and reported as route status (`crate::status`), because that is
//! what every other Gateway API implementation does with the same manifests.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::decode::{Cx, Obj};
use super::gateway_api;
use super::istio as istio_decode;
use super::node::{Node, Pos, Value};
use crate::model::core::Namespace;
use crate::model::gateway_api::{
    self as gw, AllowedRoutes, GrpcMethodMatch, GrpcRoute, GrpcRouteMatch, GrpcRouteRule,
    GrpcRouteSpec, HttpRoute, HttpRouteSpec, LabelSelector, LabelSelectorRequirement, Listener,
    ListenerTls, ParentRef, ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec,
    ReferenceGrantTo, RouteGroupKind, RouteNamespaces, SecretRef, ValueMatchType,
};
use crate::model::istio;
use crate::model::names::{is_dns1123_subdomain, is_gateway_hostname};
use crate::model::{Object, ObjectMeta};

/// Where plain objects live in the config repo.
pub const RESOURCES_DIR: &str = "resources/";

/// One plain object and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub object: Arc<Object>,
    pub file: String,
    pub pos: Pos,
}

const KINDS: &str = "Namespace (v1), Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute, ListenerSet, GatewayClass, BackendTLSPolicy (gateway.networking.k8s.io/v1), ReferenceGrant (gateway.networking.k8s.io/v1beta1 or v1), ConfigMap (v1), Gateway, VirtualService and DestinationRule (networking.istio.io/v1)";

/// Metadata keys an exported object carries that mean nothing in Git; accepted and dropped.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
];

/// Decodes every document of one `resources/` file.
pub fn decode_documents(cx: &mut Cx<'_>, docs: &[Node]) -> Vec<Resource> {
    let was_plain = cx.plain;
    cx.plain = true;
    let mut out = Vec::new();
    for doc in docs {
        if doc.value == Value::Null {
            continue;
        }
        if let Some(object) = decode_object(cx, doc) {
            out.push(Resource {
                object: Arc::new(object),
                file: cx.file.to_owned(),
                pos: doc.pos,
            });
        }
    }
    cx.plain = was_plain;
    out
}

fn decode_object(cx: &mut Cx<'_>, node: &Node) -> Option<Object> {
    let before = cx.problems.len();
    let o = cx.object(
        node,
        "",
        &["apiVersion", "kind", "metadata", "spec", "status", "data"],
    )?;
    let api_version = o
        .require(cx, "apiVersion", "such as gateway.networking.k8s.io/v1")
        .and_then(|n| cx.string(n, "apiVersion"));
    let kind = o
        .require(cx, "kind", KINDS)
        .and_then(|n| cx.string(n, "kind"));
    let (api_version, kind) = (api_version?, kind?);
    let kind_pos = o.get("kind").map_or(node.pos, |n| n.pos);
    let istio_kind = api_version.starts_with("networking.istio.io/");
    let valid_versions: &[&str] = match kind.as_str() {
        "Namespace" | "ConfigMap" => &["v1"],
        "Gateway" | "VirtualService" | "DestinationRule" if istio_kind => istio_decode::VERSIONS,
        "Gateway" | "HTTPRoute" | "GRPCRoute" | "ListenerSet" | "GatewayClass" => {
            &[gw::API_VERSION]
        }
        // Exported from clusters that still serve the alpha versions; written back as v1.
        "TLSRoute" => &[
            gw::API_VERSION,
            "gateway.networking.k8s.io/v1alpha3",
            "gateway.networking.k8s.io/v1alpha2",
        ],
        "TCPRoute" | "UDPRoute" => &[gw::API_VERSION, "gateway.networking.k8s.io/v1alpha2"],
        "ReferenceGrant" => &[gw::REFERENCE_GRANT_API_VERSION, gw::API_VERSION],
        // v1alpha3 is what clusters served before v1.4; written back as v1.
        "BackendTLSPolicy" => &[gw::API_VERSION, "gateway.networking.k8s.io/v1alpha3"],
        other => {
            cx.report(
                kind_pos,
                "kind",
                format!("tidegate does not read {other} objects; valid in resources/: {KINDS}"),
            );
            return None;
        }
    };
    if !valid_versions.contains(&api_version.as_str()) {
        let pos = o.get("apiVersion").map_or(node.pos, |n| n.pos);
        cx.report(
            pos,
            "apiVersion",
            format!(
                "`{api_version}` is not supported for {kind}; valid: {}",
                valid_versions.join(", ")
            ),
        );
        return None;
    }
    let namespaced = !matches!(kind.as_str(), "Namespace" | "GatewayClass");
    let metadata = decode_metadata(cx, &o, namespaced);
    let spec = o.get("spec");
    if kind != "ConfigMap"
        && let Some(n) = o.get("data")
    {
        cx.report(
            n.pos,
            "data",
            format!("a {kind} has no data; only a ConfigMap has"),
        );
    }
    let object = match kind.as_str() {
        "ConfigMap" => {
            if let Some(n) = spec {
                cx.report(
                    n.pos,
                    "spec",
                    "a ConfigMap has no spec; its contents go under data",
                );
            }
            let mut data = BTreeMap::new();
            if let Some(n) = o.get("data") {
                for (_, k, v) in cx.string_map(n, "data").unwrap_or_default() {
                    data.insert(k, v);
                }
            }
            Object::ConfigMap(crate::model::core::ConfigMap {
                api_version: "v1",
                kind: "ConfigMap",
                metadata: metadata?,
                data,
            })
        }
        "BackendTLSPolicy" => {
            let spec = require_spec(cx, &o)?;
            Object::BackendTlsPolicy(gw::BackendTlsPolicy {
                api_version: gw::API_VERSION,
                kind: "BackendTLSPolicy",
                metadata: metadata?,
                spec: decode_backend_tls_spec(cx, spec)?,
            })
        }
        "Namespace" => {
            if let Some(n) = spec {
                cx.report(
                    n.pos,
                    "spec",
                    "a Namespace has no spec tidegate reads; remove it",
                );
            }
            Object::Namespace(Namespace::new(metadata?))
        }
        "Gateway" if istio_kind => {
            let spec = require_spec(cx, &o)?;
            Object::IstioGateway(istio::Gateway {
                api_version: istio::API_VERSION,
                kind: "Gateway",
                metadata: metadata?,
                spec: istio_decode::gateway(cx, spec)?,
            })
        }
        "VirtualService" => {
            let spec = require_spec(cx, &o)?;
            Object::VirtualService(istio::VirtualService {
                api_version: istio::API_VERSION,
                kind: "VirtualService",
                metadata: metadata?,
                spec: istio_decode::virtual_service(cx, spec)?,
            })
        }
        "DestinationRule" => {
            let spec = require_spec(cx, &o)?;
            Object::DestinationRule(istio::DestinationRule {
                api_version: istio::API_VERSION,
                kind: "DestinationRule",
                metadata: metadata?,
                spec: istio_decode::destination_rule(cx, spec)?,
            })
        }
        "Gateway" => {
            let spec = require_spec(cx, &o)?;
            Object::Gateway(gw::Gateway {
                api_version: gw::API_VERSION,
                kind: "Gateway",
                metadata: metadata?,
                spec: decode_gateway_spec(cx, spec)?,
            })
        }
        "HTTPRoute" => {
            let spec = require_spec(cx, &o)?;
            let (parent_refs, hostnames, mut rules, given) =
                decode_route_spec(cx, spec, |cx, n, f| {
                    gateway_api::decode_rule(cx, n, f).map(|(rule, _)| rule)
                })?;
            // The spec's default: one rule matching every path, with no backend (500).
            if !given {
                rules.push(gw::HttpRouteRule {
                    matches: vec![gw::HttpRouteMatch::default()],
                    ..Default::default()
                });
            }
            Object::HttpRoute(HttpRoute {
                api_version: gw::API_VERSION,
                kind: "HTTPRoute",
                metadata: metadata?,
                spec: HttpRouteSpec {
                    parent_refs,
                    hostnames,
                    rules,
                },
            })
        }
        "GRPCRoute" => {
            let spec = require_spec(cx, &o)?;
            let (parent_refs, hostnames, rules, _) = decode_route_spec(cx, spec, decode_grpc_rule)?;
            Object::GrpcRoute(GrpcRoute {
                api_version: gw::API_VERSION,
                kind: "GRPCRoute",
                metadata: metadata?,
                spec: GrpcRouteSpec {
                    parent_refs,
                    hostnames,
                    rules,
                },
            })
        }
        "TLSRoute" | "TCPRoute" | "UDPRoute" => {
            let spec = require_spec(cx, &o)?;
            let kind = match kind.as_str() {
                "TLSRoute" => "TLSRoute",
                "TCPRoute" => "TCPRoute",
                _ => "UDPRoute",
            };
            Object::L4Route(decode_l4_route(cx, kind, metadata?, spec)?)
        }
        "GatewayClass" => {
            let spec = require_spec(cx, &o)?;
            Object::GatewayClass(gw::GatewayClass {
                api_version: gw::API_VERSION,
                kind: "GatewayClass",
                metadata: metadata?,
                spec: decode_gateway_class_spec(cx, spec)?,
            })
        }
        "ListenerSet" => {
            let spec = require_spec(cx, &o)?;
            Object::ListenerSet(gw::ListenerSet {
                api_version: gw::API_VERSION,
                kind: "ListenerSet",
                metadata: metadata?,
                spec: decode_listener_set_spec(cx, spec)?,
            })
        }
        _ => {
            let spec = require_spec(cx, &o)?;
            Object::ReferenceGrant(ReferenceGrant {
                api_version: gw::REFERENCE_GRANT_API_VERSION,
                kind: "ReferenceGrant",
                metadata: metadata?,
                spec: decode_grant_spec(cx, spec)?,
            })
        }
    };
    (cx.problems.len() == before).then_some(object)
}

/// A route's spec: parentRefs, hostnames and rules (each decoded by `rule`), and whether
/// `rules` was given at all.
type RouteSpec<R> = (Vec<ParentRef>, Vec<String>, Vec<R>, bool);

fn decode_route_spec<R>(
    cx: &mut Cx<'_>,
    spec: &Node,
    rule: impl Fn(&mut Cx<'_>, &Node, &str) -> Option<R>,
) -> Option<RouteSpec<R>> {
    let s = cx.object(spec, "spec", &["parentRefs", "hostnames", "rules"])?;
    let parent_refs = decode_parent_refs(cx, &s);
    let hostnames = decode_hostnames(cx, &s);
    let mut rules = Vec::new();
    if let Some(n) = s.get("rules")
        && let Some(items) = cx.list(n, "spec.rules")
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = rule(cx, item, &format!("spec.rules[{i}]")) {
                rules.push(r);
            }
        }
    }
    Some((parent_refs?, hostnames?, rules, s.get("rules").is_some()))
}

/// A TLSRoute, TCPRoute or UDPRoute: parentRefs, `hostnames` (TLSRoute only: SNI names)
/// and rules of backendRefs.
fn decode_l4_route(
    cx: &mut Cx<'_>,
    kind: &'static str,
    metadata: ObjectMeta,
    spec: &Node,
) -> Option<gw::L4Route> {
    let allowed: &[&str] = if kind == "TLSRoute" {
        &["parentRefs", "hostnames", "rules"]
    } else {
        &["parentRefs", "rules"]
    };
    let s = cx.object(spec, "spec", allowed)?;
    let parent_refs = decode_parent_refs(cx, &s);
    let hostnames = decode_hostnames(cx, &s);
    let mut rules = Vec::new();
    let items = s
        .require(cx, "rules", "at least one rule with backendRefs")
        .and_then(|n| cx.list(n, "spec.rules"));
    let items = items.unwrap_or_default();
    if let Some(extra) = items.get(1) {
        // The v1 CRDs allow exactly one rule (v1alpha2 allowed 16, with no way to choose
        // between them: every rule would take every connection).
        cx.report(
            extra.pos,
            "spec.rules[1]",
            format!("a {kind} has exactly one rule; put every backendRef in it"),
        );
    }
    for (i, item) in items.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        let Some(r) = cx.object(item, &field, &["name", "backendRefs"]) else {
            continue;
        };
        let name = r.get("name").and_then(|n| cx.string(n, &r.field("name")));
        let mut backend_refs = Vec::new();
        if let Some(items) = r
            .require(cx, "backendRefs", "the Services connections go to")
            .and_then(|n| cx.list(n, &r.field("backendRefs")))
        {
            for (j, b) in items.iter().enumerate() {
                let f = format!("{}[{j}]", r.field("backendRefs"));
                let Some(decoded) = gateway_api::decode_backend(cx, b, &f) else {
                    continue;
                };
                if !decoded.filters.is_empty() {
                    cx.report(
                        b.pos,
                        &format!("{f}.filters"),
                        format!("{kind} backendRefs have no filters; remove them"),
                    );
                    continue;
                }
                backend_refs.push(decoded);
            }
        }
        rules.push(gw::L4RouteRule { name, backend_refs });
    }
    if kind == "TLSRoute" && hostnames.as_ref().is_some_and(Vec::is_empty) {
        // The spec requires SNI names on a TLSRoute (the CRD's minItems is 1 since v1).
        cx.report(
            spec.pos,
            "spec.hostnames",
            "a TLSRoute needs at least one hostname (the SNI names it serves)",
        );
    }
    Some(gw::L4Route {
        api_version: gw::API_VERSION,
        kind,
        metadata,
        spec: gw::L4RouteSpec {
            parent_refs: parent_refs?,
            hostnames: hostnames?,
            rules,
        },
    })
}

/// A `parametersRef` (a GatewayClass's may name a namespace, a Gateway's may not): group,
/// kind and name.
fn decode_parameters_ref(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
    namespaced: bool,
) -> Option<gw::RouteGroupKindName> {
    let allowed: &[&str] = if namespaced {
        &["group", "kind", "name", "namespace"]
    } else {
        &["group", "kind", "name"]
    };
    let p = cx.object(node, field, allowed)?;
    let get = |cx: &mut Cx<'_>, key: &str| {
        p.require(cx, key, "the parameters object's group, kind and name")
            .and_then(|n| cx.string(n, &p.field(key)))
    };
    Some(gw::RouteGroupKindName {
        group: get(cx, "group")?,
        kind: get(cx, "kind")?,
        name: get(cx, "name")?,
    })
}

/// A GatewayClass's spec: its controller, description and parameters.
fn decode_gateway_class_spec(cx: &mut Cx<'_>, node: &Node) -> Option<gw::GatewayClassSpec> {
    let s = cx.object(
        node,
        "spec",
        &["controllerName", "description", "parametersRef"],
    )?;
    let controller_name = s
        .require(
            cx,
            "controllerName",
            "the controller, such as tidegate.io/gateway-controller",
        )
        .and_then(|n| cx.string(n, "spec.controllerName"));
    let description = s
        .get("description")
        .and_then(|n| cx.string(n, "spec.description"));
    let parameters_ref = s
        .get("parametersRef")
        .and_then(|n| decode_parameters_ref(cx, n, "spec.parametersRef", true));
    Some(gw::GatewayClassSpec {
        controller_name: controller_name?,
        description,
        parameters_ref,
    })
}

/// A ListenerSet's spec: its parent Gateway and its listeners (the Gateway's listener schema).
fn decode_listener_set_spec(cx: &mut Cx<'_>, node: &Node) -> Option<gw::ListenerSetSpec> {
    let s = cx.object(node, "spec", &["parentRef", "listeners"])?;
    let parent = s
        .require(cx, "parentRef", "the Gateway the listeners are added to")
        .and_then(|n| cx.object(n, "spec.parentRef", &["group", "kind", "name", "namespace"]));
    let parent_ref = parent.and_then(|p| {
        let get = |cx: &mut Cx<'_>, key: &str| p.get(key).and_then(|n| cx.string(n, &p.field(key)));
        let group = get(cx, "group").unwrap_or_else(|| gw::GROUP.to_owned());
        let kind = get(cx, "kind").unwrap_or_else(|| "Gateway".to_owned());
        let namespace = get(cx, "namespace");
        let name = p
            .require(cx, "name", "the Gateway's name")
            .and_then(|n| cx.string(n, &p.field("name")))?;
        Some(gw::ParentGatewayRef {
            group,
            kind,
            name,
            namespace,
        })
    });
    let listeners = decode_listeners(cx, &s)?;
    Some(gw::ListenerSetSpec {
        parent_ref: parent_ref?,
        listeners,
    })
}

fn require_spec<'n>(cx: &mut Cx<'_>, o: &Obj<'n>) -> Option<&'n Node> {
    o.require(cx, "spec", "the object's spec")
}

fn decode_metadata(cx: &mut Cx<'_>, o: &Obj<'_>, namespaced: bool) -> Option<ObjectMeta> {
    let node = o.require(cx, "metadata", "with at least name (and namespace)")?;
    let mut allowed = vec!["name", "namespace", "labels", "annotations"];
    allowed.extend_from_slice(SERVER_METADATA);
    let m = cx.object(node, "metadata", &allowed)?;
    let name = m.require(cx, "name", "a DNS-1123 name").and_then(|n| {
        cx.checked_string(
            n,
            "metadata.name",
            is_dns1123_subdomain,
            "a valid name; valid: a DNS-1123 subdomain",
        )
    });
    let namespace = if namespaced {
        // Without a namespace the object would land wherever the GitOps tool applies it;
        // routes and grants mean different things in different namespaces.
        m.require(
            cx,
            "namespace",
            "the namespace the object lives in (plain objects must say it)",
        )
        .and_then(|n| cx.namespace(n, "metadata.namespace"))
    } else {
        if let Some(n) = m.get("namespace") {
            cx.report(n.pos, "metadata.namespace", "a Namespace has no namespace");
        }
        None
    };
    let mut meta = ObjectMeta {
        name: name?,
        namespace,
        ..ObjectMeta::default()
    };
    if namespaced && meta.namespace.is_none() {
        return None;
    }
    for (key, slot) in [
        ("labels", &mut meta.labels),
        ("annotations", &mut meta.annotations),
    ] {
        if let Some(n) = m.get(key) {
            for (_, k, v) in cx.string_map(n, &m.field(key)).unwrap_or_default() {
                slot.insert(k, v);
            }
        }
    }
    Some(meta)
}

fn decode_gateway_spec(cx: &mut Cx<'_>, node: &Node) -> Option<gw::GatewaySpec> {
    let s = cx.object(
        node,
        "spec",
        &[
            "gatewayClassName",
            "listeners",
            "allowedListeners",
            "addresses",
            "infrastructure",
            "tls",
        ],
    )?;
    for unsupported in ["addresses"] {
        if let Some(n) = s.get(unsupported) {
            cx.report(
                n.pos,
                &s.field(unsupported),
                format!("`{unsupported}` is not supported by tidegate; proxies bind the address `tidegate bootstrap --bind` gives them; remove it"),
            );
        }
    }
    let class = s
        .require(cx, "gatewayClassName", "the GatewayClass, such as istio")
        .and_then(|n| cx.string(n, "spec.gatewayClassName"));
    let listeners = decode_listeners(cx, &s);
    let mut allowed_listeners = None;
    if let Some(n) = s.get("allowedListeners")
        && let Some(a) = cx.object(n, "spec.allowedListeners", &["namespaces"])
    {
        let mut namespaces = RouteNamespaces {
            from: "None",
            selector: None,
        };
        if let Some(ns) = a.get("namespaces")
            && let Some(o) = cx.object(ns, &a.field("namespaces"), &["from", "selector"])
        {
            if let Some(f) = o.get("from") {
                namespaces.from = match cx
                    .choice(f, &o.field("from"), &["All", "Same", "Selector", "None"])
                    .as_deref()
                {
                    Some("All") => "All",
                    Some("Same") => "Same",
                    Some("Selector") => "Selector",
                    _ => "None",
                };
            }
            if let Some(sel) = o.get("selector") {
                namespaces.selector = decode_selector(cx, sel, &o.field("selector"));
            }
        }
        allowed_listeners = Some(gw::AllowedListeners { namespaces });
    }
    let mut infrastructure = None;
    if let Some(n) = s.get("infrastructure")
        && let Some(i) = cx.object(
            n,
            "spec.infrastructure",
            &["labels", "annotations", "parametersRef"],
        )
    {
        let map = |cx: &mut Cx<'_>, key: &str| {
            let mut out = BTreeMap::new();
            if let Some(m) = i.get(key)
                && let Some(entries) = cx.string_map(m, &i.field(key))
            {
                out.extend(entries.into_iter().map(|(_, k, v)| (k, v)));
            }
            out
        };
        let labels = map(cx, "labels");
        let annotations = map(cx, "annotations");
        let parameters_ref = i
            .get("parametersRef")
            .and_then(|n| decode_parameters_ref(cx, n, &i.field("parametersRef"), false));
        infrastructure = Some(gw::GatewayInfrastructure {
            labels,
            annotations,
            parameters_ref,
        });
    }
    let tls = s
        .get("tls")
        .and_then(|n| decode_gateway_tls(cx, n))
        .map(Box::new);
    Some(gw::GatewaySpec {
        gateway_class_name: class?,
        listeners: listeners?,
        allowed_listeners,
        infrastructure,
        tls,
    })
}

/// A Gateway's `spec.tls`: `backend.clientCertificateRef` and `frontend` (`default` and
/// `perPort` client-certificate validation).
fn decode_gateway_tls(cx: &mut Cx<'_>, node: &Node) -> Option<gw::GatewayTls> {
    let t = cx.object(node, "spec.tls", &["backend", "frontend"])?;
    let mut out = gw::GatewayTls::default();
    if let Some(n) = t.get("backend")
        && let Some(b) = cx.object(n, "spec.tls.backend", &["clientCertificateRef"])
    {
        out.backend = Some(gw::GatewayBackendTls {
            client_certificate_ref: b.get("clientCertificateRef").and_then(|n| {
                object_ref(
                    cx,
                    n,
                    &b.field("clientCertificateRef"),
                    Some("Secret"),
                    true,
                )
            }),
        });
    }
    if let Some(n) = t.get("frontend")
        && let Some(f) = cx.object(n, "spec.tls.frontend", &["default", "perPort"])
    {
        let default = f
            .require(cx, "default", "the validation every TLS listener gets")
            .and_then(|n| decode_frontend_config(cx, n, &f.field("default")));
        let mut per_port = Vec::new();
        if let Some(n) = f.get("perPort")
            && let Some(items) = cx.list(n, &f.field("perPort"))
        {
            for (i, item) in items.iter().enumerate() {
                let field = format!("{}[{i}]", f.field("perPort"));
                let Some(p) = cx.object(item, &field, &["port", "tls"]) else {
                    continue;
                };
                let port = p
                    .require(cx, "port", "the listener port this applies to")
                    .and_then(|n| cx.int(n, &p.field("port"), 1, 65535));
                let tls = p
                    .require(cx, "tls", "the validation of that port")
                    .and_then(|n| decode_frontend_config(cx, n, &p.field("tls")));
                if let (Some(port), Some(tls)) = (port, tls) {
                    if per_port
                        .iter()
                        .any(|q: &gw::FrontendTlsPort| q.port == port as u16)
                    {
                        cx.report(
                            item.pos,
                            &p.field("port"),
                            format!("port {port} is listed twice; valid: each port once"),
                        );
                        continue;
                    }
                    per_port.push(gw::FrontendTlsPort {
                        port: port as u16,
                        tls,
                    });
                }
            }
        }
        out.frontend = Some(gw::FrontendTls {
            default: default?,
            per_port,
        });
    }
    Some(out)
}

/// `{validation: {caCertificateRefs, mode}}` of a Gateway's frontend TLS.
fn decode_frontend_config(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
) -> Option<gw::FrontendTlsConfig> {
    let c = cx.object(node, field, &["validation"])?;
    let Some(v) = c.get("validation") else {
        return Some(gw::FrontendTlsConfig::default());
    };
    let v = cx.object(v, &c.field("validation"), &["caCertificateRefs", "mode"])?;
    let mode = match v.get("mode") {
        None => Some(gw::FrontendValidation::ALLOW_VALID_ONLY),
        Some(m) => cx
            .choice(
                m,
                &v.field("mode"),
                &[
                    gw::FrontendValidation::ALLOW_VALID_ONLY,
                    gw::FrontendValidation::ALLOW_INSECURE_FALLBACK,
                ],
            )
            .map(|m| {
                if m == gw::FrontendValidation::ALLOW_VALID_ONLY {
                    gw::FrontendValidation::ALLOW_VALID_ONLY
                } else {
                    gw::FrontendValidation::ALLOW_INSECURE_FALLBACK
                }
            }),
    };
    let refs = v
        .require(
            cx,
            "caCertificateRefs",
            "ConfigMaps holding the client CA (ca.crt)",
        )
        .and_then(|n| object_refs(cx, n, &v.field("caCertificateRefs"), true));
    if let Some(r) = &refs
        && r.is_empty()
    {
        cx.report(
            v.pos(),
            &v.field("caCertificateRefs"),
            "empty; valid: at least one ConfigMap reference",
        );
        return None;
    }
    Some(gw::FrontendTlsConfig {
        validation: Some(gw::FrontendValidation {
            ca_certificate_refs: refs?,
            mode: mode?,
        }),
    })
}

/// A list of object references (see [`object_ref`]), `group` and `kind` required.
fn object_refs(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
    namespaced: bool,
) -> Option<Vec<gw::ObjectRef>> {
    let items = cx.list(node, field)?;
    let before = cx.problems.len();
    let refs: Vec<_> = items
        .iter()
        .enumerate()
        .filter_map(|(i, n)| object_ref(cx, n, &format!("{field}[{i}]"), None, namespaced))
        .collect();
    (cx.problems.len() == before).then_some(refs)
}

/// An object reference `{group, kind, name[, namespace]}`. `default_kind`: the CRD's default
/// when `kind` is absent (then `group` defaults to `""`); without one both are required.
/// Group and kind are kept as written, since an unsupported one is a status condition, not
/// a malformed object.
fn object_ref(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
    default_kind: Option<&str>,
    namespaced: bool,
) -> Option<gw::ObjectRef> {
    let allowed: &[&str] = if namespaced {
        &["group", "kind", "name", "namespace"]
    } else {
        &["group", "kind", "name"]
    };
    let r = cx.object(node, field, allowed)?;
    let get = |cx: &mut Cx<'_>, key: &str, default: Option<&str>| match (r.get(key), default) {
        (Some(n), _) => cx.string(n, &r.field(key)),
        (None, Some(d)) => Some(d.to_owned()),
        (None, None) => {
            r.require(
                cx,
                key,
                "the referenced object's group (\"\" for core), kind and name",
            );
            None
        }
    };
    let group = get(cx, "group", default_kind.map(|_| ""));
    let kind = get(cx, "kind", default_kind);
    let name = get(cx, "name", None);
    let namespace = r
        .get("namespace")
        .and_then(|n| cx.namespace(n, &r.field("namespace")));
    Some(gw::ObjectRef {
        group: group?,
        kind: kind?,
        name: name?,
        namespace,
    })
}

/// A BackendTLSPolicy's spec: targetRefs and validation (CA bundles or the system's, the
/// hostname, subjectAltNames), and options.
fn decode_backend_tls_spec(cx: &mut Cx<'_>, node: &Node) -> Option<gw::BackendTlsPolicySpec> {
    let s = cx.object(node, "spec", &["targetRefs", "validation", "options"])?;
    let mut target_refs = Vec::new();
    if let Some(n) = s.require(
        cx,
        "targetRefs",
        "the Services (group \"\", kind Service) the policy applies to",
    ) && let Some(items) = cx.list(n, "spec.targetRefs")
    {
        for (i, item) in items.iter().enumerate() {
            let field = format!("spec.targetRefs[{i}]");
            let Some(t) = cx.object(item, &field, &["group", "kind", "name", "sectionName"]) else {
                continue;
            };
            let get = |cx: &mut Cx<'_>, key: &str| {
                t.require(cx, key, "group \"\", kind Service and the Service's name")
                    .and_then(|n| cx.string(n, &t.field(key)))
            };
            let (group, kind, name) = (get(cx, "group"), get(cx, "kind"), get(cx, "name"));
            let section_name = t
                .get("sectionName")
                .and_then(|n| cx.string(n, &t.field("sectionName")));
            if let (Some(group), Some(kind), Some(name)) = (group, kind, name) {
                target_refs.push(gw::PolicyTargetRef {
                    group,
                    kind,
                    name,
                    section_name,
                });
            }
        }
        if items.is_empty() {
            cx.report(
                n.pos,
                "spec.targetRefs",
                "empty; valid: at least one Service",
            );
        }
    }
    let validation = s
        .require(cx, "validation", "how the backend's certificate is checked")
        .and_then(|n| {
            let v = cx.object(
                n,
                "spec.validation",
                &[
                    "caCertificateRefs",
                    "wellKnownCACertificates",
                    "hostname",
                    "subjectAltNames",
                ],
            )?;
            let host_name = v
                .require(
                    cx,
                    "hostname",
                    "the name sent as SNI and checked in the certificate",
                )
                .and_then(|n| hostname(cx, n, &v.field("hostname")));
            let ca_certificate_refs = match v.get("caCertificateRefs") {
                None => Some(Vec::new()),
                Some(n) => object_refs(cx, n, &v.field("caCertificateRefs"), false).map(|refs| {
                    refs.into_iter()
                        .map(|r| gw::LocalObjectRef {
                            group: r.group,
                            kind: r.kind,
                            name: r.name,
                        })
                        .collect()
                }),
            };
            let well_known = v
                .get("wellKnownCACertificates")
                .and_then(|n| cx.choice(n, &v.field("wellKnownCACertificates"), &["System"]));
            let mut sans = Vec::new();
            if let Some(n) = v.get("subjectAltNames")
                && let Some(items) = cx.list(n, &v.field("subjectAltNames"))
            {
                for (i, item) in items.iter().enumerate() {
                    let field = format!("{}[{i}]", v.field("subjectAltNames"));
                    let Some(a) = cx.object(item, &field, &["type", "hostname", "uri"]) else {
                        continue;
                    };
                    let ty = a
                        .require(cx, "type", "Hostname or URI")
                        .and_then(|n| cx.choice(n, &a.field("type"), &["Hostname", "URI"]));
                    let host = a
                        .get("hostname")
                        .and_then(|n| hostname(cx, n, &a.field("hostname")));
                    let uri = a.get("uri").and_then(|n| cx.string(n, &a.field("uri")));
                    match (ty.as_deref(), host, uri) {
                        (Some("Hostname"), Some(h), None) => sans.push(gw::SubjectAltName {
                            type_: "Hostname",
                            hostname: Some(h),
                            uri: None,
                        }),
                        (Some("URI"), None, Some(u)) => sans.push(gw::SubjectAltName {
                            type_: "URI",
                            hostname: None,
                            uri: Some(u),
                        }),
                        (Some(t), ..) => cx.report(
                            item.pos,
                            &field,
                            format!(
                                "type {t} needs exactly the field `{}`",
                                if t == "URI" { "uri" } else { "hostname" }
                            ),
                        ),
                        _ => {}
                    }
                }
            }
            let ca_certificate_refs = ca_certificate_refs?;
            // The CRD's rule: exactly one source of trust.
            if ca_certificate_refs.is_empty() == well_known.is_none() {
                cx.report(
                    v.pos(),
                    "spec.validation",
                    "give exactly one of caCertificateRefs and wellKnownCACertificates: System",
                );
                return None;
            }
            Some(gw::BackendTlsValidation {
                ca_certificate_refs,
                well_known_ca_certificates: well_known,
                hostname: host_name?,
                subject_alt_names: sans,
            })
        });
    let mut options = BTreeMap::new();
    if let Some(n) = s.get("options")
        && let Some(entries) = cx.string_map(n, "spec.options")
    {
        options.extend(entries.into_iter().map(|(_, k, v)| (k, v)));
    }
    Some(gw::BackendTlsPolicySpec {
        target_refs,
        validation: validation?,
        options,
    })
}

/// `spec.listeners` of a Gateway or ListenerSet: names unique.
fn decode_listeners(cx: &mut Cx<'_>, s: &Obj<'_>) -> Option<Vec<Listener>> {
    let items = s
        .require(cx, "listeners", "at least one listener")
        .and_then(|n| cx.list(n, "spec.listeners"))?;
    let mut listeners = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        if let Some(l) = decode_listener(cx, item, &field) {
            if listeners.iter().any(|x: &Listener| x.name == l.name) {
                cx.report(
                    item.pos,
                    &format!("{field}.name"),
                    format!(
                        "listener name `{}` is used twice; valid: unique names",
                        l.name
                    ),
                );
            }
            listeners.push(l);
        }
    }
    Some(listeners)
}

fn decode_listener(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<Listener> {
    let before = cx.problems.len();
    let l = cx.object(
        node,
        field,
        &[
            "name",
            "hostname",
            "port",
            "protocol",
            "tls",
            "allowedRoutes",
        ],
    )?;
    let name = l
        .require(cx, "name", "a DNS-1123 label naming the listener")
        .and_then(|n| cx.string(n, &l.field("name")));
    let hostname = l
        .get("hostname")
        .and_then(|n| hostname(cx, n, &l.field("hostname")));
    let port = l
        .require(cx, "port", "such as 80")
        .and_then(|n| cx.int(n, &l.field("port"), 1, 65535))
        .map(|p| p as u16);
    let protocol = l
        .require(cx, "protocol", "HTTP, HTTPS, TLS, TCP or UDP")
        .and_then(|n| cx.string(n, &l.field("protocol")));
    let mut tls = None;
    if let Some(n) = l.get("tls")
        && let Some(t) = cx.object(n, &l.field("tls"), &["mode", "certificateRefs", "options"])
    {
        let mode = match t.get("mode") {
            None => Some("Terminate"),
            Some(m) => cx
                .choice(m, &t.field("mode"), &["Terminate", "Passthrough"])
                .map(|m| {
                    if m == "Terminate" {
                        "Terminate"
                    } else {
                        "Passthrough"
                    }
                }),
        };
        let mut certificate_refs = Vec::new();
        if let Some(refs) = t.get("certificateRefs")
            && let Some(items) = cx.list(refs, &t.field("certificateRefs"))
        {
            for (i, item) in items.iter().enumerate() {
                let f = format!("{}[{i}]", t.field("certificateRefs"));
                let Some(r) = cx.object(item, &f, &["group", "kind", "name", "namespace"]) else {
                    continue;
                };
                let kind = r.get("kind").and_then(|n| cx.string(n, &r.field("kind")));
                let group = r.get("group").and_then(|n| cx.string(n, &r.field("group")));
                let name = r
                    .require(cx, "name", "the Secret's name")
                    .and_then(|n| cx.string(n, &r.field("name")));
                let namespace = r
                    .get("namespace")
                    .and_then(|n| cx.string(n, &r.field("namespace")));
                if let Some(name) = name {
                    certificate_refs.push(SecretRef {
                        group: "",
                        // Any other kind stays unserved (with a warning) in translation.
                        kind: if kind.as_deref().is_none_or(|k| k == "Secret")
                            && group.as_deref().is_none_or(str::is_empty)
                        {
                            "Secret"
                        } else {
                            "Unsupported"
                        },
                        name,
                        namespace,
                    });
                }
            }
        }
        if let Some(mode) = mode {
            tls = Some(ListenerTls {
                mode,
                certificate_refs,
            });
        }
    }
    let mut allowed_routes = None;
    if let Some(n) = l.get("allowedRoutes")
        && let Some(a) = cx.object(n, &l.field("allowedRoutes"), &["namespaces", "kinds"])
    {
        let mut namespaces = RouteNamespaces {
            from: "Same",
            selector: None,
        };
        if let Some(ns) = a.get("namespaces")
            && let Some(o) = cx.object(ns, &a.field("namespaces"), &["from", "selector"])
        {
            if let Some(f) = o.get("from") {
                namespaces.from = match cx
                    .choice(f, &o.field("from"), &["All", "Same", "Selector"])
                    .as_deref()
                {
                    Some("All") => "All",
                    Some("Selector") => "Selector",
                    _ => "Same",
                };
            }
            if let Some(sel) = o.get("selector") {
                namespaces.selector = decode_selector(cx, sel, &o.field("selector"));
            }
            if namespaces.from == "Selector" && namespaces.selector.is_none() {
                cx.report(
                    ns.pos,
                    &o.field("selector"),
                    "from: Selector needs a selector",
                );
            }
        }
        let mut kinds = Vec::new();
        if let Some(k) = a.get("kinds")
            && let Some(items) = cx.list(k, &a.field("kinds"))
        {
            for (i, item) in items.iter().enumerate() {
                let f = format!("{}[{i}]", a.field("kinds"));
                let Some(o) = cx.object(item, &f, &["group", "kind"]) else {
                    continue;
                };
                let group = match o.get("group") {
                    None => Some(gw::GROUP.to_owned()),
                    Some(g) => cx.string(g, &o.field("group")),
                };
                let kind = o
                    .require(cx, "kind", "a route kind such as HTTPRoute")
                    .and_then(|n| cx.string(n, &o.field("kind")));
                if let (Some(group), Some(kind)) = (group, kind) {
                    kinds.push(RouteGroupKind { group, kind });
                }
            }
        }
        allowed_routes = Some(AllowedRoutes { namespaces, kinds });
    }
    if cx.problems.len() > before {
        return None;
    }
    // Defaults written out, as for intents: `allowedRoutes.namespaces.from: Same`.
    Some(Listener {
        name: name?,
        hostname,
        port: port?,
        protocol: protocol?,
        tls,
        allowed_routes: allowed_routes.or(Some(AllowedRoutes {
            namespaces: RouteNamespaces {
                from: "Same",
                selector: None,
            },
            kinds: Vec::new(),
        })),
    })
}

fn decode_selector(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<LabelSelector> {
    let s = cx.object(node, field, &["matchLabels", "matchExpressions"])?;
    let mut out = LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: Vec::new(),
    };
    if let Some(n) = s.get("matchLabels") {
        for (_, k, v) in cx
            .string_map(n, &s.field("matchLabels"))
            .unwrap_or_default()
        {
            out.match_labels.insert(k, v);
        }
    }
    if let Some(n) = s.get("matchExpressions")
        && let Some(items) = cx.list(n, &s.field("matchExpressions"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", s.field("matchExpressions"));
            let Some(e) = cx.object(item, &f, &["key", "operator", "values"]) else {
                continue;
            };
            let key = e
                .require(cx, "key", "a label key")
                .and_then(|n| cx.string(n, &e.field("key")));
            let operator = e
                .require(cx, "operator", "In, NotIn, Exists or DoesNotExist")
                .and_then(|n| {
                    cx.choice(
                        n,
                        &e.field("operator"),
                        &["In", "NotIn", "Exists", "DoesNotExist"],
                    )
                })
                .map(|o| match o.as_str() {
                    "In" => "In",
                    "NotIn" => "NotIn",
                    "Exists" => "Exists",
                    _ => "DoesNotExist",
                });
            let values = match e.get("values") {
                None => Vec::new(),
                Some(v) => cx
                    .strings(v, &e.field("values"))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect(),
            };
            if let (Some(key), Some(operator)) = (key, operator) {
                out.match_expressions.push(LabelSelectorRequirement {
                    key,
                    operator,
                    values,
                });
            }
        }
    }
    Some(out)
}

fn hostname(cx: &mut Cx<'_>, n: &Node, field: &str) -> Option<String> {
    cx.checked_string(
        n,
        field,
        is_gateway_hostname,
        "a valid hostname; valid: a DNS name, optionally starting with `*.`, without a port",
    )
}

fn decode_hostnames(cx: &mut Cx<'_>, s: &Obj<'_>) -> Option<Vec<String>> {
    let before = cx.problems.len();
    let mut out = Vec::new();
    if let Some(n) = s.get("hostnames")
        && let Some(items) = cx.list(n, "spec.hostnames")
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(h) = hostname(cx, item, &format!("spec.hostnames[{i}]")) {
                out.push(h);
            }
        }
    }
    (cx.problems.len() == before).then_some(out)
}

fn decode_parent_refs(cx: &mut Cx<'_>, s: &Obj<'_>) -> Option<Vec<ParentRef>> {
    let before = cx.problems.len();
    let mut out = Vec::new();
    if let Some(n) = s.get("parentRefs")
        && let Some(items) = cx.list(n, "spec.parentRefs")
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("spec.parentRefs[{i}]");
            let Some(p) = cx.object(
                item,
                &f,
                &["group", "kind", "name", "namespace", "sectionName", "port"],
            ) else {
                continue;
            };
            let s =
                |cx: &mut Cx<'_>, key: &str| p.get(key).and_then(|n| cx.string(n, &p.field(key)));
            let group = s(cx, "group").unwrap_or_else(|| gw::GROUP.to_owned());
            let kind = s(cx, "kind").unwrap_or_else(|| "Gateway".to_owned());
            let name = p
                .require(cx, "name", "the Gateway's name")
                .and_then(|n| cx.string(n, &p.field("name")));
            let namespace = s(cx, "namespace");
            let section_name = s(cx, "sectionName");
            let port = p
                .get("port")
                .and_then(|n| cx.int(n, &p.field("port"), 1, 65535))
                .map(|v| v as u16);
            if let Some(name) = name {
                out.push(ParentRef {
                    group,
                    kind,
                    name,
                    namespace,
                    section_name,
                    port,
                });
            }
        }
    }
    (cx.problems.len() == before).then_some(out)
}

fn decode_grpc_rule(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<GrpcRouteRule> {
    let before = cx.problems.len();
    let r = cx.object(
        node,
        field,
        &[
            "name",
            "matches",
            "filters",
            "backendRefs",
            "sessionPersistence",
        ],
    )?;
    if let Some(n) = r.get("sessionPersistence") {
        cx.report(
            n.pos,
            &r.field("sessionPersistence"),
            "`sessionPersistence` is a Gateway API field that tidegate does not support yet; remove it",
        );
    }
    let mut rule = GrpcRouteRule {
        name: r.get("name").and_then(|n| cx.string(n, &r.field("name"))),
        ..GrpcRouteRule::default()
    };
    if let Some(n) = r.get("matches")
        && let Some(items) = cx.list(n, &r.field("matches"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", r.field("matches"));
            let Some(m) = cx.object(item, &f, &["method", "headers"]) else {
                continue;
            };
            let mut out = GrpcRouteMatch::default();
            if let Some(mn) = m.get("method")
                && let Some(mo) = cx.object(mn, &m.field("method"), &["type", "service", "method"])
            {
                let type_ = match mo.get("type") {
                    None => ValueMatchType::Exact,
                    Some(t) => match cx
                        .choice(t, &mo.field("type"), &["Exact", "RegularExpression"])
                        .as_deref()
                    {
                        Some("RegularExpression") => ValueMatchType::RegularExpression,
                        _ => ValueMatchType::Exact,
                    },
                };
                let service = mo
                    .get("service")
                    .and_then(|n| cx.string(n, &mo.field("service")));
                let method = mo
                    .get("method")
                    .and_then(|n| cx.string(n, &mo.field("method")));
                if service.is_none() && method.is_none() {
                    cx.report(
                        mn.pos,
                        &m.field("method"),
                        "one of service or method must be given",
                    );
                }
                for (key, v) in [("service", &service), ("method", &method)] {
                    if let Some(v) = v {
                        let bad = match type_ {
                            ValueMatchType::Exact => v.contains('/') || v.is_empty(),
                            ValueMatchType::RegularExpression => {
                                gateway_api::check_regex(v).is_err()
                            }
                        };
                        if bad {
                            cx.report(
                                mo.get(key).map_or(mn.pos, |n| n.pos),
                                &mo.field(key),
                                format!("`{v}` is not a valid gRPC {key} name for type {type_:?}"),
                            );
                        }
                    }
                }
                out.method = Some(GrpcMethodMatch {
                    type_,
                    service,
                    method,
                });
            }
            if let Some(hn) = m.get("headers") {
                out.headers = gateway_api::decode_value_matches(cx, hn, &m.field("headers"), true);
            }
            rule.matches.push(out);
        }
    }
    if let Some(n) = r.get("filters")
        && let Some(items) = cx.list(n, &r.field("filters"))
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(f) =
                gateway_api::decode_filter(cx, item, &format!("{}[{i}]", r.field("filters")))
            {
                rule.filters.push(f);
            }
        }
    }
    if let Some(n) = r.get("backendRefs")
        && let Some(items) = cx.list(n, &r.field("backendRefs"))
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(b) =
                gateway_api::decode_backend(cx, item, &format!("{}[{i}]", r.field("backendRefs")))
            {
                rule.backend_refs.push(b);
            }
        }
    }
    (cx.problems.len() == before).then_some(rule)
}

fn decode_grant_spec(cx: &mut Cx<'_>, node: &Node) -> Option<ReferenceGrantSpec> {
    let before = cx.problems.len();
    let s = cx.object(node, "spec", &["from", "to"])?;
    let mut spec = ReferenceGrantSpec {
        from: Vec::new(),
        to: Vec::new(),
    };
    if let Some(items) = s
        .require(cx, "from", "the routes allowed, [{group, kind, namespace}]")
        .and_then(|n| cx.list(n, "spec.from"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("spec.from[{i}]");
            let Some(o) = cx.object(item, &f, &["group", "kind", "namespace"]) else {
                continue;
            };
            let get = |cx: &mut Cx<'_>, k: &str| {
                o.require(cx, k, "required")
                    .and_then(|n| cx.string(n, &o.field(k)))
            };
            if let (Some(group), Some(kind), Some(namespace)) =
                (get(cx, "group"), get(cx, "kind"), get(cx, "namespace"))
            {
                spec.from.push(ReferenceGrantFrom {
                    group,
                    kind,
                    namespace,
                });
            }
        }
    }
    if let Some(items) = s
        .require(cx, "to", "what may be referenced, [{group, kind, name}]")
        .and_then(|n| cx.list(n, "spec.to"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("spec.to[{i}]");
            let Some(o) = cx.object(item, &f, &["group", "kind", "name"]) else {
                continue;
            };
            let group = o
                .require(cx, "group", "\"\" for Services")
                .and_then(|n| cx.string(n, &o.field("group")));
            let kind = o
                .require(cx, "kind", "such as Service")
                .and_then(|n| cx.string(n, &o.field("kind")));
            let name = o.get("name").and_then(|n| cx.string(n, &o.field("name")));
            if let (Some(group), Some(kind)) = (group, kind) {
                spec.to.push(ReferenceGrantTo { group, kind, name });
            }
        }
    }
    (cx.problems.len() == before).then_some(spec)
}

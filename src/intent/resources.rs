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
use super::node::{Node, Pos, Value};
use crate::model::core::Namespace;
use crate::model::gateway_api::{
    self as gw, AllowedRoutes, GrpcMethodMatch, GrpcRoute, GrpcRouteMatch, GrpcRouteRule,
    GrpcRouteSpec, HttpRoute, HttpRouteSpec, LabelSelector, LabelSelectorRequirement, Listener,
    ListenerTls, ParentRef, ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec,
    ReferenceGrantTo, RouteGroupKind, RouteNamespaces, SecretRef, ValueMatchType,
};
use crate::model::istio::{self, StringMatch};
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

const KINDS: &str = "Namespace (v1), Gateway, HTTPRoute, GRPCRoute (gateway.networking.k8s.io/v1), ReferenceGrant (gateway.networking.k8s.io/v1beta1 or v1), Gateway and VirtualService (networking.istio.io/v1)";

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
        &["apiVersion", "kind", "metadata", "spec", "status"],
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
        "Namespace" => &["v1"],
        "Gateway" | "VirtualService" if istio_kind => ISTIO_VERSIONS,
        "Gateway" | "HTTPRoute" | "GRPCRoute" => &[gw::API_VERSION],
        "ReferenceGrant" => &[gw::REFERENCE_GRANT_API_VERSION, gw::API_VERSION],
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
    let namespaced = kind != "Namespace";
    let metadata = decode_metadata(cx, &o, namespaced);
    let spec = o.get("spec");
    let object = match kind.as_str() {
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
                spec: decode_istio_gateway(cx, spec)?,
            })
        }
        "VirtualService" => {
            let spec = require_spec(cx, &o)?;
            Object::VirtualService(istio::VirtualService {
                api_version: istio::API_VERSION,
                kind: "VirtualService",
                metadata: metadata?,
                spec: decode_virtual_service(cx, spec)?,
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
            "addresses",
            "infrastructure",
        ],
    )?;
    for unsupported in ["addresses", "infrastructure"] {
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
    Some(gw::GatewaySpec {
        gateway_class_name: class?,
        listeners,
    })
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
                        kind: if kind.as_deref().is_none_or(|k| k == "Secret") {
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

// --- Istio `networking.istio.io` Gateway and VirtualService ---------------------------

/// Istio API versions read (`v1` is what tidegate writes; the older ones are the same
/// schema for the fields below).
const ISTIO_VERSIONS: &[&str] = &[
    istio::API_VERSION,
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

fn decode_istio_gateway(cx: &mut Cx<'_>, node: &Node) -> Option<istio::GatewaySpec> {
    let before = cx.problems.len();
    let s = cx.object(node, "spec", &["selector", "servers"])?;
    let mut selector = BTreeMap::new();
    if let Some(n) = s.get("selector") {
        for (_, k, v) in cx.string_map(n, "spec.selector").unwrap_or_default() {
            selector.insert(k, v);
        }
    }
    let mut servers = Vec::new();
    if let Some(items) = s
        .require(cx, "servers", "at least one server")
        .and_then(|n| cx.list(n, "spec.servers"))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("spec.servers[{i}]");
            let Some(o) = cx.object(item, &f, &["port", "hosts", "tls", "name"]) else {
                continue;
            };
            let port = o
                .require(cx, "port", "{number, name, protocol}")
                .and_then(|p| {
                    let po = cx.object(
                        p,
                        &o.field("port"),
                        &["number", "name", "protocol", "targetPort"],
                    )?;
                    let number = po
                        .require(cx, "number", "the port, such as 80")
                        .and_then(|n| cx.int(n, &po.field("number"), 1, 65535))?;
                    let name = po
                        .get("name")
                        .and_then(|n| cx.string(n, &po.field("name")))
                        .unwrap_or_default();
                    let protocol = po
                        .require(cx, "protocol", "HTTP, HTTPS, HTTP2, GRPC, TCP or TLS")
                        .and_then(|n| cx.string(n, &po.field("protocol")))?;
                    Some(istio::ServerPort {
                        number: number as u16,
                        name,
                        protocol,
                    })
                });
            let hosts: Vec<String> = o
                .require(cx, "hosts", "such as [\"*\"] or [\"httpbin.example.com\"]")
                .and_then(|n| cx.strings(n, &o.field("hosts")))
                .unwrap_or_default()
                .into_iter()
                .map(|(_, h)| h)
                .collect();
            let mut tls = None;
            if let Some(t) = o.get("tls")
                && let Some(to) = cx.object(
                    t,
                    &o.field("tls"),
                    &["mode", "credentialName", "httpsRedirect"],
                )
            {
                if let Some(n) = to.get("httpsRedirect") {
                    cx.report(n.pos, &to.field("httpsRedirect"), "httpsRedirect is not supported by tidegate; redirect with a VirtualService redirect (scheme: https) instead");
                }
                let mode = to.get("mode").and_then(|n| {
                    cx.choice(
                        n,
                        &to.field("mode"),
                        &[
                            "SIMPLE",
                            "PASSTHROUGH",
                            "MUTUAL",
                            "AUTO_PASSTHROUGH",
                            "ISTIO_MUTUAL",
                            "OPTIONAL_MUTUAL",
                        ],
                    )
                });
                // The translator serves SIMPLE and says why it does not serve the others.
                let mode: &'static str = match mode.as_deref() {
                    Some("SIMPLE") | None => "SIMPLE",
                    Some("PASSTHROUGH") => "PASSTHROUGH",
                    Some("MUTUAL") => "MUTUAL",
                    Some("AUTO_PASSTHROUGH") => "AUTO_PASSTHROUGH",
                    Some("ISTIO_MUTUAL") => "ISTIO_MUTUAL",
                    Some(_) => "OPTIONAL_MUTUAL",
                };
                let credential_name = to
                    .get("credentialName")
                    .and_then(|n| cx.string(n, &to.field("credentialName")))
                    .unwrap_or_default();
                tls = Some(istio::ServerTls {
                    mode,
                    credential_name,
                });
            }
            if let Some(port) = port {
                servers.push(istio::Server { port, hosts, tls });
            }
        }
    }
    (cx.problems.len() == before).then_some(istio::GatewaySpec { selector, servers })
}

fn decode_string_match(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<StringMatch> {
    let o = cx.object(node, field, &["exact", "prefix", "regex"])?;
    let mut found = Vec::new();
    for key in ["exact", "prefix", "regex"] {
        if let Some(n) = o.get(key)
            && let Some(v) = cx.string(n, &o.field(key))
        {
            found.push((key, v, n.pos));
        }
    }
    match found.as_slice() {
        [(key, v, pos)] => Some(match *key {
            "exact" => StringMatch::Exact(v.clone()),
            "prefix" => StringMatch::Prefix(v.clone()),
            _ => {
                if let Err(e) = gateway_api::check_regex(v) {
                    cx.report(*pos, &o.field("regex"), e);
                    return None;
                }
                StringMatch::Regex(v.clone())
            }
        }),
        _ => {
            cx.report(
                node.pos,
                field,
                "give exactly one of exact, prefix or regex",
            );
            None
        }
    }
}

fn decode_destination(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<istio::Destination> {
    let d = cx.object(node, field, &["host", "port", "subset"])?;
    if let Some(n) = d.get("subset") {
        cx.report(
            n.pos,
            &d.field("subset"),
            "subsets need DestinationRules, which tidegate does not read; route to the Service",
        );
    }
    let host = d
        .require(
            cx,
            "host",
            "a Service name, or <name>.<namespace>.svc.cluster.local",
        )
        .and_then(|n| cx.string(n, &d.field("host")));
    // Without a port Istio picks the Service's only port; tidegate knows no Service
    // objects, so the port must be said.
    let port = d
        .require(cx, "port", "{number: <the Service port>}")
        .and_then(|p| {
            let po = cx.object(p, &d.field("port"), &["number"])?;
            po.require(cx, "number", "the Service port")
                .and_then(|n| cx.int(n, &po.field("number"), 1, 65535))
        });
    Some(istio::Destination {
        host: host?,
        port: istio::PortSelector {
            number: port? as u16,
        },
    })
}

fn decode_header_ops(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<istio::HeaderOperations> {
    let h = cx.object(node, field, &["set", "add", "remove"])?;
    let mut out = istio::HeaderOperations::default();
    for (key, slot) in [("set", &mut out.set), ("add", &mut out.add)] {
        if let Some(n) = h.get(key) {
            for (_, k, v) in cx.string_map(n, &h.field(key)).unwrap_or_default() {
                slot.insert(k, v);
            }
        }
    }
    if let Some(n) = h.get("remove") {
        out.remove = cx
            .strings(n, &h.field("remove"))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, s)| s)
            .collect();
    }
    Some(out)
}

fn duration(cx: &mut Cx<'_>, o: &Obj<'_>, key: &str) -> Option<String> {
    let n = o.get(key)?;
    let s = cx.string(n, &o.field(key))?;
    if crate::model::duration::parse_ms(&s).is_none() {
        cx.report(
            n.pos,
            &o.field(key),
            format!("`{s}` is not a duration; valid: such as 10s, 1.5s or 100ms"),
        );
        return None;
    }
    Some(s)
}

fn decode_virtual_service(cx: &mut Cx<'_>, node: &Node) -> Option<istio::VirtualServiceSpec> {
    let before = cx.problems.len();
    let s = cx.object(
        node,
        "spec",
        &["hosts", "gateways", "http", "tcp", "tls", "exportTo"],
    )?;
    for unsupported in ["tcp", "tls"] {
        if let Some(n) = s.get(unsupported) {
            cx.report(n.pos, &s.field(unsupported), format!("`{unsupported}` routes are not served by tidegate (gateway proxies serve HTTP); remove them"));
        }
    }
    let strings = |cx: &mut Cx<'_>, key: &str| -> Vec<String> {
        s.get(key)
            .and_then(|n| cx.strings(n, &s.field(key)))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    let hosts = strings(cx, "hosts");
    let gateways = strings(cx, "gateways");
    if gateways.is_empty() {
        cx.report(node.pos, "spec.gateways", "a VirtualService without gateways applies to sidecars, which tidegate does not serve; name the Istio Gateway(s), such as [istio-ingress/httpbin-gateway]");
    }
    let mut http = Vec::new();
    if let Some(items) = s.get("http").and_then(|n| cx.list(n, "spec.http")) {
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = decode_vs_http(cx, item, &format!("spec.http[{i}]")) {
                http.push(r);
            }
        }
    }
    (cx.problems.len() == before).then_some(istio::VirtualServiceSpec {
        hosts,
        gateways,
        http,
    })
}

fn decode_vs_http(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<istio::HttpRoute> {
    let h = cx.object(
        node,
        field,
        &[
            "name",
            "match",
            "route",
            "redirect",
            "directResponse",
            "rewrite",
            "timeout",
            "headers",
            "mirror",
            "mirrorPercentage",
            "mirrors",
            "retries",
            "corsPolicy",
        ],
    )?;
    let mut out = istio::HttpRoute {
        name: h.get("name").and_then(|n| cx.string(n, &h.field("name"))),
        timeout: duration(cx, &h, "timeout"),
        ..istio::HttpRoute::default()
    };
    if let Some(items) = h.get("match").and_then(|n| cx.list(n, &h.field("match"))) {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", h.field("match"));
            let Some(m) = cx.object(
                item,
                &f,
                &["name", "uri", "headers", "queryParams", "method"],
            ) else {
                continue;
            };
            let mut out_m = istio::HttpMatchRequest {
                uri: m
                    .get("uri")
                    .and_then(|n| decode_string_match(cx, n, &m.field("uri"))),
                method: m
                    .get("method")
                    .and_then(|n| decode_string_match(cx, n, &m.field("method"))),
                ..Default::default()
            };
            for (key, slot) in [
                ("headers", &mut out_m.headers),
                ("queryParams", &mut out_m.query_params),
            ] {
                let Some(n) = m.get(key) else { continue };
                let Value::Map(entries) = &n.value else {
                    cx.report(
                        n.pos,
                        &m.field(key),
                        "expected a mapping of name to {exact|prefix|regex}",
                    );
                    continue;
                };
                for (k, v) in entries {
                    if let Some(name) = cx.string(k, &m.field(key))
                        && let Some(sm) =
                            decode_string_match(cx, v, &format!("{}.{name}", m.field(key)))
                    {
                        slot.insert(name, sm);
                    }
                }
            }
            out.match_.push(out_m);
        }
    }
    if let Some(items) = h.get("route").and_then(|n| cx.list(n, &h.field("route"))) {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", h.field("route"));
            let Some(r) = cx.object(item, &f, &["destination", "weight", "headers"]) else {
                continue;
            };
            if let Some(n) = r.get("headers") {
                cx.report(n.pos, &r.field("headers"), "per-destination headers are not supported by tidegate; set them on the http route");
            }
            let destination = r
                .require(cx, "destination", "{host, port: {number}}")
                .and_then(|n| decode_destination(cx, n, &r.field("destination")));
            let weight = r
                .get("weight")
                .and_then(|n| cx.int(n, &r.field("weight"), 0, 100))
                .map(|w| w as u32);
            if let Some(destination) = destination {
                out.route.push(istio::RouteDestination {
                    destination,
                    weight,
                });
            }
        }
    }
    if let Some(n) = h.get("redirect")
        && let Some(r) = cx.object(
            n,
            &h.field("redirect"),
            &["uri", "authority", "port", "scheme", "redirectCode"],
        )
    {
        let s = |cx: &mut Cx<'_>, k: &str| r.get(k).and_then(|n| cx.string(n, &r.field(k)));
        out.redirect = Some(istio::HttpRedirect {
            uri: s(cx, "uri"),
            authority: s(cx, "authority"),
            port: r
                .get("port")
                .and_then(|n| cx.int(n, &r.field("port"), 1, 65535))
                .map(|p| p as u16),
            scheme: s(cx, "scheme"),
            // Istio's default redirect code.
            redirect_code: r
                .get("redirectCode")
                .and_then(|n| cx.int(n, &r.field("redirectCode"), 300, 399))
                .map_or(301, |c| c as u16),
        });
    }
    if let Some(n) = h.get("directResponse")
        && let Some(d) = cx.object(n, &h.field("directResponse"), &["status"])
        && let Some(st) = d
            .require(cx, "status", "an HTTP status code")
            .and_then(|x| cx.int(x, &d.field("status"), 200, 599))
    {
        out.direct_response = Some(istio::DirectResponse { status: st as u16 });
    }
    if let Some(n) = h.get("rewrite")
        && let Some(r) = cx.object(
            n,
            &h.field("rewrite"),
            &["uri", "uriRegexRewrite", "authority"],
        )
    {
        let mut rw = istio::HttpRewrite {
            uri: r.get("uri").and_then(|n| cx.string(n, &r.field("uri"))),
            authority: r
                .get("authority")
                .and_then(|n| cx.string(n, &r.field("authority"))),
            ..Default::default()
        };
        if let Some(x) = r.get("uriRegexRewrite")
            && let Some(o) = cx.object(x, &r.field("uriRegexRewrite"), &["match", "rewrite"])
        {
            let m = o
                .require(cx, "match", "a regular expression")
                .and_then(|n| cx.string(n, &o.field("match")));
            let w = o
                .require(cx, "rewrite", "the substitution")
                .and_then(|n| cx.string(n, &o.field("rewrite")));
            if let (Some(m), Some(w)) = (m, w) {
                rw.uri_regex_rewrite = Some(istio::RegexRewrite {
                    match_: m,
                    rewrite: w,
                });
            }
        }
        out.rewrite = Some(rw);
    }
    if let Some(n) = h.get("headers")
        && let Some(o) = cx.object(n, &h.field("headers"), &["request", "response"])
    {
        out.headers = Some(istio::Headers {
            request: o
                .get("request")
                .and_then(|x| decode_header_ops(cx, x, &o.field("request"))),
            response: o
                .get("response")
                .and_then(|x| decode_header_ops(cx, x, &o.field("response"))),
        });
    }
    let percent = |cx: &mut Cx<'_>, n: &Node, f: &str| -> Option<istio::Percent> {
        let o = cx.object(n, f, &["value"])?;
        let v = o.require(cx, "value", "a percentage from 0 to 100")?;
        let value = match &v.value {
            Value::Float(x) => *x,
            Value::Int(i) => *i as f64,
            _ => {
                cx.report(v.pos, &o.field("value"), "expected a number from 0 to 100");
                return None;
            }
        };
        Some(istio::Percent { value })
    };
    if let Some(n) = h.get("mirror")
        && let Some(destination) = decode_destination(cx, n, &h.field("mirror"))
    {
        let percentage = h
            .get("mirrorPercentage")
            .and_then(|p| percent(cx, p, &h.field("mirrorPercentage")));
        out.mirrors.push(istio::HttpMirrorPolicy {
            destination,
            percentage,
        });
    }
    if let Some(items) = h
        .get("mirrors")
        .and_then(|n| cx.list(n, &h.field("mirrors")))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", h.field("mirrors"));
            let Some(m) = cx.object(item, &f, &["destination", "percentage"]) else {
                continue;
            };
            let destination = m
                .require(cx, "destination", "{host, port: {number}}")
                .and_then(|n| decode_destination(cx, n, &m.field("destination")));
            let percentage = m
                .get("percentage")
                .and_then(|p| percent(cx, p, &m.field("percentage")));
            if let Some(destination) = destination {
                out.mirrors.push(istio::HttpMirrorPolicy {
                    destination,
                    percentage,
                });
            }
        }
    }
    if let Some(n) = h.get("retries")
        && let Some(r) = cx.object(
            n,
            &h.field("retries"),
            &["attempts", "retryOn", "perTryTimeout", "backoff"],
        )
    {
        out.retries = Some(istio::HttpRetry {
            attempts: r
                .get("attempts")
                .and_then(|x| cx.int(x, &r.field("attempts"), 0, 1000))
                .map_or(2, |a| a as u32),
            // Istio's default conditions.
            retry_on: r
                .get("retryOn")
                .and_then(|x| cx.string(x, &r.field("retryOn")))
                .unwrap_or_else(|| {
                    "connect-failure,refused-stream,unavailable,cancelled,503".into()
                }),
            per_try_timeout: duration(cx, &r, "perTryTimeout"),
            backoff: duration(cx, &r, "backoff"),
        });
    }
    if let Some(n) = h.get("corsPolicy")
        && let Some(c) = cx.object(
            n,
            &h.field("corsPolicy"),
            &[
                "allowOrigins",
                "allowMethods",
                "allowHeaders",
                "exposeHeaders",
                "maxAge",
                "allowCredentials",
            ],
        )
    {
        let mut policy = istio::CorsPolicy::default();
        if let Some(items) = c
            .get("allowOrigins")
            .and_then(|x| cx.list(x, &c.field("allowOrigins")))
        {
            for (i, item) in items.iter().enumerate() {
                if let Some(m) =
                    decode_string_match(cx, item, &format!("{}[{i}]", c.field("allowOrigins")))
                {
                    policy.allow_origins.push(m);
                }
            }
        }
        for (key, slot) in [
            ("allowMethods", &mut policy.allow_methods),
            ("allowHeaders", &mut policy.allow_headers),
            ("exposeHeaders", &mut policy.expose_headers),
        ] {
            if let Some(x) = c.get(key) {
                *slot = cx
                    .strings(x, &c.field(key))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect();
            }
        }
        policy.max_age = duration(cx, &c, "maxAge");
        policy.allow_credentials = c
            .get("allowCredentials")
            .and_then(|x| cx.boolean(x, &c.field("allowCredentials")));
        out.cors_policy = Some(policy);
    }
    Some(out)
}

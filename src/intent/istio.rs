//! Istio `networking.istio.io` Gateway, VirtualService and DestinationRule in `resources/`:
//! their specs, as far as tidegate serves them (routes on gateway proxies, and TLS from
//! gateway proxies to backends).

use std::collections::BTreeMap;

use super::decode::{Cx, Obj};
use super::gateway_api;
use super::node::{Node, Value};
use crate::model::istio::{self, StringMatch};

/// Istio API versions read (`v1` is what tidegate writes; the older ones are the same
/// schema for the fields below).
pub const VERSIONS: &[&str] = &[
    istio::API_VERSION,
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

pub fn gateway(cx: &mut Cx<'_>, node: &Node) -> Option<istio::GatewaySpec> {
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
            "subsets need DestinationRules with `subsets`, which tidegate does not read (it reads their trafficPolicy.tls only); route to the Service",
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

pub fn virtual_service(cx: &mut Cx<'_>, node: &Node) -> Option<istio::VirtualServiceSpec> {
    let before = cx.problems.len();
    let s = cx.object(
        node,
        "spec",
        &["hosts", "gateways", "http", "tcp", "tls", "exportTo"],
    )?;
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
    let mut tls = Vec::new();
    if let Some(items) = s.get("tls").and_then(|n| cx.list(n, "spec.tls")) {
        for (i, item) in items.iter().enumerate() {
            let f = format!("spec.tls[{i}]");
            if let Some((match_, route)) = decode_vs_l4(cx, item, &f, true) {
                tls.push(istio::TlsRoute { match_, route });
            }
        }
    }
    let mut tcp = Vec::new();
    if let Some(items) = s.get("tcp").and_then(|n| cx.list(n, "spec.tcp")) {
        for (i, item) in items.iter().enumerate() {
            let f = format!("spec.tcp[{i}]");
            if let Some((match_, route)) = decode_vs_l4(cx, item, &f, false) {
                tcp.push(istio::TcpRoute { match_, route });
            }
        }
    }
    (cx.problems.len() == before).then_some(istio::VirtualServiceSpec {
        hosts,
        gateways,
        http,
        tls,
        tcp,
    })
}

/// A `tls[]` (`sni`: its matches need `sniHosts`) or `tcp[]` entry: matches and weighted
/// destinations. Match fields a gateway cannot see (source labels, subnets) are refused
/// rather than ignored, since ignoring one would route connections it was meant to exclude.
fn decode_vs_l4(
    cx: &mut Cx<'_>,
    node: &Node,
    field: &str,
    sni: bool,
) -> Option<(Vec<istio::L4Match>, Vec<istio::RouteDestination>)> {
    let before = cx.problems.len();
    let o = cx.object(node, field, &["match", "route"])?;
    let mut matches = Vec::new();
    let items = if sni {
        o.require(
            cx,
            "match",
            "a list such as [{sniHosts: [db.example.com], port: 443}]",
        )
        .and_then(|n| cx.list(n, &o.field("match")))
    } else {
        o.get("match").and_then(|n| cx.list(n, &o.field("match")))
    };
    for (i, item) in items.unwrap_or_default().iter().enumerate() {
        let f = format!("{}[{i}]", o.field("match"));
        let allowed: &[&str] = if sni {
            &[
                "port",
                "sniHosts",
                "destinationSubnets",
                "sourceLabels",
                "gateways",
                "sourceNamespace",
            ]
        } else {
            &[
                "port",
                "destinationSubnets",
                "sourceLabels",
                "gateways",
                "sourceNamespace",
                "sourceSubnet",
            ]
        };
        let Some(m) = cx.object(item, &f, allowed) else {
            continue;
        };
        for key in [
            "destinationSubnets",
            "sourceLabels",
            "gateways",
            "sourceNamespace",
            "sourceSubnet",
        ] {
            if let Some(n) = m.get(key) {
                cx.report(n.pos, &m.field(key), format!("`{key}` is not supported by tidegate (a gateway proxy routes by port{}); valid: port{}", if sni { " and SNI" } else { "" }, if sni { ", sniHosts" } else { "" }));
            }
        }
        let port = m
            .get("port")
            .and_then(|n| cx.int(n, &m.field("port"), 1, 65535))
            .map(|p| p as u16);
        let mut sni_hosts = Vec::new();
        if sni && let Some(n) = m.require(cx, "sniHosts", "the SNI names, such as [db.example.com]")
        {
            for (pos, h) in cx.strings(n, &m.field("sniHosts")).unwrap_or_default() {
                if crate::model::names::is_gateway_hostname(&h) || h == "*" {
                    sni_hosts.push(h);
                } else {
                    cx.report(pos, &m.field("sniHosts"), format!("`{h}` is not a valid SNI name; valid: a DNS name such as db.example.com, optionally starting with `*.`"));
                }
            }
            if sni_hosts.is_empty() && cx.problems.len() == before {
                cx.report(
                    n.pos,
                    &m.field("sniHosts"),
                    "must list at least one SNI name",
                );
            }
        }
        matches.push(istio::L4Match { port, sni_hosts });
    }
    let mut route = Vec::new();
    if let Some(items) = o
        .require(
            cx,
            "route",
            "a list of {destination: {host, port: {number}}, weight}",
        )
        .and_then(|n| cx.list(n, &o.field("route")))
    {
        for (i, item) in items.iter().enumerate() {
            let f = format!("{}[{i}]", o.field("route"));
            let Some(r) = cx.object(item, &f, &["destination", "weight"]) else {
                continue;
            };
            let destination = r
                .require(cx, "destination", "{host, port: {number}}")
                .and_then(|n| decode_destination(cx, n, &r.field("destination")));
            let weight = r
                .get("weight")
                .and_then(|n| cx.int(n, &r.field("weight"), 0, 100))
                .map(|w| w as u32);
            if let Some(destination) = destination {
                route.push(istio::RouteDestination {
                    destination,
                    weight,
                });
            }
        }
    }
    (cx.problems.len() == before).then_some((matches, route))
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

/// DestinationRule fields tidegate does not implement, with what to do instead. Refused
/// rather than ignored: a proxy that silently skipped a load-balancing or outlier policy
/// would behave unlike the cluster the same manifests are applied to.
const DR_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "subsets",
        "subsets (routing to a Service's version by labels) are not supported by tidegate; route to a Service per version",
    ),
    (
        "exportTo",
        "exportTo is not supported by tidegate: every DestinationRule is visible to every gateway (Istio's default, `*`); remove it",
    ),
    (
        "workloadSelector",
        "workloadSelector applies a DestinationRule to sidecars, which tidegate does not serve; remove it",
    ),
];

const POLICY_UNSUPPORTED: &[&str] = &[
    "loadBalancer",
    "connectionPool",
    "outlierDetection",
    "tunnel",
    "proxyProtocol",
    "retryBudget",
];

/// Client TLS fields that name files on the proxy: tidegate serves keys and CAs over SDS
/// from Secrets, so they are refused with `credentialName` as the way (`caCertificates`
/// is read and reported in status instead: a CA path left in an exported rule must not
/// reject the commit, but it must not be trusted blindly either).
const TLS_FILE_FIELDS: &[&str] = &["clientCertificate", "privateKey", "caCrl"];

/// The modes of `trafficPolicy.tls`.
pub const CLIENT_TLS_MODES: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];

/// A DestinationRule's spec: `host` and `trafficPolicy.tls` (whole Service and per port).
pub fn destination_rule(cx: &mut Cx<'_>, node: &Node) -> Option<istio::DestinationRuleSpec> {
    let before = cx.problems.len();
    let mut allowed = vec!["host", "trafficPolicy"];
    allowed.extend(DR_UNSUPPORTED.iter().map(|(k, _)| *k));
    let s = cx.object(node, "spec", &allowed)?;
    for (key, why) in DR_UNSUPPORTED {
        if let Some(n) = s.get(key) {
            cx.report(n.pos, &s.field(key), format!("{why}; valid in a DestinationRule: host, trafficPolicy.tls, trafficPolicy.portLevelSettings[].{{port, tls}}"));
        }
    }
    let host = s
        .require(
            cx,
            "host",
            "the Service, such as httpbin.httpbin.svc.cluster.local (or httpbin, in the rule's namespace)",
        )
        .and_then(|n| {
            let h = cx.string(n, "spec.host")?;
            let bare = h.strip_prefix("*.").unwrap_or(&h);
            if h == "*" || crate::model::names::is_dns1123_subdomain(bare) {
                Some(h)
            } else {
                cx.report(n.pos, "spec.host", format!("`{h}` is not a valid host; valid: a Service name such as httpbin, httpbin.httpbin.svc.cluster.local, or a wildcard such as *.httpbin.svc.cluster.local"));
                None
            }
        });
    let traffic_policy = s
        .get("trafficPolicy")
        .and_then(|n| traffic_policy(cx, n, "spec.trafficPolicy"));
    (cx.problems.len() == before).then_some(istio::DestinationRuleSpec {
        host: host?,
        traffic_policy,
    })
}

fn traffic_policy(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<istio::TrafficPolicy> {
    let mut allowed = vec!["tls", "portLevelSettings"];
    allowed.extend(POLICY_UNSUPPORTED);
    let p = cx.object(node, field, &allowed)?;
    refuse_policy_fields(cx, &p, "tls, portLevelSettings");
    let mut out = istio::TrafficPolicy {
        tls: p
            .get("tls")
            .and_then(|n| client_tls(cx, n, &p.field("tls"))),
        ..Default::default()
    };
    let Some(items) = p
        .get("portLevelSettings")
        .and_then(|n| cx.list(n, &p.field("portLevelSettings")))
    else {
        return Some(out);
    };
    for (i, item) in items.iter().enumerate() {
        let f = format!("{}[{i}]", p.field("portLevelSettings"));
        let mut allowed = vec!["port", "tls"];
        allowed.extend(POLICY_UNSUPPORTED);
        let Some(o) = cx.object(item, &f, &allowed) else {
            continue;
        };
        refuse_policy_fields(cx, &o, "port, tls");
        let tls = o
            .get("tls")
            .and_then(|n| client_tls(cx, n, &o.field("tls")));
        let port = o
            .require(cx, "port", "{number: <the Service port>}")
            .and_then(|n| {
                let po = cx.object(n, &o.field("port"), &["number"])?;
                po.require(cx, "number", "the Service port, such as 443")
                    .and_then(|x| cx.int(x, &po.field("number"), 1, 65535))
            });
        let Some(port) = port else { continue };
        if out
            .port_level_settings
            .iter()
            .any(|q| q.port.number == port as u16)
        {
            cx.report(
                item.pos,
                &format!("{f}.port.number"),
                format!("port {port} is listed twice; valid: each port once"),
            );
            continue;
        }
        out.port_level_settings.push(istio::PortTrafficPolicy {
            port: istio::PortSelector {
                number: port as u16,
            },
            tls,
        });
    }
    Some(out)
}

fn refuse_policy_fields(cx: &mut Cx<'_>, o: &Obj<'_>, valid: &str) {
    for key in POLICY_UNSUPPORTED {
        if let Some(n) = o.get(key) {
            cx.report(n.pos, &o.field(key), format!("`{key}` is not supported by tidegate (it reads a DestinationRule's TLS settings only); valid here: {valid}"));
        }
    }
}

/// `trafficPolicy.tls` (or a port's `tls`).
fn client_tls(cx: &mut Cx<'_>, node: &Node, field: &str) -> Option<istio::ClientTlsSettings> {
    let mut allowed = vec![
        "mode",
        "credentialName",
        "sni",
        "subjectAltNames",
        "caCertificates",
        "insecureSkipVerify",
    ];
    allowed.extend(TLS_FILE_FIELDS);
    let t = cx.object(node, field, &allowed)?;
    for key in TLS_FILE_FIELDS {
        if let Some(n) = t.get(key) {
            cx.report(n.pos, &t.field(key), format!("`{key}` names a file on the proxy, which tidegate's proxies do not have; valid: credentialName, a Secret with tls.crt, tls.key and ca.crt in the gateway's namespace"));
        }
    }
    // Istio's default mode.
    let mode = match t.get("mode") {
        None => Some("DISABLE".to_owned()),
        Some(n) => cx.choice(n, &t.field("mode"), CLIENT_TLS_MODES),
    };
    let credential_name = t.get("credentialName").and_then(|n| {
        cx.checked_string(
            n,
            &t.field("credentialName"),
            crate::model::names::is_dns1123_subdomain,
            "a Secret name; valid: a DNS-1123 subdomain",
        )
    });
    let sni = t.get("sni").and_then(|n| {
        cx.checked_string(
            n,
            &t.field("sni"),
            crate::model::names::is_dns1123_subdomain,
            "an SNI name; valid: a DNS name such as httpbin.example.com",
        )
    });
    let subject_alt_names = t
        .get("subjectAltNames")
        .and_then(|n| cx.strings(n, &t.field("subjectAltNames")))
        .unwrap_or_default()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let ca_certificates = t
        .get("caCertificates")
        .and_then(|n| cx.string(n, &t.field("caCertificates")));
    let insecure_skip_verify = t
        .get("insecureSkipVerify")
        .and_then(|n| cx.boolean(n, &t.field("insecureSkipVerify")));
    Some(istio::ClientTlsSettings {
        mode: mode?,
        credential_name,
        sni,
        subject_alt_names,
        ca_certificates,
        insecure_skip_verify,
    })
}

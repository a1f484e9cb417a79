//! Gateway API `Gateway` + `HTTPRoute` → a proxy plan, following the spec's rules:
//! attachment by parentRef (sectionName, port, allowedRoutes), listener ∩ route hostnames,
//! match precedence, PathPrefix on whole segments, 500 for rules without usable backends.

use std::collections::BTreeMap;

use super::plan::{
    Action, Backend, CorsPlan, Forward, HeaderOps, ListenerPlan, Mirror, PathMatch, PathRewrite,
    ProxyPlan, Redirect, RetryPlan, RoutePlan, StrMatch, TlsPlan, VhostPlan,
};
use crate::model::gateway_api::{
    self as gw, FilterType, HttpRoute, HttpRouteMatch, HttpRouteRule, Listener, PathMatchType,
    PathModifierType, ReferenceGrant, ValueMatchType, normalized_prefix,
};

/// The plan of the proxy that implements `gateway`.
pub fn plan(ix: &super::Index<'_>, gateway: &gw::Gateway) -> ProxyPlan {
    let gw_ns = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let mut plan = ProxyPlan::default();
    let grants = &ix.grants;
    // Only routes naming this gateway (checking every route against every gateway made
    // translation quadratic: 1.5 s at 10,000 intents on 100 gateways).
    let routes: &[super::Attached<'_>] = ix
        .routes_by_gateway
        .get(&(gw_ns, gateway.metadata.name.as_str()))
        .map_or(&[], Vec::as_slice);

    // Envoy has redirects, rewrites, mirrors and CORS per route, not per weighted
    // cluster: on a backendRef of a rule with several backends they cannot be applied.
    for a in routes {
        for (ri, rule) in a.route.spec.rules.iter().enumerate() {
            let live: Vec<_> = rule.backend_refs.iter().filter(|b| b.weight > 0).collect();
            let per_route_only = live.len() > 1
                && live.iter().flat_map(|b| &b.filters).any(|f| {
                    !matches!(
                        f.type_,
                        FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier
                    )
                });
            if per_route_only {
                plan.warnings.push(format!(
                    "{} {}/{} rules[{ri}]: backendRef filters other than header modifiers are applied only when the rule has one backend; ignored here (put them on the rule)",
                    a.kind(),
                    a.route.metadata.namespace.as_deref().unwrap_or_default(),
                    a.route.metadata.name
                ));
            }
        }
    }

    // (port, domain) → (listener specificity, the owning listener, routes with their sort
    // keys).
    type Entry = (Specificity, String, Vec<(SortKey, RoutePlan)>);
    let mut vhosts: BTreeMap<(u16, String), Entry> = BTreeMap::new();
    // port → (protocol, certificates); HTTP and HTTPS cannot share a port.
    let mut ports: BTreeMap<u16, (&str, Vec<TlsPlan>)> = BTreeMap::new();

    for listener in &gateway.spec.listeners {
        let protocol = listener.protocol.as_str();
        let mut tls = Vec::new();
        match protocol {
            "HTTP" => {}
            "HTTPS" => {
                let Some(t) = listener.tls.as_ref().filter(|t| t.mode == "Terminate") else {
                    plan.warnings.push(format!(
                        "listener {} (HTTPS, port {}) is not served: only TLS mode Terminate with certificateRefs is served",
                        listener.name, listener.port
                    ));
                    continue;
                };
                for r in &t.certificate_refs {
                    let ns = r.namespace.as_deref().unwrap_or(gw_ns);
                    if r.kind != "Secret" {
                        plan.warnings.push(format!(
                            "listener {}: certificateRef {}/{} is not served: only Secrets are",
                            listener.name, ns, r.name
                        ));
                        continue;
                    }
                    if !secret_permitted(ix, gw_ns, ns, &r.name) {
                        plan.warnings.push(format!(
                            "listener {}: certificateRef {}/{} is not served: no ReferenceGrant in {ns} allows Gateways of {gw_ns} to use it",
                            listener.name, ns, r.name
                        ));
                        continue;
                    }
                    tls.push(TlsPlan {
                        server_names: listener.hostname.iter().cloned().collect(),
                        secret: (ns.to_owned(), r.name.clone()),
                        listener: listener.name.clone(),
                    });
                }
                if tls.is_empty() {
                    continue;
                }
            }
            other => {
                plan.warnings.push(format!(
                    "listener {} has protocol {other}, which gateway proxies do not serve",
                    listener.name
                ));
                continue;
            }
        }
        let entry = ports.entry(listener.port).or_insert((protocol, Vec::new()));
        if entry.0 != protocol {
            plan.warnings.push(format!(
                "listener {} ({protocol}, port {}) is not served: port {} already serves {}",
                listener.name, listener.port, listener.port, entry.0
            ));
            continue;
        }
        // Only the first certificate of a listener is served (Envoy picks one per chain).
        entry.1.extend(tls.into_iter().take(1));
        for attached in routes {
            let route = &*attached.route;
            let route_ns = route.metadata.namespace.as_deref().unwrap_or_default();
            if !attaches(
                ix,
                route,
                attached.kind(),
                route_ns,
                gateway,
                gw_ns,
                listener,
            ) {
                continue;
            }
            for domain in intersect(listener.hostname.as_deref(), &route.spec.hostnames) {
                let spec = specificity(listener.hostname.as_deref());
                let entry = vhosts
                    .entry((listener.port, domain.clone()))
                    .or_insert_with(|| (spec, listener.name.clone(), Vec::new()));
                // A more specific listener owns the domain: its routes only (isolation).
                if spec < entry.0 {
                    *entry = (spec, listener.name.clone(), Vec::new());
                } else if spec > entry.0 {
                    continue;
                }
                for (ri, rule) in route.spec.rules.iter().enumerate() {
                    for (mi, m) in rule.matches.iter().enumerate() {
                        let key = (
                            m.precedence(),
                            route_ns.to_owned(),
                            route.metadata.name.clone(),
                            ri,
                            mi,
                        );
                        let name = format!(
                            "{}/{route_ns}/{}/rule/{ri}/match/{mi}",
                            attached.kind().to_ascii_lowercase(),
                            route.metadata.name
                        );
                        let from = (attached.kind(), route_ns);
                        let r = route_plan(name, m, rule, from, listener.port, grants);
                        if attached.grpc
                            && let Action::Forward(f) = &r.action
                        {
                            plan.http2_backends
                                .extend(f.backends.iter().map(|(b, _)| b.clone()));
                        }
                        entry.2.push((key, r));
                    }
                }
            }
        }
    }

    for (port, (_, mut tls)) in ports {
        tls.sort();
        tls.dedup();
        plan.listeners.insert(
            port,
            ListenerPlan {
                port,
                tls,
                vhosts: Vec::new(),
            },
        );
    }
    for ((port, domain), (_, owner, mut routes)) in vhosts {
        // Precedence, then namespace/name of the route (Git has no creation time, the
        // spec's first tie-breaker; namespace/name is its second), then rule and match order.
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let listener = plan.listeners.get_mut(&port).expect("listener planned");
        listener.vhosts.push(VhostPlan {
            name: format!("{domain}:{port}"),
            listener: owner,
            domains: vec![domain],
            routes: routes.into_iter().map(|(_, r)| r).collect(),
        });
    }
    plan.via_waypoint = super::mesh::ingress_waypoints(ix, &plan.backends());
    for (b, w) in &plan.via_waypoint {
        if !w.exists {
            plan.warnings.push(format!(
                "{}: its namespace sends ingress traffic through waypoint {}, which is not in the repository; requests to it fail (503) rather than skip the waypoint's rules",
                b.endpoints_key(),
                w.proxy_id()
            ));
        }
    }
    plan
}

type SortKey = (gw::Precedence, String, String, usize, usize);

/// Lower is more specific: exact hostname, then wildcards with more labels, then none.
type Specificity = (u8, std::cmp::Reverse<usize>);

fn specificity(hostname: Option<&str>) -> Specificity {
    match hostname {
        Some(h) if !h.starts_with('*') => (0, std::cmp::Reverse(0)),
        Some(h) => (1, std::cmp::Reverse(h.split('.').count())),
        None => (2, std::cmp::Reverse(0)),
    }
}

/// Whether `route` (of `kind`) attaches to `listener` of `gateway` (Gateway API
/// §ParentReference): a parentRef names it, and the listener allows the route.
pub(super) fn attaches(
    ix: &super::Index<'_>,
    route: &HttpRoute,
    kind: &str,
    route_ns: &str,
    gateway: &gw::Gateway,
    gw_ns: &str,
    listener: &Listener,
) -> bool {
    let parent_matches = route.spec.parent_refs.iter().any(|p| {
        p.group == gw::GROUP
            && p.kind == "Gateway"
            && p.name == gateway.metadata.name
            && p.namespace.as_deref().unwrap_or(route_ns) == gw_ns
            && p.section_name.as_deref().is_none_or(|s| s == listener.name)
            && p.port.is_none_or(|port| port == listener.port)
    });
    parent_matches && listener_allows(ix, listener, kind, route_ns, gw_ns)
}

/// Whether `listener` accepts a route of `kind` from namespace `route_ns`.
pub fn listener_allows(
    ix: &super::Index<'_>,
    listener: &Listener,
    kind: &str,
    route_ns: &str,
    gw_ns: &str,
) -> bool {
    let kinds = listener.allowed_routes.as_ref().map(|a| a.kinds.as_slice());
    let kind_ok = match kinds {
        Some(k) if !k.is_empty() => k.iter().any(|k| k.group == gw::GROUP && k.kind == kind),
        // The kinds the listener's protocol carries.
        _ => matches!(listener.protocol.as_str(), "HTTP" | "HTTPS"),
    };
    if !kind_ok {
        return false;
    }
    let allowed = listener.allowed_routes.as_ref().map(|a| &a.namespaces);
    match allowed.map(|n| n.from) {
        None | Some("Same") => route_ns == gw_ns,
        Some("All") => true,
        Some("Selector") => allowed.and_then(|n| n.selector.as_ref()).is_some_and(|s| {
            // Namespaces tidegate knows of carry their labels (from intents or from
            // `resources/`); any other has only the name label Kubernetes gives them all.
            let labels = ix.namespaces.get(route_ns).map(|n| &n.metadata.labels);
            s.matches_by(|k| {
                if k == "kubernetes.io/metadata.name" {
                    Some(route_ns)
                } else {
                    labels.and_then(|l| l.get(k)).map(String::as_str)
                }
            })
        }),
        Some(_) => false,
    }
}

/// The hostnames a route serves on a listener: the intersection, each as the more specific
/// of the pair. `*` when neither side restricts.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let Some(l) = listener else {
        return if route.is_empty() {
            vec!["*".into()]
        } else {
            route.to_vec()
        };
    };
    if route.is_empty() {
        return vec![l.to_owned()];
    }
    let mut out: Vec<String> = route
        .iter()
        .filter_map(|r| {
            if host_within(r, l) {
                Some(r.clone())
            } else if host_within(l, r) {
                Some(l.to_owned())
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether every name `inner` matches is also matched by `outer`.
fn host_within(inner: &str, outer: &str) -> bool {
    if inner == outer {
        return true;
    }
    match outer.strip_prefix("*.") {
        // `*.example.com` covers `a.example.com`, `a.b.example.com` and `*.a.example.com`,
        // but not `example.com`.
        Some(suffix) => inner
            .trim_start_matches("*.")
            .ends_with(&format!(".{suffix}")),
        None => false,
    }
}

/// One match of a rule as a route; `port` is the listener's (Service's, in a waypoint).
pub(super) fn route_plan(
    name: String,
    m: &HttpRouteMatch,
    rule: &HttpRouteRule,
    (route_kind, route_ns): (&str, &str),
    port: u16,
    grants: &[&ReferenceGrant],
) -> RoutePlan {
    let path = match m.path.type_ {
        PathMatchType::Exact => PathMatch::Exact(m.path.value.clone()),
        PathMatchType::RegularExpression => PathMatch::Regex(m.path.value.clone()),
        PathMatchType::PathPrefix => match normalized_prefix(&m.path.value) {
            "/" => PathMatch::Prefix("/".into()),
            p => PathMatch::SegmentPrefix(p.to_owned()),
        },
    };
    let value = |t: ValueMatchType, v: &str| match t {
        ValueMatchType::Exact => StrMatch::Exact(v.to_owned()),
        ValueMatchType::RegularExpression => StrMatch::Regex(v.to_owned()),
    };
    let mut plan = RoutePlan {
        name,
        headers: m
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), value(h.type_, &h.value)))
            .collect(),
        query: m
            .query_params
            .iter()
            .map(|q| (q.name.clone(), value(q.type_, &q.value)))
            .collect(),
        method: m.method.clone(),
        action: Action::Status(500),
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
        cors: None,
        path: path.clone(),
    };

    let mut forward = Forward::default();
    let permitted =
        |ns: &str, name: &str| service_permitted(grants, route_kind, route_ns, ns, name);
    for b in rule.backend_refs.iter().filter(|b| b.weight > 0) {
        let ns = b.namespace.clone().unwrap_or_else(|| route_ns.to_owned());
        let usable = is_service(b) && permitted(&ns, &b.name);
        let backend = Backend {
            service: b.name.clone(),
            namespace: ns,
            port: b.port,
        };
        // An unusable backend (not permitted, or not a Service) keeps its share of the
        // traffic, which gets 500: the cluster does not exist (see
        // `cluster_not_found_response_code`).
        let backend = if usable {
            backend
        } else {
            Backend {
                service: NOT_PERMITTED.into(),
                ..backend
            }
        };
        let (mut request, mut response) = (HeaderOps::default(), HeaderOps::default());
        for f in &b.filters {
            match f.type_ {
                FilterType::RequestHeaderModifier => request = header_ops(f),
                FilterType::ResponseHeaderModifier => response = header_ops(f),
                _ => {}
            }
        }
        if request != HeaderOps::default() || response != HeaderOps::default() {
            forward
                .backend_headers
                .push((forward.backends.len(), request, response));
        }
        forward.backends.push((backend, b.weight));
    }
    if let Some(t) = &rule.timeouts {
        // `backendRequest` bounds each call to a backend, so with retries each try; the
        // whole exchange is `request`. With only `backendRequest`, Envoy's own 15 s
        // route timeout is lifted: the tries bound it.
        let request = t.request.as_deref().and_then(duration_ms);
        let backend = t.backend_request.as_deref().and_then(duration_ms);
        forward.timeout_ms = request.or(backend.map(|_| 0));
        forward.per_try_timeout_ms = backend;
    }
    if let Some(r) = &rule.retry {
        forward.retry = Some(RetryPlan {
            // Gateway API: implementations "MUST retry on connection errors".
            on: ["connect-failure", "refused-stream", "reset"]
                .map(String::from)
                .to_vec(),
            codes: r.codes.clone(),
            // Gateway API leaves the default to implementations; Envoy's is 1.
            attempts: r.attempts.unwrap_or(1),
            backoff_ms: r.backoff.as_deref().and_then(duration_ms),
        });
    }
    // A backendRef's own filters act on the requests sent to it. With a single backend
    // that is every request the rule forwards, so filters Envoy has only per route
    // (redirect, rewrite, mirror, CORS) apply as the rule's; header changes stay per
    // backend. With several backends only the header changes are applied.
    let live: Vec<_> = rule.backend_refs.iter().filter(|b| b.weight > 0).collect();
    let hoisted = match live.as_slice() {
        [one] => one
            .filters
            .iter()
            .filter(|f| {
                !matches!(
                    f.type_,
                    FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut redirect = None;
    let mut unresolved_filter = false;
    for f in rule.filters.iter().chain(hoisted) {
        match f.type_ {
            FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier => {
                let ops = header_ops(f);
                if f.type_ == FilterType::RequestHeaderModifier {
                    plan.request_headers = ops;
                } else {
                    plan.response_headers = ops;
                }
            }
            FilterType::RequestMirror => {
                let Some(m) = &f.request_mirror else { continue };
                let r = &m.backend_ref;
                let ns = r.namespace.clone().unwrap_or_else(|| route_ns.to_owned());
                // A mirror to something unusable is dropped: mirroring must never change
                // what the client gets.
                if r.group.is_empty() && r.kind == "Service" && permitted(&ns, &r.name) {
                    let (numerator, denominator) = m.share();
                    forward.mirrors.push(Mirror {
                        backend: Backend {
                            service: r.name.clone(),
                            namespace: ns,
                            port: r.port.unwrap_or(port),
                        },
                        numerator,
                        denominator,
                    });
                }
            }
            FilterType::Cors => {
                let c = f.cors.clone().unwrap_or_default();
                plan.cors = Some(CorsPlan {
                    allow_origins: c
                        .allow_origins
                        .iter()
                        .map(|o| match gw::origin_regex(o) {
                            Some(re) => StrMatch::Regex(re),
                            None => StrMatch::Exact(o.clone()),
                        })
                        .collect(),
                    allow_credentials: c.allow_credentials.unwrap_or(false),
                    allow_methods: c.allow_methods,
                    allow_headers: c.allow_headers,
                    expose_headers: c.expose_headers,
                    max_age: c.max_age,
                });
            }
            // tidegate implements no extension filters. The spec: a filter that cannot be
            // resolved must not be skipped; the requests it would handle get a 500.
            FilterType::ExtensionRef => unresolved_filter = true,
            FilterType::UrlRewrite => {
                let r = f.url_rewrite.clone().unwrap_or_default();
                forward.host_rewrite = r.hostname;
                forward.path_rewrite = r.path.as_ref().and_then(|p| path_rewrite(p, &path));
            }
            FilterType::RequestRedirect => {
                let r = f.request_redirect.clone().unwrap_or_default();
                // Envoy drops the request's port when it rewrites the host and keeps it when
                // it rewrites the scheme; Gateway API wants the scheme's default port, or
                // else the listener's. Setting the port explicitly gives that every time.
                let port = r.port.or(match r.scheme.as_deref() {
                    Some("https") => Some(443),
                    Some("http") => Some(80),
                    _ if port == 80 => None,
                    _ => Some(port),
                });
                redirect = Some(Redirect {
                    scheme: r.scheme,
                    host: r.hostname,
                    port,
                    path: r.path.as_ref().and_then(|p| path_rewrite(p, &path)),
                    status: r.status_code,
                });
            }
        }
    }
    // No usable backend: HTTPRoute says 500; GRPCRoute says UNAVAILABLE, which is what
    // Envoy's gRPC mapping of a 503 gives.
    let grpc = route_kind == "GRPCRoute";
    let failed = if grpc { 503 } else { 500 };
    forward.grpc = grpc;
    plan.action = match redirect {
        _ if unresolved_filter => Action::Status(failed),
        Some(r) => Action::Redirect(r),
        None if forward.backends.is_empty() => Action::Status(failed),
        None => Action::Forward(forward),
    };
    plan
}

/// Whether a backendRef names a Service (the only backend kind tidegate routes to).
pub fn is_service(b: &gw::HttpBackendRef) -> bool {
    b.group.is_empty() && b.kind == "Service"
}

/// Whether a route of `route_kind` in `route_ns` may send to Service `ns`/`name`: its own
/// namespace, or a ReferenceGrant there allows it. Translation and route status both ask
/// this, so what the status says is what the proxies do.
pub fn service_permitted(
    grants: &[&ReferenceGrant],
    route_kind: &str,
    route_ns: &str,
    ns: &str,
    name: &str,
) -> bool {
    ns == route_ns
        || grants.iter().any(|g| {
            g.metadata.namespace.as_deref() == Some(ns) && g.allows(route_kind, route_ns, name)
        })
}

/// Whether a Gateway in `gw_ns` may use Secret `ns`/`name` for TLS: its own namespace, or
/// a ReferenceGrant there allows Gateways of `gw_ns`.
pub fn secret_permitted(ix: &super::Index<'_>, gw_ns: &str, ns: &str, name: &str) -> bool {
    ns == gw_ns
        || ix.grants.iter().any(|g| {
            g.metadata.namespace.as_deref() == Some(ns)
                && g.allows_ref("Gateway", gw_ns, "Secret", name)
        })
}

/// The service name standing for a backend the route may not use: no cluster has it, so
/// Envoy answers 500.
pub const NOT_PERMITTED: &str = "tidegate-ref-not-permitted";

fn header_ops(f: &gw::HttpRouteFilter) -> HeaderOps {
    let hm = f.header_modifier();
    HeaderOps {
        set: hm.set.into_iter().map(|h| (h.name, h.value)).collect(),
        add: hm.add.into_iter().map(|h| (h.name, h.value)).collect(),
        remove: hm.remove,
    }
}

fn path_rewrite(p: &gw::PathModifier, matched: &PathMatch) -> Option<PathRewrite> {
    match p.type_ {
        PathModifierType::ReplaceFullPath => p.replace_full_path.clone().map(PathRewrite::Full),
        PathModifierType::ReplacePrefixMatch => {
            let to = p.replace_prefix_match.clone().unwrap_or_default();
            // `""` and `/` both strip the prefix; Envoy's prefix_rewrite "" would do nothing.
            let to = if to.is_empty() {
                "/".to_owned()
            } else {
                normalized_prefix(&to).to_owned()
            };
            Some(match matched {
                // Matching `/` means every path starts with the prefix: insert after it.
                PathMatch::Prefix(p) if p == "/" && to != "/" => PathRewrite::Regex {
                    pattern: "^/".into(),
                    substitution: format!("{to}/"),
                },
                // Stripping a prefix: `/p/x` must become `/x`, not `//x` (Envoy's
                // prefix_rewrite replaces `/p` alone), and `/p` must become `/`.
                PathMatch::SegmentPrefix(p) if to == "/" => PathRewrite::Regex {
                    pattern: format!("^{}/*", regex_syntax::escape(p)),
                    substitution: "/".into(),
                },
                _ => PathRewrite::Prefix(to),
            })
        }
    }
}

/// Gateway API / Istio duration (`1h2m3s4ms`, also `1.5s` for Istio) in milliseconds.
pub fn duration_ms(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, len) = if rest.starts_with("ms") {
            (1.0, 2)
        } else if rest.starts_with('s') {
            (1000.0, 1)
        } else if rest.starts_with('m') {
            (60_000.0, 1)
        } else if rest.starts_with('h') {
            (3_600_000.0, 1)
        } else {
            return None;
        };
        total += value * unit;
        rest = &rest[len..];
    }
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_intersection() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(intersect(None, &[]), v(&["*"]));
        assert_eq!(intersect(Some("a.example.com"), &[]), v(&["a.example.com"]));
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["a.example.com", "other.org"])),
            v(&["a.example.com"])
        );
        assert_eq!(
            intersect(Some("very.specific.com"), &v(&["*.specific.com"])),
            v(&["very.specific.com"])
        );
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["example.com"])),
            Vec::<String>::new()
        );
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["*.a.example.com"])),
            v(&["*.a.example.com"])
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("5s"), Some(5000));
        assert_eq!(duration_ms("1m30s"), Some(90_000));
        assert_eq!(duration_ms("250ms"), Some(250));
        assert_eq!(duration_ms("1.5s"), Some(1500));
        assert_eq!(duration_ms("x"), None);
    }
}

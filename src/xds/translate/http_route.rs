//! One match of an HTTPRoute rule as a route of the plan: path, headers, query, method,
//! filters, backends (a backend the route may not use is [`Target::Refused`]), mirrors,
//! timeouts, retries. Gateway proxies and waypoints translate HTTPRoute rules alike.

use crate::model::gateway_api::{
    self as gw, FilterType, HttpRouteMatch, HttpRouteRule, PathMatchType, PathModifierType,
    ReferenceGrant, ValueMatchType, normalized_prefix,
};
use crate::xds::plan::{
    Action, Backend, CorsPlan, Forward, HeaderOps, Mirror, PathMatch, PathRewrite, Redirect,
    Refused, RefusedReason, RetryPlan, RoutePlan, StrMatch, Target, WeightedTarget,
};

use super::rules::{is_service, service_permitted};
use crate::model::duration::parse_ms as duration_ms;

/// Where a backendRef of a route of `route_kind` in `route_ns` sends. An unusable backend
/// (not a Service, or not permitted) keeps its share of the traffic, which fails: the
/// emitter gives it no cluster (HTTP 500 via `cluster_not_found_response_code`; a closed
/// connection for L4 routes).
pub fn target(
    b: &gw::HttpBackendRef,
    route_kind: &str,
    route_ns: &str,
    grants: &[&ReferenceGrant],
) -> Target {
    let ns = b.namespace.clone().unwrap_or_else(|| route_ns.to_owned());
    let refused = if !is_service(b) {
        Some(RefusedReason::NotAService)
    } else if !service_permitted(grants, route_kind, route_ns, &ns, &b.name) {
        Some(RefusedReason::NotPermitted)
    } else {
        None
    };
    match refused {
        None => Target::Service(Backend {
            service: b.name.clone(),
            namespace: ns,
            port: b.port,
        }),
        Some(reason) => Target::Refused(Refused {
            group: b.group.clone(),
            kind: b.kind.clone(),
            namespace: ns,
            name: b.name.clone(),
            port: b.port,
            reason,
        }),
    }
}

/// One match of a rule as a route; `port` is the listener's (Service's, in a waypoint).
pub fn route_plan(
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
        let target = target(b, route_kind, route_ns, grants);
        let (mut request, mut response) = (HeaderOps::default(), HeaderOps::default());
        for f in &b.filters {
            match f.type_ {
                FilterType::RequestHeaderModifier => request = header_ops(f),
                FilterType::ResponseHeaderModifier => response = header_ops(f),
                _ => {}
            }
        }
        forward.backends.push(WeightedTarget {
            target,
            weight: b.weight,
            request_headers: request,
            response_headers: response,
        });
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

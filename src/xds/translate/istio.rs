//! Istio `Gateway` + `VirtualService` → a proxy plan. A VirtualService is first-match: its
//! `http` entries keep their order, one Envoy route per `match` entry; several
//! VirtualServices for one host are concatenated by namespace/name (standing in for
//! Istio's creation-time order, which Git does not have).

use std::collections::BTreeMap;

use crate::model::istio::{self, HttpMatchRequest, StringMatch, VirtualService};
use crate::xds::plan::{
    Action, Backend, CorsPlan, Forward, HeaderOps, ListenerPlan, Mirror, PathMatch, PathRewrite,
    ProxyPlan, ProxyRef, Redirect, RetryPlan, RoutePlan, SecretRef, StrMatch, Target, TlsPlan,
    VhostPlan, WeightedTarget,
};

use super::ambient::route_through_waypoints;
use super::index::Index;
use crate::model::duration::parse_ms as duration_ms;

pub fn plan(ix: &Index<'_>, gateway: &istio::Gateway) -> ProxyPlan {
    let gw_ns = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let gw_name = &gateway.metadata.name;
    let mut plan = ProxyPlan {
        proxy: ProxyRef::of(
            &gateway.metadata.name,
            gateway.metadata.namespace.as_deref(),
        ),
        ..ProxyPlan::default()
    };

    let mut services: Vec<&VirtualService> = ix
        .virtual_services
        .get(&(gw_ns.to_owned(), gw_name.clone()))
        .cloned()
        .unwrap_or_default();
    services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });

    // (port, host) → routes, in order.
    let mut vhosts: BTreeMap<(u16, String), Vec<RoutePlan>> = BTreeMap::new();
    // port → whether it terminates TLS; HTTP and HTTPS cannot share a port.
    let mut tls_ports: BTreeMap<u16, bool> = BTreeMap::new();
    for server in &gateway.spec.servers {
        let port = server.port.number;
        let mut tls = Vec::new();
        match (server.port.protocol.as_str(), &server.tls) {
            ("HTTP", _) => {}
            ("HTTPS", Some(t)) if t.mode == "SIMPLE" && !t.credential_name.is_empty() => {
                // Istio reads credentialName from the gateway's namespace.
                let mut names: Vec<String> = server
                    .hosts
                    .iter()
                    .map(|h| h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h).to_owned())
                    .collect();
                if names.iter().any(|n| n == "*") {
                    names.clear();
                }
                tls.push(TlsPlan {
                    server_names: names,
                    secret: SecretRef {
                        namespace: gw_ns.to_owned(),
                        name: t.credential_name.clone(),
                    },
                    listener: String::new(),
                });
            }
            (protocol, _) => {
                plan.warnings.push(format!(
                    "server {} ({protocol}, port {}) is not served: HTTP servers and HTTPS servers with tls mode SIMPLE and a credentialName are",
                    server.port.name, server.port.number
                ));
                continue;
            }
        }
        let is_tls = !tls.is_empty();
        if *tls_ports.entry(port).or_insert(is_tls) != is_tls {
            plan.warnings.push(format!(
                "server {} (port {port}) is not served: the port already serves {}",
                server.port.name,
                if is_tls { "HTTP" } else { "HTTPS" }
            ));
            continue;
        }
        let listener = plan
            .listeners
            .entry(port)
            .or_insert_with(|| ListenerPlan::http_listener(port))
            .http_mut();
        listener.tls.extend(tls);
        listener.tls.sort();
        listener.tls.dedup();
        for vs in &services {
            let vs_ns = vs.metadata.namespace.as_deref().unwrap_or_default();
            for host in &vs.spec.hosts {
                if !server
                    .hosts
                    .iter()
                    .any(|h| server_host_admits(h, gw_ns, vs_ns, host))
                {
                    continue;
                }
                let routes = vhosts.entry((port, host.clone())).or_default();
                for (hi, http) in vs.spec.http.iter().enumerate() {
                    let matches: Vec<Option<&HttpMatchRequest>> = if http.match_.is_empty() {
                        vec![None]
                    } else {
                        http.match_.iter().map(Some).collect()
                    };
                    for (mi, m) in matches.into_iter().enumerate() {
                        let name = format!(
                            "virtualservice/{vs_ns}/{}/http/{hi}/match/{mi}",
                            vs.metadata.name
                        );
                        routes.push(route_plan(name, m, http, vs_ns, port));
                    }
                }
            }
        }
    }
    for ((port, host), routes) in vhosts {
        if let Some(l) = plan.listeners.get_mut(&port) {
            l.http_mut().vhosts.push(VhostPlan {
                name: format!("{host}:{port}"),
                listener: String::new(),
                domains: vec![host],
                routes,
            });
        }
    }
    route_through_waypoints(ix, &mut plan);
    plan
}

/// Whether a server host entry (`host`, `*`, `*.example.com`, `ns/host`, `*/host`, `./host`)
/// exposes `host` to a VirtualService in `vs_ns`.
fn server_host_admits(entry: &str, gw_ns: &str, vs_ns: &str, host: &str) -> bool {
    let (ns, pattern) = entry.split_once('/').unwrap_or(("*", entry));
    let ns_ok = ns == "*" || ns == vs_ns || (ns == "." && vs_ns == gw_ns);
    let host_ok = pattern == "*"
        || pattern == host
        || pattern.strip_prefix("*.").is_some_and(|suffix| {
            host.trim_start_matches("*.")
                .ends_with(&format!(".{suffix}"))
        });
    ns_ok && host_ok
}

fn str_match(m: &StringMatch) -> StrMatch {
    match m {
        StringMatch::Exact(v) => StrMatch::Exact(v.clone()),
        StringMatch::Prefix(v) => StrMatch::Prefix(v.clone()),
        StringMatch::Regex(v) => StrMatch::Regex(v.clone()),
    }
}

/// `httpbin` (VirtualService namespace), `httpbin.ns`, `httpbin.ns.svc.cluster.local`.
fn backend(host: &str, vs_ns: &str, port: u16) -> Backend {
    let host = host.trim_end_matches(".svc.cluster.local");
    let (service, namespace) = host.split_once('.').unwrap_or((host, vs_ns));
    Backend {
        service: service.to_owned(),
        namespace: namespace.to_owned(),
        port,
    }
}

fn ops(h: Option<&istio::HeaderOperations>) -> HeaderOps {
    let Some(h) = h else {
        return HeaderOps::default();
    };
    HeaderOps {
        set: h.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        add: h.add.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        remove: h.remove.clone(),
    }
}

fn route_plan(
    name: String,
    m: Option<&HttpMatchRequest>,
    http: &istio::HttpRoute,
    vs_ns: &str,
    listener_port: u16,
) -> RoutePlan {
    let path = match m.and_then(|m| m.uri.as_ref()) {
        None => PathMatch::Prefix("/".into()),
        Some(StringMatch::Exact(p)) => PathMatch::Exact(p.clone()),
        Some(StringMatch::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(StringMatch::Regex(p)) => PathMatch::Regex(p.clone()),
    };
    let headers = http.headers.as_ref();
    let mut plan = RoutePlan {
        name,
        headers: m
            .map(|m| {
                m.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), str_match(v)))
                    .collect()
            })
            .unwrap_or_default(),
        query: m
            .map(|m| {
                m.query_params
                    .iter()
                    .map(|(k, v)| (k.clone(), str_match(v)))
                    .collect()
            })
            .unwrap_or_default(),
        method: m.and_then(|m| m.method.as_ref()).map(|s| match s {
            StringMatch::Exact(v) | StringMatch::Prefix(v) | StringMatch::Regex(v) => v.clone(),
        }),
        action: Action::Status(500),
        request_headers: ops(headers.and_then(|h| h.request.as_ref())),
        response_headers: ops(headers.and_then(|h| h.response.as_ref())),
        cors: http.cors_policy.as_ref().map(|c| CorsPlan {
            allow_origins: c.allow_origins.iter().map(str_match).collect(),
            allow_credentials: c.allow_credentials.unwrap_or(false),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age: c
                .max_age
                .as_deref()
                .and_then(duration_ms)
                .map(|ms| (ms / 1000) as u32),
        }),
        path: path.clone(),
    };
    if let Some(d) = &http.direct_response {
        plan.action = Action::Status(d.status);
    } else if let Some(r) = &http.redirect {
        plan.action = Action::Redirect(Redirect {
            scheme: r.scheme.clone(),
            host: r.authority.clone(),
            port: r.port.or(match r.scheme.as_deref() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ if listener_port == 80 => None,
                _ => Some(listener_port),
            }),
            path: r.uri.clone().map(PathRewrite::Full),
            status: r.redirect_code,
        });
    } else if !http.route.is_empty() {
        let mut f = Forward {
            backends: http
                .route
                .iter()
                .map(|d| WeightedTarget {
                    target: Target::Service(backend(
                        &d.destination.host,
                        vs_ns,
                        d.destination.port.number,
                    )),
                    weight: d.weight.unwrap_or(100),
                    request_headers: HeaderOps::default(),
                    response_headers: HeaderOps::default(),
                })
                .filter(|w| w.weight > 0)
                .collect(),
            timeout_ms: http.timeout.as_deref().and_then(duration_ms),
            mirrors: http
                .mirrors
                .iter()
                .map(|m| {
                    // Percent as parts per million: what Envoy's fraction takes exactly.
                    let pct = m.percentage.as_ref().map_or(100.0, |p| p.value);
                    Mirror {
                        backend: backend(&m.destination.host, vs_ns, m.destination.port.number),
                        numerator: (pct.clamp(0.0, 100.0) * 10_000.0).round() as u32,
                        denominator: 1_000_000,
                    }
                })
                .collect(),
            retry: http.retries.as_ref().map(|r| RetryPlan {
                // Plain status codes in retryOn are Istio's spelling of retriable codes;
                // the rest are Envoy's conditions.
                on: r
                    .retry_on
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && t.parse::<u16>().is_err())
                    .map(String::from)
                    .collect(),
                codes: r
                    .retry_on
                    .split(',')
                    .filter_map(|t| t.trim().parse().ok())
                    .collect(),
                attempts: r.attempts,
                backoff_ms: r.backoff.as_deref().and_then(duration_ms),
            }),
            per_try_timeout_ms: http
                .retries
                .as_ref()
                .and_then(|r| r.per_try_timeout.as_deref())
                .and_then(duration_ms),
            ..Forward::default()
        };
        if let Some(rw) = &http.rewrite {
            f.host_rewrite = rw.authority.clone();
            // `rewrite.uri` replaces the matched prefix, or the whole path of an exact match.
            f.path_rewrite = match (&rw.uri, &rw.uri_regex_rewrite, &path) {
                (Some(u), _, PathMatch::Exact(_)) => Some(PathRewrite::Full(u.clone())),
                (Some(u), _, _) => Some(PathRewrite::Prefix(u.clone())),
                (None, Some(r), _) => Some(PathRewrite::Regex {
                    pattern: r.match_.clone(),
                    substitution: r.rewrite.clone(),
                }),
                (None, None, _) => None,
            };
        }
        plan.action = Action::Forward(f);
    }
    plan
}

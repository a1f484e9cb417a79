//! Istio `Gateway` + `VirtualService` → a proxy plan. A VirtualService is first-match: its
//! `http` entries keep their order, one Envoy route per `match` entry; several
//! VirtualServices for one host are concatenated by namespace/name (standing in for
//! Istio's creation-time order, which Git does not have).
//!
//! Connections: a server with protocol TLS and `tls.mode: PASSTHROUGH` routes by SNI with
//! the VirtualServices' `tls` entries, one with `SIMPLE` terminates TLS and routes the
//! plain stream with their `tcp` entries, a TCP server routes with `tcp` entries. As in
//! Istio, the first entry (VirtualService order, then entry order) that matches a name
//! (TLS) or the port (TCP) takes the connections.
//!
//! TLS to backends: each backend port gets the `trafficPolicy.tls` of the DestinationRule
//! Istio would pick for the gateway's proxy (see [`destination_rule_for`]); an HTTPS server
//! with `tls.mode: MUTUAL` checks client certificates against its credential's `ca.crt`.

use std::collections::BTreeMap;

use crate::model::istio::{self, HttpMatchRequest, StringMatch, VirtualService};
use crate::xds::plan::{
    Action, Backend, ClientValidation, CorsPlan, Forward, HeaderOps, L4Forward, L4Target,
    ListenerKind, ListenerPlan, Mirror, PathMatch, PathRewrite, PortSel, ProxyPlan, ProxyRef,
    Redirect, RetryPlan, RoutePlan, San, SecretRef, ServiceRef, SniChain, StrMatch, Target,
    TlsListener, TlsPlan, Trust, UpstreamTls, UpstreamTlsKey, VhostPlan, WeightedTarget,
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
    // port → what it serves: one Envoy listener per port speaks one protocol.
    let mut port_use: BTreeMap<u16, PortUse> = BTreeMap::new();
    // TLS ports: SNI name → (the server it is served by, its chain); the first one wins.
    let mut sni: BTreeMap<u16, BTreeMap<String, SniChain>> = BTreeMap::new();
    for server in &gateway.spec.servers {
        let port = server.port.number;
        let mut tls = Vec::new();
        let kind = match (server.port.protocol.as_str(), &server.tls) {
            ("HTTP", _) => PortUse::Http,
            ("HTTPS", Some(t))
                if matches!(t.mode, "SIMPLE" | "MUTUAL") && !t.credential_name.is_empty() =>
            {
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
                    // Istio's MUTUAL reads the client CA from the credential's `ca.crt`.
                    client_validation: (t.mode == "MUTUAL").then(|| ClientValidation {
                        trust: Trust::Secret(SecretRef {
                            namespace: gw_ns.to_owned(),
                            name: t.credential_name.clone(),
                        }),
                        allow_insecure: false,
                    }),
                });
                PortUse::Https
            }
            // Istio routes an HTTPS server in PASSTHROUGH like a TLS one: by SNI, with `tls`.
            ("TLS" | "HTTPS", Some(t)) if t.mode == "PASSTHROUGH" => PortUse::Tls,
            ("TLS", Some(t)) if t.mode == "SIMPLE" && !t.credential_name.is_empty() => PortUse::Tls,
            ("TCP", _) => PortUse::Tcp,
            (protocol, _) => {
                plan.warnings.push(format!(
                    "server {} ({protocol}, port {}) is not served: HTTP servers, HTTPS servers with tls mode SIMPLE or MUTUAL and a credentialName, TLS servers with tls mode PASSTHROUGH (or SIMPLE and a credentialName) and TCP servers are{}",
                    server.port.name,
                    server.port.number,
                    match server.tls.as_ref().map(|t| t.mode) {
                        Some("MUTUAL") if protocol == "HTTPS" => " (MUTUAL needs a credentialName: the Secret with the certificate and the client CA, ca.crt)",
                        Some("MUTUAL") => " (MUTUAL: client certificates are checked on HTTPS servers only)",
                        Some("OPTIONAL_MUTUAL") => " (OPTIONAL_MUTUAL: optional client certificates are not supported; use MUTUAL)",
                        Some("ISTIO_MUTUAL" | "AUTO_PASSTHROUGH") => " (mesh-internal modes need Istio's own certificates)",
                        _ => "",
                    }
                ));
                continue;
            }
        };
        let used = *port_use.entry(port).or_insert(kind);
        if used != kind {
            plan.warnings.push(format!(
                "server {} (port {port}) is not served: the port already serves {}",
                server.port.name,
                used.as_str()
            ));
            continue;
        }
        match kind {
            PortUse::Tls => {
                let chains = sni.entry(port).or_default();
                tls_server_chains(&services, server, gw_ns, chains);
                continue;
            }
            PortUse::Tcp => {
                if plan.listeners.contains_key(&port) {
                    // An earlier TCP server of the port already took its connections.
                    continue;
                }
                match first_tcp_route(&services, server, gw_ns, None) {
                    Some(forward) => {
                        plan.listeners.insert(
                            port,
                            ListenerPlan {
                                port,
                                kind: ListenerKind::Tcp(forward),
                            },
                        );
                    }
                    None => plan.warnings.push(format!(
                        "server {} (TCP, port {port}) is not served: no VirtualService bound to it has a tcp route for the port",
                        server.port.name
                    )),
                }
                continue;
            }
            PortUse::Http | PortUse::Https => {}
        }
        let listener = plan
            .listeners
            .entry(port)
            .or_insert_with(|| ListenerPlan::http_listener(port))
            .http_mut();
        listener.tls.extend(tls);
        listener.tls.sort();
        listener.tls.dedup();
        // A VirtualService of connection routes only gives an HTTP port no virtual host.
        for vs in services.iter().filter(|vs| !vs.spec.http.is_empty()) {
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
    for (port, chains) in sni {
        if chains.is_empty() {
            plan.warnings.push(format!(
                "port {port} (TLS) is not served: no VirtualService bound to its servers has a route for their hosts"
            ));
            continue;
        }
        plan.listeners.insert(
            port,
            ListenerPlan {
                port,
                kind: ListenerKind::Tls(TlsListener {
                    chains: chains.into_values().collect(),
                }),
            },
        );
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
    upstream_tls(ix, gw_ns, &mut plan);
    plan
}

/// Istio's root namespace: DestinationRules there apply mesh-wide.
const ROOT_NAMESPACE: &str = "istio-system";

/// `plan.upstream_tls` for every backend port the plan sends to, from the DestinationRule
/// Istio picks for it, by that port's number (a port-level `tls` replaces the rule's own
/// for that port, as in Istio).
fn upstream_tls(ix: &Index<'_>, gw_ns: &str, plan: &mut ProxyPlan) {
    let mut warnings = std::collections::BTreeSet::new();
    for b in plan.backends() {
        let Some(dr) = destination_rule_for(ix, gw_ns, &b) else {
            continue;
        };
        let Some(policy) = &dr.spec.traffic_policy else {
            continue;
        };
        let tls = policy
            .port_level_settings
            .iter()
            .find(|p| p.port.number == b.port && p.tls.is_some())
            .and_then(|p| p.tls.as_ref())
            .or(policy.tls.as_ref());
        let Some(tls) = tls else { continue };
        let source = format!(
            "DestinationRule {}/{}",
            dr.metadata.namespace.as_deref().unwrap_or_default(),
            dr.metadata.name
        );
        if let Some(u) = client_tls(tls, gw_ns, source, &mut warnings) {
            plan.upstream_tls.insert(
                UpstreamTlsKey {
                    service: ServiceRef {
                        name: b.service.clone(),
                        namespace: b.namespace.clone(),
                    },
                    port: PortSel::Number(b.port),
                },
                u,
            );
        }
    }
    plan.warnings.extend(warnings);
}

/// The DestinationRule Istio applies to a gateway proxy in `gw_ns` sending to `b`: the
/// rules of the proxy's namespace first, then of the Service's, then of the root namespace
/// (`istio-system`); within a namespace the most specific `host` (exact, then the longest
/// wildcard). Istio merges rules of one host and keeps the oldest one's traffic policy: the
/// oldest by Git history (plain DestinationRules are dated), then the first by name.
pub fn destination_rule_for<'a>(
    ix: &Index<'a>,
    gw_ns: &str,
    b: &Backend,
) -> Option<&'a istio::DestinationRule> {
    let fqdn = b.dns_name();
    let mut tiers = vec![gw_ns, b.namespace.as_str(), ROOT_NAMESPACE];
    tiers.dedup();
    for ns in tiers {
        let best = ix
            .destination_rules
            .iter()
            .filter(|d| d.metadata.namespace.as_deref().unwrap_or_default() == ns)
            .filter_map(|d| {
                let host = resolve_host(&d.spec.host, ns);
                let specificity = if host == fqdn {
                    usize::MAX
                } else if host == "*" {
                    0
                } else if let Some(suffix) = host.strip_prefix('*')
                    && fqdn.ends_with(suffix)
                {
                    suffix.len()
                } else {
                    return None;
                };
                Some((specificity, *d))
            })
            .min_by(|(sa, a), (sb, b)| {
                let age = |d: &istio::DestinationRule| d.metadata.created.unwrap_or(i64::MAX);
                sb.cmp(sa)
                    .then(age(a).cmp(&age(b)))
                    .then(a.metadata.name.cmp(&b.metadata.name))
            });
        if let Some((_, d)) = best {
            return Some(d);
        }
    }
    None
}

/// A rule's `host` as Istio reads it: a name without a dot is a Service of the rule's
/// namespace; anything else is taken as written.
fn resolve_host(host: &str, ns: &str) -> String {
    if host == "*" || host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.{ns}.svc.cluster.local")
    }
}

/// `trafficPolicy.tls` as upstream TLS; `None` is plain text. The CA and the client pair
/// come from the Secret `credentialName` in the gateway's namespace, as in Istio.
fn client_tls(
    tls: &istio::ClientTlsSettings,
    gw_ns: &str,
    source: String,
    warnings: &mut std::collections::BTreeSet<String>,
) -> Option<UpstreamTls> {
    let secret = tls.credential_name.as_ref().map(|name| SecretRef {
        namespace: gw_ns.to_owned(),
        name: name.clone(),
    });
    match tls.mode.as_str() {
        "SIMPLE" | "MUTUAL" => {}
        "ISTIO_MUTUAL" => {
            // The mesh's own certificates are issued by istiod, not by tidegate: the
            // gateway speaks to the backend as it would without the rule.
            warnings.insert(format!("{source}: tls mode ISTIO_MUTUAL (the mesh's own certificates) is not served to gateway backends; their connections are sent as without this rule"));
            return None;
        }
        _ => return None,
    }
    let mut trust = if tls.insecure_skip_verify == Some(true) {
        Trust::Unchecked
    } else if let Some(s) = &secret {
        Trust::Secret(s.clone())
    } else if let Some(path) = &tls.ca_certificates {
        let why = format!(
            "{source}: caCertificates names a file on the proxy ({path}), which tidegate cannot serve; use credentialName (a Secret with ca.crt in namespace {gw_ns})"
        );
        warnings.insert(why.clone());
        Trust::Nothing(why)
    } else {
        Trust::System
    };
    let client_cert = if tls.mode == "MUTUAL" {
        if secret.is_none() {
            let why = format!(
                "{source}: tls mode MUTUAL needs credentialName (a Secret with tls.crt, tls.key and ca.crt in namespace {gw_ns}) for the client certificate"
            );
            warnings.insert(why.clone());
            trust = Trust::Nothing(why);
        }
        secret
    } else {
        None
    };
    let mut names: Vec<San> = tls
        .subject_alt_names
        .iter()
        .map(|n| {
            if n.contains("://") {
                San::Uri(n.clone())
            } else {
                San::Dns(n.clone())
            }
        })
        .collect();
    // Without subjectAltNames the certificate must be for the name asked for.
    if names.is_empty()
        && let Some(sni) = &tls.sni
    {
        names.push(San::Dns(sni.clone()));
    }
    Some(UpstreamTls {
        sni: tls.sni.clone(),
        trust,
        names,
        client_cert,
        source,
    })
}

/// What a port of an Istio Gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortUse {
    Http,
    Https,
    Tls,
    Tcp,
}

impl PortUse {
    fn as_str(self) -> &'static str {
        match self {
            PortUse::Http => "HTTP",
            PortUse::Https => "HTTPS",
            PortUse::Tls => "TLS",
            PortUse::Tcp => "TCP",
        }
    }
}

/// The SNI chains of a TLS server, added to `chains` (by SNI name) unless an earlier server
/// of the port already has the name. PASSTHROUGH: each name a `tls` entry lists in `sniHosts`
/// (and the server's hosts admit) goes to the first such entry's destinations. SIMPLE:
/// each VirtualService host the server admits is terminated with the server's certificate,
/// then goes to the first `tcp` entry for the port.
fn tls_server_chains(
    services: &[&VirtualService],
    server: &istio::Server,
    gw_ns: &str,
    chains: &mut BTreeMap<String, SniChain>,
) {
    let port = server.port.number;
    let Some(t) = &server.tls else { return };
    if t.mode == "PASSTHROUGH" {
        for vs in services {
            let vs_ns = vs.metadata.namespace.as_deref().unwrap_or_default();
            for (ti, route) in vs.spec.tls.iter().enumerate() {
                for m in &route.match_ {
                    if m.port.is_some_and(|p| p != port) {
                        continue;
                    }
                    for name in &m.sni_hosts {
                        if chains.contains_key(name)
                            || !server
                                .hosts
                                .iter()
                                .any(|h| server_host_admits(h, gw_ns, vs_ns, name))
                        {
                            continue;
                        }
                        chains.insert(
                            name.clone(),
                            SniChain {
                                server_names: sni_names(name),
                                terminate: None,
                                client_validation: None,
                                forward: l4_forward(
                                    format!("virtualservice/{vs_ns}/{}/tls/{ti}", vs.metadata.name),
                                    &route.route,
                                    vs_ns,
                                ),
                                listener: server.port.name.clone(),
                            },
                        );
                    }
                }
            }
        }
        return;
    }
    let secret = SecretRef {
        namespace: gw_ns.to_owned(),
        name: t.credential_name.clone(),
    };
    for vs in services {
        let vs_ns = vs.metadata.namespace.as_deref().unwrap_or_default();
        for host in &vs.spec.hosts {
            if chains.contains_key(host)
                || !server
                    .hosts
                    .iter()
                    .any(|h| server_host_admits(h, gw_ns, vs_ns, host))
            {
                continue;
            }
            if let Some(forward) = first_tcp_route(&[vs], server, gw_ns, Some(host)) {
                chains.insert(
                    host.clone(),
                    SniChain {
                        server_names: sni_names(host),
                        terminate: Some(secret.clone()),
                        client_validation: None,
                        forward,
                        listener: server.port.name.clone(),
                    },
                );
            }
        }
    }
}

/// `*` is any name (and none); anything else is one exact or `*.suffix` name.
fn sni_names(name: &str) -> Vec<String> {
    if name == "*" {
        Vec::new()
    } else {
        vec![name.to_owned()]
    }
}

/// The first `tcp` entry, in VirtualService order, that a VirtualService bound to `server`
/// (one of its hosts admitted; `host` only, when given) has for the server's port.
fn first_tcp_route(
    services: &[&VirtualService],
    server: &istio::Server,
    gw_ns: &str,
    host: Option<&str>,
) -> Option<L4Forward> {
    let port = server.port.number;
    for vs in services {
        let vs_ns = vs.metadata.namespace.as_deref().unwrap_or_default();
        let bound = vs.spec.hosts.iter().any(|h| {
            host.is_none_or(|only| only == h)
                && server
                    .hosts
                    .iter()
                    .any(|e| server_host_admits(e, gw_ns, vs_ns, h))
        });
        if !bound {
            continue;
        }
        for (ti, route) in vs.spec.tcp.iter().enumerate() {
            let fits = route.match_.is_empty()
                || route
                    .match_
                    .iter()
                    .any(|m| m.port.is_none_or(|p| p == port));
            if fits {
                return Some(l4_forward(
                    format!("virtualservice/{vs_ns}/{}/tcp/{ti}", vs.metadata.name),
                    &route.route,
                    vs_ns,
                ));
            }
        }
    }
    None
}

/// Where a route destination sends, and its weight (Istio's default: 100).
fn destination(d: &istio::RouteDestination, vs_ns: &str) -> (Target, u32) {
    (
        Target::Service(backend(
            &d.destination.host,
            vs_ns,
            d.destination.port.number,
        )),
        d.weight.unwrap_or(100),
    )
}

/// Weighted destinations of a `tls`/`tcp` entry; weight 0 gets no connections.
fn l4_forward(name: String, route: &[istio::RouteDestination], vs_ns: &str) -> L4Forward {
    L4Forward {
        name,
        backends: route
            .iter()
            .map(|d| {
                let (target, weight) = destination(d, vs_ns);
                L4Target { target, weight }
            })
            .filter(|t| t.weight > 0)
            .collect(),
    }
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
                .map(|d| {
                    let (target, weight) = destination(d, vs_ns);
                    WeightedTarget {
                        target,
                        weight,
                        request_headers: HeaderOps::default(),
                        response_headers: HeaderOps::default(),
                    }
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

//! What a proxy does with one request, read off its plan with Envoy's own rules: the
//! listener by port, the filter chain by SNI, the virtual host by the Host header (exact
//! domains, then the longest `*.suffix`, then `prefix.*`, then `*`), the first route in
//! order whose path, method, headers and query parameters all match, and its action.
//!
//! It reads the plan, not the emitted protobuf, so it can say *why* (which rule, what it
//! beat); it must still answer what Envoy answers for the resources the emitter makes of
//! that plan. `tests/explain_envoy.rs` sends random requests for random rule sets through
//! a real Envoy and fails on any disagreement, so the two cannot drift apart silently.
//!
//! Also here: [`probes`], one representative request per route match of a plan (`diff`
//! asks both revisions the same probes).

use std::collections::BTreeSet;

use crate::xds::emit::{misdirected_vhosts, per_listener_routes};
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::{
    Action, Backend, HeaderOps, HttpListener, ListenerKind, ListenerPlan, PathMatch, PathRewrite,
    ProxyPlan, Redirect, Refused, RefusedReason, RoutePlan, ServiceRef, StrMatch, Target,
    VhostPlan,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url:?} is not a URL: {why}; valid: http://host[:port]/path[?query] (or https://)")]
    Url { url: String, why: String },
    #[error("header {0:?} is not `Name: value`")]
    Header(String),
}

/// One request as the proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Request {
    /// `http` or `https`.
    pub scheme: String,
    /// The Host header as sent, lowercase: the URL's host, with its port when the URL
    /// names one other than the scheme's default; `-H 'Host: …'` overrides it.
    pub host: String,
    /// The port connected to: selects the listener.
    pub port: u16,
    /// Path without the query.
    pub path: String,
    /// Query parameters in order, as written (not percent-decoded).
    pub query: Vec<(String, String)>,
    pub method: String,
    /// Headers besides Host, names lowercase.
    pub headers: Vec<(String, String)>,
    /// TLS server name (https); `None`: the host.
    pub sni: Option<String>,
}

impl Request {
    /// `scheme://host[:port]/path[?query]`, with `Name: value` headers.
    pub fn parse(
        url: &str,
        method: &str,
        headers: &[String],
        sni: Option<&str>,
    ) -> Result<Self, Error> {
        let bad = |why: &str| Error::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        // tls://, tcp:// and udp:// ask about connections (TLS, TCP and UDP listeners);
        // TCP and UDP have no default port.
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" | "tls" => 443,
            "tcp" | "udp" => 0,
            _ => return Err(bad("the scheme is none of http, https, tls, tcp, udp")),
        };
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path_query = path_query.split('#').next().unwrap_or_default();
        let (host, port) = split_port(authority).ok_or_else(|| bad("bad port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (path_query, Vec::new()),
        };
        let path = if path.is_empty() { "/" } else { path };
        let mut headers = headers
            .iter()
            .map(|h| {
                let (k, v) = h.split_once(':').ok_or_else(|| Error::Header(h.clone()))?;
                let k = k.trim();
                if k.is_empty() {
                    return Err(Error::Header(h.clone()));
                }
                Ok((k.to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let port = port.unwrap_or(default_port);
        if port == 0 {
            return Err(bad("tcp:// and udp:// need a port"));
        }
        let mut host = if port == default_port {
            host.to_ascii_lowercase()
        } else {
            format!("{}:{port}", host.to_ascii_lowercase())
        };
        if let Some(i) = headers.iter().position(|(k, _)| k == "host") {
            host = headers.remove(i).1.to_ascii_lowercase();
        }
        Ok(Request {
            scheme,
            host,
            port,
            path: path.to_owned(),
            query,
            method: method.to_ascii_uppercase(),
            headers,
            sni: sni.map(str::to_owned),
        })
    }

    /// The request's URL again (host from the Host header), the port always written.
    pub fn url(&self) -> String {
        let mut u = format!(
            "{}://{}:{}{}",
            self.scheme,
            self.host_name(),
            self.port,
            self.path
        );
        if !self.query.is_empty() {
            u.push('?');
            u.push_str(&query_string(&self.query));
        }
        u
    }

    /// The Host header without its port: what virtual hosts are matched against.
    pub fn host_name(&self) -> &str {
        split_port(&self.host).map_or(self.host.as_str(), |(h, _)| h)
    }

    /// The values of header `name`, joined with `,` as Envoy's matchers see them.
    fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            ":method" => return Some(self.method.clone()),
            ":authority" | "host" => return Some(self.host.clone()),
            ":path" => return Some(self.path_and_query()),
            ":scheme" => return Some(self.scheme.clone()),
            _ => {}
        }
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, query_string(&self.query))
        }
    }
}

fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    // `[v6]:port`
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

fn query_string(q: &[(String, String)]) -> String {
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A share of the requests and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub backend: Backend,
    pub weight: u32,
}

/// A share answered by the proxy itself: a backendRef the route may not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedShare {
    /// `Kind namespace/name:port` as written.
    pub reference: String,
    pub weight: u32,
    pub status: u16,
    pub why: String,
}

/// The route that answered, as the plan names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteHit {
    /// The plan's route name, e.g. `httproute/ns/name/rule/0/match/1`.
    pub name: String,
    /// `HTTPRoute`, `GRPCRoute`, `VirtualService`; empty for routes the proxy makes itself
    /// (a waypoint's pass-through, a misdirected host).
    pub kind: String,
    pub namespace: String,
    pub object: String,
    /// Rule (VirtualService: `http`, `tls` or `tcp` entry) and match index.
    pub rule: usize,
    /// The list `rule` indexes: `rules`, or a VirtualService's `http`, `tls` or `tcp`.
    pub section: &'static str,
    pub r#match: usize,
}

impl RouteHit {
    pub fn of(name: &str) -> Self {
        let parts: Vec<&str> = name.split('/').collect();
        let kind = match parts.first().copied() {
            Some("httproute") => "HTTPRoute",
            Some("grpcroute") => "GRPCRoute",
            Some("tlsroute") => "TLSRoute",
            Some("tcproute") => "TCPRoute",
            Some("udproute") => "UDPRoute",
            Some("virtualservice") => "VirtualService",
            _ => "",
        };
        match parts.as_slice() {
            // A connection route: `kind/ns/name/rule/i` (a VirtualService's `tls/i`, `tcp/i`).
            [_, ns, obj, section, rule] if !kind.is_empty() => RouteHit {
                name: name.to_owned(),
                kind: kind.to_owned(),
                namespace: (*ns).to_owned(),
                object: (*obj).to_owned(),
                rule: rule.parse().unwrap_or(0),
                r#match: 0,
                section: match *section {
                    "tls" => "tls",
                    "tcp" => "tcp",
                    _ => "rules",
                },
            },
            [_, ns, obj, _, rule, _, m] if !kind.is_empty() => RouteHit {
                name: name.to_owned(),
                kind: kind.to_owned(),
                namespace: (*ns).to_owned(),
                object: (*obj).to_owned(),
                rule: rule.parse().unwrap_or(0),
                r#match: m.parse().unwrap_or(0),
                section: if kind == "VirtualService" {
                    "http"
                } else {
                    "rules"
                },
            },
            _ => RouteHit {
                name: name.to_owned(),
                kind: String::new(),
                namespace: String::new(),
                object: String::new(),
                rule: 0,
                r#match: 0,
                section: "rules",
            },
        }
    }
}

/// What the proxy does with the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status answered; 200 when the request is forwarded (the backend's own
    /// answer is its business); 0 when there is no HTTP answer at all (no listener on the
    /// port, a TLS handshake that fails).
    pub status: u16,
    /// The Envoy listener and filter chain (empty when none).
    pub listener: String,
    pub chain: String,
    /// The virtual host (empty when none matched).
    pub vhost: String,
    pub route: Option<RouteHit>,
    /// Why this route and not the others that match too, one line each.
    pub precedence: Vec<String>,
    /// What the route does to the request and the response besides forwarding it.
    pub filters: Vec<String>,
    /// The Location of a redirect.
    pub redirect: Option<String>,
    /// Where forwarded requests go (empty when none).
    pub backends: Vec<Share>,
    /// Shares answered by the proxy instead (not permitted, not a Service).
    pub refused: Vec<RefusedShare>,
    /// The cluster of each backend, in `backends` order.
    pub clusters: Vec<String>,
    /// How each backend is spoken to over TLS (BackendTLSPolicy, DestinationRule), in
    /// `backends` order; empty for plain connections.
    pub tls: Vec<String>,
    pub reason: String,
}

/// What `plan`'s proxy answers to `req`. `endpoints`: the endpoints file `serve` is given
/// (a backend without endpoints answers 503); `None`: every Service has endpoints.
pub fn evaluate(plan: &ProxyPlan, req: &Request, endpoints: Option<&Endpoints>) -> Answer {
    if plan.waypoint.is_some() {
        return waypoint(plan, req, endpoints);
    }
    let mut a = Answer::default();
    let Some(l) = plan.listeners.get(&req.port) else {
        a.reason = format!(
            "connection refused: the proxy has no listener on port {} (it listens on {})",
            req.port,
            list(plan.listeners.keys())
        );
        return a;
    };
    if !matches!(l.kind, ListenerKind::Http(_)) {
        connection(&mut a, l, req, plan, endpoints);
        return a;
    }
    let l = l.http();
    a.listener = format!("port {}", req.port);
    if matches!(req.scheme.as_str(), "tls" | "tcp" | "udp") {
        a.reason = format!(
            "port {} serves HTTP{}, not {} connections; ask with http:// or https://",
            req.port,
            if l.tls.is_empty() { "" } else { "S" },
            req.scheme.to_ascii_uppercase()
        );
        return a;
    }
    // The virtual hosts of the route configuration the connection's chain uses.
    let owned: Vec<VhostPlan>;
    let vhosts: Vec<&VhostPlan> = if l.tls.is_empty() {
        if req.scheme == "https" {
            a.reason = format!(
                "TLS handshake fails: port {} is plain HTTP; use http://",
                req.port
            );
            return a;
        }
        a.chain = "plain HTTP".into();
        l.vhosts.iter().collect()
    } else {
        if req.scheme != "https" {
            a.reason = format!(
                "the connection is closed: port {} serves HTTPS only; use https://",
                req.port
            );
            return a;
        }
        let sni = req.sni.as_deref().unwrap_or(req.host_name());
        let Some(chain) = tls_chain(l, sni) else {
            a.reason = format!(
                "TLS handshake fails: no certificate of port {} is served for SNI {sni:?} (names: {})",
                req.port,
                list(l.tls.iter().flat_map(|t| &t.server_names))
            );
            return a;
        };
        let t = &l.tls[chain];
        a.chain = format!(
            "TLS {} ({}/{})",
            if t.server_names.is_empty() {
                "any SNI".to_owned()
            } else {
                t.server_names.join(", ")
            },
            t.secret.namespace,
            t.secret.name
        );
        if per_listener_routes(l, &crate::xds::emit::Variant::default()) {
            let own: Vec<&VhostPlan> = l
                .vhosts
                .iter()
                .filter(|v| v.listener == t.listener)
                .collect();
            owned = misdirected_vhosts(l, t, &own);
            own.into_iter().chain(&owned).collect()
        } else {
            l.vhosts.iter().collect()
        }
    };
    let Some(vhost) = select_vhost(&vhosts, req.host_name()) else {
        a.status = 404;
        a.reason = format!(
            "no virtual host of port {} serves host {:?} (hosts: {})",
            req.port,
            req.host,
            list(vhosts.iter().flat_map(|v| &v.domains))
        );
        return a;
    };
    a.vhost = vhost.name.clone();
    answer_routes(&mut a, &vhost.routes, req, plan, endpoints);
    a
}

/// Matches `req` against `routes` in order and fills in the answer.
fn answer_routes(
    a: &mut Answer,
    routes: &[RoutePlan],
    req: &Request,
    plan: &ProxyPlan,
    endpoints: Option<&Endpoints>,
) {
    let mut matching = routes.iter().filter(|r| route_matches(r, req));
    let Some(route) = matching.next() else {
        a.status = 404;
        a.reason = format!(
            "no route of {} matches {} {}{}",
            if a.vhost.is_empty() {
                "the Service".to_owned()
            } else {
                format!("virtual host {}", a.vhost)
            },
            req.method,
            req.path,
            near_misses(routes, req)
        );
        return;
    };
    a.precedence = matching.map(|other| precedence(route, other)).collect();
    a.route = Some(RouteHit::of(&route.name));
    a.filters = filters(route);
    // A CORS preflight is answered by the proxy's CORS filter, never forwarded (the
    // policy sets `forward_not_matching_preflights: false`).
    if let Some(c) = &route.cors
        && req.method == "OPTIONS"
        && req.header("access-control-request-method").is_some()
        && let Some(origin) = req.header("origin")
    {
        a.status = 200;
        a.reason = if c.allow_origins.iter().any(|m| str_matches(m, &origin)) {
            format!("CORS preflight from {origin} answered by the proxy: allowed")
        } else {
            format!(
                "CORS preflight from {origin} answered by the proxy without CORS headers: the origin is not allowed"
            )
        };
        return;
    }
    match &route.action {
        Action::Status(421) if route.name == "misdirected" => {
            a.status = 421;
            a.reason = format!(
                "misdirected: host {:?} belongs to another listener of port {} (another certificate); the client must open a new connection with that SNI",
                req.host, req.port
            );
        }
        Action::Status(s) => {
            a.status = *s;
            a.reason = format!(
                "the route answers {s} itself: its rule has no usable backend (no backendRef, only refused ones, or a filter that cannot be honoured, such as an ExtensionRef)"
            );
        }
        Action::Redirect(r) => {
            a.status = r.status;
            let location = location(r, route, req);
            a.reason = format!("redirect {} to {location}", r.status);
            a.redirect = Some(location);
        }
        Action::Forward(f) => {
            let mut missing = Vec::new();
            for w in &f.backends {
                match &w.target {
                    Target::Service(b) => {
                        a.backends.push(Share {
                            backend: b.clone(),
                            weight: w.weight,
                        });
                        a.clusters.push(b.cluster_name());
                        a.tls.push(upstream_tls(plan, b, endpoints));
                        if let Some((status, why)) = unavailable(plan, b, endpoints, f.grpc) {
                            missing.push((b, w.weight, status, why));
                        }
                    }
                    Target::Refused(r) => a.refused.push(RefusedShare {
                        reference: format!("{} {}/{}:{}", r.kind, r.namespace, r.name, r.port),
                        weight: w.weight,
                        status: if f.grpc { 503 } else { 500 },
                        why: refused_why(r),
                    }),
                }
            }
            let total: u64 = f.backends.iter().map(|w| u64::from(w.weight)).sum();
            let served: u64 = a
                .backends
                .iter()
                .filter(|s| !missing.iter().any(|(b, ..)| *b == &s.backend))
                .map(|s| u64::from(s.weight))
                .sum();
            let mut why: Vec<String> = Vec::new();
            for r in &a.refused {
                why.push(format!(
                    "{} of {total} answered {}: {} is {}",
                    r.weight, r.status, r.reference, r.why
                ));
            }
            for (b, w, status, m) in &missing {
                why.push(format!(
                    "{w} of {total} answered {status}: {} {m}",
                    b.endpoints_key()
                ));
            }
            if served == 0 || total == 0 {
                // Nothing reaches a backend: the status of the largest failing share
                // (Envoy picks a share per request; one status is the honest summary).
                let failing = a
                    .refused
                    .iter()
                    .map(|r| (r.weight, r.status))
                    .chain(missing.iter().map(|(_, w, status, _)| (*w, *status)));
                a.status = failing
                    .fold(None, |best: Option<(u32, u16)>, (w, st)| match best {
                        Some((bw, _)) if bw >= w => best,
                        _ => Some((w, st)),
                    })
                    .map_or(500, |(_, st)| st);
                a.reason = format!("no backend can answer: {}", why.join("; "));
            } else {
                a.status = 200;
                let to = a
                    .backends
                    .iter()
                    .map(|s| {
                        if a.backends.len() + a.refused.len() > 1 {
                            format!("{} (weight {})", s.backend.endpoints_key(), s.weight)
                        } else {
                            s.backend.endpoints_key()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                a.reason = format!("forwarded to {to}");
                if !why.is_empty() {
                    a.reason.push_str(&format!("; but {}", why.join("; ")));
                }
            }
        }
    }
}

/// Why `b` cannot answer, if it cannot, and the status its share gets. With an endpoints
/// file, a Service it does not list does not exist: it has no cluster, so the route's
/// `cluster_not_found_response_code` answers (500; 503 on a gRPC route). A Service listed
/// with no addresses exists with no endpoints: 503, as does a waypoint that does not
/// exist (its tunnel cluster is closed).
fn unavailable(
    plan: &ProxyPlan,
    b: &Backend,
    endpoints: Option<&Endpoints>,
    grpc: bool,
) -> Option<(u16, String)> {
    if let Some(w) = plan.via_waypoint.get(b) {
        if !w.exists {
            return Some((
                503,
                format!(
                    "goes through waypoint {}, which does not exist",
                    w.proxy_id()
                ),
            ));
        }
        return None;
    }
    // TLS whose certificate cannot be checked: the backend is not reached at all.
    if let Some(u) = plan.upstream_tls_for(b, port_name(b, endpoints))
        && let crate::xds::plan::Trust::Nothing(why) = &u.trust
    {
        return Some((
            503,
            format!(
                "is not reached: {} asks for TLS but no CA can be had: {why}",
                u.source
            ),
        ));
    }
    let e = endpoints?;
    match e.entries.get(&b.endpoints_key()) {
        None => Some((
            if grpc { 503 } else { 500 },
            "is not in the endpoints file: the Service does not exist (no cluster)".to_owned(),
        )),
        Some(entry) if entry.addresses.is_empty() => Some((
            503,
            "has no endpoints (listed with no addresses in the endpoints file)".to_owned(),
        )),
        Some(_) => None,
    }
}

fn port_name<'e>(b: &Backend, endpoints: Option<&'e Endpoints>) -> Option<&'e str> {
    endpoints
        .and_then(|e| e.entries.get(&b.endpoints_key()))
        .and_then(|e| e.port_name.as_deref())
}

/// How the proxy speaks to `b`: its upstream TLS, described; empty for plain.
fn upstream_tls(plan: &ProxyPlan, b: &Backend, endpoints: Option<&Endpoints>) -> String {
    if plan.via_waypoint.contains_key(b) {
        return String::new();
    }
    plan.upstream_tls_for(b, port_name(b, endpoints))
        .map(|u| u.describe())
        .unwrap_or_default()
}

/// The chain Envoy picks for `sni`: an exact server name, then the longest wildcard that
/// covers it, then the chain without names.
fn tls_chain(l: &HttpListener, sni: &str) -> Option<usize> {
    let names: Vec<&[String]> = l.tls.iter().map(|t| t.server_names.as_slice()).collect();
    sni_chain(&names, sni)
}

/// Envoy's filter chain choice by SNI among chains serving `names` each: an exact name,
/// then the longest `*.suffix`, then a chain without names.
fn sni_chain(chains: &[&[String]], sni: &str) -> Option<usize> {
    let sni = sni.to_ascii_lowercase();
    if let Some(i) = chains
        .iter()
        .position(|names| names.iter().any(|n| n.eq_ignore_ascii_case(&sni)))
    {
        return Some(i);
    }
    let mut best: Option<(usize, usize)> = None;
    for (i, names) in chains.iter().enumerate() {
        for n in names.iter() {
            if let Some(suffix) = n.strip_prefix('*')
                && sni.len() > suffix.len()
                && sni.ends_with(&suffix.to_ascii_lowercase())
                && best.is_none_or(|(len, _)| suffix.len() > len)
            {
                best = Some((suffix.len(), i));
            }
        }
    }
    best.map(|(_, i)| i)
        .or_else(|| chains.iter().position(|names| names.is_empty()))
}

/// Why a backendRef cannot be used, for requests and connections alike.
fn refused_why(r: &Refused) -> String {
    match r.reason {
        RefusedReason::NotAService => "not a Service (the only backend kind served)".into(),
        RefusedReason::NotPermitted => format!(
            "a Service in namespace {} that no ReferenceGrant lets the route use",
            r.namespace
        ),
    }
}

/// What a TLS, TCP or UDP listener does with a connection (no HTTP answer: `status` 0).
fn connection(
    a: &mut Answer,
    l: &ListenerPlan,
    req: &Request,
    plan: &ProxyPlan,
    endpoints: Option<&Endpoints>,
) {
    a.listener = format!("port {}", req.port);
    let wrong = |a: &mut Answer, serves: &str, ask: &str| {
        a.reason = format!(
            "port {} serves {serves} connections; ask with {ask}",
            req.port
        );
    };
    let forward = match &l.kind {
        ListenerKind::Http(_) => return,
        ListenerKind::Tcp(f) => {
            if req.scheme != "tcp" {
                return wrong(a, "TCP", "tcp://");
            }
            a.chain = "TCP".into();
            f
        }
        ListenerKind::Udp(f) => {
            if req.scheme != "udp" {
                return wrong(a, "UDP", "udp://");
            }
            a.chain = "UDP".into();
            f
        }
        ListenerKind::Tls(t) => {
            if !matches!(req.scheme.as_str(), "tls" | "https") {
                return wrong(a, "TLS", "tls:// (or https:// for HTTPS passed through)");
            }
            let sni = req.sni.as_deref().unwrap_or(req.host_name());
            let names: Vec<&[String]> =
                t.chains.iter().map(|c| c.server_names.as_slice()).collect();
            let Some(i) = sni_chain(&names, sni) else {
                a.reason = format!(
                    "the connection is closed during the TLS handshake: no route of port {} serves SNI {sni:?} (names: {})",
                    req.port,
                    list(t.chains.iter().flat_map(|c| &c.server_names))
                );
                return;
            };
            let c = &t.chains[i];
            a.chain = match &c.terminate {
                None => format!("TLS passthrough for {}", c.server_names.join(", ")),
                Some(s) => format!(
                    "TLS terminated for {} with {}/{}",
                    c.server_names.join(", "),
                    s.namespace,
                    s.name
                ),
            };
            &c.forward
        }
    };
    if !forward.name.is_empty() {
        a.route = Some(RouteHit::of(&forward.name));
    }
    let total: u64 = forward.backends.iter().map(|t| u64::from(t.weight)).sum();
    let mut closed = Vec::new();
    for t in &forward.backends {
        match &t.target {
            Target::Service(b) => {
                a.backends.push(Share {
                    backend: b.clone(),
                    weight: t.weight,
                });
                a.clusters.push(b.cluster_name());
                if let Some((_, why)) = unavailable(plan, b, endpoints, false) {
                    closed.push(format!(
                        "{} of {total} closed: {} {why}",
                        t.weight,
                        b.endpoints_key()
                    ));
                }
            }
            Target::Refused(r) => closed.push(format!(
                "{} of {total} closed: {} {}/{}:{} is {}",
                t.weight,
                r.kind,
                r.namespace,
                r.name,
                r.port,
                refused_why(r)
            )),
        }
    }
    a.reason = if forward.backends.is_empty() {
        "the connection is closed: the route has no usable backend".to_owned()
    } else if a.backends.is_empty() {
        format!("the connection is closed: {}", closed.join("; "))
    } else {
        let to = a
            .backends
            .iter()
            .map(|s| format!("{} (weight {})", s.backend.endpoints_key(), s.weight))
            .collect::<Vec<_>>()
            .join(", ");
        let mut r = format!("the connection is forwarded to {to}");
        if !closed.is_empty() {
            r.push_str(&format!("; but {}", closed.join("; ")));
        }
        r
    };
}

/// Envoy's virtual host selection: an exact domain, then the longest `*suffix`, then the
/// longest `prefix*`, then `*`. Domains compare case-insensitively; the Host's port is
/// ignored (`ignore_port_in_host_matching`).
fn select_vhost<'a>(vhosts: &[&'a VhostPlan], host: &str) -> Option<&'a VhostPlan> {
    let host = host.to_ascii_lowercase();
    let domains = || {
        vhosts
            .iter()
            .flat_map(|v| v.domains.iter().map(move |d| (d.to_ascii_lowercase(), *v)))
    };
    if let Some((_, v)) = domains().find(|(d, _)| *d == host) {
        return Some(v);
    }
    let suffix = domains()
        .filter(|(d, _)| d.len() > 1 && d.starts_with('*'))
        .filter(|(d, _)| host.len() > d.len() - 1 && host.ends_with(&d[1..]))
        .max_by_key(|(d, _)| d.len());
    if let Some((_, v)) = suffix {
        return Some(v);
    }
    let prefix = domains()
        .filter(|(d, _)| d.len() > 1 && d.ends_with('*'))
        .filter(|(d, _)| host.len() > d.len() - 1 && host.starts_with(&d[..d.len() - 1]))
        .max_by_key(|(d, _)| d.len());
    if let Some((_, v)) = prefix {
        return Some(v);
    }
    domains().find(|(d, _)| d == "*").map(|(_, v)| v)
}

/// Whether every condition of `r` holds for `req`, as Envoy evaluates the route's match.
pub fn route_matches(r: &RoutePlan, req: &Request) -> bool {
    path_matches(&r.path, req)
        && r.method.as_ref().is_none_or(|m| *m == req.method)
        && r.headers
            .iter()
            .all(|(name, m)| req.header(name).is_some_and(|v| str_matches(m, &v)))
        && r.query.iter().all(|(name, m)| {
            req.query
                .iter()
                .find(|(k, _)| k == name)
                .is_some_and(|(_, v)| str_matches(m, v))
        })
}

fn path_matches(p: &PathMatch, req: &Request) -> bool {
    match p {
        PathMatch::Exact(x) => req.path == *x,
        // Envoy matches `prefix` against the whole `:path`, query included.
        PathMatch::Prefix(x) => req.path_and_query().starts_with(x.as_str()),
        PathMatch::SegmentPrefix(x) => {
            req.path.starts_with(x.as_str())
                && (req.path.len() == x.len() || req.path[x.len()..].starts_with('/'))
        }
        PathMatch::Regex(x) => full_match(x, &req.path),
    }
}

fn str_matches(m: &StrMatch, value: &str) -> bool {
    match m {
        StrMatch::Exact(x) => value == x,
        StrMatch::Prefix(x) => value.starts_with(x.as_str()),
        StrMatch::Regex(x) => full_match(x, value),
    }
}

/// RE2 as Envoy runs it: the whole value must match.
fn full_match(pattern: &str, value: &str) -> bool {
    // Compiled once per pattern: `diff` asks every probe of a proxy against every route.
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, Option<regex::Regex>>> =
            Default::default();
    }
    COMPILED.with_borrow_mut(|compiled| {
        compiled
            .entry(pattern.to_owned())
            .or_insert_with(|| regex::Regex::new(&format!("^(?:{pattern})$")).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(value))
    })
}

/// Why `winner` (earlier, and matching) wins over `other` (later, matching too).
fn precedence(winner: &RoutePlan, other: &RoutePlan) -> String {
    let (w, o) = (RouteHit::of(&winner.name), RouteHit::of(&other.name));
    let label = |r: &RouteHit, p: &RoutePlan| {
        if r.kind.is_empty() {
            p.name.clone()
        } else {
            format!(
                "{} {}/{} rule {} match {}",
                r.kind, r.namespace, r.object, r.rule, r.r#match
            )
        }
    };
    let because = precedence_reason(winner, other, &w, &o);
    format!(
        "beats {} ({}): {because}",
        label(&o, other),
        describe_match(other)
    )
}

fn precedence_reason(winner: &RoutePlan, other: &RoutePlan, w: &RouteHit, o: &RouteHit) -> String {
    let class = |p: &PathMatch| match p {
        PathMatch::Exact(_) => 0,
        PathMatch::Prefix(_) | PathMatch::SegmentPrefix(_) => 1,
        PathMatch::Regex(_) => 2,
    };
    let kind = |p: &PathMatch| match p {
        PathMatch::Exact(_) => "Exact",
        PathMatch::Prefix(_) | PathMatch::SegmentPrefix(_) => "PathPrefix",
        PathMatch::Regex(_) => "RegularExpression",
    };
    let prefix_len = |p: &PathMatch| match p {
        PathMatch::Prefix(x) | PathMatch::SegmentPrefix(x) => x.trim_end_matches('/').len(),
        _ => 0,
    };
    if w.kind == "VirtualService" || o.kind == "VirtualService" {
        return if w.namespace == o.namespace && w.object == o.object {
            "earlier in the VirtualService's http list (Istio takes the first match)".into()
        } else {
            format!(
                "VirtualService {}/{} comes first (Istio orders VirtualServices of one host by namespace/name)",
                w.namespace, w.object
            )
        };
    }
    let (cw, co) = (class(&winner.path), class(&other.path));
    if cw != co {
        return format!("{} beats {}", kind(&winner.path), kind(&other.path));
    }
    let (lw, lo) = (prefix_len(&winner.path), prefix_len(&other.path));
    if lw != lo {
        return format!("longer prefix ({lw} characters over {lo})");
    }
    if winner.method.is_some() != other.method.is_some() {
        return "a method match beats none".into();
    }
    if winner.headers.len() != other.headers.len() {
        return format!(
            "more headers ({} over {})",
            winner.headers.len(),
            other.headers.len()
        );
    }
    if winner.query.len() != other.query.len() {
        return format!(
            "more query parameters ({} over {})",
            winner.query.len(),
            other.query.len()
        );
    }
    if w.kind.is_empty() || (w.namespace == o.namespace && w.object == o.object) {
        return "earlier rule or match of the same route".into();
    }
    format!(
        "older route: {}/{} (equal matches go to the oldest route; Git has no creation time, so namespace/name order decides)",
        w.namespace, w.object
    )
}

/// A match in one line: `PathPrefix /a GET [x-env=canary] ?v=2`.
/// `diff` shows routes with the same words.
pub fn describe_match(r: &RoutePlan) -> String {
    let mut s = match &r.path {
        PathMatch::Exact(p) => format!("Exact {p}"),
        // A string prefix `/` is every path: what Gateway API's `PathPrefix /` becomes.
        PathMatch::Prefix(p) if p == "/" => "PathPrefix /".to_owned(),
        // A VirtualService's string prefix (`/a` matches `/ab`).
        PathMatch::Prefix(p) => format!("Prefix {p}"),
        PathMatch::SegmentPrefix(p) => format!("PathPrefix {p}"),
        PathMatch::Regex(p) => format!("RegularExpression {p}"),
    };
    if let Some(m) = &r.method {
        s.push_str(&format!(" {m}"));
    }
    for (k, m) in &r.headers {
        s.push_str(&format!(" {k}{}", str_match_text(m)));
    }
    for (k, m) in &r.query {
        s.push_str(&format!(" ?{k}{}", str_match_text(m)));
    }
    s
}

fn str_match_text(m: &StrMatch) -> String {
    match m {
        StrMatch::Exact(v) => format!("={v}"),
        StrMatch::Prefix(v) => format!("^={v}"),
        StrMatch::Regex(v) => format!("~{v}"),
    }
}

/// The routes whose path matches but something else does not: the usual "why 404".
fn near_misses(routes: &[RoutePlan], req: &Request) -> String {
    let near: Vec<String> = routes
        .iter()
        .filter(|r| path_matches(&r.path, req))
        .take(3)
        .map(|r| {
            let mut why = Vec::new();
            if let Some(m) = r.method.as_ref().filter(|m| **m != req.method) {
                why.push(format!("method {m}"));
            }
            for (k, m) in &r.headers {
                if !req.header(k).is_some_and(|v| str_matches(m, &v)) {
                    why.push(format!("header {k}{}", str_match_text(m)));
                }
            }
            for (k, m) in &r.query {
                if !req
                    .query
                    .iter()
                    .find(|(q, _)| q == k)
                    .is_some_and(|(_, v)| str_matches(m, v))
                {
                    why.push(format!("query {k}{}", str_match_text(m)));
                }
            }
            let h = RouteHit::of(&r.name);
            let who = if h.kind.is_empty() {
                r.name.clone()
            } else {
                format!(
                    "{} {}/{} rule {} match {}",
                    h.kind, h.namespace, h.object, h.rule, h.r#match
                )
            };
            format!("{who} wants {}", why.join(", "))
        })
        .collect();
    if near.is_empty() {
        String::new()
    } else {
        format!(" (the path matches, but {})", near.join("; "))
    }
}

/// What a route changes besides where the request goes (`diff` shows the same lines).
pub fn filters(r: &RoutePlan) -> Vec<String> {
    let mut out = Vec::new();
    let ops = |out: &mut Vec<String>, what: &str, o: &HeaderOps| {
        for (k, v) in &o.set {
            out.push(format!("{what} header set {k}: {v}"));
        }
        for (k, v) in &o.add {
            out.push(format!("{what} header add {k}: {v}"));
        }
        for k in &o.remove {
            out.push(format!("{what} header remove {k}"));
        }
    };
    ops(&mut out, "request", &r.request_headers);
    ops(&mut out, "response", &r.response_headers);
    if let Action::Forward(f) = &r.action {
        if let Some(h) = &f.host_rewrite {
            out.push(format!("host rewritten to {h}"));
        }
        if let Some(p) = &f.path_rewrite {
            out.push(describe_rewrite(p));
        }
        for m in &f.mirrors {
            out.push(format!(
                "mirrored to {} ({}/{} of requests)",
                m.backend.endpoints_key(),
                m.numerator,
                m.denominator
            ));
        }
        for w in &f.backends {
            if let Target::Service(b) = &w.target {
                let mut per = Vec::new();
                ops(&mut per, "request", &w.request_headers);
                ops(&mut per, "response", &w.response_headers);
                out.extend(
                    per.into_iter()
                        .map(|p| format!("{p} (to {} only)", b.endpoints_key())),
                );
            }
        }
        if let Some(t) = f.timeout_ms {
            out.push(format!("timeout {t} ms"));
        }
        if let Some(t) = f.per_try_timeout_ms {
            out.push(format!("per-try timeout {t} ms"));
        }
        if let Some(r) = &f.retry {
            out.push(format!(
                "retried up to {} time(s) on {}",
                r.attempts,
                r.on.iter()
                    .cloned()
                    .chain(r.codes.iter().map(u16::to_string))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    if let Some(c) = &r.cors {
        out.push(format!(
            "CORS: origins {}",
            c.allow_origins
                .iter()
                .map(|o| str_match_text(o).trim_start_matches('=').to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// A path rewrite in words.
pub fn describe_rewrite(p: &PathRewrite) -> String {
    match p {
        PathRewrite::Prefix(v) => format!("matched prefix replaced by {v}"),
        PathRewrite::Full(v) => format!("path replaced by {v}"),
        PathRewrite::Regex {
            pattern,
            substitution,
        } => format!("path rewritten: {pattern} → {substitution}"),
    }
}

/// The Location Envoy writes for redirect `r` of `route` (its `newUri`, measured against
/// Envoy 1.40): the scheme asked for or the request's; the host asked for, else the
/// request's Host header with its port; a port asked for is always written, `:443` too;
/// the path replaced, its matched prefix replaced, or kept; the query kept.
fn location(r: &Redirect, route: &RoutePlan, req: &Request) -> String {
    let scheme = r.scheme.clone().unwrap_or_else(|| req.scheme.clone());
    let authority = match (&r.host, r.port) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.clone(),
        (None, Some(p)) => format!("{}:{p}", req.host_name()),
        (None, None) => {
            // A scheme change drops the old scheme's default port from the Host.
            let default = format!(":{}", default_port(&req.scheme));
            match req.host.strip_suffix(&default) {
                Some(h) if scheme != req.scheme => h.to_owned(),
                _ => req.host.clone(),
            }
        }
    };
    let path = match &r.path {
        None => req.path.clone(),
        Some(PathRewrite::Full(p)) => p.clone(),
        Some(PathRewrite::Prefix(p)) => {
            let matched = match &route.path {
                PathMatch::Prefix(x) | PathMatch::SegmentPrefix(x) => x.len(),
                PathMatch::Exact(x) => x.len(),
                PathMatch::Regex(_) => 0,
            };
            let rest = &req.path[matched.min(req.path.len())..];
            format!("{p}{rest}")
        }
        Some(PathRewrite::Regex {
            pattern,
            substitution,
        }) => regex::Regex::new(pattern).map_or(req.path.clone(), |re| {
            re.replace_all(&req.path, substitution.replace('\\', "$").as_str())
                .into_owned()
        }),
    };
    let query = if req.query.is_empty() {
        String::new()
    } else {
        format!("?{}", query_string(&req.query))
    };
    format!("{scheme}://{authority}{path}{query}")
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// A waypoint: the URL's host names a Service (`svc.ns.svc.cluster.local`, `svc.ns`, or
/// its VIP from the endpoints file), its port a Service port.
fn waypoint(plan: &ProxyPlan, req: &Request, endpoints: Option<&Endpoints>) -> Answer {
    let mut a = Answer::default();
    let Some(wp) = &plan.waypoint else {
        return a;
    };
    let service = service_of(req.host_name(), endpoints);
    let Some(service) = service else {
        a.reason = format!(
            "{:?} names no Service: a waypoint is asked for `svc.ns.svc.cluster.local`, `svc.ns`, or a VIP of the endpoints file",
            req.host
        );
        return a;
    };
    if !wp.namespaces.contains(&service.namespace) {
        a.reason = format!(
            "Service {}.{} does not use waypoint {} (its namespace is not bound: {})",
            service.name,
            service.namespace,
            plan.proxy.id(),
            list(wp.namespaces.iter())
        );
        return a;
    }
    let backend = Backend {
        service: service.name.clone(),
        namespace: service.namespace.clone(),
        port: req.port,
    };
    a.listener = "connect_terminate → main_internal".into();
    a.chain = format!("inbound-vip|{}|http|{}", req.port, backend.dns_name());
    a.vhost = format!("inbound|http|{}", req.port);
    let routes: Vec<RoutePlan> = wp
        .routes
        .get(&service)
        .map(|v| {
            v.iter()
                .filter(|(p, _)| p.is_none_or(|p| p == req.port))
                .map(|(_, r)| r.clone())
                .collect()
        })
        .unwrap_or_default();
    if routes.is_empty() {
        // No route of its own: passed through to the Service, as the emitter does.
        a.backends.push(Share {
            backend: backend.clone(),
            weight: 1,
        });
        a.clusters.push(backend.cluster_name());
        if let Some((status, why)) = unavailable(plan, &backend, endpoints, false) {
            a.status = status;
            a.reason = format!("{} {why}", backend.endpoints_key());
        } else {
            a.status = 200;
            a.reason = format!(
                "no route binds to {}; passed through to it",
                backend.endpoints_key()
            );
        }
        return a;
    }
    answer_routes(&mut a, &routes, req, plan, endpoints);
    a
}

fn service_of(host: &str, endpoints: Option<&Endpoints>) -> Option<ServiceRef> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        let e = endpoints?;
        return e
            .entries
            .values()
            .find(|x| x.vip == Some(ip))
            .map(|x| ServiceRef {
                name: x.service.service.clone(),
                namespace: x.service.namespace.clone(),
            });
    }
    let host = host.trim_end_matches('.');
    let host = host.strip_suffix(".svc.cluster.local").unwrap_or(host);
    let host = host.strip_suffix(".svc").unwrap_or(host);
    let (name, namespace) = host.split_once('.')?;
    (!namespace.contains('.')).then(|| ServiceRef {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
    })
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| i.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// One request per route match of `plan` that the route answers (its path, method,
/// headers and query as the match wants them, on a host the route serves): what `diff`
/// asks both revisions. Sorted and without duplicates.
pub fn probes(plan: &ProxyPlan) -> Vec<Request> {
    let mut out = BTreeSet::new();
    for (port, l) in &plan.listeners {
        let l = l.http();
        let scheme = if l.tls.is_empty() { "http" } else { "https" };
        for v in &l.vhosts {
            let host = representative_host(&v.domains);
            for r in &v.routes {
                out.insert(probe(r, scheme, &host, *port));
            }
        }
    }
    if let Some(wp) = &plan.waypoint {
        for (s, routes) in &wp.routes {
            for (port, r) in routes {
                let host = format!("{}.{}.svc.cluster.local", s.name, s.namespace);
                out.insert(probe(r, "http", &host, port.unwrap_or(80)));
            }
        }
    }
    out.into_iter().collect()
}

fn representative_host(domains: &[String]) -> String {
    let d = domains
        .iter()
        .find(|d| !d.contains('*'))
        .or(domains.first())
        .cloned()
        .unwrap_or_else(|| "*".into());
    if d == "*" {
        "any.example".into()
    } else if let Some(s) = d.strip_prefix('*') {
        format!("any{s}")
    } else if let Some(p) = d.strip_suffix('*') {
        format!("{p}any")
    } else {
        d
    }
}

fn probe(r: &RoutePlan, scheme: &str, host: &str, port: u16) -> Request {
    let path = match &r.path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::SegmentPrefix(p) => p.clone(),
        PathMatch::Regex(p) => sample(p).unwrap_or_else(|| "/".into()),
    };
    let value = |m: &StrMatch| match m {
        StrMatch::Exact(v) | StrMatch::Prefix(v) => v.clone(),
        StrMatch::Regex(p) => sample(p).unwrap_or_default(),
    };
    Request {
        scheme: scheme.into(),
        host: host.into(),
        port,
        path,
        query: r.query.iter().map(|(k, m)| (k.clone(), value(m))).collect(),
        method: r.method.clone().unwrap_or_else(|| "GET".into()),
        headers: r
            .headers
            .iter()
            .map(|(k, m)| (k.clone(), value(m)))
            .collect(),
        sni: None,
    }
}

/// A string `pattern` matches, built from its syntax tree: literals as written, the first
/// alternative, one of each class, repetitions at their minimum (at least once for `+`).
/// `None` when the sample does not match after all (anchors, look-arounds).
pub fn sample(pattern: &str) -> Option<String> {
    use regex_syntax::hir::{Class, Hir, HirKind};
    fn walk(h: &Hir, out: &mut String) {
        match h.kind() {
            HirKind::Empty | HirKind::Look(_) => {}
            HirKind::Literal(l) => out.push_str(&String::from_utf8_lossy(&l.0)),
            HirKind::Class(Class::Unicode(c)) => {
                if let Some(r) = c.ranges().first() {
                    // Prefer a letter or digit within the range when there is one.
                    let pick = ('a'..='z')
                        .chain('0'..='9')
                        .find(|ch| {
                            c.ranges()
                                .iter()
                                .any(|r| r.start() <= *ch && *ch <= r.end())
                        })
                        .unwrap_or(r.start());
                    out.push(pick);
                }
            }
            HirKind::Class(Class::Bytes(c)) => {
                if let Some(r) = c.ranges().first() {
                    out.push(char::from(r.start()));
                }
            }
            HirKind::Repetition(r) => {
                for _ in 0..r.min {
                    walk(&r.sub, out);
                }
            }
            HirKind::Capture(c) => walk(&c.sub, out),
            HirKind::Concat(v) => v.iter().for_each(|h| walk(h, out)),
            HirKind::Alternation(v) => {
                if let Some(h) = v.first() {
                    walk(h, out)
                }
            }
        }
    }
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut out = String::new();
    walk(&hir, &mut out);
    full_match(pattern, &out).then_some(out)
}

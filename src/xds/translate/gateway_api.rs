//! Gateway API `Gateway` + `HTTPRoute`/`GRPCRoute` → a proxy plan, following the spec's
//! rules (`rules`): attachment by parentRef (sectionName, port, allowedRoutes), listener ∩
//! route hostnames, match precedence, 500 for rules without usable backends.

use std::collections::BTreeMap;

use crate::model::gateway_api::{self as gw, FilterType};
use crate::xds::plan::{
    Action, HttpListener, L4Forward, L4Target, ListenerKind, ListenerPlan, ProxyPlan, ProxyRef,
    RoutePlan, SecretRef, SniChain, TlsListener, TlsPlan, VhostPlan,
};

use super::ambient::route_through_waypoints;
use super::backend_tls::{Policies, apply, client_certificate, frontend_validation};
use super::http_route::{route_plan, target};
use super::index::{Attached, Index};
use super::listeners::{Owner, effective};
use super::rules::{
    SortKey, Specificity, attaches, intersect, secret_permitted, sort_key, specificity,
};

/// The plan of the proxy that implements `gateway`.
pub fn plan(ix: &Index<'_>, gateway: &gw::Gateway, policies: &Policies) -> ProxyPlan {
    let gw_ns = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let mut plan = ProxyPlan {
        proxy: ProxyRef::of(
            &gateway.metadata.name,
            gateway.metadata.namespace.as_deref(),
        ),
        ..ProxyPlan::default()
    };
    let grants = &ix.grants;
    // Only routes naming this gateway (checking every route against every gateway made
    // translation quadratic: 1.5 s at 10,000 intents on 100 gateways).
    let routes: &[Attached<'_>] = ix.routes_of((gw_ns, gateway.metadata.name.as_str()));

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
    // TLS, TCP and UDP listeners' connection routes.
    let mut l4 = Connections::default();

    for e in effective(ix, gateway) {
        let (listener, owner) = (e.listener, e.owner);
        if let Some(reason) = e.conflict {
            plan.warnings.push(format!(
                "listener {} of {} {}/{} (port {}) is not served: {reason} with an earlier listener",
                listener.name, owner.kind, owner.namespace, owner.name, listener.port
            ));
            continue;
        }
        // Routes naming this listener's owner (the Gateway, or the ListenerSet).
        let routes = ix.routes_of((owner.namespace, owner.name));
        let protocol = listener.protocol.as_str();
        let mut tls = Vec::new();
        match protocol {
            "HTTP" => {}
            "HTTPS" => {
                if listener.tls.as_ref().is_none_or(|t| t.mode != "Terminate") {
                    plan.warnings.push(format!(
                        "listener {} (HTTPS, port {}) is not served: only TLS mode Terminate with certificateRefs is served",
                        listener.name, listener.port
                    ));
                    continue;
                }
                // Only the first certificate of a listener is served (Envoy picks one per
                // chain).
                match listener_certificate(ix, &mut plan, gateway, &owner, listener) {
                    Some(t) => tls.push(t),
                    None => continue,
                }
            }
            "TLS" => match listener.tls.as_ref() {
                Some(t) if t.mode == "Passthrough" => {}
                Some(_) => {
                    // Terminate: the first certificate the Gateway may use.
                    match listener_certificate(ix, &mut plan, gateway, &owner, listener) {
                        Some(t) => tls.push(t),
                        None => continue,
                    }
                }
                None => {
                    plan.warnings.push(format!(
                        "listener {} (TLS, port {}) is not served: it needs `tls.mode` Passthrough, or Terminate with certificateRefs",
                        listener.name, listener.port
                    ));
                    continue;
                }
            },
            "TCP" | "UDP" => {}
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
        if matches!(protocol, "TLS" | "TCP" | "UDP") {
            let terminate = tls.into_iter().next();
            plan_connections(ix, &mut l4, routes, &owner, listener, terminate);
            continue;
        }
        entry.1.extend(tls);
        for attached in routes {
            if attached.l4.is_some() {
                continue;
            }
            let route = &*attached.route;
            let route_ns = route.metadata.namespace.as_deref().unwrap_or_default();
            if !attaches(ix, route, attached.kind(), route_ns, &owner, listener) {
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
                        let key = sort_key(m, route_ns, route, ri, mi);
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
                            plan.http2_backends.extend(
                                f.backends
                                    .iter()
                                    .filter_map(|w| w.target.service().cloned()),
                            );
                        }
                        entry.2.push((key, r));
                    }
                }
            }
        }
    }

    for (port, (protocol, mut tls)) in ports {
        tls.sort();
        tls.dedup();
        let kind = match protocol {
            "TLS" => ListenerKind::Tls(TlsListener {
                chains: l4
                    .sni
                    .range((port, String::new())..(port + 1, String::new()))
                    .filter(|((p, _), _)| *p == port)
                    .filter_map(|((_, domain), c)| {
                        let (_, forward) = c.routes.iter().min_by(|a, b| a.0.cmp(&b.0))?;
                        Some(SniChain {
                            server_names: vec![domain.clone()],
                            terminate: c.terminate.as_ref().map(|t| t.secret.clone()),
                            client_validation: c
                                .terminate
                                .as_ref()
                                .and_then(|t| t.client_validation.clone()),
                            forward: forward.clone(),
                            listener: c.listener.clone(),
                        })
                    })
                    .collect(),
            }),
            "TCP" | "UDP" => {
                // Several routes on one listener: the oldest carries the traffic, as the
                // spec says.
                let forward = l4
                    .ports
                    .get(&port)
                    .and_then(|r| r.iter().min_by(|a, b| a.0.cmp(&b.0)))
                    .map(|(_, f)| f.clone())
                    .unwrap_or_default();
                if protocol == "TCP" {
                    ListenerKind::Tcp(forward)
                } else {
                    ListenerKind::Udp(forward)
                }
            }
            _ => ListenerKind::Http(HttpListener {
                tls,
                vhosts: Vec::new(),
            }),
        };
        plan.listeners.insert(port, ListenerPlan { port, kind });
    }
    for ((port, domain), (_, owner, mut routes)) in vhosts {
        // Precedence, then namespace/name of the route (Git has no creation time, the
        // spec's first tie-breaker; namespace/name is its second), then rule and match order.
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let listener = plan.listeners.get_mut(&port).expect("listener planned");
        listener.http_mut().vhosts.push(VhostPlan {
            name: format!("{domain}:{port}"),
            listener: owner,
            domains: vec![domain],
            routes: routes.into_iter().map(|(_, r)| r).collect(),
        });
    }
    upstream_tls(ix, gateway, policies, &mut plan);
    route_through_waypoints(ix, &mut plan);
    plan
}

/// The BackendTLSPolicies of the Services this gateway sends to, with the Gateway's client
/// certificate (`spec.tls.backend`).
fn upstream_tls(ix: &Index<'_>, gateway: &gw::Gateway, policies: &Policies, plan: &mut ProxyPlan) {
    if policies.tls.is_empty() {
        return;
    }
    let client_cert = match client_certificate(ix, gateway) {
        Some(Ok(s)) => Some(s),
        Some(Err(why)) => {
            plan.warnings.push(format!(
                "spec.tls.backend: no client certificate is shown to backends: {}",
                why.message
            ));
            None
        }
        None => None,
    };
    apply(policies, plan, client_cert.as_ref());
}

/// The connection routes of a Gateway's TLS, TCP and UDP listeners while they are planned.
#[derive(Default)]
struct Connections {
    /// (port, SNI name) → the chain's owner and its candidate routes.
    sni: BTreeMap<(u16, String), SniCandidates>,
    /// TCP/UDP port → candidate routes.
    ports: BTreeMap<u16, Vec<(RouteOrder, L4Forward)>>,
}

struct SniCandidates {
    specificity: Specificity,
    listener: String,
    /// The certificate (and client validation) a terminating listener serves.
    terminate: Option<TlsPlan>,
    routes: Vec<(RouteOrder, L4Forward)>,
}

/// Which of several routes competing for one SNI name or one TCP/UDP listener wins: the
/// oldest (`metadata.created`, from Git history; unknown counts as newest), then the first
/// by namespace/name, the spec's tie-breakers.
type RouteOrder = (i64, String, String);

/// Attaches the TLSRoutes, TCPRoutes or UDPRoutes of `routes` to a TLS, TCP or UDP listener.
fn plan_connections(
    ix: &Index<'_>,
    l4: &mut Connections,
    routes: &[Attached<'_>],
    owner: &Owner<'_>,
    listener: &gw::Listener,
    terminate: Option<TlsPlan>,
) {
    for attached in routes {
        let Some(kind) = attached.l4 else {
            continue;
        };
        let route = &*attached.route;
        let route_ns = route.metadata.namespace.as_deref().unwrap_or_default();
        if !attaches(ix, route, kind, route_ns, owner, listener) {
            continue;
        }
        let order = (
            route.metadata.created.unwrap_or(i64::MAX),
            route_ns.to_owned(),
            route.metadata.name.clone(),
        );
        let forward = L4Forward {
            name: format!(
                "{}/{route_ns}/{}/rule/0",
                kind.to_ascii_lowercase(),
                route.metadata.name
            ),
            backends: route
                .spec
                .rules
                .iter()
                .take(1)
                .flat_map(|r| &r.backend_refs)
                .filter(|b| b.weight > 0)
                .map(|b| L4Target {
                    target: target(b, kind, route_ns, &ix.grants),
                    weight: b.weight,
                })
                .collect(),
        };
        if kind != "TLSRoute" {
            l4.ports
                .entry(listener.port)
                .or_default()
                .push((order, forward));
            continue;
        }
        for domain in intersect(listener.hostname.as_deref(), &route.spec.hostnames) {
            let spec = specificity(listener.hostname.as_deref());
            let entry = l4
                .sni
                .entry((listener.port, domain))
                .or_insert_with(|| SniCandidates {
                    specificity: spec,
                    listener: listener.name.clone(),
                    terminate: terminate.clone(),
                    routes: Vec::new(),
                });
            // A more specific listener owns the name (listener isolation, as for HTTP).
            if spec < entry.specificity {
                *entry = SniCandidates {
                    specificity: spec,
                    listener: listener.name.clone(),
                    terminate: terminate.clone(),
                    routes: Vec::new(),
                };
            } else if spec > entry.specificity || entry.listener != listener.name {
                continue;
            }
            entry.routes.push((order.clone(), forward.clone()));
        }
    }
}

/// The certificate a terminating listener serves: its first certificateRef that is a Secret
/// the Gateway may use (warnings say why others are not).
fn listener_certificate(
    ix: &Index<'_>,
    plan: &mut ProxyPlan,
    gateway: &gw::Gateway,
    owner: &Owner<'_>,
    listener: &gw::Listener,
) -> Option<TlsPlan> {
    let t = listener.tls.as_ref()?;
    // Client-certificate validation: a listener whose client CA cannot be had is not
    // served (serving it without the check would let in every client).
    let client_validation = match frontend_validation(ix, gateway, listener.port) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(why)) => {
            plan.warnings.push(format!(
                "listener {} ({}, port {}) is not served: its client certificate validation has no usable CA: {}",
                listener.name, listener.protocol, listener.port, why.message
            ));
            return None;
        }
    };
    let gw_ns = owner.namespace;
    for r in &t.certificate_refs {
        let ns = r.namespace.as_deref().unwrap_or(gw_ns);
        if r.kind != "Secret" {
            plan.warnings.push(format!(
                "listener {}: certificateRef {}/{} is not served: only Secrets are",
                listener.name, ns, r.name
            ));
            continue;
        }
        if !secret_permitted(ix, owner, ns, &r.name) {
            plan.warnings.push(format!(
                "listener {}: certificateRef {}/{} is not served: no ReferenceGrant in {ns} allows {}s of {gw_ns} to use it",
                listener.name, ns, r.name, owner.kind
            ));
            continue;
        }
        return Some(TlsPlan {
            server_names: listener.hostname.iter().cloned().collect(),
            secret: SecretRef {
                namespace: ns.to_owned(),
                name: r.name.clone(),
            },
            listener: listener.name.clone(),
            client_validation,
        });
    }
    plan.warnings.push(format!(
        "listener {} ({}, port {}) is not served: no certificateRef it may use",
        listener.name, listener.protocol, listener.port
    ));
    None
}

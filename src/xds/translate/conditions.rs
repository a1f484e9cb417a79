//! Gateway API status, as a controller would write it: Gateway and listener conditions,
//! and per route and parentRef `Accepted` and `ResolvedRefs` with the spec's reasons.
//!
//! Nothing is written to a cluster: `tidegate validate` prints these and `/status` shows
//! them, so a user learns from tidegate what `kubectl describe httproute` would say. The
//! rules are the translator's own (`gateway_api::attaches`, `intersect`), so the status
//! cannot claim a route attached that the proxies do not serve, or the reverse.

use serde::Serialize;

use super::index::Index;
use super::rules::{
    intersect, is_service, listener_allows, protocol_kinds, secret_permitted, service_permitted,
};
use crate::model::gateway_api::{self as gw, HttpRoute};
use crate::model::istio::WAYPOINT_CLASS;
use crate::model::{Model, Object};
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::Backend;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GatewayApiStatus {
    pub gateways: Vec<GatewayStatus>,
    pub routes: Vec<RouteStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// "True" or "False", as Kubernetes writes it.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    fn new(
        type_: &'static str,
        ok: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: if ok { "True" } else { "False" },
            reason,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub namespace: String,
    pub name: String,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub attached_routes: usize,
    pub supported_kinds: Vec<&'static str>,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub parents: Vec<ParentStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    pub parent_ref: gw::ParentRef,
    pub conditions: Vec<Condition>,
}

impl RouteStatus {
    /// The condition `type_` of the parent named `gateway`, if reported.
    pub fn condition(&self, gateway: &str, type_: &str) -> Option<&Condition> {
        self.parents
            .iter()
            .filter(|p| p.parent_ref.name == gateway)
            .flat_map(|p| &p.conditions)
            .find(|c| c.type_ == type_)
    }
}

/// The status of every Gateway and route of `model`. With `endpoints`, a backend Service
/// missing from it is reported as not found (it is what proxies are told exists).
pub fn status(model: &Model, endpoints: Option<&Endpoints>) -> GatewayApiStatus {
    let ix = Index::new(&model.objects);
    let gateways: Vec<&gw::Gateway> = model
        .objects
        .iter()
        .filter_map(|o| match &**o {
            Object::Gateway(g) if g.spec.gateway_class_name != WAYPOINT_CLASS => Some(g),
            _ => None,
        })
        .collect();
    let by_name: foldhash::HashMap<(&str, &str), &gw::Gateway> = gateways
        .iter()
        .map(|g| {
            (
                (
                    g.metadata.namespace.as_deref().unwrap_or_default(),
                    g.metadata.name.as_str(),
                ),
                *g,
            )
        })
        .collect();
    let find_gateway = |ns: &str, name: &str| by_name.get(&(ns, name)).copied();
    // (gateway ns, gateway name, listener name) → routes attached.
    let mut attached = Attachments::default();

    let mut routes = Vec::new();
    for o in &model.objects {
        let (kind, route): (&'static str, std::borrow::Cow<'_, HttpRoute>) = match &**o {
            Object::HttpRoute(r) => ("HTTPRoute", std::borrow::Cow::Borrowed(r)),
            Object::GrpcRoute(r) => ("GRPCRoute", std::borrow::Cow::Owned(r.as_http())),
            Object::L4Route(r) => (r.kind, std::borrow::Cow::Owned(r.as_http())),
            _ => continue,
        };
        let route_ns = route.metadata.namespace.as_deref().unwrap_or_default();
        let resolved = resolved_refs(&ix, &route, kind, route_ns, endpoints);
        let mut parents = Vec::new();
        for p in &route.spec.parent_refs {
            let gw_ns = p.namespace.as_deref().unwrap_or(route_ns);
            let accepted = if p.group.is_empty() && p.kind == "Service" {
                // A waypoint's route: its Service is its parent.
                Condition::new(
                    "Accepted",
                    true,
                    "Accepted",
                    "bound to the Service's waypoint",
                )
            } else if p.group != gw::GROUP || p.kind != "Gateway" {
                Condition::new(
                    "Accepted",
                    false,
                    "NoMatchingParent",
                    format!(
                        "parent kind {}/{} is not supported; valid: Gateway",
                        p.group, p.kind
                    ),
                )
            } else {
                match find_gateway(gw_ns, &p.name) {
                    None => Condition::new(
                        "Accepted",
                        false,
                        "NoMatchingParent",
                        format!("Gateway {gw_ns}/{} is not in the repository", p.name),
                    ),
                    Some(g) => {
                        let by_ref: Vec<&gw::Listener> = g
                            .spec
                            .listeners
                            .iter()
                            .filter(|l| {
                                p.section_name.as_deref().is_none_or(|s| s == l.name)
                                    && p.port.is_none_or(|port| port == l.port)
                            })
                            .collect();
                        let allowed: Vec<&gw::Listener> = by_ref
                            .iter()
                            .copied()
                            .filter(|l| listener_allows(&ix, l, kind, route_ns, gw_ns))
                            .collect();
                        let hosts: Vec<&gw::Listener> = allowed
                            .iter()
                            .copied()
                            .filter(|l| {
                                !intersect(l.hostname.as_deref(), &route.spec.hostnames).is_empty()
                            })
                            .collect();
                        if by_ref.is_empty() {
                            Condition::new(
                                "Accepted",
                                false,
                                "NoMatchingParent",
                                "no listener of the Gateway matches the parentRef's sectionName and port",
                            )
                        } else if allowed.is_empty() {
                            Condition::new(
                                "Accepted",
                                false,
                                "NotAllowedByListeners",
                                format!("no listener allows a {kind} from namespace {route_ns}"),
                            )
                        } else if hosts.is_empty() {
                            Condition::new(
                                "Accepted",
                                false,
                                "NoMatchingListenerHostname",
                                "no hostname of the route intersects a listener's hostname",
                            )
                        } else {
                            for l in &hosts {
                                *attached
                                    .entry((gw_ns.to_owned(), p.name.clone(), l.name.clone()))
                                    .or_default() += 1;
                            }
                            Condition::new("Accepted", true, "Accepted", "attached")
                        }
                    }
                }
            };
            parents.push(ParentStatus {
                parent_ref: p.clone(),
                conditions: vec![accepted, resolved.clone()],
            });
        }
        routes.push(RouteStatus {
            kind,
            namespace: route_ns.to_owned(),
            name: route.metadata.name.clone(),
            parents,
        });
    }

    let gateways = gateways
        .iter()
        .map(|g| {
            let ns = g.metadata.namespace.clone().unwrap_or_default();
            let mut ports: std::collections::BTreeMap<u16, &str> = Default::default();
            let listeners: Vec<ListenerStatus> = g
                .spec
                .listeners
                .iter()
                .map(|l| listener_status(&ix, &ns, &g.metadata.name, l, &mut ports, &attached))
                .collect();
            let ok = |l: &ListenerStatus, type_: &str| {
                l.conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == "True")
            };
            let valid = |l: &ListenerStatus| ok(l, "Accepted") && !ok(l, "Conflicted");
            let any_programmed = listeners.iter().any(|l| ok(l, "Programmed"));
            GatewayStatus {
                namespace: ns,
                name: g.metadata.name.clone(),
                conditions: vec![
                    if listeners.iter().all(valid) {
                        Condition::new("Accepted", true, "Accepted", "")
                    } else {
                        // Accepted while any listener is: the valid ones are served.
                        Condition::new(
                            "Accepted",
                            listeners.iter().any(valid),
                            "ListenersNotValid",
                            "some listeners are not served; see their conditions",
                        )
                    },
                    Condition::new(
                        "Programmed",
                        any_programmed,
                        if any_programmed {
                            "Programmed"
                        } else {
                            "Invalid"
                        },
                        "served over xDS to the proxy with this Gateway's name",
                    ),
                ],
                listeners,
            }
        })
        .collect();
    GatewayApiStatus { gateways, routes }
}

/// Attached routes by (gateway namespace, gateway name, listener name).
type Attachments = std::collections::BTreeMap<(String, String, String), usize>;

/// One listener's conditions; `ports` collects the protocol of each port seen so far on
/// the Gateway (a second protocol on a port is a conflict).
fn listener_status<'g>(
    ix: &Index<'_>,
    ns: &str,
    gateway: &str,
    l: &'g gw::Listener,
    ports: &mut std::collections::BTreeMap<u16, &'g str>,
    attached: &Attachments,
) -> ListenerStatus {
    let protocol = l.protocol.as_str();
    let carried = protocol_kinds(protocol);
    let supported = !carried.is_empty();
    let conflict = *ports.entry(l.port).or_insert(protocol) != protocol;
    let mode = l.tls.as_ref().map(|t| t.mode);
    let has_certs = l.tls.as_ref().is_some_and(|t| {
        !t.certificate_refs.is_empty() && t.certificate_refs.iter().all(|r| r.kind == "Secret")
    });
    let tls_ok = match protocol {
        "HTTPS" => mode == Some("Terminate") && has_certs,
        "TLS" => mode == Some("Passthrough") || (mode == Some("Terminate") && has_certs),
        _ => true,
    };
    let certs_permitted = l.tls.as_ref().is_none_or(|t| {
        t.mode == "Passthrough"
            || t.certificate_refs.iter().all(|r| {
                let secret_ns = r.namespace.as_deref().unwrap_or(ns);
                secret_permitted(ix, ns, secret_ns, &r.name)
            })
    });
    let listed = l
        .allowed_routes
        .as_ref()
        .map_or(&[][..], |a| a.kinds.as_slice());
    // The kinds the protocol carries, narrowed to those listed; every listed kind must be
    // one of them.
    let kinds: Vec<&'static str> = carried
        .iter()
        .copied()
        .filter(|k| {
            listed.is_empty() || listed.iter().any(|x| x.kind == *k && x.group == gw::GROUP)
        })
        .collect();
    let kinds_ok = listed
        .iter()
        .all(|x| x.group == gw::GROUP && carried.contains(&x.kind.as_str()));
    let mut conditions = vec![
        if supported {
            Condition::new("Accepted", true, "Accepted", "")
        } else {
            Condition::new(
                "Accepted",
                false,
                "UnsupportedProtocol",
                format!(
                    "protocol {} is not served; valid: HTTP, HTTPS, TLS, TCP, UDP",
                    l.protocol
                ),
            )
        },
        if conflict {
            Condition::new(
                "Conflicted",
                true,
                "ProtocolConflict",
                format!("port {} carries another protocol", l.port),
            )
        } else {
            Condition::new("Conflicted", false, "NoConflicts", "")
        },
        if tls_ok && kinds_ok && certs_permitted {
            Condition::new("ResolvedRefs", true, "ResolvedRefs", "")
        } else if !certs_permitted {
            Condition::new(
                "ResolvedRefs",
                false,
                "RefNotPermitted",
                "a certificateRef names a Secret in another namespace that no ReferenceGrant there allows",
            )
        } else if !tls_ok {
            Condition::new(
                "ResolvedRefs",
                false,
                "InvalidCertificateRef",
                if protocol == "TLS" {
                    "TLS needs mode Passthrough, or Terminate with certificateRefs to Secrets"
                } else {
                    "HTTPS needs TLS mode Terminate with certificateRefs to Secrets"
                },
            )
        } else {
            Condition::new(
                "ResolvedRefs",
                false,
                "InvalidRouteKinds",
                format!(
                    "allowedRoutes.kinds lists a kind {protocol} does not carry; valid: {}",
                    carried.join(", ")
                ),
            )
        },
    ];
    let programmed = supported && !conflict && tls_ok && certs_permitted;
    conditions.push(Condition::new(
        "Programmed",
        programmed,
        if programmed { "Programmed" } else { "Invalid" },
        "",
    ));
    ListenerStatus {
        name: l.name.clone(),
        attached_routes: attached
            .get(&(ns.to_owned(), gateway.to_owned(), l.name.clone()))
            .copied()
            .unwrap_or(0),
        supported_kinds: kinds,
        conditions,
    }
}

/// `ResolvedRefs` of a route: the first backendRef (rule order) that cannot be used says why.
fn resolved_refs(
    ix: &Index<'_>,
    route: &HttpRoute,
    kind: &str,
    route_ns: &str,
    endpoints: Option<&Endpoints>,
) -> Condition {
    for (ri, rule) in route.spec.rules.iter().enumerate() {
        for b in &rule.backend_refs {
            let ns = b.namespace.as_deref().unwrap_or(route_ns);
            let at = format!("rules[{ri}] backendRef {ns}/{}", b.name);
            if !is_service(b) {
                return Condition::new(
                    "ResolvedRefs",
                    false,
                    "InvalidKind",
                    format!(
                        "{at}: kind {}/{} is not supported; valid: Service",
                        b.group, b.kind
                    ),
                );
            }
            if !service_permitted(&ix.grants, kind, route_ns, ns, &b.name) {
                return Condition::new(
                    "ResolvedRefs",
                    false,
                    "RefNotPermitted",
                    format!("{at}: no ReferenceGrant in {ns} allows a {kind} from {route_ns}"),
                );
            }
            // The same key the proxies' clusters are looked up by (`envoy::resources`).
            let key = Backend {
                service: b.name.clone(),
                namespace: ns.to_owned(),
                port: b.port,
            }
            .endpoints_key();
            if let Some(eps) = endpoints
                && !eps.entries.contains_key(&key)
            {
                return Condition::new(
                    "ResolvedRefs",
                    false,
                    "BackendNotFound",
                    format!("{at}: Service port {key} is not in the endpoints file"),
                );
            }
        }
    }
    Condition::new("ResolvedRefs", true, "ResolvedRefs", "")
}

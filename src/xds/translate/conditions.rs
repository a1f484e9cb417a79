//! Gateway API status, as a controller would write it: Gateway and listener conditions,
//! and per route and parentRef `Accepted` and `ResolvedRefs` with the spec's reasons.
//!
//! Nothing is written to a cluster: `tidegate validate` prints these and `/status` shows
//! them, so a user learns from tidegate what `kubectl describe httproute` would say. The
//! rules are the translator's own (`gateway_api::attaches`, `intersect`), so the status
//! cannot claim a route attached that the proxies do not serve, or the reverse.

use serde::Serialize;

use super::backend_tls::{client_certificate, frontend_validation, policies};
use super::index::Index;
use super::listeners::{Effective, Owner, SetState, effective, listener_sets};
use super::rules::{
    intersect, is_service, listener_allows, names_listener, protocol_kinds, secret_permitted,
    service_permitted,
};
use crate::model::gateway_api::{self as gw, HttpRoute};
use crate::model::istio::WAYPOINT_CLASS;
use crate::model::{Model, Object};
use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::plan::Backend;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiStatus {
    pub gateways: Vec<GatewayStatus>,
    pub routes: Vec<RouteStatus>,
    pub listener_sets: Vec<ListenerSetStatus>,
    pub gateway_classes: Vec<GatewayClassStatus>,
    /// BackendTLSPolicies, with their conditions per ancestor (each Gateway whose routes
    /// send to a Service the policy targets).
    pub policies: Vec<PolicyStatus>,
}

/// A policy's status (`status.ancestors[]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub ancestors: Vec<AncestorStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AncestorStatus {
    pub ancestor_ref: gw::ParentRef,
    pub conditions: Vec<Condition>,
}

/// A GatewayClass's `Accepted`: tidegate serves the Gateways of every class.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
}

/// A ListenerSet's conditions and its listeners' (as a Gateway's listeners are reported).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetStatus {
    pub namespace: String,
    pub name: String,
    /// The object's generation (from Git history), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// "True" or "False", as Kubernetes writes it.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// The generation of the object the condition was computed from (status is always
    /// computed from the served commit, so it is the object's generation); absent for
    /// objects without one (rendered from intents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
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
            observed_generation: None,
        }
    }
}

/// Marks `conditions` as computed from `generation`.
fn observed(conditions: &mut [Condition], generation: Option<i64>) {
    for c in conditions {
        c.observed_generation = generation;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub namespace: String,
    pub name: String,
    /// The object's generation (from Git history), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
    /// ListenerSets whose listeners the Gateway took (at least one served).
    pub attached_listener_sets: usize,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
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

/// The status of every Gateway, ListenerSet and route of `model`. With `endpoints`, a
/// backend Service missing from it is reported as not found (it is what proxies are told
/// exists).
///
/// With `certs`, a certificateRef to a Secret that is not there (or could not be read) is
/// an invalid reference, as a controller reports a missing Secret.
pub fn status(
    model: &Model,
    endpoints: Option<&Endpoints>,
    certs: Option<&Certs>,
) -> GatewayApiStatus {
    let ix = Index::new(&model.objects);
    let gateways: Vec<&gw::Gateway> = model
        .objects
        .iter()
        .filter_map(|o| match &**o {
            Object::Gateway(g) if g.spec.gateway_class_name != WAYPOINT_CLASS => Some(g),
            _ => None,
        })
        .collect();
    // Every Gateway's listeners (its own and its ListenerSets'), once.
    let plans: Vec<GatewayListeners<'_>> = gateways
        .iter()
        .map(|g| {
            let listeners = effective(&ix, g);
            // Served listeners by owner, once: every parentRef of every route asks.
            let mut served: foldhash::HashMap<Owner<'_>, Vec<&gw::Listener>> =
                foldhash::HashMap::default();
            for e in listeners.iter().filter(|e| e.conflict.is_none()) {
                served.entry(e.owner).or_default().push(e.listener);
            }
            GatewayListeners {
                gateway: g,
                listeners,
                served,
                sets: listener_sets(&ix, g),
            }
        })
        .collect();
    // Gateways and ListenerSets by (namespace, name): a parentRef is looked up, not
    // searched for (10,000 routes on 100 Gateways).
    let gateway_at: foldhash::HashMap<(&str, &str), usize> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = &p.gateway.metadata;
            (
                (m.namespace.as_deref().unwrap_or_default(), m.name.as_str()),
                i,
            )
        })
        .collect();
    let set_at: foldhash::HashMap<(&str, &str), (usize, usize)> = plans
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p.sets.iter().enumerate().map(move |(j, s)| {
                let m = &s.set.metadata;
                (
                    (m.namespace.as_deref().unwrap_or_default(), m.name.as_str()),
                    (i, j),
                )
            })
        })
        .collect();
    let find_gateway = |ns: &str, name: &str| gateway_at.get(&(ns, name)).map(|&i| &plans[i]);
    // A ListenerSet by (namespace, name): its Gateway's listeners and whether it is taken.
    let find_set = |ns: &str, name: &str| {
        set_at
            .get(&(ns, name))
            .map(|&(i, j)| (&plans[i], &plans[i].sets[j]))
    };
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
            let parent_ns = p.namespace.as_deref().unwrap_or(route_ns);
            let no_parent =
                |why: String| Condition::new("Accepted", false, "NoMatchingParent", why);
            // The listeners this parentRef can reach: those of the Gateway or ListenerSet
            // it names, that are served.
            let reachable: Result<(Owner<'_>, &[&gw::Listener]), Condition> = if p.group.is_empty()
                && p.kind == "Service"
            {
                // A waypoint's route: its Service is its parent.
                parents.push(ParentStatus {
                    parent_ref: p.clone(),
                    conditions: vec![
                        Condition::new(
                            "Accepted",
                            true,
                            "Accepted",
                            "bound to the Service's waypoint",
                        ),
                        resolved.clone(),
                    ],
                });
                continue;
            } else if p.group != gw::GROUP || !matches!(p.kind.as_str(), "Gateway" | "ListenerSet")
            {
                Err(no_parent(format!(
                    "parent kind {}/{} is not supported; valid: Gateway, ListenerSet",
                    p.group, p.kind
                )))
            } else if p.kind == "Gateway" {
                match find_gateway(parent_ns, &p.name) {
                    None => Err(no_parent(format!(
                        "Gateway {parent_ns}/{} is not in the repository",
                        p.name
                    ))),
                    Some(g) => {
                        let owner = Owner {
                            kind: "Gateway",
                            namespace: parent_ns,
                            name: &p.name,
                        };
                        Ok((owner, g.served_of(&owner)))
                    }
                }
            } else {
                match find_set(parent_ns, &p.name) {
                    None => Err(no_parent(format!(
                        "ListenerSet {parent_ns}/{} is not in the repository, or its Gateway is not",
                        p.name
                    ))),
                    Some((_, s)) if s.refused.is_some() => Err(no_parent(format!(
                        "ListenerSet {parent_ns}/{} is not accepted by its Gateway",
                        p.name
                    ))),
                    Some((g, _)) => {
                        let owner = Owner {
                            kind: "ListenerSet",
                            namespace: parent_ns,
                            name: &p.name,
                        };
                        Ok((owner, g.served_of(&owner)))
                    }
                }
            };
            let accepted = match reachable {
                Err(c) => c,
                Ok((owner, listeners)) => {
                    let by_ref: Vec<&gw::Listener> = listeners
                        .iter()
                        .copied()
                        .filter(|l| names_listener(p, l))
                        .collect();
                    let allowed: Vec<&gw::Listener> = by_ref
                        .iter()
                        .copied()
                        .filter(|l| listener_allows(&ix, l, kind, route_ns, owner.namespace))
                        .collect();
                    let hosts: Vec<&gw::Listener> = allowed
                        .iter()
                        .copied()
                        .filter(|l| {
                            !intersect(l.hostname.as_deref(), &route.spec.hostnames).is_empty()
                        })
                        .collect();
                    if by_ref.is_empty() {
                        no_parent(format!(
                            "no listener of {} {}/{} matches the parentRef's sectionName and port",
                            owner.kind, owner.namespace, owner.name
                        ))
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
                                .entry((
                                    owner.kind,
                                    owner.namespace.to_owned(),
                                    owner.name.to_owned(),
                                    l.name.clone(),
                                ))
                                .or_default() += 1;
                        }
                        Condition::new("Accepted", true, "Accepted", "attached")
                    }
                }
            };
            parents.push(ParentStatus {
                parent_ref: p.clone(),
                conditions: vec![accepted, resolved.clone()],
            });
        }
        let generation = route.metadata.generation;
        for p in &mut parents {
            observed(&mut p.conditions, generation);
        }
        routes.push(RouteStatus {
            kind,
            namespace: route_ns.to_owned(),
            name: route.metadata.name.clone(),
            generation,
            parents,
        });
    }

    let ok = |l: &ListenerStatus, type_: &str| {
        l.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    let valid = |l: &ListenerStatus| ok(l, "Accepted") && !ok(l, "Conflicted");
    let mut listener_sets_status = Vec::new();
    let gateways = plans
        .iter()
        .map(|p| {
            let g = p.gateway;
            let ns = g.metadata.namespace.clone().unwrap_or_default();
            let statuses = |owner: &Owner<'_>| -> Vec<ListenerStatus> {
                p.listeners
                    .iter()
                    .filter(|e| e.owner == *owner)
                    .map(|e| {
                        let mut l = listener_status(
                            &ix,
                            owner,
                            e.listener,
                            e.conflict,
                            &attached,
                            certs,
                        );
                        frontend_conditions(&ix, g, e.listener, &mut l);
                        l
                    })
                    .collect()
            };
            let listeners = statuses(&Owner {
                kind: "Gateway",
                namespace: &ns,
                name: &g.metadata.name,
            });
            let mut attached_sets = 0;
            for s in &p.sets {
                let owner = Owner {
                    kind: "ListenerSet",
                    namespace: s.set.metadata.namespace.as_deref().unwrap_or_default(),
                    name: &s.set.metadata.name,
                };
                let (conditions, listeners) = match &s.refused {
                    Some((reason, why)) => (
                        vec![
                            Condition::new("Accepted", false, reason, why.clone()),
                            Condition::new("Programmed", false, reason, why.clone()),
                        ],
                        Vec::new(),
                    ),
                    None => {
                        let listeners = statuses(&owner);
                        // Taken when a listener of it is served (a listener whose
                        // certificate it may not use is not).
                        let any_valid = listeners.iter().any(|l| ok(l, "Programmed"));
                        if any_valid {
                            attached_sets += 1;
                        }
                        let conditions = if any_valid {
                            vec![
                                Condition::new("Accepted", true, "Accepted", ""),
                                Condition::new("Programmed", true, "Programmed", ""),
                            ]
                        } else {
                            let why = "no listener of the ListenerSet can be served; see their conditions";
                            vec![
                                Condition::new("Accepted", false, "ListenersNotValid", why),
                                Condition::new("Programmed", false, "ListenersNotValid", why),
                            ]
                        };
                        (conditions, listeners)
                    }
                };
                let generation = s.set.metadata.generation;
                let (mut conditions, mut listeners) = (conditions, listeners);
                observed(&mut conditions, generation);
                for l in &mut listeners {
                    observed(&mut l.conditions, generation);
                }
                listener_sets_status.push(ListenerSetStatus {
                    namespace: owner.namespace.to_owned(),
                    name: owner.name.to_owned(),
                    generation,
                    conditions,
                    listeners,
                });
            }
            let any_programmed = listeners.iter().any(|l| ok(l, "Programmed"));
            let generation = g.metadata.generation;
            let mut listeners = listeners;
            for l in &mut listeners {
                observed(&mut l.conditions, generation);
            }
            let mut status = GatewayStatus {
                namespace: ns,
                name: g.metadata.name.clone(),
                generation,
                conditions: vec![
                    if let Some(p) = g
                        .spec
                        .infrastructure
                        .as_ref()
                        .and_then(|i| i.parameters_ref.as_ref())
                    {
                        Condition::new(
                            "Accepted",
                            false,
                            "InvalidParameters",
                            format!(
                                "parametersRef {}/{} {}: tidegate reads no parameters objects; remove it",
                                p.group, p.kind, p.name
                            ),
                        )
                    } else if listeners.iter().all(valid) {
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
                attached_listener_sets: attached_sets,
            };
            status.conditions.extend(gateway_tls_conditions(&ix, g, certs));
            observed(&mut status.conditions, generation);
            status
        })
        .collect();
    // ListenerSets whose Gateway is not in the repository (or is a waypoint).
    for o in &model.objects {
        if let Object::ListenerSet(s) = &**o {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            if listener_sets_status
                .iter()
                .any(|x: &ListenerSetStatus| x.namespace == ns && x.name == s.metadata.name)
            {
                continue;
            }
            let p = &s.spec.parent_ref;
            let why = format!(
                "parent {}/{} {}/{} is not a Gateway in the repository",
                p.group,
                p.kind,
                p.namespace.as_deref().unwrap_or(ns),
                p.name
            );
            listener_sets_status.push(ListenerSetStatus {
                namespace: ns.to_owned(),
                name: s.metadata.name.clone(),
                generation: None,
                conditions: vec![
                    Condition::new("Accepted", false, "ParentNotAccepted", why.clone()),
                    Condition::new("Programmed", false, "ParentNotAccepted", why),
                ],
                listeners: Vec::new(),
            });
        }
    }
    listener_sets_status.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let gateway_classes = model
        .objects
        .iter()
        .filter_map(|o| match &**o {
            Object::GatewayClass(c) => Some(c),
            _ => None,
        })
        .map(|c| {
            let mut conditions = vec![match &c.spec.parameters_ref {
                Some(p) => Condition::new(
                    "Accepted",
                    false,
                    "InvalidParameters",
                    format!(
                        "parametersRef {}/{} {}: tidegate reads no parameters objects; remove it",
                        p.group, p.kind, p.name
                    ),
                ),
                None => Condition::new(
                    "Accepted",
                    true,
                    "Accepted",
                    "tidegate serves the Gateways of every class in its repository",
                ),
            }];
            observed(&mut conditions, c.metadata.generation);
            GatewayClassStatus {
                name: c.metadata.name.clone(),
                generation: c.metadata.generation,
                conditions,
            }
        })
        .collect();
    let set_gateway = |ns: &str, name: &str| {
        find_set(ns, name).map(|(g, _)| {
            let m = &g.gateway.metadata;
            (m.namespace.clone().unwrap_or_default(), m.name.clone())
        })
    };
    let policies = policy_status(&ix, model, &set_gateway);
    GatewayApiStatus {
        gateways,
        routes,
        listener_sets: listener_sets_status,
        gateway_classes,
        policies,
    }
}

/// BackendTLSPolicy status: the verdicts translation applies, per ancestor Gateway (those
/// whose routes, directly or through a ListenerSet, send to a targeted Service).
fn policy_status(
    ix: &Index<'_>,
    model: &Model,
    set_gateway: &dyn Fn(&str, &str) -> Option<(String, String)>,
) -> Vec<PolicyStatus> {
    if ix.backend_tls_policies.is_empty() {
        return Vec::new();
    }
    // Service (namespace, name) → Gateways (namespace, name) whose routes send to it.
    let mut users: std::collections::BTreeMap<
        (String, String),
        std::collections::BTreeSet<(String, String)>,
    > = Default::default();
    for o in &model.objects {
        let route: std::borrow::Cow<'_, HttpRoute> = match &**o {
            Object::HttpRoute(r) => std::borrow::Cow::Borrowed(r),
            Object::GrpcRoute(r) => std::borrow::Cow::Owned(r.as_http()),
            Object::L4Route(r) => std::borrow::Cow::Owned(r.as_http()),
            _ => continue,
        };
        let route_ns = route.metadata.namespace.as_deref().unwrap_or_default();
        let mut gateways = Vec::new();
        for p in &route.spec.parent_refs {
            let ns = p.namespace.as_deref().unwrap_or(route_ns);
            match (p.group.as_str(), p.kind.as_str()) {
                (gw::GROUP, "Gateway") => gateways.push((ns.to_owned(), p.name.clone())),
                (gw::GROUP, "ListenerSet") => gateways.extend(set_gateway(ns, &p.name)),
                _ => {}
            }
        }
        for b in route.spec.rules.iter().flat_map(|r| &r.backend_refs) {
            if is_service(b) {
                let ns = b.namespace.as_deref().unwrap_or(route_ns);
                users
                    .entry((ns.to_owned(), b.name.clone()))
                    .or_default()
                    .extend(gateways.iter().cloned());
            }
        }
    }
    let resolved = policies(ix);
    ix.backend_tls_policies
        .iter()
        .filter_map(|p| {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let v = resolved
                .verdicts
                .get(&(ns.clone(), p.metadata.name.clone()))?;
            let mut ancestors: std::collections::BTreeSet<(String, String)> = Default::default();
            for s in &v.services {
                if let Some(g) = users.get(&(s.namespace.clone(), s.name.clone())) {
                    ancestors.extend(g.iter().cloned());
                }
            }
            let generation = p.metadata.generation;
            let ancestors = ancestors
                .into_iter()
                .map(|(gns, gname)| {
                    let mut conditions = vec![
                        Condition::new(
                            "Accepted",
                            v.accepted.ok,
                            v.accepted.reason,
                            v.accepted.message.clone(),
                        ),
                        Condition::new(
                            "ResolvedRefs",
                            v.resolved.ok,
                            v.resolved.reason,
                            v.resolved.message.clone(),
                        ),
                    ];
                    observed(&mut conditions, generation);
                    AncestorStatus {
                        ancestor_ref: gw::ParentRef {
                            group: gw::GROUP.into(),
                            kind: "Gateway".into(),
                            name: gname,
                            namespace: Some(gns),
                            section_name: None,
                            port: None,
                        },
                        conditions,
                    }
                })
                .collect();
            Some(PolicyStatus {
                kind: "BackendTLSPolicy",
                namespace: ns,
                name: p.metadata.name.clone(),
                generation,
                ancestors,
            })
        })
        .collect()
}

/// Gateway-level conditions of `spec.tls`: `ResolvedRefs` of the backend client certificate
/// (the Gateway stays Accepted: only that certificate is left out), and
/// `InsecureFrontendValidationMode` when a listener lets in clients without a valid
/// certificate.
fn gateway_tls_conditions(
    ix: &Index<'_>,
    g: &gw::Gateway,
    certs: Option<&Certs>,
) -> Vec<Condition> {
    let mut out = Vec::new();
    match client_certificate(ix, g) {
        None => {}
        Some(Err(why)) => out.push(Condition::new(
            "ResolvedRefs",
            false,
            why.reason,
            why.message,
        )),
        Some(Ok(s)) => {
            let key = (s.namespace.clone(), s.name.clone());
            if let Some(c) = certs
                && !c.secrets.contains_key(&key)
            {
                out.push(Condition::new(
                    "ResolvedRefs",
                    false,
                    "InvalidClientCertificateRef",
                    format!(
                        "clientCertificateRef {}/{}: {}",
                        s.namespace,
                        s.name,
                        c.missing(&format!("secrets/{}/{}", s.namespace, s.name))
                    ),
                ));
            } else {
                out.push(Condition::new("ResolvedRefs", true, "ResolvedRefs", ""));
            }
        }
    }
    let insecure = g
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.frontend.as_ref())
        .is_some_and(|f| {
            std::iter::once(&f.default)
                .chain(f.per_port.iter().map(|p| &p.tls))
                .filter_map(|c| c.validation.as_ref())
                .any(|v| v.mode == gw::FrontendValidation::ALLOW_INSECURE_FALLBACK)
        });
    if insecure {
        out.push(Condition::new(
            "InsecureFrontendValidationMode",
            true,
            "ConfigurationChanged",
            "a listener lets in clients without a valid certificate (AllowInsecureFallback)",
        ));
    }
    out
}

/// A TLS listener whose client-certificate validation has no usable CA is not served: its
/// `ResolvedRefs` says why, `Accepted` is `NoValidCACertificate`, and it is not programmed.
fn frontend_conditions(
    ix: &Index<'_>,
    g: &gw::Gateway,
    l: &gw::Listener,
    status: &mut ListenerStatus,
) {
    let terminates = l.protocol == "HTTPS"
        || (l.protocol == "TLS" && l.tls.as_ref().is_some_and(|t| t.mode == "Terminate"));
    if !terminates {
        return;
    }
    let Some(Err(why)) = frontend_validation(ix, g, l.port) else {
        return;
    };
    for c in &mut status.conditions {
        let (ok, reason, message) = match c.type_ {
            "ResolvedRefs" => (false, why.reason, why.message.clone()),
            "Accepted" if c.status == "True" => (
                false,
                "NoValidCACertificate",
                format!("client certificate validation: {}", why.message),
            ),
            "Programmed" => (
                false,
                "Invalid",
                "client certificate validation has no usable CA".into(),
            ),
            _ => continue,
        };
        *c = Condition::new(c.type_, ok, reason, message);
    }
}

/// A Gateway with the listeners it serves and the ListenerSets naming it.
struct GatewayListeners<'a> {
    gateway: &'a gw::Gateway,
    listeners: Vec<Effective<'a>>,
    /// The served (not conflicted) listeners each owner contributes.
    served: foldhash::HashMap<Owner<'a>, Vec<&'a gw::Listener>>,
    sets: Vec<SetState<'a>>,
}

impl<'a> GatewayListeners<'a> {
    /// The served (not conflicted) listeners `owner` contributes.
    fn served_of<'k>(&'k self, owner: &Owner<'k>) -> &'k [&'k gw::Listener]
    where
        'a: 'k,
    {
        self.served.get(owner).map_or(&[], Vec::as_slice)
    }
}

/// Attached routes by (owner kind, owner namespace, owner name, listener name).
type Attachments = std::collections::BTreeMap<(&'static str, String, String, String), usize>;

/// One listener's conditions; `conflict` is the reason an earlier listener of the port keeps
/// it from being served.
fn listener_status(
    ix: &Index<'_>,
    owner: &Owner<'_>,
    l: &gw::Listener,
    conflict: Option<&'static str>,
    attached: &Attachments,
    certs: Option<&Certs>,
) -> ListenerStatus {
    let ns = owner.namespace;
    let protocol = l.protocol.as_str();
    let carried = protocol_kinds(protocol);
    let supported = !carried.is_empty();
    let mode = l.tls.as_ref().map(|t| t.mode);
    let has_certs = l.tls.as_ref().is_some_and(|t| {
        !t.certificate_refs.is_empty()
            && t.certificate_refs.iter().all(|r| {
                let key = (
                    r.namespace.as_deref().unwrap_or(ns).to_owned(),
                    r.name.clone(),
                );
                r.kind == "Secret" && certs.is_none_or(|c| c.secrets.contains_key(&key))
            })
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
                secret_permitted(ix, owner, secret_ns, &r.name)
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
        if !supported {
            Condition::new(
                "Accepted",
                false,
                "UnsupportedProtocol",
                format!(
                    "protocol {} is not served; valid: HTTP, HTTPS, TLS, TCP, UDP",
                    l.protocol
                ),
            )
        } else if let Some(reason) = conflict {
            Condition::new(
                "Accepted",
                false,
                reason,
                format!("an earlier listener has port {} (see Conflicted)", l.port),
            )
        } else {
            Condition::new("Accepted", true, "Accepted", "")
        },
        match conflict {
            Some(reason) => Condition::new(
                "Conflicted",
                true,
                reason,
                if reason == "ProtocolConflict" {
                    format!("port {} carries another protocol", l.port)
                } else {
                    format!("another listener of port {} has the same hostname", l.port)
                },
            ),
            None => Condition::new("Conflicted", false, "NoConflicts", ""),
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
    let programmed = supported && conflict.is_none() && tls_ok && certs_permitted;
    conditions.push(Condition::new(
        "Programmed",
        programmed,
        match (programmed, conflict) {
            (true, _) => "Programmed",
            (false, Some(reason)) => reason,
            (false, None) => "Invalid",
        },
        "",
    ));
    ListenerStatus {
        name: l.name.clone(),
        attached_routes: attached
            .get(&(
                owner.kind,
                ns.to_owned(),
                owner.name.to_owned(),
                l.name.clone(),
            ))
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

//! Expansion: intents → Kubernetes objects (the model), per the seed's procedures.
//!
//! | mode        | objects                                                                 |
//! |-------------|-------------------------------------------------------------------------|
//! | istio       | Namespace labels, Istio Gateway + VirtualService, the gateway's Service |
//! | gateway-api | Namespace labels, Gateway + HTTPRoute                                   |
//! | ambient     | Namespace labels, waypoint Gateway, ingress Gateway, ingress HTTPRoute, |
//! |             | waypoint HTTPRoute (parent: the Service)                                |
//!
//! plus an OpenShift Route for `exposure: OpenShiftRoute`.
//!
//! A TLS, TCP or UDP intent routes connections instead: a TLS (protocol TLS, PASSTHROUGH or
//! SIMPLE) or TCP server and a VirtualService with one `tls` (by SNI) or `tcp` entry in
//! istio mode; a Gateway listener and a TLSRoute, TCPRoute or UDPRoute in the Gateway API
//! modes (ambient adds no waypoint: there are no L7 rules for one to apply).
//!
//! `backendTLS` on a backendRef renders one object per Service: a BackendTLSPolicy in the
//! Gateway API modes, a DestinationRule (`trafficPolicy.tls`) in istio mode.
//! `clientCertificates` renders the Gateway's `spec.tls.frontend.perPort` validation, or an
//! Istio server with `tls.mode: MUTUAL`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::config::Config;
use super::decode::Problem;
use super::resources::Resource;
use super::spec::{At, BackendTlsRef, Exposure, Intent, Mode, Protocol, Settings};
use crate::model::core::{Namespace, Service, ServicePort, ServiceSpec};
use crate::model::gateway_api::{
    self as gw, AllowedRoutes, FilterType, HttpBackendRef, HttpRouteMatch, HttpRouteRule,
    LabelSelector, LabelSelectorRequirement, Listener, ListenerTls, ParentRef, PathMatchType,
    PathModifierType, RouteNamespaces, SecretRef,
};
use crate::model::istio::{self, HBONE_PORT, StringMatch, WAYPOINT_CLASS, label};
use crate::model::openshift::{self, RoutePort, RouteSpec, RouteTarget, RouteTls, TargetPort};
use crate::model::{Model, Object, ObjectMeta};

/// Annotations on objects tidegate does not own but only labels (Namespaces): a prune must
/// never delete them, and applying them must merge labels rather than replace the object.
pub const PRUNE_SAFE_ANNOTATIONS: [(&str, &str); 3] = [
    (
        "argocd.argoproj.io/sync-options",
        "Prune=false,Delete=false,ServerSideApply=true",
    ),
    ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
    ("kustomize.toolkit.fluxcd.io/ssa", "Merge"),
];

/// Label on every object tidegate renders, so users and tools can find them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tidegate");

/// The sidecar-injection revision an intent asks for, if any.
pub fn revision<'a>(settings: &'a Settings, intent: &'a Intent) -> Option<&'a str> {
    match &intent.injection {
        Some(inj) => inj.value.as_deref(),
        None => settings.revision.as_deref(),
    }
}

/// Expands a validated config. Fails only on conflicts between generated objects, or on
/// rules that a VirtualService cannot express (istio mode).
pub fn expand(config: &Config) -> Result<Model, Vec<Problem>> {
    expand_cached(config, &mut Cache::default())
}

/// What the previous commit's gateways expanded to, by their intents' addresses (an
/// unchanged intent file gives the very same `Arc<Intent>`s: see `intent::Cache`).
#[derive(Clone, Default)]
pub struct Cache {
    settings: Option<Settings>,
    /// Shared: a preview branch's copy of the followed branch's cache copies pointers.
    groups: std::collections::HashMap<(String, String), Arc<Group>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("expand::Cache")
            .field("gateways", &self.groups.len())
            .finish()
    }
}

/// One gateway's expansion.
#[derive(Clone)]
struct Group {
    /// Its intents, in order; held so their addresses cannot be reused by new intents.
    users: Vec<Arc<Intent>>,
    /// The gateway's own objects, each with the index of the intent it is attributed to.
    gateway: Vec<(Arc<Object>, usize)>,
    /// Per intent (same order as `users`): its routes and the problems found making them.
    routes: Vec<(Vec<Arc<Object>>, Vec<Problem>)>,
}

fn expand_group(settings: &Settings, gw_ns: &str, gw_name: &str, users: &[&Arc<Intent>]) -> Group {
    let plain: Vec<&Intent> = users.iter().map(|u| &***u).collect();
    let index = |i: &Intent| {
        plain
            .iter()
            .position(|u| std::ptr::eq(*u, i))
            .unwrap_or_default()
    };
    let mut out = Out::default();
    let mut listener_names: BTreeMap<(String, String, u16, String), String> = BTreeMap::new();
    let first = plain[0];
    match first.mode.value {
        Mode::Istio => expand_istio_gateway(&mut out, gw_ns, gw_name, &plain),
        Mode::GatewayApi | Mode::Ambient => {
            let gateway = gateway_api_gateway(settings, gw_ns, gw_name, &plain);
            for l in &gateway.spec.listeners {
                listener_names.insert(
                    (
                        gw_ns.into(),
                        gw_name.into(),
                        l.port,
                        l.hostname.clone().unwrap_or_default(),
                    ),
                    l.name.clone(),
                );
            }
            if first.gateway.exposure.value == Exposure::OpenShiftRoute {
                for i in &plain {
                    for h in &i.hostnames {
                        let target = listener_names
                            .iter()
                            .find(|((_, _, p, _), _)| *p == i.gateway.port)
                            .map(|(_, name)| name.clone())
                            .unwrap_or_default();
                        let route = openshift_route(
                            i,
                            &h.value,
                            &format!("{gw_name}-istio"),
                            TargetPort::Name(target),
                        );
                        out.push_own(route, i);
                    }
                }
            }
            out.push(Object::Gateway(gateway), first);
        }
    }
    let gateway = out.objects.drain(..).map(|(o, i)| (o, index(i))).collect();

    // Routes, one set per intent.
    let mut routes = Vec::with_capacity(plain.len());
    let conflicts = port_conflicts(&plain);
    for (i, conflict) in plain.iter().zip(conflicts) {
        let mut out = Out::default();
        let mut problems: Vec<Problem> = conflict;
        match i.mode.value {
            _ if i.gateway.protocol.is_l4() => expand_l4(&mut out, i, &listener_names),
            Mode::Istio => match virtual_service(i) {
                Ok(vs) => out.push_own(Object::VirtualService(vs), i),
                Err(mut p) => problems.append(&mut p),
            },
            Mode::GatewayApi => {
                let parents = gateway_parents(i, &listener_names);
                let route = http_route(
                    i,
                    &format!("{}-ingress", i.name),
                    parents,
                    i.hostnames.iter().map(|h| h.value.clone()).collect(),
                    i.rules.clone(),
                );
                out.push_own(route, i);
            }
            Mode::Ambient => expand_ambient(&mut out, i, &listener_names, &mut problems),
        }
        routes.push((out.objects.into_iter().map(|(o, _)| o).collect(), problems));
    }
    Group {
        users: users.iter().map(|u| Arc::clone(u)).collect(),
        gateway,
        routes,
    }
}

/// [`expand`], reusing from `cache` every gateway whose intents did not change.
pub fn expand_cached(config: &Config, cache: &mut Cache) -> Result<Model, Vec<Problem>> {
    let mut out = Out::default();
    let mut problems = Vec::new();

    // Namespaces the intents live in, labelled for their data plane.
    let mut namespaces: BTreeMap<&str, &Intent> = BTreeMap::new();
    // The first ambient intent with L7 rules names the namespace's waypoint. An ambient
    // namespace with only TLS/TCP/UDP intents has no rules for a waypoint to apply, so its
    // connections go from the gateway through ztunnel alone (and UDP, which no waypoint
    // carries, is not sent to one).
    let mut waypoint_users: BTreeMap<&str, &Intent> = BTreeMap::new();
    for i in &config.intents {
        namespaces.entry(&i.namespace).or_insert(i);
        if i.mode.value == Mode::Ambient && !i.gateway.protocol.is_l4() {
            waypoint_users.entry(&i.namespace).or_insert(i);
        }
    }
    for (ns, i) in &namespaces {
        let mut meta = ObjectMeta {
            name: (*ns).to_owned(),
            ..ObjectMeta::default()
        };
        match i.mode.value {
            Mode::Ambient => {
                meta.labels
                    .insert(label::DATAPLANE_MODE.into(), "ambient".into());
                if let Some(w) = waypoint_users.get(ns) {
                    meta.labels
                        .insert(label::USE_WAYPOINT.into(), w.waypoint_name().into());
                    // On the namespace rather than on the app's Service (seed §2.6 labels
                    // the Service): tidegate does not own the app's Service, and Istio
                    // reads the label from the namespace when the Service has none.
                    meta.labels
                        .insert(label::INGRESS_USE_WAYPOINT.into(), "true".into());
                }
            }
            _ => match revision(&config.settings, i) {
                Some(rev) => {
                    meta.labels.insert(label::REVISION.into(), rev.into());
                }
                None => {
                    meta.labels
                        .insert(label::INJECTION.into(), "enabled".into());
                }
            },
        }
        for (k, v) in PRUNE_SAFE_ANNOTATIONS {
            meta.annotations.insert(k.into(), v.into());
        }
        out.push(Object::Namespace(Namespace::new(meta)), i);
    }

    // Gateways, possibly shared by several intents, with the routes of those intents: a
    // group's objects depend on its intents (and the settings) alone, so a group whose
    // intents are the very same as in the previous commit is taken from the cache.
    let mut gateways: BTreeMap<(&str, &str), Vec<&Arc<Intent>>> = BTreeMap::new();
    for i in &config.intents {
        gateways
            .entry((i.gateway_namespace(), &i.gateway.name))
            .or_default()
            .push(i);
    }
    if cache.settings.as_ref() != Some(&config.settings) {
        cache.groups.clear();
        cache.settings = Some(config.settings.clone());
    }
    let mut live = std::collections::HashSet::new();
    for ((gw_ns, gw_name), users) in &gateways {
        let key = ((*gw_ns).to_owned(), (*gw_name).to_owned());
        let fresh = cache.groups.get(&key).is_some_and(|g| {
            g.users.len() == users.len()
                && g.users.iter().zip(users).all(|(a, b)| Arc::ptr_eq(a, b))
        });
        if !fresh {
            let group = expand_group(&config.settings, gw_ns, gw_name, users);
            cache.groups.insert(key.clone(), Arc::new(group));
        }
        live.insert(key);
    }
    cache.groups.retain(|k, _| live.contains(k));
    // Same order as a whole expansion: every gateway's objects, then the routes in intent
    // order (which intent is "first" in a collision report depends on it).
    let mut position: foldhash::HashMap<*const Intent, (&Group, usize)> = Default::default();
    for ((gw_ns, gw_name), users) in &gateways {
        let group: &Group = &cache.groups[&((*gw_ns).to_owned(), (*gw_name).to_owned())];
        for (o, u) in &group.gateway {
            out.push_shared(o.clone(), users[*u]);
        }
        for (idx, u) in users.iter().enumerate() {
            position.insert(Arc::as_ptr(u), (group, idx));
        }
    }
    for i in &config.intents {
        let (group, idx) = position[&Arc::as_ptr(i)];
        let (objects, route_problems) = &group.routes[idx];
        for o in objects {
            out.push_shared(o.clone(), i);
        }
        problems.extend(route_problems.iter().cloned());
    }

    // Connections to a Service whose namespace has a waypoint would go through it, and a
    // waypoint serves HTTP per Service port (and never UDP): refused until it can carry them.
    for i in config.intents.iter().filter(|i| i.gateway.protocol.is_l4()) {
        for (ri, b) in i.rules.iter().flat_map(|r| &r.backend_refs).enumerate() {
            let ns = b.namespace.as_deref().unwrap_or(&i.namespace);
            if let Some(w) = waypoint_users.get(ns) {
                problems.push(Problem {
                    file: i.file.clone(),
                    pos: i.rule_pos.first().map_or(i.pos, |p| p.0),
                    field: format!("spec.rules[0].backendRefs[{ri}]"),
                    message: format!(
                        "{ns}/{} is in a namespace whose ingress traffic goes through waypoint {ns}/{} (intent {}/{}, ambient mode with HTTP rules), and a waypoint does not carry {} connections yet; valid: a backend in a namespace without HTTP intents in ambient mode",
                        b.name,
                        w.waypoint_name(),
                        w.namespace,
                        w.name,
                        i.gateway.protocol.as_str()
                    ),
                });
            }
        }
    }
    reference_grants(&mut out, &config.intents);
    backend_tls(&mut out, config, &mut problems);
    out.check_collisions(&mut problems);
    check_resources(&out, &config.resources, &mut problems);
    if problems.is_empty() {
        Ok(Model::from_shared(
            out.objects
                .into_iter()
                .map(|(o, _)| o)
                .chain(config.resources.iter().map(|r| r.object.clone()))
                .collect(),
        ))
    } else {
        problems.sort();
        Err(problems)
    }
}

#[derive(Default)]
struct Out<'a> {
    objects: Vec<(Arc<Object>, &'a Intent)>,
}

impl<'a> Out<'a> {
    fn push(&mut self, mut o: Object, origin: &'a Intent) {
        // Namespaces are only labelled; everything else is owned and carries the label.
        if !matches!(o, Object::Namespace(_)) {
            o.meta_mut()
                .labels
                .insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        }
        self.objects.push((Arc::new(o), origin));
    }

    /// An object made (and labelled) before, shared as is.
    fn push_shared(&mut self, o: Arc<Object>, origin: &'a Intent) {
        self.objects.push((o, origin));
    }

    /// Like `push`, for an object that belongs to `origin` alone: it also gets the
    /// intent's own labels and annotations.
    fn push_own(&mut self, mut o: Object, origin: &'a Intent) {
        let meta = o.meta_mut();
        for (k, v) in &origin.labels {
            meta.labels.insert(k.clone(), v.clone());
        }
        for (k, v) in &origin.annotations {
            meta.annotations.insert(k.clone(), v.clone());
        }
        self.push(o, origin);
    }

    /// Two intents generating the same object (same kind, namespace and name) with different
    /// content cannot both be applied; name both.
    fn check_collisions(&self, problems: &mut Vec<Problem>) {
        type Seen<'b> =
            foldhash::HashMap<(&'b str, &'b str, &'b str, &'b str), (&'b Arc<Object>, &'b Intent)>;
        let mut seen: Seen<'_> = Default::default();
        for (o, i) in &self.objects {
            let key = (
                o.api_version(),
                o.kind(),
                o.namespace(),
                o.meta().name.as_str(),
            );
            match seen.get(&key) {
                Some((other, first)) if !Arc::ptr_eq(other, o) && ***other != **o => problems.push(Problem {
                    file: i.file.clone(),
                    pos: i.pos,
                    field: "metadata.name".into(),
                    message: format!(
                        "intent {}/{} renders {} {}/{}, which intent {}/{} ({}:{}) also renders differently; rename one of them (intent, gateway or waypoint name)",
                        i.namespace, i.name, key.1, key.2, key.3, first.namespace, first.name, first.file, first.pos
                    ),
                }),
                Some(_) => {}
                None => {
                    seen.insert(key, (o, i));
                }
            }
        }
    }
}

/// Plain objects are applied as they are written: one that an intent also renders, or that
/// another plain object defines again, would be two manifests for one Kubernetes object.
fn check_resources(out: &Out<'_>, resources: &[Resource], problems: &mut Vec<Problem>) {
    // Borrowed keys, the plain objects indexed (they are few) and the intents' objects
    // looked up: this runs on every commit, and messages are formatted only on a clash.
    fn key(o: &Object) -> (&'static str, &'static str, &str, &str) {
        let group = o.api_version().split('/').next().unwrap_or_default();
        (o.kind(), group, o.namespace(), o.meta().name.as_str())
    }
    let clash = |r: &Resource, other: String| {
        let (kind, _, ns, name) = key(&r.object);
        Problem {
            file: r.file.clone(),
            pos: r.pos,
            field: "metadata.name".into(),
            message: format!(
                "{kind} {ns}/{name} is also defined by {other}; valid: one definition per kind, namespace and name (rename one, or drop the plain object)"
            ),
        }
    };
    let mut plain: foldhash::HashMap<_, &Resource> = Default::default();
    for r in resources {
        match plain.get(&key(&r.object)) {
            Some(first) => problems.push(clash(r, format!("{}:{}", first.file, first.pos))),
            None => {
                plain.insert(key(&r.object), r);
            }
        }
    }
    let mut reported = std::collections::HashSet::new();
    for (o, i) in &out.objects {
        if let Some(r) = plain.get(&key(o))
            && reported.insert(key(o))
        {
            problems.push(clash(
                r,
                format!("intent {}/{} ({}:{})", i.namespace, i.name, i.file, i.pos),
            ));
        }
    }
}

/// The objects `backendTLS` renders, one per Service and mode (the first intent, in config
/// order, that gives it): a BackendTLSPolicy (Gateway API modes) or a DestinationRule
/// (istio mode) in the Service's namespace. Intents that give one Service different
/// `backendTLS` are refused, naming both; so is a CA ConfigMap missing from `resources/`,
/// since the proxies tidegate serves read the CA from Git.
fn backend_tls<'a>(out: &mut Out<'a>, config: &'a Config, problems: &mut Vec<Problem>) {
    let mut first: BTreeMap<(&str, &str), (&Intent, &BackendTlsRef)> = BTreeMap::new();
    let mut rendered: BTreeSet<(&str, &str, bool)> = BTreeSet::new();
    let config_maps: BTreeSet<(&str, &str)> = config
        .resources
        .iter()
        .filter_map(|r| match &*r.object {
            Object::ConfigMap(c) if c.data.contains_key(crate::model::core::ConfigMap::CA_KEY) => {
                Some((
                    c.metadata.namespace.as_deref().unwrap_or("default"),
                    c.metadata.name.as_str(),
                ))
            }
            _ => None,
        })
        .collect();
    let missing = |ns: &str, name: &str| !config_maps.contains(&(ns, name));
    for i in &config.intents {
        let istio = i.mode.value == Mode::Istio;
        if !istio && let Some(cc) = &i.gateway.client_certificates {
            for name in cc
                .value
                .ca_refs
                .iter()
                .filter(|n| missing(i.gateway_namespace(), n))
            {
                problems.push(Problem {
                    file: i.file.clone(),
                    pos: cc.pos,
                    field: "spec.gateway.clientCertificates.caCertificateRefs".into(),
                    message: format!("ConfigMap {}/{name} with the client CA (key ca.crt) is not in resources/, and the gateway's proxies read it from Git; valid: a ConfigMap {name} in namespace {} with data.ca.crt in resources/", i.gateway_namespace(), i.gateway_namespace()),
                });
            }
        }
        for t in &i.backend_tls {
            let key = (t.namespace.as_str(), t.service.as_str());
            match first.get(&key) {
                Some((other, o)) if o.tls != t.tls => {
                    problems.push(Problem {
                        file: i.file.clone(),
                        pos: t.pos,
                        field: t.field.clone(),
                        message: format!(
                            "Service {}/{} is reached with TLS one way for every route to it, and intent {}/{} ({}:{}, {}) gives it a different backendTLS; valid: the same backendTLS in both",
                            t.namespace, t.service, other.namespace, other.name, other.file, o.pos, o.field
                        ),
                    });
                    continue;
                }
                Some(_) => {}
                None => {
                    first.insert(key, (i, t));
                }
            }
            if !istio {
                for name in t.tls.ca_refs.iter().filter(|n| missing(&t.namespace, n)) {
                    problems.push(Problem {
                        file: i.file.clone(),
                        pos: t.pos,
                        field: format!("{}.caCertificateRefs", t.field),
                        message: format!("ConfigMap {}/{name} with the backend's CA (key ca.crt) is not in resources/, and the gateway's proxies read it from Git; valid: a ConfigMap {name} in namespace {} (the Service's) with data.ca.crt in resources/", t.namespace, t.namespace),
                    });
                }
            }
            if !rendered.insert((key.0, key.1, istio)) {
                continue;
            }
            let object = if istio {
                destination_rule(t)
            } else {
                backend_tls_policy(t)
            };
            out.push(object, i);
        }
    }
}

/// The name of the object `backendTLS` renders for a Service.
fn backend_tls_name(service: &str) -> String {
    format!("{service}-backend-tls")
}

fn backend_tls_policy(t: &BackendTlsRef) -> Object {
    Object::BackendTlsPolicy(gw::BackendTlsPolicy {
        api_version: gw::API_VERSION,
        kind: "BackendTLSPolicy",
        metadata: ObjectMeta::namespaced(&backend_tls_name(&t.service), &t.namespace),
        spec: gw::BackendTlsPolicySpec {
            target_refs: vec![gw::PolicyTargetRef {
                group: String::new(),
                kind: "Service".into(),
                name: t.service.clone(),
                section_name: None,
            }],
            validation: gw::BackendTlsValidation {
                ca_certificate_refs: t
                    .tls
                    .ca_refs
                    .iter()
                    .map(|n| gw::LocalObjectRef {
                        group: String::new(),
                        kind: "ConfigMap".into(),
                        name: n.clone(),
                    })
                    .collect(),
                well_known_ca_certificates: t.tls.ca_refs.is_empty().then(|| "System".into()),
                hostname: t.tls.hostname.clone(),
                subject_alt_names: t.tls.subject_alt_names.clone(),
            },
            options: BTreeMap::new(),
        },
    })
}

/// `trafficPolicy.tls` mode SIMPLE: SNI the hostname, the CA from the Secret named by the
/// CA reference (Istio's `credentialName`, read in the gateway's namespace; none: the
/// system's CAs), and the names written out (the hostname when none are given), so the
/// rule checks the same names whichever Istio version reads it.
fn destination_rule(t: &BackendTlsRef) -> Object {
    let names = if t.tls.subject_alt_names.is_empty() {
        vec![t.tls.hostname.clone()]
    } else {
        t.tls
            .subject_alt_names
            .iter()
            .filter_map(|s| s.hostname.clone().or_else(|| s.uri.clone()))
            .collect()
    };
    Object::DestinationRule(istio::DestinationRule {
        api_version: istio::API_VERSION,
        kind: "DestinationRule",
        metadata: ObjectMeta::namespaced(&backend_tls_name(&t.service), &t.namespace),
        spec: istio::DestinationRuleSpec {
            host: format!("{}.{}.svc.cluster.local", t.service, t.namespace),
            traffic_policy: Some(istio::TrafficPolicy {
                tls: Some(istio::ClientTlsSettings {
                    mode: "SIMPLE".into(),
                    credential_name: t.tls.ca_refs.first().cloned(),
                    sni: Some(t.tls.hostname.clone()),
                    subject_alt_names: names,
                    ..Default::default()
                }),
                port_level_settings: Vec::new(),
            }),
        },
    })
}

/// A port's name in a Service or Istio server: `http2`/`https` on the usual ports (the
/// names Istio's own gateway Services use and seed §2.3.1's Route targets).
fn service_port_name(protocol: Protocol, port: u16) -> String {
    match (protocol, port) {
        (Protocol::Http, 80) => "http2".into(),
        (Protocol::Https, 443) => "https".into(),
        (Protocol::Http, p) => format!("http2-{p}"),
        (Protocol::Https, p) => format!("https-{p}"),
        // Istio picks a port's protocol from its name prefix: `tls-` is routed by SNI.
        (Protocol::Tls, p) => format!("tls-{p}"),
        (Protocol::Tcp, p) => format!("tcp-{p}"),
        (Protocol::Udp, p) => format!("udp-{p}"),
    }
}

/// Intents that use one port of a gateway with different protocols (or, for TCP and UDP,
/// that share one at all: nothing tells their connections apart), and TLS intents that
/// claim one SNI name on one port, cannot both be served; the later one, in config order,
/// is reported. HTTP intents alone keep their old rules.
fn port_conflicts(users: &[&Intent]) -> Vec<Vec<Problem>> {
    let mut first: BTreeMap<u16, &Intent> = BTreeMap::new();
    let mut names: BTreeMap<(u16, &str), &Intent> = BTreeMap::new();
    let said = |i: &Intent, pos, field: &str, what: String, other: &Intent| Problem {
        file: i.file.clone(),
        pos,
        field: field.into(),
        message: format!(
            "{what} of gateway {}/{} is used by intent {}/{} ({}:{}), which {}",
            i.gateway_namespace(),
            i.gateway.name,
            other.namespace,
            other.name,
            other.file,
            other.pos,
            if i.gateway.protocol == other.gateway.protocol && i.gateway.protocol.has_hostnames() {
                "routes its connections elsewhere; valid: another hostname, port or gateway for this intent".to_owned()
            } else if i.gateway.protocol != other.gateway.protocol {
                format!(
                    "serves {} there; valid: another port (or gateway) for this intent",
                    other.gateway.protocol.as_str()
                )
            } else {
                format!(
                    "takes every {} connection of that port; valid: another port (or gateway) for this intent",
                    i.gateway.protocol.as_str()
                )
            }
        ),
    };
    users
        .iter()
        .map(|i| {
            let g = &i.gateway;
            let mut out = Vec::new();
            if g.protocol == Protocol::Tls {
                for h in &i.hostnames {
                    match names.get(&(g.port, h.value.as_str())) {
                        Some(other) if !std::ptr::eq(*other, *i) => out.push(said(
                            i,
                            h.pos,
                            "spec.hostnames",
                            format!("SNI name {} on port {}", h.value, g.port),
                            other,
                        )),
                        _ => {
                            names.insert((g.port, h.value.as_str()), i);
                        }
                    }
                }
            }
            let Some(other) = first.get(&g.port) else {
                first.insert(g.port, i);
                return out;
            };
            let og = &other.gateway;
            let cc = |g: &super::spec::GatewayIntent| g.client_certificates.as_ref().map(|c| c.value.clone());
            if cc(g) != cc(og) && !g.protocol.is_l4() && !og.protocol.is_l4() {
                let what = |g: &super::spec::GatewayIntent| match &g.client_certificates {
                    Some(c) => format!("clientCertificates {{caCertificateRefs: [{}], mode: {}}}", c.value.ca_refs.join(", "), c.value.mode()),
                    None => "no clientCertificates".to_owned(),
                };
                out.push(Problem {
                    file: i.file.clone(),
                    pos: g.client_certificates.as_ref().map_or(g.protocol_pos, |c| c.pos),
                    field: "spec.gateway.clientCertificates".into(),
                    message: format!(
                        "port {} of gateway {}/{} checks client certificates for every host on it, and intent {}/{} ({}:{}) gives it {} where this intent gives {}; valid: the same clientCertificates in every intent on the port, or another port",
                        g.port, i.gateway_namespace(), g.name, other.namespace, other.name, other.file, other.pos, what(og), what(g)
                    ),
                });
            }
            let clash = (g.protocol.is_l4() || og.protocol.is_l4())
                && (og.protocol != g.protocol || !g.protocol.has_hostnames());
            if clash {
                out.push(said(
                    i,
                    g.protocol_pos,
                    "spec.gateway",
                    format!("port {}", g.port),
                    other,
                ));
            }
            out
        })
        .collect()
}

fn expand_istio_gateway<'a>(out: &mut Out<'a>, ns: &str, name: &str, users: &[&'a Intent]) {
    let first = users[0];
    // One server per port/protocol/certificate/client check, listing every host served
    // there (intents of one port that differ in client certificates are refused before).
    type ServerKey = (u16, Protocol, Vec<String>, bool);
    let mut servers: BTreeMap<ServerKey, BTreeSet<String>> = BTreeMap::new();
    for i in users {
        let hosts = servers
            .entry((
                i.gateway.port,
                i.gateway.protocol,
                i.gateway.certificate_refs.clone(),
                i.gateway.client_certificates.is_some(),
            ))
            .or_default();
        // TCP connections have no name: the server takes any (`*`) for the VirtualService.
        let star = [At {
            pos: i.pos,
            value: "*".to_owned(),
        }];
        let names = if i.gateway.protocol.has_hostnames() {
            &i.hostnames[..]
        } else {
            &star[..]
        };
        for h in names {
            // A VirtualService in another namespace binds only if the server exports the
            // host to it; `*/host` is Istio's spelling of "any namespace".
            if i.namespace == ns {
                hosts.insert(h.value.clone());
            } else {
                hosts.insert(format!("{}/{}", i.namespace, h.value));
            }
        }
    }
    let selector: BTreeMap<String, String> = [("istio".to_owned(), name.to_owned())].into();
    let mut ports = BTreeMap::new();
    let servers = servers
        .into_iter()
        .enumerate()
        .map(|(idx, ((port, protocol, certs, mutual), hosts))| {
            ports.insert(port, protocol);
            let base = match protocol {
                Protocol::Http => "http",
                Protocol::Https => "https",
                Protocol::Tls => "tls",
                Protocol::Tcp => "tcp",
                // Refused in istio mode (spec.rs): Istio gateways do not route UDP.
                Protocol::Udp => "udp",
            };
            istio::Server {
                port: istio::ServerPort {
                    number: port,
                    // Istio wants server port names unique within a Gateway.
                    name: if idx == 0 {
                        base.to_owned()
                    } else {
                        format!("{base}-{port}-{idx}")
                    },
                    protocol: protocol.as_str().into(),
                },
                hosts: hosts.into_iter().collect(),
                tls: match certs.first() {
                    // MUTUAL: Istio checks client certificates against the credential's
                    // ca.crt.
                    Some(c) => Some(istio::ServerTls {
                        mode: if mutual { "MUTUAL" } else { "SIMPLE" },
                        credential_name: c.clone(),
                    }),
                    None if protocol == Protocol::Tls => Some(istio::ServerTls {
                        mode: "PASSTHROUGH",
                        credential_name: String::new(),
                    }),
                    None => None,
                },
            }
        })
        .collect();
    out.push(
        Object::IstioGateway(istio::Gateway {
            api_version: istio::API_VERSION,
            kind: "Gateway",
            metadata: ObjectMeta::namespaced(name, ns),
            spec: istio::GatewaySpec {
                selector: selector.clone(),
                servers,
            },
        }),
        first,
    );
    // The injected gateway's Service, owned here so that its type is declared in Git
    // instead of patched by hand (seed §2.2 `oc patch … LoadBalancer`, §2.3.1 `ClusterIP`).
    let exposure = first.gateway.exposure.value;
    out.push(
        Object::Service(Service {
            api_version: "v1",
            kind: "Service",
            metadata: ObjectMeta::namespaced(name, ns),
            spec: ServiceSpec {
                type_: exposure.service_type().into(),
                selector,
                ports: ports
                    .iter()
                    .map(|(&port, &protocol)| ServicePort {
                        name: service_port_name(protocol, port),
                        port,
                        target_port: port,
                        protocol: "TCP",
                    })
                    .collect(),
            },
        }),
        first,
    );
    if exposure == Exposure::OpenShiftRoute {
        for i in users {
            for h in &i.hostnames {
                out.push_own(
                    openshift_route(
                        i,
                        &h.value,
                        name,
                        TargetPort::Name(service_port_name(i.gateway.protocol, i.gateway.port)),
                    ),
                    i,
                );
            }
        }
    }
}

fn openshift_route(i: &Intent, host: &str, service: &str, target_port: TargetPort) -> Object {
    let name = if i.hostnames.len() == 1 {
        i.name.clone()
    } else {
        format!("{}-{}", i.name, slug(host))
    };
    let (host, wildcard) = match host.strip_prefix("*.") {
        Some(rest) => (format!("wildcard.{rest}"), "Subdomain"),
        None => (host.to_owned(), "None"),
    };
    Object::Route(openshift::Route {
        api_version: openshift::API_VERSION,
        kind: "Route",
        metadata: ObjectMeta::namespaced(&name, i.gateway_namespace()),
        spec: RouteSpec {
            host,
            port: RoutePort { target_port },
            to: RouteTarget {
                kind: "Service",
                name: service.to_owned(),
                weight: 100,
            },
            // The gateway terminates TLS itself; the router passes the bytes through.
            tls: matches!(i.gateway.protocol, Protocol::Https | Protocol::Tls).then_some(
                RouteTls {
                    termination: "passthrough",
                    insecure_edge_termination_policy: "None",
                },
            ),
            wildcard_policy: wildcard,
        },
    })
}

/// `a.example.com` → `a-example-com`, `*.example.com` → `wildcard-example-com`.
fn slug(host: &str) -> String {
    let s = host.replace("*.", "wildcard.").replace('.', "-");
    s.chars()
        .take(40)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

fn gateway_api_gateway(
    settings: &Settings,
    ns: &str,
    name: &str,
    users: &[&Intent],
) -> gw::Gateway {
    // One listener per port and hostname: listener hostnames keep each intent's routes
    // isolated from other hosts on the same gateway.
    // (port, hostname) → (protocol, certificate Secrets, namespaces of the intents using it)
    type ListenerUse = (Protocol, Vec<String>, BTreeSet<String>);
    let mut listeners: BTreeMap<(u16, String), ListenerUse> = BTreeMap::new();
    for i in users {
        // A TCP or UDP listener has no hostname: one listener takes the whole port.
        let unnamed = [String::new()];
        let names: Vec<&String> = if i.gateway.protocol.has_hostnames() {
            i.hostnames.iter().map(|h| &h.value).collect()
        } else {
            unnamed.iter().collect()
        };
        for h in names {
            let entry = listeners
                .entry((i.gateway.port, h.clone()))
                .or_insert_with(|| {
                    (
                        i.gateway.protocol,
                        i.gateway.certificate_refs.clone(),
                        BTreeSet::new(),
                    )
                });
            entry.2.insert(i.namespace.clone());
        }
    }
    let mut per_port: BTreeMap<u16, usize> = BTreeMap::new();
    for (port, _) in listeners.keys() {
        *per_port.entry(*port).or_default() += 1;
    }
    let listeners = listeners
        .into_iter()
        .map(|((port, hostname), (protocol, certs, route_namespaces))| {
            let base = match (protocol, port) {
                (Protocol::Http, 80) => "http".to_owned(),
                (Protocol::Https, 443) => "https".to_owned(),
                (Protocol::Http, p) => format!("http-{p}"),
                (Protocol::Https, p) => format!("https-{p}"),
                (Protocol::Tls, 443) => "tls".to_owned(),
                (Protocol::Tls, p) => format!("tls-{p}"),
                (Protocol::Tcp, p) => format!("tcp-{p}"),
                (Protocol::Udp, p) => format!("udp-{p}"),
            };
            // A lone listener on its port is just `http`, the name seed §2.4's
            // INGRESS_PORT query looks for; several get the hostname in their name.
            let name = if per_port[&port] == 1 {
                base
            } else {
                format!("{base}-{}", slug(&hostname))
            };
            let only_same = route_namespaces.iter().all(|n| n == ns);
            let namespaces = if only_same {
                RouteNamespaces {
                    from: "Same",
                    selector: None,
                }
            } else {
                // Only the namespaces whose intents use this listener may attach: a route
                // committed elsewhere cannot take over the host (the seed allows `All`).
                RouteNamespaces {
                    from: "Selector",
                    selector: Some(LabelSelector {
                        match_labels: Default::default(),
                        match_expressions: vec![LabelSelectorRequirement {
                            key: "kubernetes.io/metadata.name".into(),
                            operator: "In",
                            values: route_namespaces.into_iter().collect(),
                        }],
                    }),
                }
            };
            Listener {
                name,
                hostname: (!hostname.is_empty()).then_some(hostname),
                port,
                protocol: protocol.as_str().into(),
                tls: if protocol == Protocol::Tls && certs.is_empty() {
                    Some(ListenerTls {
                        mode: "Passthrough",
                        certificate_refs: Vec::new(),
                    })
                } else {
                    (!certs.is_empty()).then(|| ListenerTls {
                        mode: "Terminate",
                        certificate_refs: certs
                            .into_iter()
                            .map(|c| SecretRef {
                                group: "",
                                kind: "Secret",
                                name: c,
                                namespace: None,
                            })
                            .collect(),
                    })
                },
                allowed_routes: Some(AllowedRoutes {
                    namespaces,
                    kinds: Vec::new(),
                }),
            }
        })
        .collect();
    // Client certificates per port (the intents of one port agree: `port_conflicts`).
    let mut per_port: BTreeMap<u16, gw::FrontendTlsConfig> = BTreeMap::new();
    for i in users {
        if let Some(cc) = &i.gateway.client_certificates {
            per_port
                .entry(i.gateway.port)
                .or_insert_with(|| gw::FrontendTlsConfig {
                    validation: Some(gw::FrontendValidation {
                        ca_certificate_refs: cc
                            .value
                            .ca_refs
                            .iter()
                            .map(|n| gw::ObjectRef {
                                group: String::new(),
                                kind: "ConfigMap".into(),
                                name: n.clone(),
                                namespace: None,
                            })
                            .collect(),
                        mode: cc.value.mode(),
                    }),
                });
        }
    }
    let tls = (!per_port.is_empty()).then(|| gw::GatewayTls {
        backend: None,
        frontend: Some(gw::FrontendTls {
            // Only the ports that ask check clients: the default checks none.
            default: gw::FrontendTlsConfig::default(),
            per_port: per_port
                .into_iter()
                .map(|(port, tls)| gw::FrontendTlsPort { port, tls })
                .collect(),
        }),
    });
    let mut metadata = ObjectMeta::namespaced(name, ns);
    metadata.annotations.insert(
        // Istio reads it to choose the type of the Service it deploys: the declarative
        // replacement for the seed's `oc patch service … type: LoadBalancer`.
        label::SERVICE_TYPE.into(),
        users[0].gateway.exposure.value.service_type().into(),
    );
    gw::Gateway {
        api_version: gw::API_VERSION,
        kind: "Gateway",
        metadata,
        spec: gw::GatewaySpec {
            gateway_class_name: settings.gateway_class_name.clone(),
            listeners,
            allowed_listeners: None,
            infrastructure: None,
            tls: tls.map(Box::new),
        },
    }
}

/// The intent's gateway listeners as parentRefs: one per hostname, by `sectionName`, so a
/// route never attaches to another port's listener for the same host.
fn gateway_parents(
    i: &Intent,
    listeners: &BTreeMap<(String, String, u16, String), String>,
) -> Vec<ParentRef> {
    let unnamed = [String::new()];
    let hosts: Vec<&String> = if i.gateway.protocol.has_hostnames() {
        i.hostnames.iter().map(|h| &h.value).collect()
    } else {
        unnamed.iter().collect()
    };
    let mut names: Vec<String> = hosts
        .into_iter()
        .filter_map(|h| {
            listeners
                .get(&(
                    i.gateway_namespace().to_owned(),
                    i.gateway.name.clone(),
                    i.gateway.port,
                    h.clone(),
                ))
                .cloned()
        })
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|section| ParentRef {
            group: gw::GROUP.into(),
            kind: "Gateway".into(),
            name: i.gateway.name.clone(),
            namespace: Some(i.gateway_namespace().to_owned()),
            section_name: Some(section),
            port: None,
        })
        .collect()
}

fn http_route(
    i: &Intent,
    name: &str,
    parent_refs: Vec<ParentRef>,
    hostnames: Vec<String>,
    rules: Vec<HttpRouteRule>,
) -> Object {
    Object::HttpRoute(gw::HttpRoute {
        api_version: gw::API_VERSION,
        kind: "HTTPRoute",
        metadata: ObjectMeta::namespaced(name, &i.namespace),
        spec: gw::HttpRouteSpec {
            parent_refs,
            hostnames,
            rules,
        },
    })
}

/// The routes of a TLS, TCP or UDP intent: a VirtualService with one `tls` (passthrough,
/// by SNI) or `tcp` (terminated TLS, or TCP) entry for the gateway's port in istio mode; a
/// TLSRoute, TCPRoute or UDPRoute in the Gateway API modes (ambient too: no waypoint, as
/// there are no L7 rules for one to apply).
fn expand_l4<'a>(
    out: &mut Out<'a>,
    i: &'a Intent,
    listeners: &BTreeMap<(String, String, u16, String), String>,
) {
    let rule = i.rules.first().cloned().unwrap_or_default();
    let live: Vec<&HttpBackendRef> = rule.backend_refs.iter().filter(|b| b.weight > 0).collect();
    if i.mode.value == Mode::Istio {
        let percents = percentages(&live.iter().map(|b| b.weight).collect::<Vec<_>>());
        let route: Vec<istio::RouteDestination> = live
            .iter()
            .zip(percents)
            .map(|(b, pct)| istio::RouteDestination {
                destination: istio::Destination {
                    host: match &b.namespace {
                        Some(ns) if *ns != i.namespace => {
                            format!("{}.{ns}.svc.cluster.local", b.name)
                        }
                        _ => b.name.clone(),
                    },
                    port: istio::PortSelector { number: b.port },
                },
                weight: (live.len() > 1).then_some(pct),
            })
            .collect();
        let port = Some(i.gateway.port);
        let (hosts, tls, tcp) = if i.gateway.passthrough() {
            let hosts: Vec<String> = i.hostnames.iter().map(|h| h.value.clone()).collect();
            let tls = vec![istio::TlsRoute {
                match_: vec![istio::L4Match {
                    port,
                    sni_hosts: hosts.clone(),
                }],
                route,
            }];
            (hosts, tls, Vec::new())
        } else {
            // Terminated TLS is plain TCP behind the server; a TCP server's VirtualService
            // is for any host (`*`): the port alone picks it.
            let hosts = if i.gateway.protocol == Protocol::Tls {
                i.hostnames.iter().map(|h| h.value.clone()).collect()
            } else {
                vec!["*".to_owned()]
            };
            let tcp = vec![istio::TcpRoute {
                match_: vec![istio::L4Match {
                    port,
                    sni_hosts: Vec::new(),
                }],
                route,
            }];
            (hosts, Vec::new(), tcp)
        };
        let gateway = if i.gateway_namespace() == i.namespace {
            i.gateway.name.clone()
        } else {
            format!("{}/{}", i.gateway_namespace(), i.gateway.name)
        };
        out.push_own(
            Object::VirtualService(istio::VirtualService {
                api_version: istio::API_VERSION,
                kind: "VirtualService",
                metadata: ObjectMeta::namespaced(&i.name, &i.namespace),
                spec: istio::VirtualServiceSpec {
                    hosts,
                    gateways: vec![gateway],
                    http: Vec::new(),
                    tls,
                    tcp,
                },
            }),
            i,
        );
        return;
    }
    out.push_own(
        Object::L4Route(gw::L4Route {
            api_version: gw::API_VERSION,
            kind: l4_kind(i.gateway.protocol),
            metadata: ObjectMeta::namespaced(&format!("{}-ingress", i.name), &i.namespace),
            spec: gw::L4RouteSpec {
                parent_refs: gateway_parents(i, listeners),
                hostnames: if i.gateway.protocol == Protocol::Tls {
                    i.hostnames.iter().map(|h| h.value.clone()).collect()
                } else {
                    Vec::new()
                },
                rules: vec![gw::L4RouteRule {
                    name: rule.name.clone(),
                    backend_refs: rule.backend_refs.clone(),
                }],
            },
        }),
        i,
    );
}

/// The route kind of an L4 intent's protocol.
fn l4_kind(p: Protocol) -> &'static str {
    match p {
        Protocol::Tls => "TLSRoute",
        Protocol::Udp => "UDPRoute",
        _ => "TCPRoute",
    }
}

/// The ambient waypoint an intent's namespace is labelled to use (`istioctl waypoint`'s).
fn waypoint_gateway(i: &Intent) -> Object {
    let mut wmeta = ObjectMeta::namespaced(i.waypoint_name(), &i.namespace);
    wmeta
        .labels
        .insert(label::WAYPOINT_FOR.into(), "service".into());
    Object::Gateway(gw::Gateway {
        api_version: gw::API_VERSION,
        kind: "Gateway",
        metadata: wmeta,
        spec: gw::GatewaySpec {
            gateway_class_name: WAYPOINT_CLASS.into(),
            allowed_listeners: None,
            infrastructure: None,
            tls: None,
            listeners: vec![Listener {
                name: "mesh".into(),
                hostname: None,
                port: HBONE_PORT,
                protocol: "HBONE".into(),
                tls: None,
                allowed_routes: Some(AllowedRoutes {
                    namespaces: RouteNamespaces {
                        from: "Same",
                        selector: None,
                    },
                    kinds: Vec::new(),
                }),
            }],
        },
    })
}

fn expand_ambient<'a>(
    out: &mut Out<'a>,
    i: &'a Intent,
    listeners: &BTreeMap<(String, String, u16, String), String>,
    problems: &mut Vec<Problem>,
) {
    // The Services the rules send to; each gets the waypoint's L7 rules.
    let mut services: BTreeSet<(String, u16)> = BTreeSet::new();
    for (rule, (rpos, _)) in i.rules.iter().zip(&i.rule_pos) {
        for b in &rule.backend_refs {
            if b.namespace.as_deref().is_some_and(|n| n != i.namespace) {
                problems.push(Problem {
                    file: i.file.clone(),
                    pos: *rpos,
                    field: "spec.rules.backendRefs.namespace".into(),
                    message: format!(
                        "in ambient mode the waypoint's rules live in the Service's namespace, so backendRefs must be in {}; {}/{} is not",
                        i.namespace,
                        b.namespace.as_deref().unwrap_or_default(),
                        b.name
                    ),
                });
            }
            services.insert((b.name.clone(), b.port));
        }
    }

    out.push(waypoint_gateway(i), i);

    // Ingress: send the hosts to the Service; its waypoint applies the rules (seed §2.6).
    // With several Services the ingress must pick one per request, so it keeps the matches.
    let ingress_rules = if services.len() == 1 {
        let (name, port) = services.iter().next().cloned().unwrap_or_default();
        vec![HttpRouteRule {
            matches: vec![HttpRouteMatch::default()],
            backend_refs: vec![HttpBackendRef {
                group: String::new(),
                kind: "Service".into(),
                name,
                namespace: None,
                port,
                weight: 1,
                filters: Vec::new(),
            }],
            ..HttpRouteRule::default()
        }]
    } else {
        i.rules
            .iter()
            .map(|r| HttpRouteRule {
                name: r.name.clone(),
                matches: r.matches.clone(),
                backend_refs: r.backend_refs.clone(),
                ..HttpRouteRule::default()
            })
            .collect()
    };
    let parents = gateway_parents(i, listeners);
    out.push_own(
        http_route(
            i,
            &format!("{}-ingress", i.name),
            parents,
            i.hostnames.iter().map(|h| h.value.clone()).collect(),
            ingress_rules,
        ),
        i,
    );

    let service_parents = services
        .iter()
        .map(|(name, _)| name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|name| ParentRef {
            group: String::new(),
            // Seed §2.6 writes `kind: service`; kinds are case-sensitive, so that
            // parentRef would match nothing.
            kind: "Service".into(),
            name,
            namespace: Some(i.namespace.clone()),
            section_name: None,
            port: None,
        })
        .collect();
    out.push_own(
        http_route(
            i,
            &format!("{}-waypoint-route", i.name),
            service_parents,
            Vec::new(),
            i.rules.clone(),
        ),
        i,
    );
}

// === istio mode: HTTPRoute rules as a first-match VirtualService ===

/// The VirtualService of an istio-mode intent. Its `http` entries are in Gateway API
/// precedence order, and PathPrefix becomes `exact` + `prefix …/`, so the intent routes
/// the same request to the same backend as in the Gateway API modes.
pub fn virtual_service(i: &Intent) -> Result<istio::VirtualService, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (ri, rule) in i.rules.iter().enumerate() {
        for mi in 0..rule.matches.len() {
            order.push((ri, mi));
        }
    }
    // Stable: ties keep rule order, then match order, as the spec requires.
    order.sort_by_key(|&(ri, mi)| i.rules[ri].matches[mi].precedence());

    let mut http: Vec<(usize, istio::HttpRoute)> = Vec::new();
    for (ri, mi) in order {
        let rule = &i.rules[ri];
        let m = &rule.matches[mi];
        let prefix = gw::normalized_prefix(&m.path.value);
        let variants: Vec<(Option<StringMatch>, bool)> = match m.path.type_ {
            PathMatchType::Exact => vec![(Some(StringMatch::Exact(m.path.value.clone())), true)],
            PathMatchType::RegularExpression => {
                vec![(Some(StringMatch::Regex(m.path.value.clone())), false)]
            }
            PathMatchType::PathPrefix if prefix == "/" => {
                vec![(Some(StringMatch::Prefix("/".into())), false)]
            }
            // A VirtualService `prefix` is a string prefix (`/status` would match
            // `/statusx`); Gateway API PathPrefix compares whole segments.
            PathMatchType::PathPrefix => vec![
                (Some(StringMatch::Exact(prefix.to_owned())), true),
                (Some(StringMatch::Prefix(format!("{prefix}/"))), false),
            ],
        };
        for (uri, exact) in variants {
            let request = istio::HttpMatchRequest {
                uri,
                headers: m
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), value_match(h.type_, &h.value)))
                    .collect(),
                query_params: m
                    .query_params
                    .iter()
                    .map(|q| (q.name.clone(), value_match(q.type_, &q.value)))
                    .collect(),
                method: m.method.clone().map(StringMatch::Exact),
            };
            match vs_action(i, ri, rule, prefix, exact) {
                Ok(mut route) => {
                    route.match_ = vec![request];
                    http.push((ri, route));
                }
                Err(p) => problems.push(p),
            }
        }
    }
    if !problems.is_empty() {
        problems.dedup();
        return Err(problems);
    }
    // Consecutive entries of one rule with the same action become one entry with several
    // matches (ORed), which keeps the output close to what a person would write.
    let mut merged: Vec<(usize, istio::HttpRoute)> = Vec::new();
    for (ri, route) in http {
        if let Some((pri, prev)) = merged.last_mut() {
            let same_action = istio::HttpRoute {
                match_: Vec::new(),
                ..prev.clone()
            } == istio::HttpRoute {
                match_: Vec::new(),
                ..route.clone()
            };
            if *pri == ri && same_action {
                prev.match_.extend(route.match_);
                continue;
            }
        }
        merged.push((ri, route));
    }
    let gateway = if i.gateway_namespace() == i.namespace {
        i.gateway.name.clone()
    } else {
        format!("{}/{}", i.gateway_namespace(), i.gateway.name)
    };
    Ok(istio::VirtualService {
        api_version: istio::API_VERSION,
        kind: "VirtualService",
        metadata: ObjectMeta::namespaced(&i.name, &i.namespace),
        spec: istio::VirtualServiceSpec {
            hosts: i.hostnames.iter().map(|h| h.value.clone()).collect(),
            gateways: vec![gateway],
            http: merged.into_iter().map(|(_, r)| r).collect(),
            tls: Vec::new(),
            tcp: Vec::new(),
        },
    })
}

fn value_match(t: gw::ValueMatchType, v: &str) -> StringMatch {
    match t {
        gw::ValueMatchType::Exact => StringMatch::Exact(v.to_owned()),
        gw::ValueMatchType::RegularExpression => StringMatch::Regex(v.to_owned()),
    }
}

/// What a VirtualService entry does for one rule. `prefix` is the rule match's normalized
/// PathPrefix, `exact` says whether this entry matches only that exact path.
fn vs_action(
    i: &Intent,
    ri: usize,
    rule: &HttpRouteRule,
    prefix: &str,
    exact: bool,
) -> Result<istio::HttpRoute, Problem> {
    let problem = |msg: String| Problem {
        file: i.file.clone(),
        pos: i.rule_pos[ri].0,
        field: format!("spec.rules[{ri}]"),
        message: msg,
    };
    let mut route = istio::HttpRoute {
        name: rule.name.clone(),
        ..istio::HttpRoute::default()
    };

    // Weights: a VirtualService wants percentages; zero-weight backends get no traffic.
    let live: Vec<&HttpBackendRef> = rule.backend_refs.iter().filter(|b| b.weight > 0).collect();
    let percents = percentages(&live.iter().map(|b| b.weight).collect::<Vec<_>>());
    route.route = live
        .iter()
        .zip(percents)
        .map(|(b, pct)| istio::RouteDestination {
            destination: istio::Destination {
                host: match &b.namespace {
                    Some(ns) if *ns != i.namespace => format!("{}.{ns}.svc.cluster.local", b.name),
                    _ => b.name.clone(),
                },
                port: istio::PortSelector { number: b.port },
            },
            weight: (live.len() > 1).then_some(pct),
        })
        .collect();

    for f in &rule.filters {
        match f.type_ {
            FilterType::RequestHeaderModifier | FilterType::ResponseHeaderModifier => {
                let hm = f.header_modifier();
                let ops = istio::HeaderOperations {
                    set: hm.set.into_iter().map(|h| (h.name, h.value)).collect(),
                    add: hm.add.into_iter().map(|h| (h.name, h.value)).collect(),
                    remove: hm.remove,
                };
                let headers = route.headers.get_or_insert_with(istio::Headers::default);
                if f.type_ == FilterType::RequestHeaderModifier {
                    headers.request = Some(ops);
                } else {
                    headers.response = Some(ops);
                }
            }
            FilterType::RequestRedirect => {
                let r = f.request_redirect.clone().unwrap_or_default();
                let uri = match &r.path {
                    None => None,
                    Some(p) if p.type_ == PathModifierType::ReplaceFullPath => {
                        p.replace_full_path.clone()
                    }
                    Some(p) if exact => p.replace_prefix_match.clone(),
                    Some(_) => {
                        return Err(problem(format!(
                            "a RequestRedirect with ReplacePrefixMatch on PathPrefix {prefix} cannot be expressed in an Istio VirtualService (its redirect replaces the whole path); use ReplaceFullPath, or mode gateway-api"
                        )));
                    }
                };
                route.redirect = Some(istio::HttpRedirect {
                    uri,
                    authority: r.hostname,
                    port: r.port,
                    scheme: r.scheme,
                    redirect_code: r.status_code,
                });
            }
            FilterType::RequestMirror => {
                let Some(m) = &f.request_mirror else { continue };
                let r = &m.backend_ref;
                let Some(port) = r.port else {
                    return Err(problem(format!(
                        "the mirror to {} needs a port: a VirtualService destination names the Service port",
                        r.name
                    )));
                };
                let (numerator, denominator) = m.share();
                route.mirrors.push(istio::HttpMirrorPolicy {
                    destination: istio::Destination {
                        host: match &r.namespace {
                            Some(ns) if *ns != i.namespace => {
                                format!("{}.{ns}.svc.cluster.local", r.name)
                            }
                            _ => r.name.clone(),
                        },
                        port: istio::PortSelector { number: port },
                    },
                    percentage: (numerator < denominator).then(|| istio::Percent {
                        value: f64::from(numerator) * 100.0 / f64::from(denominator),
                    }),
                });
            }
            FilterType::Cors => {
                let c = f.cors.clone().unwrap_or_default();
                route.cors_policy = Some(istio::CorsPolicy {
                    // The same origin matching the gateway-api mode's proxies apply.
                    allow_origins: c
                        .allow_origins
                        .iter()
                        .map(|o| match gw::origin_regex(o) {
                            Some(re) => StringMatch::Regex(re),
                            None => StringMatch::Exact(o.clone()),
                        })
                        .collect(),
                    allow_methods: c.allow_methods,
                    allow_headers: c.allow_headers,
                    expose_headers: c.expose_headers,
                    max_age: c.max_age.map(|s| format!("{s}s")),
                    allow_credentials: c.allow_credentials,
                });
            }
            // Intents do not accept ExtensionRef (spec.rs rejects it).
            FilterType::ExtensionRef => {}
            FilterType::UrlRewrite => {
                let r = f.url_rewrite.clone().unwrap_or_default();
                let mut rw = istio::HttpRewrite {
                    authority: r.hostname,
                    ..istio::HttpRewrite::default()
                };
                match &r.path {
                    None => {}
                    Some(p) if p.type_ == PathModifierType::ReplaceFullPath => {
                        let full = p.replace_full_path.clone().unwrap_or_default();
                        if exact {
                            rw.uri = Some(full);
                        } else {
                            // `rewrite.uri` would replace only the matched prefix.
                            rw.uri_regex_rewrite = Some(istio::RegexRewrite {
                                match_: "^/.*$".into(),
                                rewrite: full,
                            });
                        }
                    }
                    Some(p) => {
                        let to = p.replace_prefix_match.clone().unwrap_or_default();
                        let to = gw::normalized_prefix(&to).to_owned();
                        rw.uri = Some(if exact {
                            to
                        } else if to == "/" {
                            "/".to_owned()
                        } else {
                            format!("{to}/")
                        });
                    }
                }
                route.rewrite = Some(rw);
            }
        }
    }
    if let Some(t) = &rule.timeouts {
        if t.backend_request.is_some() {
            return Err(problem("timeouts.backendRequest has no VirtualService equivalent (Istio retries would multiply it); use timeouts.request, or mode gateway-api".into()));
        }
        route.timeout = t.request.clone();
    }
    if let Some(r) = &rule.retry {
        // Connection failures always, as Gateway API requires; Istio spells retriable
        // status codes as plain numbers in retryOn.
        let mut on = vec![
            "connect-failure".to_owned(),
            "refused-stream".into(),
            "reset".into(),
        ];
        on.extend(r.codes.iter().map(u16::to_string));
        route.retries = Some(istio::HttpRetry {
            attempts: r.attempts.unwrap_or(1),
            retry_on: on.join(","),
            per_try_timeout: None,
            backoff: r.backoff.clone(),
        });
    }
    Ok(route)
}

/// Integer percentages proportional to `weights`, summing to exactly 100 (largest
/// remainder, ties to the earlier backend, so the result is deterministic).
fn percentages(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut out: Vec<u32> = weights
        .iter()
        .map(|&w| (u64::from(w) * 100 / total) as u32)
        .collect();
    let mut rest: Vec<(usize, u64)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (i, u64::from(w) * 100 % total))
        .collect();
    rest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let missing = 100 - out.iter().sum::<u32>();
    for (i, _) in rest.into_iter().take(missing as usize) {
        out[i] += 1;
    }
    out
}

/// An HTTPRoute may send to a Service in another namespace only if that namespace grants
/// it (a ReferenceGrant); without one, Gateway API answers those requests with 500. One
/// grant per (Service namespace, route namespace), naming exactly the Services used.
fn reference_grants<'a>(out: &mut Out<'a>, intents: &'a [std::sync::Arc<Intent>]) {
    type Grants<'a> = BTreeMap<(String, String, &'static str), (BTreeSet<String>, &'a Intent)>;
    let mut grants: Grants<'a> = BTreeMap::new();
    // Ambient HTTP intents keep their backends in their own namespace (the waypoint's
    // rules live there); an L4 route has no waypoint rules, so it may cross with a grant.
    for i in intents.iter().filter(|i| {
        i.mode.value == Mode::GatewayApi
            || (i.mode.value == Mode::Ambient && i.gateway.protocol.is_l4())
    }) {
        let kind = if i.gateway.protocol.is_l4() {
            l4_kind(i.gateway.protocol)
        } else {
            "HTTPRoute"
        };
        for b in i.rules.iter().flat_map(|r| &r.backend_refs) {
            if let Some(ns) = b.namespace.as_ref().filter(|ns| **ns != i.namespace) {
                grants
                    .entry((ns.clone(), i.namespace.clone(), kind))
                    .or_insert_with(|| (BTreeSet::new(), i))
                    .0
                    .insert(b.name.clone());
            }
        }
    }
    for ((to_ns, from_ns, kind), (services, first)) in grants {
        out.push(
            Object::ReferenceGrant(gw::ReferenceGrant {
                api_version: gw::REFERENCE_GRANT_API_VERSION,
                kind: "ReferenceGrant",
                metadata: ObjectMeta::namespaced(
                    &format!("allow-{}s-from-{from_ns}", kind.to_ascii_lowercase()),
                    &to_ns,
                ),
                spec: gw::ReferenceGrantSpec {
                    from: vec![gw::ReferenceGrantFrom {
                        group: gw::GROUP.into(),
                        kind: kind.into(),
                        namespace: from_ns,
                    }],
                    to: services
                        .into_iter()
                        .map(|name| gw::ReferenceGrantTo {
                            group: String::new(),
                            kind: "Service".into(),
                            name: Some(name),
                        })
                        .collect(),
                },
            }),
            first,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_sum_to_100() {
        assert_eq!(percentages(&[1]), vec![100]);
        assert_eq!(percentages(&[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(percentages(&[90, 10]), vec![90, 10]);
        assert_eq!(percentages(&[2, 1]), vec![67, 33]);
    }
}

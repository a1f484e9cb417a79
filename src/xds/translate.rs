//! Model → xDS: which proxies exist, and what each one gets.

pub mod envoy;
pub mod gateway_api;
pub mod istio;
pub mod mesh;
pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::model::core::Namespace;
use crate::model::gateway_api::{HttpRoute, ReferenceGrant};
use crate::model::istio::VirtualService;
use crate::model::{Model, Object};
use plan::ProxyPlan;

/// The model's objects looked up by what translation asks: built once per model, so
/// planning each proxy costs what that proxy has, not what the whole model has (scanning
/// the objects per gateway, and the namespaces per backend, took 110 ms at 10,000 intents).
pub struct Index<'a> {
    pub grants: Vec<&'a ReferenceGrant>,
    /// HTTPRoutes by each Gateway (namespace, name) their parentRefs name.
    pub routes_by_gateway: HashMap<(&'a str, &'a str), Vec<&'a HttpRoute>>,
    /// HTTPRoutes with a Service parent (waypoint routes).
    pub service_routes: Vec<&'a HttpRoute>,
    /// VirtualServices by each Istio Gateway (namespace, name) they name.
    pub virtual_services: HashMap<(String, String), Vec<&'a VirtualService>>,
    pub namespaces: HashMap<&'a str, &'a Namespace>,
    /// Waypoint Gateways, (namespace, name).
    pub waypoints: HashSet<(&'a str, &'a str)>,
}

impl<'a> Index<'a> {
    pub fn new(objects: &'a [Arc<Object>]) -> Self {
        let mut ix = Index {
            grants: Vec::new(),
            routes_by_gateway: HashMap::new(),
            service_routes: Vec::new(),
            virtual_services: HashMap::new(),
            namespaces: HashMap::new(),
            waypoints: HashSet::new(),
        };
        for o in objects {
            match &**o {
                Object::ReferenceGrant(g) => ix.grants.push(g),
                Object::Namespace(n) => {
                    ix.namespaces.insert(n.metadata.name.as_str(), n);
                }
                Object::Gateway(g) if g.spec.gateway_class_name == WAYPOINT_CLASS => {
                    ix.waypoints.insert((
                        g.metadata.namespace.as_deref().unwrap_or("default"),
                        g.metadata.name.as_str(),
                    ));
                }
                Object::HttpRoute(r) => {
                    let route_ns = r.metadata.namespace.as_deref().unwrap_or_default();
                    let mut named = HashSet::new();
                    for p in &r.spec.parent_refs {
                        if p.group.is_empty() && p.kind == "Service" {
                            if named.insert(("", "")) {
                                ix.service_routes.push(r);
                            }
                            continue;
                        }
                        let key = (p.namespace.as_deref().unwrap_or(route_ns), p.name.as_str());
                        if named.insert(key) {
                            ix.routes_by_gateway.entry(key).or_default().push(r);
                        }
                    }
                }
                Object::VirtualService(vs) => {
                    let vs_ns = vs.metadata.namespace.as_deref().unwrap_or_default();
                    let mut named = HashSet::new();
                    for g in &vs.spec.gateways {
                        let key = match g.split_once('/') {
                            Some((ns, name)) => (ns.to_owned(), name.to_owned()),
                            None => (vs_ns.to_owned(), g.clone()),
                        };
                        if named.insert(key.clone()) {
                            ix.virtual_services.entry(key).or_default().push(vs);
                        }
                    }
                }
                _ => {}
            }
        }
        ix
    }
}

use mesh::WAYPOINT_CLASS;

/// Every proxy the model describes, by its node id `<gateway>.<namespace>`.
pub fn plans(model: &Model) -> BTreeMap<String, ProxyPlan> {
    let ix = Index::new(&model.objects);
    let mut out = BTreeMap::new();
    for o in &model.objects {
        let (key, plan) = match &**o {
            Object::Gateway(g) if g.spec.gateway_class_name != WAYPOINT_CLASS => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                gateway_api::plan(&ix, g),
            ),
            Object::Gateway(g) => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                mesh::plan(&ix, g),
            ),
            Object::IstioGateway(g) => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                istio::plan(&ix, g),
            ),
            _ => continue,
        };
        out.insert(key, plan);
    }
    out
}

/// What the previous commit's plans were made from, so the next commit plans again only
/// the proxies whose inputs changed (at 10,000 intents on 100 gateways, planning every
/// gateway took ~47 ms; a commit usually touches one).
#[derive(Default)]
pub struct Cache {
    /// Inputs every plan may read: namespace labels (waypoints), grants, waypoint routes.
    context: Option<Context>,
    proxies: HashMap<String, (Key, Arc<ProxyPlan>)>,
}

#[derive(PartialEq)]
struct Context {
    namespaces: Vec<Namespace>,
    grants: Vec<ReferenceGrant>,
    service_routes: Vec<HttpRoute>,
    waypoints: Vec<(String, String)>,
}

/// A proxy's own inputs: its Gateway and what attaches to it.
#[derive(PartialEq)]
enum Key {
    Gateway(crate::model::gateway_api::Gateway, Vec<HttpRoute>),
    Istio(crate::model::istio::Gateway, Vec<VirtualService>),
}

impl Context {
    fn of(ix: &Index<'_>) -> Self {
        let mut namespaces: Vec<Namespace> = ix.namespaces.values().map(|n| (*n).clone()).collect();
        namespaces.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut waypoints: Vec<(String, String)> = ix
            .waypoints
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        waypoints.sort();
        Context {
            namespaces,
            grants: ix.grants.iter().map(|g| (*g).clone()).collect(),
            service_routes: ix.service_routes.iter().map(|r| (*r).clone()).collect(),
            waypoints,
        }
    }
}

/// [`plans`], reusing the plan of every proxy whose inputs equal the previous commit's
/// (compared, not hashed: equal inputs give an equal plan, by construction).
pub fn plans_cached(model: &Model, cache: &mut Cache) -> BTreeMap<String, Arc<ProxyPlan>> {
    let ix = Index::new(&model.objects);
    let context = Context::of(&ix);
    if cache.context.as_ref() != Some(&context) {
        cache.proxies.clear();
        cache.context = Some(context);
    }
    let mut out = BTreeMap::new();
    let mut live = HashSet::new();
    enum Which<'a> {
        Api(&'a crate::model::gateway_api::Gateway),
        Istio(&'a crate::model::istio::Gateway),
    }
    for o in &model.objects {
        let (id, which) = match &**o {
            Object::Gateway(g) => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                Which::Api(g),
            ),
            Object::IstioGateway(g) => (
                proxy_id(&g.metadata.name, g.metadata.namespace.as_deref()),
                Which::Istio(g),
            ),
            _ => continue,
        };
        let routes: &[&HttpRoute] = match which {
            Which::Api(g) => ix
                .routes_by_gateway
                .get(&(
                    g.metadata.namespace.as_deref().unwrap_or_default(),
                    g.metadata.name.as_str(),
                ))
                .map_or(&[], Vec::as_slice),
            Which::Istio(_) => &[],
        };
        let services: &[&VirtualService] = match which {
            Which::Istio(g) => ix
                .virtual_services
                .get(&(
                    g.metadata.namespace.clone().unwrap_or_default(),
                    g.metadata.name.clone(),
                ))
                .map_or(&[], Vec::as_slice),
            Which::Api(_) => &[],
        };
        live.insert(id.clone());
        // Compared with what the objects are now, by reference: the inputs are cloned
        // only when they changed.
        let unchanged = cache
            .proxies
            .get(&id)
            .is_some_and(|(k, _)| match (k, &which) {
                (Key::Gateway(kg, kr), Which::Api(g)) => {
                    kg == *g
                        && kr.len() == routes.len()
                        && kr.iter().zip(routes).all(|(a, b)| a == *b)
                }
                (Key::Istio(kg, kv), Which::Istio(g)) => {
                    kg == *g
                        && kv.len() == services.len()
                        && kv.iter().zip(services).all(|(a, b)| a == *b)
                }
                _ => false,
            });
        if unchanged && let Some((_, plan)) = cache.proxies.get(&id) {
            out.insert(id, plan.clone());
            continue;
        }
        let (key, plan) = match which {
            Which::Api(g) => (
                Key::Gateway(g.clone(), routes.iter().map(|r| (*r).clone()).collect()),
                if g.spec.gateway_class_name == WAYPOINT_CLASS {
                    mesh::plan(&ix, g)
                } else {
                    gateway_api::plan(&ix, g)
                },
            ),
            Which::Istio(g) => (
                Key::Istio(g.clone(), services.iter().map(|v| (*v).clone()).collect()),
                istio::plan(&ix, g),
            ),
        };
        let plan = Arc::new(plan);
        cache.proxies.insert(id.clone(), (key, plan.clone()));
        out.insert(id, plan);
    }
    cache.proxies.retain(|id, _| live.contains(id));
    out
}

pub fn proxy_id(name: &str, namespace: Option<&str>) -> String {
    format!("{name}.{}", namespace.unwrap_or("default"))
}

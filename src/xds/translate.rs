//! Model → xDS: which proxies exist, and what each one gets.

pub mod conditions;
pub mod envoy;
pub mod gateway_api;
pub mod istio;
pub mod mesh;
pub mod plan;

use std::collections::{BTreeMap, HashSet};

use foldhash::HashMap;
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
    /// HTTPRoutes (and GRPCRoutes, as HTTPRoutes) by each Gateway (namespace, name) their
    /// parentRefs name.
    pub routes_by_gateway: HashMap<(&'a str, &'a str), Vec<Attached<'a>>>,
    /// The same, as the model's shared objects (compared by address in [`plans_cached`]).
    route_objects: HashMap<(&'a str, &'a str), Vec<&'a Arc<Object>>>,
    /// HTTPRoutes with a Service parent (waypoint routes).
    pub service_routes: Vec<&'a HttpRoute>,
    /// VirtualServices by each Istio Gateway (namespace, name) they name.
    pub virtual_services: HashMap<(String, String), Vec<&'a VirtualService>>,
    vs_objects: HashMap<(String, String), Vec<&'a Arc<Object>>>,
    pub namespaces: HashMap<&'a str, &'a Namespace>,
    /// Waypoint Gateways, (namespace, name).
    pub waypoints: HashSet<(&'a str, &'a str)>,
}

/// A route attached to a Gateway; a GRPCRoute is carried as the HTTPRoute it routes like
/// (`GrpcRoute::as_http`).
#[derive(Clone, Debug)]
pub struct Attached<'a> {
    pub route: std::borrow::Cow<'a, HttpRoute>,
    pub grpc: bool,
}

impl Attached<'_> {
    pub fn kind(&self) -> &'static str {
        if self.grpc { "GRPCRoute" } else { "HTTPRoute" }
    }
}

impl<'a> Index<'a> {
    pub fn new(objects: &'a [Arc<Object>]) -> Self {
        let mut ix = Index {
            grants: Vec::new(),
            routes_by_gateway: HashMap::default(),
            route_objects: HashMap::default(),
            service_routes: Vec::new(),
            virtual_services: HashMap::default(),
            vs_objects: HashMap::default(),
            namespaces: HashMap::default(),
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
                    // A route names one or two parents: a Vec, not a set, per route.
                    let mut named: Vec<(&str, &str)> = Vec::new();
                    for p in &r.spec.parent_refs {
                        if p.group.is_empty() && p.kind == "Service" {
                            if !named.contains(&("", "")) {
                                named.push(("", ""));
                                ix.service_routes.push(r);
                            }
                            continue;
                        }
                        let key = (p.namespace.as_deref().unwrap_or(route_ns), p.name.as_str());
                        if !named.contains(&key) {
                            named.push(key);
                            ix.routes_by_gateway.entry(key).or_default().push(Attached {
                                route: std::borrow::Cow::Borrowed(r),
                                grpc: false,
                            });
                            ix.route_objects.entry(key).or_default().push(o);
                        }
                    }
                }
                Object::GrpcRoute(g) => {
                    let route_ns = g.metadata.namespace.as_deref().unwrap_or_default();
                    let mut named: Vec<(&str, &str)> = Vec::new();
                    let http = g.as_http();
                    for p in &g.spec.parent_refs {
                        let key = (p.namespace.as_deref().unwrap_or(route_ns), p.name.as_str());
                        if p.kind == "Gateway" && !named.contains(&key) {
                            named.push(key);
                            ix.routes_by_gateway.entry(key).or_default().push(Attached {
                                route: std::borrow::Cow::Owned(http.clone()),
                                grpc: true,
                            });
                            ix.route_objects.entry(key).or_default().push(o);
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
                            ix.vs_objects.entry(key.clone()).or_default().push(o);
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
    // One planning path: the cached one, with nothing cached.
    let shared = plans_cached(model, &mut Cache::default());
    shared
        .into_iter()
        .map(|(id, plan)| (id, Arc::unwrap_or_clone(plan)))
        .collect()
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

/// A proxy's own inputs: its Gateway and what attaches to it (HTTPRoutes, or
/// VirtualServices), as the model's shared objects.
struct Key(Arc<Object>, Vec<Arc<Object>>);

impl Key {
    /// Unchanged objects are the previous commit's very objects (see
    /// `intent::expand::Cache`); equal copies count as unchanged too.
    fn matches(&self, gateway: &Arc<Object>, attached: &[&Arc<Object>]) -> bool {
        let same = |a: &Arc<Object>, b: &Arc<Object>| Arc::ptr_eq(a, b) || **a == **b;
        same(&self.0, gateway)
            && self.1.len() == attached.len()
            && self.1.iter().zip(attached).all(|(a, b)| same(a, b))
    }
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
        let attached: &[&Arc<Object>] = match which {
            Which::Api(g) => ix
                .route_objects
                .get(&(
                    g.metadata.namespace.as_deref().unwrap_or_default(),
                    g.metadata.name.as_str(),
                ))
                .map_or(&[], Vec::as_slice),
            Which::Istio(g) => ix
                .vs_objects
                .get(&(
                    g.metadata.namespace.clone().unwrap_or_default(),
                    g.metadata.name.clone(),
                ))
                .map_or(&[], Vec::as_slice),
        };
        live.insert(id.clone());
        if let Some((k, plan)) = cache.proxies.get(&id)
            && k.matches(o, attached)
        {
            out.insert(id, plan.clone());
            continue;
        }
        let key = Key(o.clone(), attached.iter().map(|a| Arc::clone(a)).collect());
        let plan = match which {
            Which::Api(g) if g.spec.gateway_class_name == WAYPOINT_CLASS => mesh::plan(&ix, g),
            Which::Api(g) => gateway_api::plan(&ix, g),
            Which::Istio(g) => istio::plan(&ix, g),
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

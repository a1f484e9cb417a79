//! Model → plans: which proxies exist, and what each one serves.
//!
//! ```text
//! model ─► Index ─► frontends: gateway_api (Gateway + HTTPRoute/GRPCRoute)
//!                              istio (Gateway + VirtualService)
//!                              waypoint (ambient waypoints)
//!                   ─► ProxyPlan per proxy (crate::xds::plan) ─► emit (Envoy resources)
//! ```
//!
//! The frontends share one set of Gateway API rules (`rules`: attachment, hostnames,
//! precedence, permissions), one HTTPRoute rule translation (`http_route`) and one answer
//! to "which waypoint does this namespace use" (`ambient`); `conditions` reports the same
//! rules as Gateway API status. Modules import downward only: `rules` ← `index` ←
//! `ambient`, `http_route` ← frontends ← this file.

pub mod ambient;
pub mod backend_tls;
pub mod conditions;
pub mod gateway_api;
pub mod http_route;
pub mod index;
pub mod istio;
pub mod listeners;
pub mod rules;
pub mod waypoint;

use std::collections::{BTreeMap, HashSet};

use foldhash::HashMap;
use std::sync::Arc;

use crate::model::core::Namespace;
use crate::model::gateway_api::{HttpRoute, ReferenceGrant};
use crate::model::istio::WAYPOINT_CLASS;
use crate::model::{Model, Object};
use crate::xds::plan::{ProxyPlan, ProxyRef};
use index::Index;

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
/// gateway took ~47 ms; a commit usually touches one). Cloning shares the plans: a
/// preview branch starts from the followed branch's cache.
#[derive(Clone, Default)]
pub struct Cache {
    /// Inputs every plan may read: namespace labels (waypoints), grants, waypoint routes.
    context: Option<Context>,
    proxies: HashMap<String, (Key, Arc<ProxyPlan>)>,
    /// The BackendTLSPolicies resolved for `context` (they are part of it), once a gateway
    /// needed them.
    policies: Option<Arc<backend_tls::Policies>>,
}

#[derive(Clone, PartialEq)]
struct Context {
    namespaces: Vec<Namespace>,
    grants: Vec<ReferenceGrant>,
    service_routes: Vec<(HttpRoute, bool)>,
    waypoints: Vec<(String, String)>,
    /// TLS towards backends: every gateway may send to a Service these name.
    backend_tls: SharedObjects,
}

/// Model objects compared by address first: unchanged objects are the previous commit's
/// very objects, so 10,000 BackendTLSPolicies cost a pointer comparison each, not a clone
/// and a deep comparison per commit.
#[derive(Clone)]
struct SharedObjects(Vec<Arc<Object>>);

impl PartialEq for SharedObjects {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| Arc::ptr_eq(a, b) || **a == **b)
    }
}

/// A proxy's own inputs: its Gateway and what attaches to it (HTTPRoutes, or
/// VirtualServices), as the model's shared objects.
#[derive(Clone)]
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
    fn of(ix: &Index<'_>, model: &Model) -> Self {
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
            service_routes: ix
                .service_routes
                .iter()
                .map(|r| ((*r.route).clone(), r.grpc))
                .collect(),
            waypoints,
            backend_tls: SharedObjects(
                model
                    .objects
                    .iter()
                    .filter(|o| {
                        matches!(
                            &***o,
                            Object::BackendTlsPolicy(_)
                                | Object::DestinationRule(_)
                                | Object::ConfigMap(_)
                        )
                    })
                    .cloned()
                    .collect(),
            ),
        }
    }
}

/// [`plans`], reusing the plan of every proxy whose inputs equal the previous commit's
/// (compared, not hashed: equal inputs give an equal plan, by construction).
pub fn plans_cached(model: &Model, cache: &mut Cache) -> BTreeMap<String, Arc<ProxyPlan>> {
    let ix = Index::new(&model.objects);
    let context = Context::of(&ix, model);
    if cache.context.as_ref() != Some(&context) {
        cache.proxies.clear();
        cache.context = Some(context);
        cache.policies = None;
    }
    let mut out = BTreeMap::new();
    let mut live = HashSet::new();
    // BackendTLSPolicies resolved once per context (not per commit: 10,000 of them took
    // ~150 ms), when a gateway is planned at all.
    let mut policies = cache.policies.take();
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
        let attached: Vec<&Arc<Object>> = match which {
            Which::Api(g) => {
                let key = (
                    g.metadata.namespace.as_deref().unwrap_or_default(),
                    g.metadata.name.as_str(),
                );
                // The Gateway's routes, its ListenerSets, and their routes.
                let sets = ix
                    .listener_set_objects
                    .get(&key)
                    .map_or(&[][..], Vec::as_slice);
                let mut all: Vec<&Arc<Object>> = ix
                    .route_objects
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for set in sets {
                    all.push(set);
                    let m = set.meta();
                    let set_key = (m.namespace.as_deref().unwrap_or_default(), m.name.as_str());
                    all.extend(
                        ix.route_objects
                            .get(&set_key)
                            .into_iter()
                            .flatten()
                            .copied(),
                    );
                }
                all
            }
            Which::Istio(g) => ix
                .vs_objects
                .get(&(
                    g.metadata.namespace.clone().unwrap_or_default(),
                    g.metadata.name.clone(),
                ))
                .map_or(Vec::new(), |v| v.clone()),
        };
        live.insert(id.clone());
        if let Some((k, plan)) = cache.proxies.get(&id)
            && k.matches(o, &attached)
        {
            out.insert(id, plan.clone());
            continue;
        }
        let key = Key(o.clone(), attached.iter().map(|a| Arc::clone(a)).collect());
        let plan = match which {
            Which::Api(g) if g.spec.gateway_class_name == WAYPOINT_CLASS => waypoint::plan(
                &ix,
                g,
                policies.get_or_insert_with(|| Arc::new(backend_tls::policies(&ix))),
            ),
            Which::Api(g) => gateway_api::plan(
                &ix,
                g,
                policies.get_or_insert_with(|| Arc::new(backend_tls::policies(&ix))),
            ),
            Which::Istio(g) => istio::plan(&ix, g),
        };
        let plan = Arc::new(plan);
        cache.proxies.insert(id.clone(), (key, plan.clone()));
        out.insert(id, plan);
    }
    cache.proxies.retain(|id, _| live.contains(id));
    cache.policies = policies;
    out
}

/// The node id of the proxy implementing Gateway `name` in `namespace`.
pub fn proxy_id(name: &str, namespace: Option<&str>) -> String {
    ProxyRef::of(name, namespace).id()
}

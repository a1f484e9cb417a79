//! Immutable snapshots of everything served, published lock-free.
//!
//! A [`Snapshot`] holds, for every proxy, its resources already encoded (each resource once
//! per snapshot; identical resources of different proxies share one allocation) with
//! content-derived versions: the same config always has the same versions, across restarts
//! and replicas, so a reconnecting proxy is not pushed what it has.
//!
//! One [`SnapshotWriter`] publishes through `ArcSwap`; any number of [`SnapshotReader`]s
//! load the current snapshot without locking and wait for the next on a `watch` channel.
//! A new snapshot reuses from the previous one every proxy whose plan is unchanged and
//! that reads the same of the inputs ([`super::inputs`]).

use super::translate::conditions::{self, GatewayApiStatus};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::emit::{self, Variant};
use super::endpoints::Endpoints;
pub use super::inputs::Inputs;
use super::plan::ProxyPlan;
use super::type_url::TypeUrl;

/// One encoded resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    /// First 16 hex digits of the SHA-256 of the encoded message.
    pub version: String,
    pub any: Any,
}

impl Resource {
    fn new<T: Message + Name>(name: &str, message: &T) -> Self {
        let any = emit::any(message);
        Self {
            name: name.to_owned(),
            version: short_hash(&any.value),
            any,
        }
    }
}

fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..8])
}

/// The resources of one type for one proxy, and their combined (SotW) version.
#[derive(Debug, Default)]
pub struct TypeResources {
    pub version: String,
    pub resources: BTreeMap<String, Arc<Resource>>,
    /// A state-of-the-world response with every resource, encoded on first use and shared
    /// by every stream of this proxy (each adds only its nonce): at 10,000 proxies,
    /// building the response per stream was most of a push's CPU.
    full_response: std::sync::OnceLock<bytes::Bytes>,
}

impl TypeResources {
    fn new(resources: BTreeMap<String, Arc<Resource>>) -> Self {
        let mut h = Sha256::new();
        for (name, r) in &resources {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(r.version.as_bytes());
            h.update([0]);
        }
        Self {
            version: hex::encode(&h.finalize()[..8]),
            resources,
            full_response: std::sync::OnceLock::new(),
        }
    }

    /// Resources of the given names and versions (empty messages), for tests of what
    /// streams keep.
    #[cfg(test)]
    pub(crate) fn for_tests(items: &[(&str, &str)]) -> Self {
        Self::new(
            items
                .iter()
                .map(|(n, v)| {
                    let r = Resource {
                        name: n.to_string(),
                        version: v.to_string(),
                        any: Any::default(),
                    };
                    (n.to_string(), Arc::new(r))
                })
                .collect(),
        )
    }

    /// `DiscoveryResponse` fields version_info, resources (all, by name) and type_url,
    /// encoded; a stream appends its nonce field (protobuf messages concatenate).
    pub fn full_response(&self, t: TypeUrl) -> &bytes::Bytes {
        self.full_response.get_or_init(|| {
            use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
            DiscoveryResponse {
                version_info: self.version.clone(),
                resources: self.resources.values().map(|r| r.any.clone()).collect(),
                type_url: t.url(),
                ..DiscoveryResponse::default()
            }
            .encode_to_vec()
            .into()
        })
    }
}

/// Everything one proxy is served.
#[derive(Debug, Default)]
pub struct ProxySnapshot {
    /// False when no gateway of the model has this id: the proxy gets an empty config.
    pub known: bool,
    pub warnings: Vec<String>,
    /// Indexed by [`TypeUrl::index`].
    pub types: [TypeResources; 5],
}

impl ProxySnapshot {
    pub fn of(&self, t: TypeUrl) -> &TypeResources {
        &self.types[t.index()]
    }
}

/// What the served config came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The commit (or a label for a plain directory).
    pub revision: String,
    /// Human description of the source.
    pub source: String,
    /// The branch it was read from (`--branch`, or a preview branch); empty when serving
    /// `HEAD` or a hand-made config.
    #[serde(rename = "ref", skip_serializing_if = "String::is_empty")]
    pub r#ref: String,
    /// What was ignored in that commit (symlinks, submodules, unread directories).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Deduplicates identical encoded resources across proxies.
#[derive(Default)]
struct Interner(HashMap<(String, String, String), Arc<Resource>>);

impl Interner {
    /// Offers `ps`'s resources for reuse: a proxy encoded again (its plan changed) keeps
    /// the very allocations of what did not change, and a preview branch's proxy shares
    /// those of the same proxy on the followed branch.
    fn seed(&mut self, ps: &ProxySnapshot) {
        for (i, t) in ps.types.iter().enumerate() {
            let url = TypeUrl::ALL[i].url();
            for r in t.resources.values() {
                self.0
                    .entry((url.clone(), r.name.clone(), r.version.clone()))
                    .or_insert_with(|| r.clone());
            }
        }
    }

    fn get<T: Message + Name>(&mut self, name: &str, m: &T) -> Arc<Resource> {
        let r = Resource::new(name, m);
        self.0
            .entry((T::type_url(), r.name.clone(), r.version.clone()))
            .or_insert_with(|| Arc::new(r))
            .clone()
    }
}

/// Non-default variants kept per proxy (see [`Snapshot::proxy`]). A real proxy asks for
/// one shape (its bind address, or proxyless); the bound only stops a client that sends
/// many binds for one gateway from growing the cache without limit.
pub const MAX_VARIANTS_PER_PROXY: usize = 8;

pub struct Snapshot {
    pub origin: Origin,
    plans: BTreeMap<String, Arc<ProxyPlan>>,
    inputs: Inputs,
    /// Looked up on every push, by every stream: hashed, not ordered (`plans` gives the
    /// order).
    proxies: HashMap<String, Arc<ProxySnapshot>>,
    /// Proxies that asked for a non-default variant (bind address, proxyless), built on
    /// first use and kept for the life of the snapshot, at most
    /// [`MAX_VARIANTS_PER_PROXY`] per proxy; past that, built on every ask.
    variants: Mutex<HashMap<String, HashMap<Variant, Arc<ProxySnapshot>>>>,
    empty: Arc<ProxySnapshot>,
    /// The model the plans came from, for Gateway API status (see [`Snapshot::gateway_api`]).
    model: Option<Arc<crate::model::Model>>,
    /// Gateway API status, computed when first asked for (a status page, not the push).
    gateway_api: std::sync::OnceLock<Arc<GatewayApiStatus>>,
    /// The preview branches served besides this one (`serve --preview-branches`), by
    /// branch name. Empty in a preview's own snapshot.
    previews: Arc<BTreeMap<String, Arc<Snapshot>>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("origin", &self.origin)
            .field("proxies", &self.proxies.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Snapshot {
    /// Encodes every proxy's resources.
    pub fn build(origin: Origin, plans: BTreeMap<String, ProxyPlan>, inputs: Inputs) -> Self {
        let plans = plans.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        Self::build_shared(origin, plans, inputs, None)
    }

    /// Like [`Snapshot::build`] for plans already shared (from `translate::plans_cached`,
    /// where an unchanged proxy's plan is the previous commit's very `Arc`), reusing from
    /// `previous` every proxy whose plan is unchanged and that reads the same of the inputs
    /// (see [`super::inputs`]): comparing a plan costs a fraction of encoding and hashing
    /// its resources, a commit usually changes a few gateways of many, and an endpoints or
    /// certificate change touches the proxies that use what changed.
    pub fn build_shared(
        origin: Origin,
        plans: BTreeMap<String, Arc<ProxyPlan>>,
        inputs: Inputs,
        previous: Option<&Snapshot>,
    ) -> Self {
        Self::build_from(origin, plans, inputs, previous.as_slice())
    }

    /// Like [`Snapshot::build_shared`], reusing from the first of `previous` that has it
    /// every proxy whose plan is unchanged and reads the same of the inputs. A preview
    /// branch passes its own previous snapshot, then the followed branch's: a gateway the
    /// branch did not change is the followed branch's very `Arc`, encoded once for both.
    pub fn build_from(
        origin: Origin,
        plans: BTreeMap<String, Arc<ProxyPlan>>,
        inputs: Inputs,
        previous: &[&Snapshot],
    ) -> Self {
        let same_inputs: Vec<bool> = previous.iter().map(|p| p.inputs.same_as(&inputs)).collect();
        let mut interner = Interner::default();
        let mut proxies = HashMap::with_capacity(plans.len());
        'proxies: for (id, plan) in &plans {
            for (prev, same_inputs) in previous.iter().zip(&same_inputs) {
                if let Some(prev_plan) = prev.plans.get(id)
                    && (Arc::ptr_eq(prev_plan, plan) || **prev_plan == **plan)
                    && (*same_inputs || super::inputs::reads(id, plan).same(&prev.inputs, &inputs))
                {
                    proxies.insert(id.clone(), prev.proxies[id].clone());
                    continue 'proxies;
                }
            }
            for prev in previous {
                if let Some(ps) = prev.proxies.get(id) {
                    interner.seed(ps);
                }
            }
            let encoded = encode(plan, &inputs, &Variant::default(), &mut interner);
            proxies.insert(id.clone(), Arc::new(encoded));
        }
        Self {
            origin,
            plans,
            inputs,
            proxies,
            variants: Mutex::new(HashMap::new()),
            empty: Arc::new(ProxySnapshot::default()),
            model: None,
            gateway_api: std::sync::OnceLock::new(),
            previews: Arc::default(),
        }
    }

    /// This snapshot serving `previews` besides itself. Everything else is shared: the
    /// followed branch's proxies keep their very `Arc`s, so a commit on a preview branch
    /// sends the followed branch's proxies nothing.
    pub fn with_previews(&self, previews: Arc<BTreeMap<String, Arc<Snapshot>>>) -> Self {
        Self {
            origin: self.origin.clone(),
            plans: self.plans.clone(),
            inputs: self.inputs.clone(),
            proxies: self.proxies.clone(),
            variants: Mutex::new(self.lock_variants().clone()),
            empty: self.empty.clone(),
            model: self.model.clone(),
            gateway_api: self.gateway_api.clone(),
            previews,
        }
    }

    /// Serves `previews` besides this snapshot (the publisher, on a snapshot it builds).
    pub fn set_previews(&mut self, previews: Arc<BTreeMap<String, Arc<Snapshot>>>) {
        self.previews = previews;
    }

    /// The preview branches served, by name.
    pub fn previews(&self) -> &Arc<BTreeMap<String, Arc<Snapshot>>> {
        &self.previews
    }

    /// The snapshot a proxy naming `r#ref` (node metadata `tidegate.io/ref`) is served:
    /// this one without a ref or for the followed branch's name; a served preview's; `None`
    /// for a ref that is not served (the proxy gets an empty config).
    pub fn at_ref(&self, r#ref: Option<&str>) -> Option<&Snapshot> {
        match r#ref {
            None => Some(self),
            Some(r) if r == self.origin.r#ref => Some(self),
            Some(r) => self.previews.get(r).map(|p| &**p),
        }
    }

    /// Keeps `model` for the Gateway API status of this snapshot.
    pub fn with_model(mut self, model: Arc<crate::model::Model>) -> Self {
        self.model = Some(model);
        self
    }

    /// Gateway and route conditions of the served model, given the served endpoints.
    pub fn gateway_api(&self) -> Arc<GatewayApiStatus> {
        self.gateway_api
            .get_or_init(|| {
                Arc::new(match &self.model {
                    Some(m) => conditions::status(
                        m,
                        self.inputs.endpoints.as_deref(),
                        self.inputs.certs.as_deref(),
                    ),
                    None => GatewayApiStatus::default(),
                })
            })
            .clone()
    }

    /// The same config with other inputs (endpoints, certificates): only the proxies that
    /// read what changed are encoded again; the others keep their very `Arc`.
    pub fn with_inputs(&self, inputs: Inputs) -> Self {
        self.with_inputs_sharing(inputs, &[])
    }

    /// [`Snapshot::with_inputs`], also reusing proxies of `others` (a preview's followed
    /// branch, already rebuilt for the same inputs).
    pub fn with_inputs_sharing(&self, inputs: Inputs, others: &[&Snapshot]) -> Self {
        let mut previous = vec![self];
        previous.extend_from_slice(others);
        let mut next = Self::build_from(self.origin.clone(), self.plans.clone(), inputs, &previous);
        next.model = self.model.clone();
        next.previews = self.previews.clone();
        next
    }

    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    pub fn endpoints(&self) -> Option<&Arc<Endpoints>> {
        self.inputs.endpoints.as_ref()
    }

    /// Ids of the proxies the model describes, in order.
    pub fn proxy_ids(&self) -> impl Iterator<Item = &String> {
        self.plans.keys()
    }

    /// Whether the model describes proxy `id`.
    /// The plan of proxy `id` (what the frontends decided it serves).
    pub fn plan(&self, id: &str) -> Option<&Arc<ProxyPlan>> {
        self.plans.get(id)
    }

    pub fn knows(&self, id: &str) -> bool {
        self.proxies.contains_key(id)
    }

    /// What proxy `id` is served, shaped for `variant`; an empty config if unknown.
    pub fn proxy(&self, id: &str, variant: &Variant) -> Arc<ProxySnapshot> {
        let Some(default) = self.proxies.get(id) else {
            return self.empty.clone();
        };
        if *variant == Variant::default() {
            return default.clone();
        }
        let cached = |v: &HashMap<String, HashMap<Variant, Arc<ProxySnapshot>>>| {
            v.get(id).and_then(|v| v.get(variant)).cloned()
        };
        if let Some(ps) = cached(&self.lock_variants()) {
            return ps;
        }
        // Encoded without the lock: other streams' lookups do not wait for it (two streams
        // asking for one new variant at once may both encode it; one is kept).
        let ps = Arc::new(encode(
            &self.plans[id],
            &self.inputs,
            variant,
            &mut Interner::default(),
        ));
        let mut variants = self.lock_variants();
        if let Some(kept) = cached(&variants) {
            return kept;
        }
        let kept = variants.get(id).map_or(0, HashMap::len);
        if kept < MAX_VARIANTS_PER_PROXY {
            variants
                .entry(id.to_owned())
                .or_default()
                .insert(variant.clone(), ps.clone());
        }
        ps
    }

    fn lock_variants(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<Variant, Arc<ProxySnapshot>>>> {
        self.variants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What proxy `id` naming `r#ref` is served (see [`Snapshot::at_ref`]): an empty
    /// config for an unknown ref or proxy.
    pub fn proxy_at(&self, r#ref: Option<&str>, id: &str, variant: &Variant) -> Arc<ProxySnapshot> {
        match self.at_ref(r#ref) {
            Some(s) => s.proxy(id, variant),
            None => self.empty.clone(),
        }
    }

    /// Whether the config of `r#ref` has proxy `id`.
    pub fn knows_at(&self, r#ref: Option<&str>, id: &str) -> bool {
        self.at_ref(r#ref).is_some_and(|s| s.knows(id))
    }

    /// How many variants are kept (for tests of the bound).
    pub fn cached_variants(&self) -> usize {
        self.lock_variants().values().map(HashMap::len).sum()
    }
}

fn encode(
    plan: &ProxyPlan,
    inputs: &Inputs,
    variant: &Variant,
    interner: &mut Interner,
) -> ProxySnapshot {
    let (res, extra) = emit::resources(
        plan,
        inputs.endpoints.as_deref(),
        inputs.certs.as_deref(),
        variant,
    );
    fn typed<T: Message + Name>(m: &BTreeMap<String, T>, interner: &mut Interner) -> TypeResources {
        TypeResources::new(
            m.iter()
                .map(|(n, m)| (n.clone(), interner.get(n, m)))
                .collect(),
        )
    }
    let mut types: [TypeResources; 5] = Default::default();
    types[TypeUrl::Secret.index()] = typed(&res.secrets, interner);
    types[TypeUrl::Cluster.index()] = typed(&res.clusters, interner);
    types[TypeUrl::Endpoint.index()] = typed(&res.endpoints, interner);
    types[TypeUrl::Listener.index()] = typed(&res.listeners, interner);
    types[TypeUrl::Route.index()] = typed(&res.routes, interner);
    let mut warnings = plan.warnings.clone();
    warnings.extend(extra);
    ProxySnapshot {
        known: true,
        warnings,
        types,
    }
}

// === publication ===

/// The only writer of the served snapshot. Not `Clone`: one task owns publication
/// (`serve`'s publisher, which the sync loop and the file watchers send updates to).
pub struct SnapshotWriter {
    cell: Arc<ArcSwap<Snapshot>>,
    tx: watch::Sender<u64>,
}

/// A cheap, cloneable handle for reading the current snapshot and waiting for the next.
#[derive(Clone)]
pub struct SnapshotReader {
    cell: Arc<ArcSwap<Snapshot>>,
    rx: watch::Receiver<u64>,
}

pub fn channel(initial: Snapshot) -> (SnapshotWriter, SnapshotReader) {
    let cell = Arc::new(ArcSwap::from_pointee(initial));
    let (tx, rx) = watch::channel(0);
    (
        SnapshotWriter {
            cell: cell.clone(),
            tx,
        },
        SnapshotReader { cell, rx },
    )
}

impl SnapshotWriter {
    /// Makes `snapshot` the served one and wakes every stream.
    pub fn publish(&self, snapshot: Snapshot) {
        self.cell.store(Arc::new(snapshot));
        // ArcSwap does not notify; the generation counter does. Waiters compare versions,
        // so a skipped generation (two publishes before they run) loses nothing.
        self.tx.send_modify(|g| *g += 1);
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }
}

impl SnapshotReader {
    pub fn load(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }

    /// A receiver that changes on every publish.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }
}

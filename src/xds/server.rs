//! The ADS server: state-of-the-world and delta streams over one gRPC port.
//!
//! Protocol rules kept here (see the xDS protocol's "ACK/NACK and resource type instance
//! version" and "How the client specifies what resources to return"):
//! - a request whose `response_nonce` is not the last nonce sent for its type is stale and
//!   ignored;
//! - ACK and NACK are told apart by `error_detail`, never by version or nonce;
//! - a NACKed version is not sent again on that stream until the snapshot changes
//!   (resending would make the proxy and the server spin);
//! - on a snapshot change, types go out in CDS → EDS → LDS → RDS order;
//! - nothing the proxy already has (by version) is sent again, also after a reconnect.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    Resource as DeltaResource,
};
use envoy_types::pb::google::protobuf::value::Kind;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Status, Streaming};

use super::emit::Variant;
use super::identity::San;
use super::snapshot::{ProxySnapshot, Snapshot, SnapshotReader, TypeResources};
use super::status::{Nack, Registry, StreamHandle};
use super::type_url::TypeUrl;
use super::wire::{Outgoing, Streams, frame, frame_concat};

/// Node metadata key with the address a proxy's listeners bind (`tidegate bootstrap --bind`).
pub const BIND_METADATA_KEY: &str = "tidegate.io/bind";

/// Node metadata key naming the branch whose config a proxy wants (`tidegate bootstrap
/// --ref`): a preview branch `serve --preview-branches` follows. Without it, the followed
/// branch.
pub const REF_METADATA_KEY: &str = "tidegate.io/ref";

/// Responses waiting for a slow proxy. Small: every response is the latest state of its
/// type, so a proxy that does not read holds back the server only by this much.
const SEND_BUFFER: usize = 8;

/// Unanswered delta responses remembered per type (to know what a late NACK rejected).
const MAX_IN_FLIGHT: usize = 64;

#[derive(Clone)]
pub struct Ads {
    snapshots: SnapshotReader,
    registry: Arc<Registry>,
    /// Flips to true on shutdown: open streams end, so a graceful stop does not wait for
    /// proxies that never hang up.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Client certificate SANs given every proxy's status over CSDS (others see their own).
    csds_full_view: Vec<String>,
}

impl Ads {
    pub fn new(
        snapshots: SnapshotReader,
        registry: Arc<Registry>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            snapshots,
            registry,
            stopping,
            csds_full_view: Vec::new(),
        }
    }

    /// Gives clients whose certificate has one of `identities` (DNS names or URIs, as
    /// written in the certificate) every proxy's status over CSDS.
    pub fn with_csds_full_view(mut self, identities: Vec<String>) -> Self {
        self.csds_full_view = identities;
        self
    }
}

/// Serves ADS, the per-type CDS/EDS/LDS/RDS services and CSDS on `listener` until
/// `shutdown` completes; with `tls`, only to
/// clients presenting a certificate the configured CA signed.
pub async fn serve(
    listener: TcpListener,
    ads: Ads,
    tls: Option<TlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let csds = super::csds::Csds::new(ads.snapshots.clone(), ads.registry.clone())
        .with_full_view(ads.csds_full_view.clone());
    use super::wire::{
        AggregatedName, ClusterName, EndpointName, ListenerName, RouteName, XdsService,
    };
    let router = tonic::transport::Server::builder()
        .add_service(XdsService::<AggregatedName, _>::new(ads.clone()))
        .add_service(XdsService::<ClusterName, _>::new(ads.clone()))
        .add_service(XdsService::<EndpointName, _>::new(ads.clone()))
        .add_service(XdsService::<ListenerName, _>::new(ads.clone()))
        .add_service(XdsService::<RouteName, _>::new(ads))
        .add_service(csds.into_service());
    match tls {
        Some(tls) => {
            let accepted = tokio_stream::wrappers::ReceiverStream::new(tls.accept(listener));
            router
                .serve_with_incoming_shutdown(accepted, shutdown)
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
    }
}

pub use super::server_tls::{TlsConfig, TlsFiles};

// === who is asking ===

fn peer_sans<T>(request: &Request<T>) -> Option<Vec<San>> {
    let certs = request.peer_certs()?;
    Some(
        certs
            .first()
            .map(|c| super::identity::sans(c.as_ref()))
            .unwrap_or_default(),
    )
}

/// With TLS, a proxy may only claim the gateway its certificate names.
fn deny(peer: Option<&[San]>, ident: &Identity, handle: &StreamHandle) -> Option<Status> {
    let sans = peer?;
    if super::identity::allowed(&ident.proxy, sans) {
        return None;
    }
    let names = sans
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "certificate [{names}] may not receive the config of {:?}",
        ident.proxy
    );
    tracing::warn!("refused an xDS stream: {message}");
    handle.denied(&message);
    Some(Status::permission_denied(message))
}

struct Identity {
    proxy: String,
    variant: Variant,
    /// The branch it asked for (`None`: the followed one).
    r#ref: Option<String>,
}

impl Identity {
    fn r#ref(&self) -> Option<&str> {
        self.r#ref.as_deref()
    }
}

fn identity(node: &Node) -> Identity {
    let meta_str = |key: &str| {
        node.metadata
            .as_ref()
            .and_then(|m| m.fields.get(key))
            .and_then(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
    };
    Identity {
        proxy: node.cluster.clone(),
        variant: Variant {
            bind: meta_str(BIND_METADATA_KEY).filter(|s| !s.is_empty()),
            // gRPC libraries name themselves in user_agent_name ("gRPC Python", "grpc-go").
            proxyless: node.user_agent_name.to_ascii_lowercase().contains("grpc"),
        },
        r#ref: meta_str(REF_METADATA_KEY).filter(|s| !s.is_empty()),
    }
}

/// Ids listed in the warning for an unknown proxy (a fleet has thousands).
const LIST_KNOWN: usize = 10;

/// Why the proxy is served an empty config, if it is: no gateway name, a ref that is not
/// served, a gateway the served config does not have.
fn identity_warning(ident: &Identity, snapshot: &Snapshot) -> Option<String> {
    let known = snapshot.knows_at(ident.r#ref(), &ident.proxy);
    let at_ref = snapshot.at_ref(ident.r#ref());
    if ident.proxy.is_empty() {
        Some("node.cluster is empty: set it to <gateway>.<namespace> (tidegate bootstrap does); serving an empty config".to_owned())
    } else if let (None, Some(r)) = (at_ref, ident.r#ref()) {
        let mut served: Vec<&str> = snapshot.previews().keys().map(String::as_str).collect();
        if !snapshot.origin.r#ref.is_empty() {
            served.insert(0, &snapshot.origin.r#ref);
        }
        Some(format!(
            "ref {r} is not served: serving an empty config (served: {})",
            if served.is_empty() {
                "no branch by name".to_owned()
            } else {
                served.join(", ")
            }
        ))
    } else if let (Some(snapshot), false) = (at_ref, known) {
        let total = snapshot.proxy_ids().count();
        let mut listed: Vec<&str> = snapshot
            .proxy_ids()
            .take(LIST_KNOWN)
            .map(String::as_str)
            .collect();
        let more = format!("and {} more", total.saturating_sub(LIST_KNOWN));
        if total > LIST_KNOWN {
            listed.push(&more);
        }
        Some(format!(
            "no gateway {} in {}: serving an empty config (known: {})",
            ident.proxy,
            snapshot.origin.revision,
            if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(", ")
            }
        ))
    } else {
        None
    }
}

fn identify(handle: &StreamHandle, node: &Node, ident: &Identity, snapshot: &Snapshot) {
    let known = snapshot.knows_at(ident.r#ref(), &ident.proxy);
    let warning = identity_warning(ident, snapshot);
    // Counted under the branch it is served: the followed one by name (`HEAD` when serve
    // follows HEAD), as the served-commit metrics name it.
    let main = match snapshot.origin.r#ref.as_str() {
        "" => "HEAD",
        r => r,
    };
    handle.identified(ident.r#ref().unwrap_or(main));
    handle.update(|s| {
        s.node_id = node.id.clone();
        s.proxy = ident.proxy.clone();
        s.variant = ident.variant.clone();
        s.r#ref = ident.r#ref.clone();
        s.known = known;
        s.warnings.clear();
        s.warnings.extend(warning.clone());
        s.identity_warning = warning;
    });
}

/// Shows in the status whether the proxy is known and the warnings of the config it is
/// served, once per config: `shown` is the config last shown, so a push of an unchanged
/// proxy (another proxy's change) takes no lock for it.
fn refresh_warnings(
    handle: &StreamHandle,
    shown: &mut Option<Arc<ProxySnapshot>>,
    ident: &Identity,
    snapshot: &Snapshot,
    ps: &Arc<ProxySnapshot>,
) {
    if shown.as_ref().is_some_and(|s| Arc::ptr_eq(s, ps)) {
        return;
    }
    let known = snapshot.knows_at(ident.r#ref(), &ident.proxy);
    // The config changed: the gateway or the ref may have appeared or gone since.
    let warning = identity_warning(ident, snapshot);
    handle.update(|s| {
        s.known = known;
        if s.identity_warning != warning {
            if let Some(old) = s.identity_warning.take() {
                s.warnings.retain(|w| *w != old);
            }
            if let Some(w) = &warning {
                s.warnings.insert(0, w.clone());
            }
            s.identity_warning = warning;
        }
        s.warnings.retain(|w| !w.starts_with("config: "));
        s.warnings
            .extend(ps.warnings.iter().map(|w| format!("config: {w}")));
    });
    *shown = Some(ps.clone());
}

impl Streams for Ads {
    /// A state-of-the-world stream: ADS, or one resource type's own service (the stream
    /// serves whatever types it is asked for either way).
    fn open_sotw(&self, request: Request<Streaming<DiscoveryRequest>>) -> mpsc::Receiver<Outgoing> {
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        let stream = SotwStream {
            peer: peer_sans(&request),
            snapshots: self.snapshots.clone(),
            handle: self.registry.open("sotw"),
            tx,
            ident: None,
            shown: None,
            nonce: 0,
            types: BTreeMap::new(),
        };
        tokio::spawn(until_stopped(
            self.stopping.clone(),
            drive(stream, request.into_inner()),
        ));
        rx
    }

    /// A delta stream (ADS or per type).
    fn open_delta(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> mpsc::Receiver<Outgoing> {
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        let stream = DeltaStream {
            peer: peer_sans(&request),
            snapshots: self.snapshots.clone(),
            handle: self.registry.open("delta"),
            tx,
            ident: None,
            shown: None,
            nonce: 0,
            types: BTreeMap::new(),
        };
        tokio::spawn(until_stopped(
            self.stopping.clone(),
            drive(stream, request.into_inner()),
        ));
        rx
    }
}

/// Runs a stream until it ends or the server stops (dropping the stream closes the RPC).
async fn until_stopped(
    mut stopping: tokio::sync::watch::Receiver<bool>,
    stream: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = stopping.wait_for(|s| *s) => {}
        _ = stream => {}
    }
}

/// What every request goes through first, in both protocols: on the stream's first
/// request, learn who the proxy is and check its certificate (a refusal ends the stream);
/// then the type. `Ok(None)`: an unknown or unsupported type, ignored as the protocol
/// allows (the proxy's other types are unaffected) and noted in the status.
async fn admit(
    ident: &mut Option<Identity>,
    peer: Option<&[San]>,
    handle: &StreamHandle,
    tx: &mpsc::Sender<Outgoing>,
    node: Option<&Node>,
    type_url: &str,
    snapshot: &Snapshot,
) -> Result<Option<TypeUrl>, ()> {
    if ident.is_none() {
        let node = node.cloned().unwrap_or_default();
        let id = identity(&node);
        identify(handle, &node, &id, snapshot);
        if let Some(denied) = deny(peer, &id, handle) {
            let _ = tx.send(Err(Box::new(denied))).await;
            return Err(());
        }
        *ident = Some(id);
    }
    let t = TypeUrl::parse(type_url);
    if t.is_none() {
        handle.update(|s| {
            s.ignored_requests += 1;
            let w = format!("requested unsupported type {type_url:?}: ignored");
            if !s.warnings.contains(&w) {
                s.warnings.push(w);
            }
        });
    }
    Ok(t)
}

/// What the two protocols' streams have in common, so one loop drives both.
trait ProtocolStream: Send {
    type Request: prost::Message + Default + Send + 'static;
    fn snapshots(&self) -> &SnapshotReader;
    fn on_request(&mut self, req: Self::Request) -> impl Future<Output = Result<(), ()>> + Send;
    /// The snapshot changed: push what the proxy lacks, in CDS → EDS → LDS → RDS order.
    fn on_change(&mut self) -> impl Future<Output = Result<(), ()>> + Send;
}

/// Runs a stream: requests as they come, pushes on every snapshot change, until the
/// client goes away (or a send fails).
async fn drive<S: ProtocolStream>(mut stream: S, mut requests: Streaming<S::Request>) {
    let mut changes = stream.snapshots().changes();
    changes.mark_unchanged();
    loop {
        tokio::select! {
            req = requests.message() => match req {
                Ok(Some(req)) => {
                    // Boxed: the handlers' futures are large (responses being built) and
                    // live only while they run; inline, every idle stream would carry
                    // their space (7.8 KB per stream, measured).
                    if Box::pin(stream.on_request(req)).await.is_err() {
                        return;
                    }
                }
                // Client closed or the connection broke: the stream is over.
                Ok(None) | Err(_) => return,
            },
            changed = changes.changed() => {
                if changed.is_err() || Box::pin(stream.on_change()).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl ProtocolStream for SotwStream {
    type Request = DiscoveryRequest;
    fn snapshots(&self) -> &SnapshotReader {
        &self.snapshots
    }
    fn on_request(&mut self, req: DiscoveryRequest) -> impl Future<Output = Result<(), ()>> + Send {
        SotwStream::on_request(self, req)
    }
    fn on_change(&mut self) -> impl Future<Output = Result<(), ()>> + Send {
        self.push_all()
    }
}

impl ProtocolStream for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    fn snapshots(&self) -> &SnapshotReader {
        &self.snapshots
    }
    fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
    ) -> impl Future<Output = Result<(), ()>> + Send {
        DeltaStream::on_request(self, req)
    }
    fn on_change(&mut self) -> impl Future<Output = Result<(), ()>> + Send {
        self.push_all()
    }
}

// === state of the world ===

#[derive(Default)]
struct SotwType {
    /// Names asked for (RDS, EDS); LDS and CDS are always sent whole.
    names: BTreeSet<String>,
    last_nonce: Option<String>,
    /// Version the proxy has or was last sent.
    sent_version: Option<String>,
    /// Names included in the last response (a new name must be answered).
    sent_names: BTreeSet<String>,
    /// Rejected by the proxy: not sent again until the snapshot has another version.
    nacked_version: Option<String>,
}

struct SotwStream {
    /// SANs of the client certificate; `None` on a plaintext connection.
    peer: Option<Vec<San>>,
    snapshots: SnapshotReader,
    handle: StreamHandle,
    tx: mpsc::Sender<Outgoing>,
    ident: Option<Identity>,
    /// The config whose warnings the status shows.
    shown: Option<Arc<ProxySnapshot>>,
    nonce: u64,
    types: BTreeMap<TypeUrl, SotwType>,
}

impl SotwStream {
    fn proxy(&self, snapshot: &Snapshot) -> Arc<ProxySnapshot> {
        match &self.ident {
            Some(i) => snapshot.proxy_at(i.r#ref(), &i.proxy, &i.variant),
            None => snapshot.proxy("", &Variant::default()),
        }
    }

    async fn on_request(&mut self, req: DiscoveryRequest) -> Result<(), ()> {
        let snapshot = self.snapshots.load();
        let Some(t) = admit(
            &mut self.ident,
            self.peer.as_deref(),
            &self.handle,
            &self.tx,
            req.node.as_ref(),
            &req.type_url,
            &snapshot,
        )
        .await?
        else {
            return Ok(());
        };
        let state = self.types.entry(t).or_default();
        if !req.response_nonce.is_empty()
            && state.last_nonce.as_deref() != Some(req.response_nonce.as_str())
        {
            self.handle.update(|s| s.ignored_requests += 1);
            return Ok(());
        }
        if req.response_nonce.is_empty() {
            // First request of this type (or after a reconnect): the proxy tells what it has.
            state.sent_version = Some(req.version_info.clone()).filter(|v| !v.is_empty());
        } else if let Some(err) = &req.error_detail {
            state.nacked_version = state.sent_version.clone();
            let nack = Nack {
                version: state.sent_version.clone().unwrap_or_default(),
                message: err.message.clone(),
            };
            tracing::warn!(proxy = %self.ident.as_ref().map_or("", |i| i.proxy.as_str()), type_url = t.short(), version = %nack.version, "proxy rejected config: {}", nack.message);
            self.handle.nacked(t, nack);
            // The proxy keeps what it had before.
            state.sent_version = Some(req.version_info.clone()).filter(|v| !v.is_empty());
        } else {
            self.handle.acked(t, Some(req.version_info.clone()));
        }
        state.names = req.resource_names.iter().cloned().collect();
        // Every subscribed type, in CDS → EDS → LDS → RDS order, not just `t`: if the
        // snapshot changed since the last push, answering `t` alone first could hand the
        // proxy endpoints or routes for clusters it has not been told about yet.
        for u in TypeUrl::ALL {
            if self.types.contains_key(&u) {
                self.push(u, &snapshot).await?;
            }
        }
        Ok(())
    }

    async fn push_all(&mut self) -> Result<(), ()> {
        let snapshot = self.snapshots.load();
        for t in TypeUrl::ALL {
            if self.types.contains_key(&t) {
                self.push(t, &snapshot).await?;
            }
        }
        Ok(())
    }

    /// Sends type `t` if the proxy lacks its current version (or a newly asked-for name).
    async fn push(&mut self, t: TypeUrl, snapshot: &Snapshot) -> Result<(), ()> {
        let ps = self.proxy(snapshot);
        if let Some(ident) = &self.ident {
            refresh_warnings(&self.handle, &mut self.shown, ident, snapshot, &ps);
        }
        let res = ps.of(t);
        let state = self.types.entry(t).or_default();
        let names: BTreeSet<String> = if t.is_wildcard_type() {
            res.resources.keys().cloned().collect()
        } else {
            state
                .names
                .iter()
                .filter(|n| res.resources.contains_key(*n))
                .cloned()
                .collect()
        };
        let has_version = state.sent_version.as_deref() == Some(res.version.as_str());
        // A first request that already names the current version (a reconnect after a
        // restart, or to another replica) needs no answer: the proxy has exactly this.
        let reconnected = has_version && state.last_nonce.is_none();
        if reconnected {
            state.sent_names = names.clone();
            // The proxy is in sync without a response: say so in the status.
            self.handle.in_sync(t, &res.version);
        }
        let up_to_date = has_version && names.is_subset(&state.sent_names);
        let parked = state.nacked_version.as_deref() == Some(res.version.as_str());
        if up_to_date || parked {
            return Ok(());
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let framed = if names.len() == res.resources.len() {
            // Every resource (always for LDS and CDS, usually for RDS and EDS): the shared
            // encoding plus this stream's nonce.
            let tail = DiscoveryResponse {
                nonce: nonce.clone(),
                ..DiscoveryResponse::default()
            };
            frame_concat(res.full_response(t), &tail)
        } else {
            frame(&DiscoveryResponse {
                version_info: res.version.clone(),
                resources: names.iter().map(|n| res.resources[n].any.clone()).collect(),
                type_url: t.url(),
                nonce: nonce.clone(),
                ..DiscoveryResponse::default()
            })
        };
        state.last_nonce = Some(nonce);
        state.sent_version = Some(res.version.clone());
        state.sent_names = names;
        if state.nacked_version.as_deref() != Some(res.version.as_str()) {
            state.nacked_version = None;
        }
        self.handle.sent(t, &res.version);
        self.tx.send(Ok(framed)).await.map_err(|_| ())
    }
}

// === delta ===

#[derive(Default)]
struct DeltaType {
    wildcard: bool,
    subscribed: BTreeSet<String>,
    /// What the proxy has (or was sent): name → version.
    has: BTreeMap<String, String>,
    /// (name, version) pairs the proxy rejected: not sent again while that is the
    /// version served. Only current versions of wanted resources are kept.
    rejected: BTreeSet<(String, String)>,
    /// Resources of each unacknowledged response, by nonce, to know what a NACK rejected.
    /// A proxy answers responses in order, so an answer forgets older nonces too.
    in_flight: BTreeMap<u64, Vec<(String, String)>>,
    /// Whether the proxy got any response for this type yet.
    answered: bool,
}

impl DeltaType {
    /// A rejection stands for the version rejected while it is served and wanted:
    /// removed, unsubscribed or changed resources leave the bookkeeping.
    fn prune_rejected(&mut self, res: &TypeResources) {
        if self.rejected.is_empty() {
            return;
        }
        let (wildcard, subscribed) = (self.wildcard, &self.subscribed);
        self.rejected.retain(|(name, version)| {
            (wildcard || subscribed.contains(name))
                && res
                    .resources
                    .get(name)
                    .is_some_and(|r| r.version == *version)
        });
    }

    /// Response `nonce` carries `sent`. Bounded even for a proxy that never answers: an
    /// answer to a forgotten nonce counts as stale.
    fn sending(&mut self, nonce: u64, sent: Vec<(String, String)>) {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.in_flight.pop_first();
        }
        self.in_flight.insert(nonce, sent);
    }

    /// The proxy answered response `nonce`: what it carried, if it is ours and
    /// unanswered. Responses before it were answered already, or never will be.
    fn answered_nonce(&mut self, nonce: &str) -> Option<Vec<(String, String)>> {
        let n = nonce.parse::<u64>().ok()?;
        let sent = self.in_flight.remove(&n)?;
        self.in_flight = self.in_flight.split_off(&n);
        Some(sent)
    }
}

struct DeltaStream {
    /// SANs of the client certificate; `None` on a plaintext connection.
    peer: Option<Vec<San>>,
    snapshots: SnapshotReader,
    handle: StreamHandle,
    tx: mpsc::Sender<Outgoing>,
    ident: Option<Identity>,
    /// The config whose warnings the status shows.
    shown: Option<Arc<ProxySnapshot>>,
    nonce: u64,
    types: BTreeMap<TypeUrl, DeltaType>,
}

impl DeltaStream {
    /// Pushes every subscribed type, in order, after a snapshot change.
    async fn push_all(&mut self) -> Result<(), ()> {
        let snapshot = self.snapshots.load();
        for t in TypeUrl::ALL {
            if self.types.contains_key(&t) {
                self.push(t, &snapshot, false).await?;
            }
        }
        Ok(())
    }

    async fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Result<(), ()> {
        let snapshot = self.snapshots.load();
        let Some(t) = admit(
            &mut self.ident,
            self.peer.as_deref(),
            &self.handle,
            &self.tx,
            req.node.as_ref(),
            &req.type_url,
            &snapshot,
        )
        .await?
        else {
            return Ok(());
        };
        let first = !self.types.contains_key(&t);
        let state = self.types.entry(t).or_default();
        if first {
            // Legacy wildcard: a first request naming nothing asks for everything.
            state.wildcard = req.resource_names_subscribe.is_empty()
                || req.resource_names_subscribe.iter().any(|n| n == "*");
            // After a reconnect the proxy says what it has; unchanged resources are not resent.
            state.has = req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        for name in &req.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.subscribed.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.subscribed.remove(name);
                // Forget it, so that subscribing again sends it again.
                state.has.remove(name);
                state.rejected.retain(|(n, _)| n != name);
            }
        }
        if !req.response_nonce.is_empty() {
            match state.answered_nonce(&req.response_nonce) {
                // Not a nonce of ours (or already answered): nothing to acknowledge.
                None => self.handle.update(|s| s.ignored_requests += 1),
                Some(sent) => {
                    let version = snapshot_version(&self.snapshots.load(), self.ident.as_ref(), t);
                    if let Some(err) = &req.error_detail {
                        state.rejected.extend(sent);
                        let nack = Nack {
                            version,
                            message: err.message.clone(),
                        };
                        tracing::warn!(proxy = %self.ident.as_ref().map_or("", |i| i.proxy.as_str()), type_url = t.short(), "proxy rejected config: {}", nack.message);
                        self.handle.nacked(t, nack);
                    } else {
                        self.handle.acked(t, None);
                    }
                }
            }
        }
        let initial = first && req.initial_resource_versions.is_empty();
        // All subscribed types in order, for the same reason as in state-of-the-world.
        for u in TypeUrl::ALL {
            if u != t && u < t && self.types.contains_key(&u) {
                self.push(u, &snapshot, false).await?;
            }
        }
        self.push(t, &snapshot, initial).await?;
        for u in TypeUrl::ALL {
            if u > t && self.types.contains_key(&u) {
                self.push(u, &snapshot, false).await?;
            }
        }
        // A reconnecting proxy that has everything is in sync without a response.
        if first && !initial {
            let res_version = snapshot_version(&snapshot, self.ident.as_ref(), t);
            let state = self.types.entry(t).or_default();
            if !state.answered {
                self.handle.in_sync(t, &res_version);
            }
        }
        Ok(())
    }

    /// Sends what changed for type `t`: new or changed resources, and removals. `always`
    /// answers even when nothing changed (a proxy's first request must get a response).
    async fn push(&mut self, t: TypeUrl, snapshot: &Snapshot, always: bool) -> Result<(), ()> {
        let ps = match &self.ident {
            Some(i) => snapshot.proxy_at(i.r#ref(), &i.proxy, &i.variant),
            None => snapshot.proxy("", &Variant::default()),
        };
        if let Some(ident) = &self.ident {
            refresh_warnings(&self.handle, &mut self.shown, ident, snapshot, &ps);
        }
        let res = ps.of(t);
        let state = self.types.entry(t).or_default();
        state.prune_rejected(res);
        let wanted = |name: &String| state.wildcard || state.subscribed.contains(name);

        let mut resources = Vec::new();
        for (name, r) in res.resources.iter().filter(|(n, _)| wanted(n)) {
            let current = state.has.get(name);
            if current != Some(&r.version)
                && (state.rejected.is_empty()
                    || !state.rejected.contains(&(name.clone(), r.version.clone())))
            {
                resources.push(r.clone());
            }
        }
        let removed: Vec<String> = state
            .has
            .keys()
            .filter(|n| !res.resources.contains_key(*n))
            .cloned()
            .collect();
        let must_answer = always && !state.answered;
        if resources.is_empty() && removed.is_empty() && !must_answer {
            return Ok(());
        }
        for r in &resources {
            state.has.insert(r.name.clone(), r.version.clone());
        }
        for n in &removed {
            state.has.remove(n);
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        state.sending(
            self.nonce,
            resources
                .iter()
                .map(|r| (r.name.clone(), r.version.clone()))
                .collect(),
        );
        state.answered = true;
        let response = DeltaDiscoveryResponse {
            system_version_info: res.version.clone(),
            resources: resources
                .iter()
                .map(|r| DeltaResource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.any.clone()),
                    ..DeltaResource::default()
                })
                .collect(),
            type_url: t.url(),
            removed_resources: removed,
            nonce,
            ..DeltaDiscoveryResponse::default()
        };
        self.handle.sent(t, &res.version);
        self.tx.send(Ok(frame(&response))).await.map_err(|_| ())
    }
}

fn snapshot_version(snapshot: &Snapshot, ident: Option<&Identity>, t: TypeUrl) -> String {
    let ps = match ident {
        Some(i) => snapshot.proxy_at(i.r#ref(), &i.proxy, &i.variant),
        None => snapshot.proxy("", &Variant::default()),
    };
    ps.of(t).version.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(items: &[(&str, &str)]) -> TypeResources {
        TypeResources::for_tests(items)
    }

    fn pairs(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rejections_last_while_the_rejected_version_is_served_and_wanted() {
        let mut t = DeltaType {
            subscribed: ["a", "b", "c"].map(String::from).into(),
            rejected: pairs(&[("a", "1"), ("b", "1"), ("c", "1")]),
            ..DeltaType::default()
        };
        // `a` still served at the rejected version; `b` changed; `c` removed.
        t.prune_rejected(&resources(&[("a", "1"), ("b", "2")]));
        assert_eq!(t.rejected, pairs(&[("a", "1")]));
        // Unsubscribed: forgotten too.
        t.subscribed.remove("a");
        t.prune_rejected(&resources(&[("a", "1"), ("b", "2")]));
        assert!(t.rejected.is_empty());
    }

    #[test]
    fn in_flight_responses_are_forgotten_once_answered_or_superseded() {
        let mut t = DeltaType::default();
        for n in 1..=3 {
            t.sending(n, vec![(format!("r{n}"), "v".into())]);
        }
        // The proxy answers 2: 1 will never be answered.
        assert_eq!(t.answered_nonce("2"), Some(vec![("r2".into(), "v".into())]));
        assert_eq!(t.in_flight.keys().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(t.answered_nonce("1"), None, "superseded");
        assert_eq!(t.answered_nonce("2"), None, "answered already");
        assert_eq!(t.answered_nonce("x"), None, "not ours");
        assert!(t.answered_nonce("3").is_some());
        assert!(t.in_flight.is_empty());
        // A proxy that never answers holds at most the last MAX_IN_FLIGHT.
        for n in 10..10 + 2 * MAX_IN_FLIGHT as u64 {
            t.sending(n, Vec::new());
        }
        assert_eq!(t.in_flight.len(), MAX_IN_FLIGHT);
        assert_eq!(
            t.in_flight.first_key_value().map(|(k, _)| *k),
            Some(10 + MAX_IN_FLIGHT as u64)
        );
    }
}

//! What every connected proxy has been sent, has acknowledged and has rejected: the source
//! of `/status`. Streams write their own entry under its own lock (a push takes no lock
//! other streams wait on); the admin endpoint reads a copy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::emit::Variant;
use super::type_url::TypeUrl;
use crate::metrics::{Metrics, StreamLabel, TypeLabel};
use prometheus_client::metrics::counter::Counter;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Nack {
    /// The version the proxy rejected.
    pub version: String,
    pub message: String,
}

/// Where a proxy stands for one resource type, as `istioctl proxy-status` puts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// Nothing sent yet.
    #[default]
    NotSent,
    /// The proxy acknowledged the last version sent.
    Synced,
    /// Sent, not acknowledged yet.
    Stale,
    /// The proxy rejected the last version sent (it keeps running the one before).
    Nacked,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::NotSent => "NOT SENT",
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::Nacked => "NACKED",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    pub state: SyncState,
    /// Version of the last response sent.
    pub sent_version: Option<String>,
    /// Version the proxy last acknowledged.
    pub acked_version: Option<String>,
    /// Responses sent on this stream (a NACKed version is never resent: this stays put).
    pub responses: u64,
    pub nacks: u64,
    pub last_nack: Option<Nack>,
}

impl TypeStatus {
    fn refresh(&mut self) {
        self.state = match (&self.sent_version, &self.last_nack) {
            (None, _) => SyncState::NotSent,
            (Some(sent), Some(n)) if n.version == *sent => SyncState::Nacked,
            (Some(sent), _) if self.acked_version.as_ref() == Some(sent) => SyncState::Synced,
            _ => SyncState::Stale,
        };
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStatus {
    /// Stream number, unique for the life of the server.
    pub stream: u64,
    /// `node.id` as the proxy sent it.
    pub node_id: String,
    /// `node.cluster`: which gateway the proxy is (`<gateway>.<namespace>`).
    pub proxy: String,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// The branch it asked for (node metadata `tidegate.io/ref`); none: the followed one.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// Whether the served config has a gateway of that name.
    pub known: bool,
    pub warnings: Vec<String>,
    /// Requests ignored: stale nonces, unknown types.
    pub ignored_requests: u64,
    /// By `CDS`, `EDS`, `LDS`, `RDS`.
    pub types: BTreeMap<&'static str, TypeStatus>,
    /// The shape of config this proxy is served (for CSDS).
    #[serde(skip)]
    pub variant: Variant,
    /// Which of `warnings` says why the proxy is served an empty config (replaced when
    /// the served config changes).
    #[serde(skip)]
    pub identity_warning: Option<String>,
}

type Entry = Arc<Mutex<ProxyStatus>>;

pub struct Registry {
    next: AtomicU64,
    /// Locked to open, close and list streams; a stream updates its entry alone.
    streams: Mutex<BTreeMap<u64, Entry>>,
    /// The latest refused streams (certificate did not match the claimed gateway).
    denied: Mutex<std::collections::VecDeque<String>>,
    pub metrics: Arc<Metrics>,
    /// The `pushes` and `nacks` counters by [`TypeUrl::index`], looked up once each: the
    /// family's lookup takes its lock and builds a label on every call. Created on first
    /// use, so `/metrics` lists only the types pushed.
    pushes: [OnceLock<Counter>; 5],
    nacks: [OnceLock<Counter>; 5],
}

impl Default for Registry {
    fn default() -> Self {
        Self::build(Arc::default())
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn with_metrics(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self::build(metrics))
    }

    fn build(metrics: Arc<Metrics>) -> Self {
        Self {
            next: AtomicU64::new(0),
            streams: Mutex::default(),
            denied: Mutex::default(),
            metrics,
            pushes: Default::default(),
            nacks: Default::default(),
        }
    }

    fn count(&self, nack: bool, t: TypeUrl) {
        let (cell, family) = if nack {
            (&self.nacks[t.index()], &self.metrics.nacks)
        } else {
            (&self.pushes[t.index()], &self.metrics.pushes)
        };
        cell.get_or_init(|| {
            family
                .get_or_create(&TypeLabel {
                    r#type: t.short().into(),
                })
                .clone()
        })
        .inc();
    }

    /// Registers a new stream; its entry disappears when the handle is dropped.
    pub fn open(self: &Arc<Self>, protocol: &'static str) -> StreamHandle {
        self.connected(protocol, "").inc();
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let status = Arc::new(Mutex::new(ProxyStatus {
            stream: id,
            protocol,
            ..ProxyStatus::default()
        }));
        self.lock().insert(id, status.clone());
        StreamHandle {
            id,
            protocol,
            counted_ref: Mutex::default(),
            status,
            registry: self.clone(),
        }
    }

    /// The latest refused streams, newest first.
    pub fn denied(&self) -> Vec<String> {
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// A copy of every stream's status, by stream number.
    pub fn snapshot(&self) -> Vec<ProxyStatus> {
        let entries: Vec<Entry> = self.lock().values().cloned().collect();
        // Copied without holding the map's lock: streams opening meanwhile do not wait.
        entries.iter().map(|e| lock(e).clone()).collect()
    }

    fn connected(&self, protocol: &str, r#ref: &str) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .connected
            .get_or_create(&StreamLabel {
                protocol: protocol.into(),
                r#ref: r#ref.into(),
            })
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic elsewhere must not take the status page down with it.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn lock(entry: &Entry) -> std::sync::MutexGuard<'_, ProxyStatus> {
    entry.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct StreamHandle {
    id: u64,
    protocol: &'static str,
    /// The branch the stream is counted under in `connected_proxies` (empty until known).
    counted_ref: Mutex<String>,
    /// This stream's entry: updates lock it alone.
    status: Entry,
    registry: Arc<Registry>,
}

impl StreamHandle {
    pub fn update(&self, f: impl FnOnce(&mut ProxyStatus)) {
        f(&mut lock(&self.status));
    }

    pub fn update_type(&self, t: TypeUrl, f: impl FnOnce(&mut TypeStatus)) {
        self.update(|s| {
            let ts = s.types.entry(t.short()).or_default();
            f(ts);
            ts.refresh();
        });
    }

    /// The proxy said which branch it is served (on its first request): it is counted
    /// under that branch from now on.
    pub fn identified(&self, r#ref: &str) {
        let mut counted = self.counted_ref.lock().unwrap_or_else(|e| e.into_inner());
        if *counted != r#ref {
            self.registry.connected(self.protocol, &counted).dec();
            self.registry.connected(self.protocol, r#ref).inc();
            *counted = r#ref.to_owned();
        }
    }

    /// A response carrying `version` went out.
    pub fn sent(&self, t: TypeUrl, version: &str) {
        self.registry.count(false, t);
        self.update_type(t, |s| {
            s.sent_version = Some(version.to_owned());
            s.responses += 1;
        });
    }

    /// The proxy acknowledged `version` (`None`: the last one sent).
    pub fn acked(&self, t: TypeUrl, version: Option<String>) {
        self.update_type(t, |s| {
            s.acked_version = version.or_else(|| s.sent_version.clone())
        });
    }

    /// The stream was refused: remember why (a few, for /status) and count it.
    pub fn denied(&self, message: &str) {
        self.registry.metrics.denied.inc();
        let mut d = self
            .registry
            .denied
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        d.push_front(format!("{} ({}): {message}", self.id, self.protocol));
        d.truncate(20);
    }

    /// The proxy already has `version` (it said so on reconnecting): nothing was sent.
    pub fn in_sync(&self, t: TypeUrl, version: &str) {
        self.update_type(t, |s| {
            s.sent_version = Some(version.to_owned());
            s.acked_version = Some(version.to_owned());
        });
    }

    pub fn nacked(&self, t: TypeUrl, nack: Nack) {
        self.registry.count(true, t);
        self.update_type(t, |s| {
            s.nacks += 1;
            s.last_nack = Some(nack);
        });
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        let counted = self.counted_ref.lock().unwrap_or_else(|e| e.into_inner());
        self.registry.connected(self.protocol, &counted).dec();
        self.registry.lock().remove(&self.id);
    }
}

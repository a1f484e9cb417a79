//! What every connected proxy has been sent, has acknowledged and has rejected: the source
//! of `/status`. Streams write their own entry; the admin endpoint reads a copy.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::type_url::TypeUrl;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Nack {
    /// The version the proxy rejected.
    pub version: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// Version of the last response sent.
    pub sent_version: Option<String>,
    /// Version the proxy last acknowledged.
    pub acked_version: Option<String>,
    /// Responses sent on this stream (a NACKed version is never resent: this stays put).
    pub responses: u64,
    pub nacks: u64,
    pub last_nack: Option<Nack>,
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
    /// Whether the served config has a gateway of that name.
    pub known: bool,
    pub warnings: Vec<String>,
    /// Requests ignored: stale nonces, unknown types.
    pub ignored_requests: u64,
    /// By `CDS`, `EDS`, `LDS`, `RDS`.
    pub types: BTreeMap<&'static str, TypeStatus>,
}

#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a new stream; its entry disappears when the handle is dropped.
    pub fn open(self: &Arc<Self>, protocol: &'static str) -> StreamHandle {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let status = ProxyStatus {
            stream: id,
            protocol,
            ..ProxyStatus::default()
        };
        self.lock().insert(id, status);
        StreamHandle {
            id,
            registry: self.clone(),
        }
    }

    /// A copy of every stream's status, by stream number.
    pub fn snapshot(&self) -> Vec<ProxyStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        // A panic elsewhere must not take the status page down with it.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct StreamHandle {
    id: u64,
    registry: Arc<Registry>,
}

impl StreamHandle {
    pub fn update(&self, f: impl FnOnce(&mut ProxyStatus)) {
        if let Some(s) = self.registry.lock().get_mut(&self.id) {
            f(s);
        }
    }

    pub fn update_type(&self, t: TypeUrl, f: impl FnOnce(&mut TypeStatus)) {
        self.update(|s| f(s.types.entry(t.short()).or_default()));
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

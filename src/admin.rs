//! The admin endpoint (loopback by default): `/healthz`, `/readyz`, `/status`.

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::xds::snapshot::{Origin, SnapshotReader};
use crate::xds::status::{ProxyStatus, Registry};

/// A commit that was not served, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub revision: String,
    pub errors: Vec<String>,
}

pub struct AdminState {
    pub snapshots: SnapshotReader,
    pub registry: Arc<Registry>,
    /// Newest first.
    pub rejected: Mutex<Vec<Rejected>>,
    /// Why the repository cannot be read right now (unreachable remote, vanished branch).
    pub source_error: Mutex<Option<String>>,
    /// Set once a first config is served.
    pub ready: std::sync::atomic::AtomicBool,
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Serialize)]
pub struct StatusPage {
    pub served: Origin,
    /// Proxy ids (`<gateway>.<namespace>`) the served config has.
    pub gateways: Vec<String>,
    pub rejected: Vec<Rejected>,
    pub source_error: Option<String>,
    pub proxies: Vec<ProxyStatus>,
    /// Recently refused xDS streams (client certificate vs. claimed gateway).
    pub denied: Vec<String>,
    /// What `serve --certs` loaded (names and certificate facts, never keys) and the files
    /// it could not use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certs: Option<crate::xds::certs::CertsStatus>,
    /// Gateway API status of the served commit: Gateway, listener and route conditions.
    #[serde(rename = "gatewayApi")]
    pub gateway_api: crate::xds::translate::conditions::GatewayApiStatus,
}

async fn status(State(s): State<Arc<AdminState>>) -> Json<StatusPage> {
    let snapshot = s.snapshots.load();
    Json(StatusPage {
        served: snapshot.origin.clone(),
        gateways: snapshot.proxy_ids().cloned().collect(),
        rejected: s.rejected.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        source_error: s
            .source_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        proxies: s.registry.snapshot(),
        denied: s.registry.denied(),
        certs: snapshot.inputs().certs.as_ref().map(|c| c.status()),
        gateway_api: (*snapshot.gateway_api()).clone(),
    })
}

async fn readyz(State(s): State<Arc<AdminState>>) -> (StatusCode, &'static str) {
    if s.ready.load(std::sync::atomic::Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no config served yet\n")
    }
}

async fn metrics(
    State(s): State<Arc<AdminState>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

pub fn router(state: Arc<AdminState>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves the admin endpoint on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

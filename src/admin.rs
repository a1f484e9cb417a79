//! The admin endpoint (loopback by default): `/healthz`, `/readyz`, `/status`, `/metrics`,
//! `/csds`.

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::xds::snapshot::{Origin, Snapshot, SnapshotReader};
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
    /// The followed branch's head as last seen (served, rejected or being read).
    pub head: Mutex<Option<String>>,
    /// Set once a first config is served.
    pub ready: std::sync::atomic::AtomicBool,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The preview branches `serve --preview-branches` matched (served or not), by name.
    pub previews: Mutex<std::collections::BTreeMap<String, BranchStatus>>,
}

/// Where a preview branch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreviewState {
    /// Its proxies are served its latest valid commit.
    Serving,
    /// No valid commit of it yet: its proxies get an empty config.
    Waiting,
    /// The branch was deleted: its proxies keep its last config until the grace period
    /// ends, then get an empty one.
    Gone,
    /// Matched, but over `--max-previews`: not built, its proxies get an empty config.
    NotServed,
}

/// A branch as `serve` sees it (the proxies and the served commit are added when
/// `/status` is asked for).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BranchStatus {
    /// `serving` or `waiting` for the followed branch; see [`PreviewState`] for previews.
    pub state: PreviewState,
    /// The commit the branch points at (the last one seen, once gone).
    pub head: Option<String>,
    /// Why it is gone or not served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its rejected commits, newest first.
    pub rejected: Vec<Rejected>,
    /// Why its head cannot be read right now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_error: Option<String>,
}

/// One branch served (or matched) in `/status`'s `refs`: the followed branch first, then the
/// previews by name.
#[derive(Clone, Debug, Serialize)]
pub struct RefStatus {
    #[serde(rename = "ref")]
    pub r#ref: String,
    /// False for the followed branch (`--branch`).
    pub preview: bool,
    /// The commit its proxies are served; none before its first valid commit.
    pub served: Option<String>,
    /// Proxies connected that are served this branch.
    pub proxies: usize,
    #[serde(flatten)]
    pub branch: BranchStatus,
}

#[derive(Serialize)]
pub struct StatusPage {
    pub served: Origin,
    /// Proxy ids (`<gateway>.<namespace>`) the served config has.
    pub gateways: Vec<String>,
    pub rejected: Vec<Rejected>,
    pub source_error: Option<String>,
    pub proxies: Vec<ProxyStatus>,
    /// The branches served: the followed one, then the previews (`serve
    /// --preview-branches`), each with its served commit, rejected commits and proxies.
    pub refs: Vec<RefStatus>,
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

/// The branches served, with their proxies counted from `proxies`.
fn refs(s: &AdminState, snapshot: &Snapshot, proxies: &[ProxyStatus]) -> Vec<RefStatus> {
    let main = &snapshot.origin.r#ref;
    let count = |r: Option<&str>| {
        proxies
            .iter()
            .filter(|p| match (p.r#ref.as_deref(), r) {
                (None, None) => true,
                (Some(pr), None) => pr == main,
                (Some(pr), Some(r)) => pr == r,
                (None, Some(_)) => false,
            })
            .count()
    };
    let ready = s.ready.load(std::sync::atomic::Ordering::Acquire);
    let mut out = vec![RefStatus {
        r#ref: if main.is_empty() {
            "HEAD".into()
        } else {
            main.clone()
        },
        preview: false,
        served: ready.then(|| snapshot.origin.revision.clone()),
        proxies: count(None),
        branch: BranchStatus {
            state: if ready {
                PreviewState::Serving
            } else {
                PreviewState::Waiting
            },
            head: lock(&s.head).clone(),
            reason: None,
            rejected: lock(&s.rejected).clone(),
            source_error: lock(&s.source_error).clone(),
        },
    }];
    for (name, p) in lock(&s.previews).iter() {
        out.push(RefStatus {
            r#ref: name.clone(),
            preview: true,
            served: snapshot
                .previews()
                .get(name)
                .map(|p| p.origin.revision.clone()),
            proxies: count(Some(name)),
            branch: p.clone(),
        });
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the status page down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn status(State(s): State<Arc<AdminState>>) -> Json<StatusPage> {
    let snapshot = s.snapshots.load();
    let proxies = s.registry.snapshot();
    Json(StatusPage {
        refs: refs(&s, &snapshot, &proxies),
        served: snapshot.origin.clone(),
        gateways: snapshot.proxy_ids().cloned().collect(),
        rejected: s.rejected.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        source_error: s
            .source_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        proxies,
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

/// `/csds`: every connected proxy's CSDS status. JSON by default (per proxy, each resource
/// with its version and sync state; no contents); `?format=proto` gives the
/// `ClientStatusResponse` itself, contents included (private keys redacted), as the CSDS
/// service would to a client with the whole view.
async fn csds(
    State(s): State<Arc<AdminState>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use envoy_types::pb::envoy::service::status::v3::{
        ClientConfigStatus, ClientStatusRequest, ConfigStatus,
    };
    use prost::Message;
    let proto = q.get("format").map(String::as_str) == Some("proto");
    let csds = crate::xds::csds::Csds::new(s.snapshots.clone(), s.registry.clone());
    let request = ClientStatusRequest {
        exclude_resource_contents: !proto,
        ..ClientStatusRequest::default()
    };
    let response = csds.status(&request, &crate::xds::csds::Viewer::All);
    if proto {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response();
    }
    let proxies: Vec<serde_json::Value> = response
        .config
        .iter()
        .map(|c| {
            let node = c.node.clone().unwrap_or_default();
            let resources: Vec<serde_json::Value> = c
                .generic_xds_configs
                .iter()
                .map(|g| {
                    let config = ConfigStatus::try_from(g.config_status)
                        .map_or("UNKNOWN", |c| c.as_str_name());
                    let client = ClientConfigStatus::try_from(g.client_status)
                        .map_or("UNKNOWN", |c| c.as_str_name());
                    serde_json::json!({
                        "type_url": g.type_url,
                        "name": g.name,
                        "version": g.version_info,
                        "config_status": config,
                        "client_status": client,
                        "error": g.error_state.as_ref().map(|e| e.details.clone()),
                    })
                })
                .collect();
            serde_json::json!({"node_id": node.id, "proxy": node.cluster, "resources": resources})
        })
        .collect();
    Json(serde_json::json!({ "proxies": proxies })).into_response()
}

pub fn router(state: Arc<AdminState>) -> axum::Router {
    axum::Router::new()
        .route("/csds", get(csds))
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

//! tidegate: ingress intents committed to Git become Kubernetes manifests and Envoy xDS.
//!
//! # Layout
//!
//! ```text
//! gitsync  read the config tree at a commit (never the work tree)
//! intent   decode + validate intents (every problem, with file:line:column), expand them
//! model    the Kubernetes objects a commit stands for: the one model in the middle
//! render   model → manifests (one directory per namespace, kustomize-ready, deterministic)
//! xds      model → per-proxy plans → encoded snapshots → ADS (SotW and delta)
//! admin    /healthz, /readyz, /status
//! app      `serve`: the wiring of the above
//! ```

pub mod admin;
pub mod app;
pub mod cli;
pub mod gitsync;
pub mod intent;
pub mod metrics;
pub mod model;
pub mod render;
pub mod xds;

#[cfg(any(test, feature = "testing"))]
pub mod test_helpers;

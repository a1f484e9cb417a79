//! tidegate: ingress intents committed to Git become Kubernetes manifests and Envoy xDS.
//!
//! # Layout
//!
//! ```text
//! model    the Kubernetes objects a commit stands for: the one model in the middle
//! gitsync  read the config tree at a commit (never the work tree); follow a repository
//! intent   decode + validate intents (every problem, with file:line:column), expand them
//! render   model → manifests (one directory per namespace, kustomize-ready, deterministic)
//! xds      model → per-proxy plans (translate) → Envoy resources (emit) → encoded
//!          snapshots → ADS (SotW and delta)
//! admin    /healthz, /readyz, /status
//! metrics  Prometheus metrics
//! app      `serve`: the wiring of the above
//! review   `explain` and `diff`: a revision through the whole pipeline, offline
//! webhook  `serve --webhook`: authenticated push events trigger the sync loop
//! cli      the command line
//! ```
//!
//! Layers import downward only (`model` ← `gitsync` ← `intent`; `model` ← `render`;
//! `model` ← `xds`; `app` and `cli` on top) and no file imports a file that imports it
//! back: `tests/layers.rs` checks it. ARCHITECTURE.md has the data flow.

pub mod admin;
pub mod app;
pub mod cli;
pub mod gitsync;
pub mod intent;
pub mod metrics;
pub mod model;
pub mod render;
pub mod review;
pub mod webhook;
pub mod xds;

#[cfg(any(test, feature = "testing"))]
pub mod test_helpers;

//! xDS: the model translated for Envoy, and served over ADS (state-of-the-world and delta).
//!
//! ```text
//! model ─► translate (frontends) ─► plan per proxy ─► emit (Envoy resources, with the
//!           endpoints and certificates files) ─► Snapshot (encoded once) ─► ArcSwap ─► ADS streams
//! ```

pub mod bootstrap;
pub mod certs;
pub mod csds;
pub mod emit;
pub mod endpoints;
pub mod explain;
pub mod identity;
pub mod inputs;
pub mod plan;
pub mod server;
pub mod server_tls;
pub mod snapshot;
pub mod status;
pub mod translate;
pub mod type_url;
pub mod wire;

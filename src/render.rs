//! Model → manifests: the GitOps output.
//!
//! Layout (one directory per namespace, each a kustomization, like the rendered-manifests
//! pattern Argo CD's hydrator and Kargo use):
//!
//! ```text
//! kustomization.yaml          lists the namespace directories
//! README.md                   which commit produced this, and how to check it
//! <namespace>/kustomization.yaml
//! <namespace>/README.md
//! <namespace>/<kind>-<name>.yaml
//! ```
//!
//! Bytes are a pure function of the commit: no timestamps, sorted objects, sorted maps.

pub mod error;
pub mod manifests;
pub mod output;

pub use error::{Error, Result};
pub use manifests::{
    Cache, PROVENANCE, README_MARKER, Rendered, YAML_MARKER, render, render_cached,
};
pub use output::write_dir;

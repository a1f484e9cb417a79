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

pub mod manifests;
pub mod output;

pub use manifests::{Rendered, render};
pub use output::write_dir;

/// First line of every YAML file tidegate writes. A later render deletes stale files only
/// if they start with it, so files a person put in the output directory are never removed.
pub const YAML_MARKER: &str =
    "# Rendered by tidegate. Do not edit: the next render replaces this file.";
/// First line of every README tidegate writes (same purpose as [`YAML_MARKER`]).
pub const README_MARKER: &str =
    "<!-- Rendered by tidegate. Do not edit: the next render replaces this file. -->";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object could not be serialized (a bug, not bad input).
    #[error("serializing {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_saphyr::SerializeError,
    },
    /// The output directory could not be written.
    #[error("writing {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

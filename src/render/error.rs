//! Render errors (their own file, so the render modules need not import `render.rs`).

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

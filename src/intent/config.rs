//! What a validated commit says: its own file, so the stages below `intent.rs` (expansion)
//! can name it without importing the module that loads it.

use super::resources;
use super::spec::{Intent, Settings};
use crate::gitsync::Source;
use crate::model::summary::{IntentSummary, Provenance, Summary};

/// A validated config: what a commit says.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub settings: Settings,
    /// Sorted by namespace, then name.
    pub intents: Vec<std::sync::Arc<Intent>>,
    /// Plain objects from `resources/`, in file order (path, then position).
    pub resources: Vec<resources::Resource>,
    /// Things worth telling the user that do not reject the commit.
    pub warnings: Vec<String>,
}

impl Config {
    /// What a render says of this config besides its objects, `source` being where the
    /// config was read from.
    pub fn summary(&self, source: &Source) -> Summary<'_> {
        let provenance = match source {
            Source::Commit {
                sha,
                subject,
                prefix,
                ..
            } => Provenance::Commit {
                sha: sha.clone(),
                subject: subject.clone(),
                prefix: prefix.clone(),
            },
            Source::Directory(_) => Provenance::Directory,
        };
        let intents = self
            .intents
            .iter()
            .map(|i| IntentSummary {
                namespace: &i.namespace,
                name: &i.name,
                mode: i.mode.value,
                host: i.hostnames.first().map_or("", |h| h.value.as_str()),
                gateway_namespace: i.gateway_namespace(),
                gateway: &i.gateway.name,
                port: i.gateway.port,
                protocol: i.gateway.protocol,
                passthrough: i.gateway.passthrough(),
                exposure: i.gateway.exposure.value,
                rules: &i.rules,
            })
            .collect();
        Summary {
            provenance,
            intents,
        }
    }
}

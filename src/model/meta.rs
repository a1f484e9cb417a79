use std::collections::BTreeMap;

use serde::Serialize;

/// The subset of Kubernetes `ObjectMeta` that a rendered manifest carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// When the object appeared: the first-parent position (from the root commit) of the
    /// commit since which it has been in the repository, Git's stand-in for
    /// `creationTimestamp`, which the spec uses to let the oldest of competing routes and
    /// ListenerSets win (`gitsync::history`). Not written to manifests: an API server sets
    /// its own.
    #[serde(skip)]
    pub created: Option<i64>,
    /// How many versions of its spec the object has had since it appeared (Git's stand-in
    /// for `metadata.generation`: 1, plus one per commit that changed the spec), for
    /// status' `observedGeneration`. Not written to manifests either.
    #[serde(skip)]
    pub generation: Option<i64>,
}

impl ObjectMeta {
    pub fn namespaced(name: &str, namespace: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            ..Self::default()
        }
    }
}

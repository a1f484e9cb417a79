//! Core Kubernetes kinds (`v1`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::meta::ObjectMeta;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
}

impl Namespace {
    pub fn new(metadata: ObjectMeta) -> Self {
        Self {
            api_version: "v1",
            kind: "Namespace",
            metadata,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub type_: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    pub protocol: &'static str,
}

/// A `ConfigMap`: tidegate reads the CA bundles BackendTLSPolicies and Gateways'
/// client-certificate validation name (`data["ca.crt"]`, PEM). A CA bundle is public, so it
/// lives in Git; the keys that go with certificates stay in Secrets (`serve --certs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

impl ConfigMap {
    /// The key a CA bundle is read from.
    pub const CA_KEY: &'static str = "ca.crt";
}

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

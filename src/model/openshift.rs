//! OpenShift `route.openshift.io/v1` Route.

use serde::Serialize;

use super::meta::ObjectMeta;

pub const API_VERSION: &str = "route.openshift.io/v1";

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: RouteSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    pub host: String,
    pub port: RoutePort,
    pub to: RouteTarget,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    pub wildcard_policy: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutePort {
    /// A Service port name (`http2`) or number, as the router looks it up in the endpoints.
    pub target_port: TargetPort,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TargetPort {
    Name(String),
    Number(u16),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTarget {
    pub kind: &'static str,
    pub name: String,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    pub termination: &'static str,
    pub insecure_edge_termination_policy: &'static str,
}

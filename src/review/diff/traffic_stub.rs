use serde::Serialize;

use crate::review::Loaded;
use crate::xds::endpoints::Endpoints;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficChange {
    pub proxy: String,
    pub request: Request,
    pub base: Answer,
    pub head: Answer,
}
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<String>,
}
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    pub status: u16,
    pub backend: Option<Backend>,
    pub backends: Vec<Backend>,
    pub route: Option<String>,
    pub redirect: Option<String>,
    pub reason: String,
}
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backend {
    pub name: String,
    pub namespace: String,
    pub port: u16,
    pub weight: Option<u32>,
}
pub fn compare(
    _: Option<&Loaded>,
    _: &Loaded,
    _: Option<&Endpoints>,
    _: &dyn Fn(&str) -> bool,
) -> Vec<TrafficChange> {
    Vec::new()
}

//! Traffic: for every route match of base ∪ head, a representative request, answered by
//! both revisions with the evaluator `explain` uses; the requests answered differently.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::review::Loaded;
use crate::xds::endpoints::Endpoints;
use crate::xds::explain::{self, Share};
use crate::xds::plan::ProxyPlan;

/// One request whose answer changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficChange {
    /// The proxy's node id `name.namespace`.
    pub proxy: String,
    pub request: Request,
    pub base: Answer,
    pub head: Answer,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Request {
    pub method: String,
    pub url: String,
    /// `Name: value` each, as `explain -H` takes them.
    pub headers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    /// The HTTP status the proxy answers (200 when it forwards); 0: no such proxy.
    pub status: u16,
    /// The backend taking the largest share, or none.
    pub backend: Option<Backend>,
    /// Every backend with its weight.
    pub backends: Vec<Backend>,
    /// The plan route that matched.
    pub route: Option<String>,
    pub redirect: Option<String>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub name: String,
    pub namespace: String,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl Answer {
    fn none() -> Self {
        Answer {
            status: 0,
            backend: None,
            backends: Vec::new(),
            route: None,
            redirect: None,
            reason: "no such proxy".into(),
        }
    }

    fn of(a: &explain::Answer) -> Self {
        let backend = |s: &Share, weight: Option<u32>| Backend {
            name: s.backend.service.clone(),
            namespace: s.backend.namespace.clone(),
            port: s.backend.port,
            weight,
        };
        // The largest share; the first of equals (the order of the rule).
        let top = a
            .backends
            .iter()
            .fold(None::<&Share>, |best, s| match best {
                Some(b) if b.weight >= s.weight => Some(b),
                _ => Some(s),
            });
        Answer {
            status: a.status,
            backend: top.map(|s| backend(s, None)),
            backends: a
                .backends
                .iter()
                .map(|s| backend(s, Some(s.weight)))
                .collect(),
            route: a.route.as_ref().map(|r| r.name.clone()),
            redirect: a.redirect.clone(),
            reason: a.reason.clone(),
        }
    }

    /// What a reviewer compares: the status, where requests go, where they are sent back.
    fn outcome(&self) -> (u16, &[Backend], Option<&String>) {
        (self.status, &self.backends, self.redirect.as_ref())
    }
}

/// The requests answered differently by the wanted proxies of base and head.
pub fn compare(
    base: Option<&Loaded>,
    head: &Loaded,
    endpoints: Option<&Endpoints>,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<TrafficChange> {
    let empty = BTreeMap::new();
    let before = base.map_or(&empty, |b| &b.plans);
    let ids: BTreeSet<&String> = before.keys().chain(head.plans.keys()).collect();
    let mut out = Vec::new();
    for id in ids.into_iter().filter(|id| wanted(id)) {
        let (b, h) = (before.get(id), head.plans.get(id));
        // The same plan answers every request the same way.
        if let (Some(b), Some(h)) = (b, h)
            && (std::sync::Arc::ptr_eq(b, h) || **b == **h)
        {
            continue;
        }
        out.extend(one(id, b.map(|p| &**p), h.map(|p| &**p), endpoints));
    }
    out
}

fn one(
    id: &str,
    base: Option<&ProxyPlan>,
    head: Option<&ProxyPlan>,
    endpoints: Option<&Endpoints>,
) -> Vec<TrafficChange> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let probes = base
        .into_iter()
        .chain(head)
        .flat_map(explain::probes)
        .collect::<Vec<_>>();
    for req in probes {
        let shown = Request {
            method: req.method.clone(),
            url: req.url(),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
        };
        if !seen.insert(shown.clone()) {
            continue;
        }
        let answer = |p: Option<&ProxyPlan>| {
            p.map_or_else(Answer::none, |p| {
                Answer::of(&explain::evaluate(p, &req, endpoints))
            })
        };
        let (a, b) = (answer(base), answer(head));
        if a.outcome() != b.outcome() {
            out.push(TrafficChange {
                proxy: id.to_owned(),
                request: shown,
                base: a,
                head: b,
            });
        }
    }
    out
}

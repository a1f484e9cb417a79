//! Per proxy: the xDS resources that differ (by name and encoded bytes, what Envoy would be
//! sent) and the routes that differ, as readable lines made from the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use prost::Message;
use serde::Serialize;

use crate::review::Loaded;
use crate::xds::emit::{self, Variant};
use crate::xds::endpoints::Endpoints;
use crate::xds::explain;
use crate::xds::plan::{
    Action, L4Forward, ListenerKind, ProxyPlan, Redirect, RefusedReason, RoutePlan, Target,
};

/// What changes for one proxy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyChange {
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    pub listeners: Names,
    pub routes: Names,
    pub clusters: Names,
    pub endpoints: Names,
    pub secrets: Names,
    /// Routes as `host  match → backend (weight) [filters]`, those only in the base
    /// (`removed`) and only in the head (`added`).
    pub route_lines: Lines,
}

/// Resource names of one type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Names {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Names {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Lines {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl ProxyChange {
    /// The resource types with changes, in the order Envoy receives them.
    pub fn kinds(&self) -> [(&'static str, &Names); 5] {
        [
            ("listeners", &self.listeners),
            ("routes", &self.routes),
            ("clusters", &self.clusters),
            ("endpoints", &self.endpoints),
            ("secrets", &self.secrets),
        ]
    }

    fn is_empty(&self) -> bool {
        self.kinds().iter().all(|(_, r)| r.is_empty())
            && self.route_lines.added.is_empty()
            && self.route_lines.removed.is_empty()
    }
}

/// Every wanted proxy of base ∪ head whose resources or routes differ.
pub fn compare(
    base: Option<&Loaded>,
    head: &Loaded,
    endpoints: Option<&Endpoints>,
    wanted: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, ProxyChange> {
    let empty = BTreeMap::new();
    let before = base.map_or(&empty, |b| &b.plans);
    let ids: BTreeSet<&String> = before.keys().chain(head.plans.keys()).collect();
    let mut out = BTreeMap::new();
    for id in ids.into_iter().filter(|id| wanted(id)) {
        let (b, h) = (before.get(id), head.plans.get(id));
        // Unchanged proxies share their plan with the base (the plan cache), or an equal
        // one: the same plan emits the same resources, so there is nothing to encode.
        if let (Some(b), Some(h)) = (b, h)
            && (std::sync::Arc::ptr_eq(b, h) || **b == **h)
        {
            continue;
        }
        let change = one(b.map(|p| &**p), h.map(|p| &**p), endpoints);
        if !change.is_empty() {
            out.insert(id.clone(), change);
        }
    }
    out
}

fn one(base: Option<&ProxyPlan>, head: Option<&ProxyPlan>, eps: Option<&Endpoints>) -> ProxyChange {
    let variant = Variant::default();
    let emit = |p: Option<&ProxyPlan>| {
        p.map(|p| emit::resources(p, eps, None, &variant).0)
            .unwrap_or_default()
    };
    let (b, h) = (emit(base), emit(head));
    let lines = |p: Option<&ProxyPlan>| p.map(route_lines).unwrap_or_default();
    let (lb, lh) = (lines(base), lines(head));
    let (sb, sh): (BTreeSet<&String>, BTreeSet<&String>) =
        (lb.iter().collect(), lh.iter().collect());
    ProxyChange {
        change: match (base, head) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        },
        listeners: names(&b.listeners, &h.listeners),
        routes: names(&b.routes, &h.routes),
        clusters: names(&b.clusters, &h.clusters),
        endpoints: names(&b.endpoints, &h.endpoints),
        secrets: names(&b.secrets, &h.secrets),
        route_lines: Lines {
            added: lh.iter().filter(|l| !sb.contains(l)).cloned().collect(),
            removed: lb.iter().filter(|l| !sh.contains(l)).cloned().collect(),
        },
    }
}

/// Names only on one side, and names on both whose encoded message differs.
fn names<M: Message>(base: &BTreeMap<String, M>, head: &BTreeMap<String, M>) -> Names {
    let mut r = Names::default();
    for (name, m) in head {
        match base.get(name) {
            None => r.added.push(name.clone()),
            Some(old) if old.encode_to_vec() != m.encode_to_vec() => r.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    r.removed = base
        .keys()
        .filter(|n| !head.contains_key(*n))
        .cloned()
        .collect();
    r
}

/// Every route of `plan`, in match order per virtual host:
/// `host:port  match → backend (weight) [filters]`; connection routes as
/// `tls://sni:port → backend (weight)` (`passthrough` or `terminated`), `tcp://*:port → …`,
/// `udp://*:port → …`.
pub fn route_lines(plan: &ProxyPlan) -> Vec<String> {
    let mut out = Vec::new();
    for (port, l) in &plan.listeners {
        match &l.kind {
            ListenerKind::Http(_) => {}
            ListenerKind::Tls(t) => out.extend(t.chains.iter().map(|c| {
                let how = if c.terminate.is_some() {
                    "terminated"
                } else {
                    "passthrough"
                };
                let names = if c.server_names.is_empty() {
                    "*".to_owned()
                } else {
                    c.server_names.join(",")
                };
                format!("tls://{names}:{port}  {how} → {}", l4_targets(&c.forward))
            })),
            ListenerKind::Tcp(f) => out.push(format!("tcp://*:{port}  → {}", l4_targets(f))),
            ListenerKind::Udp(f) => out.push(format!("udp://*:{port}  → {}", l4_targets(f))),
        }
        for v in &l.http().vhosts {
            let host = format!("{}:{port}", v.domains.join(","));
            out.extend(v.routes.iter().map(|r| line(&host, r)));
        }
    }
    if let Some(w) = &plan.waypoint {
        for (svc, routes) in &w.routes {
            for (port, r) in routes {
                let host = match port {
                    Some(p) => format!("{}.{}:{p}", svc.name, svc.namespace),
                    None => format!("{}.{}", svc.name, svc.namespace),
                };
                out.push(line(&host, r));
            }
        }
        // Consumer routes: for the clients of one namespace only.
        for (svc, by_ns) in &w.consumer_routes {
            for (from, routes) in by_ns {
                for (port, r) in routes {
                    let host = match port {
                        Some(p) => format!("{}.{}:{p} (from {from})", svc.name, svc.namespace),
                        None => format!("{}.{} (from {from})", svc.name, svc.namespace),
                    };
                    out.push(line(&host, r));
                }
            }
        }
    }
    out
}

/// Where a connection route sends: `svc.ns:port (weight), …`, or `no backend (closed)`.
fn l4_targets(f: &L4Forward) -> String {
    if f.backends.is_empty() {
        return "no backend (connections closed)".into();
    }
    f.backends
        .iter()
        .map(|t| format!("{} ({})", target(&t.target), t.weight))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A target in words: the Service port, or the refused reference and why.
fn target(t: &Target) -> String {
    match t {
        Target::Service(b) => b.endpoints_key(),
        Target::Refused(x) => format!(
            "{} {}/{}:{} refused ({})",
            x.kind,
            x.namespace,
            x.name,
            x.port,
            match x.reason {
                RefusedReason::NotAService => "not a Service",
                RefusedReason::NotPermitted => "not permitted",
            }
        ),
    }
}

/// One route as a line: `host  match → backends (weight) [filters]`, in the words
/// `explain` uses.
fn line(host: &str, r: &RoutePlan) -> String {
    let mut s = format!("{host}  {} → ", explain::describe_match(r));
    match &r.action {
        Action::Forward(f) => {
            let targets: Vec<String> = f
                .backends
                .iter()
                .map(|w| format!("{} ({})", target(&w.target), w.weight))
                .collect();
            if targets.is_empty() {
                s.push_str("no backend");
            } else {
                s.push_str(&targets.join(", "));
            }
        }
        Action::Redirect(rd) => s.push_str(&redirect(rd)),
        Action::Status(code) => {
            let _ = write!(s, "status {code}");
        }
    }
    let mut filters = explain::filters(r);
    if matches!(&r.action, Action::Forward(f) if f.grpc) {
        filters.push("gRPC".into());
    }
    if !filters.is_empty() {
        let _ = write!(s, " [{}]", filters.join(", "));
    }
    s
}

fn redirect(r: &Redirect) -> String {
    let mut s = format!("redirect {}", r.status);
    if let Some(x) = &r.scheme {
        let _ = write!(s, " scheme {x}");
    }
    if let Some(x) = &r.host {
        let _ = write!(s, " host {x}");
    }
    if let Some(x) = r.port {
        let _ = write!(s, " port {x}");
    }
    if let Some(p) = &r.path {
        let _ = write!(s, " {}", explain::describe_rewrite(p));
    }
    s
}

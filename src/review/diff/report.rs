//! The report: every section of what a change does, compared from two loaded revisions.
//! Serialized as `--format json`, whose field names are a contract.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::proxies::{self, ProxyChange};
use super::traffic::{self, TrafficChange};
use crate::gitsync::Source;
use crate::render::PROVENANCE;
use crate::review::{Loaded, Side};
use crate::xds::endpoints::Endpoints;
use crate::xds::translate::conditions::{Condition, GatewayApiStatus, GatewayStatus, RouteStatus};
use foldhash::HashMap;

/// Everything a change does, section by section. Serialized as `--format json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub base: Revision,
    pub head: Revision,
    /// Whether anything below differs (validation, manifests, proxies, status, traffic).
    pub changed: bool,
    /// Whether the head is a valid config.
    pub valid: bool,
    /// The head's problems, `file:line:column: field: message`.
    pub errors: Vec<String>,
    /// Those of [`Report::errors`] the base does not have (the change introduces them).
    pub introduced: Vec<String>,
    /// The base's problems the head no longer has.
    pub fixed: Vec<String>,
    pub manifests: Manifests,
    /// By proxy node id `name.namespace`; only proxies that change.
    pub proxies: BTreeMap<String, ProxyChange>,
    /// Gateway API conditions that differ.
    pub status: Vec<StatusChange>,
    /// Representative requests answered differently.
    pub traffic: Vec<TrafficChange>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Revision {
    /// As given (`main`, a sha, a tag).
    pub rev: String,
    /// The commit it names.
    pub commit: Option<String>,
    pub valid: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Manifests {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Unified diff of every added, removed and changed file, by path.
    pub diffs: BTreeMap<String, String>,
}

impl Manifests {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One Gateway API condition that differs between the revisions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusChange {
    /// `Gateway ns/name`, `Gateway ns/name listener L`, `HTTPRoute ns/name parent ns/gw`.
    pub object: String,
    /// The condition type (`Accepted`, `ResolvedRefs`, `Programmed`, …).
    pub condition: String,
    pub base: Option<ConditionState>,
    pub head: Option<ConditionState>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionState {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl Report {
    /// Compares two loaded revisions. Only proxies in `only` (node ids) when it is not
    /// empty; `endpoints` as `serve` would be given.
    pub fn between(
        (base_rev, base): (&str, &Side),
        (head_rev, head): (&str, &Side),
        endpoints: Option<&Endpoints>,
        only: &[String],
    ) -> Report {
        let problems = |s: &Side| -> Vec<String> {
            match &s.outcome {
                Ok(_) => Vec::new(),
                Err(crate::intent::Error::Invalid(ps)) => {
                    ps.iter().map(ToString::to_string).collect()
                }
            }
        };
        let (base_errors, errors) = (problems(base), problems(head));
        let before: BTreeSet<&String> = base_errors.iter().collect();
        let after: BTreeSet<&String> = errors.iter().collect();
        let introduced: Vec<String> = errors
            .iter()
            .filter(|e| !before.contains(e))
            .cloned()
            .collect();
        let fixed: Vec<String> = base_errors
            .iter()
            .filter(|e| !after.contains(e))
            .cloned()
            .collect();
        let mut report = Report {
            base: revision(base_rev, base),
            head: revision(head_rev, head),
            changed: false,
            valid: head.loaded().is_some(),
            errors,
            introduced,
            fixed,
            manifests: Manifests::default(),
            proxies: BTreeMap::new(),
            status: Vec::new(),
            traffic: Vec::new(),
        };
        // An invalid head is not served: nothing below would happen. An invalid base is
        // compared as nothing (what a first valid commit would publish).
        if let Some(h) = head.loaded() {
            let b = base.loaded();
            report.manifests = manifests(b, h);
            let wanted = |id: &str| only.is_empty() || only.iter().any(|p| p == id);
            report.proxies = proxies::compare(b, h, endpoints, &wanted);
            report.status = status(b, h);
            report.traffic = traffic::compare(b, h, endpoints, &wanted);
        }
        report.changed = !report.introduced.is_empty()
            || !report.fixed.is_empty()
            || !report.manifests.is_empty()
            || !report.proxies.is_empty()
            || !report.status.is_empty()
            || !report.traffic.is_empty();
        report
    }

    /// 1: the head is invalid; 2: it changes something; 0: it changes nothing.
    pub fn exit_code(&self) -> u8 {
        if !self.valid {
            1
        } else if self.changed {
            2
        } else {
            0
        }
    }
}

fn revision(rev: &str, side: &Side) -> Revision {
    Revision {
        rev: rev.to_owned(),
        commit: match &side.tree.source {
            Source::Commit { sha, .. } => Some(sha.clone()),
            Source::Directory(_) => None,
        },
        valid: side.loaded().is_some(),
    }
}

/// Rendered files added, removed and changed. The READMEs name the commit they were
/// rendered from; that line differs between any two commits and is not a change.
fn manifests(base: Option<&Loaded>, head: &Loaded) -> Manifests {
    let empty = BTreeMap::new();
    let before = base.map_or(&empty, |b| &b.rendered.files);
    let after = &head.rendered.files;
    let mut m = Manifests::default();
    for (path, new) in after {
        match before.get(path) {
            None => {
                m.added.push(path.clone());
                m.diffs.insert(path.clone(), unified(path, "", new));
            }
            Some(old) if old != new => {
                let (old, new) = (without_provenance(old), without_provenance(new));
                if old != new {
                    m.changed.push(path.clone());
                    m.diffs.insert(path.clone(), unified(path, &old, &new));
                }
            }
            Some(_) => {}
        }
    }
    for (path, old) in before {
        if !after.contains_key(path) {
            m.removed.push(path.clone());
            m.diffs.insert(path.clone(), unified(path, old, ""));
        }
    }
    m
}

fn without_provenance(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(PROVENANCE) {
        return text.into();
    }
    text.split_inclusive('\n')
        .map(|l| {
            if l.starts_with(PROVENANCE) {
                "Rendered from commit `…`.\n"
            } else {
                l
            }
        })
        .collect::<String>()
        .into()
}

fn unified(path: &str, old: &str, new: &str) -> String {
    let (a, b) = (
        if old.is_empty() {
            "/dev/null".to_owned()
        } else {
            format!("a/{path}")
        },
        if new.is_empty() {
            "/dev/null".to_owned()
        } else {
            format!("b/{path}")
        },
    );
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string()
}

/// The conditions of one Gateway (with its listeners') by (object, type).
fn gateway_conditions(g: &GatewayStatus, out: &mut BTreeMap<(String, String), ConditionState>) {
    let object = format!("Gateway {}/{}", g.namespace, g.name);
    for c in &g.conditions {
        put(out, object.clone(), c);
    }
    for l in &g.listeners {
        for c in &l.conditions {
            put(out, format!("{object} listener {}", l.name), c);
        }
    }
}

/// The conditions of one route, per parent, by (object, type).
fn route_conditions(r: &RouteStatus, out: &mut BTreeMap<(String, String), ConditionState>) {
    for p in &r.parents {
        let pr = &p.parent_ref;
        let mut parent = format!(
            "{}/{}",
            pr.namespace.as_deref().unwrap_or(&r.namespace),
            pr.name
        );
        if let Some(s) = &pr.section_name {
            parent = format!("{parent}/{s}");
        }
        if let Some(port) = pr.port {
            parent = format!("{parent}:{port}");
        }
        let object = format!("{} {}/{} parent {parent}", r.kind, r.namespace, r.name);
        for c in &p.conditions {
            put(out, object.clone(), c);
        }
    }
}

fn put(out: &mut BTreeMap<(String, String), ConditionState>, object: String, c: &Condition) {
    out.insert(
        (object, c.type_.to_owned()),
        ConditionState {
            status: c.status.to_owned(),
            reason: c.reason.to_owned(),
            message: c.message.clone(),
        },
    );
}

/// The conditions that differ. Objects are paired by identity and compared whole first:
/// at 10,000 routes, flattening every condition of both sides into strings cost ~100 ms,
/// and a change touches a few.
fn status(base: Option<&Loaded>, head: &Loaded) -> Vec<StatusChange> {
    let empty = GatewayApiStatus::default();
    let (b, h) = (base.map_or(&empty, |b| &b.status), &head.status);
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    {
        let key = |g: &GatewayStatus| (g.namespace.clone(), g.name.clone());
        let old: HashMap<_, &GatewayStatus> = b.gateways.iter().map(|g| (key(g), g)).collect();
        let new: HashMap<_, &GatewayStatus> = h.gateways.iter().map(|g| (key(g), g)).collect();
        for (k, g) in &old {
            if new.get(k) != Some(g) {
                gateway_conditions(g, &mut before);
            }
        }
        for (k, g) in &new {
            if old.get(k) != Some(g) {
                gateway_conditions(g, &mut after);
            }
        }
    }
    fn key(r: &RouteStatus) -> (&'static str, &str, &str) {
        (r.kind, &r.namespace, &r.name)
    }
    let old: HashMap<_, &RouteStatus> = b.routes.iter().map(|r| (key(r), r)).collect();
    let new: HashMap<_, &RouteStatus> = h.routes.iter().map(|r| (key(r), r)).collect();
    for (k, r) in &old {
        if new.get(k) != Some(r) {
            route_conditions(r, &mut before);
        }
    }
    for (k, r) in &new {
        if old.get(k) != Some(r) {
            route_conditions(r, &mut after);
        }
    }
    let keys: BTreeSet<&(String, String)> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (b, h) = (before.get(k), after.get(k));
            (b != h).then(|| StatusChange {
                object: k.0.clone(),
                condition: k.1.clone(),
                base: b.cloned(),
                head: h.cloned(),
            })
        })
        .collect()
}

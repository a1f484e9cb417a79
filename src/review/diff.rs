//! `tidegate diff`: what a change does (validation, manifests, proxies, status, traffic).
//!
//! Both revisions go through the whole pipeline ([`Side::load`], caches shared so the head
//! pays only for what the change touched); [`Report::between`] compares them section by
//! section and [`format`] prints the report as text, markdown or JSON. The JSON field names
//! are a contract (checks outside this repository read them).

mod format;
mod proxies;
// Until `crate::xds::explain` lands: the same types, no requests compared.
#[path = "diff/traffic_stub.rs"]
mod traffic;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::{Caches, Loaded, Repo, Side};
use crate::gitsync::Source;
use crate::xds::endpoints::Endpoints;

pub use proxies::{Names, ProxyChange, route_lines};
pub use traffic::{Answer, Backend, Request, TrafficChange};

/// `tidegate diff`'s arguments.
#[derive(Clone, Debug)]
pub struct Options {
    pub repo: String,
    pub base: String,
    pub head: String,
    /// `text`, `markdown` or `json`.
    pub format: String,
    /// Only these proxies (node ids); empty: all.
    pub proxies: Vec<String>,
    pub endpoints: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--format {0}: expected text, markdown or json")]
    Format(String),
    #[error("--proxy {0}: expected NAME.NAMESPACE")]
    Proxy(String),
}

/// Prints the diff of `opts.base..opts.head`. Exit status 0: no change, 2: changes, 1: the
/// head is invalid or the diff could not be made (the errors are printed: `cli::main`
/// would map an `Err` to 2, which here means "changes").
pub fn run(opts: &Options) -> anyhow::Result<ExitCode> {
    match diff(opts) {
        Ok((report, out)) => {
            print!("{out}");
            Ok(ExitCode::from(report.exit_code()))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

fn diff(opts: &Options) -> anyhow::Result<(Report, String)> {
    if !matches!(opts.format.as_str(), "text" | "markdown" | "json") {
        return Err(Error::Format(opts.format.clone()).into());
    }
    if let Some(p) = opts.proxies.iter().find(|p| {
        p.split_once('.')
            .is_none_or(|(n, ns)| n.is_empty() || ns.is_empty())
    }) {
        return Err(Error::Proxy(p.clone()).into());
    }
    let endpoints = opts.endpoints.as_deref().map(Endpoints::load).transpose()?;
    let repo = Repo::open(&opts.repo)?;
    let mut caches = Caches::default();
    let base = Side::load(&repo, Some(&opts.base), &mut caches)?;
    let head = Side::load(&repo, Some(&opts.head), &mut caches)?;
    let report = Report::between(
        (&opts.base, &base),
        (&opts.head, &head),
        endpoints.as_ref(),
        &opts.proxies,
    );
    let out = match opts.format.as_str() {
        "json" => format::json(&report),
        "markdown" => format::markdown(&report),
        _ => format::text(&report, std::io::stdout().is_terminal()),
    };
    Ok((report, out))
}

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

/// The first line of a rendered README that names its commit (see `render::manifests`).
const PROVENANCE: &str = "Rendered from commit `";

fn without_provenance(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(PROVENANCE) {
        return text.into();
    }
    text.split_inclusive('\n')
        .filter(|l| !l.starts_with(PROVENANCE))
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

/// Every condition of `status` by (object, type).
fn conditions(
    status: &crate::xds::translate::conditions::GatewayApiStatus,
) -> BTreeMap<(String, String), ConditionState> {
    let mut out = BTreeMap::new();
    let mut put = |object: String, c: &crate::xds::translate::conditions::Condition| {
        out.insert(
            (object, c.type_.to_owned()),
            ConditionState {
                status: c.status.to_owned(),
                reason: c.reason.to_owned(),
                message: c.message.clone(),
            },
        );
    };
    for g in &status.gateways {
        let object = format!("Gateway {}/{}", g.namespace, g.name);
        for c in &g.conditions {
            put(object.clone(), c);
        }
        for l in &g.listeners {
            for c in &l.conditions {
                put(format!("{object} listener {}", l.name), c);
            }
        }
    }
    for r in &status.routes {
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
                put(object.clone(), c);
            }
        }
    }
    out
}

fn status(base: Option<&Loaded>, head: &Loaded) -> Vec<StatusChange> {
    let before = base.map(|b| conditions(&b.status)).unwrap_or_default();
    let after = conditions(&head.status);
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

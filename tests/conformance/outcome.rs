//! What the conformance harnesses of `cases-l4-mesh.yaml` (`conformance_l4`,
//! `conformance_mesh`) share: a test's row from its cases' checks, the verdict against the
//! known gaps, and the small helpers that commit manifests and name pods.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::status::Check;
use crate::{data, l4_data};

/// One test's outcome in a profile table.
pub struct Row {
    pub core: bool,
    pub passed: usize,
    pub total: usize,
    pub not_run: Option<String>,
    pub first_failure: Option<String>,
    pub skipped: usize,
}

impl Row {
    pub fn not_run(core: bool, why: String) -> Self {
        Row {
            core,
            passed: 0,
            total: 0,
            not_run: Some(why),
            first_failure: None,
            skipped: 0,
        }
    }

    /// The row of a test whose cases gave `outcomes`. `precondition`: the id of a check that
    /// alone does not make a test run (the suite's NamespacesMustBeReady).
    pub fn of(core: bool, outcomes: &[(String, Check)], precondition: &str) -> Self {
        let passed = outcomes.iter().filter(|(_, c)| *c == Check::Pass).count();
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|(id, c)| match c {
                Check::Fail(e) => Some(format!("{id}: {e}")),
                _ => None,
            })
            .collect();
        let skipped = outcomes
            .iter()
            .filter(|(_, c)| matches!(c, Check::Skip(_)))
            .count();
        let checked = outcomes
            .iter()
            .any(|(id, c)| id != precondition && !matches!(c, Check::Skip(_)));
        if !checked && failed.is_empty() {
            return Row {
                core,
                passed: 0,
                total: 0,
                not_run: Some("nothing checkable (every case skipped)".to_owned()),
                first_failure: None,
                skipped,
            };
        }
        Row {
            core,
            passed,
            total: passed + failed.len(),
            not_run: None,
            first_failure: failed.into_iter().next(),
            skipped,
        }
    }

    pub fn passes(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }
}

/// Why `name` is in `list` (KNOWN_GAPS, ADAPTATIONS), if it is.
pub fn lookup<'a>(list: &'a [(&str, &str)], name: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// One line of at most `max` characters, without table separators.
pub fn shorten(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '|'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    }
}

/// What fails the run: a failing test that is not a known gap (a Core test never is), a
/// known gap that passes, a gap that names no test.
pub fn verdict(rows: &BTreeMap<String, Row>, gaps: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, _) in gaps {
        if !rows.contains_key(*name) {
            problems.push(format!("{name} is listed but is not a test of the data"));
        }
    }
    for (name, r) in rows {
        let gap = lookup(gaps, name).is_some();
        if gap && r.core {
            problems.push(format!("{name} is Core: it cannot be a known gap"));
        }
        if r.passed < r.total && !gap {
            problems.push(format!(
                "{name} failed {}/{}: {}",
                r.total - r.passed,
                r.total,
                r.first_failure.as_deref().unwrap_or("")
            ));
        }
        if gap && r.passes() {
            problems.push(format!("{name} passes: remove it from KNOWN_GAPS"));
        }
    }
    problems
}

/// Objects as one YAML file (JSON documents are YAML).
pub fn yaml_of<'a>(objects: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string(o).expect("JSON"));
        out.push('\n');
    }
    out
}

/// The objects tidegate reads from a repository (Deployments, Services and Secrets are the
/// harness's to run).
pub fn committed(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| l4_data::COMMITTED_KINDS.contains(&data::kind(o)))
        .cloned()
        .collect()
}

/// Whether a Service's `selector` selects pods with `labels`.
pub fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The one pod of a Deployment, named as Kubernetes names Deployment pods.
pub fn pod_name(deployment: &str) -> String {
    format!("{deployment}-6b7f9c-p0")
}

/// A pod name minus its last two '-'-separated parts: its Deployment.
pub fn deployment_of(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    parts[..parts.len().saturating_sub(2)].join("-")
}

/// What is wrong with `counts` (answers per backend, of `samples`) against the wanted
/// `distribution` (share per backend, each within `tolerance`; a 0 share gets nothing; no
/// other backend answers). Empty: it holds.
pub fn distribution_problems(
    counts: &BTreeMap<String, u64>,
    distribution: &serde_json::Map<String, Value>,
    samples: u64,
    tolerance: f64,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (d, n) in counts {
        if !distribution.contains_key(d) {
            problems.push(format!("unknown backend {d} ({n})"));
        }
    }
    for (d, share) in distribution {
        let share = share.as_f64().unwrap_or(0.0);
        let n = counts.get(d).copied().unwrap_or(0);
        let got = n as f64 / samples as f64;
        if (share == 0.0 && n > 0) || (got - share).abs() > tolerance {
            problems.push(format!("{d}: {got:.3}, want {share}±{tolerance}"));
        }
    }
    problems
}

/// The last warning or error of an Envoy's log (e.g. a listener it could not bind), for a
/// failure message; empty when there is none.
pub fn envoy_complaint(log: &str) -> String {
    match log.lines().rev().find(|l| {
        (l.contains("[warning]") || l.contains("[error]") || l.contains("[critical]"))
            // Said at every start; not about the configuration.
            && !l.contains("no configured limit to the number of allowed active")
    }) {
        Some(l) => format!(" (Envoy: {})", shorten(l, 200)),
        None => String::new(),
    }
}

//! `tidegate diff`: what a change does (validation, manifests, proxies, status, traffic).
//!
//! Both revisions go through the whole pipeline ([`Side::load`], caches shared so the head
//! pays only for what the change touched); [`Report::between`] compares them section by
//! section and [`format`] prints the report as text, markdown or JSON. The JSON field names
//! are a contract (checks outside this repository read them).

mod format;
mod proxies;
mod report;
mod traffic;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Caches, Repo, Side};
use crate::xds::endpoints::Endpoints;

pub use proxies::{Names, ProxyChange, route_lines};
pub use report::{ConditionState, Manifests, Report, Revision, StatusChange};
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
    /// Credentials for a remote `repo`.
    pub git_auth: crate::gitsync::auth::GitAuth,
    /// `--verify-commits`: the head must be signed by a key of this `allowed_signers` file.
    pub verify_commits: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--format {0}: expected text, markdown or json")]
    Format(String),
    #[error("--proxy {0}: expected NAME.NAMESPACE")]
    Proxy(String),
    #[error("--proxy {0}: no such proxy in either revision (proxies: {1})")]
    NoSuchProxy(String, String),
}

/// Prints the diff of `opts.base..opts.head`. Exit status 0: no change, 2: changes, 1: the
/// head is invalid or the diff could not be made (the errors are printed: `cli::main`
/// would map an `Err` to 2, which here means "changes").
pub fn run(opts: &Options) -> anyhow::Result<ExitCode> {
    match report(opts) {
        Ok((report, out)) => {
            super::print(&out)?;
            Ok(ExitCode::from(report.exit_code()))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `report` as plain text (no colour).
pub fn format_text(report: &Report) -> String {
    format::text(report, false)
}

/// The report of `opts` and its text in `opts.format`: all `run` does but print.
pub fn report(opts: &Options) -> anyhow::Result<(Report, String)> {
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
    let repo = Repo::open_with(&opts.repo, &opts.git_auth)?;
    // Only the head: the base is what is served already (as `serve` checks only heads).
    if let Some(file) = &opts.verify_commits {
        repo.verify(Some(&opts.head), file)?;
    }
    let mut caches = Caches::default();
    let base = Side::load(&repo, Some(&opts.base), &mut caches)?;
    let head = Side::load(&repo, Some(&opts.head), &mut caches)?;
    // A misspelt --proxy would otherwise read as "no change".
    let ids: std::collections::BTreeSet<&String> = [&base, &head]
        .iter()
        .filter_map(|s| s.loaded())
        .flat_map(|l| l.plans.keys())
        .collect();
    if head.loaded().is_some()
        && let Some(p) = opts.proxies.iter().find(|p| !ids.contains(p))
    {
        let known: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
        return Err(Error::NoSuchProxy(p.clone(), known.join(", ")).into());
    }
    let report = Report::between(
        (&opts.base, &base),
        (&opts.head, &head),
        endpoints.as_ref(),
        &opts.proxies,
    );
    let out = match opts.format.as_str() {
        "json" => format::json(&report),
        "markdown" => format::markdown(&report),
        // Colour for a person at a terminal, never in a file or a pipe (nor with NO_COLOR).
        _ => format::text(
            &report,
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        ),
    };
    Ok((report, out))
}

//! `tidegate diff`: what a change does (validation, manifests, proxies, status, traffic).

use std::path::PathBuf;
use std::process::ExitCode;

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

pub fn run(opts: &Options) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "diff of {} {}..{}: not built yet",
        opts.repo,
        opts.base,
        opts.head
    )
}

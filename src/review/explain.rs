//! `tidegate explain`: what a proxy does with one request, with where the rule came from.

use std::path::PathBuf;
use std::process::ExitCode;

/// `tidegate explain`'s arguments.
#[derive(Clone, Debug)]
pub struct Options {
    pub repo: String,
    pub rev: Option<String>,
    pub proxy: String,
    pub method: String,
    /// `Name: value` each.
    pub headers: Vec<String>,
    pub sni: Option<String>,
    pub endpoints: Option<PathBuf>,
    pub json: bool,
    pub url: String,
}

pub fn run(opts: &Options) -> anyhow::Result<ExitCode> {
    anyhow::bail!("explain {} on {}: not built yet", opts.url, opts.proxy)
}

//! `tidegate explain`: what a proxy does with one request, with where the rule came from.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{Caches, Loaded, Repo, Side, source};
use crate::gitsync;
use crate::xds::endpoints::Endpoints;
use crate::xds::explain::{self, Answer, Request};

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
    /// Credentials for a remote `repo`.
    pub git_auth: crate::gitsync::auth::GitAuth,
    /// `--verify-commits`: the revision must be signed by a key of this file.
    pub verify_commits: Option<PathBuf>,
}

/// Prints the answer; exit 0 whenever there is one (a 404 is an answer), 1 when the
/// revision is invalid.
pub fn run(opts: &Options) -> anyhow::Result<ExitCode> {
    let req = Request::parse(&opts.url, &opts.method, &opts.headers, opts.sni.as_deref())?;
    let endpoints = opts
        .endpoints
        .as_deref()
        .map(Endpoints::load)
        .transpose()
        .context("reading the endpoints file")?;
    let repo = Repo::open_with(&opts.repo, &opts.git_auth)?;
    if let Some(file) = &opts.verify_commits {
        // An untrusted revision is answered like an invalid one (exit 1); a bad file is
        // an error.
        gitsync::verify::AllowedSigners::load(file)?;
        if let Err(e) = repo.verify(opts.rev.as_deref(), file) {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let side = Side::load(&repo, opts.rev.as_deref(), &mut Caches::default())?;
    let loaded = match &side.outcome {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {} rejected: {e}", side.tree.source);
            return Ok(ExitCode::FAILURE);
        }
    };
    let answer = ask(loaded, &opts.proxy, &req, endpoints.as_ref())?;
    if opts.json {
        let mut v = to_json(&side, loaded, &opts.proxy, &req, &answer);
        v["revision"] = json!(side.tree.source.revision());
        super::print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
    } else {
        super::print(&to_text(&side, loaded, &opts.proxy, &req, &answer))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer of proxy `proxy` (`name.namespace`) of a loaded revision.
pub fn ask(
    loaded: &Loaded,
    proxy: &str,
    req: &Request,
    endpoints: Option<&Endpoints>,
) -> anyhow::Result<Answer> {
    let plan = loaded.plans.get(proxy).with_context(|| {
        format!(
            "no proxy {proxy} in this revision; proxies: {}",
            if loaded.plans.is_empty() {
                "none".to_owned()
            } else {
                loaded.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )
    })?;
    let mut answer = explain::evaluate(plan, req, endpoints);
    // A route that answers an error itself: what its Gateway API status says about it
    // (e.g. ResolvedRefs=False: RefNotPermitted, with the reference).
    if matches!(answer.status, 500 | 503)
        && let Some(hit) = &answer.route
        && let Some(rs) =
            loaded.status.routes.iter().find(|r| {
                r.kind == hit.kind && r.namespace == hit.namespace && r.name == hit.object
            })
    {
        for c in rs.parents.iter().flat_map(|p| &p.conditions) {
            if c.status != "True" {
                answer.reason.push_str(&format!(
                    "; status {}={} ({}): {}",
                    c.type_, c.status, c.reason, c.message
                ));
            }
        }
    }
    Ok(answer)
}

/// The JSON answer (a contract: `status`, `backends`, `route`, `redirect`, `reason` are
/// read by scripts; more fields may come, none go).
pub fn to_json(side: &Side, loaded: &Loaded, proxy: &str, req: &Request, a: &Answer) -> Value {
    let tree = &side.tree;
    let route = a.route.as_ref().map(|h| {
        let at = source::locate(&loaded.config, &loaded.model, tree, h);
        json!({
            "kind": h.kind,
            "namespace": h.namespace,
            "name": h.object,
            "rule": h.rule,
            "match": h.r#match,
            "file": at.as_ref().map(|l| l.file.clone()),
            "line": at.as_ref().map(|l| l.line),
            "id": h.name,
        })
    });
    json!({
        "proxy": proxy,
        "request": request_json(req),
        "status": a.status,
        "backends": a.backends.iter().map(|s| json!({
            "name": s.backend.service,
            "namespace": s.backend.namespace,
            "port": s.backend.port,
            "weight": s.weight,
        })).collect::<Vec<_>>(),
        "route": route,
        "redirect": a.redirect,
        "reason": a.reason,
        "listener": a.listener,
        "chain": a.chain,
        "virtualHost": a.vhost,
        "precedence": a.precedence,
        "filters": a.filters,
        "refused": a.refused.iter().map(|r| json!({
            "reference": r.reference, "weight": r.weight, "status": r.status, "why": r.why,
        })).collect::<Vec<_>>(),
        "clusters": a.clusters,
        "tls": a.tls,
    })
}

pub fn request_json(req: &Request) -> Value {
    json!({
        "method": req.method,
        "url": req.url(),
        "headers": req.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
    })
}

fn to_text(side: &Side, loaded: &Loaded, proxy: &str, req: &Request, a: &Answer) -> String {
    let tree = &side.tree;
    let mut out = String::new();
    let _ = writeln!(out, "{} {} via proxy {proxy}", req.method, req.url());
    for (k, v) in &req.headers {
        let _ = writeln!(out, "  {k}: {v}");
    }
    let status = if a.status == 0 {
        "no HTTP answer".to_owned()
    } else {
        a.status.to_string()
    };
    let _ = writeln!(out, "answer:    {status}: {}", a.reason);
    if !a.listener.is_empty() {
        let _ = writeln!(out, "listener:  {} ({})", a.listener, a.chain);
    }
    if !a.vhost.is_empty() {
        let _ = writeln!(out, "vhost:     {}", a.vhost);
    }
    if let Some(h) = &a.route {
        let at = source::locate(&loaded.config, &loaded.model, tree, h)
            .map(|l| format!(" at {}:{}", l.file, l.line))
            .unwrap_or_default();
        if h.kind.is_empty() {
            let _ = writeln!(out, "route:     {}", h.name);
        } else {
            let _ = writeln!(
                out,
                "route:     {} {}/{} rule {} match {}{at}",
                h.kind, h.namespace, h.object, h.rule, h.r#match
            );
        }
    }
    for p in &a.precedence {
        let _ = writeln!(out, "  {p}");
    }
    for f in &a.filters {
        let _ = writeln!(out, "filter:    {f}");
    }
    if let Some(l) = &a.redirect {
        let _ = writeln!(out, "location:  {l}");
    }
    for (i, (s, c)) in a.backends.iter().zip(&a.clusters).enumerate() {
        let _ = writeln!(
            out,
            "backend:   {} weight {} (cluster {c})",
            s.backend.endpoints_key(),
            s.weight
        );
        if let Some(t) = a.tls.get(i).filter(|t| !t.is_empty()) {
            let _ = writeln!(out, "           {t}");
        }
    }
    for r in &a.refused {
        let _ = writeln!(
            out,
            "refused:   {} weight {}: answered {}: {}",
            r.reference, r.weight, r.status, r.why
        );
    }
    out
}

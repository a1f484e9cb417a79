//! The review loop: what a proxy does with one request (`explain`), and what a change does
//! to manifests, proxies, status and traffic (`diff`), answered offline from a repository,
//! before anything is merged or served.
//!
//! Both run a revision through the same pipeline `serve` does (read, validate, expand,
//! render, translate, status) into a [`Side`]; `explain` evaluates a request against one
//! side's plans, `diff` compares two sides. On top of everything, like `app` and `cli`.

pub mod diff;
pub mod explain;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;

use crate::gitsync::{self, Tree};
use crate::intent::{self, Config};
use crate::model::Model;
use crate::render::{self, Rendered};
use crate::xds::plan::ProxyPlan;
use crate::xds::translate::{self, conditions};

/// A repository to review: a path (a work tree, a directory in one, a bare repository) or
/// a URL, mirrored once with all its branches and tags.
pub struct Repo {
    /// `None`: a plain directory outside any repository, read as files (no revisions).
    repo: Option<git2::Repository>,
    /// The config's directory inside the repository ("" for the root), or the directory.
    prefix: String,
    /// Set when the repository is a mirror of this URL.
    pub url: Option<String>,
}

impl Repo {
    pub fn open(repo: &str) -> anyhow::Result<Self> {
        Self::open_with(repo, &gitsync::auth::GitAuth::default())
    }

    /// Like [`Repo::open`], reaching a remote with `auth`.
    pub fn open_with(repo: &str, auth: &gitsync::auth::GitAuth) -> anyhow::Result<Self> {
        if gitsync::source::is_url(repo) {
            let source = gitsync::source::RepoSource::new(repo, None, None).with_auth(auth.clone());
            let (git, prefix) = source.open()?;
            // Every branch and tag: the revisions asked for may be any of them.
            source
                .git(
                    Some(git.path()),
                    &[
                        "fetch",
                        "--no-tags",
                        "--force",
                        "--prune",
                        repo,
                        "+refs/heads/*:refs/heads/*",
                        "+refs/tags/*:refs/tags/*",
                    ],
                )
                .with_context(|| format!("fetching {}", gitsync::auth::redact_url(repo)))?;
            // HEAD of a fresh mirror points at nothing; point it where the remote's does.
            if let Ok(out) = source.git(None, &["ls-remote", "--symref", repo, "HEAD"])
                && let Some(target) = out
                    .lines()
                    .find_map(|l| l.strip_prefix("ref: ")?.split('\t').next())
            {
                let _ = git.set_head(target);
            }
            return Ok(Repo {
                repo: Some(git),
                prefix,
                url: Some(repo.to_owned()),
            });
        }
        let abs = std::path::Path::new(repo)
            .canonicalize()
            .with_context(|| format!("opening {repo}"))?;
        let Ok(git) = git2::Repository::discover(&abs) else {
            return Ok(Repo {
                repo: None,
                prefix: abs.to_string_lossy().into_owned(),
                url: None,
            });
        };
        let prefix = gitsync::prefix_in(&git, &abs)?;
        Ok(Repo {
            repo: Some(git),
            prefix,
            url: None,
        })
    }

    /// `--verify-commits`: `rev` (default `HEAD`) must carry a valid SSH signature by a key
    /// of the `allowed_signers` file `file`; the error says why not.
    pub fn verify(&self, rev: Option<&str>, file: &std::path::Path) -> anyhow::Result<()> {
        let signers = gitsync::verify::AllowedSigners::load(file)?;
        let Some(git) = &self.repo else {
            anyhow::bail!(
                "--verify-commits needs a Git repository: {} is a plain directory, with no commit to verify",
                self.prefix
            );
        };
        let rev = rev.unwrap_or("HEAD");
        let commit = git
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .with_context(|| format!("reading revision {rev}"))?;
        gitsync::verify::verify_commit(git, commit.id(), &signers)
            .map(drop)
            .map_err(|reason| anyhow::anyhow!("{rev} rejected: commit {}: {reason}", commit.id()))
    }

    /// The config tree at `rev` (default `HEAD`), skipping blobs `known` says are cached.
    pub fn read(
        &self,
        rev: Option<&str>,
        known: &dyn Fn(&str, &str) -> bool,
    ) -> anyhow::Result<Tree> {
        let Some(git) = &self.repo else {
            // Files as they are: there is only one revision.
            anyhow::ensure!(
                rev.is_none(),
                "{} is not in a Git repository: it has no revision {}",
                self.prefix,
                rev.unwrap_or_default()
            );
            return Ok(gitsync::read(
                std::path::Path::new(&self.prefix),
                None,
                &intent::LAYOUT,
            )?);
        };
        let rev = rev.unwrap_or("HEAD");
        Ok(gitsync::read_commit_with(
            git,
            rev,
            &self.prefix,
            &intent::LAYOUT,
            known,
        )?)
    }
}

/// Writes a report to stdout. A reader that stops early (`| head`, a pager quit) is not an
/// error: the rest is not wanted.
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// What caches survive between two sides: decoded files (by blob id), expansions, plans
/// (by their inputs) and objects' YAML (by object). The second side of a diff pays only
/// for what changed.
#[derive(Default)]
pub struct Caches {
    intent: intent::Cache,
    plans: translate::Cache,
    render: render::Cache,
}

/// One revision through the whole pipeline.
pub struct Side {
    pub tree: Tree,
    /// The commit's config and everything made from it, or why it was rejected.
    pub outcome: Result<Loaded, intent::Error>,
}

/// What a valid revision stands for.
pub struct Loaded {
    pub config: Config,
    pub model: Model,
    pub rendered: Rendered,
    /// Every proxy's plan, by node id `<gateway>.<namespace>`.
    pub plans: BTreeMap<String, Arc<ProxyPlan>>,
    /// The Gateway API status a controller would report.
    pub status: conditions::GatewayApiStatus,
}

/// A scoped thread's result; its panic goes on in the caller.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

impl Side {
    /// Reads `rev` of `repo` and runs it through the pipeline. Errors only when the
    /// revision cannot be read; an invalid config is a [`Side`] whose outcome is the error.
    pub fn load(repo: &Repo, rev: Option<&str>, caches: &mut Caches) -> anyhow::Result<Self> {
        let cache = &caches.intent;
        let tree = repo.read(rev, &|path, id| cache.knows(path, id))?;
        let outcome = match intent::load_and_expand_cached(&tree, &mut caches.intent) {
            Err(e) => Err(e),
            Ok((config, mut model)) => {
                // Competing routes and ListenerSets are ordered by age, as `serve` orders
                // them, so a review shows what the proxies will do.
                if let (Some(git), gitsync::Source::Commit { sha, .. }) = (&repo.repo, &tree.source)
                {
                    intent::created::stamp(&config, &mut model, git, sha, &repo.prefix)?;
                }
                // Render, plans and status only read the model: side by side (at 10,000
                // intents each is ~100 ms, and `diff` loads two revisions).
                let summary = config.summary(&tree.source);
                let (render_cache, plan_cache) = (&mut caches.render, &mut caches.plans);
                let (rendered, plans, status) = std::thread::scope(|s| {
                    let rendered =
                        s.spawn(|| render::render_cached(&model, &summary, render_cache));
                    let status = s.spawn(|| conditions::status(&model, None, None));
                    let plans = translate::plans_cached(&model, plan_cache);
                    (join(rendered), plans, join(status))
                });
                let rendered = rendered?;
                Ok(Loaded {
                    config,
                    model,
                    rendered,
                    plans,
                    status,
                })
            }
        };
        Ok(Side { tree, outcome })
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        self.outcome.as_ref().ok()
    }
}

//! Where the config comes from, and how to know it changed: a repository on this machine
//! (read in place), or a remote URL (mirrored into a private bare repository with the
//! `git` CLI, which brings credential helpers, SSH config and proxies for free, or the
//! credentials of [`GitAuth`] instead).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git2::Repository;

use super::auth::{self, GitAuth};
use super::glob::BranchGlob;
use super::{Error, Layout, Result, Tree};

/// Where a mirror keeps the preview branches it fetched, one ref each.
const PREVIEW_REFS: &str = "refs/tidegate/previews/";

/// How long a `git ls-remote` or `git fetch` may take (Flux's default Git timeout).
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A repository on this machine: a work tree, a directory inside one, or a bare one.
    Local { path: PathBuf },
    /// A remote, mirrored into `mirror` (a bare repository private to tidegate).
    Remote { url: String, mirror: PathBuf },
}

#[derive(Clone, Debug)]
pub struct RepoSource {
    pub location: Location,
    /// The branch to follow; `None` follows `HEAD`.
    pub branch: Option<String>,
    /// Credentials for a remote (none: the machine's git configuration).
    pub auth: GitAuth,
}

/// `scheme://…` or scp-like `user@host:path`.
pub fn is_url(repo: &str) -> bool {
    repo.contains("://") || (repo.contains('@') && repo.contains(':') && !Path::new(repo).exists())
}

impl RepoSource {
    /// `repo` is a path or a URL; `mirror_dir` is where a remote is mirrored (default: a
    /// directory under the system temp dir named after the URL).
    pub fn new(repo: &str, branch: Option<String>, mirror_dir: Option<PathBuf>) -> Self {
        let location = if is_url(repo) {
            let mirror = mirror_dir.unwrap_or_else(|| {
                use sha2::Digest as _;
                let h = hex::encode(&sha2::Sha256::digest(repo.as_bytes())[..8]);
                std::env::temp_dir().join(format!("tidegate-mirror-{h}"))
            });
            Location::Remote {
                url: repo.to_owned(),
                mirror,
            }
        } else {
            Location::Local {
                path: PathBuf::from(repo),
            }
        };
        Self {
            location,
            branch,
            auth: GitAuth::default(),
        }
    }

    /// The same source, reached with `auth` (for a remote).
    pub fn with_auth(mut self, auth: GitAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Runs `git` for this source's remote, with its credentials.
    pub fn git(&self, dir: Option<&Path>, args: &[&str]) -> Result<String> {
        run_git_with(dir, args, &self.auth)
    }

    fn refname(&self) -> String {
        match &self.branch {
            Some(b) => format!("refs/heads/{b}"),
            None => "HEAD".to_owned(),
        }
    }

    /// A short description for logs and status.
    pub fn describe(&self) -> String {
        let what = match &self.location {
            Location::Local { path } => path.display().to_string(),
            Location::Remote { url, .. } => auth::redact_url(url),
        };
        format!("{what} ({})", self.branch.as_deref().unwrap_or("HEAD"))
    }

    /// The local repository to read objects from, and the config's directory in it.
    pub fn open(&self) -> Result<(Repository, String)> {
        match &self.location {
            Location::Local { path } => {
                let abs = path.canonicalize().map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                let repo = Repository::discover(&abs).map_err(|source| Error::Git {
                    what: format!("opening the repository at {}", abs.display()),
                    source,
                })?;
                let prefix = super::prefix_in(&repo, &abs)?;
                Ok((repo, prefix))
            }
            Location::Remote { mirror, .. } => {
                let repo = match Repository::open_bare(mirror) {
                    Ok(r) => r,
                    Err(_) => {
                        std::fs::create_dir_all(mirror).map_err(|source| Error::Io {
                            path: mirror.clone(),
                            source,
                        })?;
                        Repository::init_bare(mirror).map_err(|source| Error::Git {
                            what: format!("creating the mirror {}", mirror.display()),
                            source,
                        })?
                    }
                };
                Ok((repo, String::new()))
            }
        }
    }

    /// The commit the followed ref points at now (blocking). For a remote, the commit is
    /// fetched into the mirror if it is not there yet, and only then.
    pub fn resolve(&self) -> Result<String> {
        match &self.location {
            Location::Local { .. } => {
                let (repo, _) = self.open()?;
                let refname = self.refname();
                if refname == "HEAD"
                    && repo
                        .head()
                        .is_err_and(|e| e.code() == git2::ErrorCode::UnbornBranch)
                {
                    return Err(Error::NoCommits(repo.path().to_owned()));
                }
                let commit = repo
                    .revparse_single(&refname)
                    .and_then(|o| o.peel_to_commit())
                    .map_err(|source| Error::Git {
                        what: format!("resolving {refname}"),
                        source,
                    })?;
                Ok(commit.id().to_string())
            }
            Location::Remote { url, mirror } => {
                let refname = self.refname();
                let out = self.git(None, &["ls-remote", "--exit-code", url, &refname])?;
                let sha = out
                    .lines()
                    .find_map(|l| {
                        l.split_once('\t')
                            .filter(|(_, r)| *r == refname)
                            .map(|(s, _)| s.to_owned())
                    })
                    .ok_or_else(|| {
                        Error::Remote(format!("{} has no {refname}", auth::redact_url(url)))
                    })?;
                let (repo, _) = self.open()?;
                let have = git2::Oid::from_str(&sha)
                    .ok()
                    .is_some_and(|oid| repo.find_commit(oid).is_ok());
                if !have {
                    let spec = format!("+{refname}:refs/tidegate/head");
                    self.git(Some(mirror), &["fetch", "--no-tags", "--force", url, &spec])?;
                }
                Ok(sha)
            }
        }
    }

    /// The branches whose names `glob` matches, with the commits they point at (blocking).
    /// For a remote, one `ls-remote` lists them and one `fetch` brings the commits the
    /// mirror lacks, each branch under its own ref there (so `git gc` keeps them); mirror
    /// refs of branches that are gone are removed.
    pub fn heads(&self, glob: &BranchGlob) -> Result<BTreeMap<String, String>> {
        match &self.location {
            Location::Local { .. } => {
                let (repo, _) = self.open()?;
                let git = |what: &str| {
                    let what = what.to_owned();
                    move |source| Error::Git { what, source }
                };
                let mut heads = BTreeMap::new();
                for branch in repo
                    .branches(Some(git2::BranchType::Local))
                    .map_err(git("listing branches"))?
                {
                    let (branch, _) = branch.map_err(git("listing branches"))?;
                    let Ok(Some(name)) = branch.name() else {
                        continue;
                    };
                    if !glob.matches(name) {
                        continue;
                    }
                    // A branch whose tip is not a commit (corrupt) is left out, not fatal.
                    if let Ok(commit) = branch.get().peel_to_commit() {
                        heads.insert(name.to_owned(), commit.id().to_string());
                    }
                }
                Ok(heads)
            }
            Location::Remote { url, mirror } => {
                let out = self.git(None, &["ls-remote", "--heads", url])?;
                let heads: BTreeMap<String, String> = out
                    .lines()
                    .filter_map(|l| {
                        let (sha, r) = l.split_once('\t')?;
                        let name = r.strip_prefix("refs/heads/")?;
                        glob.matches(name)
                            .then(|| (name.to_owned(), sha.to_owned()))
                    })
                    .collect();
                let (repo, _) = self.open()?;
                let mut specs = Vec::new();
                for (name, sha) in &heads {
                    let have = git2::Oid::from_str(sha)
                        .ok()
                        .is_some_and(|oid| repo.find_commit(oid).is_ok());
                    if !have {
                        specs.push(format!("+refs/heads/{name}:{PREVIEW_REFS}{name}"));
                    }
                }
                if !specs.is_empty() {
                    let mut args = vec!["fetch", "--no-tags", "--force", url.as_str()];
                    args.extend(specs.iter().map(String::as_str));
                    self.git(Some(mirror), &args)?;
                }
                if let Ok(refs) = repo.references_glob(&format!("{PREVIEW_REFS}*")) {
                    let stale: Vec<String> = refs
                        .flatten()
                        .filter_map(|r| r.name().ok().map(str::to_owned))
                        .filter(|r| !heads.contains_key(&r[PREVIEW_REFS.len()..]))
                        .collect();
                    for r in stale {
                        if let Ok(mut r) = repo.find_reference(&r) {
                            let _ = r.delete();
                        }
                    }
                }
                Ok(heads)
            }
        }
    }

    /// Reads the files of `layout` at commit `sha` (blocking), skipping blobs `known` says
    /// are cached.
    pub fn read(
        &self,
        sha: &str,
        layout: &Layout,
        known: &dyn Fn(&str, &str) -> bool,
    ) -> Result<Tree> {
        let (repo, prefix) = self.open()?;
        super::read_commit_with(&repo, sha, &prefix, layout, known)
    }

    /// Files whose change means "the ref may have moved" (local repositories only).
    pub fn watch_paths(&self) -> Result<Vec<PathBuf>> {
        match &self.location {
            Location::Remote { .. } => Ok(Vec::new()),
            Location::Local { .. } => {
                let (repo, _) = self.open()?;
                // HEAD and packed-refs live in the git dir; loose refs under the common dir
                // (the same directory except in a linked worktree).
                let mut paths = vec![repo.path().to_owned()];
                let refs = repo.commondir().join("refs");
                if refs.exists() {
                    paths.push(refs);
                }
                if repo.commondir() != repo.path() {
                    paths.push(repo.commondir().to_owned());
                }
                Ok(paths)
            }
        }
    }
}

/// Runs `git` with a timeout and no prompts, with the machine's own git configuration;
/// returns stdout. Credentials in URLs never reach an error message.
pub fn run_git(dir: Option<&Path>, args: &[&str]) -> Result<String> {
    run_git_with(dir, args, &GitAuth::default())
}

/// Runs `git` with a timeout and no prompts, authenticated with `auth` (its secrets go
/// in the child's environment, never its arguments); returns stdout. Errors name the
/// command and git's complaint with every secret (the token, URL credentials) hidden.
pub fn run_git_with(dir: Option<&Path>, args: &[&str], auth: &GitAuth) -> Result<String> {
    let prepared = auth.prepare()?;
    let mut secrets = prepared.secrets;
    secrets.extend(args.iter().flat_map(|a| auth::url_secrets(a)));
    let shown = || auth::scrub(&args.join(" "), &secrets);
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    for var in prepared.remove {
        cmd.env_remove(var);
    }
    cmd.envs(prepared.env);
    let mut child = cmd
        .args(args)
        // Never wait for a password on a terminal nobody watches.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Remote(format!("cannot run git: {e}")))?;
    let deadline = Instant::now() + GIT_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Remote(format!(
                    "git {} timed out after {GIT_TIMEOUT:?}",
                    shown()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(Error::Remote(format!("waiting for git: {e}"))),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Remote(format!("reading git output: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        // With our credentials refused and nothing else to try (no helper, no prompt), git
        // only says it could not ask for a user name: say what happened.
        let hint = match (&auth.token_file, &auth.username) {
            (Some(file), Some(user)) if err.contains("terminal prompts disabled") => format!(
                " (authentication failed: the server refused user {user} with the token in {})",
                file.display()
            ),
            _ => String::new(),
        };
        Err(Error::Remote(format!(
            "git {} failed: {}{hint}",
            shown(),
            auth::scrub(err.trim(), &secrets)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_git_run_never_shows_the_credentials_of_its_url() {
        // Nothing listens on port 1: git fails and its error names the URL.
        let url = "https://bot:pw-in-url@127.0.0.1:1/config.git";
        let err = run_git(None, &["ls-remote", url]).unwrap_err().to_string();
        assert!(
            err.contains("https://bot:***@127.0.0.1:1/config.git"),
            "{err}"
        );
        assert!(!err.contains("pw-in-url"), "{err}");
        let src = RepoSource::new(url, None, None);
        assert!(!src.describe().contains("pw-in-url"));
    }

    #[test]
    fn a_token_file_that_cannot_be_read_is_an_error_naming_the_file() {
        let auth = GitAuth {
            username: Some("bot".into()),
            token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        };
        let err = run_git_with(None, &["--version"], &auth)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/token"), "{err}");
    }
}

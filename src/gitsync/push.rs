//! Committing rendered manifests to a branch (the rendered-manifests pattern): one commit
//! per source commit whose render changed, with a `Source-Commit:` trailer; nothing when
//! the render is the same; the ref update is a compare-and-swap, so two servers racing
//! make one commit.

use std::collections::BTreeMap;

use git2::{Oid, Repository, Signature, Time};
use sha2::{Digest, Sha256};

use super::source::{Location, RepoSource};
use super::{Error, Result};

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// A new commit on the branch.
    Committed(String),
    /// The branch already holds this render (possibly pushed by another replica).
    Unchanged,
}

/// Trailer naming the source commit.
pub const SOURCE_TRAILER: &str = "Source-Commit";
/// Trailer with a digest of the manifests (READMEs excluded, since they name the source
/// commit): equal digests mean an identical render.
pub const DIGEST_TRAILER: &str = "Render-Digest";

/// The source commit of a push.
pub struct SourceCommit<'a> {
    pub sha: &'a str,
    pub subject: &'a str,
    /// Committer time of the source commit, reused so that replicas rendering the same
    /// source produce byte-identical commits.
    pub time: i64,
}

fn git(what: &str) -> impl FnOnce(git2::Error) -> Error + '_ {
    move |source| Error::Git {
        what: what.to_owned(),
        source,
    }
}

/// Digest of the rendered files that matter (every file but the READMEs).
pub fn digest(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (path, text) in files.iter().filter(|(p, _)| !(p.ends_with("README.md"))) {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

fn trailer(message: &str, key: &str) -> Option<String> {
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")).map(str::to_owned))
}

/// Writes `files` as a tree in `repo` (no checkout, no index file touched).
fn write_tree(repo: &Repository, files: &BTreeMap<String, String>) -> Result<Oid> {
    let mut index = git2::Index::new().map_err(git("creating an index"))?;
    for (path, text) in files {
        let id = repo.blob(text.as_bytes()).map_err(git("writing a blob"))?;
        let entry = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: text.len() as u32,
            id,
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        index.add(&entry).map_err(git("adding to the index"))?;
    }
    index.write_tree_to(repo).map_err(git("writing the tree"))
}

/// Commits `files` on `branch` of the source's repository (for a remote: pushes there).
pub fn push_rendered(
    src: &RepoSource,
    branch: &str,
    files: &BTreeMap<String, String>,
    source: &SourceCommit<'_>,
) -> Result<Pushed> {
    let refname = format!("refs/heads/{branch}");
    let (repo, _) = src.open()?;
    let digest = digest(files);
    // Each lost race (the ref moved, or another writer holds its lock) re-reads the tip
    // and tries again on top of it, after a short, growing pause.
    for attempt in 0..20u64 {
        let tip = match &src.location {
            Location::Local { .. } => repo.refname_to_id(&refname).ok(),
            Location::Remote { url, mirror } => {
                let out = src.git(None, &["ls-remote", url, &refname])?;
                match out.split_whitespace().next() {
                    None => None,
                    Some(sha) => {
                        let spec = format!("+{refname}:refs/tidegate/rendered");
                        src.git(Some(mirror), &["fetch", "--no-tags", "--force", url, &spec])?;
                        Some(Oid::from_str(sha).map_err(git("parsing the remote tip"))?)
                    }
                }
            }
        };
        let parent = match tip {
            Some(id) => Some(
                repo.find_commit(id)
                    .map_err(git("reading the rendered branch"))?,
            ),
            None => None,
        };
        if let Some(p) = &parent
            && trailer(p.message().unwrap_or(""), DIGEST_TRAILER).as_deref()
                == Some(digest.as_str())
        {
            return Ok(Pushed::Unchanged);
        }
        let tree = repo
            .find_tree(write_tree(&repo, files)?)
            .map_err(git("reading the tree"))?;
        let sig = Signature::new("tidegate", "tidegate@localhost", &Time::new(source.time, 0))
            .map_err(git("signature"))?;
        let short = &source.sha[..source.sha.len().min(7)];
        let message = format!(
            "render: {short} {}\n\n{SOURCE_TRAILER}: {}\n{DIGEST_TRAILER}: {digest}\n",
            source.subject, source.sha
        );
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let commit = repo
            .commit(None, &sig, &sig, &message, &tree, &parents)
            .map_err(git("committing the render"))?;
        let swapped = match &src.location {
            Location::Local { .. } => {
                let log = format!("tidegate: render {short}");
                let result = match tip {
                    Some(old) => repo.reference_matching(&refname, commit, true, old, &log),
                    None => repo.reference(&refname, commit, false, &log),
                };
                result.is_ok()
            }
            Location::Remote { url, mirror } => {
                let lease = format!(
                    "--force-with-lease={refname}:{}",
                    tip.map(|t| t.to_string()).unwrap_or_default()
                );
                let spec = format!("{commit}:{refname}");
                src.git(Some(mirror), &["push", "--porcelain", &lease, url, &spec])
                    .is_ok()
            }
        };
        if swapped {
            return Ok(Pushed::Committed(commit.to_string()));
        }
        tracing::debug!(
            branch,
            "the rendered branch moved meanwhile: retrying on its new tip"
        );
        std::thread::sleep(std::time::Duration::from_millis(5 * (attempt + 1)));
    }
    Err(Error::Remote(format!(
        "could not update {refname}: it kept moving"
    )))
}

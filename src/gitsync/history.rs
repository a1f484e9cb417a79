//! When things appeared and how often they changed: Git's stand-ins for Kubernetes'
//! `creationTimestamp` and `metadata.generation`.
//!
//! Gateway API lets the oldest of competing objects win (two TCPRoutes on one listener,
//! ListenerSets claiming one hostname), and a controller's status says which `generation`
//! of an object it describes. Objects in Git have neither, so both are read from history,
//! walking first parents back from the served commit:
//!
//! - **age**: the oldest commit since which the object has been there without a break,
//!   counted as its position in the first-parent chain from the root commit. Positions,
//!   not commit times: two commits made in the same second still have an order, and a
//!   commit's position never changes as commits are added after it.
//! - **generation**: 1, plus one for every commit of that run that changed what the caller
//!   calls the object's spec (an API server bumps `generation` on spec changes only).
//!
//! Both depend on the commit only: the same commit always gives the same answers.

use std::path::Path;

use git2::{Oid, Repository};

use super::{Error, Result};

/// One thing to date: the file it lives in (relative to the config root) at the commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub path: String,
}

/// How far back to look: beyond it, a thing counts as old as the oldest commit seen.
pub const MAX_DEPTH: usize = 10_000;

/// Age and generation of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dated {
    /// First-parent position (0 = the root commit) of the commit it appeared in.
    pub since: i64,
    pub generation: i64,
}

/// What the caller says of a probe in one version of its file: absent (`None`), or present
/// with a fingerprint of its spec (equal fingerprints: an unchanged spec).
pub type Look<'a> = dyn FnMut(usize, Oid, &[u8]) -> Option<u64> + 'a;

/// The age and generation of each probe in the history of `sha`. A file whose content is
/// unchanged holds the thing unchanged; a changed file is asked (`look(probe, blob id,
/// bytes)`), so only the versions that differ are read. A probe `look` does not find at
/// `sha` itself is dated `sha` with generation 1.
pub fn dated(
    repo: &Repository,
    sha: &str,
    prefix: &str,
    probes: &[Probe],
    look: &mut Look<'_>,
) -> Result<Vec<Dated>> {
    let git = |what: String| move |source| Error::Git { what, source };
    let mut commit = repo
        .revparse_single(sha)
        .and_then(|o| o.peel_to_commit())
        .map_err(git(format!("resolving {sha}")))?;
    let head = position(&commit);
    // Per probe: the blob it was last seen in, its fingerprint there, and the answer so far.
    let mut seen: Vec<Option<(Oid, u64)>> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let oid = blob_at(&commit, prefix, &p.path)?;
            let blob = repo.find_blob(oid).ok()?;
            Some((oid, look(i, oid, blob.content())?))
        })
        .collect();
    let mut out = vec![
        Dated {
            since: head,
            generation: 1,
        };
        probes.len()
    ];
    let mut open: Vec<usize> = (0..probes.len()).filter(|&i| seen[i].is_some()).collect();
    for depth in 1..=MAX_DEPTH as i64 {
        if open.is_empty() {
            break;
        }
        let Ok(parent) = commit.parent(0) else {
            break;
        };
        // One lookup per file and commit, however many probes the file holds.
        let mut blobs: std::collections::HashMap<&str, Option<Oid>> =
            std::collections::HashMap::new();
        open.retain(|&i| {
            let Some((last_oid, last_fp)) = seen[i] else {
                return false;
            };
            let path = probes[i].path.as_str();
            let blob = *blobs
                .entry(path)
                .or_insert_with(|| blob_at(&parent, prefix, path));
            let Some(oid) = blob else {
                return false;
            };
            if oid != last_oid {
                let fp = repo
                    .find_blob(oid)
                    .ok()
                    .and_then(|b| look(i, oid, b.content()));
                let Some(fp) = fp else {
                    return false;
                };
                if fp != last_fp {
                    out[i].generation += 1;
                }
                seen[i] = Some((oid, fp));
            }
            out[i].since = head - depth;
            true
        });
        commit = parent;
    }
    Ok(out)
}

/// The blob at `path` (under `prefix`) of `commit`.
fn blob_at(commit: &git2::Commit<'_>, prefix: &str, path: &str) -> Option<Oid> {
    let prefix = prefix.trim_matches('/');
    let full = if prefix.is_empty() {
        path.to_owned()
    } else {
        format!("{prefix}/{path}")
    };
    commit
        .tree()
        .ok()?
        .get_path(Path::new(&full))
        .ok()
        .map(|e| e.id())
}

/// How many first parents lead from `commit` to the root. Remembered per commit for the
/// life of the process (a commit's position never changes): `serve` asks at every new
/// commit, whose parent it asked about last time, so a long history is walked once.
fn position(commit: &git2::Commit<'_>) -> i64 {
    use std::sync::{Mutex, OnceLock};
    static KNOWN: OnceLock<Mutex<std::collections::HashMap<Oid, i64>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    let lookup = |oid: Oid| known.lock().ok().and_then(|k| k.get(&oid).copied());
    let mut n = 0;
    let mut c = commit.clone();
    let base = loop {
        if let Some(p) = lookup(c.id()) {
            break p;
        }
        match c.parent(0) {
            Ok(p) => {
                n += 1;
                c = p;
            }
            Err(_) => break 0,
        }
    };
    let at = base + n;
    if let Ok(mut k) = known.lock() {
        // A bound, not a cache policy: the heads of one process's life are few.
        if k.len() >= 4096 {
            k.clear();
        }
        k.insert(commit.id(), at);
    }
    at
}

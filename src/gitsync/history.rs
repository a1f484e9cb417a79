//! When things appeared: Git's stand-in for Kubernetes' `creationTimestamp`.
//!
//! Gateway API lets the oldest of competing objects win (two TCPRoutes on one listener,
//! ListenerSets claiming one hostname). Objects in Git have no creation time, so it is read
//! from history: the oldest commit, walking first parents back from the served one, since
//! which the object has been there without a break, counted as its position in the
//! first-parent chain from the root commit. Positions, not commit times: two commits made
//! in the same second still have an order, and a commit's position never changes as
//! commits are added after it. It depends on the commit only (the same commit always gives
//! the same ages), and an object added later is younger than one already there, whatever
//! their names.

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

/// The first-parent position (0 = the root commit) of the commit since which each probe has
/// been present in the history of `sha`. A file whose content is unchanged is taken to still
/// hold the thing; a changed file is asked (`still_there(probe index, file bytes)`), so
/// only the versions that differ are read.
pub fn appeared(
    repo: &Repository,
    sha: &str,
    prefix: &str,
    probes: &[Probe],
    still_there: &mut dyn FnMut(usize, &[u8]) -> bool,
) -> Result<Vec<i64>> {
    let git = |what: String| move |source| Error::Git { what, source };
    let mut commit = repo
        .revparse_single(sha)
        .and_then(|o| o.peel_to_commit())
        .map_err(git(format!("resolving {sha}")))?;
    let prefix = prefix.trim_matches('/');
    let blob_at = |c: &git2::Commit<'_>, path: &str| -> Option<Oid> {
        let full = if prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{prefix}/{path}")
        };
        c.tree()
            .ok()?
            .get_path(Path::new(&full))
            .ok()
            .map(|e| e.id())
    };
    // Per probe: the blob it was last seen in, and the time it has been there since.
    let mut seen: Vec<Option<Oid>> = probes.iter().map(|p| blob_at(&commit, &p.path)).collect();
    let head = position(&commit);
    let mut since: Vec<i64> = vec![head; probes.len()];
    let mut open: Vec<usize> = (0..probes.len()).filter(|&i| seen[i].is_some()).collect();
    for depth in 1..=MAX_DEPTH as i64 {
        if open.is_empty() {
            break;
        }
        let Ok(parent) = commit.parent(0) else {
            break;
        };
        let at = head - depth;
        open.retain(|&i| {
            let Some(oid) = blob_at(&parent, &probes[i].path) else {
                return false;
            };
            if Some(oid) != seen[i] {
                let present = repo
                    .find_blob(oid)
                    .is_ok_and(|b| still_there(i, b.content()));
                if !present {
                    return false;
                }
                seen[i] = Some(oid);
            }
            since[i] = at;
            true
        });
        commit = parent;
    }
    Ok(since)
}

/// How many first parents lead from `commit` to the root.
fn position(commit: &git2::Commit<'_>) -> i64 {
    let mut n = 0;
    let mut c = commit.clone();
    while let Ok(p) = c.parent(0) {
        n += 1;
        c = p;
    }
    n
}

//! Reading the config repo at a commit.
//!
//! Intents are read from Git objects, never from the work tree: what is served and rendered
//! always maps to a commit, and uncommitted edits cannot leak out. A plain directory outside
//! any repository is accepted too (read as files, and reported as such), for trying things.

pub mod auth;
pub mod glob;
pub mod history;
pub mod push;
pub mod source;
pub mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};
use sha2::Digest as _;

/// Which parts of a config repo are read, and how large a file may be: the caller's to say
/// (the intent layer knows its own files), so this module knows Git, not the config format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Files read at the config root, by exact path.
    pub files: &'static [&'static str],
    /// Directories read recursively, each with a trailing `/` (`intents/`).
    pub dirs: &'static [&'static str],
    /// Larger files are not read, only listed in [`Tree::too_large`].
    pub max_file_bytes: u64,
}

impl Layout {
    /// Whether the file at `path` (relative to the config root) is read. Anything else
    /// (READMEs, CI files) is not ours.
    pub fn wanted(&self, path: &str) -> bool {
        self.files.contains(&path) || self.dirs.iter().any(|d| path.starts_with(d))
    }

    /// Whether the directory at `path` may hold wanted files.
    fn descend(&self, path: &str) -> bool {
        let dir = format!("{path}/");
        self.dirs.iter().any(|d| dir.starts_with(d))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--repo` does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A Git operation failed.
    #[error("{what}: {source}")]
    Git {
        what: String,
        #[source]
        source: git2::Error,
    },
    /// `--rev` was given for a directory that is not in a Git repository.
    #[error("{0} is not inside a Git repository, so --rev cannot be used")]
    NotARepo(PathBuf),
    /// The repository has no commit to read.
    #[error(
        "{0} has no commits yet: commit the config first (intents are read from commits, never from uncommitted files)"
    )]
    NoCommits(PathBuf),
    /// A remote could not be listed, fetched or pushed to.
    #[error("{0}")]
    Remote(String),
    /// The config directory is absent from the commit.
    #[error("{prefix} does not exist in commit {commit} (is it committed?)")]
    MissingPath { prefix: String, commit: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a tree's files came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Commit {
        /// Full hex id of the commit.
        sha: String,
        /// First line of the commit message.
        subject: String,
        /// The config's directory inside the repository ("" for the root).
        prefix: String,
        /// Committer time, seconds since the epoch.
        time: i64,
    },
    /// Files read from a directory that is not in a Git repository.
    Directory(PathBuf),
}

impl Source {
    /// A short label for the served version: the commit, or `dir` for a plain directory.
    pub fn revision(&self) -> &str {
        match self {
            Source::Commit { sha, .. } => sha,
            Source::Directory(_) => "uncommitted-directory",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Commit {
                sha,
                subject,
                prefix,
                ..
            } if prefix.is_empty() => {
                write!(f, "commit {} ({subject})", &sha[..12.min(sha.len())])
            }
            Source::Commit {
                sha,
                subject,
                prefix,
                ..
            } => {
                write!(
                    f,
                    "{prefix}/ at commit {} ({subject})",
                    &sha[..12.min(sha.len())]
                )
            }
            Source::Directory(p) => write!(
                f,
                "plain directory {} (not a Git repository: files read as they are)",
                p.display()
            ),
        }
    }
}

/// The config files of one commit: paths relative to the config root, `/`-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub source: Source,
    /// Content id of every file read: the Git blob id (or a SHA-256 for a plain
    /// directory). Two files with the same id have the same content.
    pub ids: BTreeMap<String, String>,
    /// Contents, for every file in `ids` except those the caller said it already knows.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Entries skipped on purpose (symlinks and submodules are ignored, not followed),
    /// with the reason.
    pub skipped: Vec<String>,
    /// Files over [`Layout::max_file_bytes`], not read: path → size.
    pub too_large: BTreeMap<String, u64>,
}

/// Reads the config at `rev` (default `HEAD`) of the repository containing `path`, limited
/// to `path`'s subtree; or, outside any repository, the files under `path`. Only the files
/// of `layout` are read.
pub fn read(path: &Path, rev: Option<&str>, layout: &Layout) -> Result<Tree> {
    let abs = path.canonicalize().map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let repo = match Repository::discover(&abs) {
        Ok(repo) => repo,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            if rev.is_some() {
                return Err(Error::NotARepo(abs));
            }
            return read_dir(&abs, layout);
        }
        Err(source) => {
            return Err(Error::Git {
                what: format!("opening the repository at {}", abs.display()),
                source,
            });
        }
    };
    let prefix = prefix_in(&repo, &abs)?;
    read_commit(&repo, rev.unwrap_or("HEAD"), &prefix, layout)
}

/// Where `abs` (canonical) is inside `repo`'s work tree, `/`-separated; "" for the root or
/// a bare repository.
pub fn prefix_in(repo: &Repository, abs: &Path) -> Result<String> {
    let Some(wd) = repo.workdir() else {
        return Ok(String::new());
    };
    let wd = wd.canonicalize().map_err(|source| Error::Io {
        path: wd.to_owned(),
        source,
    })?;
    Ok(abs
        .strip_prefix(&wd)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default())
}

/// Reads `prefix` of the commit that `rev` names in `repo`.
pub fn read_commit(repo: &Repository, rev: &str, prefix: &str, layout: &Layout) -> Result<Tree> {
    read_commit_with(repo, rev, prefix, layout, &|_, _| false)
}

/// Like [`read_commit`], but blobs for which `known(path, id)` is true are not read (their
/// id is still listed): a caller that cached what a blob says need not load it again.
pub fn read_commit_with(
    repo: &Repository,
    rev: &str,
    prefix: &str,
    layout: &Layout,
    known: &dyn Fn(&str, &str) -> bool,
) -> Result<Tree> {
    let git = |what: String| move |source| Error::Git { what, source };
    if rev == "HEAD"
        && repo
            .head()
            .is_err_and(|e| e.code() == git2::ErrorCode::UnbornBranch)
    {
        return Err(Error::NoCommits(repo.path().to_owned()));
    }
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(git(format!("resolving --rev {rev}")))?;
    let sha = commit.id().to_string();
    let mut tree = commit
        .tree()
        .map_err(git(format!("reading the tree of {sha}")))?;
    let prefix = prefix.trim_matches('/').to_owned();
    if !prefix.is_empty() {
        let entry = tree
            .get_path(Path::new(&prefix))
            .map_err(|_| Error::MissingPath {
                prefix: prefix.clone(),
                commit: sha.clone(),
            })?;
        tree = entry
            .to_object(repo)
            .and_then(|o| o.peel_to_tree())
            .map_err(|_| Error::MissingPath {
                prefix: prefix.clone(),
                commit: sha.clone(),
            })?;
    }

    let mut files = BTreeMap::new();
    let mut ids = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut too_large = BTreeMap::new();
    let odb = repo.odb().ok();
    let mut failure = None;
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        let path = format!("{dir}{name}");
        match entry.kind() {
            Some(ObjectType::Tree) => TreeWalkResult::Ok,
            Some(ObjectType::Blob) if layout.wanted(&path) => {
                // 0o120000 is a symlink: its blob is a path, and following it could read
                // outside the config; it is skipped and reported.
                if entry.filemode() == 0o120000 {
                    skipped.push(format!("{path}: symlink, not followed"));
                    return TreeWalkResult::Ok;
                }
                let id = entry.id().to_string();
                if known(&path, &id) {
                    ids.insert(path, id);
                    return TreeWalkResult::Ok;
                }
                // The size comes from the object header: an oversized blob is never
                // inflated into memory.
                if let Ok((size, _)) = odb
                    .as_ref()
                    .map_or(Err(()), |o| o.read_header(entry.id()).map_err(|_| ()))
                    && size as u64 > layout.max_file_bytes
                {
                    too_large.insert(path, size as u64);
                    return TreeWalkResult::Ok;
                }
                match repo.find_blob(entry.id()) {
                    Ok(blob) => {
                        ids.insert(path.clone(), id);
                        files.insert(path, blob.content().to_vec());
                        TreeWalkResult::Ok
                    }
                    Err(e) => {
                        failure = Some(Error::Git {
                            what: format!("reading {path}"),
                            source: e,
                        });
                        TreeWalkResult::Abort
                    }
                }
            }
            Some(ObjectType::Commit) if layout.wanted(&path) => {
                skipped.push(format!("{path}: submodule, not read"));
                TreeWalkResult::Ok
            }
            _ => TreeWalkResult::Ok,
        }
    })
    .map_err(git(format!("walking the tree of {sha}")))?;
    if let Some(e) = failure {
        return Err(e);
    }
    let subject = commit.summary().ok().flatten().unwrap_or("").to_owned();
    Ok(Tree {
        source: Source::Commit {
            sha,
            subject,
            prefix,
            time: commit.time().seconds(),
        },
        ids,
        files,
        skipped,
        too_large,
    })
}

fn read_dir(root: &Path, layout: &Layout) -> Result<Tree> {
    let mut files = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut too_large = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let p = entry.path();
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            let ft = entry.file_type().map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })?;
            if ft.is_symlink() {
                if layout.wanted(&rel) {
                    skipped.push(format!("{rel}: symlink, not followed"));
                }
            } else if ft.is_dir() {
                if layout.descend(&rel) {
                    stack.push(p);
                }
            } else if layout.wanted(&rel) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if len > layout.max_file_bytes {
                    too_large.insert(rel, len);
                    continue;
                }
                let bytes = std::fs::read(&p).map_err(|source| Error::Io {
                    path: p.clone(),
                    source,
                })?;
                files.insert(rel, bytes);
            }
        }
    }
    let ids = files
        .iter()
        .map(|(p, b)| {
            (
                p.clone(),
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(b))),
            )
        })
        .collect();
    Ok(Tree {
        source: Source::Directory(root.to_owned()),
        ids,
        files,
        skipped,
        too_large,
    })
}

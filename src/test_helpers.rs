//! Helpers for tests and examples that make real things easy, without faking them.
//!
//! [`TempRepo`] is a real Git repository in a temporary directory with real commits. Its
//! commits have a fixed author, committer and clock, so the same files committed in the
//! same order give the same commit ids on every run: golden files may name them.

use std::path::{Path, PathBuf};

use git2::{Repository, Signature, Time};

/// A Git repository in a temporary directory, removed on drop.
pub struct TempRepo {
    dir: tempfile::TempDir,
    repo: Repository,
    /// Seconds since the epoch of the next commit; advanced per commit.
    clock: i64,
}

impl TempRepo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tidegate-repo-")
            .tempdir()
            .expect("create temp dir");
        let repo = Repository::init(dir.path()).expect("git init");
        // Fixed branch name so tests do not depend on the machine's init.defaultBranch.
        repo.set_head("refs/heads/main").expect("set HEAD");
        Self {
            dir,
            repo,
            clock: 1_700_000_000,
        }
    }

    /// The work tree's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Writes a file in the work tree (not committed until [`TempRepo::commit`]).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write file");
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path().join(rel)).expect("remove file");
        self
    }

    /// Copies a directory's files into the work tree under `dest` ("" for the root).
    pub fn copy_dir(&self, src: &Path, dest: &str) -> &Self {
        for (rel, bytes) in files_under(src) {
            let target = if dest.is_empty() {
                rel
            } else {
                format!("{dest}/{rel}")
            };
            self.write(&target, bytes);
        }
        self
    }

    /// Stages everything (additions, changes, removals) and commits; returns the commit id.
    pub fn commit(&mut self, message: &str) -> String {
        let mut index = self.repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("git add");
        index.update_all(["*"], None).expect("git add -u");
        index.write().expect("write index");
        let tree_id = index.write_tree().expect("write tree");
        let tree = self.repo.find_tree(tree_id).expect("find tree");
        let sig = Signature::new(
            "tidegate test",
            "test@tidegate.invalid",
            &Time::new(self.clock, 0),
        )
        .expect("signature");
        self.clock += 60;
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let id = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit");
        id.to_string()
    }
}

impl Default for TempRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// Every file under `root`, as (`/`-separated relative path, bytes), sorted.
pub fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&path).expect("read file")));
            }
        }
    }
    out.sort();
    out
}

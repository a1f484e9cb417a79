//! Writing a render to a directory: only changed files are touched, and files tidegate
//! rendered before but no longer renders are removed. Files without tidegate's marker are
//! never touched.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::manifests::{README_MARKER, Rendered, YAML_MARKER};

/// What a write changed, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub written: Vec<String>,
    pub unchanged: usize,
    pub removed: Vec<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `rendered` under `out`, removing stale files of earlier renders.
pub fn write_dir(out: &Path, rendered: &Rendered) -> Result<WriteSummary> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut summary = WriteSummary::default();

    for rel in rendered.files.keys() {
        // Names are validated as DNS labels long before this point; this is the last line
        // of defence against a path that would leave the output directory.
        let safe = std::path::Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(Error::Io {
                path: out.join(rel),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "refusing to write outside the output directory",
                ),
            });
        }
    }
    for (rel, contents) in &rendered.files {
        let path = out.join(rel);
        if std::fs::read(&path).is_ok_and(|old| old == contents.as_bytes()) {
            summary.unchanged += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // Write-then-rename: a reader (or a crash) never sees half a manifest.
        let tmp = path.with_extension("tidegate-tmp");
        std::fs::write(&tmp, contents).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        summary.written.push(rel.clone());
    }

    for path in ours(out)? {
        let rel = path
            .strip_prefix(out)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if !rendered.files.contains_key(&rel) {
            std::fs::remove_file(&path).map_err(io(&path))?;
            summary.removed.push(rel);
            // Drop the directory too if that left it empty (it was ours).
            if let Some(parent) = path.parent()
                && parent != out
                && std::fs::read_dir(parent).is_ok_and(|mut d| d.next().is_none())
            {
                std::fs::remove_dir(parent).map_err(io(parent))?;
            }
        }
    }
    summary.removed.sort();
    Ok(summary)
}

/// Files under `out` (two levels: root and namespace directories) written by tidegate.
fn ours(out: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![(out.to_owned(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io(&path))?;
            if ft.is_dir() && depth == 0 && !entry.file_name().to_string_lossy().starts_with('.') {
                dirs.push((path, depth + 1));
            } else if ft.is_file() && is_ours(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn is_ours(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let first = text.lines().next().unwrap_or("");
    first == YAML_MARKER || first == README_MARKER
}

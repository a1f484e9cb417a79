//! Commits signed by real git (`gpg.format=ssh`) with keys made by real `ssh-keygen`, for
//! the `--verify-commits` tests (tests/signed_commits.rs, tests/trust.rs).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether `ssh-keygen` (Debian's openssh-client) can run: under CI it must.
pub fn have_ssh_keygen() -> bool {
    match Command::new("ssh-keygen")
        .arg("-?")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ssh-keygen cannot run ({e}): install openssh-client"
            );
            eprintln!("skipped: ssh-keygen cannot run ({e}); install openssh-client");
            false
        }
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An SSH key pair made by `ssh-keygen`.
pub struct Key {
    pub private: PathBuf,
    /// `keytype base64` of the public key.
    pub public: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl Key {
    pub fn new(dir: &Path, name: &str, args: &[&str]) -> Key {
        let private = dir.join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .args(args));
        let public = std::fs::read_to_string(private.with_extension("pub")).unwrap();
        let public = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let listed = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(private.with_extension("pub")));
        let fingerprint = listed.split_whitespace().nth(1).unwrap().to_owned();
        assert!(fingerprint.starts_with("SHA256:"), "{listed}");
        Key {
            private,
            public,
            fingerprint,
        }
    }
}

pub fn git(dir: &Path, key: Option<&Key>) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir).args([
        "-c",
        "user.name=signer",
        "-c",
        "user.email=signer@example.com",
        "-c",
        "gpg.format=ssh",
        "-c",
        "commit.gpgsign=false",
    ]);
    if let Some(k) = key {
        c.arg("-c")
            .arg(format!("user.signingkey={}", k.private.display()));
    }
    c
}

/// Commits the work tree with `git commit -S`, signed by `key`; returns the commit id.
pub fn signed_commit(repo: &Path, key: &Key, message: &str) -> String {
    run(git(repo, None).args(["add", "-A"]));
    run(git(repo, Some(key)).args(["commit", "-q", "-S", "-m", message]));
    run(git(repo, None).args(["rev-parse", "HEAD"]))
}

pub fn allowed(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("allowed_signers");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

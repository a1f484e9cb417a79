//! `--verify-commits`: commits signed by real git (`gpg.format=ssh`) with keys made by real
//! `ssh-keygen`, verified in-process against an `allowed_signers` file. Only heads signed by
//! an allowed key are served; the others are rejected with their reason while the last good
//! commit keeps serving.

mod common;

use common::intent_with_path as intent;

use common::signing::{Key, allowed, git, have_ssh_keygen, run, signed_commit};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tidegate::app::ServeOptions;
use tidegate::test_helpers::TempRepo;

const WAIT: Duration = Duration::from_secs(15);

/// A commit of the work tree on top of HEAD whose `gpgsig` is `ssh-keygen -Y sign -n
/// namespace` over `signed` (the commit's own content when `None`); HEAD moves to it.
fn forged_commit(
    repo: &TempRepo,
    key: &Key,
    namespace: &str,
    message: &str,
    signed: Option<&str>,
) -> String {
    let git = repo.repo();
    let mut index = git.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
    let parent = git.head().unwrap().peel_to_commit().unwrap();
    let who = git2::Signature::now("signer", "signer@example.com").unwrap();
    let content = git
        .commit_create_buffer(&who, &who, message, &tree, &[&parent])
        .unwrap();
    let content = content.as_str().unwrap().to_owned();
    let payload = signed.map_or(content.clone(), |m| content.replace(message, m));
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(&key.private)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = String::from_utf8(out.stdout).unwrap();
    let oid = git.commit_signed(&content, sig.trim_end(), None).unwrap();
    git.reference("refs/heads/main", oid, true, "forged")
        .unwrap();
    oid.to_string()
}

fn options(repo: &TempRepo, signers: &Path) -> ServeOptions {
    let mut opts = ServeOptions::new(repo.path().to_string_lossy());
    opts.branch = Some("main".into());
    opts.verify_commits = Some(signers.to_owned());
    opts
}

#[tokio::test]
async fn serve_serves_only_heads_signed_by_an_allowed_key() {
    if !have_ssh_keygen() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let alice = Key::new(keys.path(), "alice", &["-t", "ed25519"]);
    let mallory = Key::new(keys.path(), "mallory", &["-t", "ed25519"]);
    let file = allowed(
        keys.path(),
        &[format!(
            "alice@example.com namespaces=\"git\" {}",
            alice.public
        )],
    );
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent("/one"));
    let good = signed_commit(repo.path(), &alice, "one");
    let server = common::start_with(options(&repo, &file)).await;
    server.wait_served(&good, WAIT).await.unwrap();

    let rejected = async |sha: &str| {
        let errors = server.wait_served(sha, WAIT).await.expect_err("not served");
        assert_eq!(
            server.current().await.origin.revision,
            good,
            "last good keeps serving"
        );
        errors
    };

    repo.write("intents/httpbin.yaml", intent("/two"));
    let unsigned = repo.commit("unsigned");
    assert_eq!(
        rejected(&unsigned).await,
        [format!("commit {unsigned}: unsigned")]
    );
    let st = common::status(server.admin).await;
    assert_eq!(st["served"]["revision"], good.as_str(), "{st:#}");
    assert_eq!(st["rejected"][0]["revision"], unsigned.as_str(), "{st:#}");
    assert_eq!(
        st["rejected"][0]["errors"][0],
        format!("commit {unsigned}: unsigned"),
        "{st:#}"
    );

    repo.write("intents/httpbin.yaml", intent("/three"));
    let untrusted = signed_commit(repo.path(), &mallory, "by mallory");
    assert_eq!(
        rejected(&untrusted).await,
        [format!(
            "commit {untrusted}: untrusted key {}",
            mallory.fingerprint
        )]
    );

    // Alice's signature over other content: the message was rewritten, the gpgsig kept.
    repo.write("intents/httpbin.yaml", intent("/four"));
    let tampered = forged_commit(&repo, &alice, "git", "route /four", Some("something else"));
    assert_eq!(
        rejected(&tampered).await,
        [format!("commit {tampered}: bad signature")]
    );

    // Alice's key, a valid signature, but made for files, not for git.
    repo.write("intents/httpbin.yaml", intent("/five"));
    let other = forged_commit(&repo, &alice, "file", "route /five", None);
    assert_eq!(
        rejected(&other).await,
        [format!(
            "commit {other}: bad signature: made for namespace \"file\", not \"git\""
        )]
    );

    // The same forging, in the right namespace, is a good signature (the test's forger
    // is right, so the two rejections above are for what they say).
    repo.write("intents/httpbin.yaml", intent("/six"));
    let forged_ok = forged_commit(&repo, &alice, "git", "route /six", None);
    server.wait_served(&forged_ok, WAIT).await.unwrap();

    // Mallory's commit as head again, then Mallory's key allowed: the file is re-read and
    // the head checked again, no restart.
    repo.write("intents/httpbin.yaml", intent("/seven"));
    let later = signed_commit(repo.path(), &mallory, "by mallory, later");
    rejected_then(&server, &later, &forged_ok).await;
    allowed(
        keys.path(),
        &[
            format!("alice@example.com {}", alice.public),
            format!("mallory@example.com {}", mallory.public),
        ],
    );
    server.sync_now();
    // Not `wait_served`: the head's earlier rejection is still listed in /status.
    let deadline = std::time::Instant::now() + WAIT;
    while server.current().await.origin.revision != later {
        assert!(
            std::time::Instant::now() < deadline,
            "{later} not served after its key was allowed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

async fn rejected_then(server: &tidegate::app::Running, sha: &str, serving: &str) {
    let errors = server.wait_served(sha, WAIT).await.expect_err("not served");
    assert!(errors[0].contains("untrusted key SHA256:"), "{errors:?}");
    assert_eq!(server.current().await.origin.revision, serving);
}

#[tokio::test]
async fn a_malformed_allowed_signers_file_stops_serve_naming_file_and_line() {
    if !have_ssh_keygen() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let alice = Key::new(keys.path(), "alice", &["-t", "ed25519"]);
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent("/one"));
    repo.commit("one");
    for (lines, want) in [
        (
            vec![
                format!("alice@example.com {}", alice.public),
                "bob@example.com ssh-ed25519 AAAA-not-base64".to_owned(),
            ],
            ":2: invalid ssh-ed25519 key",
        ),
        (
            vec![format!("*@example.com cert-authority {}", alice.public)],
            ":1: cert-authority is not supported",
        ),
    ] {
        let file = allowed(keys.path(), &lines);
        let xds = tidegate::app::listen("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = match tidegate::app::start(options(&repo, &file), xds, admin).await {
            Ok(_) => panic!("served with a malformed {lines:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(&format!("{}{want}", file.display())), "{err}");
    }
}

fn tidegate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .output()
        .expect("run tidegate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_render_and_diff_exit_1_for_a_head_not_signed_by_an_allowed_key() {
    if !have_ssh_keygen() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    // Every algorithm git users sign with that is verified: ed25519, ECDSA P-256, RSA.
    let ed = Key::new(keys.path(), "ed", &["-t", "ed25519"]);
    let ec = Key::new(keys.path(), "ec", &["-t", "ecdsa", "-b", "256"]);
    let rsa = Key::new(keys.path(), "rsa", &["-t", "rsa", "-b", "2048"]);
    let stranger = Key::new(keys.path(), "stranger", &["-t", "ed25519"]);
    let file = allowed(
        keys.path(),
        &[
            format!("ed@example.com {}", ed.public),
            format!("ec@example.com {}", ec.public),
            format!("rsa@example.com {}", rsa.public),
        ],
    );
    let f = file.to_str().unwrap();
    let mut repo = TempRepo::new();
    let dir = repo.path().to_str().unwrap().to_owned();
    let validate = |rev: &str| {
        tidegate(&[
            "validate",
            "--repo",
            &dir,
            "--rev",
            rev,
            "--verify-commits",
            f,
        ])
    };

    for (i, key) in [&ed, &ec, &rsa].into_iter().enumerate() {
        repo.write("intents/httpbin.yaml", intent(&format!("/{i}")));
        let sha = signed_commit(repo.path(), key, "signed");
        let (code, err) = validate(&sha);
        assert_eq!(code, 0, "{}: {err}", key.public);
    }
    let base = run(git(repo.path(), None).args(["rev-parse", "HEAD"]));

    repo.write("intents/httpbin.yaml", intent("/unsigned"));
    let unsigned = repo.commit("unsigned");
    let (code, err) = validate(&unsigned);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("commit {unsigned}: unsigned")),
        "{err}"
    );
    let out = keys.path().join("out");
    let (code, err) = tidegate(&[
        "render",
        "--repo",
        &dir,
        "--rev",
        &unsigned,
        "--out",
        out.to_str().unwrap(),
        "--verify-commits",
        f,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!out.exists(), "nothing rendered for an unsigned commit");
    let (code, err) = tidegate(&[
        "diff",
        "--repo",
        &dir,
        "--base",
        &base,
        "--head",
        &unsigned,
        "--verify-commits",
        f,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unsigned"), "{err}");
    let (code, err) = tidegate(&[
        "explain",
        "--repo",
        &dir,
        "--rev",
        &unsigned,
        "--proxy",
        "gw.infra",
        "--verify-commits",
        f,
        "http://example.com/",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("commit {unsigned}: unsigned")),
        "{err}"
    );
    // Without the flag the same diff is a change (2): the flag is what rejects.
    let (code, err) = tidegate(&["diff", "--repo", &dir, "--base", &base, "--head", &unsigned]);
    assert_eq!(code, 2, "{err}");

    repo.write("intents/httpbin.yaml", intent("/stranger"));
    let strange = signed_commit(repo.path(), &stranger, "by a stranger");
    let (code, err) = validate(&strange);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "commit {strange}: untrusted key {}",
            stranger.fingerprint
        )),
        "{err}"
    );
    // The head is what counts: a signed head over an unsigned parent passes.
    repo.write("intents/httpbin.yaml", intent("/signed-again"));
    let head = signed_commit(repo.path(), &ed, "signed again");
    assert_eq!(validate(&head).0, 0);
    let (code, err) = tidegate(&[
        "diff",
        "--repo",
        &dir,
        "--base",
        &unsigned,
        "--head",
        &head,
        "--verify-commits",
        f,
    ]);
    assert_eq!(code, 2, "the base is not checked: {err}");

    // A malformed file: an error (exit 2) naming the file and the line.
    let bad = allowed(
        keys.path(),
        &["# keys".into(), "ed@example.com ssh-ed25519".into()],
    );
    let (code, err) = tidegate(&[
        "validate",
        "--repo",
        &dir,
        "--verify-commits",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{}:2: ", bad.display())), "{err}");
}

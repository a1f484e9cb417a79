//! Authenticated remotes against a real Git server (tests/common/git_server.rs): HTTPS
//! with basic auth and a private CA (lighttpd + git-http-backend), SSH with a key and
//! strictly checked host keys (sshd + git-shell). Secrets never show in /status, /metrics,
//! the log or error messages. Needs root; without it (or without the servers) these tests
//! say why and return, and fail under CI=true.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::git_server::{self, GitServer};
use tidegate::app::{Running, ServeOptions};
use tidegate::gitsync::auth::GitAuth;
use tidegate::test_helpers::{TempRepo, eventually, http_get};

const WAIT: Duration = Duration::from_secs(20);
const USER: &str = "tidegate-bot";
const REPO: &str = "config.git";

/// Everything this test binary logs (every test's: each uses its own secrets).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;
impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| LogWriter)
        .with_ansi(false)
        .with_env_filter("debug")
        .try_init();
}

fn logs() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

/// A token no other test uses, so a leak is attributable.
fn token(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("tok-{label}-{}-{nanos:x}", std::process::id())
}

fn config(path: &str) -> TempRepo {
    let mut repo = TempRepo::new();
    write_intent(&repo, path);
    repo.commit("one");
    repo
}

fn write_intent(repo: &TempRepo, path: &str) {
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080).replace(
            "value: /headers}",
            &format!("value: /headers}}\n    - path: {{type: PathPrefix, value: {path}}}"),
        ),
    );
}

fn write_secret(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "{text}").unwrap();
}

fn options(url: String, auth: GitAuth, mirror: &Path) -> ServeOptions {
    let mut opts = ServeOptions::new(url);
    opts.branch = Some("main".into());
    opts.poll_interval = Duration::from_millis(200);
    opts.mirror_dir = Some(mirror.join("mirror"));
    opts.git_auth = auth;
    opts
}

/// Starts a server that may never serve anything (its source fails).
async fn start_failing(opts: ServeOptions) -> Running {
    let xds = tidegate::app::listen("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tidegate::app::start(opts, xds, admin).await.unwrap()
}

/// Waits until /status reports a source error containing `needle`; returns it.
async fn source_error(server: &Running, needle: &str) -> String {
    eventually("the source error", WAIT, || async {
        let st = common::status(server.admin).await;
        match st["source_error"].as_str() {
            Some(e) if e.contains(needle) => Ok(e.to_owned()),
            _ => Err(format!("{st:#}")),
        }
    })
    .await
}

async fn metrics(server: &Running) -> String {
    let r = http_get(server.admin, "localhost", "/metrics")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    r.body
}

fn source_errors_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tidegate_source_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tidegate_source_errors_total in\n{metrics}"))
}

/// None of `secrets` (nor their basic-auth encodings) is in `text`.
#[track_caller]
fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
    }
}

#[tokio::test]
async fn https_token_right_wrong_and_rotated_without_a_restart() {
    if !git_server::available() {
        return;
    }
    capture_logs();
    let (old, new) = (token("old"), token("new"));
    let mut server = GitServer::new();
    server.start_https(USER, &old);
    let mut repo = config("/one");
    let one = repo.repo().head().unwrap().target().unwrap().to_string();
    server.publish(REPO, &repo);

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write_secret(&token_file, &old);
    let auth = GitAuth {
        username: Some(USER.into()),
        token_file: Some(token_file.clone()),
        ca_file: Some(server.ca_file()),
        ..Default::default()
    };
    let tidegate = common::start_with(options(server.https_url(REPO), auth, dir.path())).await;
    tidegate.wait_served(&one, WAIT).await.unwrap();

    // The server's password changes (the token was rotated there) and a commit lands:
    // tidegate's token is wrong now. Reported, counted; the last good commit serves on.
    server.set_password(USER, &new);
    write_intent(&repo, "/two");
    let two = repo.commit("two");
    server.publish(REPO, &repo);
    let before = source_errors_total(&metrics(&tidegate).await);
    let err = source_error(&tidegate, "ls-remote").await;
    assert!(err.contains("authentication failed"), "{err}");
    tidegate.sync_now();
    eventually("the failures counted", WAIT, || async {
        let n = source_errors_total(&metrics(&tidegate).await);
        if n > before {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    assert_eq!(tidegate.current().await.origin.revision, one);
    let secrets = [old.as_str(), new.as_str()];
    assert_hidden(
        "/status",
        &common::status(tidegate.admin).await.to_string(),
        &secrets,
    );
    assert_hidden("/metrics", &metrics(&tidegate).await, &secrets);

    // The file is rotated too: the next fetch reads it, no restart.
    write_secret(&token_file, &new);
    tidegate.sync_now();
    tidegate.wait_served(&two, WAIT).await.unwrap();
    assert!(common::status(tidegate.admin).await["source_error"].is_null());
    assert_hidden("the log", &logs(), &secrets);
}

#[tokio::test]
async fn a_private_ca_must_be_named_to_trust_the_server() {
    if !git_server::available() {
        return;
    }
    capture_logs();
    let password = token("ca");
    let mut server = GitServer::new();
    server.start_https(USER, &password);
    server.publish(REPO, &config("/one"));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write_secret(&token_file, &password);
    let auth = GitAuth {
        username: Some(USER.into()),
        token_file: Some(token_file),
        ..Default::default()
    };
    let tidegate = start_failing(options(server.https_url(REPO), auth, dir.path())).await;
    let err = source_error(&tidegate, "certificate").await;
    assert!(err.contains("verif"), "{err}");
    assert!(
        !tidegate
            .state
            .ready
            .load(std::sync::atomic::Ordering::Acquire)
    );
    assert_hidden("the source error", &err, &[&password]);
    assert_hidden("the log", &logs(), &[&password]);
}

#[test]
fn explain_and_diff_reach_an_authenticated_remote_with_the_cli_flags() {
    if !git_server::available() {
        return;
    }
    let password = token("cli");
    let mut server = GitServer::new();
    server.start_https(USER, &password);
    let mut repo = config("/one");
    let one = repo.repo().head().unwrap().target().unwrap().to_string();
    write_intent(&repo, "/two");
    let two = repo.commit("two");
    server.publish(REPO, &repo);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write_secret(&token_file, &password);
    let url = server.https_url(REPO);
    let ca = server.ca_file();
    let auth = [
        "--git-username",
        USER,
        "--git-token-file",
        common::arg(&token_file),
        "--git-ca-file",
        common::arg(&ca),
    ];
    let explain = |auth: &[&str]| {
        let mut args = vec![
            "explain",
            "--repo",
            &url,
            "--proxy",
            "httpbin-gateway.httpbin",
        ];
        args.extend(auth);
        args.push("http://httpbin.example.com:18080/two");
        common::tidegate(&args)
    };
    let out = explain(&auth);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("httpbin"),
        "{}",
        common::text(&out)
    );

    let mut args = vec!["diff", "--repo", &url, "--base", &one, "--head", &two];
    args.extend(auth);
    let out = common::tidegate(&args);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));

    // A wrong token: an error naming the failure, never the token (nor the URL's
    // credentials when the URL carries them).
    write_secret(&token_file, "not-the-token");
    let out = explain(&auth);
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("authentication failed"),
        "{}",
        common::text(&out)
    );
    assert_hidden("explain's output", &common::text(&out), &["not-the-token"]);
    let with_creds = url.replace(
        "https://",
        &format!("https://{USER}:url-secret-{password}@"),
    );
    let out = common::tidegate(&[
        "explain",
        "--repo",
        &with_creds,
        "--proxy",
        "httpbin-gateway.httpbin",
        "http://httpbin.example.com:18080/two",
    ]);
    assert!(!out.status.success());
    assert_hidden("explain's output", &common::text(&out), &["url-secret"]);
}

#[tokio::test]
async fn ssh_with_the_right_key_is_served_and_a_wrong_key_is_refused() {
    if !git_server::available() {
        return;
    }
    capture_logs();
    let mut server = GitServer::new();
    let key = server.new_key("client");
    server.start_ssh(&key);
    let repo = config("/one");
    let one = repo.repo().head().unwrap().target().unwrap().to_string();
    server.publish(REPO, &repo);
    let url = server.ssh_url(REPO);

    let dir = tempfile::tempdir().unwrap();
    let auth = GitAuth {
        ssh_key_file: Some(git_server::private(&key).to_owned()),
        ssh_known_hosts: Some(server.known_hosts()),
        ..Default::default()
    };
    let tidegate = common::start_with(options(url.clone(), auth, dir.path())).await;
    tidegate
        .wait_served(&one, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", server.ssh_log()));

    let other = server.new_key("stranger");
    let dir = tempfile::tempdir().unwrap();
    let auth = GitAuth {
        ssh_key_file: Some(git_server::private(&other).to_owned()),
        ssh_known_hosts: Some(server.known_hosts()),
        ..Default::default()
    };
    let refused = start_failing(options(url, auth, dir.path())).await;
    let err = source_error(&refused, "Permission denied").await;
    assert!(err.contains("publickey"), "{err}");
    assert!(
        !refused
            .state
            .ready
            .load(std::sync::atomic::Ordering::Acquire)
    );
}

#[tokio::test]
async fn an_unknown_host_key_is_a_source_error_and_is_never_recorded() {
    if !git_server::available() {
        return;
    }
    capture_logs();
    let mut server = GitServer::new();
    let key = server.new_key("client");
    server.start_ssh(&key);
    server.publish(REPO, &config("/one"));

    // A known_hosts that trusts another host only.
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = server.new_key("elsewhere");
    let other_host = std::fs::read_to_string(elsewhere.with_extension("pub")).unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, format!("git.example.com {other_host}")).unwrap();
    let before = std::fs::read(&known).unwrap();
    let auth = GitAuth {
        ssh_key_file: Some(git_server::private(&key).to_owned()),
        ssh_known_hosts: Some(known.clone()),
        ..Default::default()
    };
    let tidegate = start_failing(options(server.ssh_url(REPO), auth, dir.path())).await;
    let err = source_error(&tidegate, "Host key verification failed").await;
    assert!(err.contains("ls-remote"), "{err}");
    // Asked again: still refused, still not written down.
    tidegate.sync_now();
    let again = source_errors_total(&metrics(&tidegate).await);
    eventually("a second failure", WAIT, || async {
        let n = source_errors_total(&metrics(&tidegate).await);
        if n > again {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    assert!(
        !tidegate
            .state
            .ready
            .load(std::sync::atomic::Ordering::Acquire)
    );
    assert_eq!(std::fs::read(&known).unwrap(), before);
}

#[test]
fn an_https_push_runs_the_post_receive_hook() {
    if !git_server::available() {
        return;
    }
    let password = token("hook");
    let mut server = GitServer::new();
    server.start_https(USER, &password);
    let mut repo = config("/one");
    server.publish(REPO, &repo);
    // What a post-receive hook is given on stdin: `<old> <new> <ref>` per updated ref.
    let seen = server.root().join("hook-saw");
    server.set_hook(
        REPO,
        "post-receive",
        &format!("#!/bin/sh\ncat > '{}'\n", seen.display()),
    );
    write_intent(&repo, "/two");
    let two = repo.commit("two");
    server.push_https(REPO, &repo, USER, &password);
    let got = std::fs::read_to_string(&seen).expect("the hook ran");
    assert!(
        got.trim_end().ends_with(&format!("{two} refs/heads/main")),
        "{got}"
    );
}

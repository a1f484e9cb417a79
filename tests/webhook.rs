//! `serve --webhook`: push events from a Git server make tidegate look at once instead of
//! at the next poll. A real bare repository reached through a `file://` URL (so mirrored
//! and polled, never watched) with a 300 s poll interval: anything served quickly was
//! served because of an event. The first test's events come from the repository's own
//! `post-receive` hook (a shell script signing with `openssl` and posting with `curl`, as a
//! forge would); the others post by hand over loopback to reach every answer.

mod common;

use common::{git_cli as git, intent_with_path as intent};

use common::hooks::{hook_tools, install_hook};

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tidegate::app::{Running, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);
/// The poll interval: the safety net, far longer than any test waits.
const POLL: Duration = Duration::from_secs(300);
/// How long to watch to be sure something does not happen (a triggered look starts
/// within the loop's 20 ms debounce).
const QUIET: Duration = Duration::from_millis(500);
const SECRET: &str = "It's a Secret to Everybody";

/// A bare repository (the Git server), a clone pushing to it, and tidegate following its
/// `main` (and `preview/*`) through a `file://` URL, with the webhook on a port-0
/// listener.
struct Forge {
    bare: tempfile::TempDir,
    clone: tempfile::TempDir,
    mirror: tempfile::TempDir,
    secret_file: PathBuf,
    _secret_dir: tempfile::TempDir,
    server: Running,
    hook: std::net::SocketAddr,
}

impl Forge {
    async fn start() -> (Self, String) {
        let bare = tempfile::tempdir().unwrap();
        git(bare.path(), &["init", "--bare", "-q"]);
        let clone = tempfile::tempdir().unwrap();
        git(
            clone.path(),
            &["clone", "-q", bare.path().to_str().unwrap(), "."],
        );
        std::fs::create_dir_all(clone.path().join("intents")).unwrap();
        std::fs::write(clone.path().join("intents/httpbin.yaml"), intent("/one")).unwrap();
        git(clone.path(), &["add", "-A"]);
        git(clone.path(), &["commit", "-qm", "one"]);
        git(clone.path(), &["push", "-q", "origin", "HEAD:main"]);
        let one = git(clone.path(), &["rev-parse", "HEAD"]);

        let secret_dir = tempfile::tempdir().unwrap();
        let secret_file = secret_dir.path().join("webhook-secret");
        // With a trailing newline, as `echo` writes it: not part of the secret.
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        let mirror = tempfile::tempdir().unwrap();
        let mut opts = ServeOptions::new(format!("file://{}", bare.path().display()));
        opts.branch = Some("main".into());
        opts.preview_branches = Some("preview/*".into());
        opts.poll_interval = POLL;
        opts.mirror_dir = Some(mirror.path().join("mirror"));
        opts.webhook_secret_file = Some(secret_file.clone());
        let server = start(opts).await.expect("start");
        server.wait_served(&one, WAIT).await.unwrap();
        let hook = server.webhook.expect("webhook address");
        (
            Self {
                bare,
                clone,
                mirror,
                secret_file,
                _secret_dir: secret_dir,
                server,
                hook,
            },
            one,
        )
    }

    /// Commits a change to `branch` of the clone and pushes it; returns the commit.
    fn push(&self, branch: &str, path: &str) -> String {
        std::fs::write(self.clone.path().join("intents/httpbin.yaml"), intent(path)).unwrap();
        git(self.clone.path(), &["commit", "-qam", path]);
        git(
            self.clone.path(),
            &["push", "-q", "origin", &format!("HEAD:{branch}")],
        );
        git(self.clone.path(), &["rev-parse", "HEAD"])
    }

    /// Whether the mirror tidegate fetches into has commit `sha`.
    fn fetched(&self, sha: &str) -> bool {
        let Ok(repo) = git2::Repository::open_bare(self.mirror.path().join("mirror")) else {
            return false;
        };
        git2::Oid::from_str(sha).is_ok_and(|oid| repo.find_commit(oid).is_ok())
    }

    async fn metric(&self, name: &str) -> f64 {
        metric(self.server.admin, name).await
    }
}

async fn start(opts: ServeOptions) -> anyhow::Result<Running> {
    let xds = tidegate::app::listen("127.0.0.1:0").await?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    tidegate::app::start_with_webhook(opts, xds, admin, Some(webhook)).await
}

/// The value of the sample `name` (with its labels, as exposed) on `/metrics`; 0 when
/// absent (a family with no sample yet).
async fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let r = tidegate::test_helpers::http_get(admin, "localhost", "/metrics")
        .await
        .expect("GET /metrics");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const CHECKS: &str = "tidegate_source_checks_total";

fn signature(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

fn push_event(branch: &str) -> Vec<u8> {
    format!(r#"{{"ref":"refs/heads/{branch}","before":"0","after":"1","commits":[]}}"#).into_bytes()
}

/// One HTTP/1.1 request with `body` over a fresh connection; the status and body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} /hooks/tidegate HTTP/1.1\r\nhost: tidegate\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await.expect("send head");
    sock.write_all(body).await.expect("send body");
    read_response(&mut sock).await
}

async fn read_response(sock: &mut tokio::net::TcpStream) -> (u16, String) {
    try_read_response(sock).await.expect("an HTTP response")
}

/// The response, or `None` if the connection was reset before one could be read.
async fn try_read_response(sock: &mut tokio::net::TcpStream) -> Option<(u16, String)> {
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .ok()?;
    let r = tidegate::test_helpers::HttpResponse::parse(&raw)
        .unwrap_or_else(|| panic!("not HTTP: {}", String::from_utf8_lossy(&raw)));
    Some((r.status, r.body))
}

async fn post_signed(addr: std::net::SocketAddr, secret: &str, body: &[u8]) -> (u16, String) {
    let sig = signature(secret, body);
    request(addr, "POST", &[("x-hub-signature-256", &sig)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_served_at_once_through_the_servers_post_receive_hook() {
    if !hook_tools() {
        return;
    }
    let (forge, _) = Forge::start().await;
    let log = forge.bare.path().join("webhook.log");
    install_hook(
        forge.bare.path(),
        &forge.secret_file,
        &format!("http://{}/hooks/tidegate", forge.hook),
        &log,
    );
    let mut times = Vec::new();
    for i in 0..5 {
        std::fs::write(
            forge.clone.path().join("intents/httpbin.yaml"),
            intent(&format!("/push{i}")),
        )
        .unwrap();
        git(forge.clone.path(), &["commit", "-qam", "push"]);
        let sha = git(forge.clone.path(), &["rev-parse", "HEAD"]);
        // From the push (which returns once the hook, and so the event, is done) to the
        // commit being served.
        let pushed = Instant::now();
        git(forge.clone.path(), &["push", "-q", "origin", "HEAD:main"]);
        forge.server.wait_served(&sha, WAIT).await.unwrap();
        times.push(pushed.elapsed());
    }
    let answers = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        answers.lines().collect::<Vec<_>>(),
        vec!["202"; 5],
        "the hook's curl answers"
    );
    assert!(
        forge
            .metric(r#"tidegate_webhook_events_total{result="triggered"}"#)
            .await
            >= 1.0
    );
    let max = times.iter().max().unwrap();
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "webhook: git push -> served, poll interval {POLL:?}: median {:?}, max {max:?} (of {:?})",
        sorted[sorted.len() / 2],
        times
    );
    // Anything near the poll interval would mean the event was lost and the poll served it.
    assert!(*max < Duration::from_secs(5), "push -> served: {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_events_are_refused_counted_and_fetch_nothing() {
    let (forge, one) = Forge::start().await;
    let two = forge.push("main", "/two");
    let checks = forge.metric(CHECKS).await;
    let event = push_event("main");

    let (status, _) = post_signed(forge.hook, "not the secret", &event).await;
    assert_eq!(status, 401);
    let (status, _) = request(forge.hook, "POST", &[], &event).await;
    assert_eq!(status, 401);
    // A signature over another body: replaying a signature does not work either.
    let sig = signature(SECRET, &push_event("other"));
    let (status, _) = request(forge.hook, "POST", &[("x-hub-signature-256", &sig)], &event).await;
    assert_eq!(status, 401);
    let (status, _) = request(forge.hook, "POST", &[("x-gitlab-token", "wrong")], &event).await;
    assert_eq!(status, 401);
    let (status, body) = request(forge.hook, "GET", &[], b"").await;
    assert_eq!((status, body.as_str()), (405, "push events are POSTed\n"));

    tokio::time::sleep(QUIET).await;
    assert_eq!(
        forge.metric(CHECKS).await,
        checks,
        "no look at the repository"
    );
    assert!(!forge.fetched(&two), "nothing fetched");
    assert_eq!(forge.server.current().await.origin.revision, one);
    assert_eq!(
        forge
            .metric(r#"tidegate_webhook_rejected_total{reason="bad-signature"}"#)
            .await,
        3.0
    );
    assert_eq!(
        forge
            .metric(r#"tidegate_webhook_rejected_total{reason="missing-signature"}"#)
            .await,
        1.0
    );

    // GitLab's token, right: fetched and served.
    let (status, _) = request(forge.hook, "POST", &[("x-gitlab-token", SECRET)], &event).await;
    assert_eq!(status, 202);
    forge.server.wait_served(&two, WAIT).await.unwrap();
    assert_eq!(
        forge
            .metric(r#"tidegate_webhook_events_total{result="triggered"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_branches_not_served_trigger_nothing() {
    let (forge, one) = Forge::start().await;
    let other = forge.push("other", "/other");
    let checks = forge.metric(CHECKS).await;
    for event in [
        push_event("other"),
        br#"{"ref":"refs/tags/main"}"#.to_vec(),
        // GitHub's `ping` when a hook is created: no ref.
        br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec(),
    ] {
        let (status, body) = post_signed(forge.hook, SECRET, &event).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ignored: not a followed branch\n")
        );
    }
    let (status, _) = post_signed(forge.hook, SECRET, b"payload=%7B%7D").await;
    assert_eq!(status, 400, "a form-encoded body is refused with a hint");
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        forge.metric(CHECKS).await,
        checks,
        "no look at the repository"
    );
    assert!(!forge.fetched(&other));
    assert_eq!(
        forge
            .metric(r#"tidegate_webhook_events_total{result="ignored"}"#)
            .await,
        3.0
    );

    // A preview branch the pattern matches is looked at.
    let preview = forge.push("preview/login", "/preview");
    let (status, _) = post_signed(forge.hook, SECRET, &push_event("preview/login")).await;
    assert_eq!(status, 202);
    forge
        .server
        .wait_preview_served("preview/login", &preview, WAIT)
        .await
        .unwrap();
    assert_eq!(forge.server.current().await.origin.revision, one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let (forge, _) = Forge::start().await;
    let size = tidegate::webhook::MAX_BODY + 1;
    // Headers only, asking to be told before sending the body (as curl does for large
    // bodies): the answer comes without the body being read or sent.
    let mut sock = tokio::net::TcpStream::connect(forge.hook).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: tidegate\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {size}\r\nexpect: 100-continue\r\nx-gitlab-token: {SECRET}\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let (status, _) = read_response(&mut sock).await;
    assert_eq!(status, 413);
    // A chunked body (no declared length) is cut off at the limit.
    let mut sock = tokio::net::TcpStream::connect(forge.hook).await.unwrap();
    sock.write_all(
        format!("POST / HTTP/1.1\r\nhost: tidegate\r\nconnection: close\r\ntransfer-encoding: chunked\r\nx-gitlab-token: {SECRET}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    // Sent until over the limit or the server stops reading and closes (then a write
    // fails, or its answer is lost to the reset: either way it has answered).
    let mut open = true;
    while open && sent <= size {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        open = sock.write_all(&frame).await.is_ok();
        sent += chunk.len();
    }
    if open
        && sock.write_all(b"0\r\n\r\n").await.is_ok()
        && let Some((status, _)) = try_read_response(&mut sock).await
    {
        assert_eq!(status, 413);
    }
    assert_eq!(
        forge
            .metric(r#"tidegate_webhook_rejected_total{reason="too-large"}"#)
            .await,
        2.0
    );
    // Just under the limit is read (and authenticated).
    let mut big = push_event("main");
    big.resize(tidegate::webhook::MAX_BODY, b' ');
    let (status, _) = request(forge.hook, "POST", &[("x-gitlab-token", SECRET)], &big).await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_is_a_few_looks() {
    let (forge, _) = Forge::start().await;
    let two = forge.push("main", "/two");
    let checks = forge.metric(CHECKS).await;
    let event = push_event("main");
    let posts: Vec<_> = (0..20)
        .map(|_| {
            let (addr, event) = (forge.hook, event.clone());
            tokio::spawn(async move { post_signed(addr, SECRET, &event).await.0 })
        })
        .collect();
    for p in posts {
        assert_eq!(p.await.unwrap(), 202);
    }
    forge.server.wait_served(&two, WAIT).await.unwrap();
    tokio::time::sleep(QUIET).await;
    let looks = forge.metric(CHECKS).await - checks;
    let triggered = forge
        .metric(r#"tidegate_webhook_events_total{result="triggered"}"#)
        .await;
    let coalesced = forge
        .metric(r#"tidegate_webhook_events_total{result="coalesced"}"#)
        .await;
    eprintln!("20 events: {looks} look(s); {triggered} triggered, {coalesced} coalesced");
    assert_eq!(triggered + coalesced, 20.0);
    // One look per event would be 20; the one-slot trigger and the loop's debounce make it
    // one, or a few when events arrive while a look runs.
    assert!((1.0..=5.0).contains(&looks), "{looks} looks for 20 events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_applies_without_a_restart() {
    let (forge, _) = Forge::start().await;
    let event = push_event("main");
    assert_eq!(post_signed(forge.hook, SECRET, &event).await.0, 202);
    // Rotation, step 1: both listed while the forge is updated.
    std::fs::write(&forge.secret_file, format!("{SECRET}\nnew secret\n")).unwrap();
    assert_eq!(post_signed(forge.hook, SECRET, &event).await.0, 202);
    assert_eq!(post_signed(forge.hook, "new secret", &event).await.0, 202);
    // Step 2: the old one removed.
    std::fs::write(&forge.secret_file, "new secret\n").unwrap();
    assert_eq!(post_signed(forge.hook, SECRET, &event).await.0, 401);
    assert_eq!(post_signed(forge.hook, "new secret", &event).await.0, 202);
    let (status, _) = request(
        forge.hook,
        "POST",
        &[("x-gitlab-token", "new secret")],
        &event,
    )
    .await;
    assert_eq!(status, 202);
    // Caught halfway (emptied, or gone): the last secrets read stay; the endpoint neither
    // opens nor shuts.
    std::fs::write(&forge.secret_file, "").unwrap();
    assert_eq!(post_signed(forge.hook, "new secret", &event).await.0, 202);
    assert_eq!(post_signed(forge.hook, "", &event).await.0, 401);
    std::fs::remove_file(&forge.secret_file).unwrap();
    assert_eq!(post_signed(forge.hook, "new secret", &event).await.0, 202);
    assert_eq!(post_signed(forge.hook, SECRET, &event).await.0, 401);
}

#[tokio::test]
async fn a_webhook_without_a_usable_secret_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut opts = ServeOptions::new(repo.to_string_lossy());
    opts.webhook_secret_file = Some(dir.path().join("missing"));
    let e = start(opts.clone())
        .await
        .err()
        .expect("missing file refused");
    assert!(e.to_string().contains("missing"), "{e}");
    std::fs::write(dir.path().join("empty"), "\n  \n").unwrap();
    opts.webhook_secret_file = Some(dir.path().join("empty"));
    let e = start(opts.clone()).await.err().expect("empty file refused");
    assert!(e.to_string().contains("no secret"), "{e}");
    opts.webhook_secret_file = None;
    let e = start(opts).await.err().expect("no secret file refused");
    assert!(e.to_string().contains("--webhook-secret-file"), "{e}");
}

#[test]
fn the_webhook_flags_go_together() {
    let o = common::tidegate(&["serve", "--webhook", "127.0.0.1:0"]);
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("--webhook-secret-file"),
        "{}",
        common::text(&o)
    );
    let o = common::tidegate(&["serve", "--webhook-secret-file", "secret"]);
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("--webhook <"),
        "{}",
        common::text(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-secret");
    let o = common::tidegate(&[
        "serve",
        "--repo",
        common::arg(dir.path()),
        "--xds",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--webhook",
        "127.0.0.1:0",
        "--webhook-secret-file",
        common::arg(&missing),
    ]);
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("missing-secret"),
        "{}",
        common::text(&o)
    );
}

#[tokio::test]
async fn serve_prints_where_the_webhook_listens_and_answers_there() {
    use std::io::BufRead;
    let mut repo = tidegate::test_helpers::TempRepo::new();
    repo.write("intents/httpbin.yaml", intent("/one"));
    repo.commit("one");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "serve",
            "--repo",
            common::arg(repo.path()),
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--webhook",
            "127.0.0.1:0",
            "--webhook-secret-file",
            common::arg(&secret),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run tidegate serve");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("webhook: "));
    let addr: std::net::SocketAddr = line
        .as_deref()
        .and_then(|l| l.strip_prefix("webhook: http://")?.strip_suffix('/'))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no webhook address printed: {line:?}"));
    let event = push_event("main");
    let answers = (
        request(addr, "GET", &[], b"").await.0,
        post_signed(addr, "wrong", &event).await.0,
        post_signed(addr, SECRET, &event).await.0,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answers, (405, 401, 202));
}

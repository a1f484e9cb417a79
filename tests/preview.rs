//! Preview branches (`serve --preview-branches`), as ADS clients see them over a real gRPC
//! connection, with a real repository and real commits: a proxy naming a branch gets that
//! branch's config, and nothing that happens on one branch is sent to another's proxies.
//! (Real Envoys through main and preview gateways are in tests/preview_envoy.rs.)

mod common;

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::{Message, Name};
use tidegate::test_helpers::TempRepo;
use tidegate::test_helpers::ads::{SotwClient, node};

/// How long a client listens to be sure nothing comes.
const QUIET: Duration = Duration::from_millis(500);
const SOON: Duration = Duration::from_secs(10);
const GATEWAY: &str = "httpbin-gateway.httpbin";

/// The httpbin intent with its backend on `port`: the cluster's name says which commit a
/// proxy was served.
fn intent(port: u16) -> String {
    common::httpbin_intent("gateway-api", 18080).replace("port: 8000", &format!("port: {port}"))
}

/// A node that asks for branch `r#ref`'s config.
fn node_at(r#ref: &str) -> Node {
    let mut n = node(GATEWAY);
    n.id = format!("{GATEWAY}~{ref}");
    n.metadata = Some(Struct {
        fields: [(
            "tidegate.io/ref".to_owned(),
            Value {
                kind: Some(Kind::StringValue(r#ref.to_owned())),
            },
        )]
        .into(),
    });
    n
}

fn clusters(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| Cluster::decode(a.value.as_slice()).unwrap().name)
        .collect()
}

fn cluster_on(port: u16) -> Vec<String> {
    vec![format!("httpbin.httpbin.svc.cluster.local:{port}")]
}

/// Subscribes to CDS, checks the first response names `want`, and acknowledges it.
async fn subscribed(server: &tidegate::app::Running, node: Node, want: &[String]) -> SotwClient {
    let mut c = SotwClient::connect(server.xds, node).await;
    c.subscribe(&Cluster::type_url(), &[], "").await;
    let r = c.recv(SOON).await.expect("first CDS response");
    assert_eq!(clusters(&r), want);
    c.ack(&r, &[]).await;
    c
}

/// The next CDS response, acknowledged.
async fn next_clusters(c: &mut SotwClient) -> Vec<String> {
    let r = c.recv(SOON).await.expect("a CDS response");
    c.ack(&r, &[]).await;
    clusters(&r)
}

fn options(repo: &str) -> tidegate::app::ServeOptions {
    let mut o = tidegate::app::ServeOptions::new(repo);
    o.branch = Some("main".into());
    o.preview_branches = Some("preview/*".into());
    o
}

/// `/status`'s entry for `r#ref`.
fn ref_status(status: &serde_json::Value, r#ref: &str) -> serde_json::Value {
    status["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .find(|r| r["ref"] == r#ref)
        .cloned()
        .unwrap_or_else(|| panic!("no ref {ref} in {status:#}"))
}

/// The CDS responses sent so far to the stream of node `id`.
fn responses(status: &serde_json::Value, id: &str) -> u64 {
    status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == id)
        .unwrap_or_else(|| panic!("no stream of {id}: {status:#}"))["types"]["CDS"]["responses"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_preview_commit_reaches_only_its_proxies_and_a_merge_reaches_main() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(8000));
    let base = repo.commit("httpbin on 8000");
    repo.checkout("preview/port");
    let server = common::start_with(options(&repo.path().to_string_lossy())).await;
    server
        .wait_preview_served("preview/port", &base, SOON)
        .await
        .unwrap();

    let main_node = node(GATEWAY);
    let main_id = main_node.id.clone();
    let mut main = subscribed(&server, main_node, &cluster_on(8000)).await;
    let mut preview = subscribed(&server, node_at("preview/port"), &cluster_on(8000)).await;

    // A commit on the preview branch: its proxy gets it, the main proxy is sent nothing.
    repo.write("intents/httpbin.yaml", intent(9000));
    let moved = repo.commit("httpbin on 9000");
    server
        .wait_preview_served("preview/port", &moved, SOON)
        .await
        .unwrap();
    assert_eq!(next_clusters(&mut preview).await, cluster_on(9000));
    assert!(
        main.recv(QUIET).await.is_none(),
        "main proxy was sent something"
    );
    let status = common::status(server.admin).await;
    assert_eq!(responses(&status, &main_id), 1, "{status:#}");
    assert_eq!(status["served"]["revision"], base.as_str());
    let p = ref_status(&status, "preview/port");
    assert_eq!(p["state"], "serving");
    assert_eq!(p["served"], moved.as_str());
    assert_eq!(p["proxies"], 1);
    let m = ref_status(&status, "main");
    assert_eq!(
        (m["served"].as_str(), m["proxies"].as_u64()),
        (Some(base.as_str()), Some(1))
    );
    let preview_stream = status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ref"] == "preview/port")
        .cloned()
        .expect("preview stream in /status");
    assert_eq!(preview_stream["known"], true, "{preview_stream:#}");

    // Merged: the main proxy gets the change; the preview proxy, which has it, nothing.
    repo.checkout("main");
    let merged = repo.merge("preview/port", "merge preview/port");
    server.wait_served(&merged, SOON).await.unwrap();
    assert_eq!(next_clusters(&mut main).await, cluster_on(9000));
    assert!(
        preview.recv(QUIET).await.is_none(),
        "preview proxy was sent something"
    );

    let metrics = tidegate::test_helpers::http_get(server.admin, "localhost", "/metrics")
        .await
        .unwrap()
        .body;
    for line in [
        "tidegate_served_commits_total{ref=\"main\"} 2",
        "tidegate_served_commits_total{ref=\"preview/port\"} 2",
        "tidegate_connected_proxies{protocol=\"sotw\",ref=\"main\"} 1",
        "tidegate_connected_proxies{protocol=\"sotw\",ref=\"preview/port\"} 1",
    ] {
        assert!(
            metrics.contains(&format!("{line}\n")),
            "{line} not in\n{metrics}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_preview_commit_is_rejected_for_its_branch_only() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(8000));
    let base = repo.commit("httpbin");
    repo.checkout("preview/broken");
    repo.write("intents/httpbin.yaml", intent(9000));
    let good = repo.commit("httpbin on 9000");
    let server = common::start_with(options(&repo.path().to_string_lossy())).await;
    server
        .wait_preview_served("preview/broken", &good, SOON)
        .await
        .unwrap();
    let mut main = subscribed(&server, node(GATEWAY), &cluster_on(8000)).await;
    let mut preview = subscribed(&server, node_at("preview/broken"), &cluster_on(9000)).await;

    repo.write(
        "intents/httpbin.yaml",
        intent(9001).replace("hostnames:", "hostnamez:"),
    );
    let bad = repo.commit("a typo");
    let errors = server
        .wait_preview_served("preview/broken", &bad, SOON)
        .await
        .expect_err("the invalid commit is rejected");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("intents/httpbin.yaml") && e.contains("hostnamez")),
        "{errors:?}"
    );
    // Neither proxy is sent anything; both keep what they have.
    assert!(preview.recv(QUIET).await.is_none());
    assert!(main.recv(QUIET).await.is_none());
    let status = common::status(server.admin).await;
    let p = ref_status(&status, "preview/broken");
    assert_eq!(p["state"], "serving");
    assert_eq!(p["served"], good.as_str());
    assert_eq!(p["head"], bad.as_str());
    assert_eq!(p["rejected"][0]["revision"], bad.as_str());
    // Reported under its ref, not the followed branch's.
    assert_eq!(status["rejected"], serde_json::json!([]));
    assert_eq!(ref_status(&status, "main")["served"], base.as_str());
    assert_eq!(ref_status(&status, "main")["head"], base.as_str());
    let metrics = tidegate::test_helpers::http_get(server.admin, "localhost", "/metrics")
        .await
        .unwrap()
        .body;
    assert!(
        metrics.contains("tidegate_rejected_commits_total{ref=\"preview/broken\"} 1\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("tidegate_rejected_commits_total{ref=\"main\"}"));

    // Fixed on the branch: served again.
    repo.write("intents/httpbin.yaml", intent(9001));
    let fixed = repo.commit("fixed");
    server
        .wait_preview_served("preview/broken", &fixed, SOON)
        .await
        .unwrap();
    assert_eq!(next_clusters(&mut preview).await, cluster_on(9001));
    assert!(main.recv(QUIET).await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_branch_is_served_through_its_grace_period_then_emptied() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(8000));
    repo.commit("httpbin");
    repo.checkout("preview/short-lived");
    repo.write("intents/httpbin.yaml", intent(9000));
    let head = repo.commit("httpbin on 9000");
    repo.checkout("main");
    let mut opts = options(&repo.path().to_string_lossy());
    opts.preview_grace = Duration::from_secs(2);
    let server = common::start_with(opts).await;
    server
        .wait_preview_served("preview/short-lived", &head, SOON)
        .await
        .unwrap();
    let mut main = subscribed(&server, node(GATEWAY), &cluster_on(8000)).await;
    let mut preview = subscribed(&server, node_at("preview/short-lived"), &cluster_on(9000)).await;

    let deleted = std::time::Instant::now();
    repo.delete_branch("preview/short-lived");
    // Gone, still served: /status says so, the proxy keeps its config.
    let status = tidegate::test_helpers::eventually("the branch seen gone", SOON, || async {
        let status = common::status(server.admin).await;
        match ref_status(&status, "preview/short-lived")["state"].as_str() {
            Some("gone") => Ok(status),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let p = ref_status(&status, "preview/short-lived");
    assert_eq!(p["served"], head.as_str());
    assert!(
        p["reason"].as_str().unwrap().contains("branch deleted"),
        "{p:#}"
    );
    // Then, once the grace period is over (and not before), an empty config.
    let emptied = next_clusters(&mut preview).await;
    assert!(
        deleted.elapsed() >= Duration::from_secs(2),
        "emptied after {:?}",
        deleted.elapsed()
    );
    assert_eq!(emptied, Vec::<String>::new());
    let status = common::status(server.admin).await;
    assert!(
        !status["refs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ref"] == "preview/short-lived"),
        "{status:#}"
    );
    assert!(main.recv(QUIET).await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn previews_over_the_cap_wait_for_a_place_and_unknown_refs_get_nothing() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(8000));
    repo.commit("httpbin");
    repo.checkout("preview/a");
    repo.write("intents/httpbin.yaml", intent(9001));
    let a = repo.commit("a");
    repo.checkout("main");
    repo.checkout("preview/b");
    repo.write("intents/httpbin.yaml", intent(9002));
    let b = repo.commit("b");
    repo.checkout("main");
    // Not a preview: the pattern does not match it.
    repo.checkout("feature/c");
    repo.checkout("main");
    let mut opts = options(&repo.path().to_string_lossy());
    opts.max_previews = 1;
    opts.preview_grace = Duration::ZERO;
    let server = common::start_with(opts).await;
    server
        .wait_preview_served("preview/a", &a, SOON)
        .await
        .unwrap();

    let status = tidegate::test_helpers::eventually("preview/b listed", SOON, || async {
        let status = common::status(server.admin).await;
        let listed = status["refs"].as_array().unwrap().len();
        if listed == 3 {
            Ok(status)
        } else {
            Err(format!("{status:#}"))
        }
    })
    .await;
    let not_served = ref_status(&status, "preview/b");
    assert_eq!(not_served["state"], "not-served");
    assert_eq!(not_served["served"], serde_json::Value::Null);
    assert!(
        not_served["reason"]
            .as_str()
            .unwrap()
            .contains("--max-previews 1 reached (serving preview/a)"),
        "{not_served:#}"
    );
    assert!(!status["refs"].to_string().contains("feature/c"));

    // A proxy of a branch not served: an empty config and a warning that says why.
    let mut waiting = SotwClient::connect(server.xds, node_at("preview/b")).await;
    waiting.subscribe(&Cluster::type_url(), &[], "").await;
    let r = waiting.recv(SOON).await.expect("CDS");
    assert_eq!(clusters(&r), Vec::<String>::new());
    waiting.ack(&r, &[]).await;
    let unknown = SotwClient::connect(server.xds, node_at("feature/c")).await;
    unknown.subscribe(&Cluster::type_url(), &[], "").await;
    let status = tidegate::test_helpers::eventually("the warnings", SOON, || async {
        let status = common::status(server.admin).await;
        let warned = status["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["warnings"].to_string().contains("is not served"))
            .count();
        if warned == 2 {
            Ok(status)
        } else {
            Err(format!("{status:#}"))
        }
    })
    .await;
    let warning = status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ref"] == "feature/c")
        .unwrap()["warnings"][0]
        .clone();
    assert_eq!(
        warning,
        "ref feature/c is not served: serving an empty config (served: main, preview/a)"
    );

    // preview/a deleted (no grace): its place goes to preview/b, whose proxy gets it.
    repo.delete_branch("preview/a");
    server
        .wait_preview_served("preview/b", &b, SOON)
        .await
        .unwrap();
    assert_eq!(next_clusters(&mut waiting).await, cluster_on(9002));
    // Its status no longer says it is not served.
    let status = common::status(server.admin).await;
    let served = status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ref"] == "preview/b")
        .cloned()
        .unwrap();
    assert_eq!(served["known"], true, "{served:#}");
    assert_eq!(served["warnings"], serde_json::json!([]), "{served:#}");
    server.stop().await;
}

#[tokio::test]
async fn a_remote_repository_serves_its_preview_branches() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(8000));
    let base = repo.commit("httpbin");
    repo.checkout("preview/remote");
    repo.write("intents/httpbin.yaml", intent(9000));
    let first = repo.commit("on 9000");
    let mirror = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.path().display());
    let mut opts = options(&url);
    opts.mirror_dir = Some(mirror.path().join("mirror"));
    let server = common::start_with(opts).await;
    server.wait_served(&base, SOON).await.unwrap();
    server
        .wait_preview_served("preview/remote", &first, SOON)
        .await
        .unwrap();
    let mut preview = subscribed(&server, node_at("preview/remote"), &cluster_on(9000)).await;

    repo.write("intents/httpbin.yaml", intent(9001));
    let second = repo.commit("on 9001");
    // A remote is polled (`ls-remote`); a webhook or a test asks for a look now.
    server.sync_now();
    server
        .wait_preview_served("preview/remote", &second, SOON)
        .await
        .unwrap();
    assert_eq!(next_clusters(&mut preview).await, cluster_on(9001));
    // The mirror keeps the branch under its own ref, so its commits survive `git gc`.
    let mirror_repo = git2::Repository::open_bare(mirror.path().join("mirror")).unwrap();
    let kept = mirror_repo
        .find_reference("refs/tidegate/previews/preview/remote")
        .unwrap()
        .target()
        .unwrap();
    assert_eq!(kept.to_string(), second);
    server.stop().await;
}

#[tokio::test]
async fn an_endpoints_change_reaches_main_and_preview_proxies_alike() {
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(8000));
    repo.commit("httpbin");
    repo.checkout("preview/same-backend");
    // A change elsewhere: the backend is the same Service in both branches.
    repo.write(
        "intents/httpbin.yaml",
        intent(8000).replace("/headers", "/anything"),
    );
    let head = repo.commit("another path");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(&endpoints, "httpbin.httpbin:8000: [\"127.0.0.1:10\"]\n").unwrap();
    let mut opts = options(&repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints.clone());
    let server = common::start_with(opts).await;
    server
        .wait_preview_served("preview/same-backend", &head, SOON)
        .await
        .unwrap();
    let cluster = "httpbin.httpbin.svc.cluster.local:8000";
    let mut clients = Vec::new();
    for n in [node(GATEWAY), node_at("preview/same-backend")] {
        let mut c = SotwClient::connect(server.xds, n).await;
        c.subscribe(&ClusterLoadAssignment::type_url(), &[cluster], "")
            .await;
        let r = c.recv(SOON).await.expect("EDS");
        c.ack(&r, &[cluster]).await;
        clients.push(c);
    }
    std::fs::write(
        &endpoints,
        "httpbin.httpbin:8000: [\"127.0.0.1:10\", \"127.0.0.1:11\"]\n",
    )
    .unwrap();
    for c in &mut clients {
        let r = c
            .recv(SOON)
            .await
            .expect("an EDS push after the file changed");
        let cla = ClusterLoadAssignment::decode(r.resources[0].value.as_slice()).unwrap();
        assert_eq!(cla.endpoints[0].lb_endpoints.len(), 2, "{:?}", c.node.id);
        c.ack(&r, &[cluster]).await;
    }
    // And both are served the very same encoding of it.
    let served = server.current().await;
    let preview = served.at_ref(Some("preview/same-backend")).unwrap();
    let variant = Default::default();
    let (m, p) = (
        served.proxy(GATEWAY, &variant),
        preview.proxy(GATEWAY, &variant),
    );
    let t = tidegate::xds::type_url::TypeUrl::Endpoint;
    assert!(std::sync::Arc::ptr_eq(
        &m.of(t).resources[cluster],
        &p.of(t).resources[cluster]
    ));
    server.stop().await;
}

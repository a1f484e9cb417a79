//! The ADS protocol as a client sees it, over a real gRPC connection on loopback: what is
//! sent, when, and what is never sent again. (Envoy itself is in tests/xds_envoy.rs.)

mod common;

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use prost::Name;
use tidegate::test_helpers::TempRepo;
use tidegate::test_helpers::ads::{DeltaClient, SotwClient, node};

const QUIET: Duration = Duration::from_millis(400);
const SOON: Duration = Duration::from_secs(5);

fn urls() -> [String; 4] {
    [
        Cluster::type_url(),
        ClusterLoadAssignment::type_url(),
        Listener::type_url(),
        RouteConfiguration::type_url(),
    ]
}

struct Fixture {
    repo: TempRepo,
    _dir: tempfile::TempDir,
    endpoints: std::path::PathBuf,
    server: tidegate::app::Running,
}

async fn fixture() -> Fixture {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080),
    );
    repo.commit("httpbin");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    // Port 8001 too: tests move the route there, and a Service port missing from the
    // file does not exist (no cluster; requests get 500).
    std::fs::write(
        &endpoints,
        "httpbin.httpbin:8000: [\"127.0.0.1:9\"]\nhttpbin.httpbin:8001: [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let server = common::start_server(repo.path(), Some(&endpoints)).await;
    Fixture {
        repo,
        _dir: dir,
        endpoints,
        server,
    }
}

#[tokio::test]
async fn sotw_serves_each_type_once_and_ignores_stale_nonces() {
    let f = fixture().await;
    let [cds, eds, lds, rds] = urls();
    let mut c = SotwClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;

    c.subscribe(&cds, &[], "").await;
    let clusters = c.recv(SOON).await.expect("CDS response");
    assert_eq!(clusters.type_url, cds);
    let cluster = Cluster::decode_any(&clusters.resources[0]);
    assert_eq!(cluster.name, "httpbin.httpbin.svc.cluster.local:8000");
    c.ack(&clusters, &[]).await;

    c.subscribe(&eds, &["httpbin.httpbin.svc.cluster.local:8000"], "")
        .await;
    let eps = c.recv(SOON).await.expect("EDS response");
    assert_eq!(eps.resources.len(), 1);
    c.ack(&eps, &["httpbin.httpbin.svc.cluster.local:8000"])
        .await;

    c.subscribe(&lds, &[], "").await;
    let listeners = c.recv(SOON).await.expect("LDS response");
    assert_eq!(
        Listener::decode_any(&listeners.resources[0]).name,
        "http.18080"
    );
    c.ack(&listeners, &[]).await;
    c.subscribe(&rds, &["http.18080"], "").await;
    let routes = c.recv(SOON).await.expect("RDS response");
    c.ack(&routes, &["http.18080"]).await;

    // Everything acknowledged: nothing more is sent.
    assert!(
        c.recv(QUIET).await.is_none(),
        "nothing changed, nothing may be sent"
    );

    // A request with a nonce the server never sent is stale: ignored, not answered.
    c.send(
        envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
            type_url: cds.clone(),
            response_nonce: "garbage".into(),
            version_info: "whatever".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(c.recv(QUIET).await.is_none());
    let st = common::status(f.server.admin).await;
    let p = &st["proxies"][0];
    assert_eq!(p["ignored_requests"], 1, "{st:#}");
    assert_eq!(p["known"], true);
    for t in ["CDS", "EDS", "LDS", "RDS"] {
        assert_eq!(p["types"][t]["responses"], 1, "{t}: {st:#}");
        assert_eq!(
            p["types"][t]["acked_version"], p["types"][t]["sent_version"],
            "{t}: {st:#}"
        );
    }
    assert_eq!(c.log.len(), 4);
}

#[tokio::test]
async fn a_nacked_version_is_not_resent_until_the_config_changes() {
    let mut f = fixture().await;
    let [cds, ..] = urls();
    let mut c = SotwClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    c.subscribe(&cds, &[], "").await;
    let first = c.recv(SOON).await.expect("CDS");
    c.nack(&first, "", "pretend the cluster is invalid").await;
    // go-control-plane would resend the rejected version at once, forever.
    assert!(
        c.recv(Duration::from_secs(1)).await.is_none(),
        "a NACKed version must not be resent"
    );
    let st = common::status(f.server.admin).await;
    let cds_status = &st["proxies"][0]["types"]["CDS"];
    assert_eq!(cds_status["responses"], 1, "{st:#}");
    assert_eq!(cds_status["nacks"], 1);
    assert_eq!(
        cds_status["last_nack"]["message"],
        "pretend the cluster is invalid"
    );
    assert_eq!(cds_status["last_nack"]["version"], first.version_info);
    assert_eq!(cds_status["state"], "NACKED");

    // The same, as Prometheus sees it.
    let m = tidegate::test_helpers::http_get(f.server.admin, "localhost", "/metrics")
        .await
        .unwrap();
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains("tidegate_xds_nacks_total{type=\"CDS\"} 1\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("tidegate_xds_pushes_total{type=\"CDS\"} 1\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("tidegate_connected_proxies{protocol=\"sotw\",ref=\"HEAD\"} 1\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("tidegate_served_commits_total{ref=\"HEAD\"} 1\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("tidegate_build_stage_seconds_count{stage=\"translate\"} 1\n"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("tidegate_commit_lag_seconds_count 1\n"),
        "{}",
        m.body
    );

    // A new commit changes the clusters: that version is sent, and can be ACKed.
    f.repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080).replace("port: 8000", "port: 8001"),
    );
    let sha = f.repo.commit("new backend port");
    f.server
        .wait_served(&sha, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let second = c.recv(SOON).await.expect("the new version");
    assert_ne!(second.version_info, first.version_info);
    assert_eq!(
        Cluster::decode_any(&second.resources[0]).name,
        "httpbin.httpbin.svc.cluster.local:8001"
    );
    c.ack(&second, &[]).await;
    assert!(c.recv(QUIET).await.is_none());
}

#[tokio::test]
async fn a_reconnecting_proxy_that_has_the_current_version_gets_nothing() {
    let f = fixture().await;
    let [cds, ..] = urls();
    let mut c = SotwClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    c.subscribe(&cds, &[], "").await;
    let r = c.recv(SOON).await.expect("CDS");
    drop(c);
    let mut again = SotwClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    again.subscribe(&cds, &[], &r.version_info).await;
    assert!(
        again.recv(QUIET).await.is_none(),
        "versions are derived from content: no needless push"
    );
    let mut stale = SotwClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    stale.subscribe(&cds, &[], "some-old-version").await;
    assert_eq!(
        stale.recv(SOON).await.expect("CDS").version_info,
        r.version_info
    );
}

#[tokio::test]
async fn an_unknown_proxy_gets_an_empty_config_and_a_warning() {
    let f = fixture().await;
    let [cds, _, lds, _] = urls();
    let mut c = SotwClient::connect(f.server.xds, node("nosuch.gateway")).await;
    c.subscribe(&cds, &[], "").await;
    let r = c.recv(SOON).await.expect("an (empty) CDS response");
    assert!(r.resources.is_empty());
    c.subscribe(&lds, &[], "").await;
    assert!(c.recv(SOON).await.expect("LDS").resources.is_empty());
    let st = common::status(f.server.admin).await;
    let p = &st["proxies"][0];
    assert_eq!(p["known"], false);
    let w = p["warnings"][0].as_str().unwrap();
    assert!(w.starts_with("no gateway nosuch.gateway in "), "{w}");
    assert!(w.contains("known: httpbin-gateway.httpbin"), "{w}");
}

#[tokio::test]
async fn unknown_types_are_ignored_and_the_stream_keeps_working() {
    let f = fixture().await;
    let [cds, ..] = urls();
    let mut c = SotwClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    c.subscribe(
        "type.googleapis.com/envoy.service.runtime.v3.Runtime",
        &["x"],
        "",
    )
    .await;
    assert!(c.recv(QUIET).await.is_none());
    c.subscribe("not a type url", &[], "").await;
    c.subscribe(&cds, &[], "").await;
    assert_eq!(c.recv(SOON).await.expect("CDS still served").type_url, cds);
    let st = common::status(f.server.admin).await;
    assert_eq!(st["proxies"][0]["ignored_requests"], 2, "{st:#}");
    assert!(
        st["proxies"][0]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("unsupported type")),
        "{st:#}"
    );
}

#[tokio::test]
async fn an_endpoints_change_pushes_eds_only() {
    let f = fixture().await;
    let [cds, eds, lds, rds] = urls();
    let mut c = SotwClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    for (t, names) in [
        (&cds, vec![]),
        (&eds, vec!["httpbin.httpbin.svc.cluster.local:8000"]),
        (&lds, vec![]),
        (&rds, vec!["http.18080"]),
    ] {
        c.subscribe(t, &names, "").await;
        let r = c.recv(SOON).await.expect("response");
        c.ack(&r, &names).await;
    }
    assert!(c.recv(QUIET).await.is_none());
    std::fs::write(
        &f.endpoints,
        "httpbin.httpbin:8000: [\"127.0.0.1:10\", \"127.0.0.1:11\"]\n",
    )
    .unwrap();
    let r = c
        .recv(SOON)
        .await
        .expect("an EDS push after the file changed");
    assert_eq!(r.type_url, eds);
    let cla = ClusterLoadAssignment::decode_any(&r.resources[0]);
    assert_eq!(cla.endpoints[0].lb_endpoints.len(), 2);
    c.ack(&r, &["httpbin.httpbin.svc.cluster.local:8000"]).await;
    assert!(c.recv(QUIET).await.is_none(), "only EDS changed");
}

#[tokio::test]
async fn delta_sends_only_what_the_proxy_lacks() {
    let mut f = fixture().await;
    let [cds, eds, ..] = urls();
    let mut c = DeltaClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    c.send(DeltaDiscoveryRequest {
        type_url: cds.clone(),
        ..Default::default()
    })
    .await;
    let r = c.recv(SOON).await.expect("CDS");
    assert_eq!(r.resources.len(), 1);
    assert!(r.removed_resources.is_empty());
    let name = r.resources[0].name.clone();
    let version = r.resources[0].version.clone();
    c.ack(&r).await;
    assert!(c.recv(QUIET).await.is_none());

    // Reconnect with what it has: nothing unchanged is resent.
    drop(c);
    let mut c = DeltaClient::connect(f.server.xds, node("httpbin-gateway.httpbin")).await;
    c.send(DeltaDiscoveryRequest {
        type_url: cds.clone(),
        initial_resource_versions: [(name.clone(), version.clone())].into(),
        ..Default::default()
    })
    .await;
    assert!(
        c.recv(QUIET).await.is_none(),
        "the proxy already has this version"
    );

    // Explicit subscriptions: EDS for one name.
    c.send(DeltaDiscoveryRequest {
        type_url: eds.clone(),
        resource_names_subscribe: vec![name.clone()],
        ..Default::default()
    })
    .await;
    let e = c.recv(SOON).await.expect("EDS");
    assert_eq!(e.resources[0].name, name);
    c.ack(&e).await;

    // A commit renames the backend port: the new cluster comes, the old one is removed.
    f.repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080).replace("port: 8000", "port: 8001"),
    );
    let sha = f.repo.commit("port 8001");
    f.server
        .wait_served(&sha, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let r = c.recv(SOON).await.expect("CDS change");
    assert_eq!(r.type_url, cds);
    assert_eq!(r.resources.len(), 1);
    assert_eq!(
        r.resources[0].name,
        "httpbin.httpbin.svc.cluster.local:8001"
    );
    assert_eq!(r.removed_resources, vec![name.clone()]);
    c.ack(&r).await;
    // EDS: the subscribed name is gone.
    let e = c.recv(SOON).await.expect("EDS removal");
    assert_eq!(e.type_url, eds);
    assert_eq!(e.removed_resources, vec![name]);

    // NACK: the rejected resources are not sent again.
    c.nack(&e, "rejected").await;
    assert!(c.recv(QUIET).await.is_none());
    let st = common::status(f.server.admin).await;
    assert_eq!(
        st["proxies"][0]["types"]["EDS"]["last_nack"]["message"], "rejected",
        "{st:#}"
    );
}

/// Decoding helper: `Any` → message.
trait DecodeAny: Sized {
    fn decode_any(any: &envoy_types::pb::google::protobuf::Any) -> Self;
}

impl<T: prost::Message + Default + Name> DecodeAny for T {
    fn decode_any(any: &envoy_types::pb::google::protobuf::Any) -> Self {
        assert_eq!(any.type_url, T::type_url());
        T::decode(any.value.as_slice()).expect("decode")
    }
}

#[tokio::test]
async fn an_ambient_gateway_without_mesh_certificates_fails_closed_and_says_why() {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("ambient", 18080),
    );
    repo.commit("ambient");
    let server = common::start_server(repo.path(), None).await;
    let [cds, ..] = urls();
    let mut c = SotwClient::connect(server.xds, node("httpbin-gateway.httpbin")).await;
    c.subscribe(&cds, &[], "").await;
    let r = c.recv(SOON).await.expect("CDS");
    // Sending around the waypoint would skip its rules: the Service's cluster has no
    // endpoints (503) until the tunnel can be built.
    let cluster = r
        .resources
        .iter()
        .map(Cluster::decode_any)
        .find(|c| c.name == "httpbin.httpbin.svc.cluster.local:8000")
        .expect("the Service's cluster");
    let endpoints = cluster.load_assignment.expect("static, empty").endpoints;
    assert!(endpoints.is_empty(), "{endpoints:?}");
    let st = common::status(server.admin).await;
    let warnings = st["proxies"][0]["warnings"].to_string();
    assert!(
        warnings.contains("httpbin.httpbin:8000 goes through waypoint waypoint.httpbin but cannot (mesh certificates are needed"),
        "{st:#}"
    );
}

#[tokio::test]
async fn the_per_type_services_serve_the_same_config() {
    use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient;
    let f = fixture().await;
    let [cds, _, _, rds] = urls();
    let mut client = ClusterDiscoveryServiceClient::connect(format!("http://{}", f.server.xds))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(node("httpbin-gateway.httpbin")),
        type_url: cds.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut stream = client
        .stream_clusters(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let r = tokio::time::timeout(SOON, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        Cluster::decode_any(&r.resources[0]).name,
        "httpbin.httpbin.svc.cluster.local:8000"
    );

    let mut client = RouteDiscoveryServiceClient::connect(format!("http://{}", f.server.xds))
        .await
        .unwrap();
    let (tx2, rx) = tokio::sync::mpsc::channel(4);
    tx2.send(DiscoveryRequest {
        node: Some(node("httpbin-gateway.httpbin")),
        type_url: rds,
        resource_names: vec!["http.18080".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut stream = client
        .stream_routes(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let r = tokio::time::timeout(SOON, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        RouteConfiguration::decode_any(&r.resources[0]).name,
        "http.18080"
    );
    let fetch = client
        .fetch_routes(DiscoveryRequest::default())
        .await
        .expect_err("fetch is not offered");
    assert_eq!(fetch.code(), tonic::Code::Unimplemented);
    drop((tx, tx2));
}

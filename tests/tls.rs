//! xDS over TLS with client certificates: a proxy gets only the config of the gateway its
//! certificate names; no certificate, no connection; plaintext only on loopback unless
//! explicitly allowed. A real Envoy subscribes over mTLS with the bootstrap tidegate
//! prints.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use prost::Name;
use tidegate::test_helpers::ads::node;
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::test_helpers::{TempRepo, free_port};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

async fn tls_server(pki: &Pki, repo: &Path) -> tidegate::app::Running {
    let (cert, key, ..) = pki.issue("server", vec![dns("localhost")]);
    let mut opts = tidegate::app::ServeOptions::new(repo.to_string_lossy());
    opts.tls = Some(tidegate::xds::server::TlsFiles {
        cert,
        key,
        client_ca: pki.ca(),
    });
    common::start_with(opts).await
}

async fn channel(
    pki: &Pki,
    xds: SocketAddr,
    client: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://localhost:{}", xds.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// Opens a SotW stream claiming `proxy` and asks for clusters: the first response or status.
async fn ask(ch: Channel, proxy: &str) -> Result<usize, tonic::Status> {
    let mut client = AggregatedDiscoveryServiceClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(node(proxy)),
        type_url: Cluster::type_url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an answer")?;
    drop(tx);
    Ok(r.map_or(0, |r| r.resources.len()))
}

fn repo() -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080),
    );
    repo.commit("httpbin");
    repo
}

#[tokio::test]
async fn a_proxy_gets_only_the_gateway_its_certificate_names() {
    let pki = Pki::new();
    let repo = repo();
    let server = tls_server(&pki, repo.path()).await;

    // SPIFFE identity of the gateway's service account: served.
    let (_, _, cert, key) = pki.issue(
        "httpbin",
        vec![uri("spiffe://cluster.local/ns/httpbin/sa/httpbin-gateway")],
    );
    let ch = channel(&pki, server.xds, Some((&cert, &key)))
        .await
        .unwrap();
    assert_eq!(ask(ch, "httpbin-gateway.httpbin").await.unwrap(), 1);

    // A DNS identity works too.
    let (_, _, cert, key) = pki.issue("dns", vec![dns("httpbin-gateway.httpbin")]);
    let ch = channel(&pki, server.xds, Some((&cert, &key)))
        .await
        .unwrap();
    assert_eq!(ask(ch, "httpbin-gateway.httpbin").await.unwrap(), 1);

    // Another gateway's certificate claiming this gateway: PERMISSION_DENIED, and logged.
    let (_, _, cert, key) = pki.issue(
        "other",
        vec![uri("spiffe://cluster.local/ns/other/sa/other-gateway")],
    );
    let ch = channel(&pki, server.xds, Some((&cert, &key)))
        .await
        .unwrap();
    let err = ask(ch, "httpbin-gateway.httpbin")
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(
        err.message()
            .contains("spiffe://cluster.local/ns/other/sa/other-gateway"),
        "{err}"
    );
    let st = common::status(server.admin).await;
    assert!(
        st["denied"][0]
            .as_str()
            .unwrap()
            .contains("may not receive the config of \"httpbin-gateway.httpbin\""),
        "{st:#}"
    );
    let m = tidegate::test_helpers::http_get(server.admin, "localhost", "/metrics")
        .await
        .unwrap();
    assert!(
        m.body.contains("tidegate_xds_denied_total 1\n"),
        "{}",
        m.body
    );

    // No client certificate: the TLS handshake itself fails; nothing is served.
    let refused = match channel(&pki, server.xds, None).await {
        Err(_) => true,
        Ok(ch) => ask(ch, "httpbin-gateway.httpbin").await.is_err(),
    };
    assert!(refused, "a client without a certificate must not be served");
}

#[test]
fn plaintext_xds_is_refused_off_loopback_unless_allowed() {
    let mut repo = repo();
    repo.commit("again");
    let port = free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "serve",
            "--repo",
            repo.path().to_str().unwrap(),
            "--xds",
            &format!("0.0.0.0:{port}"),
            "--admin",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("refusing plaintext xDS on 0.0.0.0:{port}")),
        "{err}"
    );
    // With the explicit flag it starts.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "serve",
            "--repo",
            repo.path().to_str().unwrap(),
            "--xds",
            &format!("0.0.0.0:{port}"),
            "--admin",
            "127.0.0.1:0",
            "--allow-plaintext",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line.trim(), format!("xds: 0.0.0.0:{port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_subscribes_over_mutual_tls() {
    let Some(binary) = tidegate::test_helpers::envoy_binary() else {
        eprintln!("Envoy not found: skipping");
        return;
    };
    let pki = Pki::new();
    let backend = tidegate::test_helpers::EchoServer::start("httpbin").await;
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", port),
    );
    repo.commit("httpbin");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!("httpbin.httpbin:8000: [\"{}\"]\n", backend.addr),
    )
    .unwrap();
    let (cert, key, ..) = pki.issue("server", vec![dns("localhost")]);
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.tls = Some(tidegate::xds::server::TlsFiles {
        cert,
        key,
        client_ca: pki.ca(),
    });
    opts.endpoints = Some(endpoints);
    let server = common::start_with(opts).await;

    let (cert, key, ..) = pki.issue(
        "envoy",
        vec![uri(
            "spiffe://cluster.local/ns/httpbin/sa/httpbin-gateway-istio",
        )],
    );
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let boot = tidegate::xds::bootstrap::bootstrap(&tidegate::xds::bootstrap::Options {
        r#ref: None,
        proxy: "httpbin-gateway.httpbin".into(),
        xds: server.xds.to_string(),
        delta: false,
        bind: Some("127.0.0.1".into()),
        admin: admin.to_string(),
        tls: Some(tidegate::xds::bootstrap::ClientTls {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            ca: pki.ca().display().to_string(),
            server_name: Some("localhost".into()),
        }),
    })
    .unwrap();
    let envoy = tidegate::test_helpers::Envoy::start(
        &binary,
        &serde_json::to_string(&boot).unwrap(),
        admin,
    );
    let gateway: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tidegate::test_helpers::eventually(
        "/headers through Envoy over mTLS xDS",
        Duration::from_secs(20),
        || async {
            match tidegate::test_helpers::http_get(gateway, "httpbin.example.com", "/headers").await
            {
                Some(r) if r.status == 200 => Ok(()),
                other => Err(format!("{other:?}; envoy log: {}", envoy.log())),
            }
        },
    )
    .await;
}

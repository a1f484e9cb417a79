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

/// Opens a SotW stream claiming `proxy` and asks for clusters: the stream (its request
/// sender and responses) and the first response, or the status it was refused with.
async fn open_stream(
    ch: Channel,
    proxy: &str,
) -> Result<
    (
        tokio::sync::mpsc::Sender<DiscoveryRequest>,
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
        usize,
    ),
    tonic::Status,
> {
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
    Ok((tx, stream, r.map_or(0, |r| r.resources.len())))
}

/// The number of clusters the first response to `proxy`'s request has, or the refusal.
async fn ask(ch: Channel, proxy: &str) -> Result<usize, tonic::Status> {
    open_stream(ch, proxy).await.map(|(_, _, n)| n)
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
    let endpoints = common::httpbin_endpoints(dir.path(), backend.addr);
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

/// An open ADS stream claiming `proxy` (its first CDS response received), kept open so the
/// proxy is listed in CSDS.
async fn connected(ch: Channel, proxy: &str) -> tokio::sync::mpsc::Sender<DiscoveryRequest> {
    let (tx, mut stream, _) = open_stream(ch, proxy).await.unwrap();
    // The stream lives as long as its sender and the response stream: keep both.
    tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });
    tx
}

/// The node ids CSDS on the xDS port shows the client of `ch`.
async fn csds_nodes(ch: Channel) -> Vec<String> {
    use envoy_types::pb::envoy::service::status::v3::ClientStatusRequest;
    use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
    let mut nodes: Vec<String> = ClientStatusDiscoveryServiceClient::new(ch)
        .fetch_client_status(ClientStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .config
        .into_iter()
        .map(|c| c.node.unwrap().id)
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn csds_shows_a_client_only_the_proxies_its_certificate_names() {
    let pki = Pki::new();
    let repo = repo();
    let (cert, key, ..) = pki.issue("server", vec![dns("localhost")]);
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.tls = Some(tidegate::xds::server::TlsFiles {
        cert,
        key,
        client_ca: pki.ca(),
    });
    let inspector = "spiffe://cluster.local/ns/ops/sa/inspector";
    opts.csds_identities = vec![inspector.to_owned()];
    let server = common::start_with(opts).await;

    let (_, _, httpbin_cert, httpbin_key) =
        pki.issue("httpbin", vec![dns("httpbin-gateway.httpbin")]);
    let (_, _, other_cert, other_key) = pki.issue("other", vec![dns("other-gateway.other")]);
    let (_, _, ops_cert, ops_key) = pki.issue("ops", vec![uri(inspector)]);
    let httpbin = || channel(&pki, server.xds, Some((&httpbin_cert, &httpbin_key)));
    let other = || channel(&pki, server.xds, Some((&other_cert, &other_key)));
    let _a = connected(httpbin().await.unwrap(), "httpbin-gateway.httpbin").await;
    let _b = connected(other().await.unwrap(), "other-gateway.other").await;
    let both = vec![
        "httpbin-gateway.httpbin~test".to_owned(),
        "other-gateway.other~test".to_owned(),
    ];
    tidegate::test_helpers::eventually("both streams listed", Duration::from_secs(10), || async {
        let seen = csds_nodes(
            channel(&pki, server.xds, Some((&ops_cert, &ops_key)))
                .await
                .unwrap(),
        )
        .await;
        if seen == both {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;

    // Each proxy sees its own status only; the identity named by --csds-identity, all.
    assert_eq!(
        csds_nodes(httpbin().await.unwrap()).await,
        ["httpbin-gateway.httpbin~test"]
    );
    assert_eq!(
        csds_nodes(other().await.unwrap()).await,
        ["other-gateway.other~test"]
    );
    // A certificate that names no proxy sees nothing.
    let (_, _, nobody_cert, nobody_key) = pki.issue("nobody", vec![dns("nobody.example.com")]);
    let nobody = channel(&pki, server.xds, Some((&nobody_cert, &nobody_key)))
        .await
        .unwrap();
    assert_eq!(csds_nodes(nobody).await, Vec::<String>::new());

    // The admin endpoint (loopback) has the whole view, as JSON.
    let r = tidegate::test_helpers::http_get(server.admin, "localhost", "/csds")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let dump: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let mut ids: Vec<&str> = dump["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["node_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, both);
    let cluster = dump["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == "httpbin-gateway.httpbin~test")
        .unwrap()["resources"][0]
        .clone();
    assert_eq!(
        cluster["name"], "httpbin.httpbin.svc.cluster.local:8000",
        "{cluster:#}"
    );
    assert_eq!(cluster["client_status"], "CLIENT_REQUESTED", "{cluster:#}");
}

#[tokio::test]
async fn the_server_certificate_rotates_without_a_restart_and_a_broken_pair_is_ignored() {
    let pki = Pki::new();
    let repo = repo();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (old_cert, old_key, ..) = pki.issue("server", vec![dns("localhost")]);
    std::fs::copy(&old_cert, &cert).unwrap();
    std::fs::copy(&old_key, &key).unwrap();
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.tls = Some(tidegate::xds::server::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: pki.ca(),
    });
    let server = common::start_with(opts).await;
    let (_, _, client_cert, client_key) =
        pki.issue("httpbin", vec![dns("httpbin-gateway.httpbin")]);
    let client = Some((client_cert.as_str(), client_key.as_str()));
    // Server certificates issued by another CA: a client trusting only it tells them apart.
    let next_ca = Pki::new();
    let trusting = |ca: &Pki| {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.ca_pem))
            .identity(Identity::from_pem(&client_cert, &client_key))
            .domain_name("localhost");
        let url = format!("https://localhost:{}", server.xds.port());
        async move {
            Channel::from_shared(url)
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
        }
    };
    let open = channel(&pki, server.xds, client).await.unwrap();
    assert_eq!(
        ask(open.clone(), "httpbin-gateway.httpbin").await.unwrap(),
        1
    );
    assert!(
        trusting(&next_ca).await.is_err(),
        "served the next certificate too early"
    );

    let reloads = |result: &'static str| async move {
        let m = tidegate::test_helpers::http_get(server.admin, "localhost", "/metrics")
            .await
            .unwrap()
            .body;
        m.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "tidegate_xds_tls_reloads_total{{result=\"{result}\"}} "
                ))
            })
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    // Rotate: key and certificate replaced (renamed in, as a Secret volume update does).
    let (new_cert, new_key, ..) = next_ca.issue("server", vec![dns("localhost")]);
    std::fs::copy(&new_key, dir.path().join("tls.key.new")).unwrap();
    std::fs::copy(&new_cert, dir.path().join("tls.crt.new")).unwrap();
    std::fs::rename(dir.path().join("tls.key.new"), &key).unwrap();
    std::fs::rename(dir.path().join("tls.crt.new"), &cert).unwrap();
    tidegate::test_helpers::eventually(
        "the new certificate served",
        Duration::from_secs(10),
        || async {
            match trusting(&next_ca).await {
                Ok(ch) => ask(ch, "httpbin-gateway.httpbin")
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{e:?}")),
            }
        },
    )
    .await;
    assert!(
        trusting(&pki).await.is_err(),
        "the old certificate is still served"
    );
    // The connection made before the rotation still works.
    assert_eq!(ask(open, "httpbin-gateway.httpbin").await.unwrap(), 1);

    // A broken key: the reload fails and the certificate in use stays.
    let failed = reloads("failed").await;
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    tidegate::test_helpers::eventually(
        "the failed reload counted",
        Duration::from_secs(10),
        || async {
            let n = reloads("failed").await;
            if n > failed {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        },
    )
    .await;
    let ch = trusting(&next_ca).await.expect("still served");
    assert_eq!(ask(ch, "httpbin-gateway.httpbin").await.unwrap(), 1);
}

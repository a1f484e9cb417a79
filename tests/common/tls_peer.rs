//! TLS peers for end-to-end tests with real certificates: a TLS backend that reports the
//! SNI it saw and whether the client showed a certificate (counting the requests it read),
//! and an HTTPS client with an optional client certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certs_of(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

pub fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut r = rustls::RootCertStore::empty();
    for c in certs_of(ca_pem) {
        r.add(c).unwrap();
    }
    r
}

/// A TLS backend speaking just enough HTTP/1.1: it answers every request with the SNI it
/// saw and whether the client showed a certificate, and counts the requests it read (a
/// handshake that fails reads none).
pub struct TlsBackend {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsBackend {
    /// Serves `cert`/`key`; with `client_ca`, only clients with a certificate it issued get in.
    pub async fn start(cert: &str, key: &str, client_ca: Option<&str>) -> Self {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)),
                    provider(),
                )
                .build()
                .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(
                certs_of(cert),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let (_, conn) = tls.get_ref();
                    let sni = conn.server_name().unwrap_or("").to_owned();
                    let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            counter.fetch_add(1, Ordering::SeqCst);
                            let body =
                                format!("{{\"sni\":\"{sni}\",\"clientCert\":{client_cert}}}");
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if tls.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        TlsBackend {
            addr,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// One HTTPS request to the gateway, trusting `ca_pem`, with an optional client
/// certificate; the response's status line and body, or the handshake/transport error.
pub async fn https_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<String, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let mut cfg = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certs_of(cert),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut tls = connector
        .connect(ServerName::try_from(host.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    // Until the whole response (by Content-Length) or the end of the stream: a backend
    // behind a TLS listener's tcp_proxy may keep the connection open after answering.
    let complete = |out: &[u8]| {
        let Some(head_end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
        head.lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|len| out.len() >= head_end + 4 + len)
    };
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    out.extend_from_slice(&chunk[..n]);
                    if complete(&out) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    };
    // With TLS 1.3 a refused client certificate is only reported at the first read.
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if out.is_empty() => return Err(format!("read: {e}")),
        Ok(Err(_)) => {}
        Err(_) => return Err("no answer in 10 s".into()),
    }
    if out.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Starts an Envoy for proxy `id` of `server` on 127.0.0.1 and waits until it acknowledged
/// what it is served; the Envoy (kept alive by the caller) and its admin address.
pub async fn envoy_for(
    binary: &std::path::Path,
    server: &tidegate::app::Running,
    id: &str,
) -> (tidegate::test_helpers::Envoy, SocketAddr) {
    use tidegate::xds::bootstrap::{Options, bootstrap};
    let admin: SocketAddr = format!("127.0.0.1:{}", tidegate::test_helpers::free_port())
        .parse()
        .unwrap();
    let boot = bootstrap(&Options {
        r#ref: None,
        proxy: id.to_owned(),
        xds: server.xds.to_string(),
        delta: false,
        bind: Some("127.0.0.1".into()),
        admin: admin.to_string(),
        tls: None,
    })
    .unwrap();
    let envoy =
        tidegate::test_helpers::Envoy::start(binary, &serde_json::to_string(&boot).unwrap(), admin);
    let proxy = server.current().await.proxy(
        id,
        &tidegate::xds::emit::Variant {
            bind: Some("127.0.0.1".into()),
            proxyless: false,
        },
    );
    super::wait_acked(server.admin, id, &proxy)
        .await
        .expect("Envoy acknowledges the configuration");
    (envoy, admin)
}

/// The client-certificate gate of an HTTPS listener at `addr` (certificate for `host`
/// issued by `server_ca`): a client with `valid` gets a 200 from `path` (its response is
/// returned); one without a certificate, or with `stranger`, is refused and `backend`
/// sees none of their requests.
pub async fn assert_clients_checked(
    addr: SocketAddr,
    (host, path): (&str, &str),
    server_ca: &str,
    valid: (&str, &str),
    stranger: (&str, &str),
    backend: &TlsBackend,
) -> String {
    let ok = tidegate::test_helpers::eventually(
        "a client with a valid certificate gets in",
        Duration::from_secs(20),
        || async {
            https_get(addr, host, path, server_ca, Some(valid))
                .await
                .and_then(|r| {
                    if r.starts_with("HTTP/1.1 200") {
                        Ok(r)
                    } else {
                        Err(r)
                    }
                })
        },
    )
    .await;
    let before = backend.requests();
    for client in [None, Some(stranger)] {
        let r = https_get(addr, host, path, server_ca, client).await;
        assert!(
            r.as_ref().is_err() || r.as_ref().is_ok_and(|t| !t.starts_with("HTTP/1.1 200")),
            "a client {} got in: {r:?}",
            if client.is_some() {
                "with a certificate from another CA"
            } else {
                "without a certificate"
            }
        );
    }
    assert_eq!(
        backend.requests(),
        before,
        "a refused client reached the backend"
    );
    ok
}

/// Plain HTTP `GET path` with `host` to `addr` until it answers 200 (the proxy may still
/// be warming); the body.
pub async fn get_until_ok(addr: SocketAddr, host: &str, path: &str) -> String {
    tidegate::test_helpers::eventually(
        &format!("GET {host}{path} answers 200"),
        Duration::from_secs(20),
        || async {
            match tidegate::test_helpers::http_request(addr, "GET", host, path, &[]).await {
                Some(r) if r.status == 200 => Ok(r.body),
                other => Err(format!("{:?}", other.map(|r| (r.status, r.body)))),
            }
        },
    )
    .await
}

//! The mesh suite's client pod, as ztunnel would carry its requests: HBONE (HTTP/2 CONNECT
//! over mutual TLS with the pod's SPIFFE certificate) to the waypoint that serves the
//! destination Service, one CONNECT per request to `<Service VIP>:<port>`, and inside the
//! tunnel an HTTP/1.1 request or an h2c gRPC call (the Istio echo client's
//! `proto.EchoTestService/Echo`). Answers are read as the echo client reports them: the
//! status (gRPC OK as 200), the response headers, and the echo text of the backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_rustls::rustls;

use super::mesh_echo::{ECHO_METHOD, echo_message, echo_message_text, grpc_frame};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct MeshResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The backend's echo text (empty when the proxy answered).
    pub body: String,
}

impl MeshResponse {
    fn fields<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.body
            .lines()
            .filter_map(move |l| l.strip_prefix(key)?.strip_prefix('='))
    }

    pub fn hostname(&self) -> Option<&str> {
        self.fields("Hostname").next()
    }

    /// The values the backend saw for request header `name` (any case).
    pub fn request_header(&self, name: &str) -> Vec<&str> {
        self.fields("RequestHeader")
            .filter_map(|kv| kv.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn response_header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A mesh workload's HBONE client: its certificate (a SPIFFE URI SAN) and the mesh CA.
#[derive(Clone)]
pub struct Workload {
    connector: tokio_rustls::TlsConnector,
}

impl Workload {
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.expect("CA")).expect("CA");
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .map(|c| c.expect("certificate"))
                .collect(),
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key"),
        )
        .expect("client certificate");
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Workload {
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        }
    }

    /// An HBONE connection to the waypoint at `addr`, whose certificate names `name`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        name: &str,
    ) -> Result<h2::client::SendRequest<Bytes>, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to the waypoint {addr}: {e}"))?;
        let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let tls = tokio::time::timeout(TIMEOUT, self.connector.connect(name, tcp))
            .await
            .map_err(|_| "HBONE TLS handshake timed out".to_string())?
            .map_err(|e| format!("HBONE TLS: {e}"))?;
        let (send, conn) = h2::client::handshake(tls)
            .await
            .map_err(|e| format!("HBONE h2 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(send)
    }
}

/// A CONNECT to `authority` on an HBONE connection: the tunnel as a byte stream.
pub async fn tunnel(
    hbone: &h2::client::SendRequest<Bytes>,
    authority: &str,
) -> Result<DuplexStream, String> {
    let mut send = hbone
        .clone()
        .ready()
        .await
        .map_err(|e| format!("HBONE: {e}"))?;
    let req = http::Request::builder()
        .method("CONNECT")
        .uri(authority)
        .body(())
        .expect("CONNECT request");
    let (resp, mut up) = send
        .send_request(req, false)
        .map_err(|e| format!("CONNECT {authority}: {e}"))?;
    let resp = tokio::time::timeout(TIMEOUT, resp)
        .await
        .map_err(|_| format!("CONNECT {authority}: no answer"))?
        .map_err(|e| format!("CONNECT {authority} refused: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("CONNECT {authority} answered {}", resp.status()));
    }
    let mut down = resp.into_body();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_us, mut to_us) = tokio::io::split(theirs);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_us.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = up.send_data(Bytes::new(), true);
                    return;
                }
                Ok(n) => {
                    if up
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = down.data().await {
            let _ = down.flow_control().release_capacity(chunk.len());
            if to_us.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to_us.shutdown().await;
    });
    Ok(ours)
}

/// One HTTP/1.1 request on `io` (a tunnel, or a connection straight to a pod).
pub async fn http1<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
) -> Result<MeshResponse, String> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    io.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            // Head, then content-length bytes (or to the end of the connection).
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                let length = head.lines().find_map(|l| {
                    l.strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                if length.is_some_and(|n| buf.len() >= i + 4 + n) {
                    return;
                }
            }
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .map_err(|_| "no complete answer in time".to_string())?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "no HTTP answer ({} bytes: {:?})",
                buf.len(),
                String::from_utf8_lossy(&buf)
            )
        })?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(MeshResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&buf[end + 4..]).into_owned(),
    })
}

/// One unary `Echo` call over h2c on `io`, with `metadata`. gRPC OK is reported as 200, as
/// the echo client does; another gRPC status as its number plus 1000.
pub async fn grpc(
    io: DuplexStream,
    authority: &str,
    metadata: &[(String, String)],
) -> Result<MeshResponse, String> {
    let (send, conn) = h2::client::handshake(io)
        .await
        .map_err(|e| format!("h2c handshake: {e}"))?;
    tokio::spawn(conn);
    let mut send = send.ready().await.map_err(|e| format!("h2c: {e}"))?;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{ECHO_METHOD}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in metadata {
        req = req.header(k.to_ascii_lowercase(), v);
    }
    let (resp, mut body) = send
        .send_request(req.body(()).expect("gRPC request"), false)
        .map_err(|e| format!("gRPC send: {e}"))?;
    body.send_data(grpc_frame(&echo_message("")), true)
        .map_err(|e| format!("gRPC send: {e}"))?;
    let call = async {
        let resp = resp.await.map_err(|e| format!("gRPC: {e}"))?;
        let (parts, mut stream) = resp.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = stream.data().await {
            let chunk = chunk.map_err(|e| format!("gRPC body: {e}"))?;
            let _ = stream.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = stream.trailers().await.ok().flatten();
        Ok::<_, String>((parts, data, trailers))
    };
    let (parts, data, trailers) = tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| "no gRPC answer in time".to_string())??;
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let status = match (parts.status.as_u16(), grpc_status) {
        (200, Some(0)) => 200,
        (200, Some(g)) => 1000 + g,
        (s, _) => s,
    };
    let body = data
        .get(5..)
        .and_then(echo_message_text)
        .unwrap_or_default();
    Ok(MeshResponse {
        status,
        headers,
        body,
    })
}

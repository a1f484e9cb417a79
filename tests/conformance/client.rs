//! The suite's side of the wire: one HTTP/1.1 request per connection (plain or TLS with an
//! SNI), and one gRPC call over HTTP/2 prior knowledge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Longest a request may take: above the 1 s delays of the timeout tests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, in order; repeated headers stay separate.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// All values of `name`, joined with "," (how the suite compares repeated headers).
    pub fn header(&self, name: &str) -> Option<String> {
        let v: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!v.is_empty()).then(|| v.join(","))
    }

    /// The echo backend's JSON, if the response came from one.
    pub fn echo(&self) -> Option<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .filter(|v| v.get("pod").is_some())
    }
}

pub fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One HTTP/1.1 request (`Connection: close`), over TLS with `sni` if `tls` is given.
pub async fn http1(
    addr: SocketAddr,
    tls: Option<(&tokio_rustls::TlsConnector, &str)>,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
) -> Result<Response, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let head_only = method == "HEAD";
    match tls {
        None => exchange(tcp, &req, head_only).await,
        Some((connector, sni)) => {
            let name = ServerName::try_from(sni.to_owned()).map_err(|e| format!("SNI: {e}"))?;
            let stream = tokio::time::timeout(Duration::from_secs(3), connector.connect(name, tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake (SNI {sni}): {e}"))?;
            exchange(stream, &req, head_only).await
        }
    }
}

/// One HTTP/1.1 request (`Connection: close`) on an established stream (e.g. after a TLS
/// handshake the caller made and inspected).
// Shared with tests/conformance.rs, which makes its TLS handshakes in `http1`.
#[allow(dead_code)]
pub async fn http1_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
) -> Result<Response, String> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    exchange(stream, &req, method == "HEAD").await
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &str,
    head_only: bool,
) -> Result<Response, String> {
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // Read until the response is complete rather than to EOF: Envoy closes its side of a
    // local reply only after a delay (delayed_close_timeout, 1 s).
    let mut raw = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        loop {
            if complete(&raw, head_only) {
                return Ok(());
            }
            let mut chunk = [0u8; 16384];
            match s.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match read {
        Err(_) => return Err("no response within 10s".into()),
        // A TLS peer that closes without close_notify still sent a whole response.
        Ok(Err(e)) if raw.is_empty() => return Err(format!("read: {e}")),
        _ => {}
    }
    parse_response(&raw, head_only)
}

/// Whether `raw` holds a whole response (framed by content-length or chunked; a response
/// framed by the close is complete at EOF only).
fn complete(raw: &[u8], head_only: bool) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return true;
    }
    let body = &raw[end + 4..];
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "content-length" => {
                    return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
                }
                "transfer-encoding" if v.trim() == "chunked" => {
                    return body.ends_with(b"0\r\n\r\n");
                }
                _ => {}
            }
        }
    }
    false
}

fn parse_response(raw: &[u8], head_only: bool) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            if raw.is_empty() {
                "the connection closed without a response".to_string()
            } else {
                format!("not HTTP: {:?}", String::from_utf8_lossy(raw))
            }
        })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&rest[..i])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || rest.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + size]);
        rest = &rest[(i + 4 + size).min(rest.len())..];
    }
    out
}

/// What a gRPC call returned.
#[derive(Debug)]
pub struct GrpcResult {
    pub code: u32,
    pub message: Option<String>,
    /// The echo backend's JSON (its one response message), if any.
    pub echo: Option<serde_json::Value>,
}

/// A unary call of `method` (`/package.Service/Method`) with an empty message, over h2c.
pub async fn grpc(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    metadata: &[(String, String)],
) -> Result<GrpcResult, String> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        grpc_call(addr, authority, method, metadata),
    )
    .await
    .map_err(|_| "no gRPC response within 10s".to_string())?
}

async fn grpc_call(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    metadata: &[(String, String)],
) -> Result<GrpcResult, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (send, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.map_err(|e| format!("h2: {e}"))?;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in metadata {
        req = req.header(k.to_ascii_lowercase(), v);
    }
    let req = req.body(()).map_err(|e| format!("request: {e}"))?;
    let (resp, mut stream) = send
        .send_request(req, false)
        .map_err(|e| format!("send: {e}"))?;
    // An empty message: uncompressed, length 0.
    stream
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .map_err(|e| format!("send: {e}"))?;
    let resp = resp.await.map_err(|e| format!("response: {e}"))?;
    let status = resp.status().as_u16();
    let header_code = grpc_status(resp.headers());
    let header_message = grpc_message(resp.headers());
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?;
    let (code, message) = match (header_code, trailers.as_ref().and_then(grpc_status)) {
        // Trailers-only (Envoy's local replies): the status is in the headers.
        (Some(c), _) => (c, header_message),
        (None, Some(c)) => (c, trailers.as_ref().and_then(grpc_message)),
        (None, None) if status != 200 => (http_to_grpc(status), Some(format!("HTTP {status}"))),
        (None, None) => return Err("no grpc-status in headers or trailers".into()),
    };
    let echo = (data.len() > 5)
        .then(|| serde_json::from_slice(&data[5..]).ok())
        .flatten();
    Ok(GrpcResult {
        code,
        message,
        echo,
    })
}

fn grpc_status(h: &http::HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

fn grpc_message(h: &http::HeaderMap) -> Option<String> {
    h.get("grpc-message")?.to_str().ok().map(str::to_owned)
}

/// gRPC's mapping of an HTTP status without grpc-status (doc/http-grpc-status-mapping.md).
fn http_to_grpc(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// Code number of a gRPC status name as the data spells it (`OK`, `Unimplemented`).
pub fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    let norm = name.replace('_', "").to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| n.to_ascii_lowercase() == norm || (norm == "cancelled" && *n == "Canceled"))
        .map(|i| i as u32)
}

/// What a WebSocket exchange gave: the upgrade's status, the pod that answered it
/// (`x-echo-pod`), and the message echoed back.
pub struct WebSocket {
    pub status: u16,
    pub pod: Option<String>,
    pub echoed: Option<String>,
}

/// Upgrades `path` to a WebSocket (RFC 6455), checks the server's accept key, sends
/// `message` as one masked text frame and reads one frame back.
pub async fn websocket(
    addr: SocketAddr,
    host: &str,
    path: &str,
    message: &str,
) -> Result<WebSocket, String> {
    let mut tcp = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let key = "dGlkZWdhdGUtd2Vic29ja2V0"; // base64 of 16 bytes, as the RFC asks
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let io = async {
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk).await {
                Ok(0) => return Err("closed before the upgrade answer".to_string()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {head:?}"))?;
        let header = |name: &str| {
            head.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let pod = header("x-echo-pod");
        if status != 101 {
            return Ok(WebSocket {
                status,
                pod,
                echoed: None,
            });
        }
        if header("sec-websocket-accept").as_deref() != Some(&accept_key(key)) {
            return Err(format!("wrong Sec-WebSocket-Accept in {head:?}"));
        }
        // One text frame, FIN, masked (clients must mask).
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let payload = message.as_bytes();
        let mut frame = vec![0x81u8];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        tcp.write_all(&frame).await.map_err(|e| e.to_string())?;
        let (_, echoed) = read_frame(&mut tcp, &mut buf).await?;
        Ok(WebSocket {
            status,
            pod,
            echoed: Some(String::from_utf8_lossy(&echoed).into_owned()),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| "WebSocket exchange timed out".to_string())?
}

/// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Reads one WebSocket frame (unmasking it if masked): (opcode, payload). `buf` holds
/// bytes already read.
pub async fn read_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(u8, Vec<u8>), String> {
    let need = |buf: &Vec<u8>| -> Option<(usize, usize, Option<[u8; 4]>)> {
        if buf.len() < 2 {
            return None;
        }
        let masked = buf[1] & 0x80 != 0;
        let (len, mut at) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => {
                (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10)
            }
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        let mask = if masked {
            if buf.len() < at + 4 {
                return None;
            }
            let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            at += 4;
            Some(m)
        } else {
            None
        };
        (buf.len() >= at + len).then_some((at, len, mask))
    };
    loop {
        if let Some((at, len, mask)) = need(buf) {
            let opcode = buf[0] & 0x0f;
            let mut payload: Vec<u8> = buf[at..at + len].to_vec();
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            buf.drain(..at + len);
            return Ok((opcode, payload));
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) => return Err("closed before a frame".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_repeated_headers_and_chunks() {
        let raw = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-A").as_deref(), Some("1,2"));
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"", false).is_err());
        assert!(complete(raw, false));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab",
            false
        ));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
            false
        ));
        assert!(complete(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\n",
            true
        ));
    }

    #[test]
    fn grpc_code_names() {
        assert_eq!(grpc_code("OK"), Some(0));
        assert_eq!(grpc_code("Unimplemented"), Some(12));
        assert_eq!(grpc_code("UNIMPLEMENTED"), Some(12));
        assert_eq!(grpc_code("nope"), None);
        assert_eq!(http_to_grpc(404), 12);
    }
}

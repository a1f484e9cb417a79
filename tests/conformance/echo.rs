//! Echo "pods": what the conformance suite's `echo-basic` image does, on loopback.
//!
//! Each answers with JSON naming its pod, namespace and the request it saw (method, path
//! with query, host, headers), and records every request so mirrors can be checked. Like
//! `echo-basic` it honours `?delay=<duration>`, `X-Echo-Set-Header: Name:value,...` and the
//! retry parameters `uuid`, `responseCode`, `succeedAfter` (the first `succeedAfter`
//! attempts of a `uuid` answer `responseCode`), plus `failWith=reset` (those attempts
//! reset the TCP connection instead) and `delayFailure=<duration>` (they answer late). A listener speaks HTTP/1.1 and HTTP/2
//! prior knowledge (h2c), or only h2c for Service ports with `appProtocol:
//! kubernetes.io/h2c`; a request with `content-type: application/grpc` gets a gRPC answer
//! (status OK, the JSON as its one message).
//!
//! A TLS listener ([`Backends::listen_tls`]) terminates TLS itself (ALPN h2 and http/1.1)
//! and adds what echo-basic reports of the handshake as `tls`: `{version, serverName,
//! negotiatedProtocol, cipherSuite, peerCertificates: [PEM]}`; with a client CA it verifies
//! a client certificate when one is given (echo-basic's `VerifyClientCertIfGiven`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::http1::{Head, drain_body, read_head};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
}

/// One request a backend saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub pod: String,
    pub namespace: String,
    pub path: String,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Seen>>,
    /// Attempts per retry `uuid`.
    attempts: Mutex<HashMap<String, u32>>,
}

#[derive(Default)]
pub struct Backends {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Backends {
    /// A new listener for `pod`; `h2c_only` refuses HTTP/1.1 (closes the connection).
    pub async fn listen(&mut self, pod: Pod, h2c_only: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("addr");
        let shared = self.shared.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(connection(sock, pod.clone(), shared.clone(), h2c_only));
            }
        }));
        addr
    }

    /// How many requests were recorded so far (a mark for [`Backends::since`]).
    pub fn mark(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    pub fn since(&self, mark: usize) -> Vec<Seen> {
        self.shared.log.lock().unwrap()[mark..].to_vec()
    }

    /// A TLS listener for `pod` serving `cert_pem`/`key_pem`: HTTP/1.1 or HTTP/2 (by ALPN,
    /// else by the first bytes; `h2_only` refuses HTTP/1.1 as a gRPC pod does). With
    /// `client_ca_pem`, a client certificate is asked for and, when given, must chain to it.
    // Shared with tests/conformance.rs, which has no TLS backends.
    #[allow(dead_code)]
    pub async fn listen_tls(
        &mut self,
        pod: Pod,
        h2_only: bool,
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
    ) -> SocketAddr {
        let acceptor = tls_acceptor(cert_pem, key_pem, client_ca_pem);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tls echo");
        let addr = listener.local_addr().expect("addr");
        let shared = self.shared.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (acceptor, pod, shared) = (acceptor.clone(), pod.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let seen = tls_seen(tls.get_ref().1);
                    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    let mut sock = Rewind::new(tls);
                    let h2 = match alpn.as_deref() {
                        Some(b"h2") => true,
                        Some(_) => false,
                        None => match sock.sniff_h2().await {
                            Some(h2) => h2,
                            None => return,
                        },
                    };
                    if h2 {
                        serve_h2(sock, pod, shared, Some(seen)).await;
                    } else if !h2_only {
                        serve_h1(sock, pod, shared, Some(seen)).await;
                    }
                });
            }
        }));
        addr
    }
}

fn tls_acceptor(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.expect("CA PEM")).expect("add CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .expect("server certificate");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// PEM text of a DER certificate (64-column base64, as Go's pem.Encode writes it).
pub fn pem_of(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// echo-basic's `tls` object for a handshake.
fn tls_seen(c: &rustls::ServerConnection) -> serde_json::Value {
    json!({
        "version": format!("{:?}", c.protocol_version().unwrap_or(rustls::ProtocolVersion::Unknown(0))),
        "serverName": c.server_name().unwrap_or(""),
        "negotiatedProtocol": c.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default(),
        "cipherSuite": c.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
        "peerCertificates": c.peer_certificates().unwrap_or_default().iter().map(|d| pem_of(d)).collect::<Vec<_>>(),
    })
}

/// A stream whose first bytes, read ahead to tell HTTP/2 from HTTP/1.1, are read again.
struct Rewind<S> {
    inner: S,
    prefix: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Rewind<S> {
    fn new(inner: S) -> Self {
        Rewind {
            inner,
            prefix: Vec::new(),
        }
    }

    /// Whether the client starts with the HTTP/2 preface; None if it went away first.
    async fn sniff_h2(&mut self) -> Option<bool> {
        loop {
            let n = self.prefix.len();
            if self.prefix[..] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            let mut b = vec![0u8; H2_PREFACE.len() - n];
            match self.inner.read(&mut b).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.prefix.extend_from_slice(&b[..k]),
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection the echo serves: plain TCP or TLS over TCP.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Makes the coming close a TCP reset (linger 0), what a crashing backend looks like.
    fn reset_on_close(&self);
}

impl Conn for TcpStream {
    fn reset_on_close(&self) {
        // The deprecation is about a lingering close blocking the thread; a zero linger
        // does not linger.
        #[allow(deprecated)]
        let _ = self.set_linger(Some(Duration::ZERO));
    }
}

impl Conn for Rewind<tokio_rustls::server::TlsStream<TcpStream>> {
    fn reset_on_close(&self) {
        self.inner.get_ref().0.reset_on_close();
    }
}

async fn connection(sock: TcpStream, pod: Pod, shared: Arc<Shared>, h2c_only: bool) {
    // Tell HTTP/2 prior knowledge from HTTP/1.1 by the first bytes, without consuming them.
    let mut buf = [0u8; 24];
    let h2 = loop {
        let Ok(n) = sock.peek(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if buf[..n] != H2_PREFACE[..n] {
            break false;
        }
        if n == H2_PREFACE.len() {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    if h2 {
        serve_h2(sock, pod, shared, None).await;
    } else if !h2c_only {
        serve_h1(sock, pod, shared, None).await;
    }
}

/// A request as the echo logic sees it, from either protocol.
struct Incoming {
    method: String,
    path: String,
    host: String,
    headers: Vec<(String, String)>,
    /// The `tls` object of a TLS connection.
    tls: Option<serde_json::Value>,
}

struct Outgoing {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Reset the connection instead of answering (a failing attempt with
    /// `failWith=reset`).
    reset: bool,
}

fn query_param<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    let (_, q) = path.split_once('?')?;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    s.strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .map(Duration::from_secs_f64)
}

async fn answer(req: Incoming, pod: &Pod, shared: &Shared) -> Outgoing {
    shared.log.lock().unwrap().push(Seen {
        pod: pod.name.clone(),
        namespace: pod.namespace.clone(),
        path: req.path.clone(),
    });
    if let Some(d) = query_param(&req.path, "delay").and_then(parse_duration) {
        tokio::time::sleep(d).await;
    }
    let reset = query_param(&req.path, "failWith") == Some("reset");
    let code = query_param(&req.path, "responseCode").and_then(|c| c.parse::<u16>().ok());
    if let (Some(uuid), Some(after)) = (
        query_param(&req.path, "uuid"),
        query_param(&req.path, "succeedAfter").and_then(|c| c.parse::<u32>().ok()),
    ) && (reset || code.is_some())
    {
        let attempt = {
            let mut a = shared.attempts.lock().unwrap();
            let n = a.entry(uuid.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        if attempt <= after {
            // A failing attempt may be slow too (the retry-with-timeouts cases).
            if let Some(d) = query_param(&req.path, "delayFailure").and_then(parse_duration) {
                tokio::time::sleep(d).await;
            }
            let code = code.unwrap_or(500);
            return Outgoing {
                status: code,
                headers: Vec::new(),
                body: format!("attempt {attempt} of {uuid} fails with {code}"),
                reset,
            };
        }
    }
    let mut headers = Vec::new();
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("x-echo-set-header") {
            for item in v.split(',') {
                if let Some((n, val)) = item.split_once(':') {
                    headers.push((n.trim().to_owned(), val.trim().to_owned()));
                }
            }
        }
    }
    let mut hmap = serde_json::Map::new();
    for (k, v) in &req.headers {
        let e = hmap
            .entry(k.to_ascii_lowercase())
            .or_insert_with(|| json!([]));
        e.as_array_mut().unwrap().push(json!(v));
    }
    let mut body = json!({
        "pod": pod.name,
        "namespace": pod.namespace,
        "method": req.method,
        "path": req.path,
        "host": req.host,
        "headers": hmap,
    });
    if let Some(tls) = req.tls {
        body["tls"] = tls;
    }
    let body = body.to_string();
    headers.push(("content-type".into(), "application/json".into()));
    Outgoing {
        status: 200,
        headers,
        body,
        reset: false,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A WebSocket after its upgrade (RFC 6455): every text or binary frame is sent back as
/// it came, a close is answered and ends it. The 101 names the pod (`x-echo-pod`).
async fn websocket<S: Conn>(mut sock: S, mut buf: Vec<u8>, key: &str, pod: &Pod) {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nx-echo-pod: {}\r\n\r\n",
        super::client::accept_key(key),
        pod.name
    );
    if sock.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    while let Ok((opcode, payload)) = super::client::read_frame(&mut sock, &mut buf).await {
        // Server frames are not masked; payloads here are short (< 126 bytes or u16).
        let mut frame = vec![0x80 | opcode];
        if payload.len() < 126 {
            frame.push(payload.len() as u8);
        } else {
            frame.push(126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&payload);
        if sock.write_all(&frame).await.is_err() || opcode == 0x8 {
            return;
        }
    }
}

async fn serve_h1<S: Conn>(
    mut sock: S,
    pod: Pod,
    shared: Arc<Shared>,
    tls: Option<serde_json::Value>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut sock, &mut buf).await else {
            return;
        };
        let get = |n: &str| head.get(n);
        if get("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
            && let Some(key) = get("sec-websocket-key")
        {
            shared.log.lock().unwrap().push(Seen {
                pod: pod.name.clone(),
                namespace: pod.namespace.clone(),
                path: head.target.clone(),
            });
            websocket(sock, buf, &key, &pod).await;
            return;
        }
        if drain_body(&mut sock, &mut buf, &head).await.is_none() {
            return;
        }
        let Head {
            method,
            target: path,
            headers,
        } = head;
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let host = get("host").unwrap_or_default();
        let head_only = method == "HEAD";
        let out = answer(
            Incoming {
                method,
                path,
                host,
                headers,
                tls: tls.clone(),
            },
            &pod,
            &shared,
        )
        .await;
        if out.reset {
            sock.reset_on_close();
            return;
        }
        let mut resp = format!("HTTP/1.1 {} {}\r\n", out.status, reason(out.status));
        for (k, v) in &out.headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str(&format!("content-length: {}\r\n\r\n", out.body.len()));
        if !head_only {
            resp.push_str(&out.body);
        }
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn serve_h2<S: Conn>(sock: S, pod: Pod, shared: Arc<Shared>, tls: Option<serde_json::Value>) {
    let Ok(mut conn) = h2::server::handshake(sock).await else {
        return;
    };
    while let Some(Ok((req, respond))) = conn.accept().await {
        tokio::spawn(h2_stream(
            req,
            respond,
            pod.clone(),
            shared.clone(),
            tls.clone(),
        ));
    }
}

async fn h2_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    pod: Pod,
    shared: Arc<Shared>,
    tls: Option<serde_json::Value>,
) {
    let (parts, mut body) = req.into_parts();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let grpc = parts
        .headers
        .get("content-type")
        .is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"));
    let incoming = Incoming {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        host: parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        headers,
        tls,
    };
    let out = answer(incoming, &pod, &shared).await;
    if grpc {
        // One message: the 5-byte gRPC prefix (uncompressed, length) and the JSON.
        let mut msg = vec![0u8];
        msg.extend_from_slice(&(out.body.len() as u32).to_be_bytes());
        msg.extend_from_slice(out.body.as_bytes());
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let Ok(mut send) = respond.send_response(resp, false) else {
            return;
        };
        let _ = send.send_data(Bytes::from(msg), false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let _ = send.send_trailers(trailers);
        return;
    }
    let mut resp = http::Response::builder().status(out.status);
    for (k, v) in &out.headers {
        resp = resp.header(k.to_ascii_lowercase(), v);
    }
    let Ok(mut send) = respond.send_response(resp.body(()).unwrap(), out.body.is_empty()) else {
        return;
    };
    if !out.body.is_empty() {
        let _ = send.send_data(Bytes::from(out.body), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate::test_helpers::pki::{Pki, dns};

    /// A client trusting `ca`, offering `client` (certificate, key PEM) if given.
    fn connector(ca: &str, client: Option<(&str, &str)>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let cfg = match client {
            None => b.with_no_client_auth(),
            Some((cert, key)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    #[tokio::test]
    async fn tls_echo_reports_sni_and_client_certificates() {
        let server_ca = Pki::new();
        let client_ca = Pki::new();
        let (_, _, cert, key) = server_ca.issue("backend", vec![dns("abc.example.com")]);
        let (_, _, client_cert, client_key) = client_ca.issue("client", vec![]);
        let (_, _, stranger_cert, stranger_key) = Pki::new().issue("stranger", vec![]);
        let mut b = Backends::default();
        let pod = Pod {
            name: "tls-backend-6b7f9c-p0".into(),
            namespace: "ns".into(),
        };
        let addr = b
            .listen_tls(pod, false, &cert, &key, Some(&client_ca.ca_pem))
            .await;
        let get = |c: tokio_rustls::TlsConnector| async move {
            super::super::client::http1(addr, Some((&c, "abc.example.com")), "GET", "/x", "h", &[])
                .await
        };
        // No certificate: let in (echo-basic verifies one only when given).
        let echo = get(connector(&server_ca.ca_pem, None))
            .await
            .unwrap()
            .echo()
            .unwrap();
        assert_eq!(echo["tls"]["serverName"], "abc.example.com");
        assert_eq!(echo["tls"]["peerCertificates"], json!([]));
        assert_eq!(echo["path"], "/x");
        let echo = get(connector(
            &server_ca.ca_pem,
            Some((&client_cert, &client_key)),
        ))
        .await
        .unwrap()
        .echo()
        .unwrap();
        let der = CertificateDer::from_pem_slice(client_cert.as_bytes()).unwrap();
        assert_eq!(echo["tls"]["peerCertificates"], json!([pem_of(&der)]));
        // A certificate from another CA: refused.
        assert!(
            get(connector(
                &server_ca.ca_pem,
                Some((&stranger_cert, &stranger_key))
            ))
            .await
            .is_err()
        );
        // Plain HTTP on the TLS port is not answered.
        assert!(
            super::super::client::http1(addr, None, "GET", "/", "h", &[])
                .await
                .is_err()
        );
    }

    #[test]
    fn durations_and_query_parameters() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(query_param("/a?b=1&delay=1s", "delay"), Some("1s"));
        assert_eq!(query_param("/a", "delay"), None);
    }
}

//! The L4 "pods" of the conformance suite's `echo-basic` image, on loopback ports chosen by
//! the OS:
//!
//! - TCP echo (`TCP_ECHO_SERVER`): a welcome line `Gateway API Test TCP Server`, then per
//!   line `PING` → `PONG`, `IS_TLS` → `true`/`false`, `TEST` → one JSON line
//!   `{namespace, ingress, service, pod, tcpport, tlsport, isTLS, tls{…}}`; the same dialogue
//!   after a TLS handshake on its TLS port, with the pod's own certificate (what a passthrough
//!   client must reach);
//! - UDP echo (`UDP_ECHO_SERVER`): every datagram answered with
//!   `{request, namespace, ingress, service, pod}`;
//! - DNS (the coredns Deployment): any query answered with one A record.
//!
//! (The HTTPS echo, `TLS_SERVER_CERT` without the TCP mode, is `echo.rs`' TLS listener.)

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::rustls;

pub const WELCOME: &str = "Gateway API Test TCP Server";

/// Who a backend says it is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub pod: String,
    pub namespace: String,
    /// The Deployment's `SERVICE_NAME` (empty when unset).
    pub service: String,
}

/// A certificate and key (PEM) a backend serves.
#[derive(Clone, Debug)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn acceptor(cert: &ServerCert) -> tokio_rustls::TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// The running backends; dropping this stops them.
#[derive(Default)]
pub struct L4Backends {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for L4Backends {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the TLS side of a connection looked like, for the TEST answer.
#[derive(Default, Clone)]
struct TlsInfo {
    version: String,
    server_name: String,
    alpn: String,
    cipher: String,
}

impl L4Backends {
    /// A TCP echo pod: a plain listener and, with `cert`, a TLS one. Returns (plain, tls).
    pub async fn tcp(
        &mut self,
        id: Identity,
        cert: Option<ServerCert>,
    ) -> (SocketAddr, Option<SocketAddr>) {
        let plain = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tcp echo");
        let plain_addr = plain.local_addr().expect("addr");
        let tls = match &cert {
            Some(_) => Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind tls echo"),
            ),
            None => None,
        };
        let tls_addr = tls.as_ref().map(|l| l.local_addr().expect("addr"));
        let ports = (plain_addr.port(), tls_addr.map(|a| a.port()).unwrap_or(0));
        let id2 = id.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Ok((sock, _)) = plain.accept().await {
                tokio::spawn(dialogue(sock, id2.clone(), ports, None));
            }
        }));
        if let (Some(listener), Some(cert)) = (tls, cert) {
            let acceptor = acceptor(&cert);
            self.tasks.push(tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    let (acceptor, id) = (acceptor.clone(), id.clone());
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(sock).await else {
                            return;
                        };
                        let c = stream.get_ref().1;
                        let info = TlsInfo {
                            version: format!(
                                "{:?}",
                                c.protocol_version()
                                    .unwrap_or(rustls::ProtocolVersion::Unknown(0))
                            ),
                            server_name: c.server_name().unwrap_or("").to_owned(),
                            alpn: c
                                .alpn_protocol()
                                .map(|p| String::from_utf8_lossy(p).into_owned())
                                .unwrap_or_default(),
                            cipher: c
                                .negotiated_cipher_suite()
                                .map(|s| format!("{:?}", s.suite()))
                                .unwrap_or_default(),
                        };
                        dialogue(stream, id, ports, Some(info)).await;
                    });
                }
            }));
        }
        (plain_addr, tls_addr)
    }

    /// A UDP echo pod.
    pub async fn udp(&mut self, id: Identity) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp echo");
        let addr = sock.local_addr().expect("addr");
        self.tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let answer = json!({
                    "request": String::from_utf8_lossy(&buf[..n]),
                    "namespace": id.namespace,
                    "ingress": "",
                    "service": id.service,
                    "pod": id.pod,
                });
                let _ = sock.send_to(answer.to_string().as_bytes(), from).await;
            }
        }));
        addr
    }

    /// A DNS server answering every question with `A 127.0.0.1` (what coredns' whoami
    /// plugin does for `foo.bar.com` is an A record of the client; any answer passes).
    pub async fn dns(&mut self) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = sock.local_addr().expect("addr");
        self.tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                if let Some(answer) = dns_answer(&buf[..n]) {
                    let _ = sock.send_to(&answer, from).await;
                }
            }
        }));
        addr
    }
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    id: Identity,
    (tcpport, tlsport): (u16, u16),
    tls: Option<TlsInfo>,
) {
    let mut s = BufReader::new(s);
    if s.write_all(format!("{WELCOME}\n").as_bytes())
        .await
        .is_err()
        || s.flush().await.is_err()
    {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let answer = match line.trim() {
            "PING" => "PONG".to_owned(),
            "IS_TLS" => tls.is_some().to_string(),
            "TEST" => {
                let t = tls.clone().unwrap_or_default();
                json!({
                    "namespace": id.namespace,
                    "ingress": "",
                    "service": id.service,
                    "pod": id.pod,
                    "tcpport": tcpport.to_string(),
                    "tlsport": tlsport.to_string(),
                    "isTLS": tls.is_some(),
                    "tls": {
                        "version": t.version,
                        "serverName": t.server_name,
                        "negotiatedProtocol": t.alpn,
                        "curves": "",
                        "cipherSuite": t.cipher,
                    },
                })
                .to_string()
            }
            other => format!("unknown command {other:?}"),
        };
        if s.write_all(format!("{answer}\n").as_bytes()).await.is_err() || s.flush().await.is_err()
        {
            return;
        }
    }
}

/// The answer to a DNS query: same id and question, QR set, one `A 127.0.0.1` record.
pub fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    // The question's end: labels up to the zero byte, then type and class.
    let mut i = 12;
    while *q.get(i)? != 0 {
        i += 1 + q[i] as usize;
    }
    let end = i + 5;
    if q.len() < end {
        return None;
    }
    let mut out = Vec::with_capacity(end + 16);
    out.extend_from_slice(&q[..2]);
    // QR, opcode 0, AA, RD copied; RA; rcode 0.
    out.extend_from_slice(&[0x84 | (q[2] & 0x01), 0x80]);
    out.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&q[12..end]);
    // Name: a pointer to the question's name (offset 12).
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 1]);
    Some(out)
}

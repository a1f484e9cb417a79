//! The suite's L4 clients: the TCP echo dialogue over plain TCP or TLS (SNI, trusting only
//! the root the case names), a UDP datagram, a DNS query.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client trusts: a CA, or one leaf certificate itself (the suite's `Secret
/// ns/name[tls.crt]` trust: that certificate is the root).
#[derive(Clone, Debug)]
pub enum Trust {
    Ca(String),
    /// The leaf (PEM) and the CA that issued it here (the suite's leaves are self-signed;
    /// ours are issued by a throwaway CA, so the leaf is pinned and its chain checked).
    Leaf {
        leaf_pem: String,
        issuer_pem: String,
    },
}

fn roots(pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    roots
}

/// Accepts exactly one leaf certificate (and checks its chain and name as usual).
#[derive(Debug)]
struct Pinned {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    leaf: CertificateDer<'static>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() != self.leaf.as_ref() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // The suite's Go client matches names as crypto/x509 does: `*.org` covers
            // `example.org`, which webpki refuses (a wildcard over a single label). The
            // chain was good: only the name is checked again, the Go way.
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                },
            )) if go_name_match(&expected.to_str(), &presented) => {
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `host` matches one of `presented` (rustls' rendering, `DnsName("*.org")`) as Go's
/// crypto/x509 `matchHostnames` does: same number of labels, a `*` first label matching any
/// one label.
fn go_name_match(host: &str, presented: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_labels: Vec<&str> = host.split('.').collect();
    presented
        .iter()
        .filter_map(|p| p.strip_prefix("DnsName(\"")?.strip_suffix("\")"))
        .any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            let labels: Vec<&str> = pattern.split('.').collect();
            labels.len() == host_labels.len()
                && !host_labels.iter().any(|l| l.is_empty())
                && labels
                    .iter()
                    .zip(&host_labels)
                    .enumerate()
                    .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
        })
}

/// A connector trusting only `trust`, offering `alpn`.
pub fn connector(trust: &Trust, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    connector_offering(trust, alpn, None).0
}

/// A client certificate and its key (PEM).
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Whether a server asked a connector's client for a certificate (set during a handshake
/// that received a CertificateRequest).
#[derive(Clone, Debug, Default)]
pub struct Asked(Arc<AtomicBool>);

impl Asked {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Offers `key` (or no certificate) when the server asks, and records that it asked.
#[derive(Debug)]
struct Offer {
    key: Option<Arc<rustls::sign::CertifiedKey>>,
    asked: Asked,
}

impl rustls::client::ResolvesClientCert for Offer {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.0.store(true, Ordering::SeqCst);
        self.key.clone()
    }
    // Always "has certificates": rustls then handles a CertificateRequest in every case
    // (answering with an empty Certificate when there is none to offer).
    fn has_certs(&self) -> bool {
        true
    }
}

/// As [`connector`], offering `client` when the server asks for a certificate; the flag
/// tells whether it asked (each handshake of this connector may set it).
pub fn connector_offering(
    trust: &Trust,
    alpn: &[&[u8]],
    client: Option<&ClientCert>,
) -> (tokio_rustls::TlsConnector, Asked) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let asked = Asked::default();
    let key = client.map(|c| {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("client certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("client key PEM");
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).expect("client key");
        Arc::new(rustls::sign::CertifiedKey::new(chain, signer))
    });
    let offer = Arc::new(Offer {
        key,
        asked: asked.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let mut cfg = match trust {
        Trust::Ca(pem) => builder
            .with_root_certificates(roots(pem))
            .with_client_cert_resolver(offer),
        Trust::Leaf {
            leaf_pem,
            issuer_pem,
        } => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(issuer_pem)),
                provider,
            )
            .build()
            .expect("verifier");
            let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).expect("leaf PEM");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned { inner, leaf }))
                .with_client_cert_resolver(offer)
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (tokio_rustls::TlsConnector::from(Arc::new(cfg)), asked)
}

/// How a connection attempt ended before any dialogue.
#[derive(Debug, PartialEq)]
pub enum ConnectError {
    /// Accepted, then closed or reset during the TLS handshake (the suite's "rejected").
    Rejected(String),
    /// Anything else: refused, timed out, a TLS alert or a certificate the client refused.
    Other(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Rejected(e) => write!(f, "rejected during the handshake: {e}"),
            ConnectError::Other(e) => write!(f, "{e}"),
        }
    }
}

pub async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// A TLS handshake with `sni`; the server's leaf certificate (DER) comes back with the stream.
pub async fn tls(
    addr: SocketAddr,
    sni: &str,
    connector: &tokio_rustls::TlsConnector,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    let tcp = connect(addr).await.map_err(ConnectError::Other)?;
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|e| ConnectError::Other(format!("SNI {sni}: {e}")))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => Err(ConnectError::Other("TLS handshake timed out".into())),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            use std::io::ErrorKind::*;
            // rustls reports a TLS failure (alert, bad certificate) as InvalidData; a peer that
            // went away as EOF or a reset.
            if matches!(
                e.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted
            ) && e
                .get_ref()
                .is_none_or(|inner| inner.downcast_ref::<rustls::Error>().is_none())
            {
                Err(ConnectError::Rejected(e.to_string()))
            } else {
                Err(ConnectError::Other(format!(
                    "TLS handshake (SNI {sni}): {e}"
                )))
            }
        }
    }
}

/// The server's leaf certificate of a TLS stream.
pub fn peer_leaf<S>(s: &tokio_rustls::client::TlsStream<S>) -> Option<Vec<u8>> {
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
}

/// The echo dialogue: the welcome line, then one answer line per line of `send`.
#[derive(Debug, Default)]
pub struct Dialogue {
    pub welcome: String,
    pub answers: Vec<(String, String)>,
}

impl Dialogue {
    pub fn answer(&self, command: &str) -> Option<&str> {
        self.answers
            .iter()
            .find(|(c, _)| c == command)
            .map(|(_, a)| a.as_str())
    }
    /// The TEST answer's JSON.
    pub fn test(&self) -> Option<Value> {
        self.answer("TEST")
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
    }
}

pub async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    send: &str,
) -> Result<Dialogue, String> {
    let mut s = BufReader::new(s);
    let mut out = Dialogue::default();
    let read_line = async |s: &mut BufReader<S>| -> Result<String, String> {
        let mut line = String::new();
        match tokio::time::timeout(READ_TIMEOUT, s.read_line(&mut line)).await {
            Err(_) => Err("no answer within 5s".into()),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Ok(Ok(0)) => Err("connection closed".into()),
            Ok(Ok(_)) => Ok(line.trim_end().to_owned()),
        }
    };
    out.welcome = read_line(&mut s)
        .await
        .map_err(|e| format!("welcome line: {e}"))?;
    for command in send.lines().map(str::trim).filter(|l| !l.is_empty()) {
        s.write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|e| format!("send {command}: {e}"))?;
        s.flush().await.map_err(|e| format!("send: {e}"))?;
        let a = read_line(&mut s)
            .await
            .map_err(|e| format!("answer to {command}: {e}"))?;
        out.answers.push((command.to_owned(), a));
    }
    Ok(out)
}

/// One datagram to `addr`, the first answer back.
pub async fn udp(addr: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, String> {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    sock.send(payload).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
        Err(_) => Err(format!("no datagram back from {addr} within 2s")),
        Ok(Err(e)) => Err(format!("receive: {e}")),
        Ok(Ok(n)) => Ok(buf[..n].to_vec()),
    }
}

/// A DNS query for `name` of `qtype` (A, AAAA, TXT…); `Ok` with the answer count when a
/// response with the query's id comes back.
pub async fn dns(addr: SocketAddr, name: &str, qtype: &str) -> Result<u16, String> {
    let id: u16 = 0x7e57;
    let code: u16 = match qtype {
        "A" => 1,
        "AAAA" => 28,
        "TXT" => 16,
        "SRV" => 33,
        other => return Err(format!("query type {other} not known to the harness")),
    };
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&code.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    let r = udp(addr, &q).await?;
    if r.len() < 12 || r[..2] != id.to_be_bytes() || r[2] & 0x80 == 0 {
        return Err(format!(
            "not a DNS response to the query: {:02x?}",
            &r[..r.len().min(12)]
        ));
    }
    Ok(u16::from_be_bytes([r[6], r[7]]))
}

#[cfg(test)]
mod tests {
    use super::super::l4_echo::{Identity, L4Backends, ServerCert, WELCOME};
    use super::*;
    use tidegate::test_helpers::pki::{Pki, dns as san};

    fn id() -> Identity {
        Identity {
            pod: "tcp-backend-6b7f9c-p0".into(),
            namespace: "ns".into(),
            service: "svc".into(),
        }
    }

    #[tokio::test]
    async fn tcp_and_tls_echo_dialogues() {
        let ca = Pki::new();
        let (_, _, cert_pem, key_pem) = ca.issue("abc", vec![san("abc.example.com")]);
        let mut b = L4Backends::default();
        let (plain, tls_addr) = b
            .tcp(
                id(),
                Some(ServerCert {
                    cert_pem: cert_pem.clone(),
                    key_pem,
                }),
            )
            .await;
        let d = dialogue(connect(plain).await.unwrap(), "PING\nIS_TLS\nTEST\n")
            .await
            .unwrap();
        assert_eq!(d.welcome, WELCOME);
        assert_eq!(d.answer("PING"), Some("PONG"));
        assert_eq!(d.answer("IS_TLS"), Some("false"));
        assert_eq!(d.test().unwrap()["pod"], "tcp-backend-6b7f9c-p0");

        let c = connector(&Trust::Ca(ca.ca_pem.clone()), &[]);
        let s = tls(tls_addr.unwrap(), "abc.example.com", &c).await.unwrap();
        assert_eq!(
            peer_leaf(&s).unwrap(),
            CertificateDer::from_pem_slice(cert_pem.as_bytes())
                .unwrap()
                .as_ref()
        );
        let d = dialogue(s, "IS_TLS\nTEST\n").await.unwrap();
        assert_eq!(d.answer("IS_TLS"), Some("true"));
        assert_eq!(d.test().unwrap()["tls"]["serverName"], "abc.example.com");

        // The wrong name, another CA, another pinned leaf: the client refuses, and that is
        // not a rejection by the server.
        for (trust, sni) in [
            (Trust::Ca(ca.ca_pem.clone()), "other.example.com"),
            (Trust::Ca(Pki::new().ca_pem), "abc.example.com"),
            (
                Trust::Leaf {
                    leaf_pem: ca.issue("x", vec![san("abc.example.com")]).2,
                    issuer_pem: ca.ca_pem.clone(),
                },
                "abc.example.com",
            ),
        ] {
            let r = tls(tls_addr.unwrap(), sni, &connector(&trust, &[])).await;
            assert!(
                matches!(r, Err(ConnectError::Other(_))),
                "{trust:?} {sni}: {r:?}"
            );
        }
        let pinned = Trust::Leaf {
            leaf_pem: cert_pem,
            issuer_pem: ca.ca_pem.clone(),
        };
        // Go's wildcard matching for a pinned leaf: `*.org` covers `example.org` (webpki
        // alone refuses it), and not `a.b.org` nor another name.
        let (_, _, org_pem, org_key) = ca.issue("org", vec![san("*.org")]);
        let mut b2 = L4Backends::default();
        let (_, org_tls) = b2
            .tcp(
                id(),
                Some(ServerCert {
                    cert_pem: org_pem.clone(),
                    key_pem: org_key,
                }),
            )
            .await;
        let org = Trust::Leaf {
            leaf_pem: org_pem,
            issuer_pem: ca.ca_pem.clone(),
        };
        assert!(
            tls(org_tls.unwrap(), "example.org", &connector(&org, &[]))
                .await
                .is_ok()
        );
        for sni in ["a.example.org", "example.com"] {
            let r = tls(org_tls.unwrap(), sni, &connector(&org, &[])).await;
            assert!(matches!(r, Err(ConnectError::Other(_))), "{sni}: {r:?}");
        }
        assert!(
            tls(
                tls_addr.unwrap(),
                "abc.example.com",
                &connector(&pinned, &[])
            )
            .await
            .is_ok()
        );
        // A server that accepts and closes: rejected.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
        let r = tls(a, "abc.example.com", &c).await;
        assert!(matches!(r, Err(ConnectError::Rejected(_))), "{r:?}");
    }

    #[tokio::test]
    async fn udp_echo_and_dns() {
        let mut b = L4Backends::default();
        let u = b.udp(id()).await;
        let r: Value = serde_json::from_slice(&udp(u, b"hello").await.unwrap()).unwrap();
        assert_eq!(r["request"], "hello");
        assert_eq!(r["service"], "svc");
        let d = b.dns().await;
        assert_eq!(dns(d, "foo.bar.com.", "A").await, Ok(1));
        // The UDP echo answers JSON, not DNS.
        assert!(dns(u, "foo.bar.com.", "A").await.is_err());
    }
}

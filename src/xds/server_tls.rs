//! xDS over mutual TLS with certificates that rotate without a restart.
//!
//! tonic's own TLS takes its configuration once, at startup. Here the xDS port accepts TCP
//! itself and does the handshake with whatever [`TlsConfig`] holds at that moment: a new
//! certificate, key or client CA applies to the next connection, and streams already open
//! keep theirs (a proxy is not cut off by a rotation). The handshaken streams go to tonic as
//! its incoming connections; tonic reads their peer certificates for the identity checks
//! as it does for its own TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// A client that connects and never finishes its handshake is dropped after this long, so
/// it holds no more than a socket meanwhile.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for tonic.
const ACCEPTED: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM {what} in it")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: not PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("the client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("certificate {cert} and key {key} do not make a pair: {message}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// Certificate files for xDS over TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs proxies' client certificates (client certificates are required).
    pub client_ca: PathBuf,
}

impl TlsFiles {
    /// The directories to watch for a rotation (each once).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.cert, &self.key, &self.client_ca]
            .iter()
            .map(|p| {
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_owned()
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Reads and checks the three files: a server configuration that requires a client
    /// certificate signed by the client CA and speaks HTTP/2.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })
        };
        let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, Error> {
            let pem = read(path)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Pem {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(Error::Empty {
                    path: path.to_owned(),
                    what: "certificate",
                });
            }
            Ok(certs)
        };
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|e| Error::Pem {
            path: self.key.clone(),
            message: e.to_string(),
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs(&self.client_ca)? {
            roots.add(ca).map_err(|e| Error::ClientCa {
                path: self.client_ca.clone(),
                message: e.to_string(),
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| Error::ClientCa {
            path: self.client_ca.clone(),
            message: e.to_string(),
        })?;
        let pair = |message: String| Error::Pair {
            cert: self.cert.clone(),
            key: self.key.clone(),
            message,
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| pair(e.to_string()))?
            .with_client_cert_verifier(verifier)
            // Checks that the key is the certificate's: a half-rotated pair is refused here,
            // not at the first handshake.
            .with_single_cert(chain, key)
            .map_err(|e| pair(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The configuration new connections are handshaken with; swapped whole on a rotation.
#[derive(Clone)]
pub struct TlsConfig(Arc<ArcSwap<rustls::ServerConfig>>);

impl TlsConfig {
    pub fn load(files: &TlsFiles) -> Result<Self, Error> {
        Ok(Self(Arc::new(ArcSwap::from_pointee(
            files.server_config()?,
        ))))
    }

    /// Reads the files again; on an error the configuration in use stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), Error> {
        self.0.store(Arc::new(files.server_config()?));
        Ok(())
    }

    /// Accepts connections on `listener` and handshakes each (concurrently, with a
    /// timeout) with the configuration current when it arrived; the handshaken ones come
    /// out of the returned channel, until the channel's receiver is dropped.
    pub fn accept(
        &self,
        listener: TcpListener,
    ) -> mpsc::Receiver<std::io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = mpsc::channel(ACCEPTED);
        let config = self.0.clone();
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, do not spin.
                            tracing::warn!("xDS accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(config.load_full());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        // A client without a valid certificate: it is told in the handshake.
                        Ok(Err(e)) => tracing::debug!("xDS TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("xDS TLS handshake timed out"),
                    }
                });
            }
        });
        rx
    }
}

//! A throwaway CA for tests and benchmarks: certificates for xDS over TLS, mesh identities (SPIFFE URIs)
//! and HTTPS listeners.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

pub struct Pki {
    dir: tempfile::TempDir,
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subject names: BoringSSL (Envoy) takes a leaf whose issuer equals its
        // subject for self-signed.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tidegate test CA");
        let ca = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self {
            dir,
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate with `sans`; returns (cert path, key path, cert PEM, key PEM).
    pub fn issue(&self, name: &str, sans: Vec<SanType>) -> (PathBuf, PathBuf, String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.pem(), key.serialize_pem())
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

impl Pki {
    /// Writes a certificate and key for `sans` as `<dir>/tls.crt` and `<dir>/tls.key` (the
    /// layout of `serve --certs`); returns the certificate PEM.
    pub fn write_pair(&self, dir: &Path, name: &str, sans: Vec<SanType>) -> String {
        let (_, _, cert, key) = self.issue(name, sans);
        std::fs::create_dir_all(dir).unwrap();
        // Key first: a watcher that reads between the two writes sees a mismatched pair
        // at worst briefly, and the next event reloads.
        std::fs::write(dir.join("tls.key"), key).unwrap();
        std::fs::write(dir.join("tls.crt"), &cert).unwrap();
        cert
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

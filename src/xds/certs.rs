//! The certificates directory (`serve --certs DIR`): what tidegate serves over SDS.
//!
//! ```text
//! DIR/mesh/ca.crt                          trust bundle of the mesh (HBONE mTLS)
//! DIR/mesh/<namespace>/<proxy>/tls.crt     mesh identity of proxy <proxy>.<namespace>
//! DIR/mesh/<namespace>/<proxy>/tls.key
//! DIR/secrets/<namespace>/<name>/tls.crt   what a listener's certificateRefs {name} (or an
//! DIR/secrets/<namespace>/<name>/tls.key   Istio server's credentialName) in <namespace> holds
//! DIR/secrets/<namespace>/<name>/ca.crt    a CA bundle (Istio's credentialName for MUTUAL and
//!                                          DestinationRule TLS); may stand alone
//! ```
//!
//! The `<namespace>/<name>/tls.crt` shape is what mounting a `kubernetes.io/tls` Secret
//! gives, so a Deployment can project Secrets straight into the directory.
//!
//! A file that is missing or unparsable is a *problem* of the load, listed in `/status`;
//! everything else loads, and what needs the broken file is left out of the config with a
//! warning. Private keys are kept only as bytes to hand to Envoy: their `Debug` is
//! redacted, and nothing prints them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--certs {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A private key in PEM. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(Vec<u8>);

impl PrivateKey {
    pub fn pem(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// A certificate chain with its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    pub chain_pem: Vec<u8>,
    pub key: PrivateKey,
    pub info: CertInfo,
}

/// What `/status` shows of a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub serial: String,
    pub not_after: String,
    /// Subject alternative names (DNS names, URIs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Certs {
    pub dir: PathBuf,
    /// PEM of the mesh's trust bundle.
    pub mesh_ca: Option<Vec<u8>>,
    /// Mesh identities by proxy id `<proxy>.<namespace>`.
    pub identities: BTreeMap<String, KeyPair>,
    /// TLS Secrets by (namespace, name).
    pub secrets: BTreeMap<(String, String), KeyPair>,
    /// CA bundles (PEM) of Secrets with a `ca.crt`, by (namespace, name).
    pub secret_cas: BTreeMap<(String, String), Vec<u8>>,
    /// Files that could not be used, each with why and what would be valid.
    pub problems: Vec<String>,
}

/// The `/status` view: names and certificate facts, never key material.
#[derive(Debug, Serialize)]
pub struct CertsStatus {
    pub dir: String,
    pub mesh_ca: bool,
    pub identities: BTreeMap<String, CertInfo>,
    pub secrets: BTreeMap<String, CertInfo>,
    pub problems: Vec<String>,
}

impl Certs {
    /// Reads the directory. Only a directory that cannot be read at all is an error;
    /// anything wrong inside it is a problem (listed) and the rest loads.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        Self::reload(dir, None)
    }

    /// Reads the directory again. A file that was good in `previous` and is now broken
    /// (half written during a rotation, or a bad new certificate) keeps its previous
    /// contents, with the problem listed: a typo must not take a listener down.
    pub fn reload(dir: &Path, previous: Option<&Certs>) -> Result<Self, Error> {
        std::fs::read_dir(dir).map_err(|source| Error::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let mut certs = Certs {
            dir: dir.to_owned(),
            ..Certs::default()
        };
        let ca = dir.join("mesh").join("ca.crt");
        if ca.exists() {
            certs.mesh_ca = certs.load_ca(dir, &ca, previous.and_then(|p| p.mesh_ca.as_ref()));
        }
        for (ns, name, path) in pairs(&dir.join("mesh"), &mut certs.problems, dir) {
            let key = format!("{name}.{ns}");
            let kept = previous.and_then(|p| p.identities.get(&key));
            if let Some(p) = certs.load_pair(dir, &path, kept) {
                certs.identities.insert(key, p);
            }
        }
        for (ns, name, path) in pairs(&dir.join("secrets"), &mut certs.problems, dir) {
            let key = (ns, name);
            let ca = path.join("ca.crt");
            let has_ca = ca.exists();
            if has_ca
                && let Some(bytes) =
                    certs.load_ca(dir, &ca, previous.and_then(|p| p.secret_cas.get(&key)))
            {
                certs.secret_cas.insert(key.clone(), bytes);
            }
            // A Secret holding only a CA bundle has no pair, and that is no problem.
            if has_ca && !path.join("tls.crt").exists() && !path.join("tls.key").exists() {
                continue;
            }
            let kept = previous.and_then(|p| p.secrets.get(&key));
            if let Some(p) = certs.load_pair(dir, &path, kept) {
                certs.secrets.insert(key, p);
            }
        }
        Ok(certs)
    }

    /// Loads a CA bundle (`ca.crt`); on failure records the problem and falls back to
    /// `kept`.
    fn load_ca(&mut self, dir: &Path, path: &Path, kept: Option<&Vec<u8>>) -> Option<Vec<u8>> {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| parse_chain(&b).map(|_| b))
        {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.problems.push(format!(
                    "{}: {e}{}",
                    rel(dir, path),
                    if kept.is_some() {
                        "; serving the previous one"
                    } else {
                        ""
                    }
                ));
                kept.cloned()
            }
        }
    }

    /// Loads one pair; on failure records the problem and falls back to `kept`.
    fn load_pair(&mut self, dir: &Path, path: &Path, kept: Option<&KeyPair>) -> Option<KeyPair> {
        match load_pair(path) {
            Ok(p) => Some(p),
            Err(e) => {
                self.problems.push(format!(
                    "{}: {e}{}",
                    rel(dir, path),
                    kept.map(|k| format!(
                        "; serving the previous certificate (serial {})",
                        k.info.serial
                    ))
                    .unwrap_or_default()
                ));
                kept.cloned()
            }
        }
    }

    pub fn status(&self) -> CertsStatus {
        CertsStatus {
            dir: self.dir.display().to_string(),
            mesh_ca: self.mesh_ca.is_some(),
            identities: self
                .identities
                .iter()
                .map(|(k, v)| (k.clone(), v.info.clone()))
                .collect(),
            secrets: self
                .secrets
                .iter()
                .map(|((ns, n), v)| (format!("{ns}/{n}"), v.info.clone()))
                .collect(),
            problems: self.problems.clone(),
        }
    }

    /// Why a file the config needs is not there, for warnings.
    pub fn missing(&self, what: &str) -> String {
        format!(
            "{what} is not in --certs {}; see the problems listed under certs in /status",
            self.dir.display()
        )
    }
}

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// `<root>/<namespace>/<name>/` directories.
fn pairs(root: &Path, problems: &mut Vec<String>, dir: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(root) else {
        return out;
    };
    for ns in namespaces.flatten() {
        let ns_path = ns.path();
        if !ns_path.is_dir() {
            if ns_path.file_name().is_some_and(|n| n != "ca.crt") {
                problems.push(format!(
                    "{}: not a directory; valid: <namespace>/<name>/tls.crt and tls.key",
                    rel(dir, &ns_path)
                ));
            }
            continue;
        }
        let Ok(names) = std::fs::read_dir(&ns_path) else {
            continue;
        };
        for n in names.flatten() {
            let p = n.path();
            // Kubernetes Secret volumes hold `..data` and timestamped directories beside
            // the key files; only `<name>/` directories with key files are pairs.
            let file_name = n.file_name().to_string_lossy().into_owned();
            if file_name.starts_with("..") || !p.is_dir() {
                continue;
            }
            out.push((ns.file_name().to_string_lossy().into_owned(), file_name, p));
        }
    }
    out.sort();
    out
}

fn load_pair(dir: &Path) -> Result<KeyPair, String> {
    let crt = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let chain_pem = std::fs::read(&crt).map_err(|e| format!("tls.crt: {e}"))?;
    let info = parse_chain(&chain_pem).map_err(|e| format!("tls.crt: {e}"))?;
    let key_pem = std::fs::read(&key).map_err(|e| format!("tls.key: {e}"))?;
    check_key(&key_pem).map_err(|e| format!("tls.key: {e}"))?;
    Ok(KeyPair {
        chain_pem,
        key: PrivateKey(key_pem),
        info,
    })
}

/// Parses every PEM certificate; returns the facts of the first (the leaf).
fn parse_chain(bytes: &[u8]) -> Result<CertInfo, String> {
    use x509_parser::extensions::GeneralName;
    let mut first = None;
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|e| {
            format!("not PEM ({e}); valid: one or more -----BEGIN CERTIFICATE----- blocks")
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "holds a {} block; valid: -----BEGIN CERTIFICATE----- blocks only",
                pem.label
            ));
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        if first.is_none() {
            let sans = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
                            GeneralName::URI(u) => Some(format!("URI:{u}")),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            first = Some(CertInfo {
                subject: cert.subject().to_string(),
                serial: cert.raw_serial_as_string(),
                not_after: cert
                    .validity()
                    .not_after
                    .to_rfc2822()
                    .unwrap_or_else(|_| cert.validity().not_after.to_string()),
                sans,
            });
        }
    }
    first.ok_or_else(|| {
        "holds no certificate; valid: one or more -----BEGIN CERTIFICATE----- blocks".into()
    })
}

/// A key file must hold exactly one PEM private key (PKCS#8, PKCS#1 or SEC1).
fn check_key(bytes: &[u8]) -> Result<(), String> {
    let mut keys = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        // Do not echo parser errors: they may quote the key's bytes.
        let pem =
            pem.map_err(|_| "not PEM; valid: one -----BEGIN PRIVATE KEY----- block".to_owned())?;
        if !pem.label.ends_with("PRIVATE KEY") {
            return Err(format!(
                "holds a {} block; valid: one -----BEGIN PRIVATE KEY----- block",
                pem.label
            ));
        }
        keys += 1;
    }
    match keys {
        1 => Ok(()),
        0 => Err("holds no private key; valid: one -----BEGIN PRIVATE KEY----- block".into()),
        n => Err(format!(
            "holds {n} private keys; valid: one -----BEGIN PRIVATE KEY----- block"
        )),
    }
}

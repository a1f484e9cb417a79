//! The endpoints file: where the Services that routes send to are, for proxies outside a
//! cluster (and for tests). YAML keyed by `<service>.<namespace>:<port>`:
//!
//! ```yaml
//! httpbin.httpbin:8000: ["127.0.0.1:18081", "127.0.0.1:18082"]   # addresses only
//! reviews.bookinfo:9080: {vip: "10.96.0.10", addresses: ["127.0.0.1:18083"]}
//! grpc.shop:9000: {appProtocol: kubernetes.io/h2c, addresses: ["127.0.0.1:18084"]}
//! ```
//!
//! `appProtocol` is the Service port's (Gateway API reads the backend protocol from it):
//! `kubernetes.io/h2c` makes the proxies speak HTTP/2 without TLS to that port. `portName`
//! is the Service port's `name`, which a BackendTLSPolicy's `sectionName` targets:
//!
//! ```yaml
//! api.shop:443: {portName: https, addresses: ["127.0.0.1:18443"]}
//! ```
//!
//! The file lists the Services there are: a route's backend missing from it does not
//! exist (no cluster; its requests are answered 500), one listed with no addresses exists
//! with no endpoints (503).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;

use super::plan::Backend;
use crate::model::names::is_dns1123_label;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// One Service port's endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The Service port, as the key names it (parsed once, here).
    pub service: Backend,
    /// The Service's cluster IP, if known (waypoints select services by it).
    pub vip: Option<IpAddr>,
    pub addresses: Vec<SocketAddr>,
    /// The Service port's `appProtocol`.
    pub app_protocol: Option<String>,
    /// The Service port's `name`.
    pub port_name: Option<String>,
}

/// `appProtocol` values the proxies act on.
pub const APP_PROTOCOLS: &[&str] = &["kubernetes.io/h2c", "kubernetes.io/ws", "http"];

impl Entry {
    /// Whether the port speaks HTTP/2 without TLS (prior knowledge).
    pub fn is_h2c(&self) -> bool {
        self.app_protocol.as_deref() == Some("kubernetes.io/h2c")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEntry {
    List(Vec<String>),
    Full {
        #[serde(default)]
        vip: Option<String>,
        #[serde(default)]
        addresses: Vec<String>,
        #[serde(default, rename = "appProtocol")]
        app_protocol: Option<String>,
        #[serde(default, rename = "portName")]
        port_name: Option<String>,
    },
}

impl Endpoints {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| Error::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let raw: BTreeMap<String, RawEntry> = serde_saphyr::from_str(text).map_err(|e| {
            format!(
                "{}; valid: a mapping of `<service>.<namespace>:<port>` to a list of \"ip:port\" or {{vip, addresses}}",
                e.to_string().lines().next().unwrap_or("invalid YAML")
            )
        })?;
        let mut entries = BTreeMap::new();
        let mut problems = Vec::new();
        for (key, value) in raw {
            let Some(service) = parse_key(&key) else {
                problems.push(format!("`{key}` is not a valid key; valid: <service>.<namespace>:<port>, such as httpbin.httpbin:8000"));
                continue;
            };
            let (vip, addrs, app_protocol, port_name) = match value {
                RawEntry::List(a) => (None, a, None, None),
                RawEntry::Full {
                    vip,
                    addresses,
                    app_protocol,
                    port_name,
                } => (vip, addresses, app_protocol, port_name),
            };
            let mut entry = Entry {
                service,
                ..Entry::default()
            };
            if let Some(n) = port_name {
                if is_dns1123_label(&n) {
                    entry.port_name = Some(n);
                } else {
                    problems.push(format!(
                        "{key}: portName `{n}` is not a valid port name; valid: a DNS-1123 label such as https"
                    ));
                }
            }
            if let Some(p) = app_protocol {
                if APP_PROTOCOLS.contains(&p.as_str()) {
                    entry.app_protocol = Some(p);
                } else {
                    problems.push(format!(
                        "{key}: appProtocol `{p}` is not supported; valid: {}",
                        APP_PROTOCOLS.join(", ")
                    ));
                }
            }
            if let Some(v) = vip {
                match v.parse() {
                    Ok(ip) => entry.vip = Some(ip),
                    Err(_) => problems.push(format!("{key}: vip `{v}` is not an IP address")),
                }
            }
            for a in addrs {
                match a.parse::<SocketAddr>() {
                    Ok(sa) => entry.addresses.push(sa),
                    Err(_) => problems.push(format!(
                        "{key}: `{a}` is not an address; valid: ip:port such as 127.0.0.1:8080"
                    )),
                }
            }
            entries.insert(key, entry);
        }
        if problems.is_empty() {
            Ok(Self { entries })
        } else {
            Err(problems.join("; "))
        }
    }

    /// Addresses of `<service>.<namespace>:<port>`; empty if unknown.
    pub fn addresses(&self, key: &str) -> Vec<(String, u16)> {
        self.entries
            .get(key)
            .map(|e| {
                e.addresses
                    .iter()
                    .map(|a| (a.ip().to_string(), a.port()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `<service>.<namespace>:<port>` as the Service port it names.
fn parse_key(key: &str) -> Option<Backend> {
    let (svc_ns, port) = key.rsplit_once(':')?;
    let (svc, ns) = svc_ns.split_once('.')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    (is_dns1123_label(svc) && is_dns1123_label(ns)).then(|| Backend {
        service: svc.to_owned(),
        namespace: ns.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        let e = Endpoints::parse(
            "httpbin.httpbin:8000: [\"127.0.0.1:18081\", \"127.0.0.1:18082\"]\nreviews.bookinfo:9080: {vip: \"10.96.0.10\", addresses: [\"127.0.0.1:18083\"]}\n",
        )
        .unwrap();
        assert_eq!(
            e.addresses("httpbin.httpbin:8000"),
            vec![("127.0.0.1".into(), 18081), ("127.0.0.1".into(), 18082)]
        );
        assert_eq!(
            e.entries["reviews.bookinfo:9080"].vip,
            Some("10.96.0.10".parse().unwrap())
        );
        assert!(e.addresses("nope.nope:1").is_empty());
        let h2 = Endpoints::parse(
            "g.shop:9000: {appProtocol: kubernetes.io/h2c, addresses: [\"127.0.0.1:1\"]}\n",
        )
        .unwrap();
        assert!(h2.entries["g.shop:9000"].is_h2c());
        let bad = Endpoints::parse("g.shop:9000: {appProtocol: grpc, addresses: []}\n");
        assert!(
            bad.unwrap_err()
                .contains("appProtocol `grpc` is not supported; valid: kubernetes.io/h2c"),
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let err =
            Endpoints::parse("httpbin:8000: [\"x\"]\nok.ns:80: [\"localhost:80\"]\n").unwrap_err();
        assert!(err.contains("`httpbin:8000` is not a valid key"), "{err}");
        assert!(
            err.contains("ok.ns:80: `localhost:80` is not an address"),
            "{err}"
        );
    }
}

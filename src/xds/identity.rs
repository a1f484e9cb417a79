//! Who a proxy is, by its client certificate: the gateway it claims in `node.cluster`
//! must be the one its certificate names, so a proxy gets only its own config.
//!
//! Accepted identities for proxy `<gateway>.<namespace>`:
//! - a DNS SAN `<gateway>.<namespace>` (or `<gateway>.<namespace>.svc[.…]`);
//! - a SPIFFE URI SAN `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` where
//!   the service account is `<gateway>` or `<gateway>-istio` (what Istio names the service
//!   account of a Gateway API gateway it deploys).

use x509_parser::extensions::GeneralName;

/// A subject alternative name of a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Uri(String),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

/// The SANs of a DER certificate (empty if it cannot be parsed: nothing will match).
pub fn sans(der: &[u8]) -> Vec<San> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(San::Dns(d.to_string())),
            GeneralName::URI(u) => Some(San::Uri(u.to_string())),
            _ => None,
        })
        .collect()
}

/// Whether a certificate with `sans` may receive the config of `proxy`.
pub fn allowed(proxy: &str, sans: &[San]) -> bool {
    let Some((gateway, namespace)) = proxy.split_once('.') else {
        return false;
    };
    sans.iter().any(|san| match san {
        San::Dns(d) => {
            d == proxy
                || d.strip_prefix(proxy)
                    .is_some_and(|rest| rest == ".svc" || rest.starts_with(".svc."))
        }
        San::Uri(u) => u
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(_, path)| path.strip_prefix("ns/"))
            .and_then(|path| path.split_once("/sa/"))
            .is_some_and(|(ns, sa)| {
                ns == namespace && (sa == gateway || sa.strip_suffix("-istio") == Some(gateway))
            }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_and_dns_identities() {
        let spiffe = |s: &str| San::Uri(s.to_owned());
        assert!(allowed(
            "gw.ns",
            &[spiffe("spiffe://cluster.local/ns/ns/sa/gw")]
        ));
        assert!(allowed("gw.ns", &[spiffe("spiffe://td/ns/ns/sa/gw-istio")]));
        assert!(!allowed("gw.ns", &[spiffe("spiffe://td/ns/other/sa/gw")]));
        assert!(!allowed("gw.ns", &[spiffe("spiffe://td/ns/ns/sa/gw2")]));
        assert!(!allowed("gw.ns", &[spiffe("https://td/ns/ns/sa/gw")]));
        assert!(allowed("gw.ns", &[San::Dns("gw.ns".into())]));
        assert!(allowed(
            "gw.ns",
            &[San::Dns("gw.ns.svc.cluster.local".into())]
        ));
        assert!(!allowed("gw.ns", &[San::Dns("gw.ns.evil.com".into())]));
        assert!(!allowed("gw.ns", &[]));
        assert!(!allowed("", &[San::Dns("".into())]));
    }
}

//! Kubernetes and Gateway API name rules, shared by every layer that checks a name (intent
//! decoding, the endpoints file, proxy bootstrap), so one rule decides what a name is.

/// DNS-1123 label: what Kubernetes accepts for a namespace or a Service name.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: what Kubernetes accepts for most object names.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    // Kubernetes' own rule (IsDNS1123Subdomain): the whole name at most 253 characters of
    // dot-separated alphanumeric-and-dash parts; unlike a DNS label, a part may exceed 63.
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A Gateway API hostname: a DNS name, optionally with a leading `*.` label, no IPs, no port.
pub fn is_gateway_hostname(s: &str) -> bool {
    let rest = s.strip_prefix("*.").unwrap_or(s);
    is_dns1123_subdomain(rest) && rest.parse::<std::net::Ipv4Addr>().is_err()
}

/// A Kubernetes label or annotation key: `[prefix/]name`.
pub fn is_qualified_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes label value: empty, or at most 63 characters, alphanumeric at both ends.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("httpbin"));
        assert!(!is_dns1123_label("HttpBin"));
        assert!(!is_dns1123_label("-x"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(is_gateway_hostname("*.example.com"));
        assert!(is_gateway_hostname("httpbin.example.com"));
        assert!(!is_gateway_hostname("httpbin.example.com:80"));
        assert!(!is_gateway_hostname("10.0.0.1"));
        assert!(!is_gateway_hostname("a.*.com"));
        assert!(is_qualified_key("app.kubernetes.io/name"));
        assert!(is_qualified_key("team"));
        assert!(!is_qualified_key("Bad_Prefix/x"));
        assert!(!is_qualified_key("example.com/"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_x"));
        assert!(!is_label_value("-x"));
    }
}

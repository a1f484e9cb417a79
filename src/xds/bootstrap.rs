//! `tidegate bootstrap`: the Envoy bootstrap that makes a proxy subscribe to tidegate.

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--proxy {0:?} is not NAME.NAMESPACE (the gateway's name and namespace, both DNS-1123 labels)"
    )]
    Proxy(String),
    #[error("--xds {0:?} is not HOST:PORT")]
    Xds(String),
    #[error("--admin {0:?} is not IP:PORT")]
    Admin(String),
    #[error("--bind {0:?} is not an IP address")]
    Bind(String),
    #[error("--ref {0:?} is not a branch name")]
    Ref(String),
}

#[derive(Clone, Debug)]
pub struct Options {
    /// `<gateway>.<namespace>`.
    pub proxy: String,
    /// tidegate's xDS address, `host:port`.
    pub xds: String,
    /// Delta (incremental) ADS instead of state-of-the-world.
    pub delta: bool,
    /// Address the proxy's listeners bind (sent to tidegate in node metadata).
    pub bind: Option<String>,
    /// Envoy's own admin address.
    pub admin: String,
    /// The branch whose config the proxy wants (a preview branch `serve
    /// --preview-branches` follows; sent in node metadata). `None`: the followed branch.
    pub r#ref: Option<String>,
    /// xDS over TLS: the proxy's client certificate, key, and the CA of tidegate's
    /// certificate (file paths, read by Envoy).
    pub tls: Option<ClientTls>,
}

#[derive(Clone, Debug)]
pub struct ClientTls {
    pub cert: String,
    pub key: String,
    pub ca: String,
    /// The name tidegate's certificate is checked against (default: the --xds host).
    pub server_name: Option<String>,
}

/// The bootstrap as a JSON value (Envoy reads it as YAML or JSON).
pub fn bootstrap(o: &Options) -> Result<Value, Error> {
    let (name, ns) = o
        .proxy
        .split_once('.')
        .ok_or_else(|| Error::Proxy(o.proxy.clone()))?;
    let label = crate::model::names::is_dns1123_label;
    if !label(name) || !label(ns) {
        return Err(Error::Proxy(o.proxy.clone()));
    }
    let (host, port) = o
        .xds
        .rsplit_once(':')
        .ok_or_else(|| Error::Xds(o.xds.clone()))?;
    let port: u16 = port.parse().map_err(|_| Error::Xds(o.xds.clone()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let admin: std::net::SocketAddr = o.admin.parse().map_err(|_| Error::Admin(o.admin.clone()))?;
    let mut metadata = serde_json::Map::new();
    if let Some(bind) = &o.bind {
        bind.parse::<std::net::IpAddr>()
            .map_err(|_| Error::Bind(bind.clone()))?;
        metadata.insert(super::server::BIND_METADATA_KEY.into(), json!(bind));
    }
    if let Some(r) = &o.r#ref {
        // What `git check-ref-format --branch` refuses and a YAML reader would trip on.
        let invalid = r.is_empty()
            || r.starts_with('-')
            || r.starts_with('/')
            || r.ends_with('/')
            || r.ends_with(".lock")
            || r.contains("..")
            || r.contains("//")
            || r.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
        if invalid {
            return Err(Error::Ref(r.clone()));
        }
        metadata.insert(super::server::REF_METADATA_KEY.into(), json!(r));
    }
    let ads = json!({"ads": {}, "resource_api_version": "V3"});
    // An IP needs no resolution; a name is resolved by DNS (tidegate's Service in a cluster).
    let cluster_type = if host.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    let mut cluster = json!({
        "name": "tidegate-xds",
        "type": cluster_type,
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
        "load_assignment": {
            "cluster_name": "tidegate-xds",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}],
        },
    });
    if let Some(tls) = &o.tls {
        let sni = tls.server_name.clone().unwrap_or_else(|| host.to_owned());
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": sni,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "tls_certificates": [{"certificate_chain": {"filename": tls.cert}, "private_key": {"filename": tls.key}}],
                    "validation_context": {
                        "trusted_ca": {"filename": tls.ca},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": sni}}],
                    },
                },
            },
        });
    }
    Ok(json!({
        "node": {
            // The ref is part of the id: a main and a preview proxy of one gateway are told
            // apart in `/status` and CSDS.
            "id": match &o.r#ref {
                Some(r) => format!("{}~{}~{r}", o.proxy, o.bind.as_deref().unwrap_or("any")),
                None => format!("{}~{}", o.proxy, o.bind.as_deref().unwrap_or("any")),
            },
            "cluster": o.proxy,
            "metadata": metadata,
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if o.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "tidegate-xds"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {"clusters": [cluster]},
        // Ambient mode: waypoints route tunnelled connections, and gateways open HBONE
        // tunnels, through internal listeners served over LDS; Envoy needs this extension
        // at boot to accept them (it is inert otherwise).
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
            },
        }],
        "admin": {"address": {"socket_address": {"address": admin.ip().to_string(), "port_value": admin.port()}}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_proxy_and_checks_its_arguments() {
        let o = Options {
            r#ref: None,
            proxy: "gw.ns".into(),
            xds: "127.0.0.1:18000".into(),
            delta: true,
            bind: Some("127.0.0.2".into()),
            admin: "127.0.0.1:0".into(),
            tls: None,
        };
        let b = bootstrap(&o).unwrap();
        assert_eq!(b["node"]["cluster"], "gw.ns");
        assert_eq!(b["node"]["metadata"]["tidegate.io/bind"], "127.0.0.2");
        assert_eq!(
            b["bootstrap_extensions"][0]["name"],
            "envoy.bootstrap.internal_listener"
        );
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert!(matches!(
            bootstrap(&Options {
                proxy: "gw".into(),
                ..o.clone()
            }),
            Err(Error::Proxy(_))
        ));
        assert!(matches!(
            bootstrap(&Options {
                xds: "nowhere".into(),
                ..o.clone()
            }),
            Err(Error::Xds(_))
        ));
        assert!(matches!(
            bootstrap(&Options {
                bind: Some("x".into()),
                ..o.clone()
            }),
            Err(Error::Bind(_))
        ));
        assert_eq!(b["node"]["metadata"].get("tidegate.io/ref"), None);
    }

    #[test]
    fn a_ref_is_sent_in_metadata_and_must_be_a_branch_name() {
        let o = Options {
            r#ref: Some("preview/login-page".into()),
            proxy: "gw.ns".into(),
            xds: "127.0.0.1:18000".into(),
            delta: false,
            bind: None,
            admin: "127.0.0.1:0".into(),
            tls: None,
        };
        let b = bootstrap(&o).unwrap();
        assert_eq!(
            b["node"]["metadata"]["tidegate.io/ref"],
            "preview/login-page"
        );
        // Told apart from the main proxy of the same gateway in /status and CSDS.
        assert_eq!(b["node"]["id"], "gw.ns~any~preview/login-page");
        for bad in [
            "", "-x", "a b", "a..b", "a:b", "x/", "/x", "a*", "x.lock", "a//b",
        ] {
            assert!(
                matches!(
                    bootstrap(&Options {
                        r#ref: Some(bad.into()),
                        ..o.clone()
                    }),
                    Err(Error::Ref(_))
                ),
                "{bad:?} accepted"
            );
        }
    }
}

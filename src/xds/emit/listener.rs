//! Listeners (LDS): one per HTTP(S) port, bound to the client's address; a proxyless
//! gRPC client gets an `api_listener` per host instead. TLS, TCP and UDP ports are `l4`'s.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::listener::v3::{
    ApiListener, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    self as hcm, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext,
};

use crate::xds::certs::Certs;
use crate::xds::plan::{ProxyPlan, SecretRef, TlsPlan};

use super::common::{
    CORS_FILTER, Variant, any, http_connection_manager, network_filter, per_listener_routes,
    route_config_name, sds, secret_name, secret_served, socket_address, tls_inspector,
    transport_socket,
};
use super::tls;

/// Envoy's CORS filter, placed before the router in listeners that have a route with a
/// CORS policy (the policy itself is per route).
fn cors_filter() -> HttpFilter {
    HttpFilter {
        name: CORS_FILTER.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &Cors::default(),
        ))),
        ..HttpFilter::default()
    }
}

/// The TLS Secret an HTTPS listener's chain serves, if it is in `--certs`.
fn listener_chain(
    port: u16,
    hcm: &HttpConnectionManager,
    t: &TlsPlan,
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
) -> Option<FilterChain> {
    if !secret_served(port, "HTTPS", &t.server_names, &t.secret, certs, warnings) {
        return None;
    }
    let SecretRef {
        namespace: ns,
        name,
    } = &t.secret;
    // Client certificates: a chain whose client CA cannot be had is not served (serving it
    // would let in any client).
    let (validation_context_type, required) = match &t.client_validation {
        None => (None, false),
        Some(v) => match tls::client_validation(v, certs) {
            Ok(x) => x,
            Err(why) => {
                warnings.push(format!(
                    "port {port}: HTTPS chain {ns}/{name} is not served: its client CA cannot be had: {why}"
                ));
                return None;
            }
        },
    };
    let tls = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            tls_certificate_sds_secret_configs: vec![sds(&secret_name(ns, name))],
            validation_context_type,
            ..CommonTlsContext::default()
        }),
        require_client_certificate: required
            .then_some(envoy_types::pb::google::protobuf::BoolValue { value: true }),
        ..DownstreamTlsContext::default()
    };
    Some(FilterChain {
        name: format!("{}/{ns}/{name}", t.server_names.join(",")),
        filter_chain_match: (!t.server_names.is_empty()).then(|| FilterChainMatch {
            server_names: t.server_names.clone(),
            ..FilterChainMatch::default()
        }),
        transport_socket: Some(transport_socket("envoy.transport_sockets.tls", &tls)),
        filters: vec![network_filter(
            "envoy.filters.network.http_connection_manager",
            hcm,
        )],
        ..FilterChain::default()
    })
}

/// Listeners and routes of a plan (clusters and endpoints come from [`clusters`]).
pub(super) fn listeners(
    plan: &ProxyPlan,
    variant: &Variant,
    certs: Option<&Certs>,
    warnings: &mut Vec<String>,
) -> (BTreeMap<String, Listener>, BTreeSet<u16>) {
    let mut listeners = BTreeMap::new();
    // Ports whose listener is served: a port none of whose TLS chains can be served has
    // no listener, and then no route configuration either.
    let mut served = BTreeSet::new();
    for (port, l) in &plan.listeners {
        if !matches!(l.kind, crate::xds::plan::ListenerKind::Http(_)) {
            // Connections, not requests: no route configuration. A proxyless gRPC client
            // has no use for them.
            if !variant.proxyless
                && let Some((name, listener)) = super::l4::listener(l, variant, certs, warnings)
            {
                listeners.insert(name, listener);
            }
            continue;
        }
        let l = l.http();
        let rc_name = route_config_name(*port, l);
        let split = per_listener_routes(l, variant);
        let mut hcm = http_connection_manager(&rc_name);
        if l.vhosts
            .iter()
            .flat_map(|v| &v.routes)
            .any(|r| r.cors.is_some())
        {
            hcm.http_filters.insert(0, cors_filter());
        }
        if variant.proxyless {
            served.insert(*port);
            for v in &l.vhosts {
                for d in v.domains.iter().filter(|d| !d.contains('*')) {
                    let name = format!("{d}:{port}");
                    listeners.insert(
                        name.clone(),
                        Listener {
                            name,
                            api_listener: Some(ApiListener {
                                api_listener: Some(any(&hcm)),
                            }),
                            ..Listener::default()
                        },
                    );
                }
            }
        } else {
            let (filter_chains, listener_filters) = if l.tls.is_empty() {
                (
                    vec![FilterChain {
                        filters: vec![network_filter(
                            "envoy.filters.network.http_connection_manager",
                            &hcm,
                        )],
                        ..FilterChain::default()
                    }],
                    Vec::new(),
                )
            } else {
                let chains: Vec<FilterChain> = l
                    .tls
                    .iter()
                    .filter_map(|t| {
                        if split {
                            let mut own = hcm.clone();
                            let name = format!("{rc_name}.{}", t.listener);
                            if let Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) =
                                &mut own.route_specifier
                            {
                                r.route_config_name = name.clone();
                            }
                            own.stat_prefix = name;
                            listener_chain(*port, &own, t, certs, warnings)
                        } else {
                            listener_chain(*port, &hcm, t, certs, warnings)
                        }
                    })
                    .collect();
                (chains, vec![tls_inspector()])
            };
            if filter_chains.is_empty() {
                continue;
            }
            served.insert(*port);
            listeners.insert(
                rc_name.clone(),
                Listener {
                    name: rc_name.clone(),
                    address: Some(socket_address(
                        variant.bind.as_deref().unwrap_or("0.0.0.0"),
                        *port,
                    )),
                    filter_chains,
                    listener_filters,
                    ..Listener::default()
                },
            );
        }
    }
    (listeners, served)
}

//! Route configurations (RDS): one per HTTP(S) port, or per Gateway listener of an HTTPS
//! port whose listeners must answer each other's hosts with 421.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::{self as core, HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::config::route::v3::{
    self as route, DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction,
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use crate::xds::plan::{
    Action, CorsPlan, HeaderOps, HttpListener, PathMatch, PathRewrite, ProxyPlan, RoutePlan,
    StrMatch, Target, TlsPlan, VhostPlan, WeightedTarget,
};

use super::common::{
    CORS_FILTER, Variant, any, duration, per_listener_routes, regex, route_config_name,
    string_matcher,
};

/// The route configurations of a plan's listeners on the `served` ports.
pub(super) fn route_configurations(
    plan: &ProxyPlan,
    served: &BTreeSet<u16>,
    variant: &Variant,
) -> BTreeMap<String, RouteConfiguration> {
    let mut routes = BTreeMap::new();
    for (port, l) in plan.listeners.iter().filter(|(p, _)| served.contains(p)) {
        let l = l.http();
        let rc_name = route_config_name(*port, l);
        if per_listener_routes(l, variant) {
            for t in &l.tls {
                let name = format!("{rc_name}.{}", t.listener);
                let own: Vec<&VhostPlan> = l
                    .vhosts
                    .iter()
                    .filter(|v| v.listener == t.listener)
                    .collect();
                let misdirected = misdirected_vhosts(l, t, &own);
                let all: Vec<&VhostPlan> = own.into_iter().chain(&misdirected).collect();
                routes.insert(
                    name.clone(),
                    route_configuration(name, &all, *port, variant),
                );
            }
        } else {
            let all: Vec<&VhostPlan> = l.vhosts.iter().collect();
            routes.insert(
                rc_name.clone(),
                route_configuration(rc_name, &all, *port, variant),
            );
        }
    }
    routes
}

pub(super) fn route_configuration(
    name: String,
    vhosts: &[&VhostPlan],
    port: u16,
    variant: &Variant,
) -> RouteConfiguration {
    let mut vhosts: Vec<VirtualHost> = vhosts
        .iter()
        .map(|v| VirtualHost {
            name: v.name.clone(),
            // `host:port` too, for clients that match the authority with its port
            // (proxyless gRPC); Envoy ignores the port (see below).
            domains: v
                .domains
                .iter()
                .flat_map(|d| {
                    if d == "*" {
                        vec![d.clone()]
                    } else {
                        vec![d.clone(), format!("{d}:{port}")]
                    }
                })
                .collect(),
            routes: v.routes.iter().map(|r| envoy_route(r, variant)).collect(),
            ..VirtualHost::default()
        })
        .collect();
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    RouteConfiguration {
        name,
        virtual_hosts: vhosts,
        // Gateway API: "MUST ignore any port value specified in the HTTP Host
        // header while performing a match"; the Host is forwarded unmodified.
        ignore_port_in_host_matching: !variant.proxyless,
        ..RouteConfiguration::default()
    }
}

/// Virtual hosts answering 421 on the chain of listener `chain`: the hostnames other
/// listeners of the port own. A chain with a hostname also sends everything outside it
/// (`*`) there; the chain of the listener without one (the default chain) leaves
/// unknown hosts to 404. Domains the chain serves itself are never shadowed.
pub fn misdirected_vhosts(l: &HttpListener, chain: &TlsPlan, own: &[&VhostPlan]) -> Vec<VhostPlan> {
    let mut taken: std::collections::BTreeSet<&str> = own
        .iter()
        .flat_map(|v| v.domains.iter().map(String::as_str))
        .collect();
    let mut domains: Vec<String> = Vec::new();
    for other in l.tls.iter().filter(|o| o.listener != chain.listener) {
        for h in &other.server_names {
            if taken.insert(h) {
                domains.push(h.clone());
            }
        }
    }
    if !chain.server_names.is_empty() && taken.insert("*") {
        domains.push("*".into());
    }
    domains
        .into_iter()
        .map(|d| VhostPlan {
            name: format!("misdirected:{d}"),
            listener: chain.listener.clone(),
            domains: vec![d],
            routes: vec![RoutePlan {
                name: "misdirected".into(),
                path: PathMatch::Prefix("/".into()),
                headers: Vec::new(),
                query: Vec::new(),
                method: None,
                action: Action::Status(421),
                request_headers: HeaderOps::default(),
                response_headers: HeaderOps::default(),
                cors: None,
            }],
        })
        .collect()
}

pub(super) fn header_options(ops: &HeaderOps) -> Vec<HeaderValueOption> {
    use core::header_value_option::HeaderAppendAction;
    let one = |(k, v): &(String, String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.to_ascii_lowercase(),
            value: v.clone(),
            ..HeaderValue::default()
        }),
        append_action: action as i32,
        ..HeaderValueOption::default()
    };
    ops.set
        .iter()
        .map(|h| one(h, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|h| one(h, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

pub(super) fn envoy_route(r: &RoutePlan, variant: &Variant) -> Route {
    use route::route_match::PathSpecifier;
    let path_specifier = match &r.path {
        PathMatch::Exact(p) => PathSpecifier::Path(p.clone()),
        PathMatch::Prefix(p) => PathSpecifier::Prefix(p.clone()),
        // gRPC clients know only prefix, path and regex matches (gRFC A28). A gRPC path is
        // always `/service/method`, so `/x/` covers every request `/x` would.
        PathMatch::SegmentPrefix(p) if variant.proxyless => PathSpecifier::Prefix(format!("{p}/")),
        PathMatch::SegmentPrefix(p) => PathSpecifier::PathSeparatedPrefix(p.clone()),
        PathMatch::Regex(p) => PathSpecifier::SafeRegex(regex(p)),
    };
    let mut headers: Vec<HeaderMatcher> = r
        .headers
        .iter()
        .map(|(name, m)| HeaderMatcher {
            name: name.clone(),
            header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(
                string_matcher(m),
            )),
            ..HeaderMatcher::default()
        })
        .collect();
    if let Some(method) = &r.method {
        headers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(
                string_matcher(&StrMatch::Exact(method.clone())),
            )),
            ..HeaderMatcher::default()
        });
    }
    let query_parameters = r
        .query
        .iter()
        .map(|(name, m)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(
                route::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                    string_matcher(m),
                ),
            ),
        })
        .collect();

    let action = match &r.action {
        Action::Status(status) => route::route::Action::DirectResponse(DirectResponseAction {
            status: u32::from(*status),
            ..DirectResponseAction::default()
        }),
        Action::Redirect(red) => {
            use route::redirect_action::{
                PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier,
            };
            let code = match red.status {
                301 => RedirectResponseCode::MovedPermanently,
                303 => RedirectResponseCode::SeeOther,
                307 => RedirectResponseCode::TemporaryRedirect,
                308 => RedirectResponseCode::PermanentRedirect,
                _ => RedirectResponseCode::Found,
            };
            route::route::Action::Redirect(RedirectAction {
                scheme_rewrite_specifier: red
                    .scheme
                    .clone()
                    .map(SchemeRewriteSpecifier::SchemeRedirect),
                host_redirect: red.host.clone().unwrap_or_default(),
                port_redirect: red.port.map(u32::from).unwrap_or_default(),
                path_rewrite_specifier: red.path.as_ref().map(|p| match p {
                    PathRewrite::Full(full) => PathRewriteSpecifier::PathRedirect(full.clone()),
                    PathRewrite::Prefix(prefix) => {
                        PathRewriteSpecifier::PrefixRewrite(prefix.clone())
                    }
                    PathRewrite::Regex {
                        pattern,
                        substitution,
                    } => PathRewriteSpecifier::RegexRewrite(RegexMatchAndSubstitute {
                        pattern: Some(regex(pattern)),
                        substitution: substitution.clone(),
                    }),
                }),
                response_code: code as i32,
                ..RedirectAction::default()
            })
        }
        Action::Forward(f) => {
            use route::route_action::{
                ClusterNotFoundResponseCode, ClusterSpecifier, HostRewriteSpecifier,
            };
            // Per-backend header changes live on a weighted cluster entry, so a route
            // with any uses weighted clusters even for one backend.
            let plain = |w: &WeightedTarget| {
                w.request_headers == HeaderOps::default()
                    && w.response_headers == HeaderOps::default()
            };
            let cluster_specifier = match f.backends.as_slice() {
                [one] if plain(one) => ClusterSpecifier::Cluster(target_cluster(&one.target)),
                _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
                    clusters: f
                        .backends
                        .iter()
                        .map(|w| route::weighted_cluster::ClusterWeight {
                            name: target_cluster(&w.target),
                            weight: Some(UInt32Value { value: w.weight }),
                            request_headers_to_add: header_options(&w.request_headers),
                            request_headers_to_remove: lowercase(&w.request_headers.remove),
                            response_headers_to_add: header_options(&w.response_headers),
                            response_headers_to_remove: lowercase(&w.response_headers.remove),
                            ..Default::default()
                        })
                        .collect(),
                    ..WeightedCluster::default()
                }),
            };
            let mut action = RouteAction {
                cluster_specifier: Some(cluster_specifier),
                // A backend that does not exist (or is not permitted) answers 500, as
                // HTTPRoute requires (Envoy's default is 503); a gRPC route answers 503,
                // which gRPC clients read as UNAVAILABLE, as GRPCRoute requires.
                cluster_not_found_response_code: if f.grpc {
                    ClusterNotFoundResponseCode::ServiceUnavailable as i32
                } else {
                    ClusterNotFoundResponseCode::InternalServerError as i32
                },
                timeout: f.timeout_ms.map(duration),
                host_rewrite_specifier: f
                    .host_rewrite
                    .clone()
                    .map(HostRewriteSpecifier::HostRewriteLiteral),
                request_mirror_policies: f
                    .mirrors
                    .iter()
                    .map(|m| route::route_action::RequestMirrorPolicy {
                        cluster: m.backend.cluster_name(),
                        runtime_fraction: (m.numerator < m.denominator).then(|| {
                            core::RuntimeFractionalPercent {
                                default_value: Some(per_million(m.numerator, m.denominator)),
                                runtime_key: String::new(),
                            }
                        }),
                        // The mirror sees the request's own Host, as Gateway API expects
                        // (Envoy would append `-shadow`).
                        disable_shadow_host_suffix_append: true,
                        ..Default::default()
                    })
                    .collect(),
                retry_policy: f.retry.as_ref().map(|r| route::RetryPolicy {
                    retry_on: r
                        .on
                        .iter()
                        .map(String::as_str)
                        .chain((!r.codes.is_empty()).then_some("retriable-status-codes"))
                        .collect::<Vec<_>>()
                        .join(","),
                    retriable_status_codes: r.codes.iter().map(|c| u32::from(*c)).collect(),
                    num_retries: Some(UInt32Value { value: r.attempts }),
                    per_try_timeout: f.per_try_timeout_ms.map(duration),
                    retry_back_off: r.backoff_ms.map(|ms| route::retry_policy::RetryBackOff {
                        base_interval: Some(duration(ms)),
                        max_interval: None,
                    }),
                    ..Default::default()
                }),
                ..RouteAction::default()
            };
            if action.retry_policy.is_none()
                && let Some(ms) = f.per_try_timeout_ms
            {
                action.retry_policy = Some(route::RetryPolicy {
                    num_retries: Some(UInt32Value { value: 0 }),
                    per_try_timeout: Some(duration(ms)),
                    ..Default::default()
                });
            }
            match &f.path_rewrite {
                None => {}
                Some(PathRewrite::Prefix(p)) => action.prefix_rewrite = p.clone(),
                Some(PathRewrite::Full(full)) => {
                    action.regex_rewrite = Some(RegexMatchAndSubstitute {
                        pattern: Some(regex("^/.*$")),
                        substitution: full.clone(),
                    })
                }
                Some(PathRewrite::Regex {
                    pattern,
                    substitution,
                }) => {
                    action.regex_rewrite = Some(RegexMatchAndSubstitute {
                        pattern: Some(regex(pattern)),
                        substitution: substitution.clone(),
                    })
                }
            }
            route::route::Action::Route(action)
        }
    };
    let mut typed_per_filter_config = std::collections::HashMap::new();
    if let Some(c) = &r.cors {
        typed_per_filter_config.insert(CORS_FILTER.to_owned(), any(&cors_policy(c)));
    }
    Route {
        name: r.name.clone(),
        typed_per_filter_config,
        r#match: Some(RouteMatch {
            path_specifier: Some(path_specifier),
            headers,
            query_parameters,
            ..RouteMatch::default()
        }),
        action: Some(action),
        request_headers_to_add: header_options(&r.request_headers),
        request_headers_to_remove: lowercase(&r.request_headers.remove),
        response_headers_to_add: header_options(&r.response_headers),
        response_headers_to_remove: lowercase(&r.response_headers.remove),
        ..Route::default()
    }
}

/// `numerator/denominator` as Envoy's fractional percent (per million: exact for every
/// percentage and for the fractions Gateway API examples use).
pub(super) fn per_million(
    numerator: u32,
    denominator: u32,
) -> envoy_types::pb::envoy::r#type::v3::FractionalPercent {
    use envoy_types::pb::envoy::r#type::v3::{
        FractionalPercent, fractional_percent::DenominatorType,
    };
    FractionalPercent {
        numerator: (u64::from(numerator) * 1_000_000 / u64::from(denominator.max(1))) as u32,
        denominator: DenominatorType::Million as i32,
    }
}

/// A CORS filter (Gateway API) or policy (Istio) as Envoy's per-route CORS policy.
pub(super) fn cors_policy(c: &CorsPlan) -> CorsPolicy {
    let origins = c.allow_origins.iter().map(string_matcher).collect();
    CorsPolicy {
        allow_origin_string_match: origins,
        // Envoy writes these as given: `, ` is how browsers and the spec's examples list
        // them.
        allow_methods: c.allow_methods.join(", "),
        allow_headers: c.allow_headers.join(", "),
        expose_headers: c.expose_headers.join(", "),
        max_age: c.max_age.map(|a| a.to_string()).unwrap_or_default(),
        allow_credentials: c.allow_credentials.then_some(BoolValue { value: true }),
        // A preflight that matches no allowed origin is answered by the gateway, never
        // forwarded to the backend.
        forward_not_matching_preflights: Some(BoolValue { value: false }),
        ..CorsPolicy::default()
    }
}

fn lowercase(names: &[String]) -> Vec<String> {
    names.iter().map(|h| h.to_ascii_lowercase()).collect()
}

/// The cluster a share of a route's requests goes to. A refused backend gets a name no
/// cluster can have (`|` is not allowed in Kubernetes names, and tidegate's own clusters
/// with a `|` are not route targets), so Envoy answers its share with
/// `cluster_not_found_response_code`: 500, or 503 for gRPC.
fn target_cluster(t: &Target) -> String {
    match t {
        Target::Service(b) => b.cluster_name(),
        // With the port, as a Service's cluster has it: two refused references in one rule
        // stay two weighted clusters.
        Target::Refused(r) => format!("refused|{}|{}/{}:{}", r.kind, r.namespace, r.name, r.port),
    }
}

//! Plain Gateway API objects in `resources/`: decoded into the same model as intents,
//! attached to intents' gateways, rejected with file, line and field where an API server
//! would reject them, and reported in route status where a controller would.

mod common;

use tidegate::gitsync;
use tidegate::intent;
use tidegate::test_helpers::TempRepo;
use tidegate::xds::plan::{Action, SecretRef};
use tidegate::xds::translate::{self, conditions};

const SETTINGS: &str = "gatewayClassName: istio\n";

fn load(files: &[(&str, &str)]) -> tidegate::model::Model {
    let mut repo = TempRepo::new();
    repo.write("tidegate.yaml", SETTINGS);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("plain objects");
    let tree = gitsync::read(repo.path(), None, &intent::LAYOUT).expect("read");
    intent::load_and_expand(&tree).expect("valid").1
}

const INTENT: &str = "apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {name: httpbin, namespace: httpbin}
spec:
  mode: gateway-api
  hostnames: [httpbin.example.com]
  gateway: {name: httpbin-gateway, port: 80}
  rules:
  - matches: [{path: {type: PathPrefix, value: /status}}]
    backendRefs: [{name: httpbin, port: 8000}]
";

fn route(ns: &str, body: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: extra, namespace: {ns}}}
spec:
  parentRefs: [{{name: httpbin-gateway, namespace: httpbin}}]
  hostnames: [httpbin.example.com]
{body}"
    )
}

#[test]
fn a_plain_route_attaches_to_an_intents_gateway_and_is_served_beside_its_routes() {
    let model = load(&[
        ("intents/httpbin.yaml", INTENT),
        (
            "resources/extra.yaml",
            &route(
                "httpbin",
                "  rules:
  - matches: [{path: {type: Exact, value: /anything}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 8000}}}
    backendRefs: [{name: httpbin, port: 8000}]
",
            ),
        ),
    ]);
    let plans = translate::plans(&model);
    let plan = &plans["httpbin-gateway.httpbin"];
    let routes: Vec<&str> = plan.listeners[&80].http().vhosts[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    // Exact before PathPrefix: precedence spans the intent's route and the plain one.
    assert_eq!(
        routes,
        [
            "httproute/httpbin/extra/rule/0/match/0",
            "httproute/httpbin/httpbin-ingress/rule/0/match/0"
        ]
    );
    let Action::Forward(f) = &plan.listeners[&80].http().vhosts[0].routes[0].action else {
        panic!("forwards");
    };
    assert_eq!(f.mirrors.len(), 1);
    assert_eq!(f.mirrors[0].backend.service, "shadow");
    assert!(
        plan.backends().iter().any(|b| b.service == "shadow"),
        "the mirror gets a cluster"
    );
}

#[test]
fn a_route_from_a_namespace_the_listener_does_not_admit_is_not_attached_and_says_why() {
    // The intent's listener admits only the intents' namespaces.
    let model = load(&[
        ("intents/httpbin.yaml", INTENT),
        (
            "resources/extra.yaml",
            &route(
                "elsewhere",
                "  rules: [{backendRefs: [{name: other, port: 80}]}]\n",
            ),
        ),
    ]);
    let plan = &translate::plans(&model)["httpbin-gateway.httpbin"];
    assert!(
        plan.listeners[&80]
            .http()
            .vhosts
            .iter()
            .flat_map(|v| &v.routes)
            .all(|r| !r.name.contains("extra")),
        "{plan:#?}"
    );
    let status = conditions::status(&model, None, None);
    let r = status
        .routes
        .iter()
        .find(|r| r.name == "extra")
        .expect("status of the plain route");
    let accepted = r.condition("httpbin-gateway", "Accepted").unwrap();
    assert_eq!(
        (accepted.status, accepted.reason),
        ("False", "NotAllowedByListeners")
    );
    let g = status
        .gateways
        .iter()
        .find(|g| g.name == "httpbin-gateway")
        .unwrap();
    assert_eq!(g.listeners[0].attached_routes, 1, "only the intent's route");
}

#[test]
fn route_status_reasons_follow_the_spec() {
    let gateway = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: tidegate
  listeners:
  - {name: web, port: 80, protocol: HTTP, hostname: '*.example.com'}
";
    let routes = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ok, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-section, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: nope}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-host, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  hostnames: [example.org]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-kind, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{group: example.com, kind: Thing, name: t}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-grant, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc, namespace: other, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: nothere, port: 8080}]}]
";
    let model = load(&[
        ("resources/gw.yaml", gateway),
        ("resources/routes.yaml", routes),
    ]);
    let endpoints =
        tidegate::xds::endpoints::Endpoints::parse("svc.infra:8080: [\"127.0.0.1:1\"]\n").unwrap();
    let status = conditions::status(&model, Some(&endpoints), None);
    let of = |name: &str, t: &str| {
        let c = status
            .routes
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.condition("gw", t))
            .unwrap_or_else(|| panic!("{name} {t}"));
        (c.status, c.reason)
    };
    assert_eq!(of("ok", "Accepted"), ("True", "Accepted"));
    assert_eq!(of("ok", "ResolvedRefs"), ("True", "ResolvedRefs"));
    assert_eq!(
        of("wrong-section", "Accepted"),
        ("False", "NoMatchingParent")
    );
    assert_eq!(
        of("wrong-host", "Accepted"),
        ("False", "NoMatchingListenerHostname")
    );
    assert_eq!(of("bad-kind", "Accepted"), ("True", "Accepted"));
    assert_eq!(of("bad-kind", "ResolvedRefs"), ("False", "InvalidKind"));
    assert_eq!(of("no-grant", "ResolvedRefs"), ("False", "RefNotPermitted"));
    assert_eq!(of("missing", "ResolvedRefs"), ("False", "BackendNotFound"));
    let g = &status.gateways[0];
    assert_eq!(g.listeners[0].attached_routes, 4, "{g:#?}");

    // The proxy answers what the status says: unusable backends get 500, not a cluster.
    let plan = &translate::plans(&model)["gw.infra"];
    let (res, warnings) =
        tidegate::xds::emit::resources(plan, Some(&endpoints), None, &Default::default());
    let clusters: Vec<&String> = res.clusters.keys().collect();
    assert_eq!(clusters, ["svc.infra.svc.cluster.local:8080"]);
    assert!(
        warnings.iter().any(|w| w.contains("nothere.infra:8080")),
        "{warnings:?}"
    );
}

#[test]
fn bad_plain_objects_are_rejected_with_file_line_and_field() {
    let problems = common::problems_of(&[
        ("tidegate.yaml", SETTINGS),
        (
            "resources/bad.yaml",
            "apiVersion: v1
kind: Service
metadata: {name: s, namespace: shop}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r2, namespace: shop}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: Prefix, value: /x}}]
",
        ),
    ]);
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let has = |needle: &str| {
        assert!(
            text.iter().any(|t| t.contains(needle)),
            "no problem with {needle:?} in {text:#?}"
        )
    };
    has(
        "resources/bad.yaml:2:7: kind: tidegate does not read Service objects; valid in resources/: Namespace (v1), Gateway",
    );
    has("resources/bad.yaml:7:11: metadata.namespace: missing required field `namespace`");
    has(
        "resources/bad.yaml:17:29: spec.rules[0].matches[0].path.type: `Prefix` is not valid; did you mean `PathPrefix`?",
    );
    assert_eq!(problems.len(), 3, "{text:#?}");
}

#[test]
fn a_plain_object_an_intent_also_renders_is_a_conflict() {
    let problems = common::problems_of(&[
        ("tidegate.yaml", SETTINGS),
        ("intents/httpbin.yaml", INTENT),
        (
            "resources/gw.yaml",
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: httpbin}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
",
        ),
    ]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].file, "resources/gw.yaml");
    assert!(
        problems[0]
            .message
            .contains("Gateway httpbin/httpbin-gateway is also defined by intent httpbin/httpbin"),
        "{}",
        problems[0]
    );
}

#[test]
fn plain_istio_gateway_and_virtual_service_are_served() {
    let config = common::manifest_dir().join("tests/golden/plain-resources/config");
    let text = std::fs::read_to_string(config.join("resources/istio.yaml")).unwrap();
    let model = load(&[("resources/istio.yaml", &text)]);
    let plans = translate::plans(&model);
    let plan = &plans["legacy-gateway.legacy"];
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let vhost = &plan.listeners[&8080].http().vhosts[0];
    assert_eq!(vhost.domains, ["legacy.example.com"]);
    // First match stays first: a VirtualService is ordered, not sorted by precedence.
    assert_eq!(
        vhost
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        [
            "virtualservice/legacy/legacy/http/0/match/0",
            "virtualservice/legacy/legacy/http/1/match/0"
        ]
    );
    let Action::Forward(f) = &vhost.routes[0].action else {
        panic!("forwards")
    };
    assert_eq!(
        f.backends
            .iter()
            .map(|w| (w.target.service().unwrap().service.as_str(), w.weight))
            .collect::<Vec<_>>(),
        [("legacy-v1", 90), ("legacy-v2", 10)]
    );
    let retry = f.retry.as_ref().expect("retries");
    assert_eq!(retry.on, ["5xx", "connect-failure"]);
    assert_eq!(retry.attempts, 2);
    assert_eq!(f.mirrors[0].backend.service, "legacy-shadow");
    assert_eq!(
        (f.mirrors[0].numerator, f.mirrors[0].denominator),
        (50_000, 1_000_000)
    );
    assert!(matches!(vhost.routes[1].action, Action::Redirect(_)));
}

#[test]
fn istio_fields_tidegate_cannot_serve_are_rejected_with_where() {
    let problems = common::problems_of(&[
        ("tidegate.yaml", SETTINGS),
        (
            "resources/vs.yaml",
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v, namespace: shop}
spec:
  hosts: [a.example.com]
  http:
  - route: [{destination: {host: a, subset: v1, port: {number: 80}}}]
  tcp: [{match: [{sourceLabels: {app: x}}], route: [{destination: {host: a, port: {number: 80}}}]}]
",
        ),
    ]);
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(
        text[0]
            .starts_with("resources/vs.yaml:5:3: spec.gateways: a VirtualService without gateways"),
        "{text:#?}"
    );
    assert!(text[1].starts_with("resources/vs.yaml:7:45: spec.http[0].route[0].destination.subset: subsets need DestinationRules"), "{text:#?}");
    assert!(
        // `tcp` routes are served now; a match field a gateway cannot see is not.
        text[2].starts_with("resources/vs.yaml:8:33: spec.tcp[0].match[0].sourceLabels: `sourceLabels` is not supported"),
        "{text:#?}"
    );
}

#[test]
fn a_grpc_route_without_a_usable_backend_answers_unavailable() {
    let model = load(&[(
        "resources/grpc.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: tidegate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: shop.Cart, method: Add}}]
    backendRefs: [{name: missing, port: 9000}]
  - matches: [{method: {service: shop.Cart}}]
",
    )]);
    let plan = &translate::plans(&model)["gw.shop"];
    let routes = &plan.listeners[&80].http().vhosts[0].routes;
    // Envoy maps a local 503 to grpc-status 14 (UNAVAILABLE); 500 would be UNKNOWN.
    assert!(
        matches!(routes[1].action, Action::Status(503)),
        "{routes:#?}"
    );
    let endpoints = tidegate::xds::endpoints::Endpoints::parse("").unwrap();
    let (res, _) =
        tidegate::xds::emit::resources(plan, Some(&endpoints), None, &Default::default());
    assert!(
        res.clusters.is_empty(),
        "the missing Service gets no cluster"
    );
    let rc = res.routes.values().next().unwrap();
    let Some(envoy_types::pb::envoy::config::route::v3::route::Action::Route(a)) =
        &rc.virtual_hosts[0].routes[0].action
    else {
        panic!("a route action");
    };
    assert_eq!(
        a.cluster_not_found_response_code,
        envoy_types::pb::envoy::config::route::v3::route_action::ClusterNotFoundResponseCode::ServiceUnavailable as i32
    );
    assert!(
        plan.http2_backends.iter().any(|b| b.service == "missing"),
        "GRPCRoute backends speak HTTP/2"
    );
}

#[test]
fn backend_filters_envoy_cannot_apply_per_backend_are_reported() {
    let model = load(&[
        ("intents/httpbin.yaml", INTENT),
        (
            "resources/extra.yaml",
            &route(
                "httpbin",
                "  rules:
  - backendRefs:
    - name: a
      port: 80
      filters: [{type: URLRewrite, urlRewrite: {hostname: a.internal}}]
    - {name: b, port: 80}
",
            ),
        ),
    ]);
    let plan = &translate::plans(&model)["httpbin-gateway.httpbin"];
    assert!(
        plan.warnings.iter().any(|w| w.starts_with(
            "HTTPRoute httpbin/extra rules[0]: backendRef filters other than header modifiers"
        )),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn a_certificate_in_another_namespace_needs_a_reference_grant() {
    let gateway = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: tidegate
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: shop.example.com
    tls: {certificateRefs: [{name: shop-cert, namespace: certs}]}
";
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways-use-certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: \"\", kind: Secret}]
";
    let listener_refs = |model: &tidegate::model::Model| {
        let status = conditions::status(model, None, None);
        let c = status.gateways[0].listeners[0]
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .cloned()
            .unwrap();
        (c.status, c.reason)
    };

    let without = load(&[("resources/gw.yaml", gateway)]);
    let plan = &translate::plans(&without)["gw.infra"];
    assert!(plan.listeners.is_empty(), "{plan:#?}");
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("no ReferenceGrant in certs allows Gateways of infra")),
        "{:?}",
        plan.warnings
    );
    assert_eq!(listener_refs(&without), ("False", "RefNotPermitted"));

    let with = load(&[
        ("resources/gw.yaml", gateway),
        ("resources/grant.yaml", grant),
    ]);
    let plan = &translate::plans(&with)["gw.infra"];
    assert_eq!(
        plan.listeners[&443].http().tls[0].secret,
        SecretRef {
            namespace: "certs".to_owned(),
            name: "shop-cert".to_owned()
        }
    );
    assert_eq!(listener_refs(&with), ("True", "ResolvedRefs"));
}

/// A TCP Gateway and a TCPRoute `name` on it sending to Service `backend`.
fn tcp_route(name: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: {name}, namespace: infra}}
spec:
  parentRefs: [{{name: tcp, namespace: infra}}]
  rules:
  - backendRefs: [{{name: {backend}, port: 9000}}]
"
    )
}

const TCP_GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tcp, namespace: infra}
spec:
  gatewayClassName: istio
  listeners:
  - {name: tcp, port: 9300, protocol: TCP}
";

/// Which route carries the connections of the TCP listener at the repository's HEAD.
fn tcp_winner(repo: &TempRepo) -> String {
    use tidegate::review::{Caches, Repo, Side};
    use tidegate::xds::plan::ListenerKind;
    let repo = Repo::open(&repo.path().display().to_string()).expect("open");
    let side = Side::load(&repo, None, &mut Caches::default()).expect("load");
    let loaded = side.loaded().expect("valid");
    match &loaded.plans["tcp.infra"].listeners[&9300].kind {
        ListenerKind::Tcp(f) => f.name.clone(),
        other => panic!("not a TCP listener: {other:?}"),
    }
}

#[test]
fn the_oldest_of_competing_tcp_routes_wins_by_git_history_not_by_name() {
    let mut repo = TempRepo::new();
    repo.write("tidegate.yaml", SETTINGS)
        .write("resources/gateway.yaml", TCP_GATEWAY)
        .write("resources/zz-older.yaml", tcp_route("zz-older", "old"));
    repo.commit("the first route");
    repo.write("resources/aa-newer.yaml", tcp_route("aa-newer", "new"));
    repo.commit("a second route, first by name");
    assert_eq!(tcp_winner(&repo), "tcproute/infra/zz-older/rule/0");

    // Editing the older route does not make it younger.
    repo.write("resources/zz-older.yaml", tcp_route("zz-older", "old-v2"));
    repo.commit("edit the older route");
    assert_eq!(tcp_winner(&repo), "tcproute/infra/zz-older/rule/0");

    // Removed and added again, it is the newest.
    repo.remove("resources/zz-older.yaml");
    repo.commit("remove it");
    repo.write("resources/zz-older.yaml", tcp_route("zz-older", "old"));
    repo.commit("add it back");
    assert_eq!(tcp_winner(&repo), "tcproute/infra/aa-newer/rule/0");
}

#[test]
fn a_listener_set_adds_listeners_only_where_the_gateway_allows_and_loses_conflicts() {
    let gateway = |allowed: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: shared, namespace: infra}}
spec:
  gatewayClassName: istio
{allowed}  listeners:
  - {{name: web, port: 80, protocol: HTTP, hostname: web.example.com}}
"
        )
    };
    let set = "apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: team, namespace: infra}
spec:
  parentRef: {name: shared}
  listeners:
  - {name: shop, port: 80, protocol: HTTP, hostname: shop.example.com}
  - {name: web, port: 80, protocol: HTTP, hostname: web.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: infra}
spec:
  parentRefs: [{kind: ListenerSet, name: team}]
  rules:
  - backendRefs: [{name: shop, port: 8080}]
";
    let state = |model: &tidegate::model::Model| {
        let status = conditions::status(model, None, None);
        let set = status
            .listener_sets
            .iter()
            .find(|s| s.name == "team")
            .expect("set");
        let accepted = set
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .unwrap();
        let domains: Vec<String> = translate::plans(model)["shared.infra"].listeners[&80]
            .http()
            .vhosts
            .iter()
            .flat_map(|v| v.domains.clone())
            .collect();
        (accepted.reason, status, domains)
    };

    // By default a Gateway takes no ListenerSet: its listeners are not served.
    let model = load(&[
        ("resources/gateway.yaml", &gateway("")),
        ("resources/set.yaml", set),
    ]);
    let (reason, status, domains) = state(&model);
    assert_eq!(reason, "NotAllowed");
    assert_eq!(status.gateways[0].attached_listener_sets, 0);
    assert!(domains.is_empty(), "{domains:?}");

    // Allowed from its namespace: the set's listener is served, the route attached to it;
    // its listener with the Gateway's hostname conflicts and is not served.
    let model = load(&[
        (
            "resources/gateway.yaml",
            &gateway("  allowedListeners: {namespaces: {from: Same}}\n"),
        ),
        ("resources/set.yaml", set),
    ]);
    let (reason, status, domains) = state(&model);
    assert_eq!(reason, "Accepted");
    assert_eq!(status.gateways[0].attached_listener_sets, 1);
    assert_eq!(domains, ["shop.example.com"]);
    let set = &status.listener_sets[0];
    let of = |l: &str, t: &str| {
        let l = set.listeners.iter().find(|x| x.name == l).unwrap();
        let c = l.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status, c.reason, l.attached_routes)
    };
    assert_eq!(of("shop", "Accepted"), ("True", "Accepted", 1));
    assert_eq!(of("web", "Conflicted"), ("True", "HostnameConflict", 0));
    assert_eq!(of("web", "Programmed").0, "False");
    let route = status.routes.iter().find(|r| r.name == "shop").unwrap();
    assert_eq!(route.condition("team", "Accepted").unwrap().status, "True");
}

#[test]
fn a_gateways_generation_counts_the_commits_that_changed_its_spec() {
    use tidegate::review::{Caches, Repo, Side};
    let generation = |repo: &TempRepo| {
        let r = Repo::open(&repo.path().display().to_string()).expect("open");
        let side = Side::load(&r, None, &mut Caches::default()).expect("load");
        let status = &side.loaded().expect("valid").status;
        let g = &status.gateways[0];
        // Every condition says it was computed from that generation.
        assert!(
            g.conditions
                .iter()
                .chain(g.listeners.iter().flat_map(|l| &l.conditions))
                .all(|c| c.observed_generation == g.generation),
            "{g:?}"
        );
        g.generation
    };
    let mut repo = TempRepo::new();
    repo.write("tidegate.yaml", SETTINGS)
        .write("resources/gateway.yaml", TCP_GATEWAY);
    repo.commit("a gateway");
    assert_eq!(generation(&repo), Some(1));
    // A second listener: the spec changed.
    repo.write(
        "resources/gateway.yaml",
        format!("{TCP_GATEWAY}  - {{name: tcp2, port: 9301, protocol: TCP}}\n"),
    );
    repo.commit("another listener");
    assert_eq!(generation(&repo), Some(2));
    // Labels and comments are not the spec, and an unrelated file is not the object.
    repo.write(
        "resources/gateway.yaml",
        format!(
            "# shared TCP gateway\n{}  - {{name: tcp2, port: 9301, protocol: TCP}}\n",
            TCP_GATEWAY.replace(
                "metadata: {name: tcp, namespace: infra}",
                "metadata: {name: tcp, namespace: infra, labels: {team: db}}"
            )
        ),
    )
    .write("resources/other.yaml", tcp_route("db", "db"));
    repo.commit("labels, a comment and a route");
    assert_eq!(generation(&repo), Some(2));
}

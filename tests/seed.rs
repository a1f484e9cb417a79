//! The seed's four procedures, object by object: what tidegate renders from one intent is
//! compared field by field with the YAML (and the `oc` commands) of
//! "Getting traffic into a mesh" §2.2, §2.3.1, §2.4 and §2.6. Every difference is listed
//! and explained below; any other difference fails the test.

mod common;

use serde_json::{Value, json};

/// Differences between two JSON values as `+path` (only rendered), `-path` (only in the
/// seed) and `~path` (both, different values).
fn diff(path: &str, seed: &Value, ours: &Value, out: &mut Vec<String>) {
    match (seed, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("-{path}.{k}")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("+{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                match (a.get(i), b.get(i)) {
                    (Some(v), Some(w)) => diff(&format!("{path}[{i}]"), v, w, out),
                    (Some(_), None) => out.push(format!("-{path}[{i}]")),
                    (None, Some(_)) => out.push(format!("+{path}[{i}]")),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(format!("~{path}")),
        _ => {}
    }
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("seed YAML parses")
}

/// Renders a golden case and returns the object of `file` (path in the output) as JSON.
fn rendered(case: &str, file: &str) -> Value {
    let dir = common::manifest_dir()
        .join("tests/golden")
        .join(case)
        .join("config");
    let (_repo, out) = common::render_dir(&dir);
    let text = out
        .files
        .get(file)
        .unwrap_or_else(|| panic!("{case} renders no {file}: {:?}", out.files.keys()));
    yaml(text)
}

fn assert_diff(seed: &Value, ours: &Value, expected: &[&str]) {
    let mut got = Vec::new();
    diff("", seed, ours, &mut got);
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "\nseed:\n{seed:#}\nrendered:\n{ours:#}");
}

/// tidegate labels every object it owns, so they can be found and told apart from others.
const MANAGED: &str = "+.metadata.labels";

#[test]
fn section_2_2_istio_gateway_and_virtual_service() {
    let case = "seed-2.2-istio-loadbalancer";
    // `spec.selector` names the injected gateway's pods: `istio: <gateway_name>`, here the
    // intent's gateway name.
    let seed_gw = yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: httpbin-gateway, namespace: httpbin}\n\
         spec:\n  selector: {istio: httpbin-gateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [httpbin.example.com]\n",
    );
    assert_diff(
        &seed_gw,
        &rendered(case, "httpbin/istio-gateway-httpbin-gateway.yaml"),
        &[MANAGED],
    );

    let seed_vs = yaml(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: httpbin, namespace: httpbin}\n\
         spec:\n  hosts: [httpbin.example.com]\n  gateways: [httpbin-gateway]\n  http:\n  - match:\n    - uri: {prefix: /status}\n    - uri: {prefix: /headers}\n    route:\n    - destination: {port: {number: 8000}, host: httpbin}\n",
    );
    let ours = rendered(case, "httpbin/virtualservice-httpbin.yaml");
    // The seed's `prefix: /status` is a string prefix: it also sends `/statusx` to httpbin,
    // which the same rule in Gateway API (PathPrefix, whole segments) does not. tidegate
    // writes `exact /x` + `prefix /x/` so every mode routes a request the same way, longest
    // prefix first (Gateway API precedence; a VirtualService is first-match).
    assert_diff(
        &seed_vs,
        &ours,
        &[
            MANAGED,
            "-.spec.http[0].match[0].uri.prefix",
            "+.spec.http[0].match[0].uri.exact",
            "~.spec.http[0].match[1].uri.prefix",
            "+.spec.http[0].match[2]",
            "+.spec.http[0].match[3]",
        ],
    );
    assert_eq!(
        ours["spec"]["http"][0]["match"],
        json!([{"uri": {"exact": "/headers"}}, {"uri": {"prefix": "/headers/"}}, {"uri": {"exact": "/status"}}, {"uri": {"prefix": "/status/"}}])
    );

    // `oc label namespace httpbin istio-injection=enabled` (InPlace strategy). The
    // annotations keep Argo CD and Flux from ever pruning a namespace tidegate only labels.
    let seed_ns = yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: httpbin, labels: {istio-injection: enabled}}\n",
    );
    assert_diff(
        &seed_ns,
        &rendered(case, "httpbin/namespace-httpbin.yaml"),
        &["+.metadata.annotations"],
    );

    // `oc patch service <gateway_name> … {"spec": {"type": "LoadBalancer"}}`, declared
    // instead of patched: the gateway's Service is rendered with its type.
    let svc = rendered(case, "httpbin/service-httpbin-gateway.yaml");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(svc["spec"]["selector"], json!({"istio": "httpbin-gateway"}));
}

#[test]
fn section_2_3_1_openshift_route() {
    let case = "seed-2.3.1-openshift-route";
    let seed_route = yaml(
        "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: httpbin, namespace: httpbin}\n\
         spec:\n  host: httpbin.example.com\n  port: {targetPort: http2}\n  to: {kind: Service, name: httpbin-gateway, weight: 100}\n  wildcardPolicy: None\n",
    );
    assert_diff(
        &seed_route,
        &rendered(case, "httpbin/route-httpbin.yaml"),
        &[MANAGED],
    );
    // `oc patch service <gateway_name> … {"spec": {"type": "ClusterIP"}}`, and the port
    // the Route targets by name.
    let svc = rendered(case, "httpbin/service-httpbin-gateway.yaml");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["name"], "http2");
    // RevisionBased strategy: `oc label namespace httpbin istio.io/rev=default`.
    let ns = rendered(case, "httpbin/namespace-httpbin.yaml");
    assert_eq!(ns["metadata"]["labels"], json!({"istio.io/rev": "default"}));
}

const SEED_INGRESS_GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: httpbin-gateway, namespace: httpbin}\n\
     spec:\n  gatewayClassName: istio\n  listeners:\n  - name: default\n    hostname: httpbin.example.com\n    port: 80\n    protocol: HTTP\n    allowedRoutes: {namespaces: {from: All}}\n";

/// Differences of the ingress Gateway, the same in §2.4 and §2.6.
const INGRESS_GATEWAY_DIFFS: &[&str] = &[
    MANAGED,
    // Replaces `oc patch service <gateway>-istio … LoadBalancer`: Istio reads the Service
    // type from this annotation when it deploys the gateway.
    "+.metadata.annotations",
    // The seed names the listener `default` but its INGRESS_PORT query looks for
    // `@.name=="http"` and gets nothing (seed bug, gateway-api-semantics §5). tidegate
    // names it `http`, and each README's query uses the name actually rendered.
    "~.spec.listeners[0].name",
    // `All` lets a route from any namespace attach and claim the host; tidegate admits
    // only the namespaces whose intents use the listener (here the gateway's own).
    "~.spec.listeners[0].allowedRoutes.namespaces.from",
];

#[test]
fn section_2_4_gateway_api_sidecar_mode() {
    let case = "seed-2.4-gateway-api";
    assert_diff(
        &yaml(SEED_INGRESS_GATEWAY),
        &rendered(case, "httpbin/gateway-httpbin-gateway.yaml"),
        INGRESS_GATEWAY_DIFFS,
    );

    let seed_route = yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: httpbin-ingress, namespace: httpbin}\n\
         spec:\n  parentRefs:\n  - name: httpbin-gateway\n    namespace: httpbin\n  hostnames: [httpbin.example.com]\n  rules:\n\
         \x20 - matches:\n    - path: {type: PathPrefix, value: /status}\n    - path: {type: PathPrefix, value: /headers}\n\
         \x20 - backendRefs:\n    - name: httpbin\n      port: 8000\n",
    );
    let ours = rendered(case, "httpbin/httproute-httpbin-ingress.yaml");
    assert_diff(
        &seed_route,
        &ours,
        &[
            MANAGED,
            // Gateway API defaults written out (Argo CD otherwise shows the route
            // OutOfSync forever), and the listener bound by name.
            "+.spec.parentRefs[0].group",
            "+.spec.parentRefs[0].kind",
            "+.spec.parentRefs[0].sectionName",
            // Seed bug (§2.4): `- backendRefs:` starts a second rule, so /status and
            // /headers get HTTP 500 and every other path reaches httpbin. The intended
            // single rule has both, with defaults written out.
            "+.spec.rules[0].backendRefs",
            "-.spec.rules[1]",
        ],
    );
    assert_eq!(
        ours["spec"]["rules"][0]["backendRefs"],
        json!([{"group": "", "kind": "Service", "name": "httpbin", "port": 8000, "weight": 1}])
    );
    let ns = rendered(case, "httpbin/namespace-httpbin.yaml");
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"istio-injection": "enabled"})
    );
}

#[test]
fn section_2_6_ambient_mode_with_a_waypoint() {
    let case = "seed-2.6-ambient";
    let seed_waypoint = yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: httpbin-waypoint\n  namespace: httpbin\n  labels: {istio.io/waypoint-for: service}\n\
         spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n",
    );
    // The default `allowedRoutes` (Same) written out.
    assert_diff(
        &seed_waypoint,
        &rendered(case, "httpbin/gateway-httpbin-waypoint.yaml"),
        &[
            "+.metadata.labels.app.kubernetes.io/managed-by",
            "+.spec.listeners[0].allowedRoutes",
        ],
    );
    assert_diff(
        &yaml(SEED_INGRESS_GATEWAY),
        &rendered(case, "httpbin/gateway-httpbin-gateway.yaml"),
        INGRESS_GATEWAY_DIFFS,
    );

    let seed_ingress = yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: httpbin-ingress, namespace: httpbin}\n\
         spec:\n  parentRefs:\n  - name: httpbin-gateway\n    namespace: httpbin\n  hostnames: [httpbin.example.com]\n  rules:\n  - backendRefs:\n    - name: httpbin\n      port: 8000\n",
    );
    assert_diff(
        &seed_ingress,
        &rendered(case, "httpbin/httproute-httpbin-ingress.yaml"),
        &[
            MANAGED,
            "+.spec.parentRefs[0].group",
            "+.spec.parentRefs[0].kind",
            "+.spec.parentRefs[0].sectionName",
            // Defaults: `matches: [{path: PathPrefix /}]`, backend group/kind/weight.
            "+.spec.rules[0].matches",
            "+.spec.rules[0].backendRefs[0].group",
            "+.spec.rules[0].backendRefs[0].kind",
            "+.spec.rules[0].backendRefs[0].weight",
        ],
    );

    let seed_waypoint_route = yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: httpbin-waypoint-route, namespace: httpbin}\n\
         spec:\n  parentRefs:\n  - group: \"\"\n    kind: service\n    name: httpbin\n    namespace: httpbin\n  rules:\n\
         \x20 - matches:\n    - path: {type: PathPrefix, value: /status}\n    - path: {type: PathPrefix, value: /headers}\n    backendRefs:\n    - name: httpbin\n      port: 8000\n",
    );
    assert_diff(
        &seed_waypoint_route,
        &rendered(case, "httpbin/httproute-httpbin-waypoint-route.yaml"),
        &[
            MANAGED,
            // Seed slip: kinds are case-sensitive, and `service` names no kind, so the
            // route would attach to nothing.
            "~.spec.parentRefs[0].kind",
            "+.spec.rules[0].backendRefs[0].group",
            "+.spec.rules[0].backendRefs[0].kind",
            "+.spec.rules[0].backendRefs[0].weight",
        ],
    );

    // `oc label namespace httpbin istio.io/dataplane-mode=ambient`,
    // `oc label ns httpbin istio.io/use-waypoint=httpbin-waypoint`, and instead of
    // `oc label service httpbin istio.io/ingress-use-waypoint=true` (the app's Service,
    // which tidegate does not own) the same label on the namespace, which Istio honours
    // for every Service in it.
    let ns = rendered(case, "httpbin/namespace-httpbin.yaml");
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "httpbin-waypoint", "istio.io/ingress-use-waypoint": "true"})
    );
}

#[test]
fn the_seed_section_2_4_rules_are_rejected_with_the_reason() {
    // The seed's §2.4 rules verbatim in an intent: tidegate refuses them instead of
    // rendering a route that answers 500 on the paths it means to expose.
    let intent = "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: httpbin, namespace: httpbin}\nspec:\n  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {name: httpbin-gateway, port: 80}\n  rules:\n  - matches:\n    - path:\n        type: PathPrefix\n        value: /status\n    - path:\n        type: PathPrefix\n        value: /headers\n  - backendRefs:\n    - name: httpbin\n      port: 8000\n";
    let problems = common::problems_of(&[("intents/httpbin.yaml", intent)]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = problems[0].to_string();
    assert!(
        p.starts_with("intents/httpbin.yaml:9:5: spec.rules[0]: "),
        "{p}"
    );
    assert!(p.contains("would get HTTP 500"), "{p}");
    assert!(p.contains("PathPrefix /status, PathPrefix /headers"), "{p}");
    assert!(
        p.contains("spec.rules[1] holds backendRefs but no matches"),
        "{p}"
    );
}

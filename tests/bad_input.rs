//! One test per class of bad input: each asserts where the problem is reported (file,
//! line, column, field) and what the message says would be valid. The commit is always
//! rejected whole.

mod common;

use common::messages;

/// An intent with `spec` fields replaced by `body` (indented two spaces under `spec:`).
fn intent(name: &str, ns: &str, body: impl AsRef<str>) -> String {
    let body = body.as_ref();
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}"
    )
}

const GOOD_SPEC: &str = "  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {name: httpbin-gateway, port: 80}\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /headers}}]\n    backendRefs: [{name: httpbin, port: 8000}]\n";

#[track_caller]
fn assert_one<S: AsRef<str>>(files: &[(&str, S)], starts: &str, contains: &[&str]) {
    common::assert_one_message(&messages(files), starts, contains);
}

#[test]
fn a_valid_intent_has_no_problems() {
    assert_eq!(
        messages(&[("intents/a.yaml", intent("httpbin", "httpbin", GOOD_SPEC))]),
        Vec::<String>::new()
    );
}

#[test]
fn bad_dns_names() {
    assert_one(
        &[("intents/a.yaml", intent("HttpBin", "httpbin", GOOD_SPEC))],
        "intents/a.yaml:3:18: metadata.name: `HttpBin` is not a valid intent name",
        &["valid: a DNS-1123 label"],
    );
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "http_bin", GOOD_SPEC))],
        "intents/a.yaml:3:38: metadata.namespace: `http_bin` is not a valid namespace",
        &["valid: a DNS-1123 label"],
    );
    let spec = GOOD_SPEC.replace("name: httpbin, port", "name: Httpbin.svc, port");
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "httpbin", &spec))],
        "intents/a.yaml:10:26: spec.rules[0].backendRefs[0].name: `Httpbin.svc` is not a valid Service name",
        &["valid: a DNS-1123 label"],
    );
}

#[test]
fn bad_hostnames() {
    let spec = GOOD_SPEC.replace(
        "[httpbin.example.com]",
        "[httpbin.example.com:8080, 10.1.2.3, \"a.*.com\"]",
    );
    let m = messages(&[("intents/a.yaml", intent("httpbin", "httpbin", &spec))]);
    assert_eq!(m.len(), 3, "{m:#?}");
    assert!(m[0].starts_with("intents/a.yaml:6:15: spec.hostnames[0]: `httpbin.example.com:8080` is not a valid hostname"), "{}", m[0]);
    assert!(m[0].contains("with no port and no IP address"));
    assert!(
        m[1].starts_with("intents/a.yaml:6:41: spec.hostnames[1]: `10.1.2.3`"),
        "{}",
        m[1]
    );
    assert!(
        m[2].starts_with("intents/a.yaml:6:51: spec.hostnames[2]: `a.*.com`"),
        "{}",
        m[2]
    );
}

#[test]
fn bad_ports() {
    let spec = GOOD_SPEC
        .replace("port: 80}", "port: 0}")
        .replace("port: 8000", "port: \"8000\"");
    let m = messages(&[("intents/a.yaml", intent("httpbin", "httpbin", &spec))]);
    assert_eq!(m.len(), 2, "{m:#?}");
    assert_eq!(
        m[0],
        "intents/a.yaml:7:42: spec.gateway.port: 0 is out of range; valid: an integer from 1 to 65535"
    );
    assert_eq!(
        m[1],
        "intents/a.yaml:10:41: spec.rules[0].backendRefs[0].port: expected an integer, found the string \"8000\"; write it without quotes"
    );
}

#[test]
fn paths_must_start_with_a_slash() {
    let spec = GOOD_SPEC.replace("value: /headers", "value: headers");
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "httpbin", &spec))],
        "intents/a.yaml:9:48: spec.rules[0].matches[0].path.value: `headers` does not start with `/`",
        &["valid: an absolute path such as /headers"],
    );
}

#[test]
fn a_waypoint_outside_ambient_mode() {
    let spec = format!("{GOOD_SPEC}  waypoint: {{name: httpbin-waypoint}}\n");
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "httpbin", &spec))],
        "intents/a.yaml:11:13: spec.waypoint: a waypoint is only used in ambient mode, but this intent has mode: gateway-api",
        &["set `mode: ambient`"],
    );
}

#[test]
fn openshift_route_on_plain_kubernetes() {
    let spec = GOOD_SPEC.replace("port: 80}", "port: 80, exposure: OpenShiftRoute}");
    let files = [
        ("tidegate.yaml", "platform: kubernetes\n".to_owned()),
        ("intents/a.yaml", intent("httpbin", "httpbin", &spec)),
    ];
    assert_one(
        &files,
        "intents/a.yaml:7:56: spec.gateway.exposure: OpenShiftRoute needs an OpenShift cluster",
        &[
            "valid here: LoadBalancer or ClusterIP",
            "platform: openshift",
        ],
    );
    // The same intent is fine on OpenShift.
    let files = [
        ("tidegate.yaml", "platform: openshift\n".to_owned()),
        ("intents/a.yaml", intent("httpbin", "httpbin", &spec)),
    ];
    assert_eq!(messages(&files), Vec::<String>::new());
}

#[test]
fn two_intents_claiming_the_same_host_and_path_name_both_files() {
    let a = intent(
        "httpbin",
        "team-a",
        GOOD_SPEC.replace("port: 80}", "port: 80, namespace: ingress}"),
    );
    let b = intent(
        "other",
        "team-b",
        GOOD_SPEC
            .replace("port: 80}", "port: 80, namespace: ingress}")
            .replace("httpbin, port: 8000", "other, port: 80"),
    );
    assert_one(
        &[("intents/a.yaml", a.clone()), ("intents/b.yaml", b.clone())],
        "intents/b.yaml:9:15: spec.rules: host httpbin.example.com PathPrefix /headers on gateway ingress/httpbin-gateway port 80 is also claimed by team-a/httpbin in intents/a.yaml:9:15",
        &["each host and path belongs to one intent"],
    );
    // Another path on the same host is fine.
    let b = b.replace("/headers", "/status");
    assert_eq!(
        messages(&[("intents/a.yaml", a.clone()), ("intents/b.yaml", b.clone())]),
        Vec::<String>::new()
    );
}

#[test]
fn duplicate_intent_names() {
    let a = intent("httpbin", "httpbin", GOOD_SPEC);
    let b = intent(
        "httpbin",
        "httpbin",
        GOOD_SPEC.replace("httpbin.example.com", "other.example.com"),
    );
    assert_one(
        &[("intents/a.yaml", a.clone()), ("intents/b.yaml", b.clone())],
        "intents/b.yaml:1:1: metadata.name: intent httpbin/httpbin is defined twice: here and at intents/a.yaml:1:1",
        &["one intent per namespace and name"],
    );
}

#[test]
fn unknown_fields_get_a_did_you_mean() {
    let spec = GOOD_SPEC
        .replace("  hostnames:", "  hostname:")
        .replace("backendRefs:", "backendRef:");
    let m = messages(&[("intents/a.yaml", intent("httpbin", "httpbin", &spec))]);
    assert!(
        m.contains(&"intents/a.yaml:6:3: spec.hostname: unknown field `hostname`; did you mean `hostnames`? (valid fields: mode, hostnames, gateway, injection, waypoint, rules)".to_owned()),
        "{m:#?}"
    );
    assert!(m.iter().any(|p| p.starts_with("intents/a.yaml:10:5: spec.rules[0].backendRef: unknown field `backendRef`; did you mean `backendRefs`?")), "{m:#?}");
    // `hostnames` is then missing too: reported in the same pass.
    assert!(m.contains(&"intents/a.yaml:5:3: spec.hostnames: missing required field `hostnames`: a list of DNS names such as [httpbin.example.com]".to_owned()), "{m:#?}");
    assert_eq!(m.len(), 3, "{m:#?}");
}

#[test]
fn a_rule_with_matches_but_no_backends_is_an_error() {
    let spec = GOOD_SPEC.replace("    backendRefs: [{name: httpbin, port: 8000}]\n", "");
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "httpbin", &spec))],
        "intents/a.yaml:9:5: spec.rules[0]: this rule has no backendRefs and no RequestRedirect filter, so requests matching PathPrefix /headers would get HTTP 500",
        &["add backendRefs to this rule"],
    );
    // Weight 0 everywhere is the same 500.
    let spec = GOOD_SPEC.replace("port: 8000}", "port: 8000, weight: 0}");
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "httpbin", &spec))],
        "intents/a.yaml:9:5: spec.rules[0]: this rule gives every backendRef weight 0",
        &["HTTP 500"],
    );
}

#[test]
fn every_problem_of_every_file_is_reported() {
    let a = intent(
        "Bad",
        "httpbin",
        GOOD_SPEC
            .replace("port: 80}", "port: 99999}")
            .replace("mode: gateway-api", "mode: gateway"),
    );
    let b = "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: x, namespace: y\n";
    let c = intent("fine", "ok", GOOD_SPEC);
    let m = messages(&[
        ("intents/a.yaml", a.as_str()),
        ("intents/b.yaml", b),
        ("intents/c.yaml", c.as_str()),
    ]);
    assert_eq!(m.len(), 4, "{m:#?}");
    assert!(
        m[0].starts_with("intents/a.yaml:3:18: metadata.name: `Bad`"),
        "{}",
        m[0]
    );
    assert!(m[1].starts_with("intents/a.yaml:5:9: spec.mode: `gateway` is not valid; did you mean `gateway-api`? (valid: istio, gateway-api, ambient)"), "{}", m[1]);
    assert!(
        m[2].starts_with("intents/a.yaml:7:42: spec.gateway.port: 99999 is out of range"),
        "{}",
        m[2]
    );
    assert!(
        m[3].starts_with("intents/b.yaml:") && m[3].contains("invalid YAML"),
        "{}",
        m[3]
    );
}

#[test]
fn conflicting_namespace_labels() {
    let a = intent("a", "shared", GOOD_SPEC);
    let b = intent(
        "b",
        "shared",
        GOOD_SPEC
            .replace("mode: gateway-api", "mode: ambient")
            .replace("httpbin.example.com", "b.example.com")
            .replace("httpbin-gateway", "b-gateway"),
    );
    assert_one(
        &[("intents/a.yaml", a.clone()), ("intents/b.yaml", b.clone())],
        "intents/b.yaml:5:9: spec.mode: namespace shared would be labelled for ambient with waypoint waypoint here but for sidecar injection (istio-injection=enabled) by shared/a (intents/a.yaml:1:1)",
        &["must agree"],
    );
}

#[test]
fn non_utf8_and_wrong_api_version() {
    let m = messages(&[("intents/a.yaml", "\u{0}")]);
    assert_eq!(m.len(), 1, "{m:#?}");
    let bytes_file = [(
        "intents/b.yaml",
        intent("httpbin", "httpbin", GOOD_SPEC).replace("tidegate.io/v1alpha1", "tidegate.io/v2"),
    )];
    assert_one(
        &bytes_file,
        "intents/b.yaml:1:13: apiVersion: `tidegate.io/v2` is not supported; valid: tidegate.io/v1alpha1",
        &[],
    );
}

#[test]
fn labels_must_be_kubernetes_labels() {
    let text = intent("httpbin", "httpbin", GOOD_SPEC).replace(
        "metadata: {name: httpbin, namespace: httpbin}",
        "metadata:\n  name: httpbin\n  namespace: httpbin\n  labels: {team: \"payments team\", \"-bad\": x}\n  annotations: {example.com/owner: \"anything goes: here\"}",
    );
    let m = messages(&[("intents/a.yaml", text)]);
    assert_eq!(m.len(), 2, "{m:#?}");
    assert!(
        m[0].starts_with(
            "intents/a.yaml:6:12: metadata.labels.team: `payments team` is not a valid label value"
        ),
        "{}",
        m[0]
    );
    assert!(
        m[1].starts_with("intents/a.yaml:6:35: metadata.labels.-bad: `-bad` is not a valid key"),
        "{}",
        m[1]
    );
}

#[test]
fn regular_expressions_must_compile() {
    let spec = GOOD_SPEC.replace("{path: {type: PathPrefix, value: /headers}}", "{path: {type: RegularExpression, value: \"/(unclosed\"}, headers: [{type: RegularExpression, name: x-id, value: \"a{2,1}\"}]}");
    let m = messages(&[("intents/a.yaml", intent("httpbin", "httpbin", spec))]);
    assert_eq!(m.len(), 2, "{m:#?}");
    assert!(m[0].starts_with("intents/a.yaml:9:55: spec.rules[0].matches[0].path.value: `/(unclosed` is not a valid RE2 regular expression (unclosed group)"), "{}", m[0]);
    assert!(m[1].contains("spec.rules[0].matches[0].headers[0].value: `a{2,1}` is not a valid RE2 regular expression"), "{}", m[1]);
}

#[test]
fn retry_outside_istio_mode_and_extension_filters() {
    // An HTTPRoute's `retry` is experimental-channel only: standard clusters would drop it.
    let spec = format!("{GOOD_SPEC}    retry: {{attempts: 2}}\n");
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "httpbin", &spec))],
        "intents/a.yaml:9:5: spec.rules[0].retry: retry renders into an HTTPRoute field of Gateway API's experimental channel",
        &["valid: mode istio", "mode here: gateway-api"],
    );
    let istio = spec.replace("mode: gateway-api", "mode: istio");
    assert_eq!(
        messages(&[("intents/a.yaml", intent("httpbin", "httpbin", &istio))]),
        Vec::<String>::new()
    );
    let ext = format!(
        "{GOOD_SPEC}    filters: [{{type: ExtensionRef, extensionRef: {{group: x.io, kind: F, name: f}}}}]\n"
    );
    assert_one(
        &[("intents/a.yaml", intent("httpbin", "httpbin", &ext))],
        "intents/a.yaml:11:22: spec.rules[0].filters[0].type: the ExtensionRef filter is not supported in intents",
        &[
            "supported: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, CORS",
        ],
    );
}

#[test]
fn a_connection_route_has_exactly_one_rule() {
    let route = "apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: db, port: 5432}]
  - backendRefs: [{name: db-2, port: 5432}]
";
    assert_one(
        &[("resources/db.yaml", route)],
        "resources/db.yaml:8:5:",
        &["spec.rules[1]", "exactly one rule"],
    );
}

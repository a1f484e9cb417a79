//! TLS on both sides of the gateway as written in Git: intents' `backendTLS` and
//! `clientCertificates`, and plain Istio DestinationRules. Each bad input is reported with
//! file, line, column and field, and says what would be valid; a DestinationRule is
//! applied to a gateway's backends with Istio's precedence.

mod common;

use common::messages;
use tidegate::gitsync;
use tidegate::intent;
use tidegate::test_helpers::TempRepo;
use tidegate::xds::plan::{PortSel, SecretRef, ServiceRef, Trust, UpstreamTlsKey};
use tidegate::xds::translate;

#[track_caller]
fn assert_one<S: AsRef<str>>(files: &[(&str, S)], starts: &str, contains: &[&str]) {
    common::assert_one_message(&messages(files), starts, contains);
}

/// An HTTPS intent `name` in namespace `shop` on gateway `shop-gateway` port 443, with
/// `client` as its `clientCertificates` (if any) and `tls` as the `backendTLS` of its one
/// backendRef (if any).
fn intent(name: &str, mode: &str, client: &str, tls: &str) -> String {
    let client = if client.is_empty() {
        String::new()
    } else {
        format!("    clientCertificates: {client}\n")
    };
    let tls = if tls.is_empty() {
        String::new()
    } else {
        format!("        backendTLS: {tls}\n")
    };
    format!(
        "apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {{name: {name}, namespace: shop}}
spec:
  mode: {mode}
  hostnames: [{name}.example.com]
  gateway:
    name: shop-gateway
    port: 443
    protocol: HTTPS
    tls: {{certificateRefs: [{{name: shop-cert}}]}}
{client}  rules:
    - backendRefs:
      - name: shop
        port: 8443
{tls}"
    )
}

const CA: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: shop-ca, namespace: shop}
data: {ca.crt: \"-----BEGIN CERTIFICATE-----\"}
";

#[test]
fn valid_backend_tls_and_client_certificates_have_no_problems() {
    let a = intent(
        "a",
        "gateway-api",
        "{caCertificateRefs: [{name: shop-ca}]}",
        "{hostname: shop.internal, caCertificateRefs: [{name: shop-ca}]}",
    );
    assert_eq!(
        messages(&[("intents/a.yaml", a.as_str()), ("resources/ca.yaml", CA)]),
        Vec::<String>::new()
    );
    let b = intent(
        "b",
        "istio",
        "{caCertificateRefs: [{name: shop-cert}]}",
        "{hostname: shop.internal, wellKnownCACertificates: System}",
    );
    assert_eq!(messages(&[("intents/b.yaml", b)]), Vec::<String>::new());
}

#[test]
fn backend_tls_fields_are_checked() {
    let a = intent(
        "a",
        "gateway-api",
        "",
        "{hostName: shop.internal, wellKnownCACertificates: System}",
    );
    // The misspelt field is named with what was meant, and the field it stands for is missing.
    assert_eq!(
        messages(&[("intents/a.yaml", a)]),
        [
            "intents/a.yaml:16:21: spec.rules[0].backendRefs[0].backendTLS.hostname: missing required field `hostname`: the name sent as SNI and checked in the backend's certificate, such as httpbin.internal",
            "intents/a.yaml:16:22: spec.rules[0].backendRefs[0].backendTLS.hostName: unknown field `hostName`; did you mean `hostname`? (valid fields: hostname, caCertificateRefs, wellKnownCACertificates, subjectAltNames)",
        ]
    );
    let a = intent(
        "a",
        "gateway-api",
        "",
        "{hostname: shop.internal, wellKnownCACertificates: System, caCertificateRefs: [{name: shop-ca}]}",
    );
    assert_one(
        &[("intents/a.yaml", a.as_str()), ("resources/ca.yaml", CA)],
        "intents/a.yaml:16:21: spec.rules[0].backendRefs[0].backendTLS: give exactly one of caCertificateRefs",
        &["wellKnownCACertificates: System"],
    );
    let a = intent(
        "a",
        "gateway-api",
        "",
        "{hostname: \"*.shop.internal\", wellKnownCACertificates: System}",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:16:32: spec.rules[0].backendRefs[0].backendTLS.hostname: `*.shop.internal` is not a valid hostname",
        &["no wildcard"],
    );
    let a = intent(
        "a",
        "gateway-api",
        "",
        "{hostname: shop.internal, wellKnownCACertificates: System, subjectAltNames: [{type: URI, hostname: shop.internal}]}",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:16:98: spec.rules[0].backendRefs[0].backendTLS.subjectAltNames[0]: type URI needs exactly the field `uri`",
        &[],
    );
}

#[test]
fn backend_tls_ca_must_be_in_resources() {
    let a = intent(
        "a",
        "gateway-api",
        "",
        "{hostname: shop.internal, caCertificateRefs: [{name: shop-ca}]}",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:16:21: spec.rules[0].backendRefs[0].backendTLS.caCertificateRefs: ConfigMap shop/shop-ca with the backend's CA (key ca.crt) is not in resources/",
        &["valid: a ConfigMap shop-ca in namespace shop"],
    );
}

#[test]
fn backend_tls_on_a_connection_route_is_refused() {
    let tcp = "apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {name: db, namespace: db}
spec:
  mode: gateway-api
  gateway: {name: db-gateway, port: 5432, protocol: TCP}
  rules:
    - backendRefs:
      - name: db
        port: 5432
        backendTLS: {hostname: db.internal, wellKnownCACertificates: System}
";
    assert_one(
        &[("intents/db.yaml", tcp)],
        "intents/db.yaml:11:21: spec.rules[0].backendRefs[0].backendTLS: a TCP listener forwards connections as they come",
        &["valid: backendTLS on an HTTP or HTTPS intent"],
    );
}

#[test]
fn two_intents_giving_one_service_different_backend_tls_name_both_files() {
    let a = intent(
        "a",
        "gateway-api",
        "",
        "{hostname: shop.internal, wellKnownCACertificates: System}",
    );
    let b = intent(
        "b",
        "gateway-api",
        "",
        "{hostname: shop.example, wellKnownCACertificates: System}",
    );
    assert_one(
        &[("intents/a.yaml", a), ("intents/b.yaml", b)],
        "intents/b.yaml:16:21: spec.rules[0].backendRefs[0].backendTLS: Service shop/shop is reached with TLS one way for every route to it, and intent shop/a (intents/a.yaml:16:21, spec.rules[0].backendRefs[0].backendTLS) gives it a different backendTLS",
        &["valid: the same backendTLS in both"],
    );
}

#[test]
fn client_certificates_are_checked() {
    let http = "apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {name: a, namespace: shop}
spec:
  mode: gateway-api
  hostnames: [a.example.com]
  gateway:
    name: shop-gateway
    port: 80
    clientCertificates: {caCertificateRefs: [{name: shop-ca}]}
  rules:
    - backendRefs: [{name: shop, port: 8080}]
";
    assert_one(
        &[("intents/a.yaml", http)],
        "intents/a.yaml:10:25: spec.gateway.clientCertificates: client certificates are checked where the gateway terminates TLS for requests: protocol HTTPS, not HTTP",
        &[],
    );
    let a = intent(
        "a",
        "gateway-api",
        "{caCertificateRefs: [], mode: AllowValidOnly}",
        "",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:12:45: spec.gateway.clientCertificates.caCertificateRefs: empty; valid: at least one {name: <the name of a ConfigMap",
        &[],
    );
    let a = intent(
        "a",
        "gateway-api",
        "{caCertificateRefs: [{name: shop-ca}], mode: AllowAll}",
        "",
    );
    assert_one(
        &[("intents/a.yaml", a.as_str()), ("resources/ca.yaml", CA)],
        "intents/a.yaml:12:70: spec.gateway.clientCertificates.mode: `AllowAll` is not valid",
        &["AllowValidOnly", "AllowInsecureFallback"],
    );
    let a = intent(
        "a",
        "gateway-api",
        "{caCertificateRefs: [{name: other-ca}]}",
        "",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:12:25: spec.gateway.clientCertificates.caCertificateRefs: ConfigMap shop/other-ca with the client CA (key ca.crt) is not in resources/",
        &[],
    );
}

#[test]
fn one_port_checks_clients_one_way() {
    let a = intent(
        "a",
        "gateway-api",
        "{caCertificateRefs: [{name: shop-ca}]}",
        "",
    );
    let b = intent("b", "gateway-api", "", "");
    assert_one(
        &[
            ("intents/a.yaml", a.as_str()),
            ("intents/b.yaml", b.as_str()),
            ("resources/ca.yaml", CA),
        ],
        "intents/b.yaml:10:15: spec.gateway.clientCertificates: port 443 of gateway shop/shop-gateway checks client certificates for every host on it, and intent shop/a (intents/a.yaml:1:1) gives it clientCertificates {caCertificateRefs: [shop-ca], mode: AllowValidOnly} where this intent gives no clientCertificates",
        &["valid: the same clientCertificates in every intent on the port"],
    );
}

#[test]
fn istio_mode_renders_what_an_istio_gateway_can_say() {
    let a = intent(
        "a",
        "istio",
        "{caCertificateRefs: [{name: shop-cert}], mode: AllowInsecureFallback}",
        "",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:12:25: spec.gateway.clientCertificates.mode: an Istio Gateway server has no AllowInsecureFallback",
        &["valid in istio mode: AllowValidOnly"],
    );
    let a = intent(
        "a",
        "istio",
        "{caCertificateRefs: [{name: clients-ca}]}",
        "",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:12:25: spec.gateway.clientCertificates.caCertificateRefs: in istio mode (line 5) the server's tls.mode MUTUAL reads the client CA from the server certificate's Secret",
        &["valid: caCertificateRefs: [{name: shop-cert}]"],
    );
    let a = intent(
        "a",
        "istio",
        "",
        "{hostname: shop.internal, caCertificateRefs: [{name: a-ca}, {name: b-ca}]}",
    );
    assert_one(
        &[("intents/a.yaml", a)],
        "intents/a.yaml:16:21: spec.rules[0].backendRefs[0].backendTLS.caCertificateRefs: istio mode renders a DestinationRule, whose credentialName is one Secret",
        &["valid: one caCertificateRef"],
    );
}

fn destination_rule(api_version: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: {api_version}\nkind: DestinationRule\nmetadata: {{name: dr, namespace: {ns}}}\nspec:\n{spec}"
    )
}

#[test]
fn destination_rule_fields_tidegate_does_not_implement_are_refused() {
    let dr = destination_rule(
        "networking.istio.io/v1",
        "shop",
        "  host: shop\n  subsets: [{name: v1, labels: {version: v1}}]\n",
    );
    assert_one(
        &[("resources/dr.yaml", dr)],
        "resources/dr.yaml:6:12: spec.subsets: subsets (routing to a Service's version by labels) are not supported by tidegate",
        &["valid in a DestinationRule: host, trafficPolicy.tls"],
    );
    let dr = destination_rule(
        "networking.istio.io/v1beta1",
        "shop",
        "  host: shop\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    tls: {mode: SIMPLE}\n",
    );
    assert_one(
        &[("resources/dr.yaml", dr)],
        "resources/dr.yaml:7:19: spec.trafficPolicy.loadBalancer: `loadBalancer` is not supported by tidegate",
        &["valid here: tls, portLevelSettings"],
    );
    let dr = destination_rule(
        "networking.istio.io/v1",
        "shop",
        "  host: shop\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 443}\n      tls: {mode: MUTUAL, clientCertificate: /etc/certs/cert.pem}\n",
    );
    assert_one(
        &[("resources/dr.yaml", dr)],
        "resources/dr.yaml:9:46: spec.trafficPolicy.portLevelSettings[0].tls.clientCertificate: `clientCertificate` names a file on the proxy",
        &["valid: credentialName"],
    );
    let dr = destination_rule(
        "networking.istio.io/v1",
        "shop",
        "  host: shop\n  trafficPolicy:\n    tls: {mode: STRICT}\n",
    );
    assert_one(
        &[("resources/dr.yaml", dr)],
        "resources/dr.yaml:7:17: spec.trafficPolicy.tls.mode: `STRICT` is not valid",
        &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"],
    );
    let dr = destination_rule("networking.istio.io/v1", "shop", "  trafficPolicy: {}\n");
    assert_one(
        &[("resources/dr.yaml", dr)],
        "resources/dr.yaml:5:3: spec.host: missing required field `host`",
        &["httpbin.httpbin.svc.cluster.local"],
    );
}

fn plan_of(files: &[(&str, &str)]) -> tidegate::xds::plan::ProxyPlan {
    let mut repo = TempRepo::new();
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("destination rules");
    let tree = gitsync::read(repo.path(), None, &intent::LAYOUT).expect("read");
    let model = intent::load_and_expand(&tree).expect("valid").1;
    translate::plans(&model)
        .remove("gw.edge")
        .expect("the gateway's plan")
}

const GATEWAY: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  selector: {istio: gw}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [\"*\"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: edge}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: shop.shop.svc.cluster.local, port: {number: 443}}}]
";

fn rule(name: &str, ns: &str, host: &str, credential: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: \"{host}\"
  trafficPolicy:
    tls: {{mode: SIMPLE, credentialName: {credential}}}
---
"
    )
}

/// Which Secret the gateway's connections to shop.shop:443 trust, given these rules.
fn trusted(rules: &[String]) -> Option<String> {
    let rules = rules.concat();
    let plan = plan_of(&[
        ("resources/gw.yaml", GATEWAY),
        ("resources/dr.yaml", &rules),
    ]);
    let key = UpstreamTlsKey {
        service: ServiceRef {
            name: "shop".into(),
            namespace: "shop".into(),
        },
        port: PortSel::Number(443),
    };
    plan.upstream_tls.get(&key).map(|u| match &u.trust {
        Trust::Secret(SecretRef { namespace, name }) => {
            assert_eq!(
                namespace, "edge",
                "Istio reads credentialName in the gateway's namespace"
            );
            name.clone()
        }
        other => panic!("trust {other:?}"),
    })
}

#[test]
fn destination_rule_precedence_is_istios() {
    // Another namespace's rule does not apply to this gateway.
    assert_eq!(
        trusted(&[rule("r", "elsewhere", "shop.shop.svc.cluster.local", "x")]),
        None
    );
    // The Service's namespace, with a short name resolved there.
    assert_eq!(
        trusted(&[rule("r", "shop", "shop", "svc-ns")]),
        Some("svc-ns".into())
    );
    // The gateway's namespace wins over the Service's, which wins over istio-system.
    assert_eq!(
        trusted(&[
            rule("a", "istio-system", "*.svc.cluster.local", "root"),
            rule("b", "shop", "shop", "svc-ns"),
            rule("c", "edge", "*.shop.svc.cluster.local", "gw-ns"),
        ]),
        Some("gw-ns".into())
    );
    assert_eq!(
        trusted(&[rule("a", "istio-system", "*.svc.cluster.local", "root")]),
        Some("root".into())
    );
    // Within a namespace: the exact host, then the longest wildcard, then the first name.
    assert_eq!(
        trusted(&[
            rule("a", "shop", "*.svc.cluster.local", "short-wildcard"),
            rule("b", "shop", "*.shop.svc.cluster.local", "long-wildcard"),
        ]),
        Some("long-wildcard".into())
    );
    assert_eq!(
        trusted(&[
            rule("a", "shop", "*.shop.svc.cluster.local", "wildcard"),
            rule("b", "shop", "shop.shop.svc.cluster.local", "exact"),
        ]),
        Some("exact".into())
    );
    assert_eq!(
        trusted(&[
            rule("b", "shop", "shop", "second"),
            rule("a", "shop", "shop.shop.svc.cluster.local", "first"),
        ]),
        Some("first".into())
    );
}

/// Of two rules for one host in one namespace Istio keeps the oldest: by Git history, not
/// by name (the rule added first is `zz`).
#[tokio::test]
async fn the_oldest_destination_rule_wins() {
    let mut repo = TempRepo::new();
    repo.write("resources/gw.yaml", GATEWAY);
    repo.write(
        "resources/dr.yaml",
        rule("zz", "shop", "shop.shop.svc.cluster.local", "older"),
    );
    repo.commit("the first rule");
    repo.write(
        "resources/dr.yaml",
        [
            rule("zz", "shop", "shop.shop.svc.cluster.local", "older"),
            rule("aa", "shop", "shop.shop.svc.cluster.local", "newer"),
        ]
        .concat(),
    );
    repo.commit("a second rule for the same host");
    let server = common::start_server(repo.path(), None).await;
    let snapshot = server.current().await;
    let plan = snapshot.plan("gw.edge").expect("the gateway's plan");
    let trust: Vec<_> = plan
        .upstream_tls
        .values()
        .map(|u| u.trust.clone())
        .collect();
    assert_eq!(
        trust,
        vec![Trust::Secret(SecretRef {
            namespace: "edge".into(),
            name: "older".into()
        })]
    );
}

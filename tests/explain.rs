//! `tidegate explain` against real repositories: the route that answers, its file and line,
//! why it beat the other matches, redirects, 404s, 421s, refused backends, missing
//! endpoints, waypoints, and the JSON contract. Whether its answers are Envoy's is
//! `tests/explain_envoy.rs`'s question.

mod common;

use common::{arg, text, tidegate};

use std::path::Path;

use serde_json::Value;
use tidegate::test_helpers::TempRepo;

/// `explain --json` of `url` with extra arguments; panics unless it exits 0.
fn explain(repo: &Path, proxy: &str, url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["explain", "--repo", arg(repo), "--proxy", proxy, "--json"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = tidegate(&args);
    assert!(out.status.success(), "explain {url}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the intent")) as u64
        + 1
}

const ALPHA: &str = r#"apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {name: alpha, namespace: web}
spec:
  mode: gateway-api
  hostnames: [shop.example.com]
  gateway: {name: edge, port: 80}
  rules:
    - matches:
        - path: {type: PathPrefix, value: /api}
      backendRefs: [{name: api, port: 80}]
    - matches:
        - path: {type: Exact, value: /api/health}
      backendRefs: [{name: health, port: 80}]
    - matches:
        - path: {type: PathPrefix, value: /api/v2}
          headers: [{name: X-Canary, value: "1"}]
      backendRefs: [{name: canary, port: 80}]
    - matches:
        - path: {type: PathPrefix, value: /shared}
      backendRefs: [{name: alpha, port: 80}]
    - matches:
        - path: {type: PathPrefix, value: /orders}
          method: POST
      backendRefs:
        - {name: orders-v1, port: 80, weight: 3}
        - {name: orders-v2, port: 80, weight: 1}
"#;

const BETA: &str = r#"apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {name: beta, namespace: web}
spec:
  mode: gateway-api
  hostnames: [shop.example.com]
  gateway: {name: edge, port: 80}
  rules:
    - matches:
        - path: {type: PathPrefix, value: /old}
      filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https, hostname: new.example.com, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /new}}
"#;

/// A plain HTTPRoute on the same gateway and host: intents may not share a path, routes
/// of other tools may.
const ZETA: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: zeta, namespace: web}
spec:
  parentRefs: [{name: edge}]
  hostnames: [shop.example.com]
  rules:
    - matches: [{path: {type: PathPrefix, value: /shared}}]
      backendRefs: [{name: zeta, port: 80}]
"#;

fn shop() -> TempRepo {
    let mut repo = TempRepo::new();
    repo.write("intents/alpha.yaml", ALPHA)
        .write("intents/beta.yaml", BETA)
        .write("resources/zeta.yaml", ZETA);
    repo.commit("shop");
    repo
}

const EDGE: &str = "edge.web";

#[test]
fn the_answer_names_the_rule_its_file_and_line_and_why_it_beat_the_others() {
    let repo = shop();
    let a = explain(repo.path(), EDGE, "http://shop.example.com/api/health", &[]);
    assert_eq!(a["status"], 200, "{a:#}");
    assert_eq!(
        a["backends"],
        serde_json::json!([{"name": "health", "namespace": "web", "port": 80, "weight": 1}]),
        "{a:#}"
    );
    let r = &a["route"];
    assert_eq!(
        (
            &r["kind"],
            &r["namespace"],
            &r["name"],
            &r["rule"],
            &r["match"]
        ),
        (
            &"HTTPRoute".into(),
            &"web".into(),
            &"alpha-ingress".into(),
            &1.into(),
            &0.into()
        ),
        "{a:#}"
    );
    assert_eq!(r["file"], "intents/alpha.yaml");
    assert_eq!(
        r["line"],
        line_of(ALPHA, "{type: Exact, value: /api/health}"),
        "{a:#}"
    );
    let why = a["precedence"].to_string();
    assert!(why.contains("Exact beats PathPrefix"), "{a:#}");
    assert!(a["redirect"].is_null());

    // The header makes the longer prefix match; without it the shorter one answers.
    let canary = explain(
        repo.path(),
        EDGE,
        "http://shop.example.com/api/v2/items",
        &["-H", "X-Canary: 1"],
    );
    assert_eq!(canary["backends"][0]["name"], "canary", "{canary:#}");
    assert!(
        canary["precedence"].to_string().contains("longer prefix"),
        "{canary:#}"
    );
    let plain = explain(
        repo.path(),
        EDGE,
        "http://shop.example.com/api/v2/items",
        &[],
    );
    assert_eq!(plain["backends"][0]["name"], "api", "{plain:#}");

    // Equal matches in two routes: the older route wins, and the reason says so.
    let shared = explain(repo.path(), EDGE, "http://shop.example.com/shared/x", &[]);
    assert_eq!(shared["backends"][0]["name"], "alpha", "{shared:#}");
    assert!(
        shared["precedence"]
            .to_string()
            .contains("older route: web/alpha-ingress"),
        "{shared:#}"
    );
    assert_eq!(shared["route"]["file"], "intents/alpha.yaml");

    // Weights, and a method that must match.
    let post = explain(
        repo.path(),
        EDGE,
        "http://shop.example.com/orders/1",
        &["--method", "POST"],
    );
    let weights: Vec<(String, u64)> = post["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        [("orders-v1".to_owned(), 3), ("orders-v2".to_owned(), 1)],
        "{post:#}"
    );
    let get = explain(repo.path(), EDGE, "http://shop.example.com/orders/1", &[]);
    assert_eq!(get["status"], 404, "{get:#}");
    assert!(get["route"].is_null());
    assert!(
        get["reason"].as_str().unwrap().contains("method POST"),
        "a 404 says which condition failed: {get:#}"
    );
}

#[test]
fn redirects_404s_and_closed_ports_are_answers_too() {
    let repo = shop();
    let r = explain(
        repo.path(),
        EDGE,
        "http://shop.example.com/old/page?x=1",
        &[],
    );
    assert_eq!(r["status"], 301, "{r:#}");
    // Envoy writes the port it is given, even the scheme's default, and keeps the query.
    assert_eq!(
        r["redirect"], "https://new.example.com:443/new?x=1",
        "{r:#}"
    );
    assert!(r["backends"].as_array().unwrap().is_empty());
    assert_eq!(r["route"]["file"], "intents/beta.yaml");

    let host = explain(repo.path(), EDGE, "http://other.example.com/api", &[]);
    assert_eq!(host["status"], 404);
    assert!(
        host["reason"]
            .as_str()
            .unwrap()
            .contains("shop.example.com"),
        "a 404 for an unknown host lists the hosts served: {host:#}"
    );
    let path = explain(repo.path(), EDGE, "http://shop.example.com/nothing", &[]);
    assert_eq!(path["status"], 404);

    let closed = explain(repo.path(), EDGE, "http://shop.example.com:8080/api", &[]);
    assert_eq!(
        closed["status"], 0,
        "no listener, no HTTP answer: {closed:#}"
    );
    assert!(
        closed["reason"]
            .as_str()
            .unwrap()
            .contains("no listener on port 8080")
    );
}

/// As Envoy answers (measured by `tests/explain_envoy.rs`): a Service the endpoints file
/// does not list has no cluster (500), one listed without addresses has no endpoints (503).
#[test]
fn with_the_endpoints_file_an_unlisted_service_answers_500_and_an_empty_one_503() {
    let repo = shop();
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        "api.web:80: [\"127.0.0.1:9\"]\ncanary.web:80: []\n",
    )
    .unwrap();
    let ep = ["--endpoints", arg(&endpoints)];
    let api = explain(repo.path(), EDGE, "http://shop.example.com/api", &ep);
    assert_eq!(api["status"], 200, "{api:#}");
    let health = explain(repo.path(), EDGE, "http://shop.example.com/api/health", &ep);
    assert_eq!(health["status"], 500, "{health:#}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("health.web:80 is not in the endpoints file"),
        "{health:#}"
    );
    let canary = explain(
        repo.path(),
        EDGE,
        "http://shop.example.com/api/v2",
        &["-H", "x-canary: 1", ep[0], ep[1]],
    );
    assert_eq!(canary["status"], 503, "{canary:#}");
    assert!(
        canary["reason"].as_str().unwrap().contains("no endpoints"),
        "{canary:#}"
    );
    // Without the file every Service is taken to exist.
    let any = explain(repo.path(), EDGE, "http://shop.example.com/api/health", &[]);
    assert_eq!(any["status"], 200, "{any:#}");
}

#[test]
fn a_refused_backend_answers_500_and_says_why() {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/web.yaml",
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: web, namespace: web}\nspec:\n  mode: gateway-api\n  hostnames: [web.example.com]\n  gateway: {name: edge, port: 80}\n  rules:\n    - backendRefs: [{name: web, port: 80}]\n",
    )
    .write(
        "resources/other.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: other, namespace: web}\nspec:\n  parentRefs: [{name: edge}]\n  hostnames: [web.example.com]\n  rules:\n    - matches: [{path: {type: PathPrefix, value: /vault}}]\n      backendRefs: [{name: secret-svc, namespace: vault, port: 80}]\n",
    );
    repo.commit("refused");
    let a = explain(repo.path(), EDGE, "http://web.example.com/vault/x", &[]);
    assert_eq!(a["status"], 500, "{a:#}");
    assert!(a["backends"].as_array().unwrap().is_empty(), "{a:#}");
    assert!(
        a["reason"].as_str().unwrap().contains("ReferenceGrant"),
        "{a:#}"
    );
    // A plain object's route points at its match in the file.
    assert_eq!(a["route"]["file"], "resources/other.yaml", "{a:#}");
    assert_eq!(a["route"]["line"], 8, "{a:#}");
}

#[test]
fn istio_mode_names_the_virtual_service_entry_and_the_intent_line() {
    let intent = r#"apiVersion: tidegate.io/v1alpha1
kind: Ingress
metadata: {name: reviews, namespace: bookinfo}
spec:
  mode: istio
  hostnames: [bookinfo.example.com]
  gateway: {name: bookinfo-gateway, port: 8080}
  rules:
    - backendRefs: [{name: productpage, port: 9080}]
    - matches:
        - path: {type: PathPrefix, value: /reviews}
      backendRefs: [{name: reviews, port: 9080}]
"#;
    let mut repo = TempRepo::new();
    repo.write("intents/reviews.yaml", intent);
    repo.commit("istio");
    let a = explain(
        repo.path(),
        "bookinfo-gateway.bookinfo",
        "http://bookinfo.example.com:8080/reviews/1",
        &[],
    );
    assert_eq!(a["backends"][0]["name"], "reviews", "{a:#}");
    assert_eq!(a["route"]["kind"], "VirtualService", "{a:#}");
    assert_eq!(
        a["route"]["line"],
        line_of(intent, "value: /reviews}"),
        "{a:#}"
    );
    assert!(
        a["precedence"].to_string().contains("VirtualService"),
        "the catch-all also matches, and loses by the list's order: {a:#}"
    );
    let rest = explain(
        repo.path(),
        "bookinfo-gateway.bookinfo",
        "http://bookinfo.example.com:8080/anything",
        &[],
    );
    assert_eq!(rest["backends"][0]["name"], "productpage", "{rest:#}");
    assert_eq!(rest["route"]["line"], line_of(intent, "name: productpage"));
}

#[test]
fn a_waypoint_is_asked_for_a_service_by_name_or_vip() {
    let dir = tidegate::test_helpers::TempRepo::new();
    let config = env!("CARGO_MANIFEST_DIR");
    let mut repo = dir;
    repo.copy_dir(&Path::new(config).join("config-repo"), "");
    repo.commit("config-repo");
    let wp = "httpbin-waypoint.httpbin-ambient";
    let by_name = explain(
        repo.path(),
        wp,
        "http://httpbin.httpbin-ambient.svc.cluster.local:8000/status/200",
        &[],
    );
    assert_eq!(by_name["status"], 200, "{by_name:#}");
    assert_eq!(
        by_name["route"]["name"], "httpbin-waypoint-route",
        "{by_name:#}"
    );
    let eps = tempfile::tempdir().unwrap();
    let file = eps.path().join("endpoints.yaml");
    std::fs::write(
        &file,
        "httpbin.httpbin-ambient:8000: {vip: \"10.96.1.2\", addresses: [\"127.0.0.1:9\"]}\n",
    )
    .unwrap();
    let by_vip = explain(
        repo.path(),
        wp,
        "http://10.96.1.2:8000/headers",
        &["--endpoints", arg(&file)],
    );
    assert_eq!(by_vip["status"], 200, "{by_vip:#}");
    assert_eq!(by_vip["backends"][0]["name"], "httpbin");
    // A Service of a namespace the waypoint is not bound to gets nothing from it.
    let other = explain(repo.path(), wp, "http://web.elsewhere:80/", &[]);
    assert_eq!(other["status"], 0, "{other:#}");
}

#[test]
fn the_json_contract_and_exit_statuses() {
    let mut repo = shop();
    let a = explain(repo.path(), EDGE, "http://shop.example.com/api", &[]);
    for key in ["status", "backends", "route", "redirect", "reason"] {
        assert!(a.get(key).is_some(), "missing {key}: {a:#}");
    }
    for key in ["kind", "namespace", "name", "rule", "match", "file", "line"] {
        assert!(a["route"].get(key).is_some(), "route lacks {key}: {a:#}");
    }
    // Text output names the same route and line.
    let out = tidegate(&[
        "explain",
        "--repo",
        arg(repo.path()),
        "--proxy",
        EDGE,
        "http://shop.example.com/api",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("HTTPRoute web/alpha-ingress rule 0 match 0 at intents/alpha.yaml:"),
        "{}",
        text(&out)
    );
    // An unknown proxy is an error that lists the known ones.
    let out = tidegate(&[
        "explain",
        "--repo",
        arg(repo.path()),
        "--proxy",
        "nope.web",
        "http://shop.example.com/",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("edge.web"), "{}", text(&out));
    // An invalid revision: exit 1 with the problem's file and line.
    repo.write("intents/beta.yaml", BETA.replace("port: 80}", "port: 0}"));
    repo.commit("break it");
    let out = tidegate(&[
        "explain",
        "--repo",
        arg(repo.path()),
        "--proxy",
        EDGE,
        "http://shop.example.com/",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("intents/beta.yaml:"), "{}", text(&out));
    // The previous revision still explains, by --rev, and through a file:// URL.
    let url = format!("file://{}", repo.path().display());
    let old = explain(
        Path::new(&url),
        EDGE,
        "http://shop.example.com/api",
        &["--rev", "HEAD~1"],
    );
    assert_eq!(old["status"], 200, "{old:#}");
}

#[test]
fn https_listeners_choose_by_sni_and_answer_another_listeners_host_421() {
    let gateway = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls, namespace: web}
spec:
  gatewayClassName: tidegate
  listeners:
    - name: a
      hostname: a.example.com
      port: 443
      protocol: HTTPS
      tls: {mode: Terminate, certificateRefs: [{name: a-cert}]}
    - name: b
      hostname: b.example.com
      port: 443
      protocol: HTTPS
      tls: {mode: Terminate, certificateRefs: [{name: b-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: web}
spec:
  parentRefs: [{name: tls, sectionName: a}]
  rules:
    - backendRefs: [{name: a, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: web}
spec:
  parentRefs: [{name: tls, sectionName: b}]
  rules:
    - backendRefs: [{name: b, port: 80}]
"#;
    let mut repo = TempRepo::new();
    repo.write("resources/tls.yaml", gateway);
    repo.commit("two HTTPS listeners");
    let proxy = "tls.web";
    let a = explain(repo.path(), proxy, "https://a.example.com/", &[]);
    assert_eq!(
        (&a["status"], &a["backends"][0]["name"]),
        (&200.into(), &"a".into()),
        "{a:#}"
    );
    assert!(
        a["chain"].as_str().unwrap().contains("a.example.com"),
        "{a:#}"
    );
    // A connection made for a.example.com asking for b's host: 421, not b's backend.
    let mis = explain(
        repo.path(),
        proxy,
        "https://b.example.com/",
        &["--sni", "a.example.com"],
    );
    assert_eq!(mis["status"], 421, "{mis:#}");
    assert!(mis["backends"].as_array().unwrap().is_empty());
    // No certificate for the name, no plain HTTP on an HTTPS port: no HTTP answer.
    let unknown = explain(repo.path(), proxy, "https://c.example.com/", &[]);
    assert_eq!(unknown["status"], 0, "{unknown:#}");
    let plain = explain(repo.path(), proxy, "http://a.example.com:443/", &[]);
    assert_eq!(plain["status"], 0, "{plain:#}");
}

#[test]
fn connections_are_explained_by_sni_and_port() {
    let mut repo = TempRepo::new();
    repo.write(
        "resources/l4.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: l4, namespace: infra}
spec:
  gatewayClassName: istio
  listeners:
  - {name: tls, port: 8443, protocol: TLS, hostname: '*.example.com', tls: {mode: Passthrough}}
  - {name: db, port: 5432, protocol: TCP}
  - {name: dns, port: 5353, protocol: UDP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: web, namespace: infra}
spec:
  parentRefs: [{name: l4}]
  hostnames: [abc.example.com]
  rules:
  - backendRefs: [{name: web, port: 8443}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: db, namespace: infra}
spec:
  parentRefs: [{name: l4}]
  rules:
  - backendRefs: [{name: db, port: 5432, weight: 9}, {name: db, namespace: other, port: 5432}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {name: dns, namespace: infra}
spec:
  parentRefs: [{name: l4}]
  rules:
  - backendRefs: [{name: coredns, port: 53}]
",
    );
    repo.commit("l4");
    let a = explain(repo.path(), "l4.infra", "tls://abc.example.com:8443", &[]);
    assert_eq!(a["status"], 0, "{a:#}");
    assert_eq!(a["backends"][0]["name"], "web", "{a:#}");
    assert_eq!(a["route"]["kind"], "TLSRoute", "{a:#}");
    assert_eq!(a["route"]["file"], "resources/l4.yaml", "{a:#}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("forwarded to web.infra:8443"),
        "{a:#}"
    );
    // An SNI no route serves: closed during the handshake, the served names listed.
    let a = explain(repo.path(), "l4.infra", "tls://other.org:8443", &[]);
    assert!(a["backends"].as_array().unwrap().is_empty(), "{a:#}");
    let why = a["reason"].as_str().unwrap();
    assert!(
        why.contains("closed during the TLS handshake") && why.contains("abc.example.com"),
        "{a:#}"
    );
    // TCP: the refused share is closed, and says why.
    let a = explain(repo.path(), "l4.infra", "tcp://gateway:5432", &[]);
    assert_eq!(a["route"]["kind"], "TCPRoute", "{a:#}");
    let why = a["reason"].as_str().unwrap();
    assert!(
        why.contains("db.infra:5432 (weight 9)") && why.contains("1 of 10 closed"),
        "{a:#}"
    );
    let a = explain(repo.path(), "l4.infra", "udp://gateway:5353", &[]);
    assert_eq!(a["backends"][0]["name"], "coredns", "{a:#}");
    // Asked in the wrong protocol: which one the port speaks.
    let a = explain(repo.path(), "l4.infra", "http://gateway:5432/", &[]);
    assert!(a["reason"].as_str().unwrap().contains("tcp://"), "{a:#}");
}

#[test]
fn a_virtual_service_tls_entry_is_named_with_its_line() {
    let mut repo = TempRepo::new();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/l4-istio-resources/config/resources/edge.yaml"),
    )
    .expect("golden config");
    repo.write("tidegate.yaml", "gatewayClassName: istio\n")
        .write("resources/edge.yaml", &text);
    repo.commit("istio l4");
    // The second tls entry also lists replica.db.example.com: it answers that name.
    let a = explain(
        repo.path(),
        "edge.edge",
        "tls://replica.db.example.com:443",
        &[],
    );
    assert_eq!(a["route"]["kind"], "VirtualService", "{a:#}");
    assert_eq!(a["route"]["rule"], 1, "{a:#}");
    assert_eq!(
        a["route"]["line"],
        line_of(&text, "- match: [{sniHosts: [pg.db.example.com, replica"),
        "{a:#}"
    );
    assert_eq!(a["backends"][0]["name"], "pg-replica", "{a:#}");
    // A TCP server: the tcp entry's line.
    let a = explain(repo.path(), "edge.edge", "tcp://gateway:1883", &[]);
    assert_eq!(
        a["route"]["line"],
        line_of(&text, "- match: [{port: 1883}]"),
        "{a:#}"
    );
}

//! `tidegate diff` through real repositories and the real binary: exit statuses, the JSON
//! contract, markdown for pull requests, URL repositories.

mod common;

use common::{text, tidegate};

use serde_json::Value;
use tidegate::test_helpers::TempRepo;

/// `diff --format json` of `base..head`: the exit status and the report.
fn diff_json(repo: &str, base: &str, head: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "diff", "--repo", repo, "--base", base, "--head", head, "--format", "json",
    ];
    args.extend_from_slice(extra);
    let out = tidegate(&args);
    let code = out.status.code().expect("exit status");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    (code, json)
}

fn intent(name: &str, host: &str, gateway: &str, rules: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  mode: gateway-api\n  hostnames: [{host}]\n  gateway: {{name: {gateway}, namespace: ingress, port: 80}}\n  rules:\n{rules}"
    )
}

fn rule(kind: &str, path: &str, backend: &str) -> String {
    format!(
        "  - matches: [{{path: {{type: {kind}, value: {path}}}}}]\n    backendRefs: [{{name: {backend}, port: 8080}}]\n"
    )
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn path(repo: &TempRepo) -> String {
    repo.path().to_str().expect("utf-8 path").to_owned()
}

/// A repository with one intent, `shop`, at its first commit.
fn shop() -> (TempRepo, String) {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/shop.yaml",
        intent(
            "shop",
            "shop.example.com",
            "edge",
            &rule("PathPrefix", "/api", "api"),
        ),
    );
    let base = repo.commit("shop");
    (repo, base)
}

#[test]
fn identical_revisions_change_nothing_and_exit_0() {
    let (mut repo, base) = shop();
    // Same revision twice, and a second commit of the same tree: the READMEs name their
    // commit, which is no change to review.
    let same_tree = repo.commit("nothing");
    for head in [base.as_str(), same_tree.as_str()] {
        let (code, r) = diff_json(&path(&repo), &base, head, &[]);
        assert_eq!(code, 0, "{r:#}");
        assert_eq!(r["changed"], false, "{r:#}");
        assert_eq!(r["valid"], true);
        assert!(strs(&r["errors"]).is_empty());
        for k in ["added", "removed", "changed"] {
            assert!(strs(&r["manifests"][k]).is_empty(), "{r:#}");
        }
        assert_eq!(r["proxies"], serde_json::json!({}));
        assert_eq!(r["status"], serde_json::json!([]));
        assert_eq!(r["traffic"], serde_json::json!([]));
    }
    let out = tidegate(&[
        "diff",
        "--repo",
        &path(&repo),
        "--base",
        &base,
        "--head",
        &same_tree,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no change"), "{}", text(&out));
}

#[test]
fn a_renamed_file_changes_nothing_a_renamed_intent_changes_manifests_and_resources() {
    let (mut repo, base) = shop();
    let body = std::fs::read_to_string(repo.path().join("intents/shop.yaml")).expect("read");
    repo.remove("intents/shop.yaml");
    repo.write("intents/renamed.yaml", &body);
    let moved = repo.commit("file renamed");
    let (code, r) = diff_json(&path(&repo), &base, &moved, &[]);
    assert_eq!(
        code, 0,
        "the file name is not part of what is served: {r:#}"
    );
    assert_eq!(r["changed"], false);

    repo.write(
        "intents/renamed.yaml",
        body.replace("name: shop,", "name: store,"),
    );
    let renamed = repo.commit("intent renamed");
    let (code, r) = diff_json(&path(&repo), &moved, &renamed, &[]);
    assert_eq!(code, 2, "{r:#}");
    assert_eq!(r["changed"], true);
    assert_eq!(
        strs(&r["manifests"]["added"]),
        ["shop/httproute-store-ingress.yaml"],
        "{r:#}"
    );
    assert_eq!(
        strs(&r["manifests"]["removed"]),
        ["shop/httproute-shop-ingress.yaml"]
    );
    // The route configuration names its routes after the HTTPRoute; what is routed where
    // is the same, so no readable route line changes and no request is answered otherwise.
    let p = &r["proxies"]["edge.ingress"];
    assert_eq!(strs(&p["routes"]["changed"]), ["http.80"], "{r:#}");
    assert!(strs(&p["route_lines"]["added"]).is_empty(), "{r:#}");
    assert!(strs(&p["clusters"]["changed"]).is_empty(), "{r:#}");
    // The new HTTPRoute's conditions appear, the old one's go.
    let objects: Vec<&str> = r["status"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["object"].as_str().expect("object"))
        .collect();
    assert!(
        objects
            .iter()
            .any(|o| o.contains("HTTPRoute shop/store-ingress")),
        "{r:#}"
    );
    assert!(
        objects
            .iter()
            .any(|o| o.contains("HTTPRoute shop/shop-ingress")),
        "{r:#}"
    );
}

#[test]
fn a_deleted_intent_removes_its_manifests_and_its_proxy() {
    let (mut repo, _) = shop();
    repo.write(
        "intents/blog.yaml",
        intent(
            "blog",
            "blog.example.com",
            "blog-edge",
            &rule("PathPrefix", "/", "blog"),
        ),
    );
    let base = repo.commit("blog");
    repo.remove("intents/blog.yaml");
    let head = repo.commit("no blog");
    let (code, r) = diff_json(&path(&repo), &base, &head, &[]);
    assert_eq!(code, 2, "{r:#}");
    let removed = strs(&r["manifests"]["removed"]);
    assert!(
        removed.contains(&"shop/httproute-blog-ingress.yaml".to_owned()),
        "{removed:?}"
    );
    assert!(strs(&r["manifests"]["added"]).is_empty(), "{r:#}");
    let p = &r["proxies"]["blog-edge.ingress"];
    assert_eq!(p["change"], "removed", "{r:#}");
    assert_eq!(strs(&p["listeners"]["removed"]), ["http.80"]);
    assert_eq!(
        strs(&p["route_lines"]["removed"]),
        ["blog.example.com:80  PathPrefix / → blog.shop:8080 (1)"]
    );
    assert!(
        r["proxies"].get("edge.ingress").is_none(),
        "the other proxy is untouched: {r:#}"
    );
    // --proxy limits the proxies shown (manifests are the repository's, not a proxy's).
    let (code, r) = diff_json(&path(&repo), &base, &head, &["--proxy", "edge.ingress"]);
    assert_eq!(code, 2);
    assert_eq!(r["proxies"], serde_json::json!({}), "{r:#}");
    assert!(!strs(&r["manifests"]["removed"]).is_empty());
}

#[test]
fn an_invalid_head_exits_1_with_its_errors_at_file_and_line() {
    let (mut repo, base) = shop();
    repo.write(
        "intents/shop.yaml",
        intent(
            "shop",
            "shop.example.com",
            "edge",
            &rule("Bogus", "/api", "api"),
        ),
    );
    let head = repo.commit("broken");
    let (code, r) = diff_json(&path(&repo), &base, &head, &[]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["valid"], false);
    let errors = strs(&r["errors"]);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("intents/shop.yaml:9:") && e.contains("Bogus")),
        "{errors:?}"
    );
    assert_eq!(strs(&r["introduced"]), errors);
    // In text too, and the other way round the change fixes them (exit 2: a change).
    let out = tidegate(&[
        "diff",
        "--repo",
        &path(&repo),
        "--base",
        &base,
        "--head",
        &head,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("intents/shop.yaml:9:"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains('\x1b'),
        "no colour in a pipe: {}",
        text(&out)
    );
    let (code, r) = diff_json(&path(&repo), &head, &base, &[]);
    assert_eq!(code, 2, "{r:#}");
    assert_eq!(r["valid"], true);
    assert_eq!(strs(&r["fixed"]), errors);
}

#[test]
fn errors_that_are_not_the_heads_exit_1_too() {
    let (repo, base) = shop();
    for (args, why) in [
        (
            vec!["--base", base.as_str(), "--head", "no-such-branch"],
            "no-such-branch",
        ),
        (
            vec!["--base", base.as_str(), "--head", "HEAD", "--proxy", "edge"],
            "NAME.NAMESPACE",
        ),
        (
            vec![
                "--base",
                base.as_str(),
                "--head",
                "HEAD",
                "--proxy",
                "edg.ingress",
            ],
            "no such proxy in either revision (proxies: edge.ingress)",
        ),
    ] {
        let mut all = vec!["diff", "--repo", repo.path().to_str().expect("utf-8")];
        all.extend(args);
        let out = tidegate(&all);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(why), "{}", text(&out));
    }
}

#[test]
fn markdown_starts_with_a_summary_line_and_has_no_ansi() {
    let (mut repo, base) = shop();
    repo.write(
        "intents/shop.yaml",
        intent(
            "shop",
            "shop.example.com",
            "edge",
            &(rule("PathPrefix", "/api", "api") + &rule("Exact", "/health", "health")),
        ),
    );
    let head = repo.commit("health");
    let out = tidegate(&[
        "diff",
        "--repo",
        &path(&repo),
        "--base",
        &base,
        "--head",
        &head,
        "--format",
        "markdown",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let md = String::from_utf8(out.stdout).expect("utf-8");
    assert!(!md.contains('\x1b'), "{md}");
    let first = md.lines().next().expect("a line");
    assert!(
        first.contains("tidegate diff") && first.contains("1 proxy changed"),
        "{md}"
    );
    assert!(!first.starts_with('#'), "a summary, not a heading: {md}");
    for h in ["## Manifests", "## Proxies"] {
        assert!(md.contains(h), "no {h}: {md}");
    }
    assert!(
        md.contains("+ shop.example.com:80  Exact /health → health.shop:8080 (1)"),
        "{md}"
    );
}

#[test]
fn a_url_repository_is_mirrored_with_its_branches() {
    let (mut repo, _) = shop();
    // The change on a branch that is not checked out: a pull request's head.
    {
        let main = repo
            .repo()
            .head()
            .expect("HEAD")
            .peel_to_commit()
            .expect("commit");
        repo.repo().branch("feature", &main, false).expect("branch");
    }
    repo.repo()
        .set_head("refs/heads/feature")
        .expect("checkout");
    repo.write(
        "intents/shop.yaml",
        intent(
            "shop",
            "shop.example.com",
            "edge",
            &rule("PathPrefix", "/api", "api-v2"),
        ),
    );
    repo.commit("api v2");
    repo.repo()
        .set_head("refs/heads/main")
        .expect("back to main");
    let url = format!("file://{}", path(&repo));
    let (code, r) = diff_json(&url, "main", "feature", &[]);
    assert_eq!(code, 2, "{r:#}");
    let p = &r["proxies"]["edge.ingress"];
    assert_eq!(
        strs(&p["clusters"]["added"]),
        ["api-v2.shop.svc.cluster.local:8080"],
        "{r:#}"
    );
    assert_eq!(
        strs(&p["clusters"]["removed"]),
        ["api.shop.svc.cluster.local:8080"]
    );
    assert_eq!(
        strs(&p["route_lines"]["removed"]),
        ["shop.example.com:80  PathPrefix /api → api.shop:8080 (1)"]
    );
    assert_eq!(
        strs(&p["route_lines"]["added"]),
        ["shop.example.com:80  PathPrefix /api → api-v2.shop:8080 (1)"]
    );
}

/// The traffic entry of `proxy` for `url`.
fn traffic<'a>(r: &'a Value, proxy: &str, url: &str) -> &'a Value {
    r["traffic"]
        .as_array()
        .expect("traffic is a list")
        .iter()
        .find(|t| t["proxy"] == proxy && t["request"]["url"] == url)
        .unwrap_or_else(|| panic!("no traffic for {proxy} {url}: {r:#}"))
}

#[test]
fn a_moved_backend_shows_in_traffic_with_both_backends() {
    let (mut repo, base) = shop();
    // Most of /api moves to api-v2; the largest share is the backend shown.
    repo.write(
        "intents/shop.yaml",
        intent(
            "shop",
            "shop.example.com",
            "edge",
            "  - matches: [{path: {type: PathPrefix, value: /api}}]\n    backendRefs: [{name: api, port: 8080, weight: 10}, {name: api-v2, port: 8080, weight: 90}]\n",
        ),
    );
    let head = repo.commit("canary");
    let (code, r) = diff_json(&path(&repo), &base, &head, &[]);
    assert_eq!(code, 2, "{r:#}");
    let t = traffic(&r, "edge.ingress", "http://shop.example.com:80/api");
    assert_eq!(t["request"]["method"], "GET");
    assert_eq!(t["base"]["status"], 200);
    assert_eq!(
        t["base"]["backend"],
        serde_json::json!({"name": "api", "namespace": "shop", "port": 8080}),
        "{t:#}"
    );
    assert_eq!(t["head"]["status"], 200);
    assert_eq!(
        t["head"]["backend"],
        serde_json::json!({"name": "api-v2", "namespace": "shop", "port": 8080}),
        "{t:#}"
    );
    let shares: Vec<(String, u64)> = t["head"]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["name"].as_str().expect("name").to_owned(),
                b["weight"].as_u64().expect("weight"),
            )
        })
        .collect();
    assert_eq!(
        shares,
        [("api".to_owned(), 10), ("api-v2".to_owned(), 90)],
        "{t:#}"
    );
    assert_eq!(r["traffic"].as_array().map(Vec::len), Some(1), "{r:#}");
}

#[test]
fn a_new_route_answers_404_in_the_base_and_200_in_the_head() {
    let (mut repo, base) = shop();
    repo.write(
        "intents/shop.yaml",
        intent(
            "shop",
            "shop.example.com",
            "edge",
            &(rule("PathPrefix", "/api", "api") + &rule("Exact", "/health", "health")),
        ),
    );
    // And a new proxy: nothing answers on the base side.
    repo.write(
        "intents/blog.yaml",
        intent(
            "blog",
            "blog.example.com",
            "blog-edge",
            &rule("PathPrefix", "/", "blog"),
        ),
    );
    let head = repo.commit("health and blog");
    let (code, r) = diff_json(&path(&repo), &base, &head, &[]);
    assert_eq!(code, 2, "{r:#}");
    let t = traffic(&r, "edge.ingress", "http://shop.example.com:80/health");
    assert_eq!(t["base"]["status"], 404, "{t:#}");
    assert_eq!(t["base"]["backend"], Value::Null);
    assert_eq!(t["head"]["status"], 200, "{t:#}");
    assert_eq!(t["head"]["backend"]["name"], "health");
    // The unchanged route is answered the same: not listed.
    assert!(
        r["traffic"]
            .as_array()
            .expect("list")
            .iter()
            .all(|t| t["request"]["url"] != "http://shop.example.com:80/api"),
        "{r:#}"
    );
    let t = traffic(&r, "blog-edge.ingress", "http://blog.example.com:80/");
    assert_eq!(t["base"]["status"], 0, "{t:#}");
    assert_eq!(t["head"]["status"], 200, "{t:#}");
    assert_eq!(r["proxies"]["blog-edge.ingress"]["change"], "added");
    // --proxy limits traffic too.
    let (_, r) = diff_json(
        &path(&repo),
        &base,
        &head,
        &["--proxy", "blog-edge.ingress"],
    );
    assert!(
        r["traffic"]
            .as_array()
            .expect("list")
            .iter()
            .all(|t| t["proxy"] == "blog-edge.ingress"),
        "{r:#}"
    );
    assert_eq!(r["traffic"].as_array().map(Vec::len), Some(1), "{r:#}");
}

#[test]
fn connection_routes_are_reviewed_as_lines_too() {
    let gateway = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: l4, namespace: infra}
spec:
  gatewayClassName: istio
  listeners:
  - {name: tcp, port: 9300, protocol: TCP}
  - {name: tls, port: 8443, protocol: TLS, hostname: '*.example.com', tls: {mode: Passthrough}}
";
    let routes = |backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: db, namespace: infra}}
spec:
  parentRefs: [{{name: l4}}]
  rules:
  - backendRefs: [{{name: {backend}, port: 5432}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: web, namespace: infra}}
spec:
  parentRefs: [{{name: l4}}]
  hostnames: [abc.example.com]
  rules:
  - backendRefs: [{{name: web, port: 8443, weight: 3}}, {{name: gone, namespace: other, port: 8443}}]
"
        )
    };
    let mut repo = TempRepo::new();
    repo.write("resources/gateway.yaml", gateway)
        .write("resources/routes.yaml", routes("db-v1"));
    let base = repo.commit("l4");
    repo.write("resources/routes.yaml", routes("db-v2"));
    let head = repo.commit("db v2");
    let (code, r) = diff_json(&path(&repo), &base, &head, &[]);
    assert_eq!(code, 2, "{r:#}");
    let p = &r["proxies"]["l4.infra"];
    assert_eq!(
        strs(&p["route_lines"]["removed"]),
        ["tcp://*:9300  → db-v1.infra:5432 (1)"],
        "{r:#}"
    );
    assert_eq!(
        strs(&p["route_lines"]["added"]),
        ["tcp://*:9300  → db-v2.infra:5432 (1)"],
        "{r:#}"
    );
    // The TLS route did not change, so it is no line of the diff. Its own line: the SNI
    // name, passthrough, and the backend of another namespace that no ReferenceGrant
    // permits keeps its share (those connections are closed), saying why.
    use tidegate::review::{Caches, Repo, Side};
    let side = Side::load(
        &Repo::open(&path(&repo)).expect("open"),
        None,
        &mut Caches::default(),
    )
    .expect("load");
    let plan = &side.loaded().expect("valid").plans["l4.infra"];
    assert_eq!(
        tidegate::review::diff::route_lines(plan),
        [
            "tls://abc.example.com:8443  passthrough → web.infra:8443 (3), Service other/gone:8443 refused (not permitted) (1)",
            "tcp://*:9300  → db-v2.infra:5432 (1)",
        ]
    );
}

/// A consumer route (an HTTPRoute of another namespace on a waypoint's Service) is a change
/// of the waypoint, named with the namespace whose clients it is for.
#[test]
fn a_consumer_route_is_a_waypoint_route_line_for_its_namespace() {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: httpbin, namespace: httpbin}\nspec:\n  mode: ambient\n  hostnames: [httpbin.example.com]\n  gateway: {name: httpbin-gateway, port: 8080, protocol: HTTP, exposure: LoadBalancer}\n  waypoint: {name: httpbin-waypoint}\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /status}}]\n    backendRefs: [{name: httpbin, port: 8000}]\n",
    );
    let base = repo.commit("ambient");
    repo.write(
        "resources/consumer.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: sleep-to-httpbin, namespace: sleep}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: httpbin, namespace: httpbin, port: 8000}]\n  rules:\n  - backendRefs: [{name: httpbin, namespace: httpbin, port: 8000}]\n",
    );
    let head = repo.commit("a consumer route");
    let (code, r) = diff_json(&path(&repo), &base, &head, &[]);
    assert_eq!(code, 2, "{r:#}");
    let added = strs(&r["proxies"]["httpbin-waypoint.httpbin"]["route_lines"]["added"]);
    assert_eq!(added.len(), 1, "{r:#}");
    assert!(
        added[0].starts_with("httpbin.httpbin:8000 (from sleep)  ")
            && added[0].contains("httpbin.httpbin:8000"),
        "{added:?}"
    );
}

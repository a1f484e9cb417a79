//! Crashes and restarts: `kill -9` the server while a real Envoy is connected. Envoy keeps
//! serving the last config; after a restart it reconnects and is sent nothing new, because
//! versions come from content (the same commit has the same versions in any process).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidegate::test_helpers::{
    EchoServer, Envoy, TempRepo, envoy_binary, eventually, free_port, http_get,
};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(
    repo: &std::path::Path,
    endpoints: &std::path::Path,
    xds: SocketAddr,
    admin: SocketAddr,
) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(["serve", "--repo"])
            .arg(repo)
            .arg("--endpoints")
            .arg(endpoints)
            .args(["--xds", &xds.to_string(), "--admin", &admin.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tidegate"),
    )
}

async fn proxy_types(admin: SocketAddr) -> Result<serde_json::Value, String> {
    let r = http_get(admin, "localhost", "/status")
        .await
        .ok_or("no answer")?;
    let st: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    let p = st["proxies"]
        .as_array()
        .and_then(|p| p.first())
        .cloned()
        .ok_or(format!("no proxy yet: {st}"))?;
    let synced = ["CDS", "EDS", "LDS", "RDS"]
        .iter()
        .all(|t| p["types"][t]["state"] == "SYNCED");
    if synced {
        Ok(p["types"].clone())
    } else {
        Err(format!("{p:#}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_survives_kill_9_and_is_sent_nothing_new_after_the_restart() {
    let Some(binary) = envoy_binary() else {
        eprintln!("Envoy not found: skipping");
        return;
    };
    let backend = EchoServer::start("httpbin").await;
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", port),
    );
    repo.commit("httpbin");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = common::httpbin_endpoints(dir.path(), backend.addr);
    let xds: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = serve(repo.path(), &endpoints, xds, admin);

    let envoy_admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let boot = tidegate::xds::bootstrap::bootstrap(&tidegate::xds::bootstrap::Options {
        r#ref: None,
        proxy: "httpbin-gateway.httpbin".into(),
        xds: xds.to_string(),
        delta: false,
        bind: Some("127.0.0.1".into()),
        admin: envoy_admin.to_string(),
        tls: None,
    })
    .unwrap();
    let envoy = Envoy::start(&binary, &serde_json::to_string(&boot).unwrap(), envoy_admin);
    let gateway: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ok = || async {
        match http_get(gateway, "httpbin.example.com", "/headers").await {
            Some(r) if r.status == 200 => Ok(()),
            other => Err(format!("{other:?}; envoy log: {}", envoy.log())),
        }
    };
    eventually("Envoy serving /headers", Duration::from_secs(20), ok).await;
    let before = eventually("Envoy in sync", Duration::from_secs(20), || {
        proxy_types(admin)
    })
    .await;

    // kill -9: no goodbye to anyone.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    for _ in 0..10 {
        let r = http_get(gateway, "httpbin.example.com", "/headers")
            .await
            .expect("Envoy still answers");
        assert_eq!(
            r.status, 200,
            "Envoy keeps the last config while tidegate is down"
        );
        let r = http_get(gateway, "httpbin.example.com", "/get")
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restart on the same address: Envoy reconnects, says what it has, gets nothing.
    let _server = serve(repo.path(), &endpoints, xds, admin);
    let after = eventually(
        "Envoy reconnected and in sync",
        Duration::from_secs(40),
        || proxy_types(admin),
    )
    .await;
    for t in ["CDS", "EDS", "LDS", "RDS"] {
        assert_eq!(
            after[t]["responses"], 0,
            "{t}: nothing may be resent after a restart: {after:#}"
        );
        assert_eq!(
            after[t]["acked_version"], before[t]["acked_version"],
            "{t}: same commit, same version"
        );
    }
    assert_eq!(
        http_get(gateway, "httpbin.example.com", "/headers")
            .await
            .unwrap()
            .status,
        200
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_over_1000_reconnects_and_a_client_that_never_reads() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use prost::Name;
    use tidegate::test_helpers::ads::{SotwClient, node};

    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080),
    );
    repo.commit("httpbin");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(&endpoints, "httpbin.httpbin:8000: [\"127.0.0.1:9\"]\n").unwrap();
    let xds: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = serve(repo.path(), &endpoints, xds, admin);
    let pid = server.0.id();
    eventually("server up", Duration::from_secs(20), || async {
        match http_get(admin, "localhost", "/readyz").await {
            Some(r) if r.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let cycle = || async {
        let mut c = SotwClient::connect(xds, node("httpbin-gateway.httpbin")).await;
        c.subscribe(&Cluster::type_url(), &[], "").await;
        assert!(c.recv(Duration::from_secs(5)).await.is_some());
    };
    for _ in 0..100 {
        cycle().await;
    }
    let warm = rss_kib(pid);
    for _ in 0..1000 {
        cycle().await;
    }
    let after_cycles = rss_kib(pid);

    // A client that subscribes and then never reads, while 50 commits change its routes:
    // its responses are held back by a small bounded queue, not piled up in memory.
    let stuck = SotwClient::connect(xds, node("httpbin-gateway.httpbin")).await;
    stuck
        .subscribe(&RouteConfiguration::type_url(), &["http.18080"], "")
        .await;
    for i in 0..50 {
        repo.write(
            "intents/httpbin.yaml",
            common::httpbin_intent("gateway-api", 18080)
                .replace("/headers", &format!("/headers-{i}")),
        );
        repo.commit(&format!("change {i}"));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_stuck = rss_kib(pid);
    drop(stuck);
    // Still healthy: a new client gets the latest routes.
    let mut c = SotwClient::connect(xds, node("httpbin-gateway.httpbin")).await;
    c.subscribe(&RouteConfiguration::type_url(), &["http.18080"], "")
        .await;
    assert!(c.recv(Duration::from_secs(5)).await.is_some());

    eprintln!(
        "RSS: warm {warm} KiB, after 1000 reconnects {after_cycles} KiB, after a stuck client and 50 commits {after_stuck} KiB"
    );
    assert!(
        after_cycles < warm + 8 * 1024,
        "1000 reconnects grew RSS from {warm} to {after_cycles} KiB"
    );
    assert!(
        after_stuck < after_cycles + 16 * 1024,
        "a client that never reads grew RSS from {after_cycles} to {after_stuck} KiB"
    );
}

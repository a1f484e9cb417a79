//! Load generator: a fleet of N simulated proxies against a real `tidegate serve` process.
//!
//! The server runs as its own process (the release binary beside this example), following
//! a generated repository, so its memory and CPU time are its own. This process opens N
//! ADS streams over loopback — one HTTP/2 connection each, as Envoy does — as distinct
//! proxies (node ids `sim-<i>`, replicas of the gateways), subscribes like Envoy (CDS and
//! LDS wildcard, then EDS and RDS by the names they announce), ACKs every response, and
//! records when each proxy ACKs a new RouteConfiguration version.
//!
//! Per fleet size it prints: the time to connect every proxy and ACK its first config, the
//! server's memory per idle stream (RSS growth / N), and for each round a one-route commit
//! to every proxy ACKed (commit → last ACK, and the per-proxy p50/p99), with the server CPU
//! seconds spent.
//!
//! ```sh
//! cargo build --release --bins --examples
//! target/release/examples/bench_fleet [--delta] [--rounds R] [--gateways M] [--routes K] N...
//! ```
//! Figures go in BENCHMARKS.md.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use prost::{Message, Name};
use tidegate::test_helpers::ads::{DeltaClient, SotwClient};
use tidegate::test_helpers::{TempRepo, free_port, http_get};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

struct Args {
    delta: bool,
    rounds: usize,
    gateways: usize,
    routes: usize,
    sizes: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        delta: false,
        rounds: 5,
        gateways: 1,
        routes: 100,
        sizes: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--delta" => a.delta = true,
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds R"),
            "--gateways" => {
                a.gateways = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--gateways M")
            }
            "--routes" => a.routes = it.next().and_then(|v| v.parse().ok()).expect("--routes K"),
            n => a.sizes.push(n.parse().expect("a fleet size")),
        }
    }
    if a.sizes.is_empty() {
        a.sizes = vec![100, 1000, 10_000];
    }
    a
}

/// K intents per gateway: one host and one route each. `round` changes one route of
/// intent 0 of every gateway, so every proxy gets a new RouteConfiguration.
fn intents(gateways: usize, routes: usize, round: usize) -> String {
    let mut docs = Vec::new();
    for g in 0..gateways {
        for i in 0..routes {
            let path = if i == 0 {
                format!("/api/v{round}")
            } else {
                "/api".to_owned()
            };
            docs.push(format!(
                "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: app{i}-gw{g}, namespace: team{}}}\nspec:\n  mode: gateway-api\n  hostnames: [app{i}.gw{g}.example.com]\n  gateway: {{name: edge{g}, namespace: ingress, port: 8080}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: app{}, port: 8080}}]\n",
                i % 10,
                i % 20
            ));
        }
    }
    docs.join("---\n")
}

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("tidegate"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} not found: cargo build --release --bins --examples",
        bin.display()
    );
    bin
}

/// Resident memory (KiB) and CPU seconds (user + system) of a process.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the command name; in
    // clock ticks, 100 per second on Linux.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    (rss, ticks as f64 / 100.0)
}

/// (proxy index, RDS version it ACKed, when).
type Event = (usize, String, Instant);

fn node(i: usize, gateways: usize) -> Node {
    Node {
        id: format!("sim-{i}"),
        cluster: format!("edge{}.ingress", i % gateways),
        ..Node::default()
    }
}

async fn sotw_proxy(
    i: usize,
    gateways: usize,
    xds: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
    permit: OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let mut c = SotwClient::connect(xds, node(i, gateways)).await;
    c.subscribe(&Cluster::type_url(), &[], "").await;
    c.subscribe(&Listener::type_url(), &[], "").await;
    let (mut eds, mut rds): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    while let Some(r) = c.recv(Duration::from_secs(24 * 3600)).await {
        let t = r.type_url.clone();
        // Like Envoy: clusters and listeners name what to ask EDS and RDS for.
        let (subscribe, names) = if t == Cluster::type_url() {
            let n: Vec<String> = r
                .resources
                .iter()
                .filter_map(|a| Cluster::decode(a.value.as_slice()).ok())
                .filter(|c| c.eds_cluster_config.is_some())
                .map(|c| c.name)
                .collect();
            (n != eds, {
                eds = n;
                Vec::new()
            })
        } else if t == Listener::type_url() {
            let n: Vec<String> = r
                .resources
                .iter()
                .filter_map(|a| Listener::decode(a.value.as_slice()).ok())
                .map(|l| l.name)
                .collect();
            (n != rds, {
                rds = n;
                Vec::new()
            })
        } else if t == ClusterLoadAssignment::type_url() {
            (false, eds.clone())
        } else {
            (false, rds.clone())
        };
        c.ack(&r, &names.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        if t == RouteConfiguration::type_url() {
            let _ = events.send((i, r.version_info.clone(), Instant::now()));
            permit.take();
        }
        if subscribe {
            if t == Cluster::type_url() {
                let n: Vec<&str> = eds.iter().map(String::as_str).collect();
                c.subscribe(&ClusterLoadAssignment::type_url(), &n, "")
                    .await;
            } else {
                let n: Vec<&str> = rds.iter().map(String::as_str).collect();
                c.subscribe(&RouteConfiguration::type_url(), &n, "").await;
            }
        }
    }
}

async fn delta_proxy(
    i: usize,
    gateways: usize,
    xds: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
    permit: OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let mut c = DeltaClient::connect(xds, node(i, gateways)).await;
    for t in [Cluster::type_url(), Listener::type_url()] {
        c.send(DeltaDiscoveryRequest {
            type_url: t,
            ..DeltaDiscoveryRequest::default()
        })
        .await;
    }
    let (mut eds, mut rds): (HashSet<String>, HashSet<String>) = (HashSet::new(), HashSet::new());
    while let Some(r) = c.recv(Duration::from_secs(24 * 3600)).await {
        let t = r.type_url.clone();
        c.ack(&r).await;
        let (known, follow) = if t == Cluster::type_url() {
            (&mut eds, ClusterLoadAssignment::type_url())
        } else if t == Listener::type_url() {
            (&mut rds, RouteConfiguration::type_url())
        } else {
            if t == RouteConfiguration::type_url() {
                let _ = events.send((i, r.system_version_info.clone(), Instant::now()));
                permit.take();
            }
            continue;
        };
        let new: Vec<String> = r
            .resources
            .iter()
            .map(|x| x.name.clone())
            .filter(|n| known.insert(n.clone()))
            .collect();
        if !new.is_empty() {
            c.send(DeltaDiscoveryRequest {
                type_url: follow,
                resource_names_subscribe: new,
                ..DeltaDiscoveryRequest::default()
            })
            .await;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Server {
    child: Child,
    admin: SocketAddr,
    xds: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(repo: &std::path::Path, endpoints: &std::path::Path) -> Server {
    let xds: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // BENCH_SERVER_WRAPPER runs the server under a profiler, e.g. "heaptrack -o /tmp/ht".
    let wrapper = std::env::var("BENCH_SERVER_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(w) => {
            let mut c = Command::new(w);
            c.args(words).arg(server_binary());
            c
        }
        None => Command::new(server_binary()),
    };
    let child = cmd
        .args(["serve", "--repo"])
        .arg(repo)
        .arg("--endpoints")
        .arg(endpoints)
        .args(["--xds", &xds.to_string(), "--admin", &admin.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tidegate serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(admin, "localhost", "/readyz")
        .await
        .is_none_or(|r| r.status != 200)
    {
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, admin, xds }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    println!(
        "protocol: {}, gateways: {}, routes per gateway: {}, rounds: {}\n",
        if a.delta { "delta" } else { "sotw" },
        a.gateways,
        a.routes,
        a.rounds
    );
    println!(
        "| proxies | connect all | server RSS idle | per stream | commit → all ACKed (median, max) | per-proxy p50 / p99 | server CPU s per push |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &a.sizes {
        let mut repo = TempRepo::new();
        repo.write("intents/all.yaml", intents(a.gateways, a.routes, 0));
        repo.commit("fleet");
        let dir = tempfile::tempdir().unwrap();
        let endpoints = dir.path().join("endpoints.yaml");
        let eps: String = (0..20)
            .flat_map(|s| {
                (0..10)
                    .map(move |t| format!("app{s}.team{t}:8080: [\"127.0.0.1:{}\"]\n", 20000 + s))
            })
            .collect();
        std::fs::write(&endpoints, eps).unwrap();
        let server = start_server(repo.path(), &endpoints).await;
        let pid = server.child.id();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss0, _) = usage(pid);

        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let gate = Arc::new(Semaphore::new(256));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            let (tx, gate, xds, delta, gws) =
                (tx.clone(), gate.clone(), server.xds, a.delta, a.gateways);
            tasks.push(tokio::spawn(async move {
                // Bound the connection storm (the listen backlog), not the fleet: a permit
                // is held until the proxy has its first config.
                let permit = gate.acquire_owned().await.unwrap();
                if delta {
                    delta_proxy(i, gws, xds, tx, permit).await
                } else {
                    sotw_proxy(i, gws, xds, tx, permit).await
                }
            }));
        }
        drop(tx);
        // Connected = has ACKed a first RouteConfiguration.
        let mut version: Vec<Option<String>> = vec![None; n];
        let mut connected = 0;
        while connected < n {
            let (i, v, _) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
                .await
                .expect("every proxy connects within 2 minutes")
                .expect("events");
            if version[i].replace(v).is_none() {
                connected += 1;
            }
        }
        let connect_all = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss_n, _) = usage(pid);
        let per_stream = (rss_n.saturating_sub(rss0)) as f64 / n as f64;

        let mut totals = Vec::new();
        let mut per_proxy = Vec::new();
        let mut cpu = Vec::new();
        for round in 1..=a.rounds {
            // Drain stragglers of the previous round.
            while let Ok((i, v, _)) = rx.try_recv() {
                version[i] = Some(v);
            }
            let (_, cpu0) = usage(pid);
            repo.write("intents/all.yaml", intents(a.gateways, a.routes, round));
            let t = Instant::now();
            repo.commit(&format!("round {round}"));
            let mut done = vec![false; n];
            let mut left = n;
            let mut times = Vec::with_capacity(n);
            while left > 0 {
                let (i, v, at) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
                    .await
                    .expect("every proxy ACKs within 2 minutes")
                    .expect("events");
                if version[i].as_deref() != Some(v.as_str()) {
                    version[i] = Some(v);
                    if !done[i] {
                        done[i] = true;
                        left -= 1;
                        times.push(at.duration_since(t).as_secs_f64() * 1e3);
                    }
                }
            }
            totals.push(t.elapsed().as_secs_f64() * 1e3);
            // Let the server finish the ACK bookkeeping before reading its CPU time.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (_, cpu1) = usage(pid);
            cpu.push(cpu1 - cpu0);
            times.sort_by(f64::total_cmp);
            per_proxy.push((percentile(&times, 0.5), percentile(&times, 0.99)));
        }
        let mut sorted = totals.clone();
        sorted.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        per_proxy.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (p50, p99) = per_proxy[per_proxy.len() / 2];
        println!(
            "| {n} | {:.2} s | {:.1} MiB | {:.1} KiB | {:.0} ms, {:.0} ms | {:.0} / {:.0} ms | {:.2} |",
            connect_all.as_secs_f64(),
            rss_n as f64 / 1024.0,
            per_stream,
            percentile(&sorted, 0.5),
            sorted.last().copied().unwrap_or_default(),
            p50,
            p99,
            percentile(&cpu, 0.5),
        );
        let _ = server.admin;
        for t in tasks {
            t.abort();
        }
        drop(server);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

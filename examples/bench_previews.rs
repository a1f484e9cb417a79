//! Benchmark of preview branches (`serve --preview-branches`, issue 18).
//!
//! `rss`: the resident memory of the real `tidegate serve` process (the release binary beside
//! this example) following a 10,000-intent repository (bench_scale's shape: 10 intents per
//! file, 100 gateways) with 0, 1 and 20 preview branches, each changing one intent of its own
//! file. A fresh process per count; once `/status` shows main and every preview served, RSS
//! is read a few times. Then one simulated proxy per ref connects (a preview's proxy names
//! the gateway its branch changed, so that config is the preview's own encoding) and RSS is
//! read again.
//!
//! `ack`: an in-process server with N simulated proxies on a preview branch and N on main,
//! all of one gateway. Rounds alternate: a route change committed on the preview branch,
//! timed until every preview proxy ACKed the new RouteConfiguration (the main proxies must
//! receive nothing), then the same on main (the preview proxies must receive nothing).
//!
//! `share`: the same repository and previews, the server in this process: how many of each
//! preview's gateway configs are main's very `ProxySnapshot` (shared, not encoded again),
//! and how long until every ref is served.
//!
//! ```sh
//! cargo build --release --bins --examples
//! cargo run --release --example bench_previews -- rss [--intents N] [PREVIEWS...]
//! cargo run --release --example bench_previews -- ack [--rounds R] [N...]
//! cargo run --release --example bench_previews -- share [--intents N] [PREVIEWS...]
//! ```
//! Prints Markdown tables; figures go in BENCHMARKS.md.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::{Message, Name};
use tidegate::test_helpers::ads::SotwClient;
use tidegate::test_helpers::{TempRepo, free_port, http_get};
use tidegate::xds::type_url::TypeUrl;

/// A simulated proxy's node: gateway `proxy` (`NAME.NAMESPACE`), served `r#ref` (none: the
/// followed branch) as `bootstrap --ref` asks.
fn node_at(id: &str, proxy: &str, r#ref: Option<&str>) -> Node {
    Node {
        id: id.to_owned(),
        cluster: proxy.to_owned(),
        metadata: r#ref.map(|r| Struct {
            fields: [(
                tidegate::xds::server::REF_METADATA_KEY.to_owned(),
                Value {
                    kind: Some(Kind::StringValue(r.to_owned())),
                },
            )]
            .into(),
        }),
        ..Node::default()
    }
}

/// What the proxies of one group saw: the RDS version each ACKed, and how many responses
/// (of any type) the group received.
#[derive(Default)]
struct Group {
    acked: Mutex<HashMap<usize, String>>,
    responses: AtomicUsize,
}

impl Group {
    fn all_acked(&self, n: usize, version: &str) -> bool {
        let a = self.acked.lock().unwrap();
        a.len() == n && a.values().all(|v| v == version)
    }
}

/// A proxy that subscribes like Envoy (CDS and LDS wildcard, then EDS and RDS by the names
/// they announce) and ACKs everything.
async fn proxy(id: usize, xds: SocketAddr, node: Node, group: Arc<Group>) {
    let mut c = SotwClient::connect(xds, node).await;
    c.subscribe(&Cluster::type_url(), &[], "").await;
    c.subscribe(&Listener::type_url(), &[], "").await;
    let (mut eds, mut rds): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    while let Some(r) = c.recv(Duration::from_secs(24 * 3600)).await {
        group.responses.fetch_add(1, Ordering::SeqCst);
        let t = r.type_url.clone();
        let (follow, names) = if t == Cluster::type_url() {
            let n: Vec<String> = r
                .resources
                .iter()
                .filter_map(|a| Cluster::decode(a.value.as_slice()).ok())
                .filter(|c| c.eds_cluster_config.is_some())
                .map(|c| c.name)
                .collect();
            let changed = n != eds;
            eds = n;
            (changed, Vec::new())
        } else if t == Listener::type_url() {
            let n: Vec<String> = r
                .resources
                .iter()
                .filter_map(|a| Listener::decode(a.value.as_slice()).ok())
                .map(|l| l.name)
                .collect();
            let changed = n != rds;
            rds = n;
            (changed, Vec::new())
        } else if t == ClusterLoadAssignment::type_url() {
            (false, eds.clone())
        } else {
            (false, rds.clone())
        };
        c.ack(&r, &names.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        if t == RouteConfiguration::type_url() {
            group
                .acked
                .lock()
                .unwrap()
                .insert(id, r.version_info.clone());
        }
        if follow {
            let (t, n) = if t == Cluster::type_url() {
                (ClusterLoadAssignment::type_url(), &eds)
            } else {
                (RouteConfiguration::type_url(), &rds)
            };
            let n: Vec<&str> = n.iter().map(String::as_str).collect();
            c.subscribe(&t, &n, "").await;
        }
    }
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// rss

/// bench_scale's intent: `app{i}` in namespace `team{i % 50}` on gateway `edge{i % 100}`.
/// `path` is what a preview branch changes.
fn intent(i: usize, gateways: usize, path: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: app{i}, namespace: team{}}}\nspec:\n  mode: gateway-api\n  hostnames: [app{i}.example.com]\n  gateway: {{name: edge{}, namespace: ingress, port: 80}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: app{i}, port: 8080}}]\n",
        i % 50,
        i % gateways
    )
}

/// File `f` (intents `10f .. 10f+9`); `changed`: intent `10f` routes `/preview-f` instead of
/// `/api`.
fn file(f: usize, n: usize, gateways: usize, changed: bool) -> String {
    (f * 10..((f + 1) * 10).min(n))
        .map(|i| {
            let path = if changed && i == f * 10 {
                format!("/preview-{f}")
            } else {
                "/api".to_owned()
            };
            intent(i, gateways, &path)
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The gateway a preview's change is on, as a proxy id.
fn changed_gateway(p: usize, gateways: usize) -> String {
    format!("edge{}.ingress", (p * 10) % gateways)
}

fn preview_name(p: usize) -> String {
    format!("preview/pr-{p:02}")
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

/// A `/proc/PID/status` memory field in KiB: `VmRSS` (resident now), `VmHWM` (peak).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// RSS read `n` times 300 ms apart, and their median (all reads are printed: the
/// allocator may return memory lazily after the startup build).
fn steady_rss(pid: u32, n: usize) -> (u64, Vec<u64>) {
    let mut reads = Vec::new();
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(300));
        reads.push(status_kib(pid, "VmRSS"));
    }
    let mut sorted = reads.clone();
    sorted.sort();
    (sorted[sorted.len() / 2], reads)
}

struct Server {
    child: Child,
    xds: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tidegate serve` on port 0 for both listeners: the bound addresses are read from its
/// first two lines (`xds: ADDR`, `admin: http://ADDR/status`).
fn start_server(repo: &Path) -> Server {
    let mut child = Command::new(server_binary())
        .args(["serve", "--repo"])
        .arg(repo)
        .args([
            "--branch",
            "main",
            "--preview-branches",
            "preview/*",
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tidegate serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = |prefix: &str| -> String {
        let l = lines.next().expect("serve's address line").unwrap();
        l.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix}…, got {l}"))
            .trim_end_matches("/status")
            .to_owned()
    };
    let xds = next("xds: ").parse().unwrap();
    let admin = next("admin: http://").parse().unwrap();
    // The rest of stdout is not read: keep the pipe from filling by draining it.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, xds, admin }
}

/// Waits until `/status` shows main serving `main` and `previews` previews serving their
/// heads (and, if given, that many proxies connected per ref). `/status` gives no head for
/// the followed branch, so its commit is compared with ours.
async fn wait_all_served(admin: SocketAddr, main: &str, previews: usize, proxies: Option<usize>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(r) = http_get(admin, "localhost", "/status").await
            && let Ok(st) = serde_json::from_str::<serde_json::Value>(&r.body)
            && let Some(refs) = st["refs"].as_array()
        {
            let ok = refs.len() == previews + 1
                && refs.iter().all(|r| {
                    r["state"] == "serving"
                        && if r["preview"] == true {
                            !r["served"].is_null() && r["served"] == r["head"]
                        } else {
                            r["served"] == main
                        }
                        && proxies.is_none_or(|n| r["proxies"].as_u64() == Some(n as u64))
                });
            if ok {
                return;
            }
        }
        assert!(Instant::now() < deadline, "not every ref served in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--intents N` and preview counts (default 0, 1, 20), sorted.
fn rss_args(args: &[String]) -> (usize, Vec<usize>) {
    let mut n: usize = 10_000;
    let mut counts = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--intents" => n = it.next().and_then(|v| v.parse().ok()).expect("--intents N"),
            c => counts.push(c.parse::<usize>().expect("a number of previews")),
        }
    }
    if counts.is_empty() {
        counts = vec![0, 1, 20];
    }
    counts.sort();
    assert!(
        counts.iter().all(|&c| c <= n.div_ceil(10).min(20)),
        "at most 20 previews (--max-previews), one file each"
    );
    (n, counts)
}

/// The repository of `n` intents on main, with preview branches added on demand.
struct PreviewRepo {
    repo: TempRepo,
    n: usize,
    gateways: usize,
    main: String,
    made: usize,
}

impl PreviewRepo {
    fn new(n: usize) -> Self {
        let gateways = (n / 100).max(1);
        let files = n.div_ceil(10);
        let mut repo = TempRepo::new();
        for f in 0..files {
            repo.write(&format!("intents/f{f}.yaml"), file(f, n, gateways, false));
        }
        let main = repo.commit("intents");
        println!("{n} intents in {files} files, {gateways} gateways\n");
        Self {
            repo,
            n,
            gateways,
            main,
            made: 0,
        }
    }

    /// Adds preview branches until there are `count`; each changes one intent of its own
    /// file. Returns every preview's (branch, head).
    fn previews(&mut self, count: usize) -> Vec<(String, String)> {
        let r = &mut self.repo;
        while self.made < count {
            let p = self.made;
            r.checkout(&preview_name(p));
            r.write(
                &format!("intents/f{p}.yaml"),
                file(p, self.n, self.gateways, true),
            );
            r.commit(&format!("preview {p}: one intent changed"));
            r.checkout("main");
            self.made += 1;
        }
        (0..count)
            .map(|p| {
                let name = preview_name(p);
                let head = r
                    .repo()
                    .find_branch(&name, git2::BranchType::Local)
                    .and_then(|b| b.get().peel_to_commit())
                    .expect("preview branch")
                    .id()
                    .to_string();
                (name, head)
            })
            .collect()
    }
}

async fn rss(args: &[String]) {
    let (n, counts) = rss_args(args);
    let mut repo = PreviewRepo::new(n);
    let (gateways, main) = (repo.gateways, repo.main.clone());
    println!(
        "| previews | RSS, refs served | RSS reads (MiB) | peak RSS while starting | + 1 proxy per ref (acked) | reads (MiB) |"
    );
    println!("|---:|---:|---|---:|---:|---|");
    let mut rows = Vec::new();
    for &count in &counts {
        // Branches are added, never removed: each count is a fresh server on a repository
        // with exactly `count` preview branches.
        repo.previews(count);
        let server = start_server(repo.repo.path());
        let pid = server.child.id();
        let t = Instant::now();
        wait_all_served(server.admin, &main, count, None).await;
        let ready = t.elapsed();
        let (idle, idle_reads) = steady_rss(pid, 8);
        let peak = status_kib(pid, "VmHWM");

        let mut clients = Vec::new();
        let groups: Vec<Arc<Group>> = (0..=count).map(|_| Arc::default()).collect();
        for (r, g) in groups.iter().enumerate() {
            let (gw, r#ref) = if r == 0 {
                ("edge0.ingress".to_owned(), None)
            } else {
                (changed_gateway(r - 1, gateways), Some(preview_name(r - 1)))
            };
            let node = node_at(&format!("sim-{r}"), &gw, r#ref.as_deref());
            clients.push(tokio::spawn(proxy(0, server.xds, node, g.clone())));
        }
        wait_until(
            "every ref's proxy ACKed routes",
            Duration::from_secs(120),
            || groups.iter().all(|g| !g.acked.lock().unwrap().is_empty()),
        )
        .await;
        wait_all_served(server.admin, &main, count, Some(1)).await;
        let (connected, connected_reads) = steady_rss(pid, 8);
        let mib = |k: u64| k as f64 / 1024.0;
        let list = |r: &[u64]| {
            r.iter()
                .map(|k| format!("{:.1}", mib(*k)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "| {count} | {:.1} MiB | {} | {:.1} MiB | {:.1} MiB | {} |",
            mib(idle),
            list(&idle_reads),
            mib(peak),
            mib(connected),
            list(&connected_reads)
        );
        eprintln!("  {count} previews: all served {ready:.1?} after start");
        rows.push((count, idle, connected));
        for c in clients {
            c.abort();
        }
        drop(server);
    }
    let Some(&(_, base, base_c)) = rows.iter().find(|r| r.0 == 0) else {
        return;
    };
    println!(
        "\n| previews | per preview (refs served) | % of main | per preview (+1 proxy per ref) | % of main |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &(count, idle, connected) in rows.iter().filter(|r| r.0 > 0) {
        let per = (idle as f64 - base as f64) / count as f64;
        let per_c = (connected as f64 - base_c as f64) / count as f64;
        println!(
            "| {count} | {:.2} MiB | {:.1} % | {:.2} MiB | {:.1} % |",
            per / 1024.0,
            100.0 * per / base as f64,
            per_c / 1024.0,
            100.0 * per_c / base_c as f64
        );
    }
}

// ---------------------------------------------------------------------------------------
// ack

const GATEWAY: &str = "httpbin-gateway.httpbin";
const PREVIEW: &str = "preview/change";

fn small_intent(port: u16, branch: &str, round: usize) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: httpbin, namespace: httpbin}}\nspec:\n  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {{name: httpbin-gateway, port: {port}}}\n  rules:\n  - matches:\n    - path: {{type: PathPrefix, value: /headers}}\n    - path: {{type: PathPrefix, value: /{branch}-{round}}}\n    backendRefs: [{{name: httpbin, port: 8000}}]\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct AckRun {
    preview: Vec<Duration>,
    main: Vec<Duration>,
    /// Responses the other group received during a preview (main) round.
    main_sent_on_preview: usize,
    preview_sent_on_main: usize,
}

async fn ack_run(n: usize, rounds: usize) -> AckRun {
    let port = free_port();
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", small_intent(port, "main", 0));
    let first = repo.commit("round 0");
    repo.checkout(PREVIEW);
    repo.checkout("main");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(&endpoints, "httpbin.httpbin:8000: [\"127.0.0.1:9\"]\n").unwrap();
    let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
    opts.endpoints = Some(endpoints);
    opts.branch = Some("main".into());
    opts.preview_branches = Some("preview/*".into());
    let xds_l = tidegate::app::listen("127.0.0.1:0").await.unwrap();
    let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tidegate::app::start(opts, xds_l, admin_l).await.unwrap();
    let wait = Duration::from_secs(30);
    server.wait_served(&first, wait).await.unwrap();
    server
        .wait_preview_served(PREVIEW, &first, wait)
        .await
        .unwrap();

    let (main, preview) = (Arc::<Group>::default(), Arc::<Group>::default());
    let mut clients = Vec::new();
    for i in 0..n {
        let node = node_at(&format!("{GATEWAY}~main-{i}"), GATEWAY, None);
        clients.push(tokio::spawn(proxy(i, server.xds, node, main.clone())));
        let node = node_at(&format!("{GATEWAY}~preview-{i}"), GATEWAY, Some(PREVIEW));
        clients.push(tokio::spawn(proxy(i, server.xds, node, preview.clone())));
    }
    let route_version = |s: &tidegate::xds::snapshot::Snapshot, r: Option<&str>| {
        s.proxy_at(r, GATEWAY, &Default::default())
            .of(TypeUrl::Route)
            .version
            .clone()
    };
    let s = server.current().await;
    let (vm, vp) = (route_version(&s, None), route_version(&s, Some(PREVIEW)));
    wait_until("first config ACKed", Duration::from_secs(120), || {
        main.all_acked(n, &vm) && preview.all_acked(n, &vp)
    })
    .await;

    let mut out = AckRun {
        preview: Vec::new(),
        main: Vec::new(),
        main_sent_on_preview: 0,
        preview_sent_on_main: 0,
    };
    // Responses the other group gets are counted from one commit to the next (and after
    // the last one, for half a second): a late push would be counted too.
    let mut pending: Option<(bool, &Arc<Group>, usize)> = None;
    let settle = |out: &mut AckRun, pending: Option<(bool, &Arc<Group>, usize)>| {
        if let Some((was_preview, other, before)) = pending {
            let got = other.responses.load(Ordering::SeqCst) - before;
            if was_preview {
                out.main_sent_on_preview += got;
            } else {
                out.preview_sent_on_main += got;
            }
        }
    };
    for round in 1..=rounds {
        for (branch, to, other) in [(PREVIEW, &preview, &main), ("main", &main, &preview)] {
            repo.checkout(branch);
            repo.write(
                "intents/httpbin.yaml",
                small_intent(port, branch.trim_start_matches("preview/"), round),
            );
            settle(&mut out, pending.take());
            let r#ref = (branch != "main").then_some(branch);
            pending = Some((
                r#ref.is_some(),
                other,
                other.responses.load(Ordering::SeqCst),
            ));
            let start = Instant::now();
            let sha = repo.commit(&format!("{branch} round {round}"));
            match r#ref {
                Some(b) => server.wait_preview_served(b, &sha, wait).await.unwrap(),
                None => server.wait_served(&sha, wait).await.unwrap(),
            }
            let v = route_version(&*server.current().await, r#ref);
            wait_until("the branch's proxies ACKed", wait, || to.all_acked(n, &v)).await;
            let took = start.elapsed();
            if r#ref.is_some() {
                out.preview.push(took);
            } else {
                out.main.push(took);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(&mut out, pending.take());
    repo.checkout("main");
    for c in clients {
        c.abort();
    }
    server.stop().await;
    out.preview.sort();
    out.main.sort();
    out
}

async fn ack(args: &[String]) {
    let mut rounds = 20;
    let mut sizes = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds R"),
            s => sizes.push(s.parse::<usize>().expect("a number of proxies per ref")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![100, 1000];
    }
    println!(
        "| proxies per ref | commits per ref | preview commit → preview proxies ACKed p50 / p99 / max | main commit → main proxies ACKed p50 / p99 / max | preview / main (p50) | responses to main proxies on preview commits | to preview proxies on main commits |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for n in sizes {
        let r = ack_run(n, rounds).await;
        let (p, m) = (&r.preview, &r.main);
        println!(
            "| {n} | {rounds} | {:.1} / {:.1} / {:.1} ms | {:.1} / {:.1} / {:.1} ms | {:.2} | {} | {} |",
            ms(percentile(p, 0.5)),
            ms(percentile(p, 0.99)),
            ms(*p.last().unwrap()),
            ms(percentile(m, 0.5)),
            ms(percentile(m, 0.99)),
            ms(*m.last().unwrap()),
            ms(percentile(p, 0.5)) / ms(percentile(m, 0.5)),
            r.main_sent_on_preview,
            r.preview_sent_on_main,
        );
    }
}

// ---------------------------------------------------------------------------------------
// share

async fn share(args: &[String]) {
    let (n, counts) = rss_args(args);
    let mut repo = PreviewRepo::new(n);
    println!(
        "| previews | main and every preview served after | gateway configs shared with main, per preview |"
    );
    println!("|---:|---:|---|");
    for &count in &counts {
        let previews = repo.previews(count);
        let mut opts = tidegate::app::ServeOptions::new(repo.repo.path().to_string_lossy());
        opts.branch = Some("main".into());
        opts.preview_branches = Some("preview/*".into());
        let xds_l = tidegate::app::listen("127.0.0.1:0").await.unwrap();
        let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let t = Instant::now();
        let server = tidegate::app::start(opts, xds_l, admin_l).await.unwrap();
        let wait = Duration::from_secs(300);
        server.wait_served(&repo.main, wait).await.unwrap();
        for (b, sha) in &previews {
            server.wait_preview_served(b, sha, wait).await.unwrap();
        }
        let took = t.elapsed();
        let s = server.current().await;
        let gateways: Vec<String> = s.proxy_ids().cloned().collect();
        let mut shared: Vec<usize> = previews
            .iter()
            .map(|(b, _)| {
                gateways
                    .iter()
                    .filter(|g| {
                        Arc::ptr_eq(
                            &s.proxy(g, &Default::default()),
                            &s.proxy_at(Some(b), g, &Default::default()),
                        )
                    })
                    .count()
            })
            .collect();
        shared.sort();
        shared.dedup();
        drop(s);
        server.stop().await;
        println!(
            "| {count} | {:.2} s | {} |",
            took.as_secs_f64(),
            if shared.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{} of {}",
                    shared
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    gateways.len()
                )
            }
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("rss") => rss(&args[1..]).await,
        Some("ack") => ack(&args[1..]).await,
        Some("share") => share(&args[1..]).await,
        _ => eprintln!(
            "usage: bench_previews rss|share [--intents N] [PREVIEWS...] | ack [--rounds R] [N...]"
        ),
    }
}

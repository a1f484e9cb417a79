//! Gateway API conformance for the mesh (GAMMA): the `Mesh*` tests of `cases-l4-mesh.yaml`
//! (`../shared/conformance`, or `$TIDEGATE_CONFORMANCE_DIR`) through tidegate and a real
//! Envoy waypoint, without a cluster.
//!
//! As tests/conformance_l4.rs: one server follows one repository; the mesh namespaces and a
//! waypoint are `resources/base.yaml`; each test's routes are `resources/test.yaml` in a new
//! commit. The echo pods (echo-v1, echo-v2) are Istio-echo-like servers on loopback ports
//! the OS picks; the Services (echo, echo-v1, echo-v2) get VIPs and those pods in the
//! endpoints file. The client pod is an HBONE client with the pod's SPIFFE identity
//! (`spiffe://cluster.local/ns/<ns>/sa/default`, from a mesh CA handed to `serve --certs`):
//! what ztunnel would send for it, one CONNECT to `<VIP>:<port>` per request at the waypoint
//! Envoy, and inside it HTTP/1.1 or an h2c gRPC call. The checks are the suite's mesh
//! checks: status, the answering pod's Hostname, the request headers the backend saw, and
//! the response headers.
//!
//! The result is a table per profile (`target/conformance-mesh.md`). The test fails when a
//! Core test fails, when an Extended test fails without being listed in [`KNOWN_GAPS`], or
//! when a listed test passes.

mod common;

#[allow(dead_code)]
#[path = "conformance/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "conformance/http1.rs"]
mod http1;
#[allow(dead_code)]
#[path = "conformance/l4_data.rs"]
mod l4_data;
#[path = "conformance/mesh_client.rs"]
mod mesh_client;
#[path = "conformance/mesh_echo.rs"]
mod mesh_echo;
#[allow(dead_code)]
#[path = "conformance/outcome.rs"]
mod outcome;
#[allow(dead_code)]
#[path = "conformance/status.rs"]
mod status;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::test_helpers::{Envoy, TempRepo, free_port};
use tidegate::xds::bootstrap::{Options, bootstrap};
use tidegate::xds::emit::Variant;

use l4_data::{L4Test, s};
use mesh_client::{MeshResponse, Workload};
use outcome::{
    Row, committed, deployment_of, distribution_problems, envoy_complaint, labels_match, lookup,
    pod_name, shorten, verdict, yaml_of,
};
use status::Check;

/// Extended tests expected to fail, each with why. A listed test that passes fails the run
/// until it is removed from here.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// Where the harness adapts the suite's mesh to running without a cluster, and why.
const ADAPTATIONS: &[(&str, &str)] = &[
    (
        "a waypoint Gateway `waypoint` (class istio-waypoint, listener 15008/HBONE) in gateway-conformance-mesh, and that namespace labelled `istio.io/use-waypoint: waypoint`",
        "the suite's mesh brings its own data plane; tidegate's is the waypoint (ambient mode)",
    ),
    (
        "the client pod is an HBONE client (HTTP/2 CONNECT over mutual TLS, one CONNECT per request to `<Service VIP>:<port>`) with the pod's SPIFFE certificate `spiffe://cluster.local/ns/<ns>/sa/default` from a mesh CA",
        "what ztunnel sends for a pod in ambient mode; there is no ztunnel without a cluster",
    ),
    (
        "a request to a pod IP (MeshFrontend's second case) goes straight to that pod, not through the waypoint",
        "ztunnel sends pod-addressed traffic to the pod; a Service's waypoint serves Service VIPs only",
    ),
    (
        "Services get VIPs 10.96.0.10, .11, … in the endpoints file; pods are `<deployment>-6b7f9c-p0`, one per Deployment, answering HTTP/1.1, h2c and gRPC on one loopback port for container ports 8080 and 7070 (the TLS 8443 and TCP 9090 ports, unused by the cases, are left out)",
        "no cluster to hold Services and pods",
    ),
    (
        "the backends answer in the Istio echo text format (Hostname=, RequestHeader=Name:value, …); gRPC `proto.EchoTestService/Echo` carries it as the response message; gRPC OK is reported as 200",
        "what the suite's mesh checks read",
    ),
    (
        "the waypoint listens on a loopback address where port 15008 is free",
        "HBONE's port is fixed",
    ),
    (
        "distributions: as written (samples, tolerance), at most 3 attempts (the data: up to 10), 10 requests at a time",
        "CI time; a correct implementation passes the first",
    ),
];

/// How long a failing case is retried after a config change (the suite also waits for
/// eventual consistency).
const SETTLE: Duration = Duration::from_secs(5);
const MAX_DISTRIBUTION_ATTEMPTS: u64 = 3;
const CONCURRENCY: usize = 10;
const KNOWN_EXPECT: &[&str] = &[
    "status",
    "backend_pod_prefix",
    "backend_request",
    "response_headers",
    "response_absent_headers",
    "distribution",
    "distribution_tolerance",
    "distribution_attempts",
    "note",
];
const KNOWN_REQUEST: &[&str] = &[
    "protocol",
    "from",
    "host",
    "url",
    "to_service",
    "to_pod",
    "method",
    "headers",
    "note",
    "follow_redirects",
    "samples",
    "batch",
];
const PROFILES: &[&str] = &["MESH-HTTP", "MESH-GRPC"];
const MESH_NS: &str = "gateway-conformance-mesh";
const WAYPOINT: &str = "waypoint";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_conformance_mesh() {
    let Some((dir, envoy_bin)) = common::conformance_inputs("base-manifests-l4-mesh.yaml") else {
        return;
    };
    let started = Instant::now();
    let tests: Vec<L4Test> = l4_data::load(&dir)
        .into_iter()
        .filter(|t| t.short_name.starts_with("Mesh"))
        .collect();
    assert!(!tests.is_empty(), "no Mesh* test in cases-l4-mesh.yaml");
    let base = data::parse_docs(
        &std::fs::read_to_string(dir.join("base-manifests-l4-mesh.yaml"))
            .expect("base-manifests-l4-mesh.yaml"),
        "base-manifests-l4-mesh.yaml",
    );
    let only = std::env::var("TIDEGATE_MESH_ONLY").ok();
    let run: Vec<&L4Test> = tests
        .iter()
        .filter(|t| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n == t.short_name))
        })
        .collect();
    let mut h = Harness::start(&base, envoy_bin).await;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for t in &run {
        let t0 = Instant::now();
        let outcomes = h.run_test(t).await;
        let row = Row::of(t.core, &outcomes, "");
        println!(
            "{}: {}/{} in {:.1?}",
            t.short_name,
            row.passed,
            row.total,
            t0.elapsed()
        );
        for (id, c) in &outcomes {
            if let Check::Fail(e) = c {
                println!("FAIL {} {id}: {e}", t.short_name);
            }
        }
        rows.insert(t.short_name.clone(), row);
    }
    drop(h);

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::manifest_dir().join("target"));
    let inventory = l4_data::inventory(&dir);
    let report = report(&rows, &inventory, started.elapsed());
    println!("{report}");
    std::fs::create_dir_all(&target).expect("create target dir");
    std::fs::write(target.join("conformance-mesh.md"), &report).expect("write report");
    if only.is_none() {
        let problems = verdict(&rows, KNOWN_GAPS);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

// === the report and the verdict ===

fn table(
    title: &str,
    tests: &[&l4_data::Inventory],
    rows: &BTreeMap<String, Row>,
    out: &mut String,
) {
    let mut body = String::new();
    let mut counts = [[0usize; 3]; 2]; // [core, extended] × [passed, total, not run]
    for inv in tests {
        let k = usize::from(!inv.core);
        counts[k][1] += 1;
        let (p, t, notes) = match rows.get(&inv.short_name) {
            Some(r) => {
                counts[k][0] += usize::from(r.passes());
                let mut notes = Vec::new();
                if let Some(w) = lookup(KNOWN_GAPS, &inv.short_name) {
                    notes.push(format!("known gap: {w}"));
                }
                if let Some(f) = &r.first_failure {
                    notes.push(shorten(f, 140));
                }
                (r.passed, r.total, notes.join("; "))
            }
            None => {
                counts[k][2] += 1;
                (0, 0, "not run".to_owned())
            }
        };
        let _ = writeln!(
            body,
            "| {} | {} | {p}/{t} | {notes} |",
            inv.short_name,
            if inv.core { "Core" } else { "Extended" }
        );
    }
    let _ = writeln!(
        out,
        "## {title}\n\nCore: {}/{} tests pass ({} not run); Extended: {}/{} tests pass ({} not run).\n",
        counts[0][0], counts[0][1], counts[0][2], counts[1][0], counts[1][1], counts[1][2]
    );
    out.push_str("| ShortName | Core/Extended | passed/total | notes |\n|---|---|---|---|\n");
    out.push_str(&body);
    out.push('\n');
}

fn report(
    rows: &BTreeMap<String, Row>,
    inventory: &[l4_data::Inventory],
    took: Duration,
) -> String {
    let mut out = String::from("# Gateway API conformance: mesh profiles\n\n");
    let _ = writeln!(
        out,
        "The Mesh* tests of cases-l4-mesh.yaml through a real Envoy waypoint, run in {took:.0?}.\n"
    );
    for profile in PROFILES {
        let tests: Vec<&l4_data::Inventory> = inventory
            .iter()
            .filter(|i| i.profiles.iter().any(|p| p == profile))
            .collect();
        table(profile, &tests, rows, &mut out);
    }
    let loose: Vec<&l4_data::Inventory> = inventory
        .iter()
        .filter(|i| i.short_name.starts_with("Mesh") && i.profiles.is_empty())
        .collect();
    table(
        "Mesh tests in no profile (Extended, features outside MESH-HTTP)",
        &loose,
        rows,
        &mut out,
    );
    out.push_str("## Adaptations\n\n");
    for (what, why) in ADAPTATIONS {
        let _ = writeln!(out, "- {what} — {why}");
    }
    out
}

// === the harness ===

/// A loopback address whose port 15008 (HBONE's, fixed) is free now: the waypoint's.
fn waypoint_ip() -> Ipv4Addr {
    (100..250)
        .map(|n| Ipv4Addr::new(127, 0, 0, n))
        .find(|ip| std::net::TcpListener::bind((*ip, tidegate::model::istio::HBONE_PORT)).is_ok())
        .expect("a loopback address with port 15008 free")
}

/// What a case asks the client pod to do.
struct Request {
    /// The client pod's namespace.
    from: String,
    grpc: bool,
    method: String,
    path: String,
    host: String,
    headers: Vec<(String, String)>,
    to: Destination,
}

enum Destination {
    /// Through the waypoint: the Service's VIP and port.
    Service(SocketAddr),
    /// Straight to a pod.
    Pod(SocketAddr),
}

struct Harness {
    repo: TempRepo,
    server: tidegate::app::Running,
    _pods: mesh_echo::Pods,
    waypoint: Envoy,
    waypoint_addr: SocketAddr,
    /// The client workloads by namespace.
    workloads: BTreeMap<String, Workload>,
    /// Service (name, namespace) → VIP.
    vips: BTreeMap<(String, String), Ipv4Addr>,
    /// Deployment (namespace, name) → its pod's listener.
    pods: BTreeMap<(String, String), SocketAddr>,
    settled: Instant,
    _dirs: Vec<tempfile::TempDir>,
}

impl Harness {
    async fn start(base: &[Value], envoy_bin: PathBuf) -> Self {
        let mut pods = mesh_echo::Pods::default();
        let mut listeners: BTreeMap<(String, String), SocketAddr> = BTreeMap::new();
        let deployments: Vec<&Value> = base
            .iter()
            .filter(|o| data::kind(o) == "Deployment")
            .collect();
        for d in &deployments {
            let version = d["spec"]["template"]["metadata"]["labels"]["version"]
                .as_str()
                .unwrap_or("");
            let addr = pods.listen(&pod_name(data::name(d)), version).await;
            listeners.insert(
                (data::namespace(d).to_owned(), data::name(d).to_owned()),
                addr,
            );
        }

        // Services: a VIP each, their ports on the pods they select.
        let mut endpoints = String::new();
        let mut vips = BTreeMap::new();
        let mut services: Vec<&Value> =
            base.iter().filter(|o| data::kind(o) == "Service").collect();
        services.sort_by_key(|o| (data::namespace(o).to_owned(), data::name(o).to_owned()));
        for (i, svc) in services.iter().enumerate() {
            let (name, ns) = (data::name(svc), data::namespace(svc));
            let vip = Ipv4Addr::new(10, 96, 0, 10 + i as u8);
            vips.insert((name.to_owned(), ns.to_owned()), vip);
            let addrs: Vec<String> = deployments
                .iter()
                .filter(|d| {
                    data::namespace(d) == ns
                        && labels_match(
                            &svc["spec"]["selector"],
                            &d["spec"]["template"]["metadata"]["labels"],
                        )
                })
                .map(|d| {
                    format!(
                        "\"{}\"",
                        listeners[&(ns.to_owned(), data::name(d).to_owned())]
                    )
                })
                .collect();
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["port"].as_u64().unwrap_or(0);
                let target = p["targetPort"].as_u64().unwrap_or(port);
                if ![8080, 7070].contains(&target) {
                    continue;
                }
                let proto = p["appProtocol"]
                    .as_str()
                    .filter(|a| tidegate::xds::endpoints::APP_PROTOCOLS.contains(a))
                    .map(|a| format!("appProtocol: \"{a}\", "))
                    .unwrap_or_default();
                writeln!(
                    endpoints,
                    "{name}.{ns}:{port}: {{vip: \"{vip}\", {proto}addresses: [{}]}}",
                    addrs.join(", ")
                )
                .expect("write to a String");
            }
        }
        let wp_ip = waypoint_ip();
        let waypoint_addr = SocketAddr::from((wp_ip, tidegate::model::istio::HBONE_PORT));
        writeln!(
            endpoints,
            "{WAYPOINT}.{MESH_NS}:15008: [\"{waypoint_addr}\"]"
        )
        .expect("write to a String");
        let files = tempfile::tempdir().expect("temp dir");
        let endpoints_file = files.path().join("endpoints.yaml");
        std::fs::write(&endpoints_file, endpoints).expect("write endpoints");

        // Mesh certificates: the waypoint's, and one per client namespace.
        let pki = Pki::new();
        let certs = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(certs.path().join("mesh")).expect("mkdir");
        std::fs::write(certs.path().join("mesh/ca.crt"), &pki.ca_pem).expect("write CA");
        pki.write_pair(
            &certs.path().join("mesh").join(MESH_NS).join(WAYPOINT),
            WAYPOINT,
            vec![
                uri(&format!(
                    "spiffe://cluster.local/ns/{MESH_NS}/sa/{WAYPOINT}"
                )),
                dns(&format!("{WAYPOINT}.{MESH_NS}.svc.cluster.local")),
            ],
        );
        let mut workloads = BTreeMap::new();
        for d in &deployments {
            let ns = data::namespace(d);
            workloads.entry(ns.to_owned()).or_insert_with(|| {
                let (_, _, cert, key) = pki.issue(
                    "client",
                    vec![uri(&format!("spiffe://cluster.local/ns/{ns}/sa/default"))],
                );
                Workload::new(&pki.ca_pem, &cert, &key)
            });
        }

        let mut repo = TempRepo::new();
        repo.write(
            "tidegate.yaml",
            format!(
                "apiVersion: tidegate.io/v1alpha1\nkind: Settings\nplatform: kubernetes\ngatewayClassName: {}\n",
                data::GATEWAY_CLASS
            ),
        );
        let mut base_objects = committed(base);
        for o in &mut base_objects {
            if data::kind(o) == "Namespace" && data::name(o) == MESH_NS {
                o["metadata"]["labels"]["istio.io/use-waypoint"] = json!(WAYPOINT);
            }
        }
        base_objects.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": WAYPOINT, "namespace": MESH_NS},
            "spec": {
                "gatewayClassName": tidegate::model::istio::WAYPOINT_CLASS,
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
            },
        }));
        repo.write("resources/base.yaml", yaml_of(&base_objects));
        repo.commit("mesh conformance base");
        let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
        opts.endpoints = Some(endpoints_file);
        opts.certs = Some(certs.path().to_owned());
        opts.poll_interval = Duration::from_secs(1);
        let server = common::start_with(opts).await;

        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let boot = bootstrap(&Options {
            r#ref: None,
            proxy: format!("{WAYPOINT}.{MESH_NS}"),
            xds: server.xds.to_string(),
            delta: false,
            bind: Some(wp_ip.to_string()),
            admin: admin.to_string(),
            tls: None,
        })
        .expect("bootstrap");
        let waypoint = Envoy::start(
            &envoy_bin,
            &serde_json::to_string(&boot).expect("JSON"),
            admin,
        );
        let h = Harness {
            repo,
            server,
            _pods: pods,
            waypoint,
            waypoint_addr,
            workloads,
            vips,
            pods: listeners,
            settled: Instant::now(),
            _dirs: vec![certs, files],
        };
        h.acked()
            .await
            .expect("the waypoint takes its configuration");
        h
    }

    /// Waits until the waypoint acknowledged what is served now.
    async fn acked(&self) -> Result<(), String> {
        let id = format!("{WAYPOINT}.{MESH_NS}");
        let snapshot = self.server.current().await;
        let proxy = snapshot.proxy(
            &id,
            &Variant {
                bind: Some(self.waypoint_addr.ip().to_string()),
                proxyless: false,
            },
        );
        common::wait_acked(self.server.admin, &id, &proxy).await
    }

    /// Commits `objects` as `resources/test.yaml` and waits until the waypoint has it.
    async fn commit(&mut self, what: &str, objects: &[Value]) -> Result<(), String> {
        self.repo.write("resources/test.yaml", yaml_of(objects));
        let sha = self.repo.commit(what);
        self.server
            .wait_served(&sha, Duration::from_secs(20))
            .await
            .map_err(|e| format!("commit not served: {}", e.join("; ")))?;
        self.acked().await?;
        self.settled = Instant::now() + SETTLE;
        Ok(())
    }

    async fn run_test(&mut self, test: &L4Test) -> Vec<(String, Check)> {
        let ids = || test.cases.iter().map(|c| s(&c["id"]).unwrap_or_default());
        if !test.phases.is_empty() {
            return ids()
                .map(|id| {
                    (
                        id,
                        Check::Fail("phases are not supported by the mesh harness".into()),
                    )
                })
                .collect();
        }
        if let Err(e) = self
            .commit(&test.short_name, &committed(&test.objects))
            .await
        {
            return ids().map(|id| (id, Check::Fail(e.clone()))).collect();
        }
        let mut out = Vec::new();
        for case in &test.cases {
            let id = s(&case["id"]).unwrap_or_default();
            let r = self.run_case(case).await;
            out.push((id, r));
        }
        out
    }

    async fn run_case(&self, case: &Value) -> Check {
        let (req, e) = (&case["request"], &case["expect"]);
        // An expectation or request field the harness does not check must not pass
        // silently (the suite's own `*_NOT_CHECKED_BY_SUITE` are information).
        let unknown: Vec<&String> = e
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|k| {
                !KNOWN_EXPECT.contains(&k.as_str()) && !k.ends_with("_NOT_CHECKED_BY_SUITE")
            })
            .chain(
                req.as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .filter(|k| !KNOWN_REQUEST.contains(&k.as_str())),
            )
            .collect();
        if !unknown.is_empty() {
            return Check::Fail(format!("fields not known to the harness: {unknown:?}"));
        }
        let request = match self.request(req) {
            Ok(r) => r,
            Err(e) => return Check::Fail(e),
        };
        let samples = req["samples"].as_u64().unwrap_or(1).max(1);
        let mut tries = 0;
        loop {
            tries += 1;
            let r = if samples > 1 {
                self.samples(&request, e, samples).await
            } else {
                match self.send(&request).await {
                    Ok(resp) => check(e, &resp),
                    Err(e) => Err(e),
                }
            };
            if r.is_ok() || (Instant::now() >= self.settled && tries >= 2) || tries >= 50 {
                return match r {
                    Ok(()) => Check::Pass,
                    Err(e) => Check::Fail(format!("{e}{}", self.envoy_complaints())),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn request(&self, req: &Value) -> Result<Request, String> {
        let from = s(&req["from"])
            .and_then(|f| f.split('/').next().map(str::to_owned))
            .unwrap_or_else(|| MESH_NS.to_owned());
        let grpc = match req["protocol"].as_str() {
            Some("mesh-http") => false,
            Some("mesh-grpc") => true,
            p => return Err(format!("protocol {p:?} not known to the mesh harness")),
        };
        let url = s(&req["url"]).unwrap_or_default();
        let mut headers: Vec<(String, String)> = req["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), s(v).unwrap_or_default()))
            .collect();
        // `-H Host:…` overrides the URL's host, as in the echo client.
        let host = match headers
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            Some(i) => headers.remove(i).1,
            None => s(&req["host"]).unwrap_or_else(|| "echo".into()),
        };
        let to = if let Some(svc) = s(&req["to_service"]) {
            let (name_ns, port) = svc.rsplit_once(':').ok_or("to_service without a port")?;
            let (name, ns) = name_ns
                .split_once('.')
                .ok_or("to_service without a namespace")?;
            let vip = self
                .vips
                .get(&(name.to_owned(), ns.to_owned()))
                .ok_or_else(|| format!("no Service {name_ns}"))?;
            Destination::Service(SocketAddr::from((
                *vip,
                port.parse::<u16>().map_err(|e| e.to_string())?,
            )))
        } else if let Some(pod) = s(&req["to_pod"]) {
            let (ns, rest) = pod.split_once('/').ok_or("to_pod without a namespace")?;
            let deployment = rest.split_whitespace().next().unwrap_or("");
            Destination::Pod(
                *self
                    .pods
                    .get(&(ns.to_owned(), deployment.to_owned()))
                    .ok_or_else(|| format!("no pod {pod}"))?,
            )
        } else {
            return Err("neither to_service nor to_pod".into());
        };
        Ok(Request {
            from,
            grpc,
            method: s(&req["method"]).unwrap_or_else(|| "GET".into()),
            path: url_path(&url),
            host,
            headers,
            to,
        })
    }

    async fn hbone(&self, from: &str) -> Result<h2::client::SendRequest<bytes::Bytes>, String> {
        let w = self
            .workloads
            .get(from)
            .ok_or_else(|| format!("no client pod in namespace {from}"))?;
        w.connect(
            self.waypoint_addr,
            &format!("{WAYPOINT}.{MESH_NS}.svc.cluster.local"),
        )
        .await
    }

    /// One request from the client pod.
    async fn send(&self, r: &Request) -> Result<MeshResponse, String> {
        match r.to {
            Destination::Pod(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect to pod {addr}: {e}"))?;
                mesh_client::http1(tcp, &r.method, &r.path, &r.host, &r.headers).await
            }
            Destination::Service(vip) => {
                let hbone = self.hbone(&r.from).await?;
                one(&hbone, vip, r).await
            }
        }
    }

    /// `samples` requests, [`CONCURRENCY`] at a time on one HBONE connection; checks the
    /// `distribution` of the answering Deployments.
    async fn samples(&self, r: &Request, e: &Value, samples: u64) -> Result<(), String> {
        let Destination::Service(vip) = r.to else {
            return Err("samples are only sent to Services".into());
        };
        let Some(dist) = e["distribution"].as_object() else {
            return Err("samples without a distribution".into());
        };
        let attempts = e["distribution_attempts"]
            .as_u64()
            .unwrap_or(1)
            .clamp(1, MAX_DISTRIBUTION_ATTEMPTS);
        let tolerance = e["distribution_tolerance"].as_f64().unwrap_or(0.05);
        let mut last = String::new();
        for _ in 0..attempts {
            let hbone = self.hbone(&r.from).await?;
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut sent = 0;
            while sent < samples {
                let batch = (samples - sent).min(CONCURRENCY as u64);
                let answers =
                    futures_join((0..batch).map(|_| one(&hbone, vip, r)).collect::<Vec<_>>()).await;
                for a in answers {
                    let a = a?;
                    if a.status != 200 {
                        return Err(format!(
                            "a sample answered {}: {}",
                            a.status,
                            shorten(&a.body, 100)
                        ));
                    }
                    *counts
                        .entry(deployment_of(a.hostname().unwrap_or("")))
                        .or_default() += 1;
                }
                sent += batch;
            }
            let problems = distribution_problems(&counts, dist, samples, tolerance);
            if problems.is_empty() {
                return Ok(());
            }
            last = format!("{} ({counts:?})", problems.join("; "));
        }
        Err(last)
    }

    /// The waypoint's last warning or error, for a failure message.
    fn envoy_complaints(&self) -> String {
        envoy_complaint(&self.waypoint.log())
    }
}

/// Runs futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

/// One request in a new tunnel to `vip` on `hbone`.
async fn one(
    hbone: &h2::client::SendRequest<bytes::Bytes>,
    vip: SocketAddr,
    r: &Request,
) -> Result<MeshResponse, String> {
    let t = mesh_client::tunnel(hbone, &vip.to_string()).await?;
    if r.grpc {
        mesh_client::grpc(t, &r.host, &r.headers).await
    } else {
        mesh_client::http1(t, &r.method, &r.path, &r.host, &r.headers).await
    }
}

/// The path (and query) of a URL the echo client is given: `http://echo/x?y` → `/x?y`.
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_owned(),
    }
}

/// The suite's mesh check of one answer.
fn check(e: &Value, resp: &MeshResponse) -> Result<(), String> {
    let want: Vec<u64> = match &e["status"] {
        Value::Null => vec![200],
        Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
        v => v.as_u64().into_iter().collect(),
    };
    if !want.contains(&u64::from(resp.status)) {
        return Err(format!(
            "status {}, want {want:?} ({})",
            resp.status,
            shorten(&resp.body, 120)
        ));
    }
    if let Some(prefix) = e["backend_pod_prefix"].as_str() {
        let host = resp.hostname().unwrap_or("");
        if !host.starts_with(prefix) {
            return Err(format!("answered by {host:?}, want {prefix}*"));
        }
    }
    let br = &e["backend_request"];
    if let Some(k) = br
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .find(|k| !["headers", "absent_headers"].contains(&k.as_str()))
    {
        return Err(format!("backend_request.{k} is not known to the harness"));
    }
    for (k, v) in br["headers"].as_object().into_iter().flatten() {
        let got = resp.request_header(k).join(",");
        if Some(got.as_str()) != v.as_str() {
            return Err(format!("the backend saw {k}: {got:?}, want {v}"));
        }
    }
    for k in l4_data::strings(&br["absent_headers"]) {
        if !resp.request_header(&k).is_empty() {
            return Err(format!("the backend saw {k}, want it absent"));
        }
    }
    for (k, v) in e["response_headers"].as_object().into_iter().flatten() {
        let got = resp.response_header(k).join(",");
        if Some(got.as_str()) != v.as_str() {
            return Err(format!("response header {k}: {got:?}, want {v}"));
        }
    }
    for k in l4_data::strings(&e["response_absent_headers"]) {
        if !resp.response_header(&k).is_empty() {
            return Err(format!("response header {k} present, want it absent"));
        }
    }
    Ok(())
}

#[test]
fn urls_become_paths() {
    assert_eq!(url_path("http://echo"), "/");
    assert_eq!(url_path("http://echo/"), "/");
    assert_eq!(url_path("http://echo/?animal=whale"), "/?animal=whale");
    assert_eq!(url_path("http://echo?a=b"), "/?a=b");
    assert_eq!(url_path("http://echo-v1:8080/x/y"), "/x/y");
    assert_eq!(deployment_of(&pod_name("echo-v1")), "echo-v1");
}

#[test]
fn the_mesh_check_reads_the_echo_text() {
    let resp = MeshResponse {
        status: 200,
        headers: vec![("X-Header-Set".into(), "set".into())],
        body: "StatusCode=200\nRequestHeader=X-Header-Add:a\nRequestHeader=x-header-add:b\nHostname=echo-v1-6b7f9c-p0\n".into(),
    };
    let e = json!({
        "backend_pod_prefix": "echo-v1",
        "backend_request": {"headers": {"X-Header-Add": "a,b"}, "absent_headers": ["X-Header-Remove"]},
        "response_headers": {"x-header-set": "set"},
    });
    assert_eq!(check(&e, &resp), Ok(()));
    let wrong_pod = json!({"backend_pod_prefix": "echo-v2"});
    assert!(check(&wrong_pod, &resp).is_err());
    let absent = json!({"response_absent_headers": ["X-Header-Set"]});
    assert!(check(&absent, &resp).is_err());
    let status = json!({"status": [404]});
    assert!(check(&status, &resp).is_err());
    let header = json!({"backend_request": {"headers": {"X-Header-Add": "a"}}});
    assert!(check(&header, &resp).is_err());
}

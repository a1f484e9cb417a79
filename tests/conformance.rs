//! Gateway API conformance, data-driven: the request cases of the upstream suite
//! (`../shared/conformance`, or `$TIDEGATE_CONFORMANCE_DIR`) through tidegate and real
//! Envoys, without a cluster.
//!
//! One server follows one repository for the whole run. The shared objects of
//! `base-manifests.yaml` are `resources/base.yaml`; each test's manifests replace
//! `resources/test.yaml` in a new commit (a deletion the Go test makes mid-way is another
//! commit). Every Deployment is an echo "pod" on loopback, found through the endpoints
//! file; every Gateway a case names gets its own Envoy, listening on its real ports on its
//! own loopback address (127.0.0.2, .3, …), started once and kept. Before a test's
//! requests, the harness waits until those Envoys have acknowledged the new commit's
//! configuration (`/status`), not for a guessed time. Ports below 1024 (80, 443) need root
//! or CAP_NET_BIND_SERVICE for Envoy; without, its listeners are rejected and the cases
//! fail with that reason.
//!
//! The result is a table (`target/conformance.md`). The test fails when a test outside
//! [`KNOWN_GAPS`] has a failed case, when a Core test is listed there, or when a listed
//! test passes (so the list stays true).

mod common;

// The harness' parts, under tests/conformance/ (a test crate root resolves `mod` paths
// from tests/).
#[path = "conformance/client.rs"]
mod client;
#[path = "conformance/data.rs"]
mod data;
#[path = "conformance/echo.rs"]
mod echo;
#[allow(dead_code)]
#[path = "conformance/http1.rs"]
mod http1;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tidegate::test_helpers::pki::{Pki, dns};
use tidegate::test_helpers::{Envoy, TempRepo, free_port};
use tidegate::xds::bootstrap::{Options, bootstrap};
use tidegate::xds::emit::Variant;

use data::{Case, Expect, Suite, TestDef};

/// Tests expected to fail, each with why. Only Extended tests may be listed; a listed test
/// that passes fails the run until it is removed from here.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// Tests with nothing to check here (reported as 0/0, never failing).
const NOT_RUN: &[(&str, &str)] = &[(
    "HTTPRouteObservedGenerationBump",
    "needs metadata.generation, which objects read from Git do not have",
)];

/// Where a case was adapted to running without a cluster, and why.
const ADAPTATIONS: &[(&str, &str)] = &[
    (
        "each Gateway listens on its own loopback address (127.0.0.2, .3, …) on its real ports",
        "no load balancer addresses without a cluster; real ports keep the redirect port expectations (80/443/8080) as written",
    ),
    (
        "a case without Host sends the Gateway's address (`127.0.0.N`, `:port` off 80/443)",
        "the Go suite sends the Gateway address as Host",
    ),
    (
        "the listener port of a case: the group's `(HTTP :8080)`, else the Host's port if the Gateway listens there, else its first listener of the scheme",
        "the data names ports only where they differ from the Gateway's main listener",
    ),
    (
        "a test listing no manifest uses manifests/<go file stem>.yaml (GatewayHTTPListenerIsolation, HTTPRouteBackendProtocolH2C)",
        "the Go tests apply those files; the extraction missed them",
    ),
    (
        "GatewayHTTPListenerIsolation runs against http-listener-isolation only",
        "the ...-with-hostname-intersection Gateway is not in the data",
    ),
    (
        "each Deployment is one echo pod `<deployment>-pod`, one listener per Service target port; ports with appProtocol kubernetes.io/h2c speak only HTTP/2 prior knowledge",
        "one replica suffices to check pod-name prefixes; h2c-only keeps an HTTP/1.1 upstream from passing the h2c test",
    ),
    (
        "Services, their ports and appProtocols reach tidegate through the endpoints file only (resources/ gets Namespace, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant)",
        "there is no cluster to hold Services; a Service absent from the file does not exist",
    ),
    (
        "HTTPRouteServiceTypes: the `/` + path template becomes its three paths; Services without a selector get infra-backend-v1's address",
        "the Go test fills those EndpointSlices with infra-backend-v1's pod IPs",
    ),
    (
        "HTTPRouteRetry: the template path becomes the (responseCode, succeedAfter) matrix of the test's notes, 11 cases",
        "the data holds one templated case for a Go loop",
    ),
    (
        "HTTPRouteRetryConnectionError, HTTPRouteRetryWithTimeouts: their cases are built from the tests' notes (failing attempts reset the connection, or answer late, by echo parameters)",
        "the data has no cases for them, only the notes describing the Go loops",
    ),
    (
        "HTTPRouteBackendProtocolWebSocket: one case built from the Go test: a WebSocket upgrade of `/` through the Gateway to infra-backend-v1:8082 (appProtocol kubernetes.io/ws), a text message echoed back",
        "the data has neither cases nor notes for it; the manifest is the test's own",
    ),
    (
        "weighted rules (HTTPRouteWeight, GRPCRouteWeight, HTTPRouteRequestHeaderModifierBackendWeights): 500 requests, each backend within ±0.05 of its weight's share, weight 0 gets none; backendRef-level headers checked per backend",
        "the data gives the case without the distribution; the figures are HTTPRouteWeight's notes",
    ),
    (
        "HTTPRouteRequestPercentageMirror: 500 requests per case, mirrored count within 3 binomial standard deviations",
        "the test's notes",
    ),
    (
        "status expectations written as prose (`status:`, HTTPRouteHostnameIntersection's notes) are STATUS_CHECKS on /status `gatewayApi`, counted as cases",
        "there is no Kubernetes status to read",
    ),
    (
        "HTTPRouteHTTPSListenerDetectMisdirectedRequests: requests go to /detect-misdirected-requests, not the data's /",
        "the Go test sends that path for every case (its routes match only it); the extraction lost it",
    ),
    (
        "gRPC header tables marked headers_NOT_CHECKED_BY_SUITE are not checked",
        "the Go suite does not check them either",
    ),
];

/// Status expectations: (test, object, expectation). Objects: `<Kind> <ns>/<name> -> <gateway>`
/// (a route's parent) or `Gateway <ns>/<name> listener <name>`; expectations:
/// `<Type>=<Status>[/<Reason>]` or `attachedRoutes=<n>`.
const STATUS_CHECKS: &[(&str, &str, &str)] = &[
    (
        "HTTPRouteDisallowedKind",
        "HTTPRoute gateway-conformance-infra/disallowed-kind -> tlsroutes-only",
        "Accepted=False/NotAllowedByListeners",
    ),
    (
        "HTTPRouteDisallowedKind",
        "HTTPRoute gateway-conformance-infra/disallowed-kind -> tlsroutes-only",
        "ResolvedRefs=True",
    ),
    (
        "HTTPRouteDisallowedKind",
        "Gateway gateway-conformance-infra/tlsroutes-only listener tls",
        "attachedRoutes=0",
    ),
    (
        "HTTPRouteInvalidBackendRefUnknownKind",
        "HTTPRoute gateway-conformance-infra/invalid-backend-ref-unknown-kind -> same-namespace",
        "ResolvedRefs=False/InvalidKind",
    ),
    (
        "HTTPRouteInvalidBackendRefUnknownKind",
        "HTTPRoute gateway-conformance-infra/invalid-backend-ref-unknown-kind -> same-namespace",
        "Accepted=True",
    ),
    (
        "HTTPRouteInvalidCrossNamespaceBackendRef",
        "HTTPRoute gateway-conformance-infra/invalid-cross-namespace-backend-ref -> same-namespace",
        "ResolvedRefs=False/RefNotPermitted",
    ),
    (
        "HTTPRouteInvalidCrossNamespaceBackendRef",
        "HTTPRoute gateway-conformance-infra/invalid-cross-namespace-backend-ref -> same-namespace",
        "Accepted=True",
    ),
    (
        "HTTPRouteInvalidCrossNamespaceParentRef",
        "HTTPRoute gateway-conformance-web-backend/invalid-cross-namespace-parent-ref -> same-namespace",
        "Accepted=False/NotAllowedByListeners",
    ),
    (
        "HTTPRouteInvalidCrossNamespaceParentRef",
        "Gateway gateway-conformance-infra/same-namespace listener http",
        "attachedRoutes=0",
    ),
    (
        "HTTPRouteInvalidNonExistentBackendRef",
        "HTTPRoute gateway-conformance-infra/invalid-nonexistent-backend-ref -> same-namespace",
        "ResolvedRefs=False/BackendNotFound",
    ),
    (
        "HTTPRouteInvalidNonExistentBackendRef",
        "HTTPRoute gateway-conformance-infra/invalid-nonexistent-backend-ref -> same-namespace",
        "Accepted=True",
    ),
    (
        "HTTPRouteInvalidParentRefNotMatchingListenerPort",
        "HTTPRoute gateway-conformance-infra/httproute-listener-not-matching-route-port -> same-namespace",
        "Accepted=False/NoMatchingParent",
    ),
    (
        "HTTPRouteInvalidParentRefNotMatchingSectionName",
        "HTTPRoute gateway-conformance-infra/httproute-listener-not-matching-section-name -> same-namespace",
        "Accepted=False/NoMatchingParent",
    ),
    (
        "HTTPRouteInvalidParentRefSectionNameNotMatchingPort",
        "HTTPRoute gateway-conformance-infra/httproute-listener-section-name-not-matching-port -> gateway-with-one-not-matching-port-and-section-name-route",
        "Accepted=False/NoMatchingParent",
    ),
    (
        "HTTPRouteInvalidReferenceGrant",
        "HTTPRoute gateway-conformance-infra/reference-grant -> same-namespace",
        "ResolvedRefs=False/RefNotPermitted",
    ),
    (
        "HTTPRouteNoBackendRefs",
        "HTTPRoute gateway-conformance-infra/omitted-backendrefs -> same-namespace",
        "ResolvedRefs=True",
    ),
    (
        "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant",
        "HTTPRoute gateway-conformance-infra/invalid-reference-grant -> same-namespace",
        "ResolvedRefs=False/RefNotPermitted",
    ),
    (
        "HTTPRouteHostnameIntersection",
        "HTTPRoute gateway-conformance-infra/no-intersecting-hosts -> httproute-hostname-intersection",
        "Accepted=False/NoMatchingListenerHostname",
    ),
    (
        "HTTPRouteHostnameIntersection",
        "Gateway gateway-conformance-infra/httproute-hostname-intersection listener listener-1",
        "attachedRoutes=2",
    ),
    (
        "HTTPRouteHostnameIntersection",
        "Gateway gateway-conformance-infra/httproute-hostname-intersection listener listener-2",
        "attachedRoutes=1",
    ),
    (
        "HTTPRouteHostnameIntersection",
        "Gateway gateway-conformance-infra/httproute-hostname-intersection listener listener-3",
        "attachedRoutes=1",
    ),
];

/// How long a failing case is retried after a config change (the Go suite also waits for
/// eventual consistency); once a phase has been settled that long, one retry.
const SETTLE: Duration = Duration::from_secs(3);
/// Requests for a distribution (weights, percentage mirrors), as the Go suite sends.
const DISTRIBUTION_REQUESTS: usize = 500;
const DISTRIBUTION_CONCURRENCY: usize = 10;
const WEIGHT_TOLERANCE: f64 = 0.05;
// Every worker sends the same number of requests.
const _: () = assert!(DISTRIBUTION_REQUESTS.is_multiple_of(DISTRIBUTION_CONCURRENCY));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_conformance() {
    let Some((dir, envoy_bin)) = common::conformance_inputs("cases.yaml") else {
        return;
    };
    let started = Instant::now();
    let suite = Suite::load(&dir);
    let mut h = Harness::start(&suite, envoy_bin).await;

    let mut rows = Vec::new();
    for test in &suite.tests {
        let t0 = Instant::now();
        let outcomes = h.run_test(test).await;
        let failed: Vec<&(String, Result<(), String>)> =
            outcomes.iter().filter(|(_, r)| r.is_err()).collect();
        println!(
            "{}: {}/{} in {:.1?}",
            test.short_name,
            outcomes.len() - failed.len(),
            outcomes.len(),
            t0.elapsed()
        );
        for (id, r) in &failed {
            println!("FAIL {} {id}: {}", test.short_name, r.as_ref().unwrap_err());
        }
        rows.push(Row {
            name: test.short_name.clone(),
            core: test.core,
            passed: outcomes.len() - failed.len(),
            total: outcomes.len(),
            first_failure: failed
                .first()
                .map(|(id, r)| format!("{id}: {}", r.as_ref().unwrap_err())),
        });
    }
    let report = report(&rows, started.elapsed());
    println!("{report}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::manifest_dir().join("target"));
    std::fs::create_dir_all(&target).expect("create target dir");
    std::fs::write(target.join("conformance.md"), &report).expect("write conformance.md");

    let problems = verdict(&rows, &suite.tests);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// === the report and the verdict ===

struct Row {
    name: String,
    core: bool,
    passed: usize,
    total: usize,
    first_failure: Option<String>,
}

fn lookup<'a>(list: &'a [(&str, &str)], name: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

fn shorten(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '|'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    }
}

fn report(rows: &[Row], took: Duration) -> String {
    let mut out = String::from("# Gateway API conformance\n\n");
    let passed_tests = rows
        .iter()
        .filter(|r| r.total > 0 && r.passed == r.total)
        .count();
    let cases: usize = rows.iter().map(|r| r.total).sum();
    let passed_cases: usize = rows.iter().map(|r| r.passed).sum();
    let _ = writeln!(
        out,
        "{passed_tests}/{} tests pass fully, {passed_cases}/{cases} cases, in {:.0?}.\n",
        rows.len(),
        took
    );
    out.push_str("| ShortName | Core or Extended | passed/total | notes |\n|---|---|---|---|\n");
    for r in rows {
        let mut notes = String::new();
        if let Some(why) = lookup(NOT_RUN, &r.name) {
            notes = format!("not run: {why}");
        }
        if let Some(why) = lookup(KNOWN_GAPS, &r.name) {
            notes = format!("known gap: {why}");
        }
        if let Some(f) = &r.first_failure {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            notes.push_str(&shorten(f, 140));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {}/{} | {} |",
            r.name,
            if r.core { "Core" } else { "Extended" },
            r.passed,
            r.total,
            notes
        );
    }
    out.push_str("\n## Adaptations\n\n");
    for (what, why) in ADAPTATIONS {
        let _ = writeln!(out, "- {what} — {why}");
    }
    out
}

fn verdict(rows: &[Row], tests: &[TestDef]) -> Vec<String> {
    let mut problems = Vec::new();
    for t in tests {
        let checked = STATUS_CHECKS.iter().any(|(n, _, _)| *n == t.short_name);
        if t.status_note.is_some() && !checked && lookup(NOT_RUN, &t.short_name).is_none() {
            problems.push(format!(
                "{} has a status expectation ({:?}) without STATUS_CHECKS",
                t.short_name,
                t.status_note.as_deref().unwrap_or("")
            ));
        }
    }
    for (name, _) in KNOWN_GAPS.iter().chain(NOT_RUN) {
        if !rows.iter().any(|r| r.name == *name) {
            problems.push(format!("{name} is listed but is not a test of the data"));
        }
    }
    for r in rows {
        let gap = lookup(KNOWN_GAPS, &r.name).is_some();
        let not_run = lookup(NOT_RUN, &r.name).is_some();
        if gap && r.core {
            problems.push(format!("{} is Core: it cannot be a known gap", r.name));
        }
        if r.passed < r.total && !gap {
            problems.push(format!(
                "{} failed {}/{}: {}",
                r.name,
                r.total - r.passed,
                r.total,
                r.first_failure.as_deref().unwrap_or("")
            ));
        }
        if gap && r.total > 0 && r.passed == r.total {
            problems.push(format!("{} passes: remove it from KNOWN_GAPS", r.name));
        }
        if r.total == 0 && !not_run {
            problems.push(format!(
                "{} has nothing to check: list it in NOT_RUN with why",
                r.name
            ));
        }
        if not_run && r.total > 0 {
            problems.push(format!("{} has checks: remove it from NOT_RUN", r.name));
        }
    }
    problems
}

// === the harness ===

struct Gateway {
    ip: String,
    _envoy: Envoy,
}

/// Where a case's request goes.
#[derive(Clone, Debug)]
struct Target {
    /// `<namespace>/<name>` of the Gateway.
    gateway: String,
    https: bool,
    sni: Option<String>,
    port: u16,
}

struct Harness {
    envoy_bin: PathBuf,
    repo: TempRepo,
    server: tidegate::app::Running,
    backends: echo::Backends,
    /// Pod name → Deployment name.
    pods: BTreeMap<String, String>,
    gateways: BTreeMap<String, Gateway>,
    tls: tokio_rustls::TlsConnector,
    base: Vec<Value>,
    _dirs: Vec<tempfile::TempDir>,
}

fn yaml_of(objects: &[&Value]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string(o).expect("JSON"));
        out.push('\n');
    }
    out
}

fn committed(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| data::COMMITTED_KINDS.contains(&data::kind(o)))
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

impl Harness {
    async fn start(suite: &Suite, envoy_bin: PathBuf) -> Self {
        let mut backends = echo::Backends::default();
        let mut pods = BTreeMap::new();
        // Deployments that serve plain HTTP or gRPC (echo-basic without the TLS or TCP
        // echo modes): TLS/TCP/UDP backends have no HTTP case here.
        let deployments: Vec<&Value> = suite
            .base
            .iter()
            .filter(|o| data::kind(o) == "Deployment")
            .filter(|d| {
                let c = &d["spec"]["template"]["spec"]["containers"][0];
                let env: Vec<&str> = c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["name"].as_str())
                    .collect();
                c["image"].as_str().unwrap_or("").contains("echo-basic")
                    && !env.contains(&"TCP_ECHO_SERVER")
                    && (!env.contains(&"TLS_SERVER_CERT") || env.contains(&"GRPC_ECHO_SERVER"))
            })
            .collect();
        let mut services: BTreeMap<String, &Value> = BTreeMap::new();
        for o in suite
            .base
            .iter()
            .chain(suite.tests.iter().flat_map(|t| t.objects.iter()))
            .filter(|o| data::kind(o) == "Service")
        {
            services
                .entry(format!("{}.{}", data::name(o), data::namespace(o)))
                .or_insert(o);
        }
        let mut listeners: BTreeMap<(String, String, bool), SocketAddr> = BTreeMap::new();
        let mut endpoints = String::new();
        for (key, svc) in &services {
            let ns = data::namespace(svc);
            let selector = &svc["spec"]["selector"];
            let deployment = deployments.iter().find(|d| {
                data::namespace(d) == ns
                    && if selector.is_null() {
                        // Adaptation: manual EndpointSlices hold infra-backend-v1's pods.
                        data::name(d) == "infra-backend-v1"
                    } else {
                        labels_match(selector, &d["spec"]["template"]["metadata"]["labels"])
                    }
            });
            let Some(d) = deployment else {
                continue;
            };
            let pod = echo::Pod {
                name: format!("{}-pod", data::name(d)),
                namespace: ns.to_owned(),
            };
            pods.insert(pod.name.clone(), data::name(d).to_owned());
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["port"].as_u64().unwrap_or(0);
                let target = p["targetPort"]
                    .as_u64()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| port.to_string());
                let h2c = p["appProtocol"].as_str() == Some("kubernetes.io/h2c");
                let k = (format!("{}/{}", ns, data::name(d)), target, h2c);
                let addr = match listeners.get(&k) {
                    Some(a) => *a,
                    None => {
                        let a = backends.listen(pod.clone(), h2c).await;
                        listeners.insert(k, a);
                        a
                    }
                };
                match p["appProtocol"]
                    .as_str()
                    .filter(|a| tidegate::xds::endpoints::APP_PROTOCOLS.contains(a))
                {
                    Some(proto) => writeln!(
                        endpoints,
                        "{key}:{port}: {{appProtocol: \"{proto}\", addresses: [\"{addr}\"]}}"
                    ),
                    None => writeln!(endpoints, "{key}:{port}: [\"{addr}\"]"),
                }
                .expect("write to a String");
            }
        }

        let pki = Pki::new();
        let certs = tempfile::tempdir().expect("temp dir");
        for ((ns, name), sans) in secrets(suite) {
            pki.write_pair(
                &certs.path().join("secrets").join(&ns).join(&name),
                &name,
                sans.iter().map(|s| dns(s)).collect(),
            );
        }
        let files = tempfile::tempdir().expect("temp dir");
        let endpoints_file = files.path().join("endpoints.yaml");
        std::fs::write(&endpoints_file, endpoints).expect("write endpoints");

        let mut repo = TempRepo::new();
        repo.write(
            "tidegate.yaml",
            format!(
                "apiVersion: tidegate.io/v1alpha1\nkind: Settings\nplatform: kubernetes\ngatewayClassName: {}\n",
                data::GATEWAY_CLASS
            ),
        );
        repo.write("resources/base.yaml", yaml_of(&committed(&suite.base)));
        repo.commit("conformance base");
        let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
        opts.endpoints = Some(endpoints_file);
        opts.certs = Some(certs.path().to_owned());
        opts.poll_interval = Duration::from_secs(1);
        let server = common::start_with(opts).await;
        Self {
            envoy_bin,
            repo,
            server,
            backends,
            pods,
            gateways: BTreeMap::new(),
            tls: client::tls_connector(&pki.ca_pem),
            base: suite.base.clone(),
            _dirs: vec![certs, files],
        }
    }

    /// Commits `objects` as `resources/test.yaml`; `Err` if the commit is not served.
    async fn commit(&mut self, what: &str, objects: &[&Value]) -> Result<(), String> {
        self.repo.write("resources/test.yaml", yaml_of(objects));
        let sha = self.repo.commit(what);
        let t0 = Instant::now();
        let r = self
            .server
            .wait_served(&sha, Duration::from_secs(20))
            .await
            .map_err(|e| format!("commit not served: {}", e.join("; ")));
        println!("  served in {:.1?}", t0.elapsed());
        r
    }

    async fn run_test(&mut self, test: &TestDef) -> Vec<(String, Result<(), String>)> {
        let mut out = Vec::new();
        let mut objects = committed(&test.objects);
        let cases: Vec<Case> = test
            .cases
            .iter()
            .flat_map(|c| expand(test, c))
            .chain(from_notes(test))
            .collect();
        if let Err(e) = self.commit(&test.short_name, &objects).await {
            out.extend(cases.iter().map(|c| (c.id.clone(), Err(e.clone()))));
            out.extend(
                status_checks(test).map(|(t, w)| (format!("status {t}: {w}"), Err(e.clone()))),
            );
            return out;
        }
        // Phases: a group that deletes an object starts with a commit without it.
        let mut phases: Vec<(Option<String>, Vec<&Case>)> = Vec::new();
        for c in &cases {
            match phases.last_mut() {
                Some((g, list)) if *g == c.group => list.push(c),
                _ => phases.push((c.group.clone(), vec![c])),
            }
        }
        for (group, cases) in phases {
            if let Some((kind, ns, name)) = group.as_deref().and_then(deletion) {
                objects.retain(|o| {
                    !(data::kind(o) == kind && data::namespace(o) == ns && data::name(o) == name)
                });
                if let Err(e) = self
                    .commit(
                        &format!("{}: delete {kind} {ns}/{name}", test.short_name),
                        &objects,
                    )
                    .await
                {
                    out.extend(cases.iter().map(|c| (c.id.clone(), Err(e.clone()))));
                    continue;
                }
            }
            let gateways: Vec<Value> = self
                .base
                .iter()
                .chain(&test.objects)
                .filter(|o| data::kind(o) == "Gateway")
                .cloned()
                .collect();
            let targets: Vec<Result<Target, String>> =
                cases.iter().map(|c| target(test, c, &gateways)).collect();
            let ready = self.prepare(&targets).await;
            let settled = Instant::now() + SETTLE;
            for (c, t) in cases.iter().zip(&targets) {
                let r = match (t, &ready) {
                    (Err(e), _) => Err(e.clone()),
                    (_, Err(e)) => Err(e.clone()),
                    (Ok(t), Ok(())) => match ready_gateway(&self.gateways, t) {
                        Err(e) => Err(e),
                        Ok(ip) => self.run_case(test, c, t, &ip, settled).await,
                    },
                };
                out.push((c.id.clone(), r));
            }
        }
        for (target, want) in status_checks(test) {
            let r = self.check_status(target, want).await;
            out.push((format!("status {target}: {want}"), r));
        }
        out
    }

    /// Starts the Envoys of the Gateways `targets` name and waits until each acknowledged
    /// the served configuration.
    async fn prepare(&mut self, targets: &[Result<Target, String>]) -> Result<(), String> {
        let snapshot = self.server.current().await;
        let served: Vec<String> = snapshot.proxy_ids().cloned().collect();
        let mut wanted = Vec::new();
        for t in targets.iter().flatten() {
            let id = proxy_id(&t.gateway);
            // A Gateway tidegate does not serve gets no Envoy: its cases fail at once.
            if !served.contains(&id) || wanted.contains(&t.gateway) {
                continue;
            }
            wanted.push(t.gateway.clone());
            if !self.gateways.contains_key(&t.gateway) {
                let ip = format!("127.0.0.{}", self.gateways.len() + 2);
                let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                let boot = bootstrap(&Options {
                    r#ref: None,
                    proxy: id.clone(),
                    xds: self.server.xds.to_string(),
                    delta: false,
                    bind: Some(ip.clone()),
                    admin: admin.to_string(),
                    tls: None,
                })
                .expect("bootstrap");
                let envoy = Envoy::start(
                    &self.envoy_bin,
                    &serde_json::to_string(&boot).expect("JSON"),
                    admin,
                );
                self.gateways
                    .insert(t.gateway.clone(), Gateway { ip, _envoy: envoy });
            }
        }
        for gw in &wanted {
            self.wait_acked(gw).await?;
        }
        Ok(())
    }

    /// Waits until the Envoy of `gateway` acknowledged every type of the served snapshot
    /// (the versions it should have, computed from the snapshot).
    async fn wait_acked(&self, gateway: &str) -> Result<(), String> {
        let id = proxy_id(gateway);
        let ip = self.gateways[gateway].ip.clone();
        let snapshot = self.server.current().await;
        let proxy = snapshot.proxy(
            &id,
            &Variant {
                bind: Some(ip),
                proxyless: false,
            },
        );
        common::wait_acked(self.server.admin, &id, &proxy)
            .await
            .map_err(|e| format!("{gateway}: {e}"))
    }

    async fn run_case(
        &self,
        test: &TestDef,
        case: &Case,
        t: &Target,
        ip: &str,
        settled: Instant,
    ) -> Result<(), String> {
        let weighted = data::weighted_rule(&test.objects)
            .filter(|_| case.expect.backend_pod_prefix.as_deref() == Some(""));
        let percent = case.expect.mirrored_to.iter().any(|m| m.percent.is_some());
        let mut tries = 0;
        loop {
            tries += 1;
            let r = if let Some(rule) = &weighted {
                self.distribution(case, t, ip, rule).await
            } else if percent {
                self.percentage_mirror(case, t, ip).await
            } else if case.request.grpc_method.is_some() {
                self.grpc_case(case, t, ip).await
            } else if let Some(message) = &case.request.websocket {
                self.websocket_case(case, t, ip, message).await
            } else {
                self.http_case(case, t, ip).await
            };
            // Never retry a pass; retry a failure while the config may still be settling,
            // and once more after that.
            if r.is_ok() || (Instant::now() >= settled && tries >= 2) || tries >= 30 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn addr(t: &Target, ip: &str) -> SocketAddr {
        format!("{ip}:{}", t.port).parse().expect("address")
    }

    fn deployment_of<'a>(&'a self, pod: &'a str) -> &'a str {
        self.pods.get(pod).map(String::as_str).unwrap_or(pod)
    }

    async fn http_case(&self, case: &Case, t: &Target, ip: &str) -> Result<(), String> {
        let sent = sent_request(case, t, ip);
        let mark = self.backends.mark();
        let tls = t
            .https
            .then(|| (&self.tls, t.sni.as_deref().unwrap_or(&sent.host)));
        let mut headers = sent.headers.clone();
        if !case.backend_set_response_headers.is_empty() {
            let v: Vec<String> = case
                .backend_set_response_headers
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            headers.push(("X-Echo-Set-Header".into(), v.join(",")));
        }
        let resp = client::http1(
            Self::addr(t, ip),
            tls,
            &sent.method,
            &sent.path,
            &sent.host,
            &headers,
        )
        .await?;
        check_response(
            &case.expect,
            &sent,
            &resp,
            if t.https { "https" } else { "http" },
        )?;
        for m in &case.expect.mirrored_to {
            self.wait_mirrored(mark, m, &sent.path).await?;
        }
        Ok(())
    }

    async fn wait_mirrored(&self, mark: usize, m: &data::Mirror, path: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let seen = self.backends.since(mark).into_iter().any(|s| {
                self.deployment_of(&s.pod).starts_with(&m.backend)
                    && s.namespace == m.namespace
                    && s.path == path
            });
            if seen {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{} did not see the mirrored {path}", m.backend));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn websocket_case(
        &self,
        case: &Case,
        t: &Target,
        ip: &str,
        message: &str,
    ) -> Result<(), String> {
        let sent = sent_request(case, t, ip);
        let r = client::websocket(Self::addr(t, ip), &sent.host, &sent.path, message).await?;
        if !case.expect.status.contains(&r.status) {
            return Err(format!(
                "upgrade answered {}, want {:?}",
                r.status, case.expect.status
            ));
        }
        let pod = r.pod.unwrap_or_default();
        if let Some(want) = &case.expect.backend_pod_prefix
            && !self.deployment_of(&pod).starts_with(want.as_str())
        {
            return Err(format!("upgraded by pod {pod:?}, want {want}"));
        }
        match r.echoed {
            Some(m) if m == message => Ok(()),
            other => Err(format!("sent {message:?}, got back {other:?}")),
        }
    }

    async fn grpc_case(&self, case: &Case, t: &Target, ip: &str) -> Result<(), String> {
        let method = case.request.grpc_method.as_deref().unwrap_or("/");
        let authority = case
            .request
            .authority
            .clone()
            .unwrap_or_else(|| sent_request(case, t, ip).host);
        let r = client::grpc(
            Self::addr(t, ip),
            &authority,
            method,
            &case.request.metadata,
        )
        .await?;
        check_grpc(&case.expect, &r)
    }

    /// Sends many requests and compares where they went with the weights of the rule.
    async fn distribution(
        &self,
        case: &Case,
        t: &Target,
        ip: &str,
        rule: &[data::WeightedRef],
    ) -> Result<(), String> {
        let addr = Self::addr(t, ip);
        let sent = sent_request(case, t, ip);
        let authority = case
            .request
            .authority
            .clone()
            .unwrap_or_else(|| sent_request(case, t, ip).host);
        let grpc = case.request.grpc_method.clone();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..DISTRIBUTION_CONCURRENCY {
            let (sent, authority, grpc, metadata) = (
                sent.clone(),
                authority.clone(),
                grpc.clone(),
                case.request.metadata.clone(),
            );
            let n = DISTRIBUTION_REQUESTS / DISTRIBUTION_CONCURRENCY;
            tasks.spawn(async move {
                let mut echoes = Vec::new();
                for _ in 0..n {
                    let echo = match &grpc {
                        Some(m) => {
                            let r = client::grpc(addr, &authority, m, &metadata).await?;
                            if r.code != 0 {
                                return Err(format!("grpc-status {} ({:?})", r.code, r.message));
                            }
                            r.echo
                        }
                        None => {
                            let r = client::http1(
                                addr,
                                None,
                                &sent.method,
                                &sent.path,
                                &sent.host,
                                &sent.headers,
                            )
                            .await?;
                            if r.status != 200 {
                                return Err(format!("status {}", r.status));
                            }
                            r.echo()
                        }
                    };
                    echoes.push(echo.ok_or("a response not from an echo backend")?);
                }
                Ok::<_, String>(echoes)
            });
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut total = 0;
        while let Some(r) = tasks.join_next().await {
            for echo in r.map_err(|e| e.to_string())?? {
                let pod = echo["pod"].as_str().unwrap_or("");
                let deployment = self.deployment_of(pod).to_owned();
                // Headers a backendRef's own filter sets must reach that backend only.
                if let Some(r) = rule.iter().find(|r| r.backend == deployment) {
                    for (k, v) in &r.sets {
                        let got = echo_header(&echo, k);
                        if got.as_deref() != Some(v) {
                            return Err(format!(
                                "{deployment} saw {k}: {got:?}, want {v:?} (its backendRef filter)"
                            ));
                        }
                    }
                }
                *counts.entry(deployment).or_default() += 1;
                total += 1;
            }
        }
        let sum: u64 = rule.iter().map(|r| r.weight).sum();
        let mut problems = Vec::new();
        for data::WeightedRef {
            backend, weight, ..
        } in rule
        {
            let got = counts.get(backend).copied().unwrap_or(0);
            let share = got as f64 / total as f64;
            let want = *weight as f64 / sum as f64;
            if (*weight == 0 && got > 0) || (share - want).abs() > WEIGHT_TOLERANCE {
                problems.push(format!("{backend} {share:.2} (want {want:.2})"));
            }
        }
        for (d, n) in &counts {
            if !rule.iter().any(|r| r.backend == *d) {
                problems.push(format!("{d} got {n} but is not in the rule"));
            }
        }
        if problems.is_empty() {
            println!("  {}: distribution over {total}: {counts:?}", case.id);
            Ok(())
        } else {
            Err(format!(
                "distribution over {total}: {}",
                problems.join(", ")
            ))
        }
    }

    /// One request checked in full, then many: the mirrored share must be within 3
    /// binomial standard deviations of the percentage.
    async fn percentage_mirror(&self, case: &Case, t: &Target, ip: &str) -> Result<(), String> {
        let one = data::Case {
            expect: data::Expect {
                mirrored_to: Vec::new(),
                ..case.expect.clone()
            },
            ..case.clone()
        };
        self.http_case(&one, t, ip).await?;
        let sent = sent_request(case, t, ip);
        let addr = Self::addr(t, ip);
        let mark = self.backends.mark();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..DISTRIBUTION_CONCURRENCY {
            let sent = sent.clone();
            let n = DISTRIBUTION_REQUESTS / DISTRIBUTION_CONCURRENCY;
            tasks.spawn(async move {
                for _ in 0..n {
                    let r = client::http1(
                        addr,
                        None,
                        &sent.method,
                        &sent.path,
                        &sent.host,
                        &sent.headers,
                    )
                    .await?;
                    if r.status != 200 {
                        return Err(format!("status {}", r.status));
                    }
                }
                Ok::<_, String>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
        for m in &case.expect.mirrored_to {
            let p = m.percent.unwrap_or(100.0) / 100.0;
            let count = || {
                self.backends
                    .since(mark)
                    .iter()
                    .filter(|s| {
                        self.deployment_of(&s.pod).starts_with(&m.backend)
                            && s.namespace == m.namespace
                            && s.path == sent.path
                    })
                    .count()
            };
            // Mirrors are sent asynchronously: wait until the count stops moving.
            let mut seen = count();
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = count();
                if now == seen || Instant::now() >= deadline {
                    seen = now;
                    break;
                }
                seen = now;
            }
            let n = DISTRIBUTION_REQUESTS as f64;
            let (mean, sd) = (n * p, (n * p * (1.0 - p)).sqrt());
            println!(
                "  {}: {} saw {seen} of {DISTRIBUTION_REQUESTS} mirrored (want {mean:.0} ± {:.0})",
                case.id,
                m.backend,
                3.0 * sd
            );
            if (seen as f64 - mean).abs() > 3.0 * sd {
                return Err(format!(
                    "{} saw {seen} of {DISTRIBUTION_REQUESTS} mirrored, want {mean:.0} ± {:.0}",
                    m.backend,
                    3.0 * sd
                ));
            }
        }
        Ok(())
    }

    async fn check_status(&self, target: &str, want: &str) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let st = common::status(self.server.admin).await;
            let r = status_matches(&st["gatewayApi"], target, want);
            if r.is_ok() || Instant::now() >= deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn ready_gateway(gateways: &BTreeMap<String, Gateway>, t: &Target) -> Result<String, String> {
    gateways
        .get(&t.gateway)
        .map(|g| g.ip.clone())
        .ok_or_else(|| format!("Gateway {} is not in the served config", t.gateway))
}

fn proxy_id(gateway: &str) -> String {
    let (ns, name) = gateway.split_once('/').expect("ns/name");
    format!("{name}.{ns}")
}

/// `(kind, namespace, name)` a group deletes: "... after deleting <Kind> <ns>/<name>".
fn deletion(group: &str) -> Option<(String, String, String)> {
    let rest = &group[group.find("after deleting ")? + "after deleting ".len()..];
    let mut words = rest.split_whitespace();
    let kind = words.next()?;
    let (ns, name) = words.next()?.split_once('/')?;
    Some((kind.into(), ns.into(), name.into()))
}

/// The Secrets HTTPS listeners reference, with the names a certificate for them needs: the
/// listeners' hostnames and every SNI the cases send.
fn secrets(suite: &Suite) -> BTreeMap<(String, String), Vec<String>> {
    let mut snis: Vec<String> = Vec::new();
    for t in &suite.tests {
        for c in &t.cases {
            snis.extend(c.request.tls_sni.clone());
            snis.extend(c.group.as_deref().and_then(sni_of_group));
        }
    }
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for gw in suite
        .base
        .iter()
        .chain(suite.tests.iter().flat_map(|t| t.objects.iter()))
        .filter(|o| data::kind(o) == "Gateway")
    {
        for l in gw["spec"]["listeners"].as_array().into_iter().flatten() {
            for r in l["tls"]["certificateRefs"].as_array().into_iter().flatten() {
                let ns = r["namespace"]
                    .as_str()
                    .unwrap_or(data::namespace(gw))
                    .to_owned();
                let name = r["name"].as_str().unwrap_or("").to_owned();
                let sans = out.entry((ns, name)).or_insert_with(|| snis.clone());
                sans.extend(l["hostname"].as_str().map(str::to_owned));
            }
        }
    }
    for sans in out.values_mut() {
        sans.sort();
        sans.dedup();
    }
    out
}

fn sni_of_group(group: &str) -> Option<String> {
    let i = group.find("SNI ")?;
    group[i + 4..]
        .split(|c: char| c == ')' || c == ',' || c.is_whitespace())
        .next()
        .map(str::to_owned)
}

/// Cases of tests the data describes only in their notes (see [`ADAPTATIONS`]): each a
/// request to infra-backend-v3 whose first `succeedAfter` attempts fail as `fail` says.
fn from_notes(test: &TestDef) -> Vec<Case> {
    let case = |path: &str, fail: &str, after: u32, want: &[u16]| {
        let path = format!("{path}?uuid={{uuid}}&{fail}&succeedAfter={after}");
        let ok = want == [200];
        Case {
            id: format!("{} {path}", test.short_name),
            group: None,
            request: data::Request {
                method: "GET".into(),
                path: Some(path.clone()),
                ..Default::default()
            },
            expect: Expect {
                status: want.to_vec(),
                backend_pod_prefix: ok.then(|| "infra-backend-v3".into()),
                namespace: ok.then(|| "gateway-conformance-infra".into()),
                backend_request: ok.then(|| data::BackendRequest {
                    method: Some("GET".into()),
                    path: Some(path),
                    ..Default::default()
                }),
                ..Default::default()
            },
            backend_set_response_headers: Vec::new(),
        }
    };
    match test.short_name.as_str() {
        // attempts 3, no codes: connection errors are retried.
        "HTTPRouteRetryConnectionError" => vec![
            case(
                "/retry/no-status-code-attempts-3",
                "failWith=reset",
                2,
                &[200],
            ),
            case(
                "/retry/no-status-code-attempts-3",
                "failWith=reset",
                4,
                &[500, 503],
            ),
        ],
        // backendRequest 200 ms per try; failing tries answer after 300 ms (timed out),
        // or after 100 ms against a 400 ms request timeout.
        "HTTPRouteRetryWithTimeouts" => vec![
            case(
                "/retry/backend-request-timeout-200ms",
                "responseCode=500&delayFailure=300ms",
                2,
                &[200],
            ),
            case(
                "/retry/backend-request-timeout-200ms",
                "responseCode=500&delayFailure=300ms",
                3,
                &[504],
            ),
            case(
                "/retry/request-timeout-200ms",
                "responseCode=500",
                1,
                &[200],
            ),
            case(
                "/retry/request-timeout-200ms",
                "responseCode=500&delayFailure=100ms",
                4,
                &[504],
            ),
        ],
        // The Go test dials a WebSocket through the Gateway to the Service port with
        // appProtocol kubernetes.io/ws and expects its message back.
        "HTTPRouteBackendProtocolWebSocket" => {
            let mut c = case("/", "", 0, &[101]);
            c.id = format!("{} WebSocket upgrade and echo", test.short_name);
            c.request.path = Some("/".into());
            c.request.websocket = Some("hello from the conformance harness".into());
            c.expect.backend_pod_prefix = Some("infra-backend-v1".into());
            c.expect.backend_request = None;
            vec![c]
        }
        _ => Vec::new(),
    }
}

/// Cases the data gives as Go expressions, expanded (see [`ADAPTATIONS`]).
fn expand(test: &TestDef, case: &Case) -> Vec<Case> {
    if test.short_name == "HTTPRouteHTTPSListenerDetectMisdirectedRequests" {
        let mut c = case.clone();
        let path = "/detect-misdirected-requests".to_owned();
        c.request.path = Some(path.clone());
        if let Some(b) = &mut c.expect.backend_request {
            b.path = Some(path);
        }
        return vec![c];
    }
    if case.request.path.is_some() {
        return vec![case.clone()];
    }
    let with_path = |suffix: &str, path: String, status: u16, backend: bool| {
        let mut c = case.clone();
        c.id = format!("{}{suffix}", case.id);
        c.request.path = Some(path.clone());
        c.expect.status = vec![status];
        if backend {
            if let Some(b) = &mut c.expect.backend_request {
                b.path = Some(path);
            }
        } else {
            c.expect.backend_pod_prefix = None;
            c.expect.namespace = None;
            c.expect.backend_request = None;
        }
        c
    };
    match test.short_name.as_str() {
        "HTTPRouteServiceTypes" => [
            "manual-endpointslices",
            "headless",
            "headless-manual-endpointslices",
        ]
        .iter()
        .map(|p| with_path(&format!(" /{p}"), format!("/{p}"), 200, true))
        .collect(),
        "HTTPRouteRetry" => {
            let mut out = Vec::new();
            let mut add = |path: &str, code: u16, after: u32, want: u16| {
                out.push(with_path(
                    &format!(" {path} ({code}, succeedAfter {after})"),
                    format!("{path}?uuid={{uuid}}&responseCode={code}&succeedAfter={after}"),
                    want,
                    want == 200,
                ));
            };
            add("/retry/code-500-attempts-3", 500, 2, 200);
            add("/retry/code-500-attempts-3", 500, 4, 500);
            add("/retry/code-500-attempts-3", 503, 2, 503);
            for c in [500, 502, 503, 504] {
                add("/retry/code-all-attempts-2", c, 1, 200);
                add("/retry/code-all-attempts-2", c, 3, c);
            }
            out
        }
        _ => {
            let mut c = case.clone();
            c.request.path = Some("/".into());
            c.expect.status = Vec::new();
            vec![c]
        }
    }
}

fn status_checks(test: &TestDef) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    STATUS_CHECKS
        .iter()
        .filter(|(t, _, _)| *t == test.short_name)
        .map(|(_, target, want)| (*target, *want))
}

/// The Gateway a case goes to, on which port, with which scheme.
fn target(test: &TestDef, case: &Case, gateways: &[Value]) -> Result<Target, String> {
    let find_named = |text: &str| {
        text.split(|c: char| c.is_whitespace() || "(),".contains(c))
            .filter_map(|w| w.split_once('/'))
            .find_map(|(ns, name)| {
                gateways
                    .iter()
                    .find(|g| data::namespace(g) == ns && data::name(g) == name)
            })
    };
    let group = case.group.as_deref().unwrap_or("");
    let https = case.request.tls_sni.is_some() || group.contains("HTTPS");
    let protocol = if https { "HTTPS" } else { "HTTP" };
    let by_parents = || {
        test.objects
            .iter()
            .flat_map(data::parent_gateways)
            .filter_map(|(ns, name)| {
                gateways
                    .iter()
                    .find(|g| data::namespace(g) == ns && data::name(g) == name)
            })
            .find(|g| data::listeners(g).iter().any(|l| l.protocol == protocol))
    };
    let gw = find_named(group)
        .or_else(|| test.gateway.as_deref().and_then(find_named))
        .or_else(by_parents)
        .ok_or_else(|| format!("no Gateway found for the case (group {group:?})"))?;
    let listeners = data::listeners(gw);
    let host_port = case
        .request
        .host
        .as_deref()
        .and_then(|h| h.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let group_port = group
        .split(|c: char| c.is_whitespace() || "(),".contains(c))
        .find_map(|w| w.strip_prefix(':'))
        .and_then(|p| p.parse::<u16>().ok());
    let port = group_port
        .or_else(|| {
            host_port.filter(|p| {
                listeners
                    .iter()
                    .any(|l| l.port == *p && l.protocol == protocol)
            })
        })
        .or_else(|| {
            listeners
                .iter()
                .find(|l| l.protocol == protocol)
                .map(|l| l.port)
        })
        .ok_or_else(|| {
            format!(
                "Gateway {}/{} has no {protocol} listener",
                data::namespace(gw),
                data::name(gw)
            )
        })?;
    Ok(Target {
        gateway: format!("{}/{}", data::namespace(gw), data::name(gw)),
        https,
        sni: case.request.tls_sni.clone().or_else(|| sni_of_group(group)),
        port,
    })
}

/// What the harness sends for a case (Host filled in, `{uuid}` replaced).
#[derive(Clone, Debug)]
struct Sent {
    method: String,
    path: String,
    host: String,
    host_given: bool,
    headers: Vec<(String, String)>,
    uuid: String,
}

fn sent_request(case: &Case, t: &Target, ip: &str) -> Sent {
    let default_port = if t.https { 443 } else { 80 };
    let default_host = if t.port == default_port {
        ip.to_owned()
    } else {
        format!("{ip}:{}", t.port)
    };
    let uuid = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    Sent {
        method: case.request.method.clone(),
        path: case
            .request
            .path
            .clone()
            .unwrap_or_else(|| "/".into())
            .replace("{uuid}", &uuid),
        host: case.request.host.clone().unwrap_or(default_host),
        host_given: case.request.host.is_some(),
        headers: case.request.headers.clone(),
        uuid,
    }
}

/// All values of header `name` the echo backend saw, joined with ",".
fn echo_header(echo: &Value, name: &str) -> Option<String> {
    let v = echo["headers"].get(name.to_ascii_lowercase())?.as_array()?;
    Some(
        v.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn status_ok(want: &[u16], got: u16) -> bool {
    // 408 and 504 are both a timeout (the Go suite's IsTimeoutError).
    let timeout = |s: u16| s == 408 || s == 504;
    want.iter()
        .any(|w| *w == got || (timeout(*w) && timeout(got)))
}

/// Compares a response with what a case expects (the `defaults:` block of cases.yaml).
fn check_response(
    e: &Expect,
    sent: &Sent,
    resp: &client::Response,
    scheme: &str,
) -> Result<(), String> {
    if e.status.is_empty() {
        return Err("the request is a Go expression this harness cannot expand".into());
    }
    if !status_ok(&e.status, resp.status) {
        let body = String::from_utf8_lossy(&resp.body);
        let who = match resp.echo() {
            Some(echo) => format!("from {}", echo["pod"].as_str().unwrap_or("?")),
            None => format!("{:?}", shorten(body.trim(), 60)),
        };
        return Err(format!("status {} {who}, want {:?}", resp.status, e.status));
    }
    if let Some(loc) = &e.redirect_location {
        check_location(loc, resp.header("location").as_deref(), scheme)?;
    }
    let prefix = e.backend_pod_prefix.as_deref().unwrap_or("");
    let ns = e.namespace.as_deref().unwrap_or("");
    let want_backend = !(prefix.is_empty() && ns.is_empty());
    if want_backend && (resp.status == 200 || e.backend_request.is_some()) {
        let echo = resp
            .echo()
            .ok_or_else(|| "the response did not come from an echo backend".to_string())?;
        let pod = echo["pod"].as_str().unwrap_or("");
        if !pod.starts_with(prefix) {
            return Err(format!("answered by {pod}, want {prefix}*"));
        }
        if echo["namespace"] != ns {
            return Err(format!(
                "answered from namespace {}, want {ns}",
                echo["namespace"]
            ));
        }
        check_backend_request(e.backend_request.as_ref(), sent, &echo)?;
    }
    for (k, v) in &e.response_headers {
        let got = resp.header(k);
        if got.as_deref() != Some(v) {
            return Err(format!("response header {k}: {got:?}, want {v:?}"));
        }
    }
    for k in &e.response_absent_headers {
        if let Some(got) = resp.header(k) {
            return Err(format!("response header {k}: {got:?}, want none"));
        }
    }
    for (k, options) in &e.response_header_one_of {
        let got = resp.header(k);
        if !got.as_ref().is_some_and(|g| options.contains(g)) {
            return Err(format!(
                "response header {k}: {got:?}, want one of {options:?}"
            ));
        }
    }
    Ok(())
}

fn check_backend_request(
    want: Option<&data::BackendRequest>,
    sent: &Sent,
    echo: &Value,
) -> Result<(), String> {
    let got_method = echo["method"].as_str().unwrap_or("");
    let got_path = echo["path"].as_str().unwrap_or("");
    let got_host = echo["host"].as_str().unwrap_or("");
    let (method, path, host, headers, absent) = match want {
        Some(b) => (
            b.method.clone().filter(|m| !m.is_empty()),
            b.path
                .clone()
                .filter(|p| !p.is_empty())
                .map(|p| p.replace("{uuid}", &sent.uuid)),
            b.host.clone(),
            b.headers.clone(),
            b.absent_headers.clone(),
        ),
        // Absent: the backend saw exactly what was sent.
        None => (
            Some(sent.method.clone()),
            Some(sent.path.clone()),
            sent.host_given.then(|| sent.host.clone()),
            sent.headers.clone(),
            Vec::new(),
        ),
    };
    if let Some(m) = method
        && m != got_method
    {
        return Err(format!("backend saw method {got_method}, want {m}"));
    }
    if let Some(p) = path
        && p != got_path
    {
        return Err(format!("backend saw path {got_path}, want {p}"));
    }
    if let Some(h) = host
        && h != got_host
    {
        return Err(format!("backend saw Host {got_host}, want {h}"));
    }
    for (k, v) in &headers {
        let got = echo_header(echo, k);
        if got.as_deref() != Some(v) {
            return Err(format!("backend saw {k}: {got:?}, want {v:?}"));
        }
    }
    for k in &absent {
        if let Some(got) = echo_header(echo, k) {
            return Err(format!("backend saw {k}: {got:?}, want none"));
        }
    }
    Ok(())
}

/// `(scheme, host, port, path)` of a Location (absolute or not).
fn split_location(loc: &str) -> (String, String, String, String) {
    let (scheme, rest) = loc.split_once("://").unwrap_or(("", loc));
    let (authority, path) = if scheme.is_empty() {
        ("", rest)
    } else {
        rest.find('/')
            .map(|i| (&rest[..i], &rest[i..]))
            .unwrap_or((rest, ""))
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ => (authority, ""),
    };
    let path = path.split('?').next().unwrap_or("");
    (scheme.into(), host.into(), port.into(), path.into())
}

fn check_location(want: &data::Location, got: Option<&str>, scheme: &str) -> Result<(), String> {
    let got = got.ok_or("no Location header")?;
    let (g_scheme, g_host, g_port, g_path) = split_location(got);
    let w_scheme = match want.scheme.as_deref() {
        None | Some("<request scheme>") => scheme,
        Some(s) => s,
    };
    if g_scheme != w_scheme {
        return Err(format!(
            "Location {got}: scheme {g_scheme:?}, want {w_scheme}"
        ));
    }
    if let Some(h) = want.host.as_deref().filter(|h| *h != "<not checked>")
        && g_host != h
    {
        return Err(format!("Location {got}: host {g_host:?}, want {h}"));
    }
    let well_known = if w_scheme == "https" { "443" } else { "80" };
    match want.port.as_deref() {
        None | Some("<empty or well-known for scheme>") => {
            if !(g_port.is_empty() || g_port == well_known) {
                return Err(format!(
                    "Location {got}: port {g_port:?}, want none or {well_known}"
                ));
            }
        }
        Some(p) if g_port != p => {
            return Err(format!("Location {got}: port {g_port:?}, want {p}"));
        }
        Some(_) => {}
    }
    if let Some(p) = &want.path
        && g_path != *p
    {
        return Err(format!("Location {got}: path {g_path:?}, want {p}"));
    }
    Ok(())
}

fn check_grpc(e: &Expect, r: &client::GrpcResult) -> Result<(), String> {
    let name = e.grpc_code.as_deref().unwrap_or("OK");
    let want = client::grpc_code(name).ok_or_else(|| format!("unknown gRPC code {name}"))?;
    if r.code != want {
        return Err(format!(
            "grpc-status {} ({}), want {want} ({name})",
            r.code,
            r.message.as_deref().unwrap_or("")
        ));
    }
    let prefix = e.backend_pod_prefix.as_deref().unwrap_or("");
    let ns = e.namespace.as_deref().unwrap_or("");
    if want == 0 && !(prefix.is_empty() && ns.is_empty()) {
        let echo = r
            .echo
            .as_ref()
            .ok_or("no echo message in the gRPC response")?;
        let pod = echo["pod"].as_str().unwrap_or("");
        if !pod.starts_with(prefix) || echo["namespace"] != ns {
            return Err(format!(
                "answered by {pod} in {}, want {prefix}* in {ns}",
                echo["namespace"]
            ));
        }
    }
    Ok(())
}

/// Checks one STATUS_CHECKS entry against `/status` `gatewayApi`.
fn status_matches(api: &Value, target: &str, want: &str) -> Result<(), String> {
    if api.is_null() {
        return Err("/status has no gatewayApi".into());
    }
    let mut words = target.split_whitespace();
    let kind = words.next().unwrap_or("");
    let (ns, name) = words
        .next()
        .and_then(|w| w.split_once('/'))
        .unwrap_or(("", ""));
    let (want_key, want_value) = want.split_once('=').unwrap_or((want, ""));
    if kind == "Gateway" {
        let listener = words.nth(1).unwrap_or("");
        let gw = api["gateways"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["namespace"] == ns && g["name"] == name)
            .ok_or_else(|| format!("no Gateway {ns}/{name} in gatewayApi"))?;
        let l = gw["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == listener)
            .ok_or_else(|| format!("Gateway {ns}/{name} has no listener {listener}"))?;
        let got = l[want_key].to_string();
        return if got == want_value {
            Ok(())
        } else {
            Err(format!(
                "listener {listener} {want_key} {got}, want {want_value}"
            ))
        };
    }
    let parent = words.nth(1).unwrap_or("");
    let route = api["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == kind && r["namespace"] == ns && r["name"] == name)
        .ok_or_else(|| format!("no {kind} {ns}/{name} in gatewayApi"))?;
    let p = route["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["parentRef"]["name"] == parent)
        .ok_or_else(|| format!("{kind} {ns}/{name} has no parent {parent}"))?;
    let (status, reason) = want_value.split_once('/').unwrap_or((want_value, ""));
    let c = p["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == want_key)
        .ok_or_else(|| format!("{name} -> {parent}: no {want_key} condition"))?;
    if c["status"] != status || (!reason.is_empty() && c["reason"] != reason) {
        return Err(format!(
            "{name} -> {parent}: {want_key}={}/{} ({}), want {want_value}",
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or("?"),
            c["message"].as_str().unwrap_or("")
        ));
    }
    Ok(())
}

// === checks of the harness' own logic (no Envoy needed) ===

#[test]
fn locations_split_and_compare_as_the_defaults_say() {
    assert_eq!(
        split_location("https://example.org:8443/p?q=1"),
        (
            "https".into(),
            "example.org".into(),
            "8443".into(),
            "/p".into()
        )
    );
    assert_eq!(
        split_location("http://example.org/x"),
        ("http".into(), "example.org".into(), "".into(), "/x".into())
    );
    let want = data::Location {
        scheme: Some("<request scheme>".into()),
        host: Some("<not checked>".into()),
        port: Some("<empty or well-known for scheme>".into()),
        path: Some("/x".into()),
    };
    assert!(check_location(&want, Some("http://a:80/x"), "http").is_ok());
    assert!(check_location(&want, Some("http://a/x"), "http").is_ok());
    assert!(check_location(&want, Some("http://a:8080/x"), "http").is_err());
    assert!(check_location(&want, Some("https://a/x"), "http").is_err());
    let https = data::Location {
        scheme: Some("https".into()),
        ..want.clone()
    };
    assert!(check_location(&https, Some("https://a:443/x"), "http").is_ok());
    assert!(check_location(&https, Some("https://a:80/x"), "http").is_err());
}

#[test]
fn statuses_groups_and_deletions() {
    assert!(status_ok(&[504], 408));
    assert!(status_ok(&[408], 504));
    assert!(!status_ok(&[200], 404));
    assert_eq!(
        deletion(
            "phase 2: after deleting ReferenceGrant gateway-conformance-web-backend/reference-grant"
        ),
        Some((
            "ReferenceGrant".into(),
            "gateway-conformance-web-backend".into(),
            "reference-grant".into()
        ))
    );
    assert_eq!(deletion("phase 1: ReferenceGrant present"), None);
    assert_eq!(
        sni_of_group("gateway-conformance-infra/x (HTTPS :443, SNI example.org)").as_deref(),
        Some("example.org")
    );
}

#[test]
fn a_response_is_compared_with_the_defaults() {
    let sent = Sent {
        method: "GET".into(),
        path: "/a?b=1".into(),
        host: "example.com".into(),
        host_given: true,
        headers: vec![("Version".into(), "one".into())],
        uuid: String::new(),
    };
    let echo = serde_json::json!({"pod": "infra-backend-v1-pod", "namespace": "ns", "method": "GET",
        "path": "/a?b=1", "host": "example.com", "headers": {"version": ["one"], "x-add": ["a", "b"]}});
    let resp = client::Response {
        status: 200,
        headers: vec![("x-r".into(), "1".into()), ("x-r".into(), "2".into())],
        body: echo.to_string().into_bytes(),
    };
    let mut e = Expect {
        status: vec![200],
        backend_pod_prefix: Some("infra-backend-v1".into()),
        namespace: Some("ns".into()),
        response_headers: vec![("X-R".into(), "1,2".into())],
        ..Expect::default()
    };
    assert_eq!(check_response(&e, &sent, &resp, "http"), Ok(()));
    e.backend_request = Some(data::BackendRequest {
        headers: vec![("X-Add".into(), "a,b".into())],
        absent_headers: vec!["x-gone".into()],
        ..Default::default()
    });
    assert_eq!(check_response(&e, &sent, &resp, "http"), Ok(()));
    e.backend_pod_prefix = Some("infra-backend-v2".into());
    assert!(check_response(&e, &sent, &resp, "http").is_err());
    e.backend_pod_prefix = Some("infra-backend-v1".into());
    let mut other = sent.clone();
    other.headers.push(("X-Missing".into(), "v".into()));
    e.backend_request = None;
    assert!(
        check_response(&e, &other, &resp, "http")
            .unwrap_err()
            .contains("X-Missing")
    );
}

#[test]
fn status_checks_read_the_gateway_api_shape() {
    let api = serde_json::json!({
        "gateways": [{"namespace": "ns", "name": "gw", "listeners": [{"name": "http", "attachedRoutes": 0}]}],
        "routes": [{"kind": "HTTPRoute", "namespace": "ns", "name": "r", "parents": [
            {"parentRef": {"name": "gw"}, "conditions": [
                {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": "m"},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}]}]}]
    });
    assert_eq!(
        status_matches(
            &api,
            "HTTPRoute ns/r -> gw",
            "Accepted=False/NotAllowedByListeners"
        ),
        Ok(())
    );
    assert_eq!(
        status_matches(&api, "HTTPRoute ns/r -> gw", "ResolvedRefs=True"),
        Ok(())
    );
    assert!(status_matches(&api, "HTTPRoute ns/r -> gw", "Accepted=True").is_err());
    assert_eq!(
        status_matches(&api, "Gateway ns/gw listener http", "attachedRoutes=0"),
        Ok(())
    );
    assert!(status_matches(&api, "Gateway ns/gw listener http", "attachedRoutes=1").is_err());
    assert!(status_matches(&Value::Null, "HTTPRoute ns/r -> gw", "Accepted=True").is_err());
}

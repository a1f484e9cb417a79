//! Gateway API conformance for TLS, TCP and UDP routes, the Gateway-level and the
//! ListenerSet tests: the cases of `cases-l4-mesh.yaml` (`../shared/conformance`, or
//! `$TIDEGATE_CONFORMANCE_DIR`) through tidegate and real Envoys, without a cluster.
//!
//! As tests/conformance.rs: one server follows one repository; the shared objects are
//! `resources/base.yaml`; each test's manifests are `resources/test.yaml` in a new commit,
//! and each phase of a test (objects the Go code applies, patches or deletes mid-test) is
//! another commit. Every Gateway a request names gets its own Envoy on its own loopback
//! address, on the manifest's ports (TCP and UDP). Backends are the suite's echo pods on
//! loopback ports the OS picks: the TCP echo dialogue (plain, and TLS with the pod's own
//! certificate), UDP echo, a DNS answer, HTTP(S) echo. The certificates the suite makes in
//! Go at setup are made here at start (`source.generated_at_setup`) and handed to `serve`
//! as `--certs`. Status expectations are polled on `/status` → `gatewayApi`.
//!
//! The result is a table per profile (`target/conformance-l4.md`), counting the tests of
//! `cases.yaml` from `target/conformance.md` when present (cargo runs the `conformance`
//! test binary before this one). The test fails when a Core test fails, when an Extended
//! test fails without being listed in [`KNOWN_GAPS`], or when a listed test passes.

mod common;

#[allow(dead_code)]
#[path = "conformance/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "conformance/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "conformance/echo.rs"]
mod echo;
#[allow(dead_code)]
#[path = "conformance/http1.rs"]
mod http1;
#[path = "conformance/l4_client.rs"]
mod l4_client;
#[path = "conformance/l4_data.rs"]
mod l4_data;
#[path = "conformance/l4_echo.rs"]
mod l4_echo;
#[path = "conformance/outcome.rs"]
mod outcome;
#[path = "conformance/status.rs"]
mod status;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::test_helpers::{Envoy, TempRepo, free_port};
use tidegate::xds::bootstrap::{Options, bootstrap};
use tidegate::xds::emit::Variant;

use l4_client::{ConnectError, Trust};
use l4_data::{DataValue, L4Test, Step, s, strings};
use l4_echo::{Identity, ServerCert};
use outcome::{
    Row, committed, deployment_of, distribution_problems, envoy_complaint, labels_match, lookup,
    pod_name, shorten, verdict, yaml_of,
};
use status::Check;

/// Extended tests expected to fail, each with why. A listed test that passes fails the run
/// until it is removed from here.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// Features tidegate claims (the suite's `SupportedFeatures`), for `runs_only_if`.
const CLAIMED: &[&str] = &[
    "SupportGateway",
    "SupportGatewayPort8080",
    "SupportHTTPRoute",
    "SupportGRPCRoute",
    "SupportReferenceGrant",
    "SupportTLSRoute",
    "SupportTLSRouteModeTerminate",
    "SupportTLSRouteModeMixed",
    "SupportTCPRoute",
    "SupportUDPRoute",
    "SupportListenerSet",
    "SupportBackendTLSPolicy",
    "SupportBackendTLSPolicySANValidation",
    "SupportGatewayBackendClientCertificate",
    "SupportGatewayFrontendClientCertificateValidation",
    "SupportGatewayFrontendClientCertificateValidationInsecureFallback",
];

/// Tests of cases-l4-mesh.yaml not run here, and why (reported, never counted as passed).
fn not_run(t: &L4Test) -> Option<String> {
    let n = t.short_name.as_str();
    if n.starts_with("Mesh") {
        return Some("run by tests/conformance_mesh.rs".into());
    }
    if t.features
        .iter()
        .any(|f| f == "SupportGatewayInfrastructurePropagation")
    {
        return Some("cluster-only".into());
    }
    for (key, want_claimed) in [("supported", true), ("unsupported", false)] {
        for f in strings(&t.runs_only_if[key]) {
            if CLAIMED.contains(&f.as_str()) != want_claimed {
                return Some(format!(
                    "returns early unless {f} is {}; tidegate {} it",
                    if want_claimed { "claimed" } else { "unclaimed" },
                    if want_claimed {
                        "does not claim"
                    } else {
                        "claims"
                    }
                ));
            }
        }
    }
    None
}

/// Where a case was adapted to running without a cluster, and why.
const ADAPTATIONS: &[(&str, &str)] = &[
    (
        "each Gateway listens on its own loopback address (127.0.0.2, .3, …) on the manifest's ports, TCP and UDP",
        "no load balancer addresses without a cluster",
    ),
    (
        "`status.addresses` non-empty: holds when tidegate serves a proxy configuration for the Gateway (the Envoy address the harness dials is its address)",
        "tidegate has no status.addresses",
    ),
    (
        "conditionsObservedGeneration and metadata.generation expectations are checked only when /status gives the object a `generation` (and its conditions `observedGeneration`); else not checked (a case of only those is not run, a test of only those is not run)",
        "objects read from Git have no metadata.generation",
    ),
    (
        "generated certificates use ECDSA P-256 keys (the suite: RSA 2048); \"self-signed\" leaves are issued by a throwaway CA, and a client trusting such a leaf pins exactly that certificate (and checks its chain and name)",
        "rcgen with ring cannot generate RSA keys; rustls does not take an end-entity certificate as a root",
    ),
    (
        "pods are `<deployment>-6b7f9c-p0`, one per Deployment; Services reach tidegate through the endpoints file only",
        "Deployment-style names for the distribution checks; there is no cluster to hold Services",
    ),
    (
        "NamespacesMustBeReady is a case of its own (the Gateways of those namespaces, except annotated ones, Accepted=True and Programmed=True; pods are the harness' own); alone it never makes a test pass",
        "the suite's precondition, kept visible",
    ),
    (
        "the DNS backend answers every query with one A record",
        "the suite accepts any DNS answer",
    ),
    (
        "distributions: as written (samples, concurrency, tolerance), at most 3 attempts (the data: up to 10)",
        "CI time; a correct implementation passes the first",
    ),
    (
        "HTTP(S) and gRPC echo pods with a certificate terminate TLS themselves (ALPN h2, http/1.1) and echo the SNI and peer certificates as echo-basic does; with TLS_CLIENT_CACERTS they verify a client certificate when one is given; `backend_request.client_cert` is compared as DER",
        "to check `backend_request.sni` and `.client_cert`; PEM line breaks are not the certificate",
    ),
    (
        "a client pinning a leaf (`Secret …[tls.crt]` trust) matches its names as Go's crypto/x509 does (`*.org` covers `example.org`)",
        "webpki refuses a wildcard over a single label; the suite's Go client accepts it",
    ),
    (
        "client certificates have no SAN and no extended key usage (the suite: ExtKeyUsage ClientAuth)",
        "the test CA issues leaves for any use",
    ),
    (
        "cases that expect a failure (request_fails, status_not, grpc_code_not) also require that no echo pod saw the request",
        "issue 17: a backend whose certificate does not match is refused by Envoy, never reached",
    ),
];

/// How long a failing case is retried after a config change (the suite also waits for
/// eventual consistency): an acknowledged listener may still be warming, and CI machines
/// are shared.
const SETTLE: Duration = Duration::from_secs(5);
const MAX_DISTRIBUTION_ATTEMPTS: u64 = 3;
/// The `expect` fields the harness checks (or, for `*_NOT_CHECKED_BY_SUITE`, `note`,
/// `tls_server_cert`'s prose, reads as documented).
const KNOWN_EXPECT: &[&str] = &[
    "status_conditions",
    "status_fields",
    "status",
    "namespace",
    "backend_pod_prefix",
    "backend_request",
    "tls_server_cert",
    "backend_is_tls",
    "backend_sni",
    "connection_rejected",
    "udp_service",
    "udp_reply",
    "dns_response",
    "tcp_connect",
    "tcp_echo_reply",
    "distribution",
    "distribution_tolerance",
    "distribution_attempts",
    "all_samples_backend_pod_prefix",
    "all_samples_backend",
    "request_fails",
    "client_cert_requested",
    "status_not",
    "grpc_code",
    "grpc_code_not",
    "note",
];
/// The `request` fields the harness sends by.
const KNOWN_REQUEST: &[&str] = &[
    "protocol",
    "gateway",
    "listener",
    "port",
    "method",
    "path",
    "host",
    "tls_sni",
    "trust",
    "send",
    "samples",
    "concurrency",
    "dns_query",
    "client_cert",
    "grpc_method",
    "authority",
];
/// The id of the suite's NamespacesMustBeReady check, reported as a case.
const PRECONDITION: &str = "NamespacesMustBeReady";
/// Profiles reported.
const PROFILES: &[&str] = &[
    "GATEWAY-HTTP",
    "GATEWAY-GRPC",
    "GATEWAY-TLS",
    "GATEWAY-TCP",
    "GATEWAY-UDP",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_conformance_l4() {
    let Some((dir, envoy_bin)) = common::conformance_inputs("cases-l4-mesh.yaml") else {
        return;
    };
    let started = Instant::now();
    let tests = l4_data::load(&dir);
    let base = data::parse_docs(
        &std::fs::read_to_string(dir.join("base-manifests.yaml")).expect("base-manifests.yaml"),
        "base-manifests.yaml",
    );
    let only = std::env::var("TIDEGATE_L4_ONLY").ok();
    let run: Vec<&L4Test> = tests
        .iter()
        .filter(|t| not_run(t).is_none())
        .filter(|t| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n == t.short_name))
        })
        .collect();
    let mut h = Harness::start(&base, &run, envoy_bin).await;

    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for t in &tests {
        if let Some(why) = not_run(t) {
            rows.insert(t.short_name.clone(), Row::not_run(t.core, why));
        }
    }
    for t in &run {
        let t0 = Instant::now();
        let outcomes = h.run_test(t).await;
        let row = Row::of(t.core, &outcomes, PRECONDITION);
        println!(
            "{}: {}/{} in {:.1?}",
            t.short_name,
            row.passed,
            row.total,
            t0.elapsed()
        );
        for (id, c) in &outcomes {
            match c {
                Check::Fail(e) => println!("FAIL {} {id}: {e}", t.short_name),
                Check::Skip(e) => println!("skip {} {id}: {e}", t.short_name),
                Check::Pass => {}
            }
        }
        rows.insert(t.short_name.clone(), row);
    }
    drop(h);

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::manifest_dir().join("target"));
    let previous = std::fs::read_to_string(target.join("conformance.md")).ok();
    let inventory = l4_data::inventory(&dir);
    let report = report(&rows, &inventory, previous.as_deref(), started.elapsed());
    println!("{report}");
    std::fs::create_dir_all(&target).expect("create target dir");
    std::fs::write(target.join("conformance-l4.md"), &report).expect("write conformance-l4.md");

    if only.is_none() {
        let problems = verdict(&rows, KNOWN_GAPS);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

// === the report and the verdict ===

/// One test's line in a profile table: (core, passed, total, notes, counts as passed).
fn line(
    name: &str,
    inv: &l4_data::Inventory,
    rows: &BTreeMap<String, Row>,
    previous: &BTreeMap<String, (usize, usize, String)>,
    have_previous: bool,
) -> (usize, usize, String, bool) {
    if let Some(r) = rows.get(name) {
        let mut notes = Vec::new();
        if let Some(w) = &r.not_run {
            notes.push(format!("not run: {w}"));
        }
        if let Some(w) = lookup(KNOWN_GAPS, name) {
            notes.push(format!("known gap: {w}"));
        }
        if r.skipped > 0 {
            notes.push(format!("{} case(s) not checkable here", r.skipped));
        }
        if let Some(f) = &r.first_failure {
            notes.push(shorten(f, 140));
        }
        return (r.passed, r.total, notes.join("; "), r.passes());
    }
    if inv.in_cases {
        return match previous.get(name) {
            Some((p, t, n)) => (
                *p,
                *t,
                format!(
                    "cases.yaml (target/conformance.md){}",
                    if n.is_empty() {
                        String::new()
                    } else {
                        format!(": {n}")
                    }
                ),
                *t > 0 && p == t,
            ),
            None => (
                0,
                0,
                if have_previous {
                    "cases.yaml: not in target/conformance.md".into()
                } else {
                    "cases.yaml: run tests/conformance.rs first (no target/conformance.md)".into()
                },
                false,
            ),
        };
    }
    (0, 0, "not extracted (cluster-only)".into(), false)
}

fn report(
    rows: &BTreeMap<String, Row>,
    inventory: &[l4_data::Inventory],
    previous: Option<&str>,
    took: Duration,
) -> String {
    let prev = previous.map(l4_data::conformance_md).unwrap_or_default();
    let mut out = String::from("# Gateway API conformance: profiles\n\n");
    let _ = writeln!(
        out,
        "cases-l4-mesh.yaml run here in {took:.0?}; cases.yaml tests {}.\n",
        if previous.is_some() {
            "as target/conformance.md (tests/conformance.rs) reported them"
        } else {
            "not counted (no target/conformance.md)"
        }
    );
    for profile in PROFILES {
        let tests: Vec<&l4_data::Inventory> = inventory
            .iter()
            .filter(|i| i.profiles.iter().any(|p| p == profile))
            .collect();
        let mut body = String::new();
        let mut counts = [[0usize; 3]; 2]; // [core, extended] × [passed, total, not run]
        for inv in &tests {
            let (p, t, notes, ok) = line(&inv.short_name, inv, rows, &prev, previous.is_some());
            let k = usize::from(!inv.core);
            counts[k][1] += 1;
            counts[k][0] += usize::from(ok);
            counts[k][2] += usize::from(t == 0);
            let _ = writeln!(
                body,
                "| {} | {} | {p}/{t} | {notes} |",
                inv.short_name,
                if inv.core { "Core" } else { "Extended" }
            );
        }
        let _ = writeln!(
            out,
            "## {profile}\n\nCore: {}/{} tests pass ({} not run); Extended: {}/{} tests pass ({} not run).\n",
            counts[0][0], counts[0][1], counts[0][2], counts[1][0], counts[1][1], counts[1][2]
        );
        out.push_str("| ShortName | Core/Extended | passed/total | notes |\n|---|---|---|---|\n");
        out.push_str(&body);
        out.push('\n');
    }
    out.push_str("## Adaptations\n\n");
    for (what, why) in ADAPTATIONS {
        let _ = writeln!(out, "- {what} — {why}");
    }
    out
}

// === certificates (source.generated_at_setup) ===

/// A Secret's certificate and key, and the CA that issued it.
#[derive(Clone)]
struct Issued {
    cert: ServerCert,
    issuer_pem: String,
}

struct Certs {
    secrets: BTreeMap<(String, String), Issued>,
    /// ConfigMaps holding a CA (`ca.crt`).
    cas: BTreeMap<(String, String), String>,
    _pkis: Vec<Pki>,
}

const INFRA: &str = "gateway-conformance-infra";

impl Certs {
    /// The certificates the suite generates at setup, written as
    /// `secrets/<ns>/<name>/tls.{crt,key}` under `dir` with the Secrets the manifests hold;
    /// the CAs are ConfigMaps ([`Certs::config_maps`]).
    fn generate(dir: &Path, manifest_secrets: &[&Value]) -> Self {
        let ca_a = Pki::new();
        let ca_b = Pki::new();
        let ca_c = Pki::new();
        let ca_d = Pki::new();
        let unrelated = Pki::new();
        let self_signed_1 = Pki::new();
        let self_signed_2 = Pki::new();
        let mut secrets = BTreeMap::new();
        let mut issue = |pki: &Pki, ns: &str, name: &str, sans| {
            let (_, _, cert_pem, key_pem) = pki.issue(name, sans);
            let d = dir.join("secrets").join(ns).join(name);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("tls.key"), &key_pem).expect("write key");
            std::fs::write(d.join("tls.crt"), &cert_pem).expect("write cert");
            secrets.insert(
                (ns.to_owned(), name.to_owned()),
                Issued {
                    cert: ServerCert { cert_pem, key_pem },
                    issuer_pem: pki.ca_pem.clone(),
                },
            );
        };
        issue(
            &self_signed_1,
            "gateway-conformance-web-backend",
            "certificate",
            vec![uri("*")],
        );
        issue(
            &self_signed_2,
            INFRA,
            "tls-validity-checks-certificate",
            vec![uri("*"), dns("*.org"), dns("*.wildcard.org")],
        );
        issue(
            &ca_c,
            INFRA,
            "tls-checks-certificate",
            vec![
                dns("abc.example.com"),
                dns("other.example.com"),
                uri("spiffe://abc.example.com/test-identity"),
            ],
        );
        for ns in [INFRA, "gateway-conformance-app-backend"] {
            issue(
                &ca_c,
                ns,
                "tls-passthrough-checks-certificate",
                vec![dns("abc.example.com")],
            );
        }
        issue(
            &ca_c,
            INFRA,
            "tls-terminate-checks-certificate",
            vec![dns("tls.example.com")],
        );
        // Client certificates (no SAN), each from its CA.
        issue(
            &ca_a,
            INFRA,
            "tls-validity-checks-client-certificate",
            vec![],
        );
        issue(
            &ca_b,
            INFRA,
            "tls-validity-checks-per-port-client-certificate",
            vec![],
        );
        issue(&ca_c, INFRA, "tls-checks-client-certificate", vec![]);
        // Secrets of the manifests (e.g. a malformed certificate) as they are.
        for o in manifest_secrets {
            let d = dir
                .join("secrets")
                .join(data::namespace(o))
                .join(data::name(o));
            std::fs::create_dir_all(&d).expect("mkdir");
            for (k, v) in o["data"].as_object().into_iter().flatten() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or(""))
                    .unwrap_or_default();
                std::fs::write(d.join(k), bytes).expect("write secret");
            }
        }
        let mut cas = BTreeMap::new();
        for (ns, name, pki) in [
            (INFRA, "tls-validity-checks-ca-certificate", &ca_a),
            (INFRA, "tls-validity-checks-per-port-ca-certificate", &ca_b),
            (INFRA, "tls-checks-ca-certificate", &ca_c),
            (INFRA, "mismatch-ca-certificate", &ca_d),
            (
                "gateway-conformance-web-backend",
                "web-backend-cm",
                &unrelated,
            ),
        ] {
            cas.insert((ns.to_owned(), name.to_owned()), pki.ca_pem.clone());
        }
        Certs {
            secrets,
            cas,
            _pkis: vec![
                ca_a,
                ca_b,
                ca_c,
                ca_d,
                unrelated,
                self_signed_1,
                self_signed_2,
            ],
        }
    }

    /// The generated CAs as the ConfigMaps the suite creates (`data: {ca.crt: PEM}`).
    fn config_maps(&self) -> Vec<Value> {
        self.cas
            .iter()
            .map(|((ns, name), pem)| {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns},
                    "data": {"ca.crt": pem},
                })
            })
            .collect()
    }

    /// `Secret ns/name…` (a client certificate's Secret) → its certificate and key.
    fn secret(&self, text: &str) -> Option<&Issued> {
        let (ns, rest) = text.strip_prefix("Secret ")?.split_once('/')?;
        let name = rest.split(['[', ' ']).next()?;
        self.secrets.get(&(ns.to_owned(), name.to_owned()))
    }

    fn client_cert(&self, text: &str) -> Option<l4_client::ClientCert> {
        self.secret(text).map(|i| l4_client::ClientCert {
            cert_pem: i.cert.cert_pem.clone(),
            key_pem: i.cert.key_pem.clone(),
        })
    }

    /// `request.trust`: `ConfigMap ns/name[ca.crt]`, `Secret ns/name[tls.crt]`, or anything
    /// else (system roots: an unrelated CA here).
    fn trust(&self, text: Option<&str>) -> Trust {
        let text = text.unwrap_or("");
        let object = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|r| r.split('[').next())
                .and_then(|r| r.split_once('/'))
                .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
        };
        if let Some(k) = object("ConfigMap ")
            && let Some(pem) = self.cas.get(&k)
        {
            return Trust::Ca(pem.clone());
        }
        if let Some(k) = object("Secret ")
            && let Some(i) = self.secrets.get(&k)
        {
            return Trust::Leaf {
                leaf_pem: i.cert.cert_pem.clone(),
                issuer_pem: i.issuer_pem.clone(),
            };
        }
        Trust::Ca(Pki::new().ca_pem)
    }

    /// `expect.tls_server_cert`, `backend_request.client_cert`: "Secret ns/name[tls.crt]
    /// (…)" → that certificate (DER).
    fn expected_leaf(&self, text: &str) -> Option<Vec<u8>> {
        der_of(&self.secret(text)?.cert.cert_pem)
    }
}

fn der_of(pem: &str) -> Option<Vec<u8>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.as_ref().to_vec())
}

impl Certs {
    /// `o` with its placeholders (in `data`) replaced.
    fn fill(&self, o: &Value) -> Value {
        let mut o = o.clone();
        if let Some(d) = o["data"].as_object_mut() {
            for v in d.values_mut() {
                if let Some(pem) = v.as_str().and_then(|t| self.placeholder(t)) {
                    *v = Value::from(pem);
                }
            }
        }
        o
    }

    /// `{COPY OF ConfigMap ns/name ca.crt}` (a go-objects placeholder) → that CA.
    fn placeholder(&self, text: &str) -> Option<String> {
        let inner = text
            .strip_prefix("{COPY OF ConfigMap ")?
            .strip_suffix('}')?;
        let (object, key) = inner.split_once(' ')?;
        let (ns, name) = object.split_once('/')?;
        (key == "ca.crt")
            .then(|| self.cas.get(&(ns.to_owned(), name.to_owned())).cloned())
            .flatten()
    }
}

// === the harness ===

struct Gateway {
    ip: String,
    envoy: Envoy,
}

struct Harness {
    envoy_bin: PathBuf,
    repo: TempRepo,
    server: tidegate::app::Running,
    http: echo::Backends,
    _l4: l4_echo::L4Backends,
    gateways: BTreeMap<String, Gateway>,
    /// The last octet of the next Gateway's loopback address.
    next_ip: u8,
    /// `gatewayApi` before the current phase's commit.
    before_phase: Option<Value>,
    /// Until when failing checks are retried: [`SETTLE`] after the last commit was served
    /// (later, a failing check is tried once more and then reported).
    settled: Instant,
    certs: Certs,
    base: Vec<Value>,
    _dirs: Vec<tempfile::TempDir>,
}

fn env_of(d: &Value) -> BTreeMap<String, String> {
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                s(&e["value"]).unwrap_or_default(),
            ))
        })
        .collect()
}

fn proxy_id(gateway: &str) -> String {
    let (ns, name) = gateway.split_once('/').expect("ns/name");
    format!("{name}.{ns}")
}

impl Harness {
    async fn start(base: &[Value], tests: &[&L4Test], envoy_bin: PathBuf) -> Self {
        let all: Vec<&Value> = base
            .iter()
            .chain(tests.iter().flat_map(|t| t.objects.iter()))
            .collect();
        let certs_dir = tempfile::tempdir().expect("temp dir");
        let manifest_secrets: Vec<&Value> = all
            .iter()
            .copied()
            .filter(|o| data::kind(o) == "Secret")
            .collect();
        let certs = Certs::generate(certs_dir.path(), &manifest_secrets);

        let mut http = echo::Backends::default();
        let mut l4 = l4_echo::L4Backends::default();
        // One set of listeners per Deployment: target port -> address.
        let mut pods: BTreeMap<(String, String), BTreeMap<u64, SocketAddr>> = BTreeMap::new();
        let mut endpoints = String::new();
        let mut services: BTreeMap<String, &Value> = BTreeMap::new();
        for o in all.iter().filter(|o| data::kind(o) == "Service") {
            services
                .entry(format!("{}.{}", data::name(o), data::namespace(o)))
                .or_insert(o);
        }
        for (key, svc) in &services {
            let ns = data::namespace(svc);
            let selector = &svc["spec"]["selector"];
            let Some(d) = all.iter().find(|d| {
                data::kind(d) == "Deployment"
                    && data::namespace(d) == ns
                    && labels_match(selector, &d["spec"]["template"]["metadata"]["labels"])
            }) else {
                continue;
            };
            let dk = (ns.to_owned(), data::name(d).to_owned());
            if !pods.contains_key(&dk) {
                let listeners = Self::pod(&mut http, &mut l4, &certs, d).await;
                pods.insert(dk.clone(), listeners);
            }
            let listeners = &pods[&dk];
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["port"].as_u64().unwrap_or(0);
                let target = p["targetPort"].as_u64().unwrap_or(port);
                let Some(addr) = listeners.get(&target).or_else(|| {
                    // echo-basic's HTTP listens on 3000 whatever the Service says.
                    (listeners.len() == 1).then(|| listeners.values().next().unwrap())
                }) else {
                    continue;
                };
                // The port's name (what a BackendTLSPolicy's sectionName targets) and its
                // appProtocol when tidegate knows it.
                let mut fields: Vec<String> = Vec::new();
                if let Some(name) = p["name"].as_str() {
                    fields.push(format!("portName: \"{name}\""));
                }
                if let Some(proto) = p["appProtocol"]
                    .as_str()
                    .filter(|a| tidegate::xds::endpoints::APP_PROTOCOLS.contains(a))
                {
                    fields.push(format!("appProtocol: \"{proto}\""));
                }
                if fields.is_empty() {
                    writeln!(endpoints, "{key}:{port}: [\"{addr}\"]")
                } else {
                    writeln!(
                        endpoints,
                        "{key}:{port}: {{{}, addresses: [\"{addr}\"]}}",
                        fields.join(", ")
                    )
                }
                .expect("write to a String");
            }
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
        // The CA ConfigMaps the suite creates at setup are shared objects too.
        let base_objects: Vec<Value> = committed(base)
            .into_iter()
            .chain(certs.config_maps())
            .collect();
        repo.write("resources/base.yaml", yaml_of(&base_objects));
        repo.commit("conformance base");
        let mut opts = tidegate::app::ServeOptions::new(repo.path().to_string_lossy());
        opts.endpoints = Some(endpoints_file);
        opts.certs = Some(certs_dir.path().to_owned());
        opts.poll_interval = Duration::from_secs(1);
        let server = common::start_with(opts).await;
        Self {
            envoy_bin,
            repo,
            server,
            http,
            _l4: l4,
            gateways: BTreeMap::new(),
            next_ip: 2,
            before_phase: None,
            settled: Instant::now(),
            certs,
            base: base.to_vec(),
            _dirs: vec![certs_dir, files],
        }
    }

    /// Starts the backend of Deployment `d` as echo-basic (or coredns) would run it: its
    /// listeners by container port.
    async fn pod(
        http: &mut echo::Backends,
        l4: &mut l4_echo::L4Backends,
        certs: &Certs,
        d: &Value,
    ) -> BTreeMap<u64, SocketAddr> {
        let ns = data::namespace(d).to_owned();
        let env = env_of(d);
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("");
        let id = Identity {
            pod: pod_name(data::name(d)),
            namespace: ns.clone(),
            service: env.get("SERVICE_NAME").cloned().unwrap_or_default(),
        };
        let volumes = &d["spec"]["template"]["spec"]["volumes"];
        let cert = volumes
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|v| v["secret"]["secretName"].as_str())
            .and_then(|name| certs.secrets.get(&(ns.clone(), name.to_owned())))
            .map(|i| i.cert.clone());
        // TLS_CLIENT_CACERTS: the CA of a mounted ConfigMap.
        let client_ca = env
            .contains_key("TLS_CLIENT_CACERTS")
            .then(|| {
                volumes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|v| v["configMap"]["name"].as_str())
                    .and_then(|name| certs.cas.get(&(ns.clone(), name.to_owned())))
            })
            .flatten();
        let mut out = BTreeMap::new();
        if image.contains("coredns") {
            out.insert(53, l4.dns().await);
        } else if env.contains_key("UDP_ECHO_SERVER") {
            out.insert(8080, l4.udp(id).await);
        } else if env.contains_key("TCP_ECHO_SERVER") {
            let (plain, tls) = l4.tcp(id, cert).await;
            out.insert(3000, plain);
            if let Some(t) = tls {
                out.insert(8443, t);
            }
        } else {
            let pod = echo::Pod {
                name: id.pod.clone(),
                namespace: ns,
            };
            let grpc = env.contains_key("GRPC_ECHO_SERVER");
            let plain = http.listen(pod.clone(), grpc).await;
            out.insert(3000, plain);
            if let Some(c) = cert {
                let tls = http
                    .listen_tls(
                        pod,
                        grpc,
                        &c.cert_pem,
                        &c.key_pem,
                        client_ca.map(String::as_str),
                    )
                    .await;
                out.insert(8443, tls);
            }
        }
        out
    }

    /// Commits `objects` as `resources/test.yaml`; `Err` if the commit is not served.
    async fn commit(&mut self, what: &str, objects: &[Value]) -> Result<(), String> {
        self.repo.write("resources/test.yaml", yaml_of(objects));
        let sha = self.repo.commit(what);
        let r = self
            .server
            .wait_served(&sha, Duration::from_secs(20))
            .await
            .map_err(|e| format!("commit not served: {}", e.join("; ")));
        self.settled = Instant::now() + SETTLE;
        r
    }

    async fn run_test(&mut self, test: &L4Test) -> Vec<(String, Check)> {
        let mut out = Vec::new();
        self.before_phase = None;
        let mut objects = committed(&test.objects);
        if let Err(e) = self.commit(&test.short_name, &objects).await {
            out.extend(
                test.cases
                    .iter()
                    .map(|c| (s(&c["id"]).unwrap_or_default(), Check::Fail(e.clone()))),
            );
            return out;
        }
        if !test.namespaces_ready.is_empty() {
            let all: Vec<Value> = self.base.iter().cloned().chain(objects.clone()).collect();
            let refs: Vec<&Value> = all.iter().collect();
            let ns = test.namespaces_ready.clone();
            let r = self
                .poll(|api, _| status::namespaces_ready(api, &refs, &ns))
                .await;
            out.push((PRECONDITION.into(), r));
        }
        let mut current_group: Option<String> = None;
        for case in &test.cases {
            let id = s(&case["id"]).unwrap_or_default();
            let group = s(&case["group"]);
            if group != current_group {
                current_group = group.clone();
                if let Some(phase) = test
                    .phases
                    .iter()
                    .find(|p| Some(&p.group) == group.as_ref())
                {
                    let mut unsupported = None;
                    for step in &phase.steps {
                        match step {
                            Step::Put(o) => {
                                objects.retain(|x| {
                                    !(data::kind(x) == data::kind(o)
                                        && data::namespace(x) == data::namespace(o)
                                        && data::name(x) == data::name(o))
                                });
                                if l4_data::COMMITTED_KINDS.contains(&data::kind(o)) {
                                    objects.push(self.certs.fill(o));
                                }
                            }
                            Step::SetData {
                                kind,
                                namespace,
                                name,
                                key,
                                value,
                            } => {
                                let is = |x: &Value| {
                                    data::kind(x) == kind
                                        && data::namespace(x) == namespace
                                        && data::name(x) == name
                                };
                                let text = match value {
                                    DataValue::Text(t) => Some(Value::from(t.as_str())),
                                    // As the object was first applied in this test.
                                    DataValue::Original => test
                                        .phases
                                        .iter()
                                        .flat_map(|p| &p.steps)
                                        .find_map(|st| match st {
                                            Step::Put(o) if is(o) => {
                                                Some(self.certs.fill(o)["data"][key].clone())
                                            }
                                            _ => None,
                                        })
                                        .filter(|v| !v.is_null()),
                                };
                                match (objects.iter_mut().find(|x| is(x)), text) {
                                    (Some(o), Some(t)) => o["data"][key.as_str()] = t,
                                    _ => {
                                        unsupported = Some(format!(
                                            "{kind} {namespace}/{name}: data.{key} = {value:?}"
                                        ))
                                    }
                                }
                            }
                            Step::Delete {
                                kind,
                                namespace,
                                name,
                            } => objects.retain(|x| {
                                !(data::kind(x) == kind
                                    && data::namespace(x) == namespace
                                    && data::name(x) == name)
                            }),
                            Step::Unsupported(w) => unsupported = Some(w.clone()),
                        }
                    }
                    self.before_phase =
                        Some(common::status(self.server.admin).await["gatewayApi"].clone());
                    if let Some(w) = unsupported {
                        println!("  phase step not expressible: {w}");
                    }
                    if let Err(e) = self
                        .commit(&format!("{}: {}", test.short_name, phase.group), &objects)
                        .await
                    {
                        out.push((id, Check::Fail(e)));
                        continue;
                    }
                }
            }
            let r = self.run_case(case).await;
            out.push((id, r));
        }
        // The next test names other Gateways: stop these Envoys.
        self.gateways.clear();
        out
    }

    /// Polls `/status` until `check` passes, or fails after the configuration settled.
    async fn poll(&self, check: impl Fn(&Value, &[String]) -> Check) -> Check {
        let deadline = self.settled;
        loop {
            let served: Vec<String> = self
                .server
                .current()
                .await
                .proxy_ids()
                .filter_map(|id| id.split_once('.').map(|(n, ns)| format!("{ns}/{n}")))
                .collect();
            let st = common::status(self.server.admin).await;
            let r = check(&st["gatewayApi"], &served);
            if !matches!(r, Check::Fail(_)) || Instant::now() >= deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn run_case(&mut self, case: &Value) -> Check {
        let e = &case["expect"];
        // An expectation or request field the harness does not check must not pass silently.
        let unknown: Vec<&String> = e
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|k| !KNOWN_EXPECT.contains(&k.as_str()))
            .chain(
                case["request"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .filter(|k| !KNOWN_REQUEST.contains(&k.as_str())),
            )
            .collect();
        if !unknown.is_empty() {
            return Check::Fail(format!("fields not known to the harness: {unknown:?}"));
        }
        let Some(req) = case.get("request") else {
            return self
                .poll(|api, served| {
                    let ctx = status::Context {
                        served_gateways: served,
                        before: self.before_phase.as_ref(),
                    };
                    let checks: Vec<Check> = e["status_conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| status::condition(api, c))
                        .chain(
                            e["status_fields"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|f| status::field(api, f, &ctx)),
                        )
                        .collect();
                    combine(checks)
                })
                .await;
        };
        let gateway = s(&req["gateway"]).unwrap_or_default();
        let ip = match self.prepare(&gateway).await {
            Ok(ip) => ip,
            Err(e) => return Check::Fail(e),
        };
        let port = req["port"].as_u64().unwrap_or(80) as u16;
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("address");
        let mut tries = 0;
        loop {
            tries += 1;
            let r = match req["protocol"].as_str() {
                Some("tcp") | Some("tls") => {
                    self.stream_case(req, e, addr).await.map_err(Failure::from)
                }
                Some("udp") => self.udp_case(req, e, addr).await.map_err(Failure::from),
                None | Some("http") | Some("https") => self.http_case(req, e, addr).await,
                Some(p) => Err(format!("protocol {p} not known to the harness").into()),
            };
            let at_once = r.as_ref().is_err_and(|f| f.at_once);
            if r.is_ok() || at_once || (Instant::now() >= self.settled && tries >= 2) || tries >= 30
            {
                return match r {
                    Ok(()) => Check::Pass,
                    Err(f) => Check::Fail(format!("{}{}", f.why, self.envoy_complaints(&gateway))),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last warnings or errors of the Envoy of `gateway` (e.g. a listener it could not
    /// bind), for a failure message.
    fn envoy_complaints(&self, gateway: &str) -> String {
        let Some(g) = self.gateways.get(gateway) else {
            return String::new();
        };
        envoy_complaint(&g.envoy.log())
    }

    /// Starts the Envoy of `gateway` if needed and waits until it acknowledged the served
    /// configuration; its address.
    async fn prepare(&mut self, gateway: &str) -> Result<String, String> {
        let id = proxy_id(gateway);
        let snapshot = self.server.current().await;
        if !snapshot.proxy_ids().any(|p| *p == id) {
            return Err(format!("tidegate serves no configuration for {gateway}"));
        }
        if !self.gateways.contains_key(gateway) {
            // A fresh address per Envoy: a stopped one's sockets may linger.
            let ip = format!("127.0.0.{}", self.next_ip);
            self.next_ip = self
                .next_ip
                .checked_add(1)
                .filter(|n| *n < 255)
                .unwrap_or(2);
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
                .insert(gateway.to_owned(), Gateway { ip, envoy });
        }
        let ip = self.gateways[gateway].ip.clone();
        let proxy = snapshot.proxy(
            &id,
            &Variant {
                bind: Some(ip.clone()),
                proxyless: false,
            },
        );
        common::wait_acked(self.server.admin, &id, &proxy)
            .await
            .map_err(|e| format!("{gateway}: {e}"))?;
        Ok(ip)
    }

    /// An HTTP(S) or gRPC case.
    async fn http_case(&self, req: &Value, e: &Value, addr: SocketAddr) -> Result<(), Failure> {
        if req.get("grpc_method").is_some() {
            return self.grpc_case(req, e, addr).await;
        }
        let method = s(&req["method"]).unwrap_or_else(|| "GET".into());
        let path = s(&req["path"]).unwrap_or_else(|| "/".into());
        let host = s(&req["host"]).unwrap_or_else(|| addr.ip().to_string());
        let mark = self.http.mark();
        let outcome = if req["protocol"] == "https" {
            self.https(req, e, addr, &method, &path, &host).await?
        } else {
            client::http1(addr, None, &method, &path, &host, &[]).await
        };
        let resp = match outcome {
            // The suite's request_fails: a transport error is what is wanted.
            Err(_) if e["request_fails"] == true => return self.not_reached(mark, &path),
            Err(x) => return Err(x.into()),
            Ok(resp) => resp,
        };
        if e["request_fails"] == true {
            return Err(format!(
                "{method} {host}{path}: want a failed request, got status {}",
                resp.status
            )
            .into());
        }
        if let Some(not) = e["status_not"].as_array() {
            // MakeRequestAndExpectFailure: a 200 fails at once, a timeout is tried again,
            // any other status converges.
            let status = u64::from(resp.status);
            if not.iter().any(|v| v.as_u64() == Some(status)) {
                let why = format!(
                    "{method} {host}{path}: status {status}, want anything else ({})",
                    shorten(&String::from_utf8_lossy(&resp.body), 120)
                );
                return Err(if status == 200 {
                    Failure::at_once(why)
                } else {
                    why.into()
                });
            }
            return if [408, 504].contains(&status) {
                Err(format!("{method} {host}{path}: status {status} (a timeout)").into())
            } else {
                self.not_reached(mark, &path)
            };
        }
        let want: Vec<u64> = match &e["status"] {
            Value::Null => vec![200],
            Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
            v => v.as_u64().into_iter().collect(),
        };
        if !want.contains(&u64::from(resp.status)) {
            return Err(format!(
                "{method} {host}{path}: status {}, want {want:?} ({})",
                resp.status,
                shorten(&String::from_utf8_lossy(&resp.body), 120)
            )
            .into());
        }
        if resp.status != 200 {
            return Ok(());
        }
        let echo = resp.echo().ok_or("a 200 not from an echo backend")?;
        check_pod(e, &echo)?;
        let br = &e["backend_request"];
        if let Some(k) = br
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .find(|k| !["method", "path", "host", "sni", "client_cert"].contains(&k.as_str()))
        {
            return Err(format!("backend_request.{k} is not known to the harness").into());
        }
        for (k, sent) in [("method", &method), ("path", &path), ("host", &host)] {
            let want = br[k].as_str().unwrap_or(sent);
            if echo[k] != want {
                return Err(format!("backend saw {k} {}, want {want}", echo[k]).into());
            }
        }
        if let Some(want) = br["sni"].as_str()
            && echo["tls"]["serverName"] != want
        {
            return Err(format!(
                "the backend saw SNI {} (tls: {}), want {want}",
                echo["tls"]["serverName"], echo["tls"]
            )
            .into());
        }
        if let Some(want) = br["client_cert"].as_str() {
            let der = self
                .certs
                .expected_leaf(want)
                .ok_or_else(|| format!("unknown certificate {want}"))?;
            let seen: Vec<Option<Vec<u8>>> = echo["tls"]["peerCertificates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| der_of(c.as_str().unwrap_or("")))
                .collect();
            if !seen.contains(&Some(der)) {
                return Err(format!(
                    "the backend did not see the client certificate {want} ({} peer certificate(s))",
                    seen.len()
                )
                .into());
            }
        }
        Ok(())
    }

    /// A request that had to fail must not have reached an echo pod (issue 17: a backend
    /// whose certificate does not match is refused by Envoy, not reached): none saw `path`
    /// since `mark`. Stricter than the suite, which looks at the response only.
    fn not_reached(&self, mark: usize, path: &str) -> Result<(), Failure> {
        match self.http.since(mark).iter().find(|seen| seen.path == path) {
            Some(seen) => Err(Failure::at_once(format!(
                "the request failed as expected, but pod {} saw it",
                seen.pod
            ))),
            None => Ok(()),
        }
    }

    /// An HTTPS request as the suite makes it: the handshake, offering `request.client_cert`
    /// and checked against `tls_server_cert` and `client_cert_requested`, then the request.
    /// The outer `Err` is an expectation on the handshake that failed; the inner one a
    /// transport error (what `request_fails` wants).
    async fn https(
        &self,
        req: &Value,
        e: &Value,
        addr: SocketAddr,
        method: &str,
        path: &str,
        host: &str,
    ) -> Result<Result<client::Response, String>, Failure> {
        let client = match req["client_cert"].as_str() {
            Some(t) => Some(
                self.certs
                    .client_cert(t)
                    .ok_or_else(|| format!("unknown client certificate {t}"))?,
            ),
            None => None,
        };
        let (connector, asked) = l4_client::connector_offering(
            &self.certs.trust(req["trust"].as_str()),
            &[b"http/1.1"],
            client.as_ref(),
        );
        let sni = s(&req["tls_sni"]).unwrap_or_else(|| host.to_owned());
        let st = match l4_client::tls(addr, &sni, &connector).await {
            Ok(st) => st,
            // The client refusing the server's certificate is not the failure the data
            // means (rustls: "invalid peer certificate").
            Err(ConnectError::Other(x)) if x.contains("invalid peer certificate") => {
                return Err(format!("SNI {sni}: the server's certificate was refused: {x}").into());
            }
            Err(x) => return Ok(Err(x.to_string())),
        };
        if let Some(want) = e["tls_server_cert"].as_str() {
            let expected = self
                .certs
                .expected_leaf(want)
                .ok_or_else(|| format!("unknown certificate {want}"))?;
            if l4_client::peer_leaf(&st) != Some(expected) {
                return Err(format!("the server did not present {want}").into());
            }
        }
        let outcome = client::http1_on(st, method, path, host, &[]).await;
        if e["client_cert_requested"] == true && !asked.get() {
            return Err(
                format!("SNI {sni}: the server did not ask for a client certificate").into(),
            );
        }
        Ok(outcome)
    }

    /// A gRPC call (h2c to the Gateway): `grpc_code` (default OK, then the echo's pod),
    /// or `grpc_code_not` (that code fails at once, any other converges).
    async fn grpc_case(&self, req: &Value, e: &Value, addr: SocketAddr) -> Result<(), Failure> {
        let method = s(&req["grpc_method"]).unwrap_or_default();
        let authority = s(&req["authority"])
            .or_else(|| s(&req["host"]))
            .unwrap_or_else(|| addr.ip().to_string());
        let mark = self.http.mark();
        let r = client::grpc(addr, &authority, &method, &[]).await?;
        if let Some(not) = e["grpc_code_not"].as_str() {
            let code = client::grpc_code(not).ok_or_else(|| format!("unknown gRPC code {not}"))?;
            return if r.code == code {
                Err(Failure::at_once(format!(
                    "{authority}{method}: gRPC code {}, want anything but {not}",
                    r.code
                )))
            } else {
                self.not_reached(mark, &method)
            };
        }
        let want = e["grpc_code"].as_str().unwrap_or("OK");
        let code = client::grpc_code(want).ok_or_else(|| format!("unknown gRPC code {want}"))?;
        if r.code != code {
            return Err(format!(
                "{authority}{method}: gRPC code {} ({:?}), want {want}",
                r.code, r.message
            )
            .into());
        }
        if code == 0 {
            let echo = r.echo.ok_or("an OK without the echo's message")?;
            check_pod(e, &echo)?;
        }
        Ok(())
    }

    /// A tcp or tls case: connect, maybe handshake, the echo dialogue; samples when asked.
    async fn stream_case(&self, req: &Value, e: &Value, addr: SocketAddr) -> Result<(), String> {
        let send = s(&req["send"]).unwrap_or_default();
        let samples = req["samples"].as_u64().unwrap_or(1).max(1);
        if samples > 1 {
            let concurrency = req["concurrency"].as_u64().unwrap_or(1).max(1);
            return self
                .samples(e, samples, concurrency, || {
                    let (req, send) = (req.clone(), send.clone());
                    let tls = self.tls_setup(&req);
                    async move {
                        let d = match tls {
                            Some((c, sni)) => {
                                let st = l4_client::tls(addr, &sni, &c)
                                    .await
                                    .map_err(|e| e.to_string())?;
                                l4_client::dialogue(st, &send).await?
                            }
                            None => {
                                l4_client::dialogue(l4_client::connect(addr).await?, &send).await?
                            }
                        };
                        d.test()
                            .ok_or_else(|| format!("no TEST answer: {d:?}"))
                            .map(|t| t["pod"].as_str().unwrap_or("").to_owned())
                    }
                })
                .await;
        }
        let dialogue = match self.tls_setup(req) {
            Some((connector, sni)) => {
                let r = l4_client::tls(addr, &sni, &connector).await;
                if e["connection_rejected"] == true {
                    return match r {
                        Err(ConnectError::Rejected(_)) => Ok(()),
                        Err(ConnectError::Other(x)) => {
                            Err(format!("SNI {sni}: want a rejected connection, got: {x}"))
                        }
                        Ok(st) => Err(format!(
                            "SNI {sni}: want a rejected connection, the handshake completed ({} bytes of certificate)",
                            l4_client::peer_leaf(&st).map(|c| c.len()).unwrap_or(0)
                        )),
                    };
                }
                let st = r.map_err(|e| e.to_string())?;
                if let Some(want) = e["tls_server_cert"].as_str() {
                    let expected = self
                        .certs
                        .expected_leaf(want)
                        .ok_or_else(|| format!("unknown certificate {want}"))?;
                    if l4_client::peer_leaf(&st) != Some(expected) {
                        return Err(format!("the server did not present {want}"));
                    }
                }
                l4_client::dialogue(st, &send).await?
            }
            None => {
                let tcp = l4_client::connect(addr).await?;
                if e["tcp_connect"] == true && send.is_empty() {
                    return Ok(());
                }
                l4_client::dialogue(tcp, &send).await?
            }
        };
        if dialogue.welcome != l4_echo::WELCOME {
            return Err(format!("welcome line {:?}", dialogue.welcome));
        }
        if send.lines().any(|l| l.trim() == "PING") && dialogue.answer("PING") != Some("PONG") {
            return Err(format!("PING answered {:?}", dialogue.answer("PING")));
        }
        if let Some(want) = e["backend_is_tls"].as_bool()
            && dialogue.answer("IS_TLS") != Some(if want { "true" } else { "false" })
        {
            return Err(format!(
                "IS_TLS answered {:?}, want {want}",
                dialogue.answer("IS_TLS")
            ));
        }
        let test = dialogue.test();
        let needs_test = e.get("backend_pod_prefix").is_some()
            || e.get("tcp_echo_reply").is_some()
            || e.get("backend_sni").is_some();
        match test {
            None if needs_test => Err(format!("no TEST answer: {dialogue:?}")),
            None => Ok(()),
            Some(t) => {
                if e.get("tcp_echo_reply").is_some() && t["pod"].as_str().is_none_or(str::is_empty)
                {
                    return Err(format!("TEST answer without a pod: {t}"));
                }
                if let Some(want) = e["backend_sni"].as_str()
                    && t["tls"]["serverName"] != want
                {
                    return Err(format!(
                        "the backend saw SNI {}, want {want}",
                        t["tls"]["serverName"]
                    ));
                }
                check_pod(e, &t)
            }
        }
    }

    /// The connector and SNI of a tls case (None for tcp).
    fn tls_setup(&self, req: &Value) -> Option<(tokio_rustls::TlsConnector, String)> {
        (req["protocol"] == "tls").then(|| {
            (
                l4_client::connector(&self.certs.trust(req["trust"].as_str()), &[]),
                s(&req["tls_sni"]).unwrap_or_default(),
            )
        })
    }

    async fn udp_case(&self, req: &Value, e: &Value, addr: SocketAddr) -> Result<(), String> {
        if let Some(q) = req["dns_query"].as_str() {
            let (name, ty) = q.split_once(' ').unwrap_or((q, "A"));
            return l4_client::dns(addr, name, ty).await.map(|_| ());
        }
        let send = s(&req["send"]).unwrap_or_default();
        let samples = req["samples"].as_u64().unwrap_or(1).max(1);
        if samples > 1 {
            let concurrency = req["concurrency"].as_u64().unwrap_or(1).max(1);
            return self
                .samples(e, samples, concurrency, || {
                    let send = send.clone();
                    async move {
                        let r = l4_client::udp(addr, send.as_bytes()).await?;
                        let v: Value = serde_json::from_slice(&r)
                            .map_err(|_| format!("not JSON: {}", String::from_utf8_lossy(&r)))?;
                        Ok(v["pod"].as_str().unwrap_or("").to_owned())
                    }
                })
                .await;
        }
        let r = l4_client::udp(addr, send.as_bytes()).await?;
        if e["udp_reply"] == "any" {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(&r)
            .map_err(|_| format!("not JSON: {}", String::from_utf8_lossy(&r)))?;
        if let Some(want) = e["udp_service"].as_str()
            && v["service"] != want
        {
            return Err(format!("answered by service {}, want {want}", v["service"]));
        }
        check_pod(e, &v)
    }

    /// `samples` probes, `concurrency` at a time; each returns the answering pod. Checks
    /// `distribution` (up to its attempts), `all_samples_backend_pod_prefix` and
    /// `all_samples_backend`.
    async fn samples<F, Fut>(
        &self,
        e: &Value,
        samples: u64,
        concurrency: u64,
        probe: F,
    ) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
    {
        let attempts = e["distribution_attempts"]
            .as_u64()
            .unwrap_or(1)
            .clamp(1, MAX_DISTRIBUTION_ATTEMPTS);
        let mut last = String::new();
        for _ in 0..attempts {
            let mut pods = Vec::new();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..samples {
                if tasks.len() as u64 >= concurrency
                    && let Some(r) = tasks.join_next().await
                {
                    pods.push(r.map_err(|e| e.to_string())??);
                }
                tasks.spawn(probe());
            }
            while let Some(r) = tasks.join_next().await {
                pods.push(r.map_err(|e| e.to_string())??);
            }
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for p in &pods {
                *counts.entry(deployment_of(p)).or_default() += 1;
            }
            if let Some(prefix) = e["all_samples_backend_pod_prefix"].as_str()
                && let Some(p) = pods.iter().find(|p| !p.starts_with(prefix))
            {
                return Err(format!(
                    "a sample answered by {p}, want all {prefix}* ({counts:?})"
                ));
            }
            if let Some(want) = e["all_samples_backend"].as_str()
                && counts.keys().any(|d| d != want)
            {
                return Err(format!("samples answered by {counts:?}, want all {want}"));
            }
            let Some(dist) = e["distribution"].as_object() else {
                return Ok(());
            };
            let tolerance = e["distribution_tolerance"].as_f64().unwrap_or(0.05);
            let problems = distribution_problems(&counts, dist, samples, tolerance);
            if problems.is_empty() {
                return Ok(());
            }
            last = format!("{} ({counts:?})", problems.join("; "));
        }
        Err(last)
    }
}

/// Why a request case failed, and whether trying again may help: the suite retries until
/// its consistency timeout, except for results that fail a test at once (a 200 where a
/// failure is expected, a gRPC status that must not come).
#[derive(Debug)]
struct Failure {
    why: String,
    at_once: bool,
}

impl Failure {
    fn at_once(why: String) -> Self {
        Failure { why, at_once: true }
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure {
            why,
            at_once: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(why: &str) -> Self {
        why.to_owned().into()
    }
}

/// `backend_pod_prefix` and `namespace` against an echo answer.
fn check_pod(e: &Value, echo: &Value) -> Result<(), String> {
    let pod = echo["pod"].as_str().unwrap_or("");
    if let Some(p) = e["backend_pod_prefix"].as_str()
        && !pod.starts_with(p)
    {
        return Err(format!("answered by pod {pod:?}, want {p}*"));
    }
    if let Some(ns) = e["namespace"].as_str()
        && echo["namespace"] != ns
    {
        return Err(format!(
            "answered from namespace {}, want {ns}",
            echo["namespace"]
        ));
    }
    Ok(())
}

/// The outcome of a case of several expectations: failed if one fails; skipped if none
/// could be checked; else passed (the unchecked parts are reported by their own cases'
/// notes only when the whole case is skipped).
fn combine(checks: Vec<Check>) -> Check {
    let mut skipped = Vec::new();
    let mut passed = false;
    for c in checks {
        match c {
            Check::Fail(e) => return Check::Fail(e),
            Check::Skip(w) => skipped.push(w),
            Check::Pass => passed = true,
        }
    }
    if passed || skipped.is_empty() {
        Check::Pass
    } else {
        Check::Skip(skipped.join("; "))
    }
}

#[test]
fn pods_reduce_to_deployments() {
    assert_eq!(deployment_of(&pod_name("tcp-backend-v1")), "tcp-backend-v1");
    assert!(pod_name("tcp-backend-v1").starts_with("tcp-backend-"));
}

#[test]
fn a_case_is_skipped_only_when_nothing_was_checked() {
    assert_eq!(
        combine(vec![Check::Pass, Check::Skip("g".into())]),
        Check::Pass
    );
    assert!(matches!(
        combine(vec![Check::Skip("g".into())]),
        Check::Skip(_)
    ));
    assert!(matches!(
        combine(vec![Check::Pass, Check::Fail("x".into())]),
        Check::Fail(_)
    ));
}

#[test]
fn a_precondition_alone_does_not_make_a_test_pass() {
    let r = Row::of(
        true,
        &[
            (PRECONDITION.into(), Check::Pass),
            ("a#0".into(), Check::Skip("generation".into())),
        ],
        PRECONDITION,
    );
    assert_eq!((r.passed, r.total), (0, 0));
    assert!(r.not_run.is_some() && !r.passes());
    let r = Row::of(
        true,
        &[
            (PRECONDITION.into(), Check::Fail("not ready".into())),
            ("a#0".into(), Check::Skip("generation".into())),
        ],
        PRECONDITION,
    );
    assert_eq!((r.passed, r.total), (0, 1));
}

#[test]
fn the_verdict_follows_the_lists() {
    let mut rows = BTreeMap::new();
    rows.insert(
        "A".to_owned(),
        Row::of(
            true,
            &[("a#0".into(), Check::Fail("boom".into()))],
            PRECONDITION,
        ),
    );
    rows.insert(
        "B".to_owned(),
        Row::of(false, &[("b#0".into(), Check::Pass)], PRECONDITION),
    );
    rows.insert(
        "C".to_owned(),
        Row::not_run(false, "mesh profile not claimed".into()),
    );
    let v = verdict(&rows, &[]);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("A failed"));
    // A listed Core test, a listed test that passes, a listed test not in the data.
    let v = verdict(&rows, &[("A", "x"), ("B", "y"), ("Z", "z")]);
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v.iter().any(|p| p.starts_with("A is Core")));
    assert!(v.iter().any(|p| p.starts_with("B passes")));
    assert!(v.iter().any(|p| p.starts_with("Z is listed")));
}

#[test]
fn profile_tables_count_both_extractions() {
    let inv = |n: &str, profiles: &[&str], core: bool, in_cases: bool| l4_data::Inventory {
        short_name: n.into(),
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        core,
        in_cases,
    };
    let inventory = vec![
        inv("GatewayA", &["GATEWAY-HTTP", "GATEWAY-TLS"], true, false),
        inv("TLSRouteB", &["GATEWAY-TLS"], false, false),
        inv("HTTPRouteC", &["GATEWAY-HTTP"], true, true),
        inv("HTTPRouteD", &["GATEWAY-HTTP"], true, true),
        inv("GatewayE", &["GATEWAY-TLS"], false, false),
    ];
    let mut rows = BTreeMap::new();
    rows.insert(
        "GatewayA".to_owned(),
        Row::of(true, &[("a".into(), Check::Pass)], PRECONDITION),
    );
    rows.insert(
        "TLSRouteB".to_owned(),
        Row::of(
            false,
            &[("b".into(), Check::Fail("x".into()))],
            PRECONDITION,
        ),
    );
    let previous = "| ShortName | Core or Extended | passed/total | notes |\n|---|---|---|---|\n| HTTPRouteC | Core | 2/2 |  |\n| HTTPRouteD | Core | 1/2 | boom |\n";
    let md = report(&rows, &inventory, Some(previous), Duration::from_secs(1));
    assert!(
        md.contains("## GATEWAY-HTTP\n\nCore: 2/3 tests pass (0 not run); Extended: 0/0"),
        "{md}"
    );
    assert!(
        md.contains("## GATEWAY-TLS\n\nCore: 1/1 tests pass (0 not run); Extended: 0/2 tests pass (1 not run)"),
        "{md}"
    );
    assert!(md.contains("| TLSRouteB | Extended | 0/1 | b: x |"), "{md}");
    assert!(
        md.contains("| HTTPRouteD | Core | 1/2 | cases.yaml (target/conformance.md): boom |"),
        "{md}"
    );
    assert!(
        md.contains("| GatewayE | Extended | 0/0 | not extracted (cluster-only) |"),
        "{md}"
    );
}

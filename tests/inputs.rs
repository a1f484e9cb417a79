//! An endpoints or certificate change re-encodes only the proxies that read what changed,
//! and gives exactly what a fresh build gives.
//!
//! `Snapshot::with_inputs` keeps a proxy's encoded resources when `xds::inputs` says it
//! reads the same of the old and new inputs. A read missing there would serve a stale
//! resource silently, so every step of a sequence of changes is compared, for every proxy,
//! with a from-scratch build of the same plans and inputs: same resources (names,
//! versions, bytes), same warnings. And the proxies a change does not concern are checked
//! to keep their very `Arc`, so the saving is real.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use tidegate::test_helpers::TempRepo;
use tidegate::test_helpers::pki::{Pki, dns, uri};
use tidegate::xds::certs::Certs;
use tidegate::xds::endpoints::Endpoints;
use tidegate::xds::snapshot::{Inputs, MAX_VARIANTS_PER_PROXY, Snapshot};
use tidegate::xds::type_url::TypeUrl;

const EDGE: &str = "edge.ingress";
const AMBIENT: &str = "httpbin-gateway.httpbin";
const WAYPOINT: &str = "httpbin-waypoint.httpbin";

/// The golden cases `shared-gateway` (a gateway shared by teams, with an HTTPS listener)
/// and `seed-2.6-ambient` (an ambient gateway sending through a waypoint) in one model.
fn model() -> tidegate::model::Model {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut repo = TempRepo::new();
    repo.write("tidegate.yaml", "platform: kubernetes\n");
    for (case, file) in [
        ("shared-gateway", "apps.yaml"),
        ("seed-2.6-ambient", "httpbin.yaml"),
    ] {
        let text =
            std::fs::read_to_string(golden.join(case).join("config/intents").join(file)).unwrap();
        repo.write(&format!("intents/{file}"), text);
    }
    repo.commit("two golden cases");
    let tree = tidegate::gitsync::read(repo.path(), None, &tidegate::intent::LAYOUT).unwrap();
    tidegate::intent::load_and_expand(&tree).unwrap().1
}

/// The endpoints file: every Service the routes use, the waypoint's HBONE port, and a
/// Service of the waypoint's namespace no route names.
struct Eps {
    storefront: &'static str,
    blog: &'static str,
    feed: bool,
    httpbin_vip: &'static str,
    other_addr: &'static str,
    hbone_addr: &'static str,
    unrelated: bool,
}

impl Default for Eps {
    fn default() -> Self {
        Self {
            storefront: "[\"10.1.0.1:8080\"]",
            blog: "[\"10.1.0.2:80\"]",
            feed: true,
            httpbin_vip: "10.96.0.10",
            other_addr: "10.1.0.5:9090",
            hbone_addr: "10.1.0.9:15008",
            unrelated: false,
        }
    }
}

impl Eps {
    fn file(&self) -> Arc<Endpoints> {
        let mut t = format!(
            "storefront.shop:8080: {}\nblog.blog:80: {}\nadmin.shop:9000: [\"10.1.0.3:9000\"]\n\
             httpbin.httpbin:8000: {{vip: \"{}\", addresses: [\"10.1.0.4:8000\"]}}\n\
             other.httpbin:9090: {{vip: \"10.96.0.11\", addresses: [\"{}\"]}}\n\
             httpbin-waypoint.httpbin:15008: [\"{}\"]\n",
            self.storefront, self.blog, self.httpbin_vip, self.other_addr, self.hbone_addr
        );
        if self.feed {
            t.push_str("feed.feeds:80: [\"10.1.0.6:80\"]\n");
        }
        if self.unrelated {
            t.push_str("unused.elsewhere:80: [\"10.1.0.7:80\"]\n");
        }
        Arc::new(Endpoints::parse(&t).unwrap())
    }
}

/// `--certs` as the files are now.
fn load_certs(dir: &Path) -> Arc<Certs> {
    let certs = Certs::load(dir).unwrap();
    assert!(certs.problems.is_empty(), "{:?}", certs.problems);
    Arc::new(certs)
}

fn write_identity(pki: &Pki, dir: &Path, proxy: &str) {
    pki.write_pair(
        &dir.join("mesh/httpbin").join(proxy),
        proxy,
        vec![uri(&format!(
            "spiffe://cluster.local/ns/httpbin/sa/{proxy}"
        ))],
    );
}

fn write_secret(pki: &Pki, dir: &Path) {
    pki.write_pair(
        &dir.join("secrets/ingress/admin-cert"),
        "admin",
        vec![dns("admin.shop.example.com")],
    );
}

/// Every proxy of `a` is served exactly what it is in `b`.
fn assert_same(step: &str, a: &Snapshot, b: &Snapshot) {
    let ids: Vec<&String> = a.proxy_ids().collect();
    assert_eq!(ids, b.proxy_ids().collect::<Vec<_>>(), "{step}");
    for id in ids {
        let (pa, pb) = (
            a.proxy(id, &Default::default()),
            b.proxy(id, &Default::default()),
        );
        assert_eq!(pa.known, pb.known, "{step}: {id}");
        assert_eq!(pa.warnings, pb.warnings, "{step}: {id}: warnings");
        for t in TypeUrl::ALL {
            let (ra, rb) = (pa.of(t), pb.of(t));
            assert_eq!(ra.version, rb.version, "{step}: {id} {}", t.short());
            // Names, versions and bytes.
            let flat = |r: &tidegate::xds::snapshot::TypeResources| {
                r.resources
                    .iter()
                    .map(|(n, r)| (n.clone(), r.version.clone(), r.any.value.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(flat(ra), flat(rb), "{step}: {id} {}", t.short());
        }
    }
}

/// The proxies `next` encoded again (not the very `Arc` of `previous`).
fn reencoded(previous: &Snapshot, next: &Snapshot) -> BTreeSet<String> {
    next.proxy_ids()
        .filter(|id| {
            !Arc::ptr_eq(
                &previous.proxy(id, &Default::default()),
                &next.proxy(id, &Default::default()),
            )
        })
        .cloned()
        .collect()
}

#[test]
fn an_inputs_change_reencodes_exactly_the_proxies_that_read_it() {
    let model = model();
    let plans = tidegate::xds::translate::plans(&model);
    assert_eq!(
        plans.keys().map(String::as_str).collect::<Vec<_>>(),
        [EDGE, AMBIENT, WAYPOINT],
        "the proxies this test is about"
    );
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    std::fs::create_dir_all(certs_dir.join("mesh")).unwrap();

    let all = || BTreeSet::from([EDGE, AMBIENT, WAYPOINT].map(String::from));
    let only = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let mut eps = Eps::default();
    let mut current = Snapshot::build(Default::default(), plans.clone(), Inputs::default());

    // Each step: what changes, and which proxies read it.
    let mut step = |label: &str, inputs: Inputs, expected: BTreeSet<String>| {
        let next = current.with_inputs(inputs.clone());
        let fresh = Snapshot::build(Default::default(), plans.clone(), inputs);
        assert_same(label, &next, &fresh);
        assert_eq!(reencoded(&current, &next), expected, "{label}");
        current = next;
        [EDGE, AMBIENT].map(|id| current.proxy(id, &Default::default()))
    };

    let with = |e: &Eps, c: Option<Arc<Certs>>| Inputs {
        endpoints: Some(e.file()),
        certs: c,
    };
    step("the endpoints file appears", with(&eps, None), all());

    // Certificates: only the mesh proxies and the HTTPS listener's gateway read them.
    std::fs::write(certs_dir.join("mesh/ca.crt"), &pki.ca_pem).unwrap();
    write_identity(&pki, &certs_dir, "httpbin-gateway");
    write_identity(&pki, &certs_dir, "httpbin-waypoint");
    write_secret(&pki, &certs_dir);
    let certs = load_certs(&certs_dir);
    assert_eq!(certs.secrets.len(), 1);
    let [edge, ambient] = step(
        "certificates appear",
        with(&eps, Some(certs.clone())),
        all(),
    );
    assert_eq!(
        edge.of(TypeUrl::Secret).resources.len(),
        1,
        "the HTTPS listener's certificate is served: the steps below rotate a used one"
    );
    assert!(
        ambient.warnings.is_empty() && ambient.of(TypeUrl::Listener).resources.len() > 1,
        "the ambient gateway tunnels to the waypoint (what the endpoint steps below change): {:?}",
        ambient.warnings
    );

    // With certificates, so that the mesh proxies use every entry they read.
    let c = || Some(certs.clone());
    eps.storefront = "[\"10.1.0.1:8080\", \"10.1.0.8:8080\"]";
    step(
        "a gateway backend's addresses",
        with(&eps, c()),
        only(&[EDGE]),
    );
    eps.httpbin_vip = "10.96.0.20";
    step(
        "the vip of a Service behind the waypoint",
        with(&eps, c()),
        only(&[AMBIENT, WAYPOINT]),
    );
    eps.other_addr = "10.1.0.15:9090";
    step(
        "a waypoint-bound Service no route names",
        with(&eps, c()),
        only(&[WAYPOINT]),
    );
    eps.hbone_addr = "10.1.0.19:15008";
    step(
        "the waypoint's HBONE endpoints",
        with(&eps, c()),
        // The waypoint reads its own namespace whole (its own port is skipped there).
        only(&[AMBIENT, WAYPOINT]),
    );
    eps.blog = "{appProtocol: kubernetes.io/h2c, addresses: [\"10.1.0.2:80\"]}";
    step("a backend's appProtocol", with(&eps, c()), only(&[EDGE]));
    eps.unrelated = true;
    step("a Service nobody uses", with(&eps, c()), only(&[]));
    eps.feed = false;
    step("a backend's entry removed", with(&eps, c()), only(&[EDGE]));

    write_secret(&pki, &certs_dir);
    step(
        "the HTTPS certificate rotated",
        with(&eps, Some(load_certs(&certs_dir))),
        only(&[EDGE]),
    );
    write_identity(&pki, &certs_dir, "httpbin-gateway");
    step(
        "one mesh identity rotated",
        with(&eps, Some(load_certs(&certs_dir))),
        only(&[AMBIENT]),
    );
    let other_ca = Pki::new();
    std::fs::write(certs_dir.join("mesh/ca.crt"), &other_ca.ca_pem).unwrap();
    step(
        "the mesh CA rotated",
        with(&eps, Some(load_certs(&certs_dir))),
        only(&[AMBIENT, WAYPOINT]),
    );
    step(
        "the same certificates read again",
        with(&eps, Some(load_certs(&certs_dir))),
        only(&[]),
    );
    step(
        "certificates gone",
        with(&eps, None),
        only(&[EDGE, AMBIENT, WAYPOINT]),
    );
    step(
        "the endpoints file disappears",
        Inputs {
            endpoints: None,
            certs: Some(load_certs(&certs_dir)),
        },
        all(),
    );
    step(
        "nothing changed",
        Inputs {
            endpoints: None,
            certs: Some(load_certs(&certs_dir)),
        },
        only(&[]),
    );
}

#[test]
fn variants_are_cached_up_to_a_bound_per_proxy() {
    let plans = tidegate::xds::translate::plans(&model());
    let inputs = Inputs {
        endpoints: Some(Eps::default().file()),
        certs: None,
    };
    let snapshot = Snapshot::build(Default::default(), plans.clone(), inputs.clone());
    let fresh = Snapshot::build(Default::default(), plans, inputs);
    let variant = |i: usize| tidegate::xds::emit::Variant {
        bind: Some(format!("127.0.0.{i}")),
        proxyless: false,
    };
    let n = MAX_VARIANTS_PER_PROXY + 5;
    for i in 0..n {
        let a = snapshot.proxy(EDGE, &variant(i));
        // Asked again: the kept one while under the bound, an equal one past it.
        let b = snapshot.proxy(EDGE, &variant(i));
        assert_eq!(
            Arc::ptr_eq(&a, &b),
            i < MAX_VARIANTS_PER_PROXY,
            "variant {i}"
        );
        let c = fresh.proxy(EDGE, &variant(i));
        for t in TypeUrl::ALL {
            assert_eq!(a.of(t).resources, c.of(t).resources, "variant {i}");
        }
        assert_eq!(
            snapshot.cached_variants(),
            (i + 1).min(MAX_VARIANTS_PER_PROXY)
        );
    }
    // Another proxy has its own allowance; an unknown one is never cached.
    snapshot.proxy(AMBIENT, &variant(1));
    snapshot.proxy("nobody.nowhere", &variant(1));
    assert_eq!(snapshot.cached_variants(), MAX_VARIANTS_PER_PROXY + 1);
    assert!(!snapshot.proxy("nobody.nowhere", &variant(1)).known);
}

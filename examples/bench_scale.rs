//! Scale probe: how the per-commit pipeline grows with the number of intents.
//!
//! N intents in N/10 files across M gateways, committed to a real repository; measures the
//! cold pipeline (read, validate + expand, translate + encode: the time to a new snapshot;
//! then render, which `serve` does after publishing and only when it writes manifests) and
//! the same after one intent file changes (decoding is cached by blob id, and proxies whose
//! plan did not change keep their encoded resources).
//!
//! A second table measures an endpoints-file change on the served snapshot: the time from
//! the new file's text to the new snapshot (parse, then `Snapshot::with_inputs`), for one
//! Service's addresses changed (the common case: one Deployment scaled) and, for reference,
//! every Service's addresses changed (touches every proxy). Each is the median of
//! `BENCH_EP_ROUNDS` (default 5) rounds.
//!
//! With `BENCH_BACKEND_TLS=1`, every intent's Service also has a BackendTLSPolicy (CA
//! bundles from one ConfigMap per namespace), as `resources/backend-tls.yaml`.
//!
//! ```sh
//! cargo run --release --example bench_scale -- 100 1000 10000
//! ```

use std::time::{Duration, Instant};

use tidegate::gitsync::source::RepoSource;
use tidegate::test_helpers::TempRepo;

fn intent(i: usize, gateways: usize) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: app{i}, namespace: team{}}}\nspec:\n  mode: gateway-api\n  hostnames: [app{i}.example.com]\n  gateway: {{name: edge{}, namespace: ingress, port: 80}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]\n    backendRefs: [{{name: app{i}, port: 8080}}]\n",
        i % 50,
        i % gateways
    )
}

/// A BackendTLSPolicy per intent's Service and a CA ConfigMap per namespace, one YAML
/// document each.
fn backend_tls(n: usize) -> Vec<String> {
    let ca = tidegate::test_helpers::pki::Pki::new().ca_pem;
    let ca = ca.trim_end().replace('\n', "\n    ");
    let mut out = Vec::new();
    for t in 0..50.min(n) {
        out.push(format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: backend-ca, namespace: team{t}}}\ndata:\n  ca.crt: |\n    {ca}\n"
        ));
    }
    for i in 0..n {
        out.push(format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: app{i}, namespace: team{}}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: app{i}}}]\n  validation:\n    caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: backend-ca}}]\n    hostname: app{i}.internal\n",
            i % 50
        ));
    }
    out
}

struct Times {
    read: Duration,
    validate: Duration,
    render: Duration,
    /// The same render without the previous commit's YAML (before `serve` kept it).
    render_uncached: Duration,
    translate: Duration,
    /// Gateway API conditions, computed on the first `/status` of a snapshot.
    status: Duration,
}

fn run(
    src: &RepoSource,
    sha: &str,
    cache: &mut tidegate::intent::Cache,
    plan_cache: &mut tidegate::xds::translate::Cache,
    render_cache: &mut tidegate::render::Cache,
    previous: &mut Option<tidegate::xds::snapshot::Snapshot>,
) -> Times {
    let t = Instant::now();
    let tree = src
        .read(sha, &tidegate::intent::LAYOUT, &|p, id| cache.knows(p, id))
        .unwrap();
    let read = t.elapsed();
    let t = Instant::now();
    let (config, model) = tidegate::intent::load_and_expand_cached(&tree, cache).unwrap();
    let validate = t.elapsed();
    let t = Instant::now();
    let rendered =
        tidegate::render::render_cached(&model, &config.summary(&tree.source), render_cache)
            .unwrap();
    let render = t.elapsed();
    let t = Instant::now();
    std::hint::black_box(tidegate::render::render(&model, &config.summary(&tree.source)).unwrap());
    let render_uncached = t.elapsed();
    let t = Instant::now();
    let plans = tidegate::xds::translate::plans_cached(&model, plan_cache);
    let planned = t.elapsed();
    let snapshot = tidegate::xds::snapshot::Snapshot::build_shared(
        Default::default(),
        plans,
        Default::default(),
        previous.as_ref(),
    );
    let translate = t.elapsed();
    if std::env::var_os("BENCH_DETAIL").is_some() {
        eprintln!("  plans {:?} encode {:?}", planned, translate - planned);
    }
    let t = Instant::now();
    std::hint::black_box(tidegate::xds::translate::conditions::status(
        &model, None, None,
    ));
    let status = t.elapsed();
    std::hint::black_box(rendered);
    *previous = Some(snapshot);
    Times {
        read,
        validate,
        render,
        render_uncached,
        translate,
        status,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000, 10_000]
    } else {
        sizes
    };
    println!(
        "| intents | gateways | run | read | validate+expand | translate+encode | **to snapshot** | render (after publishing) | render without the previous YAML | status (first /status) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut endpoint_rows = Vec::new();
    for n in sizes {
        let gateways = (n / 100).max(1);
        let mut repo = TempRepo::new();
        for f in 0..n.div_ceil(10) {
            let docs: Vec<String> = (f * 10..((f + 1) * 10).min(n))
                .map(|i| intent(i, gateways))
                .collect();
            repo.write(&format!("intents/f{f}.yaml"), docs.join("---\n"));
        }
        if std::env::var_os("BENCH_BACKEND_TLS").is_some() {
            // Files of 1,000 policies: a file is limited to 1 MiB.
            for (f, chunk) in backend_tls(n).chunks(1000).enumerate() {
                repo.write(&format!("resources/backend-tls-{f}.yaml"), chunk.concat());
            }
        }
        let first = repo.commit("many");
        let mut docs: Vec<String> = (0..10.min(n)).map(|i| intent(i, gateways)).collect();
        docs[0] = docs[0].replace("value: /api", "value: /api/v2");
        repo.write("intents/f0.yaml", docs.join("---\n"));
        let second = repo.commit("one file changed");
        let src = RepoSource::new(&repo.path().to_string_lossy(), None, None);
        let mut cache = tidegate::intent::Cache::default();
        let mut previous = None;
        let mut plan_cache = tidegate::xds::translate::Cache::default();
        let mut render_cache = tidegate::render::Cache::default();
        for (label, sha) in [("cold", &first), ("one file changed", &second)] {
            let t = run(
                &src,
                sha,
                &mut cache,
                &mut plan_cache,
                &mut render_cache,
                &mut previous,
            );
            let to_snapshot = t.read + t.validate + t.translate;
            println!(
                "| {n} | {gateways} | {label} | {} | {} | {} | **{}** | {} | {} | {} |",
                ms(t.read),
                ms(t.validate),
                ms(t.translate),
                ms(to_snapshot),
                ms(t.render),
                ms(t.render_uncached),
                ms(t.status),
            );
        }
        // For profiling the incremental path: alternate between the two commits.
        let rounds: usize = std::env::var("BENCH_PROFILE_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        for r in 0..rounds {
            let sha = if r % 2 == 0 { &first } else { &second };
            std::hint::black_box(run(
                &src,
                sha,
                &mut cache,
                &mut plan_cache,
                &mut render_cache,
                &mut previous,
            ));
        }
        if let Some(served) = previous.take() {
            endpoint_rows.extend(endpoints_change(n, gateways, served));
        }
    }
    println!();
    println!(
        "| intents | gateways | endpoints change | parse | with_inputs | **to snapshot** | proxies re-encoded |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in endpoint_rows {
        println!("{row}");
    }
}

/// The endpoints file of `n` intents (each routes to its own Service), with the addresses
/// of the Services `changed` selects moved by `shift`.
fn endpoints_file(n: usize, shift: u8, changed: impl Fn(usize) -> bool) -> String {
    let mut out = String::new();
    for i in 0..n {
        let last = if changed(i) { shift } else { 0 };
        out.push_str(&format!(
            "app{i}.team{}:8080: [\"10.{}.{}.{last}:8080\", \"10.{}.{}.{}:8080\"]\n",
            i % 50,
            i / 256 % 256,
            i % 256,
            i / 256 % 256,
            i % 256,
            last.wrapping_add(1)
        ));
    }
    out
}

/// Rows for an endpoints-file change on `served` (the snapshot of the last commit).
fn endpoints_change(
    n: usize,
    gateways: usize,
    served: tidegate::xds::snapshot::Snapshot,
) -> Vec<String> {
    use tidegate::xds::endpoints::Endpoints;
    use tidegate::xds::snapshot::{Inputs, Snapshot};
    let rounds: usize = std::env::var("BENCH_EP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let inputs = |text: &str| Inputs {
        endpoints: Some(std::sync::Arc::new(Endpoints::parse(text).unwrap())),
        certs: None,
    };
    // The served state: the commit's snapshot with the file as it was.
    let mut current: Snapshot = served.with_inputs(inputs(&endpoints_file(n, 0, |_| false)));
    let ids: Vec<String> = current.proxy_ids().cloned().collect();
    let mut rows = Vec::new();
    for (label, pick) in [
        (
            "one Service's addresses",
            (|i: usize| i == 7) as fn(usize) -> bool,
        ),
        ("every Service's addresses", |_| true),
    ] {
        let mut parse = Vec::new();
        let mut total = Vec::new();
        let mut reencoded = 0;
        for r in 0..rounds {
            // Alternate between two files so that every round is a change.
            let text = endpoints_file(n, if r % 2 == 0 { 100 } else { 0 }, pick);
            let t = Instant::now();
            let next = inputs(&text);
            let parsed = t.elapsed();
            let snapshot = current.with_inputs(next);
            let elapsed = t.elapsed();
            reencoded = ids
                .iter()
                .filter(|id| {
                    !std::sync::Arc::ptr_eq(
                        &current.proxy(id, &Default::default()),
                        &snapshot.proxy(id, &Default::default()),
                    )
                })
                .count();
            parse.push(parsed);
            total.push(elapsed);
            current = snapshot;
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (p, t) = (median(&mut parse), median(&mut total));
        rows.push(format!(
            "| {n} | {gateways} | {label} | {} | {} | **{}** | {reencoded} of {} |",
            ms(p),
            ms(t - p),
            ms(t),
            ids.len()
        ));
    }
    rows
}

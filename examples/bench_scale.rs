//! Scale probe: how the per-commit pipeline grows with the number of intents.
//!
//! N intents in N/10 files across M gateways, committed to a real repository; measures the
//! cold pipeline (read, validate + expand, translate + encode: the time to a new snapshot;
//! then render, which `serve` does after publishing and only when it writes manifests) and
//! the same after one intent file changes (decoding is cached by blob id, and proxies whose
//! plan did not change keep their encoded resources).
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

struct Times {
    read: Duration,
    validate: Duration,
    render: Duration,
    translate: Duration,
    /// Gateway API conditions, computed on the first `/status` of a snapshot.
    status: Duration,
}

fn run(
    src: &RepoSource,
    sha: &str,
    cache: &mut tidegate::intent::Cache,
    plan_cache: &mut tidegate::xds::translate::Cache,
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
    let rendered = tidegate::render::render(&model, &config.summary(&tree.source)).unwrap();
    let render = t.elapsed();
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
    std::hint::black_box(tidegate::xds::translate::conditions::status(&model, None));
    let status = t.elapsed();
    std::hint::black_box(rendered);
    *previous = Some(snapshot);
    Times {
        read,
        validate,
        render,
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
        "| intents | gateways | run | read | validate+expand | translate+encode | **to snapshot** | render (after publishing) | status (first /status) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let gateways = (n / 100).max(1);
        let mut repo = TempRepo::new();
        for f in 0..n.div_ceil(10) {
            let docs: Vec<String> = (f * 10..((f + 1) * 10).min(n))
                .map(|i| intent(i, gateways))
                .collect();
            repo.write(&format!("intents/f{f}.yaml"), docs.join("---\n"));
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
        for (label, sha) in [("cold", &first), ("one file changed", &second)] {
            let t = run(&src, sha, &mut cache, &mut plan_cache, &mut previous);
            let to_snapshot = t.read + t.validate + t.translate;
            println!(
                "| {n} | {gateways} | {label} | {} | {} | {} | **{}** | {} | {} |",
                ms(t.read),
                ms(t.validate),
                ms(t.translate),
                ms(to_snapshot),
                ms(t.render),
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
            std::hint::black_box(run(&src, sha, &mut cache, &mut plan_cache, &mut previous));
        }
    }
}

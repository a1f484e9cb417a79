//! Scale probe: how the per-commit pipeline grows with the number of intents.
//!
//! N intents in N/10 files across M gateways, committed to a real repository; measures the
//! cold pipeline (read, validate + expand, render, translate + encode) and the same after
//! one intent file changes (decoding is cached by blob id; the rest is still whole-commit).
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
}

fn run(src: &RepoSource, sha: &str, cache: &mut tidegate::intent::Cache) -> Times {
    let t = Instant::now();
    let tree = src.read(sha, &|p, id| cache.knows(p, id)).unwrap();
    let read = t.elapsed();
    let t = Instant::now();
    let (config, model) = tidegate::intent::load_and_expand_cached(&tree, cache).unwrap();
    let validate = t.elapsed();
    let t = Instant::now();
    let rendered = tidegate::render::render(&model, &config, &tree.source).unwrap();
    let render = t.elapsed();
    let t = Instant::now();
    let snapshot = tidegate::xds::snapshot::Snapshot::build(
        Default::default(),
        tidegate::xds::translate::plans(&model),
        Default::default(),
    );
    let translate = t.elapsed();
    std::hint::black_box((rendered, snapshot));
    Times {
        read,
        validate,
        render,
        translate,
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
        "| intents | gateways | run | read | validate+expand | render | translate+encode | total |"
    );
    println!("|---|---|---|---|---|---|---|---|");
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
        for (label, sha) in [("cold", &first), ("one file changed", &second)] {
            let t = run(&src, sha, &mut cache);
            let total = t.read + t.validate + t.render + t.translate;
            println!(
                "| {n} | {gateways} | {label} | {} | {} | {} | {} | {} |",
                ms(t.read),
                ms(t.validate),
                ms(t.render),
                ms(t.translate),
                ms(total)
            );
        }
    }
}

//! `tidegate diff` of a large repository where the head changes one file.
//!
//! N intents in N/10 files across N/100 gateways (as `bench_scale`), committed to a real
//! repository; the head changes one intent's path. Measures the diff as the command runs it
//! (one process: open, both sides through the pipeline with shared caches, compare, print)
//! and its parts: the base side (cold: nothing is cached yet), the head side with the
//! base's caches and, for the cache effect, without them; the comparison. Each figure is
//! the median of `BENCH_ROUNDS` (default 3) rounds. A second table splits a side into the
//! pipeline's steps, run one after the other (`Side::load` runs render, plans and status
//! side by side).
//!
//! ```sh
//! cargo run --release --example bench_diff -- 1000 10000
//! ```

use std::time::{Duration, Instant};

use tidegate::review::diff::{self, Report};
use tidegate::review::{Caches, Repo, Side};
use tidegate::test_helpers::TempRepo;

fn intent(i: usize, gateways: usize, path: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: app{i}, namespace: team{}}}\nspec:\n  mode: gateway-api\n  hostnames: [app{i}.example.com]\n  gateway: {{name: edge{}, namespace: ingress, port: 80}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: app{i}, port: 8080}}]\n",
        i % 50,
        i % gateways
    )
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!(
        "| intents | gateways | **tidegate diff** (one process) | base side (cold) | head side, shared caches | head side, cold | compare | print | changes found |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut step_rows = Vec::new();
    for n in sizes {
        let gateways = (n / 100).max(1);
        let mut repo = TempRepo::new();
        for f in 0..n.div_ceil(10) {
            let docs: Vec<String> = (f * 10..((f + 1) * 10).min(n))
                .map(|i| intent(i, gateways, "/api"))
                .collect();
            repo.write(&format!("intents/f{f}.yaml"), docs.join("---\n"));
        }
        let base = repo.commit("many");
        let mut docs: Vec<String> = (0..10.min(n))
            .map(|i| intent(i, gateways, "/api"))
            .collect();
        docs[0] = intent(0, gateways, "/api/v2");
        repo.write("intents/f0.yaml", docs.join("---\n"));
        let head = repo.commit("one file changed");
        let path = repo.path().to_string_lossy().into_owned();
        let opts = diff::Options {
            repo: path.clone(),
            base: base.clone(),
            head: head.clone(),
            format: "text".into(),
            proxies: Vec::new(),
            endpoints: None,
            git_auth: Default::default(),
            verify_commits: None,
        };
        let (mut whole, mut b, mut h, mut cold, mut cmp, mut print) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut found = String::new();
        for _ in 0..rounds {
            let ((report, out), t) = time(|| diff::report(&opts).unwrap());
            std::hint::black_box(out);
            whole.push(t);
            assert_eq!(report.exit_code(), 2);
            found = format!(
                "{} manifest(s), {} proxy, {} request(s)",
                report.manifests.changed.len(),
                report.proxies.len(),
                report.traffic.len()
            );
            // The same steps, timed apart.
            let git = Repo::open(&path).unwrap();
            let mut caches = Caches::default();
            let (base_side, t) = time(|| Side::load(&git, Some(&base), &mut caches).unwrap());
            b.push(t);
            let (head_side, t) = time(|| Side::load(&git, Some(&head), &mut caches).unwrap());
            h.push(t);
            let (report, t) =
                time(|| Report::between((&base, &base_side), (&head, &head_side), None, &[]));
            cmp.push(t);
            let (_, t) = time(|| std::hint::black_box(diff::format_text(&report)));
            print.push(t);
            drop(head_side);
            let (_, t) = time(|| Side::load(&git, Some(&head), &mut Caches::default()).unwrap());
            cold.push(t);
        }
        let steps = |rev: &str,
                     ic: &mut tidegate::intent::Cache,
                     pc: &mut tidegate::xds::translate::Cache,
                     rc: &mut tidegate::render::Cache| {
            let git = git2::Repository::open(&path).unwrap();
            let (tree, read) = time(|| {
                tidegate::gitsync::read_commit_with(
                    &git,
                    rev,
                    "",
                    &tidegate::intent::LAYOUT,
                    &|p, id| ic.knows(p, id),
                )
                .unwrap()
            });
            let ((config, model), validate) =
                time(|| tidegate::intent::load_and_expand_cached(&tree, ic).unwrap());
            let (_, render) = time(|| {
                tidegate::render::render_cached(&model, &config.summary(&tree.source), rc).unwrap()
            });
            let (_, plans) = time(|| tidegate::xds::translate::plans_cached(&model, pc));
            let (_, status) =
                time(|| tidegate::xds::translate::conditions::status(&model, None, None));
            [read, validate, render, plans, status]
        };
        let (mut ic, mut pc, mut rc) = Default::default();
        let cold_steps = steps(&base, &mut ic, &mut pc, &mut rc);
        let warm = steps(&head, &mut ic, &mut pc, &mut rc);
        for (label, t) in [("base (cold)", cold_steps), ("head (shared caches)", warm)] {
            step_rows.push(format!(
                "| {n} | {label} | {} | {} | {} | {} | {} |",
                ms(t[0]),
                ms(t[1]),
                ms(t[2]),
                ms(t[3]),
                ms(t[4])
            ));
        }
        println!(
            "| {n} | {gateways} | **{}** | {} | {} | {} | {} | {} | {found} |",
            ms(median(whole)),
            ms(median(b)),
            ms(median(h)),
            ms(median(cold)),
            ms(median(cmp)),
            ms(median(print)),
        );
    }
    println!();
    println!("| intents | side | read | validate+expand | render | plans | status |");
    println!("|---|---|---|---|---|---|---|");
    for row in step_rows {
        println!("{row}");
    }
}

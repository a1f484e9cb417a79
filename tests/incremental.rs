//! The incremental pipeline gives exactly what a from-scratch run gives.
//!
//! `serve` keeps caches between commits — decoded files by blob id, each gateway's
//! expansion by its intents, each proxy's plan by its inputs, each proxy's encoded
//! resources by its plan — so a commit that touches one gateway redoes only that gateway.
//! A cache that returned stale output would serve the wrong config silently, so every
//! step of a sequence of commits is checked against a cache-free run of the same commit:
//! same model, same versions for every proxy. And what is reused is checked to be reused.

use std::sync::Arc;

use tidegate::render::Rendered;
use tidegate::test_helpers::TempRepo;
use tidegate::xds::snapshot::{Inputs, Snapshot};
use tidegate::xds::translate::Cache as Plans;
use tidegate::xds::type_url::TypeUrl;

fn intent(name: &str, ns: &str, gateway: &str, mode: &str, path: &str, backend_ns: &str) -> String {
    format!(
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  mode: {mode}\n  hostnames: [{name}.example.com]\n  gateway: {{name: {gateway}, namespace: ingress, port: 8080}}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: {name}, namespace: {backend_ns}, port: 8000}}]\n"
    )
}

/// A plain HTTPRoute of team-a on gateway edge1 (whose listener for a.example.com admits
/// team-a's routes).
fn plain_route(path: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: extra, namespace: team-a}}\nspec:\n  parentRefs: [{{name: edge1, namespace: ingress}}]\n  hostnames: [a.example.com]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: a, port: 8000}}]\n"
    )
}

/// Versions of every proxy and type: what proxies would be sent.
fn versions(s: &Snapshot) -> Vec<(String, Vec<String>)> {
    s.proxy_ids()
        .map(|id| {
            let p = s.proxy(id, &Default::default());
            (
                id.clone(),
                TypeUrl::ALL
                    .iter()
                    .map(|t| p.of(*t).version.clone())
                    .collect(),
            )
        })
        .collect()
}

struct Pipeline {
    files: tidegate::intent::Cache,
    plans: Plans,
    render: tidegate::render::Cache,
    previous: Option<Snapshot>,
}

impl Pipeline {
    /// The model, the snapshot and the rendered files of the repository's HEAD.
    fn run(&mut self, repo: &TempRepo) -> (tidegate::model::Model, Snapshot, Rendered) {
        let tree = tidegate::gitsync::read(repo.path(), None, &tidegate::intent::LAYOUT).unwrap();
        let (config, model) =
            tidegate::intent::load_and_expand_cached(&tree, &mut self.files).unwrap();
        let rendered = tidegate::render::render_cached(
            &model,
            &config.summary(&tree.source),
            &mut self.render,
        )
        .unwrap();
        let snapshot = Snapshot::build_shared(
            Default::default(),
            tidegate::xds::translate::plans_cached(&model, &mut self.plans),
            Inputs::default(),
            self.previous.as_ref(),
        );
        (model, snapshot, rendered)
    }
}

fn scratch(repo: &TempRepo) -> (tidegate::model::Model, Snapshot, Rendered) {
    let tree = tidegate::gitsync::read(repo.path(), None, &tidegate::intent::LAYOUT).unwrap();
    let (config, model) = tidegate::intent::load_and_expand(&tree).unwrap();
    let rendered = tidegate::render::render(&model, &config.summary(&tree.source)).unwrap();
    let snapshot = Snapshot::build(
        Default::default(),
        tidegate::xds::translate::plans(&model),
        Inputs::default(),
    );
    (model, snapshot, rendered)
}

#[test]
fn every_step_equals_a_run_from_scratch_and_unchanged_gateways_are_reused() {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/a.yaml",
        intent("a", "team-a", "edge1", "gateway-api", "/a", "team-a"),
    );
    repo.write(
        "intents/b.yaml",
        intent("b", "team-b", "edge2", "gateway-api", "/b", "team-b"),
    );
    repo.write(
        "intents/c.yaml",
        intent("c", "team-c", "edge2", "gateway-api", "/c", "team-c"),
    );
    repo.commit("three intents, two gateways");
    let mut p = Pipeline {
        files: Default::default(),
        plans: Default::default(),
        render: Default::default(),
        previous: None,
    };

    // Each step: an edit, and which proxies must be re-encoded.
    type Edit = Box<dyn Fn(&TempRepo)>;
    let steps: Vec<(&str, Edit, &[&str])> = vec![
        (
            "first commit",
            Box::new(|_| {}),
            &["edge1.ingress", "edge2.ingress"],
        ),
        (
            "a route of edge2 changes",
            Box::new(|r| {
                r.write(
                    "intents/c.yaml",
                    intent("c", "team-c", "edge2", "gateway-api", "/c2", "team-c"),
                );
            }),
            &["edge2.ingress"],
        ),
        (
            "an intent moves from edge2 to edge1",
            Box::new(|r| {
                r.write(
                    "intents/c.yaml",
                    intent("c", "team-c", "edge1", "gateway-api", "/c2", "team-c"),
                );
            }),
            &["edge1.ingress", "edge2.ingress"],
        ),
        (
            "a cross-namespace backend (a ReferenceGrant appears)",
            Box::new(|r| {
                r.write(
                    "intents/b.yaml",
                    intent("b", "team-b", "edge2", "gateway-api", "/b", "shared"),
                );
            }),
            &["edge1.ingress", "edge2.ingress"],
        ),
        (
            "a new gateway",
            Box::new(|r| {
                r.write(
                    "intents/d.yaml",
                    intent("d", "team-d", "edge3", "istio", "/d", "team-d"),
                );
            }),
            &["edge1.ingress", "edge2.ingress", "edge3.ingress"],
        ),
        (
            "an istio route changes",
            Box::new(|r| {
                r.write(
                    "intents/d.yaml",
                    intent("d", "team-d", "edge3", "istio", "/d2", "team-d"),
                );
            }),
            &["edge3.ingress"],
        ),
        (
            "an intent is deleted",
            Box::new(|r| {
                r.remove("intents/c.yaml");
            }),
            &["edge1.ingress"],
        ),
        (
            "a namespace turns ambient (labels every gateway may read)",
            Box::new(|r| {
                r.write(
                    "intents/a.yaml",
                    intent("a", "team-a", "edge1", "ambient", "/a", "team-a"),
                );
            }),
            &[
                "edge1.ingress",
                "edge2.ingress",
                "edge3.ingress",
                "waypoint.team-a",
            ],
        ),
        (
            "a file with intents on two gateways",
            Box::new(|r| {
                r.write(
                    "intents/two.yaml",
                    format!(
                        "{}---\n{}",
                        intent("e", "team-e", "edge2", "gateway-api", "/e", "team-e"),
                        intent("f", "team-f", "edge3", "istio", "/f", "team-f")
                    ),
                );
            }),
            &["edge2.ingress", "edge3.ingress"],
        ),
        (
            "one of the two changes (the other keeps its Arc: its gateway is reused)",
            Box::new(|r| {
                r.write(
                    "intents/two.yaml",
                    format!(
                        "{}---\n{}",
                        intent("e", "team-e", "edge2", "gateway-api", "/e", "team-e"),
                        intent("f", "team-f", "edge3", "istio", "/f2", "team-f")
                    ),
                );
            }),
            &["edge3.ingress"],
        ),
        (
            "a plain HTTPRoute in resources/ attaches to an intent's gateway",
            Box::new(|r| {
                r.write("resources/extra.yaml", plain_route("/plain"));
            }),
            &["edge1.ingress"],
        ),
        (
            "the plain HTTPRoute changes",
            Box::new(|r| {
                r.write("resources/extra.yaml", plain_route("/plain2"));
            }),
            &["edge1.ingress"],
        ),
        (
            "a plain Gateway, its GRPCRoute and a labelled Namespace",
            Box::new(|r| {
                r.write(
                    "resources/shop.yaml",
                    "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {tier: web}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: shop, namespace: shop}\nspec:\n  gatewayClassName: tidegate\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: cart, namespace: shop}\nspec:\n  parentRefs: [{name: shop}]\n  rules: [{backendRefs: [{name: cart, port: 9000}]}]\n",
                );
            }),
            &["shop.shop"],
        ),
        (
            "the plain HTTPRoute is deleted",
            Box::new(|r| {
                r.remove("resources/extra.yaml");
            }),
            &["edge1.ingress"],
        ),
        (
            "settings change",
            Box::new(|r| {
                r.write("tidegate.yaml", "platform: openshift\n");
            }),
            &[],
        ),
    ];
    for (what, edit, reencoded) in steps {
        edit(&repo);
        repo.commit(what);
        let (model, snapshot, rendered) = p.run(&repo);
        let (want_model, want_snapshot, want_rendered) = scratch(&repo);
        assert_eq!(
            model, want_model,
            "{what}: the model differs from a fresh run"
        );
        // The render cache hands on unchanged objects' YAML: byte for byte a fresh render.
        assert_eq!(
            rendered.files, want_rendered.files,
            "{what}: the manifests differ from a fresh render"
        );
        assert_eq!(
            versions(&snapshot),
            versions(&want_snapshot),
            "{what}: the served versions differ from a fresh run"
        );
        let mut fresh: Vec<String> = snapshot
            .proxy_ids()
            .filter(|id| {
                p.previous.as_ref().is_none_or(|prev| {
                    !Arc::ptr_eq(
                        &prev.proxy(id, &Default::default()),
                        &snapshot.proxy(id, &Default::default()),
                    )
                })
            })
            .cloned()
            .collect();
        fresh.sort();
        // A proxy re-encoded with the same content is allowed only where its inputs
        // changed; one reused although its inputs changed would show in the versions.
        assert!(
            fresh.iter().all(|id| reencoded.contains(&id.as_str())),
            "{what}: re-encoded {fresh:?}, expected at most {reencoded:?}"
        );
        p.previous = Some(snapshot);
    }
}

#[test]
fn a_conflict_is_found_with_the_caches_as_without() {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/a.yaml",
        intent("a", "team-a", "edge1", "gateway-api", "/a", "team-a"),
    );
    repo.write(
        "intents/b.yaml",
        intent("b", "team-b", "edge2", "gateway-api", "/b", "team-b"),
    );
    repo.commit("two gateways");
    let mut cache = tidegate::intent::Cache::default();
    let read = |repo: &TempRepo| {
        tidegate::gitsync::read(repo.path(), None, &tidegate::intent::LAYOUT).unwrap()
    };
    assert!(tidegate::intent::load_and_expand_cached(&read(&repo), &mut cache).is_ok());

    // b moves to edge1 and claims a's host and path; also a mode conflict on edge1.
    let mut b = intent("b", "team-b", "edge1", "istio", "/a", "team-b");
    b = b.replace("hostnames: [b.example.com]", "hostnames: [a.example.com]");
    repo.write("intents/b.yaml", b);
    repo.commit("conflict");
    let cached = tidegate::intent::load_and_expand_cached(&read(&repo), &mut cache)
        .expect_err("rejected with the caches");
    let fresh = tidegate::intent::load_and_expand(&read(&repo)).expect_err("rejected without");
    assert_eq!(cached.to_string(), fresh.to_string());
    assert!(cached.to_string().contains("is used with mode"), "{cached}");

    // Fixed: accepted again, and equal to a fresh run.
    repo.write(
        "intents/b.yaml",
        intent("b", "team-b", "edge1", "gateway-api", "/b", "team-b"),
    );
    repo.commit("fixed");
    let (_, model) = tidegate::intent::load_and_expand_cached(&read(&repo), &mut cache).unwrap();
    let (_, want) = tidegate::intent::load_and_expand(&read(&repo)).unwrap();
    assert_eq!(model, want);
}

//! Golden tests: every case under tests/golden/<case>/config is committed to a real Git
//! repository, rendered, and compared byte for byte with tests/golden/<case>/expected.
//! The goldens are reviewed output; `UPDATE_GOLDEN=1 cargo test --test golden` rewrites
//! them. Every rendered manifest is also validated against the CRD schemas.
//!
//! Each proxy's xDS is golden too, in tests/golden/<case>/xds/: `<proxy>.plan.txt` (the
//! routing plan) and `<proxy>.json` (the emitted Envoy resources and the emitter's
//! warnings), two files so that a change of the plan's shape can be reviewed while the
//! resources stay byte for byte the same. Optional inputs of a case:
//! `endpoints.yaml` (the `serve --endpoints` file) and `certs.yaml` (which certificates to
//! issue from a fresh test CA; their bytes are redacted from the goldens).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tidegate::model::Model;
use tidegate::xds::certs::Certs;
use tidegate::xds::endpoints::Endpoints;

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(common::manifest_dir().join("tests/golden"))
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("config").is_dir())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_case_matches_its_golden_and_the_crd_schemas() {
    let cases = cases();
    assert!(cases.len() >= 6, "golden cases are missing: {cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (_repo, rendered) = common::render_dir(&case.join("config"));
        common::assert_golden(&case.join("expected"), &rendered);
        common::assert_schema_valid(&name, &rendered);
    }
}

#[test]
fn same_commit_renders_the_same_bytes() {
    for case in cases() {
        let (repo, first) = common::render_dir(&case.join("config"));
        let again = common::render_repo(repo.path(), None).expect("valid");
        assert_eq!(
            first,
            again,
            "{}: two renders of one commit differ",
            case.display()
        );
        // A second repository with the same files and clock gives the same commit id, so
        // even the READMEs (which name the commit) are identical.
        let (_, other) = common::render_dir(&case.join("config"));
        assert_eq!(
            first,
            other,
            "{}: same content, different bytes",
            case.display()
        );
    }
}

/// What one proxy is served: its plan, its resources (each encoded, with its protobuf type
/// name) and the emitter's warnings.
struct Served {
    plan: String,
    resources: Vec<Section>,
    warnings: Vec<String>,
}

/// One resource type: (kind, protobuf message name, name → encoded message).
type Section = (&'static str, String, BTreeMap<String, Vec<u8>>);

/// The only calls into tidegate's translation API: when its modules move, repoint these.
fn served(
    model: &Model,
    endpoints: Option<&Endpoints>,
    certs: Option<&Certs>,
) -> BTreeMap<String, Served> {
    use tidegate::xds::emit;
    use tidegate::xds::translate::plans;
    fn section<M: prost::Message + prost::Name>(
        kind: &'static str,
        map: BTreeMap<String, M>,
    ) -> Section {
        let encoded = map
            .into_iter()
            .map(|(k, m)| (k, m.encode_to_vec()))
            .collect();
        (kind, M::full_name(), encoded)
    }
    plans(model)
        .into_iter()
        .map(|(id, plan)| {
            let (r, warnings) = emit::resources(&plan, endpoints, certs, &emit::Variant::default());
            let resources = vec![
                section("listeners", r.listeners),
                section("routes", r.routes),
                section("clusters", r.clusters),
                section("endpoints", r.endpoints),
                section("secrets", r.secrets),
            ];
            let plan = format!("{plan:#?}");
            (
                id,
                Served {
                    plan,
                    resources,
                    warnings,
                },
            )
        })
        .collect()
}

/// A case's `certs.yaml`: which certificates its proxies have.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CertsSpec {
    /// Mesh identities, by proxy id `<name>.<namespace>` (the mesh CA comes with them).
    #[serde(default)]
    mesh: Vec<String>,
    /// TLS Secrets, `<namespace>/<name>`.
    #[serde(default)]
    secrets: Vec<String>,
    /// Secrets `<namespace>/<name>` that hold the test CA as `ca.crt` (beside a pair of
    /// `secrets`, or alone): Istio's credentialName CAs.
    #[serde(default)]
    ca: Vec<String>,
}

/// Issues the certificates of `spec` from a fresh test CA into a `serve --certs` directory
/// and loads it.
fn issue(spec: &CertsSpec, dir: &Path) -> Certs {
    use tidegate::test_helpers::pki::{Pki, dns, uri};
    let pki = Pki::new();
    if !spec.mesh.is_empty() {
        std::fs::create_dir_all(dir.join("mesh")).unwrap();
        std::fs::write(dir.join("mesh/ca.crt"), &pki.ca_pem).unwrap();
    }
    for id in &spec.mesh {
        let (name, ns) = id.split_once('.').expect("mesh: <name>.<namespace>");
        let spiffe = format!("spiffe://cluster.local/ns/{ns}/sa/{name}");
        pki.write_pair(
            &dir.join("mesh").join(ns).join(name),
            name,
            vec![uri(&spiffe)],
        );
    }
    for s in &spec.secrets {
        let (ns, name) = s.split_once('/').expect("secrets: <namespace>/<name>");
        pki.write_pair(
            &dir.join("secrets").join(ns).join(name),
            name,
            vec![dns(&format!("{name}.{ns}.example"))],
        );
    }
    for s in &spec.ca {
        let (ns, name) = s.split_once('/').expect("ca: <namespace>/<name>");
        let path = dir.join("secrets").join(ns).join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("ca.crt"), &pki.ca_pem).unwrap();
    }
    let certs = Certs::load(dir).expect("load the certificates");
    assert!(certs.problems.is_empty(), "{:?}", certs.problems);
    certs
}

/// Replaces every string that is PEM (or its base64) with `[redacted]`.
fn redact_pem(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.starts_with("-----BEGIN") || s.starts_with("LS0tLS1CRUdJTi") => {
            *s = "[redacted]".into();
        }
        Value::Object(o) => o.values_mut().for_each(redact_pem),
        Value::Array(a) => a.iter_mut().for_each(redact_pem),
        _ => {}
    }
}

/// The golden files of every proxy of `case`: `<proxy>.plan.txt` and `<proxy>.json`.
fn xds_files(case: &Path) -> BTreeMap<String, String> {
    let (_repo, model) = common::model_dir(&case.join("config"));
    let endpoints = case.join("endpoints.yaml");
    let endpoints = endpoints
        .exists()
        .then(|| Endpoints::load(&endpoints).expect("endpoints.yaml"));
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = case.join("certs.yaml").exists().then(|| {
        let text = std::fs::read_to_string(case.join("certs.yaml")).unwrap();
        let spec: CertsSpec = serde_saphyr::from_str(&text).expect("certs.yaml");
        issue(&spec, certs_dir.path())
    });
    let mut files = BTreeMap::new();
    for (id, s) in served(&model, endpoints.as_ref(), certs.as_ref()) {
        files.insert(
            format!("{id}.plan.txt"),
            format!(
                "# The routing plan of proxy {id} (Rust's {{:#?}}), planned for the case's config.\n{}\n",
                s.plan
            ),
        );
        let mut doc = serde_json::Map::new();
        // Warnings name the certificates' directory: a temporary one, not part of the golden.
        let dir = certs_dir.path().display().to_string();
        let warnings = s.warnings.iter().map(|w| w.replace(&dir, "$CERTS"));
        doc.insert("warnings".into(), warnings.collect());
        for (kind, type_name, resources) in s.resources {
            let mut section = serde_json::Map::new();
            for (name, bytes) in resources {
                let mut json = common::xds_json::to_json(&type_name, &bytes);
                if kind == "secrets" {
                    common::xds_json::redact_inline(&mut json);
                } else {
                    // CA bundles from ConfigMaps are inline in TLS contexts: public, and
                    // already in the case's config, but no certificate bytes go in a golden.
                    redact_pem(&mut json);
                }
                section.insert(name, json);
            }
            doc.insert(kind.into(), section.into());
        }
        let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        // The key bytes are redacted above; this is the check that nothing slips through,
        // as PEM or as its base64 ("-----BEGIN" is "LS0tLS1CRUdJTi").
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("LS0tLS1CRUdJTi"),
            "{id}: key or certificate material in the golden"
        );
        files.insert(format!("{id}.json"), text);
    }
    files
}

#[test]
fn every_proxy_matches_its_xds_golden() {
    let cases = cases();
    let started = std::time::Instant::now();
    common::xds_json::pool();
    eprintln!("descriptor pool compiled in {:?}", started.elapsed());
    let mut proxies = 0;
    for case in &cases {
        let files = xds_files(case);
        assert!(!files.is_empty(), "{}: no proxy", case.display());
        proxies += files.len() / 2;
        common::assert_golden(&case.join("xds"), &tidegate::render::Rendered { files });
    }
    eprintln!(
        "{} cases, {proxies} proxies in {:?}",
        cases.len(),
        started.elapsed()
    );
}

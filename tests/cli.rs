//! The command line against real repositories: what is read (commits, never the work
//! tree), what is written (only on success, only tidegate's own files), exit statuses, and
//! the bundled config-repo and examples.

mod common;

use common::{arg, text, tidegate};

use std::process::Command;

use tidegate::test_helpers::{TempRepo, files_under};

const INTENT: &str = "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: httpbin, namespace: httpbin}\nspec:\n  mode: gateway-api\n  hostnames: [httpbin.example.com]\n  gateway: {name: httpbin-gateway, port: 80}\n  rules:\n  - matches: [{path: {value: /headers}}]\n    backendRefs: [{name: httpbin, port: 8000}]\n";

#[test]
fn the_bundled_config_repo_is_valid_renders_and_matches_the_schemas() {
    let dir = common::manifest_dir().join("config-repo");
    let (_repo, rendered) = common::render_dir(&dir);
    common::assert_schema_valid("config-repo", &rendered);
    // One intent per mode, each in its own namespace.
    for f in [
        "httpbin-istio/virtualservice-httpbin.yaml",
        "httpbin-istio/route-httpbin.yaml",
        "httpbin/httproute-httpbin-ingress.yaml",
        "httpbin-ambient/httproute-httpbin-waypoint-route.yaml",
    ] {
        assert!(rendered.files.contains_key(f), "config-repo renders no {f}");
    }
    // And the command a newcomer runs first works on it in place (a subdirectory of this
    // project's repository, read at HEAD; or as plain files in an unpacked source tree).
    let out = tidegate(&["validate", "--repo", arg(&dir)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok: ") && text(&out).contains("3 intent(s)"),
        "{}",
        text(&out)
    );
}

#[test]
fn every_example_config_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(common::manifest_dir().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.join("intents").is_dir() {
            let (_repo, rendered) = common::render_dir(&path);
            common::assert_schema_valid(&path.display().to_string(), &rendered);
            n += 1;
        }
    }
    assert!(n >= 1, "no example config found");
}

#[test]
fn reads_commits_not_the_work_tree() {
    let mut repo = TempRepo::new();
    repo.write("intents/a.yaml", INTENT);
    let first = repo.commit("good");
    // An uncommitted edit that would be invalid is never read.
    repo.write("intents/a.yaml", "not: [valid");
    let out = tidegate(&["validate", "--repo", arg(repo.path())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&first[..12]),
        "names the commit: {}",
        text(&out)
    );

    // Committed, it is; and --rev still reads the older commit.
    let second = repo.commit("bad");
    let out = tidegate(&["validate", "--repo", arg(repo.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("commit {}", &second[..12])),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("intents/a.yaml:1:"), "{}", text(&out));
    let out = tidegate(&["validate", "--repo", arg(repo.path()), "--rev", "HEAD~1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = tidegate(&["validate", "--repo", arg(repo.path()), "--rev", &first]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_directory_inside_a_larger_repository_is_read_as_that_subtree() {
    let mut repo = TempRepo::new();
    repo.write("deploy/ingress/intents/a.yaml", INTENT);
    // Outside the subtree: not read, even though it would be invalid as an intent.
    repo.write("intents/broken.yaml", "::");
    repo.commit("monorepo");
    let out = tidegate(&[
        "validate",
        "--repo",
        arg(&repo.path().join("deploy/ingress")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deploy/ingress/ at commit"),
        "{}",
        text(&out)
    );
    // A subdirectory that exists only in the work tree is not in the commit.
    std::fs::create_dir_all(repo.path().join("uncommitted/intents")).unwrap();
    let out = tidegate(&["validate", "--repo", arg(&repo.path().join("uncommitted"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("uncommitted does not exist in commit"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_plain_directory_is_read_as_files_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("intents")).unwrap();
    std::fs::write(dir.path().join("intents/a.yaml"), INTENT).unwrap();
    let out = tidegate(&["validate", "--repo", arg(dir.path())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not a Git repository: files read as they are"),
        "{}",
        text(&out)
    );
    let out = tidegate(&["validate", "--repo", arg(dir.path()), "--rev", "HEAD"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("not inside a Git repository, so --rev cannot be used"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_empty_repository_says_to_commit_first() {
    let repo = TempRepo::new();
    repo.write("intents/a.yaml", INTENT);
    let out = tidegate(&["validate", "--repo", arg(repo.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("has no commits yet"), "{}", text(&out));
}

#[test]
fn render_writes_only_on_success_and_removes_only_its_own_stale_files() {
    let mut repo = TempRepo::new();
    repo.write("intents/a.yaml", INTENT);
    repo.write(
        "intents/b.yaml",
        INTENT
            .replace("name: httpbin,", "name: other,")
            .replace("httpbin.example.com", "other.example.com")
            .replace("namespace: httpbin", "namespace: other"),
    );
    repo.commit("two intents");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path();
    std::fs::create_dir_all(out.join("other")).unwrap();
    std::fs::write(out.join("other/notes.txt"), "a person's file").unwrap();
    std::fs::write(out.join("keep.yaml"), "# not tidegate's\nkind: ConfigMap\n").unwrap();

    let r = tidegate(&["render", "--repo", arg(repo.path()), "--out", arg(out)]);
    assert!(r.status.success(), "{}", text(&r));
    let first = files_under(out);
    assert!(
        first
            .iter()
            .any(|(p, _)| p == "other/httproute-other-ingress.yaml")
    );

    // Rendering the same commit again writes nothing.
    let r = tidegate(&["render", "--repo", arg(repo.path()), "--out", arg(out)]);
    assert!(text(&r).contains("0 file(s) written"), "{}", text(&r));
    assert_eq!(files_under(out), first);

    // An invalid commit: non-zero exit, and the directory is exactly as it was.
    repo.write(
        "intents/b.yaml",
        "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\n",
    );
    repo.commit("break b");
    let r = tidegate(&["render", "--repo", arg(repo.path()), "--out", arg(out)]);
    assert_eq!(r.status.code(), Some(1), "{}", text(&r));
    assert!(
        text(&r).contains("intents/b.yaml:1:1: metadata: missing required field `metadata`"),
        "{}",
        text(&r)
    );
    assert_eq!(
        files_under(out),
        first,
        "nothing may be written for an invalid commit"
    );

    // Removing intent b removes its rendered files, but not the person's files.
    repo.remove("intents/b.yaml");
    repo.commit("drop b");
    let r = tidegate(&["render", "--repo", arg(repo.path()), "--out", arg(out)]);
    assert!(r.status.success(), "{}", text(&r));
    let now: Vec<String> = files_under(out).into_iter().map(|(p, _)| p).collect();
    assert!(
        !now.iter()
            .any(|p| p.starts_with("other/") && p != "other/notes.txt"),
        "{now:?}"
    );
    assert!(now.contains(&"other/notes.txt".to_owned()), "{now:?}");
    assert!(now.contains(&"keep.yaml".to_owned()), "{now:?}");
    assert!(
        now.contains(&"httpbin/httproute-httpbin-ingress.yaml".to_owned()),
        "{now:?}"
    );
    let top = std::fs::read_to_string(out.join("kustomization.yaml")).unwrap();
    assert!(!top.contains("- other"), "{top}");
}

#[test]
fn rendered_directories_build_with_kubectl_kustomize() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!(
            "kubectl not found: skipping the kustomize cross-check (the schema tests still ran)"
        );
        return;
    }
    let (_repo, rendered) = common::render_dir(&common::manifest_dir().join("config-repo"));
    let out = tempfile::tempdir().unwrap();
    tidegate::render::write_dir(out.path(), &rendered).unwrap();
    let r = Command::new("kubectl")
        .arg("kustomize")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", text(&r));
    let built = String::from_utf8_lossy(&r.stdout);
    // kustomize puts Namespaces first; every object made it through.
    assert!(
        built.starts_with("apiVersion: v1\nkind: Namespace"),
        "{built}"
    );
    let docs = built.split("\n---\n").count();
    let objects = rendered
        .files
        .keys()
        .filter(|p| p.contains('/') && p.ends_with(".yaml") && !p.ends_with("kustomization.yaml"))
        .count();
    assert_eq!(docs, objects, "{built}");
}

#[test]
fn serve_prints_its_addresses_and_answers_health_checks() {
    use std::io::{BufRead, BufReader};
    let mut repo = TempRepo::new();
    repo.write("intents/a.yaml", INTENT);
    repo.commit("one");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "serve",
            "--repo",
            arg(repo.path()),
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let xds = lines.next().unwrap().unwrap();
    let admin = lines.next().unwrap().unwrap();
    assert!(xds.starts_with("xds: 127.0.0.1:"), "{xds}");
    let admin = admin
        .strip_prefix("admin: http://")
        .unwrap()
        .strip_suffix("/status")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (health, ready, status) = rt.block_on(async {
        let get = |p: &'static str| tidegate::test_helpers::http_get(admin, "localhost", p);
        // Ready once the first commit is served (it is read in the background).
        let ready = tidegate::test_helpers::eventually(
            "/readyz",
            std::time::Duration::from_secs(10),
            || async {
                match get("/readyz").await {
                    Some(r) if r.status == 200 => Ok(r),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        (
            get("/healthz").await.unwrap(),
            ready,
            get("/status").await.unwrap(),
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        (health.status, ready.status, status.status),
        (200, 200, 200)
    );
    let st: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(
        st["gateways"],
        serde_json::json!(["httpbin-gateway.httpbin"])
    );
    assert!(
        st["served"]["source"]
            .as_str()
            .unwrap()
            .starts_with("commit "),
        "{st}"
    );
}

#[test]
fn bootstrap_prints_an_envoy_bootstrap_and_rejects_a_bad_proxy_name() {
    let out = tidegate(&[
        "bootstrap",
        "--proxy",
        "httpbin-gateway.httpbin",
        "--xds",
        "127.0.0.1:18000",
        "--delta",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let boot: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(boot["node"]["cluster"], "httpbin-gateway.httpbin");
    assert_eq!(
        boot["dynamic_resources"]["ads_config"]["api_type"],
        "DELTA_GRPC"
    );
    let out = tidegate(&["bootstrap", "--proxy", "httpbin-gateway"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("is not NAME.NAMESPACE"),
        "{}",
        text(&out)
    );
}

#[test]
fn logs_can_be_json_lines() {
    use std::io::{BufRead, BufReader};
    let mut repo = TempRepo::new();
    repo.write("intents/a.yaml", INTENT);
    repo.commit("one");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--repo",
            arg(repo.path()),
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let log: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(log["level"], "INFO", "{line}");
    assert!(
        log["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("serving commit "),
        "{line}"
    );
}

//! Everything in examples/ is exercised: the deployment manifests parse, their container
//! args are a valid `tidegate serve` command line and their probes answer; the GitOps
//! objects point at the branch tidegate pushes; the quickstart runs end to end.

mod common;

use std::path::Path;
use std::process::Command;

use clap::Parser as _;
use serde_json::Value;

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn examples() -> std::path::PathBuf {
    common::manifest_dir().join("examples")
}

fn deployment() -> Value {
    docs(&examples().join("deploy/deployment.yaml")).remove(0)
}

fn args() -> Vec<String> {
    deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn flag(args: &[String], name: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("{name} not in {args:?}"));
    args[i + 1].clone()
}

#[test]
fn the_deployment_runs_a_valid_serve_command_with_two_replicas() {
    let d = deployment();
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    let args = args();
    let cli = tidegate::cli::Cli::try_parse_from(
        std::iter::once("tidegate".to_owned()).chain(args.clone()),
    );
    let cli =
        cli.unwrap_or_else(|e| panic!("the Deployment's args are not a valid command line: {e}"));
    assert!(matches!(cli.command, tidegate::cli::Command::Serve { .. }));
    // The container ports are the ones the args listen on.
    let ports: Vec<i64> = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    for f in ["--xds", "--admin"] {
        let port: i64 = flag(&args, f).rsplit_once(':').unwrap().1.parse().unwrap();
        assert!(
            ports.contains(&port),
            "{f} port {port} is not a container port {ports:?}"
        );
    }
}

#[tokio::test]
async fn the_probes_ask_paths_that_answer() {
    let c = &deployment()["spec"]["template"]["spec"]["containers"][0];
    let mut repo = tidegate::test_helpers::TempRepo::new();
    repo.write(
        "intents/a.yaml",
        common::httpbin_intent("gateway-api", 18080),
    );
    repo.commit("a");
    let server = common::start_server(repo.path(), None).await;
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = c[probe]["httpGet"]["path"].as_str().unwrap();
        let r = tidegate::test_helpers::http_get(server.admin, "localhost", path)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{probe} {path}: {}", r.body);
    }
}

#[test]
fn argo_cd_and_flux_sync_the_branch_tidegate_pushes() {
    let args = args();
    let branch = flag(&args, "--push-branch");
    let repo = flag(&args, "--repo");
    let app = docs(&examples().join("gitops/argocd-application.yaml")).remove(0);
    assert_eq!(app["kind"], "Application");
    assert_eq!(
        app["spec"]["source"]["targetRevision"].as_str(),
        Some(branch.as_str())
    );
    assert_eq!(
        app["spec"]["source"]["repoURL"].as_str(),
        Some(repo.as_str())
    );
    let flux = docs(&examples().join("gitops/flux.yaml"));
    let git = flux.iter().find(|d| d["kind"] == "GitRepository").unwrap();
    let kustomization = flux.iter().find(|d| d["kind"] == "Kustomization").unwrap();
    assert_eq!(git["spec"]["ref"]["branch"].as_str(), Some(branch.as_str()));
    assert_eq!(git["spec"]["url"].as_str(), Some(repo.as_str()));
    assert_eq!(
        kustomization["spec"]["sourceRef"]["name"],
        git["metadata"]["name"]
    );
    assert_eq!(kustomization["spec"]["prune"], true);
}

#[test]
fn the_deploy_directory_builds_with_kubectl_kustomize() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!("kubectl not found: skipping");
        return;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(examples().join("deploy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in ["Namespace", "ServiceAccount", "Service", "Deployment"] {
        assert!(
            text.contains(&format!("kind: {kind}\n")),
            "{kind} missing:\n{text}"
        );
    }
}

#[test]
fn the_quickstart_passes_the_seed_checks() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        // The quickstart's gateways bind port 80 like in a cluster.
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI runs as root: the quickstart must run"
        );
        eprintln!("not root: the quickstart binds port 80; skipping");
        return;
    }
    if tidegate::test_helpers::envoy_binary().is_none() {
        eprintln!("Envoy not found: skipping");
        return;
    }
    // Port 0: the script reads back what tidegate and the backend bound (a port picked
    // here and released could be taken by a parallel test before the script binds it).
    let out = Command::new("bash")
        .arg(examples().join("quickstart/run.sh"))
        .env("TIDEGATE", env!("CARGO_BIN_EXE_tidegate"))
        .env("XDS_PORT", "0")
        .env("ADMIN_PORT", "0")
        .env("BACKEND_PORT", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("quickstart: all checks passed"), "{text}");
    assert_eq!(
        text.matches("SYNCED").count(),
        18,
        "two sidecar-mode gateways with four types each; the ambient gateway and its waypoint with five (SDS too):\n{text}"
    );
}

/// The pull-request workflow's `diff` and `validate` steps, run as written (bash, the job's
/// env, `$GITHUB_OUTPUT`) with this build's `tidegate` first on PATH, against real commits:
/// a change gets a markdown comment and passes; an invalid head gets the errors in the
/// comment and fails both steps.
#[test]
fn the_pull_request_workflow_comments_the_diff_and_gates_on_validation() {
    let workflow = docs(&examples().join("pr-review/github-actions.yaml")).remove(0);
    let job = &workflow["jobs"]["review"];
    let steps = job["steps"].as_array().unwrap();
    let step = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id}"))["run"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (diff, validate) = (step("diff"), step("validate"));
    // The comment posts the file the diff step writes.
    let comment = steps
        .iter()
        .find(|s| s["name"] == "Comment")
        .and_then(|s| s["run"].as_str())
        .unwrap();
    assert!(
        diff.contains("> tidegate-diff.md") && comment.contains("--body-file tidegate-diff.md")
    );
    let config = job["env"]["CONFIG"].as_str().unwrap();

    let mut repo = tidegate::test_helpers::TempRepo::new();
    repo.copy_dir(&common::manifest_dir().join("config-repo"), config);
    let base = repo.commit("base");
    let intent = format!("{config}/intents/httpbin-gateway-api.yaml");
    let text = std::fs::read_to_string(repo.path().join(&intent)).unwrap();
    repo.write(&intent, text.replace("value: /headers", "value: /anything"));
    let head = repo.commit("a route moves");
    let bin = Path::new(env!("CARGO_BIN_EXE_tidegate")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |script: &str, base: &str, head: &str| {
        let out_file = tempfile::NamedTempFile::new().unwrap();
        let out = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", script])
            .current_dir(repo.path())
            .env("PATH", &path)
            .env("CONFIG", config)
            .env("BASE_SHA", base)
            .env("HEAD_SHA", head)
            .env("GITHUB_OUTPUT", out_file.path())
            .output()
            .unwrap();
        let outputs = std::fs::read_to_string(out_file.path()).unwrap();
        (out, outputs)
    };
    let (out, outputs) = run(&diff, &base, &head);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(outputs.trim(), "status=2", "a change: diff exits 2");
    let md = std::fs::read_to_string(repo.path().join("tidegate-diff.md")).unwrap();
    assert!(!md.contains('\u{1b}'), "no ANSI in a comment: {md}");
    assert!(md.contains("/anything") && md.contains("/headers"), "{md}");
    let (out, _) = run(&validate, &base, &head);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An invalid head: the comment lists the problem with its file and line, and both
    // steps fail.
    repo.write(&intent, text.replace("port: 8000", "port: 0"));
    let bad = repo.commit("break it");
    let (out, outputs) = run(&diff, &head, &bad);
    assert!(!out.status.success());
    assert_eq!(outputs.trim(), "status=1");
    let md = std::fs::read_to_string(repo.path().join("tidegate-diff.md")).unwrap();
    assert!(
        md.contains(&format!("{intent}:")) || md.contains("intents/httpbin-gateway-api.yaml:"),
        "{md}"
    );
    let (out, _) = run(&validate, &head, &bad);
    assert!(!out.status.success());
}

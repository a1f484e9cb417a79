//! Hostile repositories: every class of abusive input gets a clear error (or is ignored,
//! and said so), the server keeps serving the last good commit, and memory stays bounded.

mod common;

use std::process::Command;
use std::time::Duration;

use tidegate::test_helpers::TempRepo;

const WAIT: Duration = Duration::from_secs(20);

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each class: a file to commit, and what the error must say.
fn classes() -> Vec<(&'static str, &'static str, Vec<u8>, &'static str)> {
    let bomb = {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            s += &format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 9].join(", ")
            );
        }
        s
    };
    vec![
        (
            "oversized file",
            "intents/big.yaml",
            vec![b'#'; 2 << 20],
            "the file is 2097152 bytes; the limit is 1048576 bytes",
        ),
        (
            "alias bomb (billion laughs)",
            "intents/bomb.yaml",
            bomb.into_bytes(),
            "more than 100000 YAML nodes",
        ),
        (
            "deep nesting",
            "intents/deep.yaml",
            format!("x: {}{}\n", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            "nested deeper than 32 levels",
        ),
        (
            "document storm",
            "intents/docs.yaml",
            "---\na: 1\n".repeat(1500).into_bytes(),
            "more than 1000 YAML documents",
        ),
        (
            "not UTF-8",
            "intents/latin1.yaml",
            b"apiVersion: tidegate.io/v1alpha1\nkind: Ingress # \xe9t\xe9\n".to_vec(),
            "not valid UTF-8",
        ),
        (
            "a name that would escape the output directory",
            "intents/escape.yaml",
            common::httpbin_intent("gateway-api", 18080)
                .replace("namespace: httpbin}", "namespace: ../../etc}")
                .into_bytes(),
            "`../../etc` is not a valid namespace",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_commits_are_rejected_and_the_last_good_one_keeps_serving() {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080),
    );
    let good = repo.commit("good");
    let server = common::start_server(repo.path(), None).await;
    server.wait_served(&good, WAIT).await.unwrap();
    let before = rss_kib();

    for (class, path, content, expected) in classes() {
        repo.write(path, &content);
        let bad = repo.commit(class);
        let errors = server.wait_served(&bad, WAIT).await.expect_err(class);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(path) && e.contains(expected)),
            "{class}: {errors:#?}"
        );
        assert_eq!(
            server.current().await.origin.revision,
            good,
            "{class}: the last good commit keeps serving"
        );
        repo.remove(path);
    }
    // Back to valid: served again.
    let again = repo.commit("valid again");
    server.wait_served(&again, WAIT).await.unwrap();
    let grown = rss_kib().saturating_sub(before);
    eprintln!("RSS before the hostile commits {before} KiB, grown by {grown} KiB");
    assert!(
        grown < 200 * 1024,
        "resident memory grew by {grown} KiB over the hostile commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_and_submodules_are_ignored_and_said_so() {
    let mut repo = TempRepo::new();
    repo.write(
        "intents/httpbin.yaml",
        common::httpbin_intent("gateway-api", 18080),
    );
    // A symlink to a file outside the config (a valid intent there would be served if
    // links were followed) and a submodule entry.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("evil.yaml"),
        common::httpbin_intent("gateway-api", 18080)
            .replace("name: httpbin,", "name: evil,")
            .replace("httpbin.example.com", "evil.example.com"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("evil.yaml"),
        repo.path().join("intents/link.yaml"),
    )
    .unwrap();
    let good = repo.commit("with a symlink");
    git(
        repo.path(),
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{good},intents/sub"),
        ],
    );
    git(
        repo.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "with a submodule",
        ],
    );
    let head = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();

    let server = common::start_server(repo.path(), None).await;
    server.wait_served(&head, WAIT).await.unwrap();
    let st = common::status(server.admin).await;
    let warnings: Vec<&str> = st["served"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings.contains(&"intents/link.yaml: symlink, not followed"),
        "{warnings:?}"
    );
    assert!(
        warnings.contains(&"intents/sub: submodule, not read"),
        "{warnings:?}"
    );
    // Only the real intent is served.
    assert_eq!(
        st["gateways"],
        serde_json::json!(["httpbin-gateway.httpbin"])
    );
    let snapshot = server.current().await;
    let routes = snapshot.proxy("httpbin-gateway.httpbin", &Default::default());
    let rds = routes.of(tidegate::xds::type_url::TypeUrl::Route);
    assert_eq!(rds.resources.len(), 1);
    let bytes = &rds.resources.values().next().unwrap().any.value;
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.contains("httpbin.example.com") && !text.contains("evil.example.com"),
        "the symlinked intent must not be served"
    );
}

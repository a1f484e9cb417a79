//! `serve` following a repository: every commit becomes a snapshot (and manifests), an
//! invalid commit is rejected whole while the last good one keeps serving, and remotes,
//! rewinds, bursts and the rendered branch behave. Real repositories, real commits.

mod common;

use common::{git_cli as git, intent_with_path as intent};

use std::process::Command;
use std::time::Duration;

use tidegate::app::ServeOptions;
use tidegate::test_helpers::TempRepo;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn every_commit_is_served_and_an_invalid_one_is_rejected_whole() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent("/one"));
    let first = repo.commit("one");
    let server = common::start_server(repo.path(), None).await;
    server.wait_served(&first, WAIT).await.unwrap();

    // A bad commit: two files, one valid change and one invalid file. Nothing of it is
    // served; /status names the commit, the file and the line.
    repo.write("intents/httpbin.yaml", intent("/two"));
    repo.write("intents/broken.yaml", "apiVersion: tidegate.io/v1alpha1\nkind: Ingress\nmetadata: {name: x, namespace: y}\nspec:\n  mode: gateway\n");
    let bad = repo.commit("break it");
    let errors = server
        .wait_served(&bad, WAIT)
        .await
        .expect_err("an invalid commit must not be served");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("intents/broken.yaml:5:9: spec.mode: `gateway` is not valid")),
        "{errors:#?}"
    );
    assert_eq!(
        server.current().await.origin.revision,
        first,
        "the last good commit keeps serving"
    );
    let st = common::status(server.admin).await;
    assert_eq!(st["served"]["revision"], first);
    assert_eq!(st["rejected"][0]["revision"], bad);
    assert!(
        st["rejected"][0]["errors"][0]
            .as_str()
            .unwrap()
            .contains("intents/broken.yaml:"),
        "{st:#}"
    );

    // The fix is served.
    repo.remove("intents/broken.yaml");
    let fixed = repo.commit("fix");
    server.wait_served(&fixed, WAIT).await.unwrap();

    // Uncommitted files are never read.
    repo.write("intents/httpbin.yaml", "not: [valid");
    server.sync_now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.current().await.origin.revision, fixed);
    assert_eq!(
        common::status(server.admin).await["rejected"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_rewind_is_served_like_any_other_head_and_bursts_coalesce() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent("/a"));
    let a = repo.commit("a");
    let server = common::start_server(repo.path(), None).await;
    let mut last = a.clone();
    for i in 0..10 {
        repo.write("intents/httpbin.yaml", intent(&format!("/burst{i}")));
        last = repo.commit(&format!("burst {i}"));
    }
    server.wait_served(&last, WAIT).await.unwrap();
    // Rewind the branch (as a force-push would) to the first commit.
    git(repo.path(), &["reset", "--hard", &a]);
    server.wait_served(&a, WAIT).await.unwrap();
}

#[tokio::test]
async fn a_remote_url_is_mirrored_and_polled() {
    // A bare repository, pushed to from a second clone: how a Git server looks.
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "--bare", "-q"]);
    let clone = tempfile::tempdir().unwrap();
    git(
        clone.path(),
        &["clone", "-q", remote.path().to_str().unwrap(), "."],
    );
    std::fs::create_dir_all(clone.path().join("intents")).unwrap();
    std::fs::write(clone.path().join("intents/httpbin.yaml"), intent("/one")).unwrap();
    git(clone.path(), &["add", "-A"]);
    git(clone.path(), &["commit", "-qm", "one"]);
    git(clone.path(), &["push", "-q", "origin", "HEAD:main"]);
    let one = git(clone.path(), &["rev-parse", "HEAD"]);

    let mirror = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::new(format!("file://{}", remote.path().display()));
    opts.branch = Some("main".into());
    opts.poll_interval = Duration::from_millis(100);
    opts.mirror_dir = Some(mirror.path().join("mirror"));
    let server = common::start_with(opts).await;
    server.wait_served(&one, WAIT).await.unwrap();

    std::fs::write(clone.path().join("intents/httpbin.yaml"), intent("/two")).unwrap();
    git(clone.path(), &["commit", "-qam", "two"]);
    git(clone.path(), &["push", "-q", "origin", "HEAD:main"]);
    let two = git(clone.path(), &["rev-parse", "HEAD"]);
    server.wait_served(&two, WAIT).await.unwrap();

    // The remote vanishes: reported, the last good commit keeps serving; it comes back:
    // recovered.
    let away = remote.path().with_extension("away");
    std::fs::rename(remote.path(), &away).unwrap();
    tidegate::test_helpers::eventually("the source error", WAIT, || async {
        let st = common::status(server.admin).await;
        match st["source_error"].as_str() {
            Some(e) if e.contains("ls-remote") => Ok(()),
            _ => Err(format!("{st:#}")),
        }
    })
    .await;
    assert_eq!(server.current().await.origin.revision, two);
    std::fs::rename(&away, remote.path()).unwrap();
    std::fs::write(clone.path().join("intents/httpbin.yaml"), intent("/three")).unwrap();
    git(clone.path(), &["commit", "-qam", "three"]);
    git(clone.path(), &["push", "-q", "origin", "HEAD:main"]);
    let three = git(clone.path(), &["rev-parse", "HEAD"]);
    // Backoff after failures is capped by the poll interval here, so recovery is quick.
    server.wait_served(&three, WAIT).await.unwrap();
    assert!(common::status(server.admin).await["source_error"].is_null());
}

#[tokio::test]
async fn a_path_to_a_bare_repository_is_read_in_place() {
    let remote = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "--bare", "-q"]);
    let clone = tempfile::tempdir().unwrap();
    git(
        clone.path(),
        &["clone", "-q", remote.path().to_str().unwrap(), "."],
    );
    std::fs::create_dir_all(clone.path().join("intents")).unwrap();
    std::fs::write(clone.path().join("intents/httpbin.yaml"), intent("/one")).unwrap();
    git(clone.path(), &["add", "-A"]);
    git(clone.path(), &["commit", "-qm", "one"]);
    git(clone.path(), &["push", "-q", "origin", "HEAD:main"]);
    let mut opts = ServeOptions::new(remote.path().to_string_lossy());
    opts.branch = Some("main".into());
    let server = common::start_with(opts).await;
    server
        .wait_served(&git(clone.path(), &["rev-parse", "HEAD"]), WAIT)
        .await
        .unwrap();
    std::fs::write(clone.path().join("intents/httpbin.yaml"), intent("/two")).unwrap();
    git(clone.path(), &["commit", "-qam", "two"]);
    git(clone.path(), &["push", "-q", "origin", "HEAD:main"]);
    // Pushed refs land in the bare repository: watched, served without waiting for a poll.
    server
        .wait_served(&git(clone.path(), &["rev-parse", "HEAD"]), WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_rendered_branch_gets_one_commit_per_changed_render() {
    let mut repo = TempRepo::new();
    repo.write("intents/httpbin.yaml", intent("/one"));
    let one = repo.commit("one");
    let mut opts = ServeOptions::new(repo.path().to_string_lossy());
    opts.push_branch = Some("rendered".into());
    let server = common::start_with(opts).await;
    server.wait_served(&one, WAIT).await.unwrap();

    let repo_path = repo.path().to_owned();
    // Polled off the runtime: the server's sync loop runs on this (current-thread) runtime,
    // and blocking it while waiting for the push would starve the push itself.
    let rendered = |n: usize| {
        let path = repo_path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                tidegate::test_helpers::eventually_blocking(
                    &format!("{n} rendered commit(s)"),
                    WAIT,
                    move || {
                        let log = Command::new("git")
                            .arg("-C")
                            .arg(&path)
                            .args(["log", "--format=%H %s", "rendered"])
                            .output()
                            .unwrap();
                        let text = String::from_utf8_lossy(&log.stdout).into_owned();
                        if text.lines().count() == n {
                            Ok(text)
                        } else {
                            Err(text)
                        }
                    },
                )
            })
            .await
            .expect("poll the rendered branch")
        }
    };
    let log = rendered(1).await;
    assert!(log.contains(&format!("render: {} one", &one[..7])), "{log}");
    let message = git(repo.path(), &["log", "-1", "--format=%B", "rendered"]);
    assert!(
        message.contains(&format!("Source-Commit: {one}")),
        "{message}"
    );
    let files = git(repo.path(), &["ls-tree", "-r", "--name-only", "rendered"]);
    assert!(
        files
            .lines()
            .any(|f| f == "httpbin/httproute-httpbin-ingress.yaml"),
        "{files}"
    );
    assert!(files.lines().any(|f| f == "kustomization.yaml"), "{files}");
    let route = git(
        repo.path(),
        &["show", "rendered:httpbin/httproute-httpbin-ingress.yaml"],
    );
    assert!(route.contains("value: /one"), "{route}");
    // The work tree and the served branch are untouched by the push.
    assert_eq!(git(repo.path(), &["rev-parse", "HEAD"]), one);

    // A commit that changes no manifest (a README beside the intents): no rendered commit.
    repo.write("README.md", "notes");
    let two = repo.commit("docs only");
    server.wait_served(&two, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rendered(1).await;

    // A real change: a second rendered commit on top of the first.
    repo.write("intents/httpbin.yaml", intent("/three"));
    let three = repo.commit("three");
    server.wait_served(&three, WAIT).await.unwrap();
    let log = rendered(2).await;
    assert!(
        log.lines()
            .next()
            .unwrap()
            .ends_with(&format!("render: {} three", &three[..7])),
        "{log}"
    );
    assert!(
        common::status(server.admin).await["rejected"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn two_servers_racing_make_one_rendered_commit() {
    use std::collections::BTreeMap;
    use tidegate::gitsync::push::{Pushed, SourceCommit, push_rendered};
    use tidegate::gitsync::source::RepoSource;
    let mut repo = TempRepo::new();
    repo.write("intents/a.yaml", intent("/x"));
    let sha = repo.commit("x");
    let files: BTreeMap<String, String> = [("ns/a.yaml".to_owned(), "a: 1\n".to_owned())].into();
    let src = RepoSource::new(&repo.path().to_string_lossy(), None, None);
    let commit = SourceCommit {
        sha: &sha,
        subject: "x",
        time: 1_700_000_000,
    };
    let first = push_rendered(&src, "rendered", &files, &commit).unwrap();
    assert!(matches!(first, Pushed::Committed(_)));
    // The second replica renders the same commit: identical content, no second commit.
    assert_eq!(
        push_rendered(&src, "rendered", &files, &commit).unwrap(),
        Pushed::Unchanged
    );
    assert_eq!(git(repo.path(), &["rev-list", "--count", "rendered"]), "1");

    // Truly concurrent: two threads push the next render at once. Exactly one commit lands;
    // neither push fails.
    let files: BTreeMap<String, String> = [("ns/a.yaml".to_owned(), "a: 2\n".to_owned())].into();
    let barrier = std::sync::Barrier::new(2);
    let path = repo.path().to_string_lossy().into_owned();
    let results: Vec<Pushed> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let src = RepoSource::new(&path, None, None);
                    barrier.wait();
                    push_rendered(
                        &src,
                        "rendered",
                        &files,
                        &SourceCommit {
                            sha: &sha,
                            subject: "x",
                            time: 1_700_000_100,
                        },
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        git(repo.path(), &["rev-list", "--count", "rendered"]),
        "2",
        "{results:?}"
    );
    assert!(
        results.iter().any(|r| matches!(r, Pushed::Committed(_))),
        "{results:?}"
    );
}

#[test]
fn unchanged_files_are_neither_read_nor_parsed_again() {
    let mut repo = TempRepo::new();
    for i in 0..20 {
        repo.write(
            &format!("intents/i{i}.yaml"),
            common::httpbin_intent("gateway-api", 18080)
                .replace("name: httpbin,", &format!("name: app{i},"))
                .replace("httpbin.example.com", &format!("app{i}.example.com")),
        );
    }
    let first = repo.commit("twenty");
    repo.write(
        "intents/i7.yaml",
        common::httpbin_intent("gateway-api", 18080)
            .replace("name: httpbin,", "name: app7,")
            .replace("httpbin.example.com", "seven.example.com"),
    );
    let second = repo.commit("one changed");
    let src =
        tidegate::gitsync::source::RepoSource::new(&repo.path().to_string_lossy(), None, None);
    let mut cache = tidegate::intent::Cache::default();
    let tree = src
        .read(&first, &tidegate::intent::LAYOUT, &|p, id| {
            cache.knows(p, id)
        })
        .unwrap();
    assert_eq!(tree.files.len(), 20);
    tidegate::intent::load_cached(&tree, &mut cache).unwrap();
    assert_eq!(cache.len(), 20);
    let tree = src
        .read(&second, &tidegate::intent::LAYOUT, &|p, id| {
            cache.knows(p, id)
        })
        .unwrap();
    assert_eq!(
        tree.files.keys().collect::<Vec<_>>(),
        vec!["intents/i7.yaml"],
        "only the changed blob is read"
    );
    let config = tidegate::intent::load_cached(&tree, &mut cache).unwrap();
    assert_eq!(config.intents.len(), 20);
    assert!(
        config
            .intents
            .iter()
            .any(|i| i.hostnames[0].value == "seven.example.com")
    );
    assert_eq!(cache.len(), 20, "the old version of i7 left the cache");
}

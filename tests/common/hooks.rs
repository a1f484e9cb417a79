//! A forge's `post-receive` hook that signs each push event (HMAC-SHA256 with `openssl`)
//! and posts it to `serve --webhook` with `curl` (tests/webhook.rs, tests/trust.rs).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Whether the tools the hook runs are here. Under CI a missing one fails the test;
/// elsewhere the test says why it did not run.
pub fn hook_tools() -> bool {
    let missing: Vec<&str> = [("openssl", "version"), ("curl", "--version")]
        .into_iter()
        .filter(|(tool, arg)| {
            Command::new(tool)
                .arg(arg)
                .output()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .map(|(tool, _)| tool)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("the post-receive hook needs {missing:?}, not found");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: install them)");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// The hook's script: signs each updated ref's event with the secret file's content and
/// posts it to `url`; curl's status codes go to `log`.
pub fn hook_script(secret_file: &Path, url: &str, log: &Path) -> String {
    format!(
        r#"#!/bin/sh
# stdin: one "<old> <new> <ref>" line per updated ref
secret=$(cat '{secret}')
while read old new ref; do
    body=$(printf '{{"ref":"%s","before":"%s","after":"%s"}}' "$ref" "$old" "$new")
    sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
    curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\n' -X POST \
        -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$sig" \
        --data-binary "$body" '{url}' >> '{log}'
done
"#,
        secret = secret_file.display(),
        log = log.display(),
    )
}

/// Installs [`hook_script`] as `bare`'s post-receive hook.
pub fn install_hook(bare: &Path, secret_file: &Path, url: &str, log: &Path) {
    let path = bare.join("hooks/post-receive");
    std::fs::write(&path, hook_script(secret_file, url, log)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

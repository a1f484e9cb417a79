//! `serve --webhook`: push events from a Git forge make the sync loop look at the
//! repository now instead of at the next poll (polling stays as the safety net: a lost
//! event costs one poll interval, never a commit).
//!
//! Any path, POST only. An event is authenticated with the shared secret in one of two
//! ways: GitHub/Gitea's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` or
//! GitLab's `X-Gitlab-Token: <secret>`; both compared in constant time. A valid event
//! whose `ref` is the followed branch or a preview branch triggers the sync loop through
//! the same one-slot channel as the ref watcher and [`crate::app::Running::sync_now`], so a
//! burst of events is one look, or two. Answers:
//!
//! - 202: the ref is followed, a look is triggered (or already pending: coalesced);
//! - 200: authenticated, nothing to do (another ref, a tag, a `ping` without a ref). A 2xx
//!   because the delivery was handled: the forge would otherwise list it as failed;
//! - 400: authenticated but not a JSON body (the forge's content type must be JSON);
//! - 401: signature or token missing or wrong; 405: not a POST; 413: body over [`MAX_BODY`].
//!
//! The secret file is read on every request (a few bytes: far cheaper than the HMAC), so a
//! rotated secret applies at once; one secret per line, any of which is accepted, so a
//! rotation can list the new secret beside the old one while the forge is updated. A file
//! that turns unreadable or empty keeps the last secrets read (a rotation caught halfway
//! must not open the endpoint nor shut it). Neither the secret nor the signature header is
//! ever logged.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::gitsync::glob::BranchGlob;
use crate::metrics::Metrics;

/// Largest body accepted. GitHub caps push payloads at 25 MB but truncates the commit list
/// long before; GitLab sends at most 20 commits. 1 MiB holds any push event we need (only
/// `ref` is read) and bounds what an unauthenticated client can make us buffer.
pub const MAX_BODY: usize = 1 << 20;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("webhook secret file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("webhook secret file {} has no secret (one per line)", path.display())]
    Empty { path: PathBuf },
}

/// The secrets accepted: one per line of the file, surrounding whitespace trimmed (a file
/// written by `echo` ends in a newline the forge never saw).
#[derive(Clone)]
struct Secrets(Arc<Vec<Vec<u8>>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        write!(f, "Secrets({} secret(s))", self.0.len())
    }
}

fn parse_secrets(path: &Path, bytes: &[u8]) -> Result<Secrets, Error> {
    let secrets: Vec<Vec<u8>> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if secrets.is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Secrets(Arc::new(secrets)))
}

/// The secret file, read on every request, with the last secrets it held.
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    last: Mutex<Secrets>,
}

impl SecretFile {
    /// Reads the file; a missing or empty one is an error (a webhook nobody can
    /// authenticate to is a misconfiguration, not something to start with).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            last: Mutex::new(parse_secrets(path, &bytes)?),
        })
    }

    /// The secrets now: the file re-read, or the last good ones if it cannot be used.
    async fn current(&self) -> Secrets {
        let read = tokio::fs::read(&self.path)
            .await
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|bytes| parse_secrets(&self.path, &bytes));
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match read {
            Ok(s) => *last = s,
            Err(e) => tracing::warn!("{e}; using the secrets read before"),
        }
        last.clone()
    }
}

/// Which pushes are worth a look: the followed branch (any branch when following `HEAD`,
/// whose target the push payload does not say) and the preview branches.
#[derive(Clone, Debug)]
pub struct Refs {
    pub branch: Option<String>,
    pub previews: Option<BranchGlob>,
}

impl Refs {
    /// Whether a push to `r#ref` (`refs/heads/<branch>`) may move what is served.
    pub fn wants(&self, r#ref: &str) -> bool {
        let Some(name) = r#ref.strip_prefix("refs/heads/") else {
            // Tags, notes, merge-request refs: never served.
            return false;
        };
        self.branch.as_deref().is_none_or(|b| b == name)
            || self.previews.as_ref().is_some_and(|g| g.matches(name))
    }
}

/// What the webhook endpoint needs.
pub struct Webhook {
    pub secrets: SecretFile,
    pub refs: Refs,
    /// The sync loop's trigger (capacity 1: a full channel means a look is pending).
    pub trigger: mpsc::Sender<()>,
    pub metrics: Arc<Metrics>,
}

/// Why a request was not authenticated (the `reason` label of
/// `tidegate_webhook_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingSignature,
    BadSignature,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::MissingSignature => "missing-signature",
            Refusal::BadSignature => "bad-signature",
        }
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed first).
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Constant-time equality of two byte strings of any lengths: both are MACed under one
/// fixed key and the tags compared with `verify_slice` (constant time, `subtle`). How long
/// it takes says nothing about where they differ, nor (beyond hashing time) about the
/// secret's length, which a plain early-exit or length-checked compare would leak.
fn same(a: &[u8], b: &[u8]) -> bool {
    const KEY: &[u8] = b"tidegate webhook token comparison";
    let mut ma = mac(KEY);
    ma.update(a);
    let tag = ma.finalize().into_bytes();
    let mut mb = mac(KEY);
    mb.update(b);
    mb.verify_slice(&tag).is_ok()
}

/// Checks the request's signature (GitHub, Gitea) or token (GitLab) against `secrets`.
pub fn authenticate(secrets: &[Vec<u8>], headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    if let Some(v) = headers.get("x-hub-signature-256") {
        let sig = v
            .to_str()
            .ok()
            .and_then(|v| v.trim().strip_prefix("sha256="))
            .and_then(|h| hex::decode(h).ok())
            .ok_or(Refusal::BadSignature)?;
        // Every secret is tried (no early exit on which one matched: rotation order is
        // not a secret, but there is no reason to time it either).
        let mut ok = false;
        for s in secrets {
            let mut m = mac(s);
            m.update(body);
            ok |= m.verify_slice(&sig).is_ok();
        }
        return if ok {
            Ok(())
        } else {
            Err(Refusal::BadSignature)
        };
    }
    if let Some(v) = headers.get("x-gitlab-token") {
        let token = v.as_bytes().trim_ascii();
        let mut ok = false;
        for s in secrets {
            ok |= same(s, token);
        }
        return if ok {
            Ok(())
        } else {
            Err(Refusal::BadSignature)
        };
    }
    Err(Refusal::MissingSignature)
}

/// The part of a push event we read: GitHub, Gitea and GitLab all name the pushed ref so.
#[derive(serde::Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    r#ref: Option<String>,
}

fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    let mut body = text.into();
    body.push('\n');
    (status, body).into_response()
}

async fn handle(
    State(hook): State<Arc<Webhook>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let reject = |reason: &str| {
        hook.metrics.webhook_rejection(reason);
    };
    let too_large = || {
        reject("too-large");
        tracing::warn!("webhook: refused a body over {MAX_BODY} bytes from {peer}");
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY} bytes"),
        )
    };
    if request.method() != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "push events are POSTed\n",
        )
            .into_response();
    }
    // A declared length over the limit is refused before a byte of the body is read (a
    // client that sent `Expect: 100-continue`, as curl does for large bodies, never sends
    // it); a chunked body is cut off at the limit by `DefaultBodyLimit`.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let headers = request.headers().clone();
    let body = match Bytes::from_request(request, &()).await {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(e) => return answer(e.status(), e.body_text()),
    };
    let secrets = hook.secrets.current().await;
    if let Err(r) = authenticate(&secrets.0, &headers, &body) {
        reject(r.reason());
        // The reason only: never the header's value, which is (or is derived from) the
        // secret.
        tracing::warn!("webhook: refused an event from {peer}: {}", r.reason());
        return answer(StatusCode::UNAUTHORIZED, r.reason());
    }
    let push: Push = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            reject("bad-payload");
            tracing::warn!("webhook: an authenticated event from {peer} is not JSON: {e}");
            return answer(
                StatusCode::BAD_REQUEST,
                "not a JSON body: set the webhook's content type to application/json",
            );
        }
    };
    let Some(r#ref) = push.r#ref.filter(|r| hook.refs.wants(r)) else {
        hook.metrics.webhook_event("ignored");
        tracing::debug!("webhook: an event from {peer} for no followed branch");
        return answer(StatusCode::OK, "ignored: not a followed branch");
    };
    match hook.trigger.try_send(()) {
        Ok(()) => {
            hook.metrics.webhook_event("triggered");
            tracing::info!("webhook: push to {ref} from {peer}: looking now");
            answer(StatusCode::ACCEPTED, "sync triggered")
        }
        Err(mpsc::error::TrySendError::Full(())) => {
            // A look is already pending; it starts after this push landed, so it sees it.
            hook.metrics.webhook_event("coalesced");
            tracing::debug!("webhook: push to {ref} from {peer}: a look is already pending");
            answer(StatusCode::ACCEPTED, "sync already pending")
        }
        Err(mpsc::error::TrySendError::Closed(())) => {
            answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
    }
}

pub fn router(hook: Arc<Webhook>) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(hook)
}

/// Serves the webhook on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    hook: Arc<Webhook>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(hook).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &[u8], body: &[u8]) -> HeaderMap {
        let mut m = mac(secret);
        m.update(body);
        let sig = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", sig.parse().unwrap());
        h
    }

    #[test]
    fn a_signature_verifies_with_any_listed_secret_and_only_over_its_body() {
        let secrets = vec![b"old".to_vec(), b"new".to_vec()];
        let body = br#"{"ref":"refs/heads/main"}"#;
        assert_eq!(authenticate(&secrets, &signed(b"new", body), body), Ok(()));
        assert_eq!(authenticate(&secrets, &signed(b"old", body), body), Ok(()));
        assert_eq!(
            authenticate(&secrets, &signed(b"other", body), body),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            authenticate(&secrets, &signed(b"new", body), b"{}"),
            Err(Refusal::BadSignature)
        );
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", "sha1=00".parse().unwrap());
        assert_eq!(authenticate(&secrets, &h, body), Err(Refusal::BadSignature));
        assert_eq!(
            authenticate(&secrets, &HeaderMap::new(), body),
            Err(Refusal::MissingSignature)
        );
    }

    #[test]
    fn a_gitlab_token_must_equal_a_secret_whatever_its_length() {
        let secrets = vec![b"s3cret".to_vec()];
        let token = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-gitlab-token", t.parse().unwrap());
            h
        };
        assert_eq!(authenticate(&secrets, &token("s3cret"), b""), Ok(()));
        for wrong in ["s3cre", "s3cret2", "S3cret", ""] {
            assert_eq!(
                authenticate(&secrets, &token(wrong), b""),
                Err(Refusal::BadSignature),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn secrets_are_lines_trimmed_and_an_empty_file_is_refused() {
        let p = Path::new("f");
        let s = parse_secrets(p, b"  one \r\n\n two\n").unwrap();
        assert_eq!(*s.0, vec![b"one".to_vec(), b"two".to_vec()]);
        assert!(matches!(
            parse_secrets(p, b" \n\n"),
            Err(Error::Empty { .. })
        ));
        assert!(!format!("{s:?}").contains("one"));
    }

    #[test]
    fn pushes_to_followed_and_preview_branches_are_wanted_others_not() {
        let f = Refs {
            branch: Some("main".into()),
            previews: Some(BranchGlob::new("preview/*")),
        };
        assert!(f.wants("refs/heads/main"));
        assert!(f.wants("refs/heads/preview/login"));
        assert!(!f.wants("refs/heads/preview/team/login"));
        assert!(!f.wants("refs/heads/other"));
        assert!(!f.wants("refs/tags/main"));
        assert!(!f.wants("main"));
        let head = Refs {
            branch: None,
            previews: None,
        };
        assert!(head.wants("refs/heads/anything"));
        assert!(!head.wants("refs/tags/v1"));
    }
}

//! `tidegate serve`: the loop users live in. Every new head of the followed branch is
//! read, validated, expanded, rendered and translated; then the snapshot is published and
//! the manifests are written. All or nothing: an invalid commit is rejected whole and the
//! last good one keeps being served.
//!
//! Tasks: the sync loop (reads, validates and plans commits), the endpoints and
//! certificates watchers (read their files) and the xDS and admin servers. Only the
//! [`publisher`] writes the served snapshot; the others send it updates.

mod publisher;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::admin::{AdminState, BranchStatus, PreviewState, Rejected};
use crate::gitsync::Source;
use crate::gitsync::glob::BranchGlob;
use crate::gitsync::push::{self, Pushed, SourceCommit};
use crate::gitsync::source::RepoSource;
use crate::gitsync::verify;
use crate::xds::certs::Certs;
use crate::xds::endpoints::Endpoints;
use crate::xds::server::Ads;
use crate::xds::snapshot::{self, Inputs, Origin, Snapshot, SnapshotReader};
use crate::xds::status::Registry;
use crate::{intent, render, xds};
use publisher::Update;

/// How long to let a burst of ref updates settle before reading.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Longest wait between retries after a failure (unreachable remote, vanished repository).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Rejected commits kept for `/status`.
const KEEP_REJECTED: usize = 20;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A path (work tree, directory in one, bare repository) or a URL.
    pub repo: String,
    /// Branch to follow; default HEAD.
    pub branch: Option<String>,
    /// Write the manifests of every served commit here.
    pub out: Option<PathBuf>,
    /// Commit the manifests of every served commit to this branch.
    pub push_branch: Option<String>,
    pub endpoints: Option<PathBuf>,
    /// Certificates served over SDS (mesh identities, HTTPS listener Secrets).
    pub certs: Option<PathBuf>,
    /// Safety poll for local repositories (events can be lost), `ls-remote` interval for
    /// remotes.
    pub poll_interval: Duration,
    /// Where a remote is mirrored.
    pub mirror_dir: Option<PathBuf>,
    /// xDS over TLS with required client certificates.
    pub tls: Option<xds::server::TlsFiles>,
    /// Branches served besides `branch`, to proxies that name them (see
    /// [`crate::gitsync::glob`]); needs `branch`.
    pub preview_branches: Option<String>,
    /// At most this many preview branches are served; more are listed as not served.
    pub max_previews: usize,
    /// How long a deleted preview branch's proxies keep its last config.
    pub preview_grace: Duration,
    /// Client certificate SANs (DNS names or URIs) given every proxy's status over CSDS
    /// on the xDS port; other clients see only the proxies they may be.
    pub csds_identities: Vec<String>,
    /// Credentials for a remote `repo` (default: none, the machine's git configuration).
    pub git_auth: crate::gitsync::auth::GitAuth,
    /// `--verify-commits`: an `allowed_signers` file; every head served must carry a valid
    /// SSH signature by one of its keys.
    pub verify_commits: Option<PathBuf>,
    /// The webhook's shared secret(s) (`serve --webhook-secret-file`); needed with a
    /// webhook listener (see [`start_with_webhook`]).
    pub webhook_secret_file: Option<PathBuf>,
}

impl ServeOptions {
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            branch: None,
            out: None,
            push_branch: None,
            endpoints: None,
            certs: None,
            poll_interval: Duration::from_secs(30),
            mirror_dir: None,
            tls: None,
            preview_branches: None,
            max_previews: 20,
            preview_grace: Duration::from_secs(600),
            csds_identities: Vec::new(),
            git_auth: Default::default(),
            verify_commits: None,
            webhook_secret_file: None,
        }
    }
}

/// A running server: its bound addresses and a way to stop it.
pub struct Running {
    pub xds: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    /// Where push events are accepted (`serve --webhook`).
    pub webhook: Option<std::net::SocketAddr>,
    pub state: Arc<AdminState>,
    /// To the publisher, the only writer of the served snapshot.
    updates: mpsc::Sender<Update>,
    snapshots: SnapshotReader,
    trigger: mpsc::Sender<()>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Serves `snapshot` from now on (tests use it to serve hand-made configs); returns
    /// once it is served.
    pub async fn publish(&self, snapshot: Snapshot) {
        let (served, published) = oneshot::channel();
        if self
            .updates
            .send(Update::Replace(snapshot, served))
            .await
            .is_ok()
        {
            let _ = published.await;
        }
    }

    pub async fn current(&self) -> Arc<Snapshot> {
        self.snapshots.load()
    }

    /// Asks the sync loop to look at the repository now.
    pub fn sync_now(&self) {
        let _ = self.trigger.try_send(());
    }

    /// Waits until commit `sha` of preview branch `branch` is served (or rejected: then
    /// returns its errors).
    pub async fn wait_preview_served(
        &self,
        branch: &str,
        sha: &str,
        timeout: Duration,
    ) -> Result<(), Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let served = self
                .current()
                .await
                .previews()
                .get(branch)
                .map(|p| p.origin.revision.clone());
            if served.as_deref() == Some(sha) {
                return Ok(());
            }
            let status = self
                .state
                .previews
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(branch)
                .cloned();
            if let Some(r) = status
                .as_ref()
                .and_then(|s| s.rejected.iter().find(|r| r.revision == sha))
            {
                return Err(r.errors.clone());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(vec![format!(
                    "{sha} of {branch} not served within {timeout:?}; serving {served:?}, status {status:?}"
                )]);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until commit `sha` is served (or rejected: then returns its errors).
    pub async fn wait_served(&self, sha: &str, timeout: Duration) -> Result<(), Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.current().await.origin.revision == sha {
                return Ok(());
            }
            if let Some(r) = self
                .state
                .rejected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|r| r.revision == sha)
            {
                return Err(r.errors.clone());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(vec![format!(
                    "{sha} not served within {timeout:?}; serving {}",
                    self.current().await.origin.revision
                )]);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Accept queue of the xDS listener. A fleet reconnects at once when tidegate restarts;
/// with tokio's default of 1,024, a thousand simulated proxies connecting together saw
/// connection resets (bench_commit_to_ack). The kernel caps it at net.core.somaxconn.
pub const XDS_BACKLOG: u32 = 8192;

/// Binds `addr` (a name is resolved; the first address is used) with [`XDS_BACKLOG`].
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let resolved = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{addr} resolves to nothing"),
        )
    })?;
    let socket = if resolved.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's bind does: a restarted server may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(resolved)?;
    socket.listen(XDS_BACKLOG)
}

/// Starts serving on the given listeners (tests bind port 0). Config problems never stop
/// the server: they are reported in `/status`, and it serves what it can (at first, an
/// empty config; `/readyz` says when a commit is served).
pub async fn start(
    opts: ServeOptions,
    xds_listener: TcpListener,
    admin_listener: TcpListener,
) -> anyhow::Result<Running> {
    start_with_webhook(opts, xds_listener, admin_listener, None).await
}

/// As [`start`], with push events accepted on `webhook_listener` (`serve --webhook`),
/// authenticated with `opts.webhook_secret_file`. The listener is passed like the others
/// (the caller binds it; tests bind port 0 and read the port back) rather than held in
/// [`ServeOptions`], which is plain cloneable data; and `start` keeps its signature for
/// the callers that have no webhook.
pub async fn start_with_webhook(
    opts: ServeOptions,
    xds_listener: TcpListener,
    admin_listener: TcpListener,
    webhook_listener: Option<TcpListener>,
) -> anyhow::Result<Running> {
    // Before anything starts: a webhook nobody can authenticate to is a startup error.
    let webhook_secrets = match (&webhook_listener, &opts.webhook_secret_file) {
        (Some(_), Some(path)) => Some(crate::webhook::SecretFile::load(path)?),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!(
            "--webhook needs --webhook-secret-file: unauthenticated push events are refused"
        ),
        (None, Some(_)) => anyhow::bail!("--webhook-secret-file needs --webhook"),
    };
    if let (Some(b), Some(p)) = (&opts.branch, &opts.push_branch)
        && b == p
    {
        anyhow::bail!(
            "--push-branch {p} is the branch being served: the rendered branch must be another one"
        );
    }
    if opts.preview_branches.is_some() && opts.branch.is_none() {
        anyhow::bail!(
            "--preview-branches needs --branch: previews are served beside a named branch, and a proxy names its branch to be served it"
        );
    }
    let signers = match &opts.verify_commits {
        Some(p) => Some(Arc::new(verify::Watched::load(p)?)),
        None => None,
    };
    let endpoints = match &opts.endpoints {
        Some(p) => Some(Arc::new(Endpoints::load(p)?)),
        None => None,
    };
    let certs = match &opts.certs {
        Some(dir) => {
            let c = Certs::load(dir)?;
            for p in &c.problems {
                tracing::warn!("certificates: {p}");
            }
            Some(Arc::new(c))
        }
        None => None,
    };
    let empty = Snapshot::build(
        Origin {
            revision: String::new(),
            source: "nothing yet".into(),
            warnings: Vec::new(),
            r#ref: opts.branch.clone().unwrap_or_default(),
        },
        Default::default(),
        Inputs {
            endpoints: endpoints.clone(),
            certs: certs.clone(),
        },
    );
    let (writer, reader) = snapshot::channel(empty);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let registry = Registry::with_metrics(metrics.clone());
    let state = Arc::new(AdminState {
        snapshots: reader.clone(),
        registry: registry.clone(),
        rejected: Default::default(),
        source_error: Default::default(),
        head: Default::default(),
        ready: false.into(),
        metrics: metrics.clone(),
        previews: Default::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let streams_stop = stopped.clone();
    let shutdown = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let xds_addr = xds_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let mut tasks = Vec::new();
    let ads =
        Ads::new(reader, registry, streams_stop).with_csds_full_view(opts.csds_identities.clone());
    let tls = match &opts.tls {
        Some(files) => {
            let config = xds::server::TlsConfig::load(files)?;
            // A rotation of the certificate, key or client CA applies to new connections.
            for dir in files.dirs() {
                tasks.push(tokio::spawn(watch_tls(
                    dir,
                    files.clone(),
                    config.clone(),
                    metrics.clone(),
                    shutdown(),
                )));
            }
            Some(config)
        }
        None => None,
    };
    let s1 = shutdown();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = xds::server::serve(xds_listener, ads, tls, s1).await {
            tracing::error!("xDS server failed: {e}");
        }
    }));
    let s2 = shutdown();
    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = crate::admin::serve(admin_listener, st, s2).await {
            tracing::error!("admin server failed: {e}");
        }
    }));
    let (updates, updates_rx) = mpsc::channel(publisher::UPDATES);
    // Not stopped by `shutdown`: it ends when every sender (the tasks below and `Running`)
    // is gone, having applied what they sent.
    tokio::spawn(publisher::run(writer, updates_rx));
    if let Some(path) = opts.endpoints.clone() {
        tasks.push(tokio::spawn(watch_endpoints(
            path,
            endpoints,
            updates.clone(),
            shutdown(),
        )));
    }
    if let Some(dir) = opts.certs.clone() {
        tasks.push(tokio::spawn(watch_certs(
            dir,
            certs,
            updates.clone(),
            shutdown(),
        )));
    }

    let source = RepoSource::new(&opts.repo, opts.branch.clone(), opts.mirror_dir.clone())
        .with_auth(opts.git_auth.clone());
    let (trigger, triggers) = mpsc::channel(1);
    let mut webhook_addr = None;
    if let (Some(listener), Some(secrets)) = (webhook_listener, webhook_secrets) {
        webhook_addr = Some(listener.local_addr()?);
        let hook = Arc::new(crate::webhook::Webhook {
            secrets,
            refs: crate::webhook::Refs {
                branch: opts.branch.clone(),
                previews: opts.preview_branches.as_deref().map(BranchGlob::new),
            },
            trigger: trigger.clone(),
            metrics: metrics.clone(),
        });
        let s3 = shutdown();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::webhook::serve(listener, hook, s3).await {
                tracing::error!("webhook server failed: {e}");
            }
        }));
    }
    // Watching is best effort (a remote has nothing to watch): the poll is the backstop.
    let watcher = watch_refs(&source, trigger.clone());
    let sync = Sync {
        source,
        glob: opts.preview_branches.as_deref().map(BranchGlob::new),
        opts: opts.clone(),
        updates: updates.clone(),
        state: state.clone(),
        main: Followed::default(),
        previews: BTreeMap::new(),
        render_cache: Default::default(),
        signers,
        _watcher: watcher,
    };
    tasks.push(tokio::spawn(sync.run(triggers, shutdown())));
    Ok(Running {
        xds: xds_addr,
        admin: admin_addr,
        webhook: webhook_addr,
        snapshots: state.snapshots.clone(),
        state,
        updates,
        trigger,
        stop,
        tasks,
    })
}

/// Watches the repository's refs; every event only means "re-resolve the ref now" (a
/// `gc` rewrites refs without moving them, a fetch writes many objects).
fn watch_refs(
    source: &RepoSource,
    trigger: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let paths = match source.watch_paths() {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!("not watching {}: {e}; polling only", source.describe());
            return None;
        }
    };
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && ev.paths.iter().any(|p| {
                let s = p.to_string_lossy();
                !(s.contains("/objects/")
                    || s.contains("/logs/")
                    || s.ends_with("/index")
                    || s.ends_with("/index.lock"))
            })
        {
            let _ = trigger.try_send(());
        }
    })
    .map_err(|e| tracing::warn!("cannot watch {}: {e}; polling only", source.describe()))
    .ok()?;
    for (i, p) in paths.iter().enumerate() {
        // The git dir itself non-recursively (HEAD, packed-refs); refs/ recursively.
        let mode = if i == 0 {
            RecursiveMode::NonRecursive
        } else {
            RecursiveMode::Recursive
        };
        if let Err(e) = watcher.watch(p, mode) {
            tracing::warn!("cannot watch {}: {e}", p.display());
        }
    }
    Some(watcher)
}

struct Sync {
    source: RepoSource,
    /// `--preview-branches`.
    glob: Option<BranchGlob>,
    opts: ServeOptions,
    updates: mpsc::Sender<Update>,
    state: Arc<AdminState>,
    /// The followed branch (`--branch`).
    main: Followed,
    /// The preview branches served, by name (at most `--max-previews`).
    previews: BTreeMap<String, Preview>,
    /// The previous render's objects' YAML (a commit re-serializes only what changed).
    /// Behind a lock only to cross into the blocking pool; renders run one at a time.
    render_cache: Arc<std::sync::Mutex<render::Cache>>,
    /// `--verify-commits`.
    signers: Option<Arc<verify::Watched>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// A branch being followed: its head as last processed, and what its previous commit
/// decoded and planned (reused where unchanged).
#[derive(Default)]
struct Followed {
    last: Option<String>,
    cache: (intent::Cache, xds::translate::Cache),
}

/// A preview branch being served.
struct Preview {
    followed: Followed,
    /// When the branch was seen deleted (its proxies keep its config for the grace period).
    gone_since: Option<Instant>,
    rejected: Vec<Rejected>,
    source_error: Option<String>,
}

/// The result of processing one commit, computed off the async workers.
struct Built {
    origin: Origin,
    plans: std::collections::BTreeMap<String, Arc<xds::plan::ProxyPlan>>,
    /// How long planning took (encoding is the publisher's).
    planning: Duration,
    /// Rendered after the snapshot is published, and only when manifests are written
    /// (render fails only on a bug, never on input the validation accepted).
    /// The very model the snapshot keeps for its status (shared, not copied per commit).
    model: Arc<crate::model::Model>,
    config: intent::Config,
    tree_source: Source,
}

impl Sync {
    async fn run(
        mut self,
        mut triggers: mpsc::Receiver<()>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let wait = match self.step().await {
                Ok(()) => {
                    failures = 0;
                    self.opts.poll_interval
                }
                Err(e) => {
                    failures += 1;
                    self.state.metrics.source_errors.inc();
                    // Exponential backoff from one second, capped; the log says why.
                    let backoff = Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF);
                    tracing::warn!(
                        "{}: {e}; retrying in {backoff:?}, still serving the last good commit",
                        self.source.describe()
                    );
                    *self
                        .state
                        .source_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(e);
                    backoff.min(self.opts.poll_interval)
                }
            };
            // Jitter: replicas polling one remote do not stay in lockstep.
            let jitter = Duration::from_millis(
                u64::from(std::process::id() % 97) * wait.as_millis().min(10_000) as u64 / 970,
            );
            // A deleted preview's grace period ends on time, not at the next poll.
            let wait = match self.next_expiry() {
                Some(at) => (wait + jitter).min(at.saturating_duration_since(Instant::now())),
                None => wait + jitter,
            };
            tokio::select! {
                _ = &mut shutdown => return,
                t = triggers.recv() => {
                    if t.is_none() {
                        return;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    while triggers.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Looks at the followed branch, then at the preview branches, once each.
    async fn step(&mut self) -> Result<(), String> {
        // New keys: heads rejected for their signature are checked again.
        if self.signers.as_ref().is_some_and(|s| s.reloaded()) {
            self.main.last = None;
            for p in self.previews.values_mut() {
                p.followed.last = None;
            }
        }
        self.state.metrics.source_checks.inc();
        let main = self.step_main().await;
        let previews = match self.glob.clone() {
            Some(glob) => self.step_previews(&glob).await,
            None => Ok(()),
        };
        main.and(previews)
    }

    /// The followed branch's name, as metrics and logs call it.
    fn main_name(&self) -> &str {
        self.opts.branch.as_deref().unwrap_or("HEAD")
    }

    /// Looks at the followed branch's head once; processes it if it moved.
    async fn step_main(&mut self) -> Result<(), String> {
        let source = self.source.clone();
        let sha = tokio::task::spawn_blocking(move || source.resolve())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        *self
            .state
            .source_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        *self.state.head.lock().unwrap_or_else(|e| e.into_inner()) = Some(sha.clone());
        let branch = self.opts.branch.clone().unwrap_or_default();
        let Some(built) = self.build_head(None, &sha, &branch).await? else {
            return Ok(());
        };
        match built {
            Ok(b) => self.serve(b).await,
            Err(r) => {
                tracing::error!(
                    "commit {} rejected ({} problem(s)); still serving {}",
                    r.revision,
                    r.errors.len(),
                    self.state.snapshots.load().origin.revision
                );
                for e in &r.errors {
                    tracing::error!("  {e}");
                }
                self.state.metrics.commit(self.main_name(), true);
                let mut rejected = self
                    .state
                    .rejected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                rejected.insert(0, r);
                rejected.truncate(KEEP_REJECTED);
            }
        }
        Ok(())
    }

    /// Builds head `sha` of the followed branch (`preview: None`) or of a served preview,
    /// off the async workers, with that branch's cache. `None` when the head did not move;
    /// `Some(Err)` when the commit is invalid; `Err` when it could not be read (the next
    /// round tries again).
    async fn build_head(
        &mut self,
        preview: Option<&str>,
        sha: &str,
        branch: &str,
    ) -> Result<Option<Result<Built, Rejected>>, String> {
        let followed = match preview {
            None => &mut self.main,
            Some(name) => match self.previews.get_mut(name) {
                Some(p) => &mut p.followed,
                None => return Ok(None),
            },
        };
        if followed.last.as_deref() == Some(sha) {
            return Ok(None);
        }
        followed.last = Some(sha.to_owned());
        let source = self.source.clone();
        let mut cache = std::mem::take(&mut followed.cache);
        let metrics = self.state.metrics.clone();
        let signers = self.signers.clone();
        let (sha, branch) = (sha.to_owned(), branch.to_owned());
        let (built, cache) = tokio::task::spawn_blocking(move || {
            if let Some(signers) = &signers
                && let Err(e) = verify_head(&source, &sha, signers)
            {
                return (Err(e), cache);
            }
            let r = build(&source, &sha, &branch, &mut cache.0, &mut cache.1, &metrics);
            (r, cache)
        })
        .await
        .map_err(|e| e.to_string())?;
        followed.cache = cache;
        match built {
            Ok(b) => Ok(Some(Ok(b))),
            Err(BuildError::Rejected { revision, errors }) => {
                Ok(Some(Err(Rejected { revision, errors })))
            }
            Err(BuildError::Source(e)) => {
                // Could not read the commit: try again on the next round.
                followed.last = None;
                Err(e)
            }
        }
    }

    /// When the first deleted preview's grace period ends.
    fn next_expiry(&self) -> Option<Instant> {
        self.previews
            .values()
            .filter_map(|p| p.gone_since)
            .min()
            .map(|t| t + self.opts.preview_grace)
    }

    /// Looks at the branches `glob` matches once: serves new heads of the previews served,
    /// starts serving new branches while there is room, keeps deleted ones through their
    /// grace period and then stops serving them.
    async fn step_previews(&mut self, glob: &BranchGlob) -> Result<(), String> {
        let source = self.source.clone();
        let listed = glob.clone();
        let mut heads = tokio::task::spawn_blocking(move || source.heads(&listed))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        // The followed branch and the rendered one are never previews.
        heads.retain(|name, _| {
            Some(name) != self.opts.branch.as_ref() && Some(name) != self.opts.push_branch.as_ref()
        });
        let now = Instant::now();
        let grace = self.opts.preview_grace;
        for (name, p) in &mut self.previews {
            match (heads.contains_key(name), p.gone_since) {
                (false, None) => {
                    tracing::info!(branch = %name, "preview branch deleted: its proxies keep its config for {grace:?}");
                    p.gone_since = Some(now);
                }
                (true, Some(_)) => p.gone_since = None,
                _ => {}
            }
        }
        let expired: Vec<String> = self
            .previews
            .iter()
            .filter(|(_, p)| p.gone_since.is_some_and(|t| now >= t + grace))
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            tracing::info!(branch = %name, "preview branch deleted {grace:?} ago: its proxies get an empty config");
            self.previews.remove(&name);
            if self.updates.send(Update::DropPreview(name)).await.is_err() {
                return Ok(());
            }
        }
        // Previews served keep their place; new branches take free places in name order.
        let mut not_served = Vec::new();
        for name in heads.keys() {
            if self.previews.contains_key(name) {
                continue;
            }
            if self.previews.len() >= self.opts.max_previews {
                not_served.push(name.clone());
                continue;
            }
            tracing::info!(branch = %name, "serving preview branch");
            self.previews.insert(
                name.clone(),
                Preview {
                    // Starts from the followed branch's decoded files and plans: only what
                    // the branch changed is decoded and planned again.
                    followed: Followed {
                        last: None,
                        cache: self.main.cache.clone(),
                    },
                    gone_since: None,
                    rejected: Vec::new(),
                    source_error: None,
                },
            );
        }
        let mut first_error = None;
        let served: Vec<String> = self.previews.keys().cloned().collect();
        for name in served {
            let Some(sha) = heads.get(&name).cloned() else {
                continue;
            };
            let built = self.build_head(Some(&name), &sha, &name).await;
            let Some(p) = self.previews.get_mut(&name) else {
                continue;
            };
            match built {
                Ok(None) => {}
                Ok(Some(Ok(b))) => {
                    p.source_error = None;
                    if !self.serve_preview(&name, b).await {
                        return Ok(());
                    }
                }
                Ok(Some(Err(r))) => {
                    tracing::error!(
                        branch = %name,
                        "preview commit {} rejected ({} problem(s)); its proxies keep their config",
                        r.revision,
                        r.errors.len()
                    );
                    for e in &r.errors {
                        tracing::error!("  {e}");
                    }
                    self.state.metrics.commit(&name, true);
                    p.source_error = None;
                    p.rejected.insert(0, r);
                    p.rejected.truncate(KEEP_REJECTED);
                }
                Err(e) => {
                    p.source_error = Some(e.clone());
                    first_error.get_or_insert(format!("preview branch {name}: {e}"));
                }
            }
        }
        self.publish_previews_status(&heads, not_served);
        first_error.map_or(Ok(()), Err)
    }

    /// Sends a preview branch's valid commit to the publisher and waits until it is
    /// served; false when the server is stopping.
    async fn serve_preview(&mut self, branch: &str, b: Built) -> bool {
        let (served, published) = oneshot::channel();
        let update = Update::Preview {
            branch: branch.to_owned(),
            origin: b.origin.clone(),
            plans: b.plans,
            model: b.model,
            served,
        };
        if self.updates.send(update).await.is_err() {
            return false;
        }
        if published.await.is_err() {
            return false;
        }
        self.state.metrics.commit(branch, false);
        tracing::info!(branch = %branch, commit = %b.origin.revision, "serving preview {}", b.origin.source);
        true
    }

    /// Writes what `/status` says of the preview branches.
    fn publish_previews_status(&self, heads: &BTreeMap<String, String>, not_served: Vec<String>) {
        let grace = self.opts.preview_grace;
        let now = Instant::now();
        let served = self.state.snapshots.load();
        let mut status = BTreeMap::new();
        for (name, p) in &self.previews {
            let (state, reason) = match p.gone_since {
                Some(t) => (
                    PreviewState::Gone,
                    Some(format!(
                        "branch deleted: its proxies keep its last config for {}s more, then get an empty one",
                        (t + grace).saturating_duration_since(now).as_secs()
                    )),
                ),
                None if served.previews().contains_key(name) => (PreviewState::Serving, None),
                None => (
                    PreviewState::Waiting,
                    Some("no valid commit yet: its proxies get an empty config".to_owned()),
                ),
            };
            status.insert(
                name.clone(),
                BranchStatus {
                    state,
                    head: heads.get(name).cloned().or_else(|| p.followed.last.clone()),
                    reason,
                    rejected: p.rejected.clone(),
                    source_error: p.source_error.clone(),
                },
            );
        }
        let served_names: Vec<&str> = self.previews.keys().map(String::as_str).collect();
        for name in not_served {
            let reason = format!(
                "--max-previews {} reached (serving {}): served once one of those is deleted",
                self.opts.max_previews,
                served_names.join(", ")
            );
            status.insert(
                name.clone(),
                BranchStatus {
                    state: PreviewState::NotServed,
                    head: heads.get(&name).cloned(),
                    reason: Some(reason),
                    rejected: Vec::new(),
                    source_error: None,
                },
            );
        }
        *self
            .state
            .previews
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = status;
    }

    async fn serve(&mut self, b: Built) {
        let origin = b.origin.clone();
        let (served, published) = oneshot::channel();
        let update = Update::Commit {
            origin: b.origin,
            plans: b.plans,
            model: b.model.clone(),
            served,
        };
        if self.updates.send(update).await.is_err() {
            return;
        }
        // Ready, and the manifests of this commit, once its config is served.
        let Ok(encoding) = published.await else {
            return;
        };
        self.state
            .metrics
            .stage("translate")
            .observe((b.planning + encoding).as_secs_f64());
        self.state.ready.store(true, Ordering::Release);
        self.state.metrics.commit(self.main_name(), false);
        if let Source::Commit { time, .. } = &b.tree_source {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            self.state
                .metrics
                .commit_lag_seconds
                .observe((now - *time as f64).max(0.0));
        }
        tracing::info!(commit = %origin.revision, "serving {}", origin.source);
        if self.opts.out.is_none() && self.opts.push_branch.is_none() {
            return;
        }
        let (model, config, source) = (b.model, b.config, b.tree_source.clone());
        let metrics = self.state.metrics.clone();
        let render_cache = self.render_cache.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            // A render that panicked left the cache as consistent as any other: each
            // entry is an object with its own YAML.
            let mut cache = render_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let r = render::render_cached(&model, &config.summary(&source), &mut cache);
            metrics.stage("render").observe(t.elapsed().as_secs_f64());
            r
        })
        .await;
        let rendered = match rendered {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!("rendering manifests of {}: {e}", origin.revision);
                return;
            }
            Err(e) => {
                tracing::error!("rendering manifests of {}: {e}", origin.revision);
                return;
            }
        };
        if let Some(out) = self.opts.out.clone() {
            let rendered = rendered.clone();
            match tokio::task::spawn_blocking(move || render::write_dir(&out, &rendered)).await {
                Ok(Ok(s)) => tracing::info!(
                    written = s.written.len(),
                    removed = s.removed.len(),
                    "manifests written"
                ),
                Ok(Err(e)) => tracing::error!("writing manifests: {e}"),
                Err(e) => tracing::error!("writing manifests: {e}"),
            }
        }
        if let (
            Some(branch),
            Source::Commit {
                sha, subject, time, ..
            },
        ) = (self.opts.push_branch.clone(), b.tree_source)
        {
            let source = self.source.clone();
            let files = rendered.files;
            let result = tokio::task::spawn_blocking(move || {
                push::push_rendered(
                    &source,
                    &branch,
                    &files,
                    &SourceCommit {
                        sha: &sha,
                        subject: &subject,
                        time,
                    },
                )
            })
            .await;
            match result {
                Ok(Ok(Pushed::Committed(id))) => {
                    tracing::info!(commit = %id, "rendered branch updated")
                }
                Ok(Ok(Pushed::Unchanged)) => {
                    tracing::info!("render unchanged: no commit on the rendered branch")
                }
                Ok(Err(e)) => tracing::error!("pushing the rendered branch: {e}"),
                Err(e) => tracing::error!("pushing the rendered branch: {e}"),
            }
        }
    }
}

enum BuildError {
    Rejected {
        revision: String,
        errors: Vec<String>,
    },
    Source(String),
}

/// `--verify-commits`: head `sha` must carry a valid signature by an allowed key; if not,
/// it is rejected like an invalid commit (blocking).
fn verify_head(
    source: &RepoSource,
    sha: &str,
    signers: &verify::Watched,
) -> Result<(), BuildError> {
    let (repo, _) = source
        .open()
        .map_err(|e| BuildError::Source(e.to_string()))?;
    let oid = git2::Oid::from_str(sha).map_err(|e| BuildError::Source(e.to_string()))?;
    match verify::verify_commit(&repo, oid, &signers.current()) {
        Ok(by) => {
            tracing::info!(
                commit = sha,
                key = by.fingerprint,
                principals = by.principals,
                "signature verified"
            );
            Ok(())
        }
        Err(verify::Rejection::Unreadable(e)) => {
            Err(BuildError::Source(format!("commit {sha}: {e}")))
        }
        Err(reason) => Err(BuildError::Rejected {
            revision: sha.to_owned(),
            errors: vec![format!("commit {sha}: {reason}")],
        }),
    }
}

/// Reads, validates, expands and plans commit `sha` (blocking); the publisher encodes.
fn build(
    source: &RepoSource,
    sha: &str,
    branch: &str,
    cache: &mut intent::Cache,
    plans: &mut xds::translate::Cache,
    metrics: &crate::metrics::Metrics,
) -> Result<Built, BuildError> {
    let timer = |stage: &str, since: std::time::Instant| {
        metrics.stage(stage).observe(since.elapsed().as_secs_f64())
    };
    let t = std::time::Instant::now();
    let tree = source
        .read(sha, &crate::intent::LAYOUT, &|path, id| {
            cache.knows(path, id)
        })
        .map_err(|e| BuildError::Source(e.to_string()))?;
    timer("read", t);
    let t = std::time::Instant::now();
    let loaded = intent::load_and_expand_cached(&tree, cache);
    timer("validate", t);
    let (config, mut model) = loaded.map_err(|e| match e {
        intent::Error::Invalid(problems) => BuildError::Rejected {
            revision: sha.to_owned(),
            errors: problems.iter().map(ToString::to_string).collect(),
        },
    })?;
    // The oldest of competing routes and ListenerSets wins: their ages come from history.
    if intent::created::any_dated(&config) {
        let (repo, prefix) = source
            .open()
            .map_err(|e| BuildError::Source(e.to_string()))?;
        intent::created::stamp(&config, &mut model, &repo, sha, &prefix)
            .map_err(|e| BuildError::Source(e.to_string()))?;
    }
    let origin = Origin {
        revision: tree.source.revision().to_owned(),
        source: tree.source.to_string(),
        warnings: config.warnings.clone(),
        r#ref: branch.to_owned(),
    };
    let model = Arc::new(model);
    let t = std::time::Instant::now();
    let plans = xds::translate::plans_cached(&model, plans);
    Ok(Built {
        origin,
        plans,
        planning: t.elapsed(),
        model,
        config,
        tree_source: tree.source,
    })
}

/// Runs `reload` after every burst of file events under `dir` that `wanted` accepts, once
/// the burst has been quiet for `settle`, until `shutdown`. Events only mean "look again":
/// `reload` reads the files and decides whether anything changed.
async fn on_file_changes<F, Fut>(
    dir: PathBuf,
    mode: notify::RecursiveMode,
    wanted: impl Fn(&notify::Event) -> bool + Send + 'static,
    settle: Duration,
    shutdown: impl std::future::Future<Output = ()>,
    mut reload: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use notify::Watcher;
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && wanted(&ev)
        {
            let _ = tx.try_send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("cannot watch {}: {e}", dir.display());
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, mode) {
        tracing::error!("cannot watch {}: {e}", dir.display());
        return;
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            got = rx.recv() => {
                if got.is_none() {
                    return;
                }
                tokio::time::sleep(settle).await;
                while rx.try_recv().is_ok() {}
                reload().await;
            }
        }
    }
}

/// Watches the endpoints file; a change is sent to the publisher, which re-encodes the
/// proxies that use what changed. A broken file keeps the last good one. `last` is the
/// file as last read (and sent).
async fn watch_endpoints(
    path: PathBuf,
    last: Option<Arc<Endpoints>>,
    updates: mpsc::Sender<Update>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Watch the directory: editors and `mv` replace the file, which a file watch misses.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let file_name = path.file_name().map(|n| n.to_owned());
    let wanted = move |ev: &notify::Event| {
        ev.paths
            .iter()
            .any(|p| p.file_name() == file_name.as_deref())
    };
    // Let a burst of writes settle before reading.
    let settle = Duration::from_millis(50);
    // Shared with each reload's future (one at a time: reloads run in turn).
    let last = Arc::new(std::sync::Mutex::new(last));
    on_file_changes(dir, notify::RecursiveMode::NonRecursive, wanted, settle, shutdown, || {
        let (path, last, updates) = (path.clone(), last.clone(), updates.clone());
        async move {
            let previous = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
            // Reading, parsing and comparing a large file are blocking work.
            let loaded = tokio::task::spawn_blocking(move || {
                Endpoints::load(&path).map(|eps| {
                    let changed = previous.as_deref() != Some(&eps);
                    (path, eps, changed)
                })
            })
            .await;
            match loaded {
                Ok(Ok((path, eps, true))) => {
                    tracing::info!(file = %path.display(), services = eps.entries.len(), "endpoints changed");
                    let eps = Arc::new(eps);
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(eps.clone());
                    let _ = updates.send(Update::Endpoints(eps)).await;
                }
                Ok(Ok((_, _, false))) => {}
                Ok(Err(e)) => tracing::warn!("keeping the previous endpoints: {e}"),
                Err(e) => tracing::warn!("keeping the previous endpoints: {e}"),
            }
        }
    })
    .await
}

/// Re-reads the xDS server's certificate, key and client CA when a file in `dir` changes.
/// A pair that does not load (a key written before its certificate, a broken file) keeps
/// the configuration in use; the next change tries again.
async fn watch_tls(
    dir: PathBuf,
    files: xds::server::TlsFiles,
    config: xds::server::TlsConfig,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Let a certificate and its key land together before reading.
    let settle = Duration::from_millis(100);
    on_file_changes(
        dir,
        notify::RecursiveMode::NonRecursive,
        |_| true,
        settle,
        shutdown,
        || {
            let (files, config, metrics) = (files.clone(), config.clone(), metrics.clone());
            async move {
                let reloaded =
                    tokio::task::spawn_blocking(move || config.reload(&files).map(|()| files))
                        .await;
                let result = if matches!(reloaded, Ok(Ok(_))) {
                    "ok"
                } else {
                    "failed"
                };
                metrics
                    .tls_reloads
                    .get_or_create(&crate::metrics::ResultLabel {
                        result: result.into(),
                    })
                    .inc();
                match reloaded {
                    Ok(Ok(files)) => tracing::info!(
                        cert = %files.cert.display(),
                        "xDS server certificate reloaded: new connections use it"
                    ),
                    Ok(Err(e)) => tracing::warn!("keeping the xDS server certificate in use: {e}"),
                    Err(e) => tracing::warn!("keeping the xDS server certificate in use: {e}"),
                }
            }
        },
    )
    .await
}

/// Watches the certificates directory; a change is sent to the publisher, so only the
/// SDS secrets (and what their presence decides) of the proxies using them change: Envoy
/// rotates them without a restart. Problems (a missing or unparsable file) are logged and
/// listed in `/status`; what needs that file is left out with a warning. `last` is the
/// directory as last read (and sent).
async fn watch_certs(
    dir: PathBuf,
    last: Option<Arc<Certs>>,
    updates: mpsc::Sender<Update>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Recursive: pairs live two levels down, and Secret volumes swap a `..data` symlink.
    // A rotation writes a certificate and a key: let both land before reading.
    let settle = Duration::from_millis(100);
    let watched = dir.clone();
    // Shared with each reload's future (one at a time: reloads run in turn).
    let last = Arc::new(std::sync::Mutex::new(last));
    on_file_changes(
        watched,
        notify::RecursiveMode::Recursive,
        |_| true,
        settle,
        shutdown,
        || {
            let (dir, last, updates) = (dir.clone(), last.clone(), updates.clone());
            async move {
                let previous = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let loaded = {
                    let dir = dir.clone();
                    tokio::task::spawn_blocking(move || {
                        Certs::reload(&dir, previous.as_deref()).map(|certs| {
                            let changed = previous.as_deref() != Some(&certs);
                            (certs, changed)
                        })
                    })
                    .await
                };
                match loaded {
                    Ok(Ok((certs, true))) => {
                        for p in &certs.problems {
                            tracing::warn!("certificates: {p}");
                        }
                        tracing::info!(
                            dir = %dir.display(),
                            identities = certs.identities.len(),
                            secrets = certs.secrets.len(),
                            "certificates changed"
                        );
                        let certs = Arc::new(certs);
                        *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(certs.clone());
                        let _ = updates.send(Update::Certs(certs)).await;
                    }
                    Ok(Ok((_, false))) => {}
                    Ok(Err(e)) => tracing::warn!("keeping the previous certificates: {e}"),
                    Err(e) => tracing::warn!("keeping the previous certificates: {e}"),
                }
            }
        },
    )
    .await
}

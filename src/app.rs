//! `tidegate serve`: wiring of config source → snapshot → xDS and admin servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminState;
use crate::xds::endpoints::Endpoints;
use crate::xds::server::Ads;
use crate::xds::snapshot::{self, Origin, Snapshot, SnapshotWriter};
use crate::xds::status::Registry;
use crate::{gitsync, intent, render, xds};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub repo: PathBuf,
    /// Branch (or any revision) to serve; default HEAD.
    pub rev: Option<String>,
    pub out: Option<PathBuf>,
    pub endpoints: Option<PathBuf>,
}

/// Reads and translates one commit into a snapshot.
pub fn load_snapshot(
    repo: &Path,
    rev: Option<&str>,
    endpoints: Option<Arc<Endpoints>>,
    out: Option<&Path>,
) -> anyhow::Result<Snapshot> {
    let tree = gitsync::read(repo, rev)?;
    let (config, model) =
        intent::load_and_expand(&tree).with_context(|| format!("{} rejected", tree.source))?;
    if let Some(out) = out {
        let rendered = render::render(&model, &config, &tree.source)?;
        render::write_dir(out, &rendered)?;
    }
    let origin = Origin {
        revision: tree.source.revision().to_owned(),
        source: tree.source.to_string(),
    };
    Ok(Snapshot::build(
        origin,
        xds::translate::plans(&model),
        endpoints,
    ))
}

/// A running server: its bound addresses and a way to stop it.
pub struct Running {
    pub xds: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub state: Arc<AdminState>,
    opts: ServeOptions,
    /// Publication is serialized (the endpoints watcher and reloads both publish); readers
    /// never take this lock.
    writer: Arc<tokio::sync::Mutex<SnapshotWriter>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Serves `rev` of the repository from now on (with the current endpoints).
    pub async fn reload(&self, rev: &str) -> anyhow::Result<()> {
        let writer = self.writer.lock().await;
        let eps = writer.current().endpoints().cloned();
        let (repo, rev, out) = (
            self.opts.repo.clone(),
            rev.to_owned(),
            self.opts.out.clone(),
        );
        let snap = tokio::task::spawn_blocking(move || {
            load_snapshot(&repo, Some(&rev), eps, out.as_deref())
        })
        .await??;
        writer.publish(snap);
        Ok(())
    }

    /// Serves `snapshot` from now on.
    pub async fn publish(&self, snapshot: Snapshot) {
        self.writer.lock().await.publish(snapshot);
    }

    pub async fn current(&self) -> Arc<Snapshot> {
        self.writer.lock().await.current()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts serving on the given listeners (tests bind port 0).
pub async fn start(
    opts: ServeOptions,
    xds_listener: TcpListener,
    admin_listener: TcpListener,
) -> anyhow::Result<Running> {
    let endpoints = match &opts.endpoints {
        Some(p) => Some(Arc::new(Endpoints::load(p)?)),
        None => None,
    };
    let repo = opts.repo.clone();
    let rev = opts.rev.clone();
    let out = opts.out.clone();
    let eps = endpoints.clone();
    // git2 and file IO are blocking: keep them off the async workers.
    let first = tokio::task::spawn_blocking(move || {
        load_snapshot(&repo, rev.as_deref(), eps, out.as_deref())
    })
    .await??;
    tracing::info!(source = %first.origin.source, gateways = ?first.proxy_ids().collect::<Vec<_>>(), "serving");

    let (writer, reader) = snapshot::channel(first);
    let registry = Registry::new();
    let state = Arc::new(AdminState {
        snapshots: reader.clone(),
        registry: registry.clone(),
        rejected: Default::default(),
        ready: true.into(),
    });
    let (stop, stopped) = watch::channel(false);
    let shutdown = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let xds_addr = xds_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let mut tasks = Vec::new();
    let ads = Ads::new(reader, registry);
    let s1 = shutdown();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = xds::server::serve(xds_listener, ads, s1).await {
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
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    if let Some(path) = opts.endpoints.clone() {
        let s3 = shutdown();
        tasks.push(tokio::spawn(watch_endpoints(path, writer.clone(), s3)));
    }
    Ok(Running {
        xds: xds_addr,
        admin: admin_addr,
        state,
        opts,
        writer,
        stop,
        tasks,
    })
}

/// Watches the endpoints file; a change republishes the snapshot with new endpoints (only
/// EDS resources differ, so only EDS is pushed). A broken file keeps the last good one.
async fn watch_endpoints(
    path: PathBuf,
    writer: Arc<tokio::sync::Mutex<SnapshotWriter>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    // Watch the directory: editors and `mv` replace the file, which a file watch misses.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let file_name = path.file_name().map(|n| n.to_owned());
    let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && ev
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref())
        {
            let _ = tx.try_send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("cannot watch {}: {e}", path.display());
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
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
                // Let a burst of writes settle before reading.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while rx.try_recv().is_ok() {}
                match Endpoints::load(&path) {
                    Ok(eps) => {
                        let writer = writer.lock().await;
                        let current = writer.current();
                        if current.endpoints().map(|e| e.as_ref()) != Some(&eps) {
                            tracing::info!(file = %path.display(), services = eps.entries.len(), "endpoints changed");
                            writer.publish(current.with_endpoints(Some(Arc::new(eps))));
                        }
                    }
                    Err(e) => tracing::warn!("keeping the previous endpoints: {e}"),
                }
            }
        }
    }
}

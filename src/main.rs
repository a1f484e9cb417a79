//! The `tidegate` command line. Thin: parsing and printing; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use tidegate::{gitsync, intent, render};

/// tidegate: ingress intents committed to Git become Kubernetes manifests and Envoy xDS.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the intents of a commit; print every problem with file, line and field.
    Validate {
        /// The config repo: a directory in a Git repository (read at --rev), or a plain
        /// directory outside any repository (read as files).
        #[arg(long, default_value = "config-repo")]
        repo: PathBuf,
        /// The commit to read (any revision Git understands); default HEAD.
        #[arg(long)]
        rev: Option<String>,
    },
    /// Render the manifests of a commit into a directory (one directory per namespace).
    Render {
        #[arg(long, default_value = "config-repo")]
        repo: PathBuf,
        #[arg(long)]
        rev: Option<String>,
        /// Output directory. Stale files of earlier renders are removed; other files are
        /// left alone. Nothing is written when the commit is invalid.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve a commit of the config repo over xDS (ADS, state-of-the-world and delta), with
    /// an admin endpoint (/healthz, /readyz, /status).
    Serve {
        /// The config repo: a path (a work tree, a directory in one, a bare repository) or
        /// a URL (`file://`, `https://`, `ssh://`, `git@host:path`), mirrored and polled.
        #[arg(long, default_value = "config-repo")]
        repo: String,
        /// Branch to follow; default HEAD. Every new head is served.
        #[arg(long)]
        branch: Option<String>,
        /// xDS (gRPC) listen address.
        #[arg(long, default_value = "127.0.0.1:18000")]
        xds: String,
        /// Admin HTTP listen address (keep it on loopback).
        #[arg(long, default_value = "127.0.0.1:18001")]
        admin: String,
        /// Write the manifests of every served commit here.
        #[arg(long, conflicts_with = "push_branch")]
        out: Option<PathBuf>,
        /// Commit the manifests of every served commit to this branch of the repository
        /// (one commit per changed render, with a `Source-Commit:` trailer).
        #[arg(long)]
        push_branch: Option<String>,
        /// Seconds between polls: a safety net for a local repository (its refs are
        /// watched), the `ls-remote` interval for a URL.
        #[arg(long, default_value_t = 30)]
        poll_interval: u64,
        /// Where a remote repository is mirrored (default: under the system temp dir).
        #[arg(long)]
        mirror_dir: Option<PathBuf>,
        /// Endpoints file (YAML, `<service>.<namespace>:<port>: [ip:port, …]`), watched for
        /// changes. Without it, clusters resolve `<service>.<namespace>.svc.cluster.local`.
        #[arg(long)]
        endpoints: Option<PathBuf>,
    },
    /// Print an Envoy bootstrap (YAML) that subscribes a proxy to tidegate.
    Bootstrap {
        /// The gateway this proxy is: NAME.NAMESPACE (sent as node.cluster).
        #[arg(long)]
        proxy: String,
        /// tidegate's xDS address.
        #[arg(long, default_value = "127.0.0.1:18000")]
        xds: String,
        /// Use delta (incremental) ADS instead of state-of-the-world.
        #[arg(long)]
        delta: bool,
        /// Address the proxy's listeners bind (default 0.0.0.0).
        #[arg(long)]
        bind: Option<String>,
        /// Envoy's own admin address.
        #[arg(long, default_value = "127.0.0.1:15000")]
        envoy_admin: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { repo, rev } => {
            let tree = read(&repo, rev.as_deref())?;
            match intent::load_and_expand(&tree) {
                Ok((config, model)) => {
                    warn(&tree, &config);
                    println!(
                        "ok: {}: {} intent(s), {} object(s)",
                        tree.source,
                        config.intents.len(),
                        model.objects.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(rejected(&tree, &e)),
            }
        }
        Command::Render { repo, rev, out } => {
            let tree = read(&repo, rev.as_deref())?;
            let (config, model) = match intent::load_and_expand(&tree) {
                Ok(x) => x,
                Err(e) => return Ok(rejected(&tree, &e)),
            };
            warn(&tree, &config);
            let rendered = render::render(&model, &config, &tree.source)?;
            let summary = render::write_dir(&out, &rendered)
                .with_context(|| format!("writing manifests to {}", out.display()))?;
            println!(
                "rendered {} to {}: {} file(s) written, {} unchanged, {} removed",
                tree.source,
                out.display(),
                summary.written.len(),
                summary.unchanged,
                summary.removed.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            repo,
            branch,
            xds,
            admin,
            out,
            push_branch,
            poll_interval,
            mirror_dir,
            endpoints,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let xds_listener = tokio::net::TcpListener::bind(&xds)
                    .await
                    .with_context(|| format!("binding xDS address {xds}"))?;
                let admin_listener = tokio::net::TcpListener::bind(&admin)
                    .await
                    .with_context(|| format!("binding admin address {admin}"))?;
                let opts = tidegate::app::ServeOptions {
                    repo,
                    branch,
                    out,
                    push_branch,
                    endpoints,
                    poll_interval: std::time::Duration::from_secs(poll_interval.max(1)),
                    mirror_dir,
                };
                let running = tidegate::app::start(opts, xds_listener, admin_listener).await?;
                println!(
                    "xds: {}\nadmin: http://{}/status",
                    running.xds, running.admin
                );
                tokio::signal::ctrl_c().await?;
                running.stop().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bootstrap {
            proxy,
            xds,
            delta,
            bind,
            envoy_admin,
        } => {
            let opts = tidegate::xds::bootstrap::Options {
                proxy,
                xds,
                delta,
                bind,
                admin: envoy_admin,
            };
            let value = tidegate::xds::bootstrap::bootstrap(&opts)?;
            print!("{}", serde_saphyr::to_string(&value)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(repo: &std::path::Path, rev: Option<&str>) -> anyhow::Result<gitsync::Tree> {
    let tree = gitsync::read(repo, rev)?;
    if let gitsync::Source::Directory(_) = tree.source {
        eprintln!("note: {}", tree.source);
    }
    Ok(tree)
}

fn warn(tree: &gitsync::Tree, config: &intent::Config) {
    for w in tree.skipped.iter().chain(&config.warnings) {
        eprintln!("warning: {w}");
    }
}

fn rejected(tree: &gitsync::Tree, e: &intent::Error) -> ExitCode {
    eprintln!("error: {} rejected: {e}", tree.source);
    ExitCode::FAILURE
}

//! The `tidegate` command line: parsing and printing; the work is in the other modules.
//! In the library (not the binary) so tests can check that documented invocations, such
//! as the container args in `examples/deploy/`, parse.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{gitsync, intent, render};

/// tidegate: ingress intents committed to Git become Kubernetes manifests and Envoy xDS.
#[derive(Parser, Debug)]
#[command(name = "tidegate", version, about)]
pub struct Cli {
    /// Log format: human-readable text, or JSON lines for log collectors.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

// One value per process, parsed once: the size of its largest variant (serve's flags)
// costs nothing, and boxing it would only make the match arms harder to read.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the intents of a commit; print every problem with file, line and field.
    Validate {
        /// The config repo: a directory in a Git repository (read at --rev), or a plain
        /// directory outside any repository (read as files).
        #[arg(long, default_value = "config-repo")]
        repo: PathBuf,
        /// The commit to read (any revision Git understands); default HEAD.
        #[arg(long)]
        rev: Option<String>,
        /// Reject the commit unless it carries a valid SSH signature (git's
        /// `gpg.format=ssh`) by a key of this `allowed_signers` file (`ssh-keygen(1)`).
        #[arg(long, value_name = "FILE")]
        verify_commits: Option<PathBuf>,
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
        /// Reject the commit unless it carries a valid SSH signature (git's
        /// `gpg.format=ssh`) by a key of this `allowed_signers` file (`ssh-keygen(1)`).
        #[arg(long, value_name = "FILE")]
        verify_commits: Option<PathBuf>,
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
        /// Serve xDS over TLS with this certificate (PEM); needs --tls-key and
        /// --tls-client-ca. Proxies must then present a client certificate naming the
        /// gateway they claim (SPIFFE URI or DNS SAN).
        #[arg(long, requires_all = ["tls_key", "tls_client_ca"])]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// CA (PEM) that signs the proxies' client certificates.
        #[arg(long, requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Allow plaintext xDS on a non-loopback address (anyone who can connect gets any
        /// gateway's config).
        #[arg(long)]
        allow_plaintext: bool,
        /// Endpoints file (YAML, `<service>.<namespace>:<port>: [ip:port, …]`), watched for
        /// changes. Without it, clusters resolve `<service>.<namespace>.svc.cluster.local`.
        #[arg(long)]
        endpoints: Option<PathBuf>,
        /// Certificates served to proxies over SDS, watched for changes (rotation needs no
        /// restart): `mesh/ca.crt` and `mesh/<namespace>/<proxy>/tls.{crt,key}` for HBONE
        /// (ambient mode), `secrets/<namespace>/<name>/tls.{crt,key}` for HTTPS listeners'
        /// certificateRefs.
        #[arg(long)]
        certs: Option<PathBuf>,
        /// Also serve the branches this pattern matches (`preview/*`, `pr-*`; `*` stays
        /// within one `/` part, `**` crosses them) to proxies that name them (`bootstrap
        /// --ref`), each validated on its own. Needs --branch.
        #[arg(long, requires = "branch")]
        preview_branches: Option<String>,
        /// At most this many preview branches are served (those served first keep their
        /// place); the others are listed in /status as not served.
        #[arg(long, default_value_t = 20)]
        max_previews: usize,
        /// Seconds a deleted preview branch's proxies keep its last config before they are
        /// sent an empty one.
        #[arg(long, default_value_t = 600)]
        preview_grace: u64,
        /// A client certificate SAN (DNS name or URI, as in the certificate) given every
        /// proxy's status over CSDS on the xDS port; repeatable. Other clients see only the
        /// proxies their certificate names; the admin endpoint's /csds shows all.
        #[arg(long)]
        csds_identity: Vec<String>,
        #[command(flatten)]
        git_auth: GitAuthArgs,
        /// Serve only heads that carry a valid SSH signature (git's `gpg.format=ssh`) by a
        /// key of this `allowed_signers` file (`ssh-keygen(1)`); others are rejected like
        /// invalid commits. Re-read when it changes.
        #[arg(long, value_name = "FILE")]
        verify_commits: Option<PathBuf>,
        /// Accept push events on this address (HTTP, POST to any path): a push to a served
        /// branch is fetched at once instead of at the next poll. GitHub/Gitea
        /// (`X-Hub-Signature-256`) and GitLab (`X-Gitlab-Token`) style; needs
        /// --webhook-secret-file.
        #[arg(long, requires = "webhook_secret_file")]
        webhook: Option<String>,
        /// The webhook's shared secret (one per line: during a rotation, list the new one
        /// beside the old); read on every event, so a rotation needs no restart.
        #[arg(long, requires = "webhook")]
        webhook_secret_file: Option<PathBuf>,
    },
    /// What a proxy does with one request: the listener, the route that matches (with its
    /// file and line), why it wins, the filters, and the backends or the status answered.
    /// `tls://`, `tcp://` and `udp://` URLs ask about a connection instead: the SNI chain or
    /// port, the TLSRoute/TCPRoute/UDPRoute, and where connections go.
    Explain {
        /// The config repo: a path or a URL (mirrored with its branches and tags).
        #[arg(long, default_value = "config-repo")]
        repo: String,
        /// The revision to explain; default HEAD.
        #[arg(long)]
        rev: Option<String>,
        /// The proxy: NAME.NAMESPACE of its Gateway (as `bootstrap --proxy`).
        #[arg(long)]
        proxy: String,
        /// The request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, `Name: value`; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The TLS server name (SNI) of an https or tls URL; default the URL's host.
        #[arg(long)]
        sni: Option<String>,
        /// The endpoints file `serve` is given: a Service it does not list does not exist
        /// (500), one listed without addresses has no endpoints (503). Without it, every
        /// Service is assumed to exist with endpoints (DNS in a cluster).
        #[arg(long)]
        endpoints: Option<PathBuf>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        git_auth: GitAuthArgs,
        /// Reject the commit unless it carries a valid SSH signature (git's
        /// `gpg.format=ssh`) by a key of this `allowed_signers` file (`ssh-keygen(1)`).
        #[arg(long, value_name = "FILE")]
        verify_commits: Option<PathBuf>,
        /// The request: scheme (http, https, tls, tcp, udp), host (for a waypoint: the
        /// Service's name or VIP), port (selects the listener; default 80/443, required for
        /// tcp and udp), path and query.
        url: String,
    },
    /// What a change does: validation, manifests, proxies, Gateway API status and traffic
    /// between two revisions. Exit status 0: no change, 2: changes, 1: the head is invalid
    /// or an error.
    Diff {
        /// The config repo: a path or a URL (mirrored with its branches and tags).
        #[arg(long, default_value = "config-repo")]
        repo: String,
        /// The revision the change starts from (e.g. the target branch).
        #[arg(long)]
        base: String,
        /// The revision with the change (e.g. the pull request's head).
        #[arg(long)]
        head: String,
        /// Output: text for terminals, markdown for a pull-request comment, json for tools.
        #[arg(long, default_value = "text", value_parser = ["text", "markdown", "json"])]
        format: String,
        /// Only these proxies (NAME.NAMESPACE); repeatable. Default: every proxy.
        #[arg(long)]
        proxy: Vec<String>,
        /// The endpoints file `serve` is given (traffic answers 500 for Services it does
        /// not list, 503 for those without addresses); default: every Service has endpoints.
        #[arg(long)]
        endpoints: Option<PathBuf>,
        #[command(flatten)]
        git_auth: GitAuthArgs,
        /// Reject the head unless it carries a valid SSH signature (git's
        /// `gpg.format=ssh`) by a key of this `allowed_signers` file (`ssh-keygen(1)`); the
        /// base is not checked (it is what is served already).
        #[arg(long, value_name = "FILE")]
        verify_commits: Option<PathBuf>,
    },
    /// Show every connected proxy and where it stands per resource type (SYNCED, STALE,
    /// NACKED, NOT SENT), like `istioctl proxy-status`.
    Status {
        /// The admin address of a running `tidegate serve`.
        #[arg(long, default_value = "127.0.0.1:18001")]
        admin: String,
        /// Print the raw JSON of /status instead of a table.
        #[arg(long)]
        json: bool,
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
        /// Be served this preview branch's config (`serve --preview-branches`) instead of
        /// the followed branch's; sent as node metadata `tidegate.io/ref`.
        #[arg(long = "ref")]
        r#ref: Option<String>,
        /// xDS over TLS: the proxy's client certificate (PEM file path, read by Envoy);
        /// needs --tls-key and --tls-ca.
        #[arg(long, requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<String>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<String>,
        /// CA (PEM file path) of tidegate's server certificate.
        #[arg(long, requires = "tls_cert")]
        tls_ca: Option<String>,
        /// Name tidegate's certificate must carry (default: the --xds host).
        #[arg(long, requires = "tls_cert")]
        tls_server_name: Option<String>,
    },
}

/// Credentials for a URL `--repo` (ignored for a path). Secrets are read from files and
/// passed to `git` in its environment, never on a command line; they never appear in
/// logs, `/status`, metrics or errors.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GitAuthArgs {
    /// HTTPS basic auth user for a URL --repo; the password is --git-token-file's content.
    #[arg(long, requires = "git_token_file")]
    pub git_username: Option<String>,
    /// File holding the token (password) for --git-username; read again for every fetch,
    /// so a rotated token needs no restart.
    #[arg(long, requires = "git_username")]
    pub git_token_file: Option<PathBuf>,
    /// CA certificates (PEM) the HTTPS remote's certificate must chain to, instead of the
    /// system's.
    #[arg(long)]
    pub git_ca_file: Option<PathBuf>,
    /// SSH private key for an `ssh://` or `user@host:path` --repo (the only identity
    /// offered).
    #[arg(long)]
    pub ssh_key_file: Option<PathBuf>,
    /// The host keys trusted for an SSH --repo (known_hosts format): any other host key,
    /// or a host not listed, is refused (never accepted on first use); the file is never
    /// written.
    #[arg(long)]
    pub ssh_known_hosts: Option<PathBuf>,
}

impl From<GitAuthArgs> for gitsync::auth::GitAuth {
    fn from(a: GitAuthArgs) -> Self {
        Self {
            username: a.git_username,
            token_file: a.git_token_file,
            ca_file: a.git_ca_file,
            ssh_key_file: a.ssh_key_file,
            ssh_known_hosts: a.ssh_known_hosts,
        }
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Gateway API status a controller would report, one line per condition that is not
/// fine: what `kubectl describe` would show, before anything is applied. Not errors: the
/// API server accepts such objects, and the proxies serve the rest.
fn print_conditions(model: &crate::model::Model) {
    let status = crate::xds::translate::conditions::status(model, None, None);
    let api = serde_json::to_value(&status).unwrap_or_default();
    for line in flagged_conditions(&api) {
        println!("status: {line}");
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate {
            repo,
            rev,
            verify_commits,
        } => {
            let tree = read(&repo, rev.as_deref())?;
            if let Some(code) = untrusted(&repo, &tree, verify_commits.as_deref())? {
                return Ok(code);
            }
            match intent::load_and_expand(&tree) {
                Ok((config, model)) => {
                    warn(&tree, &config);
                    print_conditions(&model);
                    println!(
                        "ok: {}: {} intent(s), {} plain object(s), {} object(s)",
                        tree.source,
                        config.intents.len(),
                        config.resources.len(),
                        model.objects.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(rejected(&tree, &e)),
            }
        }
        Command::Render {
            repo,
            rev,
            out,
            verify_commits,
        } => {
            let tree = read(&repo, rev.as_deref())?;
            if let Some(code) = untrusted(&repo, &tree, verify_commits.as_deref())? {
                return Ok(code);
            }
            let (config, model) = match intent::load_and_expand(&tree) {
                Ok(x) => x,
                Err(e) => return Ok(rejected(&tree, &e)),
            };
            warn(&tree, &config);
            let rendered = render::render(&model, &config.summary(&tree.source))?;
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
            certs,
            tls_cert,
            tls_key,
            tls_client_ca,
            allow_plaintext,
            preview_branches,
            max_previews,
            preview_grace,
            csds_identity,
            git_auth,
            verify_commits,
            webhook,
            webhook_secret_file,
        } => {
            let tls = match (tls_cert, tls_key, tls_client_ca) {
                (Some(cert), Some(key), Some(client_ca)) => Some(crate::xds::server::TlsFiles {
                    cert,
                    key,
                    client_ca,
                }),
                _ => None,
            };
            let loopback = xds
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback())
                || xds.starts_with("localhost:");
            if tls.is_none() && !loopback && !allow_plaintext {
                anyhow::bail!(
                    "refusing plaintext xDS on {xds}: anyone who can connect would get any gateway's config; use --tls-cert/--tls-key/--tls-client-ca, or --allow-plaintext"
                );
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let xds_listener = crate::app::listen(&xds)
                    .await
                    .with_context(|| format!("binding xDS address {xds}"))?;
                let admin_listener = tokio::net::TcpListener::bind(&admin)
                    .await
                    .with_context(|| format!("binding admin address {admin}"))?;
                let webhook_listener = match &webhook {
                    Some(addr) => Some(
                        tokio::net::TcpListener::bind(addr)
                            .await
                            .with_context(|| format!("binding webhook address {addr}"))?,
                    ),
                    None => None,
                };
                let opts = crate::app::ServeOptions {
                    repo,
                    branch,
                    out,
                    push_branch,
                    endpoints,
                    certs,
                    poll_interval: std::time::Duration::from_secs(poll_interval.max(1)),
                    mirror_dir,
                    tls,
                    preview_branches,
                    max_previews,
                    preview_grace: std::time::Duration::from_secs(preview_grace),
                    csds_identities: csds_identity,
                    git_auth: git_auth.into(),
                    verify_commits,
                    webhook_secret_file,
                };
                let running = crate::app::start_with_webhook(
                    opts,
                    xds_listener,
                    admin_listener,
                    webhook_listener,
                )
                .await?;
                if let Some(addr) = running.webhook {
                    println!("webhook: http://{addr}/");
                }
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
        Command::Explain {
            repo,
            rev,
            proxy,
            method,
            headers,
            sni,
            endpoints,
            json,
            git_auth,
            verify_commits,
            url,
        } => crate::review::explain::run(&crate::review::explain::Options {
            repo,
            rev,
            proxy,
            method,
            headers,
            sni,
            endpoints,
            json,
            url,
            git_auth: git_auth.into(),
            verify_commits,
        }),
        Command::Diff {
            repo,
            base,
            head,
            format,
            proxy,
            endpoints,
            git_auth,
            verify_commits,
        } => crate::review::diff::run(&crate::review::diff::Options {
            repo,
            base,
            head,
            format,
            proxies: proxy,
            endpoints,
            git_auth: git_auth.into(),
            verify_commits,
        }),
        Command::Status { admin, json } => {
            let body = http_get(&admin, "/status").with_context(|| {
                format!("asking {admin} for /status (is tidegate serve running there?)")
            })?;
            if json {
                println!("{body}");
            } else {
                let page: serde_json::Value =
                    serde_json::from_str(&body).context("/status is not JSON")?;
                print!("{}", status_table(&page));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bootstrap {
            proxy,
            xds,
            delta,
            bind,
            envoy_admin,
            r#ref,
            tls_cert,
            tls_key,
            tls_ca,
            tls_server_name,
        } => {
            let tls = match (tls_cert, tls_key, tls_ca) {
                (Some(cert), Some(key), Some(ca)) => Some(crate::xds::bootstrap::ClientTls {
                    cert,
                    key,
                    ca,
                    server_name: tls_server_name,
                }),
                _ => None,
            };
            let opts = crate::xds::bootstrap::Options {
                proxy,
                xds,
                delta,
                bind,
                admin: envoy_admin,
                r#ref,
                tls,
            };
            let value = crate::xds::bootstrap::bootstrap(&opts)?;
            print!("{}", serde_saphyr::to_string(&value)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(repo: &std::path::Path, rev: Option<&str>) -> anyhow::Result<gitsync::Tree> {
    let tree = gitsync::read(repo, rev, &intent::LAYOUT)?;
    if let gitsync::Source::Directory(_) = tree.source {
        eprintln!("note: {}", tree.source);
    }
    Ok(tree)
}

/// `--verify-commits` of `validate` and `render`: exit 1 (with the reason) when the commit
/// read is not signed by an allowed key; `None` when it is, or when not asked.
fn untrusted(
    repo: &std::path::Path,
    tree: &gitsync::Tree,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<ExitCode>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let signers = gitsync::verify::AllowedSigners::load(file)?;
    let gitsync::Source::Commit { sha, .. } = &tree.source else {
        anyhow::bail!(
            "--verify-commits needs a Git repository: {} is a plain directory, with no commit to verify",
            repo.display()
        );
    };
    let git =
        git2::Repository::discover(repo).with_context(|| format!("opening {}", repo.display()))?;
    match gitsync::verify::verify_commit(&git, git2::Oid::from_str(sha)?, &signers) {
        Ok(_) => Ok(None),
        Err(gitsync::verify::Rejection::Unreadable(e)) => {
            anyhow::bail!("commit {sha}: {e}")
        }
        Err(reason) => {
            eprintln!("error: {} rejected: commit {sha}: {reason}", tree.source);
            Ok(Some(ExitCode::FAILURE))
        }
    }
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

/// A plain HTTP/1.1 GET (the admin endpoint is on loopback; no TLS, no redirects).
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    sock.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "{}",
        head.lines().next().unwrap_or(head)
    );
    Ok(body.to_owned())
}

/// `tidegate status` output: the served commit, rejections, then one row per proxy.
/// The Gateway API conditions a controller would flag (`/status` → `gatewayApi`), one
/// line each: listeners not accepted, programmed or resolved, or conflicted; route parents
/// not accepted or with unresolved references. Empty when all is fine.
fn flagged_conditions(api: &serde_json::Value) -> Vec<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    // A condition is fine when it is True, except `Conflicted`, which is fine False.
    let fine = |c: &serde_json::Value| (c["type"] == "Conflicted") == (c["status"] == "False");
    let objects = [("Gateway", "gateways"), ("ListenerSet", "listenerSets")];
    for (kind, key) in objects {
        for g in api[key].as_array().into_iter().flatten() {
            let name = format!(
                "{kind} {}/{}",
                g["namespace"].as_str().unwrap_or(""),
                g["name"].as_str().unwrap_or("")
            );
            for c in g["conditions"].as_array().into_iter().flatten() {
                if !fine(c) {
                    let _ = writeln!(
                        out,
                        "{name}: {}={} ({}): {}",
                        c["type"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    );
                }
            }
            for l in g["listeners"].as_array().into_iter().flatten() {
                for c in l["conditions"].as_array().into_iter().flatten() {
                    if !fine(c) {
                        let _ = writeln!(
                            out,
                            "{name} listener {}: {}={} ({})",
                            l["name"].as_str().unwrap_or(""),
                            c["type"].as_str().unwrap_or(""),
                            c["status"].as_str().unwrap_or(""),
                            c["reason"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
    }
    for r in api["routes"].as_array().into_iter().flatten() {
        for p in r["parents"].as_array().into_iter().flatten() {
            for c in p["conditions"].as_array().into_iter().flatten() {
                if c["status"] != "True" {
                    let _ = writeln!(
                        out,
                        "{} {}/{} parent {}: {}={} ({}): {}",
                        r["kind"].as_str().unwrap_or(""),
                        r["namespace"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or(""),
                        p["parentRef"]["name"].as_str().unwrap_or(""),
                        c["type"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    out.lines().map(str::to_owned).collect()
}

pub fn status_table(page: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "served: {}",
        page["served"]["source"].as_str().unwrap_or("-")
    );
    if let Some(err) = page["source_error"].as_str() {
        let _ = writeln!(out, "source error: {err}");
    }
    if let Some(r) = page["rejected"].as_array().and_then(|r| r.first()) {
        let _ = writeln!(
            out,
            "last rejected: {} ({} problem(s)), first: {}",
            r["revision"].as_str().unwrap_or("-"),
            r["errors"].as_array().map_or(0, Vec::len),
            r["errors"][0].as_str().unwrap_or("-")
        );
    }
    // Preview branches: what each serves, or why it does not.
    for r in page["refs"].as_array().into_iter().flatten() {
        if r["preview"].as_bool() != Some(true) {
            continue;
        }
        let short = |v: &serde_json::Value| {
            v.as_str()
                .map_or("-".to_owned(), |s| s.chars().take(12).collect())
        };
        let _ = write!(
            out,
            "preview {}: {} {} ({} proxies)",
            r["ref"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            short(&r["served"]),
            r["proxies"].as_u64().unwrap_or(0)
        );
        if let Some(reason) = r["reason"].as_str() {
            let _ = write!(out, ": {reason}");
        }
        out.push('\n');
        if let Some(rej) = r["rejected"].as_array().and_then(|r| r.first()) {
            let _ = writeln!(
                out,
                "  last rejected: {} ({} problem(s)), first: {}",
                short(&rej["revision"]),
                rej["errors"].as_array().map_or(0, Vec::len),
                rej["errors"][0].as_str().unwrap_or("-")
            );
        }
    }
    // A proxy without a ref is served the followed branch.
    let main_ref = page["served"]["ref"].as_str().unwrap_or("HEAD");
    let types = ["CDS", "EDS", "LDS", "RDS", "SDS"];
    let _ = writeln!(
        out,
        "{:<36} {:<20} {:<44} {:<6} {:<9} {:<9} {:<9} {:<9} {:<9}",
        "PROXY", "REF", "NODE", "PROTO", types[0], types[1], types[2], types[3], types[4]
    );
    let mut details = String::new();
    for p in page["proxies"].as_array().into_iter().flatten() {
        let proxy = p["proxy"].as_str().unwrap_or("");
        let proxy = if p["known"].as_bool() == Some(false) {
            format!("{proxy} (unknown)")
        } else {
            proxy.to_owned()
        };
        let state = |t: &str| {
            p["types"][t]["state"]
                .as_str()
                .unwrap_or("NOT_SENT")
                .replace('_', " ")
        };
        // Only proxies with TLS listeners or mesh tunnels ask for secrets.
        let sds = if p["types"]["SDS"].is_null() {
            "-".to_owned()
        } else {
            state("SDS")
        };
        let _ = writeln!(
            out,
            "{:<36} {:<20} {:<44} {:<6} {:<9} {:<9} {:<9} {:<9} {:<9}",
            proxy,
            p["ref"].as_str().unwrap_or(main_ref),
            p["node_id"].as_str().unwrap_or(""),
            p["protocol"].as_str().unwrap_or(""),
            state("CDS"),
            state("EDS"),
            state("LDS"),
            state("RDS"),
            sds
        );
        for t in types {
            let ts = &p["types"][t];
            if let Some(n) = ts["last_nack"].as_object() {
                let _ = writeln!(
                    details,
                    "  {} {t}: rejected version {}: {}",
                    p["node_id"].as_str().unwrap_or(""),
                    n["version"].as_str().unwrap_or(""),
                    n["message"].as_str().unwrap_or("")
                );
            }
        }
        for w in p["warnings"].as_array().into_iter().flatten() {
            let _ = writeln!(
                details,
                "  {}: {}",
                p["node_id"].as_str().unwrap_or(""),
                w.as_str().unwrap_or("")
            );
        }
    }
    out.push_str(&details);
    for line in flagged_conditions(&page["gatewayApi"]) {
        let _ = writeln!(out, "  {line}");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_status_table_shows_each_proxys_branch_and_the_previews() {
        let page = serde_json::json!({
            "served": {"source": "repo at commit abc", "ref": "main"},
            "refs": [
                {"ref": "main", "preview": false, "state": "serving", "served": "abc", "proxies": 1, "rejected": []},
                {"ref": "preview/a", "preview": true, "state": "serving", "served": "0123456789abcdef", "proxies": 1,
                 "rejected": [{"revision": "fedcba9876543210", "errors": ["intents/x.yaml:3: spec.hostnames: …"]}]},
                {"ref": "preview/b", "preview": true, "state": "not-served", "served": null, "proxies": 0,
                 "reason": "--max-previews 1 reached (serving preview/a)", "rejected": []}
            ],
            "proxies": [
                {"proxy": "gw.ns", "node_id": "gw.ns~any", "protocol": "sotw", "known": true, "types": {}},
                {"proxy": "gw.ns", "ref": "preview/a", "node_id": "gw.ns~any~preview/a", "protocol": "delta", "known": true, "types": {}}
            ],
            "gatewayApi": {}
        });
        let table = super::status_table(&page);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[1..4],
            [
                "preview preview/a: serving 0123456789ab (1 proxies)",
                "  last rejected: fedcba987654 (1 problem(s)), first: intents/x.yaml:3: spec.hostnames: …",
                "preview preview/b: not-served - (0 proxies): --max-previews 1 reached (serving preview/a)",
            ],
            "{table}"
        );
        assert!(
            lines[4].starts_with("PROXY") && lines[4].contains(" REF "),
            "{table}"
        );
        let refs: Vec<&str> = lines[5..7]
            .iter()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(refs, ["main", "preview/a"], "{table}");
    }

    #[test]
    fn the_status_table_lists_routes_a_controller_would_flag() {
        let page = serde_json::json!({
            "served": {"source": "repo at commit abc"},
            "proxies": [],
            "gatewayApi": {
                "gateways": [{"namespace": "infra", "name": "gw", "listeners": [
                    {"name": "http", "conditions": [
                        {"type": "Accepted", "status": "True", "reason": "Accepted"},
                        {"type": "Conflicted", "status": "False", "reason": "NoConflicts"}]},
                    {"name": "tls", "conditions": [
                        {"type": "Accepted", "status": "False", "reason": "UnsupportedProtocol"}]}]}],
                "routes": [
                    {"kind": "HTTPRoute", "namespace": "web", "name": "ok", "parents": [
                        {"parentRef": {"name": "gw"}, "conditions": [
                            {"type": "Accepted", "status": "True", "reason": "Accepted"}]}]},
                    {"kind": "HTTPRoute", "namespace": "web", "name": "bad", "parents": [
                        {"parentRef": {"name": "gw"}, "conditions": [
                            {"type": "ResolvedRefs", "status": "False", "reason": "RefNotPermitted", "message": "no grant"}]}]}]
            }
        });
        let table = super::status_table(&page);
        let flagged: Vec<&str> = table.lines().filter(|l| l.starts_with("  ")).collect();
        assert_eq!(
            flagged,
            [
                "  Gateway infra/gw listener tls: Accepted=False (UnsupportedProtocol)",
                "  HTTPRoute web/bad parent gw: ResolvedRefs=False (RefNotPermitted): no grant"
            ],
            "{table}"
        );
    }
}

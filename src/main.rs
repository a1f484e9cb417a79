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
}

fn main() -> ExitCode {
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

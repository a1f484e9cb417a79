//! Renders a config repo once and prints every manifest to stdout as one YAML stream,
//! without writing files: handy for piping into `kubectl apply --dry-run=server -f -`.
//!
//! ```sh
//! cargo run --example render_once -- config-repo [REV]
//! ```

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let repo = args.next().unwrap_or_else(|| "config-repo".into());
    let rev = args.next();
    let tree = tidegate::gitsync::read(repo.as_ref(), rev.as_deref(), &tidegate::intent::LAYOUT)?;
    let (config, model) =
        tidegate::intent::load_and_expand(&tree).context("the config is invalid")?;
    let rendered = tidegate::render::render(&model, &config.summary(&tree.source))?;
    for (path, text) in rendered
        .files
        .iter()
        .filter(|(p, _)| p.ends_with(".yaml") && p.contains('/'))
    {
        if !path.ends_with("/kustomization.yaml") {
            println!("---\n# {path}\n{text}");
        }
    }
    Ok(())
}

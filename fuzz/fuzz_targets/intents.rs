//! One intent file → decode → expand → render → xDS plans → encoded snapshot.
//!
//! The input is the content of `intents/fuzz.yaml`. If it holds a line that is exactly
//! `---tidegate.yaml---`, what follows that line is `tidegate.yaml` instead.
//! Rejected input (an `Err` from `load_and_expand`) is expected; a panic, abort, hang or
//! out-of-memory anywhere in the pipeline is a finding.

#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use tidegate::gitsync::{Source, Tree};

const SEPARATOR: &[u8] = b"---tidegate.yaml---";

/// Splits `data` at the first line equal to [`SEPARATOR`] (a trailing `\r` is allowed).
fn split(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut start = 0;
    while start <= data.len() {
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| start + i);
        let line = &data[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == SEPARATOR {
            let rest = (end + 1).min(data.len());
            return (&data[..start], Some(&data[rest..]));
        }
        start = end + 1;
    }
    (data, None)
}

fuzz_target!(|data: &[u8]| {
    let (intent, settings) = split(data);
    let mut ids = BTreeMap::new();
    let mut files = BTreeMap::new();
    ids.insert("intents/fuzz.yaml".to_owned(), "fuzz".to_owned());
    files.insert("intents/fuzz.yaml".to_owned(), intent.to_vec());
    if let Some(settings) = settings {
        ids.insert(
            tidegate::intent::SETTINGS_FILE.to_owned(),
            "settings".to_owned(),
        );
        files.insert(
            tidegate::intent::SETTINGS_FILE.to_owned(),
            settings.to_vec(),
        );
    }
    let tree = Tree {
        source: Source::Directory(PathBuf::from("fuzz")),
        ids,
        files,
        skipped: vec![],
        too_large: BTreeMap::new(),
    };

    // TIDEGATE_FUZZ_DEBUG=1 says how far each input got (for a seed or a finding run alone).
    let debug = std::env::var_os("TIDEGATE_FUZZ_DEBUG").is_some();
    let (config, model) = match tidegate::intent::load_and_expand(&tree) {
        Ok(ok) => ok,
        Err(e) => {
            if debug {
                let first = e.to_string();
                let first: String = first.lines().take(2).collect::<Vec<_>>().join(" / ");
                eprintln!("rejected: {}", first.chars().take(300).collect::<String>());
            }
            return;
        }
    };
    let rendered = tidegate::render::render(&model, &config, &tree.source)
        .expect("rendering a valid model must not fail");
    let plans = tidegate::xds::translate::plans(&model);
    let proxies = plans.len();
    let _snapshot = tidegate::xds::snapshot::Snapshot::build(
        tidegate::xds::snapshot::Origin::default(),
        plans,
        Default::default(),
    );
    if debug {
        eprintln!(
            "accepted: {} intents, {} objects, {} rendered files, {} proxies",
            config.intents.len(),
            model.objects.len(),
            rendered.files.len(),
            proxies
        );
    }
});

//! Replays the fuzz seeds (fuzz/corpus/intents) and every minimized finding
//! (fuzz/regressions) through the same pipeline as the fuzz target, on stable Rust without
//! libFuzzer: what the fuzzer found once stays fixed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tidegate::gitsync::{Source, Tree};

/// The pipeline of fuzz/fuzz_targets/intents.rs: the input is one intent file, optionally
/// followed by `---tidegate.yaml---` and the settings file.
fn pipeline(data: &[u8]) {
    const SEPARATOR: &[u8] = b"---tidegate.yaml---";
    let (mut intent, mut settings, mut start) = (data, None, 0);
    while start <= data.len() {
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| start + i);
        let line = &data[start..end];
        if line.strip_suffix(b"\r").unwrap_or(line) == SEPARATOR {
            intent = &data[..start];
            settings = Some(&data[(end + 1).min(data.len())..]);
            break;
        }
        start = end + 1;
    }
    let mut ids = BTreeMap::from([("intents/fuzz.yaml".to_owned(), "fuzz".to_owned())]);
    let mut files = BTreeMap::from([("intents/fuzz.yaml".to_owned(), intent.to_vec())]);
    if let Some(s) = settings {
        ids.insert(
            tidegate::intent::SETTINGS_FILE.to_owned(),
            "settings".to_owned(),
        );
        files.insert(tidegate::intent::SETTINGS_FILE.to_owned(), s.to_vec());
    }
    let tree = Tree {
        source: Source::Directory(PathBuf::from("fuzz")),
        ids,
        files,
        skipped: vec![],
        too_large: BTreeMap::new(),
    };
    let Ok((config, model)) = tidegate::intent::load_and_expand(&tree) else {
        return;
    };
    tidegate::render::render(&model, &config.summary(&tree.source))
        .expect("rendering a valid model must not fail");
    let plans = tidegate::xds::translate::plans(&model);
    tidegate::xds::snapshot::Snapshot::build(
        tidegate::xds::snapshot::Origin::default(),
        plans,
        Default::default(),
    );
}

#[test]
fn fuzz_seeds_and_regressions_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus/intents", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                let data = std::fs::read(&path).unwrap();
                assert!(
                    std::panic::catch_unwind(|| pipeline(&data)).is_ok(),
                    "{} panicked",
                    path.display()
                );
                n += 1;
            }
        }
    }
    assert!(
        n >= 20,
        "fuzz inputs missing under {}: found {n}",
        root.display()
    );
}

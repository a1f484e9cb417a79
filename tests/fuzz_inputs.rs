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

/// Deterministic bytes (xorshift64*), standing in for the fuzzer's on stable Rust.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// The structure-aware target's pipeline (fuzz/fuzz_targets/repos.rs) over its minimized
/// findings and a fixed sweep of generated repositories: none panics, and most get through
/// validation to translation and encoding, which is what the generator is for.
#[test]
fn generated_repositories_reach_translation_and_do_not_panic() {
    use tidegate::test_helpers::repo_gen::{Reached, RepoSpec, run_pipeline};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions-repos");
    let mut replayed = 0;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "md") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            if let Ok(spec) = RepoSpec::from_bytes(&data) {
                let ran = std::panic::catch_unwind(|| run_pipeline(&spec));
                assert!(ran.is_ok(), "{} panicked: {spec:#?}", path.display());
            }
            replayed += 1;
        }
    }
    let (mut encoded, mut total) = (0, 0);
    for seed in 0..600u64 {
        let data = bytes(seed, 64 + (seed as usize * 7) % 448);
        let Ok(spec) = RepoSpec::from_bytes(&data) else {
            continue;
        };
        total += 1;
        match std::panic::catch_unwind(|| run_pipeline(&spec)) {
            Ok(Reached::Encoded) => encoded += 1,
            Ok(Reached::Rejected) => {}
            Err(_) => panic!("seed {seed} panicked: {spec:#?}\n{:#?}", spec.files()),
        }
    }
    eprintln!(
        "{replayed} regression input(s) replayed; {encoded} of {total} generated repositories reached translation"
    );
    assert!(total >= 500, "{total}");
    assert!(
        encoded * 2 >= total,
        "only {encoded} of {total} generated repositories got past validation"
    );
}

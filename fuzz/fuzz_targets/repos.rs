//! Structure-aware: the input bytes choose a whole config repository (intents, plain
//! Gateway API objects, settings, an endpoints file) from `tidegate::test_helpers::repo_gen`,
//! valid by construction most of the time, which then goes through the whole pipeline:
//! validate, expand, render, translate, encode, Gateway API status.
//!
//! The byte-level `intents` target reaches translation with 1.3 % of its inputs; this one
//! with most (see RELIABILITY.md). A panic, abort, hang or out-of-memory is a finding;
//! minimized findings go to `fuzz/regressions-repos/`, replayed on stable by
//! `tests/fuzz_inputs.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate::test_helpers::repo_gen::{Reached, RepoSpec, run_pipeline};

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = RepoSpec::from_bytes(data) else {
        return;
    };
    let reached = run_pipeline(&spec);
    if std::env::var_os("TIDEGATE_FUZZ_DEBUG").is_some() {
        eprintln!("{reached:?}: {:#?}", spec.files());
    }
    let _ = matches!(reached, Reached::Encoded);
});

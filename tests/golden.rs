//! Golden tests: every case under tests/golden/<case>/config is committed to a real Git
//! repository, rendered, and compared byte for byte with tests/golden/<case>/expected.
//! The goldens are reviewed output; `UPDATE_GOLDEN=1 cargo test --test golden` rewrites
//! them. Every rendered manifest is also validated against the CRD schemas.

mod common;

use std::path::PathBuf;

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(common::manifest_dir().join("tests/golden"))
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("config").is_dir())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_case_matches_its_golden_and_the_crd_schemas() {
    let cases = cases();
    assert!(cases.len() >= 6, "golden cases are missing: {cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (_repo, rendered) = common::render_dir(&case.join("config"));
        common::assert_golden(&case.join("expected"), &rendered);
        common::assert_schema_valid(&name, &rendered);
    }
}

#[test]
fn same_commit_renders_the_same_bytes() {
    for case in cases() {
        let (repo, first) = common::render_dir(&case.join("config"));
        let again = common::render_repo(repo.path(), None).expect("valid");
        assert_eq!(
            first,
            again,
            "{}: two renders of one commit differ",
            case.display()
        );
        // A second repository with the same files and clock gives the same commit id, so
        // even the READMEs (which name the commit) are identical.
        let (_, other) = common::render_dir(&case.join("config"));
        assert_eq!(
            first,
            other,
            "{}: same content, different bytes",
            case.display()
        );
    }
}

//! What several test files of the CLI share.

use std::path::{Path, PathBuf};

/// The repository root, where `tests/fixtures` and `runbooks/` live.
///
/// Read when the test runs, not when it is compiled: a target directory
/// shared by two checkouts (as `.ci/run`'s is) can hold a test binary
/// compiled in the other one, which would then read the other's files.
pub fn repo_root() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR when it runs a test"),
    )
    .ancestors()
    .nth(2)
    .expect("crates/runbook-cli sits two levels below the repository root")
    .to_path_buf()
}

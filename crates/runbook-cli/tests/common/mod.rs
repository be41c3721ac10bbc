//! What several test files of the CLI share.

use std::path::{Path, PathBuf};

/// The repository root, where `tests/fixtures` and `runbooks/` live.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/runbook-cli sits two levels below the repository root")
        .to_path_buf()
}

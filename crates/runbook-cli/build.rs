//! Links the `runbook` binary as a position-dependent executable on Linux.
//!
//! A position-independent executable carries one relocation for every
//! pointer in its read-only data (31,000 of them here), and the dynamic
//! loader writes each one at every start, copying about 130 pages first.
//! Linked at a fixed address the pointers are final in the file, and a
//! one-step run starts 0.4 ms sooner (docs/performance.md, ninth round).
//! The cost is that the executable's own code and data are not placed at a
//! random address; libraries, the heap and the stacks still are. Set
//! `RUNBOOK_BUILD_PIE=1` to build a position-independent executable instead.

fn main() {
    println!("cargo:rerun-if-env-changed=RUNBOOK_BUILD_PIE");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let pie_requested = std::env::var_os("RUNBOOK_BUILD_PIE").is_some_and(|v| v != "0");
    // Only where the C toolchain that links Rust binaries takes `-no-pie`
    // (gcc and clang on glibc Linux); elsewhere the default stands.
    if target_os == "linux" && target_env == "gnu" && !pie_requested {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

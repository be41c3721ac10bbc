//! How the `runbook` executable itself is built.

/// The ELF header's `e_type` of a position-dependent executable; a
/// position-independent one is `ET_DYN` (3), like a shared library.
const ET_EXEC: u16 = 2;

/// build.rs links the binary at a fixed address on glibc Linux, so the
/// dynamic loader has no relocations to apply at every start. Dropping
/// that, or a toolchain ignoring `-no-pie`, brings back 0.4 ms per start.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_binary_is_linked_at_a_fixed_address() {
    if option_env!("RUNBOOK_BUILD_PIE").is_some_and(|v| v != "0") {
        return;
    }
    use std::io::Read;
    let mut header = [0u8; 18];
    std::fs::File::open(env!("CARGO_BIN_EXE_runbook"))
        .and_then(|mut binary| binary.read_exact(&mut header))
        .expect("read the binary's ELF header");
    assert_eq!(&header[..4], b"\x7fELF", "not an ELF file");
    let e_type = u16::from_le_bytes([header[16], header[17]]);
    assert_eq!(
        e_type, ET_EXEC,
        "the runbook binary is position-independent (e_type {e_type})"
    );
}

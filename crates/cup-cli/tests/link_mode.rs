//! `cup` is linked at a fixed address on Linux (glibc): build.rs explains why (its start-up
//! time). This test fails if the link argument stops reaching the binary, e.g. when the build
//! script is dropped or a toolchain default overrides it.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

/// The ELF file type of an executable: 2 (`ET_EXEC`) when linked at a fixed address, 3
/// (`ET_DYN`) for a position-independent one.
fn elf_type(path: &str) -> u16 {
    let bytes = std::fs::read(path).expect("read the cup binary");
    assert_eq!(&bytes[..4], b"\x7fELF", "{path} is not an ELF file");
    // e_type follows the 16-byte identification; the byte order is in EI_DATA (1 = little).
    let raw = [bytes[16], bytes[17]];
    if bytes[5] == 1 {
        u16::from_le_bytes(raw)
    } else {
        u16::from_be_bytes(raw)
    }
}

#[test]
fn cup_is_not_position_independent() {
    assert_eq!(
        elf_type(env!("CARGO_BIN_EXE_cup")),
        2,
        "cup should be ET_EXEC"
    );
}

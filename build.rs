//! Link-time layout of the release binary. `PODINIT_SYMBOL_ORDER=FILE` (scripts/build-static
//! sets it to `src/startup-order.txt`) names the functions a start runs; the linker (LLD,
//! Rust's default on x86_64 Linux) places them together, so a start touches a few pages of a
//! 10 MiB text instead of one page per function. Names missing from the binary (code that
//! changed since the list was made) are skipped; `scripts/startup-order` remakes the list.
//! Also: the target architecture, for `podinit --version`.

#[expect(clippy::disallowed_methods, reason = "a build script's input is its environment; there is no Args struct here")]
fn main() {
    // `podinit --version` names the architecture it was built for (an arm64 image on an amd64
    // node fails with "exec format error"; the version says which binary is which).
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    println!("cargo:rustc-env=PODINIT_ARCH={arch}");
    println!("cargo:rerun-if-env-changed=PODINIT_SYMBOL_ORDER");
    let Some(path) = std::env::var_os("PODINIT_SYMBOL_ORDER").filter(|p| !p.is_empty()) else { return };
    let path = std::path::PathBuf::from(path);
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", path.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

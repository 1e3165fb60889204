// SPDX-License-Identifier: GPL-2.0-only
//
// Exports the C headers (`include/morpheus/abi.h`, the single definition
// of the ABI) to the crates that build against them: with `links` in
// Cargo.toml, a dependent's build script finds this directory in
// DEP_MORPHEUS_COMMON_INCLUDE, in the repository and in a packaged crate
// alike.

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    println!("cargo::metadata=include={}", dir.display());
    println!("cargo::rerun-if-changed=build.rs");
}

// SPDX-License-Identifier: GPL-2.0-only
//! The Rust ABI (`src/abi.rs`) is generated from `include/morpheus/abi.h`.
//! This test regenerates it with bindgen and fails on any difference, so the
//! C header stays the one source of truth. To accept a header change, run
//! `./morpheus-dev gen-abi` (this test with `MORPHEUS_BLESS=1`).

use std::path::PathBuf;

fn generate() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = root.join("include/morpheus/abi.h");
    let bindings = bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .allowlist_item("morpheus_.*")
        .allowlist_item("MORPHEUS_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(true)
        .formatter(bindgen::Formatter::Prettyplease)
        .generate()
        .expect("bindgen failed on abi.h: is clang (libclang) installed? `./morpheus-dev setup`");
    let mut out = String::from(
        "// SPDX-License-Identifier: GPL-2.0-only\n\
         // @generated from include/morpheus/abi.h by tests/abi_sync.rs.\n\
         // Do not edit: change the header, then run `./morpheus-dev gen-abi`.\n\n",
    );
    out.push_str(&bindings.to_string());
    out
}

#[test]
fn generated_rust_matches_header() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/abi.rs");
    let fresh = generate();
    if std::env::var_os("MORPHEUS_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(fresh.lines().count()));
        panic!(
            "src/abi.rs is out of date with include/morpheus/abi.h (first difference at line {}).\n\
             Run `./morpheus-dev gen-abi` and commit the result.",
            first + 1
        );
    }
}

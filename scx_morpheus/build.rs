// SPDX-License-Identifier: GPL-2.0-only
//
// Builds the BPF object (clang) with the vmlinux.h and scx headers bundled
// by scx_cargo, so the build never depends on the build machine's kernel,
// and morpheus-common's headers (the ABI shared with the runtimes, found
// through its `links` metadata) on the include path.

use std::process::Command;

/// Compilers tried, in order, when BPF_CLANG is not set: the plain name
/// first, then the versioned names distributions install.
const CLANGS: &[&str] = &["clang", "clang-21", "clang-20", "clang-19", "clang-18"];

/// The oldest clang that builds the scheduler (scx_cargo requires it).
const MIN_CLANG: u32 = 18;

fn main() {
    let clang = choose_clang();
    // SAFETY: build scripts are single-threaded; scx_cargo reads it below.
    unsafe { std::env::set_var("BPF_CLANG", &clang) };
    let include = std::env::var("DEP_MORPHEUS_COMMON_INCLUDE")
        .expect("morpheus-common exports its include directory (links = \"morpheus_common\")");
    let mut builder = scx_cargo::BpfBuilder::new()
        .unwrap_or_else(|e| panic!("cannot set up the BPF build with {clang}: {e:#}"));
    builder
        .add_include_path(&include)
        .enable_intf("src/bpf/intf.h", "bpf_intf.rs")
        .enable_skel("src/bpf/main.bpf.c", "bpf")
        .build()
        .unwrap_or_else(|e| panic!("building the BPF scheduler with {clang} failed: {e:#}"));
    println!("cargo::rerun-if-changed={include}/morpheus/abi.h");
    println!("cargo::rerun-if-env-changed=BPF_CLANG");
}

/// BPF_CLANG if set, else the first of CLANGS that is at least MIN_CLANG;
/// if there is none, the build stops saying what to install.
fn choose_clang() -> String {
    if let Ok(clang) = std::env::var("BPF_CLANG") {
        return clang;
    }
    let mut seen = Vec::new();
    for name in CLANGS {
        match major_version(name) {
            Some(v) if v >= MIN_CLANG => return name.to_string(),
            Some(v) => seen.push(format!("{name} is version {v}")),
            None => {}
        }
    }
    let seen = if seen.is_empty() {
        "no clang was found".to_string()
    } else {
        seen.join(", ")
    };
    panic!(
        "scx_morpheus compiles its BPF scheduler with clang {MIN_CLANG} or newer, and {seen}. \
         Install one (Debian/Ubuntu: `apt install clang-19`, or `./morpheus-dev setup`) or \
         point BPF_CLANG at one."
    );
}

/// The major version `name --version` reports, if it runs.
fn major_version(name: &str) -> Option<u32> {
    let out = Command::new(name).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.split("clang version ").nth(1)?;
    rest.split(['.', ' ']).next()?.parse().ok()
}

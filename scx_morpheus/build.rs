// SPDX-License-Identifier: GPL-2.0-only
//
// Builds the BPF object (clang) with the vmlinux.h and scx headers bundled
// by scx_cargo, so the build never depends on the build machine's kernel,
// and morpheus-common's headers (the ABI shared with the runtimes, found
// through its `links` metadata) on the include path.

/// Compilers tried, in order, when BPF_CLANG is not set: the plain name
/// first, then the versioned names distributions install.
const CLANGS: &[&str] = &["clang", "clang-21", "clang-20", "clang-19", "clang-18"];

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

/// BPF_CLANG if set, else the first of CLANGS that scx_cargo accepts
/// (its ClangInfo runs BPF_CLANG and refuses a clang too old for BPF); if
/// there is none, the build stops saying what to install.
fn choose_clang() -> String {
    if let Ok(clang) = std::env::var("BPF_CLANG") {
        return clang;
    }
    let mut refused = Vec::new();
    for name in CLANGS {
        // SAFETY: build scripts are single-threaded.
        unsafe { std::env::set_var("BPF_CLANG", name) };
        match scx_cargo::ClangInfo::new() {
            Ok(_) => return name.to_string(),
            Err(e) => refused.push(format!("{name}: {e:#}")),
        }
    }
    panic!(
        "scx_morpheus compiles its BPF scheduler with clang 18 or newer, and none was usable \
         ({}). Install one (Debian/Ubuntu: `apt install clang-19`, or `./morpheus-dev setup`) \
         or point BPF_CLANG at one.",
        refused.join("; ")
    );
}

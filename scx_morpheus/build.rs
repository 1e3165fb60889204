// SPDX-License-Identifier: GPL-2.0-only
//
// Builds the BPF object (clang) with the vmlinux.h and scx headers bundled
// by scx_cargo, so the build never depends on the build machine's kernel,
// and morpheus-common's headers (the ABI shared with the runtimes) on the
// include path.

fn main() {
    scx_cargo::BpfBuilder::new()
        .unwrap()
        .add_include_path("../morpheus-common/include")
        .enable_intf("src/bpf/intf.h", "bpf_intf.rs")
        .enable_skel("src/bpf/main.bpf.c", "bpf")
        .build()
        .unwrap();
    println!("cargo:rerun-if-changed=../morpheus-common/include/morpheus/abi.h");
}

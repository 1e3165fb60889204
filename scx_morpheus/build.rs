// SPDX-License-Identifier: GPL-2.0-only
//
// Builds the BPF object (clang) with the vmlinux.h and scx headers bundled
// by scx_cargo, so the build never depends on the build machine's kernel.

#[path = "src/bpf_clang.rs"]
mod bpf_clang;

use std::process::Command;

fn main() {
    let clang = bpf_clang().unwrap_or_else(|e| fail(&e));
    // scx_cargo runs the compiler BPF_CLANG names.
    // SAFETY: the build script has a single thread; nothing else reads the
    // environment while it is written.
    unsafe { std::env::set_var("BPF_CLANG", clang) };
    let built = scx_cargo::BpfBuilder::new().and_then(|mut b| {
        b.enable_intf("src/bpf/intf.h", "bpf_intf.rs")
            .enable_skel("src/bpf/main.bpf.c", "bpf")
            .build()
    });
    if let Err(e) = built {
        fail(&format!("{e:#}"));
    }
    println!("cargo:rerun-if-changed=../morpheus-common/include/morpheus/abi.h");
}

/// BPF_CLANG when set, else the first of `bpf_clang::CANDIDATES` new enough.
fn bpf_clang() -> Result<String, String> {
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    let from_env = std::env::var("BPF_CLANG").ok().filter(|c| !c.is_empty());
    let candidates = match &from_env {
        Some(c) => vec![c.as_str()],
        None => bpf_clang::CANDIDATES.to_vec(),
    };
    let probes: Vec<_> = candidates.into_iter().map(|c| (c, probe(c))).collect();
    bpf_clang::choose(&probes, from_env.is_some()).map(str::to_string)
}

fn probe(clang: &str) -> bpf_clang::Probe {
    let out = Command::new(clang)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run it ({e})"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`--version` failed ({})", stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Ends the build with `msg`; cargo shows a failed build script's stderr.
fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

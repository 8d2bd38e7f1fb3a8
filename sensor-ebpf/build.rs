//! Rebuilds the eBPF object when the `bpf-linker` binary changes: the link step depends on it,
//! and cargo cannot express a dependency on a binary (see aya-template).
//!
//! It also enables misaligned loads in bpf-linker, which does the code generation. Headers in
//! a packet sit at whatever offset the link layer leaves (the IPv4 source address is only
//! 2-byte aligned behind Ethernet); without the feature LLVM assembles every multi-byte field
//! from single-byte loads. The verifier accepts misaligned packet, map-value and ring-buffer
//! access on architectures with efficient unaligned access (x86-64, arm64); stack access must
//! stay aligned, so the kernel code keeps byte arrays off the stack (`parse.rs`). `alu32` is
//! left off on purpose: with it the program returned wrong actions on its error paths (the XDP
//! fixture tests caught it; not investigated further).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "bpf") {
        println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    }
}

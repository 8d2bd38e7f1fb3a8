//! Rebuilds the eBPF object when the `bpf-linker` binary changes: the link step depends on it,
//! and cargo cannot express a dependency on a binary (see aya-template).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}

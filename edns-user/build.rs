//! Embeds the XDP object built by `cargo xtask build-ebpf`, when present.
//! Without it the binary still builds and serves with `--xdp off`; asking for
//! XDP then fails with an error that says how to build the object.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let obj = std::env::var("EDNS_EBPF_OBJECT").map(PathBuf::from).unwrap_or_else(|_| {
        manifest.join("../edns-ebpf/target/bpfel-unknown-none/release/edns-ebpf")
    });
    println!("cargo:rerun-if-env-changed=EDNS_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", obj.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("edns-ebpf.o");
    match std::fs::read(&obj) {
        Ok(bytes) => std::fs::write(&out, bytes).unwrap(),
        Err(_) => {
            println!("cargo:warning=no eBPF object at {}; run `cargo xtask build-ebpf` for XDP support", obj.display());
            std::fs::write(&out, b"").unwrap();
        }
    }
}

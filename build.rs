//! Compile-time facts only. `cfg(hytm_rtm)` marks builds that can emit the RTM
//! instructions (x86_64, and neither Miri nor loom, which cannot run them,
//! nor the HTM model, `--cfg hytm_model`, which simulates them).
//! Whether the CPU running the program supports RTM is decided at run time,
//! in `src/cpu.rs`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hytm_rtm)");
    println!("cargo::rustc-check-cfg=cfg(loom)");
    println!("cargo::rustc-check-cfg=cfg(hytm_model)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let miri = std::env::var_os("CARGO_CFG_MIRI").is_some();
    // Cargo exposes every cfg of the target, `--cfg loom` from RUSTFLAGS included.
    let loom = std::env::var_os("CARGO_CFG_LOOM").is_some();
    // The HTM model (`--cfg hytm_model`) replaces the instructions.
    let model = std::env::var_os("CARGO_CFG_HYTM_MODEL").is_some();
    if arch == "x86_64" && !miri && !loom && !model {
        println!("cargo::rustc-cfg=hytm_rtm");
    }
}

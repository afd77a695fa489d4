// Included by host/build.rs and tests/build.rs: one way to build wasm plugins from a build script.

/// Runs `cargo build --target wasm32-wasip2 --profile plugin` for `packages` with `features`;
/// returns the folder holding the `.wasm` components.
fn build_wasm(root: &std::path::Path, packages: &[String], features: &[&str]) -> std::path::PathBuf {
    ensure_wasm_target();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host target, not wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the wasm plugins");
    assert!(
        status.success(),
        "building the wasm plugins failed (see the errors above); is the wasm32-wasip2 target installed? (rust-toolchain.toml names it)"
    );
    target_dir.join("wasm32-wasip2").join("plugin")
}

/// rust-toolchain.toml names the target, but rustup adds it only when it installs the toolchain;
/// on a machine whose toolchain predates the clone, add it here so `cargo build` just works.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let installed = sysroot.as_ref().is_some_and(|root| {
        std::path::Path::new(&root)
            .join("lib/rustlib/wasm32-wasip2")
            .exists()
    });
    if !installed {
        println!("cargo:warning=adding the wasm32-wasip2 target with rustup (not found in {sysroot:?})");
        let _ = std::process::Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
    }
}

//! Builds the hostile test plugin for `wasm32-wasip2`, the same way host/build.rs builds the
//! built-ins, and tells the tests where it is through `PODS_HOSTILE_WASM`.

include!("../host/build_wasm.rs");

fn main() {
    let manifest_dir =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf();
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("plugins").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("plugins").join("sdk").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    let wasm_dir = build_wasm(&root, &["pods-plugin-hostile".to_string()]);
    println!(
        "cargo:rustc-env=PODS_HOSTILE_WASM={}",
        wasm_dir.join("hostile.wasm").display()
    );
}

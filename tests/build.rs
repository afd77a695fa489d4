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
    let hostile = ["pods-plugin-hostile".to_string()];
    // The broken variants first (each copied aside), then the plugin itself.
    for variant in [
        "wildcard-host",
        "trap-in-describe",
        "wrong-world",
        "openai-impostor",
        "extractor-impostor",
        "traversal-version",
    ] {
        let dir = build_wasm(&root, &hostile, &[variant]);
        let aside = dir.join(format!("hostile-{variant}.wasm"));
        std::fs::copy(dir.join("hostile.wasm"), &aside).expect("copy the variant aside");
        println!(
            "cargo:rustc-env=PODS_HOSTILE_{}_WASM={}",
            variant.to_uppercase().replace('-', "_"),
            aside.display()
        );
    }
    let wasm_dir = build_wasm(&root, &hostile, &[]);
    println!(
        "cargo:rustc-env=PODS_HOSTILE_WASM={}",
        wasm_dir.join("hostile.wasm").display()
    );
}

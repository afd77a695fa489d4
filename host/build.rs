//! Builds the built-in provider plugins for `wasm32-wasip2` (so a plain `cargo build` produces the
//! host *and* its plugins) and embeds their conformance vectors.
//!
//! The plugins are compiled by a nested `cargo build` into their own target directory
//! (`target/wasm`), so it never waits on the lock of the outer build.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

// Shared with tests/build.rs, which builds the hostile test plugin the same way.
include!("build_wasm.rs");

const PLUGINS: [&str; 4] = ["openai", "anthropic", "gemini", "json-field"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("build_wasm.rs").display()
    );

    let packages: Vec<String> = PLUGINS.iter().map(|p| format!("pods-plugin-{p}")).collect();
    let wasm_dir = build_wasm(&root, &packages, &[]);
    for plugin in PLUGINS {
        // A crate's `[lib] name` has underscores where its package name has dashes.
        let name = plugin.replace('-', "_");
        let path = wasm_dir.join(format!("{name}.wasm"));
        println!(
            "cargo:rustc-env=PODS_BUILTIN_{}={}",
            name.to_uppercase(),
            path.display()
        );
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    fs::write(out.join("vectors.rs"), vectors_source(&root)).expect("write vectors.rs");
}

/// `pub static BUILTIN_VECTORS: &[(&str, &str, &str, &[u8])]` = (provider, vector name, vector
/// JSON, raw response body) for every `plugins/<provider>/vectors/<name>.json`.
fn vectors_source(root: &Path) -> String {
    let mut src = String::from("pub static BUILTIN_VECTORS: &[(&str, &str, &str, &[u8])] = &[\n");
    for plugin in PLUGINS {
        let dir = root.join("plugins").join(plugin).join("vectors");
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for json in files {
            let name = json
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name");
            let body = json.with_extension("body");
            let body_expr = if body.exists() {
                format!("include_bytes!({:?})", body.display().to_string())
            } else {
                "b\"\"".to_string()
            };
            writeln!(
                src,
                "    ({plugin:?}, {name:?}, include_str!({:?}), {body_expr}),",
                json.display().to_string()
            )
            .expect("write to string");
        }
    }
    src.push_str("];\n");
    src
}

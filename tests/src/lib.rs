//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;

/// The `pods` binary of this build (`target/<profile>/pods`), next to the test executable's folder.
pub fn pods_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/pods
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable sits in target/<profile>/deps");
    let bin = dir.join(format!("pods{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p pods` (or `cargo test --workspace`, which builds it)",
        bin.display()
    );
    bin
}

/// The hostile test plugin, built by tests/build.rs.
pub fn hostile_wasm() -> Vec<u8> {
    std::fs::read(env!("PODS_HOSTILE_WASM")).expect("the hostile plugin was built")
}

/// A scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pods-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

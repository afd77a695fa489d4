//! Every built-in plugin passes its provider's conformance vectors, through a real loopback HTTP
//! server — the same check `pods plugin check` runs.

use pods::conformance;
use pods::plugins::{BUILTIN, Runtime, RuntimeConfig};

async fn check(provider: &str) {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(std::env::temp_dir().join("pods-test-wasm-cache")),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let (_, wasm) = BUILTIN
        .iter()
        .find(|(id, _)| *id == provider)
        .expect("built-in plugin");
    let plugin = runtime.load(wasm).expect("the built-in plugin loads");
    assert_eq!(plugin.manifest().id, provider);
    let vectors = conformance::builtin(provider).expect("vectors parse");
    assert!(
        vectors.len() >= 10,
        "{provider} has only {} vectors",
        vectors.len()
    );
    let failures: Vec<String> = conformance::run(&plugin, &vectors)
        .await
        .into_iter()
        .filter_map(|o| o.result.err().map(|e| format!("{}: {e}", o.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{provider} failed:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn openai_passes_its_vectors() {
    check("openai").await;
}

#[tokio::test]
async fn anthropic_passes_its_vectors() {
    check("anthropic").await;
}

#[tokio::test]
async fn gemini_passes_its_vectors() {
    check("gemini").await;
}

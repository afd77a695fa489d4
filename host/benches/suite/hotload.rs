//! Hot-loading: the time from a `.wasm` file landing in the watched plugin folder (`PLUGIN_DIR`)
//! to the plugin serving — listed by `GET /api/v1/plugins` and answering an execution.
//!
//! `cargo bench -p pods --bench suite -- hotload` drops the built-in OpenAI plugin (170 KB) into the folder
//! ten times, removing it in between; under `cargo test` it makes two rounds.
//! Target: under 1 s.

use std::time::{Duration, Instant};

use crate::common::{Bench, ms};
use serde_json::{Value, json};

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(if full { 10 } else { 2 }));
}

/// The source of the loaded `openai` plugin, if it is loaded.
async fn openai_source(bench: &Bench) -> Option<String> {
    let list = bench.call("GET", "/api/v1/plugins", Value::Null).await;
    list["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == "openai")
        .and_then(|p| p["source"].as_str().map(str::to_string))
}

async fn wait_until(bench: &Bench, want: Option<&str>) -> Duration {
    let started = Instant::now();
    while openai_source(bench).await.as_deref() != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{want:?} never came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

async fn run(rounds: usize) {
    let dir = std::env::temp_dir().join(format!("pods-bench-hotload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("plugin folder");
    let bench = Bench::start("hotload", &[("PLUGIN_DIR", dir.to_str().expect("utf-8"))]).await;
    let (_, wasm) = pods::plugins::BUILTIN[0];
    let file = dir.join("openai.wasm");
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // Written to a temporary name and renamed in, as a deploy tool would.
        let tmp = dir.join("openai.wasm.partial");
        std::fs::write(&tmp, wasm).expect("write");
        let dropped = Instant::now();
        std::fs::rename(&tmp, &file).expect("rename");
        wait_until(&bench, Some("dir")).await;
        let answer = bench
            .call(
                "POST",
                &format!("/api/v1/workspaces/{}/executions", bench.ws),
                json!({"podId": bench.pod}),
            )
            .await;
        samples.push(dropped.elapsed());
        assert_eq!(answer["status"], "COMPLETED", "{answer}");
        std::fs::remove_file(&file).expect("remove");
        // The file shadowed the built-in of the same version: with it gone, the built-in serves.
        wait_until(&bench, Some("builtin")).await;
    }
    samples.sort();
    println!("# Hot-loading a plugin from the watched folder ({rounds} rounds)\n");
    println!("| plugin | size | drop → serving p50 | max | target |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| openai | {} KiB | {} | {} | < 1 s |",
        wasm.len() / 1024,
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

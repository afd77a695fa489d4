//! Plugin overhead: compile-once time, and the per-execution cost of instantiate + build-request +
//! parse-response (and of a streamed answer) for each built-in plugin, warm.
//!
//! Run with `cargo bench -p pods --bench suite -- plugins`. Under `cargo test` (no `--bench` argument) it
//! makes a short run, so the test command keeps it working.
//! Target: under 50 µs of plugin work per execution on a 2-core machine.

use std::time::{Duration, Instant};

use pods::conformance::{self, Vector};
use pods::plugins::types::{HttpResponse, SseEvent};
use pods::plugins::{BUILTIN, Plugin, Runtime, RuntimeConfig};
use pods::sse::SseDecoder;

const BASE_URL: &str = "http://127.0.0.1:9";

pub fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let full = std::env::args().any(|a| a == "--bench");
    let iterations = if full { 5_000 } else { 200 };

    println!("# Plugin overhead ({iterations} iterations per row, after warm-up)\n");
    println!("| plugin | size | compile (no cache) | load (disk cache) |");
    println!("|---|---:|---:|---:|");
    let cache = std::env::temp_dir().join(format!("pods-bench-cache-{}", std::process::id()));
    let uncached = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let mut plugins = Vec::new();
    for (id, wasm) in BUILTIN {
        let started = Instant::now();
        let plugin = uncached.load(wasm).await.expect("load");
        let compile = started.elapsed();
        cached.load(wasm).await.expect("load and fill the cache");
        let started = Instant::now();
        cached.load(wasm).await.expect("load from the cache");
        let from_cache = started.elapsed();
        println!(
            "| {id} | {} KiB | {} | {} |",
            wasm.len() / 1024,
            ms(compile),
            ms(from_cache)
        );
        plugins.push((id, plugin));
    }
    let _ = std::fs::remove_dir_all(&cache);

    println!("\n| plugin | work per execution | mean | p50 | p99 |");
    println!("|---|---|---:|---:|---:|");
    for (id, plugin) in &plugins {
        let vectors = conformance::builtin(id).expect("vectors");
        if vectors.is_empty() {
            continue; // json-field: an extractor, no provider calls
        }
        let plain = find(&vectors, "plain");
        let stream = find(&vectors, "stream_plain");
        let instantiate = measure(iterations, async || {
            plugin.instantiate(None).await.expect("instance");
        })
        .await;
        row(id, "instantiate only", &instantiate);
        let sync = measure(iterations, async || sync_call(plugin, plain).await).await;
        row(id, "instantiate + build-request + parse-response", &sync);
        let events = frame(&stream.body);
        let streamed = measure(iterations, async || {
            stream_call(plugin, stream, &events).await;
        })
        .await;
        row(
            id,
            &format!(
                "instantiate + build-request + {} stream events + finish",
                events.len()
            ),
            &streamed,
        );
    }
}

fn find<'a>(vectors: &'a [Vector], name: &str) -> &'a Vector {
    vectors.iter().find(|v| v.name == name).expect("vector")
}

async fn sync_call(plugin: &Plugin, vector: &Vector) {
    let mut instance = plugin.instantiate(None).await.expect("instance");
    instance
        .build_request(&vector.spec.request, BASE_URL)
        .await
        .expect("no trap")
        .expect("request");
    let response = HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: vector.body.clone(),
    };
    instance
        .parse_response(&vector.spec.request, BASE_URL, &response)
        .await
        .expect("no trap")
        .expect("completion");
}

async fn stream_call(plugin: &Plugin, vector: &Vector, events: &[SseEvent]) {
    let mut instance = plugin.instantiate(None).await.expect("instance");
    instance
        .build_request(&vector.spec.request, BASE_URL)
        .await
        .expect("no trap")
        .expect("request");
    instance
        .stream_start(&vector.spec.request, BASE_URL)
        .await
        .expect("no trap");
    for event in events {
        instance
            .stream_push(event)
            .await
            .expect("no trap")
            .expect("delta");
    }
    instance
        .stream_finish()
        .await
        .expect("no trap")
        .expect("completion");
}

fn frame(body: &[u8]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::default();
    let mut events = decoder.push(body).expect("short lines");
    events.extend(decoder.finish());
    events
}

async fn measure(iterations: usize, mut f: impl AsyncFnMut()) -> Vec<Duration> {
    for _ in 0..iterations / 10 {
        f().await;
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples
}

fn row(id: &str, what: &str, samples: &[Duration]) {
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "| {id} | {what} | {} | {} | {} |",
        us(mean),
        us(pct(0.50)),
        us(pct(0.99))
    );
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

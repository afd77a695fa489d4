//! What the OpenAI-compatible door adds over the native execute route: the same pod called
//! through `POST /v1/chat/completions` (`pod/<id>`, and `openai/gpt-4o-mini` without a pod) and
//! through `POST …/executions`, one request at a time, interleaved (so both see the same
//! machine), with the same workspace API key.
//!
//! `cargo bench -p pods --bench suite -- door` makes 2,000 calls of each; under `cargo test`, 30.
//! Target: the door adds < 50 µs at p50.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Bench, RequestSpec, pct};
use serde_json::json;

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(full));
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn run(full: bool) {
    let bench = Bench::start("door", &[]).await;
    let created = bench
        .call(
            "POST",
            &format!("/api/v1/workspaces/{}/api-keys", bench.ws),
            json!({"name": "bench", "role": "member"}),
        )
        .await;
    let key = created["key"].as_str().expect("an API key").to_string();
    let spec = |url: String, body: serde_json::Value| {
        Arc::new(RequestSpec {
            url,
            token: Some(key.clone()),
            body: body.to_string(),
        })
    };
    let messages = json!([{"role": "user", "content": "Say hello"}]);
    let routes = [
        (
            "native `POST …/executions` (pod)",
            spec(
                format!("{}/api/v1/workspaces/{}/executions", bench.base, bench.ws),
                json!({"podId": bench.pod, "messages": messages}),
            ),
        ),
        (
            "door `pod/<id>`",
            spec(
                format!("{}/v1/chat/completions", bench.base),
                json!({"model": format!("pod/{}", bench.pod), "messages": messages}),
            ),
        ),
        (
            "door `openai/gpt-4o-mini` (no pod)",
            spec(
                format!("{}/v1/chat/completions", bench.base),
                json!({"model": "openai/gpt-4o-mini", "messages": messages}),
            ),
        ),
    ];
    let calls = if full { 2000 } else { 30 };
    // Warm up connections, caches and the plugin.
    for (_, route) in &routes {
        for _ in 0..20 {
            assert!(route.send(&bench.http).await, "a warm-up call failed");
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(calls); routes.len()];
    for _ in 0..calls {
        for (i, (_, route)) in routes.iter().enumerate() {
            let sent = Instant::now();
            assert!(route.send(&bench.http).await, "a call failed");
            samples[i].push(sent.elapsed());
        }
    }
    for s in &mut samples {
        s.sort();
    }
    let native = pct(&samples[0], 0.50);
    println!(
        "# The OpenAI-compatible door over the native route (SQLite, instant provider, one at a time)\n"
    );
    println!("| route | calls | p50 | p99 | added p50 over native |");
    println!("|---|---:|---:|---:|---:|");
    for ((name, _), s) in routes.iter().zip(&samples) {
        let p50 = pct(s, 0.50);
        let added = p50.as_secs_f64() - native.as_secs_f64();
        println!(
            "| {name} | {} | {} | {} | {:+.0} µs |",
            s.len(),
            us(p50),
            us(pct(s, 0.99)),
            added * 1e6
        );
    }
}

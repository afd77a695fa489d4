//! A Prometheus scrape of `/metrics` with a large store: the answer must not depend on how many
//! executions there are (counters are kept as things happen; nothing is counted at scrape time).
//!
//! `cargo bench -p pods --bench suite -- scrape` puts 1,000,000 executions in the server's
//! SQLite store and times 200 scrapes; under `cargo test`, 10,000 and 20. Target: < 50 ms.

use std::time::{Duration, Instant};

use crate::common::{Bench, ms, pct};
use serde_json::json;

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(full));
}

async fn run(full: bool) {
    let bench = Bench::start("scrape", &[]).await;
    // Some traffic first, so the metrics have series to render.
    for _ in 0..20 {
        bench
            .call(
                "POST",
                &format!("/api/v1/workspaces/{}/executions", bench.ws),
                json!({"podId": bench.pod}),
            )
            .await;
    }
    let (rows, scrapes) = if full { (1_000_000, 200) } else { (10_000, 20) };
    let filled = Instant::now();
    let db = rusqlite::Connection::open(bench.database()).expect("open the store");
    db.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    db.execute(
        "INSERT INTO executions (id, workspace_id, flow_id, pod_id, user_id, status, provider, model_id,
            prompt_tokens, completion_tokens, total_cost, content, request_metadata, created_at, started_at, finished_at)
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
         SELECT 'bench-' || x, ?2, ?3, ?4, 'bench', 'COMPLETED', 'openai', 'gpt-4o-mini', 20, 12, '0.0000096',
                'an answer', '{}', x, x, x FROM n",
        rusqlite::params![rows, bench.ws, bench.flow, bench.pod],
    )
    .expect("fill the store");
    let filled = filled.elapsed();

    let mut samples = Vec::with_capacity(scrapes);
    let mut bytes = 0;
    for _ in 0..scrapes {
        let sent = Instant::now();
        let text = bench.metrics_text().await;
        samples.push(sent.elapsed());
        bytes = text.len();
        assert!(text.contains("pods_executions_total"), "{text}");
    }
    samples.sort();
    println!("# A /metrics scrape with a large store (SQLite)\n");
    println!("| executions in the store | scrapes | p50 | p99 | max | size |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {rows} (+20) | {scrapes} | {} | {} | {} | {} KiB |",
        ms(pct(&samples, 0.50)),
        ms(pct(&samples, 0.99)),
        ms(samples[samples.len() - 1]),
        bytes / 1024
    );
    println!("\n(filling the store took {filled:?})");
}

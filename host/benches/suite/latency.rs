//! Added latency of a sync execution: the time through `pods serve` minus the time straight to
//! the same local provider server, under the same open-loop load, at p50 and p99.
//!
//! `cargo bench -p pods --bench suite -- latency` runs 10, 100, 1,000, 2,000 and 4,000 requests/s
//! for 5 seconds each (`PODS_BENCH_SECONDS` to change; the 10/s step runs at least 10 s) on SQLite. Under `cargo test` it makes a short run at
//! 100 requests/s. Target: p99 added latency under 2 ms at 1,000 requests/s.

use std::sync::Arc;

use crate::common::{Bench, RequestSpec, load, ms, pct};
use serde_json::json;

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(full));
}

async fn run(full: bool) {
    let bench = Bench::start("latency", &[]).await;
    let through = bench.execution_request(json!({}));
    let direct = Arc::new(RequestSpec {
        url: format!("{}/v1/chat/completions", bench.provider),
        token: None,
        body:
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]})
                .to_string(),
    });
    let seconds = crate::common::seconds(5);
    let plan = if full {
        vec![
            (10, seconds.max(10)),
            (100, seconds),
            (1000, seconds),
            (2000, seconds),
            (4000, seconds),
        ]
    } else {
        vec![(100, 1)]
    };

    println!("# Added latency of a sync execution (SQLite, instant provider, open-loop load)\n");
    println!(
        "| rate | requests | direct p50 | direct p99 | through pods p50 | through pods p99 | added p50 | added p99 | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Warm up connections, caches and the plugin.
    load(&bench.http, &through, 50, 1).await;
    for (rate, seconds) in plan {
        let d = load(&bench.http, &direct, rate, seconds).await;
        let t = load(&bench.http, &through, rate, seconds).await;
        let (dp50, dp99, tp50, tp99) = (
            pct(&d.0, 0.50),
            pct(&d.0, 0.99),
            pct(&t.0, 0.50),
            pct(&t.0, 0.99),
        );
        println!(
            "| {rate}/s | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.0.len(),
            ms(dp50),
            ms(dp99),
            ms(tp50),
            ms(tp99),
            ms(tp50.saturating_sub(dp50)),
            ms(tp99.saturating_sub(dp99)),
            t.1 + d.1
        );
        assert_eq!(t.1, 0, "executions failed under load");
    }
}

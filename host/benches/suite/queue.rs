//! Each queue backend: enqueue latency (`async: true` → 202) under open-loop load, and end-to-end
//! throughput (executions/s with an instant provider, 10 workers, SQLite store).
//!
//! `cargo bench -p pods --bench suite -- queue` measures embedded, Redis (127.0.0.1:6379) and SQS
//! (`moto_server` on 127.0.0.1:5055, started if it is not running); `-- --backend redis` picks
//! one. Under `cargo test`, a short run of the embedded queue. Targets (printed with the figures):
//! enqueue p99 under 2 ms at 5,000/s; a backlog drained at 10,000 executions/s on the embedded
//! queue, 8,000/s on Redis.

use std::time::{Duration, Instant};

use crate::common::{Bench, load, ms, pct};
use serde_json::{Value, json};

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(full));
}

async fn run(full: bool) {
    let only = std::env::args().skip_while(|a| a != "--backend").nth(1);
    let backends: &[&str] = if full {
        &["embedded", "redis", "sqs"]
    } else {
        &["embedded"]
    };
    for backend in backends {
        if only.as_deref().is_none_or(|o| o == *backend) {
            run_backend(backend, full).await;
        }
    }
}

async fn run_backend(backend: &str, full: bool) {
    let prefix = format!("pods-bench-{}", std::process::id());
    // PODS_WORKERS in the environment overrides the default pool of 10.
    let workers = std::env::var("PODS_WORKERS").unwrap_or_else(|_| "10".into());
    let mut env = vec![
        ("PODS_WORKERS", workers.as_str()),
        ("QUEUE_BACKEND", backend),
    ];
    match backend {
        "redis" => env.extend([
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("PODS_REDIS_PREFIX", prefix.as_str()),
        ]),
        "sqs" => {
            crate::common::moto();
            env.extend([
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5055"),
                ("SQS_QUEUE_NAME", prefix.as_str()),
            ]);
        }
        _ => {}
    }
    let mut bench = Bench::start(&format!("queue-{backend}"), &env).await;
    let enqueue = bench.execution_request(json!({"async": true}));
    let (rate, seconds) = match (full, backend) {
        (false, _) => (100, 1),
        // moto (one Python process) serves a few hundred SQS calls a second in all.
        (true, "sqs") => (50, crate::common::seconds(5)),
        // The enqueue target is set at 5,000/s.
        (true, _) => (5000, crate::common::seconds(5)),
    };

    println!("\n# {backend} queue (SQLite store, instant provider, {workers} workers)\n");
    load(&bench.http, &enqueue, 50, 1).await;
    drain(&bench).await;
    let started = Instant::now();
    let (latencies, errors) = load(&bench.http, &enqueue, rate, seconds).await;
    let accepted = latencies.len();
    drain(&bench).await;
    let elapsed = started.elapsed();
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| enqueue rate | {rate}/s for {seconds} s |");
    println!("| enqueue p50 | {} |", ms(pct(&latencies, 0.50)));
    println!("| enqueue p99 | {} |", ms(pct(&latencies, 0.99)));
    println!("| enqueue errors | {errors} |");

    // Throughput: a backlog enqueued as fast as 16 concurrent clients can, then drained.
    let backlog = match (full, backend) {
        (false, _) => 200,
        // moto answers each SQS call in milliseconds: a smaller backlog says as much.
        (true, "sqs") => 300,
        (true, _) => 4000,
    };
    let started = Instant::now();
    bench.enqueue_backlog(backlog).await;
    let enqueued = started.elapsed();
    drain(&bench).await;
    let total = started.elapsed();
    println!("| backlog | {backlog} executions |");
    println!(
        "| enqueued in | {} ({:.0}/s) |",
        ms(enqueued),
        backlog as f64 / enqueued.as_secs_f64()
    );
    println!("| all completed in | {} |", ms(total));
    println!(
        "| end-to-end throughput | {:.0} executions/s |",
        backlog as f64 / total.as_secs_f64()
    );
    println!(
        "| open-loop phase | {accepted} accepted, drained in {} |",
        ms(elapsed)
    );

    // Drain: a node with no workers fills a backlog; a node with workers comes up to it. What
    // is timed is the workers alone, from the restart to the last execution finished.
    let backlog = match (full, backend) {
        (false, _) => 200,
        (true, "sqs") => 300,
        (true, _) => 20_000,
    };
    bench.restart(&[("PODS_WORKERS", "0")]).await;
    bench.enqueue_backlog(backlog).await;
    let started = Instant::now();
    bench.restart(&[("PODS_WORKERS", workers.as_str())]).await;
    drain(&bench).await;
    let drained = started.elapsed();
    let drain_rate = backlog as f64 / drained.as_secs_f64();
    println!(
        "| drain of a {backlog}-execution backlog (restart included) | {} ({:.0} executions/s) |",
        ms(drained),
        drain_rate
    );
    if full && backend != "sqs" {
        // The performance targets for this backend, with this run's figures.
        let floor = if backend == "redis" {
            8_000.0
        } else {
            10_000.0
        };
        let p99 = pct(&latencies, 0.99).as_secs_f64() * 1e3;
        println!("\n| {backend} target | this run | |\n|---|---|---|");
        println!(
            "| enqueue p99 < 2 ms at 5,000/s | {p99:.2} ms, {errors} errors | {} |",
            if p99 < 2.0 && errors == 0 {
                "met".to_string()
            } else {
                format!("missed by {:.2} ms", (p99 - 2.0).max(0.0))
            }
        );
        println!(
            "| drains ≥ {floor:.0} executions/s (default settings) | {drain_rate:.0}/s | {} |",
            if drain_rate >= floor {
                "met".to_string()
            } else {
                format!("missed by {:.0}/s", floor - drain_rate)
            }
        );
    }
    let metrics = bench
        .call("GET", "/api/v1/queue/metrics", Value::Null)
        .await;
    assert_eq!(
        metrics["executions"]["ERROR"],
        Value::Null,
        "no execution failed: {metrics}"
    );
}

/// Waits until no job is waiting, delayed or running. While jobs are left it reads the queue's
/// gauges from `/metrics` (the backend's job counts); only then does it ask `/queue/metrics`,
/// which also counts every execution by status — a scan that, every 100 ms, would load the
/// server it measures.
async fn drain(bench: &Bench) {
    let started = Instant::now();
    loop {
        if jobs_left(bench).await == 0 {
            let m = bench
                .call("GET", "/api/v1/queue/metrics", Value::Null)
                .await;
            if m["executions"]["QUEUED"].is_null() && m["executions"]["RUNNING"].is_null() {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "queue did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Jobs waiting, delayed or leased, from the `pods_queue_jobs` gauges.
async fn jobs_left(bench: &Bench) -> i64 {
    bench
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("pods_queue_jobs{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64
}

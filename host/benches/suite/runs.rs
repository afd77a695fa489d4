//! Whole-flow runs: runs/s of a five-pod flow (A → B → C, A → D, (C, D) → E) with an instant
//! provider, and the scheduling overhead per pod — from the end of the last of a pod's upstream
//! executions to the start of its own (millisecond timestamps).
//!
//! `cargo bench -p pods --bench suite -- runs`; under `cargo test`, a short run. Targets: p99
//! scheduling overhead under 5 ms; 500 five-pod runs/s. The overhead is measured one run at a
//! time, at a steady 150 runs/s, and under a 2,000-run backlog.

use std::time::{Duration, Instant};

use crate::common::{Bench, ms, pct};
use serde_json::{Value, json};

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(full));
}

async fn run(full: bool) {
    let bench = Bench::start("runs", &[]).await;
    let (ws, flow) = (bench.ws.clone(), bench.flow.clone());
    let mut pods = vec![bench.pod.clone()];
    for _ in 0..4 {
        let pod = bench
            .call(
                "POST",
                &format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"),
                json!({"name": "p", "provider": "openai", "model": "gpt-4o-mini", "userPrompt": "Say hello"}),
            )
            .await;
        pods.push(pod["id"].as_str().expect("pod").to_string());
    }
    let edges = [(0, 1), (1, 2), (0, 3), (2, 4), (3, 4)];
    for (s, t) in edges {
        bench
            .call(
                "POST",
                &format!("/api/v1/workspaces/{ws}/flows/{flow}/edges"),
                json!({"sourcePodId": pods[s], "targetPodId": pods[t]}),
            )
            .await;
    }
    let runs_path = format!("/api/v1/workspaces/{ws}/flows/{flow}/runs");
    let total = if full { 2_000 } else { 20 };

    // One run at a time: the overhead of scheduling alone, no queue to wait in.
    let mut alone = vec![];
    for _ in 0..(if full { 50 } else { 5 }) {
        let r = bench.call("POST", &runs_path, json!({})).await;
        let id = r["runId"].as_str().unwrap_or_default().to_string();
        alone.push(finished(&bench, &runs_path, &id).await);
    }
    let alone = overheads(&bench, &pods, &edges, &alone).await;

    // A steady load well under capacity (open loop): the overhead most deployments see.
    let (rate, seconds) = if full { (150u32, 4u32) } else { (10, 1) };
    let steady = {
        let start = tokio::time::Instant::now();
        let interval = Duration::from_secs(1) / rate;
        let mut started = Vec::new();
        for i in 0..rate * seconds {
            tokio::time::sleep_until(start + interval * i).await;
            let (http, base, token, path) = (
                bench.http.clone(),
                bench.base.clone(),
                bench.token.clone(),
                runs_path.clone(),
            );
            started.push(tokio::spawn(async move {
                let r: Value = http
                    .post(format!("{base}{path}"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .expect("start a run")
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                r["runId"].as_str().unwrap_or_default().to_string()
            }));
        }
        let mut views = Vec::new();
        for task in started {
            let id = task.await.expect("task");
            views.push(finished(&bench, &runs_path, &id).await);
        }
        overheads(&bench, &pods, &edges, &views).await
    };

    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut ids = Vec::with_capacity(total);
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for _ in 0..total {
        // At most 16 starts in flight, as 16 clients would.
        if pending.len() >= 16 {
            use futures_util::StreamExt;
            if let Some(id) = pending.next().await {
                ids.push(id);
            }
        }
        let (bench, path) = (&bench, runs_path.clone());
        pending.push(async move {
            let r = bench.call("POST", &path, json!({})).await;
            r["runId"].as_str().unwrap_or_default().to_string()
        });
    }
    {
        use futures_util::StreamExt;
        while let Some(id) = pending.next().await {
            ids.push(id);
        }
    }
    let mut views = Vec::with_capacity(ids.len());
    for id in &ids {
        views.push(finished(&bench, &runs_path, id).await);
    }
    // From the first start to the last run's end as the server recorded it: reading the runs
    // back afterwards is not part of running them.
    let last_end = views
        .iter()
        .filter_map(|v| millis(&v["finishedAt"]))
        .max()
        .unwrap_or(started);
    let elapsed = Duration::from_millis((last_end - started).max(1) as u64);
    let completed = views.iter().filter(|v| v["status"] == "COMPLETED").count();

    let loaded = overheads(&bench, &pods, &edges, &views[..views.len().min(200)]).await;
    println!("\n# runs (SQLite store, embedded queue, instant provider, 10 workers)\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| five-pod runs | {total} ({completed} completed) |");
    println!(
        "| runs/s | {:.0} |",
        total as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    let steady_label = format!("at {rate} runs/s (open loop)");
    for (label, samples) in [
        ("one run at a time", &alone),
        (steady_label.as_str(), &steady),
        ("under load", &loaded),
    ] {
        for p in [0.50, 0.99] {
            println!(
                "| scheduling overhead, {label}, p{:.0} | {} |",
                p * 100.0,
                ms(pct(samples, p))
            );
        }
    }
    assert_eq!(completed, total, "every run completes");
}

/// For each pod with upstreams: its execution's start minus the end of its last upstream's.
async fn overheads(
    bench: &Bench,
    pods: &[String],
    edges: &[(usize, usize)],
    views: &[Value],
) -> Vec<Duration> {
    let ws = &bench.ws;
    let mut overheads = vec![];
    for view in views {
        let mut times = std::collections::HashMap::new();
        for pod in view["pods"].as_array().cloned().unwrap_or_default() {
            let id = pod["executionId"].as_str().unwrap_or_default();
            let e = bench
                .call(
                    "GET",
                    &format!("/api/v1/workspaces/{ws}/executions/{id}"),
                    Value::Null,
                )
                .await;
            times.insert(
                pod["podId"].as_str().unwrap_or_default().to_string(),
                (millis(&e["startedAt"]), millis(&e["finishedAt"])),
            );
        }
        for target in 1..pods.len() {
            let upstream_end = edges
                .iter()
                .filter(|(_, t)| *t == target)
                .filter_map(|(s, _)| times.get(&pods[*s]).and_then(|t| t.1))
                .max();
            let start = times.get(&pods[target]).and_then(|t| t.0);
            if let (Some(end), Some(start)) = (upstream_end, start) {
                overheads.push(Duration::from_millis((start - end).max(0) as u64));
            }
        }
    }
    overheads.sort();
    overheads
}

async fn finished(bench: &Bench, runs_path: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let v = bench
            .call("GET", &format!("{runs_path}/{id}"), Value::Null)
            .await;
        if !matches!(v["status"].as_str(), Some("QUEUED" | "RUNNING")) {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "run {id} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Unix milliseconds of an RFC 3339 time.
fn millis(v: &Value) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

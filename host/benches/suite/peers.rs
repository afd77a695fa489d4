//! Pods beside its peers, in one run on one machine (`bench/run.sh` installs the peers and runs
//! this with `--bench`, writing `docs/benchmarks/`):
//!
//! - added latency of a sync execution over calling the provider directly, at 10 / 100 / 1,000 /
//!   2,000 / 4,000 requests/s, with an instant provider and a 60 ms one — for Pods, for the
//!   zero-work hop (an nginx reverse proxy, Debian's `nginx-light`: the floor any proxy stands
//!   on) and for LiteLLM's proxy (`litellm[proxy]`, retries and logging off, up to 2,000/s)
//!   in front of the same provider server;
//! - sustained sync throughput (closed loop, 64 in flight) of each;
//! - queue throughput: Pods' Redis queue layer against BullMQ on the same Redis, same job count
//!   and concurrency (`bench/bullmq/bench.mjs`);
//! - memory: the server's RSS idle and with 100,000 queued executions.
//!
//! Under `cargo test` it makes a short run of Pods' side only (no peers needed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Bench, RequestSpec, load, pct};
use serde_json::json;

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(full));
}

/// One latency measurement: added over direct at p50/p90/p99 (ms), errors, achieved rate.
struct Latency {
    system: &'static str,
    provider: &'static str,
    rate: u32,
    added: [f64; 3],
    errors: usize,
}

async fn run(full: bool) {
    let seconds = crate::common::seconds(if full { 5 } else { 1 });
    let rates: &[u32] = if full {
        &[10, 100, 1000, 2000, 4000]
    } else {
        &[100]
    };
    let bench = Bench::start("peers", &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let idle_rss = rss_mib(bench.pid());
    // A fresh LiteLLM proxy for each measurement: one it cannot keep up with leaves it with a
    // backlog that would spoil the next.
    let hop = full.then(|| Nginx::start(&bench.provider));
    let fresh_litellm = || async {
        let l = LiteLlm::start(&bench.provider);
        l.wait_ready(&http).await;
        load(&http, &l.spec("gpt-4o-mini"), 10, 1).await;
        l
    };

    let mut latencies = Vec::new();
    for (provider, model) in [("instant", "gpt-4o-mini"), ("60 ms", "gpt-4o-mini-60ms")] {
        let direct = spec(
            &format!("{}/v1/chat/completions", bench.provider),
            None,
            model,
        );
        let pods = bench.execution_request(json!({"model": model}));
        // Warm up connections, caches and the plugin.
        load(&http, &pods, 50, 1).await;
        for &rate in rates {
            let d = load(&http, &direct, rate, seconds).await;
            let mut systems = vec![("Pods", pods.clone(), None)];
            if let Some(hop) = &hop {
                systems.push((HOP, hop.spec(model), None));
            }
            // Saturated from 1,000/s on: above 2,000 it would only queue up.
            if full && rate <= 2000 {
                let l = fresh_litellm().await;
                systems.push(("LiteLLM proxy", l.spec(model), Some(l)));
            }
            for (system, target, _proxy) in systems {
                let t = load(&http, &target, rate, seconds).await;
                let added = [0.50, 0.90, 0.99].map(|p| {
                    (pct(&t.0, p).as_secs_f64() - pct(&d.0, p).as_secs_f64()).max(0.0) * 1e3
                });
                latencies.push(Latency {
                    system,
                    provider,
                    rate,
                    added,
                    errors: t.1,
                });
            }
        }
    }

    let mut throughput = vec![(
        "Pods",
        closed_loop(&http, &bench.execution_request(json!({})), 64, seconds).await,
    )];
    if let Some(hop) = &hop {
        throughput.push((
            HOP,
            closed_loop(&http, &hop.spec("gpt-4o-mini"), 64, seconds).await,
        ));
    }
    if full {
        let l = fresh_litellm().await;
        throughput.push((
            "LiteLLM proxy",
            closed_loop(&http, &l.spec("gpt-4o-mini"), 64, seconds).await,
        ));
    }
    let persisted = count_executions(&bench).await;

    let jobs = if full { 20_000 } else { 2_000 };
    let ours = pods_redis_queue(jobs, 10).await;
    let bullmq = full.then(|| bullmq(jobs, 10));

    let queued = if full { 100_000 } else { 500 };
    let queued_rss = rss_with_queued(queued).await;

    let report = report(
        &latencies,
        &throughput,
        persisted,
        ours,
        bullmq,
        (idle_rss, queued, queued_rss),
        seconds,
    );
    println!("{report}");
    if let Some(dir) = std::env::var_os("PODS_BENCH_REPORT").map(PathBuf::from) {
        std::fs::create_dir_all(&dir).expect("report folder");
        std::fs::write(dir.join("README.md"), &report).expect("write the report");
        std::fs::write(dir.join("latency.svg"), latency_chart(&latencies)).expect("chart");
        std::fs::write(dir.join("throughput.svg"), throughput_chart(&throughput)).expect("chart");
        std::fs::write(dir.join("queue.svg"), queue_chart(ours, bullmq)).expect("chart");
        println!("wrote {}", dir.display());
    }
}

fn spec(url: &str, token: Option<&str>, model: &str) -> Arc<RequestSpec> {
    Arc::new(RequestSpec {
        url: url.to_string(),
        token: token.map(str::to_string),
        body: json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
            .to_string(),
    })
}

/// `concurrency` requests in flight for `seconds`: (completed per second, errors).
async fn closed_loop(
    http: &reqwest::Client,
    spec: &Arc<RequestSpec>,
    concurrency: usize,
    seconds: u32,
) -> (f64, usize) {
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(u64::from(seconds));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, spec, done, errors) = (http.clone(), spec.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                if spec.send(&http).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        done.load(Ordering::Relaxed) as f64 / f64::from(seconds),
        errors.load(Ordering::Relaxed),
    )
}

/// How many executions the server recorded (every sync execution is persisted).
async fn count_executions(bench: &Bench) -> i64 {
    let metrics = bench
        .call("GET", "/api/v1/queue/metrics", serde_json::Value::Null)
        .await;
    metrics["executions"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_i64()).sum())
        .unwrap_or(0)
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A server with no workers and `n` queued executions: its RSS.
async fn rss_with_queued(n: usize) -> f64 {
    let bench = Bench::start("peers-queued", &[("PODS_WORKERS", "0")]).await;
    bench.enqueue_backlog(n).await;
    rss_mib(bench.pid())
}

/// Pods' Redis queue layer alone: add `jobs`, then `concurrency` consumers take and ack them.
/// Returns (added per second, processed per second).
async fn pods_redis_queue(jobs: usize, concurrency: usize) -> (f64, f64) {
    use pods::queue::{Job, Queue, RedisQueue};
    let prefix = format!("pods-bench-{}", std::process::id());
    let queue = Arc::new(
        RedisQueue::connect("redis://127.0.0.1:6379", &prefix)
            .await
            .expect("Redis on 127.0.0.1:6379 (bench/run.sh starts it)"),
    );
    let started = Instant::now();
    let mut adds = Vec::new();
    for i in 0..jobs {
        let queue = queue.clone();
        adds.push(async move {
            let job = Job {
                execution_id: format!("e{i}"),
                workspace_id: "w".into(),
            };
            queue.add(&job, Duration::ZERO).await.expect("add");
        });
        if adds.len() == 100 {
            futures_util::future::join_all(std::mem::take(&mut adds)).await;
        }
    }
    futures_util::future::join_all(adds).await;
    let added = jobs as f64 / started.elapsed().as_secs_f64();

    // As Pods' worker does: read as many jobs as there are free slots, run each on its own task,
    // ack it when done.
    let done = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    while done.load(Ordering::Relaxed) < jobs {
        let free = slots.available_permits().max(1);
        let batch = queue
            .consume(free, Duration::from_secs(30), Duration::from_millis(20))
            .await
            .expect("consume");
        for delivery in batch {
            let permit = slots.clone().acquire_owned().await.expect("slot");
            let (queue, done) = (queue.clone(), done.clone());
            tokio::spawn(async move {
                queue.ack(&delivery).await.expect("ack");
                done.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    }
    let processed = jobs as f64 / started.elapsed().as_secs_f64();
    let _ = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern"])
        .arg(format!("{prefix}:*"))
        .output()
        .map(|out| {
            for key in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "del", key])
                    .output();
            }
        });
    (added, processed)
}

/// BullMQ on the same Redis (bench/bullmq): (added per second, processed per second).
fn bullmq(jobs: usize, concurrency: usize) -> (f64, f64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/bullmq");
    let out = Command::new("node")
        .arg("bench.mjs")
        .arg(jobs.to_string())
        .arg(concurrency.to_string())
        .current_dir(&dir)
        .output()
        .expect("node bench/bullmq/bench.mjs (bench/run.sh installs BullMQ)");
    assert!(
        out.status.success(),
        "BullMQ bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("BullMQ JSON");
    (
        result["addedPerSec"].as_f64().unwrap_or(0.0),
        result["processedPerSec"].as_f64().unwrap_or(0.0),
    )
}

/// The zero-work hop: nginx as a plain reverse proxy (2 workers, keep-alive upstream) in
/// front of the same provider server — the floor for any proxy on this machine.
struct Nginx {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Nginx {
    fn start(provider: &str) -> Nginx {
        let dir = std::env::temp_dir().join(format!("pods-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("nginx folder");
        let port = crate::common::free_port();
        let upstream = provider.trim_start_matches("http://");
        let d = dir.display();
        let config = format!(
            "worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  upstream provider {{ server {upstream}; keepalive 128; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://provider;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).expect("nginx config");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx (bench/run.sh installs nginx-light)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn spec(&self, model: &str) -> Arc<RequestSpec> {
        spec(&format!("{}/v1/chat/completions", self.url), None, model)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `-s stop` ends the workers too (a killed master would leave them serving).
        let _ = Command::new("nginx")
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-e", "stderr", "-s", "stop"])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// LiteLLM's proxy in front of the same provider server.
struct LiteLlm {
    child: Child,
    url: String,
    dir: PathBuf,
}

const LITELLM_KEY: &str = "sk-litellm-bench";

impl LiteLlm {
    fn start(provider: &str) -> LiteLlm {
        let dir = std::env::temp_dir().join(format!("pods-bench-litellm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("litellm folder");
        let mut config = String::from("model_list:\n");
        for model in ["gpt-4o-mini", "gpt-4o-mini-60ms"] {
            let _ = write!(
                config,
                "  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      api_base: {provider}/v1\n      api_key: sk-bench\n"
            );
        }
        config.push_str(
            "litellm_settings:\n  num_retries: 0\n  request_timeout: 30\n  set_verbose: false\n  telemetry: false\n  turn_off_message_logging: true\ngeneral_settings:\n  master_key: sk-litellm-bench\n  disable_spend_logs: true\n",
        );
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).expect("litellm config");
        let port = crate::common::free_port();
        let child = Command::new("litellm")
            .arg("--config")
            .arg(&path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("LITELLM_LOG", "ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("litellm (bench/run.sh installs litellm[proxy])");
        LiteLlm {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    async fn wait_ready(&self, http: &reqwest::Client) {
        let started = Instant::now();
        while http
            .get(format!("{}/health/liveliness", self.url))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "LiteLLM's proxy did not start"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn spec(&self, model: &str) -> Arc<RequestSpec> {
        spec(
            &format!("{}/v1/chat/completions", self.url),
            Some(LITELLM_KEY),
            model,
        )
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const HOP: &str = "zero-work hop (nginx)";

/// A system's closed-loop rate, if it was measured.
fn rate_of(throughput: &[(&str, (f64, usize))], system: &str) -> Option<f64> {
    throughput
        .iter()
        .find(|(s, _)| *s == system)
        .map(|(_, (r, _))| *r)
}

/// A row of the targets table: what, this run's figure, and met or missed by how much.
fn verdict(t: &mut String, target: &str, figure: String, missed_by: Option<String>) {
    let outcome = missed_by.map_or("met".to_string(), |by| format!("missed by {by}"));
    let _ = writeln!(t, "| {target} | {figure} | {outcome} |");
}

/// Over by how much, if over.
fn over(value: f64, limit: f64, unit: &str) -> Option<String> {
    (value >= limit).then(|| format!("{:.2} {unit}", value - limit))
}

/// The performance targets against this run's figures (the queue's drain and the WebSocket
/// fan-out are measured by their own benches, in the sections below).
fn targets(
    latencies: &[Latency],
    throughput: &[(&str, (f64, usize))],
    ours: (f64, f64),
    bullmq: Option<(f64, f64)>,
    (idle, queued, queued_rss): (f64, usize, f64),
) -> String {
    let mut t = String::from("## Targets\n\n| target | this run | |\n|---|---|---|\n");
    for l in latencies
        .iter()
        .filter(|l| l.system == "Pods" && l.provider == "instant")
    {
        let [p50, _, p99] = l.added;
        let errors = if l.errors > 0 {
            format!(", {} errors", l.errors)
        } else {
            String::new()
        };
        if l.rate <= 2000 {
            let missed = [over(p50, 0.3, "ms at p50"), over(p99, 1.0, "ms at p99")]
                .into_iter()
                .flatten()
                .chain((l.errors > 0).then(|| "errors".to_string()))
                .collect::<Vec<_>>();
            verdict(
                &mut t,
                &format!("added p50 < 0.3 ms and p99 < 1 ms at {} req/s", l.rate),
                format!("{p50:.2} / {p99:.2} ms{errors}"),
                (!missed.is_empty()).then(|| missed.join(", ")),
            );
        } else {
            verdict(
                &mut t,
                &format!("added p99 < 2 ms at {} req/s", l.rate),
                format!("{p99:.2} ms{errors}"),
                over(p99, 2.0, "ms").or_else(|| (l.errors > 0).then(|| "errors".to_string())),
            );
        }
    }
    if let Some(pods) = rate_of(throughput, "Pods") {
        verdict(
            &mut t,
            "≥ 15,000 sync executions/s, closed loop, each persisted",
            format!("{pods:.0}/s"),
            (pods < 15_000.0).then(|| format!("{:.0}/s", 15_000.0 - pods)),
        );
        if let Some(hop) = rate_of(throughput, HOP) {
            let _ = writeln!(
                t,
                "| (the zero-work hop's closed loop, for scale) | {hop:.0}/s — Pods does {:.0} % of it | |",
                pods / hop.max(1e-9) * 100.0
            );
        }
        if let Some(lite) = rate_of(throughput, "LiteLLM proxy") {
            let ratio = pods / lite.max(1e-9);
            verdict(
                &mut t,
                "sustained sync throughput ≥ 30× LiteLLM's",
                format!("{ratio:.1}× ({pods:.0}/s vs {lite:.0}/s)"),
                (ratio < 30.0).then(|| format!("{:.1}×", 30.0 - ratio)),
            );
        }
    }
    if let Some((_, processed)) = bullmq {
        let ratio = ours.1 / processed.max(1e-9);
        verdict(
            &mut t,
            "Redis queue layer ≥ BullMQ's throughput",
            format!("{ratio:.2}× ({:.0}/s vs {processed:.0}/s)", ours.1),
            (ratio < 1.0).then(|| format!("{:.2}×", 1.0 - ratio)),
        );
    }
    verdict(
        &mut t,
        "memory idle ≤ 50 MiB",
        format!("{idle:.1} MiB"),
        (idle > 50.0).then(|| format!("{:.1} MiB", idle - 50.0)),
    );
    if queued >= 100_000 {
        verdict(
            &mut t,
            "memory with 100,000 queued executions ≤ 150 MiB",
            format!("{queued_rss:.1} MiB"),
            (queued_rss > 150.0).then(|| format!("{:.1} MiB", queued_rss - 150.0)),
        );
    }
    t.push('\n');
    t
}

#[allow(clippy::too_many_arguments)]
fn report(
    latencies: &[Latency],
    throughput: &[(&str, (f64, usize))],
    persisted: i64,
    ours: (f64, f64),
    bullmq: Option<(f64, f64)>,
    (idle, queued, queued_rss): (f64, usize, f64),
    seconds: u32,
) -> String {
    let mut r = String::from("# Pods beside its peers\n\n");
    let _ = writeln!(
        r,
        "One run on one machine (`bench/run.sh`); the load generator, the provider server and the system under test share its cores. Each latency step runs {seconds} s, open loop.\n"
    );
    r.push_str(&targets(
        latencies,
        throughput,
        ours,
        bullmq,
        (idle, queued, queued_rss),
    ));
    r.push_str("Where a target is missed, [where-the-time-goes.md](where-the-time-goes.md) profiles what limits it.\n\n");
    r.push_str("## Added latency of a sync call (over calling the provider directly)\n\n");
    r.push_str("| system | provider | rate | added p50 | added p90 | added p99 | errors |\n|---|---|---:|---:|---:|---:|---:|\n");
    for l in latencies {
        let _ = writeln!(
            r,
            "| {} | {} | {}/s | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            l.system, l.provider, l.rate, l.added[0], l.added[1], l.added[2], l.errors
        );
    }
    r.push_str("\n![added latency](latency.svg)\n\n## Sustained sync throughput (64 in flight, instant provider)\n\n![throughput](throughput.svg)\n\n| system | completed/s | errors |\n|---|---:|---:|\n");
    for (system, (rate, errors)) in throughput {
        let _ = writeln!(r, "| {system} | {rate:.0} | {errors} |");
    }
    if let (Some(pods), Some(lite)) = (
        rate_of(throughput, "Pods"),
        rate_of(throughput, "LiteLLM proxy"),
    ) {
        let _ = writeln!(r, "\nPods / LiteLLM: **{:.1}×**.", pods / lite.max(1e-9));
    }
    let _ = writeln!(
        r,
        "Every Pods execution is persisted: the server recorded {persisted} executions in this run.\n"
    );
    r.push_str("## Queue layer on the same Redis (no-op jobs, concurrency 10)\n\n| queue | added/s | processed/s |\n|---|---:|---:|\n");
    let _ = writeln!(
        r,
        "| Pods (Redis Stream + consumer group) | {:.0} | {:.0} |",
        ours.0, ours.1
    );
    if let Some((added, processed)) = bullmq {
        let _ = writeln!(r, "| BullMQ | {added:.0} | {processed:.0} |");
        let _ = writeln!(
            r,
            "\nPods / BullMQ processed: **{:.2}×**.",
            ours.1 / processed.max(1e-9)
        );
    }
    r.push_str("\n![queue](queue.svg)\n\n## Memory\n\n| server | RSS |\n|---|---:|\n");
    let _ = writeln!(r, "| idle (SQLite, built-in plugins) | {idle:.1} MiB |");
    let _ = writeln!(
        r,
        "| with {queued} queued executions | {queued_rss:.1} MiB |"
    );
    r
}

/// A grouped bar chart as SVG: one group per label, one bar per series; `log` scales heights by
/// log10(1 + value), for values orders of magnitude apart.
fn bars(title: &str, unit: &str, log: bool, groups: &[(String, Vec<(&str, f64)>)]) -> String {
    let scale = |v: f64| if log { (1.0 + v).log10() } else { v };
    let colors = ["#2f6fdf", "#e07b39", "#4c9a2a", "#8e44ad"];
    let max = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max);
    let max = scale(max).max(1e-9);
    let (width, height, left, top, bottom) = (760.0, 360.0, 60.0, 40.0, 70.0);
    let plot_h = height - top - bottom;
    let group_w = (width - left - 20.0) / groups.len().max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"{left}\" y=\"22\" font-size=\"14\">{title}</text>\n<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\n",
        height - bottom,
        width - 20.0,
        height - bottom
    );
    for (g, (label, series)) in groups.iter().enumerate() {
        let bar_w = (group_w - 16.0) / series.len().max(1) as f64;
        let x0 = left + g as f64 * group_w + 8.0;
        for (i, (name, value)) in series.iter().enumerate() {
            let h = scale(*value) / max * plot_h;
            let x = x0 + i as f64 * bar_w;
            let y = height - bottom - h;
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{name}: {value:.2} {unit}</title></rect>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{value:.1}</text>",
                bar_w - 2.0,
                colors[i % colors.len()],
                x + bar_w / 2.0,
                y - 3.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            x0 + (group_w - 16.0) / 2.0,
            height - bottom + 16.0
        );
    }
    if let Some((_, series)) = groups.first() {
        for (i, (name, _)) in series.iter().enumerate() {
            let y = height - 24.0;
            let x = left + i as f64 * 160.0;
            let _ = writeln!(
                svg,
                "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\">{name}</text>",
                y - 9.0,
                colors[i % colors.len()],
                x + 14.0
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn latency_chart(latencies: &[Latency]) -> String {
    let mut groups: Vec<(String, Vec<(&str, f64)>)> = Vec::new();
    for l in latencies {
        let label = format!("{} {}/s", l.provider, l.rate);
        match groups.iter_mut().find(|(g, _)| *g == label) {
            Some((_, series)) => series.push((l.system, l.added[0])),
            None => groups.push((label, vec![(l.system, l.added[0])])),
        }
    }
    bars(
        "Added latency, p50 (ms, log scale; lower is better)",
        "ms",
        true,
        &groups,
    )
}

fn throughput_chart(throughput: &[(&str, (f64, usize))]) -> String {
    let groups = vec![(
        "sync executions/s, 64 in flight".to_string(),
        throughput
            .iter()
            .map(|(s, (r, _))| (*s, *r))
            .collect::<Vec<_>>(),
    )];
    bars(
        "Sustained sync throughput (higher is better)",
        "/s",
        false,
        &groups,
    )
}

fn queue_chart(ours: (f64, f64), bullmq: Option<(f64, f64)>) -> String {
    let series = |pick: fn((f64, f64)) -> f64| {
        let mut s = vec![("Pods (Redis)", pick(ours))];
        s.extend(bullmq.map(|b| ("BullMQ", pick(b))));
        s
    };
    let groups = vec![
        ("jobs added/s".to_string(), series(|q| q.0)),
        ("jobs processed/s".to_string(), series(|q| q.1)),
    ];
    bars(
        "Queue layer on one Redis, concurrency 10 (higher is better)",
        "/s",
        false,
        &groups,
    )
}

//! Added latency of a sync execution: the time through `pods serve` minus the time straight to
//! the same local provider server, under the same open-loop load, at p50 and p99.
//!
//! `cargo bench -p pods --bench latency` runs 100 and 1,000 requests/s for 5 seconds each
//! (`PODS_BENCH_SECONDS` to change) on SQLite. Under `cargo test` it makes a short run at 100 requests/s. Target: p99 added latency
//! under 2 ms at 1,000 requests/s.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(full));
}

async fn run(full: bool) {
    // An instant OpenAI-compatible provider.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let provider = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .fallback(|| async { ([("content-type", "application/json")], COMPLETION) });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let data = std::env::temp_dir().join(format!("pods-bench-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let env = [
        ("PODS_DATA_DIR", data.display().to_string()),
        (
            "PODS_JWT_SECRET",
            "bench-secret-0123456789abcdef".to_string(),
        ),
        (
            "PODS_MASTER_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string(),
        ),
        ("RUST_LOG", "error".to_string()),
    ];
    let pods = env!("CARGO_BIN_EXE_pods");
    let created = Command::new(pods)
        .args([
            "admin",
            "create-user",
            "--email",
            "bench@pods.test",
            "--workspace",
            "Bench",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("create user");
    let created: Value = serde_json::from_slice(&created.stdout).expect("user JSON");
    let (token, ws) = (
        created["token"].as_str().expect("token").to_string(),
        created["workspaceId"].as_str().expect("ws").to_string(),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut server = Command::new(pods)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .expect("start pods");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "pods did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let call = |method: reqwest::Method, path: String, body: Value| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    call(
        reqwest::Method::PUT,
        format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
        json!({"apiKey": "sk-bench", "baseUrl": format!("{provider}/v1")}),
    )
    .await
    .expect("key");
    let flow: Value = call(
        reqwest::Method::POST,
        format!("/api/v1/workspaces/{ws}/flows"),
        json!({"name": "bench"}),
    )
    .await
    .expect("flow")
    .json_value()
    .await;
    let flow = flow["id"].as_str().expect("flow").to_string();
    let pod: Value = call(
        reqwest::Method::POST,
        format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"),
        json!({"name": "p", "provider": "openai", "model": "gpt-4o-mini", "userPrompt": "Say hello"}),
    )
    .await
    .expect("pod")
    .json_value()
    .await;
    let pod = pod["id"].as_str().expect("pod").to_string();

    let through = Arc::new(RequestSpec {
        url: format!("{base}/api/v1/workspaces/{ws}/executions"),
        token: Some(token.clone()),
        body: json!({"podId": pod}).to_string(),
    });
    let direct = Arc::new(RequestSpec {
        url: format!("{provider}/v1/chat/completions"),
        token: None,
        body:
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]})
                .to_string(),
    });

    // PODS_BENCH_SECONDS lengthens each step (e.g. 60, to include SQLite's periodic checkpoint).
    let seconds: u32 = std::env::var("PODS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let plan: Vec<(u32, u32)> = if full {
        vec![(100, seconds), (1000, seconds)]
    } else {
        vec![(100, 1)]
    };
    println!("# Added latency of a sync execution (SQLite, instant provider, open-loop load)\n");
    println!(
        "| rate | requests | direct p50 | direct p99 | through pods p50 | through pods p99 | added p50 | added p99 | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Warm up connections, caches and the plugin.
    load(&http, &through, 50, 1).await;
    for (rate, seconds) in plan {
        let d = load(&http, &direct, rate, seconds).await;
        let t = load(&http, &through, rate, seconds).await;
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
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
}

struct RequestSpec {
    url: String,
    token: Option<String>,
    body: String,
}

/// Sends `rate` requests per second for `seconds`, each on its own task at its scheduled time
/// (open loop: a slow answer does not delay the next request). Returns the sorted latencies
/// and the number of failed requests.
async fn load(
    http: &reqwest::Client,
    spec: &Arc<RequestSpec>,
    rate: u32,
    seconds: u32,
) -> (Vec<Duration>, usize) {
    let total = rate * seconds;
    let interval = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i).await;
        let (http, spec) = (http.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let mut request = http
                .post(&spec.url)
                .header("content-type", "application/json")
                .body(spec.body.clone());
            if let Some(token) = &spec.token {
                request = request.bearer_auth(token);
            }
            let ok = match request.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (sent.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((latency, true)) => latencies.push(latency),
            _ => errors += 1,
        }
    }
    latencies.sort();
    (latencies, errors)
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap_or_default()).unwrap_or(Value::Null)
    }
}

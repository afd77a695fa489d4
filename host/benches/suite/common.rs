//! What the server benchmarks share: an instant OpenAI-compatible provider on loopback, a real
//! `pods serve` (release build, SQLite) with a user, a key, a flow and a pod, and an open-loop
//! load generator.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;

/// A running server with one ready-to-run pod; stopped and cleaned up on drop.
pub struct Bench {
    pub base: String,
    pub provider: String,
    pub token: String,
    pub ws: String,
    pub flow: String,
    pub pod: String,
    pub http: reqwest::Client,
    server: Child,
    data: PathBuf,
    /// The binary and environment it was started with, for [`Bench::restart`].
    binary: String,
    env: Vec<(String, String)>,
    port: u16,
}

impl Bench {
    pub async fn start(name: &str, extra_env: &[(&str, &str)]) -> Bench {
        let provider = start_provider();

        let data = std::env::temp_dir().join(format!("pods-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let mut env: Vec<(String, String)> = vec![
            ("PODS_DATA_DIR".into(), data.display().to_string()),
            (
                "PODS_JWT_SECRET".into(),
                "bench-secret-0123456789abcdef".into(),
            ),
            (
                "PODS_MASTER_KEY".into(),
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
            ),
            // `PODS_BENCH_LOG` (a RUST_LOG filter) shows the server's logs, e.g. its statements
            // with `sqlx::query=debug`.
            (
                "RUST_LOG".into(),
                std::env::var("PODS_BENCH_LOG").unwrap_or_else(|_| "error".into()),
            ),
            // One user drives every benchmark: its execution limit is on, but high.
            ("PODS_RATE_EXECUTIONS_PER_MIN".into(), "100000000".into()),
            // The stand-in provider on loopback, and nothing else there.
            (
                "PODS_EGRESS_ALLOW".into(),
                provider.trim_start_matches("http://").to_string(),
            ),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        // `PODS_BENCH_BIN` runs another build (an A/B against an earlier commit, same hour).
        let pods = std::env::var("PODS_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pods").to_string());
        let pods = pods.as_str();
        let created = Command::new(pods)
            .args([
                "admin",
                "create-user",
                "--email",
                "bench@pods.test",
                "--workspace",
                "Bench",
                "--admin",
            ])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("create user");
        let created: Value = serde_json::from_slice(&created.stdout).expect("user JSON");
        let port = free_port();
        let server = serve(pods, &env, port);
        let mut bench = Bench {
            base: format!("http://127.0.0.1:{port}"),
            provider,
            token: created["token"].as_str().expect("token").to_string(),
            ws: created["workspaceId"].as_str().expect("ws").to_string(),
            flow: String::new(),
            pod: String::new(),
            http: reqwest::Client::new(),
            server,
            data,
            binary: pods.to_string(),
            env,
            port,
        };
        bench.wait_until_up().await;
        let ws = bench.ws.clone();
        bench
            .call(
                "PUT",
                &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
                json!({"apiKey": "sk-bench", "baseUrl": format!("{}/v1", bench.provider)}),
            )
            .await;
        let flow = bench
            .call(
                "POST",
                &format!("/api/v1/workspaces/{ws}/flows"),
                json!({"name": "bench"}),
            )
            .await;
        let flow = flow["id"].as_str().expect("flow").to_string();
        let pod = bench
            .call("POST", &format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"), json!({"name": "p", "provider": "openai", "model": "gpt-4o-mini", "userPrompt": "Say hello"}))
            .await;
        bench.pod = pod["id"].as_str().expect("pod").to_string();
        bench.flow = flow;
        bench
    }

    /// Stops the server (SIGKILL) and starts it again on the same data and port, with `changed`
    /// over its environment: e.g. a node with no workers fills a backlog, then one with workers
    /// comes up to it.
    pub async fn restart(&mut self, changed: &[(&str, &str)]) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        for (k, v) in changed {
            self.env.retain(|(key, _)| key != k);
            self.env.push((k.to_string(), v.to_string()));
        }
        self.server = serve(&self.binary, &self.env, self.port);
        // The old client's pooled connections went with the old process.
        self.http = reqwest::Client::new();
        self.wait_until_up().await;
    }

    async fn wait_until_up(&self) {
        let started = Instant::now();
        while self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "pods did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.data.join("pods.db")
    }

    /// The server's process id (for its memory).
    pub fn pid(&self) -> u32 {
        self.server.id()
    }

    /// An authenticated JSON call; the answer's JSON (`null` if none).
    /// `GET /metrics` (OpenMetrics text), as a system admin scrapes it.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if !body.is_null() {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let bytes = request
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// Queues `n` executions of the pod (`async: true`) from 16 concurrent clients; each must be
    /// accepted (202).
    pub async fn enqueue_backlog(&self, n: usize) {
        let enqueue = self.execution_request(json!({"async": true}));
        let mut clients = Vec::new();
        for c in 0..16 {
            let (http, spec) = (self.http.clone(), enqueue.clone());
            clients.push(tokio::spawn(async move {
                for _ in (c..n).step_by(16) {
                    let r = http
                        .post(&spec.url)
                        .bearer_auth(spec.token.as_deref().unwrap_or(""))
                        .header("content-type", "application/json")
                        .body(spec.body.clone())
                        .send()
                        .await
                        .expect("enqueue");
                    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
                }
            }));
        }
        for c in clients {
            c.await.expect("client");
        }
    }

    /// POST …/executions with `body` merged over `{"podId": …}`.
    pub fn execution_request(&self, extra: Value) -> Arc<RequestSpec> {
        let mut body = json!({"podId": self.pod});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Arc::new(RequestSpec {
            url: format!("{}/api/v1/workspaces/{}/executions", self.base, self.ws),
            token: Some(self.token.clone()),
            body: body.to_string(),
        })
    }
}

fn serve(binary: &str, env: &[(String, String)], port: u16) -> Child {
    Command::new(binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .expect("start pods")
}

/// A loopback port free right now, for a server the bench starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// The instant provider, on a thread of its own: like any real provider it is a server apart
/// from its clients, so a call to it, direct or through a proxy, crosses threads (served on the
/// load generator's own thread, a direct call would never leave it). Returns its base URL.
fn start_provider() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let provider = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::Builder::new()
        .name("provider".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("provider runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                // A model ending in `-60ms` answers after 60 ms, like a fast real provider.
                let app = axum::Router::new().fallback(|body: bytes::Bytes| async move {
                    if body.windows(5).any(|w| w == b"-60ms") {
                        tokio::time::sleep(Duration::from_millis(60)).await;
                    }
                    ([("content-type", "application/json")], COMPLETION)
                });
                axum::serve(listener, app).await
            })
        })
        .expect("provider thread");
    provider
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

pub struct RequestSpec {
    pub url: String,
    pub token: Option<String>,
    pub body: String,
}

impl RequestSpec {
    /// POSTs the body; `true` if a 2xx answer arrived whole.
    pub async fn send(&self, http: &reqwest::Client) -> bool {
        let mut request = http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(self.body.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        }
    }
}

/// Sends `rate` POSTs per second for `seconds`, each on its own task at its scheduled time
/// (open loop: a slow answer does not delay the next request). Returns the sorted latencies
/// of successful requests and the number of failed ones.
pub async fn load(
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
            let ok = spec.send(&http).await;
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

pub fn pct(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `PODS_BENCH_SECONDS`, else `default`.
pub fn seconds(default: u32) -> u32 {
    std::env::var("PODS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts `moto_server` on 127.0.0.1:5055 unless something listens there already.
#[allow(
    clippy::zombie_processes,
    reason = "moto outlives the benchmark on purpose"
)]
pub fn moto() {
    let up = || std::net::TcpStream::connect("127.0.0.1:5055").is_ok();
    if up() {
        return;
    }
    Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", "5055"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server (pip install 'moto[server]')");
    let started = Instant::now();
    while !up() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

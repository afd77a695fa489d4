//! Helpers shared by the end-to-end tests: the real `pods` binary started as a server on
//! SQLite or PostgreSQL, an HTTP client for its API, and a provider server that speaks the
//! OpenAI, Anthropic and Gemini wire formats on loopback.

pub mod mock;
pub mod services;
pub mod ws;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `pods` binary of this build (`target/<profile>/pods`), next to the test executable's folder.
pub fn pods_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/pods
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable sits in target/<profile>/deps");
    let bin = dir.join(format!("pods{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p pods` (or `cargo test --workspace`, which builds it)",
        bin.display()
    );
    bin
}

/// The hostile test plugin, built by tests/build.rs.
pub fn hostile_wasm() -> Vec<u8> {
    std::fs::read(env!("PODS_HOSTILE_WASM")).expect("the hostile plugin was built")
}

/// Broken builds of the hostile plugin, for the upload refusal tests: a manifest with a
/// wildcard host, a `describe` that traps, a component of another world, one that calls itself
/// `openai` (and fails OpenAI's conformance vectors).
pub fn hostile_variant_wasm(variant: &str) -> Vec<u8> {
    let path = match variant {
        "wildcard-host" => env!("PODS_HOSTILE_WILDCARD_HOST_WASM"),
        "trap-in-describe" => env!("PODS_HOSTILE_TRAP_IN_DESCRIBE_WASM"),
        "wrong-world" => env!("PODS_HOSTILE_WRONG_WORLD_WASM"),
        "openai-impostor" => env!("PODS_HOSTILE_OPENAI_IMPOSTOR_WASM"),
        "extractor-impostor" => env!("PODS_HOSTILE_EXTRACTOR_IMPOSTOR_WASM"),
        "traversal-version" => env!("PODS_HOSTILE_TRAVERSAL_VERSION_WASM"),
        other => panic!("no hostile variant {other:?}"),
    };
    std::fs::read(path).expect("the hostile variant was built")
}

/// A scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pods-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Which SQL backend a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The local PostgreSQL server (trust auth), which `.ci/run` starts.
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, empty PostgreSQL database for one test; returns its URL.
pub async fn fresh_postgres_database(name: &str) -> String {
    use sqlx::Connection;
    let db = format!("pods_e2e_{}_{}", name, std::process::id());
    let mut conn = sqlx::postgres::PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .expect("PostgreSQL runs on 127.0.0.1:5432 (.ci/run starts it)");
    // Earlier runs of this test leave their databases behind; drop them (and ours, if reused).
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("pods_e2e_{name}_%"))
            .fetch_all(&mut conn)
            .await
            .expect("list databases");
    for old in stale {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .expect("drop database");
    }
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    format!("postgres://postgres@127.0.0.1:5432/{db}")
}

/// `env` with `extra` added to (and overriding) it.
fn overridden(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// See [`Server::spawn`].
pub const FILE_SIZE_LIMIT: &str = "E2E_FILE_SIZE_LIMIT";
/// See [`Server::spawn`].
pub const STDERR_FILE: &str = "E2E_STDERR_FILE";

/// A running `pods serve`, killed on drop.
pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Child,
}

impl Server {
    /// Starts `pods serve` on a free loopback port with its own data folder and database, and
    /// waits for `/health`. `extra_env` adds settings (e.g. a short provider timeout).
    pub async fn start(name: &str, backend: Backend, extra_env: &[(&str, &str)]) -> Server {
        let data_dir = scratch(name);
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", data_dir.join("pods.db").display()),
            Backend::Postgres => fresh_postgres_database(name).await,
        };
        let mut env: Vec<(String, String)> = vec![
            ("PODS_DATA_DIR".into(), data_dir.display().to_string()),
            ("DATABASE_URL".into(), database_url),
            (
                "PODS_JWT_SECRET".into(),
                "e2e-test-secret-0123456789".into(),
            ),
            (
                "PODS_MASTER_KEY".into(),
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Server::spawn(data_dir, env).await
    }

    /// Stops the server and starts it again on the same data and database, with `extra_env`
    /// added to (and overriding) its settings.
    pub async fn restart_with(mut self, extra_env: &[(&str, &str)]) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let env = overridden(std::mem::take(&mut self.env), extra_env);
        Server::spawn(self.data_dir.clone(), env).await
    }

    /// Sends SIGTERM and waits for the process to exit; returns how long that took.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let _ = self.child.wait();
        started.elapsed()
    }

    /// The database this server uses (`DATABASE_URL`).
    pub fn database_url(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// A fresh bearer token for the user with this email (`pods token`).
    pub fn token(&self, email: &str) -> String {
        let out = self.cli_with(&["token", "--user", email], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A second `pods serve` on the same data and database (another node), with `extra_env`.
    pub async fn another(&self, extra_env: &[(&str, &str)]) -> Server {
        let env = overridden(self.env.clone(), extra_env);
        Server::spawn(self.data_dir.clone(), env).await
    }

    async fn spawn(data_dir: PathBuf, env: Vec<(String, String)>) -> Server {
        let port = free_port();
        // `E2E_FILE_SIZE_LIMIT=BYTES` runs the server under a file size limit (a full disk, for
        // the chaos suite): writes past it fail with EFBIG instead of killing the process.
        let limit = env
            .iter()
            .find(|(k, v)| k == FILE_SIZE_LIMIT && !v.is_empty())
            .map(|(_, v)| v.clone());
        let mut command = match &limit {
            Some(bytes) => {
                let mut c = Command::new("bash");
                c.args([
                    "-c",
                    "trap '' XFSZ; exec prlimit --fsize=\"$1\" -- \"${@:2}\"",
                    "pods-disk-full",
                    bytes,
                ])
                .arg(pods_bin());
                c
            }
            None => Command::new(pods_bin()),
        };
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("PODS_PREVIOUS_MASTER_KEYS")
            .env_remove("PODS_MASTER_KEY_ID")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null());
        // `E2E_STDERR_FILE=PATH` keeps the server's logs in a file (for tests that read them).
        match env.iter().find(|(k, v)| k == STDERR_FILE && !v.is_empty()) {
            Some((_, path)) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the log file");
                command.stderr(file)
            }
            None => command.stderr(Stdio::inherit()),
        };
        let child = command.spawn().expect("start pods serve");
        let server = Server {
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            env,
            child,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let healthy = client.get(format!("{}/health", server.url)).send().await;
            if healthy.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "pods serve did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a `pods` CLI command with this server's settings and `extra_env`.
    pub fn cli_with(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        Command::new(pods_bin())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().copied())
            .output()
            .expect("run pods")
    }

    /// Runs a `pods` CLI command with `input` on its stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(pods_bin())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run pods");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("run pods")
    }

    /// Runs a `pods` CLI command against this server's data and database.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(pods_bin())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run pods")
    }

    /// Creates a user with a workspace of their own; returns a client acting as them and the
    /// workspace id.
    pub fn user_with_workspace(&self, email: &str, admin: bool) -> (Client, String, String) {
        let mut args = vec![
            "admin",
            "create-user",
            "--email",
            email,
            "--workspace",
            "Workspace",
        ];
        if admin {
            args.push("--admin");
        }
        let out = self.cli_with(&args, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let client = Client::new(&self.url, created["token"].as_str().expect("token"));
        (
            client,
            created["workspaceId"].as_str().expect("ws").to_string(),
            created["userId"].as_str().expect("user").to_string(),
        )
    }

    pub fn data(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A JSON API client with a bearer token.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// An API answer: status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Self {
        Client {
            base: base.to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Client::new(&self.base, token)
    }

    /// The same caller against another server (e.g. one restarted on a new port).
    pub fn with_base(&self, base: &str) -> Self {
        Client::new(base, &self.token)
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        reply(request.send().await.expect("request")).await
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body);
        reply(request.send().await.expect("request")).await
    }

    /// Queues an execution (`async: true` is added to `body`); returns its id.
    pub async fn enqueue(&self, ws: &str, mut body: Value) -> String {
        body["async"] = Value::Bool(true);
        let r = self
            .post(&format!("/api/v1/workspaces/{ws}/executions"), body)
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.body["executionId"].as_str().expect("id").to_string()
    }

    /// Polls the executions until each has finished (COMPLETED, ERROR or CANCELLED); returns
    /// their statuses in order. Fails the test after `within`.
    pub async fn wait_until_finished(
        &self,
        ws: &str,
        ids: &[String],
        within: Duration,
    ) -> Vec<String> {
        let started = Instant::now();
        loop {
            let mut statuses = Vec::with_capacity(ids.len());
            for id in ids {
                let e = self
                    .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
                    .await;
                statuses.push(e.body["status"].as_str().unwrap_or("?").to_string());
            }
            if statuses
                .iter()
                .all(|s| s == "COMPLETED" || s == "ERROR" || s == "CANCELLED")
            {
                return statuses;
            }
            assert!(started.elapsed() < within, "not all finished: {statuses:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stores the workspace's OpenAI key (sent to `base_url`) and creates a flow with one OpenAI
    /// pod of `model` whose user prompt is "hi". Returns (flow id, pod id).
    pub async fn openai_pod(
        &self,
        ws: &str,
        api_key: &str,
        base_url: &str,
        model: &str,
    ) -> (String, String) {
        self.provider_pod(ws, "openai", api_key, base_url, model)
            .await
    }

    /// As [`Client::openai_pod`], for any provider plugin.
    pub async fn provider_pod(
        &self,
        ws: &str,
        provider: &str,
        api_key: &str,
        base_url: &str,
        model: &str,
    ) -> (String, String) {
        let key = self
            .put(
                &format!("/api/v1/workspaces/{ws}/provider-keys/{provider}"),
                serde_json::json!({"apiKey": api_key, "baseUrl": base_url}),
            )
            .await;
        assert_eq!(key.status, 204, "{}", key.text);
        let flow = self
            .post(
                &format!("/api/v1/workspaces/{ws}/flows"),
                serde_json::json!({"name": "flow"}),
            )
            .await;
        let flow = flow.body["id"].as_str().expect("flow id").to_string();
        let pod = self
            .post(
                &format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"),
                serde_json::json!({"name": "pod", "provider": provider, "model": model, "userPrompt": "hi"}),
            )
            .await;
        assert_eq!(pod.status, 201, "{}", pod.text);
        (flow, pod.body["id"].as_str().expect("pod id").to_string())
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send("PUT", path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send("PATCH", path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None).await
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Parses a `text/event-stream` body into (event, JSON data) pairs.
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((event?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}

//! The chaos suite: things break while executions run — a worker is `kill -9`ed (on every queue
//! backend), Redis is flushed or restarted, PostgreSQL restarts, the provider answers 429 / 500 /
//! nothing / garbage / half a stream, a plugin traps, spins or hoards memory under load, the SQLite
//! disk fills up. Each scenario prints what happened to what was accepted; it passes when every
//! accepted execution ends in exactly one terminal state (completed, or failed with a typed error
//! code), nothing is lost, nothing is billed twice, and the server keeps serving.
//!
//! One test, scenarios in turn: restarting Redis or PostgreSQL must not hit other tests (cargo
//! runs test binaries one at a time). Loopback only, bounded in count and time.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use pods_e2e::mock::MockProvider;
use pods_e2e::services::{QueueKind, queue_env, with_queue};
use pods_e2e::{Backend, Client, Server, hostile_wasm};
use serde_json::{Value, json};

/// What every accepted execution of a scenario must come to.
#[derive(Clone, Copy)]
enum Expect {
    /// The fault is survivable: all complete.
    Complete,
    /// The fault is the execution's own: all fail, each with an error code.
    FailTyped,
    /// Either, each ending once.
    Terminal,
}

/// One scenario's outcome.
struct Row {
    scenario: String,
    expect: Expect,
    accepted: usize,
    completed: usize,
    failed_typed: usize,
    lost: usize,
    double_billed: usize,
}

impl Row {
    fn passed(&self) -> bool {
        let ended = match self.expect {
            Expect::Complete => self.completed,
            Expect::FailTyped => self.failed_typed,
            Expect::Terminal => self.completed + self.failed_typed,
        };
        self.lost == 0 && self.double_billed == 0 && ended == self.accepted
    }
}

/// Waits (up to `within`) for `ids` to end, then counts: completed, failed with an error code,
/// and lost (still not ended, or ended without a code); billing is the workspace's key usage.
async fn settle(
    scenario: &str,
    expect: Expect,
    client: &Client,
    ws: &str,
    ids: &[String],
    within: Duration,
) -> Row {
    let started = Instant::now();
    let views = loop {
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            views.push(
                client
                    .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
                    .await
                    .body,
            );
        }
        let ended = |v: &Value| matches!(v["status"].as_str(), Some("COMPLETED" | "ERROR"));
        if views.iter().all(ended) || started.elapsed() > within {
            break views;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let completed = views.iter().filter(|v| v["status"] == "COMPLETED").count();
    let failed_typed = views
        .iter()
        .filter(|v| v["status"] == "ERROR" && v["errorCode"].is_string())
        .count();
    let keys = client
        .get(&format!("/api/v1/workspaces/{ws}/provider-keys"))
        .await;
    let billed: usize = keys.body.as_array().map_or(0, |keys| {
        keys.iter()
            .filter_map(|k| k["requests"].as_u64())
            .sum::<u64>() as usize
    });
    Row {
        scenario: scenario.to_string(),
        expect,
        accepted: ids.len(),
        completed,
        failed_typed,
        lost: ids.len() - completed - failed_typed,
        double_billed: billed.saturating_sub(completed),
    }
}

/// A scenario's stage: a loopback provider, a server, and one user's workspace with an OpenAI
/// pod of `model` (the user is `chaos@pods.test`).
struct Stage {
    mock: MockProvider,
    server: Server,
    client: Client,
    ws: String,
    pod: String,
}

async fn stage(name: &str, backend: Backend, env: &[(&str, &str)], model: &str) -> Stage {
    let mock = MockProvider::start().await;
    let env: Vec<_> = env.iter().copied().chain([mock.egress()]).collect();
    let server = Server::start(name, backend, &env).await;
    let (client, ws, _) = server.user_with_workspace("chaos@pods.test", false);
    let url = format!("{}/v1", mock.url);
    let (_, pod) = client.openai_pod(&ws, "sk-chaos", &url, model).await;
    Stage {
        mock,
        server,
        client,
        ws,
        pod,
    }
}

/// The same caller on a restarted server.
fn caller(server: &Server) -> Client {
    Client::new(&server.url, &server.token("chaos@pods.test"))
}

async fn enqueue(client: &Client, ws: &str, pod: &str, n: usize, stream: bool) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(
            client
                .enqueue(ws, json!({"podId": pod, "stream": stream}))
                .await,
        );
    }
    ids
}

/// `kill -9` of the only worker node in the middle of 200 queued executions, then a restart.
async fn sigkill(backend: Backend, queue: QueueKind) -> Row {
    const TOTAL: usize = 200;
    let name = format!("chaos_kill_{backend:?}_{queue:?}").to_lowercase();
    let queue_env = queue_env(queue, &name);
    // Accept all 200 first (no workers), so the kill lands mid-run on every backend.
    let env = with_queue(
        &queue_env,
        &[("PODS_LEASE_SECS", "2"), ("PODS_WORKERS", "0")],
    );
    let Stage {
        mock,
        server,
        client,
        ws,
        pod,
    } = stage(&name, backend, &env, "gpt-4o-mini-delay").await;
    let ids = enqueue(&client, &ws, &pod, TOTAL, false).await;
    // A pool of fixed size: a growing one could finish all of them before the kill.
    let server = server
        .restart_with(&[("PODS_WORKERS", "10"), ("PODS_WORKERS_MAX", "10")])
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_kill = mock.seen().len();
    assert!(
        before_kill > 0 && before_kill < TOTAL,
        "the kill lands mid-run: {before_kill} calls so far"
    );
    let server = server.restart_with(&[]).await;
    let client = caller(&server);
    settle(
        &format!("kill -9 mid-run ({backend:?}, {queue:?} queue)"),
        Expect::Complete,
        &client,
        &ws,
        &ids,
        Duration::from_secs(90),
    )
    .await
}

/// `kill -9` while 20 synchronous executions wait on a slow provider: their callers are gone,
/// so after a restart each is ended as `INTERRUPTED` (not run again, not billed).
async fn sigkill_sync() -> Row {
    const TOTAL: usize = 20;
    let env = [("PODS_LEASE_SECS", "2")];
    let Stage {
        mock,
        server,
        ws,
        pod,
        ..
    } = stage("chaos_kill_sync", Backend::Sqlite, &env, "gpt-4o-mini-slow").await;
    // Their connections die with the server: these callers never get an answer.
    let (http, token) = (reqwest::Client::new(), server.token("chaos@pods.test"));
    let mut calls = Vec::new();
    for _ in 0..TOTAL {
        let request = http
            .post(format!("{}/api/v1/workspaces/{ws}/executions", server.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(json!({"podId": pod}).to_string());
        calls.push(tokio::spawn(request.send()));
    }
    let started = Instant::now();
    while mock.seen().len() < TOTAL {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "calls in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = server.restart_with(&[]).await;
    for call in calls {
        let _ = call.await;
    }
    let client = caller(&server);
    let history = client
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/pod/{pod}?limit=100"
        ))
        .await;
    let ids: Vec<String> = history.body.as_array().map_or(Vec::new(), |rows| {
        rows.iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    });
    assert_eq!(ids.len(), TOTAL, "{}", history.text);
    settle(
        "kill -9 during synchronous calls (callers gone)",
        Expect::FailTyped,
        &client,
        &ws,
        &ids,
        Duration::from_secs(30),
    )
    .await
}

/// Redis loses its data (`FLUSHALL`) or restarts empty while 200 executions run on it.
async fn redis_loses_everything(restart: bool) -> Row {
    const TOTAL: usize = 200;
    let name = format!("chaos_redis_{}", if restart { "restart" } else { "flush" });
    let queue_env = queue_env(QueueKind::Redis, &name);
    // A pool of fixed size, so Redis goes while executions are still waiting.
    let env = with_queue(
        &queue_env,
        &[
            ("PODS_LEASE_SECS", "2"),
            ("PODS_WORKERS", "10"),
            ("PODS_WORKERS_MAX", "10"),
        ],
    );
    // The provider and server stay bound: dropped, they would stop.
    let Stage {
        mock: _mock,
        server: _server,
        client,
        ws,
        pod,
    } = stage(&name, Backend::Postgres, &env, "gpt-4o-mini-delay").await;
    let ids = enqueue(&client, &ws, &pod, TOTAL, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if restart {
        let _ = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"])
            .output();
        tokio::time::sleep(Duration::from_millis(500)).await;
        pods_e2e::services::redis();
    } else {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379", "flushall"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success());
    }
    // The server kept serving through it.
    assert_eq!(client.get("/health").await.status, 200);
    let scenario = if restart {
        "Redis restarted (empty) mid-run"
    } else {
        "Redis flushed mid-run"
    };
    settle(
        scenario,
        Expect::Complete,
        &client,
        &ws,
        &ids,
        Duration::from_secs(90),
    )
    .await
}

/// PostgreSQL restarts while 200 executions run on the embedded queue.
async fn postgres_restarts() -> Row {
    const TOTAL: usize = 200;
    let env = [("PODS_LEASE_SECS", "2"), ("PODS_WORKERS", "10")];
    let Stage {
        mock: _mock,
        server: _server,
        client,
        ws,
        pod,
    } = stage(
        "chaos_postgres",
        Backend::Postgres,
        &env,
        "gpt-4o-mini-delay",
    )
    .await;
    let ids = enqueue(&client, &ws, &pod, TOTAL, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL's configuration")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max()
        .expect("a PostgreSQL version");
    let out = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .output()
        .expect("pg_ctlcluster");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    settle(
        "PostgreSQL restarted mid-run",
        Expect::Complete,
        &client,
        &ws,
        &ids,
        Duration::from_secs(90),
    )
    .await
}

/// The provider misbehaves: each fault its own workspace (so billing is counted per fault).
async fn provider_faults(rows: &mut Vec<Row>) {
    const EACH: usize = 20;
    let mock = MockProvider::start().await;
    let env = [
        ("PODS_WORKERS", "10"),
        ("PODS_MAX_ATTEMPTS", "2"),
        ("PODS_RETRY_BASE_MS", "100"),
        ("PODS_PROVIDER_TIMEOUT_SECS", "1"),
        mock.egress(),
    ];
    let server = Server::start("chaos_provider", Backend::Sqlite, &env).await;
    let faults = [
        ("provider answers 429", "gpt-4o-mini-rate-limited", false),
        ("provider answers 500", "gpt-4o-mini-server-error", false),
        ("provider hangs", "gpt-4o-mini-hang", false),
        (
            "provider answers malformed JSON",
            "gpt-4o-mini-malformed",
            false,
        ),
        ("provider's stream is cut midway", "gpt-4o-mini-cut", true),
        (
            "provider answers 429, 500, then well",
            "gpt-4o-mini-flaky",
            false,
        ),
    ];
    let mut runs = Vec::new();
    for (i, (scenario, model, stream)) in faults.iter().enumerate() {
        let email = format!("fault{i}@pods.test");
        let (client, ws, _) = server.user_with_workspace(&email, false);
        let url = format!("{}/v1", mock.url);
        let (_, pod) = client.openai_pod(&ws, "sk-fault", &url, model).await;
        let ids = enqueue(&client, &ws, &pod, EACH, *stream).await;
        runs.push((*scenario, client, ws, ids));
    }
    for (scenario, client, ws, ids) in runs {
        let expect = if scenario.ends_with("then well") {
            Expect::Complete
        } else {
            Expect::FailTyped
        };
        let row = settle(
            scenario,
            expect,
            &client,
            &ws,
            &ids,
            Duration::from_secs(90),
        )
        .await;
        rows.push(row);
    }
}

/// A plugin that traps, spins or hoards memory, 20 executions each, while another workspace's
/// synchronous executions keep being served.
async fn hostile_plugin_under_load(rows: &mut Vec<Row>) {
    const EACH: usize = 20;
    let mock = MockProvider::start().await;
    let env = [
        ("PODS_WORKERS", "10"),
        ("PODS_PLUGIN_DEADLINE_MS", "300"),
        mock.egress(),
    ];
    let server = Server::start("chaos_plugin", Backend::Sqlite, &env).await;
    let (admin, _, _) = server.user_with_workspace("plugin-admin@pods.test", true);
    let upload = admin
        .raw(
            "POST",
            "/api/v1/plugins",
            "application/wasm",
            hostile_wasm(),
        )
        .await;
    assert_eq!(upload.status, 201, "{}", upload.text);
    let url = format!("{}/v1", mock.url);
    let mut runs = Vec::new();
    for (i, (scenario, model)) in [
        ("plugin traps", "trap"),
        ("plugin loops", "loop"),
        ("plugin exhausts memory", "grow"),
    ]
    .into_iter()
    .enumerate()
    {
        let (client, ws, _) = server.user_with_workspace(&format!("hostile{i}@pods.test"), false);
        let (_, pod) = client
            .provider_pod(&ws, "hostile", "sk-hostile", &url, model)
            .await;
        let ids = enqueue(&client, &ws, &pod, EACH, false).await;
        runs.push((scenario, client, ws, ids));
    }
    // Meanwhile, a well-behaved workspace runs synchronous executions.
    let (client, ws, _) = server.user_with_workspace("bystander@pods.test", false);
    let (_, pod) = client
        .openai_pod(&ws, "sk-bystander", &url, "gpt-4o-mini")
        .await;
    let mut ids = Vec::new();
    for _ in 0..EACH {
        let r = client
            .post(
                &format!("/api/v1/workspaces/{ws}/executions"),
                json!({"podId": pod}),
            )
            .await;
        assert_eq!(r.status, 200, "served under plugin load: {}", r.text);
        ids.push(r.body["executionId"].as_str().expect("id").to_string());
    }
    for (scenario, client, ws, ids) in runs {
        rows.push(
            settle(
                scenario,
                Expect::FailTyped,
                &client,
                &ws,
                &ids,
                Duration::from_secs(90),
            )
            .await,
        );
    }
    rows.push(
        settle(
            "… a bystander's sync executions meanwhile",
            Expect::Complete,
            &client,
            &ws,
            &ids,
            Duration::from_secs(10),
        )
        .await,
    );
}

/// The SQLite disk fills up (a file size limit) while queued executions write large answers: the
/// server keeps serving reads; once the operator frees space (a restart without the limit) every
/// execution ends — completed, or typed — and none is billed twice.
async fn disk_full() -> Row {
    const TOTAL: usize = 30;
    let env = [
        (pods_e2e::FILE_SIZE_LIMIT, "6000000"),
        ("PODS_LEASE_SECS", "2"),
        ("PODS_WORKERS", "4"),
        ("PODS_WORKERS_MAX", "4"),
    ];
    let Stage {
        mock: _mock,
        server,
        client,
        ws,
        pod,
    } = stage(
        "chaos_disk_full",
        Backend::Sqlite,
        &env,
        "gpt-4o-mini-large",
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..TOTAL {
        let r = client
            .post(
                &format!("/api/v1/workspaces/{ws}/executions"),
                json!({"podId": pod, "async": true}),
            )
            .await;
        match r.status {
            202 => ids.push(r.body["executionId"].as_str().expect("id").to_string()),
            // Refused once the disk is full: typed, and not accepted.
            _ => assert_eq!(
                (r.status, r.body["error"]["code"].as_str()),
                (503, Some("STORE_UNAVAILABLE")),
                "{}",
                r.text
            ),
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        client.get("/health").await.status,
        200,
        "serving on a full disk"
    );
    let listed = client
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/pod/{pod}?limit=5"
        ))
        .await;
    assert_eq!(
        listed.status, 200,
        "reads work on a full disk: {}",
        listed.text
    );
    let server = server
        .restart_with(&[(pods_e2e::FILE_SIZE_LIMIT, "")])
        .await;
    let client = caller(&server);
    settle(
        "SQLite disk full mid-run, then space freed",
        Expect::Terminal,
        &client,
        &ws,
        &ids,
        Duration::from_secs(90),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let mut rows = vec![
        sigkill(Backend::Sqlite, QueueKind::Embedded).await,
        sigkill(Backend::Postgres, QueueKind::Embedded).await,
        sigkill(Backend::Postgres, QueueKind::Redis).await,
        sigkill(Backend::Sqlite, QueueKind::Sqs).await,
        sigkill_sync().await,
        redis_loses_everything(false).await,
        redis_loses_everything(true).await,
        postgres_restarts().await,
    ];
    rows.push(disk_full().await);
    provider_faults(&mut rows).await;
    hostile_plugin_under_load(&mut rows).await;

    let mut table = String::from(
        "| scenario | accepted | completed | failed (typed) | lost | double-billed | |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    for r in &rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.accepted,
            r.completed,
            r.failed_typed,
            r.lost,
            r.double_billed,
            if r.passed() { "pass" } else { "FAIL" }
        );
    }
    println!("\n{table}");
    assert!(rows.iter().all(Row::passed), "\n{table}");
}

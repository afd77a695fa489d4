//! What `docs/writing-a-plugin.md` tells an author to do, done by the test: `pods plugin new`
//! makes a Mistral plugin, cargo builds it, `pods plugin check` passes its vectors, it is dropped
//! into a running server's plugin folder and a pod uses it. Then the operator's side: a bumped
//! version uploaded while 200 executions run (every execution that starts after the swap runs the
//! new version), a pod pinned to the old one, per-plugin limits, the operator event stream, and a
//! restart that keeps the upload and the limits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Client, Server, pods_bin, scratch};
use serde_json::{Value, json};

/// The workspace root (tests/ sits in it).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `cargo build --release` in the plugin's crate, as the guide says; returns the component.
/// The workspace's lock file pins the same dependency versions (so no network is needed) and a
/// target folder under the workspace's keeps later runs incremental.
fn build_plugin(crate_dir: &Path) -> Vec<u8> {
    std::fs::copy(workspace().join("Cargo.lock"), crate_dir.join("Cargo.lock")).expect("lock");
    let target = workspace().join("target").join("plugin-template");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(crate_dir)
        .args(["build", "--release", "--offline", "--target-dir"])
        .arg(&target);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("run cargo");
    assert!(status.success(), "the template plugin builds");
    std::fs::read(target.join("wasm32-wasip2/release/mistral.wasm")).expect("the component")
}

fn plugin_rows<'a>(list: &'a Value, id: &str) -> Vec<&'a Value> {
    list["plugins"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["id"] == id).collect())
        .unwrap_or_default()
}

async fn wait_for_plugin(admin: &Client, id: &str, version: &str) -> Duration {
    let started = Instant::now();
    loop {
        let list = admin.get("/api/v1/plugins").await.body;
        if plugin_rows(&list, id)
            .iter()
            .any(|p| p["version"] == version)
        {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the operator event stream until `want` event types were seen (or 10 s passed).
async fn plugin_events(server: &Server, token: &str, want: &[&str]) -> Vec<Value> {
    let mut response = reqwest::Client::new()
        .get(format!("{}/api/v1/plugins/events", server.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    let (mut text, mut events) = (String::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while want
        .iter()
        .any(|w| !events.iter().any(|e: &Value| e["type"] == *w))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, response.chunk()).await else {
            break;
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        events = pods_e2e::sse_events(&text)
            .into_iter()
            .map(|(_, data)| data)
            .collect();
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_author_ships_a_plugin_from_the_template_and_operators_run_it() {
    // 1. The author: new, build, check.
    let dir = scratch("plugin_author_crate");
    let crate_dir = dir.join("mistral");
    let out = Command::new(pods_bin())
        .args(["plugin", "new", "mistral", "--name", "Mistral"])
        .args(["--base-url", "https://api.mistral.ai/v1"])
        .args(["--model", "mistral-small-latest", "--dir"])
        .arg(&crate_dir)
        .output()
        .expect("pods plugin new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v1 = build_plugin(&crate_dir);
    let wasm_path = dir.join("mistral.wasm");
    std::fs::write(&wasm_path, &v1).expect("write");
    let check = Command::new(pods_bin())
        .args(["plugin", "check"])
        .arg(&wasm_path)
        .arg("--vectors")
        .arg(crate_dir.join("vectors"))
        .env("PODS_DATA_DIR", dir.join("check-data"))
        .output()
        .expect("pods plugin check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}");
    assert!(report.contains("plugin mistral 0.1.0"), "{report}");
    assert!(report.contains("3 passed, 0 failed"), "{report}");

    // 2. The operator: drop it into the plugin folder of a running server; a pod uses it.
    let mock = MockProvider::start().await;
    let plugin_dir = dir.join("plugins.d");
    std::fs::create_dir_all(&plugin_dir).expect("plugin folder");
    let server = Server::start(
        "plugin_author",
        Backend::Sqlite,
        &[
            ("PLUGIN_DIR", plugin_dir.to_str().expect("utf-8")),
            ("PODS_WORKERS", "10"),
            mock.egress(),
        ],
    )
    .await;
    let (admin, ws, _) = server.user_with_workspace("author-admin@pods.test", true);
    std::fs::copy(&wasm_path, plugin_dir.join("mistral.wasm")).expect("drop");
    let took = wait_for_plugin(&admin, "mistral", "0.1.0").await;
    println!("the template plugin served {took:?} after it was dropped in");
    let (_, pod) = admin
        .provider_pod(
            &ws,
            "mistral",
            "sk-mistral",
            &format!("{}/v1", mock.url),
            "mistral-small-delay",
        )
        .await;
    let run = |body: Value| {
        let admin = admin.clone();
        let ws = ws.clone();
        async move {
            admin
                .post(&format!("/api/v1/workspaces/{ws}/executions"), body)
                .await
        }
    };
    let r = run(json!({"podId": pod})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["content"], pods_e2e::mock::OPENAI_ANSWER);
    let seen = mock.last("/v1/chat/completions");
    assert_eq!(seen.headers["user-agent"], "pods-plugin-mistral/0.1.0");
    assert_eq!(seen.headers["authorization"], "Bearer sk-mistral");

    // 3. A bumped version, uploaded while 200 queued executions run through the plugin.
    let cargo_toml = crate_dir.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&cargo_toml).expect("Cargo.toml");
    std::fs::write(
        &cargo_toml,
        manifest.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .expect("bump");
    let v2 = build_plugin(&crate_dir);
    // Half before the swap (a second of work for the 10 workers, so the swap lands while they
    // run, however slowly this machine enqueues), half after it (so the new version has work
    // whatever the timing).
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(admin.enqueue(&ws, json!({"podId": pod})).await);
    }
    let r = admin
        .raw("POST", "/api/v1/plugins", "application/wasm", v2)
        .await;
    let swapped_at = time::OffsetDateTime::now_utc();
    for _ in 0..100 {
        ids.push(admin.enqueue(&ws, json!({"podId": pod})).await);
    }
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (
            &r.body["plugin"]["version"],
            &r.body["replaced"],
            &r.body["active"]
        ),
        (&json!("0.2.0"), &json!("0.1.0"), &json!(true))
    );
    let statuses = admin
        .wait_until_finished(&ws, &ids, Duration::from_secs(90))
        .await;
    assert!(
        statuses.iter().all(|s| s == "COMPLETED"),
        "failed across the swap: {statuses:?}"
    );
    let (mut old, mut new) = (0, 0);
    for id in &ids {
        let e = admin
            .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
            .await
            .body;
        let started = time::OffsetDateTime::parse(
            e["startedAt"].as_str().expect("started"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339");
        match e["pluginVersion"].as_str() {
            Some("0.2.0") => new += 1,
            Some("0.1.0") => {
                old += 1;
                assert!(started < swapped_at, "{id} started after the swap on 0.1.0");
            }
            other => panic!("{id} ran on {other:?}"),
        }
    }
    println!("across the swap: {old} executions on 0.1.0, {new} on 0.2.0");
    assert!(new > 0, "the new version served executions after the swap");
    let list = admin.get("/api/v1/plugins").await.body;
    let rows = plugin_rows(&list, "mistral");
    let states: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|p| {
            (
                p["version"].as_str().unwrap_or("?"),
                p["state"].as_str().unwrap_or("?"),
                p["source"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("0.2.0", "active", "upload"), ("0.1.0", "loaded", "dir")]
    );
    assert!(rows[0]["calls"].as_u64().unwrap_or(0) >= new, "{list}");

    // 4. A pod pinned to the old version keeps it; an unknown version is refused.
    let pin = |version: Value| {
        let admin = admin.clone();
        let (ws, pod) = (ws.clone(), pod.clone());
        async move {
            admin
                .patch(
                    &format!("/api/v1/workspaces/{ws}/pods/{pod}"),
                    json!({"pluginVersion": version}),
                )
                .await
        }
    };
    assert_eq!(pin(json!("0.1.0")).await.status, 200);
    let r = run(json!({"podId": pod})).await;
    assert_eq!(
        mock.last("/v1/chat/completions").headers["user-agent"],
        "pods-plugin-mistral/0.1.0"
    );
    let e = admin
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/{}",
            r.body["executionId"].as_str().expect("id")
        ))
        .await;
    assert_eq!(e.body["pluginVersion"], "0.1.0");
    let r = pin(json!("9.9.9")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("UNKNOWN_PLUGIN_VERSION")),
        "{}",
        r.text
    );
    assert_eq!(pin(Value::Null).await.status, 200);
    // One version can be unloaded; the others keep serving.
    assert_eq!(
        admin
            .delete("/api/v1/plugins/mistral?version=0.1.0")
            .await
            .status,
        204
    );
    let list = admin.get("/api/v1/plugins").await.body;
    assert_eq!(plugin_rows(&list, "mistral").len(), 1, "{list}");
    assert_eq!(
        admin
            .delete("/api/v1/plugins/mistral?version=0.1.0")
            .await
            .status,
        404
    );

    // 5. Limits: narrowing the hosts stops calls to the workspace's base URL; cleared, they run.
    let limits = "/api/v1/plugins/mistral/limits";
    let r = admin
        .put(
            limits,
            json!({"allowedHosts": ["api.mistral.ai"], "deadlineMs": 500}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = run(json!({"podId": pod})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (502, Some("HOST_NOT_PERMITTED")),
        "{}",
        r.text
    );
    let r = admin.put(limits, json!({"deadlineMs": 0})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = admin.put(limits, json!({"deadlineMs": 700})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(run(json!({"podId": pod})).await.status, 200);

    // 6. What operators watched.
    let token = server.token("author-admin@pods.test");
    let events = plugin_events(
        &server,
        &token,
        &["plugin:loaded", "plugin:replaced", "plugin:limits"],
    )
    .await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("?"),
                e["source"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    for want in [
        ("plugin:loaded", "dir"),
        ("plugin:replaced", "upload"),
        ("plugin:limits", "api"),
    ] {
        assert!(seen.contains(&want), "{want:?} not in {seen:?}");
    }

    // 7. A restart keeps the upload (0.2.0 active again) and the limits.
    let server = server.restart_with(&[]).await;
    let admin = admin.with_base(&server.url);
    wait_for_plugin(&admin, "mistral", "0.2.0").await;
    let r = admin.get(limits).await;
    assert_eq!(r.body, json!({"deadlineMs": 700}));
    let r = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        mock.last("/v1/chat/completions").headers["user-agent"],
        "pods-plugin-mistral/0.2.0"
    );
}

/// The built-in extractor plugin: a pod's JSON answer becomes one of its fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extractor_plugin_pulls_a_field_out_of_a_json_answer() {
    let mock = MockProvider::start().await;
    // Operator limits from a file, too.
    let limits_file = scratch("extractor_limits").join("limits.json");
    std::fs::write(&limits_file, r#"{"json-field": {"deadlineMs": 200}}"#).expect("write");
    let server = Server::start(
        "extractor_plugin",
        Backend::Sqlite,
        &[
            ("PODS_PLUGIN_LIMITS", limits_file.to_str().expect("utf-8")),
            mock.egress(),
        ],
    )
    .await;
    let (admin, ws, _) = server.user_with_workspace("extractor@pods.test", true);
    let (_, pod) = admin
        .openai_pod(&ws, "sk-x", &format!("{}/v1", mock.url), "gpt-4o-mini-json")
        .await;
    let path = format!("/api/v1/workspaces/{ws}/pods/{pod}");
    let r = admin
        .patch(&path, json!({"outputExtractor": "json-field:/summary"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["content"], pods_e2e::mock::JSON_SUMMARY);
    let r = admin.get("/api/v1/plugins/json-field/limits").await;
    assert_eq!(r.body, json!({"deadlineMs": 200}));
    // An extractor that is not loaded is refused when the pod is saved.
    let r = admin
        .patch(&path, json!({"outputExtractor": "yaml-field:/summary"}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("UNKNOWN_EXTRACTOR")),
        "{}",
        r.text
    );
}

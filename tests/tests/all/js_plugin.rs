//! The plugin interface is language-neutral: `plugins/openai-js` is the OpenAI provider written in
//! JavaScript, built into a component with `@bytecodealliance/componentize-js` (installed here
//! with `npm ci`), and it passes the same conformance vectors as the Rust plugin — then serves a
//! pod in a running server.

use std::path::{Path, PathBuf};
use std::process::Command;

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Server, pods_bin, scratch};
use serde_json::json;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (Node.js and npm must be installed)"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_provider_passes_the_openai_vectors_and_serves_a_pod() {
    let dir = workspace().join("plugins/openai-js");
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let stale = std::fs::metadata(&installed)
        .and_then(|i| Ok(i.modified()? < std::fs::metadata(&lock)?.modified()?))
        .unwrap_or(true);
    if stale {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci",
        );
    }
    let scratch = scratch("js_plugin");
    let wasm = scratch.join("openai_js.wasm");
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(&wasm)
            .current_dir(&dir),
        "componentize-js",
    );

    let report = run(
        Command::new(pods_bin())
            .args(["plugin", "check"])
            .arg(&wasm)
            .arg("--vectors")
            .arg(workspace().join("plugins/openai/vectors"))
            .env("PODS_DATA_DIR", scratch.join("check-data")),
        "pods plugin check",
    );
    assert!(
        report.contains("plugin openai-js 0.1.0 (pods:provider@0.1.0): manifest ok"),
        "{report}"
    );
    let vectors = std::fs::read_dir(workspace().join("plugins/openai/vectors"))
        .expect("vectors")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert!(
        report.contains(&format!("{vectors} passed, 0 failed")),
        "{report}"
    );

    // Uploaded into a running server, it serves a pod like any plugin.
    let mock = MockProvider::start().await;
    let server = Server::start("js_plugin_server", Backend::Sqlite, &[mock.egress()]).await;
    let (admin, ws, _) = server.user_with_workspace("js@pods.test", true);
    let r = admin
        .raw(
            "POST",
            "/api/v1/plugins",
            "application/wasm",
            std::fs::read(&wasm).expect("component"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (_, pod) = admin
        .provider_pod(
            &ws,
            "openai-js",
            "sk-js",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini",
        )
        .await;
    for stream in [false, true] {
        let r = admin
            .post(
                &format!("/api/v1/workspaces/{ws}/executions"),
                json!({"podId": pod, "stream": stream}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        if !stream {
            assert_eq!(r.body["content"], pods_e2e::mock::OPENAI_ANSWER);
            assert_eq!(r.body["usage"]["promptTokens"], 20);
            assert_eq!(r.body["usage"]["cachedTokens"], 8);
        } else {
            assert!(r.text.contains("event: done"), "{}", r.text);
        }
    }
    assert_eq!(
        mock.last("/v1/chat/completions").headers["authorization"],
        "Bearer sk-js"
    );
}

//! The real `pods` binary, driven as an operator and a plugin author would.

use std::process::{Command, Output};

use pods_e2e::{Backend, Client, Server, pods_bin, scratch};

fn pods(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(pods_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run pods")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn plugin_check_passes_every_builtin_plugin() {
    let data = scratch("check-builtins");
    for id in ["openai", "anthropic", "gemini"] {
        let out = pods(&data, &["plugin", "check", id]);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{id}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("FAIL"), "{id}:\n{text}");
        let summary = text.lines().last().unwrap_or_default();
        assert!(summary.ends_with(" passed, 0 failed"), "{id}: {summary}");
    }
}

#[test]
fn plugin_check_fails_a_plugin_that_does_not_speak_the_provider_format() {
    let data = scratch("check-hostile");
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/openai/vectors");
    let out = pods(
        &data,
        &[
            "plugin",
            "check",
            env!("PODS_HOSTILE_WASM"),
            "--vectors",
            vectors,
        ],
    );
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL plain:"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap_or_default()
            .starts_with("0 passed"),
        "{text}"
    );
}

#[test]
fn plugin_inspect_prints_the_manifest() {
    let data = scratch("inspect");
    let out = pods(&data, &["plugin", "inspect", env!("PODS_HOSTILE_WASM")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON manifest");
    assert_eq!(manifest["id"], "hostile");
    assert_eq!(manifest["apiVersion"], "0.1.0");
    assert_eq!(
        manifest["allowedHosts"],
        serde_json::json!(["api.hostile.test"])
    );

    let out = pods(&data, &["plugin", "inspect", "/nonexistent.wasm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a built-in plugin"));
}

#[tokio::test]
async fn serve_answers_health_and_lists_the_builtin_plugins_to_signed_in_users() {
    let server = Server::start("serve", Backend::Sqlite, &[]).await;
    let health = Client::new(&server.url, "").get("/health").await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (200, Some("ok"))
    );
    let anonymous = Client::new(&server.url, "not-a-token")
        .get("/api/v1/plugins")
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["error"]["code"], "UNAUTHORIZED");
    let (client, _, _) = server.user_with_workspace("plugins@pods.test", false);
    let plugins = client.get("/api/v1/plugins").await;
    let ids: Vec<&str> = plugins.body["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["anthropic", "gemini", "json-field", "openai"]);
    let kinds: Vec<&str> = plugins.body["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["provider", "provider", "extractor", "provider"]);
    let openapi = client.get("/api/v1/openapi.json").await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.body["paths"]["/api/v1/workspaces/{ws}/executions"]["post"].is_object());
    let docs = client.get("/api/v1/docs").await;
    assert_eq!(docs.status, 200);
    assert!(docs.text.contains("<html"), "a browsable reference");
}

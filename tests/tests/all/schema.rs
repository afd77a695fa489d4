//! Schema testing: schemathesis (PyPI) generates requests from the served OpenAPI document — valid
//! ones, invalid ones, sequences — against a running server whose workspace holds a flow, pods,
//! an edge, a key and an execution, and checks every answer: no 5xx, every status and body as documented, invalid
//! input refused, valid input accepted. Bounded and deterministic here; for a longer, random run:
//!
//! ```sh
//! PODS_SCHEMATHESIS_EXAMPLES=500 PODS_SCHEMATHESIS_RANDOM=1 cargo test -p pods-e2e --test all -- schema:: --nocapture
//! ```
//!
//! `tests/schema/schemathesis.toml` lists the one rule the document cannot state (a price's end
//! after its start). The plugin upload (`application/wasm`) and the WebSocket upgrade are not
//! HTTP-with-JSON operations and are tested elsewhere.

use std::process::Command;

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Server};
use serde_json::json;

/// The schemathesis CLI, installed with pip if missing (tests/services.sh installs it too).
fn schemathesis() -> &'static str {
    let found = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "schemathesis"])
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install schemathesis failed");
    }
    "schemathesis"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_matches_its_openapi_document() {
    let mock = MockProvider::start().await;
    // Schemathesis sends bad credentials to every operation on purpose: past the failed-auth
    // limit those would be 429 (tested in the security suite), so the limit is off here.
    let server = Server::start(
        "schemathesis",
        Backend::Sqlite,
        &[mock.egress(), ("PODS_RATE_AUTH_FAILURES_PER_MIN", "0")],
    )
    .await;
    let (admin, ws, _) = server.user_with_workspace("schema@pods.test", true);
    let (flow, pod) = admin
        .openai_pod(&ws, "sk-schema", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    let second = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"),
            json!({"name": "b", "provider": "openai", "model": "gpt-4o-mini", "userPrompt": "hi"}),
        )
        .await;
    let second = second.body["id"].as_str().expect("pod").to_string();
    let edge = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/flows/{flow}/edges"),
            json!({"sourcePodId": pod, "targetPodId": second}),
        )
        .await;
    assert_eq!(edge.status, 201, "{}", edge.text);
    let execution = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod}),
        )
        .await;
    assert_eq!(execution.status, 200, "{}", execution.text);
    let user = admin.get("/api/v1/workspaces").await;
    assert_eq!(user.status, 200);

    // The workspace's real id, so requests reach past the 404s; the stateful phase finds flows,
    // pods and edges by following what it creates (an id fixed here would point it elsewhere).
    let config =
        std::env::temp_dir().join(format!("pods-schemathesis-{}.toml", std::process::id()));
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/schemathesis.toml"
    ))
    .expect("schemathesis.toml");
    std::fs::write(
        &config,
        format!("{base}\n[parameters]\n\"path.ws\" = \"{ws}\"\n\"path.provider\" = \"openai\"\n"),
    )
    .expect("config");

    let examples = std::env::var("PODS_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let mut cmd = Command::new(schemathesis());
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.url))
        .args([
            "-H",
            &format!("Authorization: Bearer {}", server.token("schema@pods.test")),
        ])
        .args([
            "-n",
            &examples,
            "--max-failures",
            "20",
            "--request-timeout",
            "10",
        ])
        .args([
            "--exclude-path-regex",
            "/ws$",
            "--exclude-operation-id",
            "upload_plugin",
        ]);
    if std::env::var_os("PODS_SCHEMATHESIS_RANDOM").is_none() {
        cmd.arg("--generation-deterministic");
    }
    let out = cmd.output().expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    let _ = std::fs::remove_file(&config);
}

/// What the document says about errors is what clients get: `executionId` beside `error`, and a
/// malformed id in a path is an unknown one (404), not a 400.
#[tokio::test]
async fn errors_are_documented_as_answered() {
    let server = Server::start("schema_errors", Backend::Sqlite, &[]).await;
    let (client, ws, _) = server.user_with_workspace("errors@pods.test", false);
    let doc = client.get("/api/v1/openapi.json").await.body;
    let error = &doc["components"]["schemas"]["Error"];
    assert!(error["properties"]["executionId"].is_object(), "{error}");
    assert!(
        error["properties"]["error"]["properties"]
            .get("executionId")
            .is_none(),
        "{error}"
    );
    let path = "/api/v1/workspaces/{ws}/executions/{id}";
    let answers = &doc["paths"][path]["get"]["responses"];
    assert!(answers.get("404").is_some(), "{answers}");
    assert!(answers.get("400").is_none(), "{answers}");
    let malformed = client
        .get(&format!("/api/v1/workspaces/{ws}/executions/not-a-uuid"))
        .await;
    assert_eq!(malformed.status, 404, "{}", malformed.text);
    // The execute route documents its own statuses, each with a body.
    let execute = &doc["paths"]["/api/v1/workspaces/{ws}/executions"]["post"]["responses"];
    for status in ["202", "409", "502", "504"] {
        assert!(
            execute[status]["content"]["application/json"].is_object(),
            "{status}: {execute}"
        );
    }
}

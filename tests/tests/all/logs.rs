//! What an operator reads: every request has an id (`x-request-id`, the client's or a new one)
//! that its answer, its log lines and the execution it records carry; `PODS_LOG_FORMAT=json`
//! writes one JSON object a line; and no secret — a provider key, an API key, a token, the master
//! key — appears anywhere in the logs of a run that used them all, at debug level.

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, STDERR_FILE, Server};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_have_ids_logs_are_json_lines_and_hold_no_secret() {
    let mock = MockProvider::start().await;
    let log = std::env::temp_dir().join(format!("pods-logs-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let log_path = log.display().to_string();
    let mut server = Server::start(
        "logs_json",
        Backend::Sqlite,
        &[
            mock.egress(),
            ("PODS_LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
            (STDERR_FILE, log_path.as_str()),
        ],
    )
    .await;
    let (owner, ws, _) = server.user_with_workspace("logs@pods.test", false);
    let provider_key = "sk-logtest-provider-key-5f3e9a";
    let (_, pod) = owner
        .openai_pod(
            &ws,
            provider_key,
            &format!("{}/v1", mock.url),
            "gpt-4o-mini",
        )
        .await;
    let made = owner
        .post(
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            json!({"name": "logs", "role": "member"}),
        )
        .await;
    let api_key = made.body["key"].as_str().expect("key").to_string();
    let token = server.token("logs@pods.test");

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/workspaces/{ws}/executions", server.url);
    let send = |body: Value, request_id: Option<&'static str>| {
        let mut request = http
            .post(&url)
            .bearer_auth(&api_key)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    // The client's id comes back, and the execution records it.
    let r = send(json!({"podId": pod}), Some("client-req-7"))
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-req-7");
    let result: Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
    let id = result["executionId"].as_str().expect("id");
    let recorded = owner
        .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
        .await;
    assert_eq!(recorded.body["requestId"], "client-req-7");
    // Without one (or with one that is not sensible), the server makes one up.
    for sent in [None, Some("has spaces in it")] {
        let mut request = http.get(format!("{}/health", server.url));
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let r = request.send().await.expect("send");
        let made = r.headers()["x-request-id"]
            .to_str()
            .expect("text")
            .to_string();
        let is_uuid = made.len() == 36 && made.bytes().filter(|b| *b == b'-').count() == 4;
        assert!(is_uuid, "{made}");
    }
    // Streamed, queued and failing calls log too.
    let streamed = send(json!({"podId": pod, "stream": true}), None)
        .await
        .expect("send");
    assert_eq!(streamed.status(), 200);
    let _ = streamed.text().await;
    let queued = send(json!({"podId": pod, "async": true}), None)
        .await
        .expect("send");
    assert_eq!(queued.status(), 202);
    let queued: Value = serde_json::from_str(&queued.text().await.expect("body")).expect("json");
    let queued = queued["executionId"].as_str().expect("id").to_string();
    let failing = send(
        json!({"podId": pod, "model": "gpt-4o-mini-server-error"}),
        None,
    )
    .await
    .expect("send");
    assert_eq!(failing.status(), 502);
    let statuses = owner
        .wait_until_finished(&ws, &[queued], std::time::Duration::from_secs(20))
        .await;
    assert_eq!(statuses, ["COMPLETED"]);
    server.terminate();

    let text = std::fs::read_to_string(&log).expect("the server's log");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 20, "{} lines", lines.len());
    let mut with_request = 0;
    let mut with_execution = 0;
    for line in &lines {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["timestamp", "level", "target"] {
            assert!(entry.get(field).is_some(), "no {field}: {line}");
        }
        let spans = entry["spans"].to_string();
        with_request += usize::from(spans.contains("\"request_id\":\"client-req-7\""));
        with_execution += usize::from(spans.contains(&format!("\"execution_id\":\"{id}\"")));
    }
    assert!(with_request > 0, "no line carries the request id");
    assert!(with_execution > 0, "no line carries the execution id");
    let master_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    for (what, secret) in [
        ("the provider key", provider_key),
        ("the API key", api_key.as_str()),
        ("the API key's secret part", &api_key[5..]),
        ("a token", token.as_str()),
        ("the master key", master_key),
        ("the token-signing secret", "e2e-test-secret-0123456789"),
    ] {
        assert!(!text.contains(secret), "{what} is in the logs");
    }
}

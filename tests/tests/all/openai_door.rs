//! The OpenAI-compatible front door, called by the official OpenAI Python SDK (PyPI `openai`,
//! installed by tests/services.sh) against a running server whose providers are the local
//! stand-ins: openai/, anthropic/, gemini/ models and a pod, plain and streamed; JSON mode;
//! `models.list()`; a bad key, an unknown model, `tools` and a rate limit as the SDK's own
//! exceptions. Each answer's usage, cost and execution are checked against what Pods recorded.

use std::process::Command;

use pods_e2e::mock::{MockProvider, OPENAI_ANSWER};
use pods_e2e::{Backend, Client, Server};
use serde_json::{Value, json};

/// The SDK, installed if missing (tests/services.sh installs it too).
fn ensure_sdk() {
    let found = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "openai"])
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install openai failed");
    }
}

async fn make_key(owner: &Client, ws: &str, body: Value) -> String {
    let r = owner
        .post(&format!("/api/v1/workspaces/{ws}/api-keys"), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["key"].as_str().expect("key").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_calls_every_provider_and_a_pod() {
    ensure_sdk();
    let mock = MockProvider::start().await;
    let server = Server::start("openai_door", Backend::Sqlite, &[mock.egress()]).await;
    let (owner, ws, _) = server.user_with_workspace("door@pods.test", false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-door", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    for provider in ["anthropic", "gemini"] {
        let r = owner
            .put(
                &format!("/api/v1/workspaces/{ws}/provider-keys/{provider}"),
                json!({"apiKey": format!("{provider}-door-key"), "baseUrl": mock.url}),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let key = make_key(&owner, &ws, json!({"name": "sdk", "role": "member"})).await;
    let limited = make_key(
        &owner,
        &ws,
        json!({"name": "sdk-limited", "role": "member", "rpm": 2}),
    )
    .await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/openai_sdk/check.py");
    let out = Command::new("python3")
        .arg(script)
        .env("PODS_V1", format!("{}/v1", server.url))
        .env("PODS_KEY", &key)
        .env("PODS_RPM_KEY", &limited)
        .env("PODS_POD", &pod)
        .output()
        .expect("run the SDK script");
    assert!(
        out.status.success(),
        "the SDK script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");

    // Plain calls: usage, the cost header and the execution, as recorded.
    for (model, answer) in results["plain"].as_object().expect("plain") {
        let id = answer["execution_id"]
            .as_str()
            .expect("x-pods-execution-id");
        assert_eq!(answer["id"], format!("chatcmpl-{id}"), "{model}");
        assert_eq!(answer["model"], model.as_str());
        let recorded = owner
            .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
            .await;
        assert_eq!(recorded.body["status"], "COMPLETED", "{model}");
        assert_eq!(answer["content"], recorded.body["content"], "{model}");
        let usage = &recorded.body["usage"];
        let reasoning = usage["reasoningTokens"].as_u64().unwrap_or(0);
        assert_eq!(
            answer["usage"]["prompt_tokens"], usage["promptTokens"],
            "{model}"
        );
        assert_eq!(
            answer["usage"]["completion_tokens"].as_u64(),
            usage["completionTokens"].as_u64().map(|c| c + reasoning),
            "{model}: OpenAI counts reasoning in completion_tokens"
        );
        assert_eq!(
            answer["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
            Some(usage["cachedTokens"].as_u64().unwrap_or(0)),
            "{model}"
        );
        assert_eq!(
            answer["cost_usd"].as_str(),
            recorded.body["costInUsd"].as_str(),
            "{model}: x-pods-cost-usd"
        );
        assert!(answer["cost_usd"].is_string(), "{model} is priced");
        let is_pod = model.starts_with("pod/");
        assert_eq!(
            recorded.body["podId"].is_null(),
            !is_pod,
            "{model}: a provider/model call has no pod"
        );
        assert_eq!(
            recorded.body["provider"],
            model
                .split('/')
                .next()
                .filter(|_| !is_pod)
                .unwrap_or("openai")
        );
    }
    assert_eq!(
        results["plain"]["openai/gpt-4o-mini"]["content"],
        OPENAI_ANSWER
    );

    // Streamed: the text, the usage chunk, and Pods' execution id and cost in it.
    for (model, answer) in results["streamed"].as_object().expect("streamed") {
        let id = answer["pods"]["executionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{model}: pods.executionId in the usage chunk: {answer}"));
        let recorded = owner
            .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
            .await;
        assert_eq!(recorded.body["status"], "COMPLETED", "{model}");
        assert_eq!(recorded.body["streamed"], true, "{model}");
        assert_eq!(answer["content"], recorded.body["content"], "{model}");
        assert_eq!(answer["finish_reason"], "stop", "{model}");
        assert_eq!(
            answer["usage"]["prompt_tokens"], recorded.body["usage"]["promptTokens"],
            "{model}"
        );
        assert_eq!(
            answer["pods"]["costUsd"].as_str(),
            recorded.body["costInUsd"].as_str(),
            "{model}"
        );
        // The system message and the joined text parts reached the provider's request.
        let sent = recorded.body["requestMetadata"]["request"]["messages"].to_string();
        assert!(
            sent.contains("Be brief.") && sent.contains("Explain\\nqubits."),
            "{model}: {sent}"
        );
    }

    // JSON mode reached the provider.
    let json_mode = &results["json_mode"];
    assert!(
        json_mode["content"]
            .as_str()
            .is_some_and(|c| c.contains("summary"))
    );
    let asked = mock
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.body["model"] == "gpt-4o-mini-json")
        .expect("the JSON-mode call reached the provider");
    assert_eq!(
        asked.body["response_format"],
        json!({"type": "json_object"})
    );

    // models.list(): provider/model for the providers with a key.
    let models: Vec<&str> = results["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4-5",
        "gemini/gemini-2.5-flash",
    ] {
        assert!(models.contains(&expected), "{expected} in {models:?}");
    }

    // Errors, as the SDK's own exceptions.
    let errors = &results["errors"];
    assert_eq!(errors["bad_key"]["class"], "AuthenticationError");
    assert_eq!(errors["unknown_model"]["class"], "NotFoundError");
    assert_eq!(errors["unknown_model"]["body"]["code"], "model_not_found");
    assert_eq!(errors["tools"]["class"], "BadRequestError");
    assert_eq!(errors["tools"]["body"]["code"], "unsupported_parameter");
    assert_eq!(errors["tools"]["body"]["param"], "tools");
    let limits = errors["rate_limit"].as_array().expect("three calls");
    assert!(limits[0].is_null() && limits[1].is_null(), "{limits:?}");
    assert_eq!(limits[2]["class"], "RateLimitError");

    // Every call is an execution of the workspace; those without a pod are listed with podId null.
    let history = owner
        .get(&format!("/api/v1/workspaces/{ws}/executions?limit=100"))
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let listed = history.body.as_array().expect("list");
    let podless = listed.iter().filter(|e| e["podId"].is_null()).count();
    // 3 providers × (plain + streamed), JSON mode, 2 calls under the rpm key.
    assert_eq!(podless, 9, "{}", history.text);
    let by_pod = owner
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions?podId={pod}&status=COMPLETED"
        ))
        .await;
    assert_eq!(
        by_pod.body.as_array().map(Vec::len),
        Some(2),
        "{}",
        by_pod.text
    );
    let by_model = owner
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions?model=claude-sonnet-4-5"
        ))
        .await;
    assert_eq!(
        by_model.body.as_array().map(Vec::len),
        Some(2),
        "{}",
        by_model.text
    );
}

/// The door's own contract, over plain HTTP: a token needs `X-Pods-Workspace`; errors are
/// OpenAI's shape; a provider/model call is published on the workspace's WebSocket.
#[tokio::test]
async fn a_token_names_its_workspace_and_errors_are_openais() {
    let mock = MockProvider::start().await;
    let server = Server::start("openai_door_http", Backend::Sqlite, &[mock.egress()]).await;
    let (owner, ws, _) = server.user_with_workspace("door-http@pods.test", false);
    owner
        .openai_pod(&ws, "sk-door", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    let token = server.token("door-http@pods.test");
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", server.url);
    let body =
        json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let post = |workspace: Option<&str>| {
        let mut request = http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(ws) = workspace {
            request = request.header("x-pods-workspace", ws);
        }
        request.send()
    };
    let mut path = format!("/api/v1/workspaces/{ws}/ws?token={token}");
    let mut socket = pods_e2e::ws::connect(&server, &path)
        .await
        .expect("connects");

    let without = post(None).await.expect("send");
    assert_eq!(without.status(), 400);
    let error: Value = serde_json::from_str(&without.text().await.expect("body")).expect("json");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"].is_string());

    let with = post(Some(&ws)).await.expect("send");
    assert_eq!(with.status(), 200);
    let id = with.headers()["x-pods-execution-id"]
        .to_str()
        .expect("id")
        .to_string();
    let events = pods_e2e::ws::events_until(&mut socket, &id, "execution:completed").await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["execution:running", "execution:completed"]);

    let other = post(Some("not-my-workspace")).await.expect("send");
    assert_eq!(other.status(), 404);

    // A provider's failure: 502 in OpenAI's shape, naming the recorded execution.
    let key = make_key(
        &owner,
        &ws,
        json!({"name": "door", "role": "member", "monthlyBudgetUsd": "0.000009"}),
    )
    .await;
    let with_key = |body: Value, idempotency: Option<&'static str>| {
        let mut request = http
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = idempotency {
            request = request.header("idempotency-key", k);
        }
        request.send()
    };
    let failing = with_key(
        json!({"model": "openai/gpt-4o-mini-server-error", "messages": [{"role": "user", "content": "hi"}]}),
        None,
    )
    .await
    .expect("send");
    assert_eq!(failing.status(), 502);
    let failed_id = failing.headers()["x-pods-execution-id"]
        .to_str()
        .expect("id")
        .to_string();
    let error: Value = serde_json::from_str(&failing.text().await.expect("body")).expect("json");
    assert_eq!(error["error"]["type"], "api_error");
    let recorded = owner
        .get(&format!("/api/v1/workspaces/{ws}/executions/{failed_id}"))
        .await;
    assert_eq!(recorded.body["status"], "ERROR");

    // Idempotency-Key: the same key answers with the same execution, marked as a replay.
    let first = with_key(body.clone(), Some("door-1")).await.expect("send");
    assert_eq!(first.status(), 200);
    let first_id = first.headers()["x-pods-execution-id"].clone();
    let again = with_key(body.clone(), Some("door-1")).await.expect("send");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-pods-execution-id"], first_id);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let replayed: Value = serde_json::from_str(&again.text().await.expect("body")).expect("json");
    assert_eq!(replayed["object"], "chat.completion");

    // That call spent the key's monthly budget: OpenAI's SDKs expect 429 insufficient_quota.
    let spent = with_key(body.clone(), None).await.expect("send");
    assert_eq!(spent.status(), 429);
    let error: Value = serde_json::from_str(&spent.text().await.expect("body")).expect("json");
    assert_eq!(error["error"]["code"], "insufficient_quota");

    // Not a member of the workspace: its socket is not theirs either.
    let (_, _, _) = server.user_with_workspace("stranger@pods.test", false);
    path = format!(
        "/api/v1/workspaces/{ws}/ws?token={}",
        server.token("stranger@pods.test")
    );
    assert_eq!(pods_e2e::ws::connect(&server, &path).await.err(), Some(404));
}

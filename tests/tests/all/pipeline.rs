//! The seed's three-pod flow (research → summary → action items), one pod per provider, run
//! through `pods serve` against a loopback provider server speaking each provider's wire format.
//! The same suite runs on SQLite and on PostgreSQL.

use pods_e2e::mock::{ANTHROPIC_ANSWER, GEMINI_CHUNKS, MockProvider, OPENAI_ANSWER};
use pods_e2e::{Backend, Client, Server, sse_events};
use serde_json::{Value, json};

#[tokio::test]
async fn seed_flow_on_sqlite() {
    seed_flow(Backend::Sqlite, &[]).await;
}

#[tokio::test]
async fn seed_flow_on_postgres() {
    seed_flow(Backend::Postgres, &[]).await;
}

#[tokio::test]
async fn seed_flow_with_pod_configs_in_dynamodb() {
    let env = pods_e2e::services::dynamodb_env("seed");
    seed_flow(Backend::Sqlite, &pods_e2e::services::with_queue(&env, &[])).await;
}

#[tokio::test]
async fn bad_input_and_provider_failures_on_sqlite() {
    bad_input_and_provider_failures(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_input_and_provider_failures_on_postgres() {
    bad_input_and_provider_failures(Backend::Postgres).await;
}

struct Flow {
    client: Client,
    ws: String,
    flow: String,
    research: String,
    summary: String,
    actions: String,
}

async fn setup(server: &Server, mock: &MockProvider, name: &str) -> Flow {
    let (client, ws, _) = server.user_with_workspace(&format!("{name}@pods.test"), false);
    for (provider, base) in [
        ("openai", format!("{}/v1", mock.url)),
        ("anthropic", mock.url.clone()),
        ("gemini", mock.url.clone()),
    ] {
        let r = client
            .put(
                &format!("/api/v1/workspaces/{ws}/provider-keys/{provider}"),
                json!({"apiKey": format!("sk-{provider}-e2e-key"), "baseUrl": base}),
            )
            .await;
        assert_eq!(r.status, 204, "{provider}: {}", r.text);
    }
    let flow = client
        .post(
            &format!("/api/v1/workspaces/{ws}/flows"),
            json!({"name": "Quantum brief"}),
        )
        .await;
    assert_eq!(flow.status, 201, "{}", flow.text);
    let flow = flow.body["id"].as_str().expect("flow id").to_string();
    let pods = format!("/api/v1/workspaces/{ws}/flows/{flow}/pods");
    let research = client
        .post(&pods, json!({"name": "research", "provider": "openai", "model": "gpt-4o-mini", "systemPrompt": "You are a careful researcher.", "userPrompt": "What is quantum computing?", "temperature": 0.2, "maxTokens": 300}))
        .await;
    assert_eq!(research.status, 201, "{}", research.text);
    let research = research.body["id"].as_str().expect("id").to_string();
    let summary = client
        .post(&pods, json!({"name": "summary", "provider": "ANTHROPIC", "model": "claude-sonnet-4-5", "systemPrompt": format!("Summarize this research: {{{{{research}}}}}"), "userPrompt": "Three bullets, please."}))
        .await;
    assert_eq!(summary.status, 201, "{}", summary.text);
    assert_eq!(
        summary.body["provider"], "anthropic",
        "provider ids are normalized"
    );
    let summary = summary.body["id"].as_str().expect("id").to_string();
    let actions = client
        .post(&pods, json!({"name": "action items", "provider": "gemini", "model": "gemini-2.5-flash", "systemPrompt": "You write action items.", "userPrompt": format!("From {{{{{summary}.output}}}} (research: {{{{ {research} }}}}), list action items."), "thinkingBudget": 512}))
        .await;
    assert_eq!(actions.status, 201, "{}", actions.text);
    let actions = actions.body["id"].as_str().expect("id").to_string();
    for (source, target) in [(&research, &summary), (&summary, &actions)] {
        let r = client
            .post(
                &format!("/api/v1/workspaces/{ws}/flows/{flow}/edges"),
                json!({"sourcePodId": source, "targetPodId": target}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    Flow {
        client,
        ws,
        flow,
        research,
        summary,
        actions,
    }
}

async fn seed_flow(backend: Backend, env: &[(&str, &str)]) {
    let mock = MockProvider::start().await;
    let name = format!("seed_{backend:?}_{}", env.len()).to_lowercase();
    let env: Vec<_> = env.iter().copied().chain([mock.egress()]).collect();
    let server = Server::start(&name, backend, &env).await;
    let Flow {
        client,
        ws,
        flow,
        research,
        summary,
        actions,
    } = setup(&server, &mock, "seed").await;

    let order = client
        .get(&format!(
            "/api/v1/workspaces/{ws}/flows/{flow}/execution-order"
        ))
        .await;
    assert_eq!(order.body["order"], json!([research, summary, actions]));
    // An edge back to the start would close a cycle.
    let cycle = client
        .post(
            &format!("/api/v1/workspaces/{ws}/flows/{flow}/edges"),
            json!({"sourcePodId": actions, "targetPodId": research}),
        )
        .await;
    assert_eq!(
        (cycle.status, cycle.body["error"]["code"].as_str()),
        (400, Some("EDGE_CYCLE"))
    );

    // 1. research (OpenAI, sync), as in the seed's example: provider and model may be overridden.
    let run = client
        .post(&format!("/api/v1/workspaces/{ws}/executions"), json!({"podId": research, "provider": "OPENAI", "model": "gpt-4o-mini", "async": false}))
        .await;
    assert_eq!(run.status, 200, "{}", run.text);
    assert_eq!(run.body["status"], "COMPLETED");
    assert_eq!(run.body["content"], OPENAI_ANSWER);
    assert_eq!(
        run.body["usage"],
        json!({"promptTokens": 20, "completionTokens": 12, "totalTokens": 32, "reasoningTokens": 0, "cachedTokens": 8, "cacheWriteTokens": null})
    );
    // gpt-4o-mini: 12 uncached × 0.15 + 8 cached × 0.075 = 2.4 µ$; 12 out × 0.60 = 7.2 µ$.
    assert_eq!(
        run.body["cost"],
        json!({"inputCost": "0.0000024", "outputCost": "0.0000072", "reasoningCost": "0", "totalCost": "0.0000096"})
    );
    assert_eq!(run.body["warnings"], json!([]));
    let research_run = run.body["executionId"].as_str().expect("id").to_string();
    let sent = mock.last("/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], "Bearer sk-openai-e2e-key");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "system", "content": "You are a careful researcher."}, {"role": "user", "content": "What is quantum computing?"}])
    );
    assert_eq!(
        (
            sent.body["temperature"].as_f64(),
            sent.body["max_tokens"].as_u64()
        ),
        (Some(0.2), Some(300))
    );

    // 2. summary (Anthropic, sync): the research output is interpolated into the system prompt.
    let run = client
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": summary}),
        )
        .await;
    assert_eq!(run.status, 200, "{}", run.text);
    assert_eq!(run.body["content"], ANTHROPIC_ANSWER);
    assert_eq!(run.body["usage"]["promptTokens"], 40, "input + cache read");
    assert_eq!(run.body["usage"]["cachedTokens"], 10);
    assert_eq!(
        run.body["usage"]["reasoningTokens"],
        Value::Null,
        "Anthropic does not report thinking apart"
    );
    // claude-sonnet-4-5: 30 × 3.00 + 10 × 0.30 = 93 µ$; 14 × 15.00 = 210 µ$.
    assert_eq!(run.body["cost"]["totalCost"], "0.000303");
    let sent = mock.last("/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "sk-anthropic-e2e-key");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        sent.body["system"],
        format!("Summarize this research: {OPENAI_ANSWER}")
    );
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "Three bullets, please."}])
    );

    // 3. action items (Gemini, streamed): `{{summary.output}}` and the transitive `{{research}}`.
    let stream = client
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": actions, "stream": true}),
        )
        .await;
    assert_eq!(stream.status, 200, "{}", stream.text);
    let events = sse_events(&stream.text);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"));
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    let tokens: String = events
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| d["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(tokens, GEMINI_CHUNKS.concat());
    let done = &events.last().expect("done").1;
    assert_eq!(done["content"], GEMINI_CHUNKS.concat());
    assert_eq!(
        done["usage"],
        json!({"promptTokens": 40, "completionTokens": 6, "totalTokens": 49, "reasoningTokens": 3, "cachedTokens": 0, "cacheWriteTokens": null}),
        "the final chunk's running usage, thoughts counted as reasoning"
    );
    // gemini-2.5-flash: 40 × 0.30 = 12 µ$; 6 × 2.50 = 15 µ$; 3 thinking × 2.50 = 7.5 µ$.
    assert_eq!(
        done["cost"],
        json!({"inputCost": "0.000012", "outputCost": "0.000015", "reasoningCost": "0.0000075", "totalCost": "0.0000345"})
    );
    let sent = mock.last(":streamGenerateContent");
    assert!(
        sent.path
            .ends_with("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        "{}",
        sent.path
    );
    assert_eq!(sent.headers["x-goog-api-key"], "sk-gemini-e2e-key");
    assert_eq!(
        sent.body["contents"][0]["parts"][0]["text"],
        format!("From {ANTHROPIC_ANSWER} (research: {OPENAI_ANSWER}), list action items.")
    );
    assert_eq!(
        sent.body["generationConfig"]["thinkingConfig"]["thinkingBudget"],
        512
    );

    // The stored execution matches what was streamed.
    let stored = client
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/{}",
            done["executionId"].as_str().expect("id")
        ))
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.body["streamed"], true);
    assert_eq!(stored.body["inputTokens"], 40);
    assert_eq!(stored.body["reasoningTokens"], 3);
    assert_eq!(stored.body["costInUsd"], "0.0000345");
    assert_eq!(stored.body["pricingId"], "seed-gemini-gemini-2.5-flash");

    // History: newest first, seed fields present.
    client
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": research}),
        )
        .await;
    let history = client
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/pod/{research}?limit=10"
        ))
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let items = history.body.as_array().expect("array");
    assert_eq!(items.len(), 2);
    assert_ne!(items[0]["id"], json!(research_run), "newest first");
    assert_eq!(items[1]["id"], json!(research_run));
    for field in [
        "id",
        "podId",
        "status",
        "provider",
        "modelId",
        "modelName",
        "inputTokens",
        "outputTokens",
        "reasoningTokens",
        "costInUsd",
        "startedAt",
        "finishedAt",
        "runtimeInMs",
        "errorMessage",
        "errorCode",
    ] {
        assert!(items[1].get(field).is_some(), "history lacks {field}");
    }
    assert_eq!(items[1]["modelName"], "gpt-4o-mini-2024-07-18");
    assert_eq!(items[1]["costInUsd"], "0.0000096");
    let limited = client
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/pod/{research}?limit=1"
        ))
        .await;
    assert_eq!(limited.body.as_array().map(Vec::len), Some(1));
    let too_many = client
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/pod/{research}?limit=101"
        ))
        .await;
    assert_eq!(too_many.status, 400);

    // Key usage: counted once per execution, keys never shown.
    let keys = client
        .get(&format!("/api/v1/workspaces/{ws}/provider-keys"))
        .await;
    let openai = keys
        .body
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["provider"] == "openai")
        .expect("openai key")
        .clone();
    assert_eq!(openai["hint"], "…-key");
    assert_eq!(openai["requests"], 2);
    assert_eq!(openai["promptTokens"], 40);
    assert_eq!(openai["costUsd"], "0.0000192");
    assert!(!keys.text.contains("e2e-key\""), "{}", keys.text);
}

async fn bad_input_and_provider_failures(backend: Backend) {
    let mock = MockProvider::start().await;
    let server = Server::start(
        &format!("bad_{backend:?}").to_lowercase(),
        backend,
        &[
            ("PODS_PROVIDER_TIMEOUT_SECS", "1"),
            ("PODS_MAX_BODY_BYTES", "4096"),
            mock.egress(),
        ],
    )
    .await;
    let Flow {
        client,
        ws,
        flow,
        research,
        summary,
        ..
    } = setup(&server, &mock, "bad").await;
    let exec = format!("/api/v1/workspaces/{ws}/executions");

    // A model no manifest and no price row knows is accepted, with a warning a canvas can show.
    let pods = format!("/api/v1/workspaces/{ws}/flows/{flow}/pods");
    let unknown = client
        .post(
            &pods,
            json!({"name": "u", "provider": "openai", "model": "gpt-nonesuch", "userPrompt": "hi"}),
        )
        .await;
    assert_eq!(unknown.status, 201, "{}", unknown.text);
    let warning = unknown.body["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("gpt-nonesuch"), "{}", unknown.text);
    let known = client
        .post(
            &pods,
            json!({"name": "k", "provider": "openai", "model": "gpt-4o-mini", "userPrompt": "hi"}),
        )
        .await;
    assert_eq!(known.status, 201, "{}", known.text);
    assert!(known.body.get("warnings").is_none(), "{}", known.text);
    let id = unknown.body["id"].as_str().unwrap_or_default();
    let renamed = client
        .patch(
            &format!("/api/v1/workspaces/{ws}/pods/{id}"),
            json!({"name": "still unknown"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert!(renamed.body["warnings"][0].is_string(), "{}", renamed.text);

    let code = |r: &pods_e2e::Reply| {
        (
            r.status,
            r.body["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };

    assert_eq!(
        code(
            &client
                .raw("POST", &exec, "application/json", b"{\"podId\": ".to_vec())
                .await
        ),
        (400, "MALFORMED_JSON".into())
    );
    assert_eq!(
        code(
            &client
                .raw(
                    "POST",
                    &exec,
                    "application/json",
                    b"{\"podId\": \"\xff\"}".to_vec()
                )
                .await
        ),
        (400, "INVALID_UTF8".into())
    );
    assert_eq!(
        code(
            &client
                .post(&exec, json!({"podId": research, "temperature": "hot"}))
                .await
        ),
        (400, "INVALID_FIELD".into())
    );
    assert_eq!(
        code(
            &client
                .post(&exec, json!({"podId": research, "max_tokens": 5}))
                .await
        ),
        (400, "INVALID_FIELD".into()),
        "unknown fields are refused"
    );
    assert_eq!(
        code(
            &client
                .post(&exec, json!({"podId": research, "temperature": 3.5}))
                .await
        ),
        (400, "INVALID_FIELD".into())
    );
    assert_eq!(
        code(
            &client
                .raw("POST", &exec, "text/plain", b"hi".to_vec())
                .await
        ),
        (415, "UNSUPPORTED_MEDIA_TYPE".into())
    );
    let big =
        json!({"podId": research, "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    assert_eq!(
        code(&client.post(&exec, big).await),
        (413, "BODY_TOO_LARGE".into())
    );
    assert_eq!(
        code(&client.post(&exec, json!({"podId": "no-such-pod"})).await),
        (404, "NOT_FOUND".into())
    );
    assert_eq!(
        code(
            &client
                .post(&exec, json!({"podId": research, "provider": "mistral"}))
                .await
        ),
        (400, "UNKNOWN_PROVIDER".into())
    );
    // Without a custom base URL, only models the plugin or the pricing table knows are accepted.
    let gemini_key = format!("/api/v1/workspaces/{ws}/provider-keys/gemini");
    assert_eq!(
        client
            .put(&gemini_key, json!({"apiKey": "sk-gemini-e2e-key"}))
            .await
            .status,
        204
    );
    let flows = client.get(&format!("/api/v1/workspaces/{ws}/flows")).await;
    let flow = flows.body[0]["id"].as_str().expect("flow").to_string();
    let lone = client
        .post(&format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"), json!({"name": "lone", "provider": "gemini", "model": "gemini-2.5-flash", "userPrompt": "Hi {{nobody}}"}))
        .await;
    let lone = lone.body["id"].as_str().expect("pod").to_string();
    assert_eq!(
        code(
            &client
                .post(&exec, json!({"podId": lone, "model": "gemini-nonexistent"}))
                .await
        ),
        (400, "UNKNOWN_MODEL".into())
    );

    // A missing key leaves no execution behind.
    assert_eq!(client.delete(&gemini_key).await.status, 204);
    assert_eq!(
        code(&client.post(&exec, json!({"podId": lone})).await),
        (400, "MISSING_PROVIDER_KEY".into())
    );
    let history = client
        .get(&format!("/api/v1/workspaces/{ws}/executions/pod/{lone}"))
        .await;
    assert_eq!(history.body, json!([]), "nothing half-written");

    // Unresolvable references stay literal and are reported.
    let run = client.post(&exec, json!({"podId": summary})).await;
    assert_eq!(run.status, 200, "{}", run.text);
    let warnings = run.body["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("has no completed execution yet"))),
        "{warnings:?}"
    );
    assert!(
        mock.last("/v1/messages").body["system"]
            .as_str()
            .expect("system")
            .contains(&format!("{{{{{research}}}}}"))
    );
    let run = client
        .post(&exec, json!({"podId": research, "messages": [{"role": "user", "content": "About {{nobody}}"}]}))
        .await;
    assert!(
        run.body["warnings"][0]
            .as_str()
            .expect("warning")
            .contains("nobody is not an upstream pod"),
        "{}",
        run.text
    );

    // Provider failures are stored with their error and returned.
    let failed = client
        .post(
            &exec,
            json!({"podId": research, "model": "gpt-4o-mini-rate-limited"}),
        )
        .await;
    assert_eq!(
        code(&failed),
        (502, "PROVIDER_RATE_LIMITED".into()),
        "{}",
        failed.text
    );
    let id = failed.body["executionId"].as_str().expect("execution id");
    let stored = client
        .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
        .await;
    assert_eq!(stored.body["status"], "ERROR");
    assert_eq!(stored.body["errorCode"], "PROVIDER_RATE_LIMITED");
    assert!(
        stored.body["errorMessage"]
            .as_str()
            .expect("message")
            .contains("Rate limit")
    );
    assert_eq!(stored.body["costInUsd"], Value::Null);

    // A provider whose answer is cut off after it began: named for what it is, not "unreachable".
    for stream in [false, true] {
        let dropped = client
            .post(
                &exec,
                json!({"podId": research, "model": "gpt-4o-mini-dropped", "stream": stream}),
            )
            .await;
        if stream {
            assert!(
                dropped.text.contains("PROVIDER_STREAM_INTERRUPTED"),
                "{}",
                dropped.text
            );
        } else {
            assert_eq!(
                code(&dropped),
                (502, "PROVIDER_STREAM_INTERRUPTED".into()),
                "{}",
                dropped.text
            );
            let id = dropped.body["executionId"].as_str().expect("execution id");
            let stored = client
                .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
                .await;
            assert_eq!(stored.body["errorCode"], "PROVIDER_STREAM_INTERRUPTED");
        }
    }

    // A provider that hangs is cut off by the timeout (1 s here).
    let started = std::time::Instant::now();
    let slow = client
        .post(
            &exec,
            json!({"podId": research, "model": "gpt-4o-mini-slow"}),
        )
        .await;
    assert_eq!(
        code(&slow),
        (504, "PROVIDER_TIMEOUT".into()),
        "{}",
        slow.text
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));

    // A model with no price (allowed: the key has a custom base URL): cost null and a warning, never 0.
    let custom = client
        .post(&exec, json!({"podId": research, "model": "my-local-llama"}))
        .await;
    assert_eq!(custom.status, 200, "{}", custom.text);
    assert_eq!(custom.body["cost"], Value::Null);
    assert!(
        custom.body["warnings"][0]
            .as_str()
            .expect("warning")
            .contains("no price"),
        "{}",
        custom.text
    );
}

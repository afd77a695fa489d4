//! `/metrics` after a known mix of executions — sync, streamed and queued; completed, a provider
//! error and a plugin trap — read with Prometheus' own Python parser (so the text is valid
//! OpenMetrics), and checked exactly: counters, histogram counts, tokens and cost against what
//! the executions recorded.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Client, Server, hostile_wasm};
use serde_json::{Value, json};

/// The parser, installed if missing (tests/services.sh installs it too).
fn ensure_parser() {
    let found = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "prometheus-client"])
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install prometheus-client failed");
    }
}

/// Samples by name: each one's labels and value.
type Samples = HashMap<String, Vec<(HashMap<String, String>, f64)>>;

/// Every sample of the text, as Prometheus' OpenMetrics parser reads it.
fn parse(text: &str) -> Samples {
    const READ: &str = "import json, sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
        print(json.dumps(out))";
    let mut child = Command::new("python3")
        .args(["-c", READ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parse");
    assert!(
        out.status.success(),
        "not valid OpenMetrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, HashMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).expect("JSON");
    let mut by_name: HashMap<String, Vec<_>> = HashMap::new();
    for (name, labels, value) in samples {
        by_name.entry(name).or_default().push((labels, value));
    }
    by_name
}

/// The value of the sample `name` whose labels include all of `labels` (0 if none).
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .sum()
}

async fn execute(client: &Client, ws: &str, body: Value) -> Value {
    let r = client
        .post(&format!("/api/v1/workspaces/{ws}/executions"), body)
        .await;
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_mix_of_executions_exactly() {
    ensure_parser();
    let mock = MockProvider::start().await;
    let plugins = pods_e2e::scratch("metrics_plugins");
    std::fs::write(plugins.join("hostile.wasm"), hostile_wasm()).expect("write");
    let plugin_dir = plugins.display().to_string();
    let server = Server::start(
        "metrics",
        Backend::Sqlite,
        &[mock.egress(), ("PLUGIN_DIR", plugin_dir.as_str())],
    )
    .await;
    let (admin, ws, _) = server.user_with_workspace("metrics@pods.test", true);
    // The folder's plugin loads once the watcher has seen it settle.
    let started = std::time::Instant::now();
    while !admin
        .get("/api/v1/plugins")
        .await
        .text
        .contains("\"hostile\"")
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "hostile never loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (flow, pod) = admin
        .openai_pod(
            &ws,
            "sk-metrics",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini",
        )
        .await;
    let key = admin
        .put(
            &format!("/api/v1/workspaces/{ws}/provider-keys/hostile"),
            json!({"apiKey": "hostile-key", "baseUrl": "https://api.hostile.test"}),
        )
        .await;
    assert_eq!(key.status, 204, "{}", key.text);
    let trap_pod = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"),
            json!({"name": "trap", "provider": "hostile", "model": "trap", "userPrompt": "hi"}),
        )
        .await;
    let trap_pod = trap_pod.body["pod"]["id"]
        .as_str()
        .or(trap_pod.body["id"].as_str())
        .expect("pod")
        .to_string();

    // The mix: 2 sync completed, 1 sync provider error, 1 streamed, 1 queued, 1 plugin trap.
    let mut ids = vec![];
    for _ in 0..2 {
        let r = execute(&admin, &ws, json!({"podId": pod})).await;
        ids.push(r["executionId"].as_str().expect("id").to_string());
    }
    let failed = execute(
        &admin,
        &ws,
        json!({"podId": pod, "model": "gpt-4o-mini-server-error"}),
    )
    .await;
    assert_eq!(failed["error"]["code"], "PROVIDER_SERVER_ERROR", "{failed}");
    let streamed = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod, "stream": true}),
        )
        .await;
    let done = pods_e2e::sse_events(&streamed.text)
        .into_iter()
        .find(|(event, _)| event == "done")
        .expect("a done event");
    ids.push(done.1["executionId"].as_str().expect("id").to_string());
    let queued = admin.enqueue(&ws, json!({"podId": pod})).await;
    let statuses = admin
        .wait_until_finished(&ws, std::slice::from_ref(&queued), Duration::from_secs(20))
        .await;
    assert_eq!(statuses, ["COMPLETED"]);
    ids.push(queued);
    let trapped = execute(&admin, &ws, json!({"podId": trap_pod})).await;
    assert_eq!(trapped["error"]["code"], "PLUGIN_ERROR", "{trapped}");

    // What the executions recorded.
    let (mut prompt, mut completion, mut cost) = (0.0, 0.0, 0.0);
    for id in &ids {
        let e = admin
            .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
            .await
            .body;
        prompt += e["usage"]["promptTokens"].as_f64().unwrap_or(0.0);
        completion += e["usage"]["completionTokens"].as_f64().unwrap_or(0.0);
        cost += e["costInUsd"]
            .as_str()
            .and_then(|c| c.parse::<f64>().ok())
            .unwrap_or(0.0);
    }

    let scraped = admin.get("/metrics").await;
    assert_eq!(scraped.status, 200, "{}", scraped.text);
    let m = parse(&scraped.text);
    let model = [("provider", "openai"), ("model", "gpt-4o-mini")];
    let executions = |mode: &str, outcome: &str, code: &str| {
        value(
            &m,
            "pods_executions_total",
            &[
                model[0],
                model[1],
                ("mode", mode),
                ("outcome", outcome),
                ("code", code),
            ],
        )
    };
    assert_eq!(executions("sync", "completed", ""), 2.0);
    // A dated or suffixed model is labelled with the price row that prices it.
    assert_eq!(executions("sync", "error", "provider_server_error"), 1.0);
    assert_eq!(executions("stream", "completed", ""), 1.0);
    assert_eq!(executions("async", "completed", ""), 1.0);
    // A model no manifest or price row knows is `other`.
    assert_eq!(
        value(
            &m,
            "pods_executions_total",
            &[
                ("provider", "hostile"),
                ("model", "other"),
                ("outcome", "error"),
                ("code", "plugin_error")
            ]
        ),
        1.0
    );
    let count = |name: &str, mode: &str| {
        value(
            &m,
            &format!("{name}_count"),
            &[model[0], model[1], ("mode", mode)],
        )
    };
    assert_eq!(count("pods_execution_duration_seconds", "sync"), 3.0);
    // The provider's time (and so what Pods added) is known for the answered calls only.
    assert_eq!(count("pods_execution_provider_seconds", "sync"), 2.0);
    assert_eq!(count("pods_execution_added_seconds", "sync"), 2.0);
    assert_eq!(count("pods_execution_added_seconds", "stream"), 1.0);
    assert_eq!(count("pods_execution_added_seconds", "async"), 1.0);
    assert_eq!(count("pods_execution_first_token_seconds", "stream"), 1.0);
    assert_eq!(count("pods_execution_first_token_seconds", "sync"), 0.0);
    let tokens = |kind: &str| {
        value(
            &m,
            "pods_tokens_total",
            &[model[0], model[1], ("kind", kind)],
        )
    };
    assert_eq!(tokens("prompt"), prompt);
    assert_eq!(tokens("completion"), completion);
    assert!(
        (value(&m, "pods_cost_usd_total", &model) - cost).abs() < 1e-12,
        "cost {} vs {cost}",
        value(&m, "pods_cost_usd_total", &model)
    );
    // Plugins: a build per openai call (5), and the trap.
    assert_eq!(
        value(
            &m,
            "pods_plugin_calls_total",
            &[("plugin", "openai"), ("call", "build_request")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &m,
            "pods_plugin_errors_total",
            &[
                ("plugin", "hostile"),
                ("version", "6.6.6"),
                ("kind", "trap")
            ]
        ),
        1.0
    );
    // HTTP: by route template and status.
    let route = "/api/v1/workspaces/{ws}/executions";
    let http = |status: &str| {
        value(
            &m,
            "pods_http_requests_total",
            &[("route", route), ("method", "POST"), ("status", status)],
        )
    };
    assert_eq!((http("200"), http("202"), http("502")), (3.0, 1.0, 2.0));
    assert_eq!(value(&m, "pods_queue_jobs", &[("state", "waiting")]), 0.0);
    assert!(value(&m, "pods_store_write_seconds_count", &[]) > 0.0);
    // Nothing in it is a prompt or a key.
    assert!(!scraped.text.contains("sk-metrics") && !scraped.text.contains("hostile-key"));
}

/// `PODS_METRICS_LISTEN` serves `/metrics` without a token on its own address (for a scraper
/// inside the network); on the API's address it still needs a system admin.
#[tokio::test]
async fn an_operator_address_serves_metrics_without_a_token() {
    let port = pods_e2e::free_port();
    let address = format!("127.0.0.1:{port}");
    let server = Server::start(
        "metrics_listen",
        Backend::Sqlite,
        &[("PODS_METRICS_LISTEN", address.as_str())],
    )
    .await;
    let (member, _, _) = server.user_with_workspace("metrics-member@pods.test", false);
    assert_eq!(member.get("/metrics").await.status, 403);
    let http = reqwest::Client::new();
    let anonymous = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401);
    let open = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(open.status(), 200);
    assert!(
        open.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("application/openmetrics-text"))
    );
    let text = open.text().await.expect("body");
    assert!(text.contains("pods_http_requests_total{"), "{text}");
    // Only /metrics is there.
    let other = http
        .get(format!("http://{address}/api/v1/workspaces"))
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 404);
}

//! OpenTelemetry traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a local OTLP/HTTP
//! receiver (tests/otlp/receiver.py, which decodes the protobuf with PyPI `opentelemetry-proto`),
//! one execution's spans arrive — request, resolve, execution, plugin build, provider call, plugin
//! parse, store — linked parent to child, continuing the caller's `traceparent`, passing it on to
//! the provider, with ids as attributes and no prompt anywhere.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Server, free_port, scratch};
use serde_json::{Value, json};

struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ensure_proto() {
    let found = Command::new("python3")
        .args(["-c", "import opentelemetry.proto"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "opentelemetry-proto"])
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install opentelemetry-proto failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_is_one_trace_from_the_caller_to_the_provider() {
    ensure_proto();
    let mock = MockProvider::start().await;
    let port = free_port();
    let spans_file = scratch("traces_receiver").join("spans.jsonl");
    let _receiver = Receiver(
        Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/otlp/receiver.py"))
            .arg(port.to_string())
            .arg(&spans_file)
            .spawn()
            .expect("start the OTLP receiver"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server::start(
        "traces",
        Backend::Sqlite,
        &[
            mock.egress(),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "pods-under-test"),
            // Export each batch within 100 ms.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let (owner, ws, _) = server.user_with_workspace("traces@pods.test", false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-traces", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;

    // The caller's trace: its trace id and its span, which ours must continue.
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let prompt = "PROMPT-TEXT-NOT-FOR-TRACES-7731";
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/workspaces/{ws}/executions", server.url))
        .bearer_auth(server.token("traces@pods.test"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .body(json!({"podId": pod, "messages": [{"role": "user", "content": prompt}]}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let result: Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
    let execution_id = result["executionId"].as_str().expect("id").to_string();

    // The provider was asked within the same trace.
    let asked = mock.last("/chat/completions");
    let sent = asked
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("a traceparent to the provider")
        .to_string();
    assert!(sent.starts_with(&format!("00-{trace_id}-")), "{sent}");

    // Wait for the spans of our request to arrive.
    let wanted = [
        "request",
        "resolve",
        "store.record",
        "execution",
        "plugin.build_request",
        "provider.call",
        "plugin.parse_response",
        "store.finish",
    ];
    let started = Instant::now();
    let spans: Vec<Value> = loop {
        let text = std::fs::read_to_string(&spans_file).unwrap_or_default();
        let spans: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|s: &Value| s["trace_id"] == trace_id)
            .collect();
        let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
        if wanted.iter().all(|w| names.contains(w)) {
            break spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "spans so far: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_name: HashMap<&str, &Value> = spans
        .iter()
        .filter_map(|s| Some((s["name"].as_str()?, s)))
        .collect();
    let id = |name: &str| {
        by_name[name]["span_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let parent = |name: &str| {
        by_name[name]["parent_span_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(by_name["request"]["service"], "pods-under-test");
    // The request continues the caller's span; the rest hang under it.
    assert_eq!(parent("request"), caller_span);
    for child in ["resolve", "store.record", "execution"] {
        assert_eq!(parent(child), id("request"), "{child}'s parent");
    }
    for step in [
        "plugin.build_request",
        "provider.call",
        "plugin.parse_response",
        "store.finish",
    ] {
        assert_eq!(parent(step), id("execution"), "{step}'s parent");
    }
    // The provider saw the provider call's span as its parent.
    assert!(
        sent.contains(&id("provider.call")),
        "{sent} vs {}",
        id("provider.call")
    );
    let attributes = &by_name["execution"]["attributes"];
    assert_eq!(attributes["execution_id"], execution_id.as_str());
    assert_eq!(attributes["workspace_id"], ws.as_str());
    assert_eq!(attributes["provider"], "openai");
    assert_eq!(attributes["model"], "gpt-4o-mini");
    assert!(by_name["request"]["attributes"]["request_id"].is_string());
    // No prompt, and no key, in any span of the run.
    let everything = std::fs::read_to_string(&spans_file).expect("spans");
    assert!(!everything.contains(prompt), "the prompt is in a span");
    assert!(!everything.contains("sk-traces"), "the key is in a span");
}

//! A loopback provider server speaking the OpenAI, Anthropic and Gemini wire formats (the same
//! shapes as the conformance vectors), recording every request it receives.
//!
//! Model names steer it: `…rate-limited` answers 429 with `retry-after`, `…slow` waits 5 s,
//! `…large` answers [`LARGE_ANSWER_BYTES`] of text, `…json` answers a JSON object whose `summary` is
//! [`JSON_SUMMARY`], `…delay` waits 100 ms, `…server-error` always answers 500, `…hang` never
//! answers, `…malformed` answers 200 with a body that is not JSON, `…cut` streams half an answer, `…dropped` sends half an answer and drops the connection
//! and stops (no finish, no `[DONE]`), `…flaky` answers 429 (retry-after 1 s), then 500, then succeeds, `…bad-request` answers 400.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

/// One request as the provider saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Clone, Default)]
pub struct MockProvider {
    pub url: String,
    /// `127.0.0.1:PORT`: what a server must be allowed to reach to call it.
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Requests so far for a model (for `…flaky`, which fails its first two).
fn count_for(mock: &MockProvider, model: &str) -> usize {
    mock.seen()
        .iter()
        .filter(|s| s.body["model"] == model)
        .count()
}

/// The body of a `…html-error` model's 502: an internal service's page.
pub const HTML_ERROR_PAGE: &str =
    "<html><body><h1>502</h1>internal-banner admin-console 10.0.0.7</body></html>";
/// What the mock answers.
pub const OPENAI_ANSWER: &str = "Quantum computing uses qubits, which can be 0 and 1 at once.";
/// The `summary` field of a `…json` model's answer.
pub const JSON_SUMMARY: &str = "Qubits hold 0 and 1 at once.";
/// How much text a `…large` model answers.
pub const LARGE_ANSWER_BYTES: usize = 256 * 1024;
/// How much text a `…huge` model answers (more than the answer cap, under the response cap).
pub const HUGE_ANSWER_BYTES: usize = 12 << 20;
pub const ANTHROPIC_ANSWER: &str = "- Qubits\n- Superposition\n- Entanglement";
/// Deltas in the stream of a model whose name ends in `long`.
pub const LONG_STREAM_CHUNKS: usize = 300;
pub const GEMINI_CHUNKS: [&str; 3] = ["1. Read", " the paper.", "\n2. Book a lab."];

impl MockProvider {
    pub async fn start() -> MockProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mock = MockProvider {
            url: format!("http://{addr}"),
            addr: addr.to_string(),
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(mock.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        mock
    }

    /// The setting that lets a server call this stand-in, and nothing else on loopback (the
    /// egress policy refuses internal addresses by default).
    pub fn egress(&self) -> (&'static str, &str) {
        ("PODS_EGRESS_ALLOW", &self.addr)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last request whose path contains `fragment`.
    pub fn last(&self, fragment: &str) -> Seen {
        self.seen()
            .into_iter()
            .rev()
            .find(|s| s.path.contains(fragment))
            .unwrap_or_else(|| panic!("no request to {fragment}"))
    }
}

async fn answer(
    State(mock): State<MockProvider>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if let Ok(mut seen) = mock.seen.lock() {
        seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            headers,
            body: body.clone(),
            at: std::time::Instant::now(),
        });
    }
    let model = body["model"].as_str().unwrap_or(&path).to_string();
    if model.ends_with("delay") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if model.contains("-half") {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if model.ends_with("slow") || path.contains("slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if model.ends_with("flaky") {
        match count_for(&mock, &model) {
            1 => {
                return json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
                    &[("retry-after", "1")],
                );
            }
            2 => {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
                    &[],
                );
            }
            _ => {}
        }
    }
    if model.ends_with("redirect") {
        // Sends the caller on to /sink here (a client that follows redirects would show up there).
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", format!("http://{}/sink", mock.addr))
            .body(Body::empty())
            .unwrap_or_default();
    }
    if model.ends_with("hang") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if model.ends_with("server-error") {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
            &[],
        );
    }
    if model.ends_with("malformed") {
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(
                "{\"id\": \"chatcmpl-cut\", \"choices\": [{\"message\": ",
            ))
            .unwrap_or_default();
    }
    if model.ends_with("dropped") {
        // Half an answer, then the connection drops (no end of the body).
        let stream = body["stream"] == true;
        let half = if stream {
            "data: {\"id\":\"chatcmpl-dropped\",\"object\":\"chat.completion.chunk\",\"model\":\"dropped\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Half an ans\"},\"finish_reason\":null}]}\n\n"
        } else {
            "{\"id\": \"chatcmpl-dropped\", \"choices\": [{\"message\": "
        };
        // The first part goes out (headers and all) before the drop.
        use futures_util::StreamExt as _;
        let body = futures_util::stream::iter([true, false]).then(move |first| async move {
            if first {
                Ok(half.to_string())
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::other("the connection dropped"))
            }
        });
        return Response::builder()
            .header(
                "content-type",
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(Body::from_stream(body))
            .unwrap_or_default();
    }
    if model.ends_with("cut") {
        return sse_response(
            "data: {\"id\":\"chatcmpl-cut\",\"object\":\"chat.completion.chunk\",\"model\":\"cut\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Half an ans\"},\"finish_reason\":null}]}\n\n".to_string(),
        );
    }
    if model.ends_with("html-error") {
        // What an internal service (not a provider) might answer: its words must not come back.
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .header("content-type", "text/html")
            .body(Body::from(HTML_ERROR_PAGE))
            .unwrap_or_default();
    }
    if model.ends_with("bad-request") {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error", "param": "temperature", "code": null}}),
            &[],
        );
    }
    if model.ends_with("rate-limited") {
        return json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
            &[("retry-after", "3")],
        );
    }
    let stream = body["stream"].as_bool() == Some(true) || path.contains("alt=sse");
    // Routed by path alone: a base URL may carry a query (Azure's `?api-version=`).
    let route = uri.path();
    if route.ends_with("/chat/completions") {
        openai(&body, stream)
    } else if route.ends_with("/v1/messages") {
        anthropic(stream)
    } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        gemini(stream)
    } else {
        json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "no such endpoint"}),
            &[],
        )
    }
}

/// A `…huge` model's answer, built once: a test that asks for twenty measures the server, not
/// the stand-in's JSON writer.
fn huge_response() -> Response {
    static BODY: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let body = BODY.get_or_init(|| {
        json!({
            "id": "chatcmpl-huge", "object": "chat.completion", "created": 1741569952, "model": "gpt-4o-mini-huge",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "y".repeat(HUGE_ANSWER_BYTES)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}})
        .to_string()
        .into()
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap_or_default()
}

fn json_response(status: StatusCode, body: Value, headers: &[(&str, &str)]) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn sse_response(text: String) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(text))
        .expect("response")
}

/// Usage: 20 prompt (8 cached), 12 completion, 0 reasoning.
fn openai(request: &Value, stream: bool) -> Response {
    let model = request["model"].as_str().unwrap_or("gpt-4o-mini");
    let usage = json!({"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32,
        "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    if model.ends_with("huge") && !stream {
        return huge_response();
    }
    let content = if model.ends_with("large") {
        "x".repeat(LARGE_ANSWER_BYTES)
    } else if model.ends_with("nul") {
        "before\u{0}after".to_string()
    } else if model.ends_with("named") {
        format!("answer from {model}")
    } else if model.ends_with("json") {
        json!({"summary": JSON_SUMMARY, "points": ["superposition", "entanglement"]}).to_string()
    } else {
        OPENAI_ANSWER.to_string()
    };
    if !stream {
        return json_response(
            StatusCode::OK,
            json!({
            "id": "chatcmpl-e2e", "object": "chat.completion", "created": 1741569952, "model": format!("{model}-2024-07-18"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage, "service_tier": "default"}),
            &[],
        );
    }
    let chunk = |delta: Value, finish: Value, usage: Value, choices: bool| {
        let c = json!({"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1741569952, "model": model,
            "choices": if choices { json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]) } else { json!([]) }, "usage": usage});
        format!("data: {c}\n\n")
    };
    if model.ends_with("long") {
        // A long stream: LONG_STREAM_CHUNKS deltas of one word each.
        let mut text = chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            Value::Null,
            true,
        );
        for _ in 0..LONG_STREAM_CHUNKS {
            text += &chunk(json!({"content": "word "}), Value::Null, Value::Null, true);
        }
        text += &chunk(json!({}), json!("stop"), Value::Null, true);
        text += &chunk(Value::Null, Value::Null, usage, false);
        return sse_response(text + "data: [DONE]\n\n");
    }
    let (first, second) = OPENAI_ANSWER.split_at(20);
    sse_response(
        chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            Value::Null,
            true,
        ) + &chunk(json!({"content": first}), Value::Null, Value::Null, true)
            + &chunk(json!({"content": second}), Value::Null, Value::Null, true)
            + &chunk(json!({}), json!("stop"), Value::Null, true)
            + &chunk(Value::Null, Value::Null, usage, false)
            + "data: [DONE]\n\n",
    )
}

/// Usage: 30 input + 10 cache read + 0 cache write = 40 prompt, 14 output.
fn anthropic(stream: bool) -> Response {
    if !stream {
        return json_response(
            StatusCode::OK,
            json!({
            "id": "msg_e2e", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": ANTHROPIC_ANSWER}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 14}}),
            &[],
        );
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    sse_response(
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_e2e", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
        ) + &ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ) + &ev("ping", json!({"type": "ping"}))
            + &ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANTHROPIC_ANSWER}}),
            )
            + &ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            )
            + &ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 14}}),
            )
            + &ev("message_stop", json!({"type": "message_stop"})),
    )
}

/// Usage: 40 prompt, 6 candidates, 3 thoughts (no cache: the counter is omitted).
fn gemini(stream: bool) -> Response {
    let usage = |candidates: u64| json!({"promptTokenCount": 40, "candidatesTokenCount": candidates, "totalTokenCount": 40 + candidates + 3, "thoughtsTokenCount": 3});
    let chunk = |text: &str, finish: Option<&str>, candidates: u64| {
        let mut candidate =
            json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate], "usageMetadata": usage(candidates), "modelVersion": "gemini-2.5-flash", "responseId": "gem-e2e"})
    };
    if !stream {
        return json_response(
            StatusCode::OK,
            chunk(&GEMINI_CHUNKS.concat(), Some("STOP"), 6),
            &[],
        );
    }
    let mut text = String::new();
    for (i, part) in GEMINI_CHUNKS.iter().enumerate() {
        let last = i + 1 == GEMINI_CHUNKS.len();
        text.push_str(&format!(
            "data: {}\r\n\r\n",
            chunk(part, last.then_some("STOP"), 2 * (i as u64 + 1))
        ));
    }
    sse_response(text)
}

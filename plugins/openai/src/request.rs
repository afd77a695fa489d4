//! Chat request → `POST {base}/chat/completions`.

use pods_plugin_sdk::serde_json::{Map, Value, json};
use pods_plugin_sdk::types::{ChatRequest, HttpRequest, ProviderError, ResponseFormat, Role};
use pods_plugin_sdk::{invalid_request, join_url, post_json, url_host};

pub fn build(request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system_prompt {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &request.messages {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        messages.push(json!({"role": role, "content": m.content}));
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(max) = request.max_tokens {
        // api.openai.com deprecated `max_tokens` (reasoning models reject it); many compatible
        // servers only know `max_tokens`.
        let official = url_host(&request.base_url).as_deref() == Some("api.openai.com");
        let key = if official {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(key.into(), json!(max));
    }
    if let Some(budget) = request.thinking_budget {
        // Chat Completions has no token budget, only an effort level: ≤1k tokens is low, ≤8k medium.
        let effort = match budget {
            0..=1024 => "low",
            1025..=8192 => "medium",
            _ => "high",
        };
        body.insert("reasoning_effort".into(), json!(effort));
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema(schema)) => {
            let schema: Value = pods_plugin_sdk::serde_json::from_str(schema)
                .map_err(|e| invalid_request(format!("responseFormat schema is not JSON: {e}")))?;
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
            );
        }
    }
    if request.stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }

    Ok(post_json(
        join_url(&request.base_url, "/chat/completions"),
        &Value::Object(body),
        &[],
    ))
}

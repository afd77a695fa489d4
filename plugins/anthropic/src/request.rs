//! Chat request → `POST {base}/v1/messages`.

use pods_plugin_sdk::serde_json::{Map, Value, json};
use pods_plugin_sdk::types::{ChatRequest, HttpRequest, ProviderError, ResponseFormat, Role};
use pods_plugin_sdk::{invalid_request, join_url, post_json};

/// `max_tokens` is required by the API; used when the pod sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The API's smallest thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;

pub fn build(request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
    // The Messages API has no system role: system text goes to the top-level `system` field.
    let mut system: Vec<String> = request.system_prompt.iter().cloned().collect();
    let mut messages = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        match m.role {
            Role::System => system.push(m.content.clone()),
            Role::User => messages.push(json!({"role": "user", "content": m.content})),
            Role::Assistant => messages.push(json!({"role": "assistant", "content": m.content})),
        }
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => system.push(
            "Respond with a single JSON object and nothing else: no prose, no code fences.".into(),
        ),
        Some(ResponseFormat::JsonSchema(schema)) => {
            let schema: Value = pods_plugin_sdk::serde_json::from_str(schema)
                .map_err(|e| invalid_request(format!("responseFormat schema is not JSON: {e}")))?;
            system.push(format!(
                "Respond with a single JSON object that matches this JSON Schema, and nothing else: {schema}"
            ));
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    match request.thinking_budget {
        Some(budget) => {
            if budget < MIN_THINKING_BUDGET {
                return Err(invalid_request(format!(
                    "thinkingBudget must be at least {MIN_THINKING_BUDGET} tokens for Anthropic, got {budget}"
                )));
            }
            let max_tokens = request.max_tokens.unwrap_or(budget + DEFAULT_MAX_TOKENS);
            if max_tokens <= budget {
                return Err(invalid_request(format!(
                    "maxTokens ({max_tokens}) must be larger than thinkingBudget ({budget}): thinking counts towards it"
                )));
            }
            body.insert("max_tokens".into(), json!(max_tokens));
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
        }
        None => {
            body.insert(
                "max_tokens".into(),
                json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            );
        }
    }
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    // Extended thinking does not accept a temperature.
    if let (Some(t), None) = (request.temperature, request.thinking_budget) {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if request.stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(post_json(
        join_url(&request.base_url, "/v1/messages"),
        &Value::Object(body),
        &[("anthropic-version", "2023-06-01")],
    ))
}

//! Chat request → `POST {base}/v1beta/models/{model}:generateContent` (or the SSE stream).

use pods_plugin_sdk::serde_json::{Map, Value, json};
use pods_plugin_sdk::types::{ChatRequest, HttpRequest, ProviderError, ResponseFormat, Role};
use pods_plugin_sdk::{invalid_request, join_url, post_json};

pub fn build(request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
    let model = request
        .model
        .strip_prefix("models/")
        .unwrap_or(&request.model);
    if model.is_empty()
        || !model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(invalid_request(format!(
            "{:?} is not a Gemini model id",
            request.model
        )));
    }

    let mut system: Vec<Value> = request
        .system_prompt
        .iter()
        .map(|s| json!({"text": s}))
        .collect();
    let mut contents = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        let role = match m.role {
            Role::System => {
                system.push(json!({"text": m.content}));
                continue;
            }
            Role::User => "user",
            Role::Assistant => "model",
        };
        contents.push(json!({"role": role, "parts": [{"text": m.content}]}));
    }

    let mut config = Map::new();
    if let Some(t) = request.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        config.insert("topP".into(), json!(p));
    }
    if let Some(max) = request.max_tokens {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema(schema)) => {
            let schema: Value = pods_plugin_sdk::serde_json::from_str(schema)
                .map_err(|e| invalid_request(format!("responseFormat schema is not JSON: {e}")))?;
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseJsonSchema".into(), schema);
        }
    }
    if let Some(budget) = request.thinking_budget {
        config.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": budget, "includeThoughts": true}),
        );
    }

    let mut body = Map::new();
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    body.insert("contents".into(), Value::Array(contents));
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    let method = if request.stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    Ok(post_json(
        join_url(
            &request.base_url,
            &format!("/v1beta/models/{model}:{method}"),
        ),
        &Value::Object(body),
        &[],
    ))
}

//! Non-streamed answers and error bodies.

use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{
    Completion, ErrorKind, FinishReason, HttpResponse, ProviderError, Usage,
};
use pods_plugin_sdk::{
    count, empty_usage, kind_for_status, malformed, parse_json, provider_error, retry_after_ms,
    status_error,
};

pub fn parse(response: &HttpResponse) -> Result<Completion, ProviderError> {
    if !(200..300).contains(&response.status) {
        return Err(error_from(response));
    }
    let body = parse_json(&response.body)?;
    if body.get("error").is_some_and(Value::is_object) {
        // Some compatible gateways answer 200 with an error object.
        return Err(error_body(&body, response.status, &response.headers));
    }
    let choice = body
        .pointer("/choices/0")
        .ok_or_else(|| malformed("response has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let refusal = message.get("refusal").and_then(Value::as_str);
    let content = message.get("content").and_then(Value::as_str);
    let mut finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(finish_reason);
    if refusal.is_some() {
        finish_reason = Some(FinishReason::Refusal);
    }
    Ok(Completion {
        content: content.or(refusal).unwrap_or_default().to_string(),
        reasoning: reasoning_text(message).map(str::to_string),
        usage: body.get("usage").map(usage).unwrap_or_else(empty_usage),
        finish_reason,
        model: body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        response_id: body.get("id").and_then(Value::as_str).map(str::to_string),
    })
}

/// Visible reasoning from compatible servers: `reasoning_content` (DeepSeek, vLLM) or `reasoning`
/// (OpenRouter, Ollama). api.openai.com returns none in Chat Completions.
pub fn reasoning_text(message: &Value) -> Option<&str> {
    message
        .get("reasoning_content")
        .or_else(|| message.get("reasoning"))
        .and_then(Value::as_str)
}

pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

/// OpenAI usage → normalized usage (reasoning taken out of `completion_tokens`).
pub fn usage(u: &Value) -> Usage {
    if u.is_null() {
        return empty_usage();
    }
    let completion = count(u, "/completion_tokens");
    let reasoning = count(u, "/completion_tokens_details/reasoning_tokens");
    Usage {
        prompt_tokens: count(u, "/prompt_tokens"),
        cached_tokens: count(u, "/prompt_tokens_details/cached_tokens"),
        cache_write_tokens: None,
        completion_tokens: completion.map(|c| c.saturating_sub(reasoning.unwrap_or(0))),
        reasoning_tokens: reasoning,
    }
}

fn error_from(response: &HttpResponse) -> ProviderError {
    match parse_json(&response.body) {
        Ok(body) => error_body(&body, response.status, &response.headers),
        Err(_) => status_error(response),
    }
}

/// `{"error": {"message", "type", "param", "code"}}` → a typed error.
pub fn error_body(
    body: &Value,
    status: u16,
    headers: &[pods_plugin_sdk::types::Header],
) -> ProviderError {
    let err = body.get("error").unwrap_or(body);
    let code = err.get("code").and_then(Value::as_str);
    let kind_text = err.get("type").and_then(Value::as_str);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let kind = match (code, kind_text) {
        (Some("context_length_exceeded"), _) => ErrorKind::ContextLength,
        (Some("insufficient_quota"), _) | (_, Some("insufficient_quota")) => {
            ErrorKind::QuotaExceeded
        }
        (Some("content_filter" | "content_policy_violation"), _) => ErrorKind::ContentFilter,
        (Some("invalid_api_key"), _) => ErrorKind::Auth,
        (Some("rate_limit_exceeded"), _) => ErrorKind::RateLimited,
        (_, Some("server_error")) if status < 400 => ErrorKind::Server,
        _ if status < 400 => ErrorKind::Server,
        _ => kind_for_status(status),
    };
    provider_error(
        kind,
        message,
        status,
        code.or(kind_text),
        retry_after_ms(headers),
    )
}

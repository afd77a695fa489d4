//! Non-streamed answers, usage and error bodies.

use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{
    Completion, ErrorKind, FinishReason, Header, HttpResponse, ProviderError, Usage,
};
use pods_plugin_sdk::{
    count, kind_for_status, malformed, parse_json, provider_error, retry_after_ms, status_error,
};

pub fn parse(response: &HttpResponse) -> Result<Completion, ProviderError> {
    if !(200..300).contains(&response.status) {
        return Err(error_from(response));
    }
    let body = parse_json(&response.body)?;
    if body.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_body(&body, response.status, &response.headers));
    }
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("response has no content array"))?;
    let reasoning: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("thinking"))
        .filter_map(|b| b.get("thinking").and_then(Value::as_str))
        .collect();
    Ok(Completion {
        content: content_text(&body).unwrap_or_default(),
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        usage: body
            .get("usage")
            .map(usage)
            .unwrap_or_else(pods_plugin_sdk::empty_usage),
        finish_reason: body
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(finish_reason),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        response_id: body.get("id").and_then(Value::as_str).map(str::to_string),
    })
}

/// The `text` blocks of a message's `content`, joined; `None` when there is none.
pub fn content_text(message: &Value) -> Option<String> {
    let texts: Vec<&str> = message
        .get("content")?
        .as_array()?
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    (!texts.is_empty()).then(|| texts.concat())
}

pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "refusal" => FinishReason::Refusal,
        "tool_use" => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

/// Raw Anthropic counts, kept apart so a stream's later events can replace single fields.
#[derive(Default, Clone, Copy)]
pub struct RawUsage {
    pub input: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
    pub output: Option<u64>,
    /// `output_tokens_details.thinking_tokens`: the part of `output` that was thinking.
    pub thinking: Option<u64>,
}

impl RawUsage {
    /// Fields present in `u` replace the current ones (they are running totals).
    pub fn update(&mut self, u: &Value) {
        if let Some(n) = count(u, "/input_tokens") {
            self.input = Some(n);
        }
        if let Some(n) = count(u, "/cache_read_input_tokens") {
            self.cache_read = Some(n);
        }
        if let Some(n) = count(u, "/cache_creation_input_tokens") {
            self.cache_write = Some(n);
        }
        if let Some(n) = count(u, "/output_tokens") {
            self.output = Some(n);
        }
        if let Some(n) = count(u, "/output_tokens_details/thinking_tokens") {
            self.thinking = Some(n);
        }
    }

    pub fn normalized(&self) -> Usage {
        let prompt = match (self.input, self.cache_read, self.cache_write) {
            (None, None, None) => None,
            (i, r, w) => Some(i.unwrap_or(0) + r.unwrap_or(0) + w.unwrap_or(0)),
        };
        // Thinking reported apart: it is the reasoning, and the completion is the rest (never
        // more thinking than output). Not reported: all of it is completion, reasoning unknown.
        let (completion, reasoning) = match (self.output, self.thinking) {
            (Some(output), Some(thinking)) => {
                let thinking = thinking.min(output);
                (Some(output - thinking), Some(thinking))
            }
            (output, _) => (output, None),
        };
        Usage {
            prompt_tokens: prompt,
            cached_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
            completion_tokens: completion,
            reasoning_tokens: reasoning,
        }
    }
}

fn usage(u: &Value) -> Usage {
    let mut raw = RawUsage::default();
    raw.update(u);
    raw.normalized()
}

fn error_from(response: &HttpResponse) -> ProviderError {
    match parse_json(&response.body) {
        Ok(body) => error_body(&body, response.status, &response.headers),
        Err(_) => status_error(response),
    }
}

/// `{"type": "error", "error": {"type", "message"}}` → a typed error. `status` 200 means the
/// error came inside a stream.
pub fn error_body(body: &Value, status: u16, headers: &[Header]) -> ProviderError {
    let err = body.get("error").unwrap_or(body);
    let code = err.get("type").and_then(Value::as_str);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let kind = match code {
        Some("authentication_error" | "permission_error") => ErrorKind::Auth,
        Some("rate_limit_error") => ErrorKind::RateLimited,
        Some("billing_error") => ErrorKind::QuotaExceeded,
        Some("overloaded_error") => ErrorKind::Overloaded,
        Some("api_error") => ErrorKind::Server,
        Some("request_too_large") => ErrorKind::InvalidRequest,
        Some("invalid_request_error")
            if message.contains("prompt is too long") || message.contains("context window") =>
        {
            ErrorKind::ContextLength
        }
        Some("invalid_request_error" | "not_found_error") => ErrorKind::InvalidRequest,
        _ if status >= 400 => kind_for_status(status),
        _ => ErrorKind::Server,
    };
    provider_error(kind, message, status, code, retry_after_ms(headers))
}

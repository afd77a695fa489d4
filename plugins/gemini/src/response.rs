//! Non-streamed answers, usage and error bodies (`google.rpc.Status`).

use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{
    Completion, ErrorKind, FinishReason, Header, HttpResponse, ProviderError, Usage,
};
use pods_plugin_sdk::{
    count, duration_ms, error, kind_for_status, parse_json, provider_error, retry_after_ms,
    status_error,
};

pub fn parse(response: &HttpResponse) -> Result<Completion, ProviderError> {
    if !(200..300).contains(&response.status) {
        return Err(match parse_json(&response.body) {
            Ok(body) => error_body(&body, response.status, &response.headers),
            Err(_) => status_error(response),
        });
    }
    let body = parse_json(&response.body)?;
    if body.get("error").is_some_and(Value::is_object) {
        return Err(error_body(&body, response.status, &response.headers));
    }
    blocked(&body)?;
    let (text, thoughts) = candidate_text(&body);
    Ok(Completion {
        content: text.unwrap_or_default(),
        reasoning: thoughts,
        usage: body
            .get("usageMetadata")
            .map(usage)
            .unwrap_or_else(pods_plugin_sdk::empty_usage),
        finish_reason: body
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str)
            .map(finish_reason),
        model: body
            .get("modelVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        response_id: body
            .get("responseId")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// A prompt blocked by safety settings has `promptFeedback.blockReason` and no candidates.
pub fn blocked(body: &Value) -> Result<(), ProviderError> {
    let reason = body
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str);
    let has_candidates = body
        .get("candidates")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    match reason {
        Some(reason) if !has_candidates => {
            let mut err = error(
                ErrorKind::ContentFilter,
                format!("the prompt was blocked: {reason}"),
            );
            err.provider_code = Some(reason.to_string());
            Err(err)
        }
        _ => Ok(()),
    }
}

/// (answer text, thought text) of the first candidate; each `None` when it has no such part.
pub fn candidate_text(body: &Value) -> (Option<String>, Option<String>) {
    let Some(parts) = body
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
    else {
        return (None, None);
    };
    let (mut text, mut thoughts) = (None::<String>, None::<String>);
    for part in parts {
        let Some(t) = part.get("text").and_then(Value::as_str) else {
            continue;
        };
        let target = if part.get("thought").and_then(Value::as_bool) == Some(true) {
            &mut thoughts
        } else {
            &mut text
        };
        target.get_or_insert_with(String::new).push_str(t);
    }
    (text, thoughts)
}

pub fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

/// `usageMetadata` → normalized usage. Gemini omits zero counters, so absent means 0 here.
pub fn usage(u: &Value) -> Usage {
    let n = |pointer: &str| Some(count(u, pointer).unwrap_or(0));
    Usage {
        prompt_tokens: n("/promptTokenCount"),
        cached_tokens: n("/cachedContentTokenCount"),
        cache_write_tokens: None,
        completion_tokens: n("/candidatesTokenCount"),
        reasoning_tokens: n("/thoughtsTokenCount"),
    }
}

/// `{"error": {"code", "message", "status", "details"}}` → a typed error.
pub fn error_body(body: &Value, http_status: u16, headers: &[Header]) -> ProviderError {
    let err = body.get("error").unwrap_or(body);
    let status_text = err.get("status").and_then(Value::as_str);
    let code = err
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(http_status);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let details = err.get("details").and_then(Value::as_array);
    let detail_reason = details
        .into_iter()
        .flatten()
        .find_map(|d| d.get("reason").and_then(Value::as_str));
    let kind = match status_text {
        Some("UNAUTHENTICATED" | "PERMISSION_DENIED") => ErrorKind::Auth,
        Some("INVALID_ARGUMENT")
            if detail_reason == Some("API_KEY_INVALID")
                || message.contains("API key not valid") =>
        {
            ErrorKind::Auth
        }
        Some("INVALID_ARGUMENT")
            if message.contains("exceeds the maximum number of tokens")
                || message.contains("input token count") =>
        {
            ErrorKind::ContextLength
        }
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "NOT_FOUND") => ErrorKind::InvalidRequest,
        Some("RESOURCE_EXHAUSTED") => ErrorKind::RateLimited,
        Some("UNAVAILABLE") => ErrorKind::Overloaded,
        Some("INTERNAL" | "DEADLINE_EXCEEDED") => ErrorKind::Server,
        _ if code >= 400 => kind_for_status(code),
        _ => ErrorKind::Server,
    };
    // google.rpc.RetryInfo says how long to wait; else the HTTP header.
    let retry_delay = details
        .into_iter()
        .flatten()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(duration_ms)
        .or_else(|| retry_after_ms(headers));
    provider_error(kind, message, code, status_text, retry_delay)
}

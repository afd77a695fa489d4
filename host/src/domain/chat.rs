//! A chat request and its answer, as the host sees them: plain Rust types, independent of any
//! WIT version, serializable as camelCase JSON (the API and the conformance vectors use them).
//! Each WIT version's bindings convert to and from these (`plugins::bindings`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: MessageRole,
    pub content: String,
}

/// `{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "schema": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        #[schema(value_type = Object)]
        schema: serde_json::Value,
    },
}

/// A chat request before the host picks the base URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
    #[serde(default)]
    pub stream: bool,
}

/// Normalized token counts: `None` = the provider did not report it, `Some(0)` = it reported zero.
/// `prompt` includes `cached` and `cache_write`; `completion` excludes `reasoning`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// prompt + completion + reasoning; `None` when the provider reported none of them.
    pub fn total_tokens(&self) -> Option<u64> {
        let parts = [
            self.prompt_tokens,
            self.completion_tokens,
            self.reasoning_tokens,
        ];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().map(|p| p.unwrap_or(0)).sum())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    Refusal,
    ToolCalls,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    pub content: String,
    pub reasoning: Option<String>,
    pub usage: Usage,
    pub finish_reason: Option<FinishReason>,
    pub model: Option<String>,
    pub response_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamDelta {
    pub text: String,
    pub reasoning: String,
    pub usage: Option<Usage>,
    pub finish_reason: Option<FinishReason>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_counts_reasoning_and_keeps_none_apart_from_zero() {
        let u = Usage {
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            reasoning_tokens: Some(7),
            ..Usage::default()
        };
        assert_eq!(u.total_tokens(), Some(22));
        assert_eq!(Usage::default().total_tokens(), None);
        let zero = Usage {
            prompt_tokens: Some(0),
            ..Usage::default()
        };
        assert_eq!(zero.total_tokens(), Some(0));
    }

    #[test]
    fn request_json_is_camel_case_and_strict() {
        let req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "maxTokens": 5, "responseFormat": {"type": "json_schema", "schema": {"type": "object"}}
        }))
        .expect("valid request");
        assert_eq!(req.max_tokens, Some(5));
        assert!(matches!(
            req.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        let bad = serde_json::from_value::<ChatRequest>(serde_json::json!({
            "model": "m", "messages": [], "max_tokens": 5
        }));
        assert!(bad.is_err(), "snake_case fields are refused, not ignored");
    }
}

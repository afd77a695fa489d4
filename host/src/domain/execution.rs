//! An execution as everyone sees it: its status, what was asked, and what came back.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::chat::{FinishReason, MessageRole, ResponseFormat, Usage};
use super::money::Cost;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExecutionStatus {
    Queued,
    Running,
    Completed,
    Error,
    Cancelled,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "QUEUED",
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Completed => "COMPLETED",
            ExecutionStatus::Error => "ERROR",
            ExecutionStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Completed,
            Self::Error,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// `POST /workspaces/{ws}/executions`: which pod to run, and per-execution overrides of its config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteRequest {
    pub pod_id: String,
    /// The conversation; default: the pod's user prompt as one user message.
    pub messages: Option<Vec<MessageInput>>,
    /// Provider id (`openai`, `anthropic`, `gemini`; case-insensitive); default: the pod's.
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9-]*$")]
    pub provider: Option<String>,
    #[schema(pattern = "\\S")]
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    #[schema(value_type = Option<ResponseFormat>)]
    pub response_format: Option<ResponseFormat>,
    pub thinking_budget: Option<u32>,
    /// Queue the execution and return at once (202).
    #[serde(rename = "async", default)]
    pub run_async: bool,
    /// Answer with a `text/event-stream` of start / token / done / error events; with `async`,
    /// stream the provider call and send its tokens to the flow's WebSocket as `execution:delta`.
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// `system`, `user` or `assistant`.
    #[schema(value_type = String, pattern = "^(system|user|assistant)$")]
    pub role: MessageRole,
    pub content: String,
}

/// Token counts as the API shows them; `null` = not reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens(),
            reasoning_tokens: u.reasoning_tokens,
            cached_tokens: u.cached_tokens,
            cache_write_tokens: u.cache_write_tokens,
        }
    }
}

/// A finished execution's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResult {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub content: String,
    pub reasoning: Option<String>,
    pub usage: UsageView,
    /// `null` when the model has no price (see `warnings`).
    pub cost: Option<Cost>,
    #[schema(value_type = Option<String>)]
    pub finish_reason: Option<FinishReason>,
    /// The model that answered, as the provider named it.
    pub model: Option<String>,
    pub warnings: Vec<String>,
}

/// What a queued execution runs: the request as it was asked, stored with the execution and
/// resolved again (context, key, plugin) when a worker takes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueuedRequest(pub ExecuteRequest);

/// Where `temperature` may lie, as the API states it and every check applies it.
pub const TEMPERATURE: RangeInclusive<f64> = 0.0..=2.0;
/// Where `topP` may lie.
pub const TOP_P: RangeInclusive<f64> = 0.0..=1.0;

/// Checks sampling settings against [`TEMPERATURE`] and [`TOP_P`]; `Err` says which is out.
pub fn check_sampling(temperature: Option<f64>, top_p: Option<f64>) -> Result<(), String> {
    for (field, value, range) in [
        ("temperature", temperature, TEMPERATURE),
        ("topP", top_p, TOP_P),
    ] {
        if let Some(v) = value
            && !range.contains(&v)
        {
            return Err(format!(
                "{field} must be between {} and {}, got {v}",
                range.start(),
                range.end()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_settings_are_checked_against_their_ranges() {
        assert!(check_sampling(None, None).is_ok());
        assert!(check_sampling(Some(0.0), Some(1.0)).is_ok());
        assert!(check_sampling(Some(2.0), Some(0.0)).is_ok());
        let why = check_sampling(Some(2.5), None).expect_err("too hot");
        assert_eq!(why, "temperature must be between 0 and 2, got 2.5");
        let why = check_sampling(Some(1.0), Some(-0.1)).expect_err("negative");
        assert!(why.starts_with("topP must be between 0 and 1"), "{why}");
        assert!(
            check_sampling(Some(f64::NAN), None).is_err(),
            "NaN is in no range"
        );
    }
}

//! Anthropic Messages API (`POST {base}/v1/messages`, `anthropic-version: 2023-06-01`), with
//! extended thinking.
//!
//! Usage mapping (Anthropic's `input_tokens` *excludes* cache reads and writes):
//! - `promptTokens` = `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens`
//! - `cachedTokens` = `cache_read_input_tokens`; `cacheWriteTokens` = `cache_creation_input_tokens`
//! - `output_tokens` *includes* thinking. When Anthropic reports it apart
//!   (`output_tokens_details.thinking_tokens`), `reasoningTokens` is that and `completionTokens`
//!   the rest; when it does not, `completionTokens` = `output_tokens` and `reasoningTokens` is
//!   `null` (not reported), never a guessed number.
//!
//! When streaming, `message_start` carries the input and cache counts and `message_delta.usage`
//! is a running total that replaces (never adds to) what came before. A stream that ends without
//! `message_stop` is a cut stream: an error, not a success.
//!
//! Anthropic has no JSON mode: `json_object` / `json_schema` response formats add an instruction
//! to the system prompt.

mod request;
mod response;
mod stream;

use pods_plugin_sdk::types::{
    ChatRequest, Completion, HttpRequest, HttpResponse, KeyPlacement, Manifest, ModelInfo,
    ProviderError,
};
use pods_plugin_sdk::{extractor, provider};

struct Anthropic;

impl provider::Guest for Anthropic {
    type StreamParser = stream::Parser;

    fn describe() -> Manifest {
        let model = |id: &str, reasoning: bool| ModelInfo {
            id: id.into(),
            context_window: Some(200_000),
            reasoning,
        };
        Manifest {
            id: "anthropic".into(),
            name: "Anthropic".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: pods_plugin_sdk::API_VERSION.into(),
            default_base_url: "https://api.anthropic.com".into(),
            allowed_hosts: vec!["api.anthropic.com".into()],
            key_placement: KeyPlacement::Header("x-api-key".into()),
            models: vec![
                model("claude-opus-4-1", true),
                model("claude-sonnet-4-5", true),
                model("claude-sonnet-4-0", true),
                model("claude-3-7-sonnet-latest", true),
                model("claude-haiku-4-5", true),
                model("claude-3-5-haiku-latest", false),
            ],
        }
    }

    fn build_request(request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        request::build(&request)
    }

    fn parse_response(
        _request: ChatRequest,
        response: HttpResponse,
    ) -> Result<Completion, ProviderError> {
        response::parse(&response)
    }
}

impl extractor::Guest for Anthropic {
    /// Default: the text blocks of `content`, joined (thinking blocks skipped). `args` may name a
    /// JSON pointer instead, e.g. `/content/0/text` as the original system did.
    fn extract(raw_response: String, args: Option<String>) -> Result<String, String> {
        if args.is_some() {
            return pods_plugin_sdk::extract_pointer(&raw_response, "", args);
        }
        let value: pods_plugin_sdk::serde_json::Value =
            pods_plugin_sdk::serde_json::from_str(&raw_response)
                .map_err(|e| format!("raw response is not JSON: {e}"))?;
        response::content_text(&value).ok_or_else(|| "no text block in content".to_string())
    }
}

pods_plugin_sdk::export_plugin!(Anthropic);

//! Google Gemini: `POST {base}/v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` when streaming. The key goes in the `x-goog-api-key` header,
//! never in the URL.
//!
//! Usage mapping (Gemini omits zero counters rather than sending 0, so once `usageMetadata` is
//! present an absent counter means zero):
//! - `promptTokens` = `promptTokenCount` (cached included); `cachedTokens` = `cachedContentTokenCount`
//! - `completionTokens` = `candidatesTokenCount` (thoughts excluded)
//! - `reasoningTokens` = `thoughtsTokenCount`
//!
//! Every streamed chunk repeats a running `usageMetadata`; the last one holds the final figures.
//! A stream ends with the chunk that carries a `finishReason`; without one it was cut.

mod request;
mod response;
mod stream;

use pods_plugin_sdk::types::{
    ChatRequest, Completion, HttpRequest, HttpResponse, KeyPlacement, Manifest, ModelInfo,
    ProviderError,
};
use pods_plugin_sdk::{extractor, provider};

struct Gemini;

impl provider::Guest for Gemini {
    type StreamParser = stream::Parser;

    fn describe() -> Manifest {
        let model = |id: &str, window: u32, reasoning: bool| ModelInfo {
            id: id.into(),
            context_window: Some(window),
            reasoning,
        };
        Manifest {
            id: "gemini".into(),
            name: "Google Gemini".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: pods_plugin_sdk::API_VERSION.into(),
            default_base_url: "https://generativelanguage.googleapis.com".into(),
            allowed_hosts: vec!["generativelanguage.googleapis.com".into()],
            key_placement: KeyPlacement::Header("x-goog-api-key".into()),
            models: vec![
                model("gemini-2.5-pro", 1_048_576, true),
                model("gemini-2.5-flash", 1_048_576, true),
                model("gemini-2.5-flash-lite", 1_048_576, true),
                model("gemini-2.0-flash", 1_048_576, false),
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

impl extractor::Guest for Gemini {
    /// Default: the non-thought text parts of the first candidate, joined. `args` may name a JSON
    /// pointer instead, e.g. `/candidates/0/content/parts/0/text` as the original system did.
    fn extract(raw_response: String, args: Option<String>) -> Result<String, String> {
        if args.is_some() {
            return pods_plugin_sdk::extract_pointer(&raw_response, "", args);
        }
        let value: pods_plugin_sdk::serde_json::Value =
            pods_plugin_sdk::serde_json::from_str(&raw_response)
                .map_err(|e| format!("raw response is not JSON: {e}"))?;
        let (text, _) = response::candidate_text(&value);
        text.ok_or_else(|| "no text part in the first candidate".to_string())
    }
}

pods_plugin_sdk::export_plugin!(Gemini);

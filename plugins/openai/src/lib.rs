//! OpenAI Chat Completions (`POST {base}/chat/completions`), and any OpenAI-compatible server
//! (vLLM, Ollama, llama.cpp, OpenRouter, Groq) when the operator sets a base URL.
//!
//! Usage mapping (OpenAI reports reasoning *inside* `completion_tokens` and cached *inside*
//! `prompt_tokens`):
//! - `promptTokens` = `prompt_tokens`; `cachedTokens` = `prompt_tokens_details.cached_tokens`
//! - `reasoningTokens` = `completion_tokens_details.reasoning_tokens`
//! - `completionTokens` = `completion_tokens` − `reasoning_tokens`
//!
//! Streams carry usage only in a last chunk with `choices: []`, and only when
//! `stream_options.include_usage` is set — which this plugin always sets.

mod request;
mod response;
mod stream;

use pods_plugin_sdk::types::{
    ChatRequest, Completion, HttpRequest, HttpResponse, KeyPlacement, Manifest, ModelInfo,
    ProviderError,
};
use pods_plugin_sdk::{extractor, provider};

struct OpenAi;

impl provider::Guest for OpenAi {
    type StreamParser = stream::Parser;

    fn describe() -> Manifest {
        let model = |id: &str, window: u32, reasoning: bool| ModelInfo {
            id: id.into(),
            context_window: Some(window),
            reasoning,
        };
        Manifest {
            id: "openai".into(),
            name: "OpenAI".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: pods_plugin_sdk::API_VERSION.into(),
            default_base_url: "https://api.openai.com/v1".into(),
            allowed_hosts: vec!["api.openai.com".into()],
            key_placement: KeyPlacement::Bearer,
            models: vec![
                model("gpt-4o", 128_000, false),
                model("gpt-4o-mini", 128_000, false),
                model("gpt-4.1", 1_047_576, false),
                model("gpt-4.1-mini", 1_047_576, false),
                model("gpt-5", 400_000, true),
                model("gpt-5-mini", 400_000, true),
                model("o3", 200_000, true),
                model("o4-mini", 200_000, true),
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

impl extractor::Guest for OpenAi {
    fn extract(raw_response: String, args: Option<String>) -> Result<String, String> {
        pods_plugin_sdk::extract_pointer(&raw_response, "/choices/0/message/content", args)
    }
}

pods_plugin_sdk::export_plugin!(OpenAi);

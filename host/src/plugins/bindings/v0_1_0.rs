//! Bindings for plugins built against `pods:provider@0.1.0` (the frozen `wit/v0.1.0` folder), and
//! the conversions between its types and the host's own ([`super::super::types`]). A later WIT version
//! gets a sibling module; this one stays as it is so old plugins keep working.

use super::super::types as host;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "plugin",
    // Calls run on wasmtime's async support (see runtime.rs).
    exports: { default: async },
});

use self::pods::provider::types as wit;

/// The interface name a component must export to be a 0.1.x provider plugin.
pub const PROVIDER_EXPORT: &str = "pods:provider/provider@0.1.0";
/// …and an extractor-only plugin (with a top-level `describe`).
pub const EXTRACTOR_EXPORT: &str = "pods:provider/extractor@0.1.0";

/// The `extractor-plugin` world of the same package.
pub mod extractor_only {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "extractor-plugin",
        exports: { default: async },
    });

    /// Its manifest as the host's: an extractor calls nothing, so no hosts, key or models.
    pub fn manifest(m: pods::provider::types::ExtractorManifest) -> super::host::Manifest {
        super::host::Manifest {
            kind: super::host::PluginKind::Extractor,
            id: m.id,
            name: m.name,
            version: m.version,
            api_version: m.api_version,
            default_base_url: String::new(),
            allowed_hosts: Vec::new(),
            key_placement: super::host::KeyPlacement::Bearer,
            models: Vec::new(),
        }
    }
}

pub fn request(r: &host::ChatRequest, base_url: &str) -> wit::ChatRequest {
    wit::ChatRequest {
        model: r.model.clone(),
        system_prompt: r.system_prompt.clone(),
        messages: r
            .messages
            .iter()
            .map(|m| wit::Message {
                role: match m.role {
                    host::MessageRole::System => wit::Role::System,
                    host::MessageRole::User => wit::Role::User,
                    host::MessageRole::Assistant => wit::Role::Assistant,
                },
                content: m.content.clone(),
            })
            .collect(),
        temperature: r.temperature,
        max_tokens: r.max_tokens,
        top_p: r.top_p,
        response_format: r.response_format.as_ref().map(|f| match f {
            host::ResponseFormat::Text => wit::ResponseFormat::Text,
            host::ResponseFormat::JsonObject => wit::ResponseFormat::JsonObject,
            host::ResponseFormat::JsonSchema { schema } => {
                wit::ResponseFormat::JsonSchema(schema.to_string())
            }
        }),
        thinking_budget: r.thinking_budget,
        stream: r.stream,
        base_url: base_url.trim_end_matches('/').to_string(),
    }
}

fn headers_to_wit(headers: &[(String, String)]) -> Vec<wit::Header> {
    headers
        .iter()
        .map(|(name, value)| wit::Header {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

pub fn http_response(r: &host::HttpResponse) -> wit::HttpResponse {
    wit::HttpResponse {
        status: r.status,
        headers: headers_to_wit(&r.headers),
        body: r.body.clone(),
    }
}

pub fn sse_event(e: &host::SseEvent) -> wit::SseEvent {
    wit::SseEvent {
        event: e.event.clone(),
        data: e.data.clone(),
    }
}

pub fn http_request(r: wit::HttpRequest) -> host::HttpRequest {
    host::HttpRequest {
        method: match r.method {
            wit::Method::Get => host::Method::Get,
            wit::Method::Post => host::Method::Post,
        },
        url: r.url,
        headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        body: r.body,
    }
}

fn usage(u: wit::Usage) -> host::Usage {
    host::Usage {
        prompt_tokens: u.prompt_tokens,
        cached_tokens: u.cached_tokens,
        cache_write_tokens: u.cache_write_tokens,
        completion_tokens: u.completion_tokens,
        reasoning_tokens: u.reasoning_tokens,
    }
}

fn finish_reason(f: wit::FinishReason) -> host::FinishReason {
    match f {
        wit::FinishReason::Stop => host::FinishReason::Stop,
        wit::FinishReason::Length => host::FinishReason::Length,
        wit::FinishReason::ContentFilter => host::FinishReason::ContentFilter,
        wit::FinishReason::Refusal => host::FinishReason::Refusal,
        wit::FinishReason::ToolCalls => host::FinishReason::ToolCalls,
        wit::FinishReason::Other => host::FinishReason::Other,
    }
}

pub fn completion(c: wit::Completion) -> host::Completion {
    host::Completion {
        content: c.content,
        reasoning: c.reasoning,
        usage: usage(c.usage),
        finish_reason: c.finish_reason.map(finish_reason),
        model: c.model,
        response_id: c.response_id,
    }
}

pub fn stream_delta(d: wit::StreamDelta) -> host::StreamDelta {
    host::StreamDelta {
        text: d.text,
        reasoning: d.reasoning,
        usage: d.usage.map(usage),
        finish_reason: d.finish_reason.map(finish_reason),
    }
}

pub fn provider_error(e: wit::ProviderError) -> host::ProviderError {
    host::ProviderError {
        kind: match e.kind {
            wit::ErrorKind::Auth => host::ErrorKind::Auth,
            wit::ErrorKind::RateLimited => host::ErrorKind::RateLimited,
            wit::ErrorKind::QuotaExceeded => host::ErrorKind::QuotaExceeded,
            wit::ErrorKind::InvalidRequest => host::ErrorKind::InvalidRequest,
            wit::ErrorKind::ContextLength => host::ErrorKind::ContextLength,
            wit::ErrorKind::ContentFilter => host::ErrorKind::ContentFilter,
            wit::ErrorKind::Overloaded => host::ErrorKind::Overloaded,
            wit::ErrorKind::Server => host::ErrorKind::Server,
            wit::ErrorKind::MalformedResponse => host::ErrorKind::MalformedResponse,
        },
        message: e.message,
        retryable: e.retryable,
        retry_after_ms: e.retry_after_ms,
        status: e.status,
        provider_code: e.provider_code,
    }
}

pub fn manifest(m: wit::Manifest) -> host::Manifest {
    host::Manifest {
        kind: host::PluginKind::Provider,
        id: m.id,
        name: m.name,
        version: m.version,
        api_version: m.api_version,
        default_base_url: m.default_base_url,
        allowed_hosts: m.allowed_hosts,
        key_placement: match m.key_placement {
            wit::KeyPlacement::Bearer => host::KeyPlacement::Bearer,
            wit::KeyPlacement::Header(name) => host::KeyPlacement::Header(name),
            wit::KeyPlacement::Query(name) => host::KeyPlacement::Query(name),
        },
        models: m
            .models
            .into_iter()
            .map(|model| host::ModelInfo {
                id: model.id,
                context_window: model.context_window,
                reasoning: model.reasoning,
            })
            .collect(),
    }
}

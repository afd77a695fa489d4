//! The host's own view of the plugin contract: plain Rust types, independent of any WIT version,
//! serializable as camelCase JSON (the API and the conformance vectors use them). Each WIT
//! version's bindings convert to and from these (see `bindings.rs`). The chat request and its
//! answer are shared with the rest of the host and live in [`crate::domain`].

use serde::{Deserialize, Serialize};

use crate::domain::ErrorCode;

pub use crate::domain::{
    ChatRequest, Completion, FinishReason, Message, MessageRole, ResponseFormat, StreamDelta, Usage,
};
pub use crate::sse::SseEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Auth,
    RateLimited,
    QuotaExceeded,
    InvalidRequest,
    ContextLength,
    ContentFilter,
    Overloaded,
    Server,
    MalformedResponse,
}

impl ErrorKind {
    /// The API error code for this kind, e.g. `PROVIDER_RATE_LIMITED`.
    pub fn code(self) -> ErrorCode {
        match self {
            ErrorKind::Auth => ErrorCode::ProviderAuth,
            ErrorKind::RateLimited => ErrorCode::ProviderRateLimited,
            ErrorKind::QuotaExceeded => ErrorCode::ProviderQuotaExceeded,
            ErrorKind::InvalidRequest => ErrorCode::ProviderInvalidRequest,
            ErrorKind::ContextLength => ErrorCode::ProviderContextLength,
            ErrorKind::ContentFilter => ErrorCode::ProviderContentFilter,
            ErrorKind::Overloaded => ErrorCode::ProviderOverloaded,
            ErrorKind::Server => ErrorCode::ProviderServerError,
            ErrorKind::MalformedResponse => ErrorCode::ProviderMalformedResponse,
        }
    }
}

/// A typed failure reported by a provider plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{kind:?}: {message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    pub retryable: bool,
    pub retry_after_ms: Option<u64>,
    pub status: Option<u16>,
    pub provider_code: Option<String>,
}

/// Where the host puts the API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum KeyPlacement {
    Bearer,
    Header(String),
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub id: String,
    pub context_window: Option<u32>,
    pub reasoning: bool,
}

/// What a plugin is: a provider (the `plugin` world) or an output extractor only (the
/// `extractor-plugin` world).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    #[default]
    Provider,
    Extractor,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Provider => "provider",
            PluginKind::Extractor => "extractor",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub kind: PluginKind,
    pub id: String,
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub default_base_url: String,
    pub allowed_hosts: Vec<String>,
    pub key_placement: KeyPlacement,
    pub models: Vec<ModelInfo>,
}

//! The Rust SDK for Pods provider plugins.
//!
//! It generates the guest bindings of `pods:provider@0.1.0` once, so each plugin only implements the
//! `Guest` traits and calls [`export_plugin!`]; and it holds the helpers every provider needs: header
//! look-ups, `retry-after` parsing, typed errors with the right retryability, and URL joining.
//!
//! ```text
//! struct MyProvider;
//! impl pods_plugin_sdk::provider::Guest for MyProvider { /* … */ }
//! impl pods_plugin_sdk::extractor::Guest for MyProvider { /* … */ }
//! pods_plugin_sdk::export_plugin!(MyProvider);
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "pods_plugin_sdk::bindings",
    });
}

pub use bindings::export_plugin;
pub use bindings::exports::pods::provider::{extractor, provider};
pub use bindings::pods::provider::types;
pub use serde_json;

use types::{Completion, ErrorKind, FinishReason, Header, ProviderError, StreamDelta, Usage};

/// The WIT package version this SDK builds against.
pub const API_VERSION: &str = "0.1.0";

/// The value of the first header named `name` (case-insensitive).
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// How long the provider asked us to wait: `retry-after-ms` (milliseconds, OpenAI) or
/// `retry-after` (whole or fractional seconds). An HTTP-date `retry-after` is ignored: plugins have
/// no clock, and the host's backoff applies instead.
pub fn retry_after_ms(headers: &[Header]) -> Option<u64> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return to_ms(ms);
    }
    header(headers, "retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|secs| to_ms(secs * 1000.0))
}

/// Parses a protobuf-JSON duration such as `"31s"` or `"0.5s"` into milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    text.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .and_then(|secs| to_ms(secs * 1000.0))
}

fn to_ms(ms: f64) -> Option<u64> {
    // Negative, NaN or absurd values are ignored rather than trusted.
    (ms.is_finite() && (0.0..=86_400_000.0).contains(&ms)).then(|| ms.ceil() as u64)
}

/// The error kind an HTTP status means when the body says nothing more precise.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::Auth,
        429 => ErrorKind::RateLimited,
        413 => ErrorKind::ContextLength,
        400..=499 => ErrorKind::InvalidRequest,
        503 | 529 => ErrorKind::Overloaded,
        _ => ErrorKind::Server,
    }
}

/// Whether retrying the same request later may succeed for an error of this kind.
pub fn is_retryable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::RateLimited | ErrorKind::Overloaded | ErrorKind::Server
    )
}

/// A provider error with the retryability its kind implies.
pub fn error(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError {
        kind,
        message: message.into(),
        retryable: is_retryable(kind),
        retry_after_ms: None,
        status: None,
        provider_code: None,
    }
}

/// A typed error for a provider's error answer. `status` under 400 (an error event inside a
/// successful stream) is not recorded; `retry_after_ms` is kept only when a retry may help.
pub fn provider_error(
    kind: ErrorKind,
    message: &str,
    status: u16,
    provider_code: Option<&str>,
    retry_after_ms: Option<u64>,
) -> ProviderError {
    let retryable = is_retryable(kind);
    ProviderError {
        kind,
        message: message.to_string(),
        retryable,
        retry_after_ms: retry_after_ms.filter(|_| retryable),
        status: (status >= 400).then_some(status),
        provider_code: provider_code.map(str::to_string),
    }
}

/// The error for a failed answer whose body is not the provider's error JSON (a proxy's HTML
/// page, say): classified by status alone. The body is not quoted: whatever answered is not
/// known to be the provider, and its words must not reach the caller.
pub fn status_error(response: &types::HttpResponse) -> ProviderError {
    provider_error(
        kind_for_status(response.status),
        &format!(
            "HTTP {} with a body that is not the provider's error format ({} bytes)",
            response.status,
            response.body.len()
        ),
        response.status,
        None,
        retry_after_ms(&response.headers),
    )
}

/// An error for a request this provider cannot express (never retried).
pub fn invalid_request(message: impl Into<String>) -> ProviderError {
    error(ErrorKind::InvalidRequest, message)
}

/// An error for an answer that could not be understood.
pub fn malformed(message: impl Into<String>) -> ProviderError {
    error(ErrorKind::MalformedResponse, message)
}

/// The error for a stream that ended before the provider's end marker: the answer is incomplete,
/// and sending the request again may well succeed.
pub fn cut_stream(what: &str) -> ProviderError {
    let mut err = malformed(format!("stream ended before {what}"));
    err.retryable = true;
    err
}

/// Usage with every figure unreported.
pub fn empty_usage() -> Usage {
    Usage {
        prompt_tokens: None,
        cached_tokens: None,
        cache_write_tokens: None,
        completion_tokens: None,
        reasoning_tokens: None,
    }
}

/// A delta that adds nothing (for keep-alives and bookkeeping events).
pub fn empty_delta() -> StreamDelta {
    StreamDelta {
        text: String::new(),
        reasoning: String::new(),
        usage: None,
        finish_reason: None,
    }
}

/// What a stream parser has gathered so far: the sum of its deltas.
#[derive(Default)]
pub struct StreamAccumulator {
    pub content: String,
    pub reasoning: String,
    /// The latest usage seen (providers send running totals).
    pub usage: Option<Usage>,
    pub finish_reason: Option<FinishReason>,
    pub model: Option<String>,
    pub response_id: Option<String>,
}

impl StreamAccumulator {
    pub fn add(&mut self, delta: &StreamDelta) {
        self.content.push_str(&delta.text);
        self.reasoning.push_str(&delta.reasoning);
        if delta.usage.is_some() {
            self.usage = delta.usage;
        }
        if delta.finish_reason.is_some() {
            self.finish_reason = delta.finish_reason;
        }
    }

    /// The whole answer.
    pub fn completion(&self) -> Completion {
        Completion {
            content: self.content.clone(),
            reasoning: (!self.reasoning.is_empty()).then(|| self.reasoning.clone()),
            usage: self.usage.unwrap_or_else(empty_usage),
            finish_reason: self.finish_reason,
            model: self.model.clone(),
            response_id: self.response_id.clone(),
        }
    }
}

/// Parses a JSON body, mapping failure to a `malformed-response` error.
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, ProviderError> {
    serde_json::from_slice(body).map_err(|e| malformed(format!("response is not JSON: {e}")))
}

/// `base` + `path`, with exactly one slash between them. A query string on `base` (Azure's
/// `?api-version=…`) goes after the path, joined with the path's own.
pub fn join_url(base: &str, path: &str) -> String {
    let (base, base_query) = match base.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base, None),
    };
    let joined = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    match base_query.filter(|q| !q.is_empty()) {
        None => joined,
        Some(q) if joined.contains('?') => format!("{joined}&{q}"),
        Some(q) => format!("{joined}?{q}"),
    }
}

/// The host part of an absolute URL (`https://host:port/path` → `host`), lowercase.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// A JSON POST request with the given extra headers.
pub fn post_json(
    url: String,
    body: &serde_json::Value,
    extra_headers: &[(&str, &str)],
) -> types::HttpRequest {
    let mut headers = vec![Header {
        name: "content-type".into(),
        value: "application/json".into(),
    }];
    headers.extend(extra_headers.iter().map(|(n, v)| Header {
        name: (*n).into(),
        value: (*v).into(),
    }));
    types::HttpRequest {
        method: types::Method::Post,
        url,
        headers,
        body: body.to_string().into_bytes(),
    }
}

/// Reads a JSON pointer as a token count (`None` when absent or not a number).
pub fn count(value: &serde_json::Value, pointer: &str) -> Option<u64> {
    value.pointer(pointer).and_then(serde_json::Value::as_u64)
}

/// Extracts the string at a JSON pointer of a stored raw response, for the output extractor.
/// `args`, when given, is a JSON pointer that overrides the default one.
pub fn extract_pointer(
    raw_response: &str,
    default_pointer: &str,
    args: Option<String>,
) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(raw_response).map_err(|e| format!("raw response is not JSON: {e}"))?;
    let pointer = args.as_deref().unwrap_or(default_pointer);
    match value.pointer(pointer) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(format!("nothing at {pointer} in the raw response")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn retry_after_prefers_milliseconds_and_ignores_dates() {
        assert_eq!(retry_after_ms(&[h("Retry-After", "2")]), Some(2000));
        assert_eq!(
            retry_after_ms(&[h("retry-after", "2"), h("retry-after-ms", "150.5")]),
            Some(151)
        );
        assert_eq!(
            retry_after_ms(&[h("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            None
        );
        assert_eq!(retry_after_ms(&[h("retry-after", "-1")]), None);
        assert_eq!(duration_ms("31s"), Some(31000));
        assert_eq!(duration_ms("0.25s"), Some(250));
    }

    #[test]
    fn url_host_handles_ports_userinfo_and_ipv6() {
        assert_eq!(
            url_host("https://API.openai.com/v1").as_deref(),
            Some("api.openai.com")
        );
        assert_eq!(
            url_host("http://127.0.0.1:8080/x?y").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            url_host("http://u:p@h.example:1/").as_deref(),
            Some("h.example")
        );
        assert_eq!(url_host("http://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(url_host("no-scheme"), None);
    }

    #[test]
    fn join_url_has_one_slash() {
        assert_eq!(join_url("http://x/", "/v1/a"), "http://x/v1/a");
        assert_eq!(join_url("http://x/v1", "chat"), "http://x/v1/chat");
        assert_eq!(
            join_url("http://x/v1/?api-version=1", "/chat"),
            "http://x/v1/chat?api-version=1"
        );
        assert_eq!(
            join_url("http://x/v1?api-version=1", "/m:stream?alt=sse"),
            "http://x/v1/m:stream?alt=sse&api-version=1"
        );
    }
}

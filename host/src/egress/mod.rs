//! Everything that leaves the host towards a provider. The plugin builds the request; the host
//! checks where it goes, attaches the API key the way the manifest says, sends it, and hands the
//! answer (or each server-sent event) back to the plugin to parse.
//!
//! A request is sent only to a host the plugin declared (over HTTPS) or to the base URL the
//! operator configured for that provider; anything else is refused before a byte leaves.
//! Redirects are not followed, so a provider cannot bounce the key elsewhere either. Wherever it
//! goes, the address connected to must pass the [`policy`] (no internal addresses unless an
//! operator allowed them).

pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::domain::ErrorCode;
use crate::plugins::types::{
    ChatRequest, Completion, HttpRequest, HttpResponse, KeyPlacement, Manifest, Method,
    ProviderError, StreamDelta,
};
use crate::plugins::{Instance, Plugin, PluginError};
use crate::sse::SseDecoder;
use crate::vault::ApiKey;
pub use policy::{EgressPolicy, Refused};
use tracing::Instrument as _;

/// Where one call goes and with which key.
#[derive(Debug, Clone)]
pub struct Target {
    /// The operator's base URL for this provider; `None` = the manifest's default.
    pub base_url: Option<String>,
    pub key: ApiKey,
    /// Whose share of the plugin sandbox the call's plugin work counts against.
    pub workspace: Option<String>,
}

impl Target {
    /// What of this target is secret: the key, and a base URL's query string (sealed with it).
    fn secrets(&self) -> impl Iterator<Item = &str> {
        let query = self
            .base_url
            .as_deref()
            .and_then(|url| url.split_once('?'))
            .map(|(_, query)| query);
        [Some(self.key.expose()), query]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
    }

    /// A provider may echo the key in an error message, and a URL in an error may carry the
    /// secret query: neither may reach logs or clients.
    fn redact(&self, error: CallError) -> CallError {
        let clean = |mut text: String| {
            for secret in self.secrets() {
                text = text.replace(secret, "[redacted]");
            }
            text
        };
        match error {
            CallError::Provider(mut err) => {
                err.message = clean(err.message);
                CallError::Provider(err)
            }
            CallError::BadRequest(text) => CallError::BadRequest(clean(text)),
            CallError::Transport(text) => CallError::Transport(clean(text)),
            CallError::Interrupted(text) => CallError::Interrupted(clean(text)),
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Longest wait for the provider's headers, and between two chunks of its body.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Where calls may connect.
    pub policy: EgressPolicy,
    /// What a plugin may hand back.
    pub caps: OutputCaps,
}

/// Caps on everything a plugin hands the host; breaching one is `PLUGIN_OUTPUT_TOO_LARGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCaps {
    /// Headers of the request it builds, and their bytes all told.
    pub headers: usize,
    pub header_bytes: usize,
    pub url_bytes: usize,
    /// The request body it builds.
    pub body_bytes: usize,
    /// The answer's text, and its reasoning, each (`PODS_PLUGIN_MAX_OUTPUT_BYTES`).
    pub text_bytes: usize,
    /// A typed error's message.
    pub error_bytes: usize,
}

impl Default for OutputCaps {
    fn default() -> Self {
        OutputCaps {
            headers: 100,
            header_bytes: 64 << 10,
            url_bytes: 8 << 10,
            body_bytes: 8 << 20,
            text_bytes: 8 << 20,
            error_bytes: 64 << 10,
        }
    }
}

impl OutputCaps {
    fn request(&self, built: &HttpRequest) -> Result<(), CallError> {
        let header_bytes: usize = built.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let over = |what: &str, size: usize, cap: usize| {
            (size > cap).then(|| CallError::OutputTooLarge(format!("{what}: {size} > {cap}")))
        };
        let breach = over("request headers", built.headers.len(), self.headers)
            .or_else(|| over("request header bytes", header_bytes, self.header_bytes))
            .or_else(|| over("request URL bytes", built.url.len(), self.url_bytes))
            .or_else(|| over("request body bytes", built.body.len(), self.body_bytes));
        breach.map_or(Ok(()), Err)
    }

    fn text(&self, what: &str, size: usize) -> Result<(), CallError> {
        if size > self.text_bytes {
            return Err(CallError::OutputTooLarge(format!(
                "{what} bytes: {size} > {}",
                self.text_bytes
            )));
        }
        Ok(())
    }

    fn completion(&self, c: &Completion) -> Result<(), CallError> {
        self.text("answer", c.content.len())?;
        self.text("reasoning", c.reasoning.as_ref().map_or(0, String::len))
    }

    fn error(&self, e: ProviderError) -> CallError {
        if e.message.len() > self.error_bytes {
            return CallError::OutputTooLarge(format!(
                "error message bytes: {} > {}",
                e.message.len(),
                self.error_bytes
            ));
        }
        CallError::Provider(e)
    }
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            timeout: Duration::from_secs(120),
            max_response_bytes: 32 << 20,
            policy: EgressPolicy::public_only(),
            caps: OutputCaps::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{0}")]
    Provider(ProviderError),
    #[error(
        "refused to send a request to {host:?}: it is neither among the plugin's allowed hosts (over https) nor the configured base URL"
    )]
    HostNotAllowed { host: String },
    #[error(
        "refused to send a request to {host:?}: the operator's allowed hosts for this plugin do not include it"
    )]
    HostNotPermitted { host: String },
    #[error("the plugin built an unusable request: {0}")]
    BadRequest(String),
    #[error("could not reach the provider: {0}")]
    Transport(String),
    /// After the provider began to answer: retried as a dropped connection is (a queued
    /// execution), never by a synchronous call.
    #[error("the provider's answer was cut off after it began: {0}")]
    Interrupted(String),
    #[error("the provider sent no data for {0:?}")]
    Timeout(Duration),
    #[error("the provider's answer exceeded {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    DestinationNotAllowed(Refused),
    #[error("the plugin handed back more than the host takes ({0})")]
    OutputTooLarge(String),
}

impl CallError {
    /// The API error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::Plugin(e) => e.code(),
            CallError::Provider(e) => e.kind.code(),
            CallError::HostNotAllowed { .. } | CallError::BadRequest(_) => ErrorCode::PluginError,
            CallError::HostNotPermitted { .. } => ErrorCode::HostNotPermitted,
            CallError::Transport(_) => ErrorCode::ProviderUnreachable,
            CallError::Interrupted(_) => ErrorCode::ProviderStreamInterrupted,
            CallError::Timeout(_) => ErrorCode::ProviderTimeout,
            CallError::TooLarge(_) => ErrorCode::ProviderMalformedResponse,
            CallError::DestinationNotAllowed(_) => ErrorCode::DestinationNotAllowed,
            CallError::OutputTooLarge(_) => ErrorCode::PluginOutputTooLarge,
        }
    }

    /// How long the provider asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Provider(e) => e.retry_after_ms.map(Duration::from_millis),
            _ => None,
        }
    }

    /// Whether sending the same request again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Provider(e) => e.retryable,
            CallError::Transport(_) | CallError::Interrupted(_) | CallError::Timeout(_) => true,
            CallError::Plugin(PluginError::Busy { .. }) => true,
            _ => false,
        }
    }
}

/// A provider's answer: the normalized completion, and the raw body when it was not streamed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub completion: Completion,
    pub raw: Option<Vec<u8>>,
    /// Time waiting on the provider: the HTTP exchange, the plugin's work excluded.
    pub provider_time: std::time::Duration,
}

/// The HTTP clients for provider calls (they pool connections): one per destination port, each
/// resolving names through the egress policy for that port.
#[derive(Clone)]
pub struct Egress {
    clients: Arc<Mutex<HashMap<u16, reqwest::Client>>>,
    config: EgressConfig,
}

/// Most per-port clients kept; past that they are built afresh (operators use a few ports).
const MAX_CLIENTS: usize = 32;

impl Egress {
    pub fn new(config: EgressConfig) -> Result<Self, CallError> {
        let egress = Egress {
            clients: Arc::default(),
            config,
        };
        egress.client(443)?;
        Ok(egress)
    }

    /// What a plugin may hand back.
    pub fn caps(&self) -> OutputCaps {
        self.config.caps
    }

    /// The policy calls are held to.
    pub fn policy(&self) -> &EgressPolicy {
        &self.config.policy
    }

    fn client(&self, port: u16) -> Result<reqwest::Client, CallError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&port) {
            return Ok(client.clone());
        }
        let resolver = policy::CheckedResolver {
            policy: self.config.policy.clone(),
            port,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.config.timeout)
            .dns_resolver(Arc::new(resolver))
            .build()
            .map_err(|e| CallError::Transport(e.to_string()))?;
        if clients.len() < MAX_CLIENTS {
            clients.insert(port, client.clone());
        }
        Ok(client)
    }

    /// Runs one provider call through `plugin`. For a streamed request, `on_delta` sees each
    /// event's increment as it arrives; the returned completion is the whole answer.
    pub async fn call(
        &self,
        plugin: &Plugin,
        request: &ChatRequest,
        target: &Target,
        on_delta: impl FnMut(&StreamDelta),
    ) -> Result<Answer, CallError> {
        self.attempt(plugin, request, target, on_delta)
            .await
            .map_err(|e| target.redact(e))
    }

    async fn attempt(
        &self,
        plugin: &Plugin,
        request: &ChatRequest,
        target: &Target,
        mut on_delta: impl FnMut(&StreamDelta),
    ) -> Result<Answer, CallError> {
        let manifest = plugin.manifest();
        let base_url = target
            .base_url
            .as_deref()
            .unwrap_or(&manifest.default_base_url);
        if base_url.is_empty() {
            return Err(CallError::BadRequest(format!(
                "provider {:?} has no default base URL; configure one",
                manifest.id
            )));
        }
        let mut instance = plugin.instantiate(target.workspace.as_deref()).await?;
        let caps = self.config.caps;
        let built = instance
            .build_request(request, base_url)
            .instrument(tracing::info_span!("plugin.build_request"))
            .await?
            .map_err(|e| caps.error(e))?;
        caps.request(&built)?;
        let http = self.prepare(built, plugin, target)?;
        // The provider's time: from sending to the answer's last byte, less what the plugin
        // took meanwhile (a stream's events are parsed as they arrive).
        let (sent, busy) = (std::time::Instant::now(), instance.busy());
        let provider_time = |instance: &Instance| {
            sent.elapsed()
                .saturating_sub(instance.busy().saturating_sub(busy))
        };
        let call = tracing::info_span!("provider.call", status = tracing::field::Empty);
        let response = self.send(http).instrument(call.clone()).await?;
        call.record("status", response.status().as_u16());

        if request.stream && (200..300).contains(&response.status().as_u16()) {
            let completion = self
                .read_stream(&mut instance, request, base_url, response, &mut on_delta)
                .instrument(call)
                .await?;
            Ok(Answer {
                completion,
                raw: None,
                provider_time: provider_time(&instance),
            })
        } else {
            let answer = self.read_whole(response).instrument(call).await?;
            let provider_time = provider_time(&instance);
            instance
                .parse_response(request, base_url, &answer)
                .instrument(tracing::info_span!("plugin.parse_response"))
                .await?
                .map_err(|e| caps.error(e))
                .and_then(|completion| caps.completion(&completion).map(|()| completion))
                .map(|completion| Answer {
                    completion,
                    raw: Some(answer.body),
                    provider_time,
                })
        }
    }

    /// Checks the destination and attaches the key.
    fn prepare(
        &self,
        built: HttpRequest,
        plugin: &Plugin,
        target: &Target,
    ) -> Result<reqwest::Request, CallError> {
        let manifest = plugin.manifest();
        let mut url = Url::parse(&built.url)
            .map_err(|e| CallError::BadRequest(format!("url {:?}: {e}", built.url)))?;
        check_destination(&url, manifest, target.base_url.as_deref())?;
        // An address in the URL is not resolved: it is judged here. Names are judged by the
        // client's resolver, address by address.
        let port = url.port_or_known_default().unwrap_or(443);
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            self.config
                .policy
                .check(url.host_str().unwrap_or_default(), ip, port)
                .map_err(CallError::DestinationNotAllowed)?;
        }
        let host = url.host_str().unwrap_or_default();
        if !plugin.host_permitted(host) {
            return Err(CallError::HostNotPermitted {
                host: host.to_string(),
            });
        }

        let key_header: Option<HeaderName> = match &manifest.key_placement {
            KeyPlacement::Bearer => Some(reqwest::header::AUTHORIZATION),
            KeyPlacement::Header(name) => Some(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| CallError::BadRequest(format!("key header: {e}")))?,
            ),
            KeyPlacement::Query(name) => {
                url.query_pairs_mut().append_pair(name, target.key.expose());
                None
            }
        };

        let mut headers = HeaderMap::new();
        for (name, value) in &built.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| CallError::BadRequest(format!("header {name:?}: {e}")))?;
            // The host owns framing, routing and the credential.
            if Some(&name) == key_header.as_ref()
                || matches!(
                    name.as_str(),
                    "host" | "content-length" | "transfer-encoding" | "connection"
                )
            {
                continue;
            }
            let value = HeaderValue::from_str(value)
                .map_err(|e| CallError::BadRequest(format!("header {name}: {e}")))?;
            headers.append(name, value);
        }
        if let Some(name) = key_header {
            let secret = match manifest.key_placement {
                KeyPlacement::Bearer => format!("Bearer {}", target.key.expose()),
                _ => target.key.expose().to_string(),
            };
            let mut value = HeaderValue::from_str(&secret).map_err(|_| {
                CallError::BadRequest("the API key is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }

        let method = match built.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut req = reqwest::Request::new(method, url);
        *req.headers_mut() = headers;
        *req.body_mut() = Some(built.body.into());
        Ok(req)
    }

    async fn send(&self, mut request: reqwest::Request) -> Result<reqwest::Response, CallError> {
        // The trace goes on at the provider (W3C traceparent, from the provider call's span),
        // when traces are exported.
        crate::telemetry::propagate(request.headers_mut());
        let client = self.client(request.url().port_or_known_default().unwrap_or(443))?;
        match tokio::time::timeout(self.config.timeout, client.execute(request)).await {
            Err(_) => Err(CallError::Timeout(self.config.timeout)),
            Ok(Err(e)) => match policy::refusal_in(&e) {
                Some(refused) => Err(CallError::DestinationNotAllowed(refused)),
                None => Err(CallError::Transport(transport_message(e))),
            },
            Ok(Ok(response)) => Ok(response),
        }
    }

    async fn read_whole(&self, response: reqwest::Response) -> Result<HttpResponse, CallError> {
        let status = response.status().as_u16();
        let headers = header_pairs(response.headers());
        // Room for what the provider announced (within the cap): no regrowing copies.
        let announced = response.content_length().unwrap_or(0);
        let mut body =
            Vec::with_capacity(announced.min(self.config.max_response_bytes as u64) as usize);
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = self.next_chunk(&mut chunks).await? {
            if body.len() + chunk.len() > self.config.max_response_bytes {
                return Err(CallError::TooLarge(self.config.max_response_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    async fn read_stream(
        &self,
        instance: &mut Instance,
        request: &ChatRequest,
        base_url: &str,
        response: reqwest::Response,
        on_delta: &mut impl FnMut(&StreamDelta),
    ) -> Result<Completion, CallError> {
        instance.stream_start(request, base_url).await?;
        let caps = self.config.caps;
        let (mut text, mut reasoning) = (0usize, 0usize);
        let mut decoder = SseDecoder::default();
        let mut received = 0usize;
        let mut chunks = response.bytes_stream();
        let mut ended = false;
        while !ended {
            let events = match self.next_chunk(&mut chunks).await? {
                Some(chunk) => {
                    received += chunk.len();
                    if received > self.config.max_response_bytes {
                        return Err(CallError::TooLarge(self.config.max_response_bytes));
                    }
                    decoder
                        .push(&chunk)
                        .map_err(|e| CallError::Transport(e.to_string()))?
                }
                None => {
                    ended = true;
                    decoder.finish().into_iter().collect()
                }
            };
            for event in events {
                let delta = instance
                    .stream_push(&event)
                    .await?
                    .map_err(|e| caps.error(e))?;
                (text, reasoning) = (text + delta.text.len(), reasoning + delta.reasoning.len());
                caps.text("answer", text)?;
                caps.text("reasoning", reasoning)?;
                on_delta(&delta);
            }
        }
        let completion = instance.stream_finish().await?.map_err(|e| caps.error(e))?;
        caps.completion(&completion)?;
        Ok(completion)
    }

    async fn next_chunk(
        &self,
        chunks: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    ) -> Result<Option<bytes::Bytes>, CallError> {
        match tokio::time::timeout(self.config.timeout, chunks.next()).await {
            Err(_) => Err(CallError::Timeout(self.config.timeout)),
            Ok(None) => Ok(None),
            // The answer's headers came: the provider was reached, and its answer cut off.
            Ok(Some(Err(e))) => Err(CallError::Interrupted(transport_message(e))),
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        }
    }
}

/// Allowed: the configured base URL's own scheme, host and port; or a host the plugin declared,
/// over HTTPS.
fn check_destination(
    url: &Url,
    manifest: &Manifest,
    configured: Option<&str>,
) -> Result<(), CallError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CallError::BadRequest(format!(
            "scheme {:?} is not http(s)",
            url.scheme()
        )));
    }
    let host = url.host_str().unwrap_or_default();
    let same_origin = |base: &Url| {
        base.scheme() == url.scheme()
            && base.host_str() == Some(host)
            && base.port_or_known_default() == url.port_or_known_default()
    };
    if configured
        .and_then(|b| Url::parse(b).ok())
        .is_some_and(|base| same_origin(&base))
    {
        return Ok(());
    }
    if url.scheme() == "https" && manifest.allowed_hosts.iter().any(|h| h == host) {
        return Ok(());
    }
    Err(CallError::HostNotAllowed {
        host: host.to_string(),
    })
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// reqwest's error with its causes, without the URL (which may carry a query-parameter key).
fn transport_message(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(hosts: &[&str]) -> Manifest {
        Manifest {
            kind: Default::default(),
            id: "t".into(),
            name: "T".into(),
            version: "1.0.0".into(),
            api_version: "0.1.0".into(),
            default_base_url: String::new(),
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            key_placement: KeyPlacement::Bearer,
            models: vec![],
        }
    }

    fn check(url: &str, hosts: &[&str], configured: Option<&str>) -> bool {
        let url = Url::parse(url).expect("test url");
        check_destination(&url, &manifest(hosts), configured).is_ok()
    }

    #[test]
    fn declared_hosts_only_over_https() {
        assert!(check("https://api.x.test/v1", &["api.x.test"], None));
        assert!(!check("http://api.x.test/v1", &["api.x.test"], None));
        assert!(!check("https://evil.test/", &["api.x.test"], None));
        assert!(!check(
            "https://api.x.test.evil.test/",
            &["api.x.test"],
            None
        ));
    }

    #[test]
    fn configured_base_url_allows_its_exact_origin() {
        let base = Some("http://127.0.0.1:8080/v1");
        assert!(check("http://127.0.0.1:8080/v1/chat", &[], base));
        assert!(!check("http://127.0.0.1:8081/v1/chat", &[], base));
        assert!(!check("https://127.0.0.1:8080/v1/chat", &[], base));
    }

    #[test]
    fn key_hint_shows_only_the_tail() {
        let key = ApiKey::new("sk-secret-a1b2");
        assert_eq!(key.hint(), "…a1b2");
        assert!(!format!("{key:?}").contains("secret"));
    }
}

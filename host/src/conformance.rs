//! Conformance vectors: request/response pairs and stream transcripts in a provider's documented
//! wire format, with the normalized result a plugin must produce. The same vectors drive the
//! built-in plugins' tests and `pods plugin check`, the tool a plugin author runs before shipping.
//!
//! A vector is `NAME.json` (the spec below) plus `NAME.body`, the provider's response bytes, served
//! byte for byte by a loopback HTTP server — the plugin is exercised through the real HTTP hop.
//!
//! ```json
//! {
//!   "description": "what this vector proves",
//!   "request": { "model": "…", "messages": [ … ], "stream": false },
//!   "expectRequest": { "method": "POST", "path": "/v1/chat/completions",
//!                      "headers": { "content-type": "application/json" }, "json": { … } },
//!   "response": { "status": 200, "headers": { "content-type": "application/json" } },
//!   "expect": { "content": "…", "usage": { … }, "finishReason": "stop" },
//!   "extract": "text the output extractor must pull out of NAME.body"
//! }
//! ```
//! `"noRequest": true` instead says the plugin must refuse the request before anything is sent.
//! `expect` lists the fields of the completion that must match exactly (camelCase, as the API
//! shows them), or is `{"error": { … }}` with the fields of the expected provider error.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::egress::{CallError, Egress, EgressConfig, Target};
use crate::plugins::types::{ChatRequest, KeyPlacement};
use crate::plugins::{LoadError, Plugin, Vetting};
use crate::vault::ApiKey;

include!(concat!(env!("OUT_DIR"), "/vectors.rs"));

/// The key the runner attaches; the provider server checks it arrived where the manifest says. A
/// vector's body may contain it to show that a key echoed by the provider is redacted.
const TEST_KEY: &str = "pods-conformance-key-0f3a";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VectorSpec {
    pub description: String,
    pub request: ChatRequest,
    #[serde(default)]
    pub expect_request: Option<ExpectRequest>,
    /// The plugin must refuse the request itself: nothing may reach the provider.
    #[serde(default)]
    pub no_request: bool,
    pub response: ResponseSpec,
    pub expect: Value,
    #[serde(default)]
    pub extract: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectRequest {
    pub method: String,
    /// Path and query as the provider receives them (the key, if placed in the query, removed).
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub json: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseSpec {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Vector {
    pub name: String,
    pub spec: VectorSpec,
    /// The response body, byte for byte.
    pub body: Vec<u8>,
}

/// One vector's verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub result: Result<(), String>,
}

/// The built-in vectors for a provider id (`openai`, `anthropic`, `gemini`); empty for others.
pub fn builtin(provider: &str) -> Result<Vec<Vector>, String> {
    BUILTIN_VECTORS
        .iter()
        .filter(|(p, ..)| *p == provider)
        .map(|(_, name, json, body)| parse(name, json, body))
        .collect()
}

/// Every `*.json` vector in `dir`, with its `*.body`.
pub fn load_dir(dir: &Path) -> Result<Vec<Vector>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
            let json =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let body = std::fs::read(path.with_extension("body")).unwrap_or_default();
            parse(name, &json, &body)
        })
        .collect()
}

fn parse(name: &str, json: &str, body: &[u8]) -> Result<Vector, String> {
    let spec = serde_json::from_str(json).map_err(|e| format!("vector {name}: {e}"))?;
    Ok(Vector {
        name: name.to_string(),
        spec,
        body: body.to_vec(),
    })
}

/// Runs every vector against `plugin`, each through its own loopback provider server.
pub async fn run(plugin: &Plugin, vectors: &[Vector]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(vectors.len());
    for vector in vectors {
        outcomes.push(Outcome {
            name: vector.name.clone(),
            result: run_one(plugin, vector).await,
        });
    }
    outcomes
}

/// What the provider server saw.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
}

#[derive(Clone)]
struct Mock {
    vector: Arc<Vector>,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn serve_vector(
    State(mock): State<Mock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Ok(mut seen) = mock.received.lock() {
        seen.push(Received {
            method,
            uri,
            headers,
            body,
        });
    }
    let spec = &mock.vector.spec.response;
    // Small chunks with odd boundaries, so framing across reads is exercised too.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = mock
        .vector
        .body
        .chunks(61)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    *response.status_mut() =
        StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &spec.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

async fn run_one(plugin: &Plugin, vector: &Vector) -> Result<(), String> {
    let mock = Mock {
        vector: Arc::new(vector.clone()),
        received: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new()
        .fallback(serve_vector)
        .with_state(mock.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The provider's own base path (e.g. `/v1`) on the loopback server.
    let base_path = url::Url::parse(&plugin.manifest().default_base_url)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let target = Target {
        base_url: Some(format!("http://{addr}{base_path}")),
        key: ApiKey::new(TEST_KEY),
        workspace: None,
    };
    // The vector's stand-in on loopback is the one destination this call may reach.
    let egress = Egress::new(EgressConfig {
        policy: crate::egress::EgressPolicy::with_exceptions(&addr.to_string())?,
        ..EgressConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let mut streamed = (String::new(), String::new());
    let result = egress
        .call(plugin, &vector.spec.request, &target, |d| {
            streamed.0.push_str(&d.text);
            streamed.1.push_str(&d.reasoning);
        })
        .await
        .map(|answer| answer.completion);
    server.abort();

    let received = mock.received.lock().map(|r| r.clone()).unwrap_or_default();
    match (received.as_slice(), vector.spec.no_request) {
        ([], true) => {}
        ([request], false) => check_request(
            request,
            vector.spec.expect_request.as_ref(),
            &plugin.manifest().key_placement,
        )?,
        (seen, no_request) => {
            return Err(format!(
                "expected {} HTTP request(s), the provider saw {}",
                u8::from(!no_request),
                seen.len()
            ));
        }
    }
    check_result(&vector.spec, result, &streamed)?;
    if let Some(expected) = &vector.spec.extract {
        let raw = String::from_utf8_lossy(&vector.body);
        let mut instance = plugin.instantiate(None).await.map_err(|e| e.to_string())?;
        let got = instance
            .extract(&raw, None)
            .await
            .map_err(|e| e.to_string())?;
        if got.as_ref() != Ok(expected) {
            return Err(format!("extract: expected {expected:?}, got {got:?}"));
        }
    }
    Ok(())
}

fn check_request(
    got: &Received,
    expected: Option<&ExpectRequest>,
    placement: &KeyPlacement,
) -> Result<(), String> {
    // The key must arrive where the manifest says — and nowhere else.
    let mut path = got.uri.path().to_string();
    let mut query: Vec<(String, String)> = got
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let header = |name: &str| got.headers.get(name).and_then(|v| v.to_str().ok());
    let key_ok = match placement {
        KeyPlacement::Bearer => header("authorization") == Some(&format!("Bearer {TEST_KEY}")),
        KeyPlacement::Header(name) => header(name) == Some(TEST_KEY),
        KeyPlacement::Query(name) => {
            let before = query.len();
            query.retain(|(k, v)| !(k == name && v == TEST_KEY));
            query.len() + 1 == before
        }
    };
    if !key_ok {
        return Err(format!("the API key did not arrive as {placement:?}"));
    }
    if String::from_utf8_lossy(&got.body).contains(TEST_KEY) {
        return Err("the API key leaked into the request body".into());
    }
    if !query.is_empty() {
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        path = format!("{path}?{}", q.join("&"));
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    if got.method.as_str() != expected.method {
        return Err(format!(
            "method: expected {}, got {}",
            expected.method, got.method
        ));
    }
    if path != expected.path {
        return Err(format!("path: expected {}, got {path}", expected.path));
    }
    for (name, value) in &expected.headers {
        if header(name) != Some(value.as_str()) {
            return Err(format!(
                "header {name}: expected {value:?}, got {:?}",
                header(name)
            ));
        }
    }
    if let Some(json) = &expected.json {
        let body: Value = serde_json::from_slice(&got.body)
            .map_err(|e| format!("request body is not JSON: {e}"))?;
        if &body != json {
            return Err(format!("request body:\n expected {json}\n      got {body}"));
        }
    }
    Ok(())
}

fn check_result(
    spec: &VectorSpec,
    result: Result<crate::plugins::types::Completion, CallError>,
    streamed: &(String, String),
) -> Result<(), String> {
    match (spec.expect.get("error"), result) {
        (Some(expected), Err(CallError::Provider(err))) => {
            let got = serde_json::to_value(&err).map_err(|e| e.to_string())?;
            compare_fields("error", expected, &got)
        }
        (Some(_), Err(other)) => Err(format!(
            "expected a provider error, got {} ({other})",
            other.code()
        )),
        (Some(_), Ok(c)) => Err(format!("expected an error, got a completion: {c:?}")),
        (None, Err(e)) => Err(format!("expected a completion, got {}: {e}", e.code())),
        (None, Ok(completion)) => {
            if spec.request.stream {
                if streamed.0 != completion.content {
                    return Err(format!(
                        "streamed text {:?} differs from the final content {:?}",
                        streamed.0, completion.content
                    ));
                }
                if streamed.1 != completion.reasoning.clone().unwrap_or_default() {
                    return Err("streamed reasoning differs from the final reasoning".into());
                }
            }
            let got = serde_json::to_value(&completion).map_err(|e| e.to_string())?;
            compare_fields("completion", &spec.expect, &got)
        }
    }
}

/// Every field named in `expected` must equal the same field of `got`.
fn compare_fields(what: &str, expected: &Value, got: &Value) -> Result<(), String> {
    let Some(fields) = expected.as_object() else {
        return Err(format!("expected {what} must be a JSON object"));
    };
    for (field, want) in fields {
        let have = got.get(field).unwrap_or(&Value::Null);
        if have != want {
            return Err(format!("{what}.{field}: expected {want}, got {have}"));
        }
    }
    Ok(())
}

/// The registry's check of every load: a plugin whose id names a provider with built-in vectors
/// (openai, anthropic, gemini) must pass all of them.
pub fn vetting() -> Vetting {
    Arc::new(|plugin: Plugin| {
        Box::pin(async move {
            let provider = plugin.manifest().id.clone();
            let vectors = builtin(&provider).unwrap_or_default();
            let failures: Vec<String> = run(&plugin, &vectors)
                .await
                .into_iter()
                .filter_map(|o| o.result.err().map(|why| format!("{}: {why}", o.name)))
                .collect();
            if failures.is_empty() {
                return Ok(());
            }
            Err(LoadError::Conformance {
                provider,
                failures: format!(
                    "{} of {} failed — {}",
                    failures.len(),
                    vectors.len(),
                    failures.join("; ")
                ),
            })
        })
    })
}

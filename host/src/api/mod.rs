//! The HTTP edge: routes, authentication, workspace access, JSON bodies and errors.
//!
//! Every route under `/api/v1/workspaces/{ws}` first checks the caller's membership and role;
//! a workspace the caller does not belong to, and anything inside it, is a 404 — never data.
//! Errors are `{"error": {"code", "message"}}` with the matching status.

mod api_keys;
mod executions;
mod flows;
mod keys;
mod metrics;
mod openai;
mod openapi;
mod plugins;
mod pricing;
mod runs;
mod sign_in;
mod usage;
mod users;
mod workspaces;
mod ws;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use std::net::IpAddr;

use crate::auth::{API_KEY_PREFIX, AuthError, Tokens};
use crate::config::Node;
use crate::domain::{ErrorCode, KeyScope, Principal, Role};
use crate::events::Hub;
use crate::execution::{ExecError, Executor};
use crate::limiter::{Limiter, Rate, Rates, api_key_bucket};
use crate::plugins::Registry;
use crate::pod_store::PodStore;
use crate::queue::Queue;
use crate::store::{NewAuditEntry, Store, StoreError, Ticket};
use crate::vault::Vault;

/// What every handler can reach: the node's services.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pods: PodStore,
    pub plugins: Registry,
    pub vault: Vault,
    pub queue: std::sync::Arc<dyn Queue>,
    pub events: Hub,
    pub executor: Executor,
    /// Where provider calls may connect (base URLs are judged against it when saved).
    pub egress_policy: crate::egress::EgressPolicy,
    pub tokens: Tokens,
    pub limiter: std::sync::Arc<Limiter>,
    pub rates: Rates,
    pub runs: crate::runs::Runs,
}

impl AppState {
    pub fn new(node: Node, tokens: Tokens) -> Self {
        AppState {
            store: node.store,
            pods: node.pods,
            plugins: node.plugins,
            vault: node.vault,
            queue: node.queue,
            events: node.events,
            executor: node.executor,
            egress_policy: node.egress_policy,
            tokens,
            limiter: node.limiter,
            rates: node.rates,
            runs: node.runs,
        }
    }

    /// Only system admins pass.
    fn require_admin(&self, caller: &Caller) -> Result<(), ApiError> {
        if !caller.is_admin {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only system admins may do this",
            ));
        }
        Ok(())
    }

    /// The caller a credential names: a valid token of an existing, enabled user, or an
    /// unrevoked, unexpired API key whose creator is enabled (within its requests a minute). A
    /// credential that fails counts against the client address's budget (past it the answer is
    /// 429); a request without any guesses nothing and is simply 401.
    async fn authenticate(
        &self,
        credential: Result<&str, AuthError>,
        address: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        let refused = match credential {
            Ok(key) if key.starts_with(API_KEY_PREFIX) => {
                match self.api_key_caller(key, address).await? {
                    Some(caller) => return Ok(caller),
                    None => "the API key is unknown, revoked or expired".to_string(),
                }
            }
            Ok(token) => match self.tokens.verify(token) {
                Ok(user_id) => match self.store.active_user(&user_id).await? {
                    Some(user) => {
                        return Ok(Caller {
                            user_id: user.id,
                            is_admin: user.is_admin,
                            address,
                            api_key: None,
                        });
                    }
                    None => "the token's user does not exist or is disabled".to_string(),
                },
                Err(e) => e.to_string(),
            },
            Err(AuthError::Missing) => {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    AuthError::Missing.to_string(),
                ));
            }
            Err(e) => e.to_string(),
        };
        self.refuse(address, refused).await
    }

    /// A failed authentication: counted against the client address (429 past its limit), then
    /// 401 with `why`.
    async fn refuse(&self, address: Option<IpAddr>, why: String) -> Result<Caller, ApiError> {
        self.limit(
            &format!("auth:{}", address_label(address)),
            self.rates.auth_failures,
            1,
        )
        .await?;
        Err(ApiError::new(ErrorCode::Unauthorized, why))
    }

    /// The caller an API key makes, if it may act now; takes one of its requests a minute.
    /// The key is read on every request (one indexed read), so a revocation holds at once on
    /// every node.
    async fn api_key_caller(
        &self,
        secret: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Caller>, ApiError> {
        let hash = crate::auth::api_key_hash(secret);
        match self.store.active_api_key(&hash).await? {
            Some(key) => self.key_caller(key, address).await.map(Some),
            None => Ok(None),
        }
    }

    /// The caller a WebSocket ticket stands for, using the ticket up: its user if still active,
    /// or its API key if still active. Refused: 401, counted as a failed authentication.
    async fn ticket_caller(
        &self,
        ticket: &str,
        address: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        let hash = crate::auth::api_key_hash(ticket);
        let caller = match self.store.redeem_ws_ticket(&hash).await {
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
            Ok(Ticket {
                api_key_id: Some(id),
                ..
            }) => match self.store.active_api_key_by_id(&id).await? {
                Some(key) => Some(self.key_caller(key, address).await?),
                None => None,
            },
            Ok(Ticket { user_id, .. }) => {
                self.store.active_user(&user_id).await?.map(|user| Caller {
                    user_id: user.id,
                    is_admin: user.is_admin,
                    address,
                    api_key: None,
                })
            }
        };
        match caller {
            Some(caller) => Ok(caller),
            None => {
                let why = "the ticket is unknown, used or expired; ask for a new one";
                self.refuse(address, why.into()).await
            }
        }
    }

    /// The caller an active API key makes; takes one of its requests a minute.
    async fn key_caller(
        &self,
        key: crate::store::ActiveApiKey,
        address: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        if let Some(rpm) = key.rpm {
            self.limit(&api_key_bucket(&key.id, "rpm"), Rate::per_minute(rpm), 1)
                .await?;
        }
        // "Last used" to the minute: one write a minute per key, not one per request.
        let now = crate::domain::now_ms();
        if key.last_used_at.is_none_or(|at| now - at >= 60_000) {
            let (store, id) = (self.store.clone(), key.id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_api_key(&id, now).await {
                    tracing::warn!(error = %e, "could not note an API key's last use");
                }
            });
        }
        Ok(Caller {
            user_id: key.created_by,
            is_admin: false,
            address,
            api_key: Some(KeyScope {
                id: key.id,
                workspace_id: key.workspace_id,
                role: key.role,
                tpm: key.tpm,
                monthly_budget_usd: key.monthly_budget_usd,
            }),
        })
    }

    /// Before an execution starts: the caller's executions a minute (the API key's bucket, or
    /// the user's), then an API key's own limits ([`Self::check_key_limits`]).
    async fn may_run(&self, caller: &Caller) -> Result<(), ApiError> {
        self.limit(&caller.rate_subject(), self.rates.executions, 1)
            .await?;
        self.check_key_limits(caller).await
    }

    /// Before an API key's call: its month's budget is not spent (else 402 `BUDGET_EXHAUSTED`)
    /// and its tokens a minute are not used up (else 429). Nothing for a person.
    async fn check_key_limits(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(key) = &caller.api_key else {
            return Ok(());
        };
        if let Some(budget) = key.monthly_budget_usd {
            let spent = self.store.api_key_spent_this_month(&key.id).await?;
            if spent >= budget {
                return Err(ApiError::new(
                    ErrorCode::BudgetExhausted,
                    format!(
                        "this API key's monthly budget of {budget} USD is spent ({spent} USD this month)"
                    ),
                ));
            }
        }
        if let Some(tpm) = key.tpm {
            self.limiter
                .check(&api_key_bucket(&key.id, "tpm"), Rate::per_minute(tpm), 1)
                .await
                .map_err(|exceeded| ApiError::rate_limited(exceeded.retry_after))?;
        }
        Ok(())
    }

    /// Refuses an API key what only people do (managing keys and members, creating workspaces).
    fn require_person(&self, caller: &Caller) -> Result<(), ApiError> {
        if caller.api_key.is_some() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "an API key cannot do this; use a member's token",
            ));
        }
        Ok(())
    }

    /// Takes `cost` from `key`'s bucket; over the limit: 429 `RATE_LIMITED` with `Retry-After`.
    async fn limit(&self, key: &str, rate: Rate, cost: u32) -> Result<(), ApiError> {
        self.limiter
            .take(key, rate, cost)
            .await
            .map_err(|exceeded| ApiError::rate_limited(exceeded.retry_after))
    }

    /// Records a security-relevant action in the audit log. A failed write is logged, not
    /// answered: the action itself has happened.
    async fn audit(
        &self,
        caller: &Caller,
        workspace_id: Option<&str>,
        action: &'static str,
        target: &str,
        detail: serde_json::Value,
    ) {
        let mut detail = detail;
        if let (Some(key), Some(fields)) = (&caller.api_key, detail.as_object_mut()) {
            fields.insert("viaApiKey".into(), json!(key.id));
        }
        let entry = NewAuditEntry {
            actor_id: Some(caller.user_id.clone()),
            actor_address: caller.address.map(|a| a.to_string()),
            workspace_id: workspace_id.map(str::to_string),
            action,
            target: target.to_string(),
            detail,
        };
        if let Err(e) = self.store.record_audit(entry).await {
            tracing::error!(error = %e, action, "could not write the audit log");
        }
    }

    /// The caller's role in `ws`, if at least `min`. Not a member → 404; too weak a role → 403.
    /// An API key acts only in its workspace, with at most its own role.
    async fn access(&self, ws: &str, caller: &Caller, min: Role) -> Result<Role, ApiError> {
        if caller
            .api_key
            .as_ref()
            .is_some_and(|key| key.workspace_id != ws)
        {
            return Err(ExecError::from(crate::domain::Denied::NotMember).into());
        }
        let role = match self.store.role(ws, &caller.user_id).await {
            Err(StoreError::NotFound) => None,
            other => Some(other?),
        };
        let role = caller.principal().role_in(ws, role);
        Ok(crate::domain::member::require(role, min).map_err(ExecError::from)?)
    }
}

/// The whole API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .merge(workspaces::routes())
        .merge(flows::routes())
        .merge(executions::routes())
        .merge(keys::routes())
        .merge(api_keys::routes())
        .merge(pricing::routes())
        .merge(ws::routes())
        .merge(users::routes())
        .merge(sign_in::routes())
        .merge(usage::routes())
        .merge(runs::routes())
        .merge(metrics::api_routes())
        .merge(plugins::routes(state.plugins.limits().max_bytes));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .nest("/api/v1", api)
        .merge(openai::routes())
        .merge(metrics::routes())
        .merge(openapi::routes(
            (state.plugins.default_limits().memory_cap >> 20) as u32,
        ))
        // The console's pages and files, and a JSON 404 for everything else.
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                crate::console::serve(&method, &uri).unwrap_or_else(|| {
                    ApiError::new(ErrorCode::NotFound, "no such route").into_response()
                })
            },
        )
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(request_ids))
        .with_state(state)
}

/// Gives every request its id (`x-request-id`, accepted or made up): the span its handling logs
/// under, the id of what it records, and the header of its answer.
async fn request_ids(request: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let sent = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    let id = crate::request_id::accept_or_make(sent);
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    crate::telemetry::continue_trace(&span, request.headers());
    // The route's template, not its path: a bounded label.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let mut response = crate::request_id::scope(id.as_str().into(), next.run(request))
        .instrument(span)
        .await;
    let metrics = crate::metrics::get();
    metrics
        .http_seconds
        .get_or_create(&crate::metrics::RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&crate::metrics::HttpLabels {
            route,
            method,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// `/metrics` without a token, for `PODS_METRICS_LISTEN` (an address only the network's
/// scraper reaches).
pub fn metrics_router(state: AppState) -> Router {
    metrics::open_routes()
        .layer(axum::middleware::from_fn(request_ids))
        .with_state(state)
}

/// What a worker-only node serves: health and metrics.
pub fn operator_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(metrics::routes())
        .layer(axum::middleware::from_fn(request_ids))
        .with_state(state)
}

#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "The server and its database are up")))]
async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
    ))
}

/// Readiness: 200 when every backend answers — the store, the queue, the event relay — and
/// plugins are loaded; else 503 naming the ones that do not. For load balancers and
/// Kubernetes readiness probes (`/health` says only that the process is alive).
#[utoipa::path(get, path = "/ready", tag = "system", responses(
    (status = 200, body = Readiness, description = "Every backend answers"),
    (status = 503, body = Readiness, description = "`failing` names the backends that do not")))]
async fn ready(State(state): State<AppState>) -> Response {
    // A backend that hangs fails the check rather than the probe.
    async fn check<E: std::fmt::Display>(
        name: &str,
        probe: impl std::future::Future<Output = Result<(), E>>,
    ) -> (String, bool) {
        let ok = match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(backend = name, error = %e, "readiness check failed");
                false
            }
            Err(_) => {
                tracing::warn!(backend = name, "readiness check timed out");
                false
            }
        };
        (name.to_string(), ok)
    }
    // At once: a probe waits for the slowest backend, not for their sum.
    let (store, queue, events) = tokio::join!(
        check("store", state.store.ping()),
        check("queue", async { state.queue.metrics().await.map(|_| ()) }),
        check("events", state.events.ping()),
    );
    let plugins = ("plugins".to_string(), !state.plugins.list().is_empty());
    let checks = [store, queue, events, plugins];
    let failing: Vec<String> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name.clone())
        .collect();
    let readiness = Readiness {
        ready: failing.is_empty(),
        checks: checks
            .into_iter()
            .map(|(name, ok)| (name, if ok { "ok" } else { "unreachable" }.to_string()))
            .collect(),
        failing,
    };
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// What `/ready` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `store`, `queue`, `events`, `plugins`: `ok` or `unreachable`.
    pub checks: std::collections::BTreeMap<String, String>,
    /// The checks that failed (empty when ready).
    pub failing: Vec<String>,
}

/// Longest a readiness check waits for a backend.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The authenticated caller: a valid token of an existing, enabled user, or an API key acting
/// for the member who made it.
pub struct Caller {
    pub user_id: String,
    /// A system admin (never through an API key).
    pub is_admin: bool,
    /// The client's address, where the connection tells it.
    pub address: Option<IpAddr>,
    /// The API key the request came with.
    pub api_key: Option<KeyScope>,
}

impl Caller {
    pub fn principal(&self) -> Principal {
        Principal {
            user_id: self.user_id.clone(),
            api_key: self.api_key.clone(),
        }
    }

    /// Whose buckets the caller's calls are taken from: the key's, else the user's.
    fn rate_subject(&self) -> String {
        match &self.api_key {
            Some(key) => format!("apikey:{}", key.id),
            None => format!("user:{}", self.user_id),
        }
    }
}

/// A query string as read by axum: a rejection (wrong type, …) is `400 INVALID_FIELD`.
pub type QueryParams<T> = Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

/// A paged list's query and its `limit` (default `default`, at most `max`), or `400 INVALID_FIELD`.
fn paged<T>(
    query: QueryParams<T>,
    limit: impl Fn(&T) -> Option<u32>,
    default: u32,
    max: u32,
) -> Result<(T, u32), ApiError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::new(ErrorCode::InvalidField, e.body_text()))?;
    let n = limit(&q).unwrap_or(default);
    if !(1..=max).contains(&n) {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("limit must be between 1 and {max}"),
        ));
    }
    Ok((q, n))
}

/// An amount of USD as the API takes it: a positive decimal string (`"0.50"`), else 400
/// `INVALID_FIELD` naming `field`.
fn positive_usd(
    field: &str,
    text: Option<&str>,
) -> Result<Option<rust_decimal::Decimal>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    match text.trim().parse::<rust_decimal::Decimal>() {
        Ok(d) if d > rust_decimal::Decimal::ZERO => Ok(Some(d)),
        _ => Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("{field} {text:?} is not a positive decimal amount"),
        )),
    }
}

/// The client address of a request served with connect info (the server always is).
fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// A client address as a rate-limit bucket names it (`unknown` where the connection does not say).
fn address_label(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

/// The client's address as an extractor; `None` where the router runs without connect info.
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(parts)))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let credential = crate::auth::bearer(header);
        state.authenticate(credential, client_address(parts)).await
    }
}

/// A JSON request body with precise errors: 415 without a JSON content type, 413 over the size
/// limit, 400 `INVALID_UTF8`, `MALFORMED_JSON` or `INVALID_FIELD` (wrong type, unknown field).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::BodyTooLarge,
                        "the request body is over the size limit",
                    )
                } else {
                    ApiError::new(ErrorCode::BadBody, rejection.body_text())
                }
            })?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ApiError::new(
                ErrorCode::InvalidUtf8,
                "the request body is not valid UTF-8",
            ));
        }
        let classify = |e: serde_json::Error| {
            let code = match e.classify() {
                serde_json::error::Category::Data => ErrorCode::InvalidField,
                _ => ErrorCode::MalformedJson,
            };
            ApiError::new(code, e.to_string())
        };
        // A NUL in a JSON string can only be written `\u0000`: where that appears, look closer.
        // Text with NUL is refused on every backend alike (PostgreSQL could not store it).
        if bytes.windows(6).any(|w| w == b"\\u0000")
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && has_nul(&value)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "text must not contain NUL characters (\\u0000)",
            ));
        }
        // The common case in one pass: an object that reads as it is.
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if object && let Ok(body) = serde_json::from_slice(&bytes) {
            return Ok(Body(body));
        }
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(classify)?;
        // serde would read a struct from an array too; every body of this API is an object.
        if !value.is_object() {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "the body must be a JSON object",
            ));
        }
        integral_floats_to_integers(&mut value);
        serde_json::from_value(value).map(Body).map_err(classify)
    }
}

/// An optional JSON body: none at all (no content type, no bytes) is `None`; anything else is
/// read as [`Body`] is.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let headers = req.headers();
        let empty = !headers.contains_key(header::CONTENT_TYPE)
            && headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        if empty {
            return Ok(None);
        }
        <Body<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Whether any string in `value` (keys included) holds a NUL.
fn has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// `2.0` is an integer to JSON Schema (and so to the OpenAPI document), not to serde: a whole
/// number written as a float is read as the integer it is.
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// An error answer: its code (which owns the status) and message.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    execution_id: Option<String>,
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            execution_id: None,
            retry_after: None,
        }
    }

    /// 429 `RATE_LIMITED`, with `Retry-After` in whole seconds.
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests; retry in {} s",
                    retry_after.as_secs().max(1)
                ),
            )
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(id) = self.execution_id {
            body["executionId"] = json!(id);
        }
        let mut response = (self.code.status(), Json(body)).into_response();
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, after.as_secs().max(1).into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict(why) => ApiError::new(ErrorCode::Conflict, why),
            StoreError::IdempotencyTaken => ApiError::new(
                ErrorCode::Conflict,
                "another request with this Idempotency-Key came first",
            ),
            StoreError::Rejected(why) => ApiError::new(ErrorCode::StoreRejected, why),
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "store failure");
                ApiError::new(ErrorCode::Internal, "a stored record could not be read")
            }
            // The database is unreachable, restarting or out of space: worth trying again.
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the database could not take this request; try again",
                )
            }
        }
    }
}

impl From<crate::queue::QueueError> for ApiError {
    fn from(e: crate::queue::QueueError) -> Self {
        tracing::error!(error = %e, "queue failure");
        ApiError::new(
            ErrorCode::QueueUnavailable,
            "the queue backend failed; try again",
        )
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::NotFound(what) => ApiError::not_found(what),
            ExecError::Forbidden { .. } => ApiError::new(ErrorCode::Forbidden, e.to_string()),
            ExecError::Invalid { code, message } => ApiError::new(code, message),
            ExecError::Store(e) => e.into(),
            ExecError::Vault { .. } => {
                tracing::error!(error = %e, "provider key unreadable");
                ApiError::new(ErrorCode::KeyUnreadable, e.to_string())
            }
            ExecError::Cancelled { execution_id } => ApiError {
                execution_id: Some(execution_id),
                ..ApiError::new(
                    ErrorCode::ExecutionCancelled,
                    "the execution was cancelled while it ran",
                )
            },
            ExecError::Failed {
                execution_id,
                error,
            }
            | ExecError::Retry {
                execution_id,
                error,
                ..
            } => ApiError {
                execution_id: Some(execution_id),
                ..ApiError::new(error.code(), error.to_string())
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::integral_floats_to_integers;
    use serde_json::json;

    #[test]
    fn whole_floats_become_integers_and_the_rest_stays() {
        let mut v =
            json!({"maxTokens": 32659.0, "temperature": 0.7, "n": [2.0, 2.5], "big": 1e300});
        integral_floats_to_integers(&mut v);
        assert_eq!(
            v,
            json!({"maxTokens": 32659, "temperature": 0.7, "n": [2, 2.5], "big": 1e300})
        );
    }
}

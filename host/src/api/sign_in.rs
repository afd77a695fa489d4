//! Signing in: `POST /api/v1/auth/login` (email and password → a token) and
//! `POST /api/v1/ws-ticket` (a single-use ticket that opens one WebSocket, so a browser never puts
//! its token in a URL).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState, Body, Caller, ClientAddress};
use crate::auth::{NewTicket, WS_TICKET_TTL};
use crate::domain::ErrorCode;
use crate::store::Ticket;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/ws-ticket", post(ws_ticket))
}

/// Longest email a sign-in reads (RFC 5321's limit).
const MAX_EMAIL: usize = 320;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Login {
    #[schema(min_length = 1, max_length = 320)]
    pub email: String,
    pub password: String,
}

/// A signed-in user and their token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// Send as `Authorization: Bearer …`.
    pub token: String,
    /// When the token stops working (unix ms).
    pub expires_at: i64,
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "users",
    request_body = Login,
    responses((status = 200, body = SignedIn, description = "Signed in: a token for the server's token lifetime"),
        (status = 401, description = "UNAUTHORIZED: wrong email or password (the same answer for an unknown email), or the user is disabled"),
        (status = 429, description = "RATE_LIMITED: more than `PODS_RATE_LOGINS_PER_MIN` (5) attempts a minute for this email from this address")))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Body(input): Body<Login>,
) -> Result<Json<SignedIn>, ApiError> {
    let email = input.email.trim().to_lowercase();
    if email.is_empty() || email.len() > MAX_EMAIL {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("email must be 1 to {MAX_EMAIL} characters"),
        ));
    }
    // Every attempt counts, right or wrong: guessing is slow even from many accounts' view.
    let from = super::address_label(address);
    state
        .limit(&format!("login:{email}:{from}"), state.rates.logins, 1)
        .await?;
    let found = state.store.password_of(&email).await?;
    let stored = found.as_ref().and_then(|(_, hash)| hash.clone());
    let password = input.password;
    let matches = tokio::task::spawn_blocking(move || {
        crate::auth::verify_password(&password, stored.as_deref())
    })
    .await
    .unwrap_or(false);
    let wrong = || ApiError::new(ErrorCode::Unauthorized, "wrong email or password");
    let Some((user, _)) = found.filter(|_| matches) else {
        return Err(wrong());
    };
    if user.disabled {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this user is disabled; ask an administrator",
        ));
    }
    let ttl = state.tokens.max_ttl();
    let token = state
        .tokens
        .mint(&user.id, ttl)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let caller = Caller {
        user_id: user.id.clone(),
        is_admin: user.is_admin,
        address,
        api_key: None,
    };
    state
        .audit(&caller, None, "user.login", &user.id, json!({}))
        .await;
    Ok(Json(SignedIn {
        token,
        expires_at: crate::domain::now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        user_id: user.id,
        email: user.email,
        name: user.name,
        is_admin: user.is_admin,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WsTicket {
    /// Open a socket with `?ticket=…` in place of a token; it works once.
    pub ticket: String,
    pub expires_in_seconds: u64,
}

#[utoipa::path(post, path = "/api/v1/ws-ticket", tag = "users", security(("bearer" = [])),
    responses((status = 201, body = WsTicket, description = "A ticket for one WebSocket, standing for the caller (a user, or the API key), good for 30 s"),
        (status = 401),
        (status = 429, description = "RATE_LIMITED: more than `PODS_RATE_WS_TICKETS_PER_MIN` (120) tickets a minute for this caller; `Retry-After` says when to try again")))]
pub async fn ws_ticket(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<WsTicket>), ApiError> {
    let holder = match &caller.api_key {
        Some(key) => format!("ws-ticket:key:{}", key.id),
        None => format!("ws-ticket:user:{}", caller.user_id),
    };
    state.limit(&holder, state.rates.ws_tickets, 1).await?;
    let new = NewTicket::generate();
    let ticket = Ticket {
        user_id: caller.user_id.clone(),
        api_key_id: caller.api_key.as_ref().map(|key| key.id.clone()),
    };
    state
        .store
        .create_ws_ticket(&new.hash, &ticket, WS_TICKET_TTL)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WsTicket {
            ticket: new.secret,
            expires_in_seconds: WS_TICKET_TTL.as_secs(),
        }),
    ))
}

//! Workspace API keys: credentials for machines, made and revoked by a workspace's admins.
//!
//! A key is shown once, when it is made; the server keeps only its SHA-256. It acts for the
//! member who made it, in its workspace only, with at most its own role (and never more than
//! its maker's current one), within its requests and tokens a minute and its monthly budget.
//! Keys cannot manage keys or members: those stay with people.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState, Body, Caller};
use crate::auth::NewApiKey as Secret;
use crate::domain::{ErrorCode, Role, new_id};
use crate::store::{ApiKey, NewApiKey, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{ws}/api-keys", get(list).post(create))
        .route("/workspaces/{ws}/api-keys/{id}", delete(revoke))
}

/// A key to make.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyInput {
    /// What the key is for (1–100 characters).
    #[schema(pattern = "\\S", max_length = 100)]
    pub name: String,
    /// `viewer`, `member` or `admin` (never `owner`).
    pub role: Role,
    /// Requests a minute, on every route (at least 1).
    #[schema(minimum = 1)]
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion + reasoning) a minute (at least 1).
    #[schema(minimum = 1)]
    pub tpm: Option<u32>,
    /// Most the key's executions may cost in a UTC calendar month, USD (a decimal string).
    #[schema(pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub monthly_budget_usd: Option<String>,
    /// When the key stops working (RFC 3339, in the future).
    pub expires_at: Option<String>,
}

/// A key just made: the only time its secret is shown.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    /// The secret (`pods_…`): send it as `Authorization: Bearer pods_…`. It is not stored and
    /// cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKey,
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/api-keys", tag = "api keys", security(("bearer" = [])),
    request_body = ApiKeyInput,
    responses((status = 201, body = CreatedApiKey, description = "The key, shown this once"),
        (status = 400, description = "INVALID_FIELD"),
        (status = 403, description = "Not an admin of the workspace, or the caller is itself an API key")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Body(input): Body<ApiKeyInput>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    state.require_person(&caller)?;
    state.access(&ws, &caller, Role::Admin).await?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid("name must be 1 to 100 characters"));
    }
    if input.role == Role::Owner {
        return Err(invalid(
            "role must be viewer, member or admin: a key is never an owner",
        ));
    }
    if input.rpm == Some(0) || input.tpm == Some(0) {
        return Err(invalid(
            "rpm and tpm must be at least 1 (leave them out for no limit)",
        ));
    }
    let budget = super::positive_usd("monthlyBudgetUsd", input.monthly_budget_usd.as_deref())?;
    let expires_at = input.expires_at.as_deref().map(future_time).transpose()?;
    let secret = Secret::generate();
    let key = NewApiKey {
        id: new_id(),
        workspace_id: ws.clone(),
        name: name.to_string(),
        role: input.role,
        secret_hash: secret.hash,
        hint: secret.hint,
        rpm: input.rpm,
        tpm: input.tpm,
        monthly_budget_usd: budget,
        expires_at,
        created_by: caller.user_id.clone(),
    };
    let api_key = state.store.create_api_key(&key).await?;
    let detail = json!({"name": key.name, "role": key.role, "hint": key.hint});
    state
        .audit(&caller, Some(&ws), "apikey.create", &key.id, detail)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: secret.secret,
            api_key,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/api-keys", tag = "api keys", security(("bearer" = [])),
    responses((status = 200, body = [ApiKey], description = "Unrevoked keys, newest first, with this month's usage; never a secret")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    state.require_person(&caller)?;
    state.access(&ws, &caller, Role::Admin).await?;
    Ok(Json(state.store.api_keys(&ws).await?))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/api-keys/{id}", tag = "api keys", security(("bearer" = [])),
    responses((status = 204, description = "Revoked: refused from now on by every node; its open WebSockets close"),
        (status = 404, description = "No such unrevoked key in the workspace")))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.require_person(&caller)?;
    state.access(&ws, &caller, Role::Admin).await?;
    let maker = match state.store.revoke_api_key(&ws, &id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("API key")),
        other => other?,
    };
    // The key's sockets are its maker's: they look again, find the key revoked and close.
    state.events.access_changed(&maker);
    state
        .audit(&caller, Some(&ws), "apikey.revoke", &id, json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidField, message)
}

/// An RFC 3339 time in the future, as unix ms.
fn future_time(text: &str) -> Result<i64, ApiError> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid("expiresAt must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z"))?;
    let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| invalid("expiresAt is out of range"))?;
    if ms <= crate::domain::now_ms() {
        return Err(invalid("expiresAt must be in the future"));
    }
    Ok(ms)
}

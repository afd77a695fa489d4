//! System administration of users (disable, enable) and the audit log.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState, Caller};
use crate::domain::{ErrorCode, Role};
use crate::store::{AuditEntry, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users/{user}/disable", post(disable))
        .route("/admin/users/{user}/enable", post(enable))
        .route("/audit", get(all_audit))
        .route("/workspaces/{ws}/audit", get(workspace_audit))
}

/// A user as an administrator sees them.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    pub user_id: String,
    pub email: String,
    pub disabled: bool,
}

#[utoipa::path(post, path = "/api/v1/admin/users/{user}/disable", tag = "system", security(("bearer" = [])),
    params(("user" = String, Path, description = "The user's id or email")),
    responses((status = 200, body = UserStatus, description = "Disabled: every token of the user fails from now on, on every node, and their WebSockets close"),
        (status = 403), (status = 404), (status = 409, description = "CONFLICT: admins cannot disable themselves")))]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Json<UserStatus>, ApiError> {
    set_disabled(state, caller, user, true).await
}

#[utoipa::path(post, path = "/api/v1/admin/users/{user}/enable", tag = "system", security(("bearer" = [])),
    params(("user" = String, Path, description = "The user's id or email")),
    responses((status = 200, body = UserStatus, description = "Enabled again: tokens still in their lifetime work again"),
        (status = 403), (status = 404)))]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Json<UserStatus>, ApiError> {
    set_disabled(state, caller, user, false).await
}

async fn set_disabled(
    state: AppState,
    caller: Caller,
    user: String,
    disabled: bool,
) -> Result<Json<UserStatus>, ApiError> {
    state.require_admin(&caller)?;
    let target = match state.store.user(&user).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("user")),
        other => other?,
    };
    if disabled && target.id == caller.user_id {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "admins cannot disable themselves (another admin, or `pods admin disable-user`, can)",
        ));
    }
    let user = state.store.set_user_disabled(&target.id, disabled).await?;
    state.events.access_changed(&user.id);
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    state
        .audit(
            &caller,
            None,
            action,
            &user.id,
            json!({"email": user.email}),
        )
        .await;
    Ok(Json(UserStatus {
        user_id: user.id,
        email: user.email,
        disabled: user.disabled,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this workspace's entries (system admins' view).
    pub workspace_id: Option<String>,
    /// An entry id: page back from it (exclusive).
    pub before: Option<String>,
    /// How many, newest first: 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

type AuditParams = super::QueryParams<AuditQuery>;

impl AuditQuery {
    /// The query and its limit, or `400 INVALID_FIELD`.
    fn read(query: AuditParams) -> Result<(AuditQuery, u32), ApiError> {
        super::paged(query, |q| q.limit, 100, 500)
    }
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "system", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = [AuditEntry], description = "Every workspace's and the server's entries, newest first"),
        (status = 400, description = "INVALID_FIELD: a limit outside 1–500"), (status = 403)))]
pub async fn all_audit(
    State(state): State<AppState>,
    caller: Caller,
    query: AuditParams,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    state.require_admin(&caller)?;
    let (q, limit) = AuditQuery::read(query)?;
    Ok(Json(
        state
            .store
            .audit(q.workspace_id.as_deref(), q.before.as_deref(), limit)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/audit", tag = "workspaces", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = [AuditEntry], description = "The workspace's entries, newest first (owners only)"), (status = 403), (status = 404)))]
pub async fn workspace_audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    query: AuditParams,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    state.access(&ws, &caller, Role::Owner).await?;
    let (q, limit) = AuditQuery::read(query)?;
    Ok(Json(
        state
            .store
            .audit(Some(&ws), q.before.as_deref(), limit)
            .await?,
    ))
}

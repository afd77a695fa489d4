//! Workspaces and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, Body, Caller};
use crate::domain::ErrorCode;
use crate::domain::Role;
use crate::store::{StoreError, Workspace};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces", get(list).post(create))
        .route("/workspaces/{ws}/members/{user_id}", put(set_member))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    /// Not blank.
    #[schema(pattern = "\\S")]
    pub name: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub role: Role,
}

#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces", security(("bearer" = [])),
    responses((status = 200, body = [Workspace])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Workspace>>, ApiError> {
    Ok(Json(state.store().workspaces_of(&caller.user_id).await?))
}

#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", security(("bearer" = [])),
    request_body = NewWorkspace, responses((status = 201, body = Workspace)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewWorkspace>,
) -> Result<(StatusCode, Json<Workspace>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "name must not be empty",
        ));
    }
    let ws = state
        .store()
        .create_workspace(name, &caller.user_id)
        .await?;
    Ok((StatusCode::CREATED, Json(ws)))
}

#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/members/{user_id}", tag = "workspaces", security(("bearer" = [])),
    request_body = Membership, responses((status = 204, description = "Member added or role changed")))]
pub async fn set_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, user_id)): Path<(String, String)>,
    Body(body): Body<Membership>,
) -> Result<StatusCode, ApiError> {
    let mine = state.access(&ws, &caller, Role::Admin).await?;
    if body.role > mine {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "you cannot grant a role above your own",
        ));
    }
    let user = match state.store().user(&user_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("user")),
        other => other?,
    };
    state.store().set_member(&ws, &user.id, body.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

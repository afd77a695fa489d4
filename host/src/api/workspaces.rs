//! Workspaces and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState, Body, Caller};
use crate::domain::{ErrorCode, Role, member};
use crate::execution::ExecError;
use crate::store::{StoreError, Workspace};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces", get(list).post(create))
        .route("/workspaces/{ws}/members", get(members))
        .route(
            "/workspaces/{ws}/members/{user_id}",
            put(set_member).delete(remove_member),
        )
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
    let mut workspaces = state.store.workspaces_of(&caller.user_id).await?;
    // An API key sees its own workspace, with the role it acts with there.
    if let Some(key) = &caller.api_key {
        workspaces.retain(|w| w.id == key.workspace_id);
        for w in &mut workspaces {
            w.role = w.role.min(key.role);
        }
    }
    Ok(Json(workspaces))
}

#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", security(("bearer" = [])),
    request_body = NewWorkspace, responses((status = 201, body = Workspace)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewWorkspace>,
) -> Result<(StatusCode, Json<Workspace>), ApiError> {
    state.require_person(&caller)?;
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "name must not be empty",
        ));
    }
    let ws = state.store.create_workspace(name, &caller.user_id).await?;
    state
        .audit(
            &caller,
            Some(&ws.id),
            "workspace.create",
            &ws.id,
            json!({"name": ws.name}),
        )
        .await;
    Ok((StatusCode::CREATED, Json(ws)))
}

/// A member of a workspace.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/members", tag = "workspaces", security(("bearer" = [])),
    responses((status = 200, body = [Member], description = "Every member and their role, owners first")))]
pub async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Vec<Member>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    let members = state.store.members(&ws).await?;
    Ok(Json(
        members
            .into_iter()
            .map(|(user, role)| Member {
                user_id: user.id,
                email: user.email,
                name: user.name,
                role,
            })
            .collect(),
    ))
}

#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/members/{user_id}", tag = "workspaces", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id or email")),
    request_body = Membership, responses((status = 204, description = "Member added or role changed"),
        (status = 409, description = "CONFLICT: the workspace would be left without an owner")))]
pub async fn set_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, user_id)): Path<(String, String)>,
    Body(body): Body<Membership>,
) -> Result<StatusCode, ApiError> {
    state.require_person(&caller)?;
    let mine = state.access(&ws, &caller, Role::Admin).await?;
    let user = match state.store.user(&user_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("user")),
        other => other?,
    };
    // Someone new is judged as if they were a viewer: only the role granted counts.
    let previous = match state.store.role(&ws, &user.id).await {
        Err(StoreError::NotFound) => None,
        other => Some(other?),
    };
    member::may_change(mine, previous.unwrap_or(Role::Viewer), Some(body.role))
        .map_err(ExecError::from)?;
    state
        .store
        .change_member(&ws, &user.id, Some(body.role))
        .await?;
    state.events.access_changed(&user.id);
    let detail = json!({"email": user.email, "role": body.role, "previous": previous});
    state
        .audit(&caller, Some(&ws), "member.set", &user.id, detail)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/members/{user_id}", tag = "workspaces", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id or email")),
    responses((status = 204, description = "Removed: they lose access at once, on every node"),
        (status = 409, description = "CONFLICT: the workspace's last owner cannot leave")))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.require_person(&caller)?;
    let mine = state.access(&ws, &caller, Role::Viewer).await?;
    let user = match state.store.user(&user_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("member")),
        other => other?,
    };
    let current = match state.store.role(&ws, &user.id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("member")),
        other => other?,
    };
    // Anyone may leave; removing someone else takes the rules of a role change.
    if user.id != caller.user_id {
        member::may_change(mine, current, None).map_err(ExecError::from)?;
    }
    state.store.change_member(&ws, &user.id, None).await?;
    state.events.access_changed(&user.id);
    let detail = json!({"email": user.email, "previous": current});
    state
        .audit(&caller, Some(&ws), "member.remove", &user.id, detail)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

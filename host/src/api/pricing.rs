//! The pricing table: everyone signed in reads it; system admins add rows.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiError, AppState, Body, Caller};
use crate::domain::ErrorCode;
use crate::domain::Price;
use crate::store::NewPrice;

pub fn routes() -> Router<AppState> {
    Router::new().route("/pricing", get(list).post(add))
}

#[utoipa::path(get, path = "/api/v1/pricing", tag = "pricing", security(("bearer" = [])), responses((status = 200, body = [Price])))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<Price>>, ApiError> {
    Ok(Json(state.store.prices().await?))
}

#[utoipa::path(post, path = "/api/v1/pricing", tag = "pricing", security(("bearer" = [])),
    request_body = NewPrice, responses((status = 201, body = Price), (status = 403, description = "Not a system admin")))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewPrice>,
) -> Result<(StatusCode, Json<Price>), ApiError> {
    let user = state.store.user(&caller.user_id).await?;
    if !user.is_admin {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only system admins change prices",
        ));
    }
    let negative = [
        Some(body.input_per_mtok),
        body.cached_input_per_mtok,
        body.cache_write_per_mtok,
        Some(body.output_per_mtok),
        body.reasoning_per_mtok,
    ]
    .into_iter()
    .flatten()
    .any(|p| p.is_sign_negative());
    if negative || body.provider.trim().is_empty() || body.model.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "provider and model are required and prices cannot be negative",
        ));
    }
    if body
        .effective_from
        .zip(body.effective_until)
        .is_some_and(|(from, until)| until <= from)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "effectiveUntil must be after effectiveFrom",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(state.store.add_price(&body).await?),
    ))
}

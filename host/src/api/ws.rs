//! `GET /api/v1/workspaces/{ws}/flows/{flowId}/ws`: a flow's execution events over WebSocket.
//! The token comes in the `Authorization` header or a `token` query parameter (browsers cannot
//! set headers on WebSockets); membership is checked before the upgrade.

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, AppState, Caller};
use crate::domain::ErrorCode;
use crate::domain::Role;
use crate::store::StoreError;

/// A client that cannot take a message within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Close code for a client that fell too far behind (application range).
const TOO_SLOW: u16 = 4008;

pub fn routes() -> Router<AppState> {
    Router::new().route("/workspaces/{ws}/flows/{flow_id}/ws", get(subscribe))
}

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/ws", tag = "flows", security(("bearer" = [])),
    params(("token" = Option<String>, Query, description = "The bearer token, for clients that cannot set headers")),
    responses((status = 101, description = "WebSocket of JSON events: execution:queued, :running, :delta, :completed, :error, :cancelled — each with executionId, podId, flowId, status and timestamp"),
        (status = 401), (status = 404)))]
pub async fn subscribe(
    State(state): State<AppState>,
    Path((ws, flow_id)): Path<(String, String)>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user_id = match (header, query.token) {
        (None, Some(token)) => state.tokens.verify(&token),
        (header, _) => state.tokens.verify_header(header),
    }
    .map_err(|e| ApiError::new(ErrorCode::Unauthorized, e.to_string()))?;
    state.access(&ws, &Caller { user_id }, Role::Viewer).await?;
    match state.store.flow(&ws, &flow_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("flow")),
        other => other?,
    };
    // Subscribe before the upgrade completes, so no event falls in between.
    let events = state.events.subscribe(&flow_id);
    Ok(upgrade.on_upgrade(move |socket| pump(socket, events)))
}

async fn pump(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(text) => {
                    let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.as_ref().into()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let reason = format!("too slow: {missed} events behind");
                    let close = Message::Close(Some(CloseFrame { code: TOO_SLOW, reason: reason.into() }));
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(close)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Clients have nothing to say; pings are answered by the library.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

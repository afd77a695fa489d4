//! `GET /api/v1/workspaces/{ws}/flows/{flowId}/ws`: a flow's execution events over WebSocket;
//! `GET /api/v1/workspaces/{ws}/ws`: every execution event of the workspace (its flows' pods, and
//! calls without a pod through the OpenAI-compatible door).
//! The caller comes in the `Authorization` header, a single-use `ticket` query parameter
//! (`POST /api/v1/ws-ticket`; what the console uses: browsers cannot set headers on WebSockets,
//! and a ticket in a URL is worthless once used), or a `token` query parameter; membership is checked before the upgrade, and again whenever the
//! user's access changes (removed, disabled: the socket is closed at once, code 4003) and every
//! [`RECHECK_EVERY`] in case a change was made where no notice reaches this node.

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use futures_util::SinkExt as _;
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{ApiError, AppState, Caller, ClientAddress};
use crate::domain::Role;
use crate::store::StoreError;

/// A client that cannot take a message within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Close code for a client that fell too far behind (application range).
const TOO_SLOW: u16 = 4008;
/// Close code for a client whose user lost access to the workspace.
const ACCESS_REVOKED: u16 = 4003;
/// How often an open socket checks its user's access without being told to (a change made where
/// no notice reaches this node: the CLI, or several nodes without Redis).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{ws}/flows/{flow_id}/ws", get(subscribe))
        .route("/workspaces/{ws}/ws", get(subscribe_workspace))
}

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    ticket: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/ws", tag = "flows", security(("bearer" = [])),
    params(("ticket" = Option<String>, Query, description = "A single-use ticket from `POST /api/v1/ws-ticket`, for browsers"),
        ("token" = Option<String>, Query, description = "The bearer token, for clients that cannot set headers")),
    responses((status = 101, description = "WebSocket of JSON events: execution:queued, :running, :delta, :completed, :error, :cancelled — each with executionId, podId, flowId, status and timestamp"),
        (status = 401), (status = 404)))]
pub async fn subscribe(
    State(state): State<AppState>,
    Path((ws, flow_id)): Path<(String, String)>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
    ClientAddress(address): ClientAddress,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &query, &headers, address).await?;
    state.access(&ws, &caller, Role::Viewer).await?;
    match state.store.flow(&ws, &flow_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("flow")),
        other => other?,
    };
    Ok(open(state, ws, caller, &flow_id, upgrade))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/ws", tag = "executions", security(("bearer" = [])),
    params(("ticket" = Option<String>, Query, description = "A single-use ticket from `POST /api/v1/ws-ticket`, for browsers"),
        ("token" = Option<String>, Query, description = "The bearer token or API key, for clients that cannot set headers")),
    responses((status = 101, description = "WebSocket of every execution event in the workspace, as on a flow's socket; a call without a pod has empty podId and flowId"),
        (status = 401), (status = 404)))]
pub async fn subscribe_workspace(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
    ClientAddress(address): ClientAddress,
) -> Result<Response, ApiError> {
    let caller = authenticate(&state, &query, &headers, address).await?;
    state.access(&ws, &caller, Role::Viewer).await?;
    let channel = crate::events::workspace_channel(&ws);
    Ok(open(state, ws, caller, &channel, upgrade))
}

/// The caller of a socket: the `Authorization` header, else the `ticket` or `token` query
/// parameter.
async fn authenticate(
    state: &AppState,
    query: &WsQuery,
    headers: &HeaderMap,
    address: Option<std::net::IpAddr>,
) -> Result<Caller, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let (None, Some(ticket)) = (header, query.ticket.as_deref()) {
        return state.ticket_caller(ticket, address).await;
    }
    let credential = match (header, query.token.as_deref()) {
        (None, Some(token)) => Ok(token),
        (header, _) => crate::auth::bearer(header),
    };
    state.authenticate(credential, address).await
}

/// Subscribes to `channel` before the upgrade completes (so no event falls in between) and
/// pumps its events to the socket while the caller keeps access.
fn open(
    state: AppState,
    ws: String,
    caller: Caller,
    channel: &str,
    upgrade: WebSocketUpgrade,
) -> Response {
    let events = state.events.subscribe(channel);
    let changes = state.events.access_changes();
    let watch = Watch {
        state,
        ws,
        caller,
        changes,
    };
    upgrade.on_upgrade(move |socket| pump(socket, events, watch))
}

/// What an open socket needs to keep checking its user's access.
struct Watch {
    state: AppState,
    ws: String,
    caller: Caller,
    changes: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
}

impl Watch {
    /// Resolves when the user may no longer watch the workspace.
    async fn revoked(&mut self) {
        let mut recheck = tokio::time::interval(RECHECK_EVERY);
        recheck.tick().await;
        loop {
            let check = tokio::select! {
                change = self.changes.recv() => match change {
                    Ok(user) => *user == *self.caller.user_id,
                    // Missed some: one of them may have been ours.
                    Err(RecvError::Lagged(_)) => true,
                    // No more notices (the hub is going away): the timer alone decides.
                    Err(RecvError::Closed) => {
                        recheck.tick().await;
                        true
                    }
                },
                _ = recheck.tick() => true,
            };
            if check && !self.allowed().await {
                return;
            }
        }
    }

    /// Whether the user is still active and a member (and the socket's API key, if any, is
    /// still unrevoked); a store that cannot answer keeps the socket open (the next check
    /// decides).
    async fn allowed(&self) -> bool {
        let store = &self.state.store;
        match store.active_user(&self.caller.user_id).await {
            Ok(None) => return false,
            Ok(Some(_)) => {}
            Err(_) => return true,
        }
        if let Some(key) = &self.caller.api_key {
            match store.api_key_active(&key.id).await {
                Ok(false) => return false,
                Ok(true) => {}
                Err(_) => return true,
            }
        }
        !matches!(
            store.role(&self.ws, &self.caller.user_id).await,
            Err(StoreError::NotFound)
        )
    }
}

/// Counts an open socket in the metrics while it lives.
struct Open;

impl Open {
    fn new() -> Self {
        crate::metrics::get().websocket_clients.inc();
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        crate::metrics::get().websocket_clients.dec();
    }
}

fn dropped(reason: &str) {
    crate::metrics::get()
        .websocket_dropped
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: reason.into(),
        })
        .inc();
}

/// Most events written to one client at once.
const SEND_BATCH: usize = 32;

/// Closes a client that fell `missed` events behind.
async fn too_slow(socket: &mut WebSocket, missed: u64) {
    dropped("too_slow");
    let reason = format!("too slow: {missed} events behind");
    let close = Message::Close(Some(CloseFrame {
        code: TOO_SLOW,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(close)).await;
}

async fn pump(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    mut watch: Watch,
) {
    let _open = Open::new();
    let revoked = watch.revoked();
    tokio::pin!(revoked);
    loop {
        tokio::select! {
            () = &mut revoked => {
                dropped("access_revoked");
                let reason = "access to the workspace was revoked";
                let close = Message::Close(Some(CloseFrame { code: ACCESS_REVOKED, reason: reason.into() }));
                let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(close)).await;
                return;
            }
            event = events.recv() => match event {
                Ok(text) => {
                    // Events that arrived together (an instant call's queued, running and
                    // completed) leave in one write: a syscall per event per client is what a
                    // fan-out to thousands of clients spends its time on.
                    let mut batch = vec![text];
                    let mut lagged = None;
                    while batch.len() < SEND_BATCH {
                        match events.try_recv() {
                            Ok(text) => batch.push(text),
                            Err(TryRecvError::Lagged(missed)) => {
                                lagged = Some(missed);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let send = async {
                        for text in batch {
                            socket.feed(Message::Text(text.as_ref().into())).await?;
                        }
                        socket.flush().await
                    };
                    let sent = tokio::time::timeout(SEND_TIMEOUT, send).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        if sent.is_err() {
                            dropped("send_timeout");
                        }
                        return;
                    }
                    if let Some(missed) = lagged {
                        too_slow(&mut socket, missed).await;
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    too_slow(&mut socket, missed).await;
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

//! Workspace provider keys: write-only secrets.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, Body, Caller};
use crate::domain::ErrorCode;
use crate::domain::Role;
use crate::store::{KeySummary, StoreError, StoredKey};
use crate::vault::{Binding, Secret};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{ws}/provider-keys", get(list))
        .route(
            "/workspaces/{ws}/provider-keys/{provider}",
            put(put_key).delete(delete_key),
        )
}

/// A key to store. It is encrypted at once and never returned.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyInput {
    #[schema(pattern = "\\S")]
    pub api_key: String,
    /// Send this provider's requests here instead of the plugin's default base URL (e.g. an
    /// OpenAI-compatible server such as vLLM or Ollama). A query string (Azure's
    /// `?api-version=…`) is allowed: the whole URL is then sealed with the key and shown redacted
    /// (scheme, host and path only). Credentials (`user:pass@`) are refused.
    #[schema(pattern = "^https?://[^/?#]+")]
    pub base_url: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/provider-keys", tag = "provider keys", security(("bearer" = [])),
    responses((status = 200, body = [KeySummary], description = "Hints and usage; never the keys")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Vec<KeySummary>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    Ok(Json(state.store.key_summaries(&ws).await?))
}

#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/provider-keys/{provider}", tag = "provider keys", security(("bearer" = [])),
    request_body = KeyInput, responses((status = 204, description = "Stored, encrypted")))]
pub async fn put_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, provider)): Path<(String, String)>,
    Body(body): Body<KeyInput>,
) -> Result<StatusCode, ApiError> {
    state.access(&ws, &caller, Role::Admin).await?;
    let provider = provider.to_ascii_lowercase();
    if state.plugins.provider(&provider, None).is_err() {
        return Err(ApiError::new(
            ErrorCode::UnknownProvider,
            format!("no provider plugin {provider:?} is loaded"),
        ));
    }
    let secret = body.api_key.trim();
    if secret.is_empty() || secret.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "apiKey must be a non-empty single line",
        ));
    }
    // A base URL with a query string is sealed with the key; the row shows it redacted.
    let mut sealed_url = None;
    let mut shown_url = body
        .base_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_string());
    if let Some(url) = &body.base_url {
        let url = match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "baseUrl must be an absolute http(s) URL",
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "baseUrl must not carry credentials (user:password@); the key goes in apiKey",
            ));
        }
        // Refused now where its host resolves to what the egress policy refuses; every call is
        // judged again when it connects.
        if let Err(refused) = state.egress_policy.check_url(&url).await {
            return Err(ApiError::new(
                ErrorCode::DestinationNotAllowed,
                refused.to_string(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            shown_url = Some(crate::vault::redacted_url(&url));
            sealed_url = Some(url.to_string());
        }
    }
    let store = &state.store;
    let key_id = store.key_id(&ws, &provider).await?;
    let hint = crate::vault::ApiKey::new(secret).hint();
    let provider_name = provider.clone();
    let sealed = state.vault.seal(
        &Binding {
            workspace_id: &ws,
            provider: &provider,
            key_id: &key_id,
        },
        &Secret::joined(secret, sealed_url.as_deref()),
    );
    store
        .put_key(&StoredKey {
            id: key_id,
            workspace_id: ws.clone(),
            provider,
            ciphertext: sealed.ciphertext,
            nonce: sealed.nonce,
            master_key_id: sealed.master_key_id,
            hint: hint.clone(),
            base_url: shown_url,
            updated_at: 0,
        })
        .await?;
    let detail = serde_json::json!({"hint": hint});
    state
        .audit(&caller, Some(&ws), "key.set", &provider_name, detail)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/provider-keys/{provider}", tag = "provider keys", security(("bearer" = [])),
    responses((status = 204)))]
pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, provider)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.access(&ws, &caller, Role::Admin).await?;
    let provider = provider.to_ascii_lowercase();
    match state.store.delete_key(&ws, &provider).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("provider key")),
        other => other?,
    };
    state
        .audit(
            &caller,
            Some(&ws),
            "key.delete",
            &provider,
            serde_json::json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

//! Workspace provider keys, stored encrypted (see `vault`), and their usage counters.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::{Result, Store, StoreError, get, new_id, now_ms};

/// A provider key as stored: ciphertext, never the key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: String,
    pub workspace_id: String,
    pub provider: String,
    pub ciphertext: String,
    pub nonce: String,
    pub master_key_id: String,
    pub hint: String,
    pub base_url: Option<String>,
    pub updated_at: i64,
}

/// What the API shows of a key, with its usage so far.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    pub provider: String,
    /// The last four characters, e.g. `…a1b2`.
    pub hint: String,
    pub base_url: Option<String>,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub updated_at: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    /// Total cost of the key's executions, USD.
    pub cost_usd: String,
}

const COLUMNS: &str =
    "id, workspace_id, provider, ciphertext, nonce, master_key_id, hint, base_url, updated_at";

fn key_row(row: &AnyRow) -> Result<StoredKey> {
    Ok(StoredKey {
        id: get(row, "id")?,
        workspace_id: get(row, "workspace_id")?,
        provider: get(row, "provider")?,
        ciphertext: get(row, "ciphertext")?,
        nonce: get(row, "nonce")?,
        master_key_id: get(row, "master_key_id")?,
        hint: get(row, "hint")?,
        base_url: get(row, "base_url")?,
        updated_at: get(row, "updated_at")?,
    })
}

impl Store {
    /// The id a workspace's key for `provider` has, or gets when first stored (the vault binds
    /// it into the ciphertext).
    pub async fn key_id(&self, ws: &str, provider: &str) -> Result<String> {
        let row =
            sqlx::query("SELECT id FROM provider_keys WHERE workspace_id = $1 AND provider = $2")
                .bind(ws)
                .bind(provider)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(row) => get(&row, "id")?,
            None => new_id(),
        })
    }

    /// Stores (or replaces) the key for a provider.
    pub async fn put_key(&self, key: &StoredKey) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO provider_keys (id, workspace_id, provider, ciphertext, nonce, master_key_id, hint, base_url, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (workspace_id, provider) DO UPDATE SET ciphertext = excluded.ciphertext, nonce = excluded.nonce,
                master_key_id = excluded.master_key_id, hint = excluded.hint, base_url = excluded.base_url, updated_at = excluded.updated_at",
        )
        .bind(&key.id)
        .bind(&key.workspace_id)
        .bind(&key.provider)
        .bind(&key.ciphertext)
        .bind(&key.nonce)
        .bind(&key.master_key_id)
        .bind(&key.hint)
        .bind(&key.base_url)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn key(&self, ws: &str, provider: &str) -> Result<StoredKey> {
        static KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("SELECT {COLUMNS} FROM provider_keys WHERE workspace_id = $1 AND provider = $2")
        });
        let row = self
            .read_one(
                sqlx::query(KEY.as_str())
                    .bind(ws.to_string())
                    .bind(provider.to_string()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        key_row(&row)
    }

    /// Every stored key of every workspace (for re-encryption under a new master key).
    pub async fn all_keys(&self) -> Result<Vec<StoredKey>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM provider_keys ORDER BY id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(key_row)
            .collect()
    }

    pub async fn delete_key(&self, ws: &str, provider: &str) -> Result<()> {
        self.delete_in_workspace(
            "DELETE FROM provider_keys WHERE workspace_id = $1 AND provider = $2",
            ws,
            provider,
        )
        .await
    }

    /// A workspace's keys with their usage totals — never the keys themselves.
    pub async fn key_summaries(&self, ws: &str) -> Result<Vec<KeySummary>> {
        let rows = sqlx::query(
            "SELECT k.provider, k.hint, k.base_url, k.updated_at,
                CAST(COALESCE(SUM(u.requests), 0) AS BIGINT) AS requests, CAST(COALESCE(SUM(u.prompt_tokens), 0) AS BIGINT) AS prompt_tokens,
                CAST(COALESCE(SUM(u.completion_tokens), 0) AS BIGINT) AS completion_tokens, CAST(COALESCE(SUM(u.reasoning_tokens), 0) AS BIGINT) AS reasoning_tokens,
                CAST(COALESCE(SUM(u.cost_picousd), 0) AS BIGINT) AS cost_picousd
             FROM provider_keys k LEFT JOIN key_usage u ON u.key_id = k.id
             WHERE k.workspace_id = $1 GROUP BY k.id, k.provider, k.hint, k.base_url, k.updated_at ORDER BY k.provider",
        )
        .bind(ws)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let sum = |c: &str| -> Result<i64> { get::<i64>(row, c) };
                let pico = rust_decimal::Decimal::new(sum("cost_picousd")?, 12).normalize();
                Ok(KeySummary {
                    provider: get(row, "provider")?,
                    hint: get(row, "hint")?,
                    base_url: get(row, "base_url")?,
                    updated_at: get(row, "updated_at")?,
                    requests: sum("requests")?,
                    prompt_tokens: sum("prompt_tokens")?,
                    completion_tokens: sum("completion_tokens")?,
                    reasoning_tokens: sum("reasoning_tokens")?,
                    cost_usd: pico.to_string(),
                })
            })
            .collect()
    }

    /// Replaces a key's ciphertext (master key rotation).
    pub async fn reencrypt_key(
        &self,
        id: &str,
        ciphertext: &str,
        nonce: &str,
        master_key_id: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE provider_keys SET ciphertext = $1, nonce = $2, master_key_id = $3 WHERE id = $4")
            .bind(ciphertext)
            .bind(nonce)
            .bind(master_key_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

//! Workspace API keys: who a machine acts as, within which limits, and what it has spent.
//!
//! The secret itself is never stored: only its SHA-256 (`secret_hash`), which is what a request's
//! key is looked up by, and a hint to tell keys apart. Usage is counted per UTC calendar month by
//! migration 0013's trigger, in the statement that ends each execution.

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::any::AnyRow;
use std::sync::LazyLock;

use super::{Result, Store, StoreError, decimal, get, now_ms};
use crate::domain::Role;

/// A key to record (its secret already hashed).
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub role: Role,
    pub secret_hash: String,
    pub hint: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub monthly_budget_usd: Option<Decimal>,
    pub expires_at: Option<i64>,
    pub created_by: String,
}

/// A key as the API lists it: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// `pods_…` and the secret's last four characters.
    pub hint: String,
    /// Requests a minute; `null`: no limit of its own.
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion) a minute; `null`: no limit.
    pub tpm: Option<u32>,
    /// USD a UTC calendar month, exact; `null`: no budget.
    #[schema(value_type = Option<String>)]
    pub monthly_budget_usd: Option<Decimal>,
    #[serde(with = "crate::domain::iso_time::option")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<i64>,
    /// The member the key acts for.
    pub created_by: String,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub created_at: i64,
    /// Accurate to about a minute.
    #[serde(with = "crate::domain::iso_time::option")]
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<i64>,
    pub usage: ApiKeyUsage,
}

/// A key's executions this UTC calendar month.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyUsage {
    /// `YYYY-MM`.
    pub month: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    /// Exact, USD.
    pub cost_usd: String,
}

/// A key a request may act with: unrevoked, unexpired, its creator enabled.
#[derive(Debug, Clone)]
pub struct ActiveApiKey {
    pub id: String,
    pub workspace_id: String,
    pub role: Role,
    pub created_by: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub monthly_budget_usd: Option<Decimal>,
    pub last_used_at: Option<i64>,
}

/// The UTC calendar month `at` (unix ms) falls in, as the usage table keys it: `YYYY-MM`.
pub fn month_of(at: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(at / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", at.year(), u8::from(at.month()))
}

fn limit(row: &AnyRow, column: &str) -> Result<Option<u32>> {
    get::<Option<i64>>(row, column)?
        .map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column}: {n}"))))
        .transpose()
}

fn role(row: &AnyRow) -> Result<Role> {
    let role: String = get(row, "role")?;
    Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))
}

/// The key whose `column` is `$1`, if it is unrevoked, unexpired (at `$2`) and its creator active.
fn active_key_sql(column: &str) -> String {
    format!(
        "SELECT k.id, k.workspace_id, k.role, k.created_by, k.rpm, k.tpm, k.monthly_budget_usd, k.last_used_at
         FROM api_keys k JOIN users u ON u.id = k.created_by
         WHERE {column} = $1 AND k.revoked_at IS NULL AND u.disabled_at IS NULL
           AND (k.expires_at IS NULL OR k.expires_at > $2)"
    )
}

fn picousd(pico: i64) -> Decimal {
    Decimal::new(pico, 12).normalize()
}

impl Store {
    pub async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_keys (id, workspace_id, name, role, secret_hash, hint, rpm, tpm, monthly_budget_usd, expires_at, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&key.id)
        .bind(&key.workspace_id)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(&key.secret_hash)
        .bind(&key.hint)
        .bind(key.rpm.map(i64::from))
        .bind(key.tpm.map(i64::from))
        .bind(key.monthly_budget_usd.map(|b| b.to_string()))
        .bind(key.expires_at)
        .bind(&key.created_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(ApiKey {
            id: key.id.clone(),
            name: key.name.clone(),
            role: key.role,
            hint: key.hint.clone(),
            rpm: key.rpm,
            tpm: key.tpm,
            monthly_budget_usd: key.monthly_budget_usd,
            expires_at: key.expires_at,
            created_by: key.created_by.clone(),
            created_at: now,
            last_used_at: None,
            usage: ApiKeyUsage {
                month: month_of(now),
                cost_usd: "0".into(),
                ..ApiKeyUsage::default()
            },
        })
    }

    /// A workspace's unrevoked keys (expired ones too: they say when they expired), newest
    /// first, with this month's usage.
    pub async fn api_keys(&self, ws: &str) -> Result<Vec<ApiKey>> {
        let month = month_of(now_ms());
        let rows = sqlx::query(
            "SELECT k.id, k.name, k.role, k.hint, k.rpm, k.tpm, k.monthly_budget_usd, k.expires_at, k.created_by,
                    k.created_at, k.last_used_at, COALESCE(u.requests, 0) AS requests,
                    COALESCE(u.prompt_tokens, 0) AS prompt_tokens, COALESCE(u.completion_tokens, 0) AS completion_tokens,
                    COALESCE(u.reasoning_tokens, 0) AS reasoning_tokens, COALESCE(u.cost_picousd, 0) AS cost_picousd
             FROM api_keys k LEFT JOIN api_key_usage u ON u.api_key_id = k.id AND u.month = $2
             WHERE k.workspace_id = $1 AND k.revoked_at IS NULL ORDER BY k.created_at DESC, k.id DESC",
        )
        .bind(ws)
        .bind(&month)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKey {
                    id: get(row, "id")?,
                    name: get(row, "name")?,
                    role: role(row)?,
                    hint: get(row, "hint")?,
                    rpm: limit(row, "rpm")?,
                    tpm: limit(row, "tpm")?,
                    monthly_budget_usd: decimal(
                        get(row, "monthly_budget_usd")?,
                        "monthly_budget_usd",
                    )?,
                    expires_at: get(row, "expires_at")?,
                    created_by: get(row, "created_by")?,
                    created_at: get(row, "created_at")?,
                    last_used_at: get(row, "last_used_at")?,
                    usage: ApiKeyUsage {
                        month: month.clone(),
                        requests: get(row, "requests")?,
                        prompt_tokens: get(row, "prompt_tokens")?,
                        completion_tokens: get(row, "completion_tokens")?,
                        reasoning_tokens: get(row, "reasoning_tokens")?,
                        cost_usd: picousd(get(row, "cost_picousd")?).to_string(),
                    },
                })
            })
            .collect()
    }

    /// Revokes a key: from this write on, no node accepts it. Returns the member it acted for;
    /// `NotFound` if the workspace has no such unrevoked key.
    pub async fn revoke_api_key(&self, ws: &str, id: &str) -> Result<String> {
        let rows = self
            .write_returning(
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = $1 WHERE workspace_id = $2 AND id = $3 AND revoked_at IS NULL
                     RETURNING created_by",
                )
                .bind(now_ms())
                .bind(ws.to_string())
                .bind(id.to_string()),
            )
            .await?;
        let row = rows.first().ok_or(StoreError::NotFound)?;
        get(row, "created_by")
    }

    /// The key with this secret hash, if a request may act with it now: read on every request
    /// (by its unique index), so a revocation or a disabled creator holds at once on every node.
    pub async fn active_api_key(&self, secret_hash: &str) -> Result<Option<ActiveApiKey>> {
        static BY_HASH: LazyLock<String> = LazyLock::new(|| active_key_sql("k.secret_hash"));
        self.active_api_key_where(&BY_HASH, secret_hash).await
    }

    /// The key with this id, if a request may act with it now (as [`Self::active_api_key`]).
    pub async fn active_api_key_by_id(&self, id: &str) -> Result<Option<ActiveApiKey>> {
        static BY_ID: LazyLock<String> = LazyLock::new(|| active_key_sql("k.id"));
        self.active_api_key_where(&BY_ID, id).await
    }

    async fn active_api_key_where(
        &self,
        sql: &'static str,
        value: &str,
    ) -> Result<Option<ActiveApiKey>> {
        let row = self
            .read_one(sqlx::query(sql).bind(value.to_string()).bind(now_ms()))
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ActiveApiKey {
            id: get(&row, "id")?,
            workspace_id: get(&row, "workspace_id")?,
            role: role(&row)?,
            created_by: get(&row, "created_by")?,
            rpm: limit(&row, "rpm")?,
            tpm: limit(&row, "tpm")?,
            monthly_budget_usd: decimal(get(&row, "monthly_budget_usd")?, "monthly_budget_usd")?,
            last_used_at: get(&row, "last_used_at")?,
        }))
    }

    /// Whether the key (by id) is unrevoked and unexpired.
    pub async fn api_key_active(&self, id: &str) -> Result<bool> {
        let row = self
            .read_one(
                sqlx::query(
                    "SELECT id FROM api_keys WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(id.to_string())
                .bind(now_ms()),
            )
            .await?;
        Ok(row.is_some())
    }

    /// A key's tokens-a-minute limit, revoked or not (a worker charging what a queued execution
    /// used); `None` if it has none or is gone.
    pub async fn api_key_tpm(&self, id: &str) -> Result<Option<u32>> {
        let row = self
            .read_one(sqlx::query("SELECT tpm FROM api_keys WHERE id = $1").bind(id.to_string()))
            .await?;
        row.map_or(Ok(None), |row| limit(&row, "tpm"))
    }

    /// What a key's executions have cost this UTC calendar month, USD.
    pub async fn api_key_spent_this_month(&self, id: &str) -> Result<Decimal> {
        let row = self
            .read_one(
                sqlx::query(
                    "SELECT cost_picousd FROM api_key_usage WHERE api_key_id = $1 AND month = $2",
                )
                .bind(id.to_string())
                .bind(month_of(now_ms())),
            )
            .await?;
        Ok(row
            .map(|row| get::<i64>(&row, "cost_picousd"))
            .transpose()?
            .map_or(Decimal::ZERO, picousd))
    }

    /// Notes that a key was used now.
    pub async fn touch_api_key(&self, id: &str, at: i64) -> Result<()> {
        self.write(
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id.to_string()),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::month_of;

    #[test]
    fn months_are_utc_calendar_months() {
        // 2026-11-30T23:59:59.999Z and one millisecond later.
        assert_eq!(month_of(1_796_083_199_999), "2026-11");
        assert_eq!(month_of(1_796_083_200_000), "2026-12");
        assert_eq!(month_of(0), "1970-01");
    }
}

//! The audit log: security-relevant actions, appended, never changed. A row says who acted (a
//! user, or nobody for the operator's command line), from which address, on which workspace (none
//! for server-wide actions such as plugins), what they did and to what. `detail` never holds a
//! secret: callers put names, roles and hints in it, never keys.

use serde::Serialize;
use serde_json::Value;

use super::{Result, Store, get, new_id, now_ms};

/// One action to record.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub actor_id: Option<String>,
    pub actor_address: Option<String>,
    pub workspace_id: Option<String>,
    /// `member.set`, `member.remove`, `key.set`, `key.delete`, `plugin.upload`, `plugin.delete`,
    /// `plugin.limits`, `user.disable`, `user.enable`, …
    pub action: &'static str,
    pub target: String,
    pub detail: Value,
}

/// A recorded action, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub at: i64,
    /// `null`: the operator, through the command line.
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub actor_address: Option<String>,
    /// `null`: a server-wide action (plugins, users).
    pub workspace_id: Option<String>,
    pub action: String,
    pub target: String,
    /// What changed (an object: roles, a key's hint, a plugin's version…), never a secret.
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl Store {
    pub async fn record_audit(&self, entry: NewAuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor_id, actor_address, workspace_id, action, target, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id())
        .bind(now_ms())
        .bind(entry.actor_id)
        .bind(entry.actor_address)
        .bind(entry.workspace_id)
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Newest first: one workspace's entries, or (`None`) every entry; `before` an entry id to
    /// page back from.
    pub async fn audit(
        &self,
        workspace_id: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT a.id, a.at, a.actor_id, u.email AS actor_email, a.actor_address, a.workspace_id,
                    a.action, a.target, a.detail
             FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
             WHERE ($1 IS NULL OR a.workspace_id = $1) AND ($2 IS NULL OR a.id < $2)
             ORDER BY a.id DESC LIMIT $3",
        )
        .bind(workspace_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = get(row, "detail")?;
                Ok(AuditEntry {
                    id: get(row, "id")?,
                    at: get(row, "at")?,
                    actor_id: get(row, "actor_id")?,
                    actor_email: get(row, "actor_email")?,
                    actor_address: get(row, "actor_address")?,
                    workspace_id: get(row, "workspace_id")?,
                    action: get(row, "action")?,
                    target: get(row, "target")?,
                    detail: serde_json::from_str(&detail)
                        .unwrap_or_else(|_| Value::Object(Default::default())),
                })
            })
            .collect()
    }
}

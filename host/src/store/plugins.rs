//! Plugin limits operators set through the API, kept so every node and every restart applies
//! them. Stored as the JSON the API took; the plugins module owns its meaning.

use super::{Result, Store, get, now_ms};

impl Store {
    /// Every stored (plugin id, limits JSON).
    pub async fn plugin_limits(&self) -> Result<Vec<(String, String)>> {
        sqlx::query("SELECT plugin_id, limits FROM plugin_limits ORDER BY plugin_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((get(row, "plugin_id")?, get(row, "limits")?)))
            .collect()
    }

    pub async fn set_plugin_limits(&self, id: &str, limits_json: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO plugin_limits (plugin_id, limits, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (plugin_id) DO UPDATE SET limits = excluded.limits, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(limits_json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `false` if none were stored.
    pub async fn delete_plugin_limits(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM plugin_limits WHERE plugin_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

//! What a workspace spent: sums over the `usage_daily` rollup (migration 0017), which a trigger
//! keeps as executions finish — a 30-day range is a few rows per day and model to add up, however
//! many executions there were.

use rust_decimal::Decimal;

use super::{Result, Store, get};

/// What usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageKey {
    /// The UTC day an execution finished, `YYYY-MM-DD`.
    Day,
    Provider,
    /// The model the execution asked for.
    Model,
}

impl UsageKey {
    /// Every key, by its name (which is also its column in `usage_daily`).
    pub const ALL: [UsageKey; 3] = [UsageKey::Day, UsageKey::Model, UsageKey::Provider];

    pub fn name(self) -> &'static str {
        match self {
            UsageKey::Day => "day",
            UsageKey::Provider => "provider",
            UsageKey::Model => "model",
        }
    }
}

/// Sums over one group (or, with no keys, over the whole range): the keys grouped by are present,
/// the others absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Executions that finished (completed, failed or cancelled) on those days.
    pub executions: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub cached_tokens: i64,
    /// Exact, from integer picodollars; a decimal string, USD.
    #[schema(value_type = String)]
    pub cost_usd: Decimal,
}

/// Sums as BIGINT: PostgreSQL's SUM of a BIGINT is a NUMERIC.
const SUMS: &str = "CAST(SUM(executions) AS BIGINT) AS executions, CAST(SUM(errors) AS BIGINT) AS errors,
    CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
    CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens, CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens,
    CAST(SUM(cost_picousd) AS BIGINT) AS cost_picousd";

impl Store {
    /// Usage of `workspace` on the UTC days `from..=to` (`YYYY-MM-DD`), one row per distinct
    /// value of `keys` (in their order), ordered by them.
    pub async fn usage(
        &self,
        workspace: &str,
        from: &str,
        to: &str,
        keys: &[UsageKey],
    ) -> Result<Vec<UsageRow>> {
        let columns: Vec<&str> = keys.iter().map(|k| k.name()).collect();
        let (select, group) = match columns.is_empty() {
            true => (String::new(), String::new()),
            false => (
                format!("{}, ", columns.join(", ")),
                format!(" GROUP BY {0} ORDER BY {0}", columns.join(", ")),
            ),
        };
        let sql = format!(
            "SELECT {select}{SUMS}
             FROM usage_daily WHERE workspace_id = $1 AND day >= $2 AND day <= $3{group}"
        );
        let rows = sqlx::query(&sql)
            .bind(workspace)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        let text = |row: &sqlx::any::AnyRow, key: UsageKey| -> Result<Option<String>> {
            match keys.contains(&key) {
                true => get(row, key.name()).map(Some),
                false => Ok(None),
            }
        };
        let sum = |row: &sqlx::any::AnyRow, column: &str| -> Result<i64> {
            Ok(get::<Option<i64>>(row, column)?.unwrap_or(0))
        };
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    day: text(row, UsageKey::Day)?,
                    provider: text(row, UsageKey::Provider)?,
                    model: text(row, UsageKey::Model)?,
                    executions: sum(row, "executions")?,
                    errors: sum(row, "errors")?,
                    prompt_tokens: sum(row, "prompt_tokens")?,
                    completion_tokens: sum(row, "completion_tokens")?,
                    reasoning_tokens: sum(row, "reasoning_tokens")?,
                    cached_tokens: sum(row, "cached_tokens")?,
                    cost_usd: Decimal::new(sum(row, "cost_picousd")?, 12).normalize(),
                })
            })
            // Without keys, SUM over no rows is one row of NULLs: no usage, no row.
            .filter(|row| !matches!(row, Ok(r) if r.executions == 0))
            .collect()
    }
}

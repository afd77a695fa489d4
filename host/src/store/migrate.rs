//! Embedded schema migrations, applied in order, each once, each in a transaction.

use sqlx::{AnyPool, Row};

use super::{Backend, Result, now_ms};

/// (version, SQL for SQLite, SQL for PostgreSQL): most migrations are the same for both.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("../../migrations/0001_schema.sql"),
        include_str!("../../migrations/0001_schema.sql"),
    ),
    (
        2,
        include_str!("../../migrations/0002_seed_pricing.sql"),
        include_str!("../../migrations/0002_seed_pricing.sql"),
    ),
    (
        3,
        include_str!("../../migrations/0003_key_usage_trigger.sqlite.sql"),
        include_str!("../../migrations/0003_key_usage_trigger.postgres.sql"),
    ),
    (
        4,
        include_str!("../../migrations/0004_jobs.sql"),
        include_str!("../../migrations/0004_jobs.sql"),
    ),
    (
        5,
        include_str!("../../migrations/0005_execution_leases.sql"),
        include_str!("../../migrations/0005_execution_leases.sql"),
    ),
    (
        6,
        include_str!("../../migrations/0006_jobs_end_with_executions.sqlite.sql"),
        include_str!("../../migrations/0006_jobs_end_with_executions.postgres.sql"),
    ),
    (
        7,
        include_str!("../../migrations/0007_plugin_limits_and_pins.sql"),
        include_str!("../../migrations/0007_plugin_limits_and_pins.sql"),
    ),
    (
        8,
        include_str!("../../migrations/0008_config_version.sqlite.sql"),
        include_str!("../../migrations/0008_config_version.postgres.sql"),
    ),
    (
        9,
        include_str!("../../migrations/0009_queued_request.sqlite.sql"),
        include_str!("../../migrations/0009_queued_request.postgres.sql"),
    ),
    (
        10,
        include_str!("../../migrations/0010_users_disabled_and_audit.sql"),
        include_str!("../../migrations/0010_users_disabled_and_audit.sql"),
    ),
    (
        11,
        include_str!("../../migrations/0011_flow_runs.sql"),
        include_str!("../../migrations/0011_flow_runs.sql"),
    ),
    (
        12,
        include_str!("../../migrations/0012_run_pod_attach.sqlite.sql"),
        include_str!("../../migrations/0012_run_pod_attach.postgres.sql"),
    ),
    (
        13,
        include_str!("../../migrations/0013_api_keys.sqlite.sql"),
        include_str!("../../migrations/0013_api_keys.postgres.sql"),
    ),
    (
        14,
        include_str!("../../migrations/0014_workspace_history.sql"),
        include_str!("../../migrations/0014_workspace_history.sql"),
    ),
    (
        15,
        include_str!("../../migrations/0015_request_ids_and_retention.sql"),
        include_str!("../../migrations/0015_request_ids_and_retention.sql"),
    ),
    (
        16,
        include_str!("../../migrations/0016_passwords_and_ws_tickets.sql"),
        include_str!("../../migrations/0016_passwords_and_ws_tickets.sql"),
    ),
    (
        17,
        include_str!("../../migrations/0017_usage_daily.sqlite.sql"),
        include_str!("../../migrations/0017_usage_daily.postgres.sql"),
    ),
    (
        18,
        include_str!("../../migrations/0018_partial_indexes.sql"),
        include_str!("../../migrations/0018_partial_indexes.sql"),
    ),
];

pub async fn run(pool: &AnyPool, backend: Backend) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("version"))
        .collect::<std::result::Result<_, _>>()?;
    for (version, sqlite, postgres) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let sql = match backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

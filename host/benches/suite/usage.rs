//! The spend view with a large store: `GET /api/v1/workspaces/{ws}/usage` over 30 days grouped by
//! day and model, with 1,000,000 executions finished over those 30 days (five models), on SQLite
//! and on PostgreSQL (`127.0.0.1:5432`, a fresh database). The executions are inserted RUNNING and
//! finished by one UPDATE, so the rollup trigger runs for each, as in service; on PostgreSQL the
//! bench then vacuums, as autovacuum would.
//!
//! `cargo bench -p pods --bench suite -- usage` (1,000,000 executions, 200 requests per backend);
//! under `cargo test`, 10,000 and 20. Target: p99 < 100 ms on both.

use std::time::Instant;

use crate::common::{Bench, ms, pct};

const DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(async {
        run(full, None).await;
        run(full, Some(fresh_postgres().await)).await;
    });
}

/// A new, empty database on the local PostgreSQL (trust auth).
async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let mut admin =
        sqlx::postgres::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (tests/services.sh starts it)");
    for sql in [
        "DROP DATABASE IF EXISTS pods_bench_usage WITH (FORCE)",
        "CREATE DATABASE pods_bench_usage",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    "postgres://postgres@127.0.0.1:5432/pods_bench_usage".into()
}

async fn run(full: bool, postgres: Option<String>) {
    let backend = if postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let env: Vec<(&str, &str)> = postgres
        .iter()
        .map(|url| ("DATABASE_URL", url.as_str()))
        .collect();
    let bench = Bench::start(&format!("usage-{}", backend.to_lowercase()), &env).await;
    let (rows, requests) = if full {
        (1_000_000_i64, 200)
    } else {
        (10_000, 20)
    };
    let url = postgres.unwrap_or_else(|| format!("sqlite://{}", bench.database().display()));
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&url).await.expect("open the store");

    // Thirty days ending today (UTC), spread evenly; five models.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let first = (now / DAY_MS - (DAYS - 1)) * DAY_MS;
    let step = (DAYS * DAY_MS - 1000) / rows;
    let filled = Instant::now();
    sqlx::query(
        "INSERT INTO executions (id, workspace_id, flow_id, pod_id, user_id, status, provider, model_id,
            request_metadata, created_at, started_at)
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $1)
         SELECT 'bench-' || x, $2, $3, $4, 'bench-usage', 'RUNNING', 'openai', 'gpt-4o-mini-' || (x % 5),
                '{}', $5 + x * $6, $5 + x * $6 FROM n",
    )
    .bind(rows)
    .bind(bench.ws.clone())
    .bind(bench.flow.clone())
    .bind(bench.pod.clone())
    .bind(first)
    .bind(step)
    .execute(&db)
    .await
    .expect("insert the executions");
    let finished = sqlx::query(
        "UPDATE executions SET status = 'COMPLETED', finished_at = created_at + 800, prompt_tokens = 20,
            cached_tokens = 8, completion_tokens = 12, reasoning_tokens = 0, total_cost = '0.0000096',
            cost_picousd = 9600000
         WHERE user_id = 'bench-usage'",
    )
    .execute(&db)
    .await
    .expect("finish the executions")
    .rows_affected();
    assert_eq!(finished, rows as u64);
    if url.starts_with("postgres") {
        // What autovacuum does in service: a million updates of 150 rollup rows in one
        // transaction leave a million dead row versions, which reads would wade through until
        // then (spread over many transactions, as in service, pruning keeps up as it goes).
        for table in ["usage_daily", "executions"] {
            sqlx::query(&format!("VACUUM ANALYZE {table}"))
                .execute(&db)
                .await
                .expect("vacuum");
        }
    }
    let filled = filled.elapsed();

    let to = (now / DAY_MS) * DAY_MS;
    let day = |ms: i64| {
        let date = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
            .expect("date")
            .date();
        format!("{date}")
    };
    let path = format!(
        "/api/v1/workspaces/{}/usage?from={}&to={}&groupBy=day,model",
        bench.ws,
        day(first),
        day(to)
    );
    let mut samples = Vec::with_capacity(requests);
    let mut groups = 0;
    for _ in 0..requests {
        let sent = Instant::now();
        let answer = bench.call("GET", &path, serde_json::Value::Null).await;
        samples.push(sent.elapsed());
        groups = answer["rows"].as_array().map_or(0, Vec::len);
        let counted = answer["totals"]["executions"].as_i64().unwrap_or(0);
        assert!(counted >= rows, "every execution is counted: {answer}");
    }
    samples.sort();
    println!("\n# The spend view over 30 days, by day and model ({backend})\n");
    println!("| executions in the store | requests | groups | p50 | p99 | max | target |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    let p99 = pct(&samples, 0.99);
    println!(
        "| {rows} | {requests} | {groups} | {} | {} | {} | p99 < 100 ms: {} |",
        ms(pct(&samples, 0.50)),
        ms(p99),
        ms(samples[samples.len() - 1]),
        if p99.as_millis() < 100 {
            "met"
        } else {
            "missed"
        }
    );
    println!("\n(inserting and finishing them took {filled:?})");
}

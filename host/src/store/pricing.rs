//! Prices per provider and model, per million tokens, with the period each applies to.

use rust_decimal::Decimal;
use serde::Deserialize;
use sqlx::any::AnyRow;

use crate::domain::Price;

use super::{Result, Store, StoreError, decimal, get, new_id, now_ms};

/// A price to add (admins only).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPrice {
    #[schema(pattern = "\\S")]
    pub provider: String,
    #[schema(pattern = "\\S")]
    pub model: String,
    /// USD per million tokens, a decimal string such as `"2.50"`.
    #[schema(value_type = String, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub input_per_mtok: Decimal,
    #[schema(value_type = Option<String>, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub cached_input_per_mtok: Option<Decimal>,
    #[schema(value_type = Option<String>, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub cache_write_per_mtok: Option<Decimal>,
    #[schema(value_type = String, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub output_per_mtok: Decimal,
    #[schema(value_type = Option<String>, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub reasoning_per_mtok: Option<Decimal>,
    /// Default: now.
    pub effective_from: Option<i64>,
    pub effective_until: Option<i64>,
}

const COLUMNS: &str = "id, provider, model, input_per_mtok, cached_input_per_mtok, cache_write_per_mtok, output_per_mtok, reasoning_per_mtok, effective_from, effective_until";

fn price_row(row: &AnyRow) -> Result<Price> {
    let required = |column: &str| -> Result<Decimal> {
        decimal(Some(get(row, column)?), column)?.ok_or_else(|| StoreError::Corrupt(column.into()))
    };
    Ok(Price {
        id: get(row, "id")?,
        provider: get(row, "provider")?,
        model: get(row, "model")?,
        input_per_mtok: required("input_per_mtok")?,
        cached_input_per_mtok: decimal(
            get(row, "cached_input_per_mtok")?,
            "cached_input_per_mtok",
        )?,
        cache_write_per_mtok: decimal(get(row, "cache_write_per_mtok")?, "cache_write_per_mtok")?,
        output_per_mtok: required("output_per_mtok")?,
        reasoning_per_mtok: decimal(get(row, "reasoning_per_mtok")?, "reasoning_per_mtok")?,
        effective_from: get(row, "effective_from")?,
        effective_until: get(row, "effective_until")?,
    })
}

impl Store {
    pub async fn add_price(&self, price: &NewPrice) -> Result<Price> {
        let id = new_id();
        let now = now_ms();
        let text = |d: Option<Decimal>| d.map(|d| d.to_string());
        sqlx::query(&format!("INSERT INTO pricing ({COLUMNS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
            .bind(&id)
            .bind(&price.provider)
            .bind(&price.model)
            .bind(price.input_per_mtok.to_string())
            .bind(text(price.cached_input_per_mtok))
            .bind(text(price.cache_write_per_mtok))
            .bind(price.output_per_mtok.to_string())
            .bind(text(price.reasoning_per_mtok))
            .bind(price.effective_from.unwrap_or(now))
            .bind(price.effective_until)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if let Ok(mut cache) = self.prices.write() {
            *cache = None;
        }
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM pricing WHERE id = $1"))
            .bind(&id)
            .fetch_one(&self.pool)
            .await?;
        price_row(&row)
    }

    /// Every pricing row, by provider and model, newest first within a model.
    pub async fn prices(&self) -> Result<Vec<Price>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM pricing ORDER BY provider, model, effective_from DESC"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(price_row)
        .collect()
    }

    /// The rows of a provider in force at `at` (unix ms), from a cache of the whole table
    /// refreshed every few seconds.
    pub async fn prices_in_force(&self, provider: &str, at: i64) -> Result<Vec<Price>> {
        let cached = self.prices.read().ok().and_then(|c| {
            c.as_ref()
                .filter(|(when, _)| when.elapsed() < super::PRICE_CACHE_TTL)
                .map(|(_, all)| all.clone())
        });
        let all = match cached {
            Some(all) => all,
            None => {
                let all = std::sync::Arc::new(self.prices().await?);
                if let Ok(mut cache) = self.prices.write() {
                    *cache = Some((std::time::Instant::now(), all.clone()));
                }
                all
            }
        };
        let mut rows: Vec<Price> = all
            .iter()
            .filter(|p| {
                p.provider == provider
                    && p.effective_from <= at
                    && p.effective_until.is_none_or(|u| u > at)
            })
            .cloned()
            .collect();
        rows.sort_by_key(|p| std::cmp::Reverse(p.effective_from));
        Ok(rows)
    }
}

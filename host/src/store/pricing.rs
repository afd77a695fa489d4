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
    #[serde(deserialize_with = "price_text::required")]
    pub input_per_mtok: Decimal,
    #[schema(value_type = Option<String>, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    #[serde(default, deserialize_with = "price_text::optional")]
    pub cached_input_per_mtok: Option<Decimal>,
    #[schema(value_type = Option<String>, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    #[serde(default, deserialize_with = "price_text::optional")]
    pub cache_write_per_mtok: Option<Decimal>,
    #[schema(value_type = String, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    #[serde(deserialize_with = "price_text::required")]
    pub output_per_mtok: Decimal,
    #[schema(value_type = Option<String>, pattern = "^[0-9]+(\\.[0-9]+)?$")]
    #[serde(default, deserialize_with = "price_text::optional")]
    pub reasoning_per_mtok: Option<Decimal>,
    /// Default: now.
    pub effective_from: Option<i64>,
    pub effective_until: Option<i64>,
}

/// A price as the API takes it, as documented: a decimal string such as `"2.50"` — not a JSON
/// number (a float on the way) nor an exponent (`"1e-7"`).
mod price_text {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        parse(&value).map_err(D::Error::custom)
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            value => parse(&value).map(Some).map_err(D::Error::custom),
        }
    }

    fn parse(value: &serde_json::Value) -> Result<Decimal, String> {
        let refused = || format!("a price is a decimal string such as \"2.50\", not {value}");
        let text = value.as_str().ok_or_else(refused)?;
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) {
            return Err(refused());
        }
        text.parse::<Decimal>()
            .map_err(|e| format!("{}: {e}", refused()))
    }

    #[cfg(test)]
    mod tests {
        use super::parse;
        use serde_json::json;

        #[test]
        fn only_decimal_strings_are_prices() {
            assert_eq!(parse(&json!("2.50")).expect("ok").to_string(), "2.50");
            assert_eq!(parse(&json!("3")).expect("ok").to_string(), "3");
            for refused in [
                json!(1.5),
                json!(2),
                json!("1e-7"),
                json!("1.5e3"),
                json!("-1"),
                json!(".5"),
                json!("1."),
                json!(" 1"),
                json!(""),
            ] {
                assert!(parse(&refused).is_err(), "{refused}");
            }
        }
    }
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

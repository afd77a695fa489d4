//! Money: prices per million tokens and what an execution cost, as exact decimals in USD.

use rust_decimal::Decimal;
use serde::Serialize;

/// Money for one execution, exact, in USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    #[schema(value_type = String)]
    pub input_cost: Decimal,
    #[schema(value_type = String)]
    pub output_cost: Decimal,
    #[schema(value_type = String)]
    pub reasoning_cost: Decimal,
    #[schema(value_type = String)]
    pub total_cost: Decimal,
}

/// One pricing row. A missing cached/cache-write/reasoning price falls back as `cost` explains.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    pub id: String,
    pub provider: String,
    pub model: String,
    #[schema(value_type = String)]
    pub input_per_mtok: Decimal,
    #[schema(value_type = Option<String>)]
    pub cached_input_per_mtok: Option<Decimal>,
    #[schema(value_type = Option<String>)]
    pub cache_write_per_mtok: Option<Decimal>,
    #[schema(value_type = String)]
    pub output_per_mtok: Decimal,
    #[schema(value_type = Option<String>)]
    pub reasoning_per_mtok: Option<Decimal>,
    /// Unix milliseconds from which the row applies.
    pub effective_from: i64,
    /// Unix milliseconds until which it applies (exclusive); `null` = open-ended.
    pub effective_until: Option<i64>,
}

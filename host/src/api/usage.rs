//! `GET /api/v1/workspaces/{ws}/usage`: what a workspace spent, by UTC day, model and provider —
//! the console's spend chart.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Caller, QueryParams};
use crate::domain::{ErrorCode, Role};
use crate::store::{UsageKey, UsageRow};

pub fn routes() -> Router<AppState> {
    Router::new().route("/workspaces/{ws}/usage", get(usage))
}

/// The longest range one request may ask for, in days.
const MAX_DAYS: i64 = 366;
/// The range when none is given: the last 30 days, today included.
const DEFAULT_DAYS: i64 = 30;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// First UTC day, `YYYY-MM-DD` (default: 29 days before `to`).
    #[param(format = Date)]
    from: Option<String>,
    /// Last UTC day, included (default: today).
    #[param(format = Date)]
    to: Option<String>,
    /// A comma list of `day`, `model`, `provider` (default: none — totals only).
    #[param(pattern = "^((day|model|provider)(,(day|model|provider))*)?$")]
    group_by: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub from: String,
    pub to: String,
    pub group_by: Vec<String>,
    /// One per group with usage, ordered by the `groupBy` keys; days without usage are absent.
    pub rows: Vec<UsageRow>,
    pub totals: UsageRow,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/usage", tag = "executions", security(("bearer" = [])),
    params(("ws" = String, Path), UsageQuery),
    responses((status = 200, body = Usage, description = "Usage and cost per group, and totals, for the UTC days `from` to `to`; kept after retention deletes executions"),
        (status = 400, description = "INVALID_FIELD: a malformed date, `from` after `to`, more than 366 days, or an unknown groupBy key")))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    query: QueryParams<UsageQuery>,
) -> Result<Json<Usage>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    let Query(query) = query.map_err(|e| invalid(e.body_text()))?;
    let to = match &query.to {
        Some(day) => parse_day("to", day)?,
        None => time::OffsetDateTime::now_utc().date(),
    };
    let from = match &query.from {
        Some(day) => parse_day("from", day)?,
        None => to - time::Duration::days(DEFAULT_DAYS - 1),
    };
    let days = (to - from).whole_days() + 1;
    if days < 1 {
        return Err(invalid("from must not be after to".into()));
    }
    if days > MAX_DAYS {
        return Err(invalid(format!(
            "at most {MAX_DAYS} days at once (asked for {days})"
        )));
    }
    let keys = group_keys(query.group_by.as_deref().unwrap_or_default())?;
    let (from, to) = (format_day(from), format_day(to));
    let rows = state.store.usage(&ws, &from, &to, &keys).await?;
    let mut totals = rows.iter().fold(UsageRow::default(), |mut t, r| {
        t.executions += r.executions;
        t.errors += r.errors;
        t.prompt_tokens += r.prompt_tokens;
        t.completion_tokens += r.completion_tokens;
        t.reasoning_tokens += r.reasoning_tokens;
        t.cached_tokens += r.cached_tokens;
        t.cost_usd += r.cost_usd;
        t
    });
    totals.cost_usd = totals.cost_usd.normalize();
    Ok(Json(Usage {
        from,
        to,
        group_by: keys.iter().map(|k| k.name().to_string()).collect(),
        rows: match keys.is_empty() {
            true => vec![],
            false => rows,
        },
        totals,
    }))
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidField, message)
}

const DAY: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

fn parse_day(field: &str, text: &str) -> Result<time::Date, ApiError> {
    time::Date::parse(text, DAY)
        .map_err(|_| invalid(format!("{field} must be a date, YYYY-MM-DD (got {text:?})")))
}

fn format_day(day: time::Date) -> String {
    day.format(DAY).unwrap_or_default()
}

/// `day,model` → the keys, in the order given, each once.
fn group_keys(list: &str) -> Result<Vec<UsageKey>, ApiError> {
    let mut keys = vec![];
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(key) = UsageKey::ALL.into_iter().find(|k| k.name() == name) else {
            return Err(invalid(format!(
                "groupBy takes day, model and provider (got {name:?})"
            )));
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_is_a_comma_list_of_known_keys_each_once() {
        assert_eq!(group_keys("").ok(), Some(vec![]));
        assert_eq!(
            group_keys("model, day,model").ok(),
            Some(vec![UsageKey::Model, UsageKey::Day])
        );
        assert!(group_keys("day,user").is_err());
    }
}

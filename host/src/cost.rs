//! Prices normalized usage, exactly.
//!
//! Per million tokens: `input = (prompt − cached − cacheWrite)·in + cached·cachedIn + cacheWrite·cacheWriteIn`,
//! `output = completion·out`, `reasoning = reasoning·(reasoningPrice, else out)`. A missing cached
//! or cache-write price falls back to the input price. A model without a price costs `null` with a
//! warning — never a silent zero.

use rust_decimal::Decimal;

use crate::domain::Usage;
use crate::domain::{Cost, Price};

/// The row that prices `model`: an exact match on the requested model, then on the model the
/// provider reported, then the longest priced model that prefixes it at a `-` boundary
/// (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`). `prices` are the provider's rows in force.
pub fn find_price<'a>(
    prices: &'a [Price],
    model: &str,
    reported: Option<&str>,
) -> Option<&'a Price> {
    let exact = |name: &str| prices.iter().find(|p| p.model == name);
    let prefix = |name: &str| {
        prices
            .iter()
            .filter(|p| {
                name.strip_prefix(p.model.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|p| p.model.len())
    };
    exact(model)
        .or_else(|| reported.and_then(exact))
        .or_else(|| prefix(model))
        .or_else(|| reported.and_then(prefix))
}

/// The cost of `usage` at `price`; `None` when the provider reported no token counts at all.
pub fn cost(usage: &Usage, price: &Price) -> Option<Cost> {
    if usage.prompt_tokens.is_none()
        && usage.completion_tokens.is_none()
        && usage.reasoning_tokens.is_none()
    {
        return None;
    }
    let n = |v: Option<u64>| Decimal::from(v.unwrap_or(0));
    let (prompt, cached, written) = (
        n(usage.prompt_tokens),
        n(usage.cached_tokens),
        n(usage.cache_write_tokens),
    );
    let uncached = (prompt - cached - written).max(Decimal::ZERO);
    let per_token = |per_mtok: Decimal| per_mtok / Decimal::from(1_000_000);
    let input = uncached * per_token(price.input_per_mtok)
        + cached * per_token(price.cached_input_per_mtok.unwrap_or(price.input_per_mtok))
        + written * per_token(price.cache_write_per_mtok.unwrap_or(price.input_per_mtok));
    let output = n(usage.completion_tokens) * per_token(price.output_per_mtok);
    let reasoning = n(usage.reasoning_tokens)
        * per_token(price.reasoning_per_mtok.unwrap_or(price.output_per_mtok));
    Some(Cost {
        input_cost: input.normalize(),
        output_cost: output.normalize(),
        reasoning_cost: reasoning.normalize(),
        total_cost: (input + output + reasoning).normalize(),
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    fn price(
        model: &str,
        input: &str,
        cached: Option<&str>,
        write: Option<&str>,
        output: &str,
        reasoning: Option<&str>,
    ) -> Price {
        Price {
            id: format!("p-{model}"),
            provider: "x".into(),
            model: model.into(),
            input_per_mtok: d(input),
            cached_input_per_mtok: cached.map(d),
            cache_write_per_mtok: write.map(d),
            output_per_mtok: d(output),
            reasoning_per_mtok: reasoning.map(d),
            effective_from: 0,
            effective_until: None,
        }
    }

    fn usage(prompt: u64, cached: u64, write: u64, completion: u64, reasoning: u64) -> Usage {
        Usage {
            prompt_tokens: Some(prompt),
            cached_tokens: Some(cached),
            cache_write_tokens: Some(write),
            completion_tokens: Some(completion),
            reasoning_tokens: Some(reasoning),
        }
    }

    #[test]
    fn plain_usage_at_gpt_4o_prices() {
        let p = price("gpt-4o", "2.50", Some("1.25"), None, "10.00", None);
        let c = cost(&usage(42, 0, 0, 357, 0), &p).expect("cost");
        assert_eq!(c.input_cost.to_string(), "0.000105");
        assert_eq!(c.output_cost.to_string(), "0.00357");
        assert_eq!(c.reasoning_cost.to_string(), "0");
        assert_eq!(c.total_cost.to_string(), "0.003675");
    }

    #[test]
    fn cached_tokens_are_billed_at_the_cached_price() {
        // OpenAI gpt-4o-mini: 2006 prompt tokens of which 1920 cached, 300 out.
        let p = price("gpt-4o-mini", "0.15", Some("0.075"), None, "0.60", None);
        let c = cost(&usage(2006, 1920, 0, 300, 0), &p).expect("cost");
        // 86·0.15 + 1920·0.075 = 12.9 + 144 = 156.9 → 0.0001569
        assert_eq!(c.input_cost.to_string(), "0.0001569");
        assert_eq!(c.output_cost.to_string(), "0.00018");
        assert_eq!(c.total_cost.to_string(), "0.0003369");
    }

    #[test]
    fn anthropic_cache_reads_and_writes_have_their_own_prices() {
        let p = price(
            "claude-sonnet-4",
            "3.00",
            Some("0.30"),
            Some("3.75"),
            "15.00",
            None,
        );
        // 21 uncached + 1888 read; then 21 uncached + 1888 written.
        let read = cost(&usage(1909, 1888, 0, 393, 0), &p).expect("cost");
        assert_eq!(read.input_cost.to_string(), "0.0006294"); // 63 + 566.4
        let write = cost(&usage(1909, 0, 1888, 393, 0), &p).expect("cost");
        assert_eq!(write.input_cost.to_string(), "0.007143"); // 63 + 7080
        assert_eq!(write.output_cost.to_string(), "0.005895");
    }

    #[test]
    fn reasoning_uses_its_price_or_else_the_output_price() {
        let p = price("o4-mini", "1.10", Some("0.275"), None, "4.40", None);
        let c = cost(&usage(16, 0, 0, 226, 1024), &p).expect("cost");
        assert_eq!(c.reasoning_cost.to_string(), "0.0045056");
        assert_eq!(c.output_cost.to_string(), "0.0009944");
        assert_eq!(c.total_cost.to_string(), "0.0055176");
        let priced = price("r1", "1", None, None, "2", Some("8"));
        let c = cost(&usage(0, 0, 0, 0, 1_000_000), &priced).expect("cost");
        assert_eq!(c.reasoning_cost.to_string(), "8");
    }

    #[test]
    fn missing_cached_price_falls_back_to_input_price() {
        let p = price("m", "2", None, None, "4", None);
        let c = cost(&usage(1_000_000, 500_000, 0, 0, 0), &p).expect("cost");
        assert_eq!(c.input_cost.to_string(), "2");
    }

    #[test]
    fn no_reported_usage_has_no_cost() {
        let p = price("m", "2", None, None, "4", None);
        assert_eq!(cost(&Usage::default(), &p), None);
    }

    #[test]
    fn dated_and_longer_model_names_find_the_right_row() {
        let prices = vec![
            price("gpt-4o", "2.50", None, None, "10", None),
            price("gpt-4o-mini", "0.15", None, None, "0.60", None),
        ];
        let find = |m: &str, r: Option<&str>| find_price(&prices, m, r).map(|p| p.model.as_str());
        assert_eq!(find("gpt-4o", None), Some("gpt-4o"));
        assert_eq!(find("gpt-4o-mini-2024-07-18", None), Some("gpt-4o-mini"));
        assert_eq!(find("gpt-4o-2024-08-06", None), Some("gpt-4o"));
        assert_eq!(
            find("my-alias", Some("gpt-4o-mini-2024-07-18")),
            Some("gpt-4o-mini")
        );
        assert_eq!(find("gpt-4", None), None);
        assert_eq!(find("gpt-4oo", None), None);
    }
}

//! What a flow's run may cost at most, before it runs.
//!
//! Prompt tokens are ⌈UTF-8 bytes / 4⌉ of each pod's prompts as far as they are known: its
//! system prompt and its user prompt (or, for a root pod, the run's messages), with each
//! `{{upstream}}` reference counted as that upstream pod's most completion tokens. Completion is
//! bounded by the pod's `maxTokens`, or the operator's default (`defaulted`). The price is today's:
//! prompt tokens at the input price, completion at the output price or the reasoning price where
//! higher. Where it can be wrong: the bytes/4 rule undercounts non-Latin text and code (a real
//! tokenizer may give 2–3× as many tokens), references to the same pod are counted each time, and
//! a provider that ignores `maxTokens` can exceed it.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::domain::{MessageInput, Price};
use crate::store::Pod;

/// One pod's bound.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodEstimate {
    pub pod_id: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub max_completion_tokens: u64,
    /// The pod has no `maxTokens`: the server's default bounded it.
    pub defaulted: bool,
    /// `null`: no price is known for the model.
    #[schema(value_type = Option<String>)]
    pub max_cost_usd: Option<Decimal>,
}

/// The flow's bound: each pod's, their sum (priced pods only), and the unpriced ones.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub pods: Vec<PodEstimate>,
    #[schema(value_type = String)]
    pub max_cost_usd: Decimal,
    pub unpriced: Vec<String>,
}

/// Bounds every pod of `pods` (in execution order); `roots` take `messages` in place of their
/// user prompt; `price` finds a pod's price.
pub fn estimate(
    pods: &[Pod],
    roots: &HashSet<String>,
    messages: Option<&[MessageInput]>,
    price: impl Fn(&Pod) -> Option<Price>,
    default_max_tokens: u32,
) -> Estimate {
    let mut completion: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::with_capacity(pods.len());
    for pod in pods {
        let cfg = &pod.config;
        let (max_completion_tokens, defaulted) = match cfg.max_tokens {
            Some(n) => (u64::from(n), false),
            None => (u64::from(default_max_tokens), true),
        };
        completion.insert(&pod.id, max_completion_tokens);
        let mut texts: Vec<&str> = cfg.system_prompt.iter().map(String::as_str).collect();
        match messages.filter(|_| roots.contains(&pod.id)) {
            Some(messages) => texts.extend(messages.iter().map(|m| m.content.as_str())),
            None => texts.extend(cfg.user_prompt.iter().map(String::as_str)),
        }
        let (bytes, referenced) = texts
            .iter()
            .map(|t| known_bytes(t, &completion))
            .fold((0, 0), |(b, r), (b2, r2)| (b + b2, r + r2));
        let prompt_tokens = bytes.div_ceil(4) + referenced;
        let max_cost_usd = price(pod).map(|p| {
            let completion_price = p
                .reasoning_per_mtok
                .map_or(p.output_per_mtok, |r| r.max(p.output_per_mtok));
            (Decimal::from(prompt_tokens) * p.input_per_mtok
                + Decimal::from(max_completion_tokens) * completion_price)
                / Decimal::from(1_000_000)
        });
        out.push(PodEstimate {
            pod_id: pod.id.clone(),
            model: cfg.model.clone(),
            prompt_tokens,
            max_completion_tokens,
            defaulted,
            max_cost_usd,
        });
    }
    Estimate {
        max_cost_usd: out.iter().filter_map(|p| p.max_cost_usd).sum(),
        unpriced: out
            .iter()
            .filter(|p| p.max_cost_usd.is_none())
            .map(|p| p.pod_id.clone())
            .collect(),
        pods: out,
    }
}

/// The bytes of `text` known before running, and the tokens its references to earlier pods
/// stand for (a reference to anything else stays as written, and counts as text).
fn known_bytes(text: &str, completion: &HashMap<&str, u64>) -> (u64, u64) {
    let (mut bytes, mut referenced) = (0u64, 0u64);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        bytes += start as u64;
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            rest = &rest[start..];
            break;
        };
        let inner = after[..end].trim();
        let id = inner.strip_suffix(".output").unwrap_or(inner);
        match completion.get(id) {
            Some(tokens) => referenced += tokens,
            None => bytes += end as u64 + 4,
        }
        rest = &after[end + 2..];
    }
    (bytes + rest.len() as u64, referenced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PodConfig;

    fn pod(id: &str, system: &str, user: &str, max_tokens: Option<u32>) -> Pod {
        Pod {
            id: id.into(),
            flow_id: "f".into(),
            config: PodConfig {
                name: id.into(),
                provider: "openai".into(),
                model: "gpt-4o".into(),
                system_prompt: Some(system.into()),
                user_prompt: Some(user.into()),
                temperature: None,
                max_tokens,
                top_p: None,
                response_format: None,
                thinking_budget: None,
                output_extractor: None,
                plugin_version: None,
            },
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn price(input: &str, output: &str) -> Price {
        Price {
            id: "p".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            input_per_mtok: input.parse().expect("decimal"),
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
            output_per_mtok: output.parse().expect("decimal"),
            reasoning_per_mtok: None,
            effective_from: 0,
            effective_until: None,
        }
    }

    #[test]
    fn counts_known_bytes_and_upstream_outputs_as_their_bounds() {
        // a: 9 + 12 bytes → 6 tokens; b: "Sum: " (5) + a's 100 → 2 + 100 tokens, default 4096.
        let pods = [
            pod("a", "You help.", "Hello there!", Some(100)),
            pod("b", "", "Sum: {{a}}", None),
        ];
        let roots = HashSet::from(["a".to_string()]);
        let e = estimate(&pods, &roots, None, |_| Some(price("2.5", "10")), 4096);
        assert_eq!(e.pods[0].prompt_tokens, 6);
        assert_eq!(e.pods[1].prompt_tokens, 102);
        assert!(e.pods[1].defaulted && !e.pods[0].defaulted);
        // a: 6 × 2.5 + 100 × 10 = 1015 per 1M; b: 102 × 2.5 + 4096 × 10 = 41215.
        assert_eq!(e.pods[0].max_cost_usd, Some("0.001015".parse().expect("d")));
        assert_eq!(e.pods[1].max_cost_usd, Some("0.041215".parse().expect("d")));
        assert_eq!(e.max_cost_usd, "0.04223".parse::<Decimal>().expect("d"));
        // Unpriced pods are listed, not counted as free.
        let e = estimate(
            &pods,
            &roots,
            None,
            |p| (p.id == "a").then(|| price("1", "1")),
            10,
        );
        assert_eq!(e.unpriced, ["b"]);
    }

    #[test]
    fn a_root_takes_the_runs_messages_in_place_of_its_user_prompt() {
        let pods = [pod("a", "", "a long user prompt that is replaced", Some(1))];
        let roots = HashSet::from(["a".to_string()]);
        let messages = [MessageInput {
            role: crate::domain::MessageRole::User,
            content: "12345678".into(),
        }];
        let e = estimate(&pods, &roots, Some(&messages), |_| None, 1);
        assert_eq!(e.pods[0].prompt_tokens, 2);
    }
}

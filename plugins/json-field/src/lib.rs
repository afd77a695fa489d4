//! `json-field`: an extractor-only plugin (the `extractor-plugin` world). A pod whose answer is JSON
//! (`responseFormat: json_object` or a schema) sets `outputExtractor: "json-field:/summary"` and its
//! output — what downstream pods read as `{{pod_id}}` — becomes that field instead of the whole
//! JSON text.
//!
//! It finds the answer text in the provider's raw response (OpenAI `choices[0].message.content`,
//! Anthropic's `text` content blocks, Gemini's candidate parts), parses it as JSON and returns the
//! value at the JSON pointer given as the argument: a string as it is, anything else as JSON.

use pods_extractor_sdk::serde_json::{self, Value};
use pods_extractor_sdk::{ExtractorManifest, extractor};

struct JsonField;

impl pods_extractor_sdk::Guest for JsonField {
    fn describe() -> ExtractorManifest {
        ExtractorManifest {
            id: "json-field".into(),
            name: "JSON field".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: pods_extractor_sdk::API_VERSION.into(),
        }
    }
}

impl extractor::Guest for JsonField {
    fn extract(raw_response: String, args: Option<String>) -> Result<String, String> {
        let pointer = args.ok_or("json-field needs a JSON pointer, e.g. json-field:/summary")?;
        let raw: Value = serde_json::from_str(&raw_response)
            .map_err(|e| format!("the raw response is not JSON: {e}"))?;
        let text = answer_text(&raw).ok_or("no answer text in the raw response")?;
        let answer: Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("the answer is not JSON: {e}"))?;
        match answer.pointer(&pointer) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(format!("the answer has nothing at {pointer}")),
        }
    }
}

/// The answer text of an OpenAI, Anthropic or Gemini raw response.
fn answer_text(raw: &Value) -> Option<String> {
    if let Some(text) = raw
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
    {
        return Some(text.to_string());
    }
    let join = |parts: &Vec<Value>, pick: fn(&Value) -> Option<&str>| {
        let text: String = parts.iter().filter_map(pick).collect();
        (!text.is_empty()).then_some(text)
    };
    if let Some(blocks) = raw.get("content").and_then(Value::as_array) {
        return join(blocks, |b| {
            (b.get("type")? == "text").then(|| b.get("text")?.as_str())?
        });
    }
    let parts = raw.pointer("/candidates/0/content/parts")?.as_array()?;
    join(parts, |p| {
        // Gemini marks thinking parts with `thought: true`; they are not the answer.
        (p.get("thought") != Some(&Value::Bool(true))).then(|| p.get("text")?.as_str())?
    })
}

pods_extractor_sdk::export_extractor_plugin!(JsonField);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extract(raw: Value, pointer: &str) -> Result<String, String> {
        <JsonField as extractor::Guest>::extract(raw.to_string(), Some(pointer.into()))
    }

    #[test]
    fn finds_the_field_in_each_providers_answer() {
        let answer = r#"{"summary": "short", "items": [1, 2]}"#;
        let openai = json!({"choices": [{"message": {"content": answer}}]});
        let anthropic = json!({"content": [{"type": "thinking", "thinking": "…"}, {"type": "text", "text": answer}]});
        let gemini = json!({"candidates": [{"content": {"parts": [{"text": "…", "thought": true}, {"text": answer}]}}]});
        for raw in [openai, anthropic, gemini] {
            assert_eq!(
                extract(raw.clone(), "/summary"),
                Ok("short".into()),
                "{raw}"
            );
            assert_eq!(extract(raw, "/items"), Ok("[1,2]".into()));
        }
    }

    #[test]
    fn says_why_nothing_was_extracted() {
        let raw = json!({"choices": [{"message": {"content": "not json"}}]});
        assert!(extract(raw, "/a").is_err_and(|e| e.contains("not JSON")));
        let raw = json!({"choices": [{"message": {"content": "{}"}}]});
        assert!(extract(raw, "/a").is_err_and(|e| e.contains("nothing at /a")));
    }
}

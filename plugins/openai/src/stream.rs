//! `stream: true` answers: `data: {chunk}` events, an optional usage-only last chunk with
//! `choices: []`, then `data: [DONE]`.

use std::cell::RefCell;

use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{
    Completion, FinishReason, ProviderError, SseEvent, StreamDelta, Usage,
};
use pods_plugin_sdk::{error, parse_json};

use crate::response::{error_body, finish_reason, no_usage, reasoning_text, usage};

#[derive(Default)]
pub struct Parser {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    content: String,
    reasoning: String,
    refused: bool,
    usage: Option<Usage>,
    finish_reason: Option<FinishReason>,
    model: Option<String>,
    response_id: Option<String>,
    done: bool,
}

impl Parser {
    pub fn push_event(&self, event: &SseEvent) -> Result<StreamDelta, ProviderError> {
        let mut state = self.state.borrow_mut();
        let mut delta = StreamDelta {
            text: String::new(),
            reasoning: String::new(),
            usage: None,
            finish_reason: None,
        };
        let data = event.data.trim();
        if data == "[DONE]" {
            state.done = true;
            return Ok(delta);
        }
        if data.is_empty() {
            return Ok(delta);
        }
        let chunk = parse_json(data.as_bytes())?;
        if chunk.get("error").is_some_and(Value::is_object) {
            return Err(error_body(&chunk, 200, &[]));
        }
        if let Some(id) = chunk.get("id").and_then(Value::as_str) {
            state.response_id.get_or_insert_with(|| id.to_string());
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            state.model.get_or_insert_with(|| model.to_string());
        }
        if let Some(choice) = chunk.pointer("/choices/0") {
            let d = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = d.get("content").and_then(Value::as_str) {
                delta.text.push_str(text);
            }
            if let Some(text) = d.get("refusal").and_then(Value::as_str) {
                state.refused = true;
                delta.text.push_str(text);
            }
            if let Some(text) = reasoning_text(d) {
                delta.reasoning.push_str(text);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                let reason = if state.refused {
                    FinishReason::Refusal
                } else {
                    finish_reason(reason)
                };
                state.finish_reason = Some(reason);
                delta.finish_reason = Some(reason);
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            let u = usage(u);
            state.usage = Some(u);
            delta.usage = Some(u);
        }
        state.content.push_str(&delta.text);
        state.reasoning.push_str(&delta.reasoning);
        Ok(delta)
    }

    pub fn complete(&self) -> Result<Completion, ProviderError> {
        let state = self.state.borrow();
        if !state.done {
            let mut err = error(
                pods_plugin_sdk::types::ErrorKind::MalformedResponse,
                "stream ended before data: [DONE]",
            );
            err.retryable = true;
            return Err(err);
        }
        Ok(Completion {
            content: state.content.clone(),
            reasoning: (!state.reasoning.is_empty()).then(|| state.reasoning.clone()),
            usage: state.usage.unwrap_or_else(no_usage),
            finish_reason: state.finish_reason,
            model: state.model.clone(),
            response_id: state.response_id.clone(),
        })
    }
}

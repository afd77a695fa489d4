//! `streamGenerateContent?alt=sse`: each event is a whole `GenerateContentResponse` chunk whose
//! `usageMetadata` is a running total; the last chunk carries the `finishReason`.

use std::cell::RefCell;

use pods_plugin_sdk::parse_json;
use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{
    Completion, FinishReason, ProviderError, SseEvent, StreamDelta, Usage,
};

use crate::response::{blocked, candidate_text, cut, error_body, finish_reason, no_usage, usage};

#[derive(Default)]
pub struct Parser {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    content: String,
    reasoning: String,
    usage: Option<Usage>,
    finish_reason: Option<FinishReason>,
    model: Option<String>,
    response_id: Option<String>,
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
        if event.data.trim().is_empty() {
            return Ok(delta);
        }
        let chunk = parse_json(event.data.as_bytes())?;
        if chunk.get("error").is_some_and(Value::is_object) {
            return Err(error_body(&chunk, 200, &[]));
        }
        blocked(&chunk)?;
        let (text, thoughts) = candidate_text(&chunk);
        delta.text = text.unwrap_or_default();
        delta.reasoning = thoughts.unwrap_or_default();
        if let Some(u) = chunk.get("usageMetadata") {
            let u = usage(u);
            state.usage = Some(u);
            delta.usage = Some(u);
        }
        if let Some(reason) = chunk
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str)
        {
            let reason = finish_reason(reason);
            state.finish_reason = Some(reason);
            delta.finish_reason = Some(reason);
        }
        if let Some(model) = chunk.get("modelVersion").and_then(Value::as_str) {
            state.model.get_or_insert_with(|| model.to_string());
        }
        if let Some(id) = chunk.get("responseId").and_then(Value::as_str) {
            state.response_id.get_or_insert_with(|| id.to_string());
        }
        state.content.push_str(&delta.text);
        state.reasoning.push_str(&delta.reasoning);
        Ok(delta)
    }

    pub fn complete(&self) -> Result<Completion, ProviderError> {
        let state = self.state.borrow();
        if state.finish_reason.is_none() {
            return Err(cut("stream ended before a chunk with a finishReason"));
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

//! `stream: true` answers: `data: {chunk}` events, an optional usage-only last chunk with
//! `choices: []`, then `data: [DONE]`.

use std::cell::RefCell;

use pods_plugin_sdk::provider::GuestStreamParser;
use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{
    ChatRequest, Completion, FinishReason, ProviderError, SseEvent, StreamDelta,
};
use pods_plugin_sdk::{StreamAccumulator, cut_stream, empty_delta, parse_json};

use crate::response::{error_body, finish_reason, reasoning_text, usage};

pub struct Parser {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    answer: StreamAccumulator,
    refused: bool,
    done: bool,
}

impl GuestStreamParser for Parser {
    fn new(_request: ChatRequest) -> Self {
        Parser {
            state: RefCell::default(),
        }
    }

    fn push(&self, event: SseEvent) -> Result<StreamDelta, ProviderError> {
        let mut state = self.state.borrow_mut();
        let mut delta = empty_delta();
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
            state
                .answer
                .response_id
                .get_or_insert_with(|| id.to_string());
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            state.answer.model.get_or_insert_with(|| model.to_string());
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
                delta.finish_reason = Some(if state.refused {
                    FinishReason::Refusal
                } else {
                    finish_reason(reason)
                });
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            delta.usage = Some(usage(u));
        }
        state.answer.add(&delta);
        Ok(delta)
    }

    fn finish(&self) -> Result<Completion, ProviderError> {
        let state = self.state.borrow();
        if !state.done {
            return Err(cut_stream("data: [DONE]"));
        }
        Ok(state.answer.completion())
    }
}

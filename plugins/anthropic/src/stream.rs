//! `stream: true` answers: `message_start`, content block events, `ping`, `message_delta`
//! (running usage totals) and `message_stop`; or an `error` event.

use std::cell::RefCell;

use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{
    Completion, ErrorKind, FinishReason, ProviderError, SseEvent, StreamDelta,
};
use pods_plugin_sdk::{error, parse_json};

use crate::response::{RawUsage, error_body, finish_reason};

#[derive(Default)]
pub struct Parser {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    content: String,
    reasoning: String,
    usage: RawUsage,
    saw_usage: bool,
    finish_reason: Option<FinishReason>,
    model: Option<String>,
    response_id: Option<String>,
    stopped: bool,
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
        let data = parse_json(event.data.as_bytes())?;
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = data.get("message").unwrap_or(&Value::Null);
                state.response_id = message
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                state.model = message
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Some(u) = message.get("usage") {
                    state.usage.update(u);
                    state.saw_usage = true;
                    delta.usage = Some(state.usage.normalized());
                }
            }
            Some("content_block_start") => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                if let Some(text) = block.get("text").and_then(Value::as_str) {
                    delta.text.push_str(text);
                }
                if let Some(text) = block.get("thinking").and_then(Value::as_str) {
                    delta.reasoning.push_str(text);
                }
            }
            Some("content_block_delta") => {
                let d = data.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        delta
                            .text
                            .push_str(d.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("thinking_delta") => delta
                        .reasoning
                        .push_str(d.get("thinking").and_then(Value::as_str).unwrap_or("")),
                    _ => {} // signature and tool-input deltas carry no text
                }
            }
            Some("message_delta") => {
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    let reason = finish_reason(reason);
                    state.finish_reason = Some(reason);
                    delta.finish_reason = Some(reason);
                }
                if let Some(u) = data.get("usage") {
                    state.usage.update(u);
                    state.saw_usage = true;
                    delta.usage = Some(state.usage.normalized());
                }
            }
            Some("message_stop") => state.stopped = true,
            Some("error") => return Err(error_body(&data, 200, &[])),
            _ => {} // ping, content_block_stop, and event types added later
        }
        state.content.push_str(&delta.text);
        state.reasoning.push_str(&delta.reasoning);
        Ok(delta)
    }

    pub fn complete(&self) -> Result<Completion, ProviderError> {
        let state = self.state.borrow();
        if !state.stopped {
            let mut err = error(
                ErrorKind::MalformedResponse,
                "stream ended before message_stop",
            );
            err.retryable = true;
            return Err(err);
        }
        Ok(Completion {
            content: state.content.clone(),
            reasoning: (!state.reasoning.is_empty()).then(|| state.reasoning.clone()),
            usage: if state.saw_usage {
                state.usage.normalized()
            } else {
                crate::response::no_usage()
            },
            finish_reason: state.finish_reason,
            model: state.model.clone(),
            response_id: state.response_id.clone(),
        })
    }
}

//! `stream: true` answers: `message_start`, content block events, `ping`, `message_delta`
//! (running usage totals) and `message_stop`; or an `error` event.

use std::cell::RefCell;

use pods_plugin_sdk::provider::GuestStreamParser;
use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{ChatRequest, Completion, ProviderError, SseEvent, StreamDelta};
use pods_plugin_sdk::{StreamAccumulator, cut_stream, empty_delta, parse_json};

use crate::response::{RawUsage, error_body, finish_reason};

pub struct Parser {
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    answer: StreamAccumulator,
    usage: RawUsage,
    stopped: bool,
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
        if event.data.trim().is_empty() {
            return Ok(delta);
        }
        let data = parse_json(event.data.as_bytes())?;
        let text =
            |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = data.get("message").unwrap_or(&Value::Null);
                state.answer.response_id = message
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                state.answer.model = message
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Some(u) = message.get("usage") {
                    state.usage.update(u);
                    delta.usage = Some(state.usage.normalized());
                }
            }
            Some("content_block_start") => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                delta.text = text(block, "text");
                delta.reasoning = text(block, "thinking");
            }
            Some("content_block_delta") => {
                let d = data.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => delta.text = text(d, "text"),
                    Some("thinking_delta") => delta.reasoning = text(d, "thinking"),
                    _ => {} // signature and tool-input deltas carry no text
                }
            }
            Some("message_delta") => {
                delta.finish_reason = data
                    .pointer("/delta/stop_reason")
                    .and_then(Value::as_str)
                    .map(finish_reason);
                if let Some(u) = data.get("usage") {
                    state.usage.update(u);
                    delta.usage = Some(state.usage.normalized());
                }
            }
            Some("message_stop") => state.stopped = true,
            Some("error") => return Err(error_body(&data, 200, &[])),
            _ => {} // ping, content_block_stop, and event types added later
        }
        state.answer.add(&delta);
        Ok(delta)
    }

    fn finish(&self) -> Result<Completion, ProviderError> {
        let state = self.state.borrow();
        if !state.stopped {
            return Err(cut_stream("message_stop"));
        }
        Ok(state.answer.completion())
    }
}

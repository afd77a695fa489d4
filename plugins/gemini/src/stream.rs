//! `streamGenerateContent?alt=sse`: each event is a whole `GenerateContentResponse` chunk whose
//! `usageMetadata` is a running total; the last chunk carries the `finishReason`.

use std::cell::RefCell;

use pods_plugin_sdk::provider::GuestStreamParser;
use pods_plugin_sdk::serde_json::Value;
use pods_plugin_sdk::types::{ChatRequest, Completion, ProviderError, SseEvent, StreamDelta};
use pods_plugin_sdk::{StreamAccumulator, cut_stream, empty_delta, parse_json};

use crate::response::{blocked, candidate_text, error_body, finish_reason, usage};

pub struct Parser {
    answer: RefCell<StreamAccumulator>,
}

impl GuestStreamParser for Parser {
    fn new(_request: ChatRequest) -> Self {
        Parser {
            answer: RefCell::default(),
        }
    }

    fn push(&self, event: SseEvent) -> Result<StreamDelta, ProviderError> {
        let mut answer = self.answer.borrow_mut();
        let mut delta = empty_delta();
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
        delta.usage = chunk.get("usageMetadata").map(usage);
        delta.finish_reason = chunk
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str)
            .map(finish_reason);
        if let Some(model) = chunk.get("modelVersion").and_then(Value::as_str) {
            answer.model.get_or_insert_with(|| model.to_string());
        }
        if let Some(id) = chunk.get("responseId").and_then(Value::as_str) {
            answer.response_id.get_or_insert_with(|| id.to_string());
        }
        answer.add(&delta);
        Ok(delta)
    }

    fn finish(&self) -> Result<Completion, ProviderError> {
        let answer = self.answer.borrow();
        if answer.finish_reason.is_none() {
            return Err(cut_stream("a chunk with a finishReason"));
        }
        Ok(answer.completion())
    }
}

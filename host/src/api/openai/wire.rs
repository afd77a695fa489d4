//! OpenAI's Chat Completions wire format, mapped onto Pods' own request and result — nothing
//! else. A request field Pods cannot carry is refused by name, never dropped.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::domain::{
    ExecuteRequest, ExecutionResult, FinishReason, MessageInput, MessageRole, ResponseFormat,
    UsageView,
};

/// What the request's `model` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `provider/model`: a call without a pod, with the workspace's key for the provider.
    Model { provider: String, model: String },
    /// `pod/<id>`: the pod, with the request's messages in place of its user prompt.
    Pod(String),
}

/// A request read and checked: what to run, and how to answer.
#[derive(Debug, Clone)]
pub struct ChatCall {
    /// The `model` as the client wrote it; echoed in the answer.
    pub model: String,
    pub request: ExecuteRequest,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage (and Pods' execution id and cost).
    pub include_usage: bool,
}

/// A refused request: OpenAI's `invalid_request_error`, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `unsupported_parameter`, `invalid_value`, `missing_required_parameter`, `model_not_found`.
    pub code: &'static str,
    pub param: Option<String>,
    pub message: String,
}

fn refused(code: &'static str, param: &str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        param: Some(param.to_string()),
        message: message.into(),
    }
}

fn unsupported(param: &str) -> Refused {
    refused(
        "unsupported_parameter",
        param,
        format!(
            "'{param}' is not supported by this server (it cannot be passed to every provider yet)"
        ),
    )
}

fn invalid(param: &str, message: impl Into<String>) -> Refused {
    refused("invalid_value", param, message)
}

/// `reasoning_effort` as a thinking budget (the OpenAI plugin maps it back: ≤ 1,024 low,
/// ≤ 8,192 medium, above high).
fn thinking_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24_576),
        _ => None,
    }
}

/// Reads a Chat Completions request body.
pub fn read(body: &Value) -> Result<ChatCall, Refused> {
    let Some(fields) = body.as_object() else {
        return Err(invalid("body", "the body must be a JSON object"));
    };
    for (name, value) in fields {
        let known = matches!(
            name.as_str(),
            "model"
                | "messages"
                | "temperature"
                | "top_p"
                | "max_tokens"
                | "max_completion_tokens"
                | "response_format"
                | "reasoning_effort"
                | "stream"
                | "stream_options"
        );
        // `n: 1` and nulls say nothing more than leaving the field out.
        let harmless = value.is_null() || (name == "n" && value.as_u64() == Some(1));
        if !known && !harmless {
            return Err(unsupported(name));
        }
    }
    let model = match fields.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_string(),
        _ => {
            return Err(refused(
                "missing_required_parameter",
                "model",
                "'model' is required: \"<provider>/<model>\" or \"pod/<podId>\"",
            ));
        }
    };
    let target = match model.split_once('/') {
        Some(("pod", id)) if !id.is_empty() => Target::Pod(id.to_string()),
        Some((provider, name)) if !provider.is_empty() && !name.is_empty() => Target::Model {
            provider: provider.to_ascii_lowercase(),
            model: name.to_string(),
        },
        _ => {
            return Err(refused(
                "model_not_found",
                "model",
                format!(
                    "the model '{model}' does not exist: name it \"<provider>/<model>\" (e.g. \"openai/gpt-4o-mini\") or \"pod/<podId>\""
                ),
            ));
        }
    };
    let messages = messages(fields.get("messages"))?;
    let number = |name: &str| -> Result<Option<f64>, Refused> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| invalid(name, format!("'{name}' must be a number"))),
        }
    };
    let count = |name: &str| -> Result<Option<u32>, Refused> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| invalid(name, format!("'{name}' must be a positive integer"))),
        }
    };
    let max_tokens = match count("max_completion_tokens")? {
        Some(n) => Some(n),
        None => count("max_tokens")?,
    };
    let flag = |name: &str| -> Result<bool, Refused> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(name, format!("'{name}' must be a boolean"))),
        }
    };
    let stream = flag("stream")?;
    let include_usage = match fields.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(options)) => {
            for (name, value) in options {
                if name != "include_usage" {
                    return Err(unsupported(&format!("stream_options.{name}")));
                }
                if !value.is_boolean() {
                    return Err(invalid(
                        "stream_options.include_usage",
                        "'stream_options.include_usage' must be a boolean",
                    ));
                }
            }
            options.get("include_usage") == Some(&Value::Bool(true))
        }
        Some(_) => {
            return Err(invalid(
                "stream_options",
                "'stream_options' must be an object",
            ));
        }
    };
    let thinking_budget = match fields.get("reasoning_effort") {
        None | Some(Value::Null) => None,
        Some(Value::String(effort)) => Some(thinking_budget(effort).ok_or_else(|| {
            invalid(
                "reasoning_effort",
                "'reasoning_effort' must be minimal, low, medium or high",
            )
        })?),
        Some(_) => {
            return Err(invalid(
                "reasoning_effort",
                "'reasoning_effort' must be a string",
            ));
        }
    };
    let (pod_id, provider, model_name) = match &target {
        Target::Pod(id) => (id.clone(), None, None),
        Target::Model { provider, model } => {
            (String::new(), Some(provider.clone()), Some(model.clone()))
        }
    };
    let request = ExecuteRequest {
        pod_id,
        messages: Some(messages),
        provider,
        model: model_name,
        system_prompt: None,
        temperature: number("temperature")?,
        max_tokens,
        top_p: number("top_p")?,
        response_format: response_format(fields.get("response_format"))?,
        thinking_budget,
        run_async: false,
        stream,
    };
    Ok(ChatCall {
        model,
        request,
        stream,
        include_usage,
    })
}

/// `messages`: `system`/`developer` (both system), `user`, `assistant`; content a string or
/// text parts (joined by newlines).
fn messages(value: Option<&Value>) -> Result<Vec<MessageInput>, Refused> {
    let Some(Value::Array(items)) = value else {
        return Err(refused(
            "missing_required_parameter",
            "messages",
            "'messages' is required: an array of {role, content}",
        ));
    };
    if items.is_empty() {
        return Err(invalid("messages", "'messages' must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| format!("messages[{i}].{field}");
            let Some(fields) = item.as_object() else {
                return Err(invalid(&format!("messages[{i}]"), "a message is an object"));
            };
            for (name, value) in fields {
                if name != "role" && name != "content" && !value.is_null() {
                    return Err(unsupported(&at(name)));
                }
            }
            let role = match fields.get("role").and_then(Value::as_str) {
                Some("system" | "developer") => MessageRole::System,
                Some("user") => MessageRole::User,
                Some("assistant") => MessageRole::Assistant,
                Some("tool" | "function") => return Err(unsupported(&at("role"))),
                _ => {
                    return Err(invalid(
                        &at("role"),
                        "a role is system, developer, user or assistant",
                    ));
                }
            };
            let content = match fields.get("content") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => text_parts(parts, &at("content"))?,
                _ => {
                    return Err(invalid(
                        &at("content"),
                        "content is a string or an array of text parts",
                    ));
                }
            };
            Ok(MessageInput { role, content })
        })
        .collect()
}

fn text_parts(parts: &[Value], at: &str) -> Result<String, Refused> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => match part.get("text").and_then(Value::as_str) {
                Some(text) => texts.push(text),
                None => {
                    return Err(invalid(
                        &format!("{at}[{j}].text"),
                        "a text part has a text",
                    ));
                }
            },
            // Images, audio, files: the plugin interface carries text only, for now.
            Some(_) => return Err(unsupported(&format!("{at}[{j}].type"))),
            None => {
                return Err(invalid(
                    &format!("{at}[{j}].type"),
                    "a content part has a type",
                ));
            }
        }
    }
    Ok(texts.join("\n"))
}

fn response_format(value: Option<&Value>) -> Result<Option<ResponseFormat>, Refused> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Some(ResponseFormat::Text)),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => match value.pointer("/json_schema/schema") {
            Some(schema) if schema.is_object() => Ok(Some(ResponseFormat::JsonSchema {
                schema: schema.clone(),
            })),
            _ => Err(invalid(
                "response_format.json_schema.schema",
                "a json_schema response format needs json_schema.schema, an object",
            )),
        },
        _ => Err(invalid(
            "response_format.type",
            "'response_format.type' must be text, json_object or json_schema",
        )),
    }
}

/// OpenAI's usage: `completion_tokens` counts reasoning (Pods keeps them apart), with the
/// reasoning and cached parts in the details. A count the provider did not report is 0 here.
#[derive(Debug, Clone, Serialize)]
pub struct WireUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: Value,
    pub completion_tokens_details: Value,
}

pub fn usage(u: &UsageView) -> WireUsage {
    let prompt = u.prompt_tokens.unwrap_or(0);
    let reasoning = u.reasoning_tokens.unwrap_or(0);
    let completion = u.completion_tokens.unwrap_or(0) + reasoning;
    WireUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: json!({"cached_tokens": u.cached_tokens.unwrap_or(0)}),
        completion_tokens_details: json!({"reasoning_tokens": reasoning}),
    }
}

pub fn finish_reason(reason: Option<FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::Length) => "length",
        Some(FinishReason::ContentFilter | FinishReason::Refusal) => "content_filter",
        Some(FinishReason::ToolCalls) => "tool_calls",
        Some(FinishReason::Stop | FinishReason::Other) | None => "stop",
    }
}

/// `chatcmpl-<execution id>`: the answer's id names the execution that recorded it.
pub fn completion_id(execution_id: &str) -> String {
    format!("chatcmpl-{execution_id}")
}

/// A finished call as a `chat.completion`.
pub fn completion(model: &str, created: i64, result: &ExecutionResult) -> Value {
    json!({
        "id": completion_id(&result.execution_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": result.content, "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(result.finish_reason),
        }],
        "usage": usage(&result.usage),
        "system_fingerprint": null,
    })
}

/// One `chat.completion.chunk`, with `delta` (or, for the usage chunk, no choices).
pub fn chunk(
    model: &str,
    created: i64,
    execution_id: &str,
    choice: Option<Value>,
) -> Map<String, Value> {
    let mut chunk = Map::new();
    chunk.insert("id".into(), json!(completion_id(execution_id)));
    chunk.insert("object".into(), json!("chat.completion.chunk"));
    chunk.insert("created".into(), json!(created));
    chunk.insert("model".into(), json!(model));
    chunk.insert("system_fingerprint".into(), Value::Null);
    chunk.insert("choices".into(), Value::Array(choice.into_iter().collect()));
    chunk
}

/// A chunk's one choice: `delta`, and `finish_reason` on the last.
pub fn delta(delta: Value, finish: Option<&str>) -> Value {
    json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: Value) -> Value {
        let mut b = json!({"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(extra.clone());
        }
        b
    }

    #[test]
    fn a_request_maps_onto_an_execute_request() {
        let call = read(&body(json!({
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "ok"},
            ],
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 20,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "reasoning_effort": "medium", "stream": true, "stream_options": {"include_usage": true}, "n": 1,
        })))
        .expect("reads");
        let r = &call.request;
        assert_eq!(r.pod_id, "");
        assert_eq!(r.provider.as_deref(), Some("anthropic"));
        assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5"));
        let messages = r.messages.as_ref().expect("messages");
        assert_eq!(messages[0].role, MessageRole::System);
        assert_eq!(messages[1].content, "one\ntwo");
        assert_eq!(messages[2].role, MessageRole::Assistant);
        assert_eq!(
            (r.temperature, r.top_p, r.max_tokens),
            (Some(0.2), Some(0.9), Some(20))
        );
        assert_eq!(r.thinking_budget, Some(8192));
        assert!(matches!(
            r.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        assert!(call.stream && call.include_usage && r.stream);

        let pod = read(&body(json!({"model": "pod/p1"}))).expect("reads");
        assert_eq!(
            (
                pod.request.pod_id.as_str(),
                pod.request.provider.as_deref(),
                pod.request.model.as_deref()
            ),
            ("p1", None, None)
        );
    }

    #[test]
    fn what_cannot_be_carried_is_refused_by_name() {
        let param = |extra: Value| read(&body(extra)).expect_err("refused").param;
        for (extra, named) in [
            (json!({"tools": []}), "tools"),
            (json!({"tool_choice": "auto"}), "tool_choice"),
            (json!({"functions": []}), "functions"),
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"stop": ["x"]}), "stop"),
            (json!({"seed": 1}), "seed"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x", "name": "bob"}]}),
                "messages[0].name",
            ),
            (
                json!({"stream_options": {"continuous": true}}),
                "stream_options.continuous",
            ),
        ] {
            assert_eq!(param(extra.clone()).as_deref(), Some(named), "{extra}");
        }
        let e = read(&body(json!({"tools": []}))).expect_err("refused");
        assert_eq!(e.code, "unsupported_parameter");
        assert_eq!(
            read(&body(json!({"model": "gpt-4o"})))
                .expect_err("no provider")
                .code,
            "model_not_found"
        );
        assert_eq!(
            read(&json!({"messages": []})).expect_err("no model").code,
            "missing_required_parameter"
        );
        assert_eq!(
            read(&body(json!({"max_tokens": 0})))
                .expect_err("zero")
                .code,
            "invalid_value"
        );
        assert_eq!(
            read(&body(json!({"reasoning_effort": "max"})))
                .expect_err("effort")
                .code,
            "invalid_value"
        );
    }

    #[test]
    fn usage_counts_reasoning_in_completion_as_openai_does() {
        let u = UsageView {
            prompt_tokens: Some(100),
            completion_tokens: Some(30),
            total_tokens: Some(150),
            reasoning_tokens: Some(20),
            cached_tokens: Some(40),
            cache_write_tokens: None,
        };
        let wire = serde_json::to_value(usage(&u)).expect("json");
        assert_eq!(
            wire,
            json!({"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                   "prompt_tokens_details": {"cached_tokens": 40},
                   "completion_tokens_details": {"reasoning_tokens": 20}})
        );
    }
}

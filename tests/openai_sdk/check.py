"""Calls a running Pods through the official OpenAI Python SDK, as any OpenAI client would.

Run by tests/tests/all/openai_door.rs, which starts the server and its provider stand-ins and
then checks what this prints (one JSON object) against what Pods recorded. Environment:
PODS_V1 (base URL, …/v1), PODS_KEY (a workspace API key), PODS_RPM_KEY (a key with rpm=2),
PODS_POD (a pod id).
"""

import json
import os

import openai

base_url = os.environ["PODS_V1"]
client = openai.OpenAI(base_url=base_url, api_key=os.environ["PODS_KEY"], max_retries=0)
out = {"plain": {}, "streamed": {}, "errors": {}}


def plain(model, **extra):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Explain qubits."}], **extra
    )
    completion = raw.parse()
    return {
        "content": completion.choices[0].message.content,
        "finish_reason": completion.choices[0].finish_reason,
        "model": completion.model,
        "id": completion.id,
        "usage": completion.usage.model_dump(),
        "execution_id": raw.headers.get("x-pods-execution-id"),
        "cost_usd": raw.headers.get("x-pods-cost-usd"),
    }


def streamed(model):
    stream = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Explain"}, {"type": "text", "text": "qubits."}]},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, pods, finish = "", None, None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
            pods = (chunk.model_extra or {}).get("pods")
    return {"content": text, "usage": usage, "pods": pods, "finish_reason": finish}


models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "pod/" + os.environ["PODS_POD"]]
for model in models:
    out["plain"][model] = plain(model)
    out["streamed"][model] = streamed(model)

json_mode = plain("openai/gpt-4o-mini-json", response_format={"type": "json_object"})
out["json_mode"] = json_mode

out["models"] = [m.id for m in client.models.list()]


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "body": e.body}
    return None


bad_key = openai.OpenAI(base_url=base_url, api_key="pods_this-is-not-a-key", max_retries=0)
out["errors"]["bad_key"] = error_of(
    lambda: bad_key.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
)
out["errors"]["unknown_model"] = error_of(
    lambda: client.chat.completions.create(model="nosuch/some-model", messages=[{"role": "user", "content": "hi"}])
)
out["errors"]["tools"] = error_of(
    lambda: client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    )
)
limited = openai.OpenAI(base_url=base_url, api_key=os.environ["PODS_RPM_KEY"], max_retries=0)
results = []
for _ in range(3):
    results.append(
        error_of(lambda: limited.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]))
    )
out["errors"]["rate_limit"] = results

print(json.dumps(out))

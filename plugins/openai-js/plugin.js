// An OpenAI Chat Completions provider plugin written in JavaScript: the same translation as the
// Rust plugin in plugins/openai, built into a component by @bytecodealliance/componentize-js
// (see build.mjs) against the same WIT (wit/v0.1.0, world `plugin`), and checked with the same
// conformance vectors (plugins/openai/vectors). It proves the interface is language-neutral.
//
// How WIT maps to JavaScript here: interfaces are exported objects (`provider`, `extractor`),
// records are objects with camelCase fields, enums are strings ('stop', 'rate-limited'),
// variants are {tag, val}, options are a value or undefined, u64 is a BigInt, list<u8> a
// Uint8Array; a function returning result<T, E> returns T, or throws a ComponentError carrying E.

const API_VERSION = '0.1.0';

class ComponentError extends Error {
  constructor(payload) {
    super(payload.message);
    this.payload = payload;
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

// --- helpers (the Rust SDK's, in JavaScript) ---

const RETRYABLE = new Set(['rate-limited', 'overloaded', 'server']);

function providerError(kind, message, status, code, retryAfterMs) {
  const retryable = RETRYABLE.has(kind);
  return {
    kind,
    message,
    retryable,
    retryAfterMs: retryable ? retryAfterMs : undefined,
    status: status >= 400 ? status : undefined,
    providerCode: code ?? undefined,
  };
}

function fail(kind, message) {
  return new ComponentError(providerError(kind, message, 0, undefined, undefined));
}

function kindForStatus(status) {
  if (status === 401 || status === 403) return 'auth';
  if (status === 429) return 'rate-limited';
  if (status === 413) return 'context-length';
  if (status >= 400 && status <= 499) return 'invalid-request';
  if (status === 503 || status === 529) return 'overloaded';
  return 'server';
}

function header(headers, name) {
  const h = headers.find((h) => h.name.toLowerCase() === name);
  return h ? h.value : undefined;
}

function toMs(ms) {
  return Number.isFinite(ms) && ms >= 0 && ms <= 86_400_000 ? BigInt(Math.ceil(ms)) : undefined;
}

function retryAfterMs(headers) {
  const ms = header(headers, 'retry-after-ms');
  if (ms !== undefined && ms.trim() !== '' && !Number.isNaN(Number(ms))) return toMs(Number(ms));
  const secs = header(headers, 'retry-after');
  if (secs !== undefined && secs.trim() !== '' && !Number.isNaN(Number(secs))) {
    return toMs(Number(secs) * 1000);
  }
  return undefined;
}

function parseJson(bytes) {
  try {
    return JSON.parse(typeof bytes === 'string' ? bytes : decoder.decode(bytes));
  } catch (e) {
    throw fail('malformed-response', `response is not JSON: ${e.message}`);
  }
}

function count(value, ...path) {
  let v = value;
  for (const key of path) v = v == null ? undefined : v[key];
  return Number.isInteger(v) && v >= 0 ? BigInt(v) : undefined;
}

function urlHost(url) {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)/i.exec(url);
  return m ? m[1].replace(/^\[|\]$/g, '').toLowerCase() : undefined;
}

function emptyUsage() {
  return {};
}

// --- request ---

function buildRequest(request) {
  const messages = [];
  if (request.systemPrompt !== undefined) {
    messages.push({ role: 'system', content: request.systemPrompt });
  }
  for (const m of request.messages) messages.push({ role: m.role, content: m.content });
  const body = { model: request.model, messages };
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.topP !== undefined) body.top_p = request.topP;
  if (request.maxTokens !== undefined) {
    // api.openai.com deprecated `max_tokens`; many compatible servers only know it.
    const official = urlHost(request.baseUrl) === 'api.openai.com';
    body[official ? 'max_completion_tokens' : 'max_tokens'] = request.maxTokens;
  }
  if (request.thinkingBudget !== undefined) {
    const b = request.thinkingBudget;
    body.reasoning_effort = b <= 1024 ? 'low' : b <= 8192 ? 'medium' : 'high';
  }
  const format = request.responseFormat;
  if (format && format.tag === 'json-object') {
    body.response_format = { type: 'json_object' };
  } else if (format && format.tag === 'json-schema') {
    let schema;
    try {
      schema = JSON.parse(format.val);
    } catch (e) {
      throw fail('invalid-request', `responseFormat schema is not JSON: ${e.message}`);
    }
    body.response_format = { type: 'json_schema', json_schema: { name: 'response', schema } };
  }
  if (request.stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return {
    method: 'post',
    url: `${request.baseUrl.replace(/\/+$/, '')}/chat/completions`,
    headers: [{ name: 'content-type', value: 'application/json' }],
    body: encoder.encode(JSON.stringify(body)),
  };
}

// --- response ---

function finishReason(reason) {
  switch (reason) {
    case 'stop': return 'stop';
    case 'length': return 'length';
    case 'content_filter': return 'content-filter';
    case 'tool_calls':
    case 'function_call': return 'tool-calls';
    default: return 'other';
  }
}

function reasoningText(message) {
  const r = message?.reasoning_content ?? message?.reasoning;
  return typeof r === 'string' ? r : undefined;
}

// OpenAI usage → normalized usage (reasoning taken out of `completion_tokens`).
function usage(u) {
  if (u == null) return emptyUsage();
  const completion = count(u, 'completion_tokens');
  const reasoning = count(u, 'completion_tokens_details', 'reasoning_tokens');
  const rest = completion === undefined ? undefined : completion - (reasoning ?? 0n);
  return {
    promptTokens: count(u, 'prompt_tokens'),
    cachedTokens: count(u, 'prompt_tokens_details', 'cached_tokens'),
    cacheWriteTokens: undefined,
    completionTokens: rest === undefined ? undefined : rest < 0n ? 0n : rest,
    reasoningTokens: reasoning,
  };
}

function errorBody(body, status, headers) {
  const err = typeof body.error === 'object' && body.error !== null ? body.error : body;
  const code = typeof err.code === 'string' ? err.code : undefined;
  const type = typeof err.type === 'string' ? err.type : undefined;
  const message = typeof err.message === 'string' ? err.message : 'unknown error';
  let kind;
  if (code === 'context_length_exceeded') kind = 'context-length';
  else if (code === 'insufficient_quota' || type === 'insufficient_quota') kind = 'quota-exceeded';
  else if (code === 'content_filter' || code === 'content_policy_violation') kind = 'content-filter';
  else if (code === 'invalid_api_key') kind = 'auth';
  else if (code === 'rate_limit_exceeded') kind = 'rate-limited';
  else if (status < 400) kind = 'server';
  else kind = kindForStatus(status);
  return new ComponentError(providerError(kind, message, status, code ?? type, retryAfterMs(headers)));
}

function parseResponse(_request, response) {
  if (response.status < 200 || response.status >= 300) {
    let body;
    try {
      body = JSON.parse(decoder.decode(response.body));
    } catch {
      const excerpt = [...decoder.decode(response.body)].slice(0, 200).join('');
      throw new ComponentError(providerError(kindForStatus(response.status),
        `HTTP ${response.status}: ${excerpt}`, response.status, undefined, retryAfterMs(response.headers)));
    }
    throw errorBody(body, response.status, response.headers);
  }
  const body = parseJson(response.body);
  if (typeof body.error === 'object' && body.error !== null) {
    throw errorBody(body, response.status, response.headers);
  }
  const choice = body.choices?.[0];
  if (choice === undefined) throw fail('malformed-response', 'response has no choices');
  const message = choice.message ?? {};
  const refusal = typeof message.refusal === 'string' ? message.refusal : undefined;
  const content = typeof message.content === 'string' ? message.content : undefined;
  let finish = typeof choice.finish_reason === 'string' ? finishReason(choice.finish_reason) : undefined;
  if (refusal !== undefined) finish = 'refusal';
  return {
    content: content ?? refusal ?? '',
    reasoning: reasoningText(message),
    usage: body.usage != null ? usage(body.usage) : emptyUsage(),
    finishReason: finish,
    model: typeof body.model === 'string' ? body.model : undefined,
    responseId: typeof body.id === 'string' ? body.id : undefined,
  };
}

// --- stream ---

class StreamParser {
  constructor(_request) {
    this.content = '';
    this.reasoning = '';
    this.usage = undefined;
    this.finishReason = undefined;
    this.model = undefined;
    this.responseId = undefined;
    this.refused = false;
    this.done = false;
  }

  push(event) {
    const delta = { text: '', reasoning: '', usage: undefined, finishReason: undefined };
    const data = event.data.trim();
    if (data === '[DONE]') {
      this.done = true;
      return delta;
    }
    if (data === '') return delta;
    const chunk = parseJson(data);
    if (typeof chunk.error === 'object' && chunk.error !== null) throw errorBody(chunk, 200, []);
    if (typeof chunk.id === 'string' && this.responseId === undefined) this.responseId = chunk.id;
    if (typeof chunk.model === 'string' && this.model === undefined) this.model = chunk.model;
    const choice = chunk.choices?.[0];
    if (choice !== undefined) {
      const d = choice.delta ?? {};
      if (typeof d.content === 'string') delta.text += d.content;
      if (typeof d.refusal === 'string') {
        this.refused = true;
        delta.text += d.refusal;
      }
      const r = reasoningText(d);
      if (r !== undefined) delta.reasoning += r;
      if (typeof choice.finish_reason === 'string') {
        delta.finishReason = this.refused ? 'refusal' : finishReason(choice.finish_reason);
      }
    }
    if (chunk.usage != null) delta.usage = usage(chunk.usage);
    this.content += delta.text;
    this.reasoning += delta.reasoning;
    if (delta.usage !== undefined) this.usage = delta.usage;
    if (delta.finishReason !== undefined) this.finishReason = delta.finishReason;
    return delta;
  }

  finish() {
    if (!this.done) {
      const err = providerError('malformed-response', 'stream ended before data: [DONE]', 0);
      err.retryable = true;
      throw new ComponentError(err);
    }
    return {
      content: this.content,
      reasoning: this.reasoning === '' ? undefined : this.reasoning,
      usage: this.usage ?? emptyUsage(),
      finishReason: this.finishReason,
      model: this.model,
      responseId: this.responseId,
    };
  }
}

// --- exports ---

const model = (id, contextWindow, reasoning) => ({ id, contextWindow, reasoning });

export const provider = {
  describe() {
    return {
      id: 'openai-js',
      name: 'OpenAI (JavaScript)',
      version: '0.1.0',
      apiVersion: API_VERSION,
      defaultBaseUrl: 'https://api.openai.com/v1',
      allowedHosts: ['api.openai.com'],
      keyPlacement: { tag: 'bearer' },
      models: [model('gpt-4o', 128000, false), model('gpt-4o-mini', 128000, false),
        model('gpt-4.1', 1047576, false), model('o4-mini', 200000, true)],
    };
  },
  buildRequest,
  parseResponse,
  StreamParser,
};

export const extractor = {
  extract(rawResponse, args) {
    let value;
    try {
      value = JSON.parse(rawResponse);
    } catch (e) {
      throw new ComponentError(`raw response is not JSON: ${e.message}`);
    }
    const pointer = args ?? '/choices/0/message/content';
    for (const part of pointer.split('/').slice(1)) {
      const key = part.replaceAll('~1', '/').replaceAll('~0', '~');
      value = value == null ? undefined : value[key];
    }
    if (value === undefined) throw new ComponentError(`nothing at ${pointer} in the raw response`);
    return typeof value === 'string' ? value : JSON.stringify(value);
  },
};

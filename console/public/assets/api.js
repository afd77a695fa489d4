// The console's one door to the server: the sign-in (kept in sessionStorage — never in a URL or
// a cookie) and JSON calls that carry it.

const KEY = "pods.signIn";

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY) || "null");
    } catch {
      return null;
    }
  },
  set(value) {
    sessionStorage.setItem(KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

/** An API error with the server's code and message. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function headers(json) {
  const h = {};
  const s = session.get();
  if (s?.token) h.Authorization = `Bearer ${s.token}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function fail(response) {
  let code = "HTTP_" + response.status;
  let message = response.statusText;
  try {
    const body = await response.json();
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    /* not JSON */
  }
  if (response.status === 401 && session.get()) {
    // The token expired or the user was disabled: back to the sign-in.
    session.clear();
    window.dispatchEvent(new Event("pods:signed-out"));
  }
  throw new ApiError(response.status, code, message, response.headers.get("retry-after"));
}

/** `method path` with an optional JSON body; the answer's JSON (`null` for 204). */
export async function api(method, path, body) {
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) await fail(response);
  return response.status === 204 ? null : response.json();
}

/** Uploads raw bytes (a plugin). */
export async function upload(path, bytes, contentType) {
  const h = headers(false);
  h["Content-Type"] = contentType;
  const response = await fetch(`/api/v1${path}`, { method: "POST", headers: h, body: bytes });
  if (!response.ok) await fail(response);
  return response.json();
}

/**
 * Runs a pod streamed: calls `onEvent(name, data)` for `start`, each `token` and the final
 * `done` or `error` (the server's text/event-stream). `signal` aborts the wait, not the run.
 */
export async function stream(path, body, onEvent, signal) {
  const response = await fetch(`/api/v1${path}`, {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) await fail(response);
  await readEvents(response, onEvent);
}

/** Follows a `GET` text/event-stream (the operator's plugin events) until `signal` aborts. */
export async function follow(path, onEvent, signal) {
  const response = await fetch(`/api/v1${path}`, { headers: headers(false), signal });
  if (!response.ok) await fail(response);
  await readEvents(response, onEvent);
}

async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      onEvent(name, data ? JSON.parse(data) : null);
    }
  }
}

/**
 * Opens a WebSocket on `path` with a single-use ticket (the token never goes in the URL) and
 * calls `onEvent` with each JSON event. Returns a function that closes it.
 */
export function subscribe(path, onEvent) {
  let socket = null;
  let closed = false;
  api("POST", "/ws-ticket", {})
    .then(({ ticket }) => {
      if (closed) return;
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      socket = new WebSocket(`${scheme}://${location.host}/api/v1${path}?ticket=${encodeURIComponent(ticket)}`);
      socket.onmessage = (m) => {
        try {
          onEvent(JSON.parse(m.data));
        } catch {
          /* not JSON: ignore */
        }
      };
    })
    .catch(() => {});
  return () => {
    closed = true;
    socket?.close();
  };
}

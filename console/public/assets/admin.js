// Administration: a workspace's provider keys (admins), and for system admins the plugins
// (upload by drag and drop or a file picker, and see them go live), prices and the queue.
import { html, useEffect, useState } from "/vendor/preact-htm.js";
import { api, follow, upload } from "/assets/api.js";
import { ErrorNote, Link } from "/assets/ui.js";

export function KeysView({ ws }) {
  const [keys, setKeys] = useState(null);
  const [draft, setDraft] = useState({ provider: "openai", apiKey: "", baseUrl: "" });
  const [error, setError] = useState(null);
  const load = () => api("GET", `/workspaces/${ws}/provider-keys`).then(setKeys, setError);
  useEffect(() => {
    load();
  }, [ws]);
  const save = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const body = { apiKey: draft.apiKey };
      if (draft.baseUrl) body.baseUrl = draft.baseUrl;
      await api("PUT", `/workspaces/${ws}/provider-keys/${encodeURIComponent(draft.provider)}`, body);
      setDraft({ ...draft, apiKey: "" });
      load();
    } catch (err) {
      setError(err);
    }
  };
  const remove = async (provider) => {
    if (!confirm(`Delete the ${provider} key?`)) return;
    try {
      await api("DELETE", `/workspaces/${ws}/provider-keys/${encodeURIComponent(provider)}`);
      load();
    } catch (err) {
      setError(err);
    }
  };
  const field = (name) => (e) => setDraft({ ...draft, [name]: e.target.value });
  return html`
    <main>
      <nav class="crumbs"><${Link} href="/">Workspaces</${Link}> / <${Link} href=${`/w/${ws}`}>Flows</${Link}></nav>
      <h1>Provider keys</h1>
      <p class="muted">Keys are stored encrypted and never shown again: only a hint.</p>
      <${ErrorNote} error=${error} />
      <table>
        <thead><tr><th scope="col">provider</th><th scope="col">key</th><th scope="col">base URL</th>
          <th scope="col">requests</th><th scope="col">USD</th><th scope="col"><span class="sr-only">actions</span></th></tr></thead>
        <tbody>${(keys || []).map(
          (k) => html`<tr key=${k.provider}><td>${k.provider}</td><td>${k.hint}</td><td>${k.baseUrl || "—"}</td>
            <td>${k.requests}</td><td>${k.costUsd}</td>
            <td><button type="button" class="link" onClick=${() => remove(k.provider)}>Delete</button></td></tr>`,
        )}</tbody>
      </table>
      <form onSubmit=${save} aria-label="Set a provider key">
        <h2>Set or replace a key</h2>
        <label>Provider <input name="provider" required value=${draft.provider} onInput=${field("provider")} /></label>
        <label>API key <input name="apiKey" type="password" autocomplete="off" required value=${draft.apiKey} onInput=${field("apiKey")} /></label>
        <label>Base URL (optional) <input name="baseUrl" value=${draft.baseUrl} onInput=${field("baseUrl")} /></label>
        <button type="submit">Save key</button>
      </form>
    </main>`;
}

function Plugins() {
  const [plugins, setPlugins] = useState(null);
  const [error, setError] = useState(null);
  const [note, setNote] = useState(null);
  const [over, setOver] = useState(false);
  const load = () => api("GET", "/plugins").then((p) => setPlugins(p.plugins), setError);
  useEffect(() => {
    load();
  }, []);
  const send = async (file) => {
    if (!file) return;
    setError(null);
    setNote(`Uploading ${file.name}…`);
    try {
      const loaded = await upload("/plugins", await file.arrayBuffer(), "application/wasm");
      setNote(`Loaded ${loaded.plugin.id} ${loaded.plugin.version}`);
      load();
    } catch (err) {
      setNote(null);
      setError(err);
    }
  };
  const drop = (e) => {
    e.preventDefault();
    setOver(false);
    send(e.dataTransfer.files[0]);
  };
  return html`
    <section aria-label="Plugins">
      <h2>Plugins</h2>
      <${ErrorNote} error=${error} />
      ${note && html`<p role="status">${note}</p>`}
      <label class=${`drop${over ? " over" : ""}`}
        onDragOver=${(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave=${() => setOver(false)} onDrop=${drop}>
        Drop a plugin (.wasm) here, or choose one
        <input type="file" name="plugin" accept=".wasm,application/wasm" onChange=${(e) => send(e.target.files[0])} />
      </label>
      <table>
        <thead><tr><th scope="col">id</th><th scope="col">version</th><th scope="col">kind</th><th scope="col">state</th>
          <th scope="col">source</th><th scope="col">calls</th><th scope="col">errors</th><th scope="col">limits</th></tr></thead>
        <tbody>${(plugins || []).map(
          (p) => html`<tr key=${p.id + p.version} data-plugin=${p.id}><td>${p.id}</td><td>${p.version}</td><td>${p.kind}</td>
            <td data-field="state">${p.state}</td><td>${p.source}</td><td>${p.calls}</td><td>${p.errors}</td>
            <td data-field="limits">${limits(p.limits)}</td></tr>`,
        )}</tbody>
      </table>
    </section>`;
}

const PRICE_FIELDS = [
  ["inputPerMtok", "Input"],
  ["cachedInputPerMtok", "Cached input"],
  ["outputPerMtok", "Output"],
  ["reasoningPerMtok", "Reasoning"],
];

/** An operator's limits for a plugin in a few words; without any, the server's defaults apply. */
function limits(l) {
  if (!l) return "defaults";
  const parts = [];
  if (l.deadlineMs != null) parts.push(`${l.deadlineMs} ms`);
  if (l.memoryMb != null) parts.push(`${l.memoryMb} MiB`);
  if (l.maxConcurrent != null) parts.push(`≤ ${l.maxConcurrent} at once`);
  if (l.allowedHosts) parts.push(`hosts: ${l.allowedHosts.join(", ")}`);
  return parts.join(" · ") || "defaults";
}

/** The pricing table, and a form to add a row (a new row for a model takes over from now on). */
function Prices() {
  const [prices, setPrices] = useState(null);
  const [error, setError] = useState(null);
  const [added, setAdded] = useState(null);
  const blank = { provider: "", model: "", inputPerMtok: "", cachedInputPerMtok: "", outputPerMtok: "", reasoningPerMtok: "" };
  const [draft, setDraft] = useState(blank);
  const load = () => api("GET", "/pricing").then(setPrices, setError);
  useEffect(() => {
    load();
  }, []);
  const field = (name) => (e) => setDraft({ ...draft, [name]: e.target.value });
  const add = async (e) => {
    e.preventDefault();
    setError(null);
    setAdded(null);
    // Prices travel as decimal strings (money is never a float); empty optional ones stay out.
    const body = Object.fromEntries(Object.entries(draft).filter(([, v]) => v.trim() !== ""));
    try {
      const row = await api("POST", "/pricing", body);
      setAdded(`${row.provider}/${row.model}`);
      setDraft(blank);
      load();
    } catch (err) {
      setError(err);
    }
  };
  const cell = (v) => v ?? "—";
  return html`
    <section aria-label="Prices">
      <h2>Prices (USD per million tokens)</h2>
      <${ErrorNote} error=${error} />
      <div class="scroll"><table>
        <thead><tr><th scope="col">provider</th><th scope="col">model</th>
          ${PRICE_FIELDS.map(([, label]) => html`<th scope="col">${label.toLowerCase()}</th>`)}</tr></thead>
        <tbody>${(prices || []).map(
          (p) => html`<tr key=${p.id} data-price=${`${p.provider}/${p.model}`}><td>${p.provider}</td><td>${p.model}</td>
            ${PRICE_FIELDS.map(([name]) => html`<td data-field=${name}>${cell(p[name])}</td>`)}</tr>`,
        )}</tbody>
      </table></div>
      <form class="card" onSubmit=${add} aria-label="Add a price">
        <h3>Add a price</h3>
        <label>Provider <input name="priceProvider" required value=${draft.provider} onInput=${field("provider")} /></label>
        <label>Model <input name="priceModel" required value=${draft.model} onInput=${field("model")} /></label>
        ${PRICE_FIELDS.map(
          ([name, label]) => html`<label>${label} <input name=${name} inputmode="decimal"
            required=${name === "inputPerMtok" || name === "outputPerMtok"} value=${draft[name]} onInput=${field(name)} /></label>`,
        )}
        <button type="submit">Add price</button>
        ${added && html`<span class="muted" role="status">Added ${added}</span>`}
      </form>
    </section>`;
}

const JOB_COUNTS = [
  ["waiting", "waiting"],
  ["delayed", "delayed (retry backoff)"],
  ["active", "active (leased)"],
  ["oldestWaitingMs", "oldest waiting (ms)"],
];

/** The queue's backend and job counts, and executions by status; read again every 5 s. */
function Queue() {
  const [metrics, setMetrics] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    const load = () => api("GET", "/queue/metrics").then(setMetrics, setError);
    load();
    const every = setInterval(load, 5000);
    return () => clearInterval(every);
  }, []);
  const row = (label, value, key) => html`<tr key=${key}><th scope="row">${label}</th><td data-field=${key}>${value ?? "—"}</td></tr>`;
  return html`
    <section aria-label="Queue">
      <h2>Queue</h2>
      <${ErrorNote} error=${error} />
      ${metrics &&
      html`<div class="columns">
        <table aria-label="Jobs">
          <caption>Jobs (${metrics.backend} backend)</caption>
          <tbody>${JOB_COUNTS.map(([key, label]) => row(label, metrics[key], key))}</tbody>
        </table>
        <table aria-label="Executions by status">
          <caption>Executions by status</caption>
          <tbody>${Object.entries(metrics.executions || {}).map(([status, n]) => row(status, n, status))}</tbody>
        </table>
      </div>`}
    </section>`;
}

/** The operator event stream: plugins loaded, swapped, refused, unloaded — live, newest first. */
function PluginEvents({ onEvent }) {
  const [events, setEvents] = useState([]);
  const [error, setError] = useState(null);
  useEffect(() => {
    const abort = new AbortController();
    follow(
      "/plugins/events",
      (name, data) => {
        if (!data) return;
        setEvents((e) => [{ at: new Date().toISOString(), name, data }, ...e].slice(0, 50));
        onEvent?.();
      },
      abort.signal,
    ).catch((err) => {
      if (err.name !== "AbortError") setError(err);
    });
    return () => abort.abort();
  }, []);
  return html`
    <section aria-label="Operator events">
      <h2>Operator events</h2>
      <${ErrorNote} error=${error} />
      ${events.length === 0 && html`<p class="muted">Listening…</p>`}
      <ol class="events">${events.map(
        (e, i) => html`<li key=${events.length - i}><span class="muted">${e.data.timestamp || e.at}</span>
          <code>${e.data.type || e.name}</code> ${e.data.id || ""} ${e.data.version || ""} ${e.data.detail || ""}</li>`,
      )}</ol>
    </section>`;
}

export function SystemView() {
  return html`
    <main>
      <nav class="crumbs"><${Link} href="/">Workspaces</${Link}></nav>
      <h1>System</h1>
      <${Plugins} />
      <${PluginEvents} />
      <${Prices} />
      <${Queue} />
    </main>`;
}

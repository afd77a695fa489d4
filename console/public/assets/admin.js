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
          <th scope="col">source</th><th scope="col">calls</th><th scope="col">errors</th></tr></thead>
        <tbody>${(plugins || []).map(
          (p) => html`<tr key=${p.id + p.version} data-plugin=${p.id}><td>${p.id}</td><td>${p.version}</td><td>${p.kind}</td>
            <td data-field="state">${p.state}</td><td>${p.source}</td><td>${p.calls}</td><td>${p.errors}</td></tr>`,
        )}</tbody>
      </table>
    </section>`;
}

function Prices() {
  const [prices, setPrices] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api("GET", "/pricing").then(setPrices, setError);
  }, []);
  return html`
    <section aria-label="Prices">
      <h2>Prices (USD per million tokens)</h2>
      <${ErrorNote} error=${error} />
      <table>
        <thead><tr><th scope="col">provider</th><th scope="col">model</th><th scope="col">input</th><th scope="col">output</th></tr></thead>
        <tbody>${(prices || []).map(
          (p) => html`<tr key=${p.id}><td>${p.provider}</td><td>${p.model}</td><td>${p.inputPerMtok}</td><td>${p.outputPerMtok}</td></tr>`,
        )}</tbody>
      </table>
    </section>`;
}

function Queue() {
  const [metrics, setMetrics] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    const load = () => api("GET", "/queue/metrics").then(setMetrics, setError);
    load();
    const every = setInterval(load, 5000);
    return () => clearInterval(every);
  }, []);
  return html`
    <section aria-label="Queue">
      <h2>Queue</h2>
      <${ErrorNote} error=${error} />
      ${metrics && html`<pre>${JSON.stringify(metrics, null, 2)}</pre>`}
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

// One execution in full: prompts as sent, the answer, usage, cost, timings, errors, and the raw
// request and answer — all as text.
import { html, useEffect, useState } from "/vendor/preact-htm.js";
import { api } from "/assets/api.js";
import { ErrorNote, Link } from "/assets/ui.js";

const json = (v) => JSON.stringify(v, null, 2);

export function ExecutionView({ ws, id }) {
  const [e, setE] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api("GET", `/workspaces/${ws}/executions/${id}`).then(setE, setError);
  }, [ws, id]);
  const messages = e?.requestMetadata?.request?.messages || [];
  return html`
    <main>
      <nav class="crumbs"><${Link} href="/">Workspaces</${Link}> /
        <${Link} href=${`/w/${ws}`}>Flows</${Link}>
        ${e?.flowId && html` / <${Link} href=${`/w/${ws}/f/${e.flowId}`}>Flow</${Link}>`}</nav>
      <h1>Execution</h1>
      <${ErrorNote} error=${error} />
      ${e &&
      html`
        <dl class="facts">
          <dt>Status</dt><dd data-field="status">${e.status}</dd>
          <dt>Model</dt><dd>${e.provider}/${e.modelName || e.modelId}</dd>
          <dt>Prompt tokens</dt><dd data-field="promptTokens">${e.usage?.promptTokens ?? "—"}</dd>
          <dt>Completion tokens</dt><dd data-field="completionTokens">${e.usage?.completionTokens ?? "—"}</dd>
          <dt>Reasoning tokens</dt><dd>${e.usage?.reasoningTokens ?? "—"}</dd>
          <dt>Cached tokens</dt><dd>${e.usage?.cachedTokens ?? "—"}</dd>
          <dt>Cost (USD)</dt><dd data-field="cost">${e.costInUsd ?? "not priced"}</dd>
          <dt>Started</dt><dd>${e.startedAt || "—"}</dd>
          <dt>Finished</dt><dd>${e.finishedAt || "—"}</dd>
          <dt>Runtime</dt><dd>${e.runtimeInMs != null ? `${e.runtimeInMs} ms` : "—"}</dd>
          ${e.errorCode && html`<dt>Error</dt><dd class="error">${e.errorCode}: ${e.errorMessage}</dd>`}
        </dl>
        ${messages.length > 0 &&
        html`<h2>Prompts as sent</h2>
          ${messages.map((m, i) => html`<div key=${i} class="message"><p class="muted">${m.role}</p><pre data-field="prompt">${typeof m.content === "string" ? m.content : json(m.content)}</pre></div>`)}`}
        <h2>Answer</h2>
        <pre class="answer" data-field="content">${e.content ?? ""}</pre>
        ${e.warnings?.length > 0 && html`<h2>Warnings</h2><ul>${e.warnings.map((w, i) => html`<li key=${i}>${w}</li>`)}</ul>`}
        <details><summary>Raw request</summary><pre>${json(e.requestMetadata ?? null)}</pre></details>
        <details><summary>Raw answer</summary><pre>${json(e.responseMetadata ?? null)}</pre></details>`}
    </main>`;
}

const PAGE = 10;

/** Executions newest first, ten at a time, with "Older" to page back. `filter`: podId or flowId. */
export function History({ ws, filter, refresh }) {
  const [pages, setPages] = useState([]);
  const [more, setMore] = useState(false);
  const [error, setError] = useState(null);
  const query = new URLSearchParams({ ...filter, limit: String(PAGE) }).toString();
  const load = async (before) => {
    try {
      const page = await api("GET", `/workspaces/${ws}/executions?${query}${before ? `&before=${before}` : ""}`);
      setPages((p) => (before ? [...p, ...page] : page));
      setMore(page.length === PAGE);
    } catch (err) {
      setError(err);
    }
  };
  useEffect(() => {
    load(null);
  }, [ws, query, refresh]);
  return html`
    <section class="history" aria-label="History">
      <h2>History</h2>
      <${ErrorNote} error=${error} />
      ${pages.length === 0 && html`<p class="muted">No executions yet.</p>`}
      <table>
        <thead><tr><th scope="col">when</th><th scope="col">status</th><th scope="col">model</th><th scope="col">USD</th></tr></thead>
        <tbody>${pages.map(
          (e) => html`<tr key=${e.id}>
            <td><${Link} href=${`/w/${ws}/e/${e.id}`}>${e.createdAt}</${Link}></td>
            <td>${e.status}</td><td>${e.modelId}</td><td>${e.costInUsd ?? "—"}</td></tr>`,
        )}</tbody>
      </table>
      ${more && html`<button type="button" onClick=${() => load(pages[pages.length - 1].id)}>Older</button>`}
    </section>`;
}

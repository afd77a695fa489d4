// A flow as a graph: pods as nodes (provider/model, coloured by their latest status, updated live
// from the flow's WebSocket), edges as arrows, laid out by dagre. Select a pod to edit it or run
// it and watch its tokens arrive.
import { html, useEffect, useRef, useState } from "/vendor/preact-htm.js";
import dagre from "/vendor/dagre.js";
import { api, stream, subscribe } from "/assets/api.js";
import { ErrorNote, Link, mayEdit, useRole } from "/assets/ui.js";
import { History } from "/assets/execution.js";

const NODE = { width: 190, height: 58 };

/** Positions of the pods and the edges' points. */
function layout(pods, edges) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 70, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const p of pods) g.setNode(p.id, { ...NODE });
  for (const e of edges) g.setEdge(e.sourcePodId, e.targetPodId);
  dagre.layout(g);
  const at = Object.fromEntries(pods.map((p) => [p.id, g.node(p.id)]));
  const lines = edges.map((e) => ({ id: e.id, points: g.edge(e.sourcePodId, e.targetPodId)?.points || [] }));
  const size = g.graph();
  return { at, lines, width: Math.max(size.width || 0, 200), height: Math.max(size.height || 0, 80) };
}

function Graph({ pods, edges, statuses, selected, onSelect }) {
  const { at, lines, width, height } = layout(pods, edges);
  const key = (e, id) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onSelect(id);
    }
  };
  return html`
    <svg class="graph" viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height}
      role="group" aria-label="Flow graph">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
        </marker>
      </defs>
      ${lines.map(
        (l) => html`<polyline key=${l.id} class="edge" marker-end="url(#arrow)"
          points=${l.points.map((p) => `${p.x},${p.y}`).join(" ")} />`,
      )}
      ${pods.map((p) => {
        const n = at[p.id];
        const status = (statuses[p.id] || "none").toLowerCase();
        return html`<g key=${p.id} class=${`node status-${status}${selected === p.id ? " selected" : ""}`}
          transform=${`translate(${n.x - NODE.width / 2},${n.y - NODE.height / 2})`}
          tabindex="0" role="button" data-pod=${p.id} data-status=${status}
          aria-label=${`${p.name}: ${p.provider}/${p.model}, ${status}`}
          onClick=${() => onSelect(p.id)} onKeyDown=${(e) => key(e, p.id)}>
          <rect width=${NODE.width} height=${NODE.height} rx="8" />
          <text x="10" y="23" class="name">${p.name}</text>
          <text x="10" y="43" class="model">${p.provider}/${p.model}</text>
        </g>`;
      })}
    </svg>`;
}

const EDITABLE = ["name", "provider", "model", "systemPrompt", "userPrompt", "temperature", "maxTokens"];

function PodPanel({ ws, pod, canEdit, onSaved, onRan, output }) {
  const [draft, setDraft] = useState(pod);
  const [error, setError] = useState(null);
  // Which version this panel saved: saving bumps the version, which resets the draft below.
  const [saved, setSaved] = useState(null);
  const [running, setRunning] = useState(null);
  useEffect(() => {
    setDraft(pod);
    setError(null);
  }, [pod.id, pod.version]);
  const field = (name) => (e) => setDraft({ ...draft, [name]: e.target.value });
  const save = async (e) => {
    e.preventDefault();
    setError(null);
    const changes = { expectedVersion: pod.version };
    for (const k of EDITABLE) {
      let v = draft[k];
      if (k === "temperature" || k === "maxTokens") v = v === "" || v == null ? null : Number(v);
      if (v !== pod[k]) changes[k] = v;
    }
    try {
      const updated = await api("PATCH", `/workspaces/${ws}/pods/${pod.id}`, changes);
      setSaved({ id: updated.id, version: updated.version });
      onSaved(updated);
    } catch (err) {
      setError(
        err.code === "CONFLICT" || err.status === 409
          ? new Error(`Someone else changed this pod meanwhile (${err.message}). Reload it to see their version.`)
          : err,
      );
    }
  };
  const run = async () => {
    setError(null);
    const abort = new AbortController();
    setRunning(abort);
    // RUNNING once the server has started it (`start`): a refused request changes no status.
    onRan(pod.id, { text: "", executionId: null });
    let text = "";
    try {
      await stream(
        `/workspaces/${ws}/executions`,
        { podId: pod.id, stream: true },
        (name, data) => {
          if (name === "start") onRan(pod.id, { text, status: "RUNNING", executionId: data.executionId });
          if (name === "token") {
            text += data.text || "";
            onRan(pod.id, { text, status: "RUNNING" });
          }
          if (name === "done") onRan(pod.id, { text: data.content ?? text, status: data.status || "COMPLETED", result: data });
          if (name === "error" && data.error?.code === "EXECUTION_CANCELLED") {
            onRan(pod.id, { text, status: "CANCELLED" });
          } else if (name === "error") {
            onRan(pod.id, { text, status: "ERROR" });
            setError(new Error(data.error?.message || "the execution failed"));
          }
        },
        abort.signal,
      );
    } catch (err) {
      if (err.name !== "AbortError") setError(err);
    } finally {
      setRunning(null);
    }
  };
  // Cancels the execution on whichever node runs it; its stream then ends by itself. Before the
  // server has said which execution it is, only the wait can be dropped.
  const cancel = async () => {
    if (!output?.executionId) {
      running?.abort();
      return;
    }
    try {
      await api("DELETE", `/workspaces/${ws}/executions/${output.executionId}`);
    } catch (err) {
      setError(err);
    }
  };
  const input = (name, label, type = "text") => html`<label>${label}
    <input name=${name} type=${type} step=${type === "number" ? "any" : undefined} disabled=${!canEdit}
      value=${draft[name] ?? ""} onInput=${field(name)} /></label>`;
  return html`
    <section class="panel" aria-label=${`Pod ${pod.name}`}>
      <h2>${pod.name}</h2>
      <form onSubmit=${save}>
        ${input("name", "Name")} ${input("provider", "Provider")} ${input("model", "Model")}
        <label>System prompt <textarea name="systemPrompt" rows="3" disabled=${!canEdit}
          value=${draft.systemPrompt ?? ""} onInput=${field("systemPrompt")} /></label>
        <label>User prompt <textarea name="userPrompt" rows="3" disabled=${!canEdit}
          value=${draft.userPrompt ?? ""} onInput=${field("userPrompt")} /></label>
        ${input("temperature", "Temperature", "number")} ${input("maxTokens", "Max tokens", "number")}
        ${canEdit && html`<button type="submit">Save</button>`}
        ${saved?.id === pod.id && saved.version === pod.version &&
        html`<span class="muted" role="status">Saved (version ${pod.version})</span>`}
      </form>
      ${canEdit &&
      html`<div class="actions">
        <button type="button" onClick=${run} disabled=${!!running}>Run pod</button>
        ${running && html`<button type="button" onClick=${cancel}>Cancel</button>`}
      </div>`}
      <${ErrorNote} error=${error} />
      ${output?.status &&
      html`<div class="output" aria-live="polite">
        <p class="muted">
          ${output.status}
          ${output.executionId && html` · <${Link} href=${`/w/${ws}/e/${output.executionId}`}>details</${Link}>`}
        </p>
        <pre class="answer">${output.text}</pre>
      </div>`}
      <${History} ws=${ws} filter=${{ podId: pod.id }} refresh=${output?.status} />
    </section>`;
}

function AddPod({ ws, flow, onAdded }) {
  const [draft, setDraft] = useState({ name: "", provider: "openai", model: "gpt-4o-mini", userPrompt: "" });
  const [error, setError] = useState(null);
  const field = (name) => (e) => setDraft({ ...draft, [name]: e.target.value });
  const add = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      onAdded(await api("POST", `/workspaces/${ws}/flows/${flow}/pods`, draft));
      setDraft({ ...draft, name: "", userPrompt: "" });
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card" onSubmit=${add} aria-label="Add a pod">
    <h3>Add a pod</h3>
    <label>Name <input name="newPodName" required value=${draft.name} onInput=${field("name")} /></label>
    <label>Provider <input name="newPodProvider" required value=${draft.provider} onInput=${field("provider")} /></label>
    <label>Model <input name="newPodModel" required value=${draft.model} onInput=${field("model")} /></label>
    <label>User prompt <input name="newPodPrompt" value=${draft.userPrompt} onInput=${field("userPrompt")} /></label>
    <button type="submit">Add pod</button>
    <${ErrorNote} error=${error} />
  </form>`;
}

function AddEdge({ ws, flow, pods, onAdded }) {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [error, setError] = useState(null);
  const add = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      onAdded(await api("POST", `/workspaces/${ws}/flows/${flow}/edges`, { sourcePodId: from, targetPodId: to }));
    } catch (err) {
      setError(err);
    }
  };
  const options = pods.map((p) => html`<option key=${p.id} value=${p.id}>${p.name}</option>`);
  return html`<form class="card" onSubmit=${add} aria-label="Add an edge">
    <h3>Add an edge</h3>
    <label>From <select name="edgeFrom" required value=${from} onChange=${(e) => setFrom(e.target.value)}>
      <option value="">—</option>${options}</select></label>
    <label>To <select name="edgeTo" required value=${to} onChange=${(e) => setTo(e.target.value)}>
      <option value="">—</option>${options}</select></label>
    <button type="submit">Add edge</button>
    <${ErrorNote} error=${error} />
  </form>`;
}

export function FlowView({ ws, flow }) {
  const [info, setInfo] = useState(null);
  const [pods, setPods] = useState([]);
  const [edges, setEdges] = useState([]);
  const [statuses, setStatuses] = useState({});
  const [outputs, setOutputs] = useState({});
  const [selected, setSelected] = useState(null);
  const [run, setRun] = useState(null);
  const [error, setError] = useState(null);
  const role = useRole(ws);
  const canEdit = mayEdit(role);
  const statusRef = useRef({});
  const setStatus = (podId, status) => {
    statusRef.current = { ...statusRef.current, [podId]: status };
    setStatuses(statusRef.current);
  };

  useEffect(() => {
    (async () => {
      try {
        const [f, ps, es] = await Promise.all([
          api("GET", `/workspaces/${ws}/flows/${flow}`),
          api("GET", `/workspaces/${ws}/flows/${flow}/pods`),
          api("GET", `/workspaces/${ws}/flows/${flow}/edges`),
        ]);
        setInfo(f);
        setPods(ps);
        setEdges(es);
        // Each pod's latest status, then live from the socket: the flow's last hundred
        // executions answer for most pods in one request; only a pod not among them asks alone.
        const seen = new Set();
        const recent = await api("GET", `/workspaces/${ws}/executions?flowId=${flow}&limit=100`).catch(() => []);
        for (const e of recent) {
          if (seen.has(e.podId)) continue;
          seen.add(e.podId);
          if (!statusRef.current[e.podId]) setStatus(e.podId, e.status);
        }
        for (const p of ps.filter((p) => recent.length === 100 && !seen.has(p.id))) {
          api("GET", `/workspaces/${ws}/executions/pod/${p.id}?limit=1`).then((h) => {
            const latest = h[0];
            if (latest && !statusRef.current[p.id]) setStatus(p.id, latest.status);
          }, () => {});
        }
      } catch (err) {
        setError(err);
      }
    })();
    return subscribe(`/workspaces/${ws}/flows/${flow}/ws`, (event) => {
      if (event.podId && event.status) setStatus(event.podId, event.status);
      // A run's pods stream their tokens here (the run was started with stream: true).
      if (event.type === "execution:running" && event.podId) {
        setOutputs((o) => ({ ...o, [event.podId]: { text: "", status: "RUNNING", executionId: event.executionId } }));
      }
      if (event.type === "execution:delta" && event.podId) {
        setOutputs((o) => ({ ...o, [event.podId]: { ...o[event.podId], text: (o[event.podId]?.text || "") + (event.text || "") } }));
      }
      if (event.type === "execution:completed" && event.podId) {
        setOutputs((o) => ({ ...o, [event.podId]: { ...o[event.podId], status: event.status, executionId: event.executionId } }));
      }
      if (event.type?.startsWith("run:") && event.runId && event.type !== "run:pod") {
        setRun((r) => ({
          runId: event.runId,
          status: event.status || (event.type === "run:started" ? "RUNNING" : r?.status || "QUEUED"),
          spentUsd: event.spentUsd ?? r?.spentUsd,
        }));
      }
    });
  }, [ws, flow]);

  const startRun = async () => {
    setError(null);
    try {
      const started = await api("POST", `/workspaces/${ws}/flows/${flow}/runs`, { stream: true });
      setRun((r) => (r?.runId === started.runId ? r : { runId: started.runId, status: "QUEUED" }));
    } catch (err) {
      setError(err);
    }
  };
  const cancelRun = async () => {
    try {
      await api("DELETE", `/workspaces/${ws}/flows/${flow}/runs/${run.runId}`);
    } catch (err) {
      setError(err);
    }
  };
  const runActive = run && ["QUEUED", "RUNNING"].includes(run.status);

  const pod = pods.find((p) => p.id === selected);
  return html`
    <main class="wide">
      <nav class="crumbs"><${Link} href="/">Workspaces</${Link}> / <${Link} href=${`/w/${ws}`}>Flows</${Link}></nav>
      <h1>${info?.name || "Flow"}</h1>
      ${canEdit && pods.length > 0 &&
      html`<div class="actions">
        <button type="button" onClick=${startRun} disabled=${runActive}>Run flow</button>
        ${runActive && html`<button type="button" onClick=${cancelRun}>Cancel run</button>`}
      </div>`}
      ${run &&
      html`<p role="status" class="run-status" data-run-status=${run.status}>
        Run ${run.status}${run.spentUsd != null ? ` · spent ${run.spentUsd} USD` : ""}</p>`}
      <${ErrorNote} error=${error} />
      <div class="flow">
        <div class="canvas">
          ${pods.length === 0 ? html`<p class="muted">No pods yet.</p>` :
            html`<${Graph} pods=${pods} edges=${edges} statuses=${statuses} selected=${selected} onSelect=${setSelected} />`}
          ${canEdit &&
          html`<div class="forms">
            <${AddPod} ws=${ws} flow=${flow} onAdded=${(p) => setPods([...pods, p])} />
            ${pods.length > 1 && html`<${AddEdge} ws=${ws} flow=${flow} pods=${pods} onAdded=${(e) => setEdges([...edges, e])} />`}
          </div>`}
          <${History} ws=${ws} filter=${{ flowId: flow }} refresh=${Object.values(statuses).join()} />
        </div>
        ${pod &&
        html`<${PodPanel} ws=${ws} pod=${pod} canEdit=${canEdit} output=${outputs[pod.id]}
          onSaved=${(p) => setPods(pods.map((x) => (x.id === p.id ? p : x)))}
          onRan=${(id, out) => {
            setOutputs((o) => ({ ...o, [id]: { ...o[id], ...out } }));
            if (out.status) setStatus(id, out.status);
          }} />`}
      </div>
    </main>`;
}

// Spend: cost per day by model (or provider) over a date range, with totals — a uPlot chart of
// `GET /api/v1/workspaces/{ws}/usage`.
import { html, useEffect, useRef, useState } from "/vendor/preact-htm.js";
import uPlot from "/vendor/uplot.js";
import { api } from "/assets/api.js";
import { ErrorNote, Link } from "/assets/ui.js";

const day = (d) => d.toISOString().slice(0, 10);
/** A tick's amount, readable however small (model calls cost fractions of a cent). */
const usd = (v) => (v === 0 ? "0" : Math.abs(v) < 0.01 ? v.toExponential(1) : v.toFixed(2));
const COLOURS = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

function Chart({ usage, by }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || !usage) return;
    const days = [];
    for (let d = new Date(usage.from + "T00:00:00Z"); day(d) <= usage.to; d.setUTCDate(d.getUTCDate() + 1)) days.push(day(d));
    const names = [...new Set(usage.rows.map((r) => r[by]))].sort();
    const series = names.map((n) =>
      days.map((d) => {
        const row = usage.rows.find((r) => r.day === d && r[by] === n);
        return row ? Number(row.costUsd) : 0;
      }),
    );
    const width = Math.min(box.current.clientWidth || 800, 1000);
    const plot = new uPlot(
      {
        width,
        height: 280,
        series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLOURS[i % COLOURS.length], width: 2, points: { show: true } }))],
        axes: [{}, { label: "USD", size: 80, values: (u, ticks) => ticks.map(usd) }],
        scales: { x: { time: true } },
      },
      [days.map((d) => Date.parse(d + "T00:00:00Z") / 1000), ...series],
      box.current,
    );
    return () => plot.destroy();
  }, [usage, by]);
  return html`<div ref=${box} class="chart" role="img" aria-label=${`Cost per day by ${by}`}></div>`;
}

export function SpendView({ ws }) {
  const today = new Date();
  const [from, setFrom] = useState(day(new Date(today.getTime() - 29 * 86400000)));
  const [to, setTo] = useState(day(today));
  const [by, setBy] = useState("model");
  const [usage, setUsage] = useState(null);
  const [perName, setPerName] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    const range = `/workspaces/${ws}/usage?from=${from}&to=${to}`;
    // Per day for the chart; per name for the table, exact from the server (no float sums).
    api("GET", `${range}&groupBy=day,${by}`).then(setUsage, setError);
    api("GET", `${range}&groupBy=${by}`).then(setPerName, setError);
  }, [ws, from, to, by]);
  const totals = usage?.totals;
  return html`
    <main>
      <nav class="crumbs"><${Link} href="/">Workspaces</${Link}> / <${Link} href=${`/w/${ws}`}>Flows</${Link}></nav>
      <h1>Spend</h1>
      <form class="inline" aria-label="Range" onSubmit=${(e) => e.preventDefault()}>
        <label>From <input type="date" name="from" value=${from} onChange=${(e) => setFrom(e.target.value)} /></label>
        <label>To <input type="date" name="to" value=${to} onChange=${(e) => setTo(e.target.value)} /></label>
        <label>By <select name="by" value=${by} onChange=${(e) => setBy(e.target.value)}>
          <option value="model">model</option><option value="provider">provider</option></select></label>
      </form>
      <${ErrorNote} error=${error} />
      ${totals &&
      html`<p class="totals">Total <strong data-field="totalCost">${totals.costUsd}</strong> USD ·
        ${totals.executions} executions (${totals.errors} failed) ·
        ${totals.promptTokens} prompt and ${totals.completionTokens} completion tokens</p>`}
      <${Chart} usage=${usage} by=${by} />
      <table>
        <thead><tr><th scope="col">${by}</th><th scope="col">executions</th><th scope="col">USD</th></tr></thead>
        <tbody>${(perName?.rows || []).map((r) => html`<tr key=${r[by]}><td>${r[by]}</td><td>${r.executions}</td><td>${r.costUsd}</td></tr>`)}</tbody>
      </table>
    </main>`;
}

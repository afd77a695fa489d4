// The console in a real browser (Debian's chromium through playwright-core), against a running
// Pods whose providers point at local stand-ins. Run by tests/tests/all/console.rs, which starts
// the server and makes the users; each scenario saves a screenshot in PODS_SHOTS.
//
// Env: PODS_URL, PODS_SHOTS, CHROMIUM (executable), ADMIN_EMAIL/ADMIN_PASSWORD (a system admin
// who owns workspace WS), VIEWER_EMAIL/VIEWER_PASSWORD (a viewer of WS), LIMITED_EMAIL (a user
// whose sign-ins the last scenario uses up), PLUGIN_FILE (a provider plugin to upload).
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { join } from "node:path";
import { readFileSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("PODS_URL");
const SHOTS = env("PODS_SHOTS");
const TIMEOUT = 15_000;

const browser = await chromium.launch({ executablePath: env("CHROMIUM"), args: ["--no-sandbox"] });
const failures = [];
const violations = [];

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) violations.push(`${name}: ${m.text()}`);
  });
  page.on("pageerror", (e) => failures.push(`${name}: page error ${e.stack || e.message}`));
  return page;
}

// The admin signs in once (scenario 02) and the scenarios after it go on in that tab: sign-ins
// are limited to five a minute per email, and the sign-in lives in the tab's sessionStorage.
let admin = null;

/** Runs a scenario in `shared` (a page kept open) or in a new tab of its own. */
async function scenario(name, run, shared) {
  const page = shared || (await newPage(name));
  const started = Date.now();
  try {
    await run(page);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures.push(`${name}: ${e.stack || e}`);
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true }).catch(() => {});
    if (!shared) await page.context().close();
  }
}

async function signIn(page, email, password) {
  await page.goto(BASE + "/");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Signs in and waits for the first page. */
async function signedIn(page, email, password) {
  await signIn(page, email, password);
  await page.getByRole("heading", { name: "Workspaces" }).waitFor();
}

/** An API call from the page with its sign-in, as a script (or someone else) would make it. */
async function callFromPage(page, method, path, body) {
  return page.evaluate(async ({ method, path, body }) => {
    const { token } = JSON.parse(sessionStorage.getItem("pods.signIn"));
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch("/api/v1" + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: await r.json().catch(() => null) };
  }, { method, path, body });
}

/** What the API answers the page's sign-in (what the console sees). */
async function apiFromPage(page, path) {
  return (await callFromPage(page, "GET", path)).body;
}

/** A pod's node on the flow graph, by the pod's name; with `status`, only while it has that one. */
function node(page, name, status) {
  return page.locator(`g.node[aria-label^="${name}:"]${status ? `[data-status="${status}"]` : ""}`);
}

let flowUrl = null;
let executionUrl = null;
let cost = null;

await scenario("01-wrong-password", async (page) => {
  await signIn(page, env("ADMIN_EMAIL"), "not the password");
  await page.getByRole("alert").filter({ hasText: "wrong email or password" }).waitFor();
  assert.equal(await page.getByRole("heading", { name: "Workspaces" }).count(), 0);
});

admin = await newPage("admin");
await scenario("02-sign-in", async (page) => {
  await signedIn(page, env("ADMIN_EMAIL"), env("ADMIN_PASSWORD"));
  // The sign-in is in sessionStorage, never in the URL.
  assert.ok(!page.url().includes("token"));
  const stored = await page.evaluate(() => sessionStorage.getItem("pods.signIn"));
  assert.ok(stored && JSON.parse(stored).token);
}, admin);

await scenario("03-flow-graph", async (page) => {
  await page.goto(BASE + "/");
  await page.getByRole("link", { name: env("WS_NAME") }).click();
  await page.getByLabel("New flow").fill("Quantum brief");
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "Quantum brief" }).waitFor();
  for (const [name, prompt] of [["research", "What is quantum computing?"], ["summary", "Three bullets."]]) {
    await page.locator("input[name=newPodName]").fill(name);
    await page.locator("input[name=newPodPrompt]").fill(prompt);
    await page.getByRole("button", { name: "Add pod" }).click();
    await node(page, name).waitFor();
  }
  await page.locator("select[name=edgeFrom]").selectOption({ label: "research" });
  await page.locator("select[name=edgeTo]").selectOption({ label: "summary" });
  await page.getByRole("button", { name: "Add edge" }).click();
  // A straight line has no height: Playwright calls it hidden, so wait for it in the DOM.
  await page.locator("polyline.edge").waitFor({ state: "attached" });
  // A cycle is refused with the server's message.
  await page.locator("select[name=edgeFrom]").selectOption({ label: "summary" });
  await page.locator("select[name=edgeTo]").selectOption({ label: "research" });
  await page.getByRole("button", { name: "Add edge" }).click();
  await page.getByRole("alert").filter({ hasText: /cycle/i }).waitFor();
  assert.equal(await page.locator("polyline.edge").count(), 1);
  flowUrl = page.url();
}, admin);

await scenario("04-run-and-stream", async (page) => {
  assert.ok(flowUrl, "the flow scenario made a flow");
  await page.goto(flowUrl);
  const summary = node(page, "summary");
  await summary.click();
  await page.getByRole("button", { name: "Run pod" }).click();
  // Tokens arrive in the answer, and the node turns green.
  await page.locator("pre.answer").filter({ hasText: /\S/ }).waitFor();
  await node(page, "summary", "completed").waitFor();
  const fill = await summary.locator("rect").evaluate((r) => getComputedStyle(r).fill);
  assert.equal(fill, "rgb(220, 252, 231)", "green");
  await page.screenshot({ path: join(SHOTS, "04-graph-after-the-run.png"), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling at 1280 px (${overflow} px too wide)`);
  await page.getByRole("link", { name: "details" }).click();
  await page.getByRole("heading", { name: "Execution" }).waitFor();
  executionUrl = page.url();
}, admin);

await scenario("05-execution-detail", async (page) => {
  assert.ok(executionUrl, "the run scenario ran a pod");
  await page.goto(executionUrl);
  await page.locator("[data-field=status]").filter({ hasText: "COMPLETED" }).waitFor();
  const [, , ws, , id] = new URL(executionUrl).pathname.split("/");
  const fromApi = await apiFromPage(page, `/workspaces/${ws}/executions/${id}`);
  assert.equal(await page.locator("[data-field=promptTokens]").innerText(), String(fromApi.usage.promptTokens));
  assert.equal(await page.locator("[data-field=completionTokens]").innerText(), String(fromApi.usage.completionTokens));
  assert.equal(await page.locator("[data-field=cost]").innerText(), fromApi.costInUsd);
  assert.equal(await page.locator("[data-field=content]").innerText(), fromApi.content);
  await page.locator("[data-field=prompt]").filter({ hasText: "Three bullets." }).waitFor();
  cost = fromApi.costInUsd;
}, admin);

await scenario("06-spend", async (page) => {
  assert.ok(cost, "the detail scenario read a cost");
  const ws = new URL(executionUrl).pathname.split("/")[2];
  await page.goto(`${BASE}/w/${ws}/spend`);
  await page.locator("[data-field=totalCost]").filter({ hasText: cost }).waitFor();
  await page.locator(".chart canvas").waitFor();
  await page.getByRole("cell", { name: "gpt-4o-mini" }).waitFor();
  await page.getByRole("cell", { name: cost, exact: true }).waitFor();
}, admin);

await scenario("07-viewer-sees-no-run", async (page) => {
  assert.ok(flowUrl);
  await signedIn(page, env("VIEWER_EMAIL"), env("VIEWER_PASSWORD"));
  await page.goto(flowUrl);
  await node(page, "summary").click();
  await page.getByRole("region", { name: "Pod summary" }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Run pod" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Run flow" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Save" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Add pod" }).count(), 0);
});

await scenario("08-rate-limited", async (page) => {
  // Five quick wrong attempts, then the sixth is refused by the rate limiter.
  for (let i = 1; i <= 6; i++) {
    await signIn(page, env("LIMITED_EMAIL"), `wrong ${i}`);
    const expected = i < 6 ? "wrong email or password" : "Too many attempts";
    await page.getByRole("alert").filter({ hasText: expected }).waitFor();
  }
});

await scenario("09-system-admin-uploads-a-plugin", async (page) => {
  await page.goto(BASE + "/system");
  await page.getByRole("heading", { name: "Plugins" }).waitFor();
  assert.equal(await page.locator('tr[data-plugin="hostile"]').count(), 0);
  // Dropped on the drop zone, as a person would drag the file in.
  const bytes = readFileSync(env("PLUGIN_FILE")).toString("base64");
  const drop = await page.evaluateHandle((b64) => {
    const data = new DataTransfer();
    const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    data.items.add(new File([raw], "hostile.wasm", { type: "application/wasm" }));
    return data;
  }, bytes);
  await page.locator("label.drop").dispatchEvent("drop", { dataTransfer: drop });
  await page.getByRole("status").filter({ hasText: "Loaded hostile" }).waitFor();
  await page.locator('tr[data-plugin="hostile"] [data-field=state]').filter({ hasText: /active|loaded/ }).waitFor();
  // The operator event stream saw it go live.
  await page.getByRole("region", { name: "Operator events" }).getByText("hostile").first().waitFor();
}, admin);

await scenario("10-history", async (page) => {
  assert.ok(flowUrl);
  await page.goto(flowUrl);
  const history = page.getByRole("region", { name: "History" });
  await history.getByRole("cell", { name: "COMPLETED" }).first().waitFor();
  // A freshly opened graph colours each pod by its latest execution (no socket event yet).
  await node(page, "summary", "completed").waitFor();
  assert.equal(await node(page, "research").getAttribute("data-status"), "none");
}, admin);

await scenario("11-run-the-whole-flow", async (page) => {
  assert.ok(flowUrl);
  await page.goto(flowUrl);
  await node(page, "research").waitFor();
  await page.getByRole("button", { name: "Run flow" }).click();
  await page.locator('[data-run-status="COMPLETED"]').waitFor();
  for (const pod of ["research", "summary"]) {
    await node(page, pod, "completed").waitFor();
  }
}, admin);

await scenario("12-edit-conflict", async (page) => {
  assert.ok(flowUrl);
  await page.goto(flowUrl);
  await node(page, "research").click();
  const panel = page.getByRole("region", { name: "Pod research" });
  await panel.waitFor();
  // Someone else saves the pod meanwhile (here: the API, with the same sign-in).
  const [, , ws] = new URL(flowUrl).pathname.split("/");
  const podId = await node(page, "research").getAttribute("data-pod");
  const changed = await callFromPage(page, "PATCH", `/workspaces/${ws}/pods/${podId}`, { userPrompt: "changed elsewhere" });
  assert.equal(changed.status, 200);
  await panel.getByLabel("Temperature").fill("0.2");
  await panel.getByRole("button", { name: "Save" }).click();
  await panel.getByRole("alert").filter({ hasText: "Someone else changed this pod" }).waitFor();
}, admin);

await scenario("13-provider-keys", async (page) => {
  const [, , ws] = new URL(flowUrl).pathname.split("/");
  await page.goto(`${BASE}/w/${ws}`);
  await page.getByRole("link", { name: "Provider keys" }).click();
  await page.getByRole("cell", { name: "openai", exact: true }).waitFor();
  await page.getByRole("textbox", { name: "Provider" }).fill("anthropic");
  await page.getByRole("textbox", { name: "API key" }).fill("sk-ant-console-secret-9876");
  await page.getByRole("button", { name: "Save key" }).click();
  // Only a hint comes back, never the key.
  await page.getByRole("cell", { name: "anthropic", exact: true }).waitFor();
  assert.ok(!(await page.content()).includes("sk-ant-console-secret-9876"));
  page.once("dialog", (d) => d.accept());
  await page.getByRole("row", { name: /anthropic/ }).getByRole("button", { name: "Delete" }).click();
  await page.getByRole("cell", { name: "anthropic", exact: true }).waitFor({ state: "detached" });
}, admin);

await scenario("14-cancel-a-running-pod", async (page) => {
  await page.goto(flowUrl);
  // The stand-in takes 5 s to answer a model whose name ends in "slow".
  await page.locator("input[name=newPodName]").fill("slow");
  await page.locator("input[name=newPodModel]").fill("gpt-4o-mini-slow");
  await page.locator("input[name=newPodPrompt]").fill("Take your time.");
  await page.getByRole("button", { name: "Add pod" }).click();
  await node(page, "slow").click();
  await page.getByRole("button", { name: "Run pod" }).click();
  await node(page, "slow", "running").waitFor();
  await page.getByRole("link", { name: "details" }).waitFor();
  await page.getByRole("button", { name: "Cancel", exact: true }).click();
  await node(page, "slow", "cancelled").waitFor({ timeout: 4000 });
  await page.getByRole("button", { name: "Cancel", exact: true }).waitFor({ state: "detached" });
}, admin);

await scenario("16-cancel-a-whole-run", async (page) => {
  assert.ok(flowUrl);
  await page.goto(flowUrl);
  // The flow now holds the slow pod too (scenario 14): the run stays RUNNING while it works.
  await node(page, "slow").waitFor();
  await page.getByRole("button", { name: "Run flow" }).click();
  await page.locator('[data-run-status="RUNNING"]').waitFor();
  await node(page, "slow", "running").waitFor();
  await page.getByRole("button", { name: "Cancel run" }).click();
  await page.locator('[data-run-status="CANCELLED"]').waitFor({ timeout: 4000 });
  await node(page, "slow", "cancelled").waitFor();
  assert.equal(await page.getByRole("button", { name: "Cancel run" }).count(), 0);
  // The server agrees: the run and its slow pod are CANCELLED.
  const [, , ws, , flow] = new URL(flowUrl).pathname.split("/");
  const [latest] = await apiFromPage(page, `/workspaces/${ws}/flows/${flow}/runs?limit=1`);
  assert.equal(latest.status, "CANCELLED");
  const run = await apiFromPage(page, `/workspaces/${ws}/flows/${flow}/runs/${latest.runId}`);
  const slowId = await node(page, "slow").getAttribute("data-pod");
  assert.equal(run.pods.find((p) => p.podId === slowId).status, "CANCELLED");
}, admin);

await scenario("17-history-pages", async (page) => {
  assert.ok(flowUrl);
  const [, , ws, , flow] = new URL(flowUrl).pathname.split("/");
  await page.goto(flowUrl);
  const podId = await node(page, "research").getAttribute("data-pod");
  // Enough executions for more than one page of ten (each one through the API, as a script would).
  const statuses = [];
  for (let i = 0; i < 11; i++) {
    statuses.push((await callFromPage(page, "POST", `/workspaces/${ws}/executions`, { podId })).status);
  }
  assert.ok(statuses.every((s) => s === 200), `executions: ${statuses}`);
  await page.reload();
  const history = page.getByRole("region", { name: "History" });
  const rows = history.locator("tbody tr");
  await history.getByRole("button", { name: "Older" }).waitFor();
  assert.equal(await rows.count(), 10);
  await history.getByRole("button", { name: "Older" }).click();
  await page.waitForFunction(() => document.querySelectorAll('section.history tbody tr').length > 10);
  // Newest first, no row twice, and the same executions the API lists for the flow.
  const shown = await rows.evaluateAll((trs) => trs.map((tr) => tr.querySelector("a").getAttribute("href").split("/").pop()));
  assert.equal(new Set(shown).size, shown.length, "no execution twice");
  const fromApi = await apiFromPage(page, `/workspaces/${ws}/executions?flowId=${flow}&limit=${shown.length}`);
  assert.deepEqual(shown, fromApi.map((e) => e.id));
}, admin);

await scenario("18-keyboard-only", async (page) => {
  assert.ok(flowUrl);
  await page.goto(flowUrl);
  await node(page, "research").waitFor();
  // Tab from the top of the page to the research node, then Enter selects it.
  let found = false;
  for (let i = 0; i < 40 && !found; i++) {
    await page.keyboard.press("Tab");
    found = await page.evaluate(() => document.activeElement?.getAttribute("aria-label")?.startsWith("research:") ?? false);
  }
  assert.ok(found, "the research node is reachable with Tab");
  await page.keyboard.press("Enter");
  const panel = page.getByRole("region", { name: "Pod research" });
  await panel.waitFor();
  // Its form saves with the keyboard alone: type in the temperature field, Enter submits.
  await panel.getByLabel("Temperature").focus();
  await page.keyboard.press("Control+A");
  await page.keyboard.type("0.3");
  await page.keyboard.press("Enter");
  await panel.getByRole("status").filter({ hasText: /saved/i }).waitFor();
  // A new pod, added without the mouse.
  await page.locator("input[name=newPodName]").focus();
  await page.keyboard.type("typed");
  await page.keyboard.press("Enter");
  await node(page, "typed").waitFor();
  // Every control on the page has a name a screen reader can say.
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea, button")]
      .filter((el) => el.type !== "hidden")
      .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || el.textContent.trim()))
      .map((el) => el.outerHTML.slice(0, 80)),
  );
  assert.deepEqual(unnamed, []);
}, admin);

await scenario("19-system-limits-prices-and-queue", async (page) => {
  // An operator's limits show beside the plugin (set here through the API).
  const put = await callFromPage(page, "PUT", "/plugins/hostile/limits", { deadlineMs: 500, maxConcurrent: 4 });
  assert.equal(put.status, 200);
  await page.goto(BASE + "/system");
  await page.locator('tr[data-plugin="hostile"] [data-field=limits]').filter({ hasText: "500 ms · ≤ 4 at once" }).waitFor();
  await page.locator('tr[data-plugin="openai"] [data-field=limits]').filter({ hasText: "defaults" }).waitFor();
  const prices = page.getByRole("region", { name: "Prices" });
  await prices.getByRole("cell", { name: "gpt-4o-mini", exact: true }).first().waitFor();
  await prices.getByLabel("Provider").fill("openai");
  await prices.getByLabel("Model").fill("console-model");
  await prices.getByLabel("Input", { exact: true }).fill("1.25");
  await prices.getByLabel("Output", { exact: true }).fill("5");
  await prices.getByRole("button", { name: "Add price" }).click();
  await prices.getByRole("status").filter({ hasText: "Added openai/console-model" }).waitFor();
  const row = prices.locator('tr[data-price="openai/console-model"]');
  await row.locator("[data-field=inputPerMtok]").filter({ hasText: "1.25" }).waitFor();
  // A bad price is refused with the server's message.
  await prices.getByLabel("Provider").fill("openai");
  await prices.getByLabel("Model").fill("console-model");
  await prices.getByLabel("Input", { exact: true }).fill("cheap");
  await prices.getByLabel("Output", { exact: true }).fill("5");
  await prices.getByRole("button", { name: "Add price" }).click();
  await prices.getByRole("alert").waitFor();
  // The queue's figures are the API's.
  const queue = page.getByRole("region", { name: "Queue" });
  const fromApi = await apiFromPage(page, "/queue/metrics");
  await queue.getByRole("table", { name: "Jobs" }).getByText(`${fromApi.backend} backend`).waitFor();
  await queue.locator("[data-field=COMPLETED]").filter({ hasText: new RegExp(`^${fromApi.executions.COMPLETED}$`) }).waitFor();
}, admin);

await scenario("20-a-new-workspace-is-yours-at-once", async (page) => {
  // The flow view has just read the workspace list (for roles); a workspace made since is not in
  // it, and moving inside the console (no page load) keeps that list for a while.
  await page.goto(flowUrl);
  await node(page, "research").waitFor();
  const made = await callFromPage(page, "POST", "/workspaces", { name: "Made just now" });
  assert.equal(made.status, 201);
  await page.getByRole("link", { name: "Workspaces" }).click();
  await page.getByRole("link", { name: "Made just now" }).click();
  await page.getByLabel("New flow").waitFor();
}, admin);

await scenario("15-phone-width", async (page) => {
  assert.ok(flowUrl);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(flowUrl);
  await node(page, "research").waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling at phone width (${overflow} px too wide)`);
}, admin);

await admin.context().close();
await browser.close();
if (violations.length) failures.push(...violations.map((v) => `CSP violation ${v}`));
if (failures.length) {
  console.error(failures.join("\n\n"));
  process.exit(1);
}
console.log(`all scenarios passed; screenshots in ${SHOTS}`);

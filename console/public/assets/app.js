// The console's shell: the sign-in, the router (each view a URL you can bookmark) and the
// workspace and flow lists. Every text from the server is rendered as text (htm escapes it);
// nothing is ever set as HTML.
import { html, render, useEffect, useState } from "/vendor/preact-htm.js";
import { api, session } from "/assets/api.js";
import { ErrorNote, Link, mayAdminister, mayEdit, navigate, useRole } from "/assets/ui.js";
import { FlowView } from "/assets/flow.js";
import { ExecutionView } from "/assets/execution.js";
import { SpendView } from "/assets/spend.js";
import { KeysView, SystemView } from "/assets/admin.js";

function SignIn({ onSignedIn }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const withPassword = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const me = await api("POST", "/auth/login", { email, password });
      session.set({ token: me.token, email: me.email, isAdmin: me.isAdmin });
      onSignedIn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const withToken = async (e) => {
    e.preventDefault();
    setError(null);
    session.set({ token: token.trim(), email: "", isAdmin: false });
    try {
      await api("GET", "/workspaces");
      onSignedIn();
    } catch (err) {
      session.clear();
      setError(err);
    }
  };
  return html`
    <main class="narrow">
      <h1>Sign in to Pods</h1>
      <form onSubmit=${withPassword} aria-label="Sign in with a password">
        <label>Email <input type="email" name="email" autocomplete="username" required
          value=${email} onInput=${(e) => setEmail(e.target.value)} /></label>
        <label>Password <input type="password" name="password" autocomplete="current-password" required
          value=${password} onInput=${(e) => setPassword(e.target.value)} /></label>
        <button type="submit" disabled=${busy}>Sign in</button>
      </form>
      <${ErrorNote} error=${error} />
      <details>
        <summary>Use a token or an API key instead</summary>
        <form onSubmit=${withToken} aria-label="Sign in with a token">
          <label>Token or API key <input type="password" name="token" required
            value=${token} onInput=${(e) => setToken(e.target.value)} /></label>
          <button type="submit">Use it</button>
        </form>
      </details>
    </main>`;
}

function Workspaces() {
  const [spaces, setSpaces] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api("GET", "/workspaces").then(setSpaces, setError);
  }, []);
  return html`
    <main>
      <h1>Workspaces</h1>
      <${ErrorNote} error=${error} />
      ${spaces && spaces.length === 0 && html`<p>You are not a member of any workspace yet.</p>`}
      <ul class="cards">
        ${(spaces || []).map(
          (w) => html`<li key=${w.id}>
            <${Link} href=${`/w/${w.id}`}>${w.name}</${Link}>
            <span class="muted">${w.role}</span>
          </li>`,
        )}
      </ul>
    </main>`;
}

function Flows({ ws }) {
  const [flows, setFlows] = useState(null);
  const [name, setName] = useState("");
  const [error, setError] = useState(null);
  const role = useRole(ws);
  const load = () => api("GET", `/workspaces/${ws}/flows`).then(setFlows, setError);
  useEffect(() => {
    load();
  }, [ws]);
  const create = async (e) => {
    e.preventDefault();
    try {
      const flow = await api("POST", `/workspaces/${ws}/flows`, { name });
      navigate(`/w/${ws}/f/${flow.id}`);
    } catch (err) {
      setError(err);
    }
  };
  return html`
    <main>
      <nav class="crumbs"><${Link} href="/">Workspaces</${Link}></nav>
      <h1>Flows</h1>
      <p class="links"><${Link} href=${`/w/${ws}/spend`}>Spend</${Link}>
        ${mayAdminister(role) && html`<${Link} href=${`/w/${ws}/keys`}>Provider keys</${Link}>`}</p>
      <${ErrorNote} error=${error} />
      <ul class="cards">
        ${(flows || []).map(
          (f) => html`<li key=${f.id}><${Link} href=${`/w/${ws}/f/${f.id}`}>${f.name}</${Link}></li>`,
        )}
      </ul>
      ${mayEdit(role) &&
      html`<form onSubmit=${create} class="inline" aria-label="Create a flow">
        <label>New flow <input name="flowName" required value=${name} onInput=${(e) => setName(e.target.value)} /></label>
        <button type="submit">Create</button>
      </form>`}
    </main>`;
}

/** The view for the current URL. */
function route(path) {
  let m;
  if ((m = path.match(/^\/w\/([^/]+)\/f\/([^/]+)$/))) return html`<${FlowView} ws=${m[1]} flow=${m[2]} />`;
  if ((m = path.match(/^\/w\/([^/]+)\/e\/([^/]+)$/))) return html`<${ExecutionView} ws=${m[1]} id=${m[2]} />`;
  if ((m = path.match(/^\/w\/([^/]+)\/spend$/))) return html`<${SpendView} ws=${m[1]} />`;
  if ((m = path.match(/^\/w\/([^/]+)\/keys$/))) return html`<${KeysView} ws=${m[1]} />`;
  if (path === "/system") return html`<${SystemView} />`;
  if ((m = path.match(/^\/w\/([^/]+)$/))) return html`<${Flows} ws=${m[1]} />`;
  return html`<${Workspaces} />`;
}

function App() {
  const [signedIn, setSignedIn] = useState(!!session.get());
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const moved = () => setPath(location.pathname);
    const out = () => setSignedIn(false);
    window.addEventListener("popstate", moved);
    window.addEventListener("pods:navigate", moved);
    window.addEventListener("pods:signed-out", out);
    return () => {
      window.removeEventListener("popstate", moved);
      window.removeEventListener("pods:navigate", moved);
      window.removeEventListener("pods:signed-out", out);
    };
  }, []);
  if (!signedIn) return html`<${SignIn} onSignedIn=${() => setSignedIn(true)} />`;
  const me = session.get();
  const signOut = () => {
    session.clear();
    setSignedIn(false);
  };
  return html`
    <header class="bar">
      <${Link} href="/" class="brand">Pods</${Link}>
      ${me?.isAdmin && html`<${Link} href="/system">System</${Link}>`}
      <span class="muted">${me?.email || "token"}</span>
      <button type="button" class="link" onClick=${signOut}>Sign out</button>
    </header>
    ${route(path)}`;
}

render(html`<${App} />`, document.getElementById("app"));

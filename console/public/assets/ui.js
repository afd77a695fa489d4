// What every view shares: links that stay in the console, errors as sentences, the caller's role.
import { html, useEffect, useState } from "/vendor/preact-htm.js";
import { api, ApiError, session } from "/assets/api.js";

/** Goes to `path` inside the console without reloading. */
export function navigate(path) {
  history.pushState(null, "", path);
  window.dispatchEvent(new Event("pods:navigate"));
}

/** A link that stays in the console (and still opens in a new tab with a modifier key). */
export function Link({ href, children, ...rest }) {
  const click = (e) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return html`<a href=${href} onClick=${click} ...${rest}>${children}</a>`;
}

/** An error as a sentence a person can act on. */
export function explain(error) {
  if (error instanceof ApiError) {
    if (error.status === 429) return `Too many attempts; try again in ${error.retryAfter || "a few"} s.`;
    return error.message;
  }
  return String(error?.message || error);
}

export function ErrorNote({ error }) {
  return error ? html`<p class="error" role="alert">${explain(error)}</p>` : null;
}

// The workspace list behind roles, shared by the views for a few seconds: moving between a
// workspace's views should not ask the server each time (it enforces the roles anyway).
const ROLES_FOR_MS = 15_000;
let spaces = null;

function workspaces(fresh = false) {
  const token = session.get()?.token;
  if (fresh || !spaces || spaces.token !== token || Date.now() - spaces.at > ROLES_FOR_MS) {
    const request = api("GET", "/workspaces");
    spaces = { token, at: Date.now(), request };
    request.catch(() => {
      if (spaces?.request === request) spaces = null;
    });
  }
  return spaces.request;
}

/** The caller's role in `ws` (from the workspace list), or null while unknown. */
export function useRole(ws) {
  const [role, setRole] = useState(null);
  useEffect(() => {
    // A workspace missing from the shared list may be new (just made, or just joined): ask again.
    const roleIn = (list) => list.find((w) => w.id === ws)?.role;
    workspaces()
      .then((list) => roleIn(list) ?? workspaces(true).then(roleIn))
      .then((role) => setRole(role ?? "viewer"), () => setRole("viewer"));
  }, [ws]);
  return role;
}

const RANK = { viewer: 0, member: 1, admin: 2, owner: 3 };
export const mayEdit = (role) => RANK[role] >= RANK.member;
export const mayAdminister = (role) => RANK[role] >= RANK.admin;

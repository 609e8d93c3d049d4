// The console's API: the session's CSRF token rides on every action; a lost session goes to the login page.

let csrf = null;

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function toLogin() {
  const here = location.pathname + location.search;
  location.assign(`/console/login?next=${encodeURIComponent(here)}`);
  return new ApiError("The session has ended; log in again.", 401);
}

export async function startSession() {
  const answer = await fetch("/console/api/session", { credentials: "same-origin" });
  if (answer.status === 401) throw toLogin();
  csrf = (await answer.json()).csrf;
}

export async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") options.headers["x-csrf-token"] = csrf;
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const answer = await fetch(`/console/api/${path}`, options);
  if (answer.status === 401) throw toLogin();
  const doc = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new ApiError(doc.error?.message || `${answer.status} ${answer.statusText}`, answer.status);
  return doc;
}

// Calls ``refresh`` now and every ``seconds`` while the page is visible.
// When a refresh fails (the gateway is down, a network error), a banner says so and since when the
// figures have not moved, rather than leaving the last ones on screen as if they were current.
export function poll(refresh, seconds) {
  let timer = null;
  let lastOk = new Date();
  const tick = async () => {
    try {
      await refresh();
      lastOk = new Date();
      stale(null, lastOk);
    } catch (err) {
      stale(err, lastOk);
    } finally {
      timer = setTimeout(tick, seconds * 1000);
    }
  };
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearTimeout(timer);
    else { clearTimeout(timer); tick(); }
  });
  return tick();
}

function stale(err, since) {
  let banner = document.getElementById("stale");
  if (err === null) {
    if (banner) banner.remove();
    return;
  }
  if (!banner) {
    banner = document.createElement("p");
    banner.id = "stale";
    banner.className = "error";
    banner.setAttribute("role", "alert");
    (document.querySelector("main") || document.body).prepend(banner);
  }
  banner.textContent = `Cannot refresh (${err.message || err}): the figures below are from ${since.toLocaleTimeString()} and are not updating.`;
}

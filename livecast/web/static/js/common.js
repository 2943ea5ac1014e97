// Shared helpers for every page: the API client, a DOM builder that only ever inserts
// text (never HTML), the site navigation and small formatters.

export class ApiError extends Error {
  constructor(status, code, message, field, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.retryAfter = retryAfter || null;
  }
}

// fetch() a JSON API route with the session cookie; throws ApiError on any failure.
export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const e = (data && data.error) || {};
    const message = e.message || `Request failed (${response.status})`;
    throw new ApiError(response.status, e.code || "http_error", message, e.field,
      Number(response.headers.get("Retry-After")) || null);
  }
  return data;
}

// h("a", {href: "/x", class: "btn"}, "text", child) -> element. Strings become text nodes.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// The logged-in user (or null), fetched once per page load; refresh() forces a new look-up.
let mePromise = null;
export function currentUser({ refresh = false } = {}) {
  if (!mePromise || refresh) {
    mePromise = api("GET", "/api/v1/me").then((d) => d.user).catch((err) => {
      if (err.status === 401) return null;
      throw err;
    });
  }
  return mePromise;
}

export async function logout() {
  try {
    await api("POST", "/api/v1/auth/logout");
  } catch (err) {
    if (err.status !== 401) throw err;
  }
  window.location.assign("/");
}

// A path on this site to come back to after logging in (never another origin).
export function nextPath(fallback = "/") {
  const next = new URLSearchParams(window.location.search).get("next") || "";
  return /^\/(?!\/)[^\\]*$/.test(next) ? next : fallback;
}

export function loginHref() {
  return `/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
}

// Fills <nav id="nav"> according to who is logged in; returns the user (or null).
export async function renderNav() {
  const nav = document.getElementById("nav");
  let user = null;
  try {
    user = await currentUser();
  } catch (err) {
    user = null;
  }
  if (!nav) return user;
  const here = window.location.pathname;
  const link = (href, label) => h("a", { href, "aria-current": here === href ? "page" : null }, label);
  const items = [link("/", "Live")];
  if (user) {
    if (user.role === "streamer" || user.role === "admin") items.push(link("/dashboard", "Dashboard"));
    if (user.role === "admin") items.push(link("/admin", "Admin"));
    items.push(h("span", { class: "nav-user", title: "Your coins" }, user.username, " · ",
      h("span", { id: "nav-coins" }, String(user.coins)), " coins"));
    items.push(h("button", { type: "button", class: "link", onclick: () => logout() }, "Log out"));
  } else {
    items.push(h("a", { href: loginHref() }, "Log in"));
    items.push(h("a", { href: "/register", class: "btn btn-small" }, "Sign up"));
  }
  replace(nav, ...items);
  return user;
}

export function setCoins(coins) {
  const el = document.getElementById("nav-coins");
  if (el) el.textContent = String(coins);
}

// Shows the API's message next to the field it names (or at the form's top).
export function showFormError(form, err) {
  clearFormErrors(form);
  const field = err.field && form.elements.namedItem(err.field);
  const message = err.message || "Something went wrong.";
  if (field && field.id) {
    const box = form.querySelector(`[data-error-for="${field.name}"]`);
    if (box) {
      box.textContent = message;
      field.setAttribute("aria-invalid", "true");
      field.focus();
      return;
    }
  }
  const general = form.querySelector("[data-error-for='']");
  if (general) general.textContent = message;
}

export function clearFormErrors(form) {
  for (const box of form.querySelectorAll("[data-error-for]")) box.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
}

export function formatBitrate(bps) {
  if (!bps) return "–";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function formatTime(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Copies text to the clipboard. navigator.clipboard needs a secure context (https or
// localhost); elsewhere a temporary off-screen textarea and execCommand("copy") do it.
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      // fall through to the old way
    }
  }
  const area = h("textarea", { class: "visually-hidden", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (err) {
    ok = false;
  }
  area.remove();
  return ok;
}

// A short-lived status message in an aria-live region (created on first use).
export function announce(message, kind = "info") {
  let region = document.getElementById("toast");
  if (!region) {
    region = h("div", { id: "toast", class: "toast", role: "status", "aria-live": "polite" });
    document.body.append(region);
  }
  region.className = `toast toast-${kind} toast-show`;
  region.textContent = message;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => region.classList.remove("toast-show"), 4000);
}

// Every item of a paginated list (GET path answering {[key]: [...], next_cursor}), following
// next_cursor up to maxPages pages of 100.
export async function apiAll(path, key, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page++) {
    const sep = path.includes("?") ? "&" : "?";
    const data = await api("GET", `${path}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...data[key]);
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  return items;
}

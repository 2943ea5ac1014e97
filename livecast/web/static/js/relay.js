// Dashboard: a room's simulcast (push) targets. Add, enable/disable, remove; each target's
// state, reason and bytes sent, refreshed while the page is open. The target's stream key
// is write-only: typed into a password field, sent once, never shown again (the API only
// returns a hint of it).
import { announce, api, clearFormErrors, h, replace, showFormError } from "./common.js";

const REFRESH_MS = 3000;
const path = (slug, rest = "") => `/api/v1/rooms/${encodeURIComponent(slug)}/targets${rest}`;

function formatBytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

class TargetsPanel {
  constructor(slug) {
    this.slug = slug;
    const id = (name) => `relay-${name}-${slug}`;
    this.list = h("ul", { class: "relay-targets", "aria-live": "polite" });
    const input = (name, label, attrs) => {
      const el = h("input", { id: id(name), name, ...attrs });
      return [el, h("div", { class: "field" }, h("label", { for: id(name) }, label), el,
        h("p", { class: "field-error", "data-error-for": name, role: "alert" }))];
    };
    const [, nameField] = input("name", "Name", { maxlength: "100", required: true, placeholder: "YouTube" });
    const [, urlField] = input("url", "Server URL", { maxlength: "1000", required: true,
      placeholder: "rtmp://a.rtmp.youtube.com/live2" });
    const [, keyField] = input("stream_key", "Stream key", { type: "password", maxlength: "500", required: true,
      autocomplete: "off" });
    this.form = h("form", { class: "form", novalidate: true, onsubmit: (e) => this.add(e) },
      h("p", { class: "error", "data-error-for": "", role: "alert" }),
      nameField, urlField, keyField, h("div", {}, h("button", { type: "submit", class: "btn" }, "Add target")));
    this.el = h("section", { class: "panel relay-panel", "aria-labelledby": id("h") },
      h("h3", { id: id("h") }, "Simulcast targets"),
      h("p", { class: "hint" }, "While the room is live, it is also sent to these servers (YouTube, Twitch, …)."),
      this.list, h("details", {}, h("summary", {}, "Add a target"), this.form));
    this.load();
    this.timer = setInterval(() => { if (this.el.isConnected) this.load(); else clearInterval(this.timer); },
      REFRESH_MS);
  }

  async load() {
    try {
      const { targets } = await api("GET", path(this.slug));
      replace(this.list, ...targets.map((t) => this.row(t)));
      if (!targets.length) this.list.append(h("li", { class: "muted" }, "No targets."));
    } catch (err) {
      replace(this.list, h("li", { class: "error" }, err.message));
    }
  }

  row(target) {
    const state = h("span", { class: `badge relay-state relay-${target.state}` }, target.state);
    return h("li", { class: "relay-target" },
      h("strong", {}, target.name), " ", state,
      h("span", { class: "muted small" }, ` ${target.url} · key ${target.key_hint} · ${formatBytes(target.bytes_sent)} sent`),
      target.reason ? h("p", { class: "small relay-reason" }, target.reason) : null,
      h("div", { class: "relay-actions" },
        h("button", { type: "button", class: "btn", onclick: () => this.toggle(target) },
          target.enabled ? "Disable" : "Enable"),
        h("button", { type: "button", class: "btn btn-danger", onclick: () => this.remove(target) }, "Remove")));
  }

  async add(event) {
    event.preventDefault();
    const form = event.currentTarget;
    clearFormErrors(form);
    const body = { name: form.elements.name.value, url: form.elements.url.value.trim(),
      stream_key: form.elements.stream_key.value };
    try {
      await api("POST", path(this.slug), body);
      form.reset();
      announce(`Target “${body.name}” added.`);
      this.load();
    } catch (err) {
      showFormError(form, err);
    }
  }

  async toggle(target) {
    try {
      await api("PATCH", path(this.slug, `/${target.id}`), { enabled: !target.enabled });
      this.load();
    } catch (err) {
      announce(err.message, "error");
    }
  }

  async remove(target) {
    if (!window.confirm(`Remove the target “${target.name}”?`)) return;
    try {
      await api("DELETE", path(this.slug, `/${target.id}`));
      this.load();
    } catch (err) {
      announce(err.message, "error");
    }
  }
}

// Adds the targets panel to a room's dashboard grid.
export function attachRelay(grid, slug) {
  grid.append(new TargetsPanel(slug).el);
}

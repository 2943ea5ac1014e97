// Dashboard: my rooms, create/edit/delete, OBS settings (server, hidden stream key, copy,
// rotate), live stream health, and chat moderation (slow mode, chat on/off, bans).
import {
  announce, api, apiAll, clearFormErrors, copyText, formatBitrate, formatDuration, h, loginHref, renderNav, replace,
  showFormError,
} from "./common.js";
import { RenditionHealth } from "./renditions.js";
import "./dashboard-recordings.js";
import { attachRelay } from "./relay.js";

const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);
const panels = new Map(); // slug -> RoomPanel
let me = null;

const roomPath = (slug, rest = "") => `/api/v1/rooms/${encodeURIComponent(slug)}${rest}`;

function field(id, label, input, hint) {
  return h("div", { class: "field" },
    h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint" }, hint) : null,
    h("p", { class: "field-error", "data-error-for": input.name, role: "alert" }));
}

const KEY_MASK = "•".repeat(24);

function copyButton(label, getText) {
  return h("button", {
    type: "button", class: "btn", "aria-label": label,
    onclick: async (event) => {
      const button = event.currentTarget;
      const ok = await copyText(getText());
      announce(ok ? "Copied to the clipboard." : "Copying failed: select the text and copy it yourself.", ok ? "info" : "error");
      button.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    },
  }, "Copy");
}

class RoomPanel {
  constructor(room) {
    this.slug = room.slug;
    this.room = room;
    const id = (name) => `${name}-${room.slug}`;

    // Heading and live badge.
    this.titleEl = h("h2", { id: id("title") }, room.title);
    this.badge = h("span", { class: "badge badge-offline" }, "offline");
    this.viewers = h("span", { class: "muted small" });

    // Edit form.
    this.titleInput = h("input", { id: id("edit-title"), name: "title", maxlength: "100", required: true });
    this.descInput = h("textarea", { id: id("edit-description"), name: "description", maxlength: "2000" });
    this.titleInput.value = room.title;
    this.descInput.value = room.description || "";
    this.editForm = h("form", { class: "form", novalidate: true, onsubmit: (e) => this.save(e) },
      h("p", { class: "error", "data-error-for": "", role: "alert" }),
      field(id("edit-title"), "Title", this.titleInput),
      field(id("edit-description"), "Description", this.descInput),
      h("div", {}, h("button", { type: "submit", class: "btn" }, "Save changes")));

    // OBS settings.
    this.serverInput = h("input", { id: id("server"), class: "obs-server", readonly: true, value: room.rtmp_url || "" });
    // The key stays in memory; the field shows a mask until "Show" (a text field, not a
    // password field, so password managers leave it alone).
    this.streamKey = room.stream_key || "";
    this.keyInput = h("input", {
      id: id("key"), class: "obs-key", readonly: true, value: KEY_MASK, autocomplete: "off", spellcheck: "false",
      dataset: { hidden: "true" },
    });
    this.revealButton = h("button", {
      type: "button", class: "btn obs-reveal", "aria-pressed": "false", "aria-controls": id("key"),
      onclick: () => this.toggleKey(),
    }, "Show");
    const obs = h("section", { class: "panel", "aria-labelledby": id("obs") },
      h("h3", { id: id("obs") }, "OBS settings"),
      h("p", { class: "hint" }, "OBS → Settings → Stream → Service: Custom…, then copy these two fields."),
      h("div", { class: "obs-row" },
        h("label", { for: id("server") }, "Server"),
        h("div", { class: "obs-value" }, this.serverInput,
          copyButton("Copy the server address", () => this.serverInput.value))),
      h("div", { class: "obs-row" },
        h("label", { for: id("key") }, "Stream Key"),
        h("div", { class: "obs-value" }, this.keyInput, this.revealButton,
          copyButton("Copy the stream key", () => this.streamKey))),
      h("p", { class: "hint" }, "Keep the key secret: anyone who has it can stream into this room."),
      h("button", { type: "button", class: "btn btn-danger obs-rotate", onclick: () => this.rotate() },
        "New stream key…"));

    // Stream health.
    this.health = h("dl", { class: "stats" });
    const health = h("section", { class: "panel", "aria-labelledby": id("health") },
      h("h3", { id: id("health") }, "Stream health"), this.health);
    this.renditions = new RenditionHealth();
    health.append(this.renditions.el);

    // Moderation.
    this.slowInput = h("input", { id: id("slow"), name: "slow_mode_seconds", type: "number", min: "0", max: "3600", value: "0" });
    this.chatEnabled = h("input", { id: id("chat-on"), name: "chat_enabled", type: "checkbox", checked: true });
    this.modForm = h("form", { class: "form", novalidate: true, onsubmit: (e) => this.saveChatSettings(e) },
      h("p", { class: "error", "data-error-for": "", role: "alert" }),
      field(id("slow"), "Slow mode (seconds between messages, 0 = off)", this.slowInput),
      h("div", { class: "check" }, this.chatEnabled, h("label", { for: id("chat-on") }, "Chat is on")),
      h("div", {}, h("button", { type: "submit", class: "btn" }, "Save chat settings")));
    this.banList = h("ul", { class: "ban-list" });
    this.banInput = h("input", { id: id("ban"), name: "username", autocapitalize: "none", spellcheck: "false" });
    this.banForm = h("form", { class: "inline-form", novalidate: true, onsubmit: (e) => this.ban(e) },
      field(id("ban"), "Ban a user from the chat", this.banInput),
      h("button", { type: "submit", class: "btn" }, "Ban"),
      h("p", { class: "error", "data-error-for": "", role: "alert" }));
    const moderation = h("section", { class: "panel", "aria-labelledby": id("mod") },
      h("h3", { id: id("mod") }, "Chat moderation"), this.modForm,
      h("h4", {}, "Banned users"), this.banList, this.banForm);

    this.el = h("article", { class: "card dash-room", dataset: { slug: room.slug }, "aria-labelledby": id("title") },
      h("div", { class: "dash-room-head" },
        h("div", { class: "room-heading" }, this.titleEl, this.badge, this.viewers),
        h("div", { class: "room-actions" },
          h("a", { class: "btn", href: `/r/${encodeURIComponent(room.slug)}` }, "Open room page"),
          h("button", { type: "button", class: "btn btn-danger", onclick: () => this.remove() }, "Delete…"))),
      h("div", { class: "dash-grid" }, obs, health, h("section", { class: "panel" }, h("h3", {}, "Details"), this.editForm),
        moderation));
    attachRelay(this.el.querySelector(".dash-grid"), room.slug);
    this.update(room);
    this.loadModeration();
  }

  update(room) {
    this.room = room;
    this.titleEl.textContent = room.title;
    this.badge.textContent = room.live ? "LIVE" : "offline";
    this.badge.className = `badge ${room.live ? "badge-live" : "badge-offline"}`;
    this.viewers.textContent = room.live ? `${room.viewers || 0} watching` : "";
    if (room.rtmp_url && document.activeElement !== this.serverInput) this.serverInput.value = room.rtmp_url;
    this.renderHealth(room.stream);
    this.renditions.update(room);
  }

  renderHealth(s) {
    if (!s) {
      replace(this.health, h("dt", {}, "Status"), h("dd", {}, "Not live. Start streaming in OBS with the settings on the left."));
      return;
    }
    const rows = [
      ["Status", "Live"],
      ["Video", s.video_codec || "–"],
      ["Audio", s.audio_codec || "none"],
      ["Resolution", s.width && s.height ? `${s.width}×${s.height}` : "–"],
      ["Frame rate", s.fps ? `${Number(s.fps).toFixed(1)} fps` : "–"],
      ["Bitrate (measured)", formatBitrate(s.bitrate)],
      ["Keyframe interval", s.keyframe_interval ? `${Number(s.keyframe_interval).toFixed(1)} s` : "–"],
      ["Uptime", formatDuration(s.uptime)],
      ["A/V drift", typeof s.av_drift_ms === "number" ? `${s.av_drift_ms} ms` : "–"],
      ["Late / dropped packets", `${s.late_packets || 0} / ${s.dropped_packets || 0}`],
    ];
    if (s.peer) rows.push(["Publisher", String(s.peer)]);
    const warnings = Array.isArray(s.warnings) ? s.warnings : [];
    if (warnings.includes("keyframe_interval")) rows.push(["Warning", "Keyframe interval is longer than the segment target: segments get long."]);
    if (warnings.includes("bitrate_collapse")) rows.push(["Warning", "The bitrate has collapsed: check the encoder's upload."]);
    if (s.declared && s.declared.encoder) rows.push(["Encoder", String(s.declared.encoder)]);
    replace(this.health, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { stat: k } }, v)]));
    if (s.keyframe_interval && s.keyframe_interval > 4) {
      this.health.append(h("dt", {}, "Tip"), h("dd", {}, "Set OBS's keyframe interval to 2 s for quicker start-up."));
    }
  }

  toggleKey(show = this.keyInput.dataset.hidden === "true") {
    this.keyInput.dataset.hidden = show ? "false" : "true";
    this.keyInput.value = show ? this.streamKey : KEY_MASK;
    this.keyInput.setAttribute("aria-label", show ? "Stream key" : "Stream key (hidden)");
    this.revealButton.textContent = show ? "Hide" : "Show";
    this.revealButton.setAttribute("aria-pressed", show ? "true" : "false");
  }

  async save(event) {
    event.preventDefault();
    clearFormErrors(this.editForm);
    try {
      const { room } = await api("PATCH", roomPath(this.slug), {
        title: this.titleInput.value, description: this.descInput.value,
      });
      this.update(room);
      announce("Saved.");
    } catch (err) {
      showFormError(this.editForm, err);
    }
  }

  async rotate() {
    const ok = window.confirm(
      "Make a new stream key? The current key stops working at once and a stream using it is cut off. " +
      "You will have to paste the new key into OBS.");
    if (!ok) return;
    try {
      const { stream_key: key, rtmp_url: server } = await api("POST", roomPath(this.slug, "/stream-key"));
      this.streamKey = key;
      this.toggleKey(this.keyInput.dataset.hidden === "false");
      this.serverInput.value = server;
      announce("New stream key made. Update OBS.");
    } catch (err) {
      announce(err.message, "error");
    }
  }

  async remove() {
    if (!window.confirm(`Delete the room “${this.room.title}”? Its chat and stream key are deleted too.`)) return;
    try {
      await api("DELETE", roomPath(this.slug));
      this.el.remove();
      panels.delete(this.slug);
      $("no-rooms").hidden = panels.size > 0;
      announce("Room deleted.");
    } catch (err) {
      announce(err.message, "error");
    }
  }

  async loadModeration() {
    try {
      const [{ settings }, { bans }] = await Promise.all([
        api("GET", roomPath(this.slug, "/chat-settings")),
        api("GET", roomPath(this.slug, "/bans")),
      ]);
      this.slowInput.value = String(settings.slow_mode_seconds);
      this.chatEnabled.checked = settings.chat_enabled;
      this.renderBans(bans);
    } catch (err) {
      replace(this.banList, h("li", { class: "error" }, `Could not load the moderation settings: ${err.message}`));
    }
  }

  renderBans(bans) {
    if (!bans.length) {
      replace(this.banList, h("li", { class: "muted" }, "Nobody is banned."));
      return;
    }
    replace(this.banList, ...bans.map((b) => h("li", {},
      h("span", {}, b.user.username),
      h("button", { type: "button", class: "link", onclick: () => this.unban(b.user.username) }, "Unban"))));
  }

  async saveChatSettings(event) {
    event.preventDefault();
    clearFormErrors(this.modForm);
    const slow = Number(this.slowInput.value || 0);
    try {
      await api("PATCH", roomPath(this.slug, "/chat-settings"), {
        slow_mode_seconds: Number.isInteger(slow) ? slow : -1, chat_enabled: this.chatEnabled.checked,
      });
      announce("Chat settings saved.");
    } catch (err) {
      showFormError(this.modForm, err);
    }
  }

  async ban(event) {
    event.preventDefault();
    clearFormErrors(this.banForm);
    const name = this.banInput.value.trim();
    if (!name) return;
    try {
      await api("POST", roomPath(this.slug, `/bans/${encodeURIComponent(name)}`));
      this.banInput.value = "";
      this.loadModeration();
    } catch (err) {
      showFormError(this.banForm, err);
    }
  }

  async unban(username) {
    try {
      await api("DELETE", roomPath(this.slug, `/bans/${encodeURIComponent(username)}`));
      this.loadModeration();
    } catch (err) {
      announce(err.message, "error");
    }
  }
}

async function refresh() {
  const mine = await apiAll(`/api/v1/rooms?owner=${encodeURIComponent(me.username)}`, "rooms");
  const container = $("rooms");
  for (const room of mine) {
    const panel = panels.get(room.slug);
    if (panel) panel.update(room);
    else {
      const created = new RoomPanel(room);
      panels.set(room.slug, created);
      container.append(created.el);
    }
  }
  for (const [slug, panel] of panels) {
    if (!mine.some((r) => r.slug === slug)) {
      panel.el.remove();
      panels.delete(slug);
    }
  }
  $("no-rooms").hidden = panels.size > 0;
  $("create-box").open = panels.size === 0 || $("create-box").open;
}

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const body = { title: form.elements.title.value };
  if (form.elements.description.value.trim()) body.description = form.elements.description.value;
  if (form.elements.slug.value.trim()) body.slug = form.elements.slug.value.trim();
  try {
    const { room } = await api("POST", "/api/v1/rooms", body);
    form.reset();
    const panel = new RoomPanel(room);
    panels.set(room.slug, panel);
    $("rooms").prepend(panel.el);
    $("no-rooms").hidden = true;
    $("create-box").open = false;
    announce(`Room “${room.title}” created.`);
    panel.el.scrollIntoView({ block: "start" });
  } catch (err) {
    showFormError(form, err);
  }
});

async function main() {
  me = await renderNav();
  const message = $("dash-message");
  if (!me) {
    window.location.replace(loginHref());
    return;
  }
  if (me.role !== "streamer" && me.role !== "admin") {
    message.textContent = "Your account can watch and chat, but not stream. Ask an admin to make you a streamer.";
    message.hidden = false;
    return;
  }
  $("dash").hidden = false;
  await refresh();
  setInterval(() => {
    if (document.visibilityState === "visible") refresh().catch(() => {});
  }, REFRESH_MS);
}

main().catch((err) => {
  const message = $("dash-message");
  message.textContent = `The dashboard could not load: ${err.message}`;
  message.hidden = false;
});

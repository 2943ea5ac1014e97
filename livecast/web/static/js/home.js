// Home page: live rooms first (title, streamer, viewers, uptime), then offline rooms.
// Refreshes every few seconds while the tab is visible.
import { apiAll, formatDuration, h, plural, renderNav, replace } from "./common.js";

const REFRESH_MS = 5000;
let fetchedAt = 0;
let timer = null;

function liveCard(room) {
  const uptime = room.stream && room.stream.uptime;
  return h("li", { class: "room-card" },
    h("a", { href: `/r/${encodeURIComponent(room.slug)}`, class: "room-card-link" },
      h("div", { class: "room-card-thumb", "aria-hidden": "true" },
        room.thumbnail_url ? h("img", { class: "room-card-img", src: room.thumbnail_url, alt: "" }) : null,
        h("span", { class: "badge badge-live" }, "LIVE")),
      h("div", { class: "room-card-body" },
        h("h3", { class: "room-card-title" }, room.title),
        h("p", { class: "room-card-owner" }, room.owner.username),
        h("p", { class: "room-card-meta" },
          h("span", { class: "viewers" }, plural(room.viewers || 0, "viewer")),
          uptime !== null && uptime !== undefined
            ? h("span", { class: "uptime", dataset: { uptime: String(uptime) } }, `live for ${formatDuration(uptime)}`)
            : null))));
}

function offlineItem(room) {
  return h("li", { class: "room-row" },
    h("a", { href: `/r/${encodeURIComponent(room.slug)}` },
      h("span", { class: "room-row-title" }, room.title),
      h("span", { class: "room-row-owner muted" }, ` · ${room.owner.username}`)),
    h("span", { class: "badge badge-offline" }, "offline"));
}

async function refresh() {
  const error = document.getElementById("home-error");
  try {
    const rooms = await apiAll("/api/v1/rooms", "rooms", 1);  // one page of 100: live rooms come first
    fetchedAt = performance.now();
    const live = rooms.filter((r) => r.live);
    const offline = rooms.filter((r) => !r.live);
    replace(document.getElementById("live-rooms"), ...live.map(liveCard));
    replace(document.getElementById("offline-rooms"), ...offline.map(offlineItem));
    document.getElementById("live-empty").hidden = live.length > 0;
    document.getElementById("offline-empty").hidden = offline.length > 0;
    error.hidden = true;
  } catch (err) {
    error.textContent = `Could not load the rooms: ${err.message}`;
    error.hidden = false;
  }
}

// Uptimes tick every second between refreshes.
function tick() {
  const elapsed = (performance.now() - fetchedAt) / 1000;
  for (const el of document.querySelectorAll("[data-uptime]")) {
    el.textContent = `live for ${formatDuration(Number(el.dataset.uptime) + elapsed)}`;
  }
}

function schedule() {
  clearTimeout(timer);
  if (document.visibilityState === "visible") {
    timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, REFRESH_MS);
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") refresh().then(schedule);
  else clearTimeout(timer);
});

renderNav();
refresh().then(schedule);
setInterval(tick, 1000);

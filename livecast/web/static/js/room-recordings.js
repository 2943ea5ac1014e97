// The room page's recordings: past broadcasts and clips below the player, and rewind while
// live (DVR): "Rewind 30 s" plays /hls/{slug}/dvr.m3u8 from storage in a second video over
// the live one, "Back to live" returns to the live player.
import { api, clear, formatDuration, formatTime, h } from "./common.js";
import { attachHls, ensureStyles } from "./media.js";

const REWIND_S = 30;
const WAIT_EVENTS = ["loadedmetadata", "durationchange", "progress", "canplay"];
const slug = decodeURIComponent(window.location.pathname.split("/")[2] || "");
const $ = (id) => document.getElementById(id);
const dvr = { handle: null, video: null };
window.livecastDvr = dvr; // for tests and debugging

async function showPast() {
  const box = $("past-broadcasts");
  if (!box) return;
  const path = `/api/v1/rooms/${encodeURIComponent(slug)}`;
  const [recordings, clips] = await Promise.all([
    api("GET", `${path}/recordings?limit=20`).then((d) => d.recordings).catch(() => []),
    api("GET", `${path}/clips?limit=20`).then((d) => d.clips).catch(() => []),
  ]);
  clear(box);
  if (!recordings.length && !clips.length) return;
  box.hidden = false;
  if (recordings.length) {
    box.append(h("h2", {}, "Past broadcasts"), h("ul", { id: "past-list" }, recordings.map((r) => h("li", {},
      h("a", { href: `/recordings/${r.id}` }, formatTime(r.started_at)), " · ",
      formatDuration(Math.round(r.duration)), r.status === "recording" ? " · live now" : ""))));
  }
  if (clips.length) {
    box.append(h("h2", {}, "Clips"), h("ul", { id: "clip-list" }, clips.map((c) => h("li", {},
      h("a", { href: c.page }, c.title || `Clip ${c.id}`), " · ", formatDuration(Math.round(c.duration))))));
  }
}

async function rewind() {
  const live = $("video");
  if (!dvr.video) {
    dvr.video = h("video", { id: "dvr-video", class: "dvr-video", controls: true, playsinline: true,
      muted: true, "aria-label": "Rewound broadcast" });
    live.after(dvr.video);
  }
  if (dvr.handle) dvr.handle.destroy();
  dvr.video.hidden = false;
  live.hidden = true;
  live.pause();
  dvr.video.muted = live.muted;
  $("player").dataset.dvr = "rewinding";
  const video = dvr.video;
  // Seek once the playlist's range is known (it may take a metadata or a duration event).
  const seek = () => {
    const ranges = video.seekable;
    const end = ranges.length ? ranges.end(ranges.length - 1) : video.duration;
    if (!Number.isFinite(end) || end <= 0 || $("player").dataset.dvr !== "rewinding") return;
    for (const name of WAIT_EVENTS) video.removeEventListener(name, seek);
    video.currentTime = Math.max(0, end - REWIND_S);
    $("player").dataset.dvr = "rewound";
    video.play().catch(() => {});
  };
  for (const name of WAIT_EVENTS) video.addEventListener(name, seek);
  dvr.handle = await attachHls(video, `/hls/${encodeURIComponent(slug)}/dvr.m3u8`, true);
  seek();
}

function backToLive() {
  const live = $("video");
  if (dvr.handle) dvr.handle.destroy();
  dvr.handle = null;
  if (dvr.video) dvr.video.hidden = true;
  live.hidden = false;
  live.play().catch(() => {});
  $("player").dataset.dvr = "live";
}

// The DVR controls show while the room is being recorded (its dvr.m3u8 exists).
async function watchDvr() {
  const box = $("dvr-controls");
  if (!box) return;
  const response = await fetch(`/hls/${encodeURIComponent(slug)}/dvr.m3u8`, { method: "GET" }).catch(() => null);
  const available = Boolean(response && response.ok);
  if (available && !box.childElementCount) {
    box.append(h("button", { type: "button", id: "dvr-rewind", class: "btn", onclick: () => rewind() }, `⟲ Rewind ${REWIND_S} s`),
      h("button", { type: "button", id: "dvr-live", class: "btn", onclick: backToLive }, "Back to live"));
  }
  box.hidden = !available && !dvr.handle;
}

if (slug) {
  ensureStyles();
  showPast().catch(() => {});
  watchDvr().catch(() => {});
  setInterval(() => watchDvr().catch(() => {}), 5000);
}

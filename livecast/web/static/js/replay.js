// The replay page (/recordings/{id}): plays a recording with seeking, and shows the chat
// as it was written, in step with the video: every comment and gift whose offset is at or
// before the current position, whether the viewer plays, pauses or seeks. A signed URL's
// ?exp=&sig= (a private recording shared by its owner) is passed on to every request.
import { api, clear, formatDuration, formatTime, h, renderNav } from "./common.js";
import { attachHls, ensureStyles } from "./media.js";

const $ = (id) => document.getElementById(id);
const id = Number(window.location.pathname.split("/").filter(Boolean)[1]);
const params = new URLSearchParams(window.location.search);
const signature = params.get("sig") ? `exp=${encodeURIComponent(params.get("exp") || "")}&sig=${encodeURIComponent(params.get("sig"))}` : "";
const signed = (path) => (signature ? `${path}${path.includes("?") ? "&" : "?"}${signature}` : path);
const state = { events: [], shown: -1, player: null };
window.livecastReplay = state; // for tests and debugging

function eventLine(event) {
  const at = h("span", { class: "replay-offset muted small" }, formatDuration(Math.floor(event.offset)));
  if (event.type === "gift") {
    return h("li", { class: "chat-line chat-gift", dataset: { offset: String(event.offset) } }, at, " ",
      h("strong", {}, event.user), ` sent ${event.quantity} × ${event.gift}`);
  }
  return h("li", { class: "chat-line", dataset: { offset: String(event.offset) } }, at, " ",
    h("strong", {}, event.user), ": ", h("span", { class: "chat-text" }, event.text));
}

// Show the events up to ``time`` (s); only re-render when that number changes.
function showChatAt(time) {
  let count = 0;
  while (count < state.events.length && state.events[count].offset <= time + 0.25) count += 1;
  if (count === state.shown) return;
  state.shown = count;
  const log = $("replay-chat");
  clear(log);
  for (const event of state.events.slice(0, count)) log.append(eventLine(event));
  log.scrollTop = log.scrollHeight;
  $("replay-chat-state").textContent = `${count} of ${state.events.length}`;
}

function missing(message) {
  $("replay-stage").hidden = true;
  $("replay-chat-box").hidden = true;
  const box = $("replay-missing");
  box.hidden = false;
  box.textContent = message;
}

async function main() {
  ensureStyles();
  renderNav();
  if (!Number.isInteger(id) || id < 1) return missing("There is no recording here.");
  let recording = null;
  try {
    ({ recording } = await api("GET", signed(`/api/v1/recordings/${id}`)));
  } catch (err) {
    if (!signature) return missing(err.status === 403 ? "This recording is private." : "There is no recording here.");
  }
  if (recording) {
    $("replay-title").textContent = `${recording.room} · past broadcast`;
    $("replay-room").textContent = recording.room;
    $("replay-room").href = `/r/${encodeURIComponent(recording.room)}`;
    $("replay-when").textContent = formatTime(recording.started_at);
    $("replay-duration").textContent = formatDuration(Math.round(recording.duration));
    $("replay-status").textContent = recording.status;
  }
  $("replay-download").href = signed(`/vod/${id}/download.mp4`);
  const video = $("replay-video");
  for (const name of ["timeupdate", "seeked", "seeking", "loadedmetadata"]) {
    video.addEventListener(name, () => showChatAt(video.currentTime));
  }
  video.addEventListener("playing", () => { $("replay-player").dataset.state = "playing"; });
  state.player = await attachHls(video, signed(`/vod/${id}/index.m3u8`));
  $("replay-player").dataset.engine = state.player.engine;
  try {
    const { events } = await api("GET", signed(`/api/v1/recordings/${id}/chat`));
    state.events = events;
  } catch (err) {
    $("replay-chat-state").textContent = "chat replay unavailable";
  }
  showChatAt(video.currentTime);
  video.play().catch(() => {});
}

main().catch((err) => missing(`This page could not load: ${err.message}`));

// A clip's page (/clip/{id}): its MP4 in a <video>, the room and the whole broadcast.
import { api, formatDuration, renderNav } from "./common.js";
import { ensureStyles } from "./media.js";

const $ = (id) => document.getElementById(id);
const id = Number(window.location.pathname.split("/").filter(Boolean)[1]);

async function main() {
  ensureStyles();
  renderNav();
  let clip;
  try {
    ({ clip } = await api("GET", `/api/v1/clips/${Number.isInteger(id) && id > 0 ? id : 0}`));
  } catch (err) {
    $("clip-stage").hidden = true;
    $("clip-missing").hidden = false;
    $("clip-missing").textContent = err.status === 403 ? "This clip is private." : "There is no clip here.";
    return;
  }
  $("clip-title").textContent = clip.title || `Clip ${clip.id}`;
  $("clip-room").textContent = clip.room;
  $("clip-room").href = `/r/${encodeURIComponent(clip.room)}`;
  $("clip-duration").textContent = formatDuration(Math.round(clip.duration));
  if (clip.recording) $("clip-recording").href = `/recordings/${clip.recording}`;
  else $("clip-recording").hidden = true;
  $("clip-download").href = clip.url;
  $("clip-video").src = clip.url;
}

main();

// Plays a finished or growing HLS playlist (a recording, the DVR) in a <video>: native HLS
// where the browser has it, hls.js otherwise. Returns a handle with destroy().
import { chooseEngine, loadHlsJs } from "./player.js";

// preferMse: hls.js wherever Media Source Extensions exist (a growing EVENT playlist can then
// be seeked; Chromium's native HLS treats it as live without a seekable range).
export async function attachHls(video, url, preferMse = false) {
  const engine = chooseEngine(video, preferMse);
  if (engine === "native") {
    video.src = url;
    return { engine, destroy() { video.removeAttribute("src"); video.load(); } };
  }
  const Hls = await loadHlsJs();
  const hls = new Hls({ enableWorker: true, startPosition: 0 });
  hls.loadSource(url);
  hls.attachMedia(video);
  return { engine, hls, destroy() { hls.destroy(); } };
}

// This module family's stylesheet, added once (the pages' layout stays untouched).
export function ensureStyles() {
  if (document.querySelector('link[data-livecast="recordings"]')) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/css/recordings.css";
  link.dataset.livecast = "recordings";
  document.head.append(link);
}

// Quality menu for the room player: "Auto" plus one entry per level of a multivariant
// playlist (hls.js levels), and the level playing now. Hidden for single-level streams and
// for the browser's native HLS (which picks levels itself).
import { h } from "./common.js";

const POLL_MS = 1000;

function label(level) {
  const kbps = Math.round((level.bitrate || 0) / 1000);
  return level.height ? `${level.height}p (${kbps} kbit/s)` : `${kbps} kbit/s`;
}

export class QualityMenu {
  // getPlayer: () => the LivePlayer (its hls.js instance changes on every re-attach).
  constructor(getPlayer, box) {
    this.getPlayer = getPlayer;
    this.box = box;
    this.hls = null;
    this.select = h("select", { id: "quality-select", "aria-label": "Quality" });
    this.playing = h("span", { id: "quality-playing", class: "muted", "aria-live": "polite" });
    this.select.addEventListener("change", () => this.choose());
    box.replaceChildren(this.select, this.playing);
    box.hidden = true;
    setInterval(() => this.watch(), POLL_MS);
  }

  watch() {
    const player = this.getPlayer();
    const hls = player && player.hls;
    if (hls === this.hls) return;
    this.hls = hls;
    this.box.hidden = true;
    if (!hls) return;
    hls.on("hlsManifestParsed", () => this.fill(hls));
    hls.on("hlsLevelSwitched", () => this.show(hls));
    if (hls.levels && hls.levels.length) this.fill(hls);
  }

  fill(hls) {
    if (hls !== this.hls) return;
    const options = [h("option", { value: "-1" }, "Auto")];
    hls.levels.forEach((level, index) => options.push(h("option", { value: String(index) }, label(level))));
    this.select.replaceChildren(...options);
    this.select.value = String(hls.manualLevel ?? -1);
    this.box.hidden = hls.levels.length < 2;
    this.show(hls);
  }

  choose() {
    if (!this.hls) return;
    this.hls.currentLevel = Number(this.select.value); // -1: automatic
    this.show(this.hls);
  }

  show(hls) {
    if (hls !== this.hls) return;
    const level = hls.levels[hls.currentLevel];
    this.playing.textContent = level ? `playing ${label(level)}` : "";
    this.box.dataset.level = String(hls.currentLevel);
  }
}

// Dashboard: the health of each rendition of a room's transcoding ladder (frame rate,
// bitrate, encoding speed versus real time), and why a rendition was dropped.
import { h, replace } from "./common.js";

function kbps(bits) {
  return typeof bits === "number" ? `${Math.round(bits / 1000)} kbit/s` : "–";
}

function row(r) {
  const health = r.health || {};
  const speed = typeof health.speed === "number" ? `${health.speed.toFixed(2)}× real time` : "–";
  return h("tr", { dataset: { rendition: r.name } },
    h("th", { scope: "row" }, r.name),
    h("td", {}, r.width && r.height ? `${r.width}×${r.height}` : "–"),
    h("td", {}, typeof health.fps === "number" ? `${health.fps.toFixed(1)} fps` : "–"),
    h("td", {}, kbps(health.bitrate)),
    h("td", {}, r.name === "source" ? "passed through" : speed),
    h("td", { class: r.dropped ? "error" : "" }, r.dropped ? `dropped: ${r.dropped}` : "ok"));
}

// A panel element to place next to the stream health; update(room) redraws it.
export class RenditionHealth {
  constructor() {
    this.body = h("tbody", {});
    this.el = h("section", { class: "panel renditions-panel", hidden: true },
      h("h3", {}, "Renditions"),
      h("table", { class: "renditions" },
        h("thead", {}, h("tr", {}, ...["Rendition", "Size", "Frame rate", "Bitrate", "Speed", "State"]
          .map((t) => h("th", { scope: "col" }, t)))),
        this.body));
  }

  update(room) {
    const list = Array.isArray(room.renditions) ? room.renditions : [];
    this.el.hidden = !room.live || list.length === 0;
    replace(this.body, ...list.map(row));
  }
}

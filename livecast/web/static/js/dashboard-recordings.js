// The dashboard's recordings section: per room of mine, recording on or off for the next
// broadcasts, and its recordings with visibility (public / private) and delete.
import { announce, api, clear, currentUser, formatDuration, formatTime, h } from "./common.js";
import { ensureStyles } from "./media.js";

const $ = (id) => document.getElementById(id);
const roomPath = (slug, rest = "") => `/api/v1/rooms/${encodeURIComponent(slug)}${rest}`;

async function setRecord(slug, input) {
  try {
    const { record } = await api("PUT", roomPath(slug, "/recording"), { record: input.checked });
    input.checked = record;
    announce(record ? `${slug}: broadcasts will be recorded` : `${slug}: recording off`);
  } catch (err) {
    input.checked = !input.checked;
    announce(err.message, "error");
  }
}

function recordingItem(recording, refresh) {
  const select = h("select", { "aria-label": `Visibility of the recording of ${formatTime(recording.started_at)}`,
    class: "rec-visibility", dataset: { id: String(recording.id) } },
  ["public", "private"].map((v) => h("option", { value: v, selected: v === recording.visibility }, v)));
  select.addEventListener("change", async () => {
    try {
      await api("PATCH", `/api/v1/recordings/${recording.id}`, { visibility: select.value });
      announce(`Recording ${recording.id} is now ${select.value}`);
    } catch (err) {
      announce(err.message, "error");
    }
  });
  const remove = h("button", { type: "button", class: "btn btn-danger rec-delete", dataset: { id: String(recording.id) },
    disabled: recording.status === "recording" }, "Delete");
  remove.addEventListener("click", async () => {
    if (!window.confirm("Delete this recording for good?")) return;
    try {
      await api("DELETE", `/api/v1/recordings/${recording.id}`);
      refresh();
    } catch (err) {
      announce(err.message, "error");
    }
  });
  return h("li", { dataset: { id: String(recording.id) } },
    h("a", { href: `/recordings/${recording.id}` }, formatTime(recording.started_at)),
    ` · ${formatDuration(Math.round(recording.duration))} · ${recording.status}`, select, remove);
}

async function roomBlock(room) {
  const block = h("div", { class: "rec-room", dataset: { slug: room.slug } });
  const refresh = async () => {
    const [{ record }, { recordings }] = await Promise.all([
      api("GET", roomPath(room.slug, "/recording")),
      api("GET", roomPath(room.slug, "/recordings?limit=50")),
    ]);
    const toggle = h("input", { type: "checkbox", class: "rec-toggle", checked: record });
    toggle.addEventListener("change", () => setRecord(room.slug, toggle));
    clear(block);
    block.append(h("h3", {}, room.title),
      h("label", {}, toggle, " Record broadcasts"),
      recordings.length ? h("ul", {}, recordings.map((r) => recordingItem(r, refresh)))
        : h("p", { class: "muted" }, "No recordings yet."));
  };
  await refresh();
  return block;
}

async function main() {
  const box = $("recordings-admin");
  const user = await currentUser();
  if (!box || !user) return;
  ensureStyles();
  const { rooms } = await api("GET", `/api/v1/rooms?owner=${encodeURIComponent(user.username)}&limit=100`);
  if (!rooms.length) return;
  clear(box);
  box.append(h("h2", { id: "recordings-admin-heading" }, "Recordings"));
  for (const room of rooms) box.append(await roomBlock(room));
  box.hidden = false;
}

main().catch(() => {});

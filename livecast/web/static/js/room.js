// Room page: player, room details, likes, gifts and the chat.
// Everything users wrote (titles, names, comments) is inserted as text, never as HTML.
import { ChatConnection } from "./chat.js";
import {
  api, formatTime, h, loginHref, plural, renderNav, replace, setCoins,
} from "./common.js";
import { LivePlayer } from "./player.js";
import { QualityMenu } from "./quality.js";
import "./room-recordings.js";

const MAX_LOG = 200;
const LIKE_FLUSH_MS = 250;
const LIKE_MAX = 50;
const ROOM_REFRESH_MS = 15000;

const $ = (id) => document.getElementById(id);
const slug = decodeURIComponent(window.location.pathname.replace(/^\/r\//, "").replace(/\/$/, ""));

const state = {
  room: null,
  user: null,
  manager: false,
  likes: 0,
  pendingLikes: 0,
  likeTimer: null,
  gifts: new Map(),
  chat: null,
  lastSent: "",
};

// -- player ------------------------------------------------------------------------------

const playerBox = $("player");
const video = $("video");
const unmute = $("unmute");

const playerUi = {
  setState(value, message) {
    playerBox.dataset.state = value;
    if (player) playerBox.dataset.engine = player.engine; // an LL-HLS playlist may switch it to hls.js
    $("spinner").hidden = !(value === "connecting" || value === "buffering");
    $("offline-card").hidden = value !== "offline";
    const box = $("player-message");
    box.hidden = value !== "error";
    box.textContent = value === "error" ? message || "The stream cannot be played." : "";
    unmute.hidden = !(value === "playing" && video.muted);
    $("play-overlay").hidden = value !== "blocked";
  },
};

$("play").addEventListener("click", () => {
  if (player) player.play();
});

let player = null;

function setLive(live) {
  const badge = $("live-badge");
  badge.textContent = live ? "LIVE" : "offline";
  badge.className = `badge ${live ? "badge-live" : "badge-offline"}`;
  if (player) player.setLive(live);
}

unmute.addEventListener("click", () => {
  video.muted = false;
  unmute.hidden = true;
});
video.addEventListener("volumechange", () => {
  unmute.hidden = !(playerBox.dataset.state === "playing" && video.muted);
});

// -- room details --------------------------------------------------------------------------

function showRoom(room) {
  document.title = `${room.title} · LiveCast`;
  $("room-title").textContent = room.title;
  replace($("room-owner"), "by ", h("strong", {}, room.owner.username));
  $("room-description").textContent = room.description || "";
  $("room-description").hidden = !room.description;
  if (!state.chat || !state.chat.open) setViewers(room.viewers || 0);
}

function setViewers(count) {
  $("viewers").textContent = plural(count, "viewer");
}

function setLikes(total) {
  state.likes = total;
  $("like-count").textContent = String(total);
}

// A short message under the actions or the chat ("notice" boxes), optionally with a link.
function notice(id, text, link) {
  const box = $(id);
  replace(box, text, link ? [" ", h("a", { href: link.href }, link.text)] : []);
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => (box.hidden = true), 6000);
}

function loginNotice(id, what) {
  notice(id, `Log in to ${what}.`, { href: loginHref(), text: "Log in" });
}

// -- chat log ------------------------------------------------------------------------------

const log = $("chat-log");

function nearBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 60;
}

function pushLine(li) {
  const stick = nearBottom();
  const empty = log.querySelector(".chat-empty");
  if (empty) empty.remove();
  log.append(li);
  while (log.children.length > MAX_LOG) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}

function commentLine(c) {
  const owner = state.room && c.user.username === state.room.owner.username;
  const li = h("li", { class: "chat-line", dataset: { id: String(c.id) } },
    h("span", { class: "chat-meta" },
      h("strong", { class: `chat-user${owner ? " chat-owner" : ""}` }, c.user.username),
      owner ? h("span", { class: "tag" }, "streamer") : null,
      c.user.role === "admin" ? h("span", { class: "tag" }, "admin") : null,
      h("time", { datetime: c.ts, class: "muted small" }, formatTime(c.ts))),
    h("span", { class: "chat-text" }, c.text));
  if (state.manager && c.user.username !== state.user.username) {
    li.append(h("span", { class: "chat-tools" },
      h("button", { type: "button", class: "link small", onclick: () => deleteComment(c.id) }, "Delete"),
      h("button", { type: "button", class: "link small", onclick: () => ban(c.user.username) }, "Ban")));
  }
  return li;
}

function giftLine(g) {
  const gift = state.gifts.get(g.gift);
  const name = gift ? gift.display_name : g.gift;
  return h("li", { class: "chat-line chat-gift", dataset: { gift: String(g.id) } },
    h("span", { class: "tag tag-gift" }, "gift"), " ",
    h("strong", {}, g.user.username), ` sent ${name}${g.quantity > 1 ? ` ×${g.quantity}` : ""}`);
}

function systemLine(text) {
  return h("li", { class: "chat-line chat-system" }, text);
}

async function deleteComment(id) {
  try {
    await api("DELETE", `/api/v1/rooms/${encodeURIComponent(slug)}/comments/${id}`);
  } catch (err) {
    notice("chat-notice", err.message);
  }
}

async function ban(username) {
  if (!window.confirm(`Ban ${username} from this room's chat?`)) return;
  try {
    await api("POST", `/api/v1/rooms/${encodeURIComponent(slug)}/bans/${encodeURIComponent(username)}`);
    notice("chat-notice", `${username} can no longer post here.`);
  } catch (err) {
    notice("chat-notice", err.message);
  }
}

const ERROR_TEXT = {
  login_required: () => ["Log in to take part in the chat.", { href: loginHref(), text: "Log in" }],
  rate_limited: (f) => [`You are sending too fast. Try again in ${Math.ceil(f.retry_after || 1)} s.`],
  slow_mode: (f) => [`Slow mode is on. You can post again in ${Math.ceil(f.retry_after || 1)} s.`],
  banned: () => ["You are banned from this room's chat. You can still watch."],
  chat_disabled: () => ["The streamer has turned the chat off."],
  empty_comment: () => ["Type a message first."],
  account_disabled: () => ["Your account has been disabled."],
  room_full: () => ["This room is full right now; the chat will reconnect when there is space."],
  room_deleted: () => ["This room has been deleted."],
  insufficient_coins: () => ["You do not have enough coins for that gift."],
};

function onChatError(frame) {
  const make = ERROR_TEXT[frame.code];
  const [text, link] = make ? make(frame) : [frame.message || "The chat refused that."];
  notice("chat-notice", text, link);
  if (frame.field === "text" || frame.code === "slow_mode" || frame.code === "rate_limited") {
    const input = $("chat-input");
    if (!input.value && state.lastSent) input.value = state.lastSent;
  }
  if (frame.code === "account_disabled") {
    state.user = null;
    showChatForm();
  }
}

function showChatForm() {
  const loggedIn = Boolean(state.user);
  $("chat-form").hidden = !loggedIn;
  $("chat-login").hidden = loggedIn;
  $("chat-login-link").href = loginHref();
}

function startChat() {
  state.chat = new ChatConnection(slug, {
    status(value) {
      const text = { connecting: "connecting…", open: "connected", closed: "reconnecting…", gone: "closed" }[value];
      $("chat-state").textContent = text || "";
    },
    hello(f) {
      replace(log, ...f.history.map(commentLine));
      if (!f.history.length) log.append(h("li", { class: "chat-line chat-system chat-empty" }, "No messages yet. Say hello!"));
      log.scrollTop = log.scrollHeight;
      setLikes(f.likes);
      setViewers(f.viewers);
      setLive(f.live);
      if (f.settings && f.settings.chat_enabled === false) notice("chat-notice", "The chat is turned off in this room.");
    },
    comment(f) {
      pushLine(commentLine(f));
      if (state.user && f.user.username === state.user.username) state.lastSent = "";
    },
    deleted(f) {
      const li = log.querySelector(`li[data-id="${Number(f.id)}"]`);
      if (li) li.remove();
    },
    likes(f) {
      setLikes(f.total + state.pendingLikes); // the server's total plus clicks not sent yet
    },
    viewers(f) {
      setViewers(f.count);
    },
    gift(f) {
      pushLine(giftLine(f));
    },
    stream(f) {
      setLive(f.live);
      pushLine(systemLine(f.live ? "The stream has started." : "The stream has ended."));
    },
    settings(f) {
      if (f.chat_enabled === false) notice("chat-notice", "The streamer has turned the chat off.");
      else if (f.slow_mode_seconds) notice("chat-notice", `Slow mode: one message every ${f.slow_mode_seconds} s.`);
    },
    error: onChatError,
  });
}

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text) return;
  if (!state.chat.send({ type: "comment", text })) {
    notice("chat-notice", "Not connected to the chat yet; try again in a moment.");
    return;
  }
  state.lastSent = text;
  input.value = "";
});

// -- likes and gifts -----------------------------------------------------------------------

$("like").addEventListener("click", () => {
  if (!state.user) {
    loginNotice("action-message", "like this stream");
    return;
  }
  state.pendingLikes += 1;
  setLikes(state.likes + 1);
  if (!state.likeTimer) state.likeTimer = setTimeout(flushLikes, LIKE_FLUSH_MS);
});

function flushLikes() {
  state.likeTimer = null;
  while (state.pendingLikes > 0) {
    const count = Math.min(state.pendingLikes, LIKE_MAX);
    if (!state.chat.send({ type: "like", count })) {
      notice("action-message", "Not connected to the chat; your like was not sent.");
      state.pendingLikes = 0;
      return;
    }
    state.pendingLikes -= count;
  }
}

async function loadGifts() {
  const select = $("gift-select");
  try {
    const { gifts } = await api("GET", "/api/v1/gifts");
    for (const g of gifts) state.gifts.set(g.name, g);
    replace(select, ...gifts.map((g) => h("option", { value: g.name }, `${g.display_name} (${plural(g.price, "coin")})`)));
  } catch (err) {
    $("gift-form").hidden = true;
  }
}

$("gift-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!state.user) {
    loginNotice("action-message", "send gifts");
    return;
  }
  const form = event.currentTarget;
  const button = form.querySelector("button");
  const name = $("gift-select").value;
  button.disabled = true;
  try {
    const { coins } = await api("POST", `/api/v1/rooms/${encodeURIComponent(slug)}/gifts`, { gift: name, quantity: 1 });
    $("balance").textContent = String(coins);
    setCoins(coins);
    const gift = state.gifts.get(name);
    notice("action-message", `You sent ${gift ? gift.display_name : name}. Thank you!`);
  } catch (err) {
    const make = ERROR_TEXT[err.code];
    const [text, link] = make ? make(err) : [err.message];
    notice("action-message", text, link);
  } finally {
    button.disabled = false;
  }
});

// -- start -----------------------------------------------------------------------------------

async function main() {
  const [user, room, playFrom] = await Promise.all([
    renderNav(),
    api("GET", `/api/v1/rooms/${encodeURIComponent(slug)}`).then((d) => d.room).catch((err) => {
      if (err.status === 404) return null;
      throw err;
    }),
    playTarget(),
  ]);
  if (!room) {
    $("stage").hidden = true;
    $("chat").hidden = true;
    $("room-missing").hidden = false;
    document.title = "No such room · LiveCast";
    return;
  }
  state.room = room;
  state.user = user;
  state.manager = Boolean(user && (user.role === "admin" || user.username === room.owner.username));
  $("balance").textContent = user ? String(user.coins) : "";
  $("balance").parentElement.hidden = !user;
  if (user && user.username === room.owner.username) $("gift-form").hidden = true; // no gifts to yourself
  showRoom(room);
  showChatForm();
  const url = playFrom || room.hls_url;
  playerBox.dataset.playFrom = url;
  // After repeated failures (say the edge went away) the player asks /play again.
  player = new LivePlayer(video, url, playerUi, async () => {
    const next = (await playTarget()) || room.hls_url;
    playerBox.dataset.playFrom = next;
    return next;
  });
  playerBox.dataset.engine = player.engine;
  window.livecastPlayer = player; // for debugging from the console
  new QualityMenu(() => player, $("quality-box"));
  setLive(Boolean(room.live));
  loadGifts();
  startChat();
  setInterval(refreshRoom, ROOM_REFRESH_MS);
}

// Where to play from: the cluster's least loaded edge for this room (or the origin), as
// /play says; null (play the room's own hls_url, on this server) if it cannot be asked.
async function playTarget() {
  try {
    const { hls_url: url } = await api("GET", `/api/v1/rooms/${encodeURIComponent(slug)}/play`);
    return typeof url === "string" && url ? url : null;
  } catch (err) {
    return null;
  }
}

// Title and description edits show up without a reload; without a chat connection the
// room API is also what tells the player that the stream started.
async function refreshRoom() {
  if (document.visibilityState !== "visible") return;
  try {
    const { room } = await api("GET", `/api/v1/rooms/${encodeURIComponent(slug)}`);
    state.room = room;
    showRoom(room);
    if (!state.chat || !state.chat.open) setLive(Boolean(room.live));
  } catch (err) {
    // keep what is shown; the next refresh tries again
  }
}

main().catch((err) => {
  playerUi.setState("error", `This page could not load: ${err.message}`);
});

// The room's chat WebSocket (see docs/API-chat.md): one connection, reconnected with
// backoff. The browser sends the login cookie with the upgrade, so a logged-in user can
// post at once. Frames are handed to the page as callbacks named after their type.

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 15000;

export class ChatConnection {
  // handlers: {hello, comment, deleted, likes, viewers, gift, stream, settings, error,
  //            status(state) where state is "connecting" | "open" | "closed" | "gone"}
  constructor(slug, handlers) {
    this.slug = slug;
    this.handlers = handlers;
    this.ws = null;
    this.backoff = BACKOFF_MIN_MS;
    this.stopped = false;
    this.timer = null;
    this.connect();
    window.addEventListener("online", () => this.reconnectSoon(0));
  }

  get url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/api/v1/rooms/${encodeURIComponent(this.slug)}/chat`;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.emit("status", "connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "hello") {
        this.backoff = BACKOFF_MIN_MS;
        this.emit("status", "open");
      }
      if (frame.type === "error" && frame.code === "room_deleted") this.stopped = true;
      this.emit(frame.type, frame);
    });
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) {
        this.emit("status", "gone");
        return;
      }
      this.emit("status", "closed");
      this.reconnectSoon(this.backoff);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    });
  }

  reconnectSoon(ms) {
    if (this.stopped || this.open) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), ms);
  }

  emit(name, value) {
    const handler = this.handlers[name];
    if (handler) handler(value);
  }

  // Returns false when the frame could not be sent (not connected).
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}

// The live player: native HLS where the browser has it, otherwise hls.js (served from the
// server's node_modules, loaded only when needed). It starts muted at the live edge and
// repairs itself: the playlist answers 404 until the first segment exists, a publisher
// reconnect continues the playlist after a discontinuity, and a stop ends it (ENDLIST)
// until a new publish. Whatever goes wrong, the player tears down and starts over.
// A Low-Latency HLS stream (its playlist has EXT-X-PART-INF) plays with hls.js in
// lowLatencyMode wherever Media Source Extensions exist, and the player shows the live
// latency: wall clock minus the EXT-X-PROGRAM-DATE-TIME of the frame on screen, or
// hls.js's own estimate when the playlist has no dates.

const HLS_JS_URL = "/static/vendor/hls.min.js";
const POLL_MS = 1000;
const RETRY_MS = 1500;
const STALL_MS = 12000;
const LATENCY_MS = 500;
// Native players (Chromium's at least) fail to parse a live playlist shorter than three
// segments, which is also where the HLS spec says playback should start at the earliest.
const MIN_SEGMENTS = { native: 3, "hls.js": 1 };

let hlsJsPromise = null;

export function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  if (!hlsJsPromise) {
    hlsJsPromise = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = HLS_JS_URL;
      script.async = true;
      script.addEventListener("load", () => (window.Hls ? resolve(window.Hls) : reject(new Error("hls.js did not load"))));
      script.addEventListener("error", () => {
        hlsJsPromise = null;
        reject(new Error("hls.js is not available on this server"));
      });
      document.head.append(script);
    });
  }
  return hlsJsPromise;
}

export function nativeHls(video) {
  return video.canPlayType("application/vnd.apple.mpegurl") !== "";
}

// "native" or "hls.js": ?player= wins, then native support, then hls.js (MediaSource).
export function chooseEngine(video, lowLatency = false) {
  const forced = new URLSearchParams(window.location.search).get("player");
  if (forced === "native" || forced === "hls.js") return forced;
  if (lowLatency && (window.MediaSource || window.ManagedMediaSource)) return "hls.js";
  return nativeHls(video) ? "native" : "hls.js";
}

// A multivariant playlist (a transcoding ladder): its first variant's media playlist says
// whether the stream is ready and low-latency.
async function mediaPlaylist(url, text) {
  if (!text.includes("#EXT-X-STREAM-INF")) return text;
  const variant = text.split("\n").find((line) => line.trim() && !line.startsWith("#"));
  if (!variant) return "";
  const response = await fetch(new URL(variant.trim(), new URL(url, window.location.href)),
    { cache: "no-store", credentials: "same-origin" });
  return response.ok ? response.text() : "";
}

export class LivePlayer {
  // ui: {setState(state, message)} where state is "offline" | "connecting" | "buffering"
  // | "playing" | "blocked" (autoplay refused) | "error".
  // relocate: optional async () => url, asked for a new place to play from (another edge)
  // after repeated failures at the current one.
  constructor(video, url, ui, relocate = null) {
    this.video = video;
    this.url = url;
    this.ui = ui;
    this.relocate = relocate;
    this.failuresHere = 0;
    this.state = null;
    this.engine = chooseEngine(video);
    this.wanted = false; // the stream is believed to be live
    this.session = 0; // bumped on every teardown so stale callbacks do nothing
    this.attached = false;
    this.hls = null;
    this.timer = null;
    this.fatalErrors = 0;
    this.recoveries = 0;
    this.played = 0;
    this.lastTime = 0;
    this.lastProgress = performance.now();
    this.lastMediaRecovery = 0;
    this.lowLatency = false;
    this.latency = null; // seconds behind the wall clock, when known
    this.latencyEstimate = null; // hls.js's own estimate (seconds behind the live edge)
    this.latencyBox = document.getElementById("player-latency");
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    for (const name of ["playing", "timeupdate"]) video.addEventListener(name, () => this.onProgress());
    video.addEventListener("waiting", () => this.attached && this.setState("buffering"));
    video.addEventListener("ended", () => this.onEnded());
    video.addEventListener("error", () => this.onNativeError());
    setInterval(() => this.watchdog(), 2000);
    setInterval(() => this.measureLatency(), LATENCY_MS);
  }

  measureLatency() {
    let latency = null;
    let estimate = null;
    if (this.attached && this.hls) {
      const date = this.hls.playingDate;
      if (date && !Number.isNaN(date.getTime())) latency = (Date.now() - date.getTime()) / 1000;
      if (Number.isFinite(this.hls.latency)) estimate = this.hls.latency;
    } else if (this.attached && this.video.getStartDate) {
      const start = this.video.getStartDate().getTime(); // Safari: the playlist's first date
      if (!Number.isNaN(start)) latency = (Date.now() - start) / 1000 - this.video.currentTime;
    }
    this.latency = latency;
    this.latencyEstimate = estimate;
    if (this.latencyBox) {
      const shown = latency !== null ? latency : estimate;
      const live = this.state === "playing" && shown !== null;
      this.latencyBox.hidden = !live;
      if (live) this.latencyBox.textContent = `${this.lowLatency ? "Low latency · " : ""}${shown.toFixed(1)} s behind live`;
    }
  }

  setState(value, message) {
    if (value === this.state && !message) return;
    this.state = value;
    this.ui.setState(value, message);
  }

  // The chat or the room API says whether a publisher is live.
  setLive(live) {
    const was = this.wanted;
    this.wanted = live;
    if (live && !was && this.attached && this.hls && this.hlsEnded()) {
      this.restart("the stream started again", 0); // hls.js stopped reloading a finished playlist
    } else if (live && !this.attached && !this.timer) {
      this.poll();
    } else if (!live && !this.attached) {
      this.clearTimer();
      this.setState("offline");
    }
  }

  hlsEnded() {
    const level = this.hls && this.hls.levels && this.hls.levels[this.hls.currentLevel >= 0 ? this.hls.currentLevel : 0];
    return Boolean(level && level.details && !level.details.live);
  }

  clearTimer() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  later(fn, ms) {
    this.clearTimer();
    const session = this.session;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (session === this.session) fn();
    }, ms);
  }

  // Wait until the playlist exists, has a segment and is not finished, then attach.
  async poll() {
    this.clearTimer();
    const session = this.session;
    this.setState("connecting");
    let ready = false;
    try {
      const response = await fetch(this.url, { cache: "no-store", credentials: "same-origin" });
      if (response.ok) {
        const text = await mediaPlaylist(this.url, await response.text());
        const lowLatency = text.includes("#EXT-X-PART-INF");
        if (lowLatency !== this.lowLatency) {
          this.lowLatency = lowLatency;
          this.engine = chooseEngine(this.video, lowLatency);
        }
        const segments = text.split("#EXTINF").length - 1;
        ready = segments >= MIN_SEGMENTS[this.engine] && !text.includes("#EXT-X-ENDLIST");
      }
    } catch (err) {
      ready = false;
    }
    if (session !== this.session || this.attached) return;
    if (ready) {
      this.attach();
    } else if (this.wanted) {
      this.later(() => this.poll(), POLL_MS);
    } else {
      this.setState("offline");
    }
  }

  async attach() {
    const session = this.session;
    this.attached = true;
    this.lastTime = this.video.currentTime;
    this.lastProgress = performance.now();
    this.setState("connecting");
    if (this.engine === "native") {
      this.video.src = this.url;
      this.play();
      return;
    }
    let Hls;
    try {
      Hls = await loadHlsJs();
    } catch (err) {
      if (session !== this.session) return;
      this.attached = false;
      if (nativeHls(this.video)) {
        this.engine = "native";
        this.attach();
      } else {
        this.setState("error", "This browser needs hls.js to play the stream, and this server does not provide it.");
      }
      return;
    }
    if (session !== this.session) return;
    if (!Hls.isSupported()) {
      this.attached = false;
      this.setState("error", "This browser cannot play live video (no HLS or Media Source Extensions).");
      return;
    }
    const common = { backBufferLength: 30, manifestLoadingMaxRetry: 2, levelLoadingMaxRetry: 4, fragLoadingMaxRetry: 4 };
    // Low latency: hls.js holds back PART-HOLD-BACK from the playlist's end, blocks on
    // _HLS_msn/_HLS_part and loads parts; it speeds up a little to catch up after a stall.
    const hls = new Hls(this.lowLatency
      ? { ...common, lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 }
      : { ...common, lowLatencyMode: false, liveSyncDurationCount: 3, liveMaxLatencyDurationCount: 10 });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => this.play());
    hls.on(Hls.Events.ERROR, (event, data) => this.onHlsError(Hls, hls, data));
    hls.loadSource(this.url);
    hls.attachMedia(this.video);
  }

  play() {
    const session = this.session;
    const promise = this.video.play();
    if (promise && promise.catch) {
      promise.catch((err) => {
        // Autoplay refused (even muted, by a browser setting): ask for a click.
        if (session === this.session && err && err.name === "NotAllowedError") this.setState("blocked");
      });
    }
  }

  onProgress() {
    if (!this.attached) return;
    const t = this.video.currentTime;
    const step = t - this.lastTime;
    if (step > 0 && step < 2) this.played += step; // seconds actually watched, across restarts
    if (t !== this.lastTime) {
      this.lastTime = t;
      this.lastProgress = performance.now();
      if (!this.video.paused) {
        this.setState("playing");
        this.failuresHere = 0;
      }
    }
  }

  onHlsError(Hls, hls, data) {
    if (hls !== this.hls || !data.fatal) return;
    this.fatalErrors += 1;
    const now = performance.now();
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && now - this.lastMediaRecovery > 5000) {
      this.lastMediaRecovery = now;
      hls.recoverMediaError();
      return;
    }
    this.restart(`hls.js: ${data.details}`, RETRY_MS);
  }

  onNativeError() {
    if (!this.attached || this.engine !== "native") return;
    this.fatalErrors += 1;
    const e = this.video.error;
    this.restart(`media error ${e ? e.code + " " + e.message : ""}`, RETRY_MS);
  }

  onEnded() {
    if (!this.attached) return;
    // The playlist was finished (ENDLIST): the publisher stopped. Wait for the next one.
    this.teardown();
    if (this.wanted) this.later(() => this.poll(), POLL_MS);
    else this.setState("offline");
  }

  // No progress for a long time although it should be playing: start over.
  watchdog() {
    if (!this.attached || this.video.paused) return;
    if (performance.now() - this.lastProgress > STALL_MS) this.restart("stalled", 0);
  }

  restart(reason, delay) {
    this.recoveries += 1;
    this.failuresHere += 1;
    if (this.relocate && this.failuresHere >= 2) {
      this.failuresHere = 0;
      this.relocate().then((url) => {
        if (url && url !== this.url) {
          if (window.console) console.info(`player: moving to ${url}`);
          this.url = url;
        }
      }, () => {});
    }
    if (window.console) console.info(`player: restarting (${reason})`);
    this.teardown();
    this.setState("connecting");
    this.later(() => this.poll(), delay);
  }

  teardown() {
    this.session += 1;
    this.clearTimer();
    this.attached = false;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.video.getAttribute("src")) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }
}

// ChatClient is the connection to chatd: it speaks the protocol of
// docs/protocol.md, and keeps the user in their rooms across drops. It
// knows nothing of the page; app.js listens to its events.
//
// What it does for the user, so the page does not have to:
//   - the token travels as the subprotocol "access_token.<jwt>" beside
//     "chat", never in the URL;
//   - after any drop it reconnects on its own: soon after 1001/1013 (when
//     the server said draining.reconnect_ms, exactly then), otherwise with
//     exponential backoff and full jitter; 4001 asks for a new token, 4003
//     signs out, 1008 waits long;
//   - on every (re)connection it rejoins each room with since = the last
//     message id seen there, so nothing is missed while it is retained;
//   - a send carries a cid and is retried with the same cid after a
//     reconnect until its `sent` arrives, so it is posted exactly once;
//   - sends keep their order: after a rate_limited they go out one at a
//     time, at the time the server gave, rather than as a burst that the
//     server would refuse again (and count against the connection);
//   - the token is refreshed on the open connection before it expires,
//     when a renewer is given (dev mode).

import { maxId } from "./ids.js";

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30_000;
/** How long before exp the token is renewed and sent with `refresh`. */
export const REFRESH_LEAD_MS = 60_000;
/** A connection that lived this long resets the backoff. */
const STABLE_MS = 2_000;
/** Wait after a 1008 (policy) close: the server asked us to stop. */
const POLICY_WAIT_MS = 30_000;
/** Time to answer an application ping before the connection counts as dead. */
const PONG_TIMEOUT_MS = 10_000;
const HISTORY_PAGE = 50;

/** backoffDelay is "full jitter": uniform in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.floor(random() * ceiling);
}

/** newCid returns a random UUID, also where crypto.randomUUID is missing (plain http on a LAN). */
export function newCid() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** wsURL is /ws on the page's own host, ws: or wss: following the page's scheme. */
export function wsURL(loc = window.location) {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws`;
}

/**
 * Close codes and what they mean to a client (docs/protocol.md §6).
 * Anything not listed is an unexpected drop: back off and retry.
 */
const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TRY_AGAIN_LATER: 1013,
  TOKEN_EXPIRED: 4001,
  TOKEN_INVALID: 4003,
};

export class ChatClient extends EventTarget {
  /**
   * @param {object} opts
   * @param {{token: string, exp: number}} opts.credentials the token and its exp (Unix seconds)
   * @param {() => Promise<{token: string, exp: number}>} [opts.renew] fetches a new token for the
   *   same user; without it, an expired token needs the user (event "token-needed")
   * @param {string} [opts.url] the WebSocket URL; default /ws on this host
   */
  constructor({ credentials, renew = null, url = wsURL() }) {
    super();
    this.credentials = credentials;
    this.renew = renew;
    this.url = url;
    this.ws = null;
    this.state = "idle"; // idle | connecting | connected | waiting | token-needed | stopped
    this.node = "";
    this.user = "";
    this.name = "";
    this.attempt = 0; // consecutive failed connections, for the backoff
    this.retryAt = 0; // when waiting: the time of the next attempt
    this.reason = ""; // why the last connection ended, for the status line
    this.refSeq = 0;
    this.refs = new Map(); // ref -> {kind, room, cid}, for this connection's commands
    /** @type {Map<string, {lastId: string|null, joined: boolean}>} rooms the user is in, in order */
    this.rooms = new Map();
    /** @type {Map<string, {room: string, text: string, cid: string, ref: string, tries: number, inflight: boolean, failed: boolean}>} */
    this.pending = new Map(); // sends without a `sent` yet, by cid, in order
    this.throttled = false; // after rate_limited: one send at a time until the queue is empty
    this.throttleGap = 0; // while throttled: the pause between sends, from retry_ms
    this.holdUntil = 0; // no send before this time (ms)
    this.lastTyping = new Map(); // room -> ms
    this.timers = { retry: null, refresh: null, keepalive: null, pong: null, pump: null };
    this.drainingMs = null;
    this.renewFirst = false; // renew the token before the next attempt
    this.connectedAt = 0;
    this.lastReceived = 0;
    this.onOnline = () => {
      if (this.state === "waiting") this.reconnectNow();
    };
    window.addEventListener("online", this.onOnline);
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit("state", { state, node: this.node, retryAt: this.retryAt, reason: this.reason, ...extra });
  }

  get connected() {
    return this.state === "connected" && this.ws?.readyState === WebSocket.OPEN;
  }

  // Connection lifecycle.

  /** start connects; from then on the client keeps itself connected until stop. */
  start() {
    if (this.state === "stopped") return;
    this.connect();
  }

  /** stop closes the connection for good (sign out). */
  stop() {
    this.state = "stopped";
    this.clearTimers();
    window.removeEventListener("online", this.onOnline);
    if (this.ws) {
      const ws = this.ws;
      this.detach(ws);
      if (ws.readyState <= WebSocket.OPEN) ws.close(CLOSE.NORMAL, "signed out");
    }
    this.ws = null;
    this.emit("state", { state: "stopped" });
  }

  /** reconnectNow skips the wait before the next attempt. */
  reconnectNow() {
    if (this.state === "waiting") this.connect();
  }

  /** useCredentials replaces the token: sent with `refresh` when connected, else used to connect. */
  useCredentials(credentials) {
    this.credentials = credentials;
    if (this.connected) {
      this.command({ type: "refresh", token: credentials.token }, { kind: "refresh" });
    } else if (this.state === "token-needed" || this.state === "waiting" || this.state === "idle") {
      this.connect();
    }
  }

  clearTimers() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      clearInterval(this.timers[k]);
      this.timers[k] = null;
    }
  }

  tokenExpired(marginMs = 0) {
    const exp = this.credentials?.exp;
    return typeof exp === "number" && exp * 1000 <= Date.now() + marginMs;
  }

  async connect() {
    if (this.state === "stopped") return;
    clearTimeout(this.timers.retry);
    this.timers.retry = null;
    if (this.ws) return; // already connecting or connected
    this.setState("connecting");
    if (this.tokenExpired(5_000) || this.renewFirst) {
      // The server would refuse the upgrade with 401, which a browser
      // cannot see: renew first, or ask the user.
      if (!(await this.renewCredentials())) return;
      this.renewFirst = false;
      if (this.state !== "connecting") return;
    }
    let ws;
    try {
      ws = new WebSocket(this.url, ["chat", `access_token.${this.credentials.token}`]);
    } catch (err) {
      // A token with characters a subprotocol cannot carry.
      this.reason = "this token cannot be used (it is not a JWT)";
      this.setState("token-needed");
      this.emit("token-needed", { reason: this.reason });
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    ws.onmessage = (ev) => this.onMessage(ws, ev);
    ws.onclose = (ev) => this.onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event always follows, with the code
  }

  detach(ws) {
    ws.onmessage = ws.onclose = ws.onerror = null;
  }

  /** renewCredentials gets a new token from the renewer; false if there is none or it failed. */
  async renewCredentials() {
    if (!this.renew) {
      this.reason = "your token has expired";
      this.setState("token-needed");
      this.emit("token-needed", { reason: this.reason });
      return false;
    }
    try {
      this.credentials = await this.renew();
      this.emit("credentials", this.credentials);
      return true;
    } catch (err) {
      this.reason = `could not get a new token: ${err.message}`;
      this.scheduleReconnect(backoffDelay(this.attempt++));
      return false;
    }
  }

  scheduleReconnect(delay) {
    if (this.state === "stopped") return;
    clearTimeout(this.timers.retry);
    this.retryAt = Date.now() + delay;
    this.setState("waiting");
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.detach(ws);
    this.ws = null;
    clearInterval(this.timers.keepalive);
    clearTimeout(this.timers.pong);
    clearTimeout(this.timers.refresh);
    const welcomed = this.welcomed;
    const lived = welcomed ? Date.now() - this.connectedAt : 0;
    if (lived >= STABLE_MS) this.attempt = 0;
    for (const room of this.rooms.values()) room.joined = false;
    this.refs.clear(); // replies to this connection's commands will not come
    clearTimeout(this.timers.pump);
    for (const p of this.pending.values()) p.inflight = false; // sent again, with its cid, on reconnecting
    this.emit("disconnected", { code, reason });
    if (this.state === "stopped") return;

    const drainingMs = this.drainingMs;
    this.drainingMs = null;
    switch (code) {
      case CLOSE.TOKEN_EXPIRED:
        this.tokenGone();
        return;
      case CLOSE.TOKEN_INVALID:
        this.reason = reason || "your token is no longer valid";
        this.emit("signed-out", { reason: this.reason });
        this.stop();
        return;
      case CLOSE.POLICY:
        // The server closed us for abuse: say why, and do not hammer it.
        this.reason = reason || "closed by the server (policy)";
        this.emit("notice", { code: "policy", message: `Disconnected by the server: ${this.reason}` });
        this.scheduleReconnect(POLICY_WAIT_MS + Math.floor(Math.random() * POLICY_WAIT_MS));
        return;
      case CLOSE.GOING_AWAY:
      case CLOSE.TRY_AGAIN_LATER:
        this.reason = reason || (code === CLOSE.GOING_AWAY ? "server going away" : "server overloaded");
        // Soon: at the time the draining node chose (it spreads its clients
        // out), else within a second.
        this.scheduleReconnect(drainingMs ?? 250 + Math.floor(Math.random() * 1000));
        return;
      default:
        if (!welcomed && this.tokenExpired()) {
          // Refused at the upgrade (a browser sees 1006, not the 401).
          this.tokenGone();
          return;
        }
        if (!welcomed && this.renew) {
          // A refused upgrade looks like any other failed connection.
          // The token may be the cause even before it expires (a dev
          // server that restarted signs with a new secret), so a token
          // that can be renewed is renewed before the next attempt.
          this.renewFirst = true;
        }
        this.reason = welcomed ? `connection lost (${code})` : "server unreachable";
        this.scheduleReconnect(backoffDelay(this.attempt++));
    }
  }

  /** tokenGone continues after the token expired: with a new one from the renewer, or by asking the user. */
  tokenGone() {
    this.reason = "token expired";
    if (this.renew) {
      this.setState("connecting");
      this.renewCredentials().then((ok) => ok && this.connect());
      return;
    }
    this.setState("token-needed");
    this.emit("token-needed", { reason: "Your token has expired. Paste a new one to continue." });
  }

  // Commands.

  /** command sends one command with a fresh ref, remembering what it was for. */
  command(cmd, meta) {
    if (!this.connected) return null;
    const ref = cmd.ref ?? `r${++this.refSeq}`;
    cmd.ref = ref;
    this.refs.set(ref, meta);
    this.ws.send(JSON.stringify(cmd));
    return ref;
  }

  /** join adds a room; it is joined now if connected, else on connecting. */
  join(room) {
    if (!this.rooms.has(room)) this.rooms.set(room, { lastId: null, joined: false });
    this.sendJoin(room);
  }

  sendJoin(room) {
    const r = this.rooms.get(room);
    if (!r || !this.connected) return;
    const cmd = { type: "join", room };
    if (r.lastId) cmd.since = r.lastId;
    this.command(cmd, { kind: "join", room });
  }

  /** leave removes a room; its unsent messages are dropped. */
  leave(room) {
    if (!this.rooms.delete(room)) return;
    for (const [cid, p] of this.pending) {
      if (p.room === room) this.pending.delete(cid);
    }
    this.command({ type: "leave", room }, { kind: "leave", room });
  }

  /** send posts text to room and returns its cid; it is retried until `sent`. */
  send(room, text) {
    const cid = newCid();
    // The message clears the typing indicator of everyone who gets it, so
    // the next keystroke must announce typing again at once.
    this.lastTyping.delete(room);
    this.pending.set(cid, { room, text, cid, ref: `s${++this.refSeq}`, tries: 0, inflight: false, failed: false });
    this.pump();
    return cid;
  }

  /** retry sends a failed message again, with its cid. */
  retry(cid) {
    const p = this.pending.get(cid);
    if (!p) return;
    p.failed = false;
    p.tries = 0;
    this.pump();
  }

  /** discard gives up on a failed message. */
  discard(cid) {
    if (!this.pending.delete(cid)) return;
    if (![...this.pending.values()].some((p) => !p.failed)) {
      this.throttled = false;
      this.throttleGap = 0;
    }
    this.pump();
  }

  /**
   * pump transmits the pending sends, oldest first: all at once normally;
   * one at a time, each after the previous one was posted, once the server
   * said rate_limited, and never before holdUntil. Unsent messages wait
   * here across reconnections.
   */
  pump() {
    clearTimeout(this.timers.pump);
    this.timers.pump = null;
    if (!this.connected) return; // pumped again on (re)connecting
    const wait = this.holdUntil - Date.now();
    if (wait > 0) {
      this.timers.pump = setTimeout(() => this.pump(), wait);
      return;
    }
    let inflight = false;
    for (const p of this.pending.values()) {
      if (p.failed || !this.rooms.has(p.room)) continue;
      if (this.throttled && (inflight || p.inflight)) return;
      if (!p.inflight) {
        p.inflight = true;
        p.paced = this.throttled;
        this.command({ type: "send", room: p.room, text: p.text, cid: p.cid, ref: p.ref }, { kind: "send", room: p.room, cid: p.cid });
      }
      inflight = true;
    }
  }

  /** posted forgets a send the server has stored. */
  posted(cid) {
    if (!this.pending.delete(cid)) return;
    if (![...this.pending.values()].some((p) => !p.failed)) this.throttled = false;
    else if (this.throttled) this.holdUntil = Math.max(this.holdUntil, Date.now() + this.throttleGap);
    if (!this.throttled) this.throttleGap = 0;
    this.pump();
  }

  /** history asks for the page of messages before the oldest one shown. */
  history(room, before) {
    const r = this.rooms.get(room);
    if (!r?.joined) return false;
    const cmd = { type: "history", room, limit: HISTORY_PAGE };
    if (before) cmd.before = before;
    return this.command(cmd, { kind: "history", room }) !== null;
  }

  /** typing tells the room the user is typing, at most every 2 s. */
  typing(room) {
    const r = this.rooms.get(room);
    if (!r?.joined) return;
    const now = Date.now();
    if (now - (this.lastTyping.get(room) ?? 0) < 2000) return;
    this.lastTyping.set(room, now);
    this.command({ type: "typing", room }, { kind: "typing", room });
  }

  // Events from the server.

  onMessage(ws, ev) {
    if (ws !== this.ws) return;
    this.lastReceived = Date.now();
    clearTimeout(this.timers.pong);
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return; // not ours to guess at
    }
    const meta = msg.ref ? this.refs.get(msg.ref) : undefined;
    if (msg.ref && msg.type !== "error") this.refs.delete(msg.ref);
    switch (msg.type) {
      case "welcome":
        this.onWelcome(msg);
        break;
      case "joined": {
        const r = this.rooms.get(msg.room);
        if (!r) break; // left meanwhile
        r.joined = true;
        for (const m of msg.history ?? []) this.seen(m);
        this.emit("joined", msg);
        break;
      }
      case "left": {
        // Without a ref the server removed us (a refreshed token no
        // longer allows the room): do not rejoin it after a drop.
        const byServer = !meta;
        if (byServer) this.rooms.delete(msg.room);
        this.emit("left", { ...msg, byServer });
        break;
      }
      case "message":
        if (!this.rooms.has(msg.room)) break;
        this.seen(msg);
        this.emit("message", msg);
        break;
      case "sent": {
        const cid = meta?.cid;
        if (cid) this.posted(cid);
        this.emit("sent", { ...msg, cid });
        break;
      }
      case "history":
        this.emit("history", msg);
        break;
      case "presence":
      case "typing":
        if (this.rooms.has(msg.room)) this.emit(msg.type, msg);
        break;
      case "refreshed":
        this.credentials = { ...this.credentials, exp: msg.exp };
        this.scheduleRefresh();
        this.emit("refreshed", msg);
        break;
      case "draining":
        this.drainingMs = Math.max(0, Number(msg.reconnect_ms) || 0);
        this.emit("draining", msg);
        break;
      case "pong":
        break;
      case "error":
        this.onError(msg, meta);
        break;
    }
  }

  /** seen records a message id as the room's last, for since. */
  seen(m) {
    const r = this.rooms.get(m.room);
    if (!r || !m.id) return;
    r.lastId = maxId(r.lastId, m.id);
    if (m.cid && m.from === this.user && this.pending.has(m.cid)) {
      // Posted: the `sent` may have been lost with a connection.
      this.posted(m.cid);
    }
  }

  onWelcome(msg) {
    this.welcomed = true;
    this.connectedAt = Date.now();
    this.node = msg.node ?? "";
    this.user = msg.user ?? "";
    this.name = msg.name ?? this.user;
    this.reason = "";
    this.setState("connected");
    this.emit("welcome", msg);
    // Commands on one connection are served in order: the joins are done
    // before the retried sends reach the server.
    for (const room of this.rooms.keys()) this.sendJoin(room);
    this.pump();
    this.startKeepalive((Number(msg.heartbeat) || 25) * 1000);
    this.scheduleRefresh();
  }

  /**
   * startKeepalive notices a dead connection that the browser has not: the
   * server pings every heartbeat, but a page cannot see pings, so when
   * nothing has arrived for a heartbeat it sends `ping` and gives up on the
   * connection if the answer does not come.
   */
  startKeepalive(heartbeatMs) {
    clearInterval(this.timers.keepalive);
    this.timers.keepalive = setInterval(() => {
      if (!this.connected || Date.now() - this.lastReceived < heartbeatMs) return;
      this.command({ type: "ping" }, { kind: "ping" });
      clearTimeout(this.timers.pong);
      this.timers.pong = setTimeout(() => {
        const ws = this.ws;
        if (!ws) return;
        this.onClose(ws, 4000, "no answer to ping");
        ws.close();
      }, PONG_TIMEOUT_MS);
    }, heartbeatMs);
  }

  /**
   * scheduleRefresh renews the token on the open connection before it
   * expires: a minute before, or with a third of its life left when it
   * lives less than three minutes, and never sooner than a second from now
   * (a token that lives a few seconds must not make a tight loop).
   */
  scheduleRefresh() {
    clearTimeout(this.timers.refresh);
    const exp = this.credentials?.exp;
    if (typeof exp !== "number") return;
    const left = exp * 1000 - Date.now();
    const delay = Math.max(1000, left - Math.min(REFRESH_LEAD_MS, left / 3));
    this.timers.refresh = setTimeout(async () => {
      if (!this.renew) {
        this.emit("notice", { code: "token_expiring", message: "Your token expires soon; you will be asked for a new one." });
        return;
      }
      try {
        const creds = await this.renew();
        this.emit("credentials", creds);
        if (this.command({ type: "refresh", token: creds.token }, { kind: "refresh" })) {
          // The connection's exp moves on `refreshed`; a reconnection uses the new token.
          this.credentials = { ...creds, exp: this.credentials.exp };
        } else {
          this.credentials = creds;
        }
      } catch (err) {
        this.emit("notice", { code: "refresh_failed", message: `Could not renew your token: ${err.message}` });
      }
    }, Math.min(delay, 2 ** 31 - 1));
  }

  onError(msg, meta) {
    const detail = { code: msg.code, message: msg.message, retryMs: msg.retry_ms, kind: meta?.kind, room: meta?.room, cid: meta?.cid };
    if (msg.ref) this.refs.delete(msg.ref);
    if (meta?.kind === "send") {
      const p = this.pending.get(meta.cid);
      if (p) {
        p.inflight = false;
        let wait = 0;
        if (msg.code === "rate_limited") {
          // Not a failure: the server said when. Everything after this
          // message waits too, so the order holds.
          // (10 ms more: retry_ms is rounded down.)
          wait = Math.max(100, Number(msg.retry_ms) || 1000) + 10;
          this.throttled = true;
          // The pause between paced sends is learnt: the longest wait
          // the server asked for, plus any wait it asked for a paced send.
          this.throttleGap = Math.min(p.paced ? this.throttleGap + wait : Math.max(this.throttleGap, wait), 10_000);
        } else if (msg.code === "unavailable" && ++p.tries < 5) {
          wait = 1000 + backoffDelay(p.tries);
        } else {
          p.failed = true; // shown with a Retry button
        }
        if (wait) {
          detail.retrying = wait;
          this.holdUntil = Math.max(this.holdUntil, Date.now() + wait);
        }
        this.pump();
      }
    } else if (meta?.kind === "join") {
      if (msg.code === "unavailable") {
        const wait = 1000 + backoffDelay(1);
        detail.retrying = wait;
        setTimeout(() => this.sendJoin(meta.room), wait);
      } else {
        this.rooms.delete(meta.room);
      }
    }
    this.emit("error", detail);
  }
}

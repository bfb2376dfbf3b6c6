// The page: sign in, rooms, messages, presence, typing and the connection
// status, on top of ChatClient (client.js). Everything the server sends is
// put in the page with textContent, never as HTML; the Content-Security-
// Policy enforces Trusted Types, so an innerHTML here would throw.

import * as auth from "./auth.js";
import { ChatClient } from "./client.js";
import { insertionIndex } from "./ids.js";

const $ = (id) => document.getElementById(id);

const ROOM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_TEXT_BYTES = 4096; // the server's default limit (docs/protocol.md §2)
const TYPING_SHOW_MS = 4000;
const ALERT_MS = 10_000;
const ROOMS_STORE = "chatd.rooms";
const NEAR_BOTTOM_PX = 80;
const NEAR_TOP_PX = 60;
const GROUP_MS = 5 * 60_000; // a message this soon after the same sender's shows no name

const el = {
  status: $("status"),
  statusText: $("status-text"),
  statusCountdown: $("status-countdown"),
  reconnectNow: $("reconnect-now"),
  me: $("me"),
  signout: $("signout"),
  roomsToggle: $("rooms-toggle"),
  toggleUnread: $("toggle-unread"),
  signin: $("signin"),
  devForm: $("dev-form"),
  nameInput: $("name-input"),
  tokenForm: $("token-form"),
  tokenInput: $("token-input"),
  signinError: $("signin-error"),
  signinTitle: $("signin-title"),
  chat: $("chat"),
  sidebar: $("sidebar"),
  joinForm: $("join-form"),
  roomInput: $("room-input"),
  joinError: $("join-error"),
  roomList: $("room-list"),
  memberList: $("member-list"),
  membersTitle: $("members-title"),
  roomTitle: $("room-title"),
  messages: $("messages"),
  loadOlder: $("load-older"),
  empty: $("empty"),
  typing: $("typing"),
  alert: $("alert"),
  alertText: $("alert-text"),
  alertClose: $("alert-close"),
  composer: $("composer"),
  composerInput: $("composer-input"),
  composerLabel: $("composer-label"),
  send: $("send"),
  announcer: $("announcer"),
};

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** @type {ChatClient|null} */
let client = null;
let session = null; // {mode, token, user, name, exp}
let active = null; // the room shown
/** @type {Map<string, RoomView>} */
const rooms = new Map();
let countdownTimer = null;
let alertTimer = null;

/**
 * RoomView is what the page knows of one room: its messages sorted by id
 * (deduplicated by id), the unsent messages by cid, members, typists.
 * Each room has its own list element; only the active one is attached.
 */
class RoomView {
  constructor(name) {
    this.name = name;
    this.msgs = []; // {id, from, name, text, ts, cid}, oldest first
    this.els = new Map(); // id -> li
    this.unsent = new Map(); // cid -> {text, li}
    this.members = new Map(); // user -> name
    this.typists = new Map(); // user -> {name, until}
    this.more = true; // older messages may exist
    this.loading = false;
    this.joined = false;
    this.everJoined = false;
    this.unread = 0;
    this.scrollTop = null; // kept while another room is shown
    this.list = document.createElement("ol");
    this.list.className = "message-list";
    this.list.dataset.room = name;
    this.item = null; // its entry in the room list
  }
}

// Status line.

function renderStatus() {
  const state = client?.state ?? "stopped";
  clearInterval(countdownTimer);
  countdownTimer = null;
  el.reconnectNow.hidden = true;
  el.statusCountdown.textContent = "";
  el.status.title = client?.reason ?? "";
  switch (state) {
    case "idle":
    case "connecting":
      setStatus("connecting", "Connecting…");
      break;
    case "connected":
      setStatus("connected", client.node ? `Connected (${client.node})` : "Connected");
      break;
    case "waiting": {
      setStatus("reconnecting", "Reconnecting");
      el.reconnectNow.hidden = false;
      const tick = () => {
        const s = Math.max(0, Math.ceil((client.retryAt - Date.now()) / 1000));
        el.statusCountdown.textContent = ` in ${s} s`;
      };
      tick();
      countdownTimer = setInterval(tick, 250);
      break;
    }
    case "token-needed":
      setStatus("signed-out", "Signed out: token expired");
      break;
    default:
      setStatus("signed-out", "Signed out");
  }
  const connected = state === "connected";
  for (const r of rooms.values()) updateRoomItem(r);
  el.messages.setAttribute("aria-busy", connected ? "false" : "true");
}

function setStatus(state, text) {
  el.status.dataset.state = state;
  if (el.statusText.textContent !== text) el.statusText.textContent = text;
}

// Alerts near the composer.

function showAlert(text, { sticky = false } = {}) {
  clearTimeout(alertTimer);
  el.alertText.textContent = text;
  el.alert.classList.add("shown");
  el.alertClose.hidden = false;
  if (!sticky) alertTimer = setTimeout(dismissAlert, ALERT_MS);
}

function dismissAlert() {
  clearTimeout(alertTimer);
  el.alertText.textContent = "";
  el.alert.classList.remove("shown");
  el.alertClose.hidden = true;
}

function describeError(e) {
  const room = e.room ? `#${e.room}` : "this room";
  switch (e.code) {
    case "rate_limited": {
      const s = Math.max(1, Math.ceil((e.retryMs ?? 1000) / 1000));
      return e.retrying ? `You are sending too fast: your message goes out in ${s} s.` : `You are sending too fast: wait ${s} s.`;
    }
    case "forbidden":
      return e.kind === "join" ? `You may not join ${room}.` : `Not allowed: ${e.message}`;
    case "too_large":
      return "That message is too long.";
    case "not_joined":
      return `You are not in ${room}; join it first.`;
    case "unavailable":
      return e.retrying ? "The chat service is briefly unavailable; retrying…" : "The chat service is briefly unavailable; try again.";
    default:
      return e.message || `Error: ${e.code}`;
  }
}

// Rooms.

function persistRooms() {
  try {
    sessionStorage.setItem(ROOMS_STORE, JSON.stringify({ rooms: [...rooms.keys()], active }));
  } catch {
    // storage disabled
  }
}

function savedRooms() {
  try {
    const v = JSON.parse(sessionStorage.getItem(ROOMS_STORE) ?? "null");
    if (!v || !Array.isArray(v.rooms)) return { rooms: [], active: null };
    return { rooms: v.rooms.filter((r) => typeof r === "string" && ROOM_NAME.test(r)), active: v.active };
  } catch {
    return { rooms: [], active: null };
  }
}

function openRoom(name) {
  let r = rooms.get(name);
  if (r) return r;
  r = new RoomView(name);
  rooms.set(name, r);

  const li = document.createElement("li");
  li.className = "room-item";
  li.dataset.room = name;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "room-button";
  const label = document.createElement("span");
  label.className = "room-name";
  label.textContent = `#${name}`;
  const badge = document.createElement("span");
  badge.className = "badge unread";
  badge.hidden = true;
  badge.setAttribute("aria-hidden", "true");
  button.append(label, badge);
  button.addEventListener("click", () => setActive(name, { focusComposer: false }));
  const leave = document.createElement("button");
  leave.type = "button";
  leave.className = "icon-button leave";
  leave.setAttribute("aria-label", `Leave #${name}`);
  leave.title = `Leave #${name}`;
  leave.textContent = "✕";
  leave.addEventListener("click", () => leaveRoom(name));
  li.append(button, leave);
  el.roomList.append(li);
  r.item = { li, button, badge };
  updateRoomItem(r);

  r.list.addEventListener("click", (ev) => {
    const button = ev.target.closest("button.retry, button.discard");
    const cid = button?.closest("li")?.dataset.cid;
    if (!cid || !client) return;
    if (button.classList.contains("discard")) {
      client.discard(cid);
      r.unsent.get(cid)?.li.remove();
      r.unsent.delete(cid);
      el.composerInput.focus();
    } else {
      client.retry(cid);
      setUnsentState(r, cid, client.connected ? "sending" : "queued");
    }
  });
  return r;
}

function updateRoomItem(r) {
  if (!r.item) return;
  const { button, badge } = r.item;
  badge.hidden = r.unread === 0;
  badge.textContent = r.unread > 99 ? "99+" : String(r.unread);
  let label = `#${r.name}`;
  if (r.unread) label += `, ${r.unread} unread`;
  if (client?.state === "connected" && !r.joined) label += ", joining";
  button.setAttribute("aria-label", label);
  if (r.name === active) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
  updateUnreadTotal();
}

function updateUnreadTotal() {
  let total = 0;
  for (const r of rooms.values()) total += r.unread;
  document.title = total ? `(${total}) chatd` : "chatd";
  el.toggleUnread.hidden = total === 0;
  el.toggleUnread.textContent = String(total);
}

function setActive(name, { focusComposer = true } = {}) {
  const prev = active ? rooms.get(active) : null;
  if (prev) {
    prev.scrollTop = el.messages.scrollTop;
    prev.list.remove();
  }
  active = name;
  const r = name ? rooms.get(name) : null;
  el.empty.hidden = !!r;
  if (r) {
    el.messages.append(r.list);
    r.unread = 0;
    el.roomTitle.textContent = `#${name}`;
    el.composerLabel.textContent = `Message #${name}`;
    el.messages.setAttribute("aria-label", `Messages in #${name}`);
    el.composerInput.disabled = false;
    el.send.disabled = false;
    if (r.scrollTop === null) scrollToBottom();
    else el.messages.scrollTop = r.scrollTop;
  } else {
    el.roomTitle.textContent = "No room yet";
    el.composerLabel.textContent = "Message";
    el.messages.setAttribute("aria-label", "Messages");
    el.composerInput.disabled = true;
    el.send.disabled = true;
  }
  for (const room of rooms.values()) updateRoomItem(room);
  renderMembers();
  renderTyping();
  renderLoadOlder();
  persistRooms();
  closeSidebar();
  if (r && focusComposer) el.composerInput.focus();
}

function joinRoom(name) {
  openRoom(name);
  client?.join(name);
  setActive(name);
}

function leaveRoom(name) {
  if (!rooms.has(name)) return;
  client?.leave(name);
  dropRoom(name, { moveFocus: true });
}

/**
 * dropRoom takes a room off the page: the user left it, the server
 * refused the join, or a refreshed token no longer allows it. Another
 * room is shown in its place.
 */
function dropRoom(name, { moveFocus = false } = {}) {
  const r = rooms.get(name);
  if (!r) return;
  r.item?.li.remove();
  rooms.delete(name);
  if (active === name) {
    r.list.remove();
    active = null;
    const next = rooms.keys().next();
    setActive(next.done ? null : next.value, { focusComposer: false });
    if (moveFocus) (next.done ? el.roomInput : el.roomList.querySelector(".room-button"))?.focus();
  } else {
    for (const room of rooms.values()) updateRoomItem(room);
  }
  persistRooms();
}

function renderMembers() {
  const r = active ? rooms.get(active) : null;
  el.membersTitle.textContent = r ? `Here now in #${r.name}` : "Here now";
  const items = [];
  if (r) {
    const members = [...r.members].sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]));
    for (const [user, name] of members) {
      const li = document.createElement("li");
      li.className = "member";
      li.dataset.user = user;
      li.textContent = name;
      if (user === session?.user) {
        li.classList.add("own");
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = " (you)";
        li.append(you);
      }
      items.push(li);
    }
  }
  el.memberList.replaceChildren(...items);
}

function renderTyping() {
  const r = active ? rooms.get(active) : null;
  const now = Date.now();
  const names = [];
  if (r) {
    for (const [user, t] of r.typists) {
      if (t.until > now) names.push(t.name);
      else r.typists.delete(user);
    }
  }
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  el.typing.textContent = text;
}

function renderLoadOlder() {
  const r = active ? rooms.get(active) : null;
  el.loadOlder.hidden = !r || !r.more || r.msgs.length === 0;
  el.loadOlder.disabled = !!r?.loading;
  el.loadOlder.textContent = r?.loading ? "Loading older messages…" : "Load older messages";
}

// Messages.

function nearBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  el.messages.scrollTop = el.messages.scrollHeight;
}

function renderMessage(m, { own, unsent }) {
  const li = document.createElement("li");
  li.className = "msg";
  if (m.id) li.dataset.id = m.id;
  if (m.cid) li.dataset.cid = m.cid;
  if (own) li.classList.add("own");

  const meta = document.createElement("div");
  meta.className = "meta";
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = m.name || m.from;
  if (m.from && m.name && m.name !== m.from) from.title = m.from;
  meta.append(from);
  if (own) {
    const you = document.createElement("span");
    you.className = "sr-only";
    you.textContent = " (you)";
    meta.append(you);
  }
  if (m.ts) {
    const time = document.createElement("time");
    const d = new Date(m.ts);
    time.dateTime = d.toISOString();
    time.title = dateTimeFormat.format(d);
    time.textContent = timeFormat.format(d);
    meta.append(" ", time);
  }
  if (unsent) {
    const state = document.createElement("span");
    state.className = "state";
    meta.append(" ", state);
  }
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = m.text;
  li.append(meta, text);
  return li;
}

/**
 * addMessage puts a message in its room in id order, once: a message whose
 * id is already there is dropped, and one that carries the cid of an
 * unsent message of ours replaces it. It returns whether it was new.
 */
function addMessage(r, m) {
  const { index, found } = insertionIndex(r.msgs, m.id);
  if (found) return false;
  const msg = { id: m.id, from: m.from, name: m.name, text: m.text, ts: m.ts, cid: m.cid };
  r.msgs.splice(index, 0, msg);
  const own = m.from === session?.user;
  if (m.cid && r.unsent.has(m.cid)) {
    r.unsent.get(m.cid).li.remove();
    r.unsent.delete(m.cid);
  }
  const li = renderMessage(msg, { own, unsent: false });
  r.els.set(m.id, li);
  const next = r.msgs[index + 1];
  const before = next ? r.els.get(next.id) : r.list.querySelector(":scope > li.unsent");
  r.list.insertBefore(li, before ?? null);
  group(r, index);
  group(r, index + 1);
  return true;
}

/**
 * group marks a message that closely follows one from the same sender:
 * it is drawn without the name (screen readers still read it), so a run
 * of messages reads as one block.
 */
function group(r, i) {
  const m = r.msgs[i];
  const prev = r.msgs[i - 1];
  if (!m) return;
  const cont = !!prev && prev.from === m.from && m.ts - prev.ts < GROUP_MS;
  r.els.get(m.id)?.classList.toggle("cont", cont);
}

function addUnsent(r, cid, text) {
  const li = renderMessage({ from: session.user, name: session.name, text, cid }, { own: true, unsent: true });
  li.classList.add("unsent");
  r.unsent.set(cid, { text, li });
  r.list.append(li);
  setUnsentState(r, cid, client?.connected ? "sending" : "queued");
}

/** Errors after which sending the same text again cannot succeed. */
const FINAL_SEND_ERRORS = new Set(["too_large", "bad_request", "forbidden"]);

function setUnsentState(r, cid, state, why = "") {
  const u = r.unsent.get(cid);
  if (!u) return;
  const label = u.li.querySelector(".state");
  u.li.dataset.state = state;
  label.replaceChildren();
  if (state === "sending") label.textContent = "sending…";
  else if (state === "queued") label.textContent = "waiting for the connection…";
  else if (state === "held") label.textContent = "sending soon…";
  else if (state === "failed") {
    label.textContent = `not sent${why ? ` (${why.replace(/_/g, " ")})` : ""} `;
    const button = (cls, text, aria) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = `link-button ${cls}`;
      b.textContent = text;
      b.setAttribute("aria-label", aria);
      return b;
    };
    if (!FINAL_SEND_ERRORS.has(why)) label.append(button("retry", "Retry", "Send this message again"));
    label.append(button("discard", "Discard", "Discard this message"));
  }
}

/** addGap marks where messages were lost: a rejoin found them no longer retained. */
function addGap(r, beforeId) {
  const li = document.createElement("li");
  li.className = "gap";
  li.textContent = "Some earlier messages are no longer available.";
  r.list.insertBefore(li, (beforeId && r.els.get(beforeId)) || r.list.querySelector(":scope > li.unsent"));
}

function requestOlder() {
  const r = active ? rooms.get(active) : null;
  if (!r || !r.more || r.loading || !r.joined || !client) return;
  if (r.msgs.length === 0) {
    r.more = false;
    renderLoadOlder();
    return;
  }
  if (client.history(r.name, r.msgs[0].id)) {
    r.loading = true;
    renderLoadOlder();
  }
}

// Events from the client.

function onJoined({ room, members, history = [], recovered }) {
  const r = rooms.get(room);
  if (!r) return;
  const rejoin = r.everJoined;
  const isActive = room === active;
  const stick = isActive && (nearBottom() || !rejoin);
  r.joined = true;
  r.everJoined = true;
  r.members = new Map((members ?? []).map((m) => [m.user, m.name || m.user]));
  let added = 0;
  for (const m of history) {
    if (addMessage(r, m)) {
      added++;
      if (rejoin && m.from !== session?.user && !isActive) r.unread++;
    }
  }
  if (rejoin && recovered === false && history.length > 0) addGap(r, history[0].id);
  if (!rejoin) r.more = history.length > 0;
  updateRoomItem(r);
  if (isActive) {
    renderMembers();
    renderLoadOlder();
    if (stick) scrollToBottom();
  }
  if (added && rejoin && isActive) announce(`${added} new message${added === 1 ? "" : "s"} in #${room}`);
}

function onMessage(m) {
  const r = rooms.get(m.room);
  if (!r) return;
  const isActive = m.room === active;
  const own = m.from === session?.user;
  const stick = isActive && (own || nearBottom());
  if (!addMessage(r, m)) return;
  r.typists.delete(m.from);
  if (isActive) {
    renderTyping();
    renderLoadOlder();
    if (stick) scrollToBottom();
    if (!own) announce(`${m.name || m.from}: ${m.text}`);
  } else if (!own) {
    r.unread++;
    updateRoomItem(r);
  }
}

function onSent({ room, id, ts, cid }) {
  const r = rooms.get(room);
  if (!r || !cid || !r.unsent.has(cid)) return;
  // The `message` usually comes first; if not, this is the message.
  addMessage(r, { id, ts, cid, from: session.user, name: session.name, text: r.unsent.get(cid).text });
}

function onHistory({ room, messages = [], more }) {
  const r = rooms.get(room);
  if (!r) return;
  r.loading = false;
  const isActive = room === active;
  const box = el.messages;
  const fromBottom = box.scrollHeight - box.scrollTop;
  for (const m of messages) addMessage(r, m);
  r.more = !!more && messages.length > 0;
  if (isActive) {
    // Keep what the user was reading where it was.
    box.scrollTop = box.scrollHeight - fromBottom;
    renderLoadOlder();
  }
}

function onPresence({ room, user, name, state }) {
  const r = rooms.get(room);
  if (!r) return;
  if (state === "join") r.members.set(user, name || user);
  else if (state === "leave") {
    r.members.delete(user);
    r.typists.delete(user);
  }
  if (room === active) {
    renderMembers();
    renderTyping();
  }
}

function onTyping({ room, user, name }) {
  const r = rooms.get(room);
  if (!r || user === session?.user) return;
  r.typists.set(user, { name: name || user, until: Date.now() + TYPING_SHOW_MS });
  if (room === active) {
    renderTyping();
    setTimeout(renderTyping, TYPING_SHOW_MS + 50);
  }
}

function onError(e) {
  if (e.kind === "send" && e.cid) {
    const r = rooms.get(e.room);
    if (r) {
      if (e.retrying) setUnsentState(r, e.cid, "held");
      else setUnsentState(r, e.cid, "failed", e.code);
    }
  }
  if (e.kind === "join" && !e.retrying) dropRoom(e.room);
  if (e.kind === "history") {
    const r = rooms.get(e.room);
    if (r) {
      r.loading = false;
      renderLoadOlder();
    }
  }
  if (e.kind === "typing" || e.kind === "ping") return; // nothing the user did
  showAlert(describeError(e));
}

function onDisconnected() {
  for (const r of rooms.values()) {
    r.joined = false;
    r.loading = false;
    for (const cid of r.unsent.keys()) {
      const state = r.unsent.get(cid).li.dataset.state;
      if (state === "sending" || state === "held") setUnsentState(r, cid, "queued");
    }
  }
  renderLoadOlder();
}

function onWelcome() {
  for (const r of rooms.values()) {
    for (const cid of r.unsent.keys()) {
      if (r.unsent.get(cid).li.dataset.state === "queued") setUnsentState(r, cid, "sending");
    }
  }
}

function announce(text) {
  el.announcer.textContent = text;
}

// Signing in and out.

/**
 * showSignin shows the sign-in forms. With tokenOnly (the token expired
 * and only the user can give a new one) they sit over the rooms, which
 * stay on screen but out of reach until the new token is in.
 */
async function showSignin(message = "", { tokenOnly = false } = {}) {
  document.body.classList.remove("signed-in");
  el.chat.hidden = !tokenOnly;
  el.chat.inert = tokenOnly;
  el.signin.classList.toggle("overlay", tokenOnly);
  el.signinTitle.textContent = tokenOnly ? "Sign in again" : "Sign in";
  dismissAlert(); // the message says it all now
  el.signin.hidden = false;
  el.signout.hidden = true;
  el.me.hidden = true;
  el.signinError.textContent = message;
  if (!client || client.state === "stopped") setStatus("signed-out", "Signed out");
  const dev = !tokenOnly && (await auth.devModeAvailable());
  el.devForm.hidden = !dev;
  el.tokenForm.hidden = false;
  if (dev) {
    el.nameInput.value ||= localStorage.getItem("chatd.name") ?? "";
    el.nameInput.focus();
  } else {
    el.tokenInput.focus();
  }
}

function hideSignin() {
  document.body.classList.add("signed-in");
  el.signin.hidden = true;
  el.signin.classList.remove("overlay");
  el.chat.hidden = false;
  el.chat.inert = false;
  el.signout.hidden = false;
  el.me.hidden = false;
}

function startSession(s) {
  session = s;
  auth.saveAuth(s);
  const renew =
    s.mode === "dev"
      ? async () => {
          const n = await auth.devToken(s.name);
          session = n;
          auth.saveAuth(n);
          return { token: n.token, exp: n.exp };
        }
      : null;
  client = new ChatClient({ credentials: { token: s.token, exp: s.exp }, renew });
  const on = (type, fn) => client.addEventListener(type, (ev) => fn(ev.detail));
  on("state", renderStatus);
  on("welcome", (w) => {
    session = { ...session, user: w.user, name: w.name || w.user };
    el.me.textContent = session.name;
    onWelcome();
  });
  on("joined", onJoined);
  on("message", onMessage);
  on("sent", onSent);
  on("history", onHistory);
  on("presence", onPresence);
  on("typing", onTyping);
  on("error", onError);
  on("notice", (n) => showAlert(n.message, { sticky: n.code === "policy" }));
  on("disconnected", onDisconnected);
  on("left", ({ room, byServer }) => {
    // A `left` nobody asked for: a refreshed token no longer allows the room.
    if (!byServer || !rooms.has(room)) return;
    dropRoom(room);
    showAlert(`You are no longer allowed in #${room}.`);
  });
  on("draining", () => {
    // A close 1001 follows; the client reconnects when the server said.
    setStatus("reconnecting", "Server restarting…");
    announce("The server is restarting; you will be reconnected.");
  });
  on("credentials", (c) => {
    if (session.mode === "token") {
      session = { ...session, ...c };
      auth.saveAuth(session);
    }
  });
  on("token-needed", (t) => showSignin(t.reason, { tokenOnly: true }));
  on("signed-out", (t) => signOut(`Signed out: ${t.reason}`));

  hideSignin();
  el.me.textContent = s.name;
  el.signinError.textContent = "";

  const saved = savedRooms();
  for (const name of saved.rooms) {
    openRoom(name);
    client.join(name);
  }
  setActive(rooms.has(saved.active) ? saved.active : (saved.rooms[0] ?? null), { focusComposer: false });
  client.start();
  if (active) el.composerInput.focus();
  else openSidebar(); // on a phone the room box is in the drawer; openSidebar focuses it
}

function signOut(message = "") {
  client?.stop();
  client = null;
  session = null;
  auth.clearAuth();
  for (const name of [...rooms.keys()]) {
    rooms.get(name).item?.li.remove();
    rooms.delete(name);
  }
  setActive(null, { focusComposer: false });
  try {
    sessionStorage.removeItem(ROOMS_STORE);
  } catch {
    // storage disabled
  }
  dismissAlert();
  showSignin(message);
}

// The sidebar is a drawer on narrow screens.

function openSidebar() {
  document.body.classList.add("sidebar-open");
  el.roomsToggle.setAttribute("aria-expanded", "true");
  el.roomInput.focus();
}

function closeSidebar() {
  if (!document.body.classList.contains("sidebar-open")) return false;
  document.body.classList.remove("sidebar-open");
  el.roomsToggle.setAttribute("aria-expanded", "false");
  return true;
}

// Wiring.

function autoGrow() {
  const t = el.composerInput;
  t.style.height = "auto";
  t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
}

function submitMessage() {
  const text = el.composerInput.value;
  if (!text.trim()) return;
  if (!active || !client) {
    showAlert("Join a room first.");
    return;
  }
  if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
    showAlert(`That message is too long: at most ${MAX_TEXT_BYTES} bytes.`);
    return;
  }
  const r = rooms.get(active);
  const cid = client.send(active, text);
  addUnsent(r, cid, text);
  el.composerInput.value = "";
  autoGrow();
  scrollToBottom();
}

function wire() {
  el.devForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = el.nameInput.value.trim();
    if (!name) {
      el.signinError.textContent = "Enter a name.";
      el.nameInput.focus();
      return;
    }
    el.signinError.textContent = "";
    try {
      const s = await auth.devToken(name);
      localStorage.setItem("chatd.name", name);
      startSession(s);
    } catch (err) {
      el.signinError.textContent = `Could not sign in: ${err.message}`;
      el.nameInput.focus();
    }
  });

  el.tokenForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    let s;
    try {
      s = auth.pastedToken(el.tokenInput.value);
    } catch (err) {
      el.signinError.textContent = `That token cannot be used: ${err.message}.`;
      el.tokenInput.focus();
      return;
    }
    el.tokenInput.value = "";
    el.signinError.textContent = "";
    if (client && client.state === "token-needed" && session?.user === s.user) {
      // Same user, new token: reconnect and rejoin with since.
      session = s;
      auth.saveAuth(s);
      hideSignin();
      client.useCredentials({ token: s.token, exp: s.exp });
      return;
    }
    if (client) signOut();
    startSession(s);
  });

  el.tokenInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      el.tokenForm.requestSubmit();
    }
  });

  el.joinForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = el.roomInput.value.trim().replace(/^#/, "");
    if (!ROOM_NAME.test(name)) {
      el.roomInput.setAttribute("aria-invalid", "true");
      el.joinError.textContent = name ? `"${name}" is not a room name: use letters, digits and _ . : - (up to 64).` : "Enter a room name.";
      el.roomInput.focus();
      return;
    }
    el.roomInput.removeAttribute("aria-invalid");
    el.joinError.textContent = "";
    el.roomInput.value = "";
    joinRoom(name);
  });

  el.composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitMessage();
    el.composerInput.focus();
  });

  el.composerInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submitMessage();
    }
  });

  el.composerInput.addEventListener("input", () => {
    autoGrow();
    if (active && client && el.composerInput.value.trim()) client.typing(active);
  });

  el.messages.addEventListener("scroll", () => {
    if (el.messages.scrollTop < NEAR_TOP_PX) requestOlder();
  });
  el.loadOlder.addEventListener("click", requestOlder);

  el.alertClose.addEventListener("click", () => {
    dismissAlert();
    el.composerInput.focus();
  });
  el.reconnectNow.addEventListener("click", () => client?.reconnectNow());
  el.signout.addEventListener("click", () => signOut());
  el.chat.addEventListener("click", (ev) => {
    // The scrim beside the open drawer is the chat element's ::after.
    if (ev.target === el.chat && closeSidebar()) el.roomsToggle.focus();
  });
  el.roomsToggle.addEventListener("click", () => {
    if (!closeSidebar()) openSidebar();
    else el.roomsToggle.focus();
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    if (el.alert.classList.contains("shown")) {
      dismissAlert();
      ev.preventDefault();
    } else if (closeSidebar()) {
      el.roomsToggle.focus();
      ev.preventDefault();
    }
  });
}

async function boot() {
  wire();
  const fragment = auth.tokenFromFragment();
  if (fragment) {
    try {
      startSession(auth.pastedToken(fragment));
    } catch (err) {
      showSignin(`The token in the link cannot be used: ${err.message}.`);
    }
    return;
  }
  const saved = auth.loadAuth();
  if (saved) {
    startSession(saved); // an expired dev token is renewed before connecting
    return;
  }
  showSignin();
}

boot();

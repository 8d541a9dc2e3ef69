// The corecast web chat page: log in over WebSocket, join and leave rooms, see who is
// there, chat, send private (targeted) messages. Built on the TypeScript client's
// browser bundle (clients/typescript, `npm run build` copies it beside this file).
import { CorecastClient, CorecastError, errorCodeName } from "./corecast-client.js";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  loginForm: $("login-form"),
  url: $("server-url"),
  player: $("player"),
  token: $("token"),
  loginBtn: $("login-btn"),
  logoutBtn: $("logout-btn"),
  errors: $("errors"),
  errorList: $("error-list"),
  clearErrors: $("clear-errors"),
  joinForm: $("join-form"),
  roomInput: $("room-input"),
  joinBtn: $("join-btn"),
  roomList: $("room-list"),
  roomsHint: $("rooms-hint"),
  currentRoom: $("current-room"),
  log: $("log"),
  sendForm: $("send-form"),
  targetHint: $("target-hint"),
  message: $("message"),
  sendBtn: $("send-btn"),
  memberList: $("member-list"),
  clearTargets: $("clear-targets"),
};

/** @type {CorecastClient | undefined} */
let client;
/** This session's player id (from the form, or the token's `sub` when the form's is empty). */
let me = "";
/** room id -> { members: Set<string>, log: entry[], unread: number, targets: Set<string> } */
const rooms = new Map();
let current = "";

// ---------------------------------------------------------------------------------------
// Private messages. The wire does not tell a receiver whether a message was targeted, so
// this page wraps the text of a targeted message in a small JSON envelope,
// {"to":["ann"],"text":"..."}, and lists itself among the targets so that it receives its
// own copy, numbered in the room's order. Any other body is shown as plain UTF-8 text.

function encodeBody(text, to) {
  return to.length === 0 ? text : JSON.stringify({ to, text });
}

function decodeBody(bytes) {
  const raw = new TextDecoder().decode(bytes);
  if (raw.startsWith('{"to":')) {
    try {
      const parsed = JSON.parse(raw);
      if (Array.isArray(parsed.to) && parsed.to.every((t) => typeof t === "string") && typeof parsed.text === "string") {
        return { text: parsed.text, to: parsed.to };
      }
    } catch {
      // not an envelope after all: plain text
    }
  }
  return { text: raw, to: undefined };
}

// ---------------------------------------------------------------------------------------
// Connection state and errors

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function describeError(err) {
  if (err instanceof CorecastError) return err.message;
  if (err && typeof err === "object" && "message" in err) return String(err.message);
  return String(err);
}

function showError(err) {
  const li = document.createElement("li");
  li.className = "error";
  if (err instanceof CorecastError) li.dataset.code = err.codeName;
  li.textContent = describeError(err);
  ui.errorList.append(li);
  while (ui.errorList.children.length > 5) ui.errorList.firstElementChild.remove();
  ui.errors.hidden = false;
}

ui.clearErrors.addEventListener("click", () => {
  ui.errorList.replaceChildren();
  ui.errors.hidden = true;
});

function setLoggedIn(loggedIn) {
  for (const input of [ui.url, ui.player, ui.token]) input.disabled = loggedIn;
  ui.loginBtn.hidden = loggedIn;
  ui.logoutBtn.hidden = !loggedIn;
  ui.joinBtn.disabled = !loggedIn;
  ui.roomsHint.textContent = loggedIn ? "Click a room to show it." : "Log in, then join a room.";
  renderComposer();
}

/** The `sub` of a JWT, read without verifying it (the server verifies; this is for display). */
function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const sub = JSON.parse(atob(payload)).sub;
    return typeof sub === "string" ? sub : "";
  } catch {
    return "";
  }
}

// ---------------------------------------------------------------------------------------
// Login and logout

ui.loginForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const url = ui.url.value.trim();
  const token = ui.token.value.trim();
  const player = ui.player.value.trim();
  if (!player && !token) {
    showError(new Error("enter a player name (or a token whose sub names you)"));
    return;
  }
  ui.loginBtn.disabled = true;
  setStatus("connecting", `connecting to ${url}`);
  let next;
  try {
    next = await CorecastClient.connect(url);
    wire(next);
    await next.login(player, token || undefined);
  } catch (err) {
    showError(err);
    if (!next) showError(new Error(`no corecast WebSocket listener answered at ${url} (is the server running with --ws-listen?)`));
    setStatus("disconnected", "disconnected");
    ui.loginBtn.disabled = false;
    if (next) void next.close();
    return;
  }
  client = next;
  me = player || tokenSubject(token);
  ui.loginBtn.disabled = false;
  setStatus("connected", `connected as ${me || "(token's player)"}`);
  ui.status.dataset.protocol = next.protocol;
  ui.status.title = `${url}, subprotocol ${next.protocol || "(none)"}`;
  setLoggedIn(true);
  ui.roomInput.focus();
});

ui.logoutBtn.addEventListener("click", async () => {
  const closing = client;
  client = undefined;
  rooms.clear();
  current = "";
  renderAll();
  setLoggedIn(false);
  setStatus("disconnected", "disconnected");
  await closing?.close();
});

/** Listens to a client's events; they are ignored once it is no longer the page's client. */
function wire(c) {
  const live = () => client === c;

  c.on("message", (m) => {
    if (!live()) return;
    const { text, to } = decodeBody(m.body);
    addEntry(m.room, {
      kind: "msg",
      seq: m.seq,
      sender: m.sender,
      text,
      to,
      replayed: m.replayed,
    });
  });

  c.on("join", ({ room, player }) => {
    if (!live()) return;
    const state = rooms.get(room);
    if (!state) return;
    state.members.add(player);
    addEntry(room, { kind: "join", player, text: `${player} joined` });
  });

  c.on("leave", ({ room, player }) => {
    if (!live()) return;
    const state = rooms.get(room);
    if (!state) return;
    state.members.delete(player);
    state.targets.delete(player);
    addEntry(room, { kind: "leave", player, text: `${player} left` });
  });

  c.on("error", (err) => {
    if (live()) showError(err);
  });

  c.on("close", (info) => {
    if (!live()) return;
    // info.error, if any, was shown already: the client emits it as an "error" event.
    if (info.willReconnect) {
      setStatus("reconnecting", `connection lost (code ${info.code}); reconnecting`);
      return;
    }
    showError(new Error(`connection closed (code ${info.code}${info.reason ? `: ${info.reason}` : ""})`));
    setStatus("closed", "closed: log in again");
    client = undefined;
    rooms.clear();
    current = "";
    renderAll();
    setLoggedIn(false);
  });

  c.on("reconnecting", ({ attempt, delayMs }) => {
    if (!live()) return;
    setStatus("reconnecting", `reconnecting: attempt ${attempt} in ${(delayMs / 1000).toFixed(1)} s`);
  });

  c.on("reconnected", ({ rooms: results }) => {
    if (!live()) return;
    setStatus("connected", `connected as ${me || "(token's player)"} (reconnected)`);
    for (const result of results) {
      const state = rooms.get(result.room);
      if (!state) continue;
      if (result.error) {
        rooms.delete(result.room);
        if (current === result.room) current = rooms.keys().next().value ?? "";
        continue;
      }
      state.members = new Set(result.response.currentPlayers);
      for (const t of [...state.targets]) if (!state.members.has(t)) state.targets.delete(t);
      const recovered = result.response.recovered;
      addEntry(result.room, {
        kind: "info",
        reconnect: recovered ? "recovered" : "not-recovered",
        text: recovered
          ? `reconnected: back in ${result.room}, nothing missed`
          : `reconnected: back in ${result.room}; messages sent while away may be missing (the room restarted or its history ran out)`,
      });
    }
    renderAll();
  });
}

// ---------------------------------------------------------------------------------------
// Rooms

ui.joinForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const room = ui.roomInput.value.trim();
  if (!client || !room) return;
  if (rooms.has(room)) {
    selectRoom(room);
    ui.roomInput.value = "";
    return;
  }
  ui.joinBtn.disabled = true;
  try {
    // Keep what arrives between the JoinResponse and this continuation (replays, joins).
    rooms.set(room, { members: new Set(), log: [], unread: 0, targets: new Set(), joining: true });
    const response = await client.join(room);
    const state = rooms.get(room);
    state.joining = false;
    for (const p of response.currentPlayers) state.members.add(p);
    state.log.unshift({ kind: "info", text: `you joined ${room}; members: ${response.currentPlayers.join(", ")}` });
    ui.roomInput.value = "";
    selectRoom(room);
  } catch (err) {
    rooms.delete(room);
    showError(err);
    renderRooms();
  } finally {
    ui.joinBtn.disabled = !client;
  }
});

async function leaveRoom(room) {
  if (!client) return;
  try {
    await client.leave(room);
  } catch (err) {
    showError(err);
    if (!(err instanceof CorecastError && errorCodeName(err.code) === "NOT_IN_ROOM")) return;
  }
  rooms.delete(room);
  if (current === room) current = rooms.keys().next().value ?? "";
  renderAll();
}

function selectRoom(room) {
  current = room;
  const state = rooms.get(room);
  if (state) state.unread = 0;
  renderAll();
  ui.message.focus();
}

// ---------------------------------------------------------------------------------------
// Messages

ui.sendForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.message.value;
  const state = rooms.get(current);
  if (!client || !state || text.trim() === "") return;
  const to = [...state.targets];
  // A private message goes to its targets and back to this page (for its place in order).
  const targets = to.length === 0 ? [] : [...new Set([...to, me].filter((t) => t !== ""))];
  try {
    client.send(current, encodeBody(text, to), targets);
    ui.message.value = "";
  } catch (err) {
    showError(err);
  }
});

ui.clearTargets.addEventListener("click", () => {
  rooms.get(current)?.targets.clear();
  renderMembers();
  renderComposer();
});

function addEntry(room, entry) {
  const state = rooms.get(room);
  if (!state) return;
  state.log.push(entry);
  if (state.log.length > 1000) state.log.splice(0, state.log.length - 1000);
  if (room === current && !state.joining) {
    ui.log.append(renderEntry(entry));
    ui.log.scrollTop = ui.log.scrollHeight;
    if (entry.kind === "join" || entry.kind === "leave") renderMembers();
  } else if (entry.kind === "msg") {
    state.unread += 1;
    renderRooms();
  }
  if (room !== current && (entry.kind === "join" || entry.kind === "leave")) renderRooms();
}

// ---------------------------------------------------------------------------------------
// Rendering (textContent only: nothing from the network is parsed as HTML)

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

function renderEntry(entry) {
  if (entry.kind !== "msg") {
    const data = entry.player ? { player: entry.player } : {};
    if (entry.reconnect) data.reconnect = entry.reconnect;
    return el("li", { class: `event ${entry.kind}`, data }, entry.text);
  }
  const mine = entry.sender === me && me !== "";
  const isPrivate = entry.to !== undefined;
  const classes = ["msg", mine ? "mine" : "", isPrivate ? "private" : "", entry.replayed ? "replayed" : ""];
  const li = el("li", {
    class: classes.filter(Boolean).join(" "),
    data: { seq: String(entry.seq), sender: entry.sender },
    title: entry.replayed ? "from the room's history" : "",
  });
  li.append(el("span", { class: "seq" }, `#${entry.seq}`));
  if (isPrivate) {
    const others = entry.to.filter((t) => t !== entry.sender);
    const label = mine ? `private to ${others.join(", ") || "yourself"}` : `private${others.length > 1 ? ` to ${others.join(", ")}` : ""}`;
    li.dataset.to = entry.to.join(",");
    li.append(el("span", { class: "tag" }, label));
  }
  li.append(el("span", { class: "sender" }, entry.sender || "(server)"), el("span", { class: "text" }, entry.text));
  return li;
}

function renderRooms() {
  const items = [...rooms.entries()].map(([room, state]) => {
    const select = el("button", { type: "button", class: "select", title: `show ${room}` }, room);
    select.addEventListener("click", () => selectRoom(room));
    const leave = el("button", { type: "button", class: "leave quiet", title: `leave ${room}` }, "Leave");
    leave.addEventListener("click", () => leaveRoom(room));
    const li = el("li", { class: room === current ? "current" : "", data: { room } }, select);
    if (state.unread > 0) li.append(el("span", { class: "unread" }, String(state.unread)));
    li.append(leave);
    return li;
  });
  ui.roomList.replaceChildren(...items);
}

function renderMembers() {
  const state = rooms.get(current);
  if (!state) {
    ui.memberList.replaceChildren();
    ui.clearTargets.hidden = true;
    return;
  }
  const items = [...state.members].sort().map((player) => {
    if (player === me) return el("li", { class: "me", data: { member: player } }, `${player} (you)`);
    const box = el("input", { type: "checkbox", class: "target", value: player, checked: state.targets.has(player) });
    box.addEventListener("change", () => {
      if (box.checked) state.targets.add(player);
      else state.targets.delete(player);
      renderComposer();
    });
    return el("li", { data: { member: player } }, el("label", {}, box, player));
  });
  ui.memberList.replaceChildren(...items);
  ui.clearTargets.hidden = state.targets.size === 0;
}

function renderComposer() {
  const state = rooms.get(current);
  const ready = Boolean(client && state);
  ui.message.disabled = !ready;
  ui.sendBtn.disabled = !ready;
  const to = state ? [...state.targets] : [];
  ui.targetHint.classList.toggle("private", to.length > 0);
  ui.targetHint.textContent = !state
    ? "join a room to chat"
    : to.length === 0
      ? `to everyone in ${current}`
      : `private to ${to.join(", ")}`;
  ui.clearTargets.hidden = to.length === 0;
}

function renderLog() {
  const state = rooms.get(current);
  ui.currentRoom.textContent = state ? current : "no room";
  ui.log.replaceChildren(...(state ? state.log.map(renderEntry) : []));
  ui.log.scrollTop = ui.log.scrollHeight;
}

function renderAll() {
  renderRooms();
  renderLog();
  renderMembers();
  renderComposer();
}

// ---------------------------------------------------------------------------------------
// Start: ?server=ws://host:port/ws&player=ann prefill the form.

const params = new URLSearchParams(location.search);
if (params.get("server")) ui.url.value = params.get("server");
if (params.get("player")) ui.player.value = params.get("player");
setLoggedIn(false);
renderAll();
document.body.dataset.ready = "true";

// The chat page: one WebSocket to the bridge, which is one chat connection.
// Everything from the network is shown with textContent, never as HTML.
// When the connection ends or cannot be made (bridge or chat server down),
// the page says why and connects again after 1, 2, 4 ... 30 s, then logs in
// again under the name it had.
"use strict";

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30000;
let socket = null;
let me = null;
// The name to log in with again after a reconnect (the last one accepted).
let rejoinAs = null;
// Failed attempts in a row: the next wait is RETRY_FIRST_MS * 2 ** failures.
let failures = 0;
// Why the current connection ended, as the bridge said (or null).
let endReason = null;
let reachedChat = false;

function setStatus(text) {
  $("status").textContent = text;
}

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

// One line in the message list: kind is msg, dm, mine, info or error.
function show(kind, text, from = null, tag = null) {
  const li = document.createElement("li");
  li.className = kind;
  li.append(span("time", new Date().toLocaleTimeString([], { hour12: false })));
  if (tag) li.append(span("tag", tag));
  if (from) li.append(span("from", from));
  li.append(span("text", text));
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function showUsers(names) {
  const list = $("users");
  list.replaceChildren(...names.map((name) => {
    const li = document.createElement("li");
    li.textContent = name;
    if (name === me) li.className = "me";
    return li;
  }));
}

function send(message) {
  socket.send(JSON.stringify(message));
}

function connect() {
  setStatus("connecting…");
  endReason = null;
  reachedChat = false;
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", onClose);
}

// The chat connection is open: log in again, or let the user choose a name.
function onReady() {
  reachedChat = true;
  failures = 0;
  if (rejoinAs) {
    setStatus(`reconnected: logging in as ${rejoinAs}`);
    send({ type: "login", name: rejoinAs });
    return;
  }
  setStatus("connected: choose a name");
  $("name").disabled = false;
  $("login").disabled = false;
  $("name").focus();
}

function onClose() {
  for (const id of ["name", "login", "text", "send"]) $(id).disabled = true;
  me = null;
  showUsers([]);
  const why = endReason || (reachedChat ? "disconnected" : "cannot reach the bridge");
  if (!reachedChat) failures += 1;
  // Back-off: 1, 2, 4 ... 30 s while attempts fail; a little random spread so
  // that pages do not all come back at the same instant after a restart.
  const wait = Math.min(RETRY_FIRST_MS * 2 ** Math.max(0, failures - 1), RETRY_MAX_MS);
  const attempt = failures ? ` (attempt ${failures + 1})` : "";
  setStatus(`${why}: reconnecting in ${Math.round(wait / 1000)} s${attempt}`);
  setTimeout(connect, wait * (1 + Math.random() * 0.2));
}

function onMessage(event) {
  const m = JSON.parse(event.data);
  switch (m.type) {
    case "ready":
      onReady();
      break;
    case "unreachable":
      endReason = "the chat server is unreachable";
      if (failures === 0) show("error", m.text); // once, not at every attempt
      break;
    case "welcome":
      me = m.name;
      rejoinAs = me;
      setStatus(`logged in as ${me}`);
      $("login-form").hidden = true;
      $("text").disabled = false;
      $("send").disabled = false;
      $("text").focus();
      show("info", `welcome, ${me}`);
      break;
    case "msg":
      show("msg", m.text, m.from);
      break;
    case "dm":
      show("dm", m.text, m.from, "DM");
      break;
    case "users":
      showUsers(m.names);
      break;
    case "info":
      show("info", m.text);
      break;
    case "error":
      show("error", m.text ? `${m.token}: ${m.text}` : m.token);
      if (m.login) {
        rejoinAs = null; // the name is taken now: the user picks again
        $("login-form").hidden = false;
        $("name").disabled = false;
        $("login").disabled = false;
        $("name").select();
        setStatus("connected: choose a name");
      }
      break;
    case "closed":
      endReason = "the chat server closed the connection";
      show("info", m.text);
      break;
  }
}

connect();

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  $("name").disabled = true;
  $("login").disabled = true;
  send({ type: "login", name });
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  const dm = /^\/dm (\S+) (.+)$/s.exec(text);
  if (dm) {
    send({ type: "dm", to: dm[1], text: dm[2] });
    show("mine dm", dm[2], `${me} → ${dm[1]}`, "DM");
  } else if (text === "/who") {
    send({ type: "who" });
  } else {
    send({ type: "msg", text });
    show("mine", text, me);
  }
  $("text").value = "";
});

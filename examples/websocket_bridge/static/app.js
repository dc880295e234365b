// The chat page: one WebSocket to the bridge, which is one chat connection.
// Everything from the network is shown with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const socket = new WebSocket(scheme + location.host + "/ws");
let me = null;

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

socket.addEventListener("open", () => {
  setStatus("connected: choose a name");
  $("name").disabled = false;
  $("login").disabled = false;
  $("name").focus();
});

socket.addEventListener("message", (event) => {
  const m = JSON.parse(event.data);
  switch (m.type) {
    case "welcome":
      me = m.name;
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
        $("name").disabled = false;
        $("login").disabled = false;
        $("name").select();
      }
      break;
    case "closed":
      show("info", m.text);
      break;
  }
});

socket.addEventListener("close", () => {
  setStatus("disconnected: reload the page to join again");
  for (const id of ["name", "login", "text", "send"]) $(id).disabled = true;
});

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

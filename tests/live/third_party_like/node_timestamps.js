// Chat server (Node.js). Reads its port from the PORT environment variable.
// Choices: every INFO line carries a timestamp ("INFO 2026-11-29 17:29:45 bob
// joined"); PONG never repeats a token; errors are free text.
// Expected core verdict: conformant.
"use strict";
const net = require("net");

const PORT = process.env.PORT || 4000;
const users = [];

function stamp() {
  return new Date().toISOString().replace("T", " ").slice(0, 19);
}
function tell(user, line) {
  user.socket.write(line + "\r\n");
}
function info(text, except) {
  for (const u of users) if (u.name && u !== except) tell(u, `INFO ${stamp()} ${text}`);
}

net
  .createServer((socket) => {
    const user = { socket, name: null };
    users.push(user);
    let pending = "";
    socket.on("data", (data) => {
      pending += data.toString("utf8");
      const lines = pending.split(/\r?\n/);
      pending = lines.pop();
      for (const line of lines) command(user, line.trim());
    });
    socket.on("close", () => {
      users.splice(users.indexOf(user), 1);
      if (user.name) info(`${user.name} disconnected`);
    });
    socket.on("error", () => {});
  })
  .listen(PORT, "127.0.0.1");

function command(user, line) {
  const space = line.indexOf(" ");
  const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
  const rest = space < 0 ? "" : line.slice(space + 1).trim();
  if (verb === "PING") return tell(user, "PONG");
  if (verb === "LOGIN") {
    if (user.name) return tell(user, "ERR You are already logged in as " + user.name);
    if (!rest || /\s/.test(rest)) return tell(user, "ERR Usernames are one word");
    if (users.some((u) => u.name && u.name.toLowerCase() === rest.toLowerCase()))
      return tell(user, "ERR That name is taken, pick another");
    user.name = rest;
    tell(user, "OK");
    return info(`${user.name} joined`, user);
  }
  if (!user.name) return tell(user, "ERR Log in first: LOGIN <name>");
  switch (verb) {
    case "MSG":
      for (const u of users) if (u.name && u !== user) tell(u, `MSG ${user.name} ${rest}`);
      return;
    case "WHO":
      for (const u of users) if (u.name) tell(user, `USER ${u.name}`);
      return;
    case "DM": {
      const [to, ...words] = rest.split(" ");
      const target = users.find((u) => u.name === to);
      if (!target) return tell(user, `ERR Nobody called ${to} is here`);
      tell(target, `DM ${user.name} ${words.join(" ")}`);
      return tell(user, "OK");
    }
    default:
      return tell(user, `ERR Unknown command ${verb}`);
  }
}

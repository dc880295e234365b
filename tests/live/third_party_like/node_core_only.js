// Minimal chat server (Node.js): only the README's Core features. LOGIN with
// validation, MSG broadcast, disconnect notices, many clients. No PING, WHO,
// DM or idle timeout: anything else is "ERR unknown command".
// Expected core verdict: conformant, with the Bonus features not implemented.
"use strict";
const net = require("net");

const port = parseInt(process.argv[2], 10) || 4000;
const names = new Map(); // socket -> name

const server = net.createServer((socket) => {
  let buf = "";
  socket.on("data", (data) => {
    buf += data;
    const parts = buf.split("\n");
    buf = parts.pop();
    for (const part of parts) onLine(socket, part.trim());
  });
  socket.on("close", () => {
    const name = names.get(socket);
    names.delete(socket);
    if (name) everyone(`INFO ${name} disconnected`);
  });
  socket.on("error", () => {});
});

function everyone(line, except) {
  for (const s of names.keys()) if (s !== except) s.write(line + "\n");
}

function onLine(socket, line) {
  if (line.startsWith("LOGIN ")) {
    const name = line.slice(6).trim();
    if (names.has(socket)) return socket.write("ERR already logged in\n");
    if (!/^\w+$/.test(name)) return socket.write("ERR bad username\n");
    if ([...names.values()].includes(name)) return socket.write("ERR username in use\n");
    names.set(socket, name);
    return socket.write("OK\n");
  }
  if (line.startsWith("MSG ")) {
    const name = names.get(socket);
    if (!name) return socket.write("ERR login first\n");
    return everyone(`MSG ${name} ${line.slice(4)}`, socket);
  }
  socket.write("ERR unknown command\n");
}

server.listen(port, "127.0.0.1");

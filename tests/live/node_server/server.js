// A small chat server in Node.js `net`, written the way many third-party
// servers are: right in the essentials, with its own dialect. It greets each
// connection with a banner and words join notices its own way, so the
// conformance suite's `core` profile passes it as LENIENT(banner,
// join-notice-wording) while `strict` fails exactly those tests.
//
// Run: PORT=4000 node server.js   (or: node server.js 4000)
"use strict";
const net = require("net");

const port = Number(process.argv[2] || process.env.PORT || 4000);
const host = process.env.HOST || "127.0.0.1";
const MAX_LINE = 4096;
const NAME = /^[A-Za-z0-9_-]{1,32}$/;
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
const users = new Map(); // lower-case name -> client, in login order

function send(client, line) {
  if (!client.socket.destroyed) client.socket.write(line + "\n");
}
function others(client, line) {
  for (const c of users.values()) if (c !== client) send(c, line);
}
function leave(client) {
  if (client.name && users.get(client.name.toLowerCase()) === client) {
    users.delete(client.name.toLowerCase());
    others(client, `INFO ${client.name} disconnected`);
  }
  client.name = null;
}

function handle(client, raw) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    return send(client, "ERR invalid-utf8 lines must be UTF-8");
  }
  if (CONTROL.test(text)) return send(client, "ERR invalid-characters no control characters");
  const space = text.indexOf(" ");
  const verb = (space < 0 ? text : text.slice(0, space)).toUpperCase();
  const arg = space < 0 ? "" : text.slice(space + 1);
  const known = ["LOGIN", "MSG", "DM", "WHO", "PING", "HELP", "QUIT"];
  if (!known.includes(verb)) return send(client, "ERR unknown-command try HELP");
  if (["MSG", "DM", "WHO"].includes(verb) && !client.name) return send(client, "ERR not-logged-in LOGIN first");
  switch (verb) {
    case "LOGIN":
      if (client.name) return send(client, "ERR already-logged-in");
      if (!arg) return send(client, "ERR missing-argument");
      if (!NAME.test(arg)) return send(client, "ERR invalid-username");
      if (users.has(arg.toLowerCase())) return send(client, "ERR username-taken");
      client.name = arg;
      users.set(arg.toLowerCase(), client);
      send(client, "OK");
      return others(client, `INFO ${arg} has joined`);
    case "MSG":
      if (!arg) return send(client, "ERR missing-argument");
      return others(client, `MSG ${client.name} ${arg}`);
    case "DM": {
      const cut = arg.indexOf(" ");
      const to = cut < 0 ? arg : arg.slice(0, cut);
      const body = cut < 0 ? "" : arg.slice(cut + 1);
      if (!to || !body) return send(client, "ERR missing-argument");
      const target = users.get(to.toLowerCase());
      if (!target) return send(client, "ERR user-not-found");
      send(target, `DM ${client.name} ${body}`);
      return send(client, "OK");
    }
    case "WHO":
      return client.socket.write([...users.values()].map((c) => `USER ${c.name}\n`).join(""));
    case "PING":
      return send(client, arg ? `PONG ${arg}` : "PONG");
    case "HELP":
      return send(client, "INFO commands: LOGIN <name>, MSG <text>, DM <name> <text>, WHO, PING [token], HELP, QUIT");
    case "QUIT":
      send(client, "OK");
      leave(client);
      client.quit = true;
      return client.socket.end();
  }
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  const client = { socket, name: null, buf: Buffer.alloc(0), skipping: false, quit: false };
  send(client, "* Welcome to node-chat");
  socket.on("data", (chunk) => {
    let data = Buffer.concat([client.buf, chunk]);
    let nl;
    while (!client.quit && (nl = data.indexOf(10)) >= 0) {
      let line = data.subarray(0, nl);
      data = data.subarray(nl + 1);
      if (client.skipping) { client.skipping = false; continue; }
      if (line.length && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
      if (line.length > MAX_LINE) { send(client, "ERR line-too-long"); continue; }
      if (line.length) handle(client, line);
    }
    if (data.length > MAX_LINE + 1) {
      send(client, "ERR line-too-long");
      client.skipping = true;
      data = Buffer.alloc(0);
    }
    client.buf = client.quit ? Buffer.alloc(0) : data;
  });
  socket.on("end", () => { leave(client); socket.end(); });
  socket.on("close", () => leave(client));
  socket.on("error", () => leave(client));
});

server.listen(port, host, () => console.log(`node-chat listening on ${host}:${server.address().port}`));
process.on("SIGTERM", () => process.exit(0));

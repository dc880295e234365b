// Bare reference server: Node.js `net`, one socket.write per recipient.
//
// "What people write instead": the chat server a Node developer writes in an
// afternoon. Same protocol subset as benchmarks/bare_asyncio.py (LOGIN with
// unique names, MSG relayed to every other user, PING, QUIT, INFO joined and
// disconnected notices); setNoDelay(true); no limits (a slow reader's output
// piles up in the socket's buffer).
//
// Run: node benchmarks/bare_node.js --port 0
// Prints "bare_node listening on HOST:PORT". Stops on SIGINT/SIGTERM.
"use strict";

const net = require("net");

function parseArgs(argv) {
  const opts = { host: "127.0.0.1", port: 4000 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--host") opts.host = argv[++i];
    else if (argv[i] === "--port") opts.port = Number(argv[++i]);
  }
  return opts;
}

const members = new Map(); // lower-cased name -> socket

function broadcast(line, sender) {
  for (const sock of members.values()) {
    if (sock !== sender) sock.write(line); // one write per recipient per line
  }
}

function handleLine(sock, raw) {
  if (raw.length === 0) return;
  const sp = raw.indexOf(" ");
  const cmd = (sp < 0 ? raw : raw.slice(0, sp)).toUpperCase();
  const arg = sp < 0 ? "" : raw.slice(sp + 1);
  if (cmd === "MSG") {
    if (sock.chatName === undefined) sock.write("ERR not-logged-in LOGIN first\n");
    else if (!arg) sock.write("ERR missing-argument this command needs an argument\n");
    else broadcast("MSG " + sock.chatName + " " + arg + "\n", sock);
  } else if (cmd === "PING") {
    sock.write(arg ? "PONG " + arg + "\n" : "PONG\n");
  } else if (cmd === "LOGIN") {
    if (sock.chatName !== undefined) {
      sock.write("ERR already-logged-in you are logged in already\n");
    } else if (!arg || arg.length > 32) {
      sock.write("ERR invalid-username use 1 to 32 letters, digits, _ or -\n");
    } else if (members.has(arg.toLowerCase())) {
      sock.write("ERR username-taken that name is in use\n");
    } else {
      sock.chatName = arg;
      members.set(arg.toLowerCase(), sock);
      sock.write("OK\n");
      broadcast("INFO " + arg + " joined\n", sock);
    }
  } else if (cmd === "QUIT") {
    sock.end("OK\n");
  } else {
    sock.write("ERR unknown-command try HELP\n");
  }
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (data) => {
      const lines = (buf + data).split("\n");
      buf = lines.pop();
      for (const raw of lines) handleLine(sock, raw.endsWith("\r") ? raw.slice(0, -1) : raw);
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      if (sock.chatName !== undefined) {
        members.delete(sock.chatName.toLowerCase());
        broadcast("INFO " + sock.chatName + " disconnected\n", sock);
        sock.chatName = undefined;
      }
    });
  });
  server.listen({ host: opts.host, port: opts.port, backlog: 1024 }, () => {
    const addr = server.address();
    console.log(`bare_node listening on ${addr.address}:${addr.port}`);
  });
  const stop = () => process.exit(0);
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main();

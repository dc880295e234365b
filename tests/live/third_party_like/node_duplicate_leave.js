// Chat server (Node.js) with one bug: a user who leaves is announced twice,
// once when the stream ends and again when the socket closes.
// Expected core verdict: not conformant, one root cause (duplicate leave notices).
"use strict";
const net = require("net");

const port = Number(process.argv[2]);
const online = new Map();

function send(sock, line) {
  if (!sock.destroyed && sock.writable) sock.write(line + "\n");
}

net
  .createServer((sock) => {
    let me = null;
    let rest = "";
    sock.on("data", (d) => {
      rest += d;
      let i;
      while ((i = rest.indexOf("\n")) !== -1) {
        run(rest.slice(0, i).replace("\r", ""));
        rest = rest.slice(i + 1);
      }
    });
    const announce = () => {
      if (me) for (const [n, s] of online) if (n !== me) send(s, `INFO ${me} disconnected`);
    };
    sock.on("end", announce); // bug: 'close' announces it again
    sock.on("close", () => {
      announce();
      if (me && online.get(me) === sock) online.delete(me);
    });
    sock.on("error", () => {});

    function run(line) {
      const [cmd, arg = "", ...more] = line.split(" ");
      switch (cmd.toUpperCase()) {
        case "LOGIN":
          if (me) return send(sock, "ERR already-logged-in");
          if (!/^[a-zA-Z0-9]+$/.test(arg)) return send(sock, "ERR invalid-username");
          if (online.has(arg)) return send(sock, "ERR username-taken");
          me = arg;
          online.set(me, sock);
          send(sock, "OK");
          for (const [n, s] of online) if (n !== me) send(s, `INFO ${me} joined`);
          return;
        case "PING":
          return send(sock, arg ? `PONG ${arg}` : "PONG");
        case "MSG":
          if (!me) return send(sock, "ERR not-logged-in");
          for (const [n, s] of online) if (n !== me) send(s, `MSG ${me} ${[arg, ...more].join(" ")}`);
          return;
        case "WHO":
          if (!me) return send(sock, "ERR not-logged-in");
          for (const n of online.keys()) send(sock, `USER ${n}`);
          return;
        case "DM":
          if (!me) return send(sock, "ERR not-logged-in");
          if (!online.has(arg)) return send(sock, "ERR user-not-found");
          send(online.get(arg), `DM ${me} ${more.join(" ")}`);
          return send(sock, "OK");
        default:
          return send(sock, "ERR unknown-command");
      }
    }
  })
  .listen(port, "127.0.0.1");

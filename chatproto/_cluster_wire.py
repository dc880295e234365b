"""What a cluster node says to Redis and to the other nodes (docs/cluster.md).

Owns: encoding RESP commands (the trivial direction; replies are parsed at
the edge, by hiredis, into the plain values of :data:`BusItem`), the Lua
scripts that make every presence change atomic in Redis, and the form of the
messages on the bus channel. Never opens a connection or parses RESP.

The bus messages, each one PUBLISH on ``<prefix>bus`` (tokens are
``<node>/<serial>``, one per claim; names and node ids hold no space)::

    J <seq> <token> <name>    a claim succeeded: the user joins (seq: login order)
    L <token> <name>          the user of that claim left (released or reaped)
    M <node> <line>           a MSG line to deliver to every user of every other node
    D <token> <line>          a DM line for the user of that claim
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Union

__all__ = [
    "SCRIPTS",
    "BusError",
    "BusItem",
    "Script",
    "command",
]


@dataclass(frozen=True, slots=True)
class BusError:
    """An error reply from Redis (``-ERR ...``)."""

    message: str


#: One parsed item from the Redis connection, as the edge hands it to the
#: core: a push (pub/sub, RESP3 ``>``) is a ``tuple`` ``(kind, channel,
#: payload...)``; anything else is the reply to the oldest command not yet
#: answered (``bytes``, ``int``, ``None``, ``list``, ``dict`` or
#: :class:`BusError`).
BusItem = Union[tuple[object, ...], bytes, int, None, list[object], dict[object, object], BusError]


def _bulk(arg: bytes | str | int | float) -> bytes:
    data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
    return b"$%d\r\n%s\r\n" % (len(data), data)


def command(*args: bytes | str | int | float) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


def publish_prefix(channel: str) -> bytes:
    """``PUBLISH <channel>`` as RESP, waiting for its payload (see :func:`publish`)."""
    return b"*3\r\n" + _bulk("PUBLISH") + _bulk(channel)


def publish(prefix: bytes, payload: bytes) -> bytes:
    """A whole ``PUBLISH``: the pre-encoded ``prefix`` and one payload."""
    return b"%s$%d\r\n%s\r\n" % (prefix, len(payload), payload)


# ---------------------------------------------------------------- scripts
#
# Keys (P is the prefix): P..'users' hash lower-case name -> "<seq> <token>
# <name>"; P..'node:'..id set of the lower-case names a node owns; P..'nodes'
# hash node id -> incarnation; P..'leases' sorted set node id -> end of its
# lease (Redis's clock, ms); P..'seq' login counter; P..'tick' when a script
# last ran (Redis's clock, ms). Scripts compute key names from the prefix:
# fine on one Redis, not on Redis Cluster (docs/cluster.md says what changes).

_PRELUDE: Final = """
local P = ARGV[1]
local USERS, NODES, LEASES, BUS = P..'users', P..'nodes', P..'leases', P..'bus'
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function owner(v)
  return string.match(v, '^%d+ (%S+) ')
end
-- Release every user of a node (one L each) and forget the node.
local function drop_node(node)
  local set = P..'node:'..node
  local mine = node..'/'
  for _, key in ipairs(redis.call('SMEMBERS', set)) do
    local v = redis.call('HGET', USERS, key)
    if v then
      local _, token, name = string.match(v, '^(%d+) (%S+) (%S+)$')
      if string.sub(token, 1, #mine) == mine then
        redis.call('HDEL', USERS, key)
        redis.call('PUBLISH', BUS, 'L '..token..' '..name)
      end
    end
  end
  redis.call('DEL', set)
  redis.call('HDEL', NODES, node)
  redis.call('ZREM', LEASES, node)
end
-- Drop the nodes whose lease is over. If no script ran for a whole lease,
-- Redis itself stood still (stopped, or every node was away): every lease
-- gets one more, instead of every node being declared dead at once.
local function reap(now, lease)
  local last = tonumber(redis.call('GET', P..'tick') or '0')
  redis.call('SET', P..'tick', now)
  if last > 0 and now - last > lease then
    for _, node in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
      redis.call('ZADD', LEASES, now + lease, node)
    end
    return
  end
  for _, node in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now)) do
    drop_node(node)
  end
end
-- Claim a free name: its login seq (this claim's own, if it holds the name
-- already: a claim sent twice across a reconnect), or 0 if it is taken.
local function claim(node, token, name)
  local key = string.lower(name)
  local v = redis.call('HGET', USERS, key)
  if v then
    if owner(v) == token then return tonumber(string.match(v, '^%d+')) end
    return 0
  end
  local seq = redis.call('INCR', P..'seq')
  redis.call('HSET', USERS, key, seq..' '..token..' '..name)
  redis.call('SADD', P..'node:'..node, key)
  redis.call('PUBLISH', BUS, 'J '..seq..' '..token..' '..name)
  return seq
end
"""

#: ARGV: prefix, node, incarnation, lease ms. Renew the lease and reap the
#: dead. 1: renewed; 0: this node is not registered (it was reaped).
_HEARTBEAT: Final = """
local node, inc, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
reap(now, lease)
if redis.call('HGET', NODES, node) ~= inc then return 0 end
redis.call('ZADD', LEASES, now + lease, node)
return 1
"""

#: ARGV: prefix, node, incarnation, lease ms, then token, name for every
#: user the node has and every claim it waits for. Register (again) and make
#: Redis hold exactly these users for the node: release the others, claim
#: the missing ones. Returns {0} if another live process has the node id,
#: else {1, lost tokens (taken by someone else meanwhile), HGETALL users,
#: HKEYS nodes}.
_REGISTER: Final = """
local node, inc, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
reap(now, lease)
local cur = redis.call('HGET', NODES, node)
if cur and cur ~= inc then return {0} end
redis.call('HSET', NODES, node, inc)
redis.call('ZADD', LEASES, now + lease, node)
local set = P..'node:'..node
local wanted = {}
for i = 5, #ARGV, 2 do wanted[string.lower(ARGV[i + 1])] = ARGV[i] end
for _, key in ipairs(redis.call('SMEMBERS', set)) do
  local v = redis.call('HGET', USERS, key)
  local token = v and owner(v)
  if token ~= wanted[key] then
    redis.call('SREM', set, key)
    if token and string.sub(token, 1, #node + 1) == node..'/' then
      local name = string.match(v, '(%S+)$')
      redis.call('HDEL', USERS, key)
      redis.call('PUBLISH', BUS, 'L '..token..' '..name)
    end
  end
end
local lost = {}
for i = 5, #ARGV, 2 do
  local token, name = ARGV[i], ARGV[i + 1]
  local v = redis.call('HGET', USERS, string.lower(name))
  if not v then
    claim(node, token, name)
  elseif owner(v) ~= token then
    table.insert(lost, token)
  else
    redis.call('SADD', set, string.lower(name))
  end
end
return {1, lost, redis.call('HGETALL', USERS), redis.call('HKEYS', NODES)}
"""

#: ARGV: prefix, node, incarnation, lease ms, token, name. The login seq, 0
#: if the name is taken, -1 if this node is not registered.
_CLAIM: Final = """
local now = now_ms()
reap(now, tonumber(ARGV[4]))
if redis.call('HGET', NODES, ARGV[2]) ~= ARGV[3] then return -1 end
return claim(ARGV[2], ARGV[5], ARGV[6])
"""

#: ARGV: prefix, node, token, name. Free the name if that claim still owns it.
_RELEASE: Final = """
local key = string.lower(ARGV[4])
local v = redis.call('HGET', USERS, key)
if not v or owner(v) ~= ARGV[3] then return 0 end
redis.call('HDEL', USERS, key)
redis.call('SREM', P..'node:'..ARGV[2], key)
redis.call('PUBLISH', BUS, 'L '..ARGV[3]..' '..ARGV[4])
return 1
"""

#: ARGV: prefix, node, incarnation. A node shutting down: all its users leave.
_LEAVE: Final = """
if redis.call('HGET', NODES, ARGV[2]) ~= ARGV[3] then return 0 end
drop_node(ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, its body sent once per connection (SCRIPT LOAD), then run by SHA."""

    body: str
    sha: str

    @classmethod
    def of(cls, body: str) -> Script:
        full = _PRELUDE + body
        return cls(full, hashlib.sha1(full.encode("utf-8")).hexdigest())


@dataclass(frozen=True, slots=True)
class Scripts:
    """Every script a node runs."""

    heartbeat: Script
    register: Script
    claim: Script
    release: Script
    leave: Script

    def all(self) -> tuple[Script, ...]:
        return (self.heartbeat, self.register, self.claim, self.release, self.leave)


SCRIPTS: Final = Scripts(
    Script.of(_HEARTBEAT),
    Script.of(_REGISTER),
    Script.of(_CLAIM),
    Script.of(_RELEASE),
    Script.of(_LEAVE),
)

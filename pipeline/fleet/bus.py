"""The escalation bus: Redis Streams with consumer groups (the only module that imports ``redis``).

Layout under ``<prefix>`` (default ``edgewatch``):

* ``<prefix>:req:<priority>`` — one request stream per `Priority` (``safety``, ``low_confidence``,
  ``flag_flip``, ``scene_change``, ``audit``), each with the consumer group ``<prefix>:teachers``.
  Workers read the streams highest priority first, so safety goes first across the whole site.
* ``<prefix>:reply:<box>`` — each edge box's reply stream (verdicts and shed notices), read by
  the box through its own group ``<prefix>:box`` so its position survives reconnects.

Requests enter through one Lua script (`admit`), atomically across every box: while the
non-safety streams together hold fewer than ``capacity`` entries (waiting or in review) the
request is added; when full, the oldest *undelivered* entry of the lowest priority at or below
the incoming one is deleted and its box is told (a ``shed`` reply, reason ``displaced``) — the
local queue's rule — and when there is none, the incoming request is shed (``lowest_priority``).
Safety requests skip the check: that stream is never trimmed and nothing in it is shed.

A worker answers with `answer`: the reply ``XADD``, the ``XACK`` and the ``XDEL`` of the request
run in one ``MULTI`` transaction, so a request is acknowledged only together with its verdict.
A worker that dies leaves its entries pending; `reclaim` (``XAUTOCLAIM``) hands them to another
worker once idle past the visibility timeout, and `renew` keeps a slow review from looking dead.

Every Redis failure surfaces as `BusUnavailable` (cannot reach or talk to Redis) or `BusError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from pipeline.errors import EdgewatchError
from pipeline.records import Priority

log = logging.getLogger("edgewatch.fleet.bus")

Fields = dict[bytes, bytes]


class BusError(EdgewatchError):
    """Redis answered, but not as expected (a bad URL, a wrong password, an unknown command)."""


class BusUnavailable(BusError):
    """Redis cannot be reached or stopped answering (refused, timed out, loading, connection lost)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as read: which stream, its id and its fields (bytes keys and values)."""

    stream: str
    entry_id: str
    fields: Fields


@dataclass(frozen=True, slots=True)
class Admission:
    outcome: Literal["queued", "displaced", "shed"]
    entry_id: str
    """The new entry's id ('' when shed)."""
    victim_rid: str = ""
    """The request deleted to make room (outcome 'displaced')."""


@dataclass(frozen=True, slots=True)
class StreamFigures:
    length: int
    """Entries in the stream: waiting plus in review (answered ones are deleted)."""
    pending: int
    """Delivered to a worker and not yet acknowledged."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and the doctor)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


def priority_order() -> list[Priority]:
    """Priorities from the highest (served first) to the lowest."""
    return sorted(Priority, key=lambda p: p.value, reverse=True)


# KEYS: the non-safety request streams, lowest priority first, then the target stream.
# ARGV: capacity, rank of the target among KEYS (0 = safety), group, reply stream prefix,
#       reply max length, then the request's field/value pairs.
_ADMIT = """
local n = #KEYS - 1
local capacity = tonumber(ARGV[1])
local rank = tonumber(ARGV[2])
local group = ARGV[3]
local target = KEYS[n + 1]
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
if rank == 0 then
  return {'queued', redis.call('XADD', target, '*', unpack(fields))}
end
local depth = 0
for i = 1, n do depth = depth + redis.call('XLEN', KEYS[i]) end
if depth < capacity then
  return {'queued', redis.call('XADD', target, '*', unpack(fields))}
end
for i = 1, rank do
  local last = '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[i])) do
    local name, delivered
    for j = 1, #g, 2 do
      if g[j] == 'name' then name = g[j + 1] end
      if g[j] == 'last-delivered-id' then delivered = g[j + 1] end
    end
    if name == group then last = delivered end
  end
  local oldest = redis.call('XRANGE', KEYS[i], '(' .. last, '+', 'COUNT', 1)
  if #oldest > 0 then
    local vid, vf = oldest[1][1], oldest[1][2]
    local rid, box = '', ''
    for j = 1, #vf, 2 do
      if vf[j] == 'rid' then rid = vf[j + 1] end
      if vf[j] == 'box' then box = vf[j + 1] end
    end
    redis.call('XDEL', KEYS[i], vid)
    local detail = 'site queue full (' .. capacity .. '): oldest of the lowest priority, displaced by a newer request'
    redis.call('XADD', ARGV[4] .. box, 'MAXLEN', '~', ARGV[5], '*',
               'kind', 'shed', 'rid', rid, 'reason', 'displaced', 'detail', detail)
    return {'displaced', redis.call('XADD', target, '*', unpack(fields)), rid}
  end
end
return {'shed', ''}
"""


class RedisBus:
    """A connection to the escalation bus.  Thread-safe (redis-py pools its connections)."""

    def __init__(self, url: str, prefix: str = "edgewatch", *, socket_timeout_s: float = 2.0) -> None:
        self.url = url
        self.shown_url = mask_url(url)
        self.prefix = prefix
        self.group = f"{prefix}:teachers"
        self.box_group = f"{prefix}:box"
        self._timeout_s = socket_timeout_s
        try:
            self._redis = redis.Redis.from_url(
                url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
                decode_responses=False,
                # One immediate retry: the first command on a pooled connection to a restarted Redis fails
                # once and succeeds on a fresh one.  No backoff: a Redis that is down must be seen at once.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise BusError(f"bad Redis URL {self.shown_url}: {exc}") from None
        self._admit = self._redis.register_script(_ADMIT)
        self._groups_ready: set[str] = set()

    # -- names -------------------------------------------------------------------------------

    def request_stream(self, priority: Priority) -> str:
        return f"{self.prefix}:req:{priority.name.lower()}"

    def reply_stream(self, box: str) -> str:
        return f"{self.prefix}:reply:{box}"

    @property
    def request_streams(self) -> list[str]:
        """Highest priority first: the order workers read in."""
        return [self.request_stream(p) for p in priority_order()]

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202 - thin wrapper over redis-py
        try:
            return fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._groups_ready.clear()  # a restarted Redis may have lost groups made since its last save
            raise BusUnavailable(f"Redis at {self.shown_url} unreachable ({what}): {exc}") from None
        except ResponseError as exc:
            if str(exc).startswith(("LOADING", "MASTERDOWN", "BUSY ")):
                raise BusUnavailable(f"Redis at {self.shown_url} not ready ({what}): {exc}") from None
            raise BusError(f"Redis at {self.shown_url} refused {what}: {exc}") from None
        except redis.RedisError as exc:
            raise BusError(f"Redis at {self.shown_url} failed {what}: {exc}") from None

    def ping(self) -> None:
        self._call("PING", self._redis.ping)

    def server_info(self) -> dict[str, str]:
        """Version and persistence settings, for the doctor."""
        info = self._call("INFO", self._redis.info, "server")
        persistence = self._call("INFO", self._redis.info, "persistence")
        return {"version": str(info.get("redis_version", "?")), "aof": "on" if persistence.get("aof_enabled") else "off"}

    def _ensure_group(self, stream: str, group: str) -> None:
        key = f"{stream}\0{group}"
        if key in self._groups_ready:
            return
        try:
            self._call("XGROUP CREATE", self._redis.xgroup_create, stream, group, id="0", mkstream=True)
        except BusError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add(key)

    def ensure_request_groups(self) -> None:
        for stream in self.request_streams:
            self._ensure_group(stream, self.group)

    # -- the box's side ------------------------------------------------------------------------

    def admit(self, priority: Priority, fields: Fields, capacity: int, reply_max_len: int) -> Admission:
        """Add a request under the site-wide bound (see the module doc); atomic across boxes."""
        self.ensure_request_groups()
        lowest_first = [self.request_stream(p) for p in sorted(Priority, key=lambda p: p.value) if p < Priority.SAFETY]
        target = self.request_stream(priority)
        rank = 0 if priority >= Priority.SAFETY else lowest_first.index(target) + 1
        argv: list[bytes | str | int] = [capacity, rank, self.group, f"{self.prefix}:reply:", reply_max_len]
        for key, value in fields.items():
            argv += [key, value]
        out = self._call("admission", self._admit, keys=[*lowest_first, target], args=argv)
        outcome = out[0].decode()
        entry_id = out[1].decode() if out[1] else ""
        victim = out[2].decode() if len(out) > 2 else ""
        return Admission(outcome, entry_id, victim)  # type: ignore[arg-type]

    def read_replies(self, box: str, consumer: str, *, count: int, block_ms: int) -> list[Entry]:
        """New replies for ``box`` (and any this consumer read but did not acknowledge before)."""
        stream = self.reply_stream(box)
        self._ensure_group(stream, self.box_group)
        out: list[Entry] = []
        for start in ("0", ">"):  # own unacknowledged entries first (after a reconnect), then new ones
            got = self._call("XREADGROUP", self._redis.xreadgroup, self.box_group, consumer, {stream: start},
                             count=count, block=None if start == "0" or out else block_ms)
            out += [Entry(stream, eid.decode(), fields) for _, entries in got or [] for eid, fields in entries if fields]
            if out:
                break
        return out

    def ack_replies(self, box: str, entry_ids: list[str]) -> None:
        if not entry_ids:
            return
        stream = self.reply_stream(box)
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(stream, self.box_group, *entry_ids)
        pipe.xdel(stream, *entry_ids)
        self._call("XACK replies", pipe.execute)

    # -- the worker's side ---------------------------------------------------------------------

    def read_request(self, consumer: str, *, block_ms: int) -> Entry | None:
        """The next request, highest priority first; blocks up to ``block_ms`` when all are empty."""
        self.ensure_request_groups()
        for stream in self.request_streams:
            got = self._call("XREADGROUP", self._redis.xreadgroup, self.group, consumer, {stream: ">"}, count=1)
            entry = _first(got)
            if entry is not None:
                return entry
        got = self._call("XREADGROUP", self._redis.xreadgroup, self.group, consumer,
                         {s: ">" for s in self.request_streams}, count=1, block=block_ms)
        return _first(got)

    def reclaim(self, consumer: str, *, min_idle_ms: int, count: int = 1) -> list[Entry]:
        """Requests left pending by a worker idle past ``min_idle_ms`` (it died), now claimed by ``consumer``."""
        self.ensure_request_groups()
        out: list[Entry] = []
        for stream in self.request_streams:
            got = self._call("XAUTOCLAIM", self._redis.xautoclaim, stream, self.group, consumer,
                             min_idle_time=min_idle_ms, start_id="0-0", count=count)
            # [next start, [(id, fields), ...], [deleted ids]]: a deleted entry (answered or displaced) has no fields.
            out += [Entry(stream, eid.decode(), fields) for eid, fields in got[1] if fields]
            if len(out) >= count:
                break
        return out

    def renew(self, entry: Entry, consumer: str) -> None:
        """Reset the entry's idle time: this worker is still reviewing it."""
        self._call("XCLAIM", self._redis.xclaim, entry.stream, self.group, consumer, 0, [entry.entry_id], justid=True)

    def answer(self, entry: Entry, box: str, reply: Fields, reply_max_len: int) -> None:
        """Write the reply, then acknowledge and delete the request — one transaction."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(self.reply_stream(box), reply, maxlen=reply_max_len, approximate=True)
        pipe.xack(entry.stream, self.group, entry.entry_id)
        pipe.xdel(entry.stream, entry.entry_id)
        self._call("answer", pipe.execute)

    def discard(self, entry: Entry) -> None:
        """Acknowledge and delete a request that names no box to answer (malformed)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(entry.stream, self.group, entry.entry_id)
        pipe.xdel(entry.stream, entry.entry_id)
        self._call("discard", pipe.execute)

    # -- figures ---------------------------------------------------------------------------------

    def figures(self) -> dict[Priority, StreamFigures]:
        """Length and pending count of each request stream."""
        self.ensure_request_groups()
        pipe = self._redis.pipeline(transaction=False)
        order = priority_order()
        for p in order:
            pipe.xlen(self.request_stream(p))
            pipe.xpending(self.request_stream(p), self.group)
        raw = self._call("figures", pipe.execute)
        return {p: StreamFigures(int(raw[2 * i]), int(raw[2 * i + 1]["pending"])) for i, p in enumerate(order)}

    def close(self) -> None:
        try:
            self._redis.close()
        except redis.RedisError:
            log.debug("closing the Redis client failed", exc_info=True)


def _first(got: list | None) -> Entry | None:  # noqa: ANN001 - redis-py's nested reply
    for stream, entries in got or []:
        for eid, fields in entries:
            if fields:
                return Entry(stream.decode(), eid.decode(), fields)
    return None

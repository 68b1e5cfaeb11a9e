"""The key-value and stream port on Redis (or Valkey): strings, hashes, Lua for atomic
counters, and Redis Streams for task streams."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

# Count one on each counter; a new counter starts its window (a running one keeps its
# expiry: attempts while locked out do not extend the lockout).
_COUNT = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('INCR', key)
  if out[i] == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return out
"""
# Give one back, never creating a counter without expiry.
_UNCOUNT = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""
# Compare and expire / delete (a lease renewed or released by its holder only): 1, or 0
# when the key holds another value or none.
_EXPIRE_IF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""
_DELETE_IF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
_FIELD = b"data"  # a task stream entry's one field
_FENCE = ".fence"  # beside a stream: the fence of its writer (see claim)

# KEYS: stream, its fence; ARGV: fence, ttl. Take the stream unless a higher fence holds it;
# its length, or -1 when refused.
_CLAIM = """
local held = redis.call('GET', KEYS[2])
if held and tonumber(held) > tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return redis.call('XLEN', KEYS[1])
"""
# KEYS: stream, its fence; ARGV: fence, ttl, entries. Append all while the fence holds the
# stream: 1, or 0 (nothing written).
_FENCED_APPEND = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 3, #ARGV do redis.call('XADD', KEYS[1], '*', 'data', ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


class RedisKeyValueStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "") -> None:
        self.client = client  # adapters/redis_client.py
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._fenced_append = client.register_script(_FENCED_APPEND)
        self._expire_if = client.register_script(_EXPIRE_IF)
        self._delete_if = client.register_script(_DELETE_IF)

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def get(self, key: str) -> str | None:
        return _text(await self.client.get(self._key(key)))

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []  # MGET takes at least one key
        return [_text(v) for v in await self.client.mget([self._key(k) for k in keys])]

    async def set(self, key: str, value: str, *, ttl: int | None = None,
                  only_if_new: bool = False) -> bool:
        return bool(await self.client.set(self._key(key), value, ex=ttl, nx=only_if_new))

    async def take(self, key: str) -> str | None:
        return _text(await self.client.getdel(self._key(key)))

    async def delete(self, key: str) -> None:
        await self.client.delete(self._key(key))

    async def expire(self, key: str, ttl: int) -> bool:
        return bool(await self.client.expire(self._key(key), ttl))

    async def expire_if(self, key: str, value: str, ttl: int) -> bool:
        return bool(await self._expire_if(keys=[self._key(key)], args=[value, ttl]))

    async def delete_if(self, key: str, value: str) -> bool:
        return bool(await self._delete_if(keys=[self._key(key)], args=[value]))

    async def count(self, keys: Sequence[str], window: int) -> list[int]:
        counts = await self.client.eval(_COUNT, len(keys), *map(self._key, keys), window)
        return [int(n) for n in counts]

    async def uncount(self, key: str) -> None:
        await self.client.eval(_UNCOUNT, 1, self._key(key))

    async def set_field(self, key: str, field: str, value: str) -> None:
        await self.client.hset(self._key(key), field, value)

    async def get_fields(self, key: str, fields: Sequence[str]) -> list[str | None]:
        if not fields:
            return []
        return [_text(v) for v in await self.client.hmget(self._key(key), list(fields))]

    async def append(self, stream: str, entries: Sequence[bytes], ttl: int,
                     fence: int | None = None) -> bool:
        key = self._key(stream)
        if fence is not None:
            return bool(await self._fenced_append(keys=[key, key + _FENCE],
                                                  args=[fence, ttl, *entries]))
        async with self.client.pipeline(transaction=True) as pipe:  # MULTI/EXEC
            for entry in entries:
                pipe.xadd(key, {_FIELD: entry})
            pipe.expire(key, ttl)
            await pipe.execute()
        return True

    async def claim(self, stream: str, fence: int, ttl: int) -> int | None:
        key = self._key(stream)
        written = int(await self._claim(keys=[key, key + _FENCE], args=[fence, ttl]))
        return None if written < 0 else written

    async def length(self, stream: str) -> int:
        return int(await self.client.xlen(self._key(stream)))

    async def newest(self, stream: str, count: int) -> list[tuple[str, bytes]]:
        found = await self.client.xrevrange(self._key(stream), count=count)
        return [(entry_id.decode(), fields[_FIELD]) for entry_id, fields in found]

    async def has(self, stream: str, entry_id: str) -> bool:
        return bool(await self.client.xrange(self._key(stream), min=entry_id, max=entry_id,
                                             count=1))

    async def read(self, stream: str, after: str, count: int,
                   block_ms: int) -> list[tuple[str, bytes]]:
        # Short blocking reads: the client's socket timeout (5 s) bounds them. (BLOCK 0
        # would wait forever: no wait at all is no BLOCK.)
        reply = await self.client.xread({self._key(stream): after}, count=count,
                                        block=block_ms if block_ms > 0 else None)
        return [(entry_id.decode(), fields[_FIELD]) for entry_id, fields in reply[0][1]
                ] if reply else []

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()

"""A cache kept in the cluster's Redis: one for every worker of every member.

Keys, under `zato:<cluster>:cache:<name>:` (the name percent-encoded, so that no name or key
can reach another cache's keys):
- `entry:<key>`: a hash, `v` the value's compact JSON text (the same text a local cache keeps,
  measured against max_item_size the same way) and `p` its expiry period in ms; the key
  itself expires at its deadline (PEXPIREAT; PEXPIRETIME, Redis 7, reads it back): Redis'
  own expiry, so a value expired is gone for every reader at once, whatever happens to the
  writer.
- `lru`: a sorted set of keys by last use (Redis' clock, µs): max_size trims its lowest.
- `deadlines`: a sorted set of keys by deadline, to drop expired keys from `lru` before
  counting (an expired key must not push a live one out).

Each operation is one Lua script, so it is atomic across every worker and member and costs
one round trip. Time is Redis' (TIME), never a member's: hosts' clocks may differ.

A worker opens its own client on the first call on a cluster cache (the master's connection
is closed in workers after fork; see thread.close_in_child), through connection.py and
with `[cluster] cache_timeout` as the time limit to connect and for each reply. gevent's
patched sockets make the wait cooperative. A call that fails (Redis down, slow, refusing
the password) raises CacheError naming the cache, the operation and the URL, redacted.
redis-py is imported on that first call, not before: a server whose caches are all local
never loads it in a worker.
"""

import json
from urllib.parse import quote

from zato_daemon.cache.backend import CacheBackend
from zato_daemon.cache.definition import CacheError
from zato_daemon.cluster import settings as cluster_settings
from zato_daemon.errors import ZatoDaemonError

# The time of Redis in ms, and dropping keys whose deadline passed from the LRU index.
# KEYS[1] lru, KEYS[2] deadlines.
_PROLOGUE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Recency in microseconds: two uses a millisecond apart must not tie.
local used = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
-- Numbers go to Redis as integer text: Lua's own conversion may write 1.7e+15.
local function int(number)
    return string.format('%d', number)
end
local function purge()
    local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', int(now))
    for _, member in ipairs(gone) do
        redis.call('ZREM', KEYS[1], member)
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
end
"""

# KEYS[3] the entry; ARGV[1] the key, ARGV[2] '1' to extend on get. -> the JSON text or nil.
GET = _PROLOGUE + """
local found = redis.call('HMGET', KEYS[3], 'v', 'p')
if not found[1] then
    return false
end
redis.call('ZADD', KEYS[1], int(used), ARGV[1])
if ARGV[2] == '1' and found[2] then
    local deadline = now + tonumber(found[2])
    redis.call('PEXPIREAT', KEYS[3], int(deadline))
    redis.call('ZADD', KEYS[2], int(deadline), ARGV[1])
end
return found[1]
"""

# KEYS[3] the entry; ARGV: key, JSON text, expiry in ms ('' none given, '0' never), '1' to
# extend on set, max_size, the entries' prefix. -> how many live keys were evicted.
SET = _PROLOGUE + """
local period, deadline = nil, nil
if ARGV[3] == '' then
    local previous = redis.call('HGET', KEYS[3], 'p')
    if previous then
        period = tonumber(previous)
        if ARGV[4] == '1' then
            deadline = now + period
        else
            deadline = redis.call('PEXPIRETIME', KEYS[3])
        end
    end
elseif ARGV[3] ~= '0' then
    period = tonumber(ARGV[3])
    deadline = now + period
end
redis.call('DEL', KEYS[3])
if period then
    redis.call('HSET', KEYS[3], 'v', ARGV[2], 'p', int(period))
    redis.call('PEXPIREAT', KEYS[3], int(deadline))
    redis.call('ZADD', KEYS[2], int(deadline), ARGV[1])
else
    redis.call('HSET', KEYS[3], 'v', ARGV[2])
    redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('ZADD', KEYS[1], int(used), ARGV[1])
purge()
local evicted = 0
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[1], excess)
    for i = 1, #oldest, 2 do
        redis.call('ZREM', KEYS[2], oldest[i])
        evicted = evicted + redis.call('DEL', ARGV[6] .. oldest[i])
    end
end
return evicted
"""

# KEYS[3] the entry; ARGV[1] the key. -> 1 if it was there and live.
DELETE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[3])
"""

# ARGV[1] the entries' prefix, ARGV[2] 'clear' to remove them. -> the live keys, least
# recently used first ('clear': how many there were). A key in the index whose entry is gone
# (removed by hand, or by Redis under maxmemory) leaves the index here.
KEYS_OR_CLEAR = _PROLOGUE + """
purge()
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local live = {}
for _, member in ipairs(members) do
    if redis.call('EXISTS', ARGV[1] .. member) == 1 then
        live[#live + 1] = member
    else
        redis.call('ZREM', KEYS[1], member)
    end
end
if ARGV[2] == 'clear' then
    for _, member in ipairs(live) do
        redis.call('DEL', ARGV[1] .. member)
    end
    redis.call('DEL', KEYS[1], KEYS[2])
    return #live
end
return live
"""


# Seconds. Deadlines are ms since the epoch in Redis (an int64) and in Lua (a double, exact
# to 2**53): 100 years keeps both exact, where any finite number of seconds would not.
MAX_EXPIRY = 100 * 365 * 86400


def key_prefix(cluster_name, cache_name):
    """`zato:<cluster>:cache:<name>:`; the name percent-encoded (':' and '%' among others),
    so that a name holding ':entry:' cannot collide with another cache's entries."""
    return f'zato:{cluster_name}:cache:{quote(cache_name, safe="")}:'


class RedisLink:
    """One worker's client of the cluster's Redis for its cluster caches, made on first use.

    `config` is the worker's loaded configuration: the password file is read, and redis-py
    imported, only when a cluster cache is first used.
    """

    def __init__(self, config):
        self.config = config
        self.timeout = config.server_config.cluster.cache_timeout
        self.settings = None
        self._client = None
        self._scripts = None
        # connection.py and its REDIS_ERRORS, once imported.
        self._connection = None
        self._errors = ()

    @property
    def cluster_name(self):
        return self.config.server_config.cluster.name

    def cache(self, definition):
        """A ClusterCache of `definition` on this link."""
        return ClusterCache(definition, self)

    def run(self, cache_name, operation, script, keys, args):
        """Runs one of the scripts; raises CacheError when Redis cannot answer in time."""
        client = self.client(cache_name, operation)
        try:
            return self._scripts[script](keys=keys, args=args, client=client)
        except self._errors as exc:
            raise self.failed(cache_name, operation, self._connection.describe_error(exc, self.settings)) from None
        except UnicodeDecodeError:
            # Written by something else than a cache of ours: anyone who can write Redis can.
            raise self.failed(cache_name, operation, 'Redis holds bytes that are not UTF-8 text under the '
                                                      "cache's keys") from None

    def exists(self, cache_name, key):
        """Whether a key is there (`in`): not a use, no script."""
        client = self.client(cache_name, 'contains')
        try:
            return bool(client.exists(key))
        except self._errors as exc:
            raise self.failed(cache_name, 'contains', self._connection.describe_error(exc, self.settings)) from None

    @staticmethod
    def failed(cache_name, operation, why):
        return CacheError(f'cache {cache_name!r}: {operation} failed: {why}')

    def client(self, cache_name, operation):
        """The client, made on the first call; CacheError (naming the cache and the operation)
        when the settings cannot be read."""
        if self._client is not None:
            return self._client
        # Here, not at import: only a server that uses a cluster cache loads redis-py.
        from zato_daemon.cluster import connection
        try:
            settings = cluster_settings.from_config(self.config)
        except ZatoDaemonError as exc:
            # The password file went since start: every call says so until it is back.
            raise self.failed(cache_name, operation, exc) from None
        if settings is None:
            raise self.failed(cache_name, operation, 'this server has no [cluster] redis_url')
        client = connection.connect(settings, self.timeout)
        client.connection_pool.connection_kwargs['client_name'] = 'zato-daemon-cache'
        self._connection = connection
        self._errors = connection.REDIS_ERRORS
        self.settings = settings
        self._scripts = {name: client.register_script(text) for name, text in
                         (('get', GET), ('set', SET), ('delete', DELETE), ('keys', KEYS_OR_CLEAR))}
        self._client = client
        return client

    def close(self):
        """Closes the client's connections; the worker calls it at exit (through the registry)."""
        if self._client is not None:
            try:
                self._client.connection_pool.disconnect()
            except self._errors:
                pass
            self._client = None


class ClusterCache(CacheBackend):
    """A cache whose entries live in the cluster's Redis; the API of lru.Cache.

    Holds nothing but counts: every call asks Redis, so every worker and member sees the
    same entries at once.
    """

    def __init__(self, definition, link):
        super().__init__(definition, None)
        self.link = link
        self.prefix = key_prefix(link.cluster_name, definition.name)
        self.entry_prefix = self.prefix + 'entry:'
        self._index = [self.prefix + 'lru', self.prefix + 'deadlines']

    def _run(self, operation, script, key, args):
        keys = self._index if key is None else [*self._index, self.entry_prefix + key]
        return self.link.run(self.name, operation, script, keys, args)

    def get(self, key, default=None):
        self.check_key(key)
        text = self._run('get', 'get', key, [key, _flag(self.definition.extend_expiry_on_get)])
        if text is None:
            self.stats.misses += 1
            return default
        self.stats.hits += 1
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise self.link.failed(self.name, 'get', 'the value in Redis is not JSON '
                                                      '(not written by a cache of ours)') from None

    def set(self, key, value, expiry=None):
        self.check_key(key)
        text = self.encode(key, value)
        expiry = self.check_expiry(key, expiry)
        if expiry is not None and expiry > MAX_EXPIRY:
            raise CacheError(f'cache {self.name!r}: expiry of key {key!r} is over {MAX_EXPIRY} seconds (100 years), '
                             'the most a cluster cache keeps a deadline for; 0 never expires')
        # Redis counts in ms; a positive expiry below 1 ms still expires (1 ms), never "never".
        milliseconds = '' if expiry is None else str(max(1, round(expiry * 1000)) if expiry else 0)
        evicted = self._run('set', 'set', key, [key, text, milliseconds, _flag(self.definition.extend_expiry_on_set),
                                                self.definition.max_size, self.entry_prefix])
        self.stats.evictions += evicted

    def delete(self, key):
        self.check_key(key)
        return bool(self._run('delete', 'delete', key, [key]))

    def clear(self):
        return self._run('clear', 'keys', None, [self.entry_prefix, 'clear'])

    def keys(self):
        return list(self._run('keys', 'keys', None, [self.entry_prefix, 'keys']))

    def __len__(self):
        return len(self.keys())

    def __contains__(self, key):
        return isinstance(key, str) and self.link.exists(self.name, self.entry_prefix + key)

    def __repr__(self):
        return f'<ClusterCache {self.name!r} {self.prefix}>'


def _flag(value):
    return '1' if value else '0'

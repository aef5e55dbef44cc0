"""Built-in services `zato.cache.builtin.*`: create, get, set, delete, list and clear.

They work on `self.server.caches`, the worker's CacheRegistry. Every request is a JSON object;
`cache` names the cache and defaults to the default cache. A cache of scope 'cluster' answers
the same as a local one, from the cluster's Redis. A CacheError (a bad definition, key, value,
expiry or cache name, an unknown or missing field, a cluster cache on a server without a
cluster, or its Redis not answering within [cluster] cache_timeout) propagates: it is an HttpError
with status 400, so a client gets a 400 with the message, and a startup callable's
`server.invoke()` raises it instead of returning an error it could overlook.
"""

from zato_daemon.cache.definition import CacheDefinition, CacheError
from zato_daemon.services.base import Service

_ABSENT = object()


def _fields(payload, required=(), optional=()):
    """The request's fields, checked: a dict with every required field and no unknown one."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise CacheError(f'the request must be a JSON object, got {type(payload).__name__}')
    problems = [f'{name}: required' for name in required if name not in payload]
    allowed = set(required) | set(optional)
    problems += [f'{name}: unknown field' for name in payload if name not in allowed]
    if problems:
        raise CacheError('invalid request: ' + '; '.join(problems))
    return payload


class _CacheService(Service):
    """Checks the request's fields, then answers with `answer()`."""

    required = ()
    optional = ('cache',)

    def handle(self):
        payload = _fields(self.request.payload, self.required, self.optional)
        self.response.payload = self.answer(payload)

    def answer(self, payload):
        """The response payload for a checked request; subclasses implement it."""
        raise NotImplementedError

    def cache_of(self, payload):
        """The cache the request names, or the default one."""
        name = payload.get('cache')
        caches = self.server.caches
        if name is None:
            return caches.default
        if not isinstance(name, str):
            raise CacheError(f'cache: expected a cache name (a string), got {name!r}')
        return caches.get(name)


class CreateCache(_CacheService):
    """Creates a cache from the seed's fields; answers its definition. Idempotent."""

    name = 'zato.cache.builtin.create'

    def handle(self):
        definition = CacheDefinition.from_request(self.request.payload)
        self.response.payload = self.server.caches.create(definition).definition.as_dict()


class GetCacheEntry(_CacheService):
    """{cache?, key} -> {key, value, found}; value is null when not found."""

    name = 'zato.cache.builtin.get'
    required = ('key',)

    def answer(self, payload):
        key = payload['key']
        value = self.cache_of(payload).get(key, _ABSENT)
        found = value is not _ABSENT
        return {'key': key, 'value': value if found else None, 'found': found}


class SetCacheEntry(_CacheService):
    """{cache?, key, value, expiry?} -> {cache, key}; expiry in seconds, 0 for none."""

    name = 'zato.cache.builtin.set'
    required = ('key', 'value')
    optional = ('cache', 'expiry')

    def answer(self, payload):
        cache = self.cache_of(payload)
        cache.set(payload['key'], payload['value'], payload.get('expiry'))
        return {'cache': cache.name, 'key': payload['key']}


class DeleteCacheEntry(_CacheService):
    """{cache?, key} -> {deleted}: whether the key was there and live."""

    name = 'zato.cache.builtin.delete'
    required = ('key',)

    def answer(self, payload):
        return {'deleted': self.cache_of(payload).delete(payload['key'])}


class ListCaches(_CacheService):
    """-> every cache's definition plus its size in this worker."""

    name = 'zato.cache.builtin.list'
    optional = ()

    def answer(self, payload):
        return self.server.caches.list()


class ClearCache(_CacheService):
    """{cache?} -> {cache, cleared}: how many live entries were removed."""

    name = 'zato.cache.builtin.clear'

    def answer(self, payload):
        cache = self.cache_of(payload)
        return {'cache': cache.name, 'cleared': cache.clear()}


CACHE_SERVICES_ORIGIN = 'zato_daemon.services.cache_builtin'
CACHE_SERVICES = (CreateCache, GetCacheEntry, SetCacheEntry, DeleteCacheEntry, ListCaches, ClearCache)

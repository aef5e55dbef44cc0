"""What a cache is: the fields of `zato.cache.builtin.create`, validated in one place.

The fields and their spelling are the seed's (Zato's); the defaults are Zato's too, except
that everything is checked: an unknown field, a wrong type or a value outside its choices
is refused, all of them in one error, instead of being accepted and ignored.
"""

import json
from dataclasses import asdict, dataclass, fields

from zato_daemon.common import CACHE
from zato_daemon.errors import EXIT_CONFIG, HttpError

BUILTIN = CACHE.TYPE.BUILTIN
NO_SYNC = CACHE.SYNC_METHOD.NO_SYNC.id
IN_BACKGROUND = CACHE.SYNC_METHOD.IN_BACKGROUND.id
NO_PERSISTENT_STORAGE = CACHE.PERSISTENT_STORAGE.NO_PERSISTENT_STORAGE.id
SQL = CACHE.PERSISTENT_STORAGE.SQL.id

# Where a cache lives: in each host's memory (and SQLite), or in the cluster's Redis, one
# for every worker of every member.
LOCAL = 'local'
CLUSTER = 'cluster'

SYNC_METHODS = (NO_SYNC, IN_BACKGROUND)
SCOPES = (LOCAL, CLUSTER)
PERSISTENT_STORAGES = (NO_PERSISTENT_STORAGE, SQL)
CACHE_TYPES = (BUILTIN,)

DEFAULT_CACHE_NAME = 'default'


class CacheError(HttpError):
    """A cache cannot do what was asked: a bad definition, key, value or cache name.

    An HttpError with status 400: raised from a service, the client gets a 400 with the
    message; raised into a startup callable's `invoke()`, it fails the callable. It ends a
    process only from startup (a cache declared wrongly), hence the configuration status.
    """

    status = 400
    exit_status = EXIT_CONFIG


def _is_bool(value):
    return isinstance(value, bool)


def _is_positive_int(value):
    # bool is an int subclass: True must not pass as a size of 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_name(value):
    return isinstance(value, str) and bool(value.strip())


def _is_cluster_id(value):
    return value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _one_of(choices):
    return lambda value: value in choices


def _choices_text(choices):
    return 'one of ' + ', '.join(repr(choice) for choice in choices)


# field -> (check, what is expected): the single table validation and messages come from.
FIELD_RULES = {
    'cluster_id': (_is_cluster_id, 'an integer, a string or null'),
    'name': (_is_name, 'a non-empty string'),
    'is_active': (_is_bool, 'true or false'),
    'is_default': (_is_bool, 'true or false'),
    'max_size': (_is_positive_int, 'an integer of at least 1 (entries)'),
    'max_item_size': (_is_positive_int, 'an integer of at least 1 (bytes of JSON)'),
    'extend_expiry_on_get': (_is_bool, 'true or false'),
    'extend_expiry_on_set': (_is_bool, 'true or false'),
    'sync_method': (_one_of(SYNC_METHODS), _choices_text(SYNC_METHODS)),
    'persistent_storage': (_one_of(PERSISTENT_STORAGES), _choices_text(PERSISTENT_STORAGES)),
    'cache_type': (_one_of(CACHE_TYPES), _choices_text(CACHE_TYPES)),
    'scope': (_one_of(SCOPES), _choices_text(SCOPES)),
}


def _scope_problems(values):
    """Fields a cluster cache contradicts: it is one for every worker and member already, and
    what survives a restart of Redis is Redis' own persistence, not the state directory."""
    if values.get('scope') != CLUSTER:
        return []
    problems = []
    if values.get('sync_method') == NO_SYNC:
        problems.append(f'sync_method: {NO_SYNC!r} contradicts scope {CLUSTER!r} (one cache for every worker '
                        'and member); leave sync_method out')
    if values.get('persistent_storage') == SQL:
        problems.append(f'persistent_storage: {SQL!r} contradicts scope {CLUSTER!r} (the entries live in Redis, '
                        'which keeps them as its own persistence says); leave persistent_storage out')
    return problems


def _problems(values):
    """One 'field: expected X, got Y' line per invalid value in `values`."""
    problems = []
    for name, value in values.items():
        check, expected = FIELD_RULES[name]
        if not check(value):
            problems.append(f'{name}: expected {expected}, got {_short_repr(value)}')
    return problems


def _short_repr(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _raise_invalid(name, problems):
    label = f' {name!r}' if _is_name(name) else ''
    raise CacheError(f'invalid cache definition{label}: ' + '; '.join(problems))


@dataclass(frozen=True)
class CacheDefinition:
    """One cache's configuration. Frozen and validated on construction.

    Defaults: active, not the default cache, 10000 entries of at most 10000 bytes each,
    both extend-expiry flags on, synchronised in the background, not persistent, local.
    `scope` is ours, not the seed's: 'cluster' keeps the cache in the cluster's Redis.
    """

    name: str
    cluster_id: object = None
    is_active: bool = True
    is_default: bool = False
    max_size: int = 10000
    max_item_size: int = 10000
    extend_expiry_on_get: bool = True
    extend_expiry_on_set: bool = True
    sync_method: str = IN_BACKGROUND
    persistent_storage: str = NO_PERSISTENT_STORAGE
    cache_type: str = BUILTIN
    scope: str = LOCAL

    def __post_init__(self):
        values = asdict(self)
        problems = _problems(values) or _scope_problems(values)
        if problems:
            _raise_invalid(self.name, problems)

    @classmethod
    def from_request(cls, request):
        """Builds a definition from a service request (a dict of the seed's fields).

        Raises one CacheError listing every unknown, missing or invalid field.
        """
        if not isinstance(request, dict):
            raise CacheError(f'a cache definition must be a JSON object, got {type(request).__name__}')
        problems = [f'{name}: unknown field' for name in request if name not in FIELD_RULES]
        if 'name' not in request:
            problems.append('name: required, expected a non-empty string')
        known = {name: value for name, value in request.items() if name in FIELD_RULES}
        problems.extend(_problems(known))
        if not problems:
            problems = _scope_problems(known)
        if problems:
            _raise_invalid(request.get('name'), problems)
        return cls(**known)

    @classmethod
    def from_json(cls, text):
        """The definition stored as JSON text by `to_json()`."""
        return cls(**json.loads(text))

    def to_json(self):
        """Canonical JSON text: equal definitions give equal text."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(',', ':'))

    def as_dict(self):
        """The seed's fields as a plain dict, in declaration order."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def differences(self, other):
        """'field: ours vs theirs' for every field that differs; for conflict messages."""
        return [f'{name}: {getattr(self, name)!r} vs {getattr(other, name)!r}'
                for name in FIELD_RULES if getattr(self, name) != getattr(other, name)]

    @property
    def is_cluster(self):
        """The cache lives in the cluster's Redis: nothing of it in memory or SQLite here."""
        return self.scope == CLUSTER

    @property
    def is_synced(self):
        """Changes travel to the other workers through the database's change log."""
        return self.sync_method == IN_BACKGROUND and not self.is_cluster

    @property
    def is_persistent(self):
        """Entries survive a restart of the server (in the state directory)."""
        return self.persistent_storage == SQL and not self.is_cluster

    @property
    def uses_table(self):
        """Entries are kept in the database's entries table as well as in memory."""
        return self.is_synced or self.is_persistent


def default_definition():
    """The cache every registry has from the start: per-worker memory, the default one."""
    return CacheDefinition(name=DEFAULT_CACHE_NAME, is_default=True, sync_method=NO_SYNC)


def check_configured_scopes(caches, has_cluster):
    """The first `[caches]` line (name -> fields) that asks for a cluster cache on a server
    without [cluster] redis_url, as (name, one-line reason); None when there is none. Pure."""
    if has_cluster:
        return None
    for name, fields in caches.items():
        if fields.get('scope') == CLUSTER:
            return name, NO_CLUSTER
    return None


# Why a cluster cache cannot be made here: the same words from [caches] and from create.
NO_CLUSTER = (f'scope {CLUSTER!r} needs the cluster\'s Redis: set [cluster] redis_url in server.conf, '
              f'or make the cache {LOCAL!r}')

"""Zato-compatible constants, so that code written for Zato runs with only its imports changed.

`from zato.common import CACHE, SERVER_STARTUP` becomes `from zato_daemon.common import CACHE,
SERVER_STARTUP`; the attribute paths and values are Zato's. The namespaces are frozen: a
startup callable cannot change a constant the rest of the server relies on.

Rule: this module imports nothing from the package (layer 0), so every layer can use it.
"""


class Namespace:
    """A read-only bag of named values: attributes are set once, at construction."""

    def __init__(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f'{type(self).__name__} is read-only: cannot set {name!r}')

    def __delattr__(self, name):
        raise AttributeError(f'{type(self).__name__} is read-only: cannot delete {name!r}')

    def __repr__(self):
        fields = ', '.join(f'{name}={value!r}' for name, value in vars(self).items())
        return f'{type(self).__name__}({fields})'


def _choice(choice_id):
    # Zato spells choices as objects with an `id` (CACHE.SYNC_METHOD.NO_SYNC.id).
    return Namespace(id=choice_id)


CACHE = Namespace(
    TYPE=Namespace(BUILTIN='builtin'),
    SYNC_METHOD=Namespace(
        NO_SYNC=_choice('no-sync'),
        IN_BACKGROUND=_choice('in-background'),
    ),
    PERSISTENT_STORAGE=Namespace(
        NO_PERSISTENT_STORAGE=_choice('no-persistent-storage'),
        SQL=_choice('sql'),
    ),
)

SERVER_STARTUP = Namespace(
    PHASE=Namespace(
        FS_CONFIG_ONLY='fs-config-only',
        AFTER_STARTED='after-started',
    ),
)

_TRUE = frozenset(('true', 'yes', 'on', 'y', 't', '1'))
_FALSE = frozenset(('false', 'no', 'off', 'n', 'f', '0', ''))


def as_bool(value):
    """True or False from a bool, a number or a word such as 'true', 'Yes', 'off' or '0'.

    Zato's helper of the same name, which the seed's startup callable uses on a remote
    endpoint's answer; anything else raises ValueError rather than guessing.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f'not a boolean: {value!r}')


__all__ = ['CACHE', 'SERVER_STARTUP', 'Namespace', 'as_bool']

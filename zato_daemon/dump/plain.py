"""Reads of an object's class and instance data that run none of its code (dump Rule 1).

Shared by collect.py and waits.py. An instance's __dict__ is read through object's generic
lookup only when C code provides it (the getset of a heap class, the member of a module):
a class that makes `__dict__` a property gets {} instead of a call of it. Classes are read
through type's own descriptors, so a metaclass's __getattribute__ or properties do not run.
"""

import types

_TYPE_DICT = type.__dict__['__dict__']
_TYPE_MRO = type.__dict__['__mro__']
_TYPE_MODULE = type.__dict__['__module__']
_TYPE_QUALNAME = type.__dict__['__qualname__']

# The descriptors C code makes for a `__dict__` (heap classes: getset; modules: member).
_DICT_DESCRIPTOR_IDS = frozenset(map(id, (types.GetSetDescriptorType, types.MemberDescriptorType)))

MISSING = object()

# id(class) -> (class, its instances' __dict__ is readable): the class is kept so its id stays its.
_dict_readable = {}


def mro(kind):
    """A class's MRO, read through type's descriptor; () when unreadable."""
    try:
        return _TYPE_MRO.__get__(kind)
    except Exception:
        return ()


def class_dict(cls):
    """A class's own namespace (a mappingproxy), read through type's descriptor."""
    return _TYPE_DICT.__get__(cls)


def type_name(kind):
    """'module.Qualname' of a class (builtins bare), read through type's own descriptors; '?' if unreadable."""
    try:
        module, qualname = _TYPE_MODULE.__get__(kind), _TYPE_QUALNAME.__get__(kind)
    except Exception:
        return '?'
    if type(qualname) is not str:
        return '?'
    return qualname if type(module) is not str or module == 'builtins' else f'{module}.{qualname}'


def instance_dict(obj):
    """The instance's __dict__ when C code provides it (not a property of the class), else {}."""
    kind = type(obj)
    known = _dict_readable.get(id(kind))
    if known is None or known[0] is not kind:
        known = _dict_readable[id(kind)] = (kind, _has_plain_dict(kind))
    if not known[1]:
        return {}
    try:
        attributes = object.__getattribute__(obj, '__dict__')
    except Exception:
        return {}
    return attributes if type(attributes) is dict else {}


def _has_plain_dict(kind):
    for cls in mro(kind):
        entry = class_dict(cls).get('__dict__', MISSING)
        if entry is not MISSING:
            return id(type(entry)) in _DICT_DESCRIPTOR_IDS
    return False

"""The services' JSON encoder (services/host.py) writes what json.JSONEncoder would, faster."""

import json
import types
from datetime import date
from decimal import Decimal

import pytest

from zato_daemon.services.host import _json_dumper


def dumper(indent=0, sort_keys=False, ensure_ascii=False):
    return _json_dumper(types.SimpleNamespace(json=types.SimpleNamespace(
        indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)))


class Text(str):
    pass


VALUES = [
    {'b': 1, 'a': [1.5, 'caf\u00e9', None, True, False]}, 'quote " and \\ and \u2028', 3, 1e300, -0.0,
    {1: 2, 3: {}}, [], Text('a str subclass'), {'nested': [[[{'k': 'v'}]]]},
]


@pytest.mark.parametrize('sort_keys', [False, True])
@pytest.mark.parametrize('ensure_ascii', [False, True])
@pytest.mark.parametrize('value', VALUES)
def test_the_same_text_as_the_json_module(value, sort_keys, ensure_ascii):
    expected = json.dumps(value, sort_keys=sort_keys, ensure_ascii=ensure_ascii, separators=(',', ':'),
                          allow_nan=False)
    assert dumper(sort_keys=sort_keys, ensure_ascii=ensure_ascii)(value) == expected


def test_indent_lays_out_members_one_per_line():
    assert dumper(indent=2)({'a': [1]}) == '{\n  "a": [\n    1\n  ]\n}'


def test_values_json_lacks_are_written_as_text_or_lists():
    assert dumper()({'d': date(2026, 12, 3), 'n': Decimal('1.10'), 's': {7}, 'b': b'\xff'}) == \
        '{"d":"2026-12-03","n":"1.10","s":[7],"b":"\ufffd"}'


@pytest.mark.parametrize('value', [float('nan'), [float('inf')], {'x': float('-inf')}])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ValueError, match='Out of range float'):
        dumper()(value)


def test_a_circular_value_is_refused_every_time_and_leaves_no_trace():
    dumps = dumper()
    looped = []
    looped.append(looped)
    for _ in range(2):
        with pytest.raises(ValueError, match='Circular reference'):
            dumps(looped)
    shared = [1]
    assert dumps([shared, shared]) == '[[1],[1]]'  # the same list twice is no cycle

"""JSON held to RFC 8259 (http/payload.py); the router's tests cover the 400s end to end."""

import pytest

from zato_daemon.http.payload import PayloadError, decode_json, depth_exceeds, is_json_media_type


@pytest.mark.parametrize('content_type, expected', [
    ('application/json', True),
    ('Application/JSON', True),
    ('application/json;charset=utf-8', True),
    ('application/json; charset="UTF-8"', True),
    ('application/json; charset=utf8', True),
    ('application/problem+json', True),
    ('application/vnd.api+json; ext=bulk', True),
    ('application/json; charset=utf-16', False),
    ('application/jsonx', False),
    ('application/+json', False),
    ('text/json', False),
    ('text/plain', False),
    ('application/x-www-form-urlencoded', False),
    ('multipart/form-data; boundary=x', False),
    ('', False),
])
def test_json_media_types(content_type, expected):
    assert is_json_media_type(content_type) is expected


@pytest.mark.parametrize('value, max_depth, expected', [
    (1, 0, False),
    ([], 0, True),
    ([], 1, False),
    ({'a': [1, {'b': []}]}, 3, True),
    ({'a': [1, {'b': []}]}, 4, False),
    ([[], [[[]]], []], 3, True),
    ([[], [[[]]], []], 4, False),
])
def test_depth(value, max_depth, expected):
    assert depth_exceeds(value, max_depth) is expected


def test_empty_body_is_none_and_escaped_backslash_u_is_text():
    assert decode_json(b'', 1) is None
    assert decode_json(b'"\\\\ud800"', 1) == '\\ud800'


def test_payload_error_is_a_value_error_with_the_reason():
    with pytest.raises(ValueError, match='NaN'):
        decode_json(b'NaN', 1)
    assert issubclass(PayloadError, ValueError)


# The fast path (the C scanner without json's Python wrapper, C floats when no number can
# overflow) must give exactly what json's own decode gives, errors included.

@pytest.mark.parametrize('body', [
    b'{"a": 1}', b' {"a": 1}', b'{"a": 1} \r\n\t', b'[1.5, 2e3, -0.0, 10]', b'"text"', b'123',
    b'true', b'null', b'{"e": "1e5 in a string"}', b'[' + b'9' * 308 + b'.5]', b'[1E308]',
])
def test_accepted_bodies_decode_as_the_json_module_does(body):
    import json
    assert decode_json(body, 8) == json.loads(body)


@pytest.mark.parametrize('body, message', [
    (b'{"a": 1} x', 'malformed JSON: Extra data: line 1 column 10 (char 9)'),
    (b' [1,', 'malformed JSON: Expecting value: line 1 column 5 (char 4)'),
    (b'[1,]', 'malformed JSON: Expecting value: line 1 column 4 (char 3)'),
    (b'\x0b1', 'malformed JSON: Expecting value: line 1 column 1 (char 0)'),
    (b'   ', 'malformed JSON: Expecting value: line 1 column 4 (char 3)'),
    (b' \n [1] \n x', 'malformed JSON: Extra data: line 3 column 2 (char 9)'),
    (b'{"a" 1}', "malformed JSON: Expecting ':' delimiter: line 1 column 6 (char 5)"),
    (b'[1e999]', 'the number 1e999 is too large for a float'),
    (b'[-1E400]', 'the number -1E400 is too large for a float'),
    (b'[' + b'9' * 309 + b'.5]', 'is too large for a float'),
    (b'[1, NaN]', 'NaN is not a JSON value'),
    (b' Infinity', 'Infinity is not a JSON value'),
])
def test_refused_bodies_say_why(body, message):
    with pytest.raises(PayloadError) as caught:
        decode_json(body, 8)
    assert message in str(caught.value)


def test_a_long_integer_is_not_a_float_overflow():
    assert decode_json(b'[' + b'9' * 400 + b']', 8) == [int('9' * 400)]


@pytest.mark.parametrize('records', [1, 100, 1000])
def test_depth_of_wide_bodies_is_counted_per_level(records):
    import json
    body = json.dumps({'records': [{'id': n, 'tags': ['a', {'x': []}]} for n in range(records)]}).encode()
    assert decode_json(body, 6)['records'][-1]['id'] == records - 1
    with pytest.raises(PayloadError, match='nested deeper than 5 levels'):
        decode_json(body, 5)


# The nesting is read from the bytes when the strings hold no bracket and no escape, and from
# the value otherwise: both ways must agree with depth_exceeds on every shape.

NESTED_BODIES = [
    b'{"records": [{"id": 1, "tags": ["a", {"x": []}]}], "padding": "' + b'p' * 40 + b'"}',
    b'[[[[[[[[[[1]]]]]]]]]]' + b' ' * 40,
    b'["]", [[[[1]]]], "["]' + b' ' * 40,
    b'["][", [[[[1]]]], "]["]' + b' ' * 40,
    b'{"a": "\\"[[[[[[", "b": [[[[1]]]]}' + b' ' * 40,
    b'{"a": "\\u005b\\u005b", "b": [[[[[1]]]]]}' + b' ' * 40,
    b'[{}, {"": {}}, [[], [[]]], "{}", "", ""]' + b' ' * 40,
]


@pytest.mark.parametrize('body', NESTED_BODIES)
@pytest.mark.parametrize('max_depth', range(1, 13))
def test_nesting_read_from_bytes_agrees_with_the_value(body, max_depth):
    import json
    value = json.loads(body)
    if depth_exceeds(value, max_depth):
        with pytest.raises(PayloadError, match='nested deeper'):
            decode_json(body, max_depth)
    else:
        assert decode_json(body, max_depth) == value

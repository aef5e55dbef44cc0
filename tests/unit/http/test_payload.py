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

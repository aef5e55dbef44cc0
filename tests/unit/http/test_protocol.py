"""Tests for zato_daemon.http.protocol: request parsing as data cases, then response rendering."""

import json
import random
from pathlib import Path

import pytest

from zato_daemon.errors import HttpError
from zato_daemon.http.protocol import (
    BODY,
    CONTINUE,
    CONTINUE_RESPONSE,
    HEADERS,
    IDLE,
    MAX_FIELDS,
    ProtocolError,
    Request,
    RequestParser,
    render_response,
)

CASES_DIR = Path(__file__).parent / 'cases'
CASE_NAMES = sorted(path.stem for path in CASES_DIR.glob('*.http'))

DEFAULT_LIMITS = {'max_request_size': 1024 * 1024}

# 2001-09-09 01:46:40 UTC
FIXED_NOW = 1_000_000_000.25
FIXED_DATE = b'Date: Sun, 09 Sep 2001 01:46:40 GMT\r\n'


# Data cases: NNN.http is the request bytes, NNN.json what parsing them gives.

def load_request_bytes(name):
    """Reads NNN.http: line breaks only keep the file readable; the escapes \\r and \\n are the bytes."""
    raw = (CASES_DIR / f'{name}.http').read_bytes().replace(b'\n', b'')
    return raw.replace(b'\\r', b'\r').replace(b'\\n', b'\n')


def load_expectation(name):
    expected = json.loads((CASES_DIR / f'{name}.json').read_text(encoding='utf-8'))
    limits = dict(DEFAULT_LIMITS, **expected.get('limits', {}))
    return limits, {'events': expected['events'], 'error': expected.get('error')}


def describe(event):
    if event is CONTINUE:
        return {'event': 'continue'}
    assert isinstance(event, Request), event
    return {
        'method': event.method,
        'path': event.path,
        'query': event.query,
        'headers': event.headers,
        'body': event.body.decode('utf-8'),
        'keep_alive': event.keep_alive,
        'http_version': event.http_version,
    }


def parse_chunks(limits, chunks):
    """Feeds chunks to a new parser until done or a ProtocolError; returns what came out."""
    parser = RequestParser(**limits)
    events = []
    for chunk in chunks:
        try:
            events += parser.feed(chunk)
        except ProtocolError as error:
            events += error.events
            return {'events': [describe(event) for event in events], 'error': error.status}
    return {'events': [describe(event) for event in events], 'error': None}


def random_splits(data, seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(8, len(data) - 1))))
        yield [data[start:end] for start, end in zip([0] + cuts, cuts + [len(data)])]


def test_enough_cases():
    assert len(CASE_NAMES) >= 12
    assert all((CASES_DIR / f'{name}.json').exists() for name in CASE_NAMES)


@pytest.mark.parametrize('name', CASE_NAMES)
def test_case_in_one_chunk(name):
    limits, expected = load_expectation(name)
    assert parse_chunks(limits, [load_request_bytes(name)]) == expected


@pytest.mark.parametrize('name', CASE_NAMES)
def test_case_byte_by_byte(name):
    limits, expected = load_expectation(name)
    data = load_request_bytes(name)
    assert parse_chunks(limits, [data[i:i + 1] for i in range(len(data))]) == expected


@pytest.mark.parametrize('name', CASE_NAMES)
def test_case_in_random_splits(name):
    limits, expected = load_expectation(name)
    data = load_request_bytes(name)
    for chunks in random_splits(data, seed=name, count=30):
        assert parse_chunks(limits, chunks) == expected, [bytes(chunk) for chunk in chunks]


# Parser behaviour beyond one case

def test_protocol_error_is_an_http_error_with_status():
    parser = RequestParser(max_request_size=10)
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b'POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n')
    assert isinstance(caught.value, HttpError)
    assert caught.value.status == 413


def test_error_is_raised_again_on_later_feeds():
    parser = RequestParser(max_request_size=10)
    with pytest.raises(ProtocolError):
        parser.feed(b'NOPE\r\n\r\n')
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b'GET / HTTP/1.1\r\n\r\n')
    assert caught.value.status == 400
    with pytest.raises(ProtocolError):
        parser.feed_eof()


def test_bytes_after_a_closing_request_are_ignored_in_later_feeds():
    parser = RequestParser(max_request_size=10)
    [request] = parser.feed(b'GET / HTTP/1.0\r\n\r\n')
    assert request.keep_alive is False
    assert parser.feed(b'GET /more HTTP/1.1\r\n\r\n') == []
    assert parser.feed(b'\x00garbage') == []


def refused_while_fed(start, chunk, max_header_size=1024, most=100 * 1024):
    """Feeds `start`, then `chunk` again and again as recv() would deliver it, until the parser
    refuses; returns (status, bytes of `chunk` fed before the refusing one). Fails past `most`."""
    parser = RequestParser(max_request_size=10, max_header_size=max_header_size)
    parser.feed(start)
    fed = 0
    with pytest.raises(ProtocolError) as caught:
        while fed < most:
            parser.feed(chunk)
            fed += len(chunk)
    return caught.value.status, fed


def test_endless_header_line_stops_at_twice_the_limit():
    # No callback fires while httptools buffers the unfinished value, so only the silence
    # guard can stop it.
    status, fed = refused_while_fed(b'GET / HTTP/1.1\r\nX-Long: ', b'a' * 256)
    assert status == 431
    assert fed <= 2 * 1024 + 64


def test_long_header_line_within_the_limit_passes_in_small_chunks():
    parser = RequestParser(max_request_size=10, max_header_size=4096)
    data = b'GET / HTTP/1.1\r\nX-Long: ' + b'a' * 4000 + b'\r\n\r\n'
    events = []
    for start in range(0, len(data), 16):
        events += parser.feed(data[start:start + 16])
    [request] = events
    assert request.headers['x-long'] == 'a' * 4000


def test_endless_chunk_extension_is_stopped():
    status, _ = refused_while_fed(b'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=', b'x' * 256,
                                  most=100 * 256)
    assert status == 431


def test_feed_eof_when_idle_returns_nothing():
    parser = RequestParser(max_request_size=10)
    parser.feed(b'GET / HTTP/1.1\r\n\r\n')
    assert parser.phase == IDLE
    assert parser.feed_eof() == []


def test_feed_eof_in_the_middle_of_a_request_is_400():
    parser = RequestParser(max_request_size=10)
    assert parser.feed(b'POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab') == []
    assert parser.phase == BODY
    with pytest.raises(ProtocolError) as caught:
        parser.feed_eof()
    assert caught.value.status == 400


def test_continue_comes_once_before_its_request():
    parser = RequestParser(max_request_size=10)
    first = parser.feed(b'POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n')
    assert first == [CONTINUE]
    [request] = parser.feed(b'abc')
    assert request.body == b'abc'


def test_body_is_bytes_and_headers_are_str():
    parser = RequestParser(max_request_size=100)
    [request] = parser.feed(b'POST /p HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\n{}')
    assert request.body == b'{}'
    # latin-1 keeps every byte; a caller wanting UTF-8 re-encodes.
    assert request.headers['x-name'].encode('latin-1').decode('utf-8') == 'café'


def test_request_repr_names_method_and_path():
    parser = RequestParser(max_request_size=100)
    [request] = parser.feed(b'GET /a HTTP/1.1\r\n\r\n')
    assert "GET '/a'" in repr(request)


# Responses

def test_render_exact_bytes():
    data = render_response(200, b'{"a":1}', True, now=FIXED_NOW)
    assert data == (
        b'HTTP/1.1 200 OK\r\n'
        b'Server: zato-daemon\r\n'
        + FIXED_DATE
        + b'Content-Type: application/json\r\n'
        b'Content-Length: 7\r\n'
        b'\r\n'
        b'{"a":1}'
    )


def test_render_close_content_type_and_extra_headers():
    data = render_response(404, b'nope', False, b'text/plain', [(b'X-Zato-CID', b'abc123')], now=FIXED_NOW)
    assert data == (
        b'HTTP/1.1 404 Not Found\r\n'
        b'Server: zato-daemon\r\n'
        + FIXED_DATE
        + b'Connection: close\r\n'
        b'Content-Type: text/plain\r\n'
        b'Content-Length: 4\r\n'
        b'X-Zato-CID: abc123\r\n'
        b'\r\n'
        b'nope'
    )


def test_render_204_has_no_body_nor_length():
    data = render_response(204, b'ignored', True, now=FIXED_NOW)
    assert data == b'HTTP/1.1 204 No Content\r\nServer: zato-daemon\r\n' + FIXED_DATE + b'\r\n'


def test_render_keep_alive_is_announced_to_http10_only():
    assert b'Connection: keep-alive\r\n' in render_response(200, b'', True, is_http10=True, now=FIXED_NOW)
    assert b'Connection' not in render_response(200, b'', True, now=FIXED_NOW)
    assert b'Connection: close\r\n' in render_response(200, b'', False, is_http10=True, now=FIXED_NOW)


@pytest.mark.parametrize('status, line', [
    (413, b'HTTP/1.1 413 Content Too Large\r\n'),
    (431, b'HTTP/1.1 431 Request Header Fields Too Large\r\n'),
    (503, b'HTTP/1.1 503 Service Unavailable\r\n'),
    (418, b"HTTP/1.1 418 I'm a Teapot\r\n"),
    (599, b'HTTP/1.1 599 Unknown\r\n'),
])
def test_render_status_line(status, line):
    assert render_response(status, b'', True, now=FIXED_NOW).startswith(line)


def test_render_refuses_status_out_of_range():
    with pytest.raises(ValueError):
        render_response(42, b'', True, now=FIXED_NOW)


def test_render_refuses_line_break_in_header_value():
    with pytest.raises(ValueError):
        render_response(200, b'', True, extra_headers=[(b'X-Zato-CID', b'a\r\nSet-Cookie: x')], now=FIXED_NOW)


def test_render_date_follows_the_clock_by_the_second():
    assert FIXED_DATE in render_response(200, b'', True, now=FIXED_NOW + 0.5)
    later = render_response(200, b'', True, now=FIXED_NOW + 1)
    assert b'Date: Sun, 09 Sep 2001 01:46:41 GMT\r\n' in later


def test_continue_response_is_a_bare_interim_response():
    assert CONTINUE_RESPONSE == b'HTTP/1.1 100 Continue\r\n\r\n'
    assert render_response(100, b'', True, now=FIXED_NOW).startswith(b'HTTP/1.1 100 Continue\r\n')


def test_phase_follows_a_request_through_its_parts():
    parser = RequestParser(1024)
    assert (parser.phase, parser.body_received) == (IDLE, 0)
    parser.feed(b'\r\n')  # blank lines before a request start none
    assert parser.phase == IDLE
    parser.feed(b'PO')
    assert parser.phase == HEADERS
    parser.feed(b'ST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab')
    assert (parser.phase, parser.body_received) == (BODY, 2)
    [request] = parser.feed(b'cde')
    assert (parser.phase, request.body) == (IDLE, b'abcde')


@pytest.mark.parametrize('value', [b'a\x00b', b'a\rb', b'a\nb', b'a\x1bb', b'a\x7fb'])
def test_control_characters_in_header_values_are_refused(value):
    with pytest.raises(ValueError, match='control character'):
        render_response(200, b'', True, extra_headers=((b'X-A', value),))


def test_a_tab_and_latin1_text_are_allowed_in_header_values():
    rendered = render_response(200, b'', True, extra_headers=((b'X-A', b'a\tcaf\xe9'),), now=FIXED_NOW)
    assert b'X-A: a\tcaf\xe9\r\n' in rendered


@pytest.mark.parametrize('chunk_size', [4096, 65536, 200_000])
def test_a_request_target_over_the_limit_is_414_however_it_arrives(chunk_size):
    # Under http-parser (Debian's httptools 0.1.1) its own 80 KiB cap can strike first.
    data = b'GET /' + b'a' * (1024 * 1024) + b' HTTP/1.1\r\nHost: x\r\n\r\n'
    result = parse_chunks(DEFAULT_LIMITS, [data[start:start + chunk_size] for start in range(0, len(data), chunk_size)])
    assert result == {'events': [], 'error': 414}


def test_a_long_first_header_after_a_short_target_is_431():
    data = b'GET /short HTTP/1.1\r\nX-Big: ' + b'b' * (1024 * 1024) + b'\r\n\r\n'
    result = parse_chunks(DEFAULT_LIMITS, [data[start:start + 65536] for start in range(0, len(data), 65536)])
    assert result == {'events': [], 'error': 431}


# The header section is settled in one pass at its end (on_headers_complete).

def test_repeated_fields_in_any_case_are_joined_in_order():
    [request] = RequestParser(100).feed(b'GET / HTTP/1.1\r\nX-A: 1\r\nHost: h\r\nx-a: 2 \r\nX-A:\r\n\r\n')
    assert request.headers == {'x-a': '1, 2, ', 'host': 'h'}


def test_trailing_whitespace_is_trimmed_from_every_value():
    [request] = RequestParser(100).feed(b'GET / HTTP/1.1\r\nA: 1 \r\nB: 2\t\r\nC: 3\r\n\r\n')
    assert request.headers == {'a': '1', 'b': '2', 'c': '3'}


def test_small_fields_that_never_end_the_section_are_stopped_at_the_limit():
    status, fed = refused_while_fed(b'GET / HTTP/1.1\r\n', b'X-A: b\r\n' * 32)
    assert status == 431
    assert fed <= 1024 + 256  # the read that passed the limit, not twice the limit


def test_more_fields_than_the_limit_are_431_in_one_read_or_many():
    fields = b''.join(b'X-%d: 1\r\n' % number for number in range(MAX_FIELDS + 1))
    request = b'GET / HTTP/1.1\r\n' + fields + b'\r\n'
    with pytest.raises(ProtocolError) as caught:
        RequestParser(10).feed(request)
    assert caught.value.status == 431
    parser = RequestParser(10)
    with pytest.raises(ProtocolError) as caught:
        for start in range(0, len(request), 1000):
            parser.feed(request[start:start + 1000])
    assert caught.value.status == 431
    [accepted] = RequestParser(10).feed(b'GET / HTTP/1.1\r\n' + fields[:-len(b'X-500: 1\r\n')] + b'\r\n')
    assert len(accepted.headers) == MAX_FIELDS


def test_trailers_count_with_the_header_section():
    chunked = b'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n'
    trailers = b'X-T: ' + b't' * 200 + b'\r\n\r\n'
    [request] = RequestParser(100, max_header_size=300).feed(chunked + trailers)
    assert request.body == b'a'
    # The headers alone (47 bytes) and the trailers alone (205) are under 250; together they are not.
    with pytest.raises(ProtocolError) as caught:
        RequestParser(100, max_header_size=250).feed(chunked + trailers)
    assert caught.value.status == 431
    parser = RequestParser(100, max_header_size=250)
    parser.feed(chunked)
    with pytest.raises(ProtocolError) as caught:
        parser.feed(trailers[:-2] + b'X-U: 1\r\n')  # trailers that have not ended are counted too
    assert caught.value.status == 431


def test_head_and_205_keep_their_framing():
    head = render_response(200, b'{"a":1}', True, is_head=True, now=FIXED_NOW)
    assert head.endswith(b'Content-Length: 7\r\n\r\n')
    reset = render_response(205, b'ignored', True, now=FIXED_NOW)
    assert reset.endswith(b'Content-Length: 0\r\n\r\n')


def test_many_content_types_in_one_second_render_correctly():
    for number in range(200):
        content_type = b'application/x%d+json' % number
        rendered = render_response(200, b'1', True, content_type, now=FIXED_NOW)
        assert b'Content-Type: ' + content_type + b'\r\n' in rendered
